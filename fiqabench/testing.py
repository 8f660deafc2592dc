"""Conformance checks for plugin authors: call them from your own tests.

Each check raises :class:`ConformanceError` with a message saying which rule failed::

    from fiqabench.testing import check_method, make_batch
    def test_my_method_conforms():
        check_method(MyMethod(options={}, device="cpu"), make_batch(8))
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from fiqabench.api import SampleBatch
from fiqabench.errors import FiqabenchError

__all__ = ["ConformanceError", "check_dataset", "check_fr_model", "check_method", "make_batch"]


class ConformanceError(FiqabenchError, AssertionError):
    """A plugin broke the contract."""


def make_batch(n: int = 8, size: int = 32, seed: int = 0, metadata: dict[str, Any] | None = None) -> SampleBatch:
    """A batch of ``n`` random uint8 RGB images with ids, metadata and per-sample seeds."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    ids = tuple(f"sample{i:04d}" for i in range(n))
    seeds = np.array(
        [int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "little") & (2**63 - 1) for s in ids],
        dtype=np.int64,
    )
    meta = tuple(dict(metadata or {"severity": 0.0}) for _ in range(n))
    return SampleBatch(ids=ids, images=images, metadata=meta, seeds=seeds)


def _subset(batch: SampleBatch, index: np.ndarray) -> SampleBatch:
    return SampleBatch(
        ids=tuple(batch.ids[i] for i in index),
        images=batch.images[index],
        metadata=tuple(batch.metadata[i] for i in index),
        seeds=batch.seeds[index],
    )


def check_method(method: Any, batch: SampleBatch, *, fr_model: Any = None, atol: float = 1e-5) -> np.ndarray:
    """Shape and dtype, no mutation of the input, determinism, batch-size and order invariance."""
    before = batch.images.copy()
    scores = np.asarray(method.score(batch, fr_model=fr_model))
    if scores.shape != (len(batch),):
        raise ConformanceError(f"score() must return shape ({len(batch)},), got {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        raise ConformanceError(f"score() must return floats, got {scores.dtype}")
    if not np.array_equal(before, batch.images):
        raise ConformanceError("score() modified the input images in place")
    again = np.asarray(method.score(batch, fr_model=fr_model))
    if not np.allclose(scores, again, atol=atol, rtol=0, equal_nan=True):
        raise ConformanceError("score() is not deterministic for the same batch and seeds")
    order = np.arange(len(batch))[::-1]
    reversed_scores = np.asarray(method.score(_subset(batch, order), fr_model=fr_model))[::-1]
    if not np.allclose(scores, reversed_scores, atol=atol, rtol=0, equal_nan=True):
        raise ConformanceError("score() depends on the order of samples in the batch (seed per sample)")
    half = max(1, len(batch) // 2)
    parts = [np.arange(0, half), np.arange(half, len(batch))]
    split = np.concatenate([np.asarray(method.score(_subset(batch, p), fr_model=fr_model)) for p in parts if p.size])
    if not np.allclose(scores, split, atol=atol, rtol=0, equal_nan=True):
        raise ConformanceError("score() depends on the batch size (seed each sample from batch.seeds)")
    return scores


def check_fr_model(model: Any, images: np.ndarray) -> np.ndarray:
    """Embedding shape/dtype, the declared input space, and batch-size invariance."""
    embeddings = np.asarray(model.embed(images))
    if embeddings.shape != (len(images), model.embedding_size):
        raise ConformanceError(
            f"embed() must return ({len(images)}, {model.embedding_size}), got {embeddings.shape}"
        )
    if embeddings.dtype != np.float32:
        raise ConformanceError(f"embed() must return float32, got {embeddings.dtype}")
    if hasattr(model, "preprocess"):
        x = model.preprocess(images)
        height, width = model.input_space.size
        if tuple(x.shape) != (len(images), 3, height, width):
            raise ConformanceError(f"preprocess() gave {tuple(x.shape)}, expected (N, 3, {height}, {width})")
    one_by_one = np.concatenate([np.asarray(model.embed(images[i : i + 1])) for i in range(len(images))])
    if not np.allclose(embeddings, one_by_one, atol=1e-4, rtol=1e-4):
        raise ConformanceError("embed() depends on the batch size (batch norm left in training mode?)")
    return embeddings


def check_dataset(dataset: Any, n_images: int = 4) -> None:
    """Samples, comparisons and images agree with each other."""
    samples = dataset.samples()
    if len(set(samples.ids)) != len(samples.ids):
        raise ConformanceError("sample ids must be unique")
    comparisons = dataset.comparisons()
    templates = dataset.templates()
    n_items = len(templates.ids) if templates is not None else len(samples)
    for name in ("a", "b"):
        index = np.asarray(getattr(comparisons, name))
        if index.size and (index.min() < 0 or index.max() >= n_items):
            raise ConformanceError(f"comparisons.{name} indexes outside 0..{n_items - 1}")
    mated = np.asarray(comparisons.mated, dtype=bool)
    if templates is None and len(samples.subjects) == len(samples):
        subjects = np.asarray(samples.subjects)
        same = subjects[np.asarray(comparisons.a)] == subjects[np.asarray(comparisons.b)]
        if not np.array_equal(same, mated):
            raise ConformanceError("mated flags disagree with the subjects of the compared samples")
    images = dataset.read_images(list(range(min(n_images, len(samples)))))
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ConformanceError(f"read_images() must return uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if dataset.manifest_digest() != dataset.manifest_digest():
        raise ConformanceError("manifest_digest() is not stable")
