"""Trainers ``diffiqa-r`` and ``ediffiqa``: fine-tune an FR backbone plus a head on DifFIQA labels.

Both follow the official training scripts (research notes §6 and §7; ``D: diffiqa(r)/train.py``,
``utils.py``, ``configs/train_config.yaml``; ``E: train.py``, ``prepare_data.py``, ``dataset.py``):

- **data**: the images of one or more label folders (``fiqabench label``; several act as one
  list, :class:`TrainingSet`), read through the datasets they were computed on and put into the
  FR model's own input space (the official transform: 112 px, RGB, ``(x - 0.5) / 0.5``); no
  augmentation. Labels are min-max normalised over the items kept and every 10th item in
  ascending score order is held out for validation (:mod:`fiqabench.labels`), over the union of
  the folders; ``hflip`` and ``label_normalisation`` below change the first two;
- **eDifFIQA data preparation** (``prepare_data.py``): the frozen FR model embeds every image;
  tau = the score at position ``int(0.2 N)`` of the descending scores; an identity's centre is
  the mean raw embedding of its images scoring >= tau, and identities with fewer than
  ``min_images`` (10) such images are dropped before normalising and splitting;
- **model**: the FR model's network (a copy; its dropout layers set to p = 0, as the CosFace
  backbone's) + ``Linear(d, 1)`` (DifFIQA(R)) or ``d -> 1024 -> GELU -> 1`` (eDifFIQA), in
  ``train()`` mode throughout, so every BatchNorm's statistics update (the official behaviour).
  eDifFIQA's named configurations (``configs/ediffiqa{T,S,M,L}_config.yaml``, research notes
  §7.1): ``variant=S/M/L`` check that the FR model is the iResNet-18/50/100 they fine-tune;
  ``variant=T`` trains a MobileFaceNet (randomly initialised: the official T config names no
  backbone weights) on the official 112 px input while the FR model only provides the frozen
  embeddings and identity centres, as CosFace's precomputed embeddings do for every variant;
- **optimiser**: Adam, head at lr 1e-3, the backbone's last 100 parameter *tensors* at 1e-4
  (``list(params)[-100:]``; the rest get gradients but no step), no weight decay, no schedule;
  gradient-norm clipping at 5 over all parameters after unscaling; mixed precision (autocast +
  GradScaler) on CUDA; batch 128, shuffled (seed 42069), 1 epoch (DifFIQA(R)) or 3 (eDifFIQA);
- **losses**: :mod:`.losses`;
- **validation** after each epoch in eval mode, the mean of per-batch losses; the weights kept
  are those of the best validation loss (the official ``model.pth``).

Three options depart from the official recipe and are off by default; the embedded weights use
them because tens of thousands of labels are not 2 million (``benchmarks/distillation.md``):
``lr_schedule=cosine`` (learning rates decay to 0 along the global step, so the last steps settle
where most labels differ by little), ``hflip=on`` (each image mirrored
with probability 0.5: DifFIQA perturbs both a face and its mirror image, so it scores the two
nearly alike; eDifFIQA's consistency target is then the frozen model's embedding of the mirrored
image) and
``label_normalisation=rank`` (targets ``(rank - 1) / (N - 1)`` instead of min-max: most DifFIQA
scores crowd into the top tenth of the min-max range, and an L1 fit spends its precision where the
labels are spread, not where the order of most images is decided).

A checkpoint (``OUTPUT.ckpt``, safetensors: network, Adam moments, scaler, best weights, epoch and
step) is written every ``checkpoint_steps`` steps and after each epoch; the batch order of an
epoch depends only on ``(seed, epoch)``, so a rerun with the same options resumes where the
checkpoint left off, and one with other options refuses.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fiqabench.errors import ConfigError, InputFormatError
from fiqabench.fr import rgb_uint8_to_unit, to_input_space
from fiqabench.labels import NORMALISATIONS, Labels, validation_mask
from fiqabench_plugins.synthetic.train import atomic_save, optimizer_tensors, restore_optimizer

from . import TRAINER_VERSION, losses
from .networks import (EDIFFIQA_VARIANTS, EMBEDDING_SIZE, assemble, backbone_arch, backbone_parameters,
                       build_backbone, head_parameters)

log = logging.getLogger("fiqabench")

#: Images per forward pass when embedding with the frozen FR model and when validating.
EVAL_BATCH = 128


class TrainingSet:
    """One or more label folders as one list: row ``r`` is image ``index[r]`` of dataset
    ``part[r]``, with its raw score and identity. Identities are prefixed with the folder's
    position when there are several (two datasets may both have an identity "0001")."""

    def __init__(self, labels: Labels | Sequence[Labels], datasets: Any) -> None:
        self.labels = (labels,) if isinstance(labels, Labels) else tuple(labels)
        self.datasets = tuple(datasets) if isinstance(datasets, (tuple, list)) else (datasets,)
        if not self.labels or len(self.labels) != len(self.datasets):
            raise ValueError(f"{len(self.labels)} label folders but {len(self.datasets)} datasets")
        self.part = np.concatenate([np.full(len(part), k, np.int64) for k, part in enumerate(self.labels)])
        self.index = np.concatenate([part.index for part in self.labels])
        self.scores = np.concatenate([part.scores for part in self.labels])
        several = len(self.labels) > 1
        self.identities = np.asarray([f"{k}/{identity}" if several else identity
                                      for k, part in enumerate(self.labels) for identity in part.identities])

    def __len__(self) -> int:
        return len(self.index)

    def read_images(self, rows: np.ndarray) -> np.ndarray:
        """uint8 images of rows ``rows``, in that order, each read from its own dataset."""
        if len(self.datasets) == 1:
            return self.datasets[0].read_images(self.index[rows])
        parts, index = self.part[rows], self.index[rows]
        out: np.ndarray | None = None
        for k in np.unique(parts):
            where = np.flatnonzero(parts == k)
            images = self.datasets[k].read_images(index[where])
            if out is None:
                out = np.empty((len(rows),) + images.shape[1:], images.dtype)
            elif images.shape[1:] != out.shape[1:]:
                raise ConfigError(f"--labels {self.labels[k].folder}: its dataset's images are {images.shape[1:]},"
                                  f" those of the other folders {out.shape[1:]}; train on one image size")
            out[where] = images
        assert out is not None
        return out

    def describe(self) -> dict[str, Any]:
        """Labels digest(s), dataset(s) and method, for the checkpoint config and the weights' metadata
        (a string each for one folder, as before several were possible; lists otherwise)."""
        sha = [part.provenance.get("labels_sha256") for part in self.labels]
        spec = [part.dataset.get("spec") for part in self.labels]
        one = len(self.labels) == 1
        return {"sha256": sha[0] if one else sha, "dataset": spec[0] if one else spec,
                "method": self.labels[0].provenance["method"]["name"]}


class Items:
    """What one training run sees: rows of the :class:`TrainingSet`, normalised labels, the
    validation split and (eDifFIQA) frozen embeddings and identity centres, row-aligned."""

    def __init__(self, index: np.ndarray, labels: np.ndarray, validation: np.ndarray,
                 frozen: np.ndarray | None = None, centres: np.ndarray | None = None) -> None:
        self.index, self.labels, self.validation = index, labels, validation
        self.frozen, self.centres = frozen, centres

    def __len__(self) -> int:
        return len(self.index)


def diffiqa_r_items(train_set: TrainingSet, normalisation: str = "min-max") -> Items:
    """All labels, min-max normalised (or ranks), every 10th by score for validation (dataset.py L55-62)."""
    return Items(np.arange(len(train_set)), NORMALISATIONS[normalisation](train_set.scores),
                 validation_mask(train_set.scores))


def identity_centres(scores: np.ndarray, identities: np.ndarray, embeddings: np.ndarray, *,
                     top_fraction: float, min_images: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """eDifFIQA ``prepare_data.py`` L40-62: tau is the score at position ``int(top_fraction * N)``
    of the descending-sorted scores; each identity's centre is the mean raw embedding of its images
    scoring >= tau; identities with fewer than ``min_images`` such images are dropped.

    Returns (mask of the rows kept, {identity: centre}).
    """
    descending = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    tau = descending[min(len(descending) - 1, int(top_fraction * len(descending)))]
    chosen = scores >= tau
    centres: dict[str, np.ndarray] = {}
    for identity in np.unique(identities):
        rows = np.flatnonzero((identities == identity) & chosen)
        if len(rows) >= min_images:
            centres[str(identity)] = embeddings[rows].astype(np.float64).mean(axis=0)
    keep = np.isin(identities, np.asarray(list(centres), dtype=identities.dtype)) if centres else np.zeros(len(scores), bool)
    return keep, centres


def ediffiqa_items(train_set: TrainingSet, embeddings: np.ndarray, *, top_fraction: float, min_images: int,
                   normalisation: str = "min-max") -> Items:
    identities = train_set.identities
    keep, centres = identity_centres(train_set.scores, identities, embeddings, top_fraction=top_fraction,
                                     min_images=min_images)
    if not keep.any():
        descending = np.sort(train_set.scores)[::-1]
        tau = descending[min(len(descending) - 1, int(top_fraction * len(descending)))]
        _, counts = np.unique(identities[train_set.scores >= tau], return_counts=True)
        raise ConfigError(
            f"eDifFIQA: no identity has min_images={min_images} images in the top {top_fraction:.0%} of the labels"
            f" (at most {int(counts.max()) if len(counts) else 0} per identity here); lower --option min_images"
        )
    scores = train_set.scores[keep]
    rows = np.flatnonzero(keep)
    return Items(rows, NORMALISATIONS[normalisation](scores), validation_mask(scores),
                 frozen=embeddings[rows],
                 centres=np.stack([centres[str(i)] for i in identities[rows]]).astype(np.float32))


class ImageSource:
    """The training images, decoded once and kept in memory when they fit in ``budget_mb``
    (the embedded labels: 72,000 x 32 x 32 x 3 bytes = 221 MB, rendered once instead of every
    epoch), else read from the dataset for every batch (VGGFace2 at 112 px: 75 GB)."""

    def __init__(self, train_set: TrainingSet, index: np.ndarray, budget_mb: float) -> None:
        self.train_set, self.index = train_set, index
        self.images: np.ndarray | None = None
        first = train_set.read_images(index[:1])
        if first.nbytes * len(index) <= budget_mb * 2**20:
            self.images = np.concatenate([first] + [train_set.read_images(index[i:i + EVAL_BATCH])
                                                    for i in range(1, len(index), EVAL_BATCH)])

    def read(self, rows: np.ndarray) -> np.ndarray:
        """uint8 images of item rows ``rows``."""
        return self.images[rows] if self.images is not None else self.train_set.read_images(self.index[rows])


def frozen_embeddings(train_set: TrainingSet, fr_model: Any, rows: np.ndarray, progress: Any = None) -> np.ndarray:
    """The original FR model's raw embeddings (eDifFIQA's precomputed ``cosface-embeddings.pkl``)."""
    out = []
    bar = progress(len(rows), "embed (frozen FR model)") if progress else None
    for start in range(0, len(rows), EVAL_BATCH):
        batch = rows[start:start + EVAL_BATCH]
        out.append(fr_model.embed(train_set.read_images(batch)))
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def backbone_copy(fr_model: Any) -> nn.Module:
    """A trainable copy of the FR model's network with its dropout layers at p = 0."""
    network = getattr(fr_model, "network", None)
    if not isinstance(network, nn.Module):
        raise ConfigError(
            f"FR model {getattr(fr_model, 'name', '?')!r} exposes no torch network to fine-tune"
            " (distillation needs a torch FR model such as synthetic-arcface, cosface, arcface)"
        )
    backbone = copy.deepcopy(network)
    for module in backbone.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return backbone


