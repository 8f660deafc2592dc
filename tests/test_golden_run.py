"""A reduced embedded run gives the numbers recorded before the engine v2 refactoring.

``tests/golden/reduced_run.json`` was recorded with the engine as it was before the refactoring
(commit 1c4e31a) by ``python tests/test_golden_run.py --record``; the engine v2 reproduced it
exactly (runtimes, timestamps and host aside). It covers a deterministic bracket, a seeded one
and a stochastic torch method (DifFIQA with one repeat). Re-recorded once since, when DifFIQA
became version 2 (its per-sample seeds come from ``diffiqa@2``, so its noise draws changed; the
oracle and random rows and qualities stayed identical to the byte, checked before re-recording).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

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


def test_reduced_run_reproduces_the_golden_numbers(tmp_path: Path) -> None:
    expected = json.loads(GOLDEN.read_text())
    got = run(tmp_path)
    assert got["qualities_csv"] == expected["qualities_csv"]
    assert got["results"] == expected["results"]


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--record"]:
        raise SystemExit("usage: python tests/test_golden_run.py --record")
    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(json.dumps(run(Path(tmp)), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
