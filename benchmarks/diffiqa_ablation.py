"""DifFIQA's Table 4 ablations on the embedded benchmark (prints a Markdown table; no assertions).

Usage::

    .venv/bin/python benchmarks/diffiqa_ablation.py [--variants default,no-flip,...] [--seeds 1,2]
                                                    [--cache-dir DIR] [--threads N]
    .venv/bin/python benchmarks/diffiqa_ablation.py --analyse DIR   # runs kept earlier with --keep DIR

Every variant is one ``fiqabench run --datasets synthetic`` through the CLI, so the figures are
exactly what a user gets; all runs share one cache directory, so the embeddings and comparison
scores are computed once and each variant pays only for its quality scores. One option changes
per row against the paper's settings (n = 10, t = 5, official sampler, flip, forward term,
online weights). ``--seeds`` reruns the first variant with other run seeds (after all variants),
which gives the spread that comes from DifFIQA's own noise draws (the benchmark stays fixed).
All runs share one cache, so a run that was cut short and started again with the same
``--cache-dir`` reuses the qualities (and their recorded runtimes) of the variants it finished.

Paper Table 4 ablates "w/o flip", "w/o forward pass" and the perturbation strength ``t = 20``;
the other rows are our additions (``n``, sampler, EMA). "W/o forward pass" is run in both
readings: ``no-forward`` (``forward_term=false``: the noisy images are not compared, the
reconstructions still start from them) and ``no-forward-clean`` (also ``reconstruct_from=clean``:
no forward noising, the reverse process starts from the clean image).

After the table it prints, for the first variant, Spearman's rank correlation between the
quality and minus the recorded severity per degradation type of the synthetic world (over the
images of that type; clean images have severity 0 and are left out), next to ``random``'s; then
every variant's pAUC@0.3 and its difference to the first variant with 95 % intervals from a
paired cluster bootstrap over identities (``--bootstrap``), which says which Table 4 differences
the benchmark's 100 identities can resolve. With ``--seeds``, it also prints how far single
qualities move between run seeds (the per-image differences to run seed 0).
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

import numpy as np
from identity_bootstrap import identity_bootstrap, per_type_table  # shared with baselines_quality.py

VARIANTS: dict[str, tuple[str, ...]] = {
    "default": (),
    "paper-sampler": ("sampler=paper",),
    "no-forward": ("forward_term=false",),
    "no-forward-clean": ("forward_term=false", "reconstruct_from=clean"),
    "no-flip": ("flip=false",),
    "t=20": ("t=20",),
    "ema": ("ema=true",),
    "no-flip-no-forward": ("flip=false", "forward_term=false"),
    "n=5": ("n=5",),
    "n=1": ("n=1",),
}


def load_text() -> str:
    """The machine's load average (1, 5, 15 min): the runs' timings depend on it."""
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


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


def seed_spread(root: Path, first: str, seeds: list[int]) -> str:
    """Per-image |quality(run seed s) - quality(run seed 0)| of the first variant, against the
    spread of its qualities across images: how much DifFIQA's own noise draws move one score."""
    import pandas as pd

    def qualities(run_dir: Path) -> pd.Series:
        frame = pd.read_csv(run_dir / "qualities.csv")
        return frame[(frame["dataset"] == "synthetic") & (frame["method"] == "diffiqa")].set_index("sample")["quality"]

    base = qualities(root / first)
    lines = ["| run seeds | images | median abs. difference | 99th percentile | max | std of qualities across images |",
             "|---|---|---|---|---|---|"]
    for seed in seeds:
        diff = (qualities(root / f"seed{seed}").reindex(base.index) - base).abs().to_numpy()
        lines.append(f"| 0 vs {seed} | {len(diff)} | {np.median(diff):.4f} | {np.percentile(diff, 99):.4f} |"
                     f" {diff.max():.4f} | {base.std():.4f} |")
    return "\n".join(lines)


