"""Real-benchmark readers through `fiqabench run`: FR sanity figures, dataset details, template
ids in comparisons.csv, leakage rows; dlib detection bookkeeping with a stub detector."""

from __future__ import annotations

import csv
import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from fiqabench.cli import main as cli_main
from tests.plugins import dataset_layouts as L
from tests.plugins.test_datasets import TOY_ALIGNED

def _run(tmp_path: Path, capsys: pytest.CaptureFixture, dataset: str, root: Path, *extra: str,
         methods: str = "random") -> tuple[dict, Path]:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "toy_aligned.py").write_text(TOY_ALIGNED)
    out = tmp_path / f"out-{dataset}"
    code = cli_main(["run", "--plugins-dir", str(plugins), "--datasets", dataset, "--dataset-option",
                     f"{dataset}:root={root}", "--dataset-option", f"{dataset}:workers=1", "--fr-models", "toy-aligned",
                     "--methods", methods, "--output", str(out), "--cache-dir", str(tmp_path / "cache"),
                     "--formats", "csv", "--discard-limits", "0.3", "--fmr", "0.25", "--save-comparisons", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads((out / "results.json").read_text()), out


def test_lfw_run_has_fold_accuracy_and_alignment_details(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    L.make_lfw(tmp_path / "lfw")
    doc, out = _run(tmp_path, capsys, "lfw", tmp_path / "lfw")
    (protocol,) = doc["protocols"]
    accuracy = protocol["fr_sanity"]["kfold_accuracy"]
    assert accuracy["n_folds"] == 2 and len(accuracy["fold_accuracy"]) == 2  # the fixture's 2 folds
    assert protocol["fr_sanity"]["tar_at_far"] is None
    details = doc["components"]["datasets"]["lfw"]["details"]
    assert details == {"alignment": "fixed(crop_fraction=0.55)", "samples": 11, "comparisons": 8}
    assert doc["results"][0]["leakage"] is None
    with open(out / "comparisons.csv", newline="") as handle:
        first = next(csv.DictReader(handle))
    assert first["a"] == "Ann_A/Ann_A_0001.jpg" and first["dataset"] == "lfw"


def test_ijbc_run_has_tar_at_far_template_ids_and_subject_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    L.make_ijb(tmp_path / "IJBC")
    doc, out = _run(tmp_path, capsys, "ijbc", tmp_path / "IJBC")
    (protocol,) = doc["protocols"]
    sanity = protocol["fr_sanity"]
    assert sanity["kfold_accuracy"] is None and [t["far"] for t in sanity["tar_at_far"]] == [1e-4, 1e-5]
    assert not any(t["resolved"] for t in sanity["tar_at_far"])  # 4 non-mated pairs resolve no such FAR
    details = doc["components"]["datasets"]["ijbc"]["details"]
    assert details["alignment"] == "landmarks(ijbc_name_5pts_score.txt)"
    assert details["subjects_source"].startswith("1:N metadata (ijbc_1N_")
    with open(out / "comparisons.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 7 and {r["a"] for r in rows} <= {"101", "102", "103", "201", "202"}  # template ids


def test_xqlfw_marks_ser_fiq_as_leakage(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    L.make_xqlfw(tmp_path / "xqlfw")
    # the real SER-FIQ, with dropout inserted before the toy model's head (it has none) and few passes
    doc, out = _run(tmp_path, capsys, "xqlfw", tmp_path / "xqlfw", "--method-option", "ser-fiq:dropout_rate=0.5",
                    "--method-option", "ser-fiq:m=4", methods="ser-fiq,random")
    leakage = {row["method"]: row["leakage"] for row in doc["results"]}
    assert leakage["random"] is None
    assert leakage["ser-fiq"] == "XQLFW was built by selecting images with SER-FIQ quality scores"
    with open(out / "results.csv", newline="") as handle:
        table = {row["method"]: row["leakage"] for row in csv.DictReader(handle)}
    assert table == {"ser-fiq": leakage["ser-fiq"], "random": ""}


def _stub_dlib(monkeypatch: pytest.MonkeyPatch, answers: dict[str, tuple[bool, int]]) -> list[tuple]:
    """A stand-in for fiqabench_plugins.dlib.detect: ``answers[image mean]`` is (found, faces)."""
    from fiqabench_plugins.datasets.align import ARCFACE_TEMPLATE_112

    calls: list[tuple] = []

    def detect_landmarks5(image, detector="hog", multiple="largest"):
        calls.append((int(image.mean()), detector, multiple))
        found, faces = answers.get(len(calls), (True, 1))
        if faces > 1 and multiple == "refuse":
            found = False
        return (ARCFACE_TEMPLATE_112 * 0.8 + 5 if found else None), faces

    package = types.ModuleType("fiqabench_plugins.dlib")
    package.detection_unavailable = lambda: None
    module = types.ModuleType("fiqabench_plugins.dlib.detect")
    module.detect_landmarks5 = detect_landmarks5
    monkeypatch.setitem(sys.modules, "fiqabench_plugins.dlib", package)
    monkeypatch.setitem(sys.modules, "fiqabench_plugins.dlib.detect", module)
    return calls


def test_dlib_detects_once_per_image_and_lists_failures_before_any_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fiqabench_plugins.datasets import folder

    L.make_folder(tmp_path / "f", size=(100, 100))  # 9 images, sorted person0/img0 .. person2/img2
    # call 2 (person0/img1): no face; call 5 (person1/img1): two faces.
    calls = _stub_dlib(monkeypatch, {2: (False, 0), 5: (True, 2)})
    options = {"root": str(tmp_path / "f"), "workers": 1, "align": "dlib", "multiple": "refuse", "detector": "cnn"}
    with caplog.at_level(logging.WARNING, logger="fiqabench"):
        ds = folder.build_folder(options=options)
    assert len(calls) == 9 and calls[0][1:] == ("cnn", "refuse")  # every image, once, at build
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "no face in 1 (e.g. person0/img1.jpg)" in warning
    assert "several faces in 1 under multiple=refuse (e.g. person1/img1.jpg)" in warning
    assert "keep the fixed centre crop" in warning
    crops = ds.read_images(np.arange(9))
    ds.read_images(np.arange(9))  # a second method reads again: nothing is re-detected
    assert len(calls) == 9 and crops.shape == (9, 112, 112, 3)
    # The images without landmarks keep the fixed crop (identical to align=fixed's).
    fixed = folder.build_folder(options={**options, "align": "fixed"}).read_images([1, 4])
    assert np.array_equal(crops[[1, 4]], fixed) and not np.array_equal(crops[0], fixed[0])
    details = ds.details()
    assert details["alignment"] == "dlib(cnn, refuse; fallback fixed, crop_fraction=0.55)"
    assert details["detection_failures"] == ["person0/img1.jpg", "person1/img1.jpg"]
    detection = details["detection"]
    assert (detection["images"], detection["no_face"], detection["several_faces_refused"],
            detection["several_faces_kept_largest"]) == (9, 1, 1, 0)
    # multiple=largest keeps the largest face: counted, not a failure; another manifest.
    calls.clear()
    largest = folder.build_folder(options={**options, "multiple": "largest"})
    assert largest.details()["detection"]["several_faces_kept_largest"] == 1
    assert largest.detection_failures == ["person0/img1.jpg"]
    assert largest.manifest_digest() != ds.manifest_digest()


def test_bad_detector_option_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    L.make_folder(tmp_path / "f")
    code = cli_main(["run", "--datasets", "folder", "--dataset-option", f"folder:root={tmp_path / 'f'}",
                     "--dataset-option", "folder:detector=mtcnn", "--methods", "random", "--fr-models",
                     "synthetic-arcface", "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "detector" in err[0] and "mtcnn" in err[0]
    assert not (tmp_path / "cache").exists()
