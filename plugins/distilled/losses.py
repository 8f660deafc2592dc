"""The distillation losses, as the official code computes them.

- DifFIQA(R) (paper §3.6; ``diffiqa(r)/train.py``): mean L1 between the prediction and the
  min-max-normalised DifFIQA label.
- eDifFIQA (``loss.py``, ``train.py`` L60-72; research notes §7.3), for features ``f`` of the
  backbone being trained, predictions ``p``, frozen embeddings ``e`` of the original FR model and
  identity centres ``c``:

  - representation consistency ``L_rc = mean(1 - cos(f, e))`` (CosineEmbeddingLoss, target +1);
  - label optimisation: ``a = 1 - cos(f, c)`` with no gradient, ``q~ = clamp(q - eps * a, 0, 1)``
    (ExtendedL1, eps = 0.5), ``L_q = mean |p - q~|``;
  - total ``theta * L_rc + (1 - theta) * L_q`` with theta = 0.5;
  - validation: the plain labels (no ``a`` correction) with the same ``L_rc`` and theta.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: CosineEmbeddingLoss's eps: torch's cosine_similarity clamps each norm from below by it.
_COS_EPS = 1e-8


def l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (torch.nn.L1Loss, reduction mean)."""
    return (prediction.reshape(-1) - target.reshape(-1)).abs().mean()


def representation_consistency(features: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
    """``mean(1 - cos(f, e))`` over the batch."""
    return (1.0 - F.cosine_similarity(features, frozen, dim=1, eps=_COS_EPS)).mean()


def optimised_labels(labels: torch.Tensor, features: torch.Tensor, centres: torch.Tensor,
                     epsilon: float = 0.5) -> torch.Tensor:
    """``clamp(q - eps * (1 - cos(f, c)), 0, 1)``, computed without gradient (``train.py`` L60-63)."""
    with torch.no_grad():
        distance = 1.0 - F.cosine_similarity(features, centres, dim=1, eps=_COS_EPS)
        return (labels.reshape(-1) - epsilon * distance).clamp(0.0, 1.0)


def ediffiqa_loss(prediction: torch.Tensor, features: torch.Tensor, frozen: torch.Tensor, labels: torch.Tensor,
                  centres: torch.Tensor | None, *, theta: float = 0.5, epsilon: float = 0.5) -> torch.Tensor:
    """The training loss; ``centres=None`` gives the validation loss (plain labels)."""
    target = labels.reshape(-1) if centres is None else optimised_labels(labels, features, centres, epsilon)
    return theta * representation_consistency(features, frozen) + (1.0 - theta) * l1(prediction, target)
