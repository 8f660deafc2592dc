"""DifFIQA (Babnik, Peer, Struc, IJCB 2023): registration only (no torch import here).

- FIQA method ``diffiqa`` -> :func:`fiqabench_plugins.diffiqa.method.factory` (paper §3.4-3.5,
  Eq. 7);
- trainer ``diffiqa-ddpm`` -> :func:`fiqabench_plugins.diffiqa.train.train` (extended DDPM
  training, paper §3.3).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fiqabench import hookimpl
from fiqabench.api import Option
from fiqabench.options import boolean, integer, number

__all__ = ["METHOD_OPTIONS", "TRAINER_OPTIONS", "VERSION"]

#: Bump when scores change for the same options (cache keys use name@version).
#: 2: sampler=paper runs its last step onto the clean image (tau = t..0, was t..1). The runner's
#: per-sample seeds derive from name@version, so every option's scores move by run-seed noise.
VERSION = "2"
#: 2: unet_config=official trains with the official preprocessing by default (preprocessing=auto).
TRAINER_VERSION = "2"

_HERE = Path(__file__).resolve().parent
_SHIPPED = _HERE / "weights" / "diffiqa-ddpm-embedded.safetensors"


# Shared parsers check command-line strings and typed values alike, so the method and the trainer
# trust their resolved options (fiqabench.options.resolve) and check nothing twice.
_positive_int = integer(min=1)
_timestep = integer(min=1, max=999)
_non_negative_int = integer(min=0)
_positive_float = number(min=0.0, min_inclusive=False)


METHOD_OPTIONS: dict[str, Option] = {
    "n": Option(10, "repeats of the noise/denoise cycle (paper §3.5: n = 10)", _positive_int),
    "t": Option(5, "forward-diffusion timestep (paper §3.5: t = 5; Table 4 ablates 20)", _timestep),
    "sampler": Option(
        "official",
        "reverse process: official (released code: DDIM-form eta=1 loop from t-1, 6 calls at t=5)"
        " or paper (ancestral DDPM steps of Eq. 3-4 at tau=t..0, ending at the clean image; t + 1 calls)",
        str,
        choices=("official", "paper"),
    ),
    "flip": Option(True, "use the horizontally flipped image (paper §3.5; Table 4 'w/o flip')", boolean),
    "forward_term": Option(
        True,
        "compare with the noisy images x_t (false: E = {x_hat, x^f, x_hat^f}, the first reading of Table 4"
        " 'w/o forward pass')",
        boolean,
    ),
    "reconstruct_from": Option(
        "noisy",
        "what the reverse process starts from: noisy (x_t, the paper) or clean (the image itself, no"
        " forward noising; needs forward_term=false: the second reading of Table 4 'w/o forward pass')",
        str,
        choices=("noisy", "clean"),
    ),
    "weights": Option(
        str(_SHIPPED),
        "DDPM weights: our .safetensors or the official checkpoint (.pt); default: the shipped embedded file",
        is_path=True,
    ),
    "ema": Option(False, "use the EMA weights instead of the online ones (the official code uses online)", boolean),
    "unet_config": Option(
        "embedded", "UNet architecture the weights must have", str, choices=("embedded", "official")
    ),
    "precision": Option("fp32", "fp32, or bf16 autocast for the UNet and FR passes", str, choices=("fp32", "bf16")),
    "compile": Option(False, "torch.compile the UNet", boolean, affects_result=False),
    "batch_images": Option(
        64, "at most this many images per UNet call (whole samples: 64 // 2n per group)", _positive_int,
        affects_result=False,
    ),
    "num_threads": Option(
        0, "torch CPU threads while scoring (0: leave as is; 1 is fastest on a busy 2-core machine)",
        _non_negative_int, affects_result=False,
    ),
}

TRAINER_OPTIONS: dict[str, Option] = {
    "unet_config": Option("embedded", "UNet architecture", str, choices=("embedded", "official")),
    "steps": Option(10000, "optimizer steps (official: 100,000)", _positive_int),
    "batch_size": Option(64, "images per optimizer step (official: 16 x 4 accumulation = 64)", _positive_int),
    "lr": Option(8e-5, "Adam learning rate (official 8e-5, betas 0.9/0.99)", _positive_float),
    "seed": Option(0, "seed of every random draw of the run", _non_negative_int),
    "ema_decay": Option(0.995, "EMA beta (official 0.995; update every 10 steps after step 100)", float),
    "checkpoint_every": Option(500, "write a resumable checkpoint every this many steps", _positive_int),
    "images": Option(
        None,
        "a folder of aligned face crops (png/jpg/jpeg/bmp/webp, searched recursively) to train on instead"
        " of a registered dataset; the paper used CelebA",
        is_path=True,
    ),
    "pool_copies": Option(
        4,
        "precomputed degraded copies per training image, held in memory (the degradation pipeline is"
        " slow); 0: degrade afresh every epoch while streaming the images, as the official code does"
        " (use it for large folders)",
        _non_negative_int,
    ),
    "workers": Option(
        0, "with pool_copies=0: worker processes that read and degrade images (0: the main process)",
        _non_negative_int, affects_result=False,
    ),
    "preprocessing": Option(
        "auto",
        "training pairs: official (flip the original, degrade it at 512 px, resize the 128 px result"
        " and the clean image to the DDPM size, as the official dataset class) or embedded (resize"
        " first, degrade at degrade_scale x the DDPM size with scaled kernels, flip afterwards);"
        " auto: official for unet_config=official, embedded otherwise",
        str,
        choices=("auto", "official", "embedded"),
    ),
    "degrade_scale": Option(
        4,
        "preprocessing=embedded: degrade at this many times the DDPM resolution (the official path"
        " always works at 512 px)",
        _positive_int,
    ),
    "max_images": Option(0, "use at most this many training images (0: all)", _non_negative_int),
    "threads": Option(0, "torch CPU threads (0: leave as is)", _non_negative_int, affects_result=False),
}


def _method_availability(options: Mapping[str, Any]) -> str | None:
    if options.get("reconstruct_from", "noisy") == "clean" and options.get("forward_term", True):
        return "reconstruct_from=clean has no noisy images to compare: add diffiqa:forward_term=false"
    weights = Path(str(options.get("weights") or _SHIPPED))
    if options.get("unet_config", "embedded") == "official" and weights == _SHIPPED:
        return "no weights shipped for unet_config=official: pass diffiqa:weights=PATH (diff_pretrain.pt)"
    if not weights.is_file():
        if weights == _SHIPPED:
            return f"shipped weights {_SHIPPED.name} missing: run `fiqabench train diffiqa-ddpm`"
        return f"weights file {weights} does not exist"
    return None


def _method_domains(options: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The shipped DDPM was trained on the embedded world's 32 px faces: with it, only synthetic
    datasets; with weights the user gives (or the official configuration), any."""
    weights = options.get("weights")
    shipped = not weights or Path(str(weights)).expanduser().resolve() == _SHIPPED
    return ("synthetic",) if shipped and options.get("unet_config", "embedded") == "embedded" else None


