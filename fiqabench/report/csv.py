"""CSV output: the pAUC tables wide, every row's scalars long, and every EDC point long.

- ``tables/pauc_<limit>.csv``: one line per FR model x method, one column per dataset, ``avg``
  and ``n_avg`` (how many datasets the average covers); empty where there is no value.
- ``results.csv``: one line per row of ``results.json`` with its scalar fields.
- ``edc_curves.csv``: ``dataset,fr_model,method,convention,discard_fraction,fnmr``.

Floats are written at full precision (``repr``), so a CSV read back gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fiqabench.files import atomic_write
from fiqabench.results import limit_key, parse as load
from fiqabench.report.tables import edc_frame, pauc_wide_frame, results_frame

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["write"]


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def write(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write the wide pAUC tables, ``results.csv`` and ``edc_curves.csv``."""
    view = load(results)
    out_dir = Path(out_dir)
    # Everything is rendered before the first write, so bad input leaves no partial set behind.
    files = {
        out_dir / "tables" / f"pauc_{limit_key(limit)}.csv": _csv(pauc_wide_frame(view, limit))
        for limit in view.limits
    }
    files[out_dir / "results.csv"] = _csv(results_frame(view))
    files[out_dir / "edc_curves.csv"] = _csv(edc_frame(view))
    return [atomic_write(path, text) for path, text in files.items()]
