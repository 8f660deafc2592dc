"""Label generation for distillation: the file format and its rules, kill/resume, deterministic merge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fiqabench.errors import InputFormatError, MissingArtifactError
from fiqabench.labels import min_max, quantiles, read_labels, validation_mask, write_labels

from .conftest import run_cli


def test_rank_normalisation_by_hand() -> None:
    # ranks 1, 4, 2.5, 2.5 (the two 3.0 share ranks 2 and 3) -> (rank - 1) / 3
    assert quantiles(np.array([2.0, 40.0, 3.0, 3.0])).tolist() == [0.0, 1.0, 0.5, 0.5]
    assert quantiles(np.array([0.9, 0.1, 0.5, 0.7, 0.3])).tolist() == [1.0, 0.0, 0.5, 0.75, 0.25]
    assert quantiles(np.array([7.0])).tolist() == [0.0]


def test_min_max_and_the_official_validation_split_by_hand() -> None:
    scores = np.array([0.5, 0.9, 0.1, 0.7, 0.3, 0.3, 0.8, 0.2, 0.6, 0.4, 1.0, 0.0])
    assert min_max(scores).tolist() == pytest.approx(scores.tolist())  # already spans [0, 1]
    assert min_max(np.array([3.0, 5.0, 4.0])).tolist() == [0.0, 1.0, 0.5]
    assert min_max(np.array([2.0, 2.0])).tolist() == [0.0, 0.0]
    # ascending order: 0.0 (11), 0.1 (2), 0.2 (7), 0.3 (4), 0.3 (5), 0.4 (9), 0.5 (0), 0.6 (8),
    # 0.7 (3), 0.8 (6), 0.9 (1), 1.0 (10); every 10th from the first: positions 0 and 10
    assert np.flatnonzero(validation_mask(scores)).tolist() == [1, 11]
    # ties keep index order: with every=4, positions 0, 4, 8 of the ascending order -> 11, 5, 3
    assert np.flatnonzero(validation_mask(scores, every=4)).tolist() == [3, 5, 11]


def _write(folder: Path) -> Path:
    return write_labels(folder, samples=["a/1", "a/2", "b/1"], identities=["a", "a", "b"],
                        scores=np.array([0.2, np.nan, 0.6]),
                        provenance={"method": {"name": "m@1"}, "dataset": {"name": "d", "manifest": "x"}})


def test_label_folder_round_trip_leaves_failures_out(tmp_path: Path) -> None:
    labels = read_labels(_write(tmp_path / "labels"))
    assert labels.samples == ("a/1", "b/1") and labels.identities == ("a", "b")
    assert labels.index.tolist() == [0, 2]
    assert labels.scores.tolist() == [0.2, 0.6] and labels.labels.tolist() == [0.0, 1.0]
    assert labels.validation.tolist() == [True, False]
    assert labels.provenance["n_failed"] == 1 and labels.provenance["n_labels"] == 2
    assert read_labels(tmp_path / "labels" / "provenance.json").samples == labels.samples


def test_edited_or_malformed_label_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    folder = _write(tmp_path / "labels")
    csv = folder / "labels.csv"
    csv.write_text(csv.read_text().replace("0.6", "0.7"))
    with pytest.raises(InputFormatError, match=r"labels\.csv: does not match the sha256"):
        read_labels(folder)
    with pytest.raises(MissingArtifactError, match="no provenance.json"):
        read_labels(tmp_path)
    # a bad row names its line (digest updated so the row check is reached)
    import json

    from fiqabench.files import file_digest

    csv.write_text("index,sample,identity,score,label,split\n0,a/1,a,0.2,0.0,validation\n2,b/1,b,oops,1.0,train\n")
    provenance = json.loads((folder / "provenance.json").read_text())
    provenance["labels_sha256"] = file_digest(csv)
    (folder / "provenance.json").write_text(json.dumps(provenance))
    with pytest.raises(InputFormatError, match=r"labels\.csv:3: not a number"):
        read_labels(folder)


#: DifFIQA (n = 2) over a tiny degraded training split: 3 identities x 4 images.
LABEL_ARGS = ["label", "--method", "diffiqa", "--dataset", "synthetic-train", "--dataset-option", "identities=3",
              "--dataset-option", "images_per_identity=4", "--dataset-option", "degraded_fraction=0.5",
              "--method-option", "n=2", "--batch-size", "2", "-q"]


def _label(tmp: Path, name: str, *extra: str, shard: int = 2) -> Path:
    out = tmp / name
    done = run_cli(*LABEL_ARGS, "--output", str(out), "--cache-dir", str(tmp / f"cache-{name}"), *extra,
                   env={"FIQABENCH_SHARD_SIZE": str(shard), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return out


def test_killed_label_job_resumes_to_byte_identical_labels(tmp_path: Path) -> None:
    out, cache = tmp_path / "killed", tmp_path / "cache-killed"
    args = [*LABEL_ARGS, "--output", str(out), "--cache-dir", str(cache)]
    env = {**os.environ, "FIQABENCH_SHARD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "fiqabench", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pattern = "quality/*/diffiqa@*/*/part-*.npz"
    deadline = time.monotonic() + 300
    while not list(cache.rglob(pattern)) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # while the next shard is being computed
    process.wait()
    kept = {p.name: p.stat().st_mtime_ns for p in cache.rglob(pattern)}
    assert 1 <= len(kept) < 6 and not out.exists(), "killed after the first shard, before the labels"
    resumed = run_cli(*args, env={"FIQABENCH_SHARD_SIZE": "2", "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr
    after = {p.name: p.stat().st_mtime_ns for p in cache.rglob(pattern)}
    assert len(after) == 6 and all(after[name] == mtime for name, mtime in kept.items()), "finished shards reused"

    clean = _label(tmp_path, "clean")
    assert (out / "labels.csv").read_bytes() == (clean / "labels.csv").read_bytes()
    assert (out / "provenance.json").read_bytes() == (clean / "provenance.json").read_bytes()
    labels = read_labels(out)
    assert len(labels) == 12 and labels.provenance["method"]["name"].startswith("diffiqa@")
    assert labels.dataset["options"]["degraded_fraction"] == 0.5 and labels.dataset["manifest"]


def test_label_merge_is_the_same_whatever_the_split(tmp_path: Path) -> None:
    """One process with shards of 2, two worker processes with shards of 4: identical bytes (the
    Ray executor's case is in test_ray_executor.py)."""
    one = _label(tmp_path, "one", shard=2)
    two = _label(tmp_path, "two", "--devices", "cpu,cpu", shard=4)
    assert (one / "labels.csv").read_bytes() == (two / "labels.csv").read_bytes()
    assert (one / "provenance.json").read_bytes() == (two / "provenance.json").read_bytes()


def test_label_and_run_share_the_cache(tmp_path: Path) -> None:
    """Scores computed by a label job are not computed again by a run (same key), and vice versa."""
    out = _label(tmp_path, "labels")
    dry = run_cli("run", "--datasets", "synthetic-train", "--methods", "diffiqa", "--method-option", "diffiqa:n=2",
                  "--batch-size", "2", "--dataset-option", "synthetic-train:identities=3",
                  "--dataset-option", "synthetic-train:images_per_identity=4",
                  "--dataset-option", "synthetic-train:degraded_fraction=0.5",
                  "--cache-dir", str(tmp_path / "cache-labels"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    quality = next(line.split() for line in dry.stdout.splitlines() if line.startswith("quality"))
    assert quality[4] == "0", dry.stdout  # no image left to score
    assert read_labels(out).provenance["cache_key"]
