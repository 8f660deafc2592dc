"""The cache: one relocatable root, content-addressed keys, atomic shards, completeness markers.

Layout under the root (``--cache-dir``, else ``FIQABENCH_CACHE_DIR``, else
``$XDG_CACHE_HOME/fiqabench``)::

    v1/<kind>/<dataset>/<component>/<key>/part-<lo>-<hi>.npz ... meta.json

An entry is complete when ``meta.json`` exists; the driver writes it last. Each shard (the items
``lo..hi-1``) is written to a temporary file in the same directory and renamed into place, so a
crash (Ctrl-C, ``kill -9``, a lost worker) leaves whole shards or nothing, and the next run fills
the gaps, whatever its shard size. Arrays are stored with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fiqabench.errors import ConfigError
from fiqabench.files import atomic_write_bytes, atomic_write_text, folder_digest

FORMAT_VERSION = "v1"
_SHARD_NAME = re.compile(r"part-(\d{9})-(\d{9})\.npz")
KINDS = ("embeddings", "similarities", "quality")

_CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by fiqabench.\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)


def resolve_cache_root(cli_value: str | os.PathLike[str] | None = None) -> Path:
    """``--cache-dir``, else ``FIQABENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/fiqabench``."""
    if cli_value:
        return Path(cli_value).expanduser()
    env = os.environ.get("FIQABENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "fiqabench"


def canonical_json(payload: Any) -> str:
    """JSON with sorted keys and no whitespace: equal payloads give equal strings."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str, allow_nan=True)


def cache_key(payload: Mapping[str, Any]) -> str:
    """First 16 hex digits of the sha256 of the canonical JSON of ``payload``.

    >>> cache_key({"b": 1, "a": [1, 2]}) == cache_key({"a": [1, 2], "b": 1})
    True
    >>> len(cache_key({}))
    16
    """
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-._@" else "_" for c in name)


def dataset_matches(entry_dataset: str, wanted: str | None) -> bool:
    """``wanted`` is ``NAME@VERSION`` or a bare ``NAME`` (every version); None matches all."""
    if wanted is None:
        return True
    safe = _safe_name(wanted)
    return entry_dataset == safe or ("@" not in safe and entry_dataset.startswith(safe + "@"))


