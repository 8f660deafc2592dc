"""The DifFIQA denoising UNet, written in-house after the official early-2023 lucidrains copy.

Paper §3.2 (Babnik et al., IJCB 2023): "a UNet ... with four downsampling and upsampling modules";
the code (``diffiqa/diffusion_base/diff_unet.py``, research note ``diffiqa.md`` §2) is what we
follow, because it is what produced the published numbers:

- weight-standardised 3x3 convolutions (L31-44), GroupNorm(8), FiLM ``x * (scale + 1) + shift``
  from the time embedding in the first block of each residual block only (L102-144);
- a bias-free channel LayerNorm (L46-55) used by PreNorm (L57-65);
- linear attention at every level (L146-174) and cosine-similarity attention with logits x10 in
  the middle (L176-196);
- 4x4 stride-2 convolutions for downsampling (L28-29), nearest x2 + 3x3 conv for upsampling
  (L22-26); the last level neither down- nor upsamples (so 112 -> 56 -> 28 -> 14 -> 14: three real
  halvings, not the paper's four);
- sinusoidal embedding of the *raw integer* timestep followed by Linear-GELU-Linear (L69-81,
  L231-247).

Module names match the official ``Unet`` so an official state dict maps one to one
(:mod:`fiqabench_plugins.diffiqa.checkpoint`). At the official configuration
(:meth:`UNetConfig.official`: dim 128, mults 1/2/4/8) the model has exactly 142,872,835
parameters. :meth:`UNetConfig.embedded` is a smaller configuration of the same code for the
CPU-only embedded benchmark: attention can be switched off per level (and in the middle), or
scaled through ``attn_heads``/``attn_dim_head``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from fiqabench.errors import ConfigError

__all__ = ["UNet", "UNetConfig", "count_parameters", "block_parameter_counts"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture hyper-parameters (``train_config.yaml`` L3-8 for the official values).

    ``linear_attention`` has one flag per level (down level ``i`` and the matching up level;
    default: all on);
    ``mid_attention`` switches the full attention block in the middle. ``image_size`` is the
    resolution the DDPM was trained at (the method resizes inputs to it).
    """

    dim: int = 128
    dim_mults: tuple[int, ...] = (1, 2, 4, 8)
    channels: int = 3
    init_dim: int | None = None
    resnet_block_groups: int = 8
    image_size: int = 112
    linear_attention: tuple[bool, ...] | None = None
    mid_attention: bool = True
    attn_heads: int = 4
    attn_dim_head: int = 32
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if self.linear_attention is None:  # default: at every level, as the official UNet
            object.__setattr__(self, "linear_attention", (True,) * len(self.dim_mults))
        if self.dim < 1 or not self.dim_mults or any(m < 1 for m in self.dim_mults):
            raise ConfigError(f"UNet: dim and dim_mults must be positive, got {self.dim}, {self.dim_mults}")
        if len(self.linear_attention or ()) != len(self.dim_mults):
            raise ConfigError(
                f"UNet: linear_attention needs one flag per level ({len(self.dim_mults)}),"
                f" got {self.linear_attention}"
            )
        widths = [self.init_dim or self.dim, *(self.dim * m for m in self.dim_mults)]
        if any(w % self.resnet_block_groups for w in widths):
            raise ConfigError(
                f"UNet: every width {widths} must be divisible by resnet_block_groups={self.resnet_block_groups}"
            )
        halvings = len(self.dim_mults) - 1
        if self.image_size % (2**halvings):
            raise ConfigError(
                f"UNet: image_size {self.image_size} must be divisible by 2**{halvings} ({len(self.dim_mults)} levels)"
            )

    @classmethod
    def official(cls) -> UNetConfig:
        """``Unet(dim=128, dim_mults=(1, 2, 4, 8), channels=3)`` at 112x112 (142,872,835 params)."""
        return cls(name="official")

    @classmethod
    def embedded(cls) -> UNetConfig:
        """The configuration of the shipped embedded-world DDPM (chosen by measurement).

        Same code, smaller: base width 16, three levels with mults 1/2/2 (32 -> 16 -> 8 -> 8 px),
        the per-level linear attention dropped for CPU speed, the middle cosine attention kept
        but scaled to 2 heads x 16 (it sees 8x8 = 64 positions; about +3 % time). 322,803
        parameters. Measurements: ``benchmarks/diffiqa.md``.
        """
        return cls(
            dim=16,
            dim_mults=(1, 2, 2),
            image_size=32,
            linear_attention=(False, False, False),
            mid_attention=True,
            attn_heads=2,
            attn_dim_head=16,
            name="embedded",
        )

    @classmethod
    def named(cls, name: str) -> UNetConfig:
        if name == "official":
            return cls.official()
        if name == "embedded":
            return cls.embedded()
        raise ConfigError(f"unknown UNet configuration {name!r}: expected 'embedded' or 'official'")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UNetConfig:
        data = json.loads(text)
        for key in ("dim_mults", "linear_attention"):
            data[key] = tuple(data[key])
        return cls(**data)


