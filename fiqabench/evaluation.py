"""From comparison scores and quality scores to one results row (pure numpy, no torch).

Shared by ``fiqabench run`` and ``fiqabench evaluate``, so both produce identical rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fiqabench.errors import MethodFailure, MetricInputError
from fiqabench.metrics import EDCCurve, edc, fmr_threshold, pair_quality, pauc
from fiqabench.results import limit_key

HISTOGRAM_BINS = 50
#: FARs of the FR sanity figure for protocols without folds (IJB-B/C report TAR at these).
SANITY_FARS = (1e-4, 1e-5)


@dataclass(frozen=True)
class ProtocolScores:
    """Comparison scores of one dataset x FR model, with the threshold fixed once.

    ``mated_a``/``mated_b`` index the *items* whose quality defines pair quality: samples, or
    templates for set-based protocols.
    """

    mated_a: np.ndarray
    mated_b: np.ndarray
    mated_scores: np.ndarray
    threshold: float
    fmr: float
    n_non_mated: int

    @classmethod
    def from_comparisons(
        cls, a: np.ndarray, b: np.ndarray, mated: np.ndarray, scores: np.ndarray, fmr: float
    ) -> ProtocolScores:
        mated = np.asarray(mated, dtype=bool)
        if not mated.any():
            raise MetricInputError("the protocol has no mated comparisons")
        if mated.all():
            raise MetricInputError("the protocol has no non-mated comparisons")
        non_mated_scores = scores[~mated]
        return cls(
            mated_a=np.asarray(a)[mated],
            mated_b=np.asarray(b)[mated],
            mated_scores=np.asarray(scores, dtype=np.float64)[mated],
            threshold=fmr_threshold(non_mated_scores, fmr),
            fmr=fmr,
            n_non_mated=int((~mated).sum()),
        )


def apply_failure_policy(
    quality: np.ndarray, *, on_failure: str, method: str, dataset: str, ids: Sequence[str] = ()
) -> tuple[np.ndarray, int]:
    """NaN marks a failed sample: an error, or (``lowest``) -inf so it is discarded first."""
    failed = np.isnan(quality)
    count = int(failed.sum())
    if count and on_failure == "error":
        examples = ", ".join(str(ids[i]) for i in np.flatnonzero(failed)[:3]) if len(ids) else ""
        raise MethodFailure(
            f"method {method!r} returned NaN for {count} sample(s) of dataset {dataset!r}"
            + (f" (e.g. {examples})" if examples else "")
            + "; rerun with --on-failure lowest to rank them lowest"
        )
    if count:
        quality = np.where(failed, -np.inf, quality)
    return quality, count


def template_quality(
    sample_quality: np.ndarray, sample_template: np.ndarray, n_templates: int, rule: str
) -> np.ndarray:
    """A template's quality from its images' qualities: ``min`` (CR-FIQA's IJB-C rule) or ``mean``.

    >>> template_quality(np.array([0.2, 0.8, 0.5]), np.array([0, 0, 1]), 2, "min").tolist()
    [0.2, 0.5]
    >>> template_quality(np.array([0.2, 0.8, 0.5]), np.array([0, 0, 1]), 2, "mean").tolist()
    [0.5, 0.5]
    """
    member = sample_template >= 0
    quality = sample_quality[member]
    template = sample_template[member]
    if rule == "min":
        out = np.full(n_templates, np.inf)
        np.minimum.at(out, template, quality)
    elif rule == "mean":
        finite = np.isfinite(quality)
        sums = np.bincount(template[finite], weights=quality[finite], minlength=n_templates)
        counts = np.bincount(template[finite], minlength=n_templates)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = sums / counts
        # A template whose images all failed is ranked lowest.
        out[counts == 0] = -np.inf
    else:
        raise MetricInputError(f"unknown template quality rule {rule!r}; expected min or mean")
    empty = np.bincount(template, minlength=n_templates) == 0
    out[empty] = np.nan
    return out


def quality_histogram(quality: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict[str, Any] | None:
    finite = quality[np.isfinite(quality)]
    if finite.size == 0:
        return None
    counts, edges = np.histogram(finite, bins=bins)
    return {"bin_edges": edges.tolist(), "counts": counts.tolist()}


def evaluate_quality(
    protocol: ProtocolScores, item_quality: np.ndarray, limits: Sequence[float]
) -> tuple[dict[str, Any], EDCCurve]:
    """The EDC and pAUC fields of a results row for one method's item qualities."""
    q_a = item_quality[protocol.mated_a]
    q_b = item_quality[protocol.mated_b]
    if np.isnan(q_a).any() or np.isnan(q_b).any():
        raise MetricInputError("some mated comparisons refer to items without a quality score")
    curve = edc(
        mated_scores=protocol.mated_scores,
        mated_pair_quality=pair_quality(q_a, q_b),
        threshold=protocol.threshold,
        fmr=protocol.fmr,
    )
    normalised: dict[str, float | None] = {}
    raw: dict[str, float] = {}
    for limit in limits:
        value = pauc(curve, limit)
        normalised[limit_key(limit)] = None if math.isnan(value) else value
        raw[limit_key(limit)] = pauc(curve, limit, normalize=False)
    fields: dict[str, Any] = {
        "convention": curve.convention,
        "fmr": protocol.fmr,
        "threshold": protocol.threshold,
        "fnmr_at_zero": curve.fnmr_at_zero,
        "n_mated": curve.n_mated,
        "n_non_mated": protocol.n_non_mated,
        "pauc": normalised,
        "pauc_raw": raw,
        "pauc_null_reason": (
            "FNMR at 0 % discard is 0: nothing to improve, normalised pAUC undefined"
            if curve.fnmr_at_zero == 0
            else None
        ),
        "edc": {
            "discard_fraction": curve.discard_fraction.tolist(),
            "fnmr": curve.fnmr.tolist(),
            "interpolation": curve.interpolation,
        },
    }
    return fields, curve


def oriented(quality: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Quality with higher = better (the one place where directions are flipped)."""
    quality = np.asarray(quality, dtype=np.float64)
    return quality if higher_is_better else -quality


def row_identity(
    *,
    dataset: str,
    fr_model: str,
    method: str,
    labels: Mapping[str, str],
    method_version: str,
    quality_fr_model: str | None,
) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "dataset_label": labels.get(f"dataset:{dataset}", dataset),
        "fr_model": fr_model,
        "fr_model_label": labels.get(f"fr_model:{fr_model}", fr_model),
        "method": method,
        "method_label": labels.get(f"method:{method}", method),
        "method_version": method_version,
        "quality_fr_model": quality_fr_model,
    }


def result_row(
    protocol: ProtocolScores,
    item_quality: np.ndarray,
    limits: Sequence[float],
    *,
    dataset: str,
    fr_model: str,
    method: str,
    labels: Mapping[str, str],
    method_version: str | None,
    quality_fr_model: str | None,
    n_failures: int,
    runtime: Mapping[str, Any] | None,
    sample_quality: np.ndarray,
    template_quality_rule: str | None = None,
) -> dict[str, Any]:
    """One row of ``results.json`` (see :mod:`fiqabench.results`): the one builder used by
    ``fiqabench run`` and ``fiqabench evaluate``, so both give identical rows.

    ``item_quality`` is per compared item (samples, or templates); ``sample_quality`` is per
    image, for the histogram.
    """
    fields, _ = evaluate_quality(protocol, item_quality, [float(x) for x in limits])
    row = row_identity(dataset=dataset, fr_model=fr_model, method=method, labels=labels,
                       method_version=method_version, quality_fr_model=quality_fr_model)
    row.update(fields)
    row["n_failures"] = n_failures
    row["template_quality_rule"] = template_quality_rule
    row["runtime_ms_per_image"] = dict(runtime) if runtime is not None else None
    row["quality_histogram"] = quality_histogram(sample_quality)
    return row


def fr_sanity(scores: np.ndarray, mated: np.ndarray, folds: np.ndarray | None = None) -> dict[str, Any]:
    """FR sanity figures of one dataset x FR model from its comparison scores (no recomputation):
    10-fold verification accuracy when the protocol has folds (LFW and its relatives), else TAR
    at FAR 1e-4 and 1e-5 (IJB-B/C, pair lists without folds); see
    :mod:`fiqabench.metrics.verification`. A figure that cannot be computed is null with a
    ``note`` (never an error: these figures check the FR model, they are not the benchmark).

    >>> r = fr_sanity(np.array([0.9, 0.4, 0.6, 0.5]), np.array([1, 0, 1, 0]), folds=np.array([0, 0, 1, 1]))
    >>> r["kfold_accuracy"]["accuracy"], r["kfold_accuracy"]["n_folds"], r["tar_at_far"]
    (0.75, 2, None)
    """
    from fiqabench.metrics.verification import kfold_accuracy, tar_at_far

    out: dict[str, Any] = {"kfold_accuracy": None, "tar_at_far": None, "note": None}
    try:
        if folds is not None:
            accuracy = kfold_accuracy(scores, mated, folds)
            out["kfold_accuracy"] = {**accuracy.as_dict(), "n_folds": len(accuracy.fold_accuracy)}
        else:
            out["tar_at_far"] = [t.as_dict() for t in tar_at_far(scores, mated, SANITY_FARS)]
    except MetricInputError as exc:
        out["note"] = str(exc)
    return out
