"""Executors run the missing ``(task, shard)`` pairs of a run; the cache holds the results.

Every executor gets the same input: stages of tasks (embed, then compare, then quality), and
for each task the shards still missing (:meth:`fiqabench.tasks.Task.missing_shards`). Workers
write each finished shard to the cache themselves, atomically; the driver marks a task complete
(``meta.json``) once all its shards are there. So any run, killed anywhere, resumes from the
cache, whichever executor ran it.

- :class:`LocalExecutor`: this process (one device), or one worker process per device
  (``--devices cuda:0,cuda:1``), each with ``cores / workers`` torch threads.
- :class:`fiqabench.executors.ray.RayExecutor`: a Ray cluster (``--executor ray``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from fiqabench.cache import Cache
from fiqabench.errors import FiqabenchError, MethodFailure
from fiqabench.tasks import Task, Workspace, fill

log = logging.getLogger("fiqabench")

#: ``progress(total, desc, initial)`` -> a bar with ``update(n)`` and ``close()``; ``initial``
#: items were cached before this run (counted done, but not in the rate or the ETA).
ProgressFactory = Callable[..., Any]

#: Stages run in order; tasks within a stage are independent.
STAGES = (("embed",), ("compare",), ("quality", "label"))


class Executor(Protocol):
    def run(self, tasks: Sequence[Task], cache: Cache, progress: ProgressFactory) -> None:
        """Compute every missing shard of ``tasks`` and finalize them."""
        ...


class _NullBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def null_progress(total: int, desc: str, initial: int = 0) -> _NullBar:
    return _NullBar()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def cached_items(task: Task, missing: Sequence[tuple[int, int]]) -> int:
    return task.n_items - sum(hi - lo for lo, hi in missing)


def staged(tasks: Sequence[Task]) -> list[list[Task]]:
    return [[t for t in tasks if t.kind in kinds] for kinds in STAGES]


class LocalExecutor:
    """This host: in this process for one device, else one worker process per device."""

    def __init__(self, registry: Any, devices: Sequence[str] = ("cpu",)) -> None:
        self.registry = registry
        self.devices = list(devices)
        self.workspace = Workspace(registry, self.devices[0])

    def run(self, tasks: Sequence[Task], cache: Cache, progress: ProgressFactory = null_progress) -> None:
        for stage in staged(tasks):
            if len(self.devices) == 1 or all(len(t.missing_shards(cache)) <= 1 for t in stage):
                self._run_here(stage, cache, progress)
            else:
                self._run_workers(stage, cache, progress)
            for task in stage:
                task.finalize(cache)

    def _run_here(self, stage: list[Task], cache: Cache, progress: ProgressFactory) -> None:
        for task in stage:
            shards = task.missing_shards(cache)
            if not shards:
                continue
            total = task.n_items if task.kind != "compare" else 0
            bar = progress(total, task.label, initial=cached_items(task, shards)) if total else _NullBar()
            for lo, hi in shards:
                fill(task, lo, hi, self.workspace, cache, on_batch=bar.update)
            bar.close()

    def _run_workers(self, stage: list[Task], cache: Cache, progress: ProgressFactory) -> None:
        jobs = [(task, lo, hi) for task in stage for lo, hi in task.missing_shards(cache)]
        context = multiprocessing.get_context("spawn")
        todo, done = context.Queue(), context.Queue()
        for index, job in enumerate(jobs):
            todo.put((index, job))
        threads = max(1, available_cores() // len(self.devices))
        workers = [
            context.Process(
                target=_worker_main,
                args=(self.registry.plugin_set.recipe, device, threads, str(cache.root), todo, done),
                daemon=True,
            )
            for device in self.devices
        ]
        for _ in workers:
            todo.put(None)  # one stop signal per worker
        for worker in workers:
            worker.start()
        bars = {t.key: progress(t.n_items, t.label, initial=cached_items(t, t.missing_shards(cache)))
                for t in stage if t.kind != "compare"}
        remaining = len(jobs)
        try:
            while remaining:
                try:
                    index, error = done.get(timeout=5.0)
                except queue.Empty:
                    dead = [w for w in workers if not w.is_alive() and w.exitcode not in (0, None)]
                    if dead:
                        raise MethodFailure(
                            f"a worker process died (exit code {dead[0].exitcode}); finished shards are "
                            "cached, rerun the same command to resume"
                        ) from None
                    continue
                if error is not None:
                    raise FiqabenchError(error)
                task, lo, hi = jobs[index]
                if task.key in bars:
                    bars[task.key].update(hi - lo)
                remaining -= 1
        finally:
            for bar in bars.values():
                bar.close()
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()
                worker.join()


def _worker_main(recipe: dict[str, Any], device: str, threads: int, cache_root: str,
                 todo: Any, done: Any) -> None:
    """A worker process: its own registry (rebuilt from the driver's recipe), device and threads."""
    import torch

    torch.set_num_threads(threads)
    from fiqabench.plugins import get_plugin_manager
    from fiqabench.registry import Registry

    workspace = Workspace(Registry(get_plugin_manager(**recipe)), device)
    cache = Cache(cache_root)
    while True:
        item = todo.get()
        if item is None:
            return
        index, (task, lo, hi) = item
        try:
            fill(task, lo, hi, workspace, cache)
        except FiqabenchError as exc:
            done.put((index, str(exc).splitlines()[0]))
            return
        except Exception as exc:  # report, don't hang the driver
            done.put((index, f"{type(exc).__name__}: {exc}"))
            return
        done.put((index, None))


def make_executor(name: str, registry: Any, devices: Sequence[str], **options: Any) -> Executor:
    if name == "local":
        return LocalExecutor(registry, devices)
    if name == "ray":
        from fiqabench.executors.ray import RayExecutor

        return RayExecutor(registry, devices, **options)
    raise FiqabenchError(f"--executor must be local or ray, got {name!r}")