def analyse(root: Path, names: list[str], seeds: list[int], replicates: int) -> None:
    """The per-type breakdown, the run-seed spread and the identity bootstrap of the runs under ``root``."""
    first = names[0]
    print(f"\nSpearman(quality, -severity) per degradation type, variant {first}:\n{per_type_table(root / first)}")
    if seeds:
        print(f"\nPer-image quality differences between run seeds, variant {first}:\n{seed_spread(root, first, seeds)}")
    if replicates <= 0:
        return
    variants: dict[str, tuple[Path, str]] = {"oracle": (root / first, "oracle")}
    variants.update({name: (root / name, "diffiqa") for name in names})
    variants.update({f"run seed {seed}": (root / f"seed{seed}", "diffiqa") for seed in seeds})
    variants["random"] = (root / first, "random")
    print(f"\nIdentity bootstrap ({replicates} replicates, paired, threshold fixed):")
    print(identity_bootstrap(variants, first, replicates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="", help="extra run seeds for the default variant, e.g. 1,2")
    parser.add_argument("--cache-dir", type=Path, help="reuse this cache (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=0, help="diffiqa num_threads (0: torch's default)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the run directories here (DIR/<variant>)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="identity-bootstrap replicates (0: none)")
    parser.add_argument("--analyse", type=Path, metavar="DIR",
                        help="no runs: analyse DIR/<variant> and DIR/seed<N> written earlier with --keep")
    options = parser.parse_args()
    names = [name for name in options.variants.split(",") if name]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    seeds = [int(s) for s in options.seeds.split(",") if s]
    if options.analyse:
        missing = [str(options.analyse / d) for d in [*names, *(f"seed{s}" for s in seeds)]
                   if not (options.analyse / d / "qualities.csv").is_file()]
        if missing:
            parser.error(f"no qualities.csv in {', '.join(missing)}")
        analyse(options.analyse, names, seeds, options.bootstrap)
        return

    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load average (1/5/15 min) {load_text()}", flush=True)
    lines = ["| variant | pAUC@0.2 | pAUC@0.3 | ms/img (median) | wall s |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        root = options.keep or Path(tmp)
        cache = options.cache_dir or Path(tmp) / "cache"
        brackets: list[dict] = []
        for index, name in enumerate(names):
            methods = "diffiqa,oracle,random" if index == 0 else "diffiqa"
            doc = run_variant(VARIANTS[name], 0, methods, root / name, cache, options.threads)
            rows = {row["method"]: row for row in doc["results"]}
            if index == 0:
                brackets = [rows["oracle"], rows["random"]]
                env = doc["environment"]
                header = (f"host {env['host']}, {env['cpu_count']} CPUs, torch {env['torch']}; "
                          f"FNMR(0) = {rows['diffiqa']['fnmr_at_zero']:.4f} at FMR {rows['diffiqa']['fmr']:g}")
                print(header, flush=True)
            label = name + (" (" + ", ".join(VARIANTS[name]) + ")" if VARIANTS[name] else "")
            lines.append(row_text(label, rows["diffiqa"], doc["wall_s"]))
            print(lines[-1], f"  [load average after it: {load_text()}]", flush=True)
        for seed in seeds:  # last: the variants matter more when a run must be cut short
            doc = run_variant(VARIANTS[names[0]], seed, "diffiqa", root / f"seed{seed}", cache, options.threads)
            lines.append(row_text(f"{names[0]}, run seed {seed}", doc["results"][0], doc["wall_s"]))
            print(lines[-1], f"  [load average after it: {load_text()}]", flush=True)
        for row in brackets:
            lines.append(row_text(row["method"], row, None))
        print("\n" + "\n".join(lines))
        print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load average {load_text()}")
        print("\nwall s: the whole CLI run (cold quality cache for the variant; the first run also embeds"
              " and scores the benchmark and runs the brackets).")
        analyse(root, names, seeds, options.bootstrap)


if __name__ == "__main__":
    main()
