"""Parquet output: ``results.parquet`` and ``edc_curves.parquet`` (the frames of the CSV writer).

pandas writes Parquet through pyarrow, a dependency of fiqabench; where it is missing anyway
(an install with ``--no-deps``, a broken wheel) the writer raises :class:`~fiqabench.errors.ComponentUnavailableError` before doing
anything, so no half set of files is left behind.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fiqabench.errors import ComponentUnavailableError
from fiqabench.files import atomic_write
from fiqabench.results import parse as load

__all__ = ["write"]


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise ComponentUnavailableError(
            f"report format 'parquet' needs pyarrow, which cannot be imported ({exc}):"
            " pip install 'pyarrow>=14'"
        ) from exc


def write(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write ``results.parquet`` and ``edc_curves.parquet``."""
    _require_pyarrow()
    from fiqabench.report.tables import edc_frame, results_frame

    view = load(results)
    written = []
    for name, frame in (("results.parquet", results_frame(view)), ("edc_curves.parquet", edc_frame(view))):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, engine="pyarrow", index=False)
        written.append(atomic_write(Path(out_dir) / name, buffer.getvalue()))
    return written
