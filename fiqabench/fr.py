"""A base class for torch FR models that implements the input-space conversions once.

Plugins wrap their network in :class:`TorchFRModel` and get ``preprocess``, ``to_input_space``
and ``embed`` for free, so BGR/RGB, scaling and resizing are handled in this one tested place.
Importing this module imports torch; the core only does so when a model is built.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fiqabench.api import FRCapabilities, InputSpace
from fiqabench.errors import ConfigError
from fiqabench.files import file_digest  # re-exported: plugins digest their weights with it

__all__ = [
    "TorchFRModel",
    "derive_seeds",
    "file_digest",
    "rgb_uint8_to_unit",
    "seeded_dropout",
    "seeded_uniform",
]

# --- Counter-based randomness -------------------------------------------------------------
# A method that perturbs each sample many times (SER-FIQ's dropout passes, FaceQAN's noise) needs
# random numbers that depend only on (sample seed, element index): not on which other samples share
# the batch, their order, the device or torch's global RNG. Each value is a hash of its counter:
# rows get a 32-bit key from their seed (splitmix64, numpy uint64, exact), elements hash
# (key + mix(index)) with lowbias32 (C. Wellons), computed in int32 tensors on the device.
# int32 multiplication wraps modulo 2^32 on every torch backend; a test checks the tensor hash
# against an exact Python reference.
_MIX1, _MIX2 = 0x7FEB352D, 0x846CA68B - (1 << 32)  # lowbias32 multipliers, as int32


def _splitmix64(values: np.ndarray) -> np.ndarray:
    z = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def derive_seeds(seeds: np.ndarray | Sequence[int], *counters: int | np.ndarray) -> np.ndarray:
    """Per-row child seeds: ``splitmix64`` folded over ``(seed, *counters)``; int64 in [0, 2^63).

    ``derive_seeds(seeds, j)`` gives each sample's seed for its ``j``-th pass (counters may be
    arrays that broadcast against ``seeds``); rows stay independent of each other, so scores do
    not depend on batch composition.
    """
    z = _splitmix64(np.asarray(seeds, dtype=np.int64).astype(np.uint64))
    for counter in counters:
        z = _splitmix64(z ^ np.asarray(counter, dtype=np.int64).astype(np.uint64))
    return (z >> np.uint64(1)).astype(np.int64)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 on int32 tensors (bit pattern of the uint32 result); shifts are logical.

    Works in place on ``x`` (callers pass fresh tensors) with one scratch buffer: on CPU, fresh
    allocations cost more than the arithmetic, and the hash is most of SER-FIQ's cost.
    """
    t = torch.empty_like(x)
    # Multipliers as 0-d int32 tensors: torch's CPU kernel is 10x faster than with Python ints.
    x ^= torch.bitwise_right_shift(x, 16, out=t).bitwise_and_(0xFFFF)
    x *= torch.tensor(_MIX1, dtype=torch.int32)
    x ^= torch.bitwise_right_shift(x, 15, out=t).bitwise_and_(0x1FFFF)
    x *= torch.tensor(_MIX2, dtype=torch.int32)
    x ^= torch.bitwise_right_shift(x, 16, out=t).bitwise_and_(0xFFFF)
    return x


def _row_keys(seeds: np.ndarray | Sequence[int] | torch.Tensor, stream: int, device: torch.device) -> torch.Tensor:
    if isinstance(seeds, torch.Tensor):
        seeds = seeds.detach().cpu().numpy()
    keys = derive_seeds(np.asarray(seeds, dtype=np.int64).reshape(-1), stream) & 0xFFFFFFFF
    return torch.from_numpy(keys.astype(np.uint32).view(np.int32)).to(device).view(-1, 1)


def _row_hashes(seeds: np.ndarray | Sequence[int] | torch.Tensor, n: int, stream: int, device: torch.device) -> torch.Tensor:
    """``(rows, n)`` int32 bit patterns of hash(row key, element index)."""
    index = _mix32(torch.arange(n, dtype=torch.int32, device=device))
    return _mix32(_row_keys(seeds, stream, device) + index.view(1, -1))


