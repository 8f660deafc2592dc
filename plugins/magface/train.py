"""Trainer ``magface``: the embedded FR network trained with the MagFace loss on ``synthetic-train``.

The data, degradation augmentation, flips, one-cycle AdamW schedule, seeding and resumable
checkpoints are those of ``synthetic-fr`` (:func:`fiqabench_plugins.synthetic.train.fit`); only the
objective differs (:class:`.nets.MagFaceObjective`, paper §3 with the release's values).

The shipped ``weights/magface-embedded.safetensors`` is the output of
``fiqabench train magface --output plugins/magface/weights/magface-embedded.safetensors`` with the
defaults (one thread).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fiqabench.errors import ConfigError
from fiqabench_plugins.synthetic.model import SynthFRNet
from fiqabench_plugins.synthetic.train import ProgressFactory, config_json, fit, prepare, setup_torch, validate

from . import TRAINER_VERSION
from .nets import MagFaceObjective, feasibility_bound

__all__ = ["train"]


def train(
    *,
    options: Mapping[str, Any],
    device: str | torch.device = "cpu",
    output: Path,
    progress: ProgressFactory | None = None,
    dataset: Any = None,
) -> Path:
    """Train the embedded MagFace network and write ``output`` (safetensors)."""
    cfg = validate(options, "magface")
    l_a, u_a, l_m, u_m = (float(cfg[k]) for k in ("l_a", "u_a", "l_m", "u_m"))
    if not 0 < l_a < u_a or not 0 <= l_m <= u_m:
        raise ConfigError(f"magface options: need 0 < l_a < u_a and 0 <= l_m <= u_m, got {l_a}, {u_a}, {l_m}, {u_m}")
    bound = feasibility_bound(float(cfg["scale"]), l_a, u_a, l_m, u_m)
    if float(cfg["lambda_g"]) < bound:
        raise ConfigError(
            f"magface option lambda_g={cfg['lambda_g']!r}: below the bound {bound:.1f} for a unique optimum (the check of the release's run/trainer.py)"
        )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    setup_torch(cfg)
    data = prepare(cfg, trainer="magface", progress=progress, dataset=dataset)

    def objective(classes: int) -> MagFaceObjective:
        return MagFaceObjective(
            classes, scale=float(cfg["scale"]), l_a=l_a, u_a=u_a, l_m=l_m, u_m=u_m, lambda_g=float(cfg["lambda_g"])
        )

    fit(
        trainer="magface",
        cfg=cfg,
        data=data,
        make_net=SynthFRNet,
        make_objective=objective,
        device=torch.device(device),
        output=output,
        config=config_json(cfg, trainer="magface", trainer_version=TRAINER_VERSION, dataset=data.dataset),
        weight_format="fiqabench magface embedded 1",
        progress=progress,
    )
    return output
