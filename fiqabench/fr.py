"""A base class for torch FR models that implements the input-space conversions once.

Plugins wrap their network in :class:`TorchFRModel` and get ``preprocess``, ``to_input_space``
and ``embed`` for free, so BGR/RGB, scaling and resizing are handled in this one tested place.
Importing this module imports torch; the core only does so when a model is built.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fiqabench.api import FRCapabilities, InputSpace
from fiqabench.errors import ConfigError
from fiqabench.files import file_digest  # re-exported: plugins digest their weights with it

__all__ = ["TorchFRModel", "file_digest", "rgb_uint8_to_unit"]


def rgb_uint8_to_unit(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 RGB ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` in ``[0, 1]`` on ``device``."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ConfigError(
            f"expected uint8 RGB images of shape (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    tensor = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


class TorchFRModel:
    """An FR model made of a ``trunk`` and a ``head`` module.

    ``head`` maps trunk features to the (unnormalised) embedding; if it contains ``nn.Dropout``
    layers, ``head(features, dropout=True)`` runs them in training mode (SER-FIQ), everything else
    always runs in eval mode.
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
        order = [0, 1, 2] if input_space.channel_order == "RGB" else [2, 1, 0]
        self._channel_index = torch.tensor(order, device=self._device)
        self._mean = torch.tensor(input_space.mean, device=self._device).view(1, 3, 1, 1)
        self._std = torch.tensor(input_space.std, device=self._device).view(1, 3, 1, 1)

    @property
    def device(self) -> torch.device:
        return self._device

    def to_input_space(self, rgb01: torch.Tensor) -> torch.Tensor:
        """Float RGB ``(N, 3, h, w)`` in nominal [0, 1] -> input space; differentiable."""
        if rgb01.ndim != 4 or rgb01.shape[1] != 3:
            raise ConfigError(f"expected a float tensor (N, 3, H, W), got shape {tuple(rgb01.shape)}")
        x = rgb01.to(self._device, torch.float32)
        if tuple(x.shape[-2:]) != tuple(self.input_space.size):
            x = F.interpolate(x, size=self.input_space.size, mode="bilinear", align_corners=False, antialias=True)
        if self.input_space.channel_order == "BGR":
            x = x.index_select(1, self._channel_index)
        return (x - self._mean) / self._std

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        return self.to_input_space(rgb_uint8_to_unit(images, self._device))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self._trunk(x)

    def head(self, features: torch.Tensor, *, dropout: bool = False) -> torch.Tensor:
        if not dropout:
            return self._head(features)
        for module in self._head.modules():
            if isinstance(module, nn.Dropout):
                module.train()
        try:
            return self._head(features)
        finally:
            self._head.eval()

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
