"""The Ray executor on a local Ray instance: the same numbers as the local executor, and a worker
killed mid-shard has its shard retried."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from fiqabench.config import RunConfig  # noqa: E402
from fiqabench.executors.ray import RayExecutor  # noqa: E402
from fiqabench.plugins import get_plugin_manager  # noqa: E402
from fiqabench.registry import Registry  # noqa: E402
from fiqabench.runner import Runner, build_plan  # noqa: E402

from .conftest import FIXTURE_PLUGINS  # noqa: E402


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance for the module: 2 CPUs, a small object store, its own temp folder
    (short: Ray's socket paths must fit in 107 characters)."""
    temp = tempfile.mkdtemp(prefix="fqb-ray-", dir="/tmp")
    saved = {key: os.environ.get(key) for key in ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_TOKEN")}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray turns token authentication on for local clusters: this session gets its own token,
    # not the user's ~/.ray one
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
    ray.init(num_cpus=2, object_store_memory=80 * 1024 * 1024, _temp_dir=temp, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _numbers(document: dict) -> list[tuple]:
    return [(r["dataset"], r["fr_model"], r["method"], r["threshold"], r["fnmr_at_zero"], r["pauc"], r["edc"])
            for r in document["results"]]


def _run(tmp: Path, executor: str, methods: list[str], **extra: object) -> tuple[dict, list]:
    config = RunConfig(datasets=["toy"], methods=methods, cache_dir=str(tmp / executor), batch_size=25, **extra)
    registry = Registry(get_plugin_manager(entry_points=False, plugins_dirs=[FIXTURE_PLUGINS]))
    runner = Runner(registry, config, executor=RayExecutor(registry) if executor == "ray" else None)
    result = runner.run(build_plan(registry, config))
    return result["document"], result["qualities"]


def test_ray_gives_the_local_executors_numbers(tmp_path: Path, local_ray: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIQABENCH_SHARD_SIZE", "40")  # 5 shards per task, spread over 2 workers
    local_doc, local_q = _run(tmp_path, "local", ["random", "toy-norm", "toy-nan"], on_failure="lowest")
    ray_doc, ray_q = _run(tmp_path, "ray", ["random", "toy-norm", "toy-nan"], on_failure="lowest")
    assert _numbers(ray_doc) == _numbers(local_doc)
    assert ray_q == local_q
    shards = sorted(p.name for p in (tmp_path / "ray").rglob("quality/*/random@1/*/part-*.npz"))
    assert len(shards) == 5


def test_a_killed_worker_has_its_shard_retried(tmp_path: Path, local_ray: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "killed"
    monkeypatch.setenv("FIQABENCH_SHARD_SIZE", "50")
    monkeypatch.setenv("FIQABENCH_TEST_KILL_MARKER", str(marker))
    monkeypatch.setenv("FIQABENCH_TEST_KILL_AT", "1")  # SIGKILL on the worker's first call, once
    ray_doc, ray_q = _run(tmp_path, "ray", ["random", "toy-kill"])
    assert marker.exists(), "the fixture method killed its worker"
    monkeypatch.delenv("FIQABENCH_TEST_KILL_MARKER")
    local_doc, local_q = _run(tmp_path, "local", ["random", "toy-kill"])
    assert _numbers(ray_doc) == _numbers(local_doc) and ray_q == local_q


def test_cache_root_must_be_visible_to_every_worker(tmp_path: Path, local_ray: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from fiqabench.cache import Cache
    from fiqabench.errors import ConfigError

    registry = Registry(get_plugin_manager(entry_points=False, plugins_dirs=[FIXTURE_PLUGINS]))
    executor = RayExecutor(registry, workers=1)
    with pytest.raises(ConfigError, match="cannot see the cache root"):
        executor._actors(ray, Cache(tmp_path), str(tmp_path / "no-probe-here"))


def test_ray_label_job_merges_to_the_local_bytes(tmp_path: Path, local_ray: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``fiqabench label``'s merge: the Ray executor's shards (spread over 2 workers) give the
    label folder of the local executor, byte for byte."""
    monkeypatch.setenv("FIQABENCH_SHARD_SIZE", "40")
    registry = Registry(get_plugin_manager(entry_points=False, plugins_dirs=[FIXTURE_PLUGINS]))
    folders = {}
    for executor in ("local", "ray"):
        config = RunConfig(datasets=["toy"], methods=["random"], cache_dir=str(tmp_path / executor), batch_size=20)
        runner = Runner(registry, config, executor=RayExecutor(registry) if executor == "ray" else None)
        folders[executor] = tmp_path / f"labels-{executor}"
        runner.label(build_plan(registry, config), folders[executor])
    for name in ("labels.csv", "provenance.json"):
        assert (folders["ray"] / name).read_bytes() == (folders["local"] / name).read_bytes()
    assert len(list((tmp_path / "ray").rglob("quality/*/random@1/*/part-*.npz"))) > 1
