"""The elastic OFA ProxylessNAS supernet: stateless forward over any config, and extraction.

The elastic layers are MobileNetV3's (`families/mbv3/elastic.py`: prefix-sliced convs and
BatchNorm, the depthwise conv whose smaller kernels pass through the learned 7to5 / 5to3
transforms); this module only assembles them the ProxylessNAS way (ReLU6, no SE, a one-block
last stage, the feature mix before the pooling). Parameter names follow the official ones
closely (`official.py` maps them).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..mbv3.elastic import ElasticBatchNorm2d, ElasticConv2d, ElasticDepthwiseConv2d
from .layout import walk
from .space import ProxylessConfig, ProxylessSpace
from .static import ConvBNAct, MBConv, StaticProxyless

__all__ = ["ProxylessSupernet", "ElasticConvBN", "ElasticMBConv"]


class ElasticConvBN(nn.Module):
    """conv -> BN (eps / momentum of the space) -> (ReLU6)."""

    def __init__(self, conv: nn.Module, channels: int, act: bool, eps: float, momentum: float):
        super().__init__()
        self.conv = conv
        self.bn = ElasticBatchNorm2d(channels, eps=eps, momentum=momentum)
        self.act = act

    def forward(self, x: torch.Tensor, conv_arg: int) -> torch.Tensor:
        # conv_arg: the kernel size of a depthwise conv, else the output channels.
        x = self.bn(self.conv(x, conv_arg))
        return F.relu6(x) if self.act else x

    def extract(self, in_channels: int, conv_arg: int) -> ConvBNAct:
        conv = self.conv.extract(in_channels, conv_arg)
        return ConvBNAct(conv, self.bn.extract(conv.out_channels), self.act)


class ElasticMBConv(nn.Module):
    """Inverted bottleneck with elastic kernel and expand ratio (ReLU6, no SE). With
    `expand_ratios == (1,)` it is the depthwise-separable first block (no 1x1 expansion)."""

    def __init__(self, max_in: int, out_channels: int, kernel_sizes: tuple[int, ...], expand_ratios: tuple[int, ...],
                 stride: int, residual: bool, space: ProxylessSpace):
        super().__init__()
        self.space, self.residual, self.out_channels = space, residual, out_channels
        self.expands = max(expand_ratios) > 1
        bn = {"eps": space.bn_eps, "momentum": space.bn_momentum}
        max_mid = self.middle_channels(max_in, max(expand_ratios))
        self.inverted_bottleneck = (ElasticConvBN(ElasticConv2d(max_in, max_mid), max_mid, True, **bn)
                                    if self.expands else None)
        self.depth_conv = ElasticConvBN(ElasticDepthwiseConv2d(max_mid, kernel_sizes, stride), max_mid, True, **bn)
        self.point_linear = ElasticConvBN(ElasticConv2d(max_mid, out_channels), out_channels, False, **bn)

    def middle_channels(self, in_channels: int, expand_ratio: int) -> int:
        return self.space.middle_channels(in_channels, expand_ratio) if self.expands else in_channels

    def forward(self, x: torch.Tensor, kernel_size: int, expand_ratio: int) -> torch.Tensor:
        y = x
        if self.inverted_bottleneck is not None:
            y = self.inverted_bottleneck(y, self.middle_channels(x.size(1), expand_ratio))
        y = self.point_linear(self.depth_conv(y, kernel_size), self.out_channels)
        return x + y if self.residual else y

    def extract(self, in_channels: int, kernel_size: int, expand_ratio: int) -> MBConv:
        mid = self.middle_channels(in_channels, expand_ratio)
        ib = self.inverted_bottleneck.extract(in_channels, mid) if self.inverted_bottleneck is not None else None
        return MBConv(ib, self.depth_conv.extract(mid, kernel_size), self.point_linear.extract(mid, self.out_channels),
                      self.residual)


class ProxylessSupernet(nn.Module):
    """Weight-sharing supernet of a `ProxylessSpace`.

    `forward(x, cfg)` runs the subnet `cfg` (the largest when omitted); the input must already
    be at `cfg.image_size`. Nothing about the active subnet is stored on the module.
    """

    def __init__(self, space: ProxylessSpace):
        super().__init__()
        self.space = space
        w = space.widths
        bn = {"eps": space.bn_eps, "momentum": space.bn_momentum}
        largest = space.genome.values(space.genome.from_configs(space.largest()))
        _, _, *slots, _ = walk(space, largest["image_size"], largest["ks"], largest["e"], largest["active"])
        self.first_conv = ElasticConvBN(ElasticConv2d(space.in_channels, w[0], 3, 2), w[0], True, **bn)
        self.first_block = ElasticMBConv(w[0], w[1], (3,), (1,), 1, False, space)
        self.blocks = nn.ModuleList(
            ElasticMBConv(int(b.in_channels[0]), int(b.out_channels[0]), space.kernel_sizes, space.expand_ratios,
                          b.stride, b.residual, space) for b in slots)
        self.feature_mix = ElasticConvBN(ElasticConv2d(w[-2], w[-1]), w[-1], True, **bn)
        self.classifier = nn.Linear(w[-1], space.num_classes)
        nn.init.uniform_(self.classifier.weight, -w[-1] ** -0.5, w[-1] ** -0.5)
        nn.init.zeros_(self.classifier.bias)

    def _config(self, cfg: ProxylessConfig | Mapping[str, Any] | None) -> ProxylessConfig:
        return self.space.largest() if cfg is None else self.space.validate(cfg)

    def _active(self, cfg: ProxylessConfig):
        """(block, slot) of every active slot, in order."""
        for slot, block in enumerate(self.blocks):
            stage, index = self.space.slot_stage(slot)
            if index < cfg.d[stage]:
                yield block, slot

    def forward(self, x: torch.Tensor, cfg: ProxylessConfig | Mapping[str, Any] | None = None) -> torch.Tensor:
        cfg = self._config(cfg)
        x = self.first_block(self.first_conv(x, self.space.widths[0]), 3, 1)
        for block, slot in self._active(cfg):
            x = block(x, cfg.ks[slot], cfg.e[slot])
        x = self.feature_mix(x, self.space.widths[-1]).mean((2, 3))
        return self.classifier(F.dropout(x, self.space.dropout, self.training))

    @torch.no_grad()
    def extract(self, cfg: ProxylessConfig | Mapping[str, Any]) -> StaticProxyless:
        """A standalone static network equal to this supernet in config `cfg` (eval mode)."""
        cfg = self._config(cfg)
        w = self.space.widths
        blocks = [self.first_block.extract(w[0], 3, 1)]
        in_ch = w[1]
        for block, slot in self._active(cfg):
            blocks.append(block.extract(in_ch, cfg.ks[slot], cfg.e[slot]))
            in_ch = block.out_channels
        classifier = nn.Linear(w[-1], self.space.num_classes)
        classifier.load_state_dict(self.classifier.state_dict())
        net = StaticProxyless(self.first_conv.extract(self.space.in_channels, w[0]), blocks,
                              self.feature_mix.extract(in_ch, w[-1]), classifier, self.space.dropout, cfg,
                              self.space.name)
        return net.eval()
