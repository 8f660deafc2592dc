"""FR sanity figures: 10-fold verification accuracy and TAR at a fixed FAR, pure numpy.

Why: a wrong alignment, colour order or input range leaves an EDC plausible-looking but makes
the FR model itself fail; the figures the FR papers report (LFW 99.8 %, IJB-C TAR@FAR=1e-4
around 96 %) catch that at a glance.

- :func:`kfold_accuracy` follows the LFW protocol (LFW README, "View 2"; insightface
  ``eval/verification.py::calculate_roc``): for each fold the threshold that maximises accuracy
  on the other nine folds is applied to the held-out fold; the figure is the mean (and standard
  deviation) over folds. Scores are similarities, accepted when ``score >= threshold``.
  Candidate thresholds are the midpoints between consecutive distinct training scores (plus one
  below the lowest and one above the highest), so the optimum is exact rather than read off a
  grid as insightface's ``np.arange(0, 4, 0.01)`` does; ties go to the lowest candidate.
- :func:`tar_at_far`: the threshold is the smallest one at which at most ``floor(far * N)`` of
  the ``N`` non-mated scores are accepted, so the achieved FAR never exceeds the target (ties at
  the boundary are rejected); TAR is the share of mated scores accepted there. When
  ``far * N < 1`` the target cannot be resolved and ``resolved`` is False (IJB-C's 15.6 M
  non-mated pairs resolve FAR down to 6.4e-8). insightface reads TAR off sklearn's ROC at the
  nearest FPR instead, which can land slightly above the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fiqabench.errors import MetricInputError

__all__ = ["FoldAccuracy", "TarAtFar", "kfold_accuracy", "tar_at_far", "best_threshold"]


@dataclass(frozen=True)
class FoldAccuracy:
    """10-fold verification accuracy: mean and std over folds, with each fold's figures."""

    mean: float
    std: float
    fold_accuracy: tuple[float, ...]
    thresholds: tuple[float, ...]

    def as_dict(self) -> dict[str, object]:
        return {"accuracy": self.mean, "std": self.std, "fold_accuracy": list(self.fold_accuracy),
                "thresholds": list(self.thresholds)}


@dataclass(frozen=True)
class TarAtFar:
    """TAR at a target FAR, with the threshold used and the FAR it achieves."""

    far: float
    tar: float
    threshold: float
    achieved_far: float
    resolved: bool

    def as_dict(self) -> dict[str, object]:
        return {"far": self.far, "tar": self.tar, "threshold": self.threshold, "achieved_far": self.achieved_far,
                "resolved": self.resolved}


def _validate(scores: object, mated: object) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    m = np.asarray(mated)
    if m.shape != s.shape:
        raise MetricInputError(f"scores ({s.size}) and mated flags ({m.size}) differ in length")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise MetricInputError("mated flags must be booleans or 0/1")
        m = m.astype(bool)
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise MetricInputError(f"{bad.size} comparison score(s) are NaN or inf, e.g. position {int(bad[0])}")
    return s, m


def best_threshold(scores: np.ndarray, mated: np.ndarray) -> tuple[float, float]:
    """The accuracy-maximising threshold on ``scores`` and the accuracy it gives.

    >>> best_threshold(np.array([0.9, 0.7, 0.6, 0.2]), np.array([True, False, True, False]))
    (0.4, 0.75)
    """
    s, m = _validate(scores, mated)
    if s.size == 0:
        raise MetricInputError("no comparisons to choose a threshold on")
    distinct = np.unique(s)
    candidates = np.concatenate([[distinct[0] - 1.0], (distinct[1:] + distinct[:-1]) / 2.0, [distinct[-1] + 1.0]])
    mated_sorted = np.sort(s[m])
    non_sorted = np.sort(s[~m])
    accepted_mated = mated_sorted.size - np.searchsorted(mated_sorted, candidates, side="left")
    rejected_non = np.searchsorted(non_sorted, candidates, side="left")
    accuracy = (accepted_mated + rejected_non) / s.size
    best = int(np.argmax(accuracy))
    return float(candidates[best]), float(accuracy[best])


