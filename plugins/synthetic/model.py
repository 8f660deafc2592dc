"""SynthArcFace: the embedded FR model of the synthetic world.

A small ResNet-like CNN (574 k parameters) trained with an ArcFace margin on ``synthetic-train``
(:mod:`.train`), the architecture of the embedded-world pilot: a stem and three stages of one basic
block (16-32-64-128 channels), batch norm, PReLU. It is split the way FIQA methods need it:

- ``trunk``: stem + stages, ``(N, 3, 32, 32) -> (N, 128, 4, 4)``;
- ``head``: dropout (p = 0.2, the layer SER-FIQ samples) -> flatten -> linear to 128 -> BN1d.

Weights load from safetensors only (no pickle), and the weights digest is
the sha256 of the file, so a retrained file never reuses cached embeddings of the old one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fiqabench.api import InputSpace
from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError
from fiqabench.files import file_digest
from fiqabench.fr import TorchFRModel

from ._meta import DEFAULT_WEIGHTS, MODEL_VERSION, TRAIN_COMMAND
from .render import IMAGE_SIZE

__all__ = ["EMBEDDING_SIZE", "INPUT_SPACE", "SynthFRNet", "build", "build_network", "load_network"]

#: Embedding dimension (the pilot's 128: enough for a few thousand synthetic identities).
EMBEDDING_SIZE = 128

#: Dropout probability in the head: SER-FIQ's stochastic passes sample this layer (the pilot's 0.2).
DROPOUT = 0.2

#: The model's input space: the renderer's resolution, RGB, mapped to [-1, 1].
INPUT_SPACE = InputSpace(size=(IMAGE_SIZE, IMAGE_SIZE), channel_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

#: Channels of the stem and of the three stages (the pilot's 16-32-64-128).
WIDTHS = (16, 32, 64, 128)


class BasicBlock(nn.Module):
    """ResNet basic block (conv-BN-PReLU-conv-BN + projected shortcut, then PReLU)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act2 = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.short(x))


class Trunk(nn.Sequential):
    """Input space ``(N, 3, S, S)`` -> features ``(N, 128, S/8, S/8)``."""

    def __init__(self) -> None:
        w = WIDTHS
        super().__init__(
            nn.Conv2d(3, w[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(w[0]),
            nn.PReLU(w[0]),
            BasicBlock(w[0], w[1], 2),
            BasicBlock(w[1], w[2], 2),
            BasicBlock(w[2], w[3], 2),
        )


class Head(nn.Sequential):
    """Features -> unnormalised embedding; the dropout layer is what SER-FIQ samples."""

    def __init__(self, size: int = IMAGE_SIZE) -> None:
        side = size // 8
        super().__init__(
            nn.Dropout(DROPOUT),
            nn.Flatten(),
            nn.Linear(WIDTHS[-1] * side * side, EMBEDDING_SIZE),
            nn.BatchNorm1d(EMBEDDING_SIZE),
        )


class SynthFRNet(nn.Module):
    """Trunk + head as one module (what the trainer optimises and the weight file stores)."""

    def __init__(self, size: int = IMAGE_SIZE) -> None:
        super().__init__()
        if size % 8:
            raise ConfigError(f"SynthFRNet needs an image size divisible by 8, got {size}")
        self.trunk = Trunk()
        self.head = Head(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def build_network(size: int = IMAGE_SIZE) -> SynthFRNet:
    """A freshly initialised network."""
    return SynthFRNet(size)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_network(path: str | Path, device: torch.device | str = "cpu") -> SynthFRNet:
    """Load a safetensors weight file written by :func:`fiqabench_plugins.synthetic.train.train`."""
    return load_embedded_weights(
        SynthFRNet(), path, what="SynthArcFace", device=device,
        missing=f"produce them with `{TRAIN_COMMAND}` (about 15 minutes on 2 CPU cores) and pass the file"
        " with --fr-option synthetic-arcface:weights=PATH",
    )


def load_embedded_weights(net: nn.Module, path: str | Path, *, what: str, missing: str,
                          device: torch.device | str = "cpu") -> Any:
    """Load a network of the embedded world from its safetensors file (SynthArcFace, and the
    jointly trained CR-FIQA and MagFace networks), each failure one line: a missing file says
    ``missing`` (how to produce it), an unreadable one and one of another network name the file."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(f"{what} weights not found at {path}: {missing}")
    try:
        state = load_file(str(path), device=str(device))
    except Exception as exc:  # safetensors raises its own error type for truncated or foreign files
        raise InputFormatError(path, None, None, f"not a readable safetensors file ({_first_line(exc)})") from exc
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"{path}: not a {what} weight file for this version ({_first_line(exc)})") from exc
    return net


def build(*, options: Mapping[str, Any], device: str | torch.device = "cpu") -> TorchFRModel:
    """Factory registered as ``synthetic-arcface``: options ``weights`` (path or None)."""
    path = Path(options.get("weights") or DEFAULT_WEIGHTS)
    net = load_network(path, device)
    return TorchFRModel(
        name="synthetic-arcface",
        version=MODEL_VERSION,
        domain="synthetic",
        input_space=INPUT_SPACE,
        embedding_size=EMBEDDING_SIZE,
        trunk=net.trunk,
        head=net.head,
        weights_digest=file_digest(path),
        device=device,
        batch_size=int(options.get("batch_size") or 64),
    )
