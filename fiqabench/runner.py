"""Orchestration only: plan -> tasks -> executor -> assemble.

:func:`fiqabench.plan.build_plan` checks everything before any work; :func:`fiqabench.tasks.make_tasks`
turns the plan into cacheable tasks with their keys; an executor
(:mod:`fiqabench.executors`) computes the missing shards; :func:`fiqabench.assemble.assemble`
builds the results document from the cache. Writing outputs is :mod:`fiqabench.outputs`' job.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fiqabench.assemble import assemble
from fiqabench.cache import Cache
from fiqabench.config import RunConfig
from fiqabench.errors import ConfigError
from fiqabench.executors import Executor, LocalExecutor, ProgressFactory, null_progress
from fiqabench.labels import write_labels
from fiqabench.plan import Component, DatasetPlan, MethodPlan, Plan, build_plan, sample_seeds
from fiqabench.registry import Registry
from fiqabench.results import package_version
from fiqabench.tasks import Task, Workspace, cache_root, make_label_tasks, make_tasks

__all__ = [
    "Component", "DatasetPlan", "MethodPlan", "Plan", "Runner", "build_plan", "null_progress", "sample_seeds",
]


class Runner:
    """Runs a :class:`Plan` through an executor (local, one device, by default)."""

    def __init__(
        self,
        registry: Registry,
        config: RunConfig,
        *,
        progress: ProgressFactory = null_progress,
        executor: Executor | None = None,
    ) -> None:
        self.registry = registry
        self.config = config
        self.progress = progress
        self.cache = Cache(cache_root(config.cache_dir))
        devices = list(getattr(config, "devices", None) or [config.device])
        self.executor = executor or LocalExecutor(registry, devices)
        # The driver's own components (datasets for planning and assembling); a local
        # executor on one device shares them, so nothing is built twice.
        self.workspace = getattr(self.executor, "workspace", None) or Workspace(registry, config.device)

    def tasks(self, plan: Plan) -> list[Task]:
        return make_tasks(plan, self.config, self.workspace, self.cache)

    def run(self, plan: Plan) -> dict[str, Any]:
        # Tasks first: making them builds (parses and checks) every dataset, so a malformed
        # dataset stops the run before the cache folder is created or touched.
        tasks = self.tasks(plan)
        self.cache.ensure()
        self.executor.run(tasks, self.cache, self.progress)
        return assemble(plan, tasks, self.config, self.registry, self.workspace, self.cache)

    def label_tasks(self, plan: Plan) -> list[Task]:
        return make_label_tasks(plan, self.config, self.workspace, self.cache)

    def label(self, plan: Plan, output: Path) -> str:
        """``fiqabench label``: the plan's one method over its one dataset as a ``label`` task
        (sharded, cached, resumable, on this runner's executor), merged in sample order into a
        label folder (:mod:`fiqabench.labels`). Returns a one-line summary."""
        (task,) = self.label_tasks(plan)
        if output.exists() and not output.is_dir():
            raise ConfigError(f"--output {output}: exists and is not a folder")
        self.cache.ensure()
        self.executor.run([task], self.cache, self.progress)
        samples = self.workspace.get(task.dataset).samples()
        # shards are sample ranges: reading them in index order is the merge, whatever the split
        scores = task.entry(self.cache).read_shards(task.n_items)["quality"]
        provenance = {
            "method": task.payload["method"],
            "quality_fr_model": task.payload["quality_fr_model"],
            "quality_fr_model_name": task.fr_model["name"] if task.fr_model else None,
            # the registered name and options as given rebuild the dataset for training (paths
            # kept); the fingerprint (paths by digest) and the manifest say what it was
            "dataset": {"name": task.dataset["name"], "spec": task.dataset_spec,
                        "options": dict(task.dataset["options"]), "fingerprint": task.payload["dataset"]["options"],
                        "manifest": task.payload["manifest"]},
            "seed": task.seed,
            "cache_key": task.key,
            "versions": {name: package_version(name) for name in ("torch", "pluggy")},
        }
        write_labels(output, samples=samples.ids, identities=samples.subjects, scores=scores, provenance=provenance)
        failed = int(np.isnan(scores).sum())
        return (f"{len(scores) - failed} labels of {task.label.split(' ', 1)[1]} written to {output}"
                + (f" ({failed} failed images left out)" if failed else ""))

    def dry_run(self, plan: Plan) -> list[dict[str, Any]]:
        """Per task: shards cached / missing, images still to process, estimated seconds left."""
        return self.dry_run_tasks(self.tasks(plan))

    def dry_run_tasks(self, tasks: Sequence[Task]) -> list[dict[str, Any]]:
        rows = []
        for task in tasks:
            missing = task.missing_shards(self.cache)
            if task.kind == "compare":
                cached, items_left = (0 if missing else 1), 0
            else:
                cached = len(task.entry(self.cache).tiling(task.n_items, strict=False))
                items_left = sum(hi - lo for lo, hi in missing)
            rows.append({
                "task": task.kind, "dataset": task.dataset_spec, "component": task.component_spec, "key": task.key,
                "shards_cached": cached, "shards_missing": len(missing), "shards_total": cached + len(missing),
                "shard_size": task.shard_size, "items_left": items_left,
                "seconds_left": items_left * task.cost_ms / 1000.0 if task.kind != "compare" else None,
                "cost_ms_per_item": task.cost_ms if task.kind != "compare" else None,
                "cost_source": task.cost_source if task.kind != "compare" else None,
            })
        return rows


def format_dry_run(rows: Sequence[dict[str, Any]]) -> str:
    """The ``--dry-run`` table (plain text)."""
    lines = [f"{'task':<8} {'dataset':<22} {'component':<26} {'shards cached/total':>19} {'images left':>11} "
             f"{'est. time left':>15}  cost source"]
    total = 0.0
    for row in rows:
        seconds = row["seconds_left"]
        total += seconds or 0.0
        estimate = "-" if seconds is None else _duration(seconds)
        cost = "" if row["cost_source"] is None else f"{row['cost_ms_per_item']:.3g} ms/img ({row['cost_source']})"
        lines.append(
            f"{row['task']:<8} {row['dataset']:<22} {row['component']:<26} "
            f"{row['shards_cached']:>9}/{row['shards_total']:<9} {row['items_left']:>11} {estimate:>15}  {cost}"
        )
    lines.append(f"estimated time left: {_duration(total)} (one worker; measured costs where the cache has them)")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
