"""EDC, threshold and pAUC: hand-derived golden cases, a brute-force oracle, and behaviour."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fiqabench.errors import MetricInputError
from fiqabench.metrics import edc, fmr_threshold, pair_quality, pauc, similarity_from_distance

GOLDEN = json.loads((Path(__file__).parent / "golden" / "edc_golden.json").read_text())["cases"]


@pytest.mark.parametrize("case", GOLDEN, ids=[c["name"] for c in GOLDEN])
def test_golden_cases(case: dict) -> None:
    mated = np.asarray(case["mated_scores"], float)
    non_mated = case.get("non_mated_scores")
    if case.get("distances"):
        mated = similarity_from_distance(mated)
        non_mated = similarity_from_distance(non_mated)
    if non_mated is not None:
        assert fmr_threshold(non_mated, case["fmr"]) == pytest.approx(case["threshold"], abs=0)
        curve = edc(mated_scores=mated, mated_pair_quality=case["mated_pair_quality"],
                    non_mated_scores=non_mated, fmr=case["fmr"])
        assert curve.n_non_mated == len(non_mated)
    else:
        curve = edc(mated_scores=mated, mated_pair_quality=case["mated_pair_quality"],
                    threshold=case["threshold"])
    assert curve.threshold == case["threshold"]
    np.testing.assert_allclose(curve.discard_fraction, case["discard_fraction"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(curve.fnmr, case["fnmr"], rtol=0, atol=1e-15)
    assert curve.fnmr_at_zero == pytest.approx(case["fnmr_at_zero"], abs=1e-15)
    for limit, expected in case["pauc"].items():
        got = pauc(curve, float(limit))
        if expected is None:
            assert math.isnan(got)
        else:
            assert got == pytest.approx(expected, abs=1e-12)
    for limit, expected in case["pauc_raw"].items():
        assert pauc(curve, float(limit), normalize=False) == pytest.approx(expected, abs=1e-12)


def naive_threshold(non_mated: np.ndarray, fmr: float) -> float:
    """Scan every observed value; the definition, without selection tricks."""
    k = math.floor(round(fmr * len(non_mated), 9))
    candidates = [v for v in np.unique(non_mated) if (non_mated >= v).sum() <= k]
    return float(min(candidates)) if candidates else float(np.nextafter(non_mated.max(), np.inf))


def naive_curve(scores: np.ndarray, quality: np.ndarray, t: float) -> tuple[list[float], list[float]]:
    """Recompute the FNMR by brute force after each quality cut (discard every q < cut)."""
    xs, ys = [], []
    for cut in np.unique(quality):
        kept = quality >= cut
        xs.append((~kept).sum() / len(scores))
        ys.append((scores[kept] < t).sum() / kept.sum())
    return xs, ys


def test_random_cases_match_brute_force() -> None:
    rng = np.random.default_rng(20261129)
    for case in range(300):
        m = int(rng.integers(1, 60))
        n = int(rng.integers(20, 3000))
        fmr = float(rng.choice([1e-3, 0.01, 0.05, 0.3]))
        if math.floor(fmr * n * (1 + 1e-12)) == 0:
            n = math.ceil(1 / fmr)
        decimals = int(rng.integers(1, 4))  # coarse rounding makes ties in scores
        non_mated = np.round(rng.normal(0, 1, n), decimals)
        mated = np.round(rng.normal(1.5, 1, m), decimals)
        levels = int(rng.integers(1, 12))
        qa = rng.integers(0, levels, m).astype(float)
        qb = rng.integers(0, levels, m).astype(float)
        q = pair_quality(qa, qb)
        t = fmr_threshold(non_mated, fmr)
        assert t == naive_threshold(non_mated, fmr), case
        curve = edc(mated_scores=mated, mated_pair_quality=q, non_mated_scores=non_mated, fmr=fmr)
        xs, ys = naive_curve(mated, q, t)
        np.testing.assert_allclose(curve.discard_fraction, xs, rtol=0, atol=1e-12)
        np.testing.assert_allclose(curve.fnmr, ys, rtol=0, atol=1e-12)
        # Order and the side of the pair do not matter.
        perm = rng.permutation(m)
        again = edc(mated_scores=mated[perm], mated_pair_quality=pair_quality(qb[perm], qa[perm]),
                    threshold=t)
        np.testing.assert_array_equal(again.fnmr, curve.fnmr)
        # pAUC against a fine Riemann sum of the step function.
        limit = float(rng.choice([0.2, 0.3, 1.0]))
        grid = (np.arange(200_000) + 0.5) / 200_000 * limit
        idx = np.searchsorted(curve.discard_fraction, grid, side="right") - 1
        riemann = curve.fnmr[idx].mean() * limit
        assert pauc(curve, limit, normalize=False) == pytest.approx(riemann, abs=1e-5)


def test_fmr_floor_is_guarded_against_float_error() -> None:
    # 0.29 * 100 = 28.999999999999996 in floating point; k must be 29.
    scores = np.arange(100, dtype=float)
    assert fmr_threshold(scores, 0.29) == 71.0  # #{>= 71} = 29


def test_lfw_sized_protocol_works() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=3000)
    t = fmr_threshold(scores, 1e-3)
    assert (scores >= t).sum() == 3  # k = 3


def test_too_few_non_mated_names_how_many_are_needed() -> None:
    with pytest.raises(MetricInputError, match="needs at least 1000 non-mated comparisons, got 999"):
        fmr_threshold(np.zeros(999), 1e-3)
    assert fmr_threshold(np.arange(1000.0), 1e-3) == 999.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mated_scores": [0.1, np.nan], "mated_pair_quality": [1, 2], "threshold": 0.5}, "NaN"),
        ({"mated_scores": [0.1, 0.2], "mated_pair_quality": [1, np.nan], "threshold": 0.5}, "NaN"),
        ({"mated_scores": [0.1, 0.2], "mated_pair_quality": [1], "threshold": 0.5}, "differ in length"),
        ({"mated_scores": [], "mated_pair_quality": [], "threshold": 0.5}, "empty"),
        ({"mated_scores": [0.1], "mated_pair_quality": [1], "non_mated_scores": []}, "empty"),
        ({"mated_scores": [0.1], "mated_pair_quality": [1]}, "non_mated_scores or a precomputed threshold"),
        ({"mated_scores": [0.1], "mated_pair_quality": [1], "threshold": 0.5, "fmr": 1.5}, r"\(0, 1\)"),
        ({"mated_scores": [0.1], "mated_pair_quality": [1], "non_mated_scores": [np.nan] * 2000}, "NaN"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(MetricInputError, match=message):
        edc(**kwargs)


def test_pauc_limits_and_non_step_curves_are_refused() -> None:
    curve = edc(mated_scores=[0.1, 0.9], mated_pair_quality=[1, 2], threshold=0.5)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(MetricInputError, match="discard limit"):
            pauc(curve, bad)
    from dataclasses import replace

    with pytest.raises(MetricInputError, match="linearly interpolated"):
        pauc(replace(curve, interpolation="linear", convention="erc-recomputed"), 0.3)


def test_minus_infinity_quality_is_discarded_first() -> None:
    curve = edc(mated_scores=[0.1, 0.9, 0.8], mated_pair_quality=[-np.inf, 1, 2], threshold=0.5)
    assert curve.fnmr.tolist() == [pytest.approx(1 / 3), 0.0, 0.0]


def _simulated(seed: int, quality_kind: str) -> float:
    rng = np.random.default_rng(seed)
    n_samples, m, n = 2000, 3000, 60_000
    utility = rng.normal(size=n_samples)
    a, b = rng.integers(0, n_samples, (2, m))
    mated = 0.55 + 0.10 * np.minimum(utility[a], utility[b]) + rng.normal(0, 0.12, m)
    non_mated = rng.normal(0, 0.1, n)
    if quality_kind == "random":
        q = rng.normal(size=n_samples)
    else:  # tracks the utility that drives the mated scores
        q = utility + rng.normal(0, 0.3, n_samples)
    curve = edc(mated_scores=mated, mated_pair_quality=pair_quality(q[a], q[b]),
                non_mated_scores=non_mated, fmr=1e-3)
    return pauc(curve, 0.3)


def test_random_quality_is_near_one_and_informative_quality_is_lower() -> None:
    random_values = [_simulated(seed, "random") for seed in range(10)]
    assert abs(np.mean(random_values) - 1.0) < 0.03
    informative = [_simulated(seed, "tracking") for seed in range(3)]
    assert max(informative) < 0.8


def test_importing_metrics_does_not_import_torch() -> None:
    code = "import fiqabench.metrics, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
