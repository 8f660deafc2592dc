"""ms per image: the torch port of dlib's face ResNet against dlib itself, same machine.

    OMP_NUM_THREADS=1 python benchmarks/dlib_port.py [--rounds 7] [--batch 32]

Both run on one CPU thread (dlib's CPU DNN is single-threaded; torch is pinned to 1 thread) on
the same random 150x150 chips, in interleaved rounds (dlib, torch, dlib, torch, ...), each
round timing a batch (dlib's batched ``compute_face_descriptor(list)``, torch ``embed``) and a
single chip. Prints medians over rounds, the ratio, and the largest descriptor difference.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import dlib

    from fiqabench_plugins.dlib._meta import default_weights
    from fiqabench_plugins.dlib.model import build

    rec = dlib.face_recognition_model_v1(default_weights())
    port = build(options={"crop": "dlib-chip", "batch_size": args.batch}, device="cpu")
    chips = np.random.default_rng(0).integers(0, 256, (args.batch, 150, 150, 3), dtype=np.uint8)
    chip_list = [np.ascontiguousarray(c) for c in chips]

    def dlib_batch():
        return np.array([np.array(d) for d in rec.compute_face_descriptor(chip_list)])

    def torch_batch():
        return port.embed(chips)

    def dlib_one():
        return np.array(rec.compute_face_descriptor(chip_list[0]))

    def torch_one():
        return port.embed(chips[:1])[0]

    diff = float(np.abs(dlib_batch() - torch_batch()).max())  # also warms both up
    runs = {"dlib batch": [], "torch batch": [], "dlib single": [], "torch single": []}
    for _ in range(args.rounds):
        for name, fn, n in (("dlib batch", dlib_batch, args.batch), ("torch batch", torch_batch, args.batch),
                            ("dlib single", dlib_one, 1), ("torch single", torch_one, 1)):
            start = time.perf_counter()
            fn()
            runs[name].append((time.perf_counter() - start) * 1000.0 / n)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), "
          f"torch {torch.__version__}, dlib {dlib.__version__}, 1 thread each, {args.rounds} interleaved rounds")
    print(f"max |torch - dlib| over {args.batch} chips: {diff:.2e}")
    print("| route | dlib ms/image | torch port ms/image | dlib / torch |")
    print("|---|---|---|---|")
    for what in ("batch", "single"):
        d, t = med[f"dlib {what}"], med[f"torch {what}"]
        label = f"batch of {args.batch}" if what == "batch" else "one chip"
        print(f"| {label} | {d:.1f} | {t:.1f} | {d / t:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
