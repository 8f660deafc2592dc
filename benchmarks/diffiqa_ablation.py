"""DifFIQA's Table 4 ablations on the embedded benchmark (prints a Markdown table; no assertions).

Usage::

    .venv/bin/python benchmarks/diffiqa_ablation.py [--variants default,no-flip,...] [--seeds 1,2]
                                                    [--cache-dir DIR] [--threads N]
    .venv/bin/python benchmarks/diffiqa_ablation.py --per-type RUN_DIR   # only the breakdown below

Every variant is one ``fiqabench run --datasets synthetic`` through the CLI, so the figures are
exactly what a user gets; all runs share one cache directory, so the embeddings and comparison
scores are computed once and each variant pays only for its quality scores. One option changes
per row against the paper's settings (n = 10, t = 5, official sampler, flip, forward term,
online weights). ``--seeds`` reruns the default variant with other run seeds, which gives the
spread that comes from DifFIQA's own noise draws (the benchmark itself stays fixed).

Paper Table 4 ablates "w/o flip", "w/o forward pass" (``forward_term=false``, our reading) and
the perturbation strength ``t = 20``; the other rows are our additions (``n``, sampler, EMA).

After the table it prints, for the default variant, Spearman's rank correlation between the
quality and minus the recorded severity per degradation type of the synthetic world (over the
images of that type; clean images have severity 0 and are left out), next to the ``oracle``'s
(1 by construction) and ``random``'s.
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

VARIANTS: dict[str, tuple[str, ...]] = {
    "default": (),
    "ema": ("ema=true",),
    "paper-sampler": ("sampler=paper",),
    "n=1": ("n=1",),
    "n=5": ("n=5",),
    "no-forward": ("forward_term=false",),
    "t=20": ("t=20",),
    "no-flip": ("flip=false",),
    "no-flip-no-forward": ("flip=false", "forward_term=false"),
}


def run_variant(options: tuple[str, ...], seed: int, methods: str, out: Path, cache: Path, threads: int) -> dict:
    args = [sys.executable, "-m", "fiqabench", "run", "-q", "--datasets", "synthetic", "--methods", methods,
            "--seed", str(seed), "--output", str(out), "--cache-dir", str(cache), "--formats", "csv"]
    for option in options + ((f"num_threads={threads}",) if threads else ()):
        args += ["--method-option", f"diffiqa:{option}"]
    start = time.perf_counter()
    subprocess.run(args, check=True, env={**os.environ})
    doc = json.loads((out / "results.json").read_text())
    doc["wall_s"] = time.perf_counter() - start
    return doc


def row_text(label: str, row: dict, wall: float | None) -> str:
    pauc = row["pauc"]
    runtime = row["runtime_ms_per_image"]
    ms = f"{runtime['median']:.0f}" if runtime and row["method"] == "diffiqa" else "0"
    wall_text = f"{wall:.0f}" if wall is not None else "-"
    return f"| {label} | {pauc['0.2']:.3f} | {pauc['0.3']:.3f} | {ms} | {wall_text} |"


def per_type_table(run_dir: Path) -> str:
    """Spearman(q, -severity) per degradation type, from a run directory's ``qualities.csv``."""
    import pandas as pd
    from scipy.stats import spearmanr

    from fiqabench_plugins.synthetic.dataset import build

    table = build("synthetic", {}).samples()
    meta = pd.DataFrame({"sample": table.ids,
                         "degradation": [m["degradation"] for m in table.metadata],
                         "severity": [m["severity"] for m in table.metadata]})
    qualities = pd.read_csv(run_dir / "qualities.csv")
    wide = qualities[qualities["dataset"] == "synthetic"].pivot(index="sample", columns="method", values="quality")
    frame = meta.merge(wide, left_on="sample", right_index=True)
    methods = [m for m in ("diffiqa", "random") if m in frame]
    lines = ["| degradation | images | " + " | ".join(f"Spearman {m}" for m in methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    degraded = frame[frame["degradation"] != "none"]
    groups = sorted(degraded.groupby("degradation"), key=lambda g: -spearmanr(g[1][methods[0]], -g[1]["severity"])[0])
    for name, group in [*groups, ("all degraded", degraded), ("all images", frame)]:
        rhos = [spearmanr(group[m], -group["severity"])[0] for m in methods]
        lines.append(f"| {name} | {len(group)} | " + " | ".join(f"{r:.2f}" for r in rhos) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="", help="extra run seeds for the default variant, e.g. 1,2")
    parser.add_argument("--cache-dir", type=Path, help="reuse this cache (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=0, help="diffiqa num_threads (0: torch's default)")
    parser.add_argument("--per-type", type=Path, metavar="RUN_DIR",
                        help="only print the per-degradation breakdown of an existing run directory")
    options = parser.parse_args()
    if options.per_type:
        print(per_type_table(options.per_type))
        return
    names = [name for name in options.variants.split(",") if name]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    seeds = [int(s) for s in options.seeds.split(",") if s]

    lines = ["| variant | pAUC@0.2 | pAUC@0.3 | ms/img (median) | wall s |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        cache = options.cache_dir or Path(tmp) / "cache"
        brackets: list[dict] = []
        breakdown = ""
        for index, name in enumerate(names):
            methods = "diffiqa,oracle,random" if index == 0 else "diffiqa"
            doc = run_variant(VARIANTS[name], 0, methods, Path(tmp) / name, cache, options.threads)
            rows = {row["method"]: row for row in doc["results"]}
            if index == 0:
                brackets = [rows["oracle"], rows["random"]]
                breakdown = per_type_table(Path(tmp) / name)
                env = doc["environment"]
                header = (f"host {env['host']}, {env['cpu_count']} CPUs, torch {env['torch']}; "
                          f"FNMR(0) = {rows['diffiqa']['fnmr_at_zero']:.4f} at FMR {rows['diffiqa']['fmr']:g}")
                print(header, flush=True)
            label = name + (" (" + ", ".join(VARIANTS[name]) + ")" if VARIANTS[name] else "")
            lines.append(row_text(label, rows["diffiqa"], doc["wall_s"]))
            print(lines[-1], flush=True)
        for seed in seeds:
            doc = run_variant((), seed, "diffiqa", Path(tmp) / f"seed{seed}", cache, options.threads)
            lines.append(row_text(f"default, run seed {seed}", doc["results"][0], doc["wall_s"]))
            print(lines[-1], flush=True)
        for row in brackets:
            lines.append(row_text(row["method"], row, None))
    print("\n" + "\n".join(lines))
    if breakdown:
        print(f"\nSpearman(quality, -severity) per degradation type, variant {names[0]}:\n{breakdown}")
    print("\nwall s: the whole CLI run (cold quality cache for the variant; the first run also embeds"
          " and scores the benchmark and runs the brackets).")


if __name__ == "__main__":
    main()
