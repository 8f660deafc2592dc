"""Weights: the official DifFIQA checkpoint layout and our own safetensors files.

Official layout (``diffiqa/diffusion_base/diff_main.py`` L133-147; research note ``diffiqa.md``
§3.4): ``torch.save`` of a dict ``{'step', 'model', 'opt', 'ema', 'scaler'}`` where

- ``'model'`` is the state dict of ``GaussianDiffusion`` (the *online* weights): the UNet under
  the prefix ``model.`` plus the schedule buffers (``betas``, ``alphas_cumprod``, ...,
  ``p2_loss_weight``);
- ``'ema'`` is the state dict of ``ema_pytorch.EMA`` (early-2023 versions): ``initted``, ``step``,
  ``online_model.<diffusion keys>`` and ``ema_model.<diffusion keys>``.

The official inference uses ``data['model']`` (``Trainer.load``, L150-167; ``inference.py``
L105-108 call ``trainer.model``, never ``trainer.ema.ema_model``), so the online weights are our
default; ``ema=True`` picks ``ema_model.*``. Our UNet modules carry the official names, so the
mapping is: strip ``[module.]model.`` (or ``ema_model.model.``), drop schedule buffers after
checking them against our cosine schedule. Files are read with ``torch.load(...,
weights_only=True)`` only.

Our own files are safetensors: ``model.<key>`` (online) and optionally ``ema.<key>`` tensors, with
the UNet configuration and provenance as string metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError

from .schedule import DiffusionSchedule
from .unet import UNet, UNetConfig

__all__ = [
    "FORMAT",
    "check_schedule_buffers",
    "load_official_checkpoint",
    "load_weights",
    "official_to_unet_state_dict",
    "read_metadata",
    "save_weights",
]

#: ``format`` metadata value of our safetensors files.
FORMAT = "fiqabench-diffiqa-ddpm/1"
#: Buffers of ``GaussianDiffusion`` that are not UNet weights (``diff_gauss.py`` L77-107).
OFFICIAL_BUFFERS = frozenset(DiffusionSchedule.BUFFER_NAMES) | {"p2_loss_weight"}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _strip(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def check_schedule_buffers(buffers: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Raise :class:`ConfigError` if a checkpoint's schedule is not our cosine T=1000 schedule."""
    ours = DiffusionSchedule.cosine().buffers()
    for name, value in buffers.items():
        if name not in ours:
            continue
        expected = ours[name]
        if tuple(value.shape) != tuple(expected.shape) or not torch.allclose(
            value.detach().float().cpu(), expected, rtol=1e-4, atol=1e-7
        ):
            raise ConfigError(
                f"{path}: buffer {name!r} differs from the cosine T=1000 schedule DifFIQA uses;"
                " this checkpoint was trained with another beta schedule"
            )


def official_to_unet_state_dict(
    diffusion_state: Mapping[str, torch.Tensor], *, path: str | Path = "<checkpoint>"
) -> dict[str, torch.Tensor]:
    """``GaussianDiffusion`` state dict -> :class:`UNet` state dict (checks the schedule)."""
    state = dict(diffusion_state)
    if state and all(key.startswith("module.") for key in state):  # DataParallel / DDP wrapper
        state = _strip(state, "module.")
    buffers = {key: value for key, value in state.items() if key in OFFICIAL_BUFFERS}
    check_schedule_buffers(buffers, path)
    unet_state = _strip(state, "model.")
    leftover = sorted(k for k in state if k not in OFFICIAL_BUFFERS and not k.startswith("model."))
    if leftover or not unet_state:
        raise InputFormatError(
            path, None, "model", f"not a DifFIQA GaussianDiffusion state dict (unexpected keys {leftover[:5]})"
        )
    return unet_state


