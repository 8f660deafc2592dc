"""Extended DDPM training of DifFIQA (paper §3.3; official ``diffiqa/diffusion_base``).

Per optimizer step (research note ``diffiqa.md`` §3.1-3.4):

1. a batch of clean images ``x`` (the official code shuffles each epoch) and, for each, a
   degraded copy ``x' = d(x)`` (:mod:`.degrade`); the *same* random horizontal flip (p = 0.5) is
   applied to both (``diff_dataset.py`` L45-50); both are mapped to ``[-1, 1]``;
2. ``t ~ U{0, ..., 99}`` per sample (``time_bound: [0, 100]``; the paper writes ``t in [1, T']``),
   indexing the T = 1000 cosine schedule directly and fed to the UNet as its time input;
3. the time-dependent mix of Eq. 6, ``Y = (1 - a_t) x + a_t x'`` with ``a_t = sin(t / T' * pi / 2)``
   and ``T' = 100`` (``diff_gauss.py`` L224-226): the weight of the *degraded* image grows with t
   (0 at t = 0, 0.707 at t = 50, 0.99988 at t = 99);
4. ``x_t = q_sample(Y, t, eps)`` (Eq. 2), prediction ``x0_hat = UNet(x_t, t)``, target always the
   *clean* ``x`` (``objective: pred_x0``), loss MSE (``loss_type: l2``; p2 weight 1);
5. Adam, lr 8e-5, betas (0.9, 0.99), no weight decay, no schedule, no clipping (``diff_main.py``
   L37, L93); the official batch is 16 with 4 accumulation steps, i.e. 64 images per step -- with
   mean losses and per-sample GroupNorm that is the same gradient as one batch of 64, which we use;
6. EMA (``ema_pytorch.EMA``, beta 0.995, ``update_every = 10``, ``update_after_step = 100``,
   warm-up ``1 - (1 + e)^(-2/3)`` capped at beta) updated after every optimizer step. The
   online weights are what inference uses; both are saved.

Preprocessing (option ``preprocessing``; :mod:`.degrade` has the details):

- ``official`` (the default for ``unet_config=official``): as ``DiffDataset`` does. The original
  image (a folder's file as stored, or a registered dataset's image at its own size) is flipped
  first (p = 0.5), the clean image is it resized to the DDPM size, the degraded image is
  ``auto_degrade`` at 512 px (128 px result), resized to the DDPM size with antialiasing. The
  training loop does not flip again.
- ``embedded`` (the default for ``unet_config=embedded``; how the shipped weights were trained):
  the images are resized to the DDPM size first, degraded at ``degrade_scale`` x that size (128 px
  for 32 px) with blur kernels scaled by ``work_size / 512``, no final resize, and the flip is
  drawn in the training loop after degradation, for the clean and the degraded image alike (the
  degradation's distribution is flip-symmetric, but the draws differ from the official order).

Both paths can hold ``pool_copies`` degraded copies per image, precomputed once (cached next to
the output as ``.npy``/``.npz``) and drawn at random per use instead of degrading afresh every
time (with ``official``, each copy carries its own flip). ``pool_copies=0`` restores the
official behaviour: every epoch degrades every image afresh, in ``workers`` loader processes,
streaming the images (a folder given by ``images`` is read from disk on demand, :mod:`.folder`),
which is what a CelebA-sized run needs.

Checkpoints (``<output>.ckpt.safetensors``, every ``checkpoint_every`` steps and at the end)
hold the online and EMA weights, Adam's state, the RNG state and the epoch permutation, so a run
resumes bit-for-bit where it stopped. No pickles: tensors in safetensors, the rest as JSON
metadata.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fiqabench.errors import ConfigError

from .checkpoint import save_weights
from .degrade import OFFICIAL_WORK_SIZE, degrade_lq, official_training_pair, resize_antialiased
from .folder import ArraySource, FolderSource, next_pair, pair_loader
from .schedule import DiffusionSchedule
from .unet import UNet, UNetConfig

__all__ = [
    "EMA", "build_degraded_pool", "build_official_pool", "mix_degraded", "resolve_preprocessing", "train",
    "train_on_images", "training_loss",
]

#: Mixing horizon T' of Eq. 6 (``train_config.yaml`` L14) and the training time bound (L11).
MIX_HORIZON = 100
TIME_BOUND = (0, 100)
ADAM_BETAS = (0.9, 0.99)
POOL_VERSION = "1"

#: Options that must match for a checkpoint to be resumed.
_RESUME_KEYS = (
    "dataset",
    "images",
    "unet_config",
    "batch_size",
    "lr",
    "seed",
    "ema_decay",
    "pool_copies",
    "degrade_scale",
    "max_images",
    "preprocessing",
)


class EMA:
    """``ema_pytorch.EMA`` as the official trainer uses it (beta 0.995, update_every 10,
    update_after_step 100, inv_gamma 1, power 2/3, min_value 0)."""

    def __init__(self, model: torch.nn.Module, beta: float = 0.995, update_every: int = 10, update_after_step: int = 100) -> None:
        self.online = model
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        self.beta = beta
        self.update_every = update_every
        self.update_after_step = update_after_step
        self.step = 0
        self.initted = False

    def current_decay(self) -> float:
        epoch = max(self.step - self.update_after_step - 1, 0)
        if epoch <= 0:
            return 0.0
        value = 1 - (1 + epoch) ** (-2 / 3)
        return min(max(value, 0.0), self.beta)

    @torch.no_grad()
    def _copy(self) -> None:
        for ema_p, p in zip(self.model.parameters(), self.online.parameters()):
            ema_p.copy_(p)

    @torch.no_grad()
    def update(self) -> None:
        step = self.step
        self.step += 1
        if step % self.update_every != 0:
            return
        if step <= self.update_after_step:
            self._copy()
            return
        if not self.initted:
            self._copy()
            self.initted = True
        decay = self.current_decay()
        for ema_p, p in zip(self.model.parameters(), self.online.parameters()):
            ema_p.sub_((ema_p - p) * (1.0 - decay))


def mix_degraded(hq: torch.Tensor, lq: torch.Tensor, t: torch.Tensor, horizon: int = MIX_HORIZON) -> torch.Tensor:
    """Eq. 6 as coded (``diff_gauss.py`` L224-226): ``(1 - a_t) hq + a_t lq``,
    ``a_t = sin(t / T' * pi / 2)`` with ``T' = 100``: t = 0 gives the clean image, t = 99 almost
    only the degraded one."""
    a = torch.sin((t.to(hq.dtype) / horizon) * (math.pi / 2)).reshape(-1, *([1] * (hq.ndim - 1)))
    return (1.0 - a) * hq + a * lq


def training_loss(
    model: torch.nn.Module,
    schedule: DiffusionSchedule,
    hq: torch.Tensor,
    lq: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """``p_losses`` (``diff_gauss.py`` L218-250): mix (Eq. 6), forward-noise (Eq. 2), predict x0,
    MSE against the *clean* image, per-sample mean then batch mean (p2 weight 1)."""
    x_t = schedule.q_sample(mix_degraded(hq, lq, t), t, noise)
    return F.mse_loss(model(x_t, t), hq)


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------


def _resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` -> ``(N, size, size, 3)`` (bilinear with antialiasing, like the
    official ``T.Resize`` on PIL images)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR)) for img in images])


def build_degraded_pool(
    images: np.ndarray,
    *,
    copies: int,
    seed: int,
    work_size: int,
    cache: Path | None = None,
    progress: Callable[[int, str], Any] | None = None,
) -> np.ndarray:
    """``copies`` degraded versions of every image: uint8 ``(N, copies, H, W, 3)``.

    Image ``i``, copy ``j`` uses ``numpy.random.default_rng([seed, i, j])``, so the pool does not
    depend on how it is computed. Cached at ``cache`` (a ``.npy`` file, read without pickle).
    """
    n, h, w, _ = images.shape
    if cache is not None and cache.is_file():
        pool = np.load(cache, allow_pickle=False)
        if pool.shape == (n, copies, h, w, 3):
            return pool
    pool = np.empty((n, copies, h, w, 3), np.uint8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: OpenMP overhead dominates with more threads
    bar = progress(n, "degrading") if progress is not None else None
    try:
        for i in range(n):
            for j in range(copies):
                rng = np.random.default_rng([seed, i, j])
                pool[i, j] = degrade_lq(images[i], rng, out_size=h, work_size=work_size)
            if bar is not None:
                bar.update(1)
    finally:
        torch.set_num_threads(threads)
        if bar is not None:
            bar.close()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npy")
        np.save(tmp, pool, allow_pickle=False)
        tmp.replace(cache)
    return pool


def resolve_preprocessing(preprocessing: str, unet_config: str) -> str:
    """``auto`` -> ``official`` for the official UNet, ``embedded`` otherwise."""
    if preprocessing == "auto":
        return "official" if unet_config == "official" else "embedded"
    if preprocessing not in ("official", "embedded"):
        raise ConfigError(f"diffiqa-ddpm: option preprocessing={preprocessing!r}: expected auto, official or embedded")
    return preprocessing


def build_official_pool(
    source: Any,
    *,
    copies: int,
    seed: int,
    size: int,
    cache: Path | None = None,
    progress: Callable[[int, str], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Official-preprocessing pool: ``clean`` uint8 ``(N, 2, size, size, 3)`` (unflipped, flipped),
    ``degraded`` uint8 ``(N, copies, size, size, 3)`` and ``flips`` bool ``(N, copies)``.

    Copy ``j`` of image ``i`` is :func:`~.degrade.official_training_pair` of the original with
    ``numpy.random.default_rng([seed, i, j])`` (the flip is its first draw). ``source[i]`` gives
    the original image (any size). Cached at ``cache`` (``.npz``, read without pickle).
    """
    n = len(source)
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            if data["degraded"].shape == (n, copies, size, size, 3):
                return data["clean"], data["degraded"], data["flips"]
    clean = np.empty((n, 2, size, size, 3), np.uint8)
    degraded = np.empty((n, copies, size, size, 3), np.uint8)
    flips = np.zeros((n, copies), bool)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bar = progress(n, "degrading") if progress is not None else None
    try:
        for i in range(n):
            original = np.ascontiguousarray(source[i])
            clean[i, 0] = resize_antialiased(original, size)
            clean[i, 1] = resize_antialiased(np.ascontiguousarray(original[:, ::-1]), size)
            for j in range(copies):
                trace: dict = {}
                _, degraded[i, j] = official_training_pair(original, np.random.default_rng([seed, i, j]), size=size,
                                                           trace=trace)
                flips[i, j] = trace["flipped"]
            if bar is not None:
                bar.update(1)
    finally:
        torch.set_num_threads(threads)
        if bar is not None:
            bar.close()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, clean=clean, degraded=degraded, flips=flips)
        tmp.replace(cache)
    return clean, degraded, flips