@hookimpl
def fiqabench_register_fiqa_methods(register: Any) -> None:
    register(
        "diffiqa",
        "fiqabench_plugins.diffiqa.method:factory",
        version=VERSION,
        summary="Diffusion-based FIQA: embedding stability under forward noising and DDPM reconstruction",
        reference="Babnik, Peer, Struc: DifFIQA, IJCB 2023 (§3.4-3.5, Eq. 7)",
        display_name="DifFIQA",
        needs_fr_model="embeddings",
        higher_is_better=True,
        default_quality_fr_model=None,
        options=METHOD_OPTIONS,
        availability=_method_availability,
        domains=_method_domains,
        domain_hint="its shipped DDPM was trained on the embedded synthetic faces; load real weights with"
        " --method-option diffiqa:weights=PATH --method-option diffiqa:unet_config=official",
        # n = 10 on the embedded 32 px benchmark, 2 CPU threads (benchmarks/diffiqa.md)
        cost_ms_per_image=85.0,
    )


@hookimpl
def fiqabench_register_trainers(register: Any) -> None:
    register(
        "diffiqa-ddpm",
        "fiqabench_plugins.diffiqa.train:train",
        version=TRAINER_VERSION,
        summary="extended DDPM training of DifFIQA (paper §3.3): degraded/clean mixing, x0 target",
        options=TRAINER_OPTIONS,
        # --dataset NAME (default synthetic-train) unless the option images=DIR names a folder
        inputs={"dataset": "synthetic-train"},
    )
