"""The run as typed tasks, and the one function that computes a shard of any of them.

A :class:`Task` is plain data (picklable, JSON-able): its kind, its cache key computed up front,
the components it needs named by ``(kind, name, options)``, and its number of items. A worker
(this process, a process per device, or a Ray actor) turns those names into built components
through its own :class:`Workspace` (each component built once per worker) and calls
:func:`fill` for each ``(task, shard)`` it is given. Shards are sample ranges sized by cost (about
a minute of work); scores do not depend on batching, so the shard size is not part of any key.

Task kinds:

- ``embed``: FR embeddings of every sample (plus the flipped image for template protocols);
- ``compare``: comparison scores of the protocol from ``embed`` (one shard: a whole-array job);
- ``quality``: a method's quality scores with per-batch timings;
- ``label``: quality labels for a training set (distillation), stored like ``quality``.
"""

from __future__ import annotations

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
from fiqabench.cache import Cache, CacheEntry, cache_key
from fiqabench.errors import FiqabenchError, MethodFailure
from fiqabench.evaluation import apply_failure_policy
from fiqabench.plan import Component, Plan, sample_seeds

log = logging.getLogger("fiqabench")

#: Seconds of work a shard aims at: small enough that a preemption or a kill loses little,
#: large enough that per-shard overhead (a file, a Ray task) is negligible.
SHARD_SECONDS = 60.0
MAX_SHARD_ITEMS = 16384
#: Costs assumed when neither the cache nor the plugin gives one (ms per image).
DEFAULT_COST_MS = {"embed": 1.0, "quality": 10.0, "label": 10.0}


@dataclass(frozen=True)
class Task:
    """One cacheable unit of a run (see the module docstring)."""

    kind: str
    key: str
    #: Cache folders: ``<kind>/<dataset@version>/<component@version>/<key>``.
    dataset_spec: str
    component_spec: str
    n_items: int
    shard_size: int
    #: ``(kind, name, options)`` of the components, as :meth:`Component.ref` gives them.
    dataset: Mapping[str, Any]
    fr_model: Mapping[str, Any] | None = None
    method: Mapping[str, Any] | None = None
    #: Everything the key was computed from (recorded in ``meta.json``).
    payload: Mapping[str, Any] = field(default_factory=dict)
    #: ``embed``: also embed the horizontally flipped image (template pooling).
    flip: bool = False
    #: ``compare``: the key of the embed task it reads, and the template pooling switches.
    embed_key: str | None = None
    pooling: Mapping[str, Any] | None = None
    #: ``quality``/``label``: run seed, batch size and failure policy.
    seed: int = 0
    batch_size: int = 64
    on_failure: str = "error"
    #: Estimated ms per item and where the figure comes from (``recorded``, ``declared``,
    #: ``assumed``), for ``--dry-run``.
    cost_ms: float = 0.0
    cost_source: str = "assumed"

    @property
    def cache_kind(self) -> str:
        return {"embed": "embeddings", "compare": "similarities", "quality": "quality", "label": "quality"}[self.kind]

    @property
    def label(self) -> str:
        name = self.component_spec.split("@")[0]
        return f"{self.kind} {self.dataset_spec.split('@')[0]} / {name}"

    def entry(self, cache: Cache) -> CacheEntry:
        return cache.entry(self.cache_kind, self.dataset_spec, self.component_spec, self.key)

    def missing_shards(self, cache: Cache) -> list[tuple[int, int]]:
        entry = self.entry(cache)
        if entry.is_complete():
            return []
        if self.kind == "compare":
            return [(0, 1)]
        return entry.missing_ranges(self.n_items, self.shard_size)

    def finalize(self, cache: Cache) -> None:
        """Mark the entry complete once every shard is there (the driver's job, done last)."""
        entry = self.entry(cache)
        if entry.is_complete():
            return
        meta: dict[str, Any] = {"task": self.kind, "n_items": self.n_items, "key": dict(self.payload),
                                "fiqabench": __version__}
        if self.kind != "compare":
            meta["shards"] = [list(r) for r in entry.tiling(self.n_items, strict=True)]
        entry.finalize(meta)