def check_variant(cfg: Mapping[str, Any], fr_model: Any) -> None:
    """eDifFIQA's ``variant`` fits the FR model (checked before anything is embedded or trained)."""
    variant = str(cfg.get("variant") or "fr-model")
    name = getattr(fr_model, "name", "?")
    if cfg.get("backbone_weights") and variant != "T":
        raise ConfigError(f"backbone_weights initialise eDifFIQA(T)'s MobileFaceNet; variant={variant} fine-tunes"
                          " the FR model's own network (drop backbone_weights, or set variant=T)")
    if variant == "T":
        if int(fr_model.embedding_size) != EMBEDDING_SIZE:
            raise ConfigError(
                f"variant=T: the MobileFaceNet's {EMBEDDING_SIZE}-d features are compared with the frozen FR"
                f" model's embeddings, but {name!r} embeds to {int(fr_model.embedding_size)}"
                " (the official T uses CosFace's 512)"
            )
        return
    wanted = EDIFFIQA_VARIANTS.get(variant)
    network = getattr(fr_model, "network", None)
    found = backbone_arch(network) if isinstance(network, nn.Module) else "not a torch network"
    if wanted is not None and found != wanted:
        raise ConfigError(f"variant={variant} fine-tunes eDifFIQA's {wanted}, but FR model {name!r} is {found}:"
                          f" pass --fr-model cosface --fr-option arch={wanted} --fr-option weights=PATH")


