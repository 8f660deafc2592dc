"""From a finished cache to the results document: protocols, EDC, pAUC, runtime, per result row.

Reads only the cache (every task of the plan must be complete) and the datasets' protocols; the
rows come from :func:`fiqabench.evaluation.result_row`, the one row builder that ``evaluate``
uses too.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from fiqabench.api import DatasetWithDetails, DatasetWithFolds
from fiqabench.cache import Cache
from fiqabench.evaluation import (
    ProtocolScores,
    apply_failure_policy,
    fr_sanity,
    oriented,
    result_row,
    template_quality,
)
from fiqabench.metrics.runtime import runtime_stats
from fiqabench.outputs import SavedComparisons
from fiqabench.plan import Component, Plan
from fiqabench.results import make_document
from fiqabench.tasks import Task, Workspace


def assemble(plan: Plan, tasks: list[Task], config: Any, registry: Any, workspace: Workspace,
             cache: Cache) -> dict[str, Any]:
    """``{"document": results document, "qualities": rows of qualities.csv, "comparisons": what
    comparisons.csv holds (``config.save_comparisons``; scores read from the cache when written),
    else None}``."""
    labels = {f"{e.kind}:{e.name}": e.label for kind in ("dataset", "fr_model", "method")
              for e in registry.entries(kind)}
    rows: list[dict[str, Any]] = []
    protocols: list[dict[str, Any]] = []
    qualities_csv: list[tuple[str, str, str, str, float]] = []
    components: dict[str, dict[str, Any]] = {"datasets": {}, "fr_models": {}, "methods": {}}
    saved: list[SavedComparisons] | None = [] if getattr(config, "save_comparisons", False) else None
    keyed = _TaskIndex(tasks)
    for dplan in plan.datasets:
        _record(components["datasets"], dplan.component)
        dataset_name = dplan.component.name
        dataset = workspace.get(dplan.component.ref())
        if isinstance(dataset, DatasetWithDetails):
            components["datasets"][dataset_name]["details"] = _plain(dataset.details())
        samples, comparisons, templates = dataset.samples(), dataset.comparisons(), dataset.templates()
        folds = dataset.folds() if isinstance(dataset, DatasetWithFolds) else None
        leakage = dplan.component.entry.leakage
        protocol_by_fr: dict[str, ProtocolScores] = {}
        for fr in dplan.fr_models:
            _record(components["fr_models"], fr)
            compare = keyed.get("compare", dplan.component, fr=fr)
            scores = compare.entry(cache).read_array("scores")
            protocol = ProtocolScores.from_comparisons(
                comparisons.a, comparisons.b, comparisons.mated, scores, float(config.fmr)
            )
            protocol_by_fr[fr.name] = protocol
            protocols.append({
                "dataset": dataset_name, "fr_model": fr.name, "fmr": protocol.fmr, "threshold": protocol.threshold,
                "n_mated": int(protocol.mated_scores.size), "n_non_mated": protocol.n_non_mated,
                "template_pooling": compare.pooling,
                "fr_sanity": fr_sanity(scores, comparisons.mated, folds),
            })
            if saved is not None:
                saved.append(SavedComparisons(
                    dataset=dataset_name, fr_model=fr.name,
                    ids=templates.ids if templates is not None else samples.ids,
                    a=comparisons.a, b=comparisons.b, mated=comparisons.mated,
                    read_scores=functools.partial(compare.entry(cache).read_array, "scores"),
                ))
        for mplan in dplan.methods:
            method = mplan.component
            _record(components["methods"], method)
            if mplan.quality_fr is not None:
                _record(components["fr_models"], mplan.quality_fr)
            task = keyed.get("quality", dplan.component, method=method, quality_fr=mplan.quality_fr)
            data = task.entry(cache).read_shards(task.n_items)
            quality = oriented(data["quality"], method.entry.higher_is_better)
            quality, n_failures = apply_failure_policy(
                quality, on_failure=config.on_failure, method=method.name, dataset=dataset_name, ids=samples.ids
            )
            quality_fr_name = mplan.quality_fr.name if mplan.quality_fr else None
            for sample_id, value in zip(samples.ids, quality):
                qualities_csv.append((dataset_name, quality_fr_name or "", method.name, sample_id, value))
            item_quality, rule = quality, None
            if templates is not None:
                rule = config.template_quality or templates.quality_rule
                item_quality = template_quality(quality, templates.sample_template, len(templates.ids), rule)
            runtime = quality_runtime(data)
            for fr in dplan.fr_models:
                row = result_row(
                    protocol_by_fr[fr.name], item_quality, [float(x) for x in config.discard_limits],
                    dataset=dataset_name, fr_model=fr.name, method=method.name, labels=labels,
                    method_version=method.entry.version, quality_fr_model=quality_fr_name,
                    n_failures=n_failures, runtime=runtime, sample_quality=quality, template_quality_rule=rule,
                )
                row["leakage"] = leakage.get(method.name)
                rows.append(row)
    document = make_document(config=config.to_dict(), results=rows, components=components, protocols=protocols,
                             device=config.device)
    return {"document": document, "qualities": qualities_csv, "comparisons": saved}


def _plain(details: Any) -> dict[str, Any]:
    """A dataset's ``details()`` as plain JSON values (numpy scalars and paths become numbers and
    strings), so a plugin's choice of types never breaks ``results.json``."""
    return json.loads(json.dumps(dict(details), default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class _TaskIndex:
    """Finds the task of a plan element by the components it was made from."""

    def __init__(self, tasks: list[Task]) -> None:
        self.tasks = tasks

    def get(self, kind: str, dataset: Component, *, fr: Component | None = None,
            method: Component | None = None, quality_fr: Component | None = None) -> Task:
        for task in self.tasks:
            if task.kind != kind or dict(task.dataset) != dataset.ref():
                continue
            if kind == "compare" and task.fr_model == fr.ref():  # type: ignore[union-attr]
                return task
            if kind == "quality" and task.method == method.ref() and task.fr_model == (  # type: ignore[union-attr]
                quality_fr.ref() if quality_fr else None
            ):
                return task
        raise LookupError(f"no {kind} task for {dataset.name}")


def quality_runtime(data: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """Runtime statistics of a quality entry's timed batches (warm-up batches left out, unless
    every batch was one: then they are reported rather than nothing)."""
    if not data.get("batch_seconds", np.zeros(0)).size:
        return None
    timed = ~data["batch_warmup"].astype(bool)
    use_all = not timed.any()
    seconds = data["batch_seconds"] if use_all else data["batch_seconds"][timed]
    images = data["batch_images"] if use_all else data["batch_images"][timed]
    stats = runtime_stats(seconds, images, warmup_batches=0, batch_size=int(data["batch_size"].max()),
                          device=str(data["device"][0]), host=str(data["host"][0]))
    runtime = stats.to_dict()
    runtime["warmup_batches"] = 0 if use_all else int((~timed).sum())
    return runtime


def _record(table: dict[str, Any], component: Component) -> None:
    table[component.name] = {
        "version": component.entry.version,
        "options": dict(component.options),
        "fingerprint": component.fingerprint(),
        "plugin": component.entry.plugin,
        "distribution": component.entry.distribution,
        "reference": component.entry.reference,
    }