# -- making tasks --------------------------------------------------------------------------------
def dataset_part(component: Component, manifest: str) -> dict[str, Any]:
    return {"dataset": component.fingerprint(), "manifest": manifest}


def make_tasks(plan: Plan, config: Any, workspace: Workspace, cache: Cache) -> list[Task]:
    """Every task of the plan, keys computed up front (datasets are built, models are not)."""
    tasks: list[Task] = []
    seen: set[str] = set()
    for dplan in plan.datasets:
        dataset = workspace.get(dplan.component.ref())
        part = dataset_part(dplan.component, dataset.manifest_digest())
        ds_spec = part["dataset"]["name"]
        n_samples = len(dataset.samples())
        templates = dataset.templates()
        flip = templates is not None
        pooling = None
        if templates is not None:
            pooling = {"flip": True, "norm_score": True, "detector_score": templates.detector_scores is not None}
        for fr in dplan.fr_models:
            payload = {"fr_model": fr.fingerprint(), **part, "flip": flip}
            embed_key = cache_key(payload)
            cost, source = _cost(cache, "embed", ds_spec, fr.entry.spec, getattr(fr.entry, "cost_ms_per_image", None))
            embed = Task("embed", embed_key, ds_spec, fr.entry.spec, n_samples,
                         _shard_size("embed", cost, int(config.batch_size)),
                         dplan.component.ref(), fr_model=fr.ref(), payload=payload, flip=flip,
                         batch_size=int(config.batch_size), cost_ms=cost, cost_source=source)
            compare_payload = {"embeddings": embed_key, "pooling": pooling}
            compare = Task("compare", cache_key(compare_payload), ds_spec, fr.entry.spec, 1, 1,
                           dplan.component.ref(), fr_model=fr.ref(), payload=compare_payload,
                           embed_key=embed_key, pooling=pooling, flip=flip)
            for task in (embed, compare):
                if task.key not in seen:
                    seen.add(task.key)
                    tasks.append(task)
        for mplan in dplan.methods:
            task = _quality_task("quality", dplan, mplan, part, n_samples, config, cache)
            if task.key not in seen:
                seen.add(task.key)
                tasks.append(task)
    return tasks


def make_label_tasks(plan: Plan, config: Any, workspace: Workspace, cache: Cache) -> list[Task]:
    """The ``label`` tasks of a plan (one per dataset x method; no embed or compare work). Their
    keys are those of the ``quality`` tasks of the same components, so labels and benchmark scores
    share the cache: neither computes what the other has."""
    tasks = []
    for dplan in plan.datasets:
        dataset = workspace.get(dplan.component.ref())
        part = dataset_part(dplan.component, dataset.manifest_digest())
        for mplan in dplan.methods:
            tasks.append(_quality_task("label", dplan, mplan, part, len(dataset.samples()), config, cache))
    return tasks


def _quality_task(kind: str, dplan: Any, mplan: Any, part: Mapping[str, Any], n_samples: int, config: Any,
                  cache: Cache) -> Task:
    method = mplan.component
    payload = {
        "method": method.fingerprint(),
        "quality_fr_model": mplan.quality_fr.fingerprint() if mplan.quality_fr else None,
        **part,
        "seed": int(config.seed),
    }
    ds_spec = part["dataset"]["name"]
    cost, source = _cost(cache, "quality", ds_spec, method.entry.spec, method.entry.cost_ms_per_image)
    return Task(kind, cache_key(payload), ds_spec, method.entry.spec, n_samples,
                _shard_size("quality", cost, int(config.batch_size)), dplan.component.ref(),
                fr_model=mplan.quality_fr.ref() if mplan.quality_fr else None, method=method.ref(),
                payload=payload, seed=int(config.seed), batch_size=int(config.batch_size),
                on_failure=config.on_failure, cost_ms=cost, cost_source=source)