def trainee_backbone(cfg: Mapping[str, Any], fr_model: Any) -> tuple[nn.Module, int, Any]:
    """(backbone, feature size, input space) of the network to train: a copy of the FR model's
    network on its input space, or for ``variant=T`` a MobileFaceNet on the official 112 px RGB
    [-1, 1] input (see the module docstring)."""
    from .method import OFFICIAL_INPUT_SPACE

    check_variant(cfg, fr_model)
    if str(cfg.get("variant") or "fr-model") != "T":
        return backbone_copy(fr_model), int(fr_model.embedding_size), fr_model.input_space
    backbone, size = build_backbone(EDIFFIQA_VARIANTS["T"])
    weights = cfg.get("backbone_weights")
    if weights:
        from fiqabench_plugins.cr_fiqa.official import read_checkpoint
        from fiqabench_plugins.fr_models.checkpoints import state_dict_mismatch

        state = {k: v.float() if v.is_floating_point() else v for k, v in read_checkpoint(weights).items()}
        mismatch = state_dict_mismatch(backbone.state_dict(), state)
        if mismatch:
            raise InputFormatError(Path(str(weights)), None, None, f"not a MobileFaceNet state dict: {mismatch}")
        backbone.load_state_dict(state, strict=True)
    return backbone, size, OFFICIAL_INPUT_SPACE


