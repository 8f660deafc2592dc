"""Executors: Ray's overhead per shard against the local executor, and the IJB-C DifFIQA plan.

Part 1 (measured here): the toy world of the tests (200 images, 16 px) with the ``random`` method,
cut into 200 shards of one image (so the work per shard is negligible and what is timed is the
per-shard machinery: a task, its npz written and fsynced), through the local executor (in this
process) and through Ray (a local instance, one worker already started), in interleaved rounds.
The start of Ray's worker (a process that imports torch and rebuilds the registry) is timed on
its own: it is paid once per worker per run.

Part 2 (computed): a DifFIQA run over IJB-C (469,375 images, 15,658,489 template pairs) with the
official configuration: the tasks, shards and bytes the engine's rules give, and the wall time
on 8 GPUs from a per-image cost whose source is printed (the paper's 1,074.6 ms on an RTX 3090
until a GPU figure of ours exists).

    python benchmarks/executor.py [--rounds 5] [--skip-ray]
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fiqabench.cache import Cache  # noqa: E402
from fiqabench.config import RunConfig  # noqa: E402
from fiqabench.executors import LocalExecutor  # noqa: E402
from fiqabench.plugins import get_plugin_manager  # noqa: E402
from fiqabench.registry import Registry  # noqa: E402
from fiqabench.runner import Runner, build_plan  # noqa: E402
from fiqabench.tasks import MAX_SHARD_ITEMS, SHARD_SECONDS, _shard_size  # noqa: E402

IJBC_IMAGES = 469_375
IJBC_PAIRS = 15_658_489
PAPER_DIFFIQA_MS = 1074.6  # DifFIQA Table 3, RTX 3090 (the paper's figure, not ours)
EMBEDDING_SIZE = 512


def _prepared(registry: Registry, cache_dir: Path) -> tuple[list, Cache]:
    """The quality tasks of the toy run, with embeddings and comparisons already computed."""
    config = RunConfig(datasets=["toy"], methods=["random"], cache_dir=str(cache_dir), batch_size=1)
    tasks = Runner(registry, config).tasks(build_plan(registry, config))
    cache = Cache(cache_dir)
    cache.ensure()
    LocalExecutor(registry).run([t for t in tasks if t.kind != "quality"], cache)
    return [t for t in tasks if t.kind == "quality"], cache


def _local(registry: Registry, cache_dir: Path) -> tuple[float, int]:
    quality, cache = _prepared(registry, cache_dir)
    n_shards = sum(len(t.missing_shards(cache)) for t in quality)
    start = time.perf_counter()
    LocalExecutor(registry).run(quality, cache)
    return time.perf_counter() - start, n_shards


def _ray(registry: Registry, executor: object, cache_dir: Path) -> tuple[float, float]:
    """(seconds to start the worker, seconds to run every shard on it)."""
    import ray

    from fiqabench.executors import null_progress

    quality, cache = _prepared(registry, cache_dir)
    probe = cache_dir / "probe"
    probe.write_text("x")
    start = time.perf_counter()
    actors = executor._actors(ray, cache, str(probe))  # type: ignore[attr-defined]
    started = time.perf_counter() - start
    jobs = [(task, lo, hi) for task in quality for lo, hi in task.missing_shards(cache)]
    start = time.perf_counter()
    executor._run_jobs(ray, actors, quality, jobs, null_progress)  # type: ignore[attr-defined]
    for task in quality:
        task.finalize(cache)
    ran = time.perf_counter() - start
    for actor in actors:
        ray.kill(actor)
    return started, ran


def overhead(rounds: int, skip_ray: bool) -> None:
    os.environ["FIQABENCH_SHARD_SIZE"] = "1"
    registry = Registry(get_plugin_manager(entry_points=False, plugins_dirs=[REPO / "tests" / "fixture_plugins"]))
    ray_executor = None
    if not skip_ray:
        import ray

        from fiqabench.executors.ray import RayExecutor

        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))  # this run's own token
        start = time.perf_counter()
        ray.init(num_cpus=1, object_store_memory=80 * 1024 * 1024, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        print(f"Ray local instance started in {time.perf_counter() - start:.1f} s")
        ray_executor = RayExecutor(registry, workers=1)
    local_times, ray_times, starts = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            seconds, n = _local(registry, Path(tmp) / f"local{r}")
            local_times.append(seconds)
            if ray_executor is not None:
                started, ran = _ray(registry, ray_executor, Path(tmp) / f"ray{r}")
                starts.append(started)
                ray_times.append(ran)
    local = statistics.median(local_times)
    print(f"shards per run: {n} of 1 image (toy world, method random), {rounds} interleaved rounds, medians")
    print(f"local executor: {local:.3f} s per run, {1000 * local / n:.2f} ms per shard")
    if ray_times:
        import ray

        remote = statistics.median(ray_times)
        print(f"Ray executor, 1 worker: {statistics.median(starts):.2f} s to start the worker (imports torch, "
              "rebuilds the registry), then")
        print(f"  {remote:.3f} s per run, {1000 * remote / n:.2f} ms per shard: overhead "
              f"{1000 * (remote - local) / n:+.2f} ms per shard ({remote / local:.2f}x the local executor)")
        ray.shutdown()


def ijbc_plan() -> None:
    os.environ.pop("FIQABENCH_SHARD_SIZE", None)
    quality_shard = _shard_size("quality", PAPER_DIFFIQA_MS)
    embed_shard = _shard_size("embed", 1.0)
    n_quality, n_embed = -(-IJBC_IMAGES // quality_shard), -(-IJBC_IMAGES // embed_shard)
    # bytes of one quality shard as the engine writes it (quality + per-batch timings)
    buffer = io.BytesIO()
    batches = -(-quality_shard // 64)
    np.savez(buffer, quality=np.zeros(quality_shard), batch_seconds=np.zeros(batches),
             batch_images=np.zeros(batches, np.int64), batch_warmup=np.zeros(batches, bool),
             batch_size=np.zeros(1, np.int64), device=np.asarray(["cuda"]), host=np.asarray(["node-01"]))
    quality_bytes = n_quality * len(buffer.getvalue())
    embed_bytes = IJBC_IMAGES * EMBEDDING_SIZE * 4 * 2  # float32, image and its flip
    similarity_bytes = IJBC_PAIRS * 8
    hours = IJBC_IMAGES * PAPER_DIFFIQA_MS / 1000.0 / 8 / 3600
    print(f"IJB-C, DifFIQA (official configuration), one evaluation FR model, shards of ~{SHARD_SECONDS:.0f} s "
          f"(at most {MAX_SHARD_ITEMS} images):")
    print("  tasks: 3 (embed, compare, quality)")
    print(f"  embed: {n_embed} shards of {embed_shard} images (FR cost assumed 1 ms/image), "
          f"{embed_bytes / 1e9:.2f} GB (512-d float32, image + flip)")
    print(f"  compare: 1 shard, {similarity_bytes / 1e6:.0f} MB ({IJBC_PAIRS:,} float64 scores)")
    print(f"  quality: {n_quality} shards of {quality_shard} images at {PAPER_DIFFIQA_MS} ms/image "
          f"(paper, RTX 3090), {quality_bytes / 1e6:.1f} MB")
    print(f"  projected wall time on 8 GPUs: {hours:.1f} h of DifFIQA (469,375 x {PAPER_DIFFIQA_MS} ms / 8), "
          f"{n_quality / 8:.0f} shards per GPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-ray", action="store_true")
    options = parser.parse_args()
    overhead(options.rounds, options.skip_ray)
    ijbc_plan()


if __name__ == "__main__":
    main()
