"""The improved residual network (iResNet) of face recognition, in three published key layouts.

iResNet ("IR" in face.evoLVe) is the ResNet variant of ArcFace (Deng et al., CVPR 2019; the "network
settings" section of arXiv:1801.07698v1): a 3x3 stride-1 stem keeps 112 x 112 input at full size,
each "improved residual unit" is BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN plus a
shortcut, and the output layer "BN-Dropout-FC-BN" (the paper's option E) maps the 512 x 7 x 7 map to
the embedding. Depths 18/34/50/100 have (2,2,2,2), (3,4,6,3), (3,4,14,3) and (3,13,30,3) blocks in
four stages of 64/128/256/512 channels, each stage halving the resolution. CosFace, AdaFace and
CurricularFace change the training loss, not this network.

The same network is released in three state-dict layouts, written here from their descriptions:

- :class:`IResNet` -- insightface ``recognition/arcface_torch`` (ArcFace, CosFace): keys ``conv1``,
  ``bn1``, ``prelu``, ``layer1..4.<i>.{bn1,conv1,bn2,prelu,conv2,bn3,downsample.0,downsample.1}``,
  ``bn2``, ``fc``, ``features`` (an affine BatchNorm1d). Every stage's first block has a 1x1-conv
  downsample, including the first stage. Dropout before ``fc`` is ``p=0`` in the released configs.
- :class:`IRNet` with ``bn_after_first_conv=True`` -- AdaFace (``net.py`` ``BasicBlockIR``): keys
  ``input_layer.{0,1,2}``, ``body.<i>.res_layer.{0..5}``, ``body.<i>.shortcut_layer.{0,1}``,
  ``output_layer.{0,3,4}``; a block whose channels do not change has a parameter-free shortcut
  (``MaxPool2d(1, stride)``, i.e. subsampling); output layer BN2d, Dropout(0.4), Flatten, Linear,
  BatchNorm1d without affine parameters.
- :class:`IRNet` with ``bn_after_first_conv=False`` -- face.evoLVe / CurricularFace
  (``backbone/model_irse.py`` ``bottleneck_IR``): as AdaFace but the block has no BN between the
  first convolution and the PReLU, so ``res_layer.{0..4}``.

The modules expose ``forward_trunk`` (input -> 512 x 7 x 7 map) and ``forward_head`` (map ->
unnormalised embedding, containing the dropout) so FIQA methods can sample the dropout (SER-FIQ) or
hook stage outputs (GraFIQs) without re-running the trunk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ARCHS", "IRNet", "IResNet", "iresnet", "irnet"]

#: Blocks per stage for each depth (ArcFace Sec. 3.2; identical in all three code bases).
ARCHS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}

#: Channels of the stem and of the four stages.
WIDTHS = (64, 64, 128, 256, 512)


def _layers(arch: str) -> tuple[int, int, int, int]:
    if arch not in ARCHS:
        raise ValueError(f"unknown iResNet arch {arch!r}; expected one of {', '.join(ARCHS)}")
    return ARCHS[arch]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


# --------------------------------------------------------------------------------------------
# insightface arcface_torch layout
# --------------------------------------------------------------------------------------------


class IBasicBlock(nn.Module):
    """BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the (downsampled) input."""

    def __init__(self, cin: int, cout: int, stride: int, downsample: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = _conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = _conv3x3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))
            if downsample
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = self.downsample(x) if self.downsample is not None else x
        return out + identity


class IResNet(nn.Module):
    """iResNet in the arcface_torch key layout (``backbone.pth`` of the insightface model zoo).

    ``fp16`` follows arcface_torch: the convolutional part runs under CUDA autocast (no effect on
    CPU tensors, as in the original) and ``fc`` always in float32.
    """

    def __init__(
        self,
        layers: Sequence[int],
        *,
        embedding_size: int = 512,
        dropout: float = 0.0,
        fp16: bool = False,
        widths: Sequence[int] = WIDTHS,
        feature_side: int = 7,
    ) -> None:
        super().__init__()
        self.fp16 = fp16
        stem = widths[0]
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, eps=1e-5)
        self.prelu = nn.PReLU(stem)
        cin = stem
        for index, (blocks, cout) in enumerate(zip(layers, widths[1:]), start=1):
            # arcface_torch's _make_layer: stride 2 always, so the first block always downsamples.
            stage = [IBasicBlock(cin, cout, 2, downsample=True)]
            stage += [IBasicBlock(cout, cout, 1, downsample=False) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*stage))
            cin = cout
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(cin * feature_side * feature_side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)

    def _autocast(self, x: torch.Tensor) -> contextlib.AbstractContextManager:
        if self.fp16 and x.is_cuda:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast(x):
            x = self.prelu(self.bn1(self.conv1(x)))
            x = self.layer1(x)
            x = self.layer2(x)
            x = self.layer3(x)
            return self.layer4(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast(x):
            x = self.dropout(torch.flatten(self.bn2(x), 1))
        x = self.fc(x.float() if self.fp16 else x)
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_trunk(x))

    @property
    def embedding_size(self) -> int:
        return self.fc.out_features

    def split(self) -> tuple[nn.Module, nn.Module]:
        """(trunk, head) modules sharing this network's parameters."""
        trunk = ("conv1", "bn1", "prelu", "layer1", "layer2", "layer3", "layer4")
        return _Part(self, "forward_trunk", trunk), _Part(
            self, "forward_head", ("bn2", "dropout", "fc", "features")
        )


