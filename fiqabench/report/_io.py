r"""Atomic file writes for the report writers.

A report is often regenerated over an old one (``fiqabench report`` after a rerun); writing to a
temporary file in the same directory and renaming it means a reader, or a LaTeX build that
``\input``s a table, sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fiqabench.cache import atomic_write_bytes

__all__ = ["atomic_write", "write_table_files"]


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    r"""Write ``data`` (text is UTF-8 encoded as is) to ``path`` atomically; return the path.

    The parent directory is created if needed; the file gets the usual permissions
    (:func:`fiqabench.cache.atomic_write_bytes` does the work).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     target = atomic_write(Path(tmp) / "sub" / "a.txt", "x\n")
    ...     _ = atomic_write(target, b"y")
    ...     (target.read_text(), sorted(p.name for p in target.parent.iterdir()))
    ('y', ['a.txt'])
    """
    path = Path(path)
    atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else bytes(data))
    return path


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
    from fiqabench.report._schema import limit_key, load

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
