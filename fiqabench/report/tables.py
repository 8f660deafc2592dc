"""``results.json`` -> pandas frames in the layout of the papers' tables.

Pure functions: no I/O and no formatting beyond what ranking needs. The LaTeX, Markdown, CSV
and Parquet writers all render these frames, so every format shows the same numbers.

- :func:`pauc_tables`: for one discard limit, one :class:`PaucTable` per FR model (methods as
  rows, datasets as columns plus ``Avg.``), as in Table 2 of DifFIQA (Babnik et al. 2023).
- :func:`runtime_table`: one row per (method, device, host), as in its Table 3.
- :func:`results_frame` and :func:`edc_frame`: every row's scalars and every EDC point, long.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from fiqabench.results import MethodKey, Results, limit_key, parse as load

__all__ = [
    "AVG",
    "PaucTable",
    "RuntimeTable",
    "dense_ranks",
    "fr_sanity_rows",
    "format_ms",
    "edc_frame",
    "pauc_tables",
    "pauc_wide_frame",
    "printed",
    "results_frame",
    "runtime_table",
]

#: The average column's name.
AVG = "Avg."
#: Decimals printed for pAUC; ties and ranks are decided at this precision.
DECIMALS = 3


def printed(value: float, decimals: int = DECIMALS) -> float:
    """``value`` as it reads when printed with ``decimals`` decimals.

    >>> printed(0.8124), printed(0.8125), printed(0.81251)
    (0.812, 0.812, 0.813)
    """
    return float(f"{value:.{decimals}f}")


def format_ms(value: float, scale: float | None = None) -> str:
    """Milliseconds with decimals that suit the size of ``scale`` (default: the value itself).

    Pass the mean as ``scale`` when printing its std, so ``mean ± std`` share their decimals.

    >>> format_ms(120.54), format_ms(3.214), format_ms(0.0123), format_ms(3.2, scale=120.5)
    ('120.5', '3.21', '0.012', '3.2')
    >>> format_ms(0.00043), format_ms(0.0)
    ('0.00043', '0.000')
    """
    size = abs(value if scale is None else scale)
    if size >= 100:
        decimals = 1
    elif size >= 1:
        decimals = 2
    else:
        # Two significant digits however small (trivial baselines take microseconds).
        decimals = max(3, 1 - math.floor(math.log10(size))) if size > 0 else 3
    return f"{value:.{decimals}f}"


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def dense_ranks(values: Sequence[float | None], decimals: int = DECIMALS) -> list[int | None]:
    """Dense ranks, 1 for the lowest, of ``values`` as printed; equal printed values share a rank.

    ``None`` and NaN get no rank. Dense: after two values tied for first, the next is second.

    >>> dense_ranks([0.8121, 0.8124, 0.9, None, 0.75])
    [2, 2, 3, None, 1]
    >>> dense_ranks([0.7, 0.7004, 0.73, 0.76])
    [1, 1, 2, 3]
    """
    shown = [None if _missing(v) else printed(float(v), decimals) for v in values]  # type: ignore[arg-type]
    order = {value: rank for rank, value in enumerate(sorted({v for v in shown if v is not None}), start=1)}
    return [None if v is None else order[v] for v in shown]


@dataclass(frozen=True)
class PaucTable:
    """Normalised pAUC for one FR model at one discard limit (lower is better).

    ``values`` has one row per method key (``(method, convention)``, in order of first
    appearance) and one column per dataset name plus :data:`AVG`; NaN where there is no value.
    A NaN cell is *null* (the row exists, pAUC is undefined, see ``null_reasons``) or *missing*
    (the method was not evaluated there). The average is over the datasets with a value;
    ``n_averaged`` says how many.
    """

    fr_model: str
    fr_model_label: str
    limit: float
    fmr: float | None
    values: pd.DataFrame
    #: ``(method key, dataset) -> reason`` for null cells.
    null_reasons: Mapping[tuple[MethodKey, str], str]
    n_averaged: pd.Series
    method_labels: Mapping[MethodKey, str]
    dataset_labels: Mapping[str, str]
    #: Method keys whose EDC is linearly interpolated (``erc-recomputed``).
    linear: frozenset[MethodKey]
    #: ``(method key, dataset) -> reason`` for cells whose method is not independent of the
    #: dataset (rows with ``leakage``, e.g. SER-FIQ on XQLFW): marked with a dagger.
    leakage: Mapping[tuple[MethodKey, str], str] = dataclasses.field(default_factory=dict)

    @property
    def datasets(self) -> list[str]:
        return [c for c in self.values.columns if c != AVG]

    @property
    def keys(self) -> list[MethodKey]:
        return list(self.values.index)

    def state(self, key: MethodKey, column: str) -> str:
        """``value``, ``null`` or ``missing`` for a dataset cell; for ``Avg.`` also ``partial``."""
        if column == AVG:
            n = int(self.n_averaged[key])
            if n == 0:
                return "null" if any(k == key for k, _ in self.null_reasons) else "missing"
            return "partial" if n < len(self.datasets) else "value"
        if not _missing(self.values.at[key, column]):
            return "value"
        return "null" if (key, column) in self.null_reasons else "missing"

    def ranks(self, column: str) -> dict[MethodKey, int | None]:
        """Dense ranks of ``column`` at the printed precision (1 = lowest = best)."""
        column_values = [self.values.at[key, column] for key in self.keys]
        return dict(zip(self.keys, dense_ranks(column_values), strict=True))


def pauc_tables(results: Mapping[str, Any] | Results, limit: float) -> list[PaucTable]:
    """One :class:`PaucTable` per FR model (in order of appearance) at discard limit ``limit``.

    Columns are every dataset of the document, so all FR model blocks line up in one tabular.
    """
    view = load(results)
    key = limit_key(limit)
    tables = []
    for fr_model in view.fr_models:
        rows = [row for row in view.rows if row.fr_model == fr_model]
        keys = [k for k in view.method_keys if any(row.key == k for row in rows)]
        index = pd.MultiIndex.from_tuples(keys, names=["method", "convention"])
        values = pd.DataFrame(math.nan, index=index, columns=[*view.datasets, AVG], dtype=float)
        null_reasons: dict[tuple[MethodKey, str], str] = {}
        leakage: dict[tuple[MethodKey, str], str] = {}
        for row in rows:
            if row.data.get("leakage"):
                leakage[(row.key, row.dataset)] = str(row.data["leakage"])
            value = row.pauc.get(key)
            if value is None:
                null_reasons[(row.key, row.dataset)] = row.pauc_null_reason or (
                    f"no pAUC at discard limit {key}"
                )
            else:
                values.at[row.key, row.dataset] = value
        per_dataset = values[list(view.datasets)]
        # skipna: the average covers the datasets that have a value; the count marks partial ones.
        values[AVG] = per_dataset.mean(axis=1, skipna=True)
        tables.append(
            PaucTable(
                fr_model=fr_model,
                fr_model_label=view.fr_model_labels[fr_model],
                limit=float(limit),
                fmr=view.fmr,
                values=values,
                null_reasons=null_reasons,
                n_averaged=per_dataset.notna().sum(axis=1).astype(int),
                method_labels={k: view.method_label(k) for k in keys},
                dataset_labels=dict(view.dataset_labels),
                linear=frozenset(k for k in keys if view.is_linear(k)),
                leakage=leakage,
            )
        )
    return tables


def pauc_wide_frame(results: Mapping[str, Any] | Results, limit: float) -> pd.DataFrame:
    """The pAUC tables at ``limit`` stacked into one wide frame (one row per FR model x method).

    Columns: ``fr_model, method, convention, method_label``, one per dataset name, ``avg`` and
    ``n_avg`` (how many datasets the average covers).
    """
    view = load(results)
    frames = []
    for table in pauc_tables(view, limit):
        frame = table.values.rename(columns={AVG: "avg"}).reset_index()
        frame.insert(0, "fr_model", table.fr_model)
        frame.insert(3, "method_label", [table.method_labels[k] for k in table.keys])
        frame["n_avg"] = table.n_averaged.to_numpy()
        frames.append(frame)
    if not frames:
        columns = ["fr_model", "method", "convention", "method_label", *view.datasets, "avg", "n_avg"]
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class RuntimeTable:
    """Runtime per image, one row per (method, device, host), in order of first appearance.

    ``frame`` columns: ``method, method_label, device, host, mean, std, median, batch_size,
    n_batches, flagged``. ``reference`` is the most common ``(host, device)``; rows measured
    elsewhere are ``flagged`` because their times are not comparable with the others.
    """

    frame: pd.DataFrame
    reference: tuple[str, str] | None


def _pool(measurements: list[Mapping[str, Any]]) -> tuple[float, float, float, int]:
    """Mean, std (ddof=0), median and batch count of the union of several measurements.

    The timed batches themselves are not in ``results.json``, but mean and population std of
    their union follow exactly from each part's count, mean and std. A median cannot be pooled,
    so it is NaN for more than one distinct measurement.

    >>> _pool([{"mean": 10.0, "std": 0.0, "n_batches": 2}, {"mean": 20.0, "std": 0.0, "n_batches": 2}])
    (15.0, 5.0, nan, 4)
    """
    counts = [int(m.get("n_batches") or 1) for m in measurements]
    total = sum(counts)
    mean = sum(n * float(m["mean"]) for n, m in zip(counts, measurements, strict=True)) / total
    second = (
        sum(
            n * (float(m["std"]) ** 2 + float(m["mean"]) ** 2)
            for n, m in zip(counts, measurements, strict=True)
        )
        / total
    )
    std = (
        math.sqrt(max(second - mean * mean, 0.0)) if len(measurements) > 1 else float(measurements[0]["std"])
    )
    median = measurements[0].get("median") if len(measurements) == 1 else None
    return mean, std, math.nan if median is None else float(median), total


def runtime_table(results: Mapping[str, Any] | Results) -> RuntimeTable:
    """Runtime per (method, device, host); rows without ``runtime_ms_per_image`` are skipped.

    The runner repeats one measurement on every (dataset, FR model) row of a method; identical
    copies count once, distinct measurements are pooled (see :func:`_pool`).
    """
    view = load(results)
    groups: dict[tuple[str, str, str], dict[str, Mapping[str, Any]]] = {}
    for row in view.rows:
        if row.runtime is None:
            continue
        device = str(row.runtime.get("device") or "unknown")
        host = str(row.runtime.get("host") or "unknown")
        canonical = json.dumps(row.runtime, sort_keys=True, default=str)
        groups.setdefault((row.method, device, host), {}).setdefault(canonical, row.runtime)
    records = []
    for (method, device, host), distinct in groups.items():
        measurements = list(distinct.values())
        mean, std, median, n_batches = _pool(measurements)
        sizes = sorted({int(m["batch_size"]) for m in measurements if m.get("batch_size") is not None})
        batch_size: int | str | None = sizes[0] if len(sizes) == 1 else (", ".join(map(str, sizes)) or None)
        records.append(
            {
                "method": method,
                "method_label": view.method_labels[method],
                "device": device,
                "host": host,
                "mean": mean,
                "std": std,
                "median": median,
                "batch_size": batch_size,
                "n_batches": n_batches,
            }
        )
    columns = ["method", "method_label", "device", "host", "mean", "std", "median", "batch_size", "n_batches"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    reference = None
    if records:
        # most_common keeps first-seen order among equal counts, so ties go to the first machine.
        reference = Counter(zip(frame["host"], frame["device"], strict=True)).most_common(1)[0][0]
    frame["flagged"] = [
        (host, device) != reference for host, device in zip(frame["host"], frame["device"], strict=True)
    ]
    return RuntimeTable(frame=frame, reference=reference)


def results_frame(results: Mapping[str, Any] | Results) -> pd.DataFrame:
    """Every result row's scalar fields, one line per row of ``results.json``, in file order."""
    view = load(results)
    records = []
    for row in view.rows:
        data = row.data
        runtime = row.runtime or {}
        record: dict[str, Any] = {
            "dataset": row.dataset,
            "fr_model": row.fr_model,
            "method": row.method,
            "method_version": data.get("method_version"),
            "quality_fr_model": data.get("quality_fr_model"),
            "convention": row.convention,
            "fmr": data.get("fmr"),
            "threshold": data.get("threshold"),
            "fnmr_at_zero": data.get("fnmr_at_zero"),
            "n_mated": data.get("n_mated"),
            "n_non_mated": data.get("n_non_mated"),
        }
        pauc_raw = data.get("pauc_raw") or {}
        for limit in view.limits:
            record[f"pauc_{limit_key(limit)}"] = row.pauc.get(limit_key(limit))
        for limit in view.limits:
            raw = pauc_raw.get(limit_key(limit)) if isinstance(pauc_raw, Mapping) else None
            record[f"pauc_raw_{limit_key(limit)}"] = raw
        record["pauc_null_reason"] = row.pauc_null_reason
        record["leakage"] = data.get("leakage")
        record["n_failures"] = data.get("n_failures")
        record["runtime_ms_mean"] = runtime.get("mean")
        record["runtime_ms_std"] = runtime.get("std")
        record["runtime_ms_median"] = runtime.get("median")
        record["runtime_batch_size"] = runtime.get("batch_size")
        record["runtime_device"] = runtime.get("device")
        record["runtime_host"] = runtime.get("host")
        records.append(record)
    columns = [
        "dataset",
        "fr_model",
        "method",
        "method_version",
        "quality_fr_model",
        "convention",
        "fmr",
        "threshold",
        "fnmr_at_zero",
        "n_mated",
        "n_non_mated",
        *(f"pauc_{limit_key(limit)}" for limit in view.limits),
        *(f"pauc_raw_{limit_key(limit)}" for limit in view.limits),
        "pauc_null_reason",
        "leakage",
        "n_failures",
        "runtime_ms_mean",
        "runtime_ms_std",
        "runtime_ms_median",
        "runtime_batch_size",
        "runtime_device",
        "runtime_host",
    ]
    frame = pd.DataFrame.from_records(records, columns=columns)
    for column in ("n_mated", "n_non_mated", "n_failures", "runtime_batch_size"):
        if column in frame:
            # nullable ints: a missing count must not turn the column into floats.
            frame[column] = frame[column].astype("Int64")
    return frame


