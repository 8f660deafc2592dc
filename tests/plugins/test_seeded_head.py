"""Counter-based dropout and noise in fiqabench.fr, and ``TorchFRModel.head(seeds=...)``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fiqabench.api import InputSpace
from fiqabench.errors import ConfigError
from fiqabench.fr import TorchFRModel, _mix32, derive_seeds, seeded_dropout, seeded_uniform

M32 = 0xFFFFFFFF


def _lowbias32(x: int) -> int:
    """Exact Python reference of the tensor hash."""
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def test_tensor_hash_equals_the_exact_32_bit_reference() -> None:
    values = [0, 1, 2, 3, 12345, 2**31 - 1, 2**31, 2**32 - 1, 0xDEADBEEF, 0x9E3779B9]
    t = torch.from_numpy(np.array(values, dtype=np.uint64).astype(np.uint32).view(np.int32))
    assert _mix32(t).numpy().view(np.uint32).tolist() == [_lowbias32(v) for v in values]


def test_derive_seeds_is_elementwise_and_deterministic() -> None:
    seeds = np.array([5, 7, 2**62 + 3], dtype=np.int64)
    a = derive_seeds(seeds, 3)
    assert a.dtype == np.int64 and (a >= 0).all()
    assert derive_seeds(seeds[::-1], 3).tolist() == a[::-1].tolist()
    assert derive_seeds(seeds[1:2], 3)[0] == a[1]
    assert len(set(derive_seeds(np.repeat(seeds[:1], 100), np.arange(100)).tolist())) == 100


def test_seeded_dropout_masks_depend_only_on_the_row_seed() -> None:
    x = torch.ones(6, 4, 5, 5)
    seeds = np.arange(10, 16)
    full = seeded_dropout(x, seeds, 0.2)
    assert set(torch.unique(full).tolist()) == {0.0, 1.25}  # inverted dropout scale 1 / (1 - p)
    order = np.array([3, 0, 5])
    part = seeded_dropout(x[order], seeds[order], 0.2)
    assert torch.equal(part, full[order])
    again = seeded_dropout(torch.ones(1, 4, 5, 5), seeds[2:3], 0.2)
    assert torch.equal(again[0], full[2])
    assert not torch.equal(full[0], full[1])
    big = seeded_dropout(torch.ones(200, 2048), np.arange(200), 0.2)
    assert abs(float((big == 0).float().mean()) - 0.2) < 0.005
    assert torch.equal(seeded_dropout(x, seeds, 0.0), x)
    with pytest.raises(ConfigError):
        seeded_dropout(x, seeds[:2], 0.2)


def test_seeded_uniform_range_and_row_independence() -> None:
    u = seeded_uniform(np.arange(4), (3, 8, 8))
    assert u.shape == (4, 3, 8, 8) and u.dtype == torch.float32
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.02
    assert torch.equal(seeded_uniform(np.array([2]), (3, 8, 8))[0], u[2])
    assert not torch.equal(seeded_uniform(np.arange(4), (3, 8, 8), stream=1), u)


def _tiny_model(dropout: bool = True) -> TorchFRModel:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh())
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(4 * 8 * 8, 6)]
    if dropout:
        layers = [nn.Dropout(0.3), nn.Flatten(), nn.Linear(4 * 8 * 8, 6), nn.Dropout(0.1)]
    return TorchFRModel(
        name="tiny", version="1", domain="test", input_space=InputSpace(size=(8, 8)), embedding_size=6,
        trunk=trunk, head=nn.Sequential(*layers), weights_digest="0",
    )


def test_head_with_seeds_is_batch_independent_and_matches_the_manual_masks() -> None:
    model = _tiny_model()
    x = model.preprocess(np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8))
    features = model.trunk(x)
    seeds = np.array([11, 12, 13, 14, 15])
    out = model.head(features, dropout=True, seeds=seeds)
    # Same seeds -> same masks whatever the batch around them.
    sub = model.head(features[[4, 1]], dropout=True, seeds=seeds[[4, 1]])
    assert torch.allclose(sub, out[[4, 1]], atol=1e-6)
    # Layer k of the head uses stream k.
    head = model._head
    manual = head[3](head[2](head[1](seeded_dropout(features, seeds, 0.3, stream=0))))
    manual = seeded_dropout(manual, seeds, 0.1, stream=1)
    assert torch.allclose(out, manual, atol=1e-6)
    # Without dropout the seeds are irrelevant; the hooks are gone after the call.
    assert torch.allclose(model.head(features), model.forward(x))
    assert all(not m._forward_hooks for m in head)
    assert not torch.allclose(out, model.head(features))
    with pytest.raises(ConfigError):
        model.head(features, dropout=True, seeds=seeds[:2])
