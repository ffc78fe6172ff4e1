"""Plain static networks: what `Supernet.extract` returns and what gets exported to ONNX.

Only standard torch layers; no slicing or config at run time.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import static_layers
from ..static_layers import fold_bn  # noqa: F401  (the family's fold_bn: any ConvBNAct)
from .space import SubnetConfig

ACTIVATIONS = {"relu": nn.ReLU, "h_swish": nn.Hardswish}


def activation(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    return ACTIVATIONS[name]()


class ConvBNAct(static_layers.ConvBNAct):
    """conv -> (BN) -> (activation, named: "relu" or "h_swish"); BN and activation are optional."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, act: str | None):
        super().__init__(conv, bn, activation(act))


class SqueezeExcite(nn.Module):
    """MobileNetV3 SE: global mean -> 1x1 reduce -> ReLU -> 1x1 expand -> hard-sigmoid gate."""

    def __init__(self, reduce: nn.Conv2d, expand: nn.Conv2d):
        super().__init__()
        self.reduce = reduce
        self.relu = nn.ReLU()
        self.expand = expand
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.relu(self.reduce(y))))


class MBConv(nn.Module):
    """Inverted bottleneck (or depthwise-separable block when there is no expansion)."""

    def __init__(self, inverted_bottleneck: ConvBNAct | None, depth_conv: ConvBNAct,
                 se: SqueezeExcite | None, point_linear: ConvBNAct, residual: bool):
        super().__init__()
        self.inverted_bottleneck = inverted_bottleneck if inverted_bottleneck is not None else nn.Identity()
        self.depth_conv = depth_conv
        self.se = se if se is not None else nn.Identity()
        self.point_linear = point_linear
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.point_linear(self.se(self.depth_conv(self.inverted_bottleneck(x))))
        return x + y if self.residual else y


class StaticNet(nn.Module):
    """A subnet as a standalone MobileNetV3-style network."""

    def __init__(self, first_conv: ConvBNAct, blocks: list[MBConv], final_expand: ConvBNAct,
                 feature_mix: ConvBNAct, classifier: nn.Linear, dropout: float,
                 config: SubnetConfig, space_name: str):
        super().__init__()
        self.first_conv = first_conv
        self.blocks = nn.Sequential(*blocks)
        self.final_expand = final_expand
        self.feature_mix = feature_mix
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier
        # Plain attributes, not state: they describe where the net came from (ONNX metadata).
        self.config = config
        self.space_name = space_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_expand(self.blocks(self.first_conv(x)))
        x = self.feature_mix(x.mean((2, 3), keepdim=True))
        return self.classifier(self.dropout(torch.flatten(x, 1)))
