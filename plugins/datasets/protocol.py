"""Reading protocol files: every problem is one line ``path:line: what is wrong``.

Why one module: a benchmark's text files (LFW's ``pairs.txt``, CFP's split lists, IJB-C's meta
files, ...) are where a wrong download, a truncated copy or a hand edit shows up. Every reader
goes through :class:`ProtocolFile`, so they all

- refuse a directory, a missing or unreadable file with the file named;
- name the file and line of the first malformed line (wrong column count, non-numeric field,
  bad label, duplicate pair), as :class:`fiqabench.errors.InputFormatError`, which the CLI turns
  into one line on stderr and exit status 2;
- record the file's sha256 for the dataset's ``manifest_digest``, so the cache can never mix
  two versions of a protocol.

Large numeric tables (IJB-C's 15.7 M pair lines) are parsed by pandas' C reader; if that reader
fails or finds a hole, the file is re-read line by line only to name the first bad line, so the
fast path never gives a vaguer error than the slow one.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from fiqabench.errors import InputFormatError, MissingArtifactError

__all__ = [
    "ProtocolFile",
    "check_dir",
    "check_file",
    "find_missing",
    "missing_images_error",
    "duplicate_pair_rows",
]

#: How many missing images an error lists by name.
SHOW_MISSING = 5


def check_file(path: Path, what: str) -> Path:
    """``path`` must be a readable regular file (a directory in its place is named as such)."""
    path = Path(path)
    if path.is_dir():
        raise InputFormatError(path, None, None, f"{what} is a directory, expected a file")
    if not path.is_file():
        raise MissingArtifactError(f"{path}: {what} not found")
    return path


def check_dir(path: Path, what: str) -> Path:
    """``path`` must be a directory (a file in its place is named as such)."""
    path = Path(path)
    if path.is_file():
        raise InputFormatError(path, None, None, f"{what} is a file, expected a folder")
    if not path.is_dir():
        raise MissingArtifactError(f"{path}: {what} not found")
    return path


class ProtocolFile:
    """One protocol text file, read once; lines are numbered from 1 as editors show them."""

    def __init__(self, path: Path | str, what: str) -> None:
        self.path = check_file(Path(path), what)
        self.what = what
        try:
            self.data = self.path.read_bytes()
        except OSError as exc:
            raise InputFormatError(self.path, None, None, f"cannot read {what}: {exc.strerror or exc}") from None
        self.sha256 = hashlib.sha256(self.data).hexdigest()

    def release(self) -> None:
        """Drop the bytes once parsed (the digest stays): IJB-C's pair file is 220 MB."""
        self.data = b""

    # -- errors -------------------------------------------------------------------------------
    def error(self, line: int | None, message: str, field: str | None = None) -> InputFormatError:
        return InputFormatError(self.path, line, field, message)

    # -- line access ----------------------------------------------------------------------------
    def lines(self) -> Iterator[tuple[int, str]]:
        """``(line number, text)`` for every line, without the line end (``\\n`` or ``\\r\\n``)."""
        data = self.data[3:] if self.data.startswith(b"\xef\xbb\xbf") else self.data
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise self.error(number, f"not UTF-8 text (byte {exc.start + 1} of the line)") from None
            yield number, text

    def rows(self, sep: str | None = None) -> Iterator[tuple[int, list[str]]]:
        """Non-blank lines split on ``sep`` (default: any whitespace), with their line numbers."""
        for number, text in self.lines():
            if not text.strip():
                continue
            tokens = text.split() if sep is None else [t.strip() for t in text.split(sep)]
            yield number, tokens

    # -- fields ---------------------------------------------------------------------------------
    def columns(self, line: int, tokens: Sequence[str], allowed: Sequence[int], layout: str) -> None:
        if len(tokens) not in allowed:
            expected = " or ".join(str(n) for n in allowed)
            raise self.error(line, f"expected {expected} columns ({layout}), found {len(tokens)}")

    def integer(self, line: int, text: str, field: str, minimum: int | None = None) -> int:
        try:
            value = int(text)
        except ValueError:
            raise self.error(line, f"expected an integer, found {text!r}", field) from None
        if minimum is not None and value < minimum:
            raise self.error(line, f"must be at least {minimum}, found {value}", field)
        return value

    def number(self, line: int, text: str, field: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise self.error(line, f"expected a number, found {text!r}", field) from None
        if not np.isfinite(value):
            raise self.error(line, f"expected a finite number, found {text!r}", field)
        return value

    def label(self, line: int, text: str, field: str = "label") -> bool:
        if text in {"1", "true", "True"}:
            return True
        if text in {"0", "false", "False"}:
            return False
        raise self.error(line, f"expected 1 or 0 (mated or not), found {text!r}", field)

    # -- fast numeric tables ----------------------------------------------------------------------
    def numeric_table(self, names: Sequence[str], kinds: Sequence[str], first: int = 0) -> dict[str, np.ndarray]:
        """Whitespace-separated columns ``names``: ``kinds`` ``"i"`` (int64), ``"f"`` (float64)
        or ``"s"`` (string); columns before ``first`` are skipped.

        pandas reads the bulk; any failure or hole falls back to :meth:`_validate_table`, which
        names the first bad line.
        """
        import io

        import pandas as pd

        # One spare column catches lines with too many fields (pandas would otherwise take a
        # first column it has no name for as the index, silently); index_col=False forbids that.
        # Integer columns are read as int64 directly: a hole or a non-integer raises, and then
        # the line-by-line pass names the line.
        kind_dtype = {"s": object, "i": np.int64, "f": np.float64}
        if not self.data.strip():
            return {n: np.zeros(0, dtype=str if k == "s" else kind_dtype[k]) for n, k in zip(names, kinds)}
        extra = "__extra__"
        kind_dtype = {"s": object, "i": np.int64, "f": np.float64}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frame = pd.read_csv(
                    io.BytesIO(self.data),
                    sep=r"\s+",
                    header=None,
                    names=[*names, extra],
                    index_col=False,
                    dtype={**{n: kind_dtype[k] for n, k in zip(names, kinds)}, extra: np.float64},
                    engine="c",
                    low_memory=False,
                    skip_blank_lines=True,
                    na_filter=True,
                    keep_default_na=False,
                    na_values=[""],
                )
        except (ValueError, TypeError, OverflowError, pd.errors.ParserError, UnicodeDecodeError):
            self._validate_table(names, kinds)
            raise self.error(None, "could not be parsed as a table") from None  # not reached
        if not frame[extra].isna().all():
            self._validate_table(names, kinds)
        out: dict[str, np.ndarray] = {}
        for name, kind in zip(names, kinds):
            column = frame[name].to_numpy()
            if kind == "s":
                if frame[name].isna().any():
                    self._validate_table(names, kinds)
                out[name] = column.astype(str)
            elif kind == "f":
                if not np.isfinite(column).all():
                    self._validate_table(names, kinds)
                out[name] = column
            else:
                out[name] = column.astype(np.int64, copy=False)
        return out

    def _validate_table(self, names: Sequence[str], kinds: Sequence[str]) -> None:
        """Re-read line by line and raise at the first malformed line."""
        n = len(names)
        for number, tokens in self.rows():
            self.columns(number, tokens, (n,), " ".join(names))
            for name, kind, token in zip(names, kinds, tokens):
                if kind == "i":
                    self.integer(number, token, name)
                elif kind == "f":
                    self.number(number, token, name)
        raise self.error(None, "could not be parsed as a table of " + " ".join(names))

    def line_numbers(self) -> np.ndarray:
        """The line number of each non-blank line, in order (to name rows found bad in bulk)."""
        data = self.data[3:] if self.data.startswith(b"\xef\xbb\xbf") else self.data
        lines = data.split(b"\n")
        return np.asarray([i for i, raw in enumerate(lines, start=1) if raw.strip()], dtype=np.int64)


def find_missing(paths: Sequence[Path]) -> tuple[list[int], list[int]]:
    """Indices of ``paths`` that are missing, and of those that are directories.

    Lists each parent folder once (``os.scandir``; no stat per file for most file systems), so
    checking IJB-C's 469,375 crops costs one directory read.
    """
    listing: dict[str, dict[str, bool] | None] = {}
    missing: list[int] = []
    dirs: list[int] = []
    for i, path in enumerate(paths):
        parent, name = os.path.split(os.fspath(path))
        entries = listing.get(parent, ...)
        if entries is ...:
            try:
                with os.scandir(parent or ".") as it:
                    entries = {e.name: e.is_dir() for e in it}
            except OSError:
                entries = None
            listing[parent] = entries
        if entries is None or name not in entries:
            missing.append(i)
        elif entries[name]:
            dirs.append(i)
    return missing, dirs


def missing_images_error(
    root: Path,
    rel_paths: Sequence[str],
    missing: Sequence[int],
    dirs: Sequence[int],
    where: Sequence[tuple[ProtocolFile, int]],
) -> InputFormatError:
    """One line: the first missing image with the protocol line that names it, the count, the first few."""
    bad = sorted(set(missing) | set(dirs))
    first = bad[0]
    protocol, line = where[first]
    shown = ", ".join(rel_paths[i] for i in bad[:SHOW_MISSING]) + (" ..." if len(bad) > SHOW_MISSING else "")
    what = "is a directory, not an image" if first in set(dirs) else "not found"
    return protocol.error(
        line,
        f"image {rel_paths[first]} {what} under {root} ({len(bad)} of {len(rel_paths)} images missing "
        f"or not files: {shown}); check the dataset's root option and layout",
    )


def duplicate_pair_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Positions of pairs that repeat an earlier pair, in either order (``(x, y)`` = ``(y, x)``).

    A plain sort finds whether there is any repeat (1-2 s for IJB-C's 15.7 M pairs); only then
    does a stable argsort find which rows repeat.

    >>> duplicate_pair_rows(np.array([0, 1, 2, 0]), np.array([1, 2, 0, 2])).tolist()
    [3]
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keys = lo * (int(hi.max()) + 1) + hi
    del lo, hi
    ordered = np.sort(keys)
    if not (ordered[1:] == ordered[:-1]).any():
        return np.zeros(0, dtype=np.int64)
    del ordered
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    repeat = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1]) + 1
    return np.sort(order[repeat])
