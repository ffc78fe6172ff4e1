"""Plain static ProxylessNAS networks: what `ProxylessSupernet.extract` returns and what gets exported.

Only standard torch layers (Conv2d, BatchNorm2d, ReLU6, Dropout, Linear); no slicing or config
at run time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import static_layers
from ..static_layers import fold_bn  # noqa: F401  (the family's fold_bn: any ConvBNAct)

__all__ = ["ConvBNAct", "MBConv", "StaticProxyless", "fold_bn"]


class ConvBNAct(static_layers.ConvBNAct):
    """conv -> BN -> (ReLU6)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, act: bool):
        super().__init__(conv, bn, nn.ReLU6() if act else None)


class MBConv(nn.Module):
    """Inverted bottleneck (1x1 expand -> depthwise -> 1x1 project), or the depthwise-separable
    first block when there is no expansion; `residual` adds the input."""

    def __init__(self, inverted_bottleneck: ConvBNAct | None, depth_conv: ConvBNAct, point_linear: ConvBNAct,
                 residual: bool):
        super().__init__()
        self.inverted_bottleneck = inverted_bottleneck if inverted_bottleneck is not None else nn.Identity()
        self.depth_conv = depth_conv
        self.point_linear = point_linear
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.point_linear(self.depth_conv(self.inverted_bottleneck(x)))
        return x + y if self.residual else y


class StaticProxyless(nn.Module):
    """A subnet as a standalone ProxylessNAS network: first conv, blocks, feature mix, global
    mean, dropout, classifier."""

    def __init__(self, first_conv: ConvBNAct, blocks: list[MBConv], feature_mix: ConvBNAct, classifier: nn.Linear,
                 dropout: float, config: Any, space_name: str):
        super().__init__()
        self.first_conv = first_conv
        self.blocks = nn.Sequential(*blocks)
        self.feature_mix = feature_mix
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier
        # Plain attributes, not state: they describe where the net came from (ONNX metadata).
        self.config = config
        self.space_name = space_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_mix(self.blocks(self.first_conv(x)))
        return self.classifier(self.dropout(x.mean((2, 3))))
