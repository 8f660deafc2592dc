"""FaceQAN: face image quality from adversarial noise (Babnik, Peer, Štruc, ICPR 2022).

Paper §3 and the official ``src/`` (``bim_attack.py``, ``symmetry.py``, ``util.F``):

1. ``k = 10`` copies of the image in ``[0, 1]`` RGB, each plus uniform noise ``U(-eps, eps)``,
   ``eps = 1e-3``, clamped to ``[-1, 1]`` (``util.batch_n_noise``; the code clamps to the model's
   ``[-1, 1]`` range although the noise is added before its normalisation layer, research note
   §2.8; we keep that clamp). The normalisation lives inside the model in the official code; here
   it is ``fr_model.to_input_space``, so the noise and the steps act on the ``[0, 1]`` image;
2. ``l = 5`` BIM (iterated FGSM) steps that *increase* ``1 - cos(e(x), e(x_adv))`` (the official
   ``CosineEmbeddingLoss`` with target 1): per step, embed the current copies, record
   ``cos(e(x), e(x_adv))``, back-propagate, and move ``x_adv <- clamp(x_adv + eps sign(grad),
   -1, 1)``. The recorded similarity of a step is that of the copies *before* its update, as in
   the code, so the set ``S`` holds ``k x l`` similarities from exactly ``l`` forward + backward
   passes of the ``k`` copies (the first row is the noise-only start);
3. symmetry ``s_f = cos(e(x), e(flip x))`` (``symmetry.py``);
4. ``q = (((1 + mean S) / 2) * clip(1 - std S, 0, 1) * s_f) ^ p`` with ``p = 5`` (``util.F``,
   the paper's final score; ``std`` is numpy's population standard deviation).

Departures for speed, none of which changes the algorithm: the ``k`` copies of several images go
through the model in one batch (``batch_images``; the loss is summed over copies, so each copy's
gradient is its own: the model is in eval mode and samples do not interact), ``e(x)`` and
``e(flip x)`` are computed in one batched pass, and the noise of sample ``i`` comes from its seed
through a counter-based hash (:func:`fiqabench.fr.seeded_uniform`), so scores do not depend on the
batch or the device (the official code draws it from torch's global RNG, so its scores vary from
run to run, as its README warns).

Equation numbers are not quoted: the paper's text was not available here; the formulas follow the
research note (``research/baselines.md`` §2.8) and the released code named above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fiqabench.api import FaceRecognitionModel, SampleBatch
from fiqabench.errors import ConfigError
from fiqabench.fr import rgb_uint8_to_unit, seeded_uniform

__all__ = ["FaceQAN", "aggregate", "bim_similarities", "loss_and_gradient"]


def aggregate(similarities: torch.Tensor, symmetry: torch.Tensor, p: int = 5) -> torch.Tensor:
    """The final score ``(((1 + mean S) / 2) * clip(1 - std S, 0, 1) * s_f) ** p`` over ``(B, k*l)`` ``S``.

    >>> s = torch.tensor([[0.9, 0.7]])  # mean 0.8, population std 0.1
    >>> round(aggregate(s, torch.tensor([0.5]), p=1).item(), 6)  # 0.9 * 0.9 * 0.5
    0.405
    """
    mean = similarities.mean(dim=1)
    std = similarities.std(dim=1, unbiased=False)
    return (((1.0 + mean) / 2.0) * (1.0 - std).clamp(0.0, 1.0) * symmetry) ** p


def loss_and_gradient(
    fr_model: FaceRecognitionModel, reference: torch.Tensor, adv: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos(e_ref, e(adv))`` per copy and the gradient of ``sum(1 - cos)`` w.r.t. ``adv`` ([0, 1] RGB)."""
    with torch.enable_grad():
        adv = adv.detach().requires_grad_(True)
        embeddings = fr_model.forward(fr_model.to_input_space(adv))
        cos = F.cosine_similarity(reference, embeddings, dim=1)
        (grad,) = torch.autograd.grad((1.0 - cos).sum(), adv)
    return cos.detach(), grad


def bim_similarities(
    fr_model: FaceRecognitionModel,
    images01: torch.Tensor,
    reference: torch.Tensor,
    seeds: np.ndarray,
    *,
    k: int,
    l: int,
    eps: float,
) -> torch.Tensor:
    """``(B, k*l)`` similarities ``S`` of the BIM runs (step 1-2 of the module docstring)."""
    b = images01.shape[0]
    noise = seeded_uniform(seeds, (k,) + tuple(images01.shape[1:]), device=images01.device)
    adv = (images01[:, None] + (noise * 2.0 - 1.0) * eps).clamp(-1.0, 1.0).flatten(0, 1)
    ref = reference.repeat_interleave(k, dim=0)
    recorded = []
    for _ in range(l):
        cos, grad = loss_and_gradient(fr_model, ref, adv)
        recorded.append(cos.view(b, k))
        adv = (adv + eps * grad.sign()).clamp(-1.0, 1.0)
    return torch.stack(recorded, dim=2).flatten(1)


class FaceQAN:
    """FaceQAN; needs a differentiable FR model (``FRCapabilities.differentiable``)."""

    def __init__(self, *, options: Mapping[str, Any], device: str | torch.device = "cpu") -> None:
        self.k = int(options.get("k", 10))
        self.l = int(options.get("l", 5))
        self.eps = float(options.get("eps", 1e-3))
        self.p = int(options.get("p", 5))
        if self.k < 2 or self.l < 1 or not 0.0 < self.eps < 1.0 or self.p < 1:
            raise ConfigError(f"faceqan: options k={self.k} (>= 2), l={self.l} (>= 1), eps={self.eps} (0-1), p={self.p} (>= 1)")
        self.batch_images = max(1, int(options.get("batch_images", 16)))

    def score(self, batch: SampleBatch, *, fr_model: FaceRecognitionModel | None) -> np.ndarray:
        if fr_model is None:
            raise ConfigError("faceqan needs an FR model (quality_fr_model)")
        if not fr_model.capabilities.differentiable:
            raise ConfigError(f"faceqan: FR model {fr_model.name!r} is not differentiable (a black box)")
        if len(batch) == 0:
            return np.zeros(0)
        seeds = np.asarray(batch.seeds, dtype=np.int64)
        images = rgb_uint8_to_unit(batch.images, fr_model.device)
        n = images.shape[0]
        with torch.no_grad():
            both = fr_model.forward(fr_model.to_input_space(torch.cat([images, images.flip(3)])))
            base, flipped = both[:n], both[n:]
            symmetry = F.cosine_similarity(base, flipped, dim=1)
        out = []
        for start in range(0, n, self.batch_images):
            stop = min(n, start + self.batch_images)
            s = bim_similarities(
                fr_model, images[start:stop], base[start:stop], seeds[start:stop], k=self.k, l=self.l, eps=self.eps
            )
            out.append(aggregate(s.double(), symmetry[start:stop].double(), self.p))
        return torch.cat(out).cpu().numpy()
