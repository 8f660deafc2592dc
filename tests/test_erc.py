"""Legacy recomputed-threshold ERC: a naive re-statement, hand cases and research/edc.md 5.2."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fiqabench.errors import MetricInputError
from fiqabench.metrics.edc import edc, fmr_threshold, pauc
from fiqabench.metrics.erc import DEFAULT_GRID, erc_auc, erc_recomputed


def _naive_erc(
    s_m: np.ndarray, q_m: np.ndarray, s_n: np.ndarray, q_n: np.ndarray, fmr: float, grid: np.ndarray
) -> list[float]:
    """The convention restated literally, one grid point at a time (CR-FIQA's loop, our threshold)."""
    scores = np.concatenate((s_m, s_n))
    mated = np.concatenate((np.ones(s_m.size, bool), np.zeros(s_n.size, bool)))
    order = np.argsort(np.concatenate((q_m, q_n)), kind="stable")
    out = []
    for u in grid:
        keep = order[int(u * scores.size) :]
        t = fmr_threshold(scores[keep][~mated[keep]], fmr)
        kept_mated = scores[keep][mated[keep]]
        out.append(float(np.mean(kept_mated < t)) if kept_mated.size else math.nan)
    return out


def _synthetic(seed: int, c: float, n_samples: int = 6000, m: int = 2000, n: int = 200_000, random_q: bool = False):
    """research/edc.md section 5 data model: latent utility u, FIQA q = u + noise."""
    rng = np.random.default_rng(seed)
    utility = rng.standard_normal(n_samples)
    quality = rng.standard_normal(n_samples) if random_q else utility + rng.normal(0, 0.7, n_samples)
    ma, mb = rng.integers(0, n_samples, m), rng.integers(0, n_samples, m)
    na, nb = rng.integers(0, n_samples, n), rng.integers(0, n_samples, n)
    s_m = 0.55 + 0.10 * np.minimum(utility[ma], utility[mb]) + rng.normal(0, 0.12, m)
    s_n = -c * np.minimum(utility[na], utility[nb]) + rng.normal(0, 0.10, n)
    q_m = np.minimum(quality[ma], quality[mb])
    q_n = np.minimum(quality[na], quality[nb])
    return s_m, q_m, s_n, q_n


@pytest.mark.parametrize("levels", [None, 5, 40])
@pytest.mark.parametrize("fmr", [1e-3, 0.01, 0.3])
def test_matches_naive_restatement(levels: int | None, fmr: float) -> None:
    rng = np.random.default_rng([round(fmr * 1e4), levels or 0])
    for _ in range(5):
        m, n = int(rng.integers(1, 80)), int(rng.integers(25_000, 30_000))
        s_m, s_n = rng.normal(0.5, 0.2, m).round(2), rng.normal(0.0, 0.2, n).round(2)  # ties in scores
        q_m, q_n = rng.random(m), rng.random(n)
        if levels:  # integer qualities: runs of ties that the cut splits
            q_m, q_n = np.floor(q_m * levels), np.floor(q_n * levels)
        curve = erc_recomputed(
            mated_scores=s_m, mated_pair_quality=q_m, non_mated_scores=s_n, non_mated_pair_quality=q_n, fmr=fmr
        )
        expected = _naive_erc(s_m, q_m, s_n, q_n, fmr, DEFAULT_GRID)
        np.testing.assert_array_equal(curve.fnmr, expected)
        assert curve.threshold == fmr_threshold(s_n, fmr)
        assert curve.fnmr_at_zero == expected[0]


def test_curve_labels_and_grid() -> None:
    s_m, q_m, s_n, q_n = _synthetic(1, 0.01, m=300, n=20_000)
    curve = erc_recomputed(mated_scores=s_m, mated_pair_quality=q_m, non_mated_scores=s_n, non_mated_pair_quality=q_n)
    assert curve.interpolation == "linear" and curve.convention == "erc-recomputed"
    np.testing.assert_array_equal(curve.discard_fraction, np.arange(0, 1.0, 0.05)[:20])
    assert curve.discard_fraction.size == 20 and curve.discard_fraction[-1] == pytest.approx(0.95)
    assert (curve.n_mated, curve.n_non_mated) == (300, 20_000)
    assert curve.fnmr.dtype == np.float64


def test_ties_cut_in_pooled_order_mated_first() -> None:
    # All qualities equal: the stable sort keeps pooled order, mated first, so cutting 2 of 6
    # discards both mated comparisons and no non-mated one (FNMR at 1/3 has nothing left: NaN).
    curve = erc_recomputed(
        mated_scores=[0.1, 0.9], mated_pair_quality=[1.0, 1.0],
        non_mated_scores=[0.0, 0.2, 0.4, 0.6], non_mated_pair_quality=[1.0] * 4,
        fmr=0.25, grid=[0.0, 1 / 3],
    )
    assert curve.fnmr[0] == 0.5  # t = 0.6 (the largest of 4 at FMR 1/4); 0.1 fails
    assert math.isnan(curve.fnmr[1])


def test_no_ties_means_input_order_free() -> None:
    s_m, q_m, s_n, q_n = _synthetic(2, 0.05, m=500, n=30_000)
    base = erc_recomputed(mated_scores=s_m, mated_pair_quality=q_m, non_mated_scores=s_n, non_mated_pair_quality=q_n)
    rng = np.random.default_rng(0)
    pm, pn = rng.permutation(s_m.size), rng.permutation(s_n.size)
    shuffled = erc_recomputed(
        mated_scores=s_m[pm], mated_pair_quality=q_m[pm], non_mated_scores=s_n[pn], non_mated_pair_quality=q_n[pn]
    )
    np.testing.assert_array_equal(base.fnmr, shuffled.fnmr)


def test_random_quality_is_about_one() -> None:
    # research/edc.md 5.2: random quality gives ~1.00 under both conventions.
    for seed in (12345, 7):
        s_m, q_m, s_n, q_n = _synthetic(seed, 0.01, random_q=True)
        curve = erc_recomputed(mated_scores=s_m, mated_pair_quality=q_m, non_mated_scores=s_n, non_mated_pair_quality=q_n)
        assert erc_auc(curve, 0.2) == pytest.approx(1.0, abs=0.06)
        assert erc_auc(curve, 0.3) == pytest.approx(1.0, abs=0.06)


def _both_conventions(c: float, seed: int) -> tuple[float, float]:
    s_m, q_m, s_n, q_n = _synthetic(seed, c)
    fixed = pauc(edc(mated_scores=s_m, mated_pair_quality=q_m, non_mated_scores=s_n), 0.3)
    legacy = erc_auc(
        erc_recomputed(mated_scores=s_m, mated_pair_quality=q_m, non_mated_scores=s_n, non_mated_pair_quality=q_n),
        0.3,
    )
    return fixed, legacy


def test_quality_dependent_impostors_make_erc_optimistic() -> None:
    # research/edc.md 5.2: with c = 0.05 (low-quality impostors score higher) the fixed-threshold
    # EDC's normalised pAUC@0.3 exceeds the recomputed ERC's by ~0.13 on average (max 0.16);
    # with c = 0.01 the gap is small (mean 0.015, max 0.037).
    fixed, legacy = _both_conventions(0.05, 12345)
    assert 0.06 < fixed - legacy < 0.25
    fixed_weak, legacy_weak = _both_conventions(0.01, 12345)
    assert abs(fixed_weak - legacy_weak) < 0.05
    assert fixed - legacy > (fixed_weak - legacy_weak) + 0.04


def test_auc_hand_values_and_limits() -> None:
    curve = erc_recomputed(
        mated_scores=[0.2, 0.6], mated_pair_quality=[1, 8],
        non_mated_scores=[0.9, 0.8, 0.1, 0.5, 0.4, 0.3], non_mated_pair_quality=[2, 3, 4, 5, 6, 7],
        fmr=1 / 3, grid=[0.0, 0.5],
    )
    assert erc_auc(curve, 0.5, normalize=False) == pytest.approx(0.25)
    assert erc_auc(curve, 0.5) == pytest.approx(0.5)
    assert erc_auc(curve, 0.1) == pytest.approx((1.0 + 0.8) / 2)
    with pytest.raises(MetricInputError, match=r"discard limit must be in \(0, 0.5\]"):
        erc_auc(curve, 0.6)
    with pytest.raises(MetricInputError, match="discard limit"):
        erc_auc(curve, 0.0)


def test_auc_on_float_grid_limit() -> None:
    # np.arange gives 0.30000000000000004 as the 7th grid point; limit 0.3 must still work and
    # equal the trapezoid over the first 7 points (to rounding).
    s_m, q_m, s_n, q_n = _synthetic(3, 0.05, m=400, n=30_000)
    curve = erc_recomputed(mated_scores=s_m, mated_pair_quality=q_m, non_mated_scores=s_n, non_mated_pair_quality=q_n)
    x, y = curve.discard_fraction[:7], curve.fnmr[:7]
    trapezoid = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))
    assert erc_auc(curve, 0.3, normalize=False) == pytest.approx(trapezoid, rel=1e-12)


