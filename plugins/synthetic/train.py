"""Trainer ``synthetic-fr``: trains SynthArcFace on ``synthetic-train`` and writes safetensors.

Recipe (the embedded-world pilot's, which met every target of the world):

- ArcFace additive angular margin loss (Deng et al., CVPR 2019, Eq. 3) with ``s = 32``,
  ``m = 0.35``: small-class-count settings (2,000 identities) need a smaller scale than
  InsightFace's 64/0.5, which did not converge in the pilot's 10-epoch budget;
- **degradation augmentation**: each image is degraded with probability ``aug_p = 0.5`` by one of
  the seven benchmark types at severity ``U(0, 0.5)``. Without it the pilot's FR collapsed
  degraded faces of different people onto similar embeddings (the FMR threshold rose from 0.62 to
  0.77 and even clean mated pairs failed); with ``p = 0.6, U(0, 1)`` clean accuracy suffered.
  Pose is rendered, so the trainer renders a small pool of posed views per identity up front;
- random horizontal flips (as in every public FR recipe);
- AdamW (weight decay 5e-4), one-cycle learning rate (peak 3e-3, 30 % cosine warm-up from
  peak/25, cosine decay to peak/25e4: torch's ``OneCycleLR`` defaults, computed here per step so a
  resumed run gets exactly the same schedule), batch 256, 20 epochs (12 epochs left this world's
  model underfitted; 30 gave no better clean FNMR than 20).

Everything random is seeded per epoch from ``(seed, epoch)``, so a run resumed from its epoch
checkpoint continues exactly as an uninterrupted one. A checkpoint (network, ArcFace centres,
optimizer moments, epoch, config) is written atomically next to the output after every epoch as
``OUTPUT.ckpt`` (safetensors, no pickle); a rerun with the same options resumes from it, a rerun
with other options refuses (delete the checkpoint to start over).

The machinery (rendering the split and the pose pool, augmentation, seeding, schedule,
checkpoint/resume, the final safetensors) is shared with the trainers of the FR models that FIQA
methods train jointly (``cr-fiqa``, ``magface``): :func:`prepare` renders the data and :func:`fit`
runs the loop for any network and *objective* (a module whose ``loss(net_output, labels)`` returns
the loss and the logits), so every trainer on the embedded world sees the same images, the same
degradation augmentation and the same optimiser schedule.

The shipped ``plugins/synthetic/weights/synthetic-fr.safetensors`` is the output of
``fiqabench train synthetic-fr --output plugins/synthetic/weights/synthetic-fr.safetensors`` with
the defaults (see ``benchmarks/embedded_world.md`` for its wall time and digest).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fiqabench.errors import ConfigError

from . import _detmath as dm
from . import degrade as deg
from ._meta import GENERATOR_VERSION, MODEL_VERSION
from .dataset import SyntheticDataset, build, render_sample
from .model import EMBEDDING_SIZE, SynthFRNet

__all__ = ["ARC_MARGIN", "ARC_SCALE", "POSE_POOL", "ArcFaceHead", "TrainingData", "fit", "one_cycle_lr", "prepare", "train", "validate"]

log = logging.getLogger(__name__)

#: ArcFace scale s and additive angular margin m (radians): the pilot's values.
ARC_SCALE = 32.0
ARC_MARGIN = 0.35

#: Posed views rendered per identity for the pose augmentation (pose cannot be applied to pixels).
POSE_POOL = 2

#: One-cycle shape (torch OneCycleLR defaults): warm-up share, initial and final divisors.
PCT_START, DIV_FACTOR, FINAL_DIV_FACTOR = 0.3, 25.0, 1e4

# Seed purposes for the trainer's own streams.
_INIT, _EPOCH, _POSE = 11, 12, 13

ProgressFactory = Callable[[int, str], Any]


def one_cycle_lr(step: int, total: int, peak: float) -> float:
    """Learning rate at optimizer step ``step`` of ``total`` (cosine one-cycle).

    >>> round(one_cycle_lr(0, 100, 1.0), 4), round(one_cycle_lr(29, 100, 1.0), 4), one_cycle_lr(99, 100, 1.0) < 1e-5
    (0.04, 1.0, True)
    """
    start, end = peak / DIV_FACTOR, peak / DIV_FACTOR / FINAL_DIV_FACTOR
    warm = max(1, int(PCT_START * total) - 1)
    if step <= warm:
        t, lo, hi = step / warm, start, peak
    else:
        t, lo, hi = (step - warm) / max(1, total - 1 - warm), peak, end
    return hi + (lo - hi) * (math.cos(math.pi * t) + 1.0) / 2.0


class ArcFaceHead(nn.Module):
    """Class centres and the additive angular margin logits (InsightFace's formulation)."""

    def __init__(self, classes: int, scale: float = ARC_SCALE, margin: float = ARC_MARGIN) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, EMBEDDING_SIZE) * 0.01)
        self.scale = scale
        self.cos_m, self.sin_m = math.cos(margin), math.sin(margin)
        # Beyond theta = pi - m, cos(theta + m) stops decreasing; use a linear fall-back there.
        self.threshold = math.cos(math.pi - margin)
        self.fallback = math.sin(math.pi - margin) * margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1.0, 1.0)
        sine = torch.sqrt((1.0 - cosine * cosine).clamp_min(1e-9))
        phi = cosine * self.cos_m - sine * self.sin_m
        phi = torch.where(cosine > self.threshold, phi, cosine - self.fallback)
        onehot = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
        return self.scale * (onehot * phi + (1.0 - onehot) * cosine)

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The objective interface of :func:`fit`: (cross-entropy of the margin logits, logits)."""
        logits = self(embeddings, labels)
        return F.cross_entropy(logits, labels), logits


def validate(options: Mapping[str, Any], trainer: str = "synthetic-fr") -> dict[str, Any]:
    """Check the options every embedded-world trainer shares; returns a mutable copy."""
    cfg = dict(options)
    for key in ("epochs", "batch_size"):
        if int(cfg[key]) < 1:
            raise ConfigError(f"{trainer} option {key}={cfg[key]!r}: must be at least 1")
    if not 0.0 <= float(cfg["aug_p"]) <= 1.0:
        raise ConfigError(f"{trainer} option aug_p={cfg['aug_p']!r}: must be in [0, 1]")
    if not 0.0 <= float(cfg["aug_max_severity"]) <= 1.0:
        raise ConfigError(f"{trainer} option aug_max_severity={cfg['aug_max_severity']!r}: must be in [0, 1]")
    if float(cfg["lr"]) <= 0.0:
        raise ConfigError(f"{trainer} option lr={cfg['lr']!r}: must be positive")
    return cfg


def _dataset(dataset: Any, trainer: str) -> SyntheticDataset:
    """The split to train on: what the CLI built from ``--dataset`` (default synthetic-train, its
    size set with ``--dataset-option identities=N``), or synthetic-train when called directly."""
    if dataset is None:
        return build("synthetic-train", {})
    if not isinstance(dataset, SyntheticDataset):
        raise ConfigError(
            f"{trainer} trains on the synthetic world only (--dataset synthetic-train), got {getattr(dataset, 'name', dataset)!r}"
        )
    return dataset


def _bar(progress: ProgressFactory | None, total: int, desc: str) -> Any:
    if progress is None:
        return None
    return progress(total, desc)


def atomic_save(tensors: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str]) -> None:
    """Write a safetensors file atomically (a temporary file renamed into place)."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=dict(metadata))
    os.replace(tmp, path)


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as flat tensors ``opt.<index>.<name>`` (safetensors
    checkpoints: no pickle); :func:`restore_optimizer` reads them back."""
    tensors = {}
    for index, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"opt.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors


def restore_optimizer(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    opt_state = opt.state_dict()
    opt_state["state"] = state
    opt.load_state_dict(opt_state)


def _checkpoint_tensors(net: nn.Module, arc: nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    # The objective's parameters (class centres) under "arc.": ArcFaceHead's is "arc.weight".
    tensors.update({f"arc.{k}": v for k, v in arc.state_dict().items()})
    tensors.update(optimizer_tensors(opt))
    return tensors


def _restore(
    path: Path, net: nn.Module, arc: nn.Module, opt: torch.optim.Optimizer, config_json: str
) -> int:
    """Load a checkpoint; returns the number of completed epochs."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if meta.get("config") != config_json:
        raise ConfigError(
            f"{path}: checkpoint of a run with other options ({meta.get('config')}); delete it to "
            f"start over, or train into another --output"
        )
    tensors = load_file(str(path))
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    arc.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("arc.")})
    restore_optimizer(opt, tensors)
    return int(meta["epoch"])


