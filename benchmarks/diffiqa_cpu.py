"""CPU timing of DifFIQA in the embedded world (prints figures; no assertions).

Usage::

    .venv/bin/python benchmarks/diffiqa_cpu.py              # the shipped embedded configuration
    .venv/bin/python benchmarks/diffiqa_cpu.py --sweep      # candidate UNet configurations

For the method at ``n = 10, t = 5`` every image costs ``2 n (t + 1) = 120`` UNet image-calls and
``2 + 4 n = 42`` FR image-calls. The script times the UNet and the FR model alone at the same
batch size (``--batch``, default 64 images per call), derives the ideal cost per image, times
``DifFIQA.score`` on ``--images`` images and prints the ratio (target <= 1.2). All figures are
medians over ``--repeats`` runs: the machine is shared, so single timings are noisy.

The FR model is ``synthetic-arcface`` from the registry when it is available, else a random
stand-in of the same size class (the pilot's 566k-parameter ResNet-like network), said so in the
output.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fiqabench.api import InputSpace, SampleBatch  # noqa: E402
from fiqabench.fr import TorchFRModel  # noqa: E402
from fiqabench_plugins.diffiqa.method import DifFIQA  # noqa: E402
from fiqabench_plugins.diffiqa.unet import UNet, UNetConfig, count_parameters  # noqa: E402


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def stand_in_fr(size: int) -> TorchFRModel:
    """A random ResNet-like FR network of the pilot's size (about 0.57 M parameters)."""

    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout),
        )

    torch.manual_seed(0)
    trunk = nn.Sequential(
        nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.PReLU(16),
        block(16, 32), block(32, 64), block(64, 128), nn.Flatten(),
    )
    spatial = size // 8
    head = nn.Sequential(nn.Linear(128 * spatial * spatial, 128), nn.BatchNorm1d(128))
    return TorchFRModel(name="stand-in", version="0", domain="synthetic", input_space=InputSpace(size=(size, size)),
                        embedding_size=128, trunk=trunk, head=head, weights_digest="random")


def load_fr(size: int) -> tuple[Any, str]:
    try:
        from fiqabench.plugins import get_plugin_manager
        from fiqabench.registry import Registry

        reg = Registry(get_plugin_manager(entry_points=False))
        entry = reg.get("fr_model", "synthetic-arcface")
        model = entry.load()(options=entry.resolve_options({}), device="cpu")
        return model, "synthetic-arcface"
    except Exception as exc:  # not built yet: say so and use the stand-in
        return stand_in_fr(size), f"random stand-in ({type(exc).__name__}: {exc})"


def time_unet(config: UNetConfig, batch: int, repeats: int) -> float:
    """ms per image-call of the UNet at ``batch`` images per call (channels_last, as the method)."""
    model = UNet(config).eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, config.image_size, config.image_size).contiguous(memory_format=torch.channels_last)
    t = torch.full((batch,), 4, dtype=torch.long)
    with torch.inference_mode():
        return median_ms(lambda: model(x, t), repeats) / batch


