"""The strongest baselines on the default embedded benchmark (prints Markdown; no assertions).

Usage::

    .venv/bin/python benchmarks/baselines_quality.py [--output DIR] [--cache-dir DIR] [--threads 1]
                                                     [--bootstrap 2000]

One ``fiqabench run --datasets synthetic`` through the CLI with every baseline at its paper
settings (``cr-fiqa``, ``magface``, ``ser-fiq``, ``faceqan``), the two trivial references
(``sharpness``, ``embedding-norm`` of the evaluation FR model SynthArcFace) and the brackets
(``oracle``, ``random``); no ``--method-option`` is needed. It prints

1. normalised pAUC@0.2 / @0.3 and the runtime per image of every method (from ``results.json``),
   with the issue's targets (each baseline below 0.95 and below ``sharpness`` at 0.3);
2. Spearman(quality, -severity) per degradation type;
3. the paired cluster bootstrap over identities (``identity_bootstrap.py``, shared with
   ``diffiqa_ablation.py``): every method's pAUC@0.3 and its difference to ``embedding-norm``
   with 95 % intervals (the issue asks whether ``magface`` beats ``embedding-norm`` with an
   interval that excludes zero), then the same against ``sharpness``.
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

from identity_bootstrap import identity_bootstrap, per_type_table

BASELINES = ("cr-fiqa", "magface", "ser-fiq", "faceqan")
REFERENCES = ("sharpness", "embedding-norm")
BRACKETS = ("oracle", "random")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=None, help="run directory (default: a temporary one)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache (default: a temporary one: cold run)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the run (1 on a shared machine)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates (0: skip)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="baselines-quality-"))
    out = args.output or tmp / "run"
    cache = args.cache_dir or tmp / "cache"
    methods = ",".join(BASELINES + REFERENCES + BRACKETS)
    command = [sys.executable, "-m", "fiqabench", "run", "-q", "--datasets", "synthetic", "--methods", methods,
               "--seed", "0", "--output", str(out), "--cache-dir", str(cache), "--formats", "csv"]
    print(f"$ OMP_NUM_THREADS={args.threads} fiqabench run --datasets synthetic --methods {methods} --seed 0")
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    wall = time.perf_counter() - start
    doc = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in doc["results"] if r["dataset"] == "synthetic"}
    sharp = rows["sharpness"]["pauc"]["0.3"]
    print(f"\nrun: {wall:.0f} s wall (cold cache), output {out}\n")
    print("| method | pAUC@0.2 | pAUC@0.3 | ms / image | below 0.95 and sharpness at 0.3 |")
    print("|---|---|---|---|---|")
    for name in BRACKETS[:1] + BASELINES + REFERENCES + BRACKETS[1:]:
        r = rows[name]
        runtime = r.get("runtime_ms_per_image") or {}
        ms = f"{runtime['median']:.2f}" if runtime.get("median") is not None else "-"
        verdict = ""
        if name in BASELINES:
            ok = r["pauc"]["0.3"] < 0.95 and r["pauc"]["0.3"] < sharp
            verdict = "yes" if ok else "**no**"
        print(f"| {name} | {r['pauc']['0.2']:.3f} | {r['pauc']['0.3']:.3f} | {ms} | {verdict} |")
    print(f"\nSpearman(quality, -severity) per degradation type:\n{per_type_table(out, BASELINES + REFERENCES + ('random',))}")
    if args.bootstrap > 0:
        for reference in ("embedding-norm", "sharpness"):
            variants = {name: (out, name) for name in (reference,) + BASELINES + tuple(n for n in REFERENCES if n != reference) + BRACKETS}
            print(f"\nIdentity bootstrap against {reference} ({args.bootstrap} replicates, paired, threshold fixed):")
            print(identity_bootstrap(variants, reference, args.bootstrap))


if __name__ == "__main__":
    main()
