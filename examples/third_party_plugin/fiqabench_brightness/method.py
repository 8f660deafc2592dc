"""An exposure heuristic: images far from a mid-grey mean luminance are of lower quality."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# ITU-R BT.601 luma weights.
LUMA = np.array([0.299, 0.587, 0.114])


class ExposureQuality:
    def __init__(self, *, options: Mapping[str, Any], device: str) -> None:
        self.target = float(options["target"])

    def score(self, batch: Any, *, fr_model: Any) -> np.ndarray:
        luminance = (batch.images.astype(np.float64) / 255.0) @ LUMA
        return -np.abs(luminance.mean(axis=(1, 2)) - self.target)
