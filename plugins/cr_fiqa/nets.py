"""CR-FIQA's network and training objective on the embedded world (Boutros et al., CVPR 2023).

The network is the embedded FR model's architecture (:class:`SynthFRNet`: trunk, head with dropout,
128-d embedding after BN1d) plus CR-FIQA's one-unit quality regression layer ``qs`` on the
embedding, as in the released backbone (``backbones/iresnet.py``: ``qs = Linear(num_features, 1)``
applied to the output of the ``features`` BN; the network returns ``(embedding, qs)``).

The objective (paper §3; released ``losses.py`` and ``train_cr_fiqa.py``):

- margin-softmax cross-entropy over the class centres ``W`` (ArcFace, paper §3.1; here the
  embedded world's ArcFace head, ``s = 32``, ``m = 0.35``, the values every FR model of this world is
  trained with: the paper's ``s = 64``, ``m = 0.5`` do not converge at 2,000 identities in this
  budget, research note ``embedded-world-pilot.md``);
- per sample, ``CCS = cos(x_i, W_{y_i})`` (similarity to its own class centre) and
  ``NNCCS = max_{j != y_i} cos(x_i, W_j)`` (the nearest negative class centre), both without
  margin and without gradient (the released code computes them under ``torch.no_grad`` from the
  cosine matrix, setting the own class to ``-1e-12`` before the max);
- the certainty ratio ``CR = CCS / (NNCCS + 1 + eps)`` (the paper's formula, ``eps = 1e-9``, the default), or the
  released code's ``CCS / NNCCS`` (``target=code``);
- loss ``L = L_CE + alpha * SmoothL1_beta(CR, qs)`` with ``alpha = 10`` and ``beta = 0.5`` (paper §3;
  ``criterion_qs = SmoothL1Loss(beta=0.5)``, ``alpha = 10.0`` in ``train_cr_fiqa.py``), and the
  released trainer's gradient-norm clipping of the backbone at 5.

Equation numbers are not quoted: the paper's text was not available here; the formulas follow the
research note (``research/baselines.md`` §2.9) and the released code named above.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fiqabench_plugins.synthetic.model import EMBEDDING_SIZE, SynthFRNet
from fiqabench_plugins.synthetic.train import ArcFaceHead

__all__ = ["ALPHA", "BETA", "EPS", "CRFIQANet", "CRFIQAObjective", "certainty_ratio", "class_centre_similarities"]

#: Loss weight of the quality regression (paper; released code ``alpha = 10.0``).
ALPHA = 10.0
#: SmoothL1 transition point (released code ``SmoothL1Loss(beta=0.5)``).
BETA = 0.5
#: The paper's epsilon in ``NNCCS + (1 + eps)``; 1e-9 as in the ViT-FIQA code that reuses it.
EPS = 1e-9
#: The released code's clipping of the backbone's gradient norm.
CLIP_GRAD_NORM = 5.0


class CRFIQANet(SynthFRNet):
    """SynthFRNet + the quality unit: ``x -> (embedding, qs)``; ``qs`` has shape ``(N, 1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.qs = nn.Linear(EMBEDDING_SIZE, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        embedding = self.head(self.trunk(x))
        return embedding, self.qs(embedding)


def class_centre_similarities(
    embeddings: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(CCS, NNCCS)`` per sample, without gradient.

    ``centres`` is ``(classes, D)``. As in the released code the own class is set to ``-1e-12``
    before the max over classes, so NNCCS is never taken from the sample's own centre.
    """
    with torch.no_grad():
        cosine = F.linear(F.normalize(embeddings), F.normalize(centres)).clamp(-1.0, 1.0)
        rows = torch.arange(len(labels), device=labels.device)
        ccs = cosine[rows, labels].clone()
        cosine[rows, labels] = -1e-12
        nnccs = cosine.max(dim=1).values
    return ccs, nnccs


def certainty_ratio(ccs: torch.Tensor, nnccs: torch.Tensor, variant: str = "paper") -> torch.Tensor:
    """The regression target: ``CCS / (NNCCS + 1 + eps)`` (paper) or ``CCS / NNCCS`` (code).

    >>> round(certainty_ratio(torch.tensor([0.8]), torch.tensor([0.2])).item(), 6)  # 0.8 / 1.2
    0.666667
    >>> certainty_ratio(torch.tensor([0.8]), torch.tensor([0.2]), "code").item()
    4.0
    """
    if variant == "paper":
        return ccs / (nnccs + (1.0 + EPS))
    if variant == "code":
        return ccs / nnccs
    raise ValueError(f"unknown CR variant {variant!r} (paper or code)")


class CRFIQAObjective(nn.Module):
    """Margin-softmax CE + ``alpha`` x SmoothL1(CR, qs); the objective of ``fit``."""

    def __init__(
        self,
        classes: int,
        *,
        scale: float,
        margin: float,
        alpha: float = ALPHA,
        beta: float = BETA,
        target: str = "paper",
    ) -> None:
        super().__init__()
        self.arc = ArcFaceHead(classes, scale=scale, margin=margin)
        self.alpha, self.beta, self.target = float(alpha), float(beta), target

    def loss(
        self, output: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings, qs = output
        logits = self.arc(embeddings, labels)
        ccs, nnccs = class_centre_similarities(embeddings, self.arc.weight, labels)
        cr = certainty_ratio(ccs, nnccs, self.target)
        loss_qs = F.smooth_l1_loss(qs[:, 0], cr, beta=self.beta)
        return F.cross_entropy(logits, labels) + self.alpha * loss_qs, logits
