"""Elastic layers: each owns its largest weight, is told the active size per call, and slices.

No layer keeps an "active subnet" between calls: the sizes are arguments of `forward`, so
one supernet serves many callers (threads, the trainer's several subnets per step) at once.
Each layer's `extract(...)` returns the equivalent standard torch layer holding copies.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .layout import make_divisible
from .static import ConvBNAct, MBConv, SqueezeExcite

_ACT_FN = {"relu": F.relu, "h_swish": F.hardswish}


def _apply_act(x: torch.Tensor, act: str | None) -> torch.Tensor:
    return x if act is None else _ACT_FN[act](x)


class ElasticConv2d(nn.Module):
    """A (grouped=1) convolution whose in/out channels are prefixes of the largest weight."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int = 1, stride: int = 1,
                 bias: bool = False):
        super().__init__()
        self.stride, self.padding = stride, kernel_size // 2
        self.weight = nn.Parameter(torch.empty(max_out, max_in, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(max_out)) if bias else None
        # He init on fan-out, as the official OFA code ('he_fout').
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / (kernel_size * kernel_size * max_out)))

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        bias = None if self.bias is None else self.bias[:out_channels]
        return F.conv2d(x, self.weight[:out_channels, :x.size(1)], bias, self.stride, self.padding)

    def extract(self, in_channels: int, out_channels: int) -> nn.Conv2d:
        k = self.weight.size(-1)
        conv = nn.Conv2d(in_channels, out_channels, k, self.stride, self.padding, bias=self.bias is not None)
        conv.weight.data.copy_(self.weight[:out_channels, :in_channels])
        if self.bias is not None:
            conv.bias.data.copy_(self.bias[:out_channels])
        return conv


class ElasticDepthwiseConv2d(nn.Module):
    """Depthwise conv with elastic kernel: a smaller kernel is the centre crop of the next
    larger one passed through a learned, channel-shared transform (identity at init)."""

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...], stride: int):
        super().__init__()
        self.kernel_sizes = tuple(sorted(kernel_sizes))
        self.stride = stride
        k = self.kernel_sizes[-1]
        self.weight = nn.Parameter(torch.empty(max_channels, 1, k, k))
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / (k * k * max_channels)))
        for big, small in self.transform_pairs():
            self.register_parameter(f"transform_{big}to{small}", nn.Parameter(torch.eye(small * small)))

    def transform_pairs(self) -> list[tuple[int, int]]:
        ks = self.kernel_sizes[::-1]
        return list(zip(ks[:-1], ks[1:]))

    def active_weight(self, channels: int, kernel_size: int) -> torch.Tensor:
        weight = self.weight[:channels]
        for big, small in self.transform_pairs():
            if big <= kernel_size:
                break
            start = (big - small) // 2
            crop = weight[:, :, start:start + small, start:start + small].reshape(channels, small * small)
            # F.linear multiplies by the transposed matrix, as the official implementation does.
            matrix = getattr(self, f"transform_{big}to{small}")
            weight = F.linear(crop, matrix).view(channels, 1, small, small)
        return weight

    def forward(self, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
        channels = x.size(1)
        weight = self.active_weight(channels, kernel_size)
        if kernel_size > min(x.shape[-2:]):
            return depthwise_conv_small_map(x, weight, self.stride)
        return F.conv2d(x, weight, None, self.stride, kernel_size // 2, 1, channels)

    def extract(self, channels: int, kernel_size: int) -> nn.Conv2d:
        conv = nn.Conv2d(channels, channels, kernel_size, self.stride, kernel_size // 2,
                         groups=channels, bias=False)
        with torch.no_grad():
            conv.weight.copy_(self.active_weight(channels, kernel_size))
        return conv


@functools.lru_cache(maxsize=256)
def _tap_index(h: int, w: int, k: int, stride: int) -> tuple[torch.Tensor, int, int]:
    """For each (output, input) position pair of a k x k convolution with padding k // 2, the
    kernel tap that joins them (row-major), or k * k where none does."""
    p = k // 2
    ho, wo = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
    dy = torch.arange(h).view(1, 1, h, 1) - (torch.arange(ho).view(ho, 1, 1, 1) * stride - p)
    dx = torch.arange(w).view(1, 1, 1, w) - (torch.arange(wo).view(1, wo, 1, 1) * stride - p)
    valid = (dy >= 0) & (dy < k) & (dx >= 0) & (dx < k)
    index = torch.where(valid, dy * k + dx, torch.full_like(dy * dx, k * k))
    return index.reshape(ho * wo, h * w), ho, wo


def depthwise_conv_small_map(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """The depthwise convolution F.conv2d(x, weight, None, stride, k // 2, 1, channels) as one
    small matrix per channel (output positions x input positions, built from the kernel taps).

    Equal to the convolution; used where the kernel is larger than the feature map (7x7 on the
    last stages' 2x2 and 4x4 maps). There oneDNN's CPU kernels fall back to an im2col GEMM whose
    weight gradient took most of a training step on our 2-core machine; per layer this path is
    2-10x faster (benchmarks/bench_depthwise.py; docs/training.md, "Speed on CPU"). The result
    is channels_last, like the input."""
    n, c, h, w = x.shape
    k = weight.shape[-1]
    index, ho, wo = _tap_index(h, w, k, stride)
    taps = torch.cat([weight.reshape(c, k * k), weight.new_zeros(c, 1)], 1)
    matrix = taps[:, index.to(x.device)]                          # c, ho*wo, h*w
    y = torch.bmm(matrix, x.permute(1, 2, 3, 0).reshape(c, h * w, n))   # c, ho*wo, n
    return y.permute(2, 1, 0).contiguous().view(n, ho, wo, c).permute(0, 3, 1, 2)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first `x.size(1)` channels; running statistics are sliced in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        if c == self.num_features:
            return super().forward(x)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c],
                            self.bias[:c], self.training, self.momentum, self.eps)

    def extract(self, channels: int) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, name).copy_(getattr(self, name)[:channels])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn


