"""Trainer ``cr-fiqa``: CR-FIQA's FR network and quality unit, trained jointly on ``synthetic-train``.

The data, degradation augmentation, flips, one-cycle AdamW schedule, seeding and resumable
checkpoints are those of ``synthetic-fr`` (:func:`fiqabench_plugins.synthetic.train.fit`), so the
backbone sees exactly what the embedded FR model saw; only the network (+ ``qs``) and the objective
(:class:`.nets.CRFIQAObjective`, the paper's joint loss) differ, plus the released trainer's clipping of the
backbone's gradient norm at 5.

The shipped ``weights/cr-fiqa-embedded.safetensors`` is the output of
``fiqabench train cr-fiqa --output plugins/cr_fiqa/weights/cr-fiqa-embedded.safetensors`` with
the defaults (one thread).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fiqabench.errors import ConfigError
from fiqabench_plugins.synthetic.train import ProgressFactory, config_json, fit, prepare, setup_torch, validate

from . import TRAINER_VERSION
from .nets import CLIP_GRAD_NORM, CRFIQANet, CRFIQAObjective

__all__ = ["train"]


def train(
    *,
    options: Mapping[str, Any],
    device: str | torch.device = "cpu",
    output: Path,
    progress: ProgressFactory | None = None,
    dataset: Any = None,
) -> Path:
    """Train the embedded CR-FIQA network and write ``output`` (safetensors)."""
    cfg = validate(options, "cr-fiqa")
    if cfg["target"] not in ("paper", "code"):
        raise ConfigError(f"cr-fiqa option target={cfg['target']!r}: expected paper or code")
    if float(cfg["alpha"]) < 0 or float(cfg["beta"]) <= 0:
        raise ConfigError(f"cr-fiqa options alpha={cfg['alpha']!r}, beta={cfg['beta']!r}: need alpha >= 0, beta > 0")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    setup_torch(cfg)
    data = prepare(cfg, trainer="cr-fiqa", progress=progress, dataset=dataset)

    def objective(classes: int) -> CRFIQAObjective:
        return CRFIQAObjective(
            classes,
            scale=float(cfg["scale"]),
            margin=float(cfg["margin"]),
            alpha=float(cfg["alpha"]),
            beta=float(cfg["beta"]),
            target=str(cfg["target"]),
        )

    fit(
        trainer="cr-fiqa",
        cfg=cfg,
        data=data,
        make_net=CRFIQANet,
        make_objective=objective,
        device=torch.device(device),
        output=output,
        config=config_json(cfg, trainer="cr-fiqa", trainer_version=TRAINER_VERSION, dataset=data.dataset),
        weight_format="fiqabench cr-fiqa embedded 1",
        progress=progress,
        clip_grad_norm=CLIP_GRAD_NORM,
    )
    return output
