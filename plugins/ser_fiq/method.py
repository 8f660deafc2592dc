"""SER-FIQ: unsupervised quality from the stochastic embedding robustness (Terhörst et al., CVPR 2020).

Paper §3 and the official ``face_image_quality.py`` (``SER_FIQ.get_score``):

1. pass the image ``m = 100`` times through the FR model with its dropout layer active, giving
   embeddings ``x_1 .. x_m`` ("stochastic embeddings"), each L2-normalised;
2. ``q = 2 sigmoid(-d)``, with ``d`` the mean Euclidean distance over all pairs ``i < j`` of the
   normalised embeddings (the paper's quality; the code's ``2 * (1 / (1 + exp(mean(eucl_dist))))`` over
   ``triu_indices(T, k=1)``);
3. optionally (``rescale=true``, off by default) the code's later normalisation
   ``1 / (1 + exp(-alpha (q - r)))`` with ``alpha = 130``, ``r = 0.88``, which spreads the
   crowded raw scores (about 0.86-0.90) but is monotone, so no EDC changes.

Only the layers after the dropout differ between passes, so the trunk runs once per image and
the head ``m`` times (``FRCapabilities.has_trunk_head``): for SynthArcFace the head is dropout ->
linear -> BN1d, a small fraction of one forward pass. Pass ``j`` of a sample uses the dropout
masks of ``derive_seeds(seed, j)`` (:func:`fiqabench.fr.seeded_dropout` via ``head(seeds=...)``),
so the scores are reproducible and independent of the batch and the device, and the trunk-once
path gives exactly the embeddings of ``m`` full passes under the same masks (tested).

The model's own dropout rate is used (the paper's "same model" setting: the FR model must be
trained with dropout). ``dropout_rate=P`` inserts a dropout of rate ``P`` on the head's input
for a model that has none: a departure from the paper (the network never saw dropout there),
offered for users who want a SER-FIQ-style score from such a model anyway.

Equation numbers are not quoted: the paper's text was not available here; the formulas follow the
research note (``research/baselines.md`` §2.7) and the released code named above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fiqabench.api import FaceRecognitionModel, SampleBatch
from fiqabench.errors import ConfigError
from fiqabench.fr import derive_seeds, seeded_dropout

__all__ = ["SERFIQ", "rescale", "serfiq_quality"]

#: Stream of the inserted dropout layer (the model's own layers use streams 0, 1, ...).
INSERTED_STREAM = 1_000


def serfiq_quality(embeddings: torch.Tensor) -> torch.Tensor:
    """``2 sigmoid(-mean_{i<j} ||x_i - x_j||)`` of ``(B, m, D)`` L2-normalised embeddings.

    >>> e = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one pair at distance sqrt(2)
    >>> round(serfiq_quality(e).item(), 6)  # 2 / (1 + e^sqrt(2))
    0.391141
    """
    m = embeddings.shape[1]
    # Unit vectors: ||a - b|| = sqrt(2 - 2 a.b); the Gram matrix in float64 is exact enough
    # (distances here are 0.1-1) and 4x cheaper than cdist's exact mode.
    e = embeddings.double()
    dist = (2.0 - 2.0 * (e @ e.transpose(1, 2))).clamp_min_(0.0).sqrt_()
    iu = torch.triu_indices(m, m, offset=1, device=embeddings.device)
    mean = dist[:, iu[0], iu[1]].mean(dim=1)
    return 2.0 * torch.sigmoid(-mean)


def rescale(q: torch.Tensor | np.ndarray, alpha: float = 130.0, r: float = 0.88) -> Any:
    """The official code's ``1 / (1 + exp(-alpha (q - r)))``.

    >>> float(rescale(np.array(0.88)))
    0.5
    """
    if isinstance(q, torch.Tensor):
        return torch.sigmoid(alpha * (q - r))
    return 1.0 / (1.0 + np.exp(-alpha * (q - r)))


class SERFIQ:
    """SER-FIQ with the trunk run once and the head ``m`` times per image."""

    def __init__(self, *, options: Mapping[str, Any], device: str | torch.device = "cpu") -> None:
        self.m = int(options.get("m", 100))
        if self.m < 2:
            raise ConfigError(f"ser-fiq: option m={self.m} must be at least 2")
        self.rescale = bool(options.get("rescale", False))
        self.alpha = float(options.get("alpha", 130.0))
        self.r = float(options.get("r", 0.88))
        rate = options.get("dropout_rate")
        self.inserted = None if rate is None else float(rate)
        self.batch_images = max(1, int(options.get("batch_images", 4)))

    def _check(self, fr_model: FaceRecognitionModel | None) -> FaceRecognitionModel:
        if fr_model is None:
            raise ConfigError("ser-fiq needs an FR model (quality_fr_model)")
        caps = fr_model.capabilities
        if not caps.has_trunk_head:
            raise ConfigError(f"ser-fiq: FR model {fr_model.name!r} has no trunk/head split to repeat the head")
        if self.inserted is None and not caps.has_dropout:
            raise ConfigError(
                f"ser-fiq: FR model {fr_model.name!r} has no dropout layer; set ser-fiq:dropout_rate=P to insert"
                " one (a departure from the paper)"
            )
        return fr_model

    def embeddings(self, batch: SampleBatch, fr_model: FaceRecognitionModel) -> torch.Tensor:
        """``(N, m, D)`` normalised stochastic embeddings, trunk once per image."""
        fr_model = self._check(fr_model)
        seeds = np.asarray(batch.seeds, dtype=np.int64)
        out = []
        with torch.inference_mode():
            features = fr_model.trunk(fr_model.preprocess(batch.images))
            for start in range(0, len(batch), self.batch_images):
                f = features[start : start + self.batch_images]
                c = f.shape[0]
                pass_seeds = derive_seeds(np.repeat(seeds[start : start + c], self.m), np.tile(np.arange(self.m), c))
                repeated = f.repeat_interleave(self.m, dim=0)
                if self.inserted is not None:
                    e = fr_model.head(seeded_dropout(repeated, pass_seeds, self.inserted, stream=INSERTED_STREAM))
                else:
                    e = fr_model.head(repeated, dropout=True, seeds=pass_seeds)
                out.append(F.normalize(e.float(), dim=1).view(c, self.m, -1))
        return torch.cat(out)

    def score(self, batch: SampleBatch, *, fr_model: FaceRecognitionModel | None) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros(0)
        with torch.inference_mode():
            q = serfiq_quality(self.embeddings(batch, fr_model))  # type: ignore[arg-type]
            if self.rescale:
                q = rescale(q, self.alpha, self.r)
        return q.double().cpu().numpy()
