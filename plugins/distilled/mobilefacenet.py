"""MobileFaceNet, the backbone of eDifFIQA(T), in the key layout of the official eDifFIQA code.

MobileFaceNet (Chen et al., "MobileFaceNets: efficient CNNs for accurate real-time face verification
on mobile devices", CCBR 2018, Table 1) is a MobileNetV2-style network for 112 x 112 faces: a 3x3
stride-2 stem, a depthwise 3x3, inverted-residual "bottlenecks" (1x1 expand -> depthwise 3x3 ->
linear 1x1 project, a shortcut when the shape is kept), a 1x1 conv to 512 channels and a *global
depthwise convolution* (GDConv, 7x7 over the 7x7 map) in place of global pooling, then a linear
layer and BatchNorm1d to the embedding.

This is a re-statement of eDifFIQA's ``model/mobilenet.py`` (the variant common in InsightFace_Pytorch
ports), so that the released ``ediffiqaT.pth`` loads strictly: the submodule names below are the
official ones, which makes the state-dict keys the official ones, e.g. ``conv1.conv.weight``,
``conv_23.conv_dw.bn.running_mean``, ``conv_4.model.0.project.bn.weight``, ``conv_6_dw.conv.weight``,
``linear.weight`` (no bias) and ``bn.weight``. The block widths the official code uses (its
``groups`` argument is the expanded width): stem 64; conv_23 64 -> 64 via 128; conv_3 four residual
blocks of 64 via 128; conv_34 64 -> 128 via 256; conv_4 six blocks of 128 via 256; conv_45
128 -> 128 via 512; conv_5 two blocks of 128 via 256; conv_6_sep 128 -> 512; conv_6_dw 7x7 depthwise.
About 1.20 M parameters at embedding size 512 (research notes ``diffiqa.md`` 7.1).

The output is L2-normalised (official ``l2_norm``: the embedding divided by its 2-norm, no epsilon),
unlike the iResNet backbones of eDifFIQA(S/M/L), whose output is the raw BatchNorm1d feature.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MobileFaceNet"]


class ConvBlock(nn.Module):
    """conv (no bias) -> BN -> PReLU; official ``Conv_block`` (keys ``conv``, ``bn``, ``prelu``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class LinearBlock(nn.Module):
    """conv (no bias) -> BN, no activation; official ``Linear_block`` (keys ``conv``, ``bn``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class DepthWise(nn.Module):
    """Inverted residual: 1x1 expand to ``width`` -> depthwise 3x3 (``stride``) -> linear 1x1
    projection, plus the input when ``residual``; official ``Depth_Wise`` (``conv``, ``conv_dw``,
    ``project``)."""

    def __init__(self, cin: int, cout: int, width: int, stride: int, residual: bool = False) -> None:
        super().__init__()
        self.conv = ConvBlock(cin, width)
        self.conv_dw = ConvBlock(width, width, 3, stride, 1, groups=width)
        self.project = LinearBlock(width, cout)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        return x + out if self.residual else out


class Residual(nn.Module):
    """``blocks`` shape-keeping inverted residuals; official ``Residual`` (keys ``model.<i>``)."""

    def __init__(self, channels: int, blocks: int, width: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            *[DepthWise(channels, channels, width, 1, residual=True) for _ in range(blocks)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MobileFaceNet(nn.Module):
    """(N, 3, 112, 112) RGB in [-1, 1] -> (N, ``embedding_size``) L2-normalised embedding."""

    def __init__(self, embedding_size: int = 512) -> None:
        super().__init__()
        self.conv1 = ConvBlock(3, 64, 3, 2, 1)
        self.conv2_dw = ConvBlock(64, 64, 3, 1, 1, groups=64)
        self.conv_23 = DepthWise(64, 64, 128, 2)
        self.conv_3 = Residual(64, 4, 128)
        self.conv_34 = DepthWise(64, 128, 256, 2)
        self.conv_4 = Residual(128, 6, 256)
        self.conv_45 = DepthWise(128, 128, 512, 2)
        self.conv_5 = Residual(128, 2, 256)
        self.conv_6_sep = ConvBlock(128, 512)
        # GDConv: a 7x7 depthwise kernel over the whole 7x7 map of a 112 x 112 input.
        self.conv_6_dw = LinearBlock(512, 512, 7, groups=512)
        self.linear = nn.Linear(512, embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2_dw(self.conv1(x))
        x = self.conv_5(self.conv_45(self.conv_4(self.conv_34(self.conv_3(self.conv_23(x))))))
        x = self.conv_6_dw(self.conv_6_sep(x))
        x = self.bn(self.linear(torch.flatten(x, 1)))
        return x / torch.linalg.vector_norm(x, 2, dim=1, keepdim=True)
