"""DifFIQA(R) and eDifFIQA against DifFIQA on the default embedded benchmark (prints Markdown).

Usage::

    .venv/bin/python benchmarks/distillation.py [--output DIR] [--cache-dir DIR] [--threads 1]
                                                [--bootstrap 2000] [--rounds 7] [--labels LABELS ...]
                                                [--learning-curve N,N,...] [--train-option KEY=VALUE ...]
                                                [--weights KIND=PATH ...] [--held-out-fit] [--skip-speed]
                                                [--seed-agreement]

1. **Agreement and accuracy**: one ``fiqabench run --datasets synthetic`` through the CLI with
   ``diffiqa``, ``diffiqa-r``, ``ediffiqa`` (shipped weights), ``embedding-norm`` and ``random``;
   Spearman rank correlation of each distilled method's scores with DifFIQA's over the 1,000
   images (target >= 0.9; the embedding norm is printed as the floor it must clear), normalised
   pAUC@0.2/0.3, and the paired cluster bootstrap over identities of each method's pAUC@0.3
   minus DifFIQA's (``identity_bootstrap.py``; target: within 0.05 or better). ``--weights
   ediffiqa=PATH`` measures another trained network (e.g. a recipe variant) in the same run.
2. **Speed**: ms per image of ``diffiqa-r`` and ``ediffiqa`` and of one inference forward pass of
   the backbone they were distilled from (SynthArcFace: preprocess + trunk + head, batches of 64),
   interleaved rounds, ratio per round, median (target <= 1.2x); DifFIQA's ms per image on a
   subset in the same rounds, and the speed-up (the paper: 1,074.62 / 1.24 ms = ~870x on an
   RTX 3090 with iResNet-100 at 112 px).
3. With ``--labels`` (repeat it for several folders, in the order the weights were trained on
   them): the label sets the shipped weights were trained on (size, identities, the share of
   min-max labels above 0.9, each label job's CPU time from the batch timings in the cache); with
   ``--learning-curve 6000,12000`` also DifFIQA(R) retrained with the shipped recipe on the labels
   of the first N images of the folders taken in order, and its Spearman with DifFIQA (minutes
   per point); ``--train-option KEY=VALUE`` changes the recipe for those points (e.g.
   ``lr_backbone=1e-3``: a later option overrides the recipe's). With ``--held-out-fit`` also each
   shipped network's Spearman with its labels (and eDifFIQA's with its label-optimised training
   target) on the images its trainer held out, and the agreement of that target with DifFIQA.
4. With ``--seed-agreement``: DifFIQA run again with run seed 1, and with n = 2 repeats (the
   shipped labels' setting), each against the seed-0 n = 10 scores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from identity_bootstrap import identity_bootstrap, load_qualities

DISTILLED = ("diffiqa-r", "ediffiqa")
METHODS = ("diffiqa",) + DISTILLED + ("embedding-norm", "random")
#: DifFIQA paper Table 3 (RTX 3090, official code): ms per image.
PAPER_MS = {"diffiqa": 1074.62, "diffiqa-r": 1.24}


def quality(args: argparse.Namespace) -> Path:
    from scipy.stats import spearmanr

    from fiqabench_plugins.synthetic.dataset import build

    tmp = Path(tempfile.mkdtemp(prefix="distillation-"))
    out = args.output or tmp / "run"
    cache = args.cache_dir or tmp / "cache"
    command = [sys.executable, "-m", "fiqabench", "run", "-q", "--datasets", "synthetic", "--methods", ",".join(METHODS),
               "--seed", "0", "--output", str(out), "--cache-dir", str(cache), "--formats", "csv"]
    for kind, weights in args.weights:
        command += ["--method-option", f"{kind}:weights={weights}"]
        print(f"{kind}: weights {weights} (instead of the shipped ones)")
    print(f"$ OMP_NUM_THREADS={args.threads} fiqabench run --datasets synthetic --methods {','.join(METHODS)} --seed 0")
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    print(f"\nrun: {time.perf_counter() - start:.0f} s wall, output {out}\n")
    doc = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in doc["results"] if r["dataset"] == "synthetic"}
    table = build("synthetic", {}).samples()
    ids = table.ids
    degraded = np.array([m["degradation"] != "none" for m in table.metadata])
    reference = load_qualities(out, "diffiqa", ids)
    print("| method | Spearman with diffiqa: all / clean / degraded images | pAUC@0.2 | pAUC@0.3 | ms / image (run) |")
    print("|---|---|---|---|---|")
    for name in METHODS:
        q = load_qualities(out, name, ids)
        rhos = [spearmanr(q[m], reference[m])[0] for m in (slice(None), ~degraded, degraded)]
        runtime = rows[name].get("runtime_ms_per_image") or {}
        ms = f"{runtime['median']:.2f}" if runtime.get("median") is not None else "-"
        print(f"| {name} | {' / '.join(f'{r:.3f}' for r in rhos)} | {rows[name]['pauc']['0.2']:.3f} |"
              f" {rows[name]['pauc']['0.3']:.3f} | {ms} |")
    for label, mask in (("clean", ~degraded), ("degraded", degraded)):
        low, high = np.percentile(reference[mask], [5, 95])
        print(f"diffiqa on the {mask.sum()} {label} images: 5th-95th percentile {low:.3f}-{high:.3f}")
    if args.seed_agreement:
        # DifFIQA against itself with another run seed: the agreement a regressor could hope for
        other = tmp / "run-seed-1"
        subprocess.run([*command[:command.index("--methods")], "--methods", "diffiqa", "--seed", "1", "--output",
                        str(other), "--cache-dir", str(cache), "--formats", "csv"], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        again = load_qualities(other, "diffiqa", ids)
        rhos = [spearmanr(again[m], reference[m])[0] for m in (slice(None), ~degraded, degraded)]
        print(f"diffiqa seed 1 vs seed 0, Spearman all / clean / degraded: {' / '.join(f'{r:.3f}' for r in rhos)}")
        # the shipped weights' labels use n = 2 repeats: how far that is from the n = 10 benchmark scores
        cheap = tmp / "run-n2"
        subprocess.run([*command[:command.index("--methods")], "--methods", "diffiqa", "--method-option",
                        "diffiqa:n=2", "--output", str(cheap), "--cache-dir", str(cache), "--formats", "csv"],
                       check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        n2 = load_qualities(cheap, "diffiqa", ids)
        rhos = [spearmanr(n2[m], reference[m])[0] for m in (slice(None), ~degraded, degraded)]
        print(f"diffiqa n=2 vs n=10 (seed 0), Spearman all / clean / degraded: {' / '.join(f'{r:.3f}' for r in rhos)}")
    if args.bootstrap > 0:
        variants = {name: (out, name) for name in ("diffiqa",) + DISTILLED + ("embedding-norm",)}
        print(f"\nIdentity bootstrap against diffiqa ({args.bootstrap} replicates, paired, threshold fixed):")
        print(identity_bootstrap(variants, "diffiqa", args.bootstrap))
    return out


def learning_curve(args: argparse.Namespace, run_dir: Path) -> None:
    """DifFIQA(R) trained with the shipped recipe on the labels of the first N images (whole
    identities) for each N: Spearman with DifFIQA on the benchmark and the best validation L1
    (in units of the training target: ranks with the shipped recipe)."""
    from scipy.stats import spearmanr

    from fiqabench.api import SampleBatch
    from fiqabench.labels import read_labels, write_labels
    from fiqabench_plugins.distilled import EMBEDDED_RECIPE
    from fiqabench_plugins.distilled.method import DistilledMethod, read_metadata
    from fiqabench_plugins.synthetic.dataset import build

    folders = [read_labels(path) for path in args.labels]
    data = build("synthetic", {})
    ids = data.samples().ids
    reference = load_qualities(run_dir, "diffiqa", ids)
    images = data.read_images(list(range(len(ids))))
    batch = SampleBatch(ids=ids, images=images, metadata=({},) * len(ids), seeds=np.zeros(len(ids), np.int64))
    tmp = Path(tempfile.mkdtemp(prefix="distillation-curve-"))
    changes = [x for option in args.train_option for x in ("--option", option)]
    print("\nLearning curve: diffiqa-r, `fiqabench train diffiqa-r --labels SUBSET [--labels SUBSET]"
          f" {' '.join([EMBEDDED_RECIPE, *changes])}`\n")
    print("| labels (first N images) | best validation L1 | Spearman with diffiqa | training s |")
    print("|---|---|---|---|")
    for n in args.learning_curve:
        subsets, left = [], n
        for k, labels in enumerate(folders):
            keep = labels.index < left  # a label folder holds a whole dataset: its first images, whole identities
            if not keep.any():
                break
            left -= int(keep.sum())
            subset = tmp / f"labels-{n}-{k}"
            scores = np.full(int(labels.index.max()) + 1, np.nan)
            scores[labels.index[keep]] = labels.scores[keep]
            samples = [""] * len(scores)
            identities = [""] * len(scores)
            for i, sample, identity in zip(labels.index, labels.samples, labels.identities):
                samples[i], identities[i] = sample, identity
            kept = ("method", "quality_fr_model", "quality_fr_model_name", "dataset", "seed", "cache_key")
            provenance = {k: v for k, v in labels.provenance.items() if k in kept}
            write_labels(subset, samples=samples, identities=identities, scores=scores, provenance=provenance)
            subsets += ["--labels", str(subset)]
        weights = tmp / f"diffiqa-r-{n}.safetensors"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fiqabench", "train", "diffiqa-r", *subsets,
                        *EMBEDDED_RECIPE.split(), *changes, "--output", str(weights), "-q"], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        seconds = time.perf_counter() - start
        q = DistilledMethod("diffiqa-r", options={"weights": str(weights)}, device="cpu").score(batch)
        loss = float(read_metadata(weights)["best_validation_loss"])
        print(f"| {n - left} | {loss:.4f} | {spearmanr(q, reference)[0]:.3f} | {seconds:.0f} |")


def speed(args: argparse.Namespace) -> None:
    import torch

    from fiqabench.api import SampleBatch
    from fiqabench.fr import derive_seeds
    from fiqabench_plugins.diffiqa.method import factory as build_diffiqa
    from fiqabench_plugins.distilled.method import DistilledMethod
    from fiqabench_plugins.synthetic.dataset import build
    from fiqabench_plugins.synthetic.model import build as build_arcface

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    data = build("synthetic", {})
    n, n_slow = args.images, args.diffiqa_images
    images = data.read_images(list(range(0, 10 * n, 10)))
    batch = SampleBatch(ids=tuple(f"s{i}" for i in range(n)), images=images, metadata=({},) * n,
                        seeds=derive_seeds(np.arange(n), 7))
    slow = SampleBatch(ids=batch.ids[:n_slow], images=images[:n_slow], metadata=({},) * n_slow, seeds=batch.seeds[:n_slow])
    arcface = build_arcface(options={}, device="cpu")
    methods = {name: DistilledMethod(name, options={}, device="cpu") for name in DISTILLED}
    diffiqa = build_diffiqa(options={}, device="cpu")

    def forward() -> None:
        with torch.inference_mode():
            for start in range(0, n, 64):
                arcface.forward(arcface.preprocess(images[start:start + 64]))

    timers = {"fwd(SynthArcFace)": (forward, n)}
    timers.update({name: ((lambda m=m: m.score(batch)), n) for name, m in methods.items()})
    timers["diffiqa"] = (lambda: diffiqa.score(slow, fr_model=arcface), n_slow)
    for fn, _ in timers.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in timers}
    for round_index in range(args.rounds):
        order = list(timers.items())
        for name, (fn, count) in order if round_index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3 / count)

    def ratio(name: str, ref: str) -> float:
        return statistics.median(a / b for a, b in zip(times[name], times[ref]))

    print(f"\n{n} images of the embedded benchmark (32 px; DifFIQA on the first {n_slow}), {args.rounds} interleaved"
          f" rounds, {args.threads} thread(s)\n")
    print("| timed | median ms / image | / fwd(SynthArcFace) (target <= 1.2x) | speed-up over diffiqa |")
    print("|---|---|---|---|")
    for name in timers:
        fwd = f"{ratio(name, 'fwd(SynthArcFace)'):.2f}x" if name != "fwd(SynthArcFace)" else "1"
        up = f"{ratio('diffiqa', name):.0f}x" if name != "diffiqa" else "1"
        print(f"| {name} | {statistics.median(times[name]):.3f} | {fwd} | {up} |")
    print(f"\nPaper Table 3 (RTX 3090, iResNet-100, 112 px): DifFIQA {PAPER_MS['diffiqa']} ms, DifFIQA(R) "
          f"{PAPER_MS['diffiqa-r']} ms: {PAPER_MS['diffiqa'] / PAPER_MS['diffiqa-r']:.0f}x")


def label_summary(paths: list[Path], cache: Path | None) -> None:
    from fiqabench.labels import min_max, read_labels
    from fiqabench_plugins.distilled import DEFAULT_WEIGHTS
    from fiqabench_plugins.distilled.method import read_metadata

    folders = [read_labels(path) for path in paths]
    for path, labels in zip(paths, folders):
        prov = labels.provenance
        print(f"\nLabels {path}: {len(labels)} images of {len(set(labels.identities))} identities; method"
              f" {prov['method']['name']}, dataset {prov['dataset']['spec']} {prov['dataset']['options']}, scores"
              f" {prov['score_min']:.4f}..{prov['score_max']:.4f}; sha256 {prov['labels_sha256'][:12]}")
        if cache is not None:
            seconds = images = 0.0
            for part in (cache / "v1" / "quality").rglob(f"*/{prov['cache_key']}/part-*.npz"):
                with np.load(part) as shard:
                    seconds += float(shard["batch_seconds"].sum())
                    images += float(shard["batch_images"].sum())
            if images:
                print(f"label job: {seconds / 3600:.2f} h of scoring for {images:.0f} images "
                      f"({1e3 * seconds / images:.0f} ms / image; batch timings in the cache)")
    scores = np.concatenate([labels.scores for labels in folders])
    print(f"\nAll {len(folders)} folder(s): {len(scores)} images; min-max labels above 0.9: "
          f"{np.mean(min_max(scores) > 0.9):.1%} of the images (why the embedded recipe trains on ranks)")
    for name, weights in DEFAULT_WEIGHTS.items():
        if weights.is_file():
            meta = read_metadata(weights)
            print(f"{name}: {weights.name}, trained with {meta.get('config')}; labels {meta.get('labels')};"
                  f" best validation loss {float(meta.get('best_validation_loss', 'nan')):.4f}")


def held_out_fit(paths: list[Path]) -> None:
    """How well each shipped network fits what it was trained on, on the images its trainer held
    out (every 10th by score over the union of the folders its metadata names, picked from
    ``--labels`` by sha256): Spearman of its scores with DifFIQA's labels, and for eDifFIQA also
    with its own training target, the label optimised by the distance to the identity centre
    (``losses.optimised_labels``, computed here with the frozen FR embedding, which the
    consistency loss keeps the trained features close to). Over all the images eDifFIQA keeps, the
    Spearman of that target with DifFIQA's labels is the agreement a perfect fit of eDifFIQA's own
    objective would have with its teacher."""
    import torch
    from scipy.stats import spearmanr

    from fiqabench.api import SampleBatch
    from fiqabench.labels import read_labels
    from fiqabench.plugins import get_plugin_manager
    from fiqabench.registry import Registry
    from fiqabench_plugins.distilled import DEFAULT_WEIGHTS
    from fiqabench_plugins.distilled.losses import optimised_labels
    from fiqabench_plugins.distilled.method import DistilledMethod, read_metadata
    from fiqabench_plugins.distilled.train import (TrainingSet, diffiqa_r_items, ediffiqa_items,
                                                   frozen_embeddings)

    registry = Registry(get_plugin_manager())
    by_digest = {labels.provenance["labels_sha256"]: labels for labels in map(read_labels, paths)}
    print("\nHeld-out fit: each shipped network on the validation images of its own label folders\n")
    print("| network | label folders | validation images | Spearman with DifFIQA's labels |"
          " Spearman with its training target |")
    print("|---|---|---|---|---|")
    notes = []
    for kind, weights in DEFAULT_WEIGHTS.items():
        meta = read_metadata(weights)
        config = json.loads(meta["config"])
        digests = json.loads(meta["labels"])["sha256"]
        missing = [d[:12] for d in digests if d not in by_digest]
        if missing:
            print(f"| {kind} | label folders {', '.join(missing)} not given with --labels | | | |")
            continue
        folders = tuple(by_digest[d] for d in digests)
        datasets = []
        for labels in folders:
            spec = registry.get("dataset", labels.dataset["name"])
            datasets.append(spec.build(spec.resolve_options(dict(labels.dataset["options"])), "cpu", resolved=True))
        fr_spec = registry.get("fr_model", folders[0].provenance["quality_fr_model_name"])
        fr_model = fr_spec.build(fr_spec.resolve_options({}), "cpu", resolved=True)
        train_set = TrainingSet(folders, tuple(datasets))
        options = config["options"]
        method = DistilledMethod(kind, options={"weights": str(weights)}, device="cpu")

        def score(rows: np.ndarray) -> np.ndarray:
            out = []
            for start in range(0, len(rows), 500):
                part = rows[start:start + 500]
                out.append(method.score(SampleBatch(
                    ids=[str(i) for i in part], images=train_set.read_images(part),
                    metadata=({},) * len(part), seeds=np.zeros(len(part), np.int64))))
            return np.concatenate(out)

        if kind == "diffiqa-r":
            items = diffiqa_r_items(train_set, options["label_normalisation"])
            rows = items.index[items.validation]
            print(f"| {kind} | {len(folders)} | {len(rows)} | {spearmanr(score(rows), train_set.scores[rows])[0]:.3f}"
                  " | (the labels) |")
            continue
        embeddings = frozen_embeddings(train_set, fr_model, np.arange(len(train_set)))
        items = ediffiqa_items(train_set, embeddings, top_fraction=float(options["top_fraction"]),
                               min_images=int(options["min_images"]), normalisation=options["label_normalisation"])
        target = optimised_labels(torch.as_tensor(items.labels), torch.as_tensor(items.frozen),
                                  torch.as_tensor(items.centres), float(options["epsilon"])).numpy()
        rows = items.index[items.validation]
        q = score(rows)
        print(f"| {kind} | {len(folders)} | {len(rows)} | {spearmanr(q, train_set.scores[rows])[0]:.3f} |"
              f" {spearmanr(q, target[items.validation])[0]:.3f} |")
        notes.append(f"{kind}'s training target against DifFIQA's labels over the {len(items)} of {len(train_set)}"
                     f" images it keeps: Spearman {spearmanr(target, train_set.scores[items.index])[0]:.3f}"
                     " (the agreement with its teacher of a perfect fit of its own objective)")
    for note in notes:
        print(f"\n{note}")


def _kind_weights(text: str) -> tuple[str, Path]:
    kind, _, path = text.partition("=")
    if kind not in DISTILLED or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected diffiqa-r=PATH or ediffiqa=PATH")
    return kind, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=None, help="run directory (default: a temporary one)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache (default: a temporary one: cold run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates (0: skip)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--images", type=int, default=64, help="images per speed round")
    parser.add_argument("--diffiqa-images", type=int, default=8, help="images DifFIQA scores per speed round")
    parser.add_argument("--labels", type=Path, action="append", default=[],
                        help="label folder(s) of the shipped weights, in their training order (repeatable)")
    parser.add_argument("--learning-curve", type=lambda text: [int(v) for v in text.split(",")], default=[],
                        metavar="N,N,...", help="with --labels: retrain DifFIQA(R) on the first N labelled images")
    parser.add_argument("--train-option", action="append", default=[], metavar="KEY=VALUE",
                        help="with --learning-curve: a trainer option that replaces the shipped recipe's (repeatable)")
    parser.add_argument("--weights", type=_kind_weights, action="append", default=[], metavar="KIND=PATH",
                        help="score diffiqa-r or ediffiqa with these weights instead of the shipped ones (repeatable)")
    parser.add_argument("--held-out-fit", action="store_true",
                        help="with --labels: the shipped networks' Spearman with their labels and targets on the held-out images")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--seed-agreement", action="store_true",
                        help="also run DifFIQA with run seed 1, and with n=2 repeats (the labels' setting), and print their"
                        " Spearman with the seed-0 n=10 scores (all / clean / degraded)")
    args = parser.parse_args()
    if args.labels:
        label_summary(args.labels, args.cache_dir)
        if args.held_out_fit:
            held_out_fit(args.labels)
    run_dir = quality(args)
    if args.learning_curve and args.labels:
        learning_curve(args, run_dir)
    if not args.skip_speed:
        speed(args)


if __name__ == "__main__":
    main()
