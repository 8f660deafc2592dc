"""Writing a run's outputs: ``results.json``, ``qualities.csv`` and every report format.

Used by ``run``, ``evaluate`` and ``report``; the runner computes, this module writes.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fiqabench.errors import ComponentUnavailableError
from fiqabench.files import atomic_open, atomic_write_text
from fiqabench.results import parse, write_results

log = logging.getLogger("fiqabench")

#: The columns of ``comparisons.csv``, those ``fiqabench evaluate --comparisons`` reads.
COMPARISON_COLUMNS = ("a", "b", "score", "mated", "dataset", "fr_model")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SavedComparisons:
    """One dataset x evaluation FR model's comparisons for ``comparisons.csv``: item ids (sample
    ids, or template ids for template protocols such as IJB-C), index pairs, mated flags, and
    the cached scores, read only when the file is written."""

    dataset: str
    fr_model: str
    ids: Sequence[str]
    a: np.ndarray
    b: np.ndarray
    mated: np.ndarray
    read_scores: Callable[[], np.ndarray]


def _csv_field(text: str) -> str:
    """One CSV field as :mod:`csv` writes it (quoted only when it must be)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([text])
    return buffer.getvalue()


def write_comparisons_csv(saved: Sequence[SavedComparisons], out_dir: Path) -> Path:
    """``comparisons.csv``: ``a,b,score,mated,dataset,fr_model``, one line per comparison.

    Scores are written with ``repr`` (the shortest text that reads back as the same float64), so
    ``fiqabench evaluate`` on this file gives the run's pAUC exactly. Streamed in chunks and
    renamed into place at the end: IJB-C's 15.7 M comparisons never sit in memory as text.
    """
    path = out_dir / "comparisons.csv"
    with atomic_open(path) as out:
        out.write(",".join(COMPARISON_COLUMNS) + "\n")
        for part in saved:
            ids = np.asarray([_csv_field(str(x)) for x in part.ids], dtype=object)
            tail = f",{_csv_field(part.dataset)},{_csv_field(part.fr_model)}\n"
            scores = np.asarray(part.read_scores(), dtype=np.float64)
            mated = np.asarray(part.mated, dtype=bool)
            for lo in range(0, len(scores), _CHUNK):
                hi = min(lo + _CHUNK, len(scores))
                a, b = ids[part.a[lo:hi]], ids[part.b[lo:hi]]
                flags = np.where(mated[lo:hi], "1", "0")
                out.write("".join(
                    f"{x},{y},{s!r},{m}{tail}" for x, y, s, m in zip(a, b, scores[lo:hi].tolist(), flags)
                ))
    return path


def write_qualities_csv(rows: list[tuple[str, str, str, str, float]], out_dir: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "fr_model", "method", "sample", "quality"])
    for dataset, fr_model, method, sample, quality in rows:
        writer.writerow([dataset, fr_model, method, sample, repr(float(quality))])
    path = out_dir / "qualities.csv"
    atomic_write_text(path, buffer.getvalue())
    return path


def write_outputs(
    registry: Any, result: dict[str, Any], out_dir: Path, formats: list[str] | None = None
) -> list[Path]:
    """results.json, qualities.csv, then every report format (unavailable ones are skipped)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_results(result["document"], out_dir)]
    if result.get("qualities") is not None:
        written.append(write_qualities_csv(result["qualities"], out_dir))
    if result.get("comparisons") is not None:
        written.append(write_comparisons_csv(result["comparisons"], out_dir))
    written += write_reports(registry, result["document"], out_dir, formats)
    return written


def write_reports(
    registry: Any, document: Any, out_dir: Path, formats: list[str] | None = None, source: str = "results.json"
) -> list[Path]:
    """Every report format (or those named) from the document, parsed once and handed to each
    writer as :class:`fiqabench.results.Results`."""
    results = parse(document, source)
    written: list[Path] = []
    explicit = formats is not None
    for name in formats or registry.names("format"):
        entry = registry.get("format", name)
        try:
            writer = entry.load()
            written += list(writer(results, out_dir))
        except ComponentUnavailableError as exc:
            if explicit:
                raise
            log.warning("skipped format %s: %s", name, exc)
    return written
