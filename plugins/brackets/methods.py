"""``oracle`` and ``random``: the lower and upper brackets every FIQA method sits between."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fiqabench.api import FaceRecognitionModel, SampleBatch
from fiqabench.errors import MethodFailure


class Oracle:
    """Quality = -severity of the degradation recorded with each synthetic image.

    Not a FIQA method but the best a method could know about the data's degradations; a
    method near the oracle's pAUC has learned what the benchmark controls.
    """

    def __init__(self, *, options: Mapping[str, Any], device: str) -> None:
        self.options = dict(options)

    def score(self, batch: SampleBatch, *, fr_model: FaceRecognitionModel | None) -> np.ndarray:
        try:
            return -np.array([float(m["severity"]) for m in batch.metadata])
        except KeyError:
            raise MethodFailure(
                "oracle needs a 'severity' field in the sample metadata (only synthetic datasets record it)"
            ) from None


class RandomQuality:
    """Quality drawn from each sample's own seed: independent of batch size and order."""

    def __init__(self, *, options: Mapping[str, Any], device: str) -> None:
        self.distribution = options.get("distribution", "uniform")

    def score(self, batch: SampleBatch, *, fr_model: FaceRecognitionModel | None) -> np.ndarray:
        out = np.empty(len(batch))
        for i, seed in enumerate(batch.seeds):
            rng = np.random.default_rng(int(seed))
            out[i] = rng.random() if self.distribution == "uniform" else rng.normal()
        return out