def iresnet(arch: str, *, embedding_size: int = 512, dropout: float = 0.0, fp16: bool = False) -> IResNet:
    """An iResNet-18/34/50/100 in the insightface arcface_torch key layout (112 x 112 input).

    ``arch`` is ``iresnet18``, ``iresnet34``, ``iresnet50`` or ``iresnet100`` (``r18``...``r100``
    are accepted too). Freshly initialised; load a ``backbone.pth`` with
    :func:`fiqabench_plugins.fr_models.checkpoints.load_arcface_torch` or ``load_state_dict``.
    """
    return IResNet(_layers(_canonical(arch)), embedding_size=embedding_size, dropout=dropout, fp16=fp16)


def _canonical(arch: str) -> str:
    arch = arch.strip().lower()
    if arch.startswith("r") and arch[1:].isdigit():
        return f"iresnet{arch[1:]}"
    return arch


# --------------------------------------------------------------------------------------------
# face.evoLVe layout (AdaFace, CurricularFace)
# --------------------------------------------------------------------------------------------


class _Subsample(nn.Module):
    """``MaxPool2d(kernel_size=1, stride)`` of face.evoLVe's shortcut: plain strided subsampling."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride]


class IRBlock(nn.Module):
    """face.evoLVe's ``bottleneck_IR`` / AdaFace's ``BasicBlockIR``: ``res_layer + shortcut_layer``."""

    def __init__(self, cin: int, cout: int, stride: int, bn_after_first_conv: bool) -> None:
        super().__init__()
        if cin == cout:
            self.shortcut_layer: nn.Module = _Subsample(stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        res: list[nn.Module] = [nn.BatchNorm2d(cin), _conv3x3(cin, cout)]
        if bn_after_first_conv:
            res.append(nn.BatchNorm2d(cout))
        res += [nn.PReLU(cout), _conv3x3(cout, cout, stride), nn.BatchNorm2d(cout)]
        self.res_layer = nn.Sequential(*res)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class _Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class IRNet(nn.Module):
    """iResNet in the face.evoLVe key layout (``input_layer``, ``body``, ``output_layer``).

    ``forward`` returns the unnormalised embedding (AdaFace's ``Backbone.forward`` returns it
    divided by its norm, together with the norm; CurricularFace's returns it with the flattened
    trunk map).
    """

    def __init__(
        self,
        layers: Sequence[int],
        *,
        bn_after_first_conv: bool,
        embedding_size: int = 512,
        dropout: float = 0.4,
        widths: Sequence[int] = WIDTHS,
        feature_side: int = 7,
    ) -> None:
        super().__init__()
        stem = widths[0]
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.PReLU(stem)
        )
        body: list[nn.Module] = []
        cin = stem
        for blocks, cout in zip(layers, widths[1:]):
            body.append(IRBlock(cin, cout, 2, bn_after_first_conv))
            body += [IRBlock(cout, cout, 1, bn_after_first_conv) for _ in range(blocks - 1)]
            cin = cout
        self.body = nn.Sequential(*body)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Dropout(dropout),
            _Flatten(),
            nn.Linear(cin * feature_side * feature_side, embedding_size),
            nn.BatchNorm1d(embedding_size, affine=False),
        )

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.input_layer(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_trunk(x))

    @property
    def embedding_size(self) -> int:
        return self.output_layer[3].out_features

    def split(self) -> tuple[nn.Module, nn.Module]:
        """(trunk, head) modules sharing this network's parameters."""
        return _Part(self, "forward_trunk", ("input_layer", "body")), _Part(
            self, "forward_head", ("output_layer",)
        )


def irnet(arch: str, *, bn_after_first_conv: bool, embedding_size: int = 512, dropout: float = 0.4) -> IRNet:
    """An iResNet in the face.evoLVe layout: AdaFace (``bn_after_first_conv=True``) or CurricularFace."""
    return IRNet(
        _layers(_canonical(arch)),
        bn_after_first_conv=bn_after_first_conv,
        embedding_size=embedding_size,
        dropout=dropout,
    )


class _Part(nn.Module):
    """The trunk or head of a network: holds the named submodules and calls the network's method.

    The submodules are the network's own objects, so no parameter is copied; ``.modules()`` of a
    head lists its dropout layer, which is how :class:`fiqabench.fr.TorchFRModel` finds it.
    """

    def __init__(self, net: nn.Module, method: str, children: Sequence[str]) -> None:
        super().__init__()
        for name in children:
            self.add_module(name, getattr(net, name))
        # A plain attribute, not a submodule: the part must not own the whole network.
        object.__setattr__(self, "_net", net)
        self._method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self._net, self._method)(x)
