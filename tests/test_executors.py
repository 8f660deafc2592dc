"""The local executor with one worker process per device gives the in-process numbers."""

from __future__ import annotations

from pathlib import Path

from .conftest import load_json, run_cli, toy_run_args


def _numbers(doc: dict) -> list[tuple]:
    return [(r["method"], r["threshold"], r["fnmr_at_zero"], r["pauc"], r["edc"]) for r in doc["results"]]


def test_two_worker_processes_give_the_single_process_numbers(tmp_path: Path) -> None:
    env = {"FIQABENCH_SHARD_SIZE": "40"}
    single = run_cli(*toy_run_args(tmp_path / "one", "--formats", "csv", methods="random,toy-norm"), env=env)
    assert single.returncode == 0, single.stderr
    double = run_cli(*toy_run_args(tmp_path / "two", "--formats", "csv", "--devices", "cpu,cpu",
                                   methods="random,toy-norm"), env=env)
    assert double.returncode == 0, double.stderr
    one, two = load_json(tmp_path / "one" / "out" / "results.json"), load_json(tmp_path / "two" / "out" / "results.json")
    assert _numbers(one) == _numbers(two)
    assert (tmp_path / "one" / "out" / "qualities.csv").read_text() == (tmp_path / "two" / "out" / "qualities.csv").read_text()
    assert len(list((tmp_path / "two" / "cache").rglob("quality/*/toy-norm@1/*/part-*.npz"))) == 5


def test_dry_run_lists_tasks_and_estimates_without_computing(tmp_path: Path) -> None:
    result = run_cli(*toy_run_args(tmp_path, methods="random,toy-norm"), "--dry-run",
                     env={"FIQABENCH_SHARD_SIZE": "40"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == ["embed", "compare", "quality", "quality"]
    quality = [line.split() for line in lines if line.startswith("quality")]
    assert all(row[3] == "0/5" and row[4] == "200" for row in quality), result.stdout
    assert "estimated time left" in lines[-1]
    assert not (tmp_path / "out").exists() and not list((tmp_path / "cache").rglob("part-*.npz"))
