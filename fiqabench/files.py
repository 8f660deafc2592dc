"""Files: atomic writes and content digests, for the cache, the reports and plugins alike.

Pure standard library (no numpy, no torch), so any plugin may use it at registration time.

- :func:`atomic_write_bytes` / :func:`atomic_write`: a temporary file in the same directory, then a
  rename, so a reader (a resumed run, a LaTeX build that ``\\input``s a table) sees the old file
  or the new one, never half of one.
- :func:`file_digest`: sha256 of a file's bytes, remembered per (path, size, mtime) in a process.
- :func:`folder_digest`: a digest of a folder's listing (relative paths, sizes, times): reading
  every byte of a dataset folder would take minutes, and a changed file changes its size or time.
- :func:`path_digest`: either of the two for an ``is_path`` option value (weights, image folders).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator
from typing import IO
from pathlib import Path

__all__ = [
    "atomic_open", "atomic_write", "atomic_write_bytes", "atomic_write_text", "file_digest", "folder_digest",
    "path_digest",
]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename.

    The temporary file is opened with the default mode (not ``tempfile.mkstemp``'s 0600), so
    results get the usual permissions; its name is unique per process and call, so concurrent
    writers (several workers) never collide.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    r"""Write text (UTF-8) or bytes to ``path`` atomically; return the path.

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


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO]:
    r"""Stream a file that appears at ``path`` only once the block ends without an error (for
    files too large to hold in memory, like IJB-C's 15.7 M comparison scores).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with atomic_open(Path(tmp) / "a.csv") as out:
    ...         _ = out.write("x\n")
    ...     (Path(tmp) / "a.csv").read_text()
    'x\n'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        kwargs = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with open(tmp, mode.replace("w", "x"), **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """sha256 of a file's bytes, as hex (remembered per path, size and modification time)."""
    p = Path(path)
    stat = p.stat()
    memo = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with open(p, "rb") as handle:
            while chunk := handle.read(chunk_size):
                digest.update(chunk)
        _FILE_DIGESTS[memo] = digest.hexdigest()
    return _FILE_DIGESTS[memo]


def folder_digest(root: str | os.PathLike[str], files: Iterable[Path] | None = None) -> str:
    """sha256 of the relative paths, sizes and modification times of ``files`` below ``root``
    (default: every file below it)."""
    root = Path(root)
    chosen = sorted(p for p in root.rglob("*") if p.is_file()) if files is None else list(files)
    digest = hashlib.sha256()
    for path in chosen:
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def path_digest(path: str | os.PathLike[str]) -> str:
    """What identifies an ``is_path`` option's value in cache keys: a file's sha256, a folder's
    listing digest (prefixed ``folder:``), or ``missing:PATH``."""
    p = Path(path)
    if p.is_dir():
        return "folder:" + folder_digest(p)
    if not p.is_file():
        return f"missing:{path}"
    return file_digest(p)
