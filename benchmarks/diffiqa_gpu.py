"""GPU throughput of DifFIQA at the official configuration (prints figures; no assertions).

Official configuration (paper §3.5, research note ``diffiqa.md`` §1-5): 112x112 images, the
official 142.9 M-parameter UNet, an iResNet100-sized FR model (65.2 M parameters), n = 10,
t = 5, i.e. per image 2 n (t + 1) = 120 UNet image-calls and 2 + 4 n = 42 FR image-calls (the
official code makes 60: it re-embeds the unchanged originals once per repeat). Weights are random:
throughput does not depend on them.

Options: ``--device``, ``--precision bf16`` (autocast), ``--compile`` (torch.compile of the UNet and
the FR network), ``--cuda-graphs`` (the UNet call captured once per batch shape and replayed);
noise is drawn on the device from per-sample generators, as in the method. It prints ms per image,
the achieved TFLOP/s (FLOPs counted with ``torch.utils.flop_counter`` on one UNet and one FR call:
2 per multiply-add) and the share of the device's dense bf16 peak (a built-in table, or
``--peak-tflops``).

On a machine without CUDA it prints a message and exits 0; ``--smoke`` runs the same code path
on the CPU at a tiny size to check the script itself.

Paper Table 3 for reference: DifFIQA 1074.62 +- 11.45 ms per image on an RTX 3090.
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

from fiqabench.api import InputSpace  # noqa: E402
from fiqabench.fr import TorchFRModel  # noqa: E402
from fiqabench_plugins.diffiqa.method import DifFIQA  # noqa: E402
from fiqabench_plugins.diffiqa.unet import UNet, UNetConfig, count_parameters  # noqa: E402

#: Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets, no sparsity).
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "A100": 312.0,
    "L40S": 362.1,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
    "A10": 125.0,
}


# ------------------------------------------------------------------------------------------------
# an iResNet100-sized FR network (insightface arcface_torch layout; DifFIQA's CosFace-R100)
# ------------------------------------------------------------------------------------------------


class IBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


def iresnet100_trunk_head() -> tuple[nn.Module, nn.Module]:
    layers, widths = (3, 13, 30, 3), (64, 128, 256, 512)
    modules: list[nn.Module] = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)]
    cin = 64
    for blocks, width in zip(layers, widths):
        modules.append(IBasicBlock(cin, width, 2))
        modules.extend(IBasicBlock(width, width, 1) for _ in range(blocks - 1))
        cin = width
    modules += [nn.BatchNorm2d(512), nn.Flatten()]
    head = nn.Sequential(nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512))
    return nn.Sequential(*modules), head


# ------------------------------------------------------------------------------------------------


def flops_of(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


class GraphedUNet:
    """Replays a CUDA graph of ``unet(x, t)`` for one batch shape; other shapes run eagerly."""

    def __init__(self, unet: nn.Module, autocast: Callable[[], Any]) -> None:
        self.unet = unet
        self.autocast = autocast
        self.graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _capture(self, x: torch.Tensor, t: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        static_x, static_t = x.clone(), t.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), self.autocast():
            for _ in range(3):
                self.unet(static_x, static_t)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), self.autocast():
            static_out = self.unet(static_x, static_t)
        return graph, static_x, static_t, static_out

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        key = tuple(x.shape)
        if key not in self.graphs:
            self.graphs[key] = self._capture(x, t)
        graph, static_x, static_t, static_out = self.graphs[key]
        static_x.copy_(x)
        static_t.copy_(t)
        graph.replay()
        return static_out.clone()


def peak_for(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key.lower() in name.lower():
            return value
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--cuda-graphs", action="store_true")
    parser.add_argument("--images", type=int, default=128, help="images per timed run")
    parser.add_argument("--batch-images", type=int, default=1280, help="UNet rows per call (64 images x 20 chains)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--t", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the device (default: table)")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run that checks the script")
    args = parser.parse_args()

    if args.smoke:
        device = torch.device("cpu")
        config = UNetConfig(dim=8, dim_mults=(1, 2), image_size=16, attn_heads=2, attn_dim_head=8)
        args.images, args.batch_images, args.repeats, args.n = 2, 8, 1, 2
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            print("diffiqa_gpu: CUDA is not available on this machine; skipping the GPU benchmark"
                  " (run it on a GPU machine, or pass --smoke to check the script on the CPU).")
            return 0
        config = UNetConfig.official()
    size = config.image_size
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; precision {args.precision};"
          f" compile={args.compile}; cuda_graphs={args.cuda_graphs}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(0)
    unet = UNet(config).to(device).eval()
    if args.smoke:
        trunk, head = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.Flatten()), nn.Linear(8 * 8 * 8, 16)
        fr_size, emb = 16, 16
    else:
        trunk, head = iresnet100_trunk_head()
        fr_size, emb = 112, 512
    fr = TorchFRModel(name="iresnet100-random", version="0", domain="aligned-112-face",
                      input_space=InputSpace(size=(fr_size, fr_size)), embedding_size=emb,
                      trunk=trunk, head=head, weights_digest="random", device=device)
    fr_params = sum(p.numel() for p in list(trunk.parameters()) + list(head.parameters()))
    print(f"UNet {count_parameters(unet):,} params at {size}x{size}; FR {fr_params:,} params")

    options = {"n": args.n, "t": args.t, "precision": args.precision, "batch_images": args.batch_images}
    method = DifFIQA(options=options, device=device, unet=unet)
    if args.compile:
        fr._trunk = torch.compile(fr._trunk)  # type: ignore[assignment]
        method._forward = torch.compile(unet)  # type: ignore[assignment]
    if args.cuda_graphs and device.type == "cuda":
        method._forward = GraphedUNet(method._forward, method._autocast)  # type: ignore[assignment]

    chains = 2 * args.n
    per_group = max(1, args.batch_images // chains)
    rows = per_group * chains
    fr_rows = per_group * (2 + 4 * args.n)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(fn: Callable[[], Any], repeats: int) -> float:
        fn()
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    with torch.inference_mode():
        xu = torch.randn(rows, 3, size, size, device=device)
        tu = torch.full((rows,), 4, dtype=torch.long, device=device)
        xf = torch.rand(fr_rows, 3, size, size, device=device)
        unet_flops = flops_of(lambda: unet(xu[:1], tu[:1]))
        fr_flops = flops_of(lambda: fr.forward(fr.to_input_space(xf[:1])))
        unet_s = timed(lambda: method._denoise(xu, 4), args.repeats) / rows
        fr_s = timed(lambda: method._embed(fr, xf * 2 - 1), args.repeats) / fr_rows
        images = torch.rand(args.images, 3, size, size, device=device) * 2 - 1
        seeds = list(range(args.images))
        total = timed(lambda: method.score_tensor(images, seeds, fr), args.repeats)
    per_image = total / args.images
    unet_calls, fr_calls = chains * (args.t + 1), 2 + 4 * args.n
    flops_image = unet_calls * unet_flops + fr_calls * fr_flops
    achieved = flops_image / per_image / 1e12
    print(f"FLOPs per call: UNet {unet_flops / 1e9:.2f} G, FR {fr_flops / 1e9:.2f} G;"
          f" per image {unet_calls} UNet + {fr_calls} FR calls = {flops_image / 1e12:.3f} TFLOP")
    print(f"UNet alone {unet_s * 1e3:.3f} ms/image-call, FR alone {fr_s * 1e3:.3f} ms/image-call"
          f" (batches of {rows} and {fr_rows})")
    ideal = unet_calls * unet_s + fr_calls * fr_s
    print(f"DifFIQA: {per_image * 1e3:.2f} ms per image (median of {args.repeats} runs over {args.images} images);"
          f" ratio to UNet + FR alone {per_image / ideal:.3f}")
    peak = args.peak_tflops or peak_for(name)
    share = f"{100 * achieved / peak:.1f} % of the {peak:.0f} TFLOP/s dense bf16 peak" if peak else "peak unknown"
    print(f"achieved {achieved:.2f} TFLOP/s; {share}")
    print("paper Table 3 (RTX 3090): 1074.62 ms per image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