def _shard_size(kind: str, cost_ms: float, batch_size: int = 1) -> int:
    """About :data:`SHARD_SECONDS` of work, a whole number of batches (so batches fall where they
    would in one shard), at most :data:`MAX_SHARD_ITEMS`; ``FIQABENCH_SHARD_SIZE`` overrides it.

    >>> _shard_size("quality", 85.0, 64), _shard_size("embed", 1.0, 64)
    (704, 16384)
    """
    override = os.environ.get("FIQABENCH_SHARD_SIZE")
    if override:
        return max(1, int(override))
    items = min(MAX_SHARD_ITEMS, max(1, round(SHARD_SECONDS * 1000.0 / max(cost_ms, 1e-3))))
    if items >= batch_size:
        items -= items % batch_size
    return int(items)


def _cost(cache: Cache, kind: str, dataset_spec: str, component_spec: str, declared: float | None) -> tuple[float, str]:
    """ms per image: recorded in the cache (same dataset first, else any), else declared by the
    plugin, else assumed."""
    if kind == "quality":
        recorded = recorded_ms_per_image(cache, dataset_spec, component_spec)
        if recorded is not None:
            return recorded, "recorded"
    if declared:
        return float(declared), "declared"
    return DEFAULT_COST_MS[kind], "assumed"


def recorded_ms_per_image(cache: Cache, dataset_spec: str, component_spec: str, max_files: int = 8) -> float | None:
    """Median ms per image of the timed batches cached for this method (this dataset first)."""
    from fiqabench.cache import _safe_name

    base = cache.base / "quality"
    component = _safe_name(component_spec)
    for pattern in (f"{_safe_name(dataset_spec)}/{component}/*/part-*.npz", f"*/{component}/*/part-*.npz"):
        rates: list[float] = []
        for file in sorted(base.glob(pattern))[:max_files]:
            try:
                with np.load(file, allow_pickle=False) as data:
                    timed = ~data["batch_warmup"].astype(bool)
                    seconds, images = data["batch_seconds"][timed], data["batch_images"][timed]
            except (OSError, KeyError, ValueError):
                continue
            rates += [1000.0 * s / n for s, n in zip(seconds, images) if n > 0]
        if rates:
            return float(np.median(rates))
    return None


# -- building components in a worker ------------------------------------------------------------
class Workspace:
    """The components of one worker, each built once (datasets, FR models, methods)."""

    def __init__(self, registry: Any, device: str) -> None:
        self.registry = registry
        self.device = device
        self.host = socket.gethostname()
        self._built: dict[str, Any] = {}
        #: methods that have scored a batch in this worker (the first batch is warm-up)
        self._warm: set[str] = set()

    def get(self, ref: Mapping[str, Any]) -> Any:
        key = cache_key({"kind": ref["kind"], "name": ref["name"], "options": dict(ref["options"])})
        if key not in self._built:
            entry = self.registry.get(ref["kind"], ref["name"])
            log.info("building %s %s", entry.kind_label, entry.spec)
            self._built[key] = entry.build(ref["options"], self.device, resolved=True)
        return self._built[key]


def _batches(lo: int, hi: int, size: int) -> Iterator[np.ndarray]:
    for start in range(lo, hi, size):
        yield np.arange(start, min(hi, start + size))


def fill(task: Task, lo: int, hi: int, workspace: Workspace, cache: Cache,
         on_batch: Callable[[int], None] = lambda n: None) -> None:
    """Compute items ``[lo, hi)`` of ``task`` and write them to the cache as one shard."""
    entry = task.entry(cache)
    if task.kind == "embed":
        _fill_embed(task, lo, hi, workspace, entry, on_batch)
    elif task.kind == "compare":
        _fill_compare(task, workspace, cache, entry)
    elif task.kind in ("quality", "label"):
        _fill_quality(task, lo, hi, workspace, entry, on_batch)
    else:
        raise ValueError(f"unknown task kind {task.kind!r}")


def _fill_embed(task: Task, lo: int, hi: int, ws: Workspace, entry: CacheEntry,
                on_batch: Callable[[int], None]) -> None:
    dataset, model = ws.get(task.dataset), ws.get(task.fr_model)  # type: ignore[arg-type]
    parts, flipped = [], []
    for batch in _batches(lo, hi, task.batch_size):
        images = dataset.read_images(batch)
        parts.append(model.embed(images))
        if task.flip:
            flipped.append(model.embed(np.ascontiguousarray(images[:, :, ::-1])))
        on_batch(len(batch))
    arrays = {"embeddings": np.concatenate(parts)}
    if task.flip:
        arrays["flip_embeddings"] = np.concatenate(flipped)
    entry.write_shard(lo, hi, arrays)


