"""A reduced embedded run gives the numbers recorded before the engine v2 refactoring.

``tests/golden/reduced_run.json`` was recorded with the engine as it was before the refactoring
(commit 1c4e31a) by ``python tests/test_golden_run.py --record``; the engine v2 reproduced it
exactly (runtimes, timestamps and host aside). It covers a deterministic bracket, a seeded one
and a stochastic torch method (DifFIQA with one repeat). Re-recorded once since, when DifFIQA
became version 2 (its per-sample seeds come from ``diffiqa@2``, so its noise draws changed; the
oracle and random rows and qualities stayed identical to the byte, checked before re-recording).

Numbers are compared to a relative 1e-5, everything else exactly: torch's float32 kernels round
differently on other CPUs (on 2026-12-08 another Xeon VM gave DifFIQA qualities that differ from
the recorded ones in the seventh digit), which is not a change of the engine.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).parent / "golden" / "reduced_run.json"
ARGS = [
    "run", "--datasets", "synthetic", "--methods", "oracle,random,diffiqa",
    "--dataset-option", "synthetic:identities=20", "--dataset-option", "synthetic:non_mated=20000",
    "--method-option", "diffiqa:n=1", "-q",
]
ROW_FIELDS = ("dataset", "fr_model", "method", "quality_fr_model", "threshold", "fnmr_at_zero", "n_mated",
              "n_non_mated", "n_failures", "pauc", "pauc_raw", "edc")


def numbers(results_json: Path, qualities_csv: Path) -> dict:
    document = json.loads(results_json.read_text())
    rows = [{key: row.get(key) for key in ROW_FIELDS} for row in document["results"]]
    return {"results": rows, "qualities_csv": qualities_csv.read_text()}


def run(tmp: Path) -> dict:
    if __package__:
        from .conftest import run_cli
    else:  # recording as a script
        sys.path.insert(0, str(Path(__file__).parent))
        from conftest import run_cli  # type: ignore[no-redef]
    out = tmp / "out"
    result = run_cli(*ARGS, "--output", str(out), "--cache-dir", str(tmp / "cache"))
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return numbers(out / "results.json", out / "qualities.csv")


REL_TOL = 1e-5


def mismatches(got: Any, expected: Any, where: str = "") -> list[str]:
    """Where ``got`` differs from ``expected``: floats (and numeric CSV fields) beyond REL_TOL,
    anything else at all."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if got.keys() != expected.keys():
            return [f"{where}: keys {sorted(got)} != {sorted(expected)}"]
        return [m for key in expected for m in mismatches(got[key], expected[key], f"{where}.{key}")]
    if isinstance(expected, list) and isinstance(got, list):
        if len(got) != len(expected):
            return [f"{where}: {len(got)} items != {len(expected)}"]
        return [m for i, (g, e) in enumerate(zip(got, expected)) for m in mismatches(g, e, f"{where}[{i}]")]
    if isinstance(expected, float) and isinstance(got, float):
        return [] if math.isclose(got, expected, rel_tol=REL_TOL) else [f"{where}: {got!r} != {expected!r}"]
    return [] if got == expected else [f"{where}: {got!r} != {expected!r}"]


def _cell(text: str) -> Any:
    """A CSV cell as a float when it is a decimal number; integers and text stay strings (exact)."""
    if text.isdigit():
        return text
    try:
        return float(text)
    except ValueError:
        return text


def csv_cells(text: str) -> list[list[Any]]:
    return [[_cell(cell) for cell in line.split(",")] for line in text.splitlines()]


def test_tolerant_comparison_catches_real_changes() -> None:
    assert mismatches({"a": [0.975947380065918]}, {"a": [0.9759474992752075]}) == []
    assert mismatches({"a": [0.9759]}, {"a": [0.9760]})
    assert mismatches({"a": [1, 2]}, {"a": [1, 2, 3]})
    assert mismatches(csv_cells("x,id1,0.5\n"), csv_cells("x,id2,0.5\n"))
    assert mismatches(csv_cells("x,id1,0.5000001\n"), csv_cells("x,id1,0.5\n")) == []


def test_reduced_run_reproduces_the_golden_numbers(tmp_path: Path) -> None:
    expected = json.loads(GOLDEN.read_text())
    got = run(tmp_path)
    differences = (mismatches(csv_cells(got["qualities_csv"]), csv_cells(expected["qualities_csv"]), "qualities.csv")
                   + mismatches(got["results"], expected["results"], "results"))
    assert not differences, differences[:10]


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--record"]:
        raise SystemExit("usage: python tests/test_golden_run.py --record")
    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(json.dumps(run(Path(tmp)), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
