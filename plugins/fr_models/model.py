"""Factories of the FR models ``arcface``, ``cosface``, ``adaface``, ``curricularface`` and ``onnx``.

Each wraps its network in :class:`fiqabench.fr.TorchFRModel`, which owns the colour-order, range
and size conversions; this module only declares each project's input space:

- arcface_torch (ArcFace, CosFace): RGB, ``(x/255 - 0.5)/0.5`` (``arcface_torch/inference.py``);
- AdaFace: **BGR**, ``(x/255 - 0.5)/0.5`` (``inference.py`` ``to_input``; README "our pretrained
  model takes the input in BGR color channel");
- CurricularFace: RGB (PIL), ``Normalize(0.5, 0.5)`` (``train.py``, ``config.py`` ``RGB_MEAN``);
- ONNX: set by options; the defaults are insightface's (RGB, ``(x - 127.5)/127.5``).

All take 112 x 112 crops aligned to the insightface five-point template (domain ``aligned-112-face``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fiqabench.api import FRCapabilities, InputSpace
from fiqabench.errors import ConfigError, MissingArtifactError
from fiqabench.fr import TorchFRModel, file_digest

from . import CONFIGS, DOMAIN, ONNX_VERSION, capabilities_for, parse_triplet
from .checkpoints import load_layout

__all__ = ["INPUT_SPACES", "build", "build_onnx"]

#: Input space per FR model (the ONNX one is the default of its options).
INPUT_SPACES: dict[str, InputSpace] = {
    name: InputSpace(size=(112, 112), channel_order=config["channel_order"], mean=(0.5,) * 3, std=(0.5,) * 3)
    for name, config in CONFIGS.items()
}


def _weights(name: str, options: Mapping[str, Any]) -> Path:
    raw = options.get("weights")
    if not raw:
        raise MissingArtifactError(
            f"FR model {name!r} needs its weights: set --fr-option {name}:weights=PATH"
        )
    path = Path(raw).expanduser()
    if not path.is_file():
        raise MissingArtifactError(f"FR model {name!r}: weights file {path} does not exist")
    return path


def build(name: str, *, options: Mapping[str, Any], device: str | torch.device = "cpu") -> TorchFRModel:
    """Build one of the four iResNet FR models from its checkpoint."""
    config = CONFIGS[name]
    path = _weights(name, options)
    arch = options.get("arch") or "iresnet100"
    dropout = float(options.get("dropout", config["dropout"]))
    net = load_layout(config["layout"], path, arch, dropout=dropout)
    trunk, head = net.split()
    return TorchFRModel(
        name=name,
        version=config["version"],
        domain=DOMAIN,
        input_space=INPUT_SPACES[name],
        embedding_size=net.embedding_size,
        trunk=trunk,
        head=head,
        weights_digest=file_digest(path),
        device=device,
        capabilities=capabilities_for(name)(options),
        batch_size=int(options.get("batch_size") or 64),
        network=net,
    )


def build_arcface(*, options: Mapping[str, Any], device: str | torch.device = "cpu") -> TorchFRModel:
    return build("arcface", options=options, device=device)


def build_cosface(*, options: Mapping[str, Any], device: str | torch.device = "cpu") -> TorchFRModel:
    return build("cosface", options=options, device=device)


def build_adaface(*, options: Mapping[str, Any], device: str | torch.device = "cpu") -> TorchFRModel:
    return build("adaface", options=options, device=device)


def build_curricularface(*, options: Mapping[str, Any], device: str | torch.device = "cpu") -> TorchFRModel:
    return build("curricularface", options=options, device=device)


def onnx_input_space(options: Mapping[str, Any]) -> InputSpace:
    size = options.get("size") or (112, 112)
    order = str(options.get("channel_order") or "RGB").upper()
    if order not in ("RGB", "BGR"):
        raise ConfigError(f"option onnx:channel_order={order!r}: expected RGB or BGR")
    mean = options.get("mean") if options.get("mean") is not None else (0.5,) * 3
    std = options.get("std") if options.get("std") is not None else (0.5,) * 3
    mean = parse_triplet(mean) if isinstance(mean, str) else tuple(float(v) for v in mean)
    std = parse_triplet(std) if isinstance(std, str) else tuple(float(v) for v in std)
    if any(value == 0 for value in std):
        raise ConfigError(f"option onnx:std={std}: a standard deviation of 0 divides by zero")
    return InputSpace(size=tuple(size), channel_order=order, mean=mean, std=std)  # type: ignore[arg-type]


def build_onnx(*, options: Mapping[str, Any], device: str | torch.device = "cpu") -> TorchFRModel:
    """Any ONNX FR model, converted to torch by :mod:`.onnx_convert` (differentiable, batched)."""
    from .onnx_convert import convert

    path = _weights("onnx", options)
    space = onnx_input_space(options)
    graph = convert(path)
    with torch.no_grad():
        probe = graph(torch.zeros(1, 3, *space.size))
    if probe.ndim != 2:
        raise ConfigError(
            f"{path}: the ONNX model's output has shape {tuple(probe.shape)}; expected (N, D) embeddings"
        )
    return TorchFRModel(
        name="onnx",
        version=ONNX_VERSION,
        domain=DOMAIN,
        input_space=space,
        embedding_size=int(probe.shape[1]),
        trunk=graph,
        head=nn.Identity(),
        weights_digest=file_digest(path),
        device=device,
        capabilities=FRCapabilities(
            differentiable=True, has_dropout=False, has_trunk_head=False, unnormalised_embedding=True
        ),
        batch_size=int(options.get("batch_size") or 64),
    )