def seeded_uniform(
    seeds: np.ndarray | Sequence[int] | torch.Tensor,
    shape: Sequence[int],
    *,
    stream: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """float32 ``(len(seeds), *shape)`` uniform on [0, 1) with 24-bit resolution, row ``i`` from ``seeds[i]``."""
    n = int(np.prod(shape)) if len(shape) else 1
    h = _row_hashes(seeds, n, stream, torch.device(device))
    u = ((h >> 8) & 0xFFFFFF).to(torch.float32) * (1.0 / (1 << 24))
    return u.view(-1, *shape)


def seeded_dropout(
    x: torch.Tensor, seeds: np.ndarray | Sequence[int] | torch.Tensor, p: float, *, stream: int = 0
) -> torch.Tensor:
    """Inverted dropout (``x * keep / (1 - p)``) whose mask for row ``i`` comes from ``seeds[i]``.

    Each 32-bit hash gives two 16-bit uniforms, so ``p`` is realised to 2^-16 (0.2 -> 13107/65536);
    an element is dropped when its uniform is below ``round(p * 65536)``.
    """
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"dropout probability must be in [0, 1), got {p}")
    rows = x.shape[0]
    if len(seeds) != rows:
        raise ConfigError(f"seeded dropout needs one seed per row: {len(seeds)} seeds for {rows} rows")
    if p == 0.0:
        return x
    flat = x.reshape(rows, -1)
    n = flat.shape[1]
    h = _row_hashes(seeds, (n + 1) // 2, stream, x.device)
    threshold = round(p * 65536)
    # The mask in x's dtype: multiplying by a bool tensor would convert it on every call.
    keep = torch.empty((rows, h.shape[1], 2), dtype=x.dtype, device=x.device)
    keep[..., 0] = (h & 0xFFFF) >= threshold
    keep[..., 1] = h.bitwise_right_shift_(16).bitwise_and_(0xFFFF) >= threshold
    return (flat * keep.view(rows, -1)[:, :n]).mul_(1.0 / (1.0 - p)).view_as(x)



def rgb_uint8_to_unit(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 RGB ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` in ``[0, 1]`` on ``device``."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ConfigError(
            f"expected uint8 RGB images of shape (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    tensor = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


def to_input_space(rgb01: torch.Tensor, space: InputSpace) -> torch.Tensor:
    """Float RGB ``(N, 3, h, w)`` in nominal [0, 1] -> ``space`` (resized with antialiasing,
    channels reordered, normalised); differentiable."""
    if rgb01.ndim != 4 or rgb01.shape[1] != 3:
        raise ConfigError(f"expected a float tensor (N, 3, H, W), got shape {tuple(rgb01.shape)}")
    x = rgb01.float()
    if tuple(x.shape[-2:]) != tuple(space.size):
        x = F.interpolate(x, size=tuple(space.size), mode="bilinear", align_corners=False, antialias=True)
    if space.channel_order == "BGR":
        x = x.flip(1)
    mean = torch.tensor(space.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(space.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class TorchFRModel:
    """An FR model made of a ``trunk`` and a ``head`` module.

    ``head`` maps trunk features to the (unnormalised) embedding; if it contains ``nn.Dropout``
    layers, ``head(features, dropout=True)`` samples them (SER-FIQ), everything else always runs in
    eval mode. With ``seeds`` (one integer per row) each row's masks come from
    :func:`seeded_dropout` (the ``k``-th dropout layer of the head uses stream ``k``), so they do
    not depend on the batch, the device or torch's RNG; without, the layers run in training mode
    on torch's RNG.
    """

    def __init__(
        self,
        *,
        name: str,
        version: str,
        domain: str,
        input_space: InputSpace,
        embedding_size: int,
        trunk: nn.Module,
        head: nn.Module,
        weights_digest: str,
        device: torch.device | str = "cpu",
        capabilities: FRCapabilities | None = None,
        batch_size: int = 64,
        network: nn.Module | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.domain = domain
        self.input_space = input_space
        self.embedding_size = embedding_size
        self.weights_digest = weights_digest
        self._device = torch.device(device)
        self._trunk = trunk.to(self._device).eval()
        self._head = head.to(self._device).eval()
        #: The whole network as one module (trunk then head), with the parameter names of its
        #: weight file: what distillation trainers copy and fine-tune.
        self.network = network.to(self._device).eval() if network is not None else nn.Sequential(
            OrderedDict(trunk=self._trunk, head=self._head))
        for param in list(self._trunk.parameters()) + list(self._head.parameters()):
            param.requires_grad_(False)
        has_dropout = any(isinstance(m, nn.Dropout) for m in self._head.modules())
        self.capabilities = capabilities or FRCapabilities(
            differentiable=True,
            has_dropout=has_dropout,
            has_trunk_head=True,
            unnormalised_embedding=True,
        )
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return self._device

    def to_input_space(self, rgb01: torch.Tensor) -> torch.Tensor:
        """Float RGB ``(N, 3, h, w)`` in nominal [0, 1] -> input space; differentiable."""
        return to_input_space(rgb01.to(self._device), self.input_space)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        return self.to_input_space(rgb_uint8_to_unit(images, self._device))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self._trunk(x)

    def head(
        self,
        features: torch.Tensor,
        *,
        dropout: bool = False,
        seeds: np.ndarray | Sequence[int] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        if not dropout:
            return self._head(features)
        if seeds is not None:
            return self._seeded_head(features, seeds)
        for module in self._head.modules():
            if isinstance(module, nn.Dropout):
                module.train()
        try:
            return self._head(features)
        finally:
            self._head.eval()

    def _seeded_head(self, features: torch.Tensor, seeds: np.ndarray | Sequence[int] | torch.Tensor) -> torch.Tensor:
        if len(seeds) != features.shape[0]:
            raise ConfigError(f"head(): {len(seeds)} seeds for {features.shape[0]} rows (one seed per row)")
        handles = []
        layers = [m for m in self._head.modules() if isinstance(m, nn.Dropout)]
        for stream, module in enumerate(layers):
            # The layer stays in eval mode (identity); the hook replaces its output.
            def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor, stream: int = stream) -> torch.Tensor:
                return seeded_dropout(inputs[0], seeds, float(mod.p), stream=stream)

            handles.append(module.register_forward_hook(hook))
        try:
            return self._head(features)
        finally:
            for handle in handles:
                handle.remove()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(self._trunk(x))

    __call__ = forward

    def embed(self, images: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                x = self.preprocess(images[start : start + self.batch_size])
                out.append(self.forward(x).float().cpu().numpy())
        if not out:
            return np.zeros((0, self.embedding_size), np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)
