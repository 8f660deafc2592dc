"""``fiqabench evaluate``: bring your own comparison scores and quality scores.

``C.csv``: columns ``a,b,score,mated`` (sample ids; similarity unless ``--distance``; 0/1) and
optionally ``dataset`` and ``fr_model`` (absent: one dataset and FR model named ``custom``).
``Q.csv``: column ``sample`` (optionally ``dataset``, which scopes the ids) plus one column per
FIQA method. Produces the same ``results.json`` rows as ``fiqabench run``.
"""

from __future__ import annotations

import codecs
import csv
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fiqabench.errors import InputFormatError, MetricInputError
from fiqabench.evaluation import (
    ProtocolScores,
    apply_failure_policy,
    fr_sanity,
    result_row,
)
from fiqabench.results import make_document

DEFAULT_NAME = "custom"


def _decoded_lines(path: Path, handle: Any) -> Iterator[str]:
    """UTF-8 lines of a binary file, decoded one by one so that a bad byte names its line; a
    leading byte-order mark (spreadsheet programs write one) is dropped."""
    for number, raw in enumerate(handle, start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputFormatError(
                path, number, None, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            ) from exc


def _reader(path: Path) -> tuple[csv.DictReader, Any]:
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise InputFormatError(path, None, None, f"cannot open: {exc.strerror}") from exc
    reader = csv.DictReader(_decoded_lines(path, handle))
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        handle.close()
        raise InputFormatError(path, 1, None, f"unreadable header: {exc}") from exc
    except InputFormatError:
        handle.close()
        raise
    if fieldnames is None:
        handle.close()
        raise InputFormatError(path, 1, None, "empty file: expected a header row")
    reader.fieldnames = [name.strip() for name in reader.fieldnames]
    return reader, handle


def _rows(path: Path, reader: csv.DictReader) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` pairs; malformed CSV names the line (undecodable bytes do, in
    :func:`_decoded_lines`)."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputFormatError(path, reader.line_num, None, f"malformed CSV: {exc}") from exc
        yield reader.line_num, row


def _require_columns(path: Path, reader: csv.DictReader, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise InputFormatError(
            path, 1, ", ".join(missing), f"missing column(s); the header has {', '.join(reader.fieldnames or [])}"
        )


def _float(path: Path, line: int, field: str, text: str | None, allow_empty: bool = False) -> float:
    if text is None or text.strip() == "":
        if allow_empty:
            return math.nan
        raise InputFormatError(path, line, field, "empty value")
    try:
        value = float(text)
    except ValueError:
        raise InputFormatError(path, line, field, f"expected a number, got {text!r}") from None
    if math.isnan(value) and not allow_empty:
        raise InputFormatError(path, line, field, "NaN is not a valid value")
    return value


def read_qualities(path: Path) -> tuple[list[str], dict[tuple[str, str], dict[str, float]]]:
    """Method names and ``(dataset, sample) -> {method: quality}`` (NaN for empty cells).

    Two layouts: wide (``sample[,dataset]`` + one column per method) or the long ``qualities.csv``
    that ``fiqabench run`` writes (``dataset,fr_model,method,sample,quality``; recognised by its
    ``method`` and ``quality`` columns). In the long layout a method has no entry for the samples
    of a dataset it did not score (it is then not evaluated there).
    """
    reader, handle = _reader(path)
    if {"method", "quality"} <= set(reader.fieldnames or []):
        with handle:
            return _read_long_qualities(path, reader)
    with handle:
        _require_columns(path, reader, ["sample"])
        methods = [c for c in reader.fieldnames or [] if c not in ("sample", "dataset")]
        if not methods:
            raise InputFormatError(path, 1, None, "no method columns: add one column of scores per FIQA method")
        table: dict[tuple[str, str], dict[str, float]] = {}
        for line, row in _rows(path, reader):
            sample = (row.get("sample") or "").strip()
            if not sample:
                raise InputFormatError(path, line, "sample", "empty sample id")
            dataset = (row.get("dataset") or DEFAULT_NAME).strip() or DEFAULT_NAME
            if (dataset, sample) in table:
                raise InputFormatError(path, line, "sample", f"duplicate sample id {sample!r}")
            table[(dataset, sample)] = {
                m: _float(path, line, m, row.get(m), allow_empty=True) for m in methods
            }
    if not table:
        raise InputFormatError(path, None, None, "no rows")
    return methods, table


def _read_long_qualities(path: Path, reader: csv.DictReader) -> tuple[list[str], dict[tuple[str, str], dict[str, float]]]:
    """The long layout of :func:`read_qualities` (a run's ``qualities.csv``)."""
    _require_columns(path, reader, ["sample", "method", "quality"])
    methods: dict[str, None] = {}
    table: dict[tuple[str, str], dict[str, float]] = {}
    for line, row in _rows(path, reader):
        sample = (row.get("sample") or "").strip()
        method = (row.get("method") or "").strip()
        if not sample:
            raise InputFormatError(path, line, "sample", "empty sample id")
        if not method:
            raise InputFormatError(path, line, "method", "empty method name")
        dataset = (row.get("dataset") or DEFAULT_NAME).strip() or DEFAULT_NAME
        scores = table.setdefault((dataset, sample), {})
        if method in scores:
            raise InputFormatError(path, line, "sample", f"second quality of {method!r} for sample {sample!r}")
        # Empty cells are failures (NaN); a run writes failed samples as -inf (ranked lowest).
        scores[method] = _float(path, line, "quality", row.get("quality"), allow_empty=True)
        methods.setdefault(method)
    if not table:
        raise InputFormatError(path, None, None, "no rows")
    return list(methods), table


def read_comparisons(path: Path, distance: bool) -> dict[tuple[str, str], dict[str, list[Any]]]:
    """``(dataset, fr_model) -> {"a", "b", "score", "mated", "line"}`` lists."""
    reader, handle = _reader(path)
    groups: dict[tuple[str, str], dict[str, list[Any]]] = defaultdict(
        lambda: {"a": [], "b": [], "score": [], "mated": [], "line": []}
    )
    with handle:
        _require_columns(path, reader, ["a", "b", "score", "mated"])
        for line, row in _rows(path, reader):
            mated_text = (row.get("mated") or "").strip().lower()
            if mated_text in ("1", "true", "yes"):
                mated = True
            elif mated_text in ("0", "false", "no"):
                mated = False
            else:
                raise InputFormatError(path, line, "mated", f"expected 0 or 1, got {row.get('mated')!r}")
            score = _float(path, line, "score", row.get("score"))
            for field in ("a", "b"):
                if not (row.get(field) or "").strip():
                    raise InputFormatError(path, line, field, "empty sample id")
            key = (
                (row.get("dataset") or DEFAULT_NAME).strip() or DEFAULT_NAME,
                (row.get("fr_model") or DEFAULT_NAME).strip() or DEFAULT_NAME,
            )
            group = groups[key]
            group["a"].append(row["a"].strip())
            group["b"].append(row["b"].strip())
            group["score"].append(-score if distance else score)
            group["mated"].append(mated)
            group["line"].append(line)
    if not groups:
        raise InputFormatError(path, None, None, "no rows")
    return groups


def evaluate_files(
    *,
    comparisons: Path,
    qualities: Path,
    fmr: float = 1e-3,
    discard_limits: Sequence[float] = (0.2, 0.3),
    distance: bool = False,
    lower_is_better: Sequence[str] = (),
    on_failure: str = "error",
) -> dict[str, Any]:
    """Read both files and return a results document (see :mod:`fiqabench.results`)."""
    methods, quality_table = read_qualities(qualities)
    unknown_flags = sorted(set(lower_is_better) - set(methods))
    if unknown_flags:
        raise InputFormatError(
            qualities, 1, None,
            f"--lower-is-better names {', '.join(unknown_flags)}, not columns of this file ({', '.join(methods)})",
        )
    scoped = any(dataset != DEFAULT_NAME for dataset, _ in quality_table)
    groups = read_comparisons(comparisons, distance)
    rows: list[dict[str, Any]] = []
    protocols: list[dict[str, Any]] = []
    for (dataset, fr_model), group in groups.items():
        quality_dataset = dataset if scoped else DEFAULT_NAME
        ids = sorted({*group["a"], *group["b"]})
        index = {sample: i for i, sample in enumerate(ids)}
        missing = [s for s in ids if (quality_dataset, s) not in quality_table]
        if missing:
            shown = ", ".join(missing[:5])
            raise InputFormatError(
                comparisons, None, "a/b",
                f"{len(missing)} sample id(s) of dataset {dataset!r} have no row in {qualities} (e.g. {shown})",
            )
        a = np.array([index[s] for s in group["a"]])
        b = np.array([index[s] for s in group["b"]])
        mated = np.array(group["mated"], dtype=bool)
        scores = np.array(group["score"], dtype=np.float64)
        if not mated.any() or mated.all():
            kind = "mated" if not mated.any() else "non-mated"
            raise InputFormatError(comparisons, None, "mated", f"dataset {dataset!r} has no {kind} comparisons")
        try:
            protocol = ProtocolScores.from_comparisons(a, b, mated, scores, fmr)
        except MetricInputError as exc:  # e.g. too few non-mated comparisons for this FMR
            raise InputFormatError(comparisons, None, None, f"dataset {dataset!r}, FR model {fr_model!r}: {exc}") from exc
        protocols.append({"dataset": dataset, "fr_model": fr_model, "fmr": fmr, "threshold": protocol.threshold,
                          "n_mated": int(mated.sum()), "n_non_mated": protocol.n_non_mated,
                          "fr_sanity": fr_sanity(scores, mated)})
        for method in methods:
            values = [quality_table[(quality_dataset, s)].get(method) for s in ids]
            if all(v is None for v in values):
                continue  # long layout: this method did not score this dataset
            quality = np.array([math.nan if v is None else v for v in values])
            if method in lower_is_better:
                quality = -quality
            quality, n_failures = apply_failure_policy(
                quality, on_failure=on_failure, method=method, dataset=dataset, ids=ids
            )
            row = result_row(
                protocol, quality, discard_limits, dataset=dataset, fr_model=fr_model, method=method, labels={},
                method_version=None, quality_fr_model=None, n_failures=n_failures, runtime=None,
                sample_quality=quality,
            )
            row["leakage"] = None  # unknown here: no registered dataset
            rows.append(row)
    config = {
        "command": "evaluate",
        "comparisons": str(comparisons),
        "qualities": str(qualities),
        "fmr": fmr,
        "discard_limits": list(discard_limits),
        "distance": distance,
        "lower_is_better": list(lower_is_better),
        "on_failure": on_failure,
    }
    return make_document(config=config, results=rows, components={}, protocols=protocols, device="n/a")
