"""``oracle`` and ``random``: the lower and upper brackets every FIQA method sits between;
``sharpness`` and ``embedding-norm``: trivial references every method must beat."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fiqabench.api import FaceRecognitionModel, SampleBatch
from fiqabench.errors import ConfigError, MethodFailure

#: ITU-R BT.601 luma weights (OpenCV's ``COLOR_RGB2GRAY``).
LUMA = np.array([0.299, 0.587, 0.114])


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


def laplacian_variance(images: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of the grey image, per image of ``(N, H, W, 3)`` uint8.

    Grey is BT.601 luma in [0, 255] (float, not rounded); the kernel is ``[[0, 1, 0], [1, -4, 1],
    [0, 1, 0]]`` (OpenCV's ``Laplacian`` with ``ksize=1``) with reflect-101 borders (OpenCV's
    default); the variance is over all pixels (population variance, numpy's ``var``).

    >>> img = np.zeros((1, 3, 3, 3), np.uint8); img[0, 1, 1] = 10  # one bright pixel
    >>> # Laplacian: -40 at the centre, 20 at the 4 edge midpoints (reflected twice), 0 at corners:
    >>> # variance = (1600 + 4 * 400) / 9 - (40 / 9) ** 2
    >>> round(float(laplacian_variance(img)[0]), 4)
    335.8025
    """
    grey = images.astype(np.float64) @ LUMA
    padded = np.pad(grey, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    lap = (
        padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
        - 4.0 * padded[:, 1:-1, 1:-1]
    )
    return lap.reshape(len(images), -1).var(axis=1)


class Sharpness:
    """Quality = variance of the Laplacian of the grey image (blur lowers it, noise raises it)."""

    def __init__(self, *, options: Mapping[str, Any], device: str) -> None:
        self.options = dict(options)

    def score(self, batch: SampleBatch, *, fr_model: FaceRecognitionModel | None) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros(0)
        return laplacian_variance(batch.images)


class EmbeddingNorm:
    """Quality = ``||f(x)||`` of the quality FR model's embedding before normalisation.

    The untrained counterpart of MagFace: any FR model's norm carries some quality signal; MagFace
    trains it to. Refuses models whose ``forward`` returns normalised embeddings.
    """

    def __init__(self, *, options: Mapping[str, Any], device: str) -> None:
        self.options = dict(options)

    def score(self, batch: SampleBatch, *, fr_model: FaceRecognitionModel | None) -> np.ndarray:
        if fr_model is None:
            raise ConfigError("embedding-norm needs an FR model (quality_fr_model)")
        if not fr_model.capabilities.unnormalised_embedding:
            raise ConfigError(f"embedding-norm: FR model {fr_model.name!r} returns normalised embeddings (norm is always 1)")
        if len(batch) == 0:
            return np.zeros(0)
        return np.linalg.norm(np.asarray(fr_model.embed(batch.images), dtype=np.float64), axis=1)