def kfold_accuracy(
    scores: Sequence[float] | np.ndarray,
    mated: Sequence[bool] | np.ndarray,
    folds: Sequence[int] | np.ndarray | None = None,
    n_folds: int = 10,
) -> FoldAccuracy:
    """LFW-style k-fold verification accuracy (see the module docstring).

    ``folds`` gives each comparison's fold (any integers); without it the comparisons are cut
    into ``n_folds`` contiguous blocks, as LFW's ``pairs.txt`` and the ``.bin`` files order them
    (insightface's ``KFold(shuffle=False)``).

    Two folds by hand: fold 0 = scores (0.9 m, 0.4 n), fold 1 = (0.6 m, 0.5 n). Trained on fold
    1 the threshold is 0.55, which classifies fold 0 right (accuracy 1). Trained on fold 0 it is
    0.65, which rejects 0.6 (mated) in fold 1 (accuracy 0.5).

    >>> r = kfold_accuracy([0.9, 0.4, 0.6, 0.5], [1, 0, 1, 0], folds=[0, 0, 1, 1])
    >>> r.fold_accuracy, r.thresholds, r.mean, r.std
    ((1.0, 0.5), (0.55, 0.65), 0.75, 0.25)
    """
    s, m = _validate(scores, mated)
    if s.size == 0:
        raise MetricInputError("no comparisons")
    if folds is None:
        if n_folds < 2 or s.size < n_folds:
            raise MetricInputError(f"{s.size} comparisons cannot be cut into {n_folds} folds")
        fold = np.arange(s.size) * n_folds // s.size
    else:
        fold = np.asarray(folds).reshape(-1)
        if fold.shape != s.shape:
            raise MetricInputError(f"folds ({fold.size}) and scores ({s.size}) differ in length")
    labels = np.unique(fold)
    if labels.size < 2:
        raise MetricInputError("k-fold accuracy needs at least two folds")
    accuracies, thresholds = [], []
    for label in labels:
        test = fold == label
        threshold, _ = best_threshold(s[~test], m[~test])
        correct = (s[test] >= threshold) == m[test]
        accuracies.append(float(correct.mean()))
        thresholds.append(threshold)
    acc = np.asarray(accuracies)
    return FoldAccuracy(float(acc.mean()), float(acc.std()), tuple(accuracies), tuple(thresholds))


def tar_at_far(
    scores: Sequence[float] | np.ndarray,
    mated: Sequence[bool] | np.ndarray,
    fars: Sequence[float] = (1e-4, 1e-5),
) -> list[TarAtFar]:
    """TAR at each target FAR (see the module docstring).

    By hand: non-mated scores 0.1 .. 1.0 (N = 10) and FAR 0.2 allow 2 accepted, so the
    threshold lies just above the third highest non-mated score (0.8): 0.9 and 1.0 are accepted.
    Mated 0.85, 0.95, 0.5: two of three are accepted.

    >>> non = [i / 10 for i in range(1, 11)]
    >>> r = tar_at_far([0.85, 0.95, 0.5] + non, [True] * 3 + [False] * 10, fars=[0.2, 0.01])
    >>> round(r[0].tar, 4), r[0].achieved_far, r[0].resolved
    (0.6667, 0.2, True)
    >>> r[1].tar, r[1].achieved_far, r[1].resolved
    (0.0, 0.0, False)
    """
    s, m = _validate(scores, mated)
    non = np.sort(s[~m])[::-1]
    genuine = s[m]
    if non.size == 0 or genuine.size == 0:
        raise MetricInputError("TAR at FAR needs mated and non-mated comparisons")
    out = []
    for far in fars:
        far = float(far)
        if not 0.0 < far < 1.0:
            raise MetricInputError(f"FAR {far} must be in (0, 1)")
        allowed = int(np.floor(far * non.size))
        boundary = non[min(allowed, non.size - 1)]
        # Accept strictly above the (allowed+1)-th highest non-mated score: ties there rejected.
        threshold = float(np.nextafter(boundary, np.inf))
        accepted_non = int(np.count_nonzero(non >= threshold))
        out.append(TarAtFar(
            far=far,
            tar=float(np.count_nonzero(genuine >= threshold) / genuine.size),
            threshold=threshold,
            achieved_far=accepted_non / non.size,
            resolved=allowed >= 1,
        ))
    return out
