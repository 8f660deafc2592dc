"""Orchestration only: plan -> tasks -> executor -> assemble.

:func:`fiqabench.plan.build_plan` checks everything before any work; :func:`fiqabench.tasks.make_tasks`
turns the plan into cacheable tasks with their keys; an executor
(:mod:`fiqabench.executors`) computes the missing shards; :func:`fiqabench.assemble.assemble`
builds the results document from the cache. Writing outputs is :mod:`fiqabench.outputs`' job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fiqabench.assemble import assemble
from fiqabench.cache import Cache
from fiqabench.config import RunConfig
from fiqabench.executors import Executor, LocalExecutor, ProgressFactory, null_progress
from fiqabench.plan import Component, DatasetPlan, MethodPlan, Plan, build_plan, sample_seeds
from fiqabench.registry import Registry
from fiqabench.tasks import Task, Workspace, cache_root, make_tasks

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

    def dry_run(self, plan: Plan) -> list[dict[str, Any]]:
        """Per task: shards cached / missing, images still to process, estimated seconds left."""
        rows = []
        for task in self.tasks(plan):
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
