"""Plain static ResNets: what `ResNetSupernet.extract` returns and what gets exported to ONNX.

Only standard torch layers (Conv2d, BatchNorm2d, ReLU, MaxPool2d, AvgPool2d, Linear); no
slicing or config at run time. The layout is the official static `ResNets` one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import static_layers
from ..static_layers import fold_bn  # noqa: F401  (the family's fold_bn: any ConvBNAct)

__all__ = ["ConvBNAct", "ResidualConv", "Bottleneck", "StaticResNet", "fold_bn"]


class ConvBNAct(static_layers.ConvBNAct):
    """conv -> BN -> ReLU (or no activation)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, relu: bool):
        super().__init__(conv, bn, nn.ReLU() if relu else None)


class ResidualConv(nn.Module):
    """x + conv(x): the input stem's middle conv."""

    def __init__(self, conv: ConvBNAct):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1, plus the shortcut (identity, or "ResNet-D": average pooling
    of the stride, then 1x1 conv + BN), then ReLU."""

    def __init__(self, conv1: ConvBNAct, conv2: ConvBNAct, conv3: ConvBNAct, downsample: nn.Module | None):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = conv1, conv2, conv3
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.downsample(x))


class StaticResNet(nn.Module):
    """A subnet as a standalone ResNet: input stem -> max pool -> blocks -> global mean ->
    classifier. Input (B, in_channels, image_size, image_size)."""

    def __init__(self, input_stem: list[nn.Module], blocks: list[Bottleneck], classifier: nn.Linear,
                 config: Any, space_name: str):
        super().__init__()
        self.input_stem = nn.Sequential(*input_stem)
        self.max_pooling = nn.MaxPool2d(3, 2, 1)
        self.blocks = nn.Sequential(*blocks)
        self.classifier = classifier
        # Plain attributes, not state: they describe where the net came from (ONNX metadata).
        self.config = config
        self.space_name = space_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.max_pooling(self.input_stem(x)))
        return self.classifier(x.mean((2, 3)))
