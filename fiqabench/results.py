"""``results.json``: the one versioned record of a run, from which every table and plot is made.

This module is the schema: :class:`ResultsDocument` and the types below it say what every field
holds; :func:`make_document` and :func:`write_results` write it (``run``, ``evaluate``),
:func:`load_results` reads a file and :func:`parse` checks a document and indexes it for the
report writers, which receive it parsed (:class:`Results`). Standard library only: no numpy, no
torch, so a report can be regenerated anywhere.

``pauc`` values are normalised by FNMR(0) x limit and are ``null`` (with ``pauc_null_reason``)
when FNMR(0) is 0.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypedDict

from fiqabench import __version__
from fiqabench.errors import InputFormatError
from fiqabench.files import atomic_write_text

__all__ = [
    "ERC_CONVENTION",
    "SCHEMA_VERSION",
    "STEP_CONVENTION",
    "FRSanityRecord",
    "MethodKey",
    "ProtocolRecord",
    "Results",
    "ResultsDocument",
    "ResultRow",
    "Row",
    "fmr_latex",
    "fmr_text",
    "limit_key",
    "load_results",
    "make_document",
    "parse",
    "write_results",
]

#: Bump when a field changes meaning or goes away; readers refuse other versions.
SCHEMA_VERSION = 1
#: Fields every row of a results file has (``run`` and ``evaluate`` write them all).
REQUIRED_ROW_FIELDS = (
    "dataset", "fr_model", "method", "fmr", "threshold", "fnmr_at_zero", "n_mated", "n_non_mated", "pauc",
)


class RuntimeRecord(TypedDict, total=False):
    """``runtime_ms_per_image``: milliseconds per image over the timed batches."""

    mean: float
    std: float
    median: float
    #: batches timed, and the warm-up batches left out of the statistics
    n_batches: int
    warmup_batches: int
    #: the batch size actually used, where it ran
    batch_size: int
    device: str
    host: str


class EDCRecord(TypedDict):
    """``edc``: the error-versus-discard curve, FNMR at the fixed threshold."""

    #: fraction of mated comparisons discarded (x), from 0
    discard_fraction: list[float]
    #: FNMR at each x
    fnmr: list[float]
    #: ``step`` (exact, right-continuous) or ``linear`` (legacy ERC)
    interpolation: str


class HistogramRecord(TypedDict):
    bin_edges: list[float]
    counts: list[int]


class ResultRow(TypedDict, total=False):
    """One dataset x evaluation FR model x method."""

    dataset: str
    dataset_label: str
    #: the evaluation FR model (comparison scores)
    fr_model: str
    fr_model_label: str
    method: str
    method_label: str
    method_version: str | None
    #: the FR model the method used inside itself (None: none)
    quality_fr_model: str | None
    #: ``schlett2023-fixed-threshold`` or ``erc-recomputed``
    convention: str
    fmr: float
    #: similarity threshold fixed once at 0 % discard from all non-mated scores
    threshold: float
    fnmr_at_zero: float
    n_mated: int
    n_non_mated: int
    #: normalised pAUC per discard limit, keyed by :func:`limit_key` (``"0.2"``); null when FNMR(0) = 0
    pauc: dict[str, float | None]
    #: the same areas before normalisation
    pauc_raw: dict[str, float]
    pauc_null_reason: str | None
    #: images the method failed on (ranked lowest under ``--on-failure lowest``)
    n_failures: int
    #: ``min``/``mean`` for template protocols, else None
    template_quality_rule: str | None
    runtime_ms_per_image: RuntimeRecord | None
    edc: EDCRecord
    quality_histogram: HistogramRecord | None
    #: why this method's scores are not independent of this dataset (the dataset's registered
    #: ``leakage``, e.g. SER-FIQ on XQLFW), else None; tables mark such cells with a dagger
    leakage: str | None


class KFoldAccuracyRecord(TypedDict):
    """``fr_sanity.kfold_accuracy``: LFW-protocol verification accuracy (threshold chosen on the
    other folds, :func:`fiqabench.metrics.verification.kfold_accuracy`)."""

    #: mean and standard deviation over folds (fractions, not percent)
    accuracy: float
    std: float
    n_folds: int
    fold_accuracy: list[float]
    #: the similarity threshold applied to each held-out fold
    thresholds: list[float]


class TarAtFarRecord(TypedDict):
    """One entry of ``fr_sanity.tar_at_far`` (:func:`fiqabench.metrics.verification.tar_at_far`)."""

    #: the target FAR, and the FAR the threshold achieves (never above the target)
    far: float
    achieved_far: float
    tar: float
    threshold: float
    #: False when far x non-mated comparisons < 1: the target cannot be resolved, TAR is then at FAR 0
    resolved: bool


class FRSanityRecord(TypedDict):
    """``protocols[].fr_sanity``: does the FR model work on this dataset at all (a wrong alignment
    or colour order shows here first)? From the cached comparison scores."""

    #: datasets with verification folds (LFW, CALFW, CPLFW, CFP, XQLFW, .bin files); else None
    kfold_accuracy: KFoldAccuracyRecord | None
    #: template protocols (IJB-B/C) and pair protocols without folds: FAR 1e-4 and 1e-5; else None
    tar_at_far: list[TarAtFarRecord] | None
    #: why a figure could not be computed (e.g. a single fold), else None
    note: str | None


class ProtocolRecord(TypedDict, total=False):
    """One dataset x evaluation FR model."""

    dataset: str
    fr_model: str
    fmr: float
    #: similarity threshold at ``fmr`` from all non-mated scores
    threshold: float
    n_mated: int
    n_non_mated: int
    #: template protocols: the pooling switches (flip, norm_score, detector_score); else None (``run`` only)
    template_pooling: dict[str, Any] | None
    fr_sanity: FRSanityRecord


class ResultsDocument(TypedDict):
    schema_version: int
    #: ISO-8601 UTC
    created: str
    fiqabench_version: str
    #: host, platform, cpu, cpu_count, python, numpy, torch, device
    environment: dict[str, Any]
    #: the full run configuration (``run``) or the inputs (``evaluate``)
    config: dict[str, Any]
    #: the EDC convention: curve, convention, pair_quality, interpolation, threshold
    metric: dict[str, Any]
    #: ``{"datasets"|"fr_models"|"methods": {name: {version, options, fingerprint, plugin, distribution, reference}}}``;
    #: a dataset with ``details()`` (:class:`fiqabench.api.DatasetWithDetails`) adds ``details``:
    #: how it was read (the real-benchmark readers: ``alignment``, ``subjects_source``,
    #: ``detection`` with the images dlib found no face or several faces in)
    components: dict[str, Any]
    #: one per dataset x evaluation FR model
    protocols: list[ProtocolRecord]
    results: list[ResultRow]


def package_version(package: str) -> str | None:
    """An installed distribution's version from its metadata (None: not installed); imports nothing."""
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: str = "cpu") -> dict[str, Any]:
    """Host and library versions (read from package metadata: torch is not imported for this)."""
    version = package_version
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": version("numpy"),
        "torch": version("torch"),
        "device": device,
    }


