"""FR sanity metrics: k-fold verification accuracy and TAR at FAR (hand-computed and brute force)."""

from __future__ import annotations

import numpy as np
import pytest

from fiqabench.errors import MetricInputError
from fiqabench.metrics.verification import best_threshold, kfold_accuracy, tar_at_far


def _brute_best(scores: np.ndarray, mated: np.ndarray) -> float:
    # Every possible split of the sorted scores: the best accuracy any threshold can reach.
    best = 0.0
    for t in np.concatenate([[-np.inf], np.unique(scores), [np.inf]]):
        for accept in (scores >= t, scores > t):
            best = max(best, float(((accept) == mated).mean()))
    return best


def test_best_threshold_reaches_the_brute_force_optimum() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(5, 40))
        scores = np.round(rng.normal(size=n), 1)  # rounding makes ties
        mated = rng.random(n) < 0.5
        threshold, acc = best_threshold(scores, mated)
        assert acc == pytest.approx(_brute_best(scores, mated))
        assert ((scores >= threshold) == mated).mean() == pytest.approx(acc)


def test_kfold_hand_computed_three_folds() -> None:
    # Fold 0: (0.8 m, 0.3 n); fold 1: (0.7 m, 0.75 n); fold 2: (0.2 m, 0.1 n).
    # Test fold 0, train on 1 and 2: scores 0.1 n, 0.2 m, 0.7 m, 0.75 n. Candidates -0.9, 0.15,
    # 0.45, 0.725, 1.75 give accuracies 2/4, 3/4, 2/4, 1/4, 2/4: threshold 0.15 -> fold 0: 0.8
    # accepted (right), 0.3 accepted (wrong) -> 0.5.
    # Test fold 1, train on 0 and 2: 0.1 n, 0.2 m, 0.3 n, 0.8 m: candidates -0.9 (2/4), 0.15 (3/4),
    # 0.25 (2/4), 0.55 (3/4), 1.8 (2/4): lowest best 0.15 -> fold 1: 0.7 accepted (right), 0.75
    # accepted (wrong) -> 0.5.
    # Test fold 2, train on 0 and 1: 0.3 n, 0.7 m, 0.75 n, 0.8 m: candidates -0.7 (2/4), 0.5 (3/4),
    # 0.725 (2/4), 0.775 (3/4), 1.8 (2/4): 0.5 -> fold 2: 0.2 rejected (wrong), 0.1 rejected (right) -> 0.5.
    scores = [0.8, 0.3, 0.7, 0.75, 0.2, 0.1]
    mated = [True, False, True, False, True, False]
    r = kfold_accuracy(scores, mated, folds=[0, 0, 1, 1, 2, 2])
    assert r.fold_accuracy == (0.5, 0.5, 0.5)
    assert r.thresholds == pytest.approx((0.15, 0.15, 0.5))
    assert r.mean == 0.5 and r.std == 0.0


def test_kfold_default_folds_are_contiguous_blocks_and_separable_data_scores_one() -> None:
    mated = np.tile([True] * 3 + [False] * 3, 10)
    scores = np.where(mated, 0.9, 0.1) + np.linspace(0, 0.01, 60)
    r = kfold_accuracy(scores, mated)
    assert r.mean == 1.0 and len(r.fold_accuracy) == 10
    with pytest.raises(MetricInputError, match="cannot be cut into 10 folds"):
        kfold_accuracy([0.1] * 5, [True] * 5)
    with pytest.raises(MetricInputError, match="NaN"):
        kfold_accuracy([0.1, np.nan], [True, False], folds=[0, 1])


def test_tar_at_far_counts_and_never_exceeds_the_far() -> None:
    rng = np.random.default_rng(1)
    non = rng.normal(size=100_000)
    gen = rng.normal(loc=3.0, size=1_000)
    scores = np.concatenate([gen, non])
    mated = np.concatenate([np.ones(gen.size, bool), np.zeros(non.size, bool)])
    r4, r5 = tar_at_far(scores, mated, fars=(1e-4, 1e-5))
    assert r4.resolved and r5.resolved
    # Exactly 10 and 1 non-mated scores lie at or above the thresholds.
    assert int((non >= r4.threshold).sum()) == 10 and int((non >= r5.threshold).sum()) == 1
    assert r4.achieved_far == 1e-4 and r5.achieved_far == 1e-5
    assert r4.tar == pytest.approx((gen >= r4.threshold).mean())
    assert r5.tar <= r4.tar
    # Ties at the boundary are rejected: the achieved FAR stays under the target.
    tied = tar_at_far([1.0, 0.5, 0.5, 0.5, 0.2], [True, False, False, False, False], fars=[0.5])[0]
    assert tied.achieved_far == 0.0 and tied.tar == 1.0
