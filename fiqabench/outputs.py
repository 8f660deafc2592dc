"""Writing a run's outputs: ``results.json``, ``qualities.csv`` and every report format.

Used by ``run``, ``evaluate`` and ``report``; the runner computes, this module writes.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

from fiqabench.errors import ComponentUnavailableError
from fiqabench.files import atomic_write_text
from fiqabench.results import parse, write_results

log = logging.getLogger("fiqabench")


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
