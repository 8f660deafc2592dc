"""``fiqabench train`` resolves its dataset from the same registry as ``run``."""

from __future__ import annotations

from pathlib import Path

from .conftest import FIXTURE_PLUGINS, run_cli


def test_a_plugins_dir_dataset_trains_the_diffiqa_ddpm(tmp_path: Path) -> None:
    out = tmp_path / "ddpm.safetensors"
    result = run_cli(
        "train", "diffiqa-ddpm", "--plugins-dir", str(FIXTURE_PLUGINS), "--dataset", "toy",
        "--dataset-option", "identities=4", "--option", "steps=2", "--option", "batch_size=4",
        "--option", "pool_copies=1", "--output", str(out), "-q",
    )
    assert result.returncode == 0, result.stderr
    from fiqabench_plugins.diffiqa.checkpoint import read_metadata

    assert read_metadata(out)["dataset_digest"].startswith("toy@1:") and read_metadata(out)["dataset_digest"].endswith("-4")


def test_train_input_errors_are_one_line(tmp_path: Path) -> None:
    base = ["train", "diffiqa-ddpm", "--plugins-dir", str(FIXTURE_PLUGINS), "--output", str(tmp_path / "w"), "-q"]
    for extra, fragment in (
        (["--dataset", "toyy"], "unknown dataset 'toyy'"),
        (["--dataset", "toy", "--dataset-option", "identities=x"], "toy:identities='x'"),
        (["--fr-model", "toy-fr"], "takes no --fr-model"),
        (["--dataset", "toy-disk"], "root"),
    ):
        result = run_cli(*base, *extra)
        assert result.returncode == 2 and fragment in result.stderr, (extra, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