# ------------------------------------------------------------------------------------------------
# building blocks (diff_unet.py L14-196)
# ------------------------------------------------------------------------------------------------


def _eps_for(x: torch.Tensor) -> float:
    """``1e-5`` in float32, ``1e-3`` otherwise (diff_unet.py L37, L52)."""
    return 1e-5 if x.dtype == torch.float32 else 1e-3


class Residual(nn.Module):
    """``fn(x) + x`` (diff_unet.py L14-20)."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


class WeightStandardizedConv2d(nn.Conv2d):
    """Conv2d whose weights are standardised per output channel (Qiao et al. 2019; L31-44)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = _eps_for(x)
        weight = self.weight
        mean = weight.mean(dim=(1, 2, 3), keepdim=True)
        var = weight.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        normalized = (weight - mean) * (var + eps).rsqrt()
        return F.conv2d(x, normalized, self.bias, self.stride, self.padding, self.dilation, self.groups)


class LayerNorm(nn.Module):
    """Channel LayerNorm with a gain ``g`` and no bias (L46-55)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = _eps_for(x)
        var = torch.var(x, dim=1, unbiased=False, keepdim=True)
        mean = torch.mean(x, dim=1, keepdim=True)
        return (x - mean) * (var + eps).rsqrt() * self.g


class PreNorm(nn.Module):
    """``fn(LayerNorm(x))`` (L57-65)."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.norm = LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class SinusoidalPosEmb(nn.Module):
    """Sinusoidal embedding of the raw integer timestep (L69-81), ``[sin, cos]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        scale = math.log(10000) / (half - 1)
        freqs = torch.exp(torch.arange(half, device=t.device) * -scale)
        emb = t[:, None] * freqs[None, :]
        return torch.cat((emb.sin(), emb.cos()), dim=-1)


class Block(nn.Module):
    """WS-conv 3x3 -> GroupNorm -> optional FiLM -> SiLU (L102-118)."""

    def __init__(self, dim: int, dim_out: int, groups: int = 8) -> None:
        super().__init__()
        self.proj = WeightStandardizedConv2d(dim, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, scale_shift: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = self.norm(self.proj(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return self.act(x)


class ResnetBlock(nn.Module):
    """Two blocks, time FiLM in the first, 1x1 residual conv if the width changes (L120-144)."""

    def __init__(self, dim: int, dim_out: int, *, time_emb_dim: int, groups: int = 8) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_emb_dim, dim_out * 2))
        self.block1 = Block(dim, dim_out, groups=groups)
        self.block2 = Block(dim_out, dim_out, groups=groups)
        self.res_conv: nn.Module = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        emb = self.mlp(time_emb)[:, :, None, None]
        scale, shift = emb.chunk(2, dim=1)
        h = self.block1(x, scale_shift=(scale, shift))
        h = self.block2(h)
        return h + self.res_conv(x)


class LinearAttention(nn.Module):
    """Linear attention (L146-174): softmax of q over features (x dim_head^-0.5), of k over
    positions, ``v / (h w)``, then a 1x1 conv and channel LayerNorm."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__()
        self.scale = dim_head**-0.5
        self.heads = heads
        hidden = dim_head * heads
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(hidden, dim, 1), LayerNorm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, -1, h * w) for t in self.to_qkv(x).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        v = v / (h * w)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q)
        return self.to_out(out.reshape(b, -1, h, w))


class Attention(nn.Module):
    """Cosine-similarity attention (L176-196): L2-normalised q, k, logits x ``scale`` (10)."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32, scale: float = 10.0) -> None:
        super().__init__()
        self.scale = scale
        self.heads = heads
        hidden = dim_head * heads
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, -1, h * w) for t in self.to_qkv(x).chunk(3, dim=1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        sim = torch.einsum("bhdi,bhdj->bhij", q, k) * self.scale
        attn = sim.softmax(dim=-1)
        out = torch.einsum("bhij,bhdj->bhid", attn, v)  # (b, heads, positions, dim_head)
        out = out.permute(0, 1, 3, 2).reshape(b, -1, h, w)
        return self.to_out(out)


def _upsample(dim: int, dim_out: int) -> nn.Module:
    """Nearest x2 then 3x3 conv (L22-26)."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(dim, dim_out, 3, padding=1))


def _downsample(dim: int, dim_out: int) -> nn.Module:
    """4x4 conv, stride 2, padding 1 (L28-29)."""
    return nn.Conv2d(dim, dim_out, 4, 2, 1)


# ------------------------------------------------------------------------------------------------
# the UNet (L199-327)
# ------------------------------------------------------------------------------------------------


