"""The DifFIQA quality score (Babnik, Peer, Struc, IJCB 2023, §3.4-3.5, Eq. 7).

For an image ``x`` and its horizontal flip ``x^f`` (paper §3.5), repeated ``n`` times:

1. forward-noise both to ``t`` (default 5) with the DDPM forward process (Eq. 2):
   ``x_t``, ``x^f_t``;
2. denoise them (:mod:`.sampling`; default: the official reverse loop) into ``x_hat``,
   ``x_hat^f``;
3. embed ``x``, ``x^f`` (once each: they do not change across repeats) and every ``x_t``,
   ``x_hat``, ``x^f_t``, ``x_hat^f`` with the FR model;
4. ``q_x = 1 / (n |E|) sum_i sum_{e_y in E} cos(e_x, e_y)`` with
   ``E = {e_{x_t}, e_{x_hat}, e_{x^f}, e_{x^f_t}, e_{x_hat^f}}`` (Eq. 7). Every term compares with
   the embedding of the *un-flipped* original, as the official code does (``inference.py``
   L126-131; research note ``diffiqa.md`` §4).

Ablations (paper Table 4): ``flip=false`` drops the three flip terms, ``E = {e_{x_t}, e_{x_hat}}``.
"W/o forward pass" has two readings and the paper does not say which it ran:

- ``forward_term=false``: the noisy images are not *compared*,
  ``E = {e_{x_hat}, e_{x^f}, e_{x_hat^f}}``, but the reconstructions still start from the
  forward-noised images;
- ``forward_term=false, reconstruct_from=clean``: there is no forward noising at all; the reverse
  process (the same sampler, from model time ``t``) starts from the clean image and its flip, and
  ``E`` is the same three terms. With the official sampler (``eta = 1``) the reconstructions still
  differ between repeats; ``reconstruct_from=clean`` with ``forward_term=true`` is an error
  (there are no noisy images to compare).

Conventions:

- The DDPM works in ``[-1, 1]`` at its own resolution (the inputs are resized to it when they
  differ). Every image goes to the FR model as ``fr_model.to_input_space((y + 1) / 2)``; noisy
  images are *not* clamped (the official code does not clamp them), reconstructions are within
  ``[-1, 1]`` already (x0 clamp). The FR model is a black box under ``torch.inference_mode``.
- Per-sample seeds: sample ``i``'s noise (forward noise first -- none with
  ``reconstruct_from=clean`` --, then one draw per reverse step, each of shape
  ``(chains, 3, H, W)``) comes from a ``torch.Generator`` on the device seeded with
  ``batch.seeds[i]``, so scores do not depend on batch size, order or chunking.
- Across devices the scores are *not* equal draw for draw: the generator lives on the device (so
  the GPU does not wait for CPU-drawn noise), and CPU and CUDA generators give different streams
  for one seed. A CUDA run is therefore expected to differ from a CPU run like a run with another
  run seed does (how much that is on the embedded benchmark: ``benchmarks/diffiqa.md`` §5); the
  CPU-versus-GPU difference itself has **not been measured** (no GPU run yet). On one CPU, 1 and
  2 torch threads agree to 1e-6 (float rounding; ``tests/plugins/test_diffiqa.py``).
- Batching: the ``2 n`` chains of a group of samples go through the UNet together; groups are cut
  at sample boundaries so that a UNet call holds at most ``batch_images`` images (default 64, the
  official inference batch: 64 // 20 = 3 images of 20 chains).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fiqabench.api import FaceRecognitionModel, SampleBatch
from fiqabench.errors import ConfigError, MissingArtifactError
from fiqabench.fr import file_digest, rgb_uint8_to_unit
from fiqabench.options import resolve

from .checkpoint import load_weights
from .sampling import reverse
from .schedule import DiffusionSchedule
from .unet import UNet, UNetConfig

__all__ = ["DifFIQA", "DEFAULT_WEIGHTS", "eq7_quality", "factory", "terms_for"]

#: The shipped embedded-world DDPM (trained by ``fiqabench train diffiqa-ddpm``).
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "diffiqa-ddpm-embedded.safetensors"

#: Names of the Eq. 7 terms, in the order of the official sum (``inference.py`` L126-131).
ALL_TERMS = ("x_t", "x_hat", "flip_t", "flip_hat", "flip")


def terms_for(*, flip: bool, forward_term: bool) -> tuple[str, ...]:
    """The set ``E`` of Eq. 7 for the ablation switches (paper Table 4).

    >>> terms_for(flip=True, forward_term=True)
    ('x_t', 'x_hat', 'flip_t', 'flip_hat', 'flip')
    >>> terms_for(flip=False, forward_term=True)
    ('x_t', 'x_hat')
    >>> terms_for(flip=True, forward_term=False)
    ('x_hat', 'flip_hat', 'flip')
    """
    terms = [name for name in ALL_TERMS if flip or not name.startswith("flip")]
    if not forward_term:
        terms = [name for name in terms if name not in ("x_t", "flip_t")]
    return tuple(terms)


def eq7_quality(
    e_x: torch.Tensor,
    others: Mapping[str, torch.Tensor],
    terms: Sequence[str],
) -> torch.Tensor:
    """Eq. 7: ``q = 1 / (n |E|) sum_i sum_{e_y in E} cos(e_x, e_y)``.

    ``e_x`` is ``(B, D)``; ``others[name]`` is ``(B, n, D)`` for the per-repeat terms or
    ``(B, D)`` for ``flip`` (constant over repeats, so its mean over ``n`` is itself). Returns
    ``(B,)`` float32. Raw (unnormalised) embeddings are fine: cosine similarity normalises.
    """
    e_x = e_x.float()
    total = torch.zeros(e_x.shape[0], device=e_x.device)
    for name in terms:
        e_y = others[name].float()
        if e_y.ndim == 2:
            total = total + F.cosine_similarity(e_x, e_y, dim=-1)
        else:
            total = total + F.cosine_similarity(e_x[:, None, :], e_y, dim=-1).mean(dim=1)
    return total / len(terms)


class DifFIQA:
    """DifFIQA (paper §3.4-3.5): build with :func:`factory`, then call :meth:`score`."""

    def __init__(self, *, options: Mapping[str, Any], device: torch.device | str = "cpu", unet: UNet | None = None) -> None:
        from . import METHOD_OPTIONS

        # defaults filled in and every value checked once, by the parsers declared with the options
        given = {key: value for key, value in options.items() if key != "quality_fr_model"}  # the core's option
        options = resolve(METHOD_OPTIONS, given, name="diffiqa", kind="FIQA method")
        self.device = torch.device(device)
        self.n, self.t = int(options["n"]), int(options["t"])
        self.sampler = str(options["sampler"])
        self.flip, self.forward_term = bool(options["flip"]), bool(options["forward_term"])
        self.reconstruct_from = str(options["reconstruct_from"])
        if self.reconstruct_from == "clean" and self.forward_term:
            raise ConfigError(
                "diffiqa: reconstruct_from=clean has no noisy images to compare: set forward_term=false"
            )
        self.precision = str(options["precision"])
        self.batch_images = int(options["batch_images"])
        self.num_threads = int(options["num_threads"])
        self.terms = terms_for(flip=self.flip, forward_term=self.forward_term)
        config_name = str(options.get("unet_config", "embedded"))
        expected = UNetConfig.named(config_name)
        if unet is None:
            path = Path(str(options.get("weights") or DEFAULT_WEIGHTS))
            if config_name != "embedded" and path == DEFAULT_WEIGHTS:
                raise MissingArtifactError(missing_weights_message(None, config_name))
            if not path.is_file():
                raise MissingArtifactError(missing_weights_message(path, config_name))
            unet = load_weights(path, ema=bool(options.get("ema", False)), expected_config=expected, device=self.device)
            self.weights_path: Path | None = path
            self.weights_digest = file_digest(path)
        else:
            self.weights_path = None
            self.weights_digest = "in-memory"
        # channels_last: oneDNN's NHWC convolutions were about 1.5x faster on the CPU (benchmarks/diffiqa.md)
        self.unet = unet.to(self.device).eval().to(memory_format=torch.channels_last)
        for param in self.unet.parameters():
            param.requires_grad_(False)
        self.image_size = self.unet.config.image_size
        self.schedule = DiffusionSchedule.cosine(device=self.device)
        self._forward = self.unet
        if bool(options.get("compile", False)):
            self._forward = torch.compile(self.unet)  # type: ignore[assignment]

    # -- helpers ---------------------------------------------------------------------------------

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _denoise(self, x: torch.Tensor, tau: int) -> torch.Tensor:
        time = torch.full((x.shape[0],), tau, device=x.device, dtype=torch.long)
        with self._autocast():
            out = self._forward(x.contiguous(memory_format=torch.channels_last), time)
        return out.float().contiguous()

    def _embed(self, fr_model: FaceRecognitionModel, images: torch.Tensor) -> torch.Tensor:
        """``[-1, 1]`` images -> embeddings, via the FR model's own input-space conversion."""
        with self._autocast():
            out = fr_model.forward(fr_model.to_input_space((images + 1.0) / 2.0))
        return out.float()

    def prepare(self, images: np.ndarray) -> torch.Tensor:
        """uint8 RGB ``(N, H, W, 3)`` -> ``[-1, 1]`` float ``(N, 3, S, S)`` at the DDPM size ``S``."""
        rgb01 = rgb_uint8_to_unit(images, self.device)
        if tuple(rgb01.shape[-2:]) != (self.image_size, self.image_size):
            rgb01 = F.interpolate(
                rgb01, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True
            )
        return rgb01 * 2.0 - 1.0

    # -- the method ------------------------------------------------------------------------------

    def score_tensor(
        self, x: torch.Tensor, seeds: Sequence[int], fr_model: FaceRecognitionModel
    ) -> torch.Tensor:
        """Eq. 7 for ``[-1, 1]`` images ``x`` ``(B, 3, S, S)`` with one seed per image."""
        if len(seeds) != x.shape[0]:
            raise ConfigError(f"diffiqa: {x.shape[0]} images but {len(seeds)} seeds")
        chains = (2 if self.flip else 1) * self.n
        per_group = max(1, self.batch_images // chains)
        out = []
        for start in range(0, x.shape[0], per_group):
            group = x[start : start + per_group]
            gens = []
            for seed in seeds[start : start + per_group]:
                gen = torch.Generator(device=self.device)
                gen.manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
                gens.append(gen)
            out.append(self._score_group(group, gens, chains, fr_model))
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

    def _score_group(
        self, x: torch.Tensor, gens: list[torch.Generator], chains: int, fr_model: FaceRecognitionModel
    ) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.n
        x_flip = x.flip(-1)
        # rows: sample-major, then [original x n, flip x n]
        parts = [x[:, None].expand(b, n, c, h, w)]
        if self.flip:
            parts.append(x_flip[:, None].expand(b, n, c, h, w))
        start = torch.cat(parts, dim=1).reshape(b * chains, c, h, w)

        def noise() -> torch.Tensor:
            return torch.cat(
                [torch.randn((chains, c, h, w), generator=g, device=self.device, dtype=torch.float32) for g in gens]
            )

        if self.reconstruct_from == "clean":  # second reading of Table 4 "w/o forward pass": no noising
            x_t = start
        else:
            time = torch.full((b * chains,), self.t, device=self.device, dtype=torch.long)
            x_t = self.schedule.q_sample(start, time, noise())
        x_hat = reverse(x_t, self.t, denoise=self._denoise, schedule=self.schedule, noise=noise, sampler=self.sampler)
        # one FR call: originals, flips, noisy (only when Eq. 7 compares them), reconstructed
        inputs = [x] + ([x_flip] if self.flip else []) + ([x_t] if self.forward_term else []) + [x_hat]
        emb = self._embed(fr_model, torch.cat(inputs))
        e_x, emb = emb[:b], emb[b:]
        others: dict[str, torch.Tensor] = {}
        if self.flip:
            others["flip"], emb = emb[:b], emb[b:]
        d = emb.shape[-1]
        if self.forward_term:
            e_t = emb[: b * chains].reshape(b, chains // n, n, d)
            others["x_t"] = e_t[:, 0]
            if self.flip:
                others["flip_t"] = e_t[:, 1]
            emb = emb[b * chains :]
        e_hat = emb.reshape(b, chains // n, n, d)
        others["x_hat"] = e_hat[:, 0]
        if self.flip:
            others["flip_hat"] = e_hat[:, 1]
        return eq7_quality(e_x, others, self.terms)

    def score(self, batch: SampleBatch, *, fr_model: FaceRecognitionModel | None) -> np.ndarray:
        """Quality per image (higher is better): Eq. 7, a mean cosine similarity."""
        if fr_model is None:
            raise ConfigError("diffiqa needs an FR model (quality_fr_model)")
        if len(batch) == 0:
            return np.zeros(0, np.float32)
        previous = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            with torch.inference_mode():
                x = self.prepare(batch.images)
                q = self.score_tensor(x, [int(s) for s in np.asarray(batch.seeds).tolist()], fr_model)
        finally:
            if self.num_threads:
                torch.set_num_threads(previous)
        return q.cpu().numpy().astype(np.float32)


def missing_weights_message(path: Path | None, config_name: str) -> str:
    """What is missing and the two ways to fix it."""
    if config_name == "official":
        where = f"not found: {path}" if path is not None else "not given (none are shipped for unet_config=official)"
        return (
            f"DifFIQA DDPM weights {where}. Pass the official checkpoint (diff_pretrain.pt"
            " from the DifFIQA repository) with --method-option diffiqa:weights=PATH"
        )
    return (
        f"DifFIQA DDPM weights not found: {path}. Train them with"
        " `fiqabench train diffiqa-ddpm --output PATH` (dataset synthetic-train) and pass"
        " --method-option diffiqa:weights=PATH, or restore the shipped file"
        f" {DEFAULT_WEIGHTS.name}"
    )


def factory(*, options: Mapping[str, Any], device: torch.device | str = "cpu") -> DifFIQA:
    """The registered target: ``factory(options=..., device=...)`` -> :class:`DifFIQA`."""
    return DifFIQA(options=options, device=device)