def _to_unit_range(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


# ------------------------------------------------------------------------------------------------
# checkpoints (safetensors + JSON metadata)
# ------------------------------------------------------------------------------------------------


def _save_checkpoint(
    path: Path,
    *,
    model: UNet,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    perm: torch.Tensor,
    state: Mapping[str, Any],
) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.model.state_dict().items()})
    opt_state = optimizer.state_dict()
    for index, entry in opt_state["state"].items():
        for name, value in entry.items():
            tensors[f"opt.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng"] = gen.get_state()
    tensors["perm"] = perm.cpu().contiguous()
    meta = {
        "format": "fiqabench-diffiqa-ddpm-checkpoint/1",
        "unet_config": model.config.to_json(),
        "state": json.dumps(
            {**state, "ema_step": ema.step, "ema_initted": ema.initted, "param_groups": opt_state["param_groups"]}
        ),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def _load_checkpoint(
    path: Path, *, model: UNet, ema: EMA, optimizer: torch.optim.Optimizer, gen: torch.Generator
) -> tuple[dict[str, Any], torch.Tensor]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata() or {})
    if UNetConfig.from_json(meta["unet_config"]) != model.config:
        raise ConfigError(f"{path}: checkpoint of another UNet configuration; delete it or change --output")
    state = json.loads(meta["state"])
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    ema.step, ema.initted = int(state.pop("ema_step")), bool(state.pop("ema_initted"))
    opt_state: dict[str, Any] = {"state": {}, "param_groups": state.pop("param_groups")}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            opt_state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(opt_state)
    gen.set_state(tensors["rng"])
    return state, tensors["perm"]


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------