EDC_COLUMNS = ["dataset", "fr_model", "method", "convention", "discard_fraction", "fnmr"]


def edc_frame(results: Mapping[str, Any] | Results) -> pd.DataFrame:
    """Every EDC point, long format: ``dataset, fr_model, method, convention, discard_fraction, fnmr``."""
    view = load(results)
    parts = []
    for row in view.rows:
        points = view.edc(row)
        if points is None:
            continue
        x, y = points
        parts.append(
            pd.DataFrame(
                {
                    "dataset": row.dataset,
                    "fr_model": row.fr_model,
                    "method": row.method,
                    "convention": row.convention,
                    "discard_fraction": x,
                    "fnmr": y,
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=EDC_COLUMNS)
    return pd.concat(parts, ignore_index=True)[EDC_COLUMNS]


def fr_sanity_rows(results: Mapping[str, Any] | Results) -> list[dict[str, Any]]:
    """The FR sanity figures of every dataset x FR model (``protocols[].fr_sanity``), one dict
    each: ``dataset_label, fr_model_label, figure`` (what was measured) and ``value`` (text),
    in file order. Empty for files written before these figures existed."""
    view = load(results)
    rows = []
    for protocol in view.document.get("protocols") or []:
        sanity = protocol.get("fr_sanity") if isinstance(protocol, Mapping) else None
        if not isinstance(sanity, Mapping):
            continue
        dataset, fr_model = str(protocol.get("dataset")), str(protocol.get("fr_model"))
        base = {"dataset_label": view.dataset_labels.get(dataset, dataset),
                "fr_model_label": view.fr_model_labels.get(fr_model, fr_model)}
        accuracy = sanity.get("kfold_accuracy")
        if accuracy:
            rows.append({**base, "figure": f"{accuracy['n_folds']}-fold verification accuracy",
                         "value": f"{100 * accuracy['accuracy']:.2f} % ± {100 * accuracy['std']:.2f}"})
        for tar in sanity.get("tar_at_far") or []:
            from fiqabench.results import fmr_text

            note = "" if tar.get("resolved", True) else " (too few non-mated comparisons to resolve this FAR)"
            rows.append({**base, "figure": f"TAR at FAR {fmr_text(float(tar['far']))}",
                         "value": f"{100 * tar['tar']:.2f} %{note}"})
        if not accuracy and not sanity.get("tar_at_far"):
            rows.append({**base, "figure": "–", "value": f"n/a: {sanity.get('note')}"})
    return rows
