"""CR-FIQA (Boutros, Fang, Klemt, Fu, Kuijper, Damer, CVPR 2023): registration only (no torch here).

- method ``cr-fiqa`` -> :class:`fiqabench_plugins.cr_fiqa.model.CRFIQA` (quality = the regression
  unit's output, paper §3.3);
- FR models ``synthetic-cr-fiqa`` (the embedded backbone) and ``cr-fiqa`` (an official iResNet
  checkpoint), since users of CR-FIQA compare with its own recognition;
- trainer ``cr-fiqa`` -> :func:`fiqabench_plugins.cr_fiqa.train.train` (the paper's joint loss on
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

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "cr-fiqa-embedded.safetensors"
TRAIN_COMMAND = "fiqabench train cr-fiqa --option epochs=10 --output PATH"
REFERENCE = "Boutros et al.: CR-FIQA, CVPR 2023 (§3); fdbtrs/CR-FIQA"

TRAINER_OPTIONS: dict[str, Option] = {
    **FR_TRAINER_OPTIONS,
    "alpha": Option(10.0, "weight of the quality regression loss (paper: 10)", float),
    "beta": Option(0.5, "SmoothL1 beta (released code: 0.5)", float),
    "target": Option(
        "paper", "paper: CCS / (NNCCS + 1 + 1e-9) (paper); code: CCS / NNCCS (released trainer)", str,
        choices=("paper", "code"),
    ),
    "scale": Option(32.0, "margin-softmax scale s (the embedded world's 32; paper 64)", float),
    "margin": Option(0.35, "ArcFace margin m (the embedded world's 0.35; paper 0.5)", float),
}

_ARCHS = ("embedded", "iresnet50", "iresnet100")


def _weights_option(default: Path | None) -> Option:
    return Option(
        str(default) if default else None,
        "weights: the embedded .safetensors (arch=embedded) or an official checkpoint .pth"
        " (181952backbone.pth = CR-FIQA(L) iresnet100, 32572backbone.pth = CR-FIQA(S) iresnet50)",
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
        return "pass weights=PATH (an official CR-FIQA checkpoint)"
    if not Path(str(weights)).is_file():
        if Path(str(weights)) == DEFAULT_WEIGHTS:
            return f"shipped weights {DEFAULT_WEIGHTS.name} missing: run `{TRAIN_COMMAND}`"
        return f"weights file {weights} does not exist"
    if options.get("arch", "embedded") == "embedded" and not str(weights).endswith(".safetensors"):
        return "arch=embedded needs the embedded .safetensors; set arch=iresnet50|iresnet100 for official checkpoints"
    return None


_CAPS = FRCapabilities(differentiable=True, has_dropout=True, has_trunk_head=True, unnormalised_embedding=True)


@hookimpl
def fiqabench_register_fiqa_methods(register: Any) -> None:
    register(
        "cr-fiqa",
        "fiqabench_plugins.cr_fiqa.model:CRFIQA",
        version=VERSION,
        summary="Certainty-ratio regression trained jointly with the FR network; quality = the head output",
        reference=REFERENCE,
        display_name="CR-FIQA",
        needs_fr_model="none",
        higher_is_better=True,
        options=METHOD_OPTIONS,
        availability=_availability,
        domains=domains_by_arch,
        domain_hint="its shipped network was trained on the embedded synthetic faces; load an official checkpoint"
        " with --method-option cr-fiqa:weights=PATH --method-option cr-fiqa:arch=iresnet100",
        cost_ms_per_image=0.3,
    )


@hookimpl
def fiqabench_register_fr_models(register: Any) -> None:
    register(
        "synthetic-cr-fiqa",
        "fiqabench_plugins.cr_fiqa.model:build_fr_model",
        version=FR_VERSION,
        summary="CR-FIQA's embedded backbone (SynthArcFace architecture, trained with the CR-FIQA loss)",
        domain="synthetic",
        display_name="CR-FIQA backbone (synthetic)",
        reference=REFERENCE,
        options={
            "weights": Option(str(DEFAULT_WEIGHTS), f"embedded CR-FIQA weights (retrain with `{TRAIN_COMMAND}`)", is_path=True),
            "batch_size": Option(64, "images per forward pass", int, affects_result=False),
        },
        availability=_availability,
        capabilities=_CAPS,
    )
    register(
        "cr-fiqa",
        "fiqabench_plugins.cr_fiqa.model:build_official_fr_model",
        version=FR_VERSION,
        summary="CR-FIQA's iResNet backbone from an official checkpoint (112 px, RGB, [-1, 1])",
        domain="aligned-112-face",
        display_name="CR-FIQA backbone",
        reference=REFERENCE,
        options={
            "weights": _weights_option(None),
            "arch": Option("iresnet100", "iresnet100 (CR-FIQA(L)) or iresnet50 (CR-FIQA(S))", str, choices=_ARCHS[1:]),
            "batch_size": Option(64, "images per forward pass", int, affects_result=False),
        },
        availability=_availability,
        capabilities=_CAPS,
    )


@hookimpl
def fiqabench_register_trainers(register: Any) -> None:
    register(
        "cr-fiqa",
        "fiqabench_plugins.cr_fiqa.train:train",
        version=TRAINER_VERSION,
        summary="Train CR-FIQA's FR network + quality unit jointly on synthetic-train (the paper's joint loss)",
        options=TRAINER_OPTIONS,
        inputs={"dataset": "synthetic-train"},
    )
