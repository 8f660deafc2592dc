"""Runtime of the baselines relative to one FR forward pass of the same model (prints Markdown).

Usage::

    .venv/bin/python benchmarks/baselines_speed.py [--images 64] [--rounds 7] [--threads 1]

On ``--images`` images of the embedded benchmark (32 px), every round times, in one interleaved
sequence, each method's ``score`` and the references it is measured against, per image:

- ``fwd(M)``: one inference forward pass (preprocess + trunk + head) of FR model ``M`` in batches
  of 64: SynthArcFace for ``ser-fiq``, ``faceqan``, ``embedding-norm`` and ``sharpness``, the
  embedded CR-FIQA backbone for ``cr-fiqa``, the embedded MagFace network for ``magface``;
- ``fwd+bwd``: one forward + backward pass to the input of SynthArcFace, on the ``k = 10`` noisy
  copies of each image batched as FaceQAN batches them (16 images = 160 copies per call), per copy;
  FaceQAN's target is ``50 x fwd+bwd`` (k = 10 copies x l = 5 steps) plus 10 %;
- ``ser-fiq, m full passes``: SER-FIQ the way the paper's code runs it, the whole network m = 100
  times (the trunk-once path's baseline).

Ratios are taken within each round (method / reference of the same round; odd rounds run the
sequence backwards) and the median over rounds is reported, so a machine shared with other jobs slows both sides of a ratio alike. Paper
Table 3 (DifFIQA, RTX 3090, official code, iResNet-100 at 112 px) is printed next to it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fiqabench.api import SampleBatch
from fiqabench.fr import derive_seeds, rgb_uint8_to_unit

#: DifFIQA paper Table 3: ms per image (mean) on an RTX 3090 with the official implementations.
PAPER_MS = {"magface": 1.08, "cr-fiqa": 1.15, "ser-fiq": 112.93, "faceqan": 334.13}


def per_image(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    from fiqabench_plugins.brackets.methods import EmbeddingNorm, Sharpness
    from fiqabench_plugins.cr_fiqa.model import CRFIQA
    from fiqabench_plugins.faceqan.method import FaceQAN
    from fiqabench_plugins.magface.model import MagFace
    from fiqabench_plugins.ser_fiq.method import SERFIQ
    from fiqabench_plugins.synthetic.dataset import build
    from fiqabench_plugins.synthetic.model import build as build_arcface

    data = build("synthetic", {})
    n = args.images
    images = data.read_images(list(range(0, 10 * n, 10)))  # every 10th image: a mix of identities and degradations
    seeds = derive_seeds(np.arange(n), 12345)
    batch = SampleBatch(ids=tuple(f"s{i}" for i in range(n)), images=images, metadata=({},) * n, seeds=seeds)
    arcface = build_arcface(options={}, device="cpu")
    cr = CRFIQA(options={}, device="cpu")
    mag = MagFace(options={}, device="cpu")
    serfiq, faceqan = SERFIQ(options={}, device="cpu"), FaceQAN(options={}, device="cpu")
    norm, sharp = EmbeddingNorm(options={}, device="cpu"), Sharpness(options={}, device="cpu")

    def forward(fr) -> Callable[[], object]:  # type: ignore[no-untyped-def]
        def run() -> None:
            with torch.inference_mode():
                for start in range(0, n, 64):
                    fr.forward(fr.preprocess(images[start : start + 64]))
        return run

    x01 = rgb_uint8_to_unit(images)
    with torch.no_grad():
        reference = arcface.forward(arcface.to_input_space(x01))
    group = min(n, faceqan.batch_images)
    copies = x01[:group].repeat_interleave(faceqan.k, dim=0)
    copies_ref = reference[:group].repeat_interleave(faceqan.k, dim=0)

    def forward_backward() -> None:
        x = copies.clone().requires_grad_(True)
        e = arcface.forward(arcface.to_input_space(x))
        torch.autograd.grad((1 - F.cosine_similarity(copies_ref, e, dim=1)).sum(), x)

    def serfiq_full() -> None:
        with torch.inference_mode():
            x = arcface.preprocess(images)
            for j in range(serfiq.m):
                arcface.head(arcface.trunk(x), dropout=True, seeds=derive_seeds(seeds, j))

    timers: dict[str, tuple[Callable[[], object], int]] = {
        "fwd(SynthArcFace)": (forward(arcface), n),
        "fwd(CR-FIQA backbone)": (forward(cr.fr), n),
        "fwd(MagFace network)": (forward(mag.fr), n),
        "fwd+bwd (per copy)": (forward_backward, group * faceqan.k),
        "cr-fiqa": (lambda: cr.score(batch), n),
        "magface": (lambda: mag.score(batch), n),
        "ser-fiq": (lambda: serfiq.score(batch, fr_model=arcface), n),
        "ser-fiq, m full passes": (serfiq_full, n),
        "faceqan": (lambda: faceqan.score(batch, fr_model=arcface), n),
        "embedding-norm": (lambda: norm.score(batch, fr_model=arcface), n),
        "sharpness": (lambda: sharp.score(batch, fr_model=None), n),
    }
    for fn, _ in timers.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in timers}
    for round_index in range(args.rounds):
        # Odd rounds run the sequence backwards, so no method always follows the same neighbour.
        order = list(timers.items())
        for name, (fn, count) in order if round_index % 2 == 0 else order[::-1]:
            times[name].append(per_image(fn, count))

    def ratio(name: str, ref: str, scale: float = 1.0) -> float:
        return statistics.median(a / (scale * b) for a, b in zip(times[name], times[ref]))

    rows = [
        ("cr-fiqa", "fwd(CR-FIQA backbone)", 1.0, "<= 1.1x fwd"),
        ("magface", "fwd(MagFace network)", 1.0, "<= 1.1x fwd"),
        ("ser-fiq", "fwd(SynthArcFace)", 1.0, "<= 3x fwd"),
        ("ser-fiq, m full passes", "fwd(SynthArcFace)", 1.0, "(the paper's way, ~m x)"),
        ("faceqan", "fwd+bwd (per copy)", 50.0, "<= 1.1x (50 fwd+bwd)"),
        ("faceqan", "fwd(SynthArcFace)", 1.0, "-"),
        ("embedding-norm", "fwd(SynthArcFace)", 1.0, "-"),
        ("sharpness", "fwd(SynthArcFace)", 1.0, "-"),
    ]
    print(f"{n} images of the embedded benchmark (32 px), {args.rounds} interleaved rounds, {args.threads} thread(s)\n")
    print("| timed | median ms / image |")
    print("|---|---|")
    for name in timers:
        print(f"| {name} | {statistics.median(times[name]):.3f} |")
    print("\n| method | against | median ratio | target | paper Table 3 (ms, RTX 3090) |")
    print("|---|---|---|---|---|")
    for name, ref, scale, target in rows:
        against = f"50 x {ref}" if scale != 1.0 else ref
        paper = PAPER_MS.get(name, "-") if not name.endswith("passes") else "-"
        print(f"| {name} | {against} | {ratio(name, ref, scale):.2f} | {target} | {paper} |")


if __name__ == "__main__":
    main()
