"""The DDPM noise schedule and forward process of DifFIQA.

Paper: Babnik, Peer, Struc, "DifFIQA: Face Image Quality Assessment Using Denoising Diffusion
Probabilistic Models", IJCB 2023, §3.1 (Eq. 1-2: the forward process
``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``).

Official code (research note ``diffiqa.md`` §1.2-1.3):

- ``diffiqa/diffusion_base/diff_util.py`` L67-77: the improved-DDPM *cosine* schedule with
  ``s = 0.008``, ``T = 1000``, betas clipped to ``[0, 0.999]``. ``beta_schedule`` is not set in
  ``train_config.yaml``, so the ``GaussianDiffusion`` default ``'cosine'`` applies
  (``diff_gauss.py`` L29).
- ``diff_gauss.py`` L77-107: everything is computed in float64 and registered as float32 buffers.
  Indices are 0-based: ``alphas_cumprod[k] = prod_{j<=k} (1 - beta_j)``.
- ``diff_gauss.py`` L201-207: ``q_sample``.

Images live in ``[-1, 1]`` and the network predicts ``x_0`` (``objective: pred_x0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["DiffusionSchedule", "cosine_beta_schedule", "extract"]

#: Number of diffusion steps of the official configuration (``train_config.yaml`` L9).
NUM_TIMESTEPS = 1000
#: The cosine schedule offset ``s`` (Nichol & Dhariwal 2021; ``diff_util.py`` L67).
COSINE_S = 0.008


def cosine_beta_schedule(timesteps: int = NUM_TIMESTEPS, s: float = COSINE_S) -> torch.Tensor:
    """Betas of the cosine schedule, float64 (``diff_util.py`` L67-77).

    ``abar(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2) / abar(0)`` on ``t = 0..T`` and
    ``beta_t = 1 - abar(t + 1) / abar(t)``, clipped to ``[0, 0.999]``.

    >>> b = cosine_beta_schedule()
    >>> b.dtype, tuple(b.shape)
    (torch.float64, (1000,))
    >>> round(float(b[0]), 9)
    4.128e-05
    """
    steps = timesteps + 1
    x = torch.linspace(0, timesteps, steps, dtype=torch.float64)
    alphas_cumprod = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
    betas = 1 - (alphas_cumprod[1:] / alphas_cumprod[:-1])
    return torch.clip(betas, 0, 0.999)


def extract(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Gather ``values[t]`` per batch element and reshape to broadcast over ``ndim`` dims.

    The official helper of the same name (``diff_util.py`` L56-59).
    """
    out = values.gather(-1, t)
    return out.reshape(t.shape[0], *((1,) * (ndim - 1)))


@dataclass(frozen=True)
class DiffusionSchedule:
    """All per-timestep constants, float32 on one device, derived in float64 like the official code.

    The field names are those of the official ``GaussianDiffusion`` buffers
    (``diff_gauss.py`` L77-107), so a checkpoint's buffers can be compared one to one
    (:func:`fiqabench_plugins.diffiqa.checkpoint.check_schedule_buffers`).
    """

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    log_one_minus_alphas_cumprod: torch.Tensor
    sqrt_recip_alphas_cumprod: torch.Tensor
    sqrt_recipm1_alphas_cumprod: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor

    #: Buffer names, in the order the official class registers them (``p2_loss_weight`` is
    #: left out: it is 1 everywhere because ``p2_loss_weight_gamma = 0``, ``diff_gauss.py`` L30).
    BUFFER_NAMES = (
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
    )

    @classmethod
    def cosine(
        cls,
        timesteps: int = NUM_TIMESTEPS,
        s: float = COSINE_S,
        device: torch.device | str = "cpu",
    ) -> DiffusionSchedule:
        """The official schedule (``diff_gauss.py`` L56-107): float64 maths, float32 storage.

        The noise std at the inference step t = 5 is about 0.017904 (research note §1.2; the
        float32 buffer, derived in float64 like the official one, holds 0.0179034):

        >>> sch = DiffusionSchedule.cosine()
        >>> round(float(sch.sqrt_one_minus_alphas_cumprod[5]), 7)
        0.0179034
        """
        betas = cosine_beta_schedule(timesteps, s)
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.nn.functional.pad(alphas_cumprod[:-1], (1, 0), value=1.0)
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        values = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": torch.sqrt(alphas_cumprod),
            "sqrt_one_minus_alphas_cumprod": torch.sqrt(1.0 - alphas_cumprod),
            "log_one_minus_alphas_cumprod": torch.log(1.0 - alphas_cumprod),
            "sqrt_recip_alphas_cumprod": torch.sqrt(1.0 / alphas_cumprod),
            "sqrt_recipm1_alphas_cumprod": torch.sqrt(1.0 / alphas_cumprod - 1),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": torch.log(posterior_variance.clamp(min=1e-20)),
            "posterior_mean_coef1": betas * torch.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * torch.sqrt(alphas) / (1.0 - alphas_cumprod),
        }
        return cls(**{k: v.to(device=device, dtype=torch.float32) for k, v in values.items()})

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device: torch.device | str) -> DiffusionSchedule:
        """The same schedule on another device."""
        return DiffusionSchedule(**{name: getattr(self, name).to(device) for name in self.BUFFER_NAMES})

    def buffers(self) -> dict[str, torch.Tensor]:
        """The official buffer dict (name -> float32 tensor)."""
        return {name: getattr(self, name) for name in self.BUFFER_NAMES}

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Forward process, paper Eq. 2: ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``.

        ``t`` is a long tensor of shape ``(B,)`` (``diff_gauss.py`` L201-207). The noise is passed
        in explicitly so callers control its random stream (per-sample seeds). The result is not
        clamped: the official code feeds the noisy images to the FR model as they are.
        """
        return (
            extract(self.sqrt_alphas_cumprod, t, x_start.ndim) * x_start
            + extract(self.sqrt_one_minus_alphas_cumprod, t, x_start.ndim) * noise
        )

    def predict_noise_from_start(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """``eps_hat = (x_t / sqrt(abar_t) - x0) / sqrt(1 / abar_t - 1)`` (``diff_gauss.py`` L115-119)."""
        return (extract(self.sqrt_recip_alphas_cumprod, t, x_t.ndim) * x_t - x0) / extract(
            self.sqrt_recipm1_alphas_cumprod, t, x_t.ndim
        )

    def q_posterior(
        self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``q(x_{t-1} | x_t, x_0)`` (DDPM; ``diff_gauss.py`` L121-128)."""
        mean = (
            extract(self.posterior_mean_coef1, t, x_t.ndim) * x_start
            + extract(self.posterior_mean_coef2, t, x_t.ndim) * x_t
        )
        return mean, extract(self.posterior_variance, t, x_t.ndim)
