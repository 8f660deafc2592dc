"""The reverse (denoising) procedures of DifFIQA.

Two samplers, both starting from the image they are given at schedule index ``t``: the
forward-noised ``x_t`` (paper §3.4, Fig. 2), or the clean image itself with the method's
``reconstruct_from=clean`` (the second reading of Table 4 "w/o forward pass"):

- ``official`` (the default): what the released code runs, ``GaussianDiffusion.ddim_sample_at_t``
  (``diffiqa/diffusion_base/diff_gauss.py`` L156-190, called from ``diffiqa/inference.py``
  L105-108 with ``nof_s = t + 1``; research note ``diffiqa.md`` §1.4). The loop starts one step
  *below* ``t`` (``t0 = t - 1``), runs ``nof_s = t + 1`` network calls over the truncated
  ``linspace(-1, t0, nof_s + 1)`` time pairs -- ``(4,3), (3,2), (2,1), (1,0), (0,0), (0,-1)`` at
  ``t = 5`` -- clamps every ``x0`` prediction to ``[-1, 1]``, recomputes ``eps_hat`` from the
  clamped prediction and takes a stochastic DDIM step with ``eta = 1``. It returns the last
  (clamped) ``x0`` prediction, made at model time 0.
- ``paper``: the ancestral DDPM reverse process of the paper's Eq. 3-4 (DDPM's Algorithm 2),
  from ``x_t`` all the way to the clean image:
  ``x_{tau-1} = mu_tilde_tau(x_tau, x0_hat) + sigma_tau z`` with the clamped ``x0`` prediction,
  the DDPM posterior mean and ``sigma_tau^2`` the posterior variance. Eq. 3-4 are written in
  DDPM's 1-based time (``x_0`` is the clean image, steps ``t = T, ..., 1``); the official
  schedule is 0-based (``alphas_cumprod[k]`` already holds ``k + 1`` noising steps, research
  note ``diffiqa.md`` §1.2), so schedule index ``k`` is the paper's time ``k + 1`` and the clean
  image sits *below* index 0. The chain therefore runs ``tau = t, ..., 0`` (``t + 1`` network
  calls, 6 at ``t = 5``, like the official sampler), as the upstream lucidrains ``p_sample_loop``
  does (``reversed(range(0, T))``). Its last step, at ``tau = 0``, has
  ``alphas_cumprod_prev[0] = 1``: posterior mean coefficients ``(1, 0)`` and variance 0, so it
  returns the ``x0`` prediction made at model time 0 -- ``z = 0`` there, as Algorithm 2's last
  step. (Version 1 stopped one step early, at ``tau = 1``, and returned the posterior mean at
  index 0, about ``0.53 x0_hat + 0.47 x_1``: a still-noisy image, not ``x_0``.)

Randomness never comes from the global RNG: every noise tensor is requested from a ``noise``
callable, so the caller can draw each sample's noise from that sample's own generator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fiqabench.errors import ConfigError

from .schedule import DiffusionSchedule

__all__ = ["Denoiser", "NoiseSource", "ddim_step", "official_time_pairs", "reverse", "SAMPLERS"]

#: ``denoiser(x_tau, tau) -> x0_hat`` (float32, unclamped) for a batch at one integer time.
Denoiser = Callable[[torch.Tensor, int], torch.Tensor]
#: ``noise() -> tensor`` shaped like the image batch, standard normal.
NoiseSource = Callable[[], torch.Tensor]

SAMPLERS = ("official", "paper")


def official_time_pairs(t: int, nof_s: int | None = None) -> list[tuple[int, int]]:
    """The time pairs of ``ddim_sample_at_t`` (``diff_gauss.py`` L160-163).

    ``times = linspace(-1, t - 1, nof_s + 1)`` in float32, truncated toward zero by ``.int()``,
    reversed and paired. ``nof_s`` defaults to ``t + 1`` as in ``inference.py`` L107.

    >>> official_time_pairs(5)
    [(4, 3), (3, 2), (2, 1), (1, 0), (0, 0), (0, -1)]
    >>> official_time_pairs(20)[-3:]
    [(1, 0), (0, 0), (0, -1)]
    """
    if t < 1:
        raise ConfigError(f"DifFIQA: t must be >= 1, got {t}")
    steps = (t + 1 if nof_s is None else nof_s) + 1
    times = torch.linspace(-1, t - 1, steps=steps, dtype=torch.float32)
    values = list(reversed(times.int().tolist()))
    return list(zip(values[:-1], values[1:]))


def ddim_step(
    x_tau: torch.Tensor,
    x0_hat: torch.Tensor,
    tau: int,
    tau_next: int,
    schedule: DiffusionSchedule,
    z: torch.Tensor,
    eta: float = 1.0,
) -> torch.Tensor:
    """One update of ``ddim_sample_at_t`` (``diff_gauss.py`` L178-188) from a clamped ``x0_hat``.

    With ``a = abar[tau]``, ``a' = abar[tau_next]`` (float32 scalars, as the official buffers):
    ``eps_hat = (x_tau / sqrt(a) - x0_hat) / sqrt(1 / a - 1)``,
    ``sigma = eta * sqrt((1 - a / a') (1 - a') / (1 - a))``, ``c = sqrt(1 - a' - sigma^2)`` and
    ``x_{tau'} = sqrt(a') x0_hat + c eps_hat + sigma z``.
    """
    time = torch.full((x_tau.shape[0],), tau, device=x_tau.device, dtype=torch.long)
    eps_hat = schedule.predict_noise_from_start(x_tau, time, x0_hat)
    alpha = schedule.alphas_cumprod[tau]
    alpha_next = schedule.alphas_cumprod[tau_next]
    sigma = eta * ((1 - alpha / alpha_next) * (1 - alpha_next) / (1 - alpha)).sqrt()
    c = (1 - alpha_next - sigma**2).sqrt()
    return x0_hat * alpha_next.sqrt() + c * eps_hat + sigma * z


def _official(x_t: torch.Tensor, t: int, denoise: Denoiser, schedule: DiffusionSchedule, noise: NoiseSource) -> torch.Tensor:
    img = x_t
    x0 = x_t
    for tau, tau_next in official_time_pairs(t):
        x0 = denoise(img, tau).clamp(-1.0, 1.0)  # clip_denoised=True (L157, L132)
        if tau_next < 0:  # L174-176: return the x0 prediction
            return x0
        img = ddim_step(img, x0, tau, tau_next, schedule, noise())
    return x0


def _paper(x_t: torch.Tensor, t: int, denoise: Denoiser, schedule: DiffusionSchedule, noise: NoiseSource) -> torch.Tensor:
    x = x_t
    for tau in range(t, -1, -1):  # 0-based schedule: tau = 0 is the step onto the clean image
        x0 = denoise(x, tau).clamp(-1.0, 1.0)
        if tau == 0:
            # q(x_clean | x_0-index, x0): coefficients (1, 0), variance 0 -> exactly x0_hat
            return x0
        time = torch.full((x.shape[0],), tau, device=x.device, dtype=torch.long)
        mean, variance = schedule.q_posterior(x0, x, time)
        x = mean + variance.sqrt() * noise()
    return x


def reverse(
    x_t: torch.Tensor,
    t: int,
    *,
    denoise: Denoiser,
    schedule: DiffusionSchedule,
    noise: NoiseSource,
    sampler: str = "official",
) -> torch.Tensor:
    """Denoise ``x_t`` (noised to schedule index ``t``) with the chosen sampler; returns ``x_hat``.

    Both samplers make ``t + 1`` network calls and draw ``t`` noise tensors.
    """
    if t < 1 or t >= schedule.num_timesteps:
        raise ConfigError(f"DifFIQA: t must be in 1..{schedule.num_timesteps - 1}, got {t}")
    if sampler == "official":
        return _official(x_t, t, denoise, schedule, noise)
    if sampler == "paper":
        return _paper(x_t, t, denoise, schedule, noise)
    raise ConfigError(f"DifFIQA: unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