def _fill_compare(task: Task, ws: Workspace, cache: Cache, entry: CacheEntry) -> None:
    from fiqabench.metrics import comparisons as cmp

    dataset = ws.get(task.dataset)
    comparisons, templates = dataset.comparisons(), dataset.templates()
    embed_entry = cache.entry("embeddings", task.dataset_spec, task.component_spec, str(task.embed_key))
    n_samples = len(dataset.samples())
    data = embed_entry.read_shards(n_samples)
    if templates is None:
        scores = cmp.cosine_scores(data["embeddings"], comparisons.a, comparisons.b)
    else:
        features, _switches = cmp.pool_templates(
            data["embeddings"], templates.sample_template, templates.media_ids,
            flip_embeddings=data.get("flip_embeddings"), detector_scores=templates.detector_scores,
            norm_score=True, detector_score=templates.detector_scores is not None,
        )
        scores = cmp.template_pair_scores(features, comparisons.a, comparisons.b)
    entry.write_array("scores", np.asarray(scores, dtype=np.float64))


def _fill_quality(task: Task, lo: int, hi: int, ws: Workspace, entry: CacheEntry,
                  on_batch: Callable[[int], None]) -> None:
    dataset = ws.get(task.dataset)
    method = ws.get(task.method)  # type: ignore[arg-type]
    fr_model = ws.get(task.fr_model) if task.fr_model else None
    method_name = task.method["name"]  # type: ignore[index]
    samples = dataset.samples()
    ids = list(samples.ids[lo:hi])
    seeds = sample_seeds(task.seed, task.component_spec, dataset.name, ids)
    quality = np.full(hi - lo, np.nan)
    seconds, counts, warmup = [], [], []
    for batch in _batches(lo, hi, task.batch_size):
        images = dataset.read_images(batch)
        local = batch - lo
        metadata = tuple(samples.metadata[i] for i in batch) if samples.metadata else tuple({} for _ in batch)
        sample_batch = SampleBatch(ids=tuple(ids[i] for i in local), images=images, metadata=metadata,
                                   seeds=seeds[local])
        start = time.perf_counter()
        try:
            scores = method.score(sample_batch, fr_model=fr_model)
        except FiqabenchError:
            raise
        except Exception as exc:
            if task.on_failure == "error":
                raise MethodFailure(
                    f"method {method_name!r} failed on dataset {dataset.name!r} "
                    f"(samples {sample_batch.ids[0]}..{sample_batch.ids[-1]}): {type(exc).__name__}: {exc}"
                ) from exc
            log.warning("method %s failed on a batch (%s); ranking it lowest", method_name, exc)
            scores = np.full(len(batch), np.nan)
        elapsed = time.perf_counter() - start
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape != (len(batch),):
            raise MethodFailure(f"method {method_name!r} returned {scores.size} scores for a batch of {len(batch)}")
        quality[local] = scores
        seconds.append(elapsed)
        counts.append(len(batch))
        warmup.append(task.key not in ws._warm)
        ws._warm.add(task.key)
        on_batch(len(batch))
    entry.write_shard(lo, hi, {
        "quality": quality,
        "batch_seconds": np.asarray(seconds, dtype=np.float64),
        "batch_images": np.asarray(counts, dtype=np.int64),
        "batch_warmup": np.asarray(warmup, dtype=bool),
        "batch_size": np.asarray([max(counts, default=0)], dtype=np.int64),  # the size actually used
        "device": np.asarray([ws.device]),
        "host": np.asarray([ws.host]),
    })
    if task.on_failure == "error" and np.isnan(quality).any():
        apply_failure_policy(quality, on_failure="error", method=method_name, dataset=dataset.name, ids=ids)


def cache_root(value: str | os.PathLike[str] | None) -> Path:
    from fiqabench.cache import resolve_cache_root

    return resolve_cache_root(value)