def _optimizer(net: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Adam:
    """Two groups as ``utils.py`` construct_optimizer: the head, and the backbone's last N tensors."""
    last = backbone_parameters(net, int(cfg["backbone_tensors"])) if int(cfg["backbone_tensors"]) else []
    groups: list[dict[str, Any]] = [{"params": head_parameters(net), "lr": float(cfg["lr_head"])}]
    if last:
        groups.append({"params": last, "lr": float(cfg["lr_backbone"])})
    return torch.optim.Adam(groups)


def _config_json(kind: str, cfg: Mapping[str, Any], train_set: TrainingSet, fr_model: Any) -> str:
    from fiqabench.files import file_digest

    relevant = {k: v for k, v in sorted(cfg.items()) if k not in ("checkpoint_steps", "num_threads", "image_cache_mb")}
    if relevant.get("backbone_weights"):  # the file's content, not where it lies
        relevant["backbone_weights"] = file_digest(Path(str(relevant["backbone_weights"])))
    elif "backbone_weights" in relevant:
        del relevant["backbone_weights"]
    return json.dumps({"trainer": f"{kind}@{TRAINER_VERSION}", "options": relevant,
                       "labels_sha256": train_set.describe()["sha256"],
                       "fr_model": f"{getattr(fr_model, 'name', '?')}:{getattr(fr_model, 'weights_digest', '')}"},
                      sort_keys=True)


def _checkpoint(net: nn.Module, opt: torch.optim.Optimizer, scaler: Any, best: Mapping[str, torch.Tensor] | None
                ) -> dict[str, torch.Tensor]:
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    tensors.update(optimizer_tensors(opt))
    if scaler is not None:
        tensors["scaler.scale"] = torch.tensor(float(scaler.get_scale()))
    if best is not None:
        tensors.update({f"best.{k}": v for k, v in best.items()})
    return tensors


def _restore(path: Path, net: nn.Module, opt: torch.optim.Optimizer, scaler: Any, config: str
             ) -> tuple[int, int, float, dict[str, torch.Tensor] | None]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if meta.get("config") != config:
        raise ConfigError(f"{path}: checkpoint of a run with other options or labels; delete it to start over,"
                          " or train into another --output")
    tensors = load_file(str(path))
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    restore_optimizer(opt, tensors)
    if scaler is not None and "scaler.scale" in tensors:
        scaler.update(float(tensors["scaler.scale"]))
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    return int(meta["epoch"]), int(meta["step"]), float(meta["best_loss"]), best


def _batches(rows: np.ndarray, size: int) -> list[np.ndarray]:
    batches = [rows[i:i + size] for i in range(0, len(rows), size)]
    if len(batches) > 1 and len(batches[-1]) < 2:  # BatchNorm cannot train on one image
        batches.pop()
    return batches


def fit(kind: str, cfg: Mapping[str, Any], items: Items, train_set: TrainingSet, fr_model: Any, *,
        device: torch.device, output: Path, progress: Any = None) -> nn.Module:
    """Train and write ``output`` (safetensors of the best-validation weights); see the module docstring."""
    seed = int(cfg["seed"])
    torch.manual_seed(seed)
    backbone, feature_size, input_space = trainee_backbone(cfg, fr_model)
    own_input = str(cfg.get("variant")) == "T"  # the network has its own input space, not the FR model's
    net = assemble(kind, backbone, feature_size).to(device)
    for name, param in net.named_parameters():
        # the FR model was frozen for inference; arcface_torch keeps the last BatchNorm's scale
        # fixed at 1 (iresnet.py L104-109), so the official training never updates it
        param.requires_grad_(not name.endswith("features.weight"))
    opt = _optimizer(net, cfg)
    base_lrs = [float(group["lr"]) for group in opt.param_groups]  # before a resume restores any state
    amp = cfg["amp"] == "on" or (cfg["amp"] == "auto" and device.type == "cuda")
    if amp and device.type != "cuda":
        raise ConfigError("amp=on needs a CUDA device (the official code's autocast is CUDA's)")
    scaler = torch.amp.GradScaler("cuda") if amp else None
    config = _config_json(kind, cfg, train_set, fr_model)
    train_rows = np.flatnonzero(~items.validation)
    val_rows = np.flatnonzero(items.validation)
    batch = int(cfg["batch_size"])
    epochs = int(cfg["epochs"])
    steps_per_epoch = len(_batches(train_rows, batch))
    ckpt = output.with_name(output.name + ".ckpt")
    epoch, step, best_loss, best = 0, 0, float("inf"), None
    if ckpt.is_file():
        epoch, step, best_loss, best = _restore(ckpt, net, opt, scaler, config)
        log.info("resuming from %s at epoch %d, step %d", ckpt, epoch + 1, step)
    labels_t = torch.as_tensor(items.labels, dtype=torch.float32)
    frozen_t = torch.as_tensor(items.frozen) if items.frozen is not None else None
    centres_t = torch.as_tensor(items.centres) if items.centres is not None else None

    source = ImageSource(train_set, items.index, float(cfg["image_cache_mb"]))

    def loss_of(rows: np.ndarray, train: bool, flip: np.ndarray | None = None) -> torch.Tensor:
        images = source.read(rows)
        if own_input:
            x = to_input_space(rgb_uint8_to_unit(images, device), input_space)
        else:
            x = fr_model.preprocess(images).to(device)  # the FR model's input space: the official transform
        frozen = frozen_t[rows].to(device) if frozen_t is not None else None
        if flip is not None and flip.any():
            mirrored = torch.as_tensor(flip, device=device)
            x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
            if frozen is not None:  # consistency with what the frozen FR model makes of the mirrored image
                fr_x = fr_model.preprocess(images).to(device).flip(-1) if own_input else x
                with torch.no_grad():
                    frozen = torch.where(mirrored[:, None], fr_model.forward(fr_x).float(), frozen)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            features, prediction = net(x)
        features, prediction = features.float(), prediction.float()
        q = labels_t[rows].to(device)
        if kind == "diffiqa-r":
            return losses.l1(prediction, q)
        return losses.ediffiqa_loss(prediction, features, frozen, q,
                                    centres_t[rows].to(device) if train else None,
                                    theta=float(cfg["theta"]), epsilon=float(cfg["epsilon"]))

    def save_checkpoint(next_epoch: int, next_step: int) -> None:
        atomic_save(_checkpoint(net, opt, scaler, best), ckpt, {
            "config": config, "epoch": str(next_epoch), "step": str(next_step), "best_loss": repr(best_loss),
            "format": f"fiqabench {kind} checkpoint 1"})

    total_steps = epochs * steps_per_epoch
    cosine = cfg["lr_schedule"] == "cosine"
    hflip = bool(cfg["hflip"])
    started = time.perf_counter()
    bar = progress((epochs - epoch) * steps_per_epoch - step, f"train {kind}") if progress else None
    while epoch < epochs:
        order = train_rows[np.random.default_rng([seed, epoch]).permutation(len(train_rows))]
        net.train()
        batches = _batches(order, batch)
        running, seen = 0.0, 0
        for index in range(step, len(batches)):
            if cosine:  # a function of the global step, so a resumed run continues the same curve
                factor = 0.5 * (1.0 + math.cos(math.pi * (epoch * steps_per_epoch + index) / total_steps))
                for group, base in zip(opt.param_groups, base_lrs):
                    group["lr"] = base * factor
            # the mirrored images of a step depend only on (seed, epoch, step), like the batch order
            flip = np.random.default_rng([seed, epoch, index]).random(len(batches[index])) < 0.5 if hflip else None
            loss = loss_of(batches[index], train=True, flip=flip)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), float(cfg["clip_grad_norm"]))
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            running += float(loss.detach()) * len(batches[index])
            seen += len(batches[index])
            if bar is not None:
                bar.update(1)
            if (index + 1) % int(cfg["checkpoint_steps"]) == 0 and index + 1 < len(batches):
                save_checkpoint(epoch, index + 1)
        # validation (train.py validate(): eval mode, mean of per-batch losses)
        net.eval()
        with torch.no_grad():
            val_batches = [val_rows[i:i + EVAL_BATCH] for i in range(0, len(val_rows), EVAL_BATCH)]
            val_loss = float(np.mean([float(loss_of(rows, train=False)) for rows in val_batches])) if val_batches else 0.0
        log.info("%s epoch %d/%d: train loss %.4f, validation loss %.4f", kind, epoch + 1, epochs,
                 running / max(seen, 1), val_loss)
        if val_loss < best_loss:
            best_loss = val_loss
            best = {k: v.detach().clone() for k, v in net.state_dict().items()}
        epoch, step = epoch + 1, 0
        save_checkpoint(epoch, 0)
    if bar is not None:
        bar.close()
    if best is not None:  # None only if every epoch's validation loss was NaN: keep the last weights
        net.load_state_dict(best)
    net.eval()
    atomic_save(net.state_dict(), output, {
        "format": f"fiqabench {kind} 1",
        "kind": kind,
        "arch": backbone_arch(backbone),
        "feature_size": str(feature_size),
        "input_space": json.dumps({"size": list(input_space.size), "channel_order": input_space.channel_order,
                                   "mean": list(input_space.mean), "std": list(input_space.std)}),
        "config": config,
        "labels": json.dumps({**train_set.describe(), "n_items": len(items), "n_train": int(len(train_rows)),
                              "n_validation": int(len(val_rows))}, sort_keys=True),
        "best_validation_loss": repr(best_loss),
    })
    log.info("wrote %s (%.1f s of training)", output, time.perf_counter() - started)
    return net


