"""Non-interpolated FNM-EDC (Schlett et al. 2023) and normalised pAUC, exact and fast.

Definitions (``research/edc.md`` of the team notes, ISO/IEC 29794-1 convention as used by DifFIQA):

- Comparison scores are similarities; a mated comparison is a false non-match iff ``s < t``.
- The threshold ``t`` is fixed once, at 0 % discard, from *all* non-mated scores at the target
  FMR (:func:`fmr_threshold`); the non-mated comparisons are not used after that.
- Mated comparisons are discarded in ascending pair quality (``min(q_a, q_b)``); a run of equal
  pair qualities is discarded in one step, so the curve does not depend on input order.
- The curve has a point at 0 and at the start of every run and is a right-continuous step
  function: ``FNMR(d) = FNMR_k`` for ``d_k <= d < d_{k+1}``; the last value holds to ``d = 1``.
- pAUC is the exact area of that step function on ``[0, L]``, normalised by ``FNMR(0) * L``
  (the flat curve of an uninformative quality scores 1.0; lower is better).

Cost: the threshold is an O(N) selection done once per dataset x FR model; each FIQA method
then costs one O(M log M) sort of its M mated pair qualities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fiqabench.errors import MetricInputError

__all__ = ["EDCCurve", "edc", "fmr_threshold", "pair_quality", "pauc", "similarity_from_distance"]

STEP_CONVENTION = "schlett2023-fixed-threshold"


@dataclass(frozen=True)
class EDCCurve:
    """An error-versus-discard curve: FNMR at a fixed threshold against the discarded fraction.

    ``discard_fraction[k]`` is the fraction of mated comparisons discarded at point ``k`` and
    ``fnmr[k]`` the FNMR of the rest. ``interpolation="step"`` (the default and the only kind
    :func:`pauc` integrates) means the value holds until the next point; ``"linear"`` marks curves
    sampled on a grid by the legacy ERC convention (:mod:`fiqabench.metrics.erc`).
    """

    discard_fraction: np.ndarray
    fnmr: np.ndarray
    threshold: float
    fnmr_at_zero: float
    n_mated: int
    n_non_mated: int | None
    interpolation: Literal["step", "linear"] = "step"
    convention: str = STEP_CONVENTION

    def fnmr_at(self, discard_fraction: float) -> float:
        """The step function's value at ``discard_fraction`` (step curves only).

        >>> curve = edc(mated_scores=[0.1, 0.9], mated_pair_quality=[1, 2], threshold=0.5)
        >>> curve.fnmr_at(0.0), curve.fnmr_at(0.49), curve.fnmr_at(0.5)
        (0.5, 0.5, 0.0)
        """
        _require_step(self)
        index = int(np.searchsorted(self.discard_fraction, discard_fraction, side="right")) - 1
        return float(self.fnmr[max(index, 0)])


def _as_1d_float(name: str, values: object) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise MetricInputError(f"{name}: expected a 1-D array, got shape {array.shape}")
    if np.isnan(array).any():
        count = int(np.isnan(array).sum())
        raise MetricInputError(
            f"{name}: {count} NaN value(s); map failed samples to a value first "
            "(e.g. --on-failure lowest maps failed qualities to -inf)"
        )
    return array


def pair_quality(q_a: object, q_b: object) -> np.ndarray:
    """Pair quality: the elementwise minimum of the two samples' qualities.

    >>> pair_quality([0.2, 0.9, 0.5], [0.4, 0.1, 0.5])
    array([0.2, 0.1, 0.5])
    """
    a = _as_1d_float("q_a", q_a)
    b = _as_1d_float("q_b", q_b)
    if a.shape != b.shape:
        raise MetricInputError(f"q_a and q_b differ in length: {a.size} vs {b.size}")
    return np.minimum(a, b)


def similarity_from_distance(distances: object) -> np.ndarray:
    """Comparison scores are similarities everywhere; distances are negated once, at the edge.

    >>> similarity_from_distance([0.25, 1.5])
    array([-0.25, -1.5 ])
    """
    return -_as_1d_float("distances", distances)


def _check_fmr(fmr: float) -> float:
    fmr = float(fmr)
    if not 0.0 < fmr < 1.0:
        raise MetricInputError(f"fmr must be in (0, 1), got {fmr}")
    return fmr


def fmr_threshold(non_mated_scores: object, fmr: float = 1e-3) -> float:
    """The similarity threshold at a target FMR.

    With ``k = floor(fmr * N)``, ``t`` is the smallest observed non-mated score ``v`` with
    ``#{non-mated >= v} <= k``, so the achieved FMR is at most ``fmr`` (exactly ``k / N`` without
    ties at the boundary). If ties at the top leave no such observed value, ``t`` is the next
    float above the maximum (FMR 0). O(N): one selection of the ``k + 1`` largest scores.

    >>> fmr_threshold([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], fmr=0.2)
    0.9
    >>> fmr_threshold([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.9], fmr=0.1)  # tie at the top
    0.9000000000000001
    >>> fmr_threshold([0.1, 0.2], fmr=0.1)
    Traceback (most recent call last):
    ...
    fiqabench.errors.MetricInputError: fmr=0.1 needs at least 10 non-mated comparisons, got 2
    """
    fmr = _check_fmr(fmr)
    scores = _as_1d_float("non_mated_scores", non_mated_scores)
    n = scores.size
    if n == 0:
        raise MetricInputError("non_mated_scores is empty: the FMR threshold needs non-mated comparisons")
    # The relative nudge keeps 0.29 * 100 = 28.999999999999996 from flooring to 28.
    k = math.floor(fmr * n * (1.0 + 1e-12))
    if k == 0:
        needed = math.ceil(1.0 / fmr * (1.0 - 1e-12))
        raise MetricInputError(
            f"fmr={fmr:g} needs at least {needed} non-mated comparisons, got {n}"
        )
    if k >= n:
        raise MetricInputError(f"fmr={fmr:g} with {n} non-mated comparisons leaves no threshold")
    top = np.sort(np.partition(scores, n - k - 1)[n - k - 1 :])[::-1]  # the k + 1 largest, descending
    kth, next_below = top[k - 1], top[k]
    if next_below < kth:
        return float(kth)
    above = top[:k][top[:k] > kth]
    if above.size:
        return float(above.min())
    return float(np.nextafter(top[0], np.inf))


def edc(
    *,
    mated_scores: object,
    mated_pair_quality: object,
    non_mated_scores: object | None = None,
    fmr: float = 1e-3,
    threshold: float | None = None,
) -> EDCCurve:
    """The non-interpolated FNM-EDC of Schlett et al. 2023.

    Pass either ``non_mated_scores`` (the threshold is taken at ``fmr``) or a precomputed
    ``threshold`` shared by every method of a dataset x FR model (then the non-mated scores are
    neither needed nor touched).

    Hand example: scores 0.1, 0.2, 0.8, 0.9 with pair qualities 1, 2, 2, 3 at t = 0.5. Two of the
    four fail, FNMR(0) = 0.5; discarding the run {q = 1} leaves one failure of three (1/3);
    discarding the run {q = 2} (two comparisons at once) leaves none of one.

    >>> curve = edc(mated_scores=[0.1, 0.2, 0.8, 0.9], mated_pair_quality=[1, 2, 2, 3], threshold=0.5)
    >>> curve.discard_fraction.tolist(), curve.fnmr.round(4).tolist()
    ([0.0, 0.25, 0.75], [0.5, 0.3333, 0.0])
    """
    scores = _as_1d_float("mated_scores", mated_scores)
    quality = _as_1d_float("mated_pair_quality", mated_pair_quality)
    if scores.shape != quality.shape:
        raise MetricInputError(
            f"mated_scores and mated_pair_quality differ in length: {scores.size} vs {quality.size}"
        )
    m = scores.size
    if m == 0:
        raise MetricInputError("mated_scores is empty: an EDC needs mated comparisons")
    n_non_mated: int | None = None
    if threshold is None:
        if non_mated_scores is None:
            raise MetricInputError("edc needs non_mated_scores or a precomputed threshold")
        non_mated = np.asarray(non_mated_scores)
        n_non_mated = int(non_mated.size)
        threshold = fmr_threshold(non_mated, fmr)
    else:
        _check_fmr(fmr)
        threshold = float(threshold)
        if math.isnan(threshold):
            raise MetricInputError("threshold is NaN")

    order = np.argsort(quality, kind="stable")
    sorted_quality = quality[order]
    failures = (scores < threshold)[order]
    # prefix[c] = false non-matches among the first c discarded comparisons.
    prefix = np.concatenate(([0], np.cumsum(failures, dtype=np.int64)))
    total = int(prefix[-1])
    run_starts = np.concatenate(([0], np.flatnonzero(sorted_quality[1:] != sorted_quality[:-1]) + 1))
    remaining = m - run_starts
    fnmr = (total - prefix[run_starts]) / remaining
    return EDCCurve(
        discard_fraction=run_starts / m,
        fnmr=fnmr.astype(np.float64),
        threshold=threshold,
        fnmr_at_zero=total / m,
        n_mated=m,
        n_non_mated=n_non_mated,
    )


def _require_step(curve: EDCCurve) -> None:
    if curve.interpolation != "step":
        raise MetricInputError(
            f"this curve is {curve.interpolation}ly interpolated ({curve.convention}); the step pAUC "
            "applies only to non-interpolated EDC curves (use fiqabench.metrics.erc.erc_auc)"
        )


def pauc(curve: EDCCurve, limit: float, normalize: bool = True) -> float:
    """Exact area under the step EDC from 0 to ``limit``, optionally normalised.

    Normalised by ``fnmr_at_zero * limit``: 1.0 means discarding does not help, lower is better.
    Returns NaN when normalising a curve with ``fnmr_at_zero == 0`` (nothing to improve).

    Hand example (the curve of :func:`edc`'s example): 0.5 on [0, 0.25) and 1/3 on [0.25, 0.3]
    gives ``0.5 * 0.25 + 0.05 / 3 = 0.141667``; divided by ``0.5 * 0.3``: 0.944444.

    >>> curve = edc(mated_scores=[0.1, 0.2, 0.8, 0.9], mated_pair_quality=[1, 2, 2, 3], threshold=0.5)
    >>> round(pauc(curve, 0.3, normalize=False), 6), round(pauc(curve, 0.3), 6)
    (0.141667, 0.944444)
    """
    _require_step(curve)
    limit = float(limit)
    if not 0.0 < limit <= 1.0:
        raise MetricInputError(f"discard limit must be in (0, 1], got {limit}")
    starts = np.minimum(curve.discard_fraction, limit)
    ends = np.minimum(np.append(curve.discard_fraction[1:], 1.0), limit)
    # Not np.dot: for long curves it goes through BLAS threads, which stall on a busy machine.
    area = float(np.sum(curve.fnmr * (ends - starts)))
    if not normalize:
        return area
    if curve.fnmr_at_zero == 0.0:
        return math.nan
    return area / (curve.fnmr_at_zero * limit)
