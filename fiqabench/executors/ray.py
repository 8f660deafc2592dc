"""The Ray executor: shards of a run spread over a Ray cluster (``--executor ray``).

How it works, and what a cluster user must set up:

- **Workers** are Ray actors, one per device: ``--devices cuda:0,cuda:1`` asks for one GPU each
  (Ray picks the GPU; the actor uses ``cuda``), and without ``--devices`` on ``--device cuda`` one
  actor per GPU of the cluster; on CPUs, one actor per CPU Ray offers, each with one torch
  thread. Each actor rebuilds the registry from what the driver loaded (its ``--plugins-dir``
  files, entry points, blocked plugins) and the driver's ``FIQABENCH_*`` environment, and builds
  each component once, not once per shard.
- **Shards reach the cache through a shared filesystem**: workers write each finished shard
  straight into the cache root, atomically, exactly like a local run; the driver writes the
  completion markers. The cache root (``--cache-dir``) must therefore be the same path on every
  node (NFS, Lustre, a mounted bucket); the run checks this before any work by asking each
  worker to read a probe file the driver wrote, and names the node that cannot see it. Nothing
  large travels through Ray's object store.
- **Failures**: a worker process that dies (preemption, out of memory, a crash) is restarted and
  its shard retried, :data:`MAX_RETRIES` times per worker; a method that raises is not retried
  (it would fail again) and fails the run with its message. A driver that dies loses nothing:
  rerun the same command and it resumes from the cache like a local run.
- ``--ray-address ADDR`` joins a running cluster (``ray start --head`` on one node, ``ray start
  --address ...`` on the others); without it a local Ray instance is started.

Ray is an optional dependency: ``pip install 'fiqabench[ray]'``.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

from fiqabench.cache import Cache
from fiqabench.errors import ConfigError, FiqabenchError, MissingArtifactError
from fiqabench.executors import ProgressFactory, cached_items, null_progress, staged
from fiqabench.tasks import Task

log = logging.getLogger("fiqabench")

#: Restarts of a dead worker (and retries of the shard it held) before the run fails.
MAX_RETRIES = 3


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingArtifactError("--executor ray needs Ray: pip install 'fiqabench[ray]'") from None
    return ray


class _Worker:
    """The body of a Ray actor: a workspace on one device, filling shards into the cache."""

    def __init__(self, recipe: dict[str, Any], device: str, threads: int, cache_root: str, probe: str,
                 environment: dict[str, str]) -> None:
        os.environ.update(environment)
        import torch

        torch.set_num_threads(max(1, threads))
        from fiqabench.plugins import get_plugin_manager
        from fiqabench.registry import Registry
        from fiqabench.tasks import Workspace

        self.node = socket.gethostname()
        self.probe_ok = os.path.isfile(probe)
        self.workspace = Workspace(Registry(get_plugin_manager(**recipe)), device)
        self.cache = Cache(cache_root)

    def check(self) -> tuple[str, bool]:
        return self.node, self.probe_ok

    def fill(self, task: Task, lo: int, hi: int) -> tuple[str, int, int, str | None]:
        from fiqabench.tasks import fill

        try:
            fill(task, lo, hi, self.workspace, self.cache)
        except FiqabenchError as exc:  # a deterministic failure: report it, don't retry
            return task.key, lo, hi, str(exc).splitlines()[0]
        return task.key, lo, hi, None


class RayExecutor:
    """Runs the missing shards on Ray actors; see the module docstring."""

    def __init__(self, registry: Any, devices: Sequence[str] = ("cpu",), *, address: str | None = None,
                 workers: int | None = None, max_retries: int = MAX_RETRIES) -> None:
        self.registry = registry
        self.devices = list(devices)
        self.address = address
        self.workers = workers
        self.max_retries = max_retries

    def _actors(self, ray: Any, cache: Cache, probe: str) -> list[Any]:
        environment = {k: v for k, v in os.environ.items() if k.startswith("FIQABENCH_")}
        recipe = self.registry.plugin_set.recipe
        cuda = any(d.startswith("cuda") for d in self.devices)
        if cuda:
            count = self.workers or (len(self.devices) if len(self.devices) > 1 else int(ray.cluster_resources().get("GPU", 0)))
            if count < 1:
                raise ConfigError("--executor ray --device cuda: the Ray cluster has no GPU")
            options = {"num_gpus": 1, "num_cpus": 1}
            device, threads = "cuda", 1
        else:
            count = self.workers or (len(self.devices) if len(self.devices) > 1 else int(ray.available_resources().get("CPU", 1)))
            options = {"num_cpus": 1}
            device, threads = "cpu", 1
        actor_class = ray.remote(max_restarts=self.max_retries, max_task_retries=self.max_retries, **options)(_Worker)
        actors = [actor_class.remote(recipe, device, threads, str(cache.root), probe, environment)
                  for _ in range(max(1, count))]
        for node, ok in ray.get([actor.check.remote() for actor in actors]):
            if not ok:
                raise ConfigError(
                    f"Ray worker on node {node} cannot see the cache root {cache.root}: with --executor ray the "
                    "cache must be on a filesystem every node mounts at the same path (--cache-dir)"
                )
        return actors

    def run(self, tasks: Sequence[Task], cache: Cache, progress: ProgressFactory = null_progress) -> None:
        ray = _import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        cache.ensure()
        probe = cache.root / f".ray-probe-{uuid.uuid4().hex}"
        probe.write_text("fiqabench\n")
        actors: list[Any] = []
        try:
            for stage in staged(tasks):
                jobs = [(task, lo, hi) for task in stage for lo, hi in task.missing_shards(cache)]
                if jobs:
                    actors = actors or self._actors(ray, cache, str(probe))
                    self._run_jobs(ray, actors, stage, jobs, progress)
                for task in stage:
                    task.finalize(cache)
        finally:
            probe.unlink(missing_ok=True)
            for actor in actors:
                ray.kill(actor)

    def _run_jobs(self, ray: Any, actors: list[Any], stage: list[Task], jobs: list[tuple[Task, int, int]],
                  progress: ProgressFactory) -> None:
        from ray.exceptions import RayActorError

        bars = {t.key: progress(t.n_items, t.label,
                                initial=cached_items(t, [(lo, hi) for task, lo, hi in jobs if task.key == t.key]))
                for t in stage if t.kind != "compare"}
        pending = list(jobs)
        running: dict[Any, Any] = {}
        idle = list(actors)
        try:
            while pending or running:
                while pending and idle:
                    actor = idle.pop()
                    running[actor.fill.remote(*pending.pop(0))] = actor
                done, _ = ray.wait(list(running), num_returns=1)
                actor = running.pop(done[0])
                try:
                    key, lo, hi, error = ray.get(done[0])
                except RayActorError as exc:
                    raise FiqabenchError(
                        f"a Ray worker died more than {self.max_retries} times ({type(exc).__name__}); finished "
                        "shards are cached, rerun the same command to resume"
                    ) from exc
                if error is not None:
                    raise FiqabenchError(error)
                if key in bars:
                    bars[key].update(hi - lo)
                idle.append(actor)
        finally:
            for bar in bars.values():
                bar.close()
