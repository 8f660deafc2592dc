"""What a run writes besides the pAUC rows: comparisons.csv (round trip through evaluate), FR
sanity figures, dataset details and leakage marks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fiqabench.cli import main as cli_main
from fiqabench.metrics.verification import tar_at_far
from fiqabench.report import latex, markdown
from fiqabench.results import parse

from .conftest import toy_run_args


def _cli(capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str, str]:
    code = cli_main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_comparisons_csv_round_trips_through_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = _cli(capsys, toy_run_args(tmp_path, "--save-comparisons", "--formats", "markdown",
                                               "--on-failure", "lowest", methods="random,toy-norm,toy-nan"))
    assert code == 0, err
    run_dir = tmp_path / "out"
    with open(run_dir / "comparisons.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["a", "b", "score", "mated", "dataset", "fr_model"]
    assert len(rows) == 200 * 199 // 2  # every comparison of the toy world
    assert {r["dataset"] for r in rows} == {"toy"} and {r["fr_model"] for r in rows} == {"toy-fr"}
    assert sum(r["mated"] == "1" for r in rows) == 20 * 45
    # The run's long qualities.csv is read as it is (failed samples are -inf there: ranked lowest).
    code, _, err = _cli(capsys, ["evaluate", "--comparisons", str(run_dir / "comparisons.csv"), "--qualities",
                                 str(run_dir / "qualities.csv"), "--output", str(tmp_path / "ev"), "-q",
                                 "--formats", "csv"])
    assert code == 0, err
    run = json.loads((run_dir / "results.json").read_text())
    again = json.loads((tmp_path / "ev" / "results.json").read_text())
    by_method = {r["method"]: r for r in again["results"]}
    assert set(by_method) == {"random", "toy-norm", "toy-nan"}
    for row in run["results"]:
        other = by_method[row["method"]]
        assert other["pauc"] == row["pauc"] and other["pauc_raw"] == row["pauc_raw"]  # identical, not close
        assert other["threshold"] == row["threshold"] and other["fnmr_at_zero"] == row["fnmr_at_zero"]
    # Without the flag there is no comparisons.csv; TOML save_comparisons = true writes it.
    code, _, err = _cli(capsys, toy_run_args(tmp_path / "b", "--formats", "csv", methods="random"))
    assert code == 0 and not (tmp_path / "b" / "out" / "comparisons.csv").exists()
    (tmp_path / "c.toml").write_text("save_comparisons = true\n")
    code, _, err = _cli(capsys, toy_run_args(tmp_path / "c", "--config", str(tmp_path / "c.toml"), "--formats", "csv",
                                             methods="random"))
    assert code == 0 and (tmp_path / "c" / "out" / "comparisons.csv").is_file(), err


def test_save_comparisons_must_be_a_boolean_in_toml(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "bad.toml").write_text('save_comparisons = "yes"\n')
    code, _, err = _cli(capsys, toy_run_args(tmp_path, "--config", str(tmp_path / "bad.toml")))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert "bad.toml" in lines[0] and "save_comparisons: expected true or false" in lines[0]


def test_fr_sanity_figures_from_the_cached_scores(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = _cli(capsys, [a for a in toy_run_args(tmp_path, "--save-comparisons", "--formats", "markdown",
                                                           methods="random") if a != "-q"])
    assert code == 0, err
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    (protocol,) = doc["protocols"]
    sanity = protocol["fr_sanity"]
    assert sanity["kfold_accuracy"] is None and sanity["note"] is None  # the toy world has no folds
    with open(tmp_path / "out" / "comparisons.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    scores = np.array([float(r["score"]) for r in rows])
    mated = np.array([r["mated"] == "1" for r in rows])
    expected = [t.as_dict() for t in tar_at_far(scores, mated, (1e-4, 1e-5))]
    assert sanity["tar_at_far"] == expected
    # 19,000 non-mated scores resolve FAR 1e-4 (1 false accept allowed) but not 1e-5.
    assert [t["resolved"] for t in expected] == [True, False]
    # One summary line per dataset x FR model, and a Markdown table.
    (line,) = [line for line in out.splitlines() if line.startswith("FR sanity")]
    assert "toy" in line and "toy-fr" in line and f"TAR@FAR=1e-4 {100 * expected[0]['tar']:.2f} %" in line
    assert "FAR unresolved" in line
    table = (tmp_path / "out" / "tables" / "fr_sanity.md").read_text()
    assert "## FR sanity" in table and "TAR at FAR 1e-4" in table and f"{100 * expected[0]['tar']:.2f} %" in table


def _document(leakage: str | None) -> dict:
    row = {
        "dataset": "xqlfw", "dataset_label": "XQLFW", "fr_model": "arcface", "method": "ser-fiq",
        "method_label": "SER-FIQ", "fmr": 1e-3, "threshold": 0.3, "fnmr_at_zero": 0.1, "n_mated": 10,
        "n_non_mated": 1000, "pauc": {"0.3": 0.812}, "leakage": leakage,
    }
    other = {**row, "method": "diffiqa", "method_label": "DifFIQA", "pauc": {"0.3": 0.901}, "leakage": None}
    return {"schema_version": 1, "config": {"fmr": 1e-3, "discard_limits": [0.3]}, "results": [row, other],
            "protocols": [{"dataset": "xqlfw", "fr_model": "arcface", "fr_sanity": {
                "kfold_accuracy": {"accuracy": 0.9, "std": 0.01, "n_folds": 10, "fold_accuracy": [0.9] * 10,
                                   "thresholds": [0.2] * 10}, "tar_at_far": None, "note": None}}]}


def test_leakage_is_marked_with_a_dagger_and_a_footnote() -> None:
    reason = "XQLFW was built by selecting images with SER-FIQ quality scores"
    view = parse(_document(reason))
    md = markdown.render_pauc(view, 0.3)
    assert "**0.812**†" in md and "0.901†" not in md
    assert f"† Leakage: SER-FIQ on XQLFW is not an independent result: {reason}." in md
    tex = latex.render_pauc(view, 0.3)
    assert r"\textbf{0.812}$^{\dagger}$" in tex and r"$^{\dagger}$\,Leakage: SER-FIQ on XQLFW" in tex
    clean = parse(_document(None))
    assert "†" not in markdown.render_pauc(clean, 0.3) and "dagger" not in latex.render_pauc(clean, 0.3)
    sanity = markdown.render_fr_sanity(view)
    assert "| XQLFW     | arcface    | 10-fold verification accuracy | 90.00 % ± 1.00 |" in sanity


def test_dataset_leakage_registration_is_checked() -> None:
    from fiqabench.registry import DatasetSpec, _Invalid

    spec = DatasetSpec(name="d", target="m:f", plugin="p", leakage={"ser-fiq": "built with it"})
    assert spec.leakage == {"ser-fiq": "built with it"}
    with pytest.raises(_Invalid, match="leakage must map method names to reasons"):
        DatasetSpec(name="d", target="m:f", plugin="p", leakage={"ser-fiq": 1})


def test_long_qualities_errors_name_file_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "C.csv").write_text("a,b,score,mated\nx,y,0.9,1\nx,z,0.1,0\ny,z,0.2,0\n")
    for body, fragment in (
        ("custom,,m,x,1\ncustom,,m,x,2\n", "Q.csv:3: sample: second quality of 'm' for sample 'x'"),
        ("custom,,m,x,high\n", "Q.csv:2: quality: expected a number, got 'high'"),
        ("custom,,,x,1\n", "Q.csv:2: method: empty method name"),
    ):
        (tmp_path / "Q.csv").write_text("dataset,fr_model,method,sample,quality\n" + body)
        code, _, err = _cli(capsys, ["evaluate", "--comparisons", str(tmp_path / "C.csv"), "--qualities",
                                     str(tmp_path / "Q.csv"), "--fmr", "0.5", "--output", str(tmp_path / "o")])
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and fragment in lines[0], err
