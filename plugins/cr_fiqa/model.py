"""CR-FIQA at inference: the quality is the output of the quality unit ``qs`` (paper §3.3).

One forward pass gives both the embedding and the quality (released
``evaluation/getQualityScore.py``: ``_, qs = backbone(img)``), so the method costs one FR forward
pass plus a 128 -> 1 (embedded) or 512 -> 1 (iResNet) linear layer.

Weights:

- ``arch=embedded`` (default): the shipped ``weights/cr-fiqa-embedded.safetensors``
  (:mod:`.train`), 32 px, the embedded world's input space (RGB, [-1, 1]);
- ``arch=iresnet50|iresnet100``: an official checkpoint (``32572backbone.pth`` CR-FIQA(S),
  ``181952backbone.pth`` CR-FIQA(L)), 112 x 112 aligned crops, RGB, ``(x - 0.5) / 0.5`` (research
  note §2.9: the release's ``--color_channel BGR`` exists only for BGR-stored data; fiqabench
  hands RGB crops to every model). The backbone was trained with dropout 0.4 (``train_cr_fiqa.py``),
  so the network keeps that layer for SER-FIQ (eval mode otherwise).

The backbone is also an FR model (``synthetic-cr-fiqa`` embedded, ``cr-fiqa`` official), since
users of CR-FIQA compare with its own recognition.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fiqabench.api import FRCapabilities, InputSpace, SampleBatch
from fiqabench.errors import ConfigError, MissingArtifactError
from fiqabench.fr import TorchFRModel, file_digest

from . import DEFAULT_WEIGHTS, FR_VERSION, TRAIN_COMMAND
from .nets import CRFIQANet
from .official import IResNetHead, IResNetTrunk, build_iresnet, read_checkpoint

__all__ = ["CRFIQA", "OFFICIAL_INPUT_SPACE", "build_fr_model", "build_official_fr_model", "load"]

#: Official preprocessing: 112 x 112 RGB in [-1, 1].
OFFICIAL_INPUT_SPACE = InputSpace(size=(112, 112), channel_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
#: Dropout of the released backbone during training (``iresnet100(dropout=0.4, ...)``).
OFFICIAL_DROPOUT = 0.4



def load(
    options: Mapping[str, Any], device: str | torch.device = "cpu"
) -> tuple[TorchFRModel, nn.Linear]:
    """``(backbone as an FR model, quality unit)`` from the ``weights``/``arch`` options."""
    arch = str(options.get("arch") or "embedded")
    path = Path(options.get("weights") or DEFAULT_WEIGHTS)
    batch_size = int(options.get("batch_size") or 64)
    if arch == "embedded":
        from fiqabench_plugins.synthetic.model import EMBEDDING_SIZE, INPUT_SPACE, load_embedded_weights

        net = load_embedded_weights(CRFIQANet(), path, what="CR-FIQA (embedded)",
                                    missing=f"produce them with `{TRAIN_COMMAND}`")
        fr = TorchFRModel(
            name="synthetic-cr-fiqa", version=FR_VERSION, domain="synthetic", input_space=INPUT_SPACE,
            embedding_size=EMBEDDING_SIZE, trunk=net.trunk, head=net.head, weights_digest=file_digest(path),
            device=device, batch_size=batch_size,
            capabilities=FRCapabilities(differentiable=True, has_dropout=True, has_trunk_head=True, unnormalised_embedding=True),
        )
        qs = net.qs
    else:
        state = read_checkpoint(path)
        if "qs.weight" not in state:
            raise ConfigError(f"{path}: no quality unit 'qs.weight': not a CR-FIQA checkpoint")
        qs_state = {k[3:]: state.pop(k) for k in ("qs.weight", "qs.bias") if k in state}
        net = build_iresnet(state, arch, path=path, dropout=OFFICIAL_DROPOUT)
        fr = TorchFRModel(
            name="cr-fiqa", version=FR_VERSION, domain="aligned-112-face",
            input_space=OFFICIAL_INPUT_SPACE,
            embedding_size=int(state["features.weight"].shape[0]), trunk=IResNetTrunk(net), head=IResNetHead(net),
            weights_digest=file_digest(path), device=device, batch_size=batch_size,
            capabilities=FRCapabilities(differentiable=True, has_dropout=True, has_trunk_head=True, unnormalised_embedding=True),
        )
        qs = nn.Linear(qs_state["weight"].shape[1], qs_state["weight"].shape[0], bias="bias" in qs_state)
        qs.load_state_dict(qs_state)
    qs = qs.to(fr.device).eval()
    for param in qs.parameters():
        param.requires_grad_(False)
    return fr, qs


def build_fr_model(*, options: Mapping[str, Any], device: str | torch.device = "cpu") -> TorchFRModel:
    """FR model ``synthetic-cr-fiqa``: the embedded CR-FIQA backbone."""
    return load({**options, "arch": "embedded"}, device)[0]


def build_official_fr_model(*, options: Mapping[str, Any], device: str | torch.device = "cpu") -> TorchFRModel:
    """FR model ``cr-fiqa``: an official CR-FIQA iResNet checkpoint (``weights``, ``arch``)."""
    if not options.get("weights"):
        raise MissingArtifactError("FR model cr-fiqa needs --fr-option cr-fiqa:weights=PATH (181952backbone.pth or 32572backbone.pth)")
    return load(options, device)[0]


class CRFIQA:
    """Method ``cr-fiqa``: quality = ``qs(embedding)`` of the CR-FIQA network."""

    def __init__(self, *, options: Mapping[str, Any], device: str | torch.device = "cpu") -> None:
        self.fr, self.qs = load(options, device)

    def score(self, batch: SampleBatch, *, fr_model: Any = None) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), self.fr.batch_size):
                x = self.fr.preprocess(batch.images[start : start + self.fr.batch_size])
                out.append(self.qs(self.fr.forward(x))[:, 0].double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)