def test_conventions_refuse_each_other() -> None:
    linear = erc_recomputed(
        mated_scores=[0.2, 0.6], mated_pair_quality=[1, 8],
        non_mated_scores=[0.9, 0.8, 0.1, 0.5, 0.4, 0.3], non_mated_pair_quality=[2, 3, 4, 5, 6, 7],
        fmr=1 / 3, grid=[0.0, 0.5],
    )
    with pytest.raises(MetricInputError, match="step pAUC applies only to non-interpolated"):
        pauc(linear, 0.3)
    step = edc(mated_scores=[0.1, 0.9], mated_pair_quality=[1, 2], threshold=0.5)
    with pytest.raises(MetricInputError, match="trapezoid AUC applies only to grid-sampled ERC"):
        erc_auc(step, 0.3)


def test_zero_fnmr_at_zero_gives_nan_auc() -> None:
    curve = erc_recomputed(
        mated_scores=[0.95, 0.99], mated_pair_quality=[1, 2],
        non_mated_scores=[0.1, 0.2, 0.3, 0.4], non_mated_pair_quality=[1, 2, 3, 4], fmr=0.25, grid=[0.0, 0.25],
    )
    assert curve.fnmr_at_zero == 0.0
    assert math.isnan(erc_auc(curve, 0.25))
    assert erc_auc(curve, 0.25, normalize=False) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mated_scores": [0.1, np.nan]}, "mated_scores: 1 NaN"),
        ({"non_mated_pair_quality": [1.0] * 9 + [np.nan]}, "non_mated_pair_quality: 1 NaN"),
        ({"mated_pair_quality": [1.0]}, "mated_scores and mated_pair_quality differ in length: 2 vs 1"),
        ({"non_mated_scores": [0.1] * 9}, "non_mated_scores and non_mated_pair_quality differ in length"),
        ({"mated_scores": [], "mated_pair_quality": []}, "mated_scores is empty"),
        ({"grid": [0.05, 0.1]}, "grid: must start at 0"),
        ({"grid": [0.0, 0.2, 0.1]}, "must increase strictly"),
        ({"grid": [0.0, 1.0]}, "stay below 1"),
        ({"fmr": 1.5}, "fmr must be in"),
        ({"grid": [0.0, 0.8]}, "discard fraction 0.8: 3 non-mated comparison.*needs at least 10"),
    ],
)
def test_errors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "mated_scores": [0.1, 0.9],
        "mated_pair_quality": [1.0, 2.0],
        "non_mated_scores": np.linspace(0, 1, 10),
        "non_mated_pair_quality": np.arange(10.0),
        "fmr": 0.1,
    }
    args.update(kwargs)
    with pytest.raises(MetricInputError, match=message):
        erc_recomputed(**args)  # type: ignore[arg-type]
