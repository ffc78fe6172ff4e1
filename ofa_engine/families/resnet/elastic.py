"""Elastic layers of the ResNet supernet: each owns its largest weight, is told the active
size per call, and slices (the first channels; the official `DynamicConv2d` /
`DynamicBatchNorm2d` / `DynamicLinear` slice the same way).

No layer keeps an "active subnet" between calls: the sizes are arguments of `forward`. Each
layer's `extract(...)` returns the equivalent standard torch layer holding copies (built
without initialisation, `skip_init`: every value is copied over).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

from .static import ConvBNAct

__all__ = ["ElasticConvBN", "ElasticBatchNorm2d", "ElasticLinear", "ElasticClassifier"]


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first channels of its largest parameters and statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:   # cumulative moving average, as nn.BatchNorm2d
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            self.training, momentum, self.eps)

    def extract(self, channels: int) -> nn.BatchNorm2d:
        bn = skip_init(nn.BatchNorm2d, channels, eps=self.eps, momentum=self.momentum)
        bn.weight.data.copy_(self.weight[:channels])
        bn.bias.data.copy_(self.bias[:channels])
        bn.running_mean.copy_(self.running_mean[:channels])
        bn.running_var.copy_(self.running_var[:channels])
        bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn


class ElasticConv2d(nn.Module):
    """A convolution (no bias, groups 1, 'same' padding) whose in / out channels are the first
    ones of the largest weight."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int, stride: int):
        super().__init__()
        self.stride, self.padding = stride, kernel_size // 2
        self.weight = nn.Parameter(torch.empty(max_out, max_in, kernel_size, kernel_size))
        # He init on fan-out, as the official OFA code ('he_fout').
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / (kernel_size * kernel_size * max_out)))

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        return F.conv2d(x, self.weight[:out_channels, :x.size(1)], None, self.stride, self.padding)

    def extract(self, in_channels: int, out_channels: int) -> nn.Conv2d:
        k = self.weight.size(-1)
        conv = skip_init(nn.Conv2d, in_channels, out_channels, k, self.stride, self.padding, bias=False)
        conv.weight.data.copy_(self.weight[:out_channels, :in_channels])
        return conv


class ElasticConvBN(nn.Module):
    """conv -> BN -> (ReLU), elastic in both channel counts."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int, stride: int, relu: bool,
                 eps: float, momentum: float):
        super().__init__()
        self.conv = ElasticConv2d(max_in, max_out, kernel_size, stride)
        self.bn = ElasticBatchNorm2d(max_out, eps=eps, momentum=momentum)
        self.relu = relu

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        x = self.bn(self.conv(x, out_channels))
        return F.relu(x) if self.relu else x

    def extract(self, in_channels: int, out_channels: int) -> ConvBNAct:
        return ConvBNAct(self.conv.extract(in_channels, out_channels), self.bn.extract(out_channels), self.relu)


class ElasticLinear(nn.Module):
    """A linear layer reading the first inputs of its largest weight (all outputs)."""

    def __init__(self, max_in: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, max_in))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.normal_(self.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, :x.size(1)], self.bias)

    def extract(self, in_features: int) -> nn.Linear:
        linear = skip_init(nn.Linear, in_features, self.weight.size(0))
        linear.weight.data.copy_(self.weight[:, :in_features])
        linear.bias.data.copy_(self.bias)
        return linear


class ElasticClassifier(nn.Module):
    """The classifier (`linear`), named as the official `classifier.linear`."""

    def __init__(self, max_in: int, num_classes: int):
        super().__init__()
        self.linear = ElasticLinear(max_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)
