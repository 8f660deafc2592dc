"""MagFace (Meng, Zhao, Huang, Wang, CVPR 2021): registration only (no torch here).

- method ``magface`` -> :class:`fiqabench_plugins.magface.model.MagFace` (quality = ``||f(x)||``);
- FR models ``synthetic-magface`` (the embedded network) and ``magface`` (an official iResNet
  checkpoint): MagFace is a recognition model first;
- trainer ``magface`` -> :func:`fiqabench_plugins.magface.train.train` (paper §3 on
  ``synthetic-train``, the machinery of ``synthetic-fr``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fiqabench import hookimpl
from fiqabench.api import FRCapabilities, Option
from fiqabench_plugins.synthetic import FR_TRAINER_OPTIONS, domains_by_arch

#: Bump when scores change for the same options (cache keys use name@version).
VERSION = "1"
FR_VERSION = "1"
TRAINER_VERSION = "1"

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "magface-embedded.safetensors"
TRAIN_COMMAND = "fiqabench train magface --option epochs=10 --output PATH"
REFERENCE = "Meng et al.: MagFace, CVPR 2021 (§3); IrvingMeng/MagFace"

TRAINER_OPTIONS: dict[str, Option] = {
    **FR_TRAINER_OPTIONS,
    "l_a": Option(10.0, "lower magnitude bound l_a (release: 10)", float),
    "u_a": Option(110.0, "upper magnitude bound u_a (release: 110)", float),
    "l_m": Option(0.45, "margin at l_a (release: 0.45)", float),
    "u_m": Option(0.8, "margin at u_a (release: 0.8)", float),
    "lambda_g": Option(35.0, "weight of the regulariser g(a) (release: 35)", float),
    "scale": Option(32.0, "margin-softmax scale s (the embedded world's 32; release 64)", float),
}

_ARCHS = ("embedded", "iresnet18", "iresnet50", "iresnet100")


def _weights_option(default: Path | None) -> Option:
    return Option(
        str(default) if default else None,
        "weights: the embedded .safetensors (arch=embedded) or an official checkpoint .pth (magface_epoch_00025.pth)",
        is_path=True,
    )


METHOD_OPTIONS: dict[str, Option] = {
    "weights": _weights_option(DEFAULT_WEIGHTS),
    "arch": Option("embedded", "network of the weights", str, choices=_ARCHS),
    "batch_size": Option(64, "images per forward pass", int, affects_result=False),
}


def _availability(options: Mapping[str, Any]) -> str | None:
    weights = options.get("weights")
    if not weights:
        return "pass weights=PATH (an official MagFace checkpoint)"
    if not Path(str(weights)).is_file():
        if Path(str(weights)) == DEFAULT_WEIGHTS:
            return f"shipped weights {DEFAULT_WEIGHTS.name} missing: run `{TRAIN_COMMAND}`"
        return f"weights file {weights} does not exist"
    if options.get("arch", "embedded") == "embedded" and not str(weights).endswith(".safetensors"):
        return "arch=embedded needs the embedded .safetensors; set arch=iresnet18|iresnet50|iresnet100 for official checkpoints"
    return None


@hookimpl
def fiqabench_register_fiqa_methods(register: Any) -> None:
    register(
        "magface",
        "fiqabench_plugins.magface.model:MagFace",
        version=VERSION,
        summary="Magnitude of the unnormalised embedding of an FR model trained with the MagFace loss",
        reference=REFERENCE,
        display_name="MagFace",
        needs_fr_model="none",
        higher_is_better=True,
        options=METHOD_OPTIONS,
        availability=_availability,
        domains=domains_by_arch,
        domain_hint="its shipped network was trained on the embedded synthetic faces; load an official checkpoint"
        " with --method-option magface:weights=PATH --method-option magface:arch=iresnet100",
        cost_ms_per_image=0.3,
    )


@hookimpl
def fiqabench_register_fr_models(register: Any) -> None:
    register(
        "synthetic-magface",
        "fiqabench_plugins.magface.model:build_fr_model",
        version=FR_VERSION,
        summary="Embedded FR network (SynthArcFace architecture) trained with the MagFace loss",
        domain="synthetic",
        display_name="MagFace (synthetic)",
        reference=REFERENCE,
        options={
            "weights": Option(str(DEFAULT_WEIGHTS), f"embedded MagFace weights (retrain with `{TRAIN_COMMAND}`)", is_path=True),
            "batch_size": Option(64, "images per forward pass", int, affects_result=False),
        },
        availability=_availability,
        capabilities=FRCapabilities(differentiable=True, has_dropout=True, has_trunk_head=True, unnormalised_embedding=True),
    )
    register(
        "magface",
        "fiqabench_plugins.magface.model:build_official_fr_model",
        version=FR_VERSION,
        summary="MagFace iResNet from an official checkpoint (112 px, BGR, [0, 1])",
        domain="aligned-112-face",
        display_name="MagFace",
        reference=REFERENCE,
        options={
            "weights": _weights_option(None),
            "arch": Option("iresnet100", "iresnet18, iresnet50 or iresnet100", str, choices=_ARCHS[1:]),
            "batch_size": Option(64, "images per forward pass", int, affects_result=False),
        },
        availability=_availability,
        capabilities=FRCapabilities(differentiable=True, has_dropout=False, has_trunk_head=True, unnormalised_embedding=True),
    )


@hookimpl
def fiqabench_register_trainers(register: Any) -> None:
    register(
        "magface",
        "fiqabench_plugins.magface.train:train",
        version=TRAINER_VERSION,
        summary="Train the embedded FR network with the MagFace loss on synthetic-train (paper §3)",
        options=TRAINER_OPTIONS,
        inputs={"dataset": "synthetic-train"},
    )
