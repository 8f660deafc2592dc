"""MagFace at inference: quality = the magnitude of the unnormalised embedding (paper §3.3).

One forward pass gives the recognition embedding and, as its norm ``||f(x)||``, the quality: the
method costs one FR forward pass plus a norm.

Weights:

- ``arch=embedded`` (default): the shipped ``weights/magface-embedded.safetensors`` (:mod:`.train`),
  32 px, the embedded world's input space (RGB, [-1, 1]);
- ``arch=iresnet18|iresnet50|iresnet100``: an official checkpoint (``magface_epoch_00025.pth``
  etc.), read as ``inference/network_inf.py`` reads it (backbone under ``module.features.``). Input
  as ``inference/gen_feat.py`` prepares it: 112 x 112, **BGR** (``cv2.imread``), ``ToTensor`` to
  [0, 1] with mean 0 and std 1 (no centring). Every BatchNorm of the release's ``iresnet.py`` uses
  ``eps = 2e-5`` (arcface_torch: 1e-5), which the loader sets. The release's ``Dropout2d(0.4)``
  drops whole channels before the flatten; fiqabench's seeded dropout is element-wise, so the
  official model is declared without a dropout layer for SER-FIQ.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fiqabench.api import FRCapabilities, InputSpace, SampleBatch
from fiqabench.errors import ConfigError, MissingArtifactError
from fiqabench.fr import TorchFRModel, file_digest
from fiqabench_plugins.cr_fiqa.official import IResNetHead, IResNetTrunk, build_iresnet, read_checkpoint, split_wrapped

from . import DEFAULT_WEIGHTS, FR_VERSION, TRAIN_COMMAND

__all__ = ["OFFICIAL_INPUT_SPACE", "MagFace", "build_fr_model", "build_official_fr_model", "load"]

#: Official preprocessing: 112 x 112, BGR, [0, 1] (mean 0, std 1).
OFFICIAL_INPUT_SPACE = InputSpace(size=(112, 112), channel_order="BGR", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
#: BatchNorm epsilon of the release's iresnet.py.
OFFICIAL_BN_EPS = 2e-5



def load(options: Mapping[str, Any], device: str | torch.device = "cpu") -> TorchFRModel:
    """The MagFace network as an FR model, from the ``weights``/``arch`` options."""
    arch = str(options.get("arch") or "embedded")
    path = Path(options.get("weights") or DEFAULT_WEIGHTS)
    batch_size = int(options.get("batch_size") or 64)
    if arch == "embedded":
        from fiqabench_plugins.synthetic.model import EMBEDDING_SIZE, INPUT_SPACE, SynthFRNet, load_embedded_weights

        net = load_embedded_weights(SynthFRNet(), path, what="MagFace (embedded)",
                                    missing=f"produce them with `{TRAIN_COMMAND}`")
        return TorchFRModel(
            name="synthetic-magface", version=FR_VERSION, domain="synthetic", input_space=INPUT_SPACE,
            embedding_size=EMBEDDING_SIZE, trunk=net.trunk, head=net.head, weights_digest=file_digest(path),
            device=device, batch_size=batch_size,
            capabilities=FRCapabilities(differentiable=True, has_dropout=True, has_trunk_head=True, unnormalised_embedding=True),
        )
    backbone, _ = split_wrapped(read_checkpoint(path))
    net = build_iresnet(backbone, arch, path=path, dropout=0.0, bn_eps=OFFICIAL_BN_EPS)
    return TorchFRModel(
        name="magface", version=FR_VERSION, domain="aligned-112-face",
        input_space=OFFICIAL_INPUT_SPACE,
        embedding_size=int(backbone["features.weight"].shape[0]), trunk=IResNetTrunk(net), head=IResNetHead(net),
        weights_digest=file_digest(path), device=device, batch_size=batch_size,
        capabilities=FRCapabilities(differentiable=True, has_dropout=False, has_trunk_head=True, unnormalised_embedding=True),
    )


def build_fr_model(*, options: Mapping[str, Any], device: str | torch.device = "cpu") -> TorchFRModel:
    """FR model ``synthetic-magface``: the embedded MagFace network."""
    return load({**options, "arch": "embedded"}, device)


def build_official_fr_model(*, options: Mapping[str, Any], device: str | torch.device = "cpu") -> TorchFRModel:
    """FR model ``magface``: an official MagFace iResNet checkpoint (``weights``, ``arch``)."""
    if not options.get("weights"):
        raise MissingArtifactError("FR model magface needs --fr-option magface:weights=PATH (magface_epoch_00025.pth)")
    return load(options, device)


class MagFace:
    """Method ``magface``: quality = ``||f(x)||`` before normalisation."""

    def __init__(self, *, options: Mapping[str, Any], device: str | torch.device = "cpu") -> None:
        self.fr = load(options, device)

    def score(self, batch: SampleBatch, *, fr_model: Any = None) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), self.fr.batch_size):
                x = self.fr.preprocess(batch.images[start : start + self.fr.batch_size])
                out.append(torch.linalg.vector_norm(self.fr.forward(x).double(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)
