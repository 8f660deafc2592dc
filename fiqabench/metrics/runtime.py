"""Runtime statistics from timed batches.

A method's runtime is measured per batch (the method call on decoded images, its own FR passes
included; decoding and cache I/O excluded). The first ``warmup_batches`` are dropped (lazy
initialisation, allocator and kernel warm-up); each remaining batch gives one ms-per-image
value, and the statistics are over those values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fiqabench.errors import MetricInputError

__all__ = ["RuntimeStats", "runtime_stats"]


@dataclass(frozen=True)
class RuntimeStats:
    """Mean, standard deviation and median milliseconds per image over the timed batches."""

    mean: float
    std: float
    median: float
    n_batches: int
    warmup_batches: int
    batch_size: int
    device: str
    host: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def runtime_stats(
    batch_seconds: object,
    batch_images: object,
    *,
    warmup_batches: int = 1,
    batch_size: int,
    device: str,
    host: str,
) -> RuntimeStats:
    """Statistics of ms per image over the batches after the warm-up ones.

    When there are no more batches than warm-up batches, nothing would be left: then every
    batch is used and ``warmup_batches`` is recorded as 0, so the record says what was done.

    >>> stats = runtime_stats([1.0, 0.2, 0.4], [10, 10, 10], warmup_batches=1, batch_size=10,
    ...                       device="cpu", host="h")
    >>> stats.mean, stats.median, round(stats.std, 6), stats.n_batches
    (30.0, 30.0, 10.0, 2)
    """
    seconds = np.asarray(batch_seconds, dtype=np.float64)
    images = np.asarray(batch_images, dtype=np.float64)
    if seconds.shape != images.shape or seconds.ndim != 1:
        raise MetricInputError(
            f"batch_seconds and batch_images must be 1-D of equal length, got {seconds.shape} and {images.shape}"
        )
    if seconds.size == 0:
        raise MetricInputError("no timed batches")
    if (images <= 0).any() or (seconds < 0).any() or np.isnan(seconds).any():
        raise MetricInputError("batch times must be >= 0 and batch sizes > 0")
    if warmup_batches < 0:
        raise MetricInputError(f"warmup_batches must be >= 0, got {warmup_batches}")
    if seconds.size <= warmup_batches:
        warmup_batches = 0
    per_image_ms = seconds[warmup_batches:] / images[warmup_batches:] * 1000.0
    return RuntimeStats(
        mean=float(per_image_ms.mean()),
        std=float(per_image_ms.std(ddof=0)),
        median=float(np.median(per_image_ms)),
        n_batches=int(per_image_ms.size),
        warmup_batches=int(warmup_batches),
        batch_size=int(batch_size),
        device=device,
        host=host,
    )
