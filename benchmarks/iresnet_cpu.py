"""CPU inference speed of iResNet-50/100 at 112 x 112 (prints figures; no assertions).

Usage::

    .venv/bin/python benchmarks/iresnet_cpu.py                 # batch 64, 1 and 2 threads, 3 rounds
    .venv/bin/python benchmarks/iresnet_cpu.py --rounds 5 --threads 1 2 4
    .venv/bin/python benchmarks/iresnet_cpu.py --rounds 0              # parameters and FLOPs only

This is the reference figure every baseline's runtime ratio refers to ("x times one iResNet-100
forward pass"). The networks are :func:`fiqabench_plugins.fr_models.iresnet.iresnet` (the
arcface_torch layout used by ArcFace/CosFace; the AdaFace / CurricularFace layouts differ by at
most one BN per block) with random weights in eval mode, run under ``torch.inference_mode`` on a
fixed random batch. Each round times every (arch, threads) configuration once, in an order that
rotates from round to round, so a burst of load on a shared machine hits all configurations alike;
the figures are medians over rounds of milliseconds per image (batch time / batch size), after a
warm-up pass on 4 images per configuration.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fiqabench_plugins.fr_models.iresnet import iresnet  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["iresnet50", "iresnet100"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    nets = {arch: iresnet(arch).eval() for arch in args.archs}
    flops = {arch: gflops_per_image(net) for arch, net in nets.items()}
    load_before = os.getloadavg()
    x = torch.randn(args.batch, 3, 112, 112)
    configs = [(arch, threads) for arch in args.archs for threads in args.threads]
    times: dict[tuple[str, int], list[float]] = {config: [] for config in configs}

    def run(arch: str, threads: int, batch: torch.Tensor = x) -> float:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            start = time.perf_counter()
            nets[arch](batch)
            return time.perf_counter() - start

    for config in configs:  # warm-up on a small batch: thread pool, allocator, oneDNN kernels
        run(*config, x[:4])
    for round_index in range(args.rounds):
        shift = round_index % len(configs)
        for config in configs[shift:] + configs[:shift]:
            seconds = run(*config)
            times[config].append(1000 * seconds / args.batch)
            print(
                f"round {round_index + 1}: {config[0]} threads={config[1]}: {times[config][-1]:.1f} ms/image",
                flush=True,
            )

    params = {arch: sum(p.numel() for p in net.parameters()) for arch, net in nets.items()}
    print()
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"batch {args.batch}, {args.rounds} rounds, medians; load average (1 min) before/after: "
        f"{load_before[0]:.1f}/{os.getloadavg()[0]:.1f}"
    )
    print("| arch | parameters | GFLOPs per image | threads | ms per image (median) | min-max |")
    print("|---|---|---|---|---|---|")
    for arch, threads in configs:
        values = times[(arch, threads)]
        timing = (
            f"{statistics.median(values):.1f} | {min(values):.1f}-{max(values):.1f}" if values else "- | -"
        )
        print(f"| {arch} | {params[arch]:,} | {flops[arch]:.2f} | {threads} | {timing} |")


def gflops_per_image(net: torch.nn.Module) -> float:
    """Floating-point operations of one 112 x 112 forward pass (2 per multiply-add), in billions."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        net(torch.zeros(1, 3, 112, 112))
    return counter.get_total_flops() / 1e9


if __name__ == "__main__":
    main()
