"""Legacy ERC: the threshold is recomputed after every discard step (CR-FIQA, MagFace, SER-FIQ).

This is *not* the EDC fiqabench reports by default (that is :func:`fiqabench.metrics.edc.edc`,
Schlett et al. 2023, fixed threshold). It restates the convention found in FIQA code
(CR-FIQA ``ERC/erc.py``, MagFace ``eval_quality.py``, SER-FIQ per its author; ``research/edc.md``
sections 2.7, 3 and 5.2) so results can be compared with papers that used it:

- mated and non-mated comparisons are pooled and sorted by pair quality (stable sort; pooled
  order is the mated comparisons in input order, then the non-mated ones, so among equal
  qualities mated comparisons are discarded first);
- at each grid point ``u`` (default 0, 0.05, ..., 0.95) the first ``int(u * N_all)`` of them are
  discarded, ``N_all`` counting both kinds;
- the FMR threshold is recomputed on the non-mated comparisons left, with fiqabench's own rule
  (:func:`fiqabench.metrics.edc.fmr_threshold`), and the FNMR is the fraction of mated
  comparisons left with ``score < t``;
- the curve is sampled on the grid and integrated with the trapezoid rule (:func:`erc_auc`).

A FIQA method gets credit here for removing low-quality impostor pairs that score high, which
lowers the recomputed threshold even when no mated comparison is removed, so this convention is
more optimistic than the fixed-threshold EDC whenever low-quality impostors score higher
(``research/edc.md`` 5.2: by about 0.11 to 0.13 in normalised pAUC on synthetic data). Cutting at
``int(u * N_all)`` also splits runs of tied qualities, unlike the EDC.

The curve is an :class:`~fiqabench.metrics.edc.EDCCurve` with ``interpolation="linear"`` and
``convention="erc-recomputed"``; :func:`fiqabench.metrics.edc.pauc` (the exact step integral)
refuses such curves, and :func:`erc_auc` refuses step curves, so the two conventions cannot be
mixed up silently.
"""

from __future__ import annotations

import math

import numpy as np

from fiqabench.errors import MetricInputError
from fiqabench.metrics.edc import EDCCurve, fmr_threshold

__all__ = ["CONVENTION", "DEFAULT_GRID", "erc_auc", "erc_recomputed"]

CONVENTION = "erc-recomputed"
#: CR-FIQA's grid: ``np.arange(0, 1.0, 0.05)``, i.e. 0, 0.05, ..., 0.95 (20 points).
DEFAULT_GRID = np.arange(0, 1.0, 0.05)[:20]
DEFAULT_GRID.setflags(write=False)


def _scores_or_qualities(name: str, values: object) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise MetricInputError(f"{name}: expected a 1-D array, got shape {array.shape}")
    if np.isnan(array).any():
        raise MetricInputError(
            f"{name}: {int(np.isnan(array).sum())} NaN value(s); map failed samples to a value "
            "first (e.g. -inf quality)"
        )
    return array


