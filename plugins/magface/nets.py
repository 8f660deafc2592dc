"""MagFace's training objective on the embedded world (Meng et al., CVPR 2021).

The network is the embedded FR model's architecture (:class:`SynthFRNet`); MagFace changes only the
loss (paper §3; released ``models/magface.py`` and ``run/trainer.py``):

- the magnitude ``a = ||f(x)||`` of the unnormalised embedding, clamped to ``[l_a, u_a]``
  (``MagLinear.forward``);
- a magnitude-aware angular margin ``m(a) = (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m``, linear
  from ``l_m`` at ``l_a`` to ``u_m`` at ``u_a`` (``SoftmaxBuilder._margin``), applied to the
  target class as ``cos(theta + m(a))``; the release's ``easy_margin=True`` keeps ``cos(theta)``
  where ``cos(theta) <= 0``;
- the regulariser ``g(a) = 1/a + a/u_a^2`` (``MagLoss.calc_loss_G``), averaged over the
  batch and weighted by ``lambda_g``: ``L = L_CE + lambda_g * mean g(a)``;
- release values ``l_a = 10``, ``u_a = 110``, ``l_m = 0.45``, ``u_m = 0.8``, ``lambda_g = 35``.

The scale ``s`` is the embedded world's 32 (release 64; see ``cr_fiqa.nets`` for why this world
trains every FR model at 32). ``lambda_g = 35`` stays above the release's feasibility bound
``s k u_a^2 l_a^2 / (u_a^2 - l_a^2)`` (11.3 at ``s = 32``, 22.6 at 64) that ``run/trainer.py``
checks, so the loss keeps a unique optimum.

Equation numbers are not quoted: the paper's text was not available here; the formulas follow the
research note (``research/baselines.md`` §2.5) and the released code named above.

Quality (paper §3.3): the magnitude ``||f(x)||`` of the embedding before normalisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fiqabench_plugins.synthetic.model import EMBEDDING_SIZE

__all__ = ["LAMBDA_G", "L_A", "L_M", "U_A", "U_M", "MagFaceObjective", "magnitude_margin", "regulariser"]

#: Release hyper-parameters (``run/trainer.py``, README's training command).
L_A, U_A, L_M, U_M, LAMBDA_G = 10.0, 110.0, 0.45, 0.8, 35.0


def magnitude_margin(a: torch.Tensor, l_a: float = L_A, u_a: float = U_A, l_m: float = L_M, u_m: float = U_M) -> torch.Tensor:
    """The magnitude-aware margin ``m(a)``, for magnitudes already clamped to ``[l_a, u_a]``.

    >>> [round(v, 6) for v in magnitude_margin(torch.tensor([10.0, 60.0, 110.0])).tolist()]
    [0.45, 0.625, 0.8]
    """
    return (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m


def regulariser(a: torch.Tensor, u_a: float = U_A) -> torch.Tensor:
    """The regulariser ``g(a) = 1/a + a/u_a^2`` (minimal at ``a = u_a``: ``2/u_a``).

    >>> [round(v, 6) for v in regulariser(torch.tensor([10.0, 110.0])).tolist()]  # 1/10 + 10/12100, 2/110
    [0.100826, 0.018182]
    """
    return 1.0 / a + a / (u_a * u_a)


def feasibility_bound(scale: float, l_a: float = L_A, u_a: float = U_A, l_m: float = L_M, u_m: float = U_M) -> float:
    """The release trainer's minimum ``lambda_g`` for a unique optimum (``run/trainer.py``)."""
    k = (u_m - l_m) / (u_a - l_a)
    return scale * k * u_a**2 * l_a**2 / (u_a**2 - l_a**2)


class MagFaceObjective(nn.Module):
    """MagFace loss: magnitude-aware ArcFace CE + ``lambda_g`` x mean g(a); the objective of ``fit``."""

    def __init__(
        self,
        classes: int,
        *,
        scale: float,
        l_a: float = L_A,
        u_a: float = U_A,
        l_m: float = L_M,
        u_m: float = U_M,
        lambda_g: float = LAMBDA_G,
        easy_margin: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, EMBEDDING_SIZE) * 0.01)
        self.scale, self.l_a, self.u_a, self.l_m, self.u_m = float(scale), float(l_a), float(u_a), float(l_m), float(u_m)
        self.lambda_g, self.easy_margin = float(lambda_g), bool(easy_margin)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s * margin logits, clamped magnitudes (N, 1))`` as ``MagLinear`` + ``MagLoss`` make them."""
        a = embeddings.norm(dim=1, keepdim=True).clamp(self.l_a, self.u_a)
        margin = magnitude_margin(a, self.l_a, self.u_a, self.l_m, self.u_m)
        cosine = F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1.0, 1.0)
        # clamp_min: the release's sqrt(1 - cos^2) has an infinite gradient at |cos| = 1.
        sine = torch.sqrt((1.0 - cosine * cosine).clamp_min(1e-9))
        cos_m = cosine * torch.cos(margin) - sine * torch.sin(margin)
        if self.easy_margin:
            cos_m = torch.where(cosine > 0, cos_m, cosine)
        else:
            cos_m = torch.where(
                cosine > torch.cos(math.pi - margin), cos_m, cosine - torch.sin(math.pi - margin) * margin
            )
        onehot = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
        return self.scale * (onehot * cos_m + (1.0 - onehot) * cosine), a

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, a = self.logits(embeddings, labels)
        loss_g = regulariser(a, self.u_a).mean()
        return F.cross_entropy(logits, labels) + self.lambda_g * loss_g, logits
