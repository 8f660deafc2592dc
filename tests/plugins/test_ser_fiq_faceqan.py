"""SER-FIQ and FaceQAN: score formulas on hand-computed values, the trunk-once path, gradients,
conformance (batch size / order independence) and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fiqabench.api import FRCapabilities, InputSpace
from fiqabench.errors import ConfigError
from fiqabench.fr import TorchFRModel, derive_seeds
from fiqabench.testing import check_method, make_batch
from fiqabench_plugins.faceqan.method import FaceQAN, aggregate, bim_similarities, loss_and_gradient
from fiqabench_plugins.ser_fiq.method import SERFIQ, rescale, serfiq_quality


@pytest.fixture(scope="module")
def fr_model() -> TorchFRModel:
    from fiqabench_plugins.synthetic.model import build

    return build(options={}, device="cpu")


def _tiny(dropout: bool, differentiable: bool = True) -> TorchFRModel:
    torch.manual_seed(1)
    trunk = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2))
    head_layers: list[nn.Module] = [nn.Flatten(), nn.Linear(4 * 4 * 4, 5)]
    if dropout:
        head_layers.insert(0, nn.Dropout(0.25))
    return TorchFRModel(
        name="tiny", version="1", domain="test", input_space=InputSpace(size=(8, 8)), embedding_size=5,
        trunk=trunk, head=nn.Sequential(*head_layers), weights_digest="0",
        capabilities=FRCapabilities(differentiable=differentiable, has_dropout=dropout, has_trunk_head=True),
    )


# -- SER-FIQ -----------------------------------------------------------------------------------


def test_serfiq_formula_on_hand_computed_values() -> None:
    # Three unit vectors: e1, e2 at distance sqrt(2), e1, -e1 at distance 2, e2, -e1 at sqrt(2).
    e = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    mean = (2 * math.sqrt(2) + 2) / 3
    assert serfiq_quality(e).item() == pytest.approx(2 / (1 + math.exp(mean)), abs=1e-6)
    same = torch.tensor([[[0.6, 0.8]] * 4])
    assert serfiq_quality(same).item() == pytest.approx(1.0, abs=1e-6)  # 2 sigmoid(0)
    assert float(rescale(np.array(0.9))) == pytest.approx(1 / (1 + math.exp(-130 * 0.02)))


def test_trunk_once_equals_m_full_passes_under_the_same_masks(fr_model: TorchFRModel) -> None:
    batch = make_batch(3)
    method = SERFIQ(options={"m": 7}, device="cpu")
    fast = method.embeddings(batch, fr_model)
    x = fr_model.preprocess(batch.images)
    with torch.inference_mode():
        for j in range(7):
            full = fr_model.head(fr_model.trunk(x), dropout=True, seeds=derive_seeds(batch.seeds, j))
            assert torch.allclose(fast[:, j], nn.functional.normalize(full, dim=1), atol=1e-5)
    q = method.score(batch, fr_model=fr_model)
    assert np.allclose(q, serfiq_quality(fast).numpy(), atol=1e-7)


def test_serfiq_conforms_and_passes_differ(fr_model: TorchFRModel) -> None:
    method = SERFIQ(options={"m": 100, "batch_images": 3}, device="cpu")
    scores = check_method(method, make_batch(8), fr_model=fr_model)
    assert ((scores > 0.5) & (scores < 1.0)).all()
    e = method.embeddings(make_batch(1), fr_model)
    assert torch.unique(e, dim=1).shape[1] == 100  # every pass has its own mask
    rescaled = SERFIQ(options={"rescale": True}, device="cpu").score(make_batch(4), fr_model=fr_model)
    assert np.allclose(rescaled, rescale(scores[:4]), atol=1e-6)


def test_serfiq_refuses_a_model_without_dropout_unless_a_rate_is_inserted() -> None:
    model = _tiny(dropout=False)
    batch = make_batch(4, size=8)
    with pytest.raises(ConfigError, match="no dropout layer; set ser-fiq:dropout_rate"):
        SERFIQ(options={}, device="cpu").score(batch, fr_model=model)
    scores = check_method(SERFIQ(options={"dropout_rate": 0.3, "m": 20}, device="cpu"), batch, fr_model=model)
    assert (scores < 1.0).all()


# -- FaceQAN -----------------------------------------------------------------------------------


def test_faceqan_aggregate_on_hand_computed_values() -> None:
    s = torch.tensor([[0.9, 0.7, 0.8, 0.8]], dtype=torch.float64)  # mean 0.8, population std sqrt(0.02 / 4)
    std = math.sqrt(0.005)
    expected = ((1.8 / 2) * (1 - std) * 0.95) ** 5
    assert aggregate(s, torch.tensor([0.95], dtype=torch.float64)).item() == pytest.approx(expected, rel=1e-12)
    wide = torch.tensor([[1.0, -1.0]])  # std 1 -> clip(0) -> 0
    assert aggregate(wide, torch.tensor([1.0])).item() == 0.0


def test_faceqan_gradient_matches_finite_differences() -> None:
    model = _tiny(dropout=False)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((2, 3, 8, 8))).float()
    with torch.no_grad():
        ref = model.forward(model.to_input_space(torch.from_numpy(rng.random((2, 3, 8, 8))).float()))
    _, grad = loss_and_gradient(model, ref, x)

    def loss(z: torch.Tensor) -> float:
        with torch.no_grad():
            e = model.forward(model.to_input_space(z))
            return float((1 - nn.functional.cosine_similarity(ref, e, dim=1)).double().sum())

    for k in range(3):
        direction = torch.from_numpy(np.random.default_rng(10 + k).standard_normal((2, 3, 8, 8))).float()
        h = 1e-2
        numeric = (loss(x + h * direction) - loss(x - h * direction)) / (2 * h)
        analytic = float((grad * direction).double().sum())
        assert analytic == pytest.approx(numeric, rel=2e-2, abs=1e-4)


def test_faceqan_records_k_times_l_similarities_starting_from_the_noisy_copies(fr_model: TorchFRModel) -> None:
    batch = make_batch(2)
    x = torch.from_numpy(batch.images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        base = fr_model.forward(fr_model.to_input_space(x))
    s = bim_similarities(fr_model, x, base, batch.seeds, k=4, l=3, eps=1e-3)
    assert s.shape == (2, 12)
    s = s.view(2, 4, 3)
    assert (s[:, :, 0] > 0.99).all()  # noise of 1e-3 barely moves the embedding
    assert (s[:, :, -1] < s[:, :, 0]).all()  # the steps push the similarity down


def test_faceqan_conforms_and_refuses_a_black_box(fr_model: TorchFRModel) -> None:
    scores = check_method(FaceQAN(options={"k": 3, "l": 2, "batch_images": 3}, device="cpu"), make_batch(5), fr_model=fr_model)
    assert np.isfinite(scores).all()
    with pytest.raises(ConfigError, match="not differentiable"):
        FaceQAN(options={}, device="cpu").score(make_batch(2, size=8), fr_model=_tiny(False, differentiable=False))