class ElasticConvBN(nn.Module):
    """conv -> BN (-> activation, applied by the caller's `act`)."""

    def __init__(self, conv: nn.Module, channels: int | None, act: str | None):
        super().__init__()
        self.conv = conv
        self.bn = ElasticBatchNorm2d(channels) if channels is not None else None
        self.act = act

    def forward(self, x: torch.Tensor, *conv_args) -> torch.Tensor:
        x = self.conv(x, *conv_args)
        if self.bn is not None:
            x = self.bn(x)
        return _apply_act(x, self.act)

    def extract(self, in_channels: int, conv_arg: int) -> ConvBNAct:
        # conv_arg is the kernel size of a depthwise conv, else the output channels.
        conv = self.conv.extract(in_channels, conv_arg)
        bn = self.bn.extract(conv.out_channels) if self.bn is not None else None
        return ConvBNAct(conv, bn, self.act)


class ElasticSE(nn.Module):
    """Squeeze-and-excite whose hidden width follows the active channels (make_divisible(c // r))."""

    def __init__(self, max_channels: int, reduction: int, divisor: int):
        super().__init__()
        self.reduction, self.divisor = reduction, divisor
        hidden = self.hidden(max_channels)
        self.reduce = nn.Conv2d(max_channels, hidden, 1, bias=True)
        self.expand = nn.Conv2d(hidden, max_channels, 1, bias=True)

    def hidden(self, channels: int) -> int:
        return make_divisible(channels // self.reduction, self.divisor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        h = self.hidden(c)
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(F.conv2d(y, self.reduce.weight[:h, :c], self.reduce.bias[:h]))
        y = F.hardsigmoid(F.conv2d(y, self.expand.weight[:c, :h], self.expand.bias[:c]))
        return x * y

    def extract(self, channels: int) -> SqueezeExcite:
        h = self.hidden(channels)
        reduce, expand = nn.Conv2d(channels, h, 1), nn.Conv2d(h, channels, 1)
        with torch.no_grad():
            reduce.weight.copy_(self.reduce.weight[:h, :channels])
            reduce.bias.copy_(self.reduce.bias[:h])
            expand.weight.copy_(self.expand.weight[:channels, :h])
            expand.bias.copy_(self.expand.bias[:channels])
        return SqueezeExcite(reduce, expand)


class ElasticMBConv(nn.Module):
    """MobileNetV3 inverted bottleneck with elastic kernel, expand ratio and in/out width.

    With `expand_ratios == (1,)` it is the depthwise-separable first block (no 1x1 expansion).
    """

    def __init__(self, max_in: int, max_out: int, kernel_sizes: tuple[int, ...],
                 expand_ratios: tuple[int, ...], stride: int, act: str, use_se: bool,
                 residual: bool, divisor: int = 8, se_reduction: int = 4):
        super().__init__()
        self.divisor, self.residual = divisor, residual
        self.expands = max(expand_ratios) > 1
        max_mid = self.middle_channels(max_in, max(expand_ratios))
        self.inverted_bottleneck = (ElasticConvBN(ElasticConv2d(max_in, max_mid), max_mid, act)
                                    if self.expands else None)
        self.depth_conv = ElasticConvBN(ElasticDepthwiseConv2d(max_mid, kernel_sizes, stride), max_mid, act)
        self.se = ElasticSE(max_mid, se_reduction, divisor) if use_se else None
        self.point_linear = ElasticConvBN(ElasticConv2d(max_mid, max_out), max_out, None)

    def middle_channels(self, in_channels: int, expand_ratio: int) -> int:
        if not self.expands:
            return in_channels
        return make_divisible(round(in_channels * expand_ratio), self.divisor)

    def forward(self, x: torch.Tensor, kernel_size: int, expand_ratio: int,
                out_channels: int) -> torch.Tensor:
        y = x
        if self.inverted_bottleneck is not None:
            y = self.inverted_bottleneck(y, self.middle_channels(x.size(1), expand_ratio))
        y = self.depth_conv(y, kernel_size)
        if self.se is not None:
            y = self.se(y)
        y = self.point_linear(y, out_channels)
        return x + y if self.residual else y

    def extract(self, in_channels: int, kernel_size: int, expand_ratio: int,
                out_channels: int) -> MBConv:
        mid = self.middle_channels(in_channels, expand_ratio)
        ib = (self.inverted_bottleneck.extract(in_channels, mid)
              if self.inverted_bottleneck is not None else None)
        return MBConv(ib, self.depth_conv.extract(mid, kernel_size),
                      self.se.extract(mid) if self.se is not None else None,
                      self.point_linear.extract(mid, out_channels), self.residual)
