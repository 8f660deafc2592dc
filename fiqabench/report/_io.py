"""Table files shared by the LaTeX and Markdown writers (written atomically, see
:mod:`fiqabench.files`: a report is often regenerated over an old one)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fiqabench.files import atomic_write

__all__ = ["write_table_files"]


def write_table_files(
    results: Any,
    out_dir: str | os.PathLike[str],
    suffix: str,
    render_pauc: Callable[[Any, float], str],
    render_runtime: Callable[[Any], str | None],
) -> list[Path]:
    """``tables/pauc_<limit>.<suffix>`` per discard limit and ``tables/runtime.<suffix>``.

    Shared by the LaTeX and Markdown writers; ``results`` is the parsed ``results.json``.
    """
    from fiqabench.results import limit_key, parse as load

    view = load(results)
    tables_dir = Path(out_dir) / "tables"
    written = [
        atomic_write(tables_dir / f"pauc_{limit_key(limit)}.{suffix}", render_pauc(view, limit))
        for limit in view.limits
    ]
    runtime = render_runtime(view)
    if runtime is not None:
        written.append(atomic_write(tables_dir / f"runtime.{suffix}", runtime))
    return written
