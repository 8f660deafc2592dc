"""The embedded synthetic world: registration only (no numpy or torch import here).

Registers the datasets ``synthetic`` (the default benchmark) and ``synthetic-train``, the FR
model ``synthetic-arcface`` (SynthArcFace) and the trainer ``synthetic-fr`` that produces its
weights. The heavy modules (:mod:`.render`, :mod:`.dataset`, :mod:`.model`, :mod:`.train`) are
imported only when a component is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fiqabench import FRCapabilities, Option, hookimpl
from fiqabench.api import parse_bool

from ._meta import DEFAULT_WEIGHTS, GENERATOR_VERSION, MODEL_VERSION, TRAIN_COMMAND

_PILOT = "fiqabench embedded-world pilot (research/embedded-world-pilot.md); benchmarks/embedded_world.md"


#: Each split's shape (``dataset.SPLITS``, which imports numpy; a test keeps the two equal). The
#: defaults are real values, not None, so that passing a default explicitly keeps the cache keys.
SPLIT_DEFAULTS: dict[str, dict[str, Any]] = {
    "synthetic": {"identities": 100, "images_per_identity": 10, "non_mated": 100_000,
                  "degraded_fraction": 0.5, "max_severity": 1.0, "seed": 0},
    "synthetic-train": {"identities": 2000, "images_per_identity": 12, "non_mated": 100_000,
                        "degraded_fraction": 0.0, "max_severity": 1.0, "seed": 0},
}


def _dataset_options(split: str) -> dict[str, Option]:
    d = SPLIT_DEFAULTS[split]
    return {
        "identities": Option(d["identities"], "number of identities", int),
        "images_per_identity": Option(d["images_per_identity"], "images per identity", int),
        "non_mated": Option(d["non_mated"], "number of sampled non-mated comparisons", int),
        "degraded_fraction": Option(d["degraded_fraction"], "share of each identity's images that are degraded", float),
        "max_severity": Option(d["max_severity"], "severities are drawn from U(0, max_severity]", float),
        "seed": Option(d["seed"], "world seed offset: another seed is another world", int),
    }


def _weights_available(options: Mapping[str, Any]) -> str | None:
    path = Path(options.get("weights") or DEFAULT_WEIGHTS)
    if path.is_file():
        return None
    return f"weights file {path} is missing: produce it with `{TRAIN_COMMAND}`"


def domains_by_arch(options: Mapping[str, Any]) -> tuple[str, ...]:
    """Domains of a method whose network is either trained here on the embedded world
    (``arch=embedded``, the shipped weights: synthetic data only) or an official 112 px one."""
    return ("synthetic",) if options.get("arch", "embedded") == "embedded" else ("aligned-112-face",)


#: Options of every trainer on the embedded world (``synthetic-fr`` and the jointly trained FR
#: models of ``cr-fiqa`` and ``magface``, which reuse :mod:`.train`'s machinery): one recipe, so
#: their networks see the same data, augmentation and schedule.
FR_TRAINER_OPTIONS: dict[str, Option] = {
    "epochs": Option(20, "training epochs", int),
    "batch_size": Option(256, "images per step", int),
    "lr": Option(3e-3, "peak learning rate of the one-cycle schedule", float),
    "weight_decay": Option(5e-4, "AdamW weight decay", float),
    "aug_p": Option(0.5, "probability that a training image is degraded", float),
    "aug_max_severity": Option(0.5, "augmentation severity ~ U(0, this)", float),
    "flip": Option(True, "random horizontal flips", parse_bool),
    "seed": Option(0, "training seed (initialisation, batches, augmentation)", int),
    "num_threads": Option(
        1,
        "torch CPU threads (1: on a shared 2-core machine 2 threads measured 10x slower)",
        int,
        affects_result=False,
    ),
}


@hookimpl
def fiqabench_register_datasets(register: Callable[..., None]) -> None:
    register(
        "synthetic",
        "fiqabench_plugins.synthetic.dataset:build_test",
        version=GENERATOR_VERSION,
        summary="Embedded synthetic faces: 100 ids x 10 images, half degraded (7 types, calibrated severity)",
        domain="synthetic",
        default_fr_model="synthetic-arcface",
        default=True,
        display_name="Synthetic",
        reference=_PILOT,
        options=_dataset_options("synthetic"),
    )
    register(
        "synthetic-train",
        "fiqabench_plugins.synthetic.dataset:build_train",
        version=GENERATOR_VERSION,
        summary="Embedded synthetic faces for training: 2,000 other ids x 12 clean images",
        domain="synthetic",
        default_fr_model="synthetic-arcface",
        display_name="Synthetic-train",
        reference=_PILOT,
        options=_dataset_options("synthetic-train"),
    )


@hookimpl
def fiqabench_register_fr_models(register: Callable[..., None]) -> None:
    register(
        "synthetic-arcface",
        "fiqabench_plugins.synthetic.model:build",
        version=MODEL_VERSION,
        summary="Small ResNet (0.57 M params, 32 px) trained with ArcFace on synthetic-train",
        domain="synthetic",
        display_name="SynthArcFace",
        reference=_PILOT,
        # The trunk/head split and the dropout layer before the embedding are built in
        # (model.py), for SER-FIQ-style methods.
        capabilities=FRCapabilities(
            differentiable=True, has_dropout=True, has_trunk_head=True, unnormalised_embedding=True
        ),
        cost_ms_per_image=0.5,
        options={
            "weights": Option(
                str(DEFAULT_WEIGHTS),
                "safetensors weight file (default: the shipped one; retrain with "
                f"`{TRAIN_COMMAND}`)",
                is_path=True,
            ),
            "batch_size": Option(64, "images per forward pass", int, affects_result=False),
        },
        availability=_weights_available,
    )


@hookimpl
def fiqabench_register_trainers(register: Callable[..., None]) -> None:
    register(
        "synthetic-fr",
        "fiqabench_plugins.synthetic.train:train",
        version=MODEL_VERSION,
        summary="Train SynthArcFace on synthetic-train (ArcFace, degradation augmentation, one-cycle AdamW)",
        options=FR_TRAINER_OPTIONS,
        inputs={"dataset": "synthetic-train"},
    )