def sweep(batch: int, repeats: int, n: int, t: int) -> None:
    calls = 2 * n * (t + 1)
    print(f"UNet sweep: ms per image-call at batch {batch}; DifFIQA UNet share for 1,000 images = x {calls} calls")
    print(f"{'size':>4} {'config':<44} {'params':>9} {'ms/img-call':>11} {'1k imgs (s)':>11}")
    candidates = [
        ("16, 1/2/2, no attn", dict(dim=16, dim_mults=(1, 2, 2), linear_attention=(False,) * 3, mid_attention=False)),
        ("16, 1/2/4, no attn", dict(dim=16, dim_mults=(1, 2, 4), linear_attention=(False,) * 3, mid_attention=False)),
        ("24, 1/2/2, no attn", dict(dim=24, dim_mults=(1, 2, 2), linear_attention=(False,) * 3, mid_attention=False)),
        ("32, 1/2/2, no attn", dict(dim=32, dim_mults=(1, 2, 2), linear_attention=(False,) * 3, mid_attention=False)),
        ("16, 1/2/2, mid attn (2x16) = embedded", dict(dim=16, dim_mults=(1, 2, 2), linear_attention=(False,) * 3,
                                            mid_attention=True, attn_heads=2, attn_dim_head=16)),
        ("16, 1/2/2, lin attn low-res + mid (2x16)", dict(dim=16, dim_mults=(1, 2, 2), linear_attention=(False, False, True),
                                                          mid_attention=True, attn_heads=2, attn_dim_head=16)),
        ("16, 1/2/2, official attention (4x32)", dict(dim=16, dim_mults=(1, 2, 2))),
    ]
    for size in (32, 48):
        for label, kwargs in candidates:
            config = UNetConfig(image_size=size, **kwargs)  # type: ignore[arg-type]
            ms = time_unet(config, batch, repeats)
            print(f"{size:>4} {label:<44} {count_parameters(UNet(config)):>9,} {ms:>11.3f} {ms * calls:>11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="DDPM weights (default: the shipped embedded file, else random)")
    parser.add_argument("--images", type=int, default=192, help="images scored per timing run")
    parser.add_argument("--batch", type=int, default=64, help="images per UNet call (batch_images)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--t", type=int, default=5)
    parser.add_argument("--sweep", action="store_true", help="time candidate UNet configurations instead")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.sweep:
        sweep(args.batch, args.repeats, args.n, args.t)
        return

    options = {"n": args.n, "t": args.t, "batch_images": args.batch}
    try:
        if args.weights:
            options["weights"] = args.weights
        method = DifFIQA(options=options, device="cpu")
        source = str(method.weights_path)
    except Exception as exc:
        torch.manual_seed(0)
        method = DifFIQA(options=options, device="cpu", unet=UNet(UNetConfig.embedded()))
        source = f"random weights ({type(exc).__name__})"
    config = method.unet.config
    size = config.image_size
    fr, fr_source = load_fr(size)
    print(f"UNet: {config.to_json()} ({count_parameters(method.unet):,} params; {source})")
    print(f"FR: {fr_source}")

    chains_per_image = 2 * args.n
    unet_calls = chains_per_image * (args.t + 1)
    fr_calls = 2 + 4 * args.n
    per_group = max(1, args.batch // chains_per_image)
    unet_rows = per_group * chains_per_image
    fr_rows = per_group * fr_calls
    x = torch.randn(unet_rows, 3, size, size)
    xf = torch.rand(fr_rows, 3, size, size)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, size, size, 3), dtype=np.uint8)
    batch = SampleBatch(ids=tuple(map(str, range(args.images))), images=images,
                        metadata=tuple({} for _ in range(args.images)), seeds=np.arange(args.images))
    # interleaved rounds: the load of a shared machine drifts, so each round times all three
    us, fs, ms, ratios = [], [], [], []
    method.score(batch, fr_model=fr)  # warm-up
    for _ in range(args.repeats):
        with torch.inference_mode():
            u = median_ms(lambda: method._denoise(x, 4), 3, warmup=1) / unet_rows
            f = median_ms(lambda: fr.forward(fr.to_input_space(xf)), 3, warmup=1) / fr_rows
        m = median_ms(lambda: method.score(batch, fr_model=fr), 1, warmup=0) / args.images
        us.append(u)
        fs.append(f)
        ms.append(m)
        ratios.append(m / (unet_calls * u + fr_calls * f))
    u, f, per_image = statistics.median(us), statistics.median(fs), statistics.median(ms)
    ideal = unet_calls * u + fr_calls * f

    print(f"groups of {per_group} images: UNet calls of {unet_rows} images, FR calls of {fr_rows} images")
    print(f"UNet alone: {u:.3f} ms per image-call; FR alone: {f:.3f} ms per image-call")
    print(f"ideal DifFIQA cost: {unet_calls} x {u:.3f} + {fr_calls} x {f:.3f} = {ideal:.2f} ms/image")
    print(f"measured DifFIQA (n={args.n}, t={args.t}): {per_image:.2f} ms/image (median of {args.repeats} runs"
          f" over {args.images} images; range {min(ms):.2f}-{max(ms):.2f})")
    print(f"ratio measured / (UNet + FR alone), median of per-round ratios: {statistics.median(ratios):.3f}"
          f" (rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target <= 1.2)")
    print(f"projected 1,000 images: {per_image:.2f} s (budget 360 s)")


if __name__ == "__main__":
    main()
