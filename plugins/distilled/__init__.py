"""DifFIQA(R) and eDifFIQA: one-pass regressors distilled from DifFIQA labels. Registration only.

- methods ``diffiqa-r`` (Babnik, Peer, Struc, ICIP 2023, §3.6: an FR backbone + Linear(d -> 1))
  and ``ediffiqa`` (Babnik, Peer, Struc, T-BIOM 2024: backbone + MLP d -> 1024 -> GELU -> 1): the
  score is the raw prediction, higher is better (:mod:`.method`);
- trainers ``diffiqa-r`` and ``ediffiqa`` (:mod:`.train`): fine-tune a registered FR model on a
  label folder written by ``fiqabench label`` (:mod:`fiqabench.labels`).

Weights: the shipped ``weights/*-embedded.safetensors`` were trained here on DifFIQA labels of the
embedded training split (``benchmarks/distillation.md`` says how); official checkpoints
(``diffiqa(r).pth``, ``ediffiqa{T,S,M,L}.pth``) and OpenCV's eDifFIQA(T) ONNX export load with
``weights=PATH`` and the matching ``arch`` / ``variant``. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fiqabench import hookimpl
from fiqabench.api import Option
from fiqabench.labels import NORMALISATIONS
from fiqabench.options import boolean, choice, integer, number

#: Bump when scores change for the same options (cache keys use name@version).
VERSION = "1"
TRAINER_VERSION = "1"

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = {
    "diffiqa-r": WEIGHTS_DIR / "diffiqa-r-embedded.safetensors",
    "ediffiqa": WEIGHTS_DIR / "ediffiqa-embedded.safetensors",
}
REFERENCES = {
    "diffiqa-r": "Babnik, Peer, Struc: DifFIQA: Face Image Quality Assessment Using Denoising Diffusion "
    "Probabilistic Models, IJCB 2023 (§3.6); LSIbabnikz/DifFIQA diffiqa(r)/",
    "ediffiqa": "Babnik, Peer, Struc: eDifFIQA: Towards Efficient Face Image Quality Assessment based on "
    "Denoising Diffusion Probabilistic Models, IEEE T-BIOM 2024; LSIbabnikz/eDifFIQA",
}
#: How the shipped weights were made (two label jobs, then the trainer on both folders);
#: benchmarks/distillation.md. Two worlds of 3,000 training identities each (dataset seeds 0 and
#: 1), labelled by DifFIQA with n = 2 repeats instead of 10: five times cheaper, and its scores
#: order the benchmark's images as n = 10 does to Spearman 0.999.
LABEL_COMMANDS = tuple(
    "fiqabench label --method diffiqa --method-option n=2 --dataset synthetic-train --dataset-option identities=3000"
    f" --dataset-option degraded_fraction=0.5 --dataset-option seed={seed} --output LABELS-{seed}"
    for seed in (0, 1)
)
#: The embedded recipe departs from the official one where 72,000 labels are not 2 million: batch
#: 32, 30 epochs (60,750 steps instead of 506), a cosine decay of the learning rates, mirrored
#: images and rank targets (train.py says why for each; benchmarks/distillation.md); the backbone
#: keeps the official lr 1e-4 (given here so the command reads whole); eDifFIQA keeps identities
#: with 3 top images (12 images each here).
EMBEDDED_RECIPE = ("--option batch_size=32 --option epochs=30 --option lr_backbone=1e-4 --option lr_schedule=cosine"
                   " --option hflip=on --option label_normalisation=rank")
_LABELS = "--labels LABELS-0 --labels LABELS-1"
TRAIN_COMMANDS = {
    "diffiqa-r": f"fiqabench train diffiqa-r {_LABELS} {EMBEDDED_RECIPE} --output PATH",
    "ediffiqa": f"fiqabench train ediffiqa {_LABELS} {EMBEDDED_RECIPE} --option min_images=3 --output PATH",
}

#: Backbones of the official releases (research notes §6, §7.1): DifFIQA(R) = CosFace iResNet-100;
#: eDifFIQA L/M/S = CosFace iResNet-100/50/18, T = MobileFaceNet.
DIFFIQA_R_ARCHS = ("embedded", "iresnet18", "iresnet50", "iresnet100")
#: eDifFIQA's named configurations the trainer builds (research notes §7.1).
TRAINER_VARIANTS = ("T", "S", "M", "L")
EDIFFIQA_VARIANTS = ("embedded", "T", "S", "M", "L")


def _arch(name: str, options: Mapping[str, Any]) -> str:
    return str(options.get("arch" if name == "diffiqa-r" else "variant") or "embedded")


def _availability(name: str) -> Any:
    def available(options: Mapping[str, Any]) -> str | None:
        weights = options.get("weights")
        embedded = _arch(name, options) == "embedded"
        if not weights:
            return f"pass weights=PATH (an official {name} checkpoint)"
        path = Path(str(weights))
        if not path.is_file():
            if embedded and path == DEFAULT_WEIGHTS[name]:
                labels = "`, `".join(LABEL_COMMANDS)
                return f"shipped weights {path.name} missing: run `{labels}`, then `{TRAIN_COMMANDS[name]}`"
            return f"weights file {weights} does not exist"
        if embedded and path.suffix != ".safetensors":
            key = "arch=iresnet100" if name == "diffiqa-r" else "variant=L (or T, S, M)"
            return f"weights {path.name} are not the embedded .safetensors: set {key} for official checkpoints"
        return None

    return available


def _domains(name: str) -> Any:
    def domains(options: Mapping[str, Any]) -> tuple[str, ...]:
        return ("synthetic",) if _arch(name, options) == "embedded" else ("aligned-112-face",)

    return domains


def _method_options(name: str) -> dict[str, Option]:
    options: dict[str, Option] = {
        "weights": Option(
            str(DEFAULT_WEIGHTS[name]),
            "our .safetensors (default: the shipped embedded weights), an official .pth state dict"
            + (", or OpenCV's eDifFIQA(T) .onnx" if name == "ediffiqa" else ""),
            is_path=True,
        ),
    }
    if name == "diffiqa-r":
        options["arch"] = Option("embedded", "backbone of an official .pth (the release: iresnet100)", str,
                                 choices=DIFFIQA_R_ARCHS)
    else:
        options["variant"] = Option("embedded", "official configuration of a .pth/.onnx: T (MobileFaceNet), "
                                    "S/M/L (iResNet-18/50/100)", str, choices=EDIFFIQA_VARIANTS)
    options["batch_size"] = Option(64, "images per forward pass", int, affects_result=False)
    return options


def _trainer_options(name: str) -> dict[str, Option]:
    official_epochs = 1 if name == "diffiqa-r" else 3
    options: dict[str, Option] = {
        "epochs": Option(official_epochs, f"epochs over the training labels (official: {official_epochs})", integer(min=1)),
        "batch_size": Option(128, "images per step (official 128)", integer(min=2)),
        "lr_head": Option(1e-3, "Adam learning rate of the head (official 1e-3)", number(min=0)),
        "lr_backbone": Option(1e-4, "Adam learning rate of the backbone's last tensors (official 1e-4)", number(min=0)),
        "backbone_tensors": Option(
            100, "how many of the backbone's last parameter tensors are optimised (official: list(params)[-100:])",
            integer(min=0)),
        "clip_grad_norm": Option(5.0, "gradient-norm clipping (official 5)", number(min=0, min_inclusive=False)),
        "amp": Option("auto", "mixed precision: auto (on for CUDA, as the official code), on, off",
                      choice("auto", "on", "off"), choices=("auto", "on", "off")),
        "lr_schedule": Option("constant", "learning rates over the run: constant (official) or cosine (decaying to 0"
                              " at the last step)", choice("constant", "cosine"), choices=("constant", "cosine")),
        "hflip": Option(False, "mirror each training image with probability 0.5 (official: no augmentation)",
                        boolean),
        "label_normalisation": Option(
            "min-max", "training target: min-max normalised labels (official) or rank, (rank - 1) / (N - 1)",
            choice(*NORMALISATIONS), choices=tuple(NORMALISATIONS)),
        "seed": Option(42069, "seed of the batch order (the official seed_all value)", integer()),
        "checkpoint_steps": Option(200, "steps between resumable checkpoints (OUTPUT.ckpt)", integer(min=1),
                                   affects_result=False),
        "num_threads": Option(1, "torch CPU threads", integer(min=1), affects_result=False),
        "image_cache_mb": Option(2048.0, "keep the decoded training images in memory when they fit in this many MB",
                                 number(min=0), affects_result=False),
    }
    if name == "ediffiqa":
        options.update({
            "variant": Option(
                "fr-model", "backbone: fr-model (a copy of --fr-model's network), S/M/L (the same, checked to be"
                " the iResNet-18/50/100 of eDifFIQA's configuration) or T (a MobileFaceNet on 112 px input,"
                " randomly initialised as the official T config, or from backbone_weights)",
                choice("fr-model", *TRAINER_VARIANTS), choices=("fr-model",) + TRAINER_VARIANTS),
            "backbone_weights": Option(None, "variant=T: a pretrained MobileFaceNet state dict (.pth, the official"
                                       " eDifFIQA key layout); unset: random initialisation (official)", is_path=True),
            "theta": Option(0.5, "weight of the representation-consistency loss (official 0.5)", number(min=0, max=1)),
            "epsilon": Option(0.5, "label-optimisation strength (official ExtendedL1 0.5)", number(min=0)),
            "top_fraction": Option(0.2, "share of all labels whose images define identity centres (official beta 0.2)",
                                   number(min=0, max=1, min_inclusive=False)),
            "min_images": Option(
                10, "identities with fewer images in the top fraction are dropped (official 10; the embedded "
                "world's 12 images per identity need 3)", integer(min=1)),
        })
    return options


@hookimpl
def fiqabench_register_fiqa_methods(register: Any) -> None:
    for name, display, summary, cost in (
        ("diffiqa-r", "DifFIQA(R)", "DifFIQA distilled into an FR backbone + linear head: one forward pass", 0.5),
        ("ediffiqa", "eDifFIQA", "DifFIQA distilled with representation consistency and label optimisation "
         "(backbone + MLP head)", 0.6),
    ):
        register(
            name,
            f"fiqabench_plugins.distilled.method:build_{name.replace('-', '_')}",
            version=VERSION,
            summary=summary,
            reference=REFERENCES[name],
            display_name=display,
            needs_fr_model="none",
            higher_is_better=True,
            options=_method_options(name),
            availability=_availability(name),
            domains=_domains(name),
            domain_hint=f"its shipped network was trained on the embedded synthetic faces; load official weights"
            f" with --method-option {name}:weights=PATH and "
            + (f"--method-option {name}:arch=iresnet100" if name == "diffiqa-r" else f"--method-option {name}:variant=L"),
            cost_ms_per_image=cost,
        )


@hookimpl
def fiqabench_register_trainers(register: Any) -> None:
    for name, summary in (
        ("diffiqa-r", "Fine-tune an FR backbone + linear head on --labels LABELS (from `fiqabench label`; L1; "
         "paper §3.6, official recipe)"),
        ("ediffiqa", "Fine-tune an FR backbone + MLP head on --labels LABELS (from `fiqabench label`; "
         "representation consistency + label optimisation; eDifFIQA recipe)"),
    ):
        register(
            name,
            f"fiqabench_plugins.distilled.train:train_{name.replace('-', '_')}",
            version=TRAINER_VERSION,
            summary=summary,
            options=_trainer_options(name),
            inputs={"labels": None, "fr_model": None},
        )


__all__ = ["DEFAULT_WEIGHTS", "DIFFIQA_R_ARCHS", "EDIFFIQA_VARIANTS"]
