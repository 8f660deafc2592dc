"""Read the released iResNet checkpoints of insightface arcface_torch, AdaFace and CurricularFace.

Every file is read with ``torch.load(weights_only=True)``: no code in a checkpoint ever runs. The
three projects store different things (read in their training scripts):

- arcface_torch ``backbone.pth``: the backbone's plain state dict (``train_v2.py`` saves
  ``backbone.module.state_dict()``); its resumable ``checkpoint_gpu_<rank>.pt`` holds the same under
  ``state_dict_backbone``.
- AdaFace ``*.ckpt``: a PyTorch-Lightning checkpoint; the network is under ``state_dict`` with the
  prefix ``model.`` and the margin head's class centres under ``head.`` (dropped here). Lightning
  also stores the hyper-parameters as an ``AttributeDict`` (a ``dict`` subclass), read here as a
  plain ``OrderedDict``; ``argparse.Namespace`` is allowed too. Both are inert data holders.
- CurricularFace ``Backbone_IR_101_*.pth``: the plain state dict (``backbone.module.state_dict()``).

A ``module.`` prefix (DataParallel) is stripped everywhere; half-precision tensors become float32.
"""

from __future__ import annotations

import argparse
import collections
import pickle
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError

from .iresnet import ARCHS, IResNet, IRNet, iresnet, irnet

__all__ = ["LAYOUTS", "load_layout", "read_checkpoint", "state_dict_for"]

#: Layout name -> how its state dict is found and which network it fills.
LAYOUTS = ("arcface_torch", "adaface", "curricularface")

#: Total blocks per depth; the four depths differ, so a checkpoint's block count names its arch.
_BLOCKS_TO_ARCH = {sum(layers): arch for arch, layers in ARCHS.items()}


# Lightning's ``AttributeDict`` (a dict with attribute access; it moved between packages over the
# years) is read as a plain OrderedDict: the weights-only unpickler fills only exact dict types.
_SAFE_GLOBALS: list[Any] = [
    (collections.OrderedDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (collections.OrderedDict, "lightning_fabric.utilities.data.AttributeDict"),
    (collections.OrderedDict, "lightning.fabric.utilities.data.AttributeDict"),
    argparse.Namespace,
]


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for index, line in enumerate(lines):  # the weights-only unpickler buries the cause in a paragraph
        if "WeightsUnpickler error:" in line:
            cause = line.split("WeightsUnpickler error:", 1)[1].strip()
            return cause or (lines[index + 1] if index + 1 < len(lines) else line)
    return lines[0] if lines else type(exc).__name__


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(f"weights file {path} does not exist")
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError,
            struct.error) as exc:  # struct.error: a few junk bytes
        raise InputFormatError(
            path,
            None,
            None,
            f"not readable with torch.load(weights_only=True): {_first_line(exc)}; if it is a trusted "
            "training checkpoint, save its state dict alone (torch.save(ckpt['state_dict'], 'out.pth'))",
        ) from exc


def _strip(prefix: str, state: Mapping[str, Any]) -> dict[str, Any]:
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix) :]: value for key, value in state.items()}
    return dict(state)


def _as_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise InputFormatError(
            path, None, None, f"expected a state dict (a mapping), found {type(obj).__name__}"
        )
    bad = [
        key for key, value in obj.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)
    ]
    if bad:
        raise InputFormatError(
            path, None, str(bad[0]), "expected a state dict of tensors; this entry is not a tensor"
        )
    return {key: (value.float() if value.is_floating_point() else value) for key, value in obj.items()}


def state_dict_for(layout: str, obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone's state dict (official key names, prefixes removed) from a loaded checkpoint."""
    path = Path(path)
    if isinstance(obj, Mapping):
        if layout == "arcface_torch" and "state_dict_backbone" in obj:
            obj = obj["state_dict_backbone"]
        elif layout == "adaface" and "state_dict" in obj:
            # Lightning: the network is the Trainer's ``model`` attribute, the margin head ``head``.
            lightning = obj["state_dict"]
            if not isinstance(lightning, Mapping):
                raise InputFormatError(path, None, "state_dict", "expected a mapping of tensors")
            obj = {
                key[len("model.") :]: value for key, value in lightning.items() if key.startswith("model.")
            }
            obj.update(
                {key: value for key, value in lightning.items() if not key.startswith(("model.", "head."))}
            )
        elif "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
            obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        return _as_state_dict(obj, path)  # refuses it, naming what it is
    return _as_state_dict(_strip("module.", obj), path)


def _guess(state: Mapping[str, Any]) -> str:
    """``layout/arch`` a state dict looks like, for error messages."""
    keys = set(state)
    if "layer1.0.bn1.weight" in keys:
        layout = "arcface_torch"
        blocks = len({key.split(".")[0] + "." + key.split(".")[1] for key in keys if key.startswith("layer")})
    elif "body.0.res_layer.0.weight" in keys:
        layout = "adaface" if "body.0.res_layer.5.weight" in keys else "curricularface"
        blocks = len({key.split(".")[1] for key in keys if key.startswith("body.")})
    else:
        return "none of the iResNet layouts"
    return f"{layout} {_BLOCKS_TO_ARCH.get(blocks, f'({blocks} blocks)')}"


def _embedding_size(layout: str, state: Mapping[str, torch.Tensor], path: Path) -> int:
    key = "fc.weight" if layout == "arcface_torch" else "output_layer.3.weight"
    weight = state.get(key)
    if weight is None or weight.ndim != 2:
        raise ConfigError(
            f"{path}: not a {layout} iResNet checkpoint (no {key}; it looks like {_guess(state)})"
        )
    return int(weight.shape[0])


def build_network(layout: str, arch: str, *, embedding_size: int, dropout: float) -> IResNet | IRNet:
    if layout == "arcface_torch":
        return iresnet(arch, embedding_size=embedding_size, dropout=dropout)
    if layout in ("adaface", "curricularface"):
        return irnet(
            arch, bn_after_first_conv=layout == "adaface", embedding_size=embedding_size, dropout=dropout
        )
    raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str | None:
    """How ``state`` differs from the ``expected`` keys and shapes, in words (None: it fits)."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) (first: {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (first: {unexpected[0]})")
    if shapes:
        key = shapes[0]
        parts.append(f"{len(shapes)} shape mismatch(es) (first: {key} is {tuple(state[key].shape)},"
                     f" expected {tuple(expected[key].shape)})")
    return ", ".join(parts) or None


def load_layout(layout: str, path: str | Path, arch: str, *, dropout: float) -> IResNet | IRNet:
    """The network of checkpoint ``path`` in ``layout``, every key matched (strict), in eval mode."""
    path = Path(path)
    state = state_dict_for(layout, read_checkpoint(path), path)
    net = build_network(layout, arch, embedding_size=_embedding_size(layout, state, path), dropout=dropout)
    mismatch = state_dict_mismatch(net.state_dict(), state)
    if mismatch:
        raise ConfigError(
            f"{path}: not a {layout} {arch} checkpoint: {mismatch}; "
            f"the file looks like {_guess(state)}"
            " (set the arch option, or use the FR model of that layout)"
        )
    net.load_state_dict(state, strict=True)
    return net.eval()
