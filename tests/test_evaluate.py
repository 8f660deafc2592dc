"""``fiqabench evaluate``: bring-your-own scores end to end, and its input errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fiqabench.evaluate_csv import evaluate_files
from fiqabench.metrics import edc, pair_quality, pauc

from .conftest import load_json, run_cli


def _write_inputs(tmp_path: Path, seed: int = 0) -> tuple[Path, Path, dict]:
    rng = np.random.default_rng(seed)
    n_samples = 300
    ids = [f"s{i}" for i in range(n_samples)]
    subject = rng.integers(0, 40, n_samples)
    utility = rng.normal(size=n_samples)
    a, b = np.triu_indices(n_samples, 1)
    keep = (subject[a] == subject[b]) | (rng.random(a.size) < 0.1)
    a, b = a[keep], b[keep]
    mated = subject[a] == subject[b]
    score = np.where(mated, 0.5 + 0.1 * np.minimum(utility[a], utility[b]), 0.0) + rng.normal(0, 0.1, a.size)
    comparisons = tmp_path / "C.csv"
    lines = ["a,b,score,mated"] + [f"{ids[i]},{ids[j]},{float(s)!r},{int(m)}" for i, j, s, m in zip(a, b, score, mated)]
    comparisons.write_text("\n".join(lines) + "\n")
    good = utility + rng.normal(0, 0.3, n_samples)
    uncertainty = -good  # a lower-is-better method carrying the same information
    noise = rng.normal(size=n_samples)
    qualities = tmp_path / "Q.csv"
    qualities.write_text("sample,good_q,unc & err,noise\n" + "".join(
        f"{ids[i]},{float(good[i])!r},{float(uncertainty[i])!r},{float(noise[i])!r}\n" for i in range(n_samples)))
    return comparisons, qualities, {"a": a, "b": b, "mated": mated, "score": score, "good": good}


def test_evaluate_end_to_end_with_tables_and_plots(tmp_path: Path) -> None:
    comparisons, qualities, data = _write_inputs(tmp_path)
    out = tmp_path / "out"
    result = run_cli("evaluate", "--comparisons", str(comparisons), "--qualities", str(qualities),
                     "--lower-is-better", "unc & err", "--output", str(out), "-q")
    assert result.returncode == 0, result.stderr
    rows = {r["method"]: r for r in load_json(out / "results.json")["results"]}
    assert set(rows) == {"good_q", "unc & err", "noise"}
    assert {r["dataset"] for r in rows.values()} == {"custom"} and {r["fr_model"] for r in rows.values()} == {"custom"}
    # Same numbers as the metrics called directly.
    m = data["mated"]
    curve = edc(mated_scores=data["score"][m], non_mated_scores=data["score"][~m],
                mated_pair_quality=pair_quality(data["good"][data["a"][m]], data["good"][data["b"][m]]))
    assert rows["good_q"]["pauc"]["0.3"] == pytest.approx(pauc(curve, 0.3), abs=1e-12)
    assert rows["unc & err"]["pauc"] == rows["good_q"]["pauc"]  # flipped once, same information
    assert rows["good_q"]["pauc"]["0.3"] < 0.9 < rows["noise"]["pauc"]["0.3"]

    latex = (out / "tables" / "pauc_0.3.tex").read_text()
    assert latex.count("{") == latex.count("}")
    assert len(re.findall(r"\\begin\{", latex)) == len(re.findall(r"\\end\{", latex))
    body = [line for line in latex.splitlines() if line.rstrip().endswith("\\\\") and "&" in line]
    assert body and len({line.count("&") - line.count("\\&") for line in body}) == 1
    assert "unc \\& err" in latex and "unc & err" not in latex
    assert "10^{-3}" in latex and "0.3" in latex
    assert (out / "plots" / "edc.png").stat().st_size > 1000
    assert (out / "tables" / "pauc_0.3.md").is_file() and (out / "edc_curves.csv").is_file()
    if shutil.which("pdflatex"):
        doc = tmp_path / "doc.tex"
        doc.write_text("\\documentclass{article}\\usepackage{booktabs,xcolor}\\begin{document}\n"
                       + latex + "\n\\end{document}\n")
        compiled = subprocess.run(["pdflatex", "-interaction=nonstopmode", doc.name], cwd=tmp_path,
                                  capture_output=True, text=True, timeout=120)
        assert compiled.returncode == 0, compiled.stdout[-2000:]


def test_distance_scores_are_negated(tmp_path: Path) -> None:
    comparisons, qualities, _ = _write_inputs(tmp_path)
    similarity = evaluate_files(comparisons=comparisons, qualities=qualities)
    text = comparisons.read_text().splitlines()
    flipped = [text[0]] + [",".join([*row.split(",")[:2], repr(-float(row.split(",")[2])), row.split(",")[3]])
                           for row in text[1:]]
    distances = tmp_path / "D.csv"
    distances.write_text("\n".join(flipped) + "\n")
    distance = evaluate_files(comparisons=distances, qualities=qualities, distance=True)
    assert [r["pauc"] for r in similarity["results"]] == [r["pauc"] for r in distance["results"]]


def test_dataset_and_fr_model_columns_group_rows(tmp_path: Path) -> None:
    comparisons, qualities, _ = _write_inputs(tmp_path)
    text = comparisons.read_text().splitlines()
    rows = [text[0] + ",dataset,fr_model"]
    for fr in ("arc", "ada"):
        rows += [line + f",lfw,{fr}" for line in text[1:]]
    grouped = tmp_path / "G.csv"
    grouped.write_text("\n".join(rows) + "\n")
    doc = evaluate_files(comparisons=grouped, qualities=qualities)
    assert {(r["dataset"], r["fr_model"]) for r in doc["results"]} == {("lfw", "arc"), ("lfw", "ada")}


def test_byte_order_mark_and_undecodable_bytes(tmp_path: Path) -> None:
    comparisons, qualities, _ = _write_inputs(tmp_path)
    # a spreadsheet's UTF-8 byte-order mark is read as such, not as part of the first column name
    comparisons.write_bytes(b"\xef\xbb\xbf" + comparisons.read_bytes())
    result = run_cli("evaluate", "--comparisons", str(comparisons), "--qualities", str(qualities),
                     "--output", str(tmp_path / "out"), "--formats", "csv")
    assert result.returncode == 0, result.stderr
    lines = qualities.read_bytes().splitlines(keepends=True)
    qualities.write_bytes(b"".join(lines[:5]) + b"s5,0.5\xff,1,2\n" + b"".join(lines[6:]))
    result = run_cli("evaluate", "--comparisons", str(comparisons), "--qualities", str(qualities),
                     "--output", str(tmp_path / "out2"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "Q.csv:6" in result.stderr and "not UTF-8 text (byte 0xff at column 7)" in result.stderr


@pytest.mark.parametrize(
    ("comparisons", "qualities", "fragments"),
    [
        ("a,b,score\nx,y,0.5\n", "sample,m\nx,1\ny,2\n", ["C.csv:1: mated", "missing column"]),
        ("a,b,score,mated\nx,y,zero,1\n", "sample,m\nx,1\ny,2\n", ["C.csv:2: score", "expected a number"]),
        ("a,b,score,mated\nx,y,0.5,2\n", "sample,m\nx,1\ny,2\n", ["C.csv:2: mated", "expected 0 or 1"]),
        ("a,b,score,mated\nx,,0.5,1\n", "sample,m\nx,1\ny,2\n", ["C.csv:2: b", "empty sample id"]),
        ("a,b,score,mated\nx,y,0.5,1\n", "sample,m\nx,1\nx,2\n", ["Q.csv:3: sample", "duplicate"]),
        ("a,b,score,mated\nx,y,0.5,1\n", "sample,m\nx,1\ny,oops\n", ["Q.csv:3: m", "expected a number"]),
        ("a,b,score,mated\nx,y,0.5,1\n", "sample\nx\n", ["Q.csv:1", "no method columns"]),
        ("a,b,score,mated\nx,y,0.5,1\nu,v,0.1,0\nw,z,0.2,0\n", "sample,m\nx,1\ny,2\n",
         ["4 sample id(s)", "have no row in", "u, v, w, z"]),
        ("", "sample,m\nx,1\n", ["C.csv:1", "empty file"]),
        ("a,b,score,mated\nx,y,0.5,1\nx,z,0.1,0\n", "sample,m\nx,1\ny,2\nz,3\n",
         ["C.csv", "dataset 'custom'", "non-mated"]),
    ],
)
def test_malformed_inputs_name_file_line_and_field(
    tmp_path: Path, comparisons: str, qualities: str, fragments: list[str]
) -> None:
    (tmp_path / "C.csv").write_text(comparisons)
    (tmp_path / "Q.csv").write_text(qualities)
    result = run_cli("evaluate", "--comparisons", str(tmp_path / "C.csv"), "--qualities", str(tmp_path / "Q.csv"),
                     "--output", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
