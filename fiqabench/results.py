"""``results.json``: the versioned record of a run, from which every table and plot is made.

Schema (version 1)::

    {"schema_version": 1, "created": ISO-8601 UTC, "fiqabench_version": "...",
     "environment": {"host", "platform", "python", "numpy", "torch", "device", "cpu"},
     "config": {... the full run configuration ...},
     "metric": {"curve": "fnm-edc", "convention": ..., "pair_quality": "min", "interpolation": "step"},
     "components": {"methods": {name: {"version", "options", "plugin", "distribution"}}, ...},
     "protocols": [{"dataset", "fr_model", "threshold", "fmr", "n_mated", "n_non_mated", ...}],
     "results": [{"dataset", "fr_model", "method", "quality_fr_model", "fmr", "threshold",
                  "fnmr_at_zero", "n_mated", "n_non_mated", "pauc": {"0.2": ..., "0.3": ...},
                  "pauc_raw": {...}, "pauc_null_reason", "runtime_ms_per_image", "n_failures",
                  "edc": {"discard_fraction": [...], "fnmr": [...], "interpolation"},
                  "quality_histogram": {"bin_edges", "counts"}, ...labels...}]}

``pauc`` values are normalised by FNMR(0) x limit and are ``null`` (with ``pauc_null_reason``)
when FNMR(0) is 0.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fiqabench import __version__
from fiqabench.cache import atomic_write_text
from fiqabench.errors import InputFormatError

SCHEMA_VERSION = 1
REQUIRED_ROW_FIELDS = (
    "dataset",
    "fr_model",
    "method",
    "fmr",
    "threshold",
    "fnmr_at_zero",
    "n_mated",
    "n_non_mated",
    "pauc",
)


def environment(device: str = "cpu") -> dict[str, Any]:
    """Host and library versions (read from package metadata: torch is not imported for this)."""
    import importlib.metadata

    import numpy

    try:
        torch_version: str | None = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch_version,
        "device": device,
    }


def _jsonable(value: Any) -> Any:
    """NaN and infinities are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def make_document(
    *,
    config: dict[str, Any],
    results: list[dict[str, Any]],
    components: dict[str, Any],
    protocols: list[dict[str, Any]],
    device: str,
    metric: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fiqabench_version": __version__,
        "environment": environment(device),
        "config": config,
        "metric": metric
        or {
            "curve": "fnm-edc",
            "convention": "schlett2023-fixed-threshold",
            "pair_quality": "min",
            "interpolation": "step",
            "threshold": "fixed once at 0 % discard from all non-mated scores",
        },
        "components": components,
        "protocols": protocols,
        "results": results,
    }


def write_results(document: dict[str, Any], out_dir: Path) -> Path:
    path = Path(out_dir) / "results.json"
    atomic_write_text(path, json.dumps(_jsonable(document), indent=1, allow_nan=False) + "\n")
    return path


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``results.json`` (a file, or a run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise InputFormatError(path, None, None, "no such file; pass a run directory or its results.json")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputFormatError(path, exc.lineno, None, f"invalid JSON: {exc.msg}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFormatError(path, None, None, f"cannot read: {exc}") from exc
    if not isinstance(document, dict):
        raise InputFormatError(path, None, None, "expected a JSON object")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputFormatError(
            path, None, "schema_version", f"expected {SCHEMA_VERSION}, got {version!r}"
        )
    rows = document.get("results")
    if not isinstance(rows, list):
        raise InputFormatError(path, None, "results", "expected a list of rows")
    for index, row in enumerate(rows):
        missing = [field for field in REQUIRED_ROW_FIELDS if field not in row]
        if missing:
            raise InputFormatError(path, None, f"results[{index}]", f"missing {', '.join(missing)}")
    return document
