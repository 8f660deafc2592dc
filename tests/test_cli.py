"""The CLI end to end on the toy world: outputs, caching, every error path (exit 2, one line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import FIXTURE_PLUGINS, load_json, run_cli, toy_run_args


def test_run_writes_results_and_reuses_the_cache(tmp_path: Path) -> None:
    first = run_cli(*toy_run_args(tmp_path, "--on-failure", "lowest", "--formats", "csv"))
    assert first.returncode == 0, first.stderr
    doc = load_json(tmp_path / "out" / "results.json")
    assert doc["schema_version"] == 1
    rows = {r["method"]: r for r in doc["results"]}
    assert set(rows) == {"random", "toy-norm", "toy-nan"}
    for row in rows.values():
        for field in ("dataset", "fr_model", "quality_fr_model", "method", "fmr", "threshold", "fnmr_at_zero",
                      "n_mated", "n_non_mated", "pauc", "runtime_ms_per_image"):
            assert field in row
        assert set(row["pauc"]) == {"0.2", "0.3"}
        assert row["n_mated"] == 20 * 45 and row["n_non_mated"] == 200 * 199 // 2 - 900
    assert rows["toy-norm"]["quality_fr_model"] == "toy-fr"
    assert rows["random"]["quality_fr_model"] is None
    assert rows["toy-nan"]["n_failures"] == 20  # one image in ten is NaN
    assert rows["toy-nan"]["pauc"]["0.3"] < rows["random"]["pauc"]["0.3"]
    qualities = (tmp_path / "out" / "qualities.csv").read_text().splitlines()
    assert qualities[0] == "dataset,fr_model,method,sample,quality"
    assert len(qualities) == 1 + 3 * 200
    assert any(line.startswith("toy,toy-fr,toy-norm,id00/img0,") for line in qualities)

    cache_files = sorted(p for p in (tmp_path / "cache").rglob("*") if p.is_file())
    stamps = {p: p.stat().st_mtime_ns for p in cache_files}
    second = run_cli(*toy_run_args(tmp_path, "--on-failure", "lowest", "--formats", "csv", "--batch-size", "7"))
    assert second.returncode == 0, second.stderr
    assert {p: p.stat().st_mtime_ns for p in cache_files} == stamps, "a warm run must recompute nothing"
    again = load_json(tmp_path / "out" / "results.json")
    for a, b in zip(doc["results"], again["results"]):
        assert a["pauc"] == b["pauc"] and a["threshold"] == b["threshold"]

    # Adding a method computes only that method.
    third = run_cli(*toy_run_args(tmp_path, "--on-failure", "lowest", "--formats", "csv",
                                  methods="random,toy-norm,toy-nan,toy-kill"))
    assert third.returncode == 0, third.stderr
    new_files = {p for p in (tmp_path / "cache").rglob("*") if p.is_file()} - set(cache_files)
    assert new_files and all("toy-kill" in str(p) for p in new_files)


def test_nan_fails_the_run_by_default_and_keeps_the_cache(tmp_path: Path) -> None:
    result = run_cli(*toy_run_args(tmp_path, methods="random,toy-nan"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("fiqabench: error: method 'toy-nan' returned NaN")
    assert "--on-failure lowest" in result.stderr
    assert list((tmp_path / "cache").rglob("part-*.npz")), "finished shards stay cached"


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--methods", "randm"], ["unknown FIQA method 'randm'", "Did you mean 'random'"]),
        (["--datasets", "toyy"], ["unknown dataset 'toyy'", "Did you mean 'toy'"]),
        (["--fr-models", "nope"], ["unknown FR model 'nope'"]),
        (["--method-option", "random:colour=red"], ["has no option 'colour'"]),
        (["--method-option", "random:distribution=cauchy"], ["expected one of uniform, normal"]),
        (["--method-option", "nosuch:x=1"], ["unknown FIQA method 'nosuch'"]),
        (["--method-option", "random"], ["expected NAME:KEY=VALUE"]),
        (["--method-option", "toy-norm:nope=1"], ["has no option 'nope'"]),  # toy-norm is not in this run
        (["--dataset-option", "toy:identities=many"], ["toy:identities='many'"]),
        (["--fmr", "2"], ["--fmr must be in (0, 1)"]),
        (["--discard-limits", "0.3,x"], ["--discard-limits"]),
        (["--fr-models", "toy-fr-112"], ["'toy-fr-112'", "aligned-112-face", "--allow-domain-mismatch"]),
        (["--fr-models", "toy-weights"], ["toy-weights", "weight file"]),
        (["--methods", "oracle"], ["oracle", "synthetic"]),
        (["--formats", "latexx"], ["unknown report format 'latexx'"]),
        (["--config", "/nonexistent/x.toml"], ["no such file"]),
        (["--methods", "random,toy-norm,random"], ["--methods: random given more than once"]),
        (["--device", "cuda:abc"], ["--device must be cpu, cuda, cuda:N or mps"]),
        # a method needing dropout with an FR model that has none is refused before any work
        (["--methods", "toy-dropout"],
         ["toy-dropout needs an FR model with a dropout layer in its head", "toy-dropout-fr", "toy-fr has none"]),
    ],
)
def test_run_errors_are_one_line_exit_2(tmp_path: Path, extra: list[str], fragments: list[str]) -> None:
    args = toy_run_args(tmp_path, methods="random")
    _one_line_error(run_cli(*args, *extra), *fragments)


def test_missing_dataset_root_and_unreadable_images(tmp_path: Path) -> None:
    base = ["run", "--plugins-dir", str(FIXTURE_PLUGINS), "--datasets", "toy-disk", "--methods", "random",
            "--output", str(tmp_path / "out"), "-q"]
    _one_line_error(run_cli(*base), "toy-disk", "root")
    root = tmp_path / "images"
    root.mkdir()
    (root / "0.npy").write_bytes(b"not an array")
    _one_line_error(run_cli(*base, "--dataset-option", f"toy-disk:root={root}"), "0.npy", "unreadable image")


def test_config_file_and_debug_traceback(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('methods = ["random"]\nfmr = 0.01\ndiscard_limits = [0.1]\n[method_options.random]\n'
                      'distribution = "normal"\n')
    result = run_cli("run", "--plugins-dir", str(FIXTURE_PLUGINS), "--datasets", "toy", "--config", str(config),
                     "--output", str(tmp_path / "out"), "-q", "--formats", "csv")
    assert result.returncode == 0, result.stderr
    doc = load_json(tmp_path / "out" / "results.json")
    assert doc["config"]["fmr"] == 0.01 and set(doc["results"][0]["pauc"]) == {"0.1"}
    assert doc["config"]["method_options"] == {"random": {"distribution": "normal"}}
    bad = tmp_path / "bad.toml"
    bad.write_text("methodz = 1\n")
    _one_line_error(run_cli("run", "--config", str(bad)), "bad.toml", "methodz", "unknown setting")
    debug = run_cli(*toy_run_args(tmp_path, "--debug", methods="randm"))
    assert debug.returncode == 1 and "Traceback" in debug.stderr


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        ('methods = "random"\n', ["methods", "expected a list of names"]),
        ('fmr = "x"\n', ["fmr", "expected a number"]),
        ("discard_limits = 0.2\n", ["discard_limits", "expected a list of numbers"]),
        ("batch_size = 1.5\n", ["batch_size", "expected an integer"]),
        ("device = 1\n", ["device", "expected a string"]),
        ("method_options = 3\n", ["method_options", "expected tables of options"]),
    ],
)
def test_config_values_of_the_wrong_type_are_named(tmp_path: Path, toml: str, fragments: list[str]) -> None:
    config = tmp_path / "run.toml"
    config.write_text(toml)
    _one_line_error(run_cli(*toy_run_args(tmp_path, "--config", str(config), methods="random")), "run.toml", *fragments)


def test_unreadable_config_and_unusable_output_fail_before_any_work(tmp_path: Path) -> None:
    _one_line_error(run_cli(*toy_run_args(tmp_path, "--config", str(tmp_path), methods="random")), "cannot read")
    blocker = tmp_path / "afile"
    blocker.write_text("")
    args = toy_run_args(tmp_path, methods="random")
    args[args.index("--output") + 1] = str(blocker / "sub")
    _one_line_error(run_cli(*args), "--output", "cannot create the folder")
    assert not (tmp_path / "cache").exists()  # nothing was computed
    args[args.index("--output") + 1] = str(blocker)
    _one_line_error(run_cli(*args), "--output", "exists and is not a folder")


def test_results_are_readable_by_others_and_report_errors_name_the_file(tmp_path: Path) -> None:
    result = run_cli(*toy_run_args(tmp_path, "--formats", "csv", methods="random"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    umask = os.umask(0)
    os.umask(umask)
    for name in ("results.json", "qualities.csv"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    doc = load_json(out / "results.json")
    doc["results"][0]["pauc"]["0.3"] = "n/a"  # hand-edited: a writer, not the loader, finds it
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    result = run_cli("report", str(edited), "--format", "markdown", "--output", str(tmp_path / "rep"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "edited.json: results[0].pauc.0.3" in result.stderr


def test_list_and_plugins_do_not_import_torch() -> None:
    code = (
        "import sys\nfrom fiqabench.cli import main\n"
        "for kind in ('methods', 'datasets', 'fr-models', 'formats', 'trainers'):\n"
        "    assert main(['list', kind]) == 0\n"
        "assert main(['plugins']) == 0\n"
        "assert 'torch' not in sys.modules, 'listing imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "random @ 1" in result.stdout and "needs from the FR model: none" in result.stdout


def test_list_shows_unavailable_components_with_the_reason(tmp_path: Path) -> None:
    result = run_cli("list", "methods", "--json", "--plugins-dir", str(FIXTURE_PLUGINS))
    assert result.returncode == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["toy-norm"]["needs_fr_model"] == "embeddings"


def test_report_regenerates_from_results_json(tmp_path: Path) -> None:
    assert run_cli(*toy_run_args(tmp_path, "--on-failure", "lowest", "--formats", "csv")).returncode == 0
    out = tmp_path / "again"
    result = run_cli("report", str(tmp_path / "out"), "--format", "csv", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "results.csv").is_file()
    _one_line_error(run_cli("report", str(tmp_path / "nowhere")), "no such file")


def test_cache_info_and_clear(tmp_path: Path) -> None:
    assert run_cli(*toy_run_args(tmp_path, methods="random")).returncode == 0
    info = run_cli("cache", "info", "--cache-dir", str(tmp_path / "cache"))
    assert info.returncode == 0 and "embeddings" in info.stdout and "quality" in info.stdout
    only_toy = run_cli("cache", "info", "--cache-dir", str(tmp_path / "cache"), "--dataset", "toy")
    assert only_toy.returncode == 0 and "3 entries" in only_toy.stdout
    _one_line_error(run_cli("cache", "clear", "--cache-dir", str(tmp_path / "cache"), "--dataset", "tyo"),
                    "--dataset tyo: no cache entries", "toy@1")
    cleared = run_cli("cache", "clear", "--cache-dir", str(tmp_path / "cache"), "--dataset", "toy@1")
    assert cleared.returncode == 0 and "removed 3 entries" in cleared.stdout
    assert run_cli(*toy_run_args(tmp_path, methods="random")).returncode == 0
    cleared = run_cli("cache", "clear", "--cache-dir", str(tmp_path / "cache"), "--dataset", "toy")  # any version
    assert cleared.returncode == 0 and "removed 3 entries" in cleared.stdout


def test_per_sample_seeds_do_not_depend_on_batch_size(tmp_path: Path) -> None:
    values = []
    for batch in ("1", "13", "64"):
        out = tmp_path / batch
        result = run_cli("run", "--plugins-dir", str(FIXTURE_PLUGINS), "--datasets", "toy", "--methods", "random",
                         "--batch-size", batch, "--output", str(out), "--cache-dir", str(out / "cache"), "-q",
                         "--formats", "csv")
        assert result.returncode == 0, result.stderr
        lines = (out / "qualities.csv").read_text().splitlines()[1:]
        values.append(np.array([float(line.rsplit(",", 1)[1]) for line in lines]))
    assert np.array_equal(values[0], values[1]) and np.array_equal(values[0], values[2])
