"""Cost of one DDPM training pair's degradation, official vs embedded preprocessing (prints a table).

Usage::

    .venv/bin/python benchmarks/diffiqa_degrade.py [--images 30] [--rounds 3]

One thread (the trainer's loader workers and the pool builder each use one). Every path degrades
the same ``--images`` synthetic originals of 218 x 178 px (the aligned CelebA size), each with
its own seed, in ``--rounds`` interleaved rounds; the table gives the median and 90th percentile
over all images and rounds, in ms per training pair:

- ``official``: :func:`official_training_pair` -- flip, degrade at 512 px (128 px out), resize to
  112 px (``preprocessing=official``, the default for ``unet_config=official``);
- ``embedded 112``: the image resized to 112 px first, degraded at 4 x 112 = 448 px with scaled
  kernels (what ``preprocessing=embedded`` does for a 112 px UNet);
- ``embedded 32``: the same at 32 px / 128 px, the shipped embedded DDPM's setting.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fiqabench_plugins.diffiqa.degrade import degrade_lq, official_training_pair, resize_antialiased


def original(seed: int) -> np.ndarray:
    """A 218 x 178 RGB image with smooth structure and fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:218, 0:178] / 40.0
    base = 128 + 60 * np.sin(xx * rng.uniform(0.5, 2) + yy * rng.uniform(0.5, 2))[..., None] * rng.uniform(0.5, 1, 3)
    return np.clip(base + rng.normal(0, 12, (218, 178, 3)), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = [original(i) for i in range(args.images)]
    small = {size: [resize_antialiased(img, size) for img in images] for size in (112, 32)}
    paths = {
        "official (flip, 512 px, 128 -> 112 px)": lambda i, rng: official_training_pair(images[i], rng, size=112),
        "embedded 112 (448 px, scaled kernels)": lambda i, rng: degrade_lq(small[112][i], rng, out_size=112),
        "embedded 32 (128 px, scaled kernels)": lambda i, rng: degrade_lq(small[32][i], rng, out_size=32),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    for round_ in range(args.rounds):
        for i in range(args.images):
            for name, fn in paths.items():  # interleaved: each image through every path in turn
                rng = np.random.default_rng([round_, i])
                start = time.perf_counter()
                fn(i, rng)
                times[name].append(1e3 * (time.perf_counter() - start))
    print(f"{args.images} images x {args.rounds} rounds, 1 thread, torch {torch.__version__}")
    print("| path | ms per pair, median | 90th percentile |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {np.median(values):.1f} | {np.percentile(values, 90):.1f} |")


if __name__ == "__main__":
    main()