def _jsonable(value: Any) -> Any:
    """NaN and infinities are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def make_document(
    *,
    config: dict[str, Any],
    results: list[dict[str, Any]],
    components: dict[str, Any],
    protocols: list[dict[str, Any]],
    device: str,
    metric: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fiqabench_version": __version__,
        "environment": environment(device),
        "config": config,
        "metric": metric
        or {
            "curve": "fnm-edc",
            "convention": STEP_CONVENTION,
            "pair_quality": "min",
            "interpolation": "step",
            "threshold": "fixed once at 0 % discard from all non-mated scores",
        },
        "components": components,
        "protocols": protocols,
        "results": results,
    }


def write_results(document: dict[str, Any], out_dir: Path) -> Path:
    path = Path(out_dir) / "results.json"
    atomic_write_text(path, json.dumps(_jsonable(document), indent=1, allow_nan=False) + "\n")
    return path


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``results.json`` (a file, or a run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise InputFormatError(path, None, None, "no such file; pass a run directory or its results.json")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputFormatError(path, exc.lineno, None, f"invalid JSON: {exc.msg}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFormatError(path, None, None, f"cannot read: {exc}") from exc
    if not isinstance(document, dict):
        raise InputFormatError(path, None, None, "expected a JSON object")
    parse(document, str(path))  # the writers' checks, naming this file
    for index, row in enumerate(document["results"]):
        missing = [field for field in REQUIRED_ROW_FIELDS if field not in row]
        if missing:
            raise InputFormatError(path, None, f"results[{index}]", f"missing {', '.join(missing)}")
    return document


# -- the parsed view the report writers receive ---------------------------------------------
STEP_CONVENTION = "schlett2023-fixed-threshold"
#: Legacy ERC curves, recomputed on a grid and linearly interpolated (CR-FIQA ``ERC/``).
ERC_CONVENTION = "erc-recomputed"

#: A table row: the method and the EDC convention its numbers follow. The same method under two
#: conventions gives two rows, since the numbers are not comparable.
MethodKey = tuple[str, str]


def limit_key(limit: float) -> str:
    """The key of a discard limit in ``pauc`` (``format(limit, "g")``).

    >>> limit_key(0.2), limit_key(0.30000000000000004), limit_key(1)
    ('0.2', '0.3', '1')
    """
    return format(float(limit), "g")


def _fmr_parts(fmr: float) -> tuple[str, int]:
    exponent = math.floor(math.log10(fmr))
    mantissa = format(round(fmr / 10.0**exponent, 6), "g")
    if mantissa == "10":  # 0.000999999... rounds up to the next power
        mantissa, exponent = "1", exponent + 1
    return mantissa, exponent


def fmr_latex(fmr: float) -> str:
    r"""The FMR in LaTeX math, as papers print it.

    >>> fmr_latex(0.001), fmr_latex(5e-4), fmr_latex(0.0001)
    ('$10^{-3}$', '$5\\times10^{-4}$', '$10^{-4}$')
    """
    mantissa, exponent = _fmr_parts(fmr)
    if mantissa == "1":
        return f"$10^{{{exponent}}}$"
    return f"${mantissa}\\times10^{{{exponent}}}$"


def fmr_text(fmr: float) -> str:
    """The FMR in plain text.

    >>> fmr_text(0.001), fmr_text(5e-4)
    ('1e-3', '5e-4')
    """
    mantissa, exponent = _fmr_parts(fmr)
    return f"{mantissa}e{exponent}"


@dataclass(frozen=True)
class Row:
    """One (dataset, FR model, method) result with its labels resolved."""

    index: int
    dataset: str
    fr_model: str
    method: str
    dataset_label: str
    fr_model_label: str
    method_label: str
    convention: str
    #: The EDC is linearly interpolated (``erc-recomputed``), not an exact step function.
    linear: bool
    #: ``limit_key -> value``; ``None`` where the file says ``null`` (or NaN).
    pauc: Mapping[str, float | None]
    pauc_null_reason: str | None
    runtime: Mapping[str, Any] | None
    data: Mapping[str, Any] = field(repr=False)

    @property
    def key(self) -> MethodKey:
        return (self.method, self.convention)

    @property
    def where(self) -> str:
        return f"results[{self.index}]"


@dataclass(frozen=True)
class Results:
    """A checked ``results.json`` document; names are listed in order of first appearance."""

    source: str
    document: Mapping[str, Any]
    rows: tuple[Row, ...]
    fmr: float | None
    limits: tuple[float, ...]
    #: The document's main EDC convention (``metric.convention``).
    convention: str
    datasets: tuple[str, ...]
    fr_models: tuple[str, ...]
    methods: tuple[str, ...]
    method_keys: tuple[MethodKey, ...]
    dataset_labels: Mapping[str, str]
    fr_model_labels: Mapping[str, str]
    method_labels: Mapping[str, str]

    def error(self, field_name: str, message: str) -> InputFormatError:
        return InputFormatError(self.source, None, field_name, message)

    def method_label(self, key: MethodKey) -> str:
        """The method's label; a method shown under two conventions names the other one."""
        method, convention = key
        label = self.method_labels[method]
        if convention != self.convention and sum(k[0] == method for k in self.method_keys) > 1:
            label = f"{label} ({convention})"
        return label

    def is_linear(self, key: MethodKey) -> bool:
        return any(row.linear for row in self.rows if row.key == key)

    @property
    def max_limit(self) -> float:
        """The x limit of EDC plots: the largest discard limit (0.3 when none is configured)."""
        return max(self.limits) if self.limits else 0.3

    def edc(self, row: Row) -> tuple[list[float], list[float]] | None:
        """The row's EDC points, checked, or ``None`` when the row has none."""
        curve = row.data.get("edc")
        if curve is None:
            return None
        where = f"{row.where}.edc"
        if not isinstance(curve, Mapping):
            raise self.error(where, f"expected an object, got {type(curve).__name__}")
        x = self._numbers(curve.get("discard_fraction"), f"{where}.discard_fraction")
        y = self._numbers(curve.get("fnmr"), f"{where}.fnmr")
        if len(x) != len(y) or not x:
            raise self.error(
                where,
                f"discard_fraction and fnmr must be non-empty and equally long, got {len(x)} and {len(y)}",
            )
        return x, y

    def histogram(self, row: Row) -> tuple[list[float], list[float]] | None:
        """The row's quality histogram ``(bin_edges, counts)``, checked, or ``None``."""
        hist = row.data.get("quality_histogram")
        if hist is None:
            return None
        where = f"{row.where}.quality_histogram"
        if not isinstance(hist, Mapping):
            raise self.error(where, f"expected an object, got {type(hist).__name__}")
        edges = self._numbers(hist.get("bin_edges"), f"{where}.bin_edges")
        counts = self._numbers(hist.get("counts"), f"{where}.counts")
        if len(edges) != len(counts) + 1 or not counts:
            raise self.error(
                where, f"expected len(bin_edges) == len(counts) + 1 > 1, got {len(edges)} and {len(counts)}"
            )
        return edges, counts

    def _numbers(self, values: object, where: str) -> list[float]:
        if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
            raise self.error(where, f"expected a list of numbers, got {type(values).__name__}")
        out = []
        for i, value in enumerate(values):
            if not _is_number(value):
                raise self.error(f"{where}[{i}]", f"expected a number, got {value!r}")
            out.append(float(value))
        return out


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(row: Mapping[str, Any], key: str, default: str | None, where: str, source: str) -> str:
    value = row.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, str) or not value:
        raise InputFormatError(source, None, f"{where}.{key}", f"expected a non-empty string, got {value!r}")
    return value


