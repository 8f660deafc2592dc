"""Pure-numpy metrics: comparison scores, FMR threshold, non-interpolated EDC, normalised pAUC,
the legacy recomputed-threshold ERC, runtime statistics.

Importing this package never imports torch.
"""

from __future__ import annotations

from fiqabench.metrics.comparisons import (
    PoolingRecord,
    cosine_scores,
    pool_templates,
    template_pair_scores,
)
from fiqabench.metrics.edc import (
    EDCCurve,
    edc,
    fmr_threshold,
    pair_quality,
    pauc,
    similarity_from_distance,
)
from fiqabench.metrics.erc import erc_auc, erc_recomputed
from fiqabench.metrics.runtime import RuntimeStats, runtime_stats

__all__ = [
    "EDCCurve",
    "PoolingRecord",
    "cosine_scores",
    "erc_auc",
    "erc_recomputed",
    "pool_templates",
    "template_pair_scores",
    "RuntimeStats",
    "edc",
    "fmr_threshold",
    "pair_quality",
    "pauc",
    "runtime_stats",
    "similarity_from_distance",
]