def _load_into(model: UNet, state: Mapping[str, torch.Tensor], path: str | Path, field: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise InputFormatError(
            path,
            None,
            field,
            f"does not match the {model.config.name} UNet: missing {missing[:5]}{'...' if len(missing) > 5 else ''},"
            f" unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
            " (is unet_config right?)",
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise InputFormatError(
                path, None, f"{field}.{key}", f"shape {tuple(value.shape)}, expected {tuple(own[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


def load_official_checkpoint(
    path: str | Path,
    *,
    ema: bool = False,
    config: UNetConfig | None = None,
    device: torch.device | str = "cpu",
) -> UNet:
    """Build a :class:`UNet` from an official ``model.pt`` / ``diff_pretrain.pt`` file.

    ``ema=False`` (default, as the official inference) reads ``data['model']``;
    ``ema=True`` reads ``data['ema']['ema_model.*']``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(f"DifFIQA checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling, zip and EOF errors of a truncated or foreign file
        raise InputFormatError(path, None, None, (
            f"not a PyTorch checkpoint that loads with weights_only=True ({type(exc).__name__}): a truncated"
            " or foreign file, or one holding pickled objects, which fiqabench never unpickles"
        )) from exc
    if not isinstance(data, Mapping) or "model" not in data:
        raise InputFormatError(path, None, None, "expected the official checkpoint dict with a 'model' entry")
    if ema:
        ema_state = data.get("ema")
        if not isinstance(ema_state, Mapping):
            raise InputFormatError(path, None, "ema", "the checkpoint holds no EMA state")
        diffusion_state = _strip(ema_state, "ema_model.")
        field = "ema"
    else:
        diffusion_state = dict(data["model"])
        field = "model"
    unet_state = official_to_unet_state_dict(diffusion_state, path=path)
    model = UNet(config or UNetConfig.official())
    _load_into(model, unet_state, path, field)
    return model.to(device).eval()


def save_weights(
    path: str | Path,
    model: UNet,
    *,
    ema_model: UNet | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write our safetensors file: ``model.*`` (+ ``ema.*``), the config and ``metadata``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if ema_model is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema_model.state_dict().items()})
    meta = {"format": FORMAT, "unet_config": model.config.to_json(), "schedule": "cosine T=1000 s=0.008"}
    meta.update(metadata or {})
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of one of our safetensors files (no tensors read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises its own error type for truncated or foreign files
        raise InputFormatError(path, None, None, f"not a readable safetensors file ({_first_line(exc)})") from exc


def load_weights(
    path: str | Path,
    *,
    ema: bool = False,
    expected_config: UNetConfig | None = None,
    device: torch.device | str = "cpu",
) -> UNet:
    """Load one of our safetensors files (``.safetensors``) or an official checkpoint (other
    suffixes). ``expected_config``, when given, must match the file's architecture."""
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(f"DifFIQA DDPM weights {path} do not exist")
    if path.suffix != ".safetensors":
        config = expected_config or UNetConfig.official()
        if config != UNetConfig.official():
            raise ConfigError(
                f"{path}: an official DifFIQA checkpoint holds the official UNet; set unet_config=official"
            )
        return load_official_checkpoint(path, ema=ema, config=config, device=device)
    from safetensors.torch import load_file

    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "unet_config" not in meta:
        raise InputFormatError(path, None, "metadata.format", f"expected {FORMAT!r}, got {meta.get('format')!r}")
    try:
        config = UNetConfig.from_json(meta["unet_config"])
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise InputFormatError(path, None, "metadata.unet_config", str(exc)) from exc
    if expected_config is not None and config != expected_config:
        raise ConfigError(
            f"{path}: holds a UNet {config.to_json()}, but unet_config={expected_config.name} expects"
            f" {expected_config.to_json()}"
        )
    tensors = load_file(str(path))
    prefix = "ema." if ema else "model."
    state = _strip(tensors, prefix)
    if not state:
        raise InputFormatError(path, None, prefix.rstrip("."), "no such weights in this file (ema=true needs EMA weights)")
    model = UNet(config)
    _load_into(model, state, path, prefix.rstrip("."))
    return model.to(device).eval()
