"""Pure-numpy metrics: FMR threshold, non-interpolated EDC, normalised pAUC, runtime statistics.

Importing this package never imports torch.
"""

from __future__ import annotations

from fiqabench.metrics.edc import (
    EDCCurve,
    edc,
    fmr_threshold,
    pair_quality,
    pauc,
    similarity_from_distance,
)
from fiqabench.metrics.runtime import RuntimeStats, runtime_stats

__all__ = [
    "EDCCurve",
    "RuntimeStats",
    "edc",
    "fmr_threshold",
    "pair_quality",
    "pauc",
    "runtime_stats",
    "similarity_from_distance",
]
