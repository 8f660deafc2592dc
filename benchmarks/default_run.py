"""Time the default ``fiqabench run`` (embedded benchmark, every shipped method) cold and warm.

Prints the wall time of a cold-cache run and of a warm rerun, each method's share (from its
recorded ms per image), and the pAUCs, so the README's budget figures come from one measurement:

    python benchmarks/default_run.py [--batch-size 64] [--methods a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fiqabench", "run", "-q", *args], check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", default="64")
    parser.add_argument("--methods", default=None, help="default: every available method")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "FIQABENCH_CACHE_DIR": str(Path(tmp) / "cache")}
        extra = ["--batch-size", options.batch_size] + (["--methods", options.methods] if options.methods else [])
        cold = run([*extra, "--output", str(Path(tmp) / "cold")], env)
        warm = run([*extra, "--output", str(Path(tmp) / "warm")], env)
        doc = json.loads((Path(tmp) / "cold" / "results.json").read_text())
    print(f"host {doc['environment']['host']}, {doc['environment']['cpu_count']} CPUs, torch {doc['environment']['torch']}")
    print(f"cold cache: {cold:7.1f} s   warm cache: {warm:5.1f} s")
    for row in doc["results"]:
        rt = row["runtime_ms_per_image"] or {}
        images = sum((row.get("quality_histogram") or {}).get("counts", []))
        if rt:
            timing = f"{rt['mean']:8.2f} ms/img (median {rt['median']:.2f}), ~{rt['mean'] * images / 1000:6.1f} s"
        else:
            timing = "untimed"
        paucs = " ".join(f"pAUC@{k}={v:.3f}" if v is not None else f"pAUC@{k}=n/a" for k, v in row["pauc"].items())
        print(f"  {row['method']:<12} {timing}  FNMR(0)={row['fnmr_at_zero']:.4f}  {paucs}")


if __name__ == "__main__":
    main()