def _augment(
    images: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    p: float,
    max_severity: float,
    pose_pool: np.ndarray,
) -> np.ndarray:
    """Degrade each image with probability ``p``: one of the seven types, severity U(0, max)."""
    out = images.copy()
    for k in range(len(out)):
        if rng.random() >= p:
            continue
        kind = deg.DEGRADATIONS[int(rng.random() * len(deg.DEGRADATIONS))]
        severity = float(rng.random()) * max_severity
        if kind == "pose":
            out[k] = pose_pool[labels[k], int(rng.random() * pose_pool.shape[1])]
        else:
            out[k] = deg.degrade(out[k], kind, severity, rng)
    return out


class TrainingData:
    """The rendered training split: images, identity labels and the posed views for augmentation."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, pose_pool: np.ndarray, identities: int, name: str,
                 dataset: str = "") -> None:
        #: ``name@version:manifest`` of the split, part of the resume check (config_json)
        self.dataset = dataset
        self.images = images
        self.labels = labels
        self.pose_pool = pose_pool
        self.identities = identities
        self.name = name

    def __len__(self) -> int:
        return len(self.images)


def prepare(cfg: Mapping[str, Any], *, trainer: str = "synthetic-fr", progress: ProgressFactory | None = None,
            dataset: Any = None) -> TrainingData:
    """Render the training split and the pose pool once (about a minute for 24,000 images)."""
    seed = int(cfg["seed"])
    ds = _dataset(dataset, trainer)
    spec = ds.spec
    started = time.perf_counter()
    n = len(ds)
    bar = _bar(progress, n, f"render {ds.name}")
    chunks = []
    for start in range(0, n, 512):
        chunks.append(ds.read_images(range(start, min(n, start + 512))))
        if bar is not None:
            bar.update(len(chunks[-1]))
    if bar is not None:
        bar.close()
    images = np.concatenate(chunks)
    labels = ds.identity_index.astype(np.int64)
    pose_rng = dm.rng_for(seed, _POSE)
    pose_pool = np.zeros((spec.identities, POSE_POOL) + images.shape[1:], dtype=np.uint8)
    for i in range(spec.identities):
        for j in range(POSE_POOL):
            severity = float(pose_rng.random()) * float(cfg["aug_max_severity"])
            pose_pool[i, j] = render_sample(
                spec.seed, spec.code, i, spec.images_per_identity + j, "pose", max(severity, 1e-6)
            )
    log.info("rendered %d images + %d posed views in %.1f s", n, pose_pool.shape[0] * POSE_POOL, time.perf_counter() - started)
    return TrainingData(images, labels, pose_pool, spec.identities, ds.name,
                        dataset=f"{ds.name}@{ds.version}:{ds.manifest_digest()}")


def config_json(cfg: Mapping[str, Any], **extra: str) -> str:
    """The options that affect the weights (plus world and model versions), as a stable string."""
    affecting = {k: v for k, v in sorted(cfg.items()) if k != "num_threads"}
    return json.dumps(
        {"options": affecting, "generator": GENERATOR_VERSION, "model": MODEL_VERSION, "calibration": deg.CALIBRATION, **extra},
        sort_keys=True,
    )


def fit(
    *,
    trainer: str,
    cfg: Mapping[str, Any],
    data: TrainingData,
    make_net: Callable[[], nn.Module],
    make_objective: Callable[[int], nn.Module],
    device: torch.device,
    output: Path,
    config: str,
    weight_format: str,
    progress: ProgressFactory | None = None,
    clip_grad_norm: float | None = None,
) -> nn.Module:
    """Train ``make_net()`` under ``make_objective(classes).loss`` and write ``output``.

    The network and objective are built right after seeding torch from ``(seed, init)``, in that
    order; the loop (augmentation, flips, one-cycle AdamW, per-epoch seeding, checkpoints that
    resume bit for bit) is the one :func:`train` documents. ``clip_grad_norm`` clips the network's
    gradient norm before each step (CR-FIQA's released trainer clips at 5). Returns the network in
    eval mode; ``output`` holds its state dict.
    """
    seed = int(cfg["seed"])
    images, labels, pose_pool = data.images, data.labels, data.pose_pool
    n = len(data)
    torch.manual_seed(int(dm.rng_for(seed, _INIT).integers(0, 2**62)))
    net = make_net().to(device)
    arc = make_objective(data.identities).to(device)
    params = list(net.parameters()) + list(arc.parameters())
    opt = torch.optim.AdamW(params, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    epochs, batch = int(cfg["epochs"]), int(cfg["batch_size"])
    steps_per_epoch = max(1, n // batch)  # drop the last partial batch (BatchNorm dislikes tiny ones)
    total_steps = epochs * steps_per_epoch

    ckpt = output.with_name(output.name + ".ckpt")
    done = 0
    if ckpt.is_file():
        done = _restore(ckpt, net, arc, opt, config)
        log.info("resuming from %s after epoch %d", ckpt, done)

    started = time.perf_counter()
    # Progress counts optimizer steps, like every trainer (the CLI labels trainer bars "it").
    bar = _bar(progress, (epochs - done) * steps_per_epoch, f"train {trainer}, epochs {done + 1}-{epochs}")
    for epoch in range(done, epochs):
        t0 = time.perf_counter()
        rng = dm.rng_for(seed, _EPOCH, epoch)
        torch.manual_seed(int(rng.integers(0, 2**62)))
        order = rng.permutation(n)
        net.train()
        arc.train()
        total_loss, correct, seen, aug_time = 0.0, 0, 0, 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch : (step + 1) * batch]
            lab = labels[idx]
            t_aug = time.perf_counter()
            batch_images = _augment(
                images[idx], lab, rng, float(cfg["aug_p"]), float(cfg["aug_max_severity"]), pose_pool
            )
            aug_time += time.perf_counter() - t_aug
            x = torch.from_numpy(batch_images).to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
            if cfg["flip"]:
                flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(device)
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
            y = torch.from_numpy(lab).to(device)
            for group in opt.param_groups:
                group["lr"] = one_cycle_lr(epoch * steps_per_epoch + step, total_steps, float(cfg["lr"]))
            loss, logits = arc.loss(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(net.parameters(), max_norm=clip_grad_norm, norm_type=2)
            opt.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            if bar is not None:
                bar.update(1)
        atomic_save(
            _checkpoint_tensors(net, arc, opt),
            ckpt,
            {"epoch": str(epoch + 1), "config": config, "format": f"fiqabench {trainer} checkpoint 1"},
        )
        log.info(
            "epoch %d/%d: loss %.3f, train accuracy (with margin) %.3f, %.1f s (augmentation %.1f s)",
            epoch + 1, epochs, total_loss / seen, correct / seen, time.perf_counter() - t0, aug_time,
        )
    if bar is not None:
        bar.close()

    net.eval()
    atomic_save(
        {k: v for k, v in net.state_dict().items()},
        output,
        {"format": weight_format, "generator": GENERATOR_VERSION, "model": MODEL_VERSION, "config": config},
    )
    log.info("wrote %s (%.1f s of training)", output, time.perf_counter() - started)
    return net


def setup_torch(cfg: Mapping[str, Any]) -> None:
    """Threads and denormals for CPU training (see :func:`train`)."""
    # One thread by default: with other jobs on a 2-core machine, two OpenMP threads spin at
    # barriers and a training step measured 10x slower (10.1 vs 1.05 ms per image).
    torch.set_num_threads(max(1, int(cfg.get("num_threads") or 1)))
    # Denormal floats make CPU kernels up to 100x slower; they carry no useful signal here.
    torch.set_flush_denormal(True)


def train(
    *,
    options: Mapping[str, Any],
    device: str | torch.device = "cpu",
    output: Path,
    progress: ProgressFactory | None = None,
    dataset: Any = None,
) -> Path:
    """Train SynthArcFace on ``dataset`` (a synthetic split, from ``--dataset``) and write
    ``output`` (safetensors); see the module docstring."""
    cfg = validate(options)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    setup_torch(cfg)
    data = prepare(cfg, progress=progress, dataset=dataset)
    fit(
        trainer="synthetic-fr",
        cfg=cfg,
        data=data,
        make_net=SynthFRNet,
        make_objective=ArcFaceHead,
        device=torch.device(device),
        output=output,
        config=config_json(cfg, dataset=data.dataset),
        weight_format="fiqabench synthetic-arcface 1",
        progress=progress,
    )
    return output