def _check_runtime(value: object, where: str, source: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InputFormatError(source, None, where, f"expected an object or null, got {type(value).__name__}")
    for key in ("mean", "std"):
        if not _is_number(value.get(key)):
            raise InputFormatError(
                source, None, f"{where}.{key}", f"expected a number, got {value.get(key)!r}"
            )
    for key in ("median", "n_batches", "batch_size"):
        if value.get(key) is not None and not _is_number(value.get(key)):
            raise InputFormatError(
                source, None, f"{where}.{key}", f"expected a number, got {value.get(key)!r}"
            )
    return value


def parse(results: Mapping[str, Any] | Results, source: str = "results.json") -> Results:
    """Check ``results`` (the parsed ``results.json``) and index it for the writers.

    Raises :class:`~fiqabench.errors.InputFormatError` naming the field for a wrong
    ``schema_version`` or a missing or mistyped field that a writer needs.
    """
    if isinstance(results, Results):
        return results
    if not isinstance(results, Mapping):
        raise InputFormatError(source, None, None, f"expected a JSON object, got {type(results).__name__}")
    version = results.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputFormatError(
            source,
            None,
            "schema_version",
            f"expected {SCHEMA_VERSION}, got {version!r}; this fiqabench reads results schema version"
            f" {SCHEMA_VERSION} (regenerate the file or use the fiqabench version that wrote it)",
        )
    config = results.get("config") or {}
    metric = results.get("metric") or {}
    if not isinstance(config, Mapping):
        raise InputFormatError(source, None, "config", "expected an object")
    if not isinstance(metric, Mapping):
        raise InputFormatError(source, None, "metric", "expected an object")
    main_convention = metric.get("convention") or STEP_CONVENTION
    raw_rows = results.get("results")
    if not isinstance(raw_rows, list):
        raise InputFormatError(
            source, None, "results", f"expected a list of rows, got {type(raw_rows).__name__}"
        )

    rows: list[Row] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    labels: dict[str, dict[str, str]] = {"dataset": {}, "fr_model": {}, "method": {}}
    method_keys: dict[MethodKey, None] = {}
    row_limit_keys: dict[str, None] = {}
    for index, raw in enumerate(raw_rows):
        where = f"results[{index}]"
        if not isinstance(raw, Mapping):
            raise InputFormatError(source, None, where, f"expected an object, got {type(raw).__name__}")
        names = {kind: _text(raw, kind, None, where, source) for kind in labels}
        for kind, name in names.items():
            # The first label seen wins, like the order: tables need one label per name.
            labels[kind].setdefault(name, _text(raw, f"{kind}_label", name, where, source))
        convention = _text(raw, "convention", main_convention, where, source)
        curve = raw.get("edc")
        interpolation = curve.get("interpolation") if isinstance(curve, Mapping) else None
        linear = (interpolation or ("linear" if convention == ERC_CONVENTION else "step")) == "linear"
        pauc_raw = raw.get("pauc")
        if not isinstance(pauc_raw, Mapping):
            raise InputFormatError(
                source, None, f"{where}.pauc", f"expected an object keyed by discard limit, got {pauc_raw!r}"
            )
        pauc: dict[str, float | None] = {}
        for key, value in pauc_raw.items():
            if value is not None and not _is_number(value):
                raise InputFormatError(
                    source, None, f"{where}.pauc.{key}", f"expected a number or null, got {value!r}"
                )
            pauc[str(key)] = None if value is None or math.isnan(value) else float(value)
            row_limit_keys.setdefault(str(key))
        reason = raw.get("pauc_null_reason")
        identity = (names["dataset"], names["fr_model"], names["method"], convention)
        if identity in seen:
            raise InputFormatError(
                source,
                None,
                where,
                f"duplicate result for dataset {identity[0]!r}, FR model {identity[1]!r}, method"
                f" {identity[2]!r} ({convention}); first at results[{seen[identity]}]",
            )
        seen[identity] = index
        row = Row(
            index=index,
            dataset=names["dataset"],
            fr_model=names["fr_model"],
            method=names["method"],
            dataset_label=labels["dataset"][names["dataset"]],
            fr_model_label=labels["fr_model"][names["fr_model"]],
            method_label=labels["method"][names["method"]],
            convention=convention,
            linear=linear,
            pauc=pauc,
            pauc_null_reason=str(reason) if reason is not None else None,
            runtime=_check_runtime(raw.get("runtime_ms_per_image"), f"{where}.runtime_ms_per_image", source),
            data=raw,
        )
        rows.append(row)
        method_keys.setdefault(row.key)

    limits_raw = config.get("discard_limits")
    if limits_raw is not None:
        if not isinstance(limits_raw, list) or not all(_is_number(v) and 0.0 < v <= 1.0 for v in limits_raw):
            raise InputFormatError(
                source,
                None,
                "config.discard_limits",
                f"expected a list of numbers in (0, 1], got {limits_raw!r}",
            )
        limits = sorted({float(v) for v in limits_raw})
    else:
        try:
            limits = sorted({float(key) for key in row_limit_keys})
        except ValueError as exc:
            raise InputFormatError(
                source, None, "results[].pauc", f"keys must be discard limits: {exc}"
            ) from exc

    fmr = config.get("fmr")
    if fmr is None and rows:
        fmr = rows[0].data.get("fmr")
    if fmr is not None and not (_is_number(fmr) and 0.0 < fmr < 1.0):
        raise InputFormatError(source, None, "config.fmr", f"expected a number in (0, 1), got {fmr!r}")

    return Results(
        source=source,
        document=results,
        rows=tuple(rows),
        fmr=float(fmr) if fmr is not None else None,
        limits=tuple(limits),
        convention=main_convention,
        datasets=tuple(labels["dataset"]),
        fr_models=tuple(labels["fr_model"]),
        methods=tuple(labels["method"]),
        method_keys=tuple(method_keys),
        dataset_labels=labels["dataset"],
        fr_model_labels=labels["fr_model"],
        method_labels=labels["method"],
    )
