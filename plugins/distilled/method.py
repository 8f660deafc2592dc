"""Methods ``diffiqa-r`` and ``ediffiqa`` at inference: one forward pass, the raw prediction.

As the official ``inference.py`` of both repositories: the image in the backbone's input space
(official: 112 px, RGB, ``(x - 0.5) / 0.5``), the network in eval mode, the quality is the head's
raw output (roughly [0, 1], not clipped), higher is better (research notes §6, §7.5).

Weights (option ``weights``):

- ``.safetensors`` written by our trainers (:mod:`.train`): the file names its kind, backbone,
  feature size and input space; the default is the shipped embedded network;
- ``.pth``: an official full state dict (``diffiqa(r).pth``; ``ediffiqa{T,S,M,L}.pth``), with
  ``arch`` (DifFIQA(R)) or ``variant`` (eDifFIQA) naming its backbone;
- ``.onnx`` (eDifFIQA, ``variant=T``): OpenCV zoo's ``ediffiqa_tiny_jun2024.onnx``, converted to
  torch by the FR-models plugin's converter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fiqabench.api import InputSpace, SampleBatch
from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError
from fiqabench.fr import rgb_uint8_to_unit, to_input_space

from . import DEFAULT_WEIGHTS

#: The official transform of both repositories (Resize 112, ToTensor, Normalize 0.5 / 0.5; RGB).
OFFICIAL_INPUT_SPACE = InputSpace(size=(112, 112), channel_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
#: eDifFIQA's named configurations (research notes §7.1).
VARIANT_ARCHS = {"T": "mobilefacenet", "S": "iresnet18", "M": "iresnet50", "L": "iresnet100", "embedded": "embedded"}
DISPLAY = {"diffiqa-r": "DifFIQA(R)", "ediffiqa": "eDifFIQA"}


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for foreign files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputFormatError(path, None, None, f"not a readable safetensors file ({first})") from exc


def load_ours(kind: str, arch: str, path: Path, device: str | torch.device) -> tuple[nn.Module, InputSpace]:
    """A network written by our trainers; its metadata must match the method and ``arch``."""
    from safetensors.torch import load_file

    from .networks import assemble, build_backbone

    meta = read_metadata(path)
    if meta.get("kind") != kind:
        what = f"a {DISPLAY.get(meta.get('kind', ''), meta.get('kind'))} network" if meta.get("kind") else "no fiqabench distilled network"
        raise InputFormatError(path, None, "kind", f"holds {what}, not {DISPLAY[kind]}")
    if meta.get("arch") != arch:
        key = "arch" if kind == "diffiqa-r" else "variant"
        raise ConfigError(f"{path}: holds a {DISPLAY[kind]} with a {meta.get('arch')} backbone, but {key} names "
                          f"{arch}: set the {key} option to match")
    backbone, feature_size = build_backbone(arch, int(meta.get("feature_size") or 0) or None)
    net = assemble(kind, backbone, feature_size)
    try:
        net.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or ["mismatch"])[0]
        raise InputFormatError(path, None, None, f"does not fit a {DISPLAY[kind]} / {arch} network ({first})") from exc
    space = json.loads(meta["input_space"])
    return net.to(device), InputSpace(size=tuple(space["size"]), channel_order=space["channel_order"],
                                      mean=tuple(space["mean"]), std=tuple(space["std"]))


def load(kind: str, options: Mapping[str, Any], device: str | torch.device) -> tuple[nn.Module, InputSpace]:
    from . import networks

    arch = str(options.get("arch") or "embedded") if kind == "diffiqa-r" else VARIANT_ARCHS[str(options.get("variant") or "embedded")]
    path = Path(str(options.get("weights") or DEFAULT_WEIGHTS[kind])).expanduser()
    if not path.is_file():
        raise MissingArtifactError(f"{DISPLAY[kind]} weights not found at {path}")
    if path.suffix == ".safetensors":
        return load_ours(kind, arch, path, device)
    if arch == "embedded":
        key = "arch=iresnet100" if kind == "diffiqa-r" else "variant=L (or T, S, M)"
        raise ConfigError(f"{path}: official weights need {key}")
    if path.suffix == ".onnx":
        if kind != "ediffiqa" or arch != "mobilefacenet":
            raise ConfigError(f"{path}: an ONNX file loads as eDifFIQA(T) only (method ediffiqa, variant=T)")
        return networks.load_onnx(path, device=device), OFFICIAL_INPUT_SPACE
    return networks.load_official(kind, arch, path, device=device), OFFICIAL_INPUT_SPACE


class DistilledMethod:
    """Quality = the head's raw prediction for the image (one forward pass)."""

    def __init__(self, kind: str, *, options: Mapping[str, Any], device: str | torch.device = "cpu") -> None:
        self.kind = kind
        self.device = torch.device(device)
        self.network, self.input_space = load(kind, options, self.device)
        self.network.eval()
        for param in self.network.parameters():
            param.requires_grad_(False)
        self.batch_size = int(options.get("batch_size") or 64)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(x)
        prediction = out[1] if isinstance(out, tuple) else out
        return prediction.reshape(-1)

    def score(self, batch: SampleBatch, *, fr_model: Any = None) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                rgb = rgb_uint8_to_unit(batch.images[start:start + self.batch_size], self.device)
                out.append(self.predict(to_input_space(rgb, self.input_space)).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)


def build_diffiqa_r(*, options: Mapping[str, Any], device: str | torch.device = "cpu") -> DistilledMethod:
    return DistilledMethod("diffiqa-r", options=options, device=device)


def build_ediffiqa(*, options: Mapping[str, Any], device: str | torch.device = "cpu") -> DistilledMethod:
    return DistilledMethod("ediffiqa", options=options, device=device)
