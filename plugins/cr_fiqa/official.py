"""Loading official iResNet checkpoints (CR-FIQA, MagFace) into a trunk/head split.

Both releases store an insightface ``arcface_torch``-style iResNet (keys ``conv1``, ``bn1``,
``prelu``, ``layer1``-``layer4``, ``bn2``, ``fc``, ``features``):

- CR-FIQA (``181952backbone.pth``, ``32572backbone.pth``): a plain state dict of the backbone plus
  the quality unit ``qs.weight``/``qs.bias`` (``backbones/iresnet.py``);
- MagFace (``magface_epoch_00025.pth``): ``{"state_dict": ...}`` of the training wrapper, backbone
  keys under ``module.features.`` (or ``features.module.``), the MagLinear class centres under
  ``module.fc.`` (dropped), as ``inference/network_inf.py:clean_dict_inf`` reads it.

The network is built by the FR-models plugin's ``fiqabench_plugins.fr_models.iresnet.iresnet``
(one iResNet implementation in fiqabench). Files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError

__all__ = ["ARCHS", "IResNetHead", "IResNetTrunk", "build_iresnet", "read_checkpoint", "split_wrapped"]

ARCHS = ("iresnet18", "iresnet34", "iresnet50", "iresnet100")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth`` file (``state_dict`` unwrapped, a leading ``module.`` stripped)."""
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(f"checkpoint {path} does not exist (official weights cannot be downloaded here; pass the file you have)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or truncated files
        raise InputFormatError(path, None, None, f"not a readable PyTorch checkpoint ({_first_line(exc)})") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputFormatError(path, None, None, "expected a state dict of tensors (or {'state_dict': ...})")
    out = {}
    for key, value in obj.items():
        out[key.removeprefix("module.")] = value
    return out


def split_wrapped(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(backbone, rest)``: MagFace's ``features.``/``features.module.`` prefixes removed."""
    backbone: dict[str, torch.Tensor] = {}
    rest: dict[str, torch.Tensor] = {}
    wrapped = any(k.startswith(("features.conv1.", "features.module.conv1.")) for k in state)
    for key, value in state.items():
        if not wrapped:
            backbone[key] = value
        elif key.startswith("features.module."):
            backbone[key[len("features.module."):]] = value
        elif key.startswith("features."):
            backbone[key[len("features."):]] = value
        else:
            rest[key] = value
    return backbone, rest


def build_iresnet(
    state: dict[str, torch.Tensor], arch: str, *, path: str | Path, dropout: float = 0.0, bn_eps: float | None = None
) -> nn.Module:
    """An iResNet of ``arch`` with ``state`` loaded strictly (embedding size read from ``features``)."""
    if arch not in ARCHS:
        raise ConfigError(f"unknown iResNet architecture {arch!r} (one of {', '.join(ARCHS)})")
    try:
        from fiqabench_plugins.fr_models.iresnet import iresnet
    except ImportError as exc:
        raise MissingArtifactError(
            f"loading {path} needs the iResNet module fiqabench_plugins.fr_models.iresnet (the fr_models plugin),"
            f" which is not installed ({_first_line(exc)})"
        ) from exc
    if "features.weight" not in state:
        raise ConfigError(f"{path}: no 'features.weight' key: not an iResNet checkpoint in the arcface_torch layout")
    net = iresnet(arch, embedding_size=int(state["features.weight"].shape[0]), dropout=dropout)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"{path}: not an {arch} checkpoint in the arcface_torch layout ({_first_line(exc)})") from exc
    if bn_eps is not None:
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eps = bn_eps
    return net.eval()


class IResNetTrunk(nn.Module):
    """``conv1 .. bn2`` + flatten of an arcface_torch iResNet."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.conv1, self.bn1, self.prelu = net.conv1, net.bn1, net.prelu
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.bn2 = net.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.bn2(x), 1)


class IResNetHead(nn.Module):
    """``dropout -> fc -> features`` (BN1d): the embedding before normalisation."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.dropout, self.fc, self.features = net.dropout, net.fc, net.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.fc(self.dropout(x)))