def _check_grid(grid: object) -> np.ndarray:
    array = np.asarray(grid, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise MetricInputError(f"grid: expected a non-empty 1-D array of discard fractions, got shape {array.shape}")
    if not np.isfinite(array).all() or array[0] != 0.0:
        raise MetricInputError(f"grid: must start at 0 (FNMR at 0 % discard normalises the AUC), got {array[:3]}")
    if (np.diff(array) <= 0).any() or array[-1] >= 1.0:
        raise MetricInputError("grid: discard fractions must increase strictly and stay below 1")
    return array


def erc_recomputed(
    *,
    mated_scores: object,
    mated_pair_quality: object,
    non_mated_scores: object,
    non_mated_pair_quality: object,
    fmr: float = 1e-3,
    grid: object = DEFAULT_GRID,
) -> EDCCurve:
    """ERC with the FMR threshold recomputed on the pairs left after each discard step.

    Returns an :class:`~fiqabench.metrics.edc.EDCCurve` with the grid as ``discard_fraction``
    (fraction of *all* pairs discarded), ``interpolation="linear"``,
    ``convention="erc-recomputed"``, ``threshold`` and ``fnmr_at_zero`` at 0 % discard (the
    thresholds of the later grid points are not kept). A grid point that leaves no mated
    comparison has FNMR NaN; one that leaves too few non-mated comparisons for ``fmr`` is an
    error. Cost: one stable sort of all ``M + N`` pair qualities and one O(N) threshold selection
    per grid point (a few seconds per method at IJB-C scale, against ~155 s for CR-FIQA's code).

    Hand example, FMR 1/3, grid 0 and 0.5: at 0 % the 6 impostor scores give ``t = 0.8`` (2 of 6
    at or above it) and both mated scores fail. At 50 % the 4 lowest-quality pairs go (the mated
    0.2 and the impostors 0.9, 0.8, 0.1); the 3 impostors left give ``t = 0.5``, which the mated
    0.6 passes. A fixed threshold of 0.8 would still fail it.

    >>> curve = erc_recomputed(
    ...     mated_scores=[0.2, 0.6], mated_pair_quality=[1, 8],
    ...     non_mated_scores=[0.9, 0.8, 0.1, 0.5, 0.4, 0.3],
    ...     non_mated_pair_quality=[2, 3, 4, 5, 6, 7], fmr=1 / 3, grid=[0.0, 0.5])
    >>> curve.fnmr.tolist(), curve.threshold, curve.interpolation
    ([1.0, 0.0], 0.8, 'linear')
    """
    s_mated = _scores_or_qualities("mated_scores", mated_scores)
    q_mated = _scores_or_qualities("mated_pair_quality", mated_pair_quality)
    s_non = _scores_or_qualities("non_mated_scores", non_mated_scores)
    q_non = _scores_or_qualities("non_mated_pair_quality", non_mated_pair_quality)
    if s_mated.shape != q_mated.shape:
        raise MetricInputError(
            f"mated_scores and mated_pair_quality differ in length: {s_mated.size} vs {q_mated.size}"
        )
    if s_non.shape != q_non.shape:
        raise MetricInputError(
            f"non_mated_scores and non_mated_pair_quality differ in length: {s_non.size} vs {q_non.size}"
        )
    m, n = s_mated.size, s_non.size
    if m == 0:
        raise MetricInputError("mated_scores is empty: an ERC needs mated comparisons")
    if n == 0:
        raise MetricInputError("non_mated_scores is empty: the ERC threshold needs non-mated comparisons")
    fmr = float(fmr)
    if not 0.0 < fmr < 1.0:
        raise MetricInputError(f"fmr must be in (0, 1), got {fmr}")
    fractions = _check_grid(grid)
    n_all = m + n

    # One stable sort serves every grid point: the pairs left at a cut are a suffix of this order.
    order = np.argsort(np.concatenate((q_mated, q_non)), kind="stable")
    is_mated = order < m
    # Scores of each kind in discard order, so what is left of a kind is a suffix (a view).
    mated_left = s_mated[order[is_mated]]
    non_left = s_non[order[~is_mated] - m]
    del order

    fnmr = np.empty(fractions.size, dtype=np.float64)
    threshold0 = math.nan
    for j, u in enumerate(fractions):
        cut = int(u * n_all)  # as CR-FIQA: floor of the float product, not a rounded count
        mated_cut = int(np.count_nonzero(is_mated[:cut]))
        non_cut = cut - mated_cut
        try:
            threshold = fmr_threshold(non_left[non_cut:], fmr)
        except MetricInputError as error:
            raise MetricInputError(
                f"discard fraction {u:g}: {n - non_cut} non-mated comparison(s) left: {error}"
            ) from error
        if j == 0:
            threshold0 = threshold
        kept = mated_left[mated_cut:]
        fnmr[j] = np.count_nonzero(kept < threshold) / kept.size if kept.size else math.nan
    return EDCCurve(
        discard_fraction=fractions.copy(),
        fnmr=fnmr,
        threshold=float(threshold0),
        fnmr_at_zero=float(fnmr[0]),
        n_mated=m,
        n_non_mated=n,
        interpolation="linear",
        convention=CONVENTION,
    )


def erc_auc(curve: EDCCurve, limit: float, normalize: bool = True) -> float:
    """Trapezoid area under a grid-sampled ERC from 0 to ``limit``, normalised by default.

    Between grid points the curve is a straight line; a ``limit`` between grid points ends the
    area at the interpolated value. Normalised by ``fnmr_at_zero * limit`` (a flat curve scores
    1.0, lower is better; NaN when ``fnmr_at_zero == 0``), the same normalisation as
    :func:`fiqabench.metrics.edc.pauc`, which integrates step curves exactly and refuses this
    kind. This function refuses step curves in turn.

    Hand example: FNMR 1.0 at 0 and 0.0 at 0.5; at 0.25 the line is at 0.5, so the area is
    ``0.25 * (1.0 + 0.5) / 2 = 0.1875``, normalised ``0.1875 / (1.0 * 0.25) = 0.75``.

    >>> curve = erc_recomputed(
    ...     mated_scores=[0.2, 0.6], mated_pair_quality=[1, 8],
    ...     non_mated_scores=[0.9, 0.8, 0.1, 0.5, 0.4, 0.3],
    ...     non_mated_pair_quality=[2, 3, 4, 5, 6, 7], fmr=1 / 3, grid=[0.0, 0.5])
    >>> erc_auc(curve, 0.25, normalize=False), erc_auc(curve, 0.25)
    (0.1875, 0.75)
    """
    if curve.interpolation != "linear":
        raise MetricInputError(
            f"this curve is {curve.interpolation}-interpolated ({curve.convention}); the trapezoid "
            "AUC applies only to grid-sampled ERC curves (use fiqabench.metrics.edc.pauc)"
        )
    x = np.asarray(curve.discard_fraction, dtype=np.float64)
    y = np.asarray(curve.fnmr, dtype=np.float64)
    limit = float(limit)
    if not 0.0 < limit <= x[-1]:
        raise MetricInputError(
            f"discard limit must be in (0, {x[-1]:g}] (the last grid point), got {limit}"
        )
    inside = x < limit
    xs = np.append(x[inside], limit)
    end = float(np.interp(limit, x, y))  # the straight line between the bracketing grid points
    ys = np.append(y[inside], end)
    area = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))
    if not normalize:
        return area
    if curve.fnmr_at_zero == 0.0:
        return math.nan
    return area / (curve.fnmr_at_zero * limit)