class UNet(nn.Module):
    """The DifFIQA UNet: ``forward(x, time) -> x0_hat`` (objective ``pred_x0``).

    ``x`` is ``(B, 3, H, W)`` in ``[-1, 1]``, ``time`` a long tensor ``(B,)`` of schedule indices
    (0..999; training uses 0..99, inference 0..4).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.channels = config.channels
        self.out_dim = config.channels
        dim = config.dim
        init_dim = config.init_dim or dim
        groups = config.resnet_block_groups
        self.init_conv = nn.Conv2d(config.channels, init_dim, 7, padding=3)

        dims = [init_dim, *(dim * m for m in config.dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:]))
        time_dim = dim * 4
        self.time_mlp = nn.Sequential(
            SinusoidalPosEmb(dim), nn.Linear(dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)
        )

        def attention_block(width: int, enabled: bool) -> nn.Module:
            if not enabled:
                return nn.Identity()
            return Residual(PreNorm(width, LinearAttention(width, config.attn_heads, config.attn_dim_head)))

        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        levels = len(in_out)
        for ind, (dim_in, dim_out) in enumerate(in_out):
            is_last = ind >= levels - 1
            self.downs.append(
                nn.ModuleList(
                    [
                        ResnetBlock(dim_in, dim_in, time_emb_dim=time_dim, groups=groups),
                        ResnetBlock(dim_in, dim_in, time_emb_dim=time_dim, groups=groups),
                        attention_block(dim_in, config.linear_attention[ind]),
                        _downsample(dim_in, dim_out) if not is_last else nn.Conv2d(dim_in, dim_out, 3, padding=1),
                    ]
                )
            )

        mid_dim = dims[-1]
        self.mid_block1 = ResnetBlock(mid_dim, mid_dim, time_emb_dim=time_dim, groups=groups)
        self.mid_attn: nn.Module = (
            Residual(PreNorm(mid_dim, Attention(mid_dim, config.attn_heads, config.attn_dim_head)))
            if config.mid_attention
            else nn.Identity()
        )
        self.mid_block2 = ResnetBlock(mid_dim, mid_dim, time_emb_dim=time_dim, groups=groups)

        for ind, (dim_in, dim_out) in enumerate(reversed(in_out)):
            is_last = ind == levels - 1
            level = levels - 1 - ind
            self.ups.append(
                nn.ModuleList(
                    [
                        ResnetBlock(dim_out + dim_in, dim_out, time_emb_dim=time_dim, groups=groups),
                        ResnetBlock(dim_out + dim_in, dim_out, time_emb_dim=time_dim, groups=groups),
                        attention_block(dim_out, config.linear_attention[level]),
                        _upsample(dim_out, dim_in) if not is_last else nn.Conv2d(dim_out, dim_in, 3, padding=1),
                    ]
                )
            )

        self.final_res_block = ResnetBlock(init_dim * 2, dim, time_emb_dim=time_dim, groups=groups)
        self.final_conv = nn.Conv2d(dim, self.out_dim, 1)

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """L290-327: init conv (kept for the final skip), down path with two skips per level,
        middle, up path consuming the skips in reverse, final residual block and 1x1 conv."""
        x = self.init_conv(x)
        r = x.clone()
        t = self.time_mlp(time)
        skips: list[torch.Tensor] = []
        for block1, block2, attn, downsample in self.downs:  # type: ignore[misc]
            x = block1(x, t)
            skips.append(x)
            x = block2(x, t)
            x = attn(x)
            skips.append(x)
            x = downsample(x)
        x = self.mid_block1(x, t)
        x = self.mid_attn(x)
        x = self.mid_block2(x, t)
        for block1, block2, attn, upsample in self.ups:  # type: ignore[misc]
            x = torch.cat((x, skips.pop()), dim=1)
            x = block1(x, t)
            x = torch.cat((x, skips.pop()), dim=1)
            x = block2(x, t)
            x = attn(x)
            x = upsample(x)
        x = torch.cat((x, r), dim=1)
        x = self.final_res_block(x, t)
        return self.final_conv(x)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())


def block_parameter_counts(model: UNet) -> dict[str, int]:
    """Parameters per top-level part, as in the research note §2: init_conv, time_mlp, downs,
    mid (mid_block1 + mid_attn + mid_block2), ups, final (final_res_block + final_conv)."""
    parts: dict[str, Sequence[nn.Module]] = {
        "init_conv": [model.init_conv],
        "time_mlp": [model.time_mlp],
        "downs": [model.downs],
        "mid": [model.mid_block1, model.mid_attn, model.mid_block2],
        "ups": [model.ups],
        "final": [model.final_res_block, model.final_conv],
    }
    return {name: sum(count_parameters(m) for m in mods) for name, mods in parts.items()}
