"""The elastic ResNet50D supernet: stateless forward over any config, and extraction.

State-dict names are the official static network's (`input_stem.0.conv.weight`,
`blocks.3.conv2.bn.running_var`, `classifier.linear.weight`): the official dynamic names
double the innermost module (`.conv.conv.`, `.bn.bn.`, `.linear.linear.`), see `official.py`.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch
from torch import nn

from .elastic import ElasticClassifier, ElasticConvBN
from .space import ResNetConfig, ResNetSpace
from .static import Bottleneck, ResidualConv, StaticResNet

__all__ = ["ResNetSupernet", "ElasticBottleneck", "ElasticResidualConv", "build_supernet"]


class ElasticResidualConv(nn.Module):
    """The input stem's skippable residual conv: x + conv(x)."""

    def __init__(self, conv: ElasticConvBN):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x, x.size(1))


class ElasticBottleneck(nn.Module):
    """A bottleneck block elastic in its middle and output channels (`forward(x, mid, out)`);
    `downsample` (average pooling of the stride + 1x1 conv + BN) on a stage's first block."""

    def __init__(self, max_in: int, max_mid: int, max_out: int, stride: int, downsample: bool, eps: float,
                 momentum: float):
        super().__init__()
        self.stride = stride
        self.conv1 = ElasticConvBN(max_in, max_mid, 1, 1, True, eps, momentum)
        self.conv2 = ElasticConvBN(max_mid, max_mid, 3, stride, True, eps, momentum)
        self.conv3 = ElasticConvBN(max_mid, max_out, 1, 1, False, eps, momentum)
        self.downsample = ElasticConvBN(max_in, max_out, 1, 1, False, eps, momentum) if downsample else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x
        return nn.functional.avg_pool2d(x, self.stride, self.stride, 0, ceil_mode=True)

    def forward(self, x: torch.Tensor, mid: int, out: int) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(self._pool(x), out)
        y = self.conv3(self.conv2(self.conv1(x, mid), mid), out)
        return torch.relu(y + residual)

    def extract(self, in_channels: int, mid: int, out: int) -> Bottleneck:
        downsample = None
        if self.downsample is not None:
            conv = self.downsample.extract(in_channels, out)
            # stride 1: a 1x1 average pool is the identity, left out
            downsample = conv if self.stride == 1 else nn.Sequential(
                nn.AvgPool2d(self.stride, self.stride, 0, ceil_mode=True), conv)
        return Bottleneck(self.conv1.extract(in_channels, mid), self.conv2.extract(mid, mid),
                          self.conv3.extract(mid, out), downsample)


class ResNetSupernet(nn.Module):
    """Weight-sharing ResNet of a `ResNetSpace` (the official `OFAResNets`).

    `forward(x, cfg)` runs the subnet `cfg` (the largest when omitted). Nothing about the
    active subnet is stored on the module. A subnet keeps the first blocks of every stage and
    the first channels of every layer.
    """

    def __init__(self, space: ResNetSpace):
        super().__init__()
        self.space = space
        eps, momentum = space.bn_eps, space.bn_momentum
        mid, out = max(space.stem_mid_channels), max(space.stem_out_channels)
        self.input_stem = nn.ModuleList([
            ElasticConvBN(space.in_channels, mid, 3, 2, True, eps, momentum),
            ElasticResidualConv(ElasticConvBN(mid, mid, 3, 1, True, eps, momentum)),
            ElasticConvBN(mid, out, 3, 1, True, eps, momentum)])
        blocks, c_in = [], out
        for s, slots in enumerate(space.stage_slots):
            c_out = max(space.stage_out_channels[s])
            m = int(space.middle_table[s].max())
            for i in range(slots):
                blocks.append(ElasticBottleneck(c_in, m, c_out, space.stride(s) if i == 0 else 1, i == 0, eps,
                                                momentum))
                c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.classifier = ElasticClassifier(c_in, space.num_classes)

    # ------------------------------------------------------------------ running
    def _config(self, cfg: ResNetConfig | Mapping[str, Any] | None) -> ResNetConfig:
        return self.space.largest() if cfg is None else self.space.validate(cfg)

    def _blocks(self, cfg: ResNetConfig) -> Iterator[tuple[ElasticBottleneck, int, int]]:
        """(block, middle channels, output channels) of every kept block, in order."""
        space = self.space
        for slot, active in enumerate(space.active_slots(cfg)):
            if active:
                s = space.slot_stage[slot]
                out = space.stage_out_channels[s][cfg.w[2 + s]]
                yield self.blocks[slot], space.middle_channels(out, cfg.e[slot]), out

    def forward(self, x: torch.Tensor, cfg: ResNetConfig | Mapping[str, Any] | None = None) -> torch.Tensor:
        cfg = self._config(cfg)
        space = self.space
        x = self.input_stem[0](x, space.stem_mid_channels[cfg.w[0]])
        if space.stem_kept(cfg):
            x = self.input_stem[1](x)
        x = self.input_stem[2](x, space.stem_out_channels[cfg.w[1]])
        x = nn.functional.max_pool2d(x, 3, 2, 1)
        for block, mid, out in self._blocks(cfg):
            x = block(x, mid, out)
        return self.classifier(x.mean((2, 3)))

    @torch.no_grad()
    def extract(self, cfg: ResNetConfig | Mapping[str, Any]) -> StaticResNet:
        """A standalone static network equal to this supernet in config `cfg` (eval mode)."""
        cfg = self._config(cfg)
        space = self.space
        mid, out = space.stem_mid_channels[cfg.w[0]], space.stem_out_channels[cfg.w[1]]
        stem = [self.input_stem[0].extract(space.in_channels, mid)]
        if space.stem_kept(cfg):
            stem.append(ResidualConv(self.input_stem[1].conv.extract(mid, mid)))
        stem.append(self.input_stem[2].extract(mid, out))
        blocks, c_in = [], out
        for block, m, c_out in self._blocks(cfg):
            blocks.append(block.extract(c_in, m, c_out))
            c_in = c_out
        net = StaticResNet(stem, blocks, self.classifier.linear.extract(c_in), cfg, space.name)
        return net.eval()


def build_supernet(preset: str | ResNetSpace) -> ResNetSupernet:
    """A freshly initialised supernet of a named space (or of a `ResNetSpace`)."""
    return ResNetSupernet(ResNetSpace.preset(preset) if isinstance(preset, str) else preset)