@dataclass(frozen=True)
class CacheEntry:
    """One cached value: shards plus a ``meta.json`` that marks it complete."""

    path: Path

    @property
    def meta_path(self) -> Path:
        return self.path / "meta.json"

    def is_complete(self) -> bool:
        return self.meta_path.is_file()

    def meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text())

    # Shards are named by the sample range they hold, ``part-<lo>-<hi>.npz`` (hi exclusive), so
    # a cache filled with one shard size serves another: a resumed run fills the gaps.
    def shard_path(self, lo: int, hi: int) -> Path:
        return self.path / f"part-{lo:09d}-{hi:09d}.npz"

    def shard_ranges(self) -> list[tuple[int, int]]:
        """The ``(lo, hi)`` ranges of the shards present, sorted."""
        if not self.path.is_dir():
            return []
        ranges = []
        for file in self.path.glob("part-*-*.npz"):
            match = _SHARD_NAME.fullmatch(file.name)
            if match:
                ranges.append((int(match.group(1)), int(match.group(2))))
        return sorted(ranges)

    def missing_ranges(self, n_items: int, shard_size: int) -> list[tuple[int, int]]:
        """The ranges still to compute, as shards of at most ``shard_size`` items.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     entry = CacheEntry(Path(tmp))
        ...     entry.write_shard(3, 5, {"x": np.zeros(2)})
        ...     entry.missing_ranges(9, 2)
        [(0, 2), (2, 3), (5, 7), (7, 9)]
        """
        missing, position = [], 0
        for lo, hi in [*self.tiling(n_items, strict=False), (n_items, n_items)]:
            for start in range(position, lo, shard_size):
                missing.append((start, min(lo, start + shard_size)))
            position = max(position, hi)
        return missing

    def tiling(self, n_items: int, *, strict: bool) -> list[tuple[int, int]]:
        """Non-overlapping shards covering ``[0, n_items)`` from left to right (the first that
        starts at each position; shards of another geometry left by a concurrent writer are
        skipped); with ``strict``, a gap is an error."""
        chosen, position = [], 0
        for lo, hi in self.shard_ranges():
            if lo == position and hi <= n_items:
                chosen.append((lo, hi))
                position = hi
            elif lo > position and not strict and hi <= n_items:
                chosen.append((lo, hi))
                position = hi
        if strict and position != n_items:
            raise ConfigError(f"cache entry {self.path}: shards cover [0, {position}) of {n_items} items")
        return chosen

    def has_all(self, n_items: int) -> bool:
        return not self.missing_ranges(n_items, max(1, n_items))

    def write_shard(self, lo: int, hi: int, arrays: Mapping[str, np.ndarray]) -> None:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
        atomic_write_bytes(self.shard_path(lo, hi), buffer.getvalue())

    def read_shard(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        with np.load(self.shard_path(lo, hi), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}

    def read_shards(self, n_items: int) -> dict[str, np.ndarray]:
        """Concatenate the shards that tile ``[0, n_items)``, array by array."""
        parts = [self.read_shard(lo, hi) for lo, hi in self.tiling(n_items, strict=True)]
        if not parts:
            return {}
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def write_array(self, name: str, array: np.ndarray) -> None:
        import io

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        atomic_write_bytes(self.path / f"{name}.npy", buffer.getvalue())

    def read_array(self, name: str) -> np.ndarray:
        return np.load(self.path / f"{name}.npy", allow_pickle=False)

    def finalize(self, meta: Mapping[str, Any]) -> None:
        """Mark the entry complete (written last)."""
        atomic_write_text(self.meta_path, json.dumps(meta, indent=2, sort_keys=True, default=str))


class Cache:
    """The cache root and its entries."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.base = self.root / FORMAT_VERSION

    def ensure(self) -> None:
        try:
            self.base.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create cache directory {self.root}: {exc}") from exc
        tag = self.root / "CACHEDIR.TAG"
        if not tag.exists():
            atomic_write_text(tag, _CACHEDIR_TAG)
            atomic_write_text(
                self.root / "README.md",
                "# fiqabench cache\n\nEmbeddings, comparison scores and quality scores, content-addressed.\n"
                "Safe to delete (`fiqabench cache clear`); everything here is recomputed on demand.\n",
            )

    def entry(self, kind: str, dataset: str, component: str, key: str) -> CacheEntry:
        if kind not in KINDS:
            raise ValueError(f"unknown cache kind {kind!r}")
        return CacheEntry(self.base / kind / _safe_name(dataset) / _safe_name(component) / key)

    def iter_entries(self) -> Iterator[tuple[str, str, str, CacheEntry]]:
        for kind in KINDS:
            kind_dir = self.base / kind
            if not kind_dir.is_dir():
                continue
            for dataset_dir in sorted(p for p in kind_dir.iterdir() if p.is_dir()):
                for component_dir in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
                    for key_dir in sorted(p for p in component_dir.iterdir() if p.is_dir()):
                        yield kind, dataset_dir.name, component_dir.name, CacheEntry(key_dir)

    def info(self, *, dataset: str | None = None) -> list[dict[str, Any]]:
        rows = []
        for kind, dataset_dir, component, entry in self.iter_entries():
            if not dataset_matches(dataset_dir, dataset):
                continue
            size = sum(f.stat().st_size for f in entry.path.iterdir() if f.is_file())
            rows.append(
                {
                    "kind": kind,
                    "dataset": dataset_dir,
                    "component": component,
                    "key": entry.path.name,
                    "complete": entry.is_complete(),
                    "bytes": size,
                }
            )
        return rows

    def clear(self, *, dataset: str | None = None, kind: str | None = None) -> int:
        """Delete entries (all, or those of one dataset and/or kind); returns how many."""
        removed = 0
        for entry_kind, entry_dataset, _, entry in list(self.iter_entries()):
            if not dataset_matches(entry_dataset, dataset):
                continue
            if kind is not None and entry_kind != kind:
                continue
            shutil.rmtree(entry.path)
            removed += 1
        return removed
