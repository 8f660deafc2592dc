"""Orchestration only: dataset x FR model x method, get-or-compute through the cache.

Everything is validated (names, options, availability, domains) before any computation
starts. Embeddings, comparison scores and quality scores are cached under content-addressed
keys; quality scores are keyed by the FR model the method uses inside itself, so they are shared
by every evaluation FR model.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fiqabench import __version__
from fiqabench.api import SampleBatch
from fiqabench.cache import Cache, atomic_write_text, cache_key, folder_digest
from fiqabench.config import RunConfig
from fiqabench.errors import (
    ComponentUnavailableError,
    ConfigError,
    DomainMismatchError,
    FiqabenchError,
    IncompatibleComponentsError,
    MethodFailure,
)
from fiqabench.evaluation import (
    ProtocolScores,
    apply_failure_policy,
    evaluate_quality,
    oriented,
    quality_histogram,
    row_identity,
    template_quality,
)
from fiqabench.metrics.runtime import runtime_stats
from fiqabench.registry import Entry, Registry
from fiqabench.results import make_document, write_results

log = logging.getLogger("fiqabench")

#: Samples per cache shard. Fixed (not the batch size), so a run resumes whatever --batch-size.
#: ``FIQABENCH_SHARD_SIZE`` overrides it for tests; it is part of every sharded key, so entries
#: written with another shard size are never mixed up.
SHARD_SIZE = int(os.environ.get("FIQABENCH_SHARD_SIZE", "1024"))
#: Timed batches dropped from runtime statistics at the start of each process's work on a method.
WARMUP_BATCHES = 1


@dataclass
class Component:
    """A registry entry with resolved options (not built yet)."""

    entry: Entry
    options: dict[str, Any]

    @property
    def name(self) -> str:
        return self.entry.name

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this component's results: name@version and result-affecting options."""
        values: dict[str, Any] = {}
        for key, value in sorted(self.options.items()):
            option = self.entry.options.get(key)
            if option is not None and not option.affects_result:
                continue
            if option is not None and option.is_path and value:
                value = {"sha256": _path_digest(str(value))}
            values[key] = value
        return {"name": self.entry.spec, "options": values}


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _path_digest(path: str) -> str:
    """sha256 of a file's bytes; for a folder, of its files' relative paths, sizes and modification
    times (reading every byte of a dataset folder would take minutes)."""
    p = Path(path)
    if p.is_dir():
        return "folder:" + folder_digest(p)
    if not p.is_file():
        return f"missing:{path}"
    stat = p.stat()
    memo = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _DIGESTS:
        digest = hashlib.sha256()
        with open(p, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        _DIGESTS[memo] = digest.hexdigest()
    return _DIGESTS[memo]


@dataclass
class MethodPlan:
    component: Component
    quality_fr: Component | None


@dataclass
class DatasetPlan:
    component: Component
    fr_models: list[Component]
    methods: list[MethodPlan]


@dataclass
class Plan:
    datasets: list[DatasetPlan] = field(default_factory=list)


def sample_seeds(run_seed: int, method_spec: str, dataset: str, ids: list[str] | tuple[str, ...]) -> np.ndarray:
    """Per-sample seeds from (run seed, method@version, dataset, sample id): 63-bit, stable.

    >>> s = sample_seeds(0, "random@1", "synthetic", ["a", "b"])
    >>> s.dtype, bool(s[0] != s[1]), int(sample_seeds(0, "random@1", "synthetic", ["b"])[0]) == int(s[1])
    (dtype('int64'), True, True)
    """
    prefix = f"{run_seed}|{method_spec}|{dataset}|".encode()
    out = np.empty(len(ids), dtype=np.int64)
    for i, sample_id in enumerate(ids):
        digest = hashlib.sha256(prefix + sample_id.encode()).digest()
        out[i] = int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF
    return out


def _resolve(registry: Registry, kind: str, name: str, given: Mapping[str, Any]) -> Component:
    entry = registry.get(kind, name)
    return Component(entry, entry.resolve_options(given))


def build_plan(registry: Registry, config: RunConfig) -> Plan:
    """Check every name, option, availability and domain before anything is computed."""
    for kind, table in (
        ("method", config.method_options),
        ("dataset", config.dataset_options),
        ("fr_model", config.fr_options),
    ):
        for name, given in table.items():
            # options of unknown components, and bad values for components this run does not use,
            # are errors too: a typo must not pass silently
            registry.get(kind, name).resolve_options(given)

    dataset_names = config.datasets or [
        e.name for e in registry.entries("dataset") if e.default
    ]
    if not dataset_names:
        raise ConfigError("no dataset given and none is registered as the default: pass --datasets NAME")
    plan = Plan()
    for dataset_name in dataset_names:
        dataset = _resolve(registry, "dataset", dataset_name, config.dataset_options.get(dataset_name, {}))
        reason = dataset.entry.unavailable_reason(dataset.options)
        if reason:
            raise ComponentUnavailableError(f"dataset {dataset_name!r} is unavailable: {reason}")
        domain = dataset.entry.domain
        default_fr = dataset.entry.default_fr_model
        fr_names = config.fr_models or ([default_fr] if default_fr else [])
        if not fr_names:
            raise ConfigError(
                f"dataset {dataset_name!r} has no default FR model: pass --fr-models NAME "
                f'or set fr_models = ["NAME"] in --config FILE.toml (see fiqabench list fr-models)'
            )
        fr_models = [
            _fr_component(registry, config, name, domain, dataset_name, role="evaluation") for name in fr_names
        ]
        methods: list[MethodPlan] = []
        explicit = config.methods is not None
        for method_name in config.methods or registry.names("method"):
            method = _resolve(registry, "method", method_name, config.method_options.get(method_name, {}))
            domains = method.entry.domains
            if domains and domain not in domains:
                if explicit:
                    raise DomainMismatchError(
                        f"method {method_name!r} works on {', '.join(domains)} datasets, "
                        f"but {dataset_name!r} is {domain!r}"
                    )
                continue
            reason = method.entry.unavailable_reason(method.options)
            if reason:
                if explicit:
                    raise ComponentUnavailableError(f"method {method_name!r} is unavailable: {reason}")
                log.warning("skipping method %s: %s", method_name, reason)
                continue
            quality_fr = None
            if method.entry.fr_need(method.options) != "none":
                fr_name = method.options.get("quality_fr_model") or default_fr or fr_names[0]
                quality_fr = _fr_component(registry, config, fr_name, domain, dataset_name, role="quality")
                method.options["quality_fr_model"] = fr_name
                refusal = registry.fr_refusal(method.entry, method.options, quality_fr.entry, quality_fr.options)
                if refusal:
                    raise IncompatibleComponentsError(
                        f"{refusal}: choose another with --method-option {method_name}:quality_fr_model=NAME"
                    )
            methods.append(MethodPlan(method, quality_fr))
        if not methods:
            raise ConfigError(f"no FIQA method applies to dataset {dataset_name!r}; see fiqabench list methods")
        plan.datasets.append(DatasetPlan(dataset, fr_models, methods))
    return plan


def _fr_component(
    registry: Registry, config: RunConfig, name: str, domain: str | None, dataset: str, role: str
) -> Component:
    fr = _resolve(registry, "fr_model", name, config.fr_options.get(name, {}))
    reason = fr.entry.unavailable_reason(fr.options)
    if reason:
        raise ComponentUnavailableError(f"FR model {name!r} is unavailable: {reason}")
    fr_domain = fr.entry.domain
    if domain and fr_domain and fr_domain != domain and not config.allow_domain_mismatch:
        raise DomainMismatchError(
            f"FR model {name!r} ({role}) was made for {fr_domain!r} images but dataset {dataset!r} "
            f"is {domain!r}; choose another with --fr-models, or pass --allow-domain-mismatch"
        )
    return fr


ProgressFactory = Callable[[int, str], Any]


class _NullBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def null_progress(total: int, desc: str) -> _NullBar:
    return _NullBar()


class Runner:
    """Runs a :class:`Plan`; see the module docstring."""

    def __init__(
        self,
        registry: Registry,
        config: RunConfig,
        *,
        progress: ProgressFactory = null_progress,
    ) -> None:
        self.registry = registry
        self.config = config
        self.progress = progress
        self.cache = Cache(_cache_root(config.cache_dir))
        self._fr_instances: dict[str, Any] = {}
        self.host = socket.gethostname()

    # -- building components -------------------------------------------------------------
    def _build(self, component: Component) -> Any:
        return component.entry.build(component.options, self.config.device)

    def _fr_model(self, component: Component) -> Any:
        key = cache_key(component.fingerprint())
        if key not in self._fr_instances:
            log.info("building FR model %s", component.entry.spec)
            self._fr_instances[key] = self._build(component)
        return self._fr_instances[key]

    # -- the run -------------------------------------------------------------------------
    def run(self, plan: Plan) -> dict[str, Any]:
        self.cache.ensure()
        rows: list[dict[str, Any]] = []
        protocols: list[dict[str, Any]] = []
        qualities_csv: list[tuple[str, str, str, str, float]] = []
        components: dict[str, dict[str, Any]] = {"datasets": {}, "fr_models": {}, "methods": {}}
        labels = {
            f"{e.kind}:{e.name}": e.label
            for kind in ("dataset", "fr_model", "method")
            for e in self.registry.entries(kind)
        }
        for dplan in plan.datasets:
            self._record(components["datasets"], dplan.component)
            dataset_name = dplan.component.name
            dataset = self._build(dplan.component)
            samples = dataset.samples()
            comparisons = dataset.comparisons()
            templates = dataset.templates()
            dataset_part = {
                "dataset": dplan.component.fingerprint(),
                "manifest": dataset.manifest_digest(),
            }
            protocols_by_fr: dict[str, ProtocolScores] = {}
            for fr in dplan.fr_models:
                self._record(components["fr_models"], fr)
                scores, pooling = self._comparison_scores(dataset, dataset_part, samples, comparisons, templates, fr)
                protocol = ProtocolScores.from_comparisons(
                    comparisons.a, comparisons.b, comparisons.mated, scores, float(self.config.fmr)
                )
                protocols_by_fr[fr.name] = protocol
                protocols.append(
                    {
                        "dataset": dataset_name,
                        "fr_model": fr.name,
                        "fmr": protocol.fmr,
                        "threshold": protocol.threshold,
                        "n_mated": int(protocol.mated_scores.size),
                        "n_non_mated": protocol.n_non_mated,
                        "template_pooling": pooling,
                    }
                )
            for mplan in dplan.methods:
                method = mplan.component
                self._record(components["methods"], method)
                if mplan.quality_fr is not None:
                    self._record(components["fr_models"], mplan.quality_fr)
                raw, runtime = self._quality(dataset, dataset_part, samples, mplan)
                quality = oriented(raw, method.entry.higher_is_better)
                quality, n_failures = apply_failure_policy(
                    quality,
                    on_failure=self.config.on_failure,
                    method=method.name,
                    dataset=dataset_name,
                    ids=samples.ids,
                )
                quality_fr_name = mplan.quality_fr.name if mplan.quality_fr else None
                for sample_id, value in zip(samples.ids, quality):
                    qualities_csv.append((dataset_name, quality_fr_name or "", method.name, sample_id, value))
                item_quality = quality
                rule = None
                if templates is not None:
                    rule = self.config.template_quality or templates.quality_rule
                    item_quality = template_quality(quality, templates.sample_template, len(templates.ids), rule)
                for fr in dplan.fr_models:
                    fields, _ = evaluate_quality(
                        protocols_by_fr[fr.name], item_quality, [float(x) for x in self.config.discard_limits]
                    )
                    row = row_identity(
                        dataset=dataset_name,
                        fr_model=fr.name,
                        method=method.name,
                        labels=labels,
                        method_version=method.entry.version,
                        quality_fr_model=quality_fr_name,
                    )
                    row.update(fields)
                    row["n_failures"] = n_failures
                    row["template_quality_rule"] = rule
                    row["runtime_ms_per_image"] = runtime
                    row["quality_histogram"] = quality_histogram(quality)
                    rows.append(row)
        return {
            "document": make_document(
                config=self.config.to_dict(),
                results=rows,
                components=components,
                protocols=protocols,
                device=self.config.device,
            ),
            "qualities": qualities_csv,
        }

    def _record(self, table: dict[str, Any], component: Component) -> None:
        table[component.name] = {
            "version": component.entry.version,
            "options": {k: v for k, v in component.options.items()},
            "fingerprint": component.fingerprint(),
            "plugin": component.entry.plugin,
            "distribution": component.entry.distribution,
            "reference": component.entry.reference,
        }

    # -- embeddings and comparison scores --------------------------------------------------
    @property
    def _batch_size(self) -> int:
        """Images per batch: ``--batch-size``, capped by the cache's shard size."""
        return max(1, min(int(self.config.batch_size), SHARD_SIZE))

    def _iter_batches(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        size = self._batch_size
        for start in range(0, len(indices), size):
            yield indices[start : start + size]

    @staticmethod
    def _embedding_key_payload(fr: Component, dataset_part: dict[str, Any], flip: bool) -> dict[str, Any]:
        return {"fr_model": fr.fingerprint(), **dataset_part, "flip": flip, "shard_size": SHARD_SIZE}

    @staticmethod
    def quality_key_payload(mplan: MethodPlan, dataset_part: dict[str, Any], seed: int) -> dict[str, Any]:
        return {
            "method": mplan.component.fingerprint(),
            "quality_fr_model": mplan.quality_fr.fingerprint() if mplan.quality_fr else None,
            **dataset_part,
            "seed": int(seed),
            "shard_size": SHARD_SIZE,
        }

    def _embeddings(
        self, dataset: Any, dataset_part: dict[str, Any], n_samples: int, fr: Component, flip: bool
    ) -> tuple[np.ndarray, np.ndarray | None, str]:
        key = cache_key(self._embedding_key_payload(fr, dataset_part, flip))
        entry = self.cache.entry("embeddings", dataset_part["dataset"]["name"], fr.entry.spec, key)
        n_shards = -(-n_samples // SHARD_SIZE)
        if not entry.is_complete():
            model = None
            bar = self.progress(n_samples, f"embed {dataset.name} / {fr.name}")
            for shard, lo, hi in _pending_shards(entry, n_samples, bar):
                model = model or self._fr_model(fr)
                parts, flipped = [], []
                for batch in self._iter_batches(np.arange(lo, hi)):
                    images = dataset.read_images(batch)
                    parts.append(model.embed(images))
                    if flip:
                        flipped.append(model.embed(np.ascontiguousarray(images[:, :, ::-1])))
                    bar.update(len(batch))
                arrays = {"embeddings": np.concatenate(parts)}
                if flip:
                    arrays["flip_embeddings"] = np.concatenate(flipped)
                entry.write_shard(shard, arrays)
            bar.close()
            entry.finalize({"n_samples": n_samples, "shards": n_shards, "fr_model": fr.fingerprint(),
                            "fiqabench": __version__})
        data = entry.read_shards(n_shards)
        return data["embeddings"], data.get("flip_embeddings"), key

    def _comparison_scores(
        self, dataset: Any, dataset_part: dict[str, Any], samples: Any, comparisons: Any, templates: Any,
        fr: Component,
    ) -> tuple[np.ndarray, dict[str, Any] | None]:
        from fiqabench.metrics import comparisons as cmp

        flip = templates is not None
        pooling = None
        if templates is not None:
            pooling = {"flip": True, "norm_score": True, "detector_score": templates.detector_scores is not None}
        emb_key = cache_key(self._embedding_key_payload(fr, dataset_part, flip))
        key = cache_key({"embeddings": emb_key, "pooling": pooling})
        entry = self.cache.entry("similarities", dataset_part["dataset"]["name"], fr.entry.spec, key)
        if entry.is_complete():
            return entry.read_array("scores"), pooling
        embeddings, flip_embeddings, _ = self._embeddings(dataset, dataset_part, len(samples), fr, flip)
        if templates is None:
            scores = cmp.cosine_scores(embeddings, comparisons.a, comparisons.b)
        else:
            features, _switches = cmp.pool_templates(
                embeddings,
                templates.sample_template,
                templates.media_ids,
                flip_embeddings=flip_embeddings,
                detector_scores=templates.detector_scores,
                norm_score=True,
                detector_score=templates.detector_scores is not None,
            )
            scores = cmp.template_pair_scores(features, comparisons.a, comparisons.b)
        entry.write_array("scores", np.asarray(scores, dtype=np.float64))
        entry.finalize({"n_comparisons": len(comparisons), "pooling": pooling, "fiqabench": __version__})
        return np.asarray(scores, dtype=np.float64), pooling

    # -- quality scores ----------------------------------------------------------------------
    def _quality(
        self, dataset: Any, dataset_part: dict[str, Any], samples: Any, mplan: MethodPlan
    ) -> tuple[np.ndarray, dict[str, Any] | None]:
        method = mplan.component
        payload = self.quality_key_payload(mplan, dataset_part, self.config.seed)
        key = cache_key(payload)
        entry = self.cache.entry("quality", dataset_part["dataset"]["name"], method.entry.spec, key)
        n_samples = len(samples)
        n_shards = -(-n_samples // SHARD_SIZE)
        if not entry.is_complete():
            self._compute_quality(dataset, samples, mplan, entry)
            entry.finalize({"n_samples": n_samples, "shards": n_shards, "key": payload, "fiqabench": __version__})
        data = entry.read_shards(n_shards)
        timed = ~data["batch_warmup"].astype(bool)
        runtime = None
        if data["batch_seconds"].size:
            use_all = not timed.any()  # everything was warm-up: report it rather than nothing
            seconds = data["batch_seconds"] if use_all else data["batch_seconds"][timed]
            images = data["batch_images"] if use_all else data["batch_images"][timed]
            stats = runtime_stats(
                seconds,
                images,
                warmup_batches=0,
                batch_size=int(data["batch_size"].max()),
                device=str(data["device"][0]),
                host=str(data["host"][0]),
            )
            runtime = stats.to_dict()
            runtime["warmup_batches"] = 0 if use_all else int((~timed).sum())
        return data["quality"], runtime

    def _compute_quality(self, dataset: Any, samples: Any, mplan: MethodPlan, entry: Any) -> None:
        method = mplan.component
        n_samples = len(samples)
        instance = None
        fr_model = None
        warm = False
        bar = self.progress(n_samples, f"quality {dataset.name} / {method.name}")
        for shard, lo, hi in _pending_shards(entry, n_samples, bar):
            if instance is None:
                log.info("building method %s", method.entry.spec)
                instance = self._build(method)
                fr_model = self._fr_model(mplan.quality_fr) if mplan.quality_fr else None
            ids = list(samples.ids[lo:hi])
            seeds = sample_seeds(int(self.config.seed), method.entry.spec, dataset.name, ids)
            quality = np.full(hi - lo, np.nan)
            seconds, counts, warmup = [], [], []
            for batch in self._iter_batches(np.arange(lo, hi)):
                images = dataset.read_images(batch)
                local = batch - lo
                metadata = tuple(samples.metadata[i] for i in batch) if samples.metadata else tuple({} for _ in batch)
                sample_batch = SampleBatch(
                    ids=tuple(ids[i] for i in local), images=images, metadata=metadata, seeds=seeds[local]
                )
                start = time.perf_counter()
                try:
                    scores = instance.score(sample_batch, fr_model=fr_model)
                except FiqabenchError:
                    raise
                except Exception as exc:
                    if self.config.on_failure == "error":
                        raise MethodFailure(
                            f"method {method.name!r} failed on dataset {dataset.name!r} "
                            f"(samples {sample_batch.ids[0]}..{sample_batch.ids[-1]}): {type(exc).__name__}: {exc}"
                        ) from exc
                    log.warning("method %s failed on a batch (%s); ranking it lowest", method.name, exc)
                    scores = np.full(len(batch), np.nan)
                elapsed = time.perf_counter() - start
                scores = np.asarray(scores, dtype=np.float64).reshape(-1)
                if scores.shape != (len(batch),):
                    raise MethodFailure(
                        f"method {method.name!r} returned {scores.size} scores for a batch of {len(batch)}"
                    )
                quality[local] = scores
                seconds.append(elapsed)
                counts.append(len(batch))
                warmup.append(not warm)
                warm = True
                bar.update(len(batch))
            entry.write_shard(
                shard,
                {
                    "quality": quality,
                    "batch_seconds": np.asarray(seconds, dtype=np.float64),
                    "batch_images": np.asarray(counts, dtype=np.int64),
                    "batch_warmup": np.asarray(warmup, dtype=bool),
                    "batch_size": np.asarray([self._batch_size], dtype=np.int64),
                    "device": np.asarray([self.config.device]),
                    "host": np.asarray([self.host]),
                },
            )
            if self.config.on_failure == "error" and np.isnan(quality).any():
                apply_failure_policy(quality, on_failure="error", method=method.name, dataset=dataset.name,
                                     ids=ids)
        bar.close()


def _pending_shards(entry: Any, n_samples: int, bar: Any) -> Iterator[tuple[int, int, int]]:
    """``(shard, lo, hi)`` for each shard not yet cached; finished ones only advance the bar."""
    for shard in range(-(-n_samples // SHARD_SIZE)):
        lo, hi = shard * SHARD_SIZE, min(n_samples, (shard + 1) * SHARD_SIZE)
        if entry.has_shard(shard):
            bar.update(hi - lo)
            continue
        yield shard, lo, hi


def _cache_root(value: str | None) -> Path:
    from fiqabench.cache import resolve_cache_root

    return resolve_cache_root(value)


def write_qualities_csv(rows: list[tuple[str, str, str, str, float]], out_dir: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "fr_model", "method", "sample", "quality"])
    for dataset, fr_model, method, sample, quality in rows:
        writer.writerow([dataset, fr_model, method, sample, repr(float(quality))])
    path = out_dir / "qualities.csv"
    atomic_write_text(path, buffer.getvalue())
    return path


def write_outputs(
    registry: Registry, result: dict[str, Any], out_dir: Path, formats: list[str] | None = None
) -> list[Path]:
    """results.json, qualities.csv, then every report format (unavailable ones are skipped)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_results(result["document"], out_dir)]
    if result.get("qualities") is not None:
        written.append(write_qualities_csv(result["qualities"], out_dir))
    written += write_reports(registry, result["document"], out_dir, formats)
    return written


def write_reports(
    registry: Registry, document: dict[str, Any], out_dir: Path, formats: list[str] | None = None
) -> list[Path]:
    written: list[Path] = []
    explicit = formats is not None
    for name in formats or registry.names("format"):
        entry = registry.get("format", name)
        try:
            writer = entry.load()
            written += list(writer(document, out_dir))
        except ComponentUnavailableError as exc:
            if explicit:
                raise
            log.warning("skipped format %s: %s", name, exc)
    return written