def _setup(options: Mapping[str, Any]) -> None:
    torch.set_num_threads(int(options.get("num_threads") or 1))
    torch.set_flush_denormal(True)


def train_diffiqa_r(*, options: Mapping[str, Any], device: str | torch.device = "cpu", output: Path,
                    progress: Any = None, labels: Labels | Sequence[Labels], dataset: Any, fr_model: Any) -> Path:
    """DifFIQA(R) (paper §3.6): backbone + Linear, L1 to the normalised labels. ``labels`` and
    ``dataset``: one label folder and its dataset, or tuples of them (trained on as one set)."""
    _setup(options)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    train_set = TrainingSet(labels, dataset)
    items = diffiqa_r_items(train_set, str(options["label_normalisation"]))
    fit("diffiqa-r", options, items, train_set, fr_model, device=torch.device(device), output=output,
        progress=progress)
    return output


def train_ediffiqa(*, options: Mapping[str, Any], device: str | torch.device = "cpu", output: Path,
                   progress: Any = None, labels: Labels | Sequence[Labels], dataset: Any, fr_model: Any) -> Path:
    """eDifFIQA: backbone + MLP, representation consistency + label optimisation (``labels`` and
    ``dataset`` as for :func:`train_diffiqa_r`)."""
    _setup(options)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    check_variant(options, fr_model)
    train_set = TrainingSet(labels, dataset)
    embeddings = frozen_embeddings(train_set, fr_model, np.arange(len(train_set)), progress)
    items = ediffiqa_items(train_set, embeddings, top_fraction=float(options["top_fraction"]),
                           min_images=int(options["min_images"]),
                           normalisation=str(options["label_normalisation"]))
    log.info("eDifFIQA: %d of %d images kept (identities with >= %d images in the top %.0f%%)", len(items),
             len(train_set), int(options["min_images"]), 100 * float(options["top_fraction"]))
    fit("ediffiqa", options, items, train_set, fr_model, device=torch.device(device), output=output,
        progress=progress)
    return output
