"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a torch module.

The network is dlib's ``anet_type`` of ``examples/dnn_face_recognition_ex.cpp`` (King, dlib 19.3,
2017: "a ResNet network with 29 conv layers ... essentially a version of the ResNet-34 network
from the paper Deep Residual Learning for Image Recognition by He, Zhang, Ren, and Sun with a
few layers removed and the number of filters per layer reduced by half"), 128-d output, 99.38 %
on LFW, weights released into the public domain. It is rebuilt here from the layer records of the
``.dat`` file itself (:mod:`.dat`), not from a hand-written layer list, and checked against
dlib's own descriptors (``tests/test_dlib.py``, max abs difference < 1e-4).

dlib semantics reproduced (``dlib/dnn/layers.h``):

- input ``input_rgb_image_sized<150>``: ``x = (pixel - avg_c) / 256`` per RGB channel;
- ``con_`` with bias, its stride and padding from the file; ``affine_`` (inference batch norm,
  ``gamma * x + beta``) is folded into the preceding convolution;
- residual blocks: ``relu(add_prev(block(x), shortcut(x)))`` where the shortcut of a down block
  is ``avg_pool<2,2,2,2>`` of the input. ``add_prev`` adds tensors of different shapes by
  giving the output the larger size in every dimension and treating missing elements as 0,
  so channels and (8 -> 3 vs 4, 4 -> 1 vs 2) spatial sizes are zero-padded at the end;
- ``avg_pool_everything`` then ``fc_no_bias<128>`` (weights stored inputs x outputs).

The output is dlib's descriptor, not L2-normalised (dlib's same-person rule is Euclidean
distance < 0.6). ``trunk`` ends at the 256-d global average, ``head`` is the fc layer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fiqabench.errors import InputFormatError

from .dat import DatRecord, read_dat

__all__ = ["DlibResNet", "add_prev", "build_network", "load_network"]


def add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: sum of two (N, C, H, W) tensors, each zero-padded to the larger size."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t: torch.Tensor) -> torch.Tensor:
        pad = (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1])
        return F.pad(t, pad) if any(pad) else t

    return grow(a) + grow(b)


def _conv(rec_con: DatRecord, rec_affine: DatRecord, path: str) -> nn.Conv2d:
    """A ``con_`` record with its following ``affine_`` folded in: gamma*(w*x+b)+beta."""
    f, g = rec_con.fields, rec_affine.fields
    weight = torch.from_numpy(np.ascontiguousarray(f["weight"]))
    conv = nn.Conv2d(
        weight.shape[1], weight.shape[0], (f["nr"], f["nc"]), stride=f["stride"], padding=f["padding"]
    )
    gamma = torch.from_numpy(g["gamma"].copy())
    beta = torch.from_numpy(g["beta"].copy())
    if gamma.numel() != weight.shape[0]:
        raise InputFormatError(
            path, None, f"byte {rec_affine.offset}", f"affine_ has {gamma.numel()} channels, its conv {weight.shape[0]}"
        )
    with torch.no_grad():
        conv.weight.copy_(weight * gamma.view(-1, 1, 1, 1))
        conv.bias.copy_(torch.from_numpy(f["bias"].copy()) * gamma + beta)
    return conv


class ResBlock(nn.Module):
    """``relu(add_prev(affine(con(relu(affine(con(x)))))), shortcut(x)))``; down: avg-pool shortcut."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, down: bool) -> None:
        super().__init__()
        self.conv1 = conv1
        self.conv2 = conv2
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.conv2(F.relu(self.conv1(x)))
        short = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(add_prev(main, short))


class Trunk(nn.Module):
    """Input space ``(N, 3, 150, 150)`` -> 256-d global-average features."""

    def __init__(self, stem: nn.Conv2d, pool: tuple[int, int], blocks: Sequence[ResBlock]) -> None:
        super().__init__()
        self.stem = stem
        self.pool = pool
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem(x)), self.pool[0], self.pool[1])
        return self.blocks(x).mean(dim=(2, 3))


class DlibResNet(nn.Module):
    """Trunk + fc head; ``avg`` (the input layer's RGB means) and ``size`` travel with it."""

    def __init__(self, trunk: Trunk, head: nn.Linear, avg: tuple[float, float, float], size: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.avg = avg
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


# One letter per record, so the layer sequence can be checked with one regular expression:
# stem = con affine relu max_pool; block = con affine relu con affine [avg_pool] add_prev relu.
_LETTERS = {"con_4": "c", "affine_": "a", "relu_": "r", "max_pool_2": "m", "avg_pool_2": "p",
            "add_prev_": "+", "fc_2": "f"}
_STRUCTURE = re.compile(r"carm(?:carcap?\+r)+pf")
_BLOCK = re.compile(r"carcap?\+r")


def build_network(records: Sequence[DatRecord], path: str = "<records>") -> DlibResNet:
    """Assemble the module from the parsed records (``loss_metric_2``, input, then layers)."""
    if len(records) < 3 or records[1].kind != "input_rgb_image_sized":
        raise InputFormatError(path, None, "input layer", "expected an input_rgb_image_sized record")
    inp = records[1].fields
    if inp["nr"] != inp["nc"]:
        raise InputFormatError(path, None, "input layer", f"non-square input {inp['nr']}x{inp['nc']}")
    layers = records[2:]
    try:
        letters = "".join(_LETTERS[r.kind] for r in layers)
    except KeyError as exc:
        raise InputFormatError(path, None, "layers", f"unsupported layer record {exc.args[0]!r}") from exc
    if not _STRUCTURE.fullmatch(letters):
        raise InputFormatError(
            path, None, "layers", f"layer sequence {letters!r} is not dlib's face ResNet (stem, residual blocks, pool, fc)"
        )
    stem = _conv(layers[0], layers[1], path)
    mp = layers[3].fields
    if mp["nr"] != mp["nc"] or mp["stride"][0] != mp["stride"][1] or any(mp["padding"]):
        raise InputFormatError(path, None, f"byte {layers[3].offset}", "unsupported max_pool geometry")
    blocks = []
    for match in _BLOCK.finditer(letters, 4, len(letters) - 2):
        recs = layers[match.start() : match.end()]
        down = "p" in match.group()
        if down:
            pool = recs[5].fields
            if (pool["nr"], pool["nc"], pool["stride"], pool["padding"]) != (2, 2, (2, 2), (0, 0)):
                raise InputFormatError(path, None, f"byte {recs[5].offset}", "shortcut pool is not avg_pool<2,2,2,2>")
        blocks.append(ResBlock(_conv(recs[0], recs[1], path), _conv(recs[3], recs[4], path), down))
    final_pool, fc = layers[-2].fields, layers[-1].fields
    if (final_pool["nr"], final_pool["nc"]) != (0, 0):
        raise InputFormatError(path, None, f"byte {layers[-2].offset}", "expected avg_pool_everything before fc")
    if fc["bias"] is not None:
        raise InputFormatError(path, None, f"byte {layers[-1].offset}", "expected fc_no_bias")
    head = nn.Linear(fc["num_inputs"], fc["num_outputs"], bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(np.ascontiguousarray(fc["weight"].T)))
    trunk = Trunk(stem, (mp["nr"], mp["stride"][0]), blocks)
    return DlibResNet(trunk, head, tuple(float(v) for v in inp["avg"]), int(inp["nr"]))  # type: ignore[arg-type]


def load_network(path: str | Path) -> DlibResNet:
    """Read a dlib face ResNet ``.dat`` file into a :class:`DlibResNet` (float32, CPU, eval)."""
    return build_network(read_dat(path), str(path)).eval()
