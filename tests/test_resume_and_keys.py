"""Resume after kill -9, and the table of what must (not) change a cache key."""

from __future__ import annotations

from pathlib import Path

import pytest

from fiqabench.cache import cache_key
from fiqabench.config import RunConfig
from fiqabench.plugins import get_plugin_manager
from fiqabench.registry import Registry
from fiqabench.runner import Runner, build_plan

from .conftest import FIXTURE_PLUGINS, load_json, run_cli, toy_run_args


def _numbers(doc: dict) -> list[tuple]:
    return [
        (r["dataset"], r["fr_model"], r["method"], r["threshold"], r["fnmr_at_zero"], r["pauc"], r["edc"]["fnmr"])
        for r in doc["results"]
    ]


def test_kill_9_then_resume_gives_the_uninterrupted_numbers(tmp_path: Path) -> None:
    # Shards of 50 samples; toy-kill SIGKILLs its process in its 4th batch of 25 (the second
    # shard) the first time, after the first shard was written.
    marker = tmp_path / "killed"
    env = {"FIQABENCH_TEST_KILL_MARKER": str(marker), "FIQABENCH_TEST_KILL_AT": "4", "FIQABENCH_SHARD_SIZE": "50"}
    args = toy_run_args(tmp_path, "--batch-size", "25", "--formats", "csv", methods="random,toy-kill")
    killed = run_cli(*args, env=env)
    assert killed.returncode == -9 and marker.exists()
    assert not (tmp_path / "out" / "results.json").exists()
    shards = sorted((tmp_path / "cache").rglob("toy-kill@1/*/part-*.npz"))
    assert [p.name for p in shards] == ["part-000000000-000000050.npz"]
    first_shard = shards[0].stat().st_mtime_ns
    assert not list((tmp_path / "cache").rglob("toy-kill@1/*/meta.json")), "incomplete entry has no marker"
    resumed = run_cli(*args, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert shards[0].stat().st_mtime_ns == first_shard, "the finished shard was reused, not recomputed"
    assert len(list((tmp_path / "cache").rglob("toy-kill@1/*/part-*.npz"))) == 4

    clean = tmp_path / "clean"
    reference = run_cli(*toy_run_args(clean, "--batch-size", "25", "--formats", "csv", methods="random,toy-kill"),
                        env={"FIQABENCH_SHARD_SIZE": "50"})
    assert reference.returncode == 0, reference.stderr
    assert _numbers(load_json(tmp_path / "out" / "results.json")) == _numbers(load_json(clean / "out" / "results.json"))


def _keys(config: RunConfig) -> dict[str, str]:
    """Cache keys of the toy run's embeddings and qualities under ``config``."""
    registry = Registry(get_plugin_manager(entry_points=False, plugins_dirs=[FIXTURE_PLUGINS]))
    tasks = Runner(registry, config).tasks(build_plan(registry, config))
    keys = {"embeddings": next(t.key for t in tasks if t.kind == "embed")}
    keys.update({t.method["name"]: t.key for t in tasks if t.kind == "quality"})
    return keys


BASE = {"datasets": ["toy"], "methods": ["random", "toy-norm"]}


@pytest.mark.parametrize(
    ("change", "must_change"),
    [
        ({"method_options": {"random": {"distribution": "normal"}}}, {"random"}),
        ({"fr_options": {"toy-fr": {"projection_seed": 4}}}, {"embeddings", "toy-norm"}),
        ({"dataset_options": {"toy": {"identities": 12}}}, {"embeddings", "random", "toy-norm"}),
        ({"seed": 1}, {"random", "toy-norm"}),
        ({"batch_size": 5}, set()),
        ({"device": "cuda"}, set()),
        ({"output": "/elsewhere"}, set()),
        ({"cache_dir": "/elsewhere"}, set()),
        ({"fmr": 0.01, "discard_limits": [0.1]}, set()),
        ({"devices": ["cpu", "cpu"], "executor": "ray"}, set()),
    ],
)
def test_cache_key_table(change: dict, must_change: set[str]) -> None:
    before = _keys(RunConfig(**BASE))
    after = _keys(RunConfig(**{**BASE, **change}))
    changed = {name for name in before if before[name] != after[name]}
    assert changed == must_change


def test_weights_file_content_is_in_the_key(tmp_path: Path) -> None:
    from fiqabench.api import Option
    from fiqabench.registry import FRModelSpec
    from fiqabench.runner import Component

    weights = tmp_path / "w.bin"
    weights.write_bytes(b"one")
    entry = FRModelSpec(name="x", target="m:a", plugin="p", options={"weights": Option(None, "", is_path=True),
                                                                 "threads": Option(1, "", affects_result=False)})
    first = cache_key(Component(entry, {"weights": str(weights), "threads": 1}).fingerprint())
    assert first == cache_key(Component(entry, {"weights": str(weights), "threads": 8}).fingerprint())
    moved = tmp_path / "moved.bin"
    moved.write_bytes(b"one")
    assert first == cache_key(Component(entry, {"weights": str(moved), "threads": 1}).fingerprint())
    weights.write_bytes(b"two")
    import os

    os.utime(weights, ns=(1, 1))
    assert first != cache_key(Component(entry, {"weights": str(weights), "threads": 1}).fingerprint())
    # a folder (e.g. a dataset root or a weights directory) is keyed by its listing
    folder = tmp_path / "root"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.jpg").write_bytes(b"a")
    before = cache_key(Component(entry, {"weights": str(folder), "threads": 1}).fingerprint())
    assert "missing" not in str(Component(entry, {"weights": str(folder)}).fingerprint())
    (folder / "sub" / "b.jpg").write_bytes(b"b")
    assert before != cache_key(Component(entry, {"weights": str(folder), "threads": 1}).fingerprint())


def test_a_cache_filled_with_one_shard_size_serves_another(tmp_path: Path) -> None:
    args = toy_run_args(tmp_path, "--batch-size", "25", "--formats", "csv", methods="random,toy-norm")
    first = run_cli(*args, env={"FIQABENCH_SHARD_SIZE": "50"})
    assert first.returncode == 0, first.stderr
    for size in ("30", "1000"):
        dry = run_cli(*args, "--dry-run", env={"FIQABENCH_SHARD_SIZE": size})
        assert dry.returncode == 0, dry.stderr
        rows = [line.split() for line in dry.stdout.splitlines()[1:-1]]
        assert rows and all(row[4] == "0" for row in rows), dry.stdout  # no image left to compute


def test_killed_diffiqa_run_resumes_computing_only_the_missing_samples(tmp_path: Path) -> None:
    """DifFIQA on a reduced embedded benchmark, killed after its first shards are written."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["run", "--datasets", "synthetic", "--methods", "diffiqa", "--dataset-option", "synthetic:identities=20",
            "--dataset-option", "synthetic:non_mated=20000", "--method-option", "diffiqa:n=1",
            "--batch-size", "10", "--formats", "csv", "--output", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "-q"]
    env = {**os.environ, "FIQABENCH_SHARD_SIZE": "10"}
    process = subprocess.Popen([sys.executable, "-m", "fiqabench", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pattern = "quality/*/diffiqa@*/*/part-*.npz"
    deadline = time.monotonic() + 300
    while not list((tmp_path / "cache").rglob(pattern)) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob(pattern)}
    assert 1 <= len(kept) < 20, "killed after the first shards and before the last"
    assert not list((tmp_path / "cache").rglob("quality/*/diffiqa@*/*/meta.json"))

    dry = run_cli(*args, "--dry-run", env={"FIQABENCH_SHARD_SIZE": "10"})
    quality_row = next(line.split() for line in dry.stdout.splitlines() if line.startswith("quality"))
    assert int(quality_row[4]) == 200 - 10 * len(kept), dry.stdout  # only the missing samples are left

    resumed = run_cli(*args, env={"FIQABENCH_SHARD_SIZE": "10"})
    assert resumed.returncode == 0, resumed.stderr
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob(pattern)}
    assert len(after) == 20 and all(after[name] == mtime for name, mtime in kept.items()), "finished shards reused"