def _pool_cache_path(output: Path, key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return output.with_name(f"diffiqa-ddpm-pool-{digest}.npy")


def _checkpoint_path(output: Path) -> Path:
    return output.with_name(output.stem + ".ckpt.safetensors")


def train_on_images(
    images: np.ndarray | FolderSource,
    *,
    options: Mapping[str, Any],
    device: torch.device | str,
    output: Path,
    progress: Callable[[int, str], Any] | None = None,
    dataset_digest: str = "",
) -> Path:
    """Train on uint8 RGB ``images`` ``(N, H, W, 3)`` or a :class:`~.folder.FolderSource`; see the
    module docstring."""
    from . import TRAINER_OPTIONS

    # "dataset" names the source in resume checks and pool keys (the trainer input, not an option)
    opts: dict[str, Any] = {key: opt.default for key, opt in TRAINER_OPTIONS.items()} | {"dataset": None}
    opts.update(options)
    opts["images"] = str(opts["images"]) if opts.get("images") else None
    device = torch.device(device)
    output = Path(output)
    if output.suffix != ".safetensors":
        raise ConfigError(f"diffiqa-ddpm: --output must be a .safetensors file, got {output}")
    output.parent.mkdir(parents=True, exist_ok=True)
    if int(opts["threads"]) > 0:
        torch.set_num_threads(int(opts["threads"]))
    config = UNetConfig.named(str(opts["unet_config"]))
    steps, batch_size, seed = int(opts["steps"]), int(opts["batch_size"]), int(opts["seed"])
    copies = int(opts["pool_copies"])
    opts["preprocessing"] = resolve_preprocessing(str(opts["preprocessing"]), str(opts["unet_config"]))
    official = opts["preprocessing"] == "official"
    size = config.image_size
    work_size = OFFICIAL_WORK_SIZE if official else int(opts["degrade_scale"]) * size
    limit = int(opts["max_images"])
    if isinstance(images, FolderSource):
        opts["dataset"] = None  # the folder replaces the registered dataset (recorded as its digest)
        if images.size != size and not official:
            raise ConfigError(f"diffiqa-ddpm: folder source reads {images.size} px, the UNet needs {size}")
        if limit > 0:
            images.files = images.files[:limit]
        dataset_digest = dataset_digest or images.digest()
        if official:  # the official path degrades the original, not the resized image
            images = images.at_original_size()
        elif copies > 0:  # the in-memory pool needs the images in memory too
            images = np.stack([images[i] for i in range(len(images))])
    else:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or len(images) == 0:
            raise ConfigError(f"diffiqa-ddpm: expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
        if limit > 0:
            images = images[:limit]
        if not official:
            images = _resize_images(images, size)
    n = len(images)
    streaming = copies == 0

    pool_key = {
        "version": POOL_VERSION,
        "dataset": str(opts["dataset"]),
        "digest": dataset_digest or hashlib.sha256(images.tobytes()).hexdigest(),
        "n": n,
        "copies": copies,
        "seed": seed,
        "work_size": work_size,
    }
    if official:  # (only then: the embedded pool's cache key stays what it was)
        pool_key.update(preprocessing="official", size=size)
    t_pool = time.perf_counter()
    if not streaming and official:
        source_for_pool = images if isinstance(images, FolderSource) else ArraySource(images)
        clean_pool, pool, flip_pool = build_official_pool(
            source_for_pool, copies=copies, seed=seed, size=size,
            cache=_pool_cache_path(output, pool_key).with_suffix(".npz"), progress=progress,
        )
    elif not streaming:
        assert isinstance(images, np.ndarray)
        pool = build_degraded_pool(
            images, copies=copies, seed=seed, work_size=work_size, cache=_pool_cache_path(output, pool_key),
            progress=progress,
        )
    pool_seconds = time.perf_counter() - t_pool

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UNet(config)
    model.to(device).train().to(memory_format=torch.channels_last)
    ema = EMA(model, beta=float(opts["ema_decay"]))
    optimizer = torch.optim.Adam(model.parameters(), lr=float(opts["lr"]), betas=ADAM_BETAS)
    schedule = DiffusionSchedule.cosine(device=device)
    gen = torch.Generator().manual_seed(seed)  # every training draw; CPU so runs match across devices
    state: dict[str, Any] = {"step": 0, "pos": 0, "epoch": 0, "seconds": 0.0, "losses": []}
    perm = torch.randperm(n, generator=gen)

    ckpt = _checkpoint_path(output)
    resume_opts = {key: opts[key] for key in _RESUME_KEYS}
    if ckpt.is_file():
        loaded, perm = _load_checkpoint(ckpt, model=model, ema=ema, optimizer=optimizer, gen=gen)
        if isinstance(loaded.get("options"), dict):  # checkpoints of trainer version 1 had no such option
            loaded["options"].setdefault("preprocessing", "embedded")
        if loaded.get("options") != json.loads(json.dumps(resume_opts)):
            raise ConfigError(
                f"{ckpt}: checkpoint was written with options {loaded.get('options')}, not {resume_opts};"
                " delete it or choose another --output"
            )
        state.update(loaded)
        ema.online = model

    if streaming:
        source = images if isinstance(images, FolderSource) else ArraySource(images)
        batches = iter(pair_loader(source, batch_size=batch_size, seed=seed, work_size=work_size,
                                   start_step=int(state["step"]), steps=steps, workers=int(opts["workers"]),
                                   official_size=size if official else None))
    elif official:
        clean_t = torch.from_numpy(clean_pool)
        flips_t = torch.from_numpy(flip_pool.astype(np.int64))
        pool_t = torch.from_numpy(pool)
    else:
        images_t = torch.from_numpy(images)
        pool_t = torch.from_numpy(pool)
    bar = progress(steps, "diffiqa-ddpm") if progress is not None else None
    if bar is not None and state["step"]:
        bar.update(state["step"])
    losses: list[float] = list(state["losses"])
    every = int(opts["checkpoint_every"])
    started = time.perf_counter() - float(state["seconds"])

    def checkpoint() -> None:
        state["seconds"] = time.perf_counter() - started
        state["losses"] = losses[-1000:]
        state["options"] = resume_opts
        _save_checkpoint(ckpt, model=model, ema=ema, optimizer=optimizer, gen=gen, perm=perm, state=state)

    try:
        while state["step"] < steps:
            if streaming:
                # order and degradations come from the loader (seeded by epoch and image)
                clean, degraded = next_pair(batches)
                state["epoch"] = (state["step"] + 1) * batch_size // n
            else:
                # epoch-wise shuffling (DataLoader shuffle=True), drawn from the run's generator
                idx_parts = []
                need = batch_size
                while need > 0:
                    if state["pos"] >= n:
                        perm = torch.randperm(n, generator=gen)
                        state["pos"], state["epoch"] = 0, state["epoch"] + 1
                    take = min(need, n - state["pos"])
                    idx_parts.append(perm[state["pos"] : state["pos"] + take])
                    state["pos"] += take
                    need -= take
                idx = torch.cat(idx_parts)
                which = torch.randint(copies, (batch_size,), generator=gen)
                if official:  # each copy was degraded from a (maybe) flipped original: its clean twin
                    clean, degraded = clean_t[idx, flips_t[idx, which]], pool_t[idx, which]
                else:
                    clean, degraded = images_t[idx], pool_t[idx, which]
            # embedded preprocessing flips here, after degradation; official pairs come flipped
            flip = None if official else torch.rand(batch_size, generator=gen) < 0.5
            t_cpu = torch.randint(TIME_BOUND[0], TIME_BOUND[1], (batch_size,), generator=gen)
            noise = torch.randn((batch_size, 3, config.image_size, config.image_size), generator=gen)

            hq = _to_unit_range(clean.numpy(), device)
            lq = _to_unit_range(degraded.numpy(), device)
            if flip is not None:
                flip_d = flip.to(device)[:, None, None, None]
                hq = torch.where(flip_d, hq.flip(-1), hq)
                lq = torch.where(flip_d, lq.flip(-1), lq)
            hq = hq.contiguous(memory_format=torch.channels_last)
            lq = lq.contiguous(memory_format=torch.channels_last)
            loss = training_loss(model, schedule, hq, lq, t_cpu.to(device), noise.to(device))

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state["step"] += 1
            ema.update()
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                if hasattr(bar, "set_postfix") and state["step"] % 50 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            if state["step"] % every == 0 or state["step"] == steps:
                checkpoint()
    finally:
        if bar is not None:
            bar.close()
    if not ckpt.is_file():
        checkpoint()

    final_loss = float(np.mean(losses[-100:])) if losses else float("nan")
    meta = {
        "trainer": "diffiqa-ddpm",
        "steps": str(state["step"]),
        "epochs": str(state["epoch"]),
        "final_loss_mean_last_100": f"{final_loss:.6f}",
        "train_seconds": f"{state['seconds']:.1f}",
        "pool_seconds_this_run": f"{pool_seconds:.1f}",
        "images": str(n),
        "options": json.dumps({k: opts[k] for k in sorted(opts) if k != "threads"}),
        "dataset_digest": dataset_digest,
    }
    return save_weights(output, model, ema_model=ema.model, metadata=meta)


def train(
    *,
    options: Mapping[str, Any],
    device: torch.device | str = "cpu",
    output: Path,
    progress: Callable[[int, str], Any] | None = None,
    dataset: Any = None,
) -> Path:
    """The registered trainer ``diffiqa-ddpm``: trains on the folder ``options['images']`` if given,
    else on ``dataset`` (built by the CLI from ``--dataset NAME``, default synthetic-train), and
    calls :func:`train_on_images`. Writes ``output`` (safetensors, online + EMA weights)."""
    if options.get("images"):
        config = UNetConfig.named(str(options.get("unet_config", "embedded")))
        return train_on_images(
            FolderSource(Path(str(options["images"])), config.image_size),
            options=options,
            device=device,
            output=Path(output),
            progress=progress,
        )
    if dataset is None:
        raise ConfigError("diffiqa-ddpm needs images: --dataset NAME or --option images=DIR")
    count = len(dataset.samples())
    limit = int(options.get("max_images", 0) or 0)
    if limit > 0:
        count = min(count, limit)
    chunks = [dataset.read_images(list(range(s, min(s + 1024, count)))) for s in range(0, count, 1024)]
    images = np.concatenate(chunks)
    return train_on_images(
        images,
        options={**options, "dataset": dataset.name},
        device=device,
        output=Path(output),
        progress=progress,
        dataset_digest=f"{dataset.name}@{dataset.version}:{dataset.manifest_digest()}",
    )
