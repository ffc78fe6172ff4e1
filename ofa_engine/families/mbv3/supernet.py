"""The elastic OFA MobileNetV3 supernet: stateless forward over any config, and extraction."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .elastic import ElasticConv2d, ElasticConvBN, ElasticMBConv
from .layout import walk_configs
from .space import SearchSpace, SubnetConfig
from .static import StaticNet

__all__ = ["Supernet", "build_supernet", "state_dict_problems"]


class Supernet(nn.Module):
    """Weight-sharing supernet of a `SearchSpace`.

    `forward(x, cfg)` runs the subnet `cfg` (the largest when omitted); the input must already
    be at `cfg.image_size`. Nothing about the active subnet is stored on the module, so
    concurrent callers never see each other's configs.
    """

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        if list(space.width_mults) != sorted(space.width_mults):
            raise ValueError(f"space '{space.name}': width multipliers must be ascending")
        big = space.channels(len(space.width_mults) - 1)
        div, red = space.channel_divisor, space.se_reduction
        # The largest subnet's geometry gives every layer its largest size.
        stem, first, *slots, head = walk_configs(space, space.largest())
        self.first_conv = ElasticConvBN(
            ElasticConv2d(space.in_channels, big.first_conv, 3, stem.stride), big.first_conv, stem.activation)
        self.first_block = ElasticMBConv(
            big.first_conv, big.first_block, (3,), (1,), first.stride, first.activation, first.se,
            residual=first.residual, divisor=div, se_reduction=red)
        self.blocks = nn.ModuleList(
            ElasticMBConv(int(b.in_channels[0]), int(b.out_channels[0]), space.kernel_sizes, space.expand_ratios,
                          b.stride, b.activation, b.se, residual=b.residual, divisor=div, se_reduction=red)
            for b in slots)
        in_ch = int(head.in_channels[0])
        self.final_expand = ElasticConvBN(ElasticConv2d(in_ch, big.final_expand), big.final_expand, "h_swish")
        self.feature_mix = ElasticConvBN(ElasticConv2d(big.final_expand, big.feature_mix), None, "h_swish")
        self.classifier = nn.Linear(big.feature_mix, space.num_classes)
        nn.init.uniform_(self.classifier.weight, -big.feature_mix ** -0.5, big.feature_mix ** -0.5)
        nn.init.zeros_(self.classifier.bias)

    # ------------------------------------------------------------------ running
    def _config(self, cfg: SubnetConfig | Mapping[str, Any] | None) -> SubnetConfig:
        return self.space.largest() if cfg is None else self.space.validate(cfg)

    def _layers(self, cfg: SubnetConfig):
        """(block, slot, out_channels) for every active elastic block, in order."""
        plan = self.space.channels(cfg.wid)
        for stage, depth in enumerate(cfg.d):
            for i in range(depth):
                slot = stage * self.space.max_depth + i
                yield self.blocks[slot], slot, plan.stages[stage]

    def forward(self, x: torch.Tensor, cfg: SubnetConfig | Mapping[str, Any] | None = None) -> torch.Tensor:
        cfg = self._config(cfg)
        plan = self.space.channels(cfg.wid)
        x = self.first_conv(x, plan.first_conv)
        x = self.first_block(x, 3, 1, plan.first_block)
        for block, slot, out_channels in self._layers(cfg):
            x = block(x, cfg.ks[slot], cfg.e[slot], out_channels)
        x = self.final_expand(x, plan.final_expand)
        x = self.feature_mix(x.mean((2, 3), keepdim=True), plan.feature_mix)
        x = F.dropout(torch.flatten(x, 1), self.space.dropout, self.training)
        return F.linear(x, self.classifier.weight[:, :x.size(1)], self.classifier.bias)

    @torch.no_grad()
    def extract(self, cfg: SubnetConfig | Mapping[str, Any]) -> StaticNet:
        """A standalone static network equal to this supernet in config `cfg` (eval mode)."""
        cfg = self._config(cfg)
        plan = self.space.channels(cfg.wid)
        blocks = [self.first_block.extract(plan.first_conv, 3, 1, plan.first_block)]
        in_ch = plan.first_block
        for block, slot, out_channels in self._layers(cfg):
            blocks.append(block.extract(in_ch, cfg.ks[slot], cfg.e[slot], out_channels))
            in_ch = out_channels
        classifier = nn.Linear(plan.feature_mix, self.space.num_classes)
        classifier.weight.copy_(self.classifier.weight[:, :plan.feature_mix])
        classifier.bias.copy_(self.classifier.bias)
        net = StaticNet(
            self.first_conv.extract(self.space.in_channels, plan.first_conv), blocks,
            self.final_expand.extract(in_ch, plan.final_expand),
            self.feature_mix.extract(plan.final_expand, plan.feature_mix),
            classifier, self.space.dropout, cfg, self.space.name)
        return net.eval()

    # ------------------------------------------------------------------ channel sorting
    @torch.no_grad()
    def reorganize_channels(self, expand_stage: int = 0, middle: bool = True, stage: bool = True) -> None:
        """Sort channels by L1 importance so that smaller widths keep the most important ones.

        `middle`: the expanded channels of every block (by the L1 norm of the point-linear
        weight per input channel) and the SE hidden units. `stage`: the channels shared by the
        blocks of a stage (by the L1 norm of the weights that read them), which the width
        multiplier slices. `expand_stage` > 0 keeps channels already inside the `expand_stage`
        largest expand ratios ahead of the rest, as OFA does between its expand phases.
        The function of the largest subnet is unchanged.
        """
        if middle:
            for block in self.blocks:
                self._sort_middle(block, expand_stage)
        if stage:
            self._sort_stage_channels()

    def _sort_middle(self, block: ElasticMBConv, expand_stage: int) -> None:
        importance = block.point_linear.conv.weight.abs().sum((0, 2, 3))
        if expand_stage > 0:
            max_in = block.inverted_bottleneck.conv.weight.size(1)
            widths = [block.middle_channels(max_in, e) for e in sorted(self.space.expand_ratios, reverse=True)]
            right, offset = len(importance), -len(widths) * 1e5
            for left in widths[:expand_stage + 1]:
                importance[left:right] += offset
                offset += 1e5
                right = left
        order = torch.argsort(importance, descending=True, stable=True)
        _permute(block.point_linear.conv.weight, order, 1)
        _permute_bn(block.depth_conv.bn, order)
        _permute(block.depth_conv.conv.weight, order, 0)
        if block.inverted_bottleneck is not None:
            _permute(block.inverted_bottleneck.conv.weight, order, 0)
            _permute_bn(block.inverted_bottleneck.bn, order)
        if block.se is not None:
            se = block.se
            _permute(se.expand.weight, order, 0)
            _permute(se.expand.bias, order, 0)
            _permute(se.reduce.weight, order, 1)
            hidden_order = torch.argsort(se.expand.weight.abs().sum((0, 2, 3)), descending=True, stable=True)
            _permute(se.expand.weight, hidden_order, 1)
            _permute(se.reduce.weight, hidden_order, 0)
            _permute(se.reduce.bias, hidden_order, 0)

    def _sort_stage_channels(self) -> None:
        # A channel space starts at a block without residual and runs through the residual
        # blocks after it; it is read by those blocks and by the next space's first block.
        groups: list[list[ElasticMBConv]] = []
        for block in self.blocks:
            if block.residual and groups:
                groups[-1].append(block)
            else:
                groups.append([block])
        readers = [g[0].inverted_bottleneck.conv for g in groups[1:]] + [self.final_expand.conv]
        for group, next_reader in zip(groups, readers):
            consumers = [b.inverted_bottleneck.conv.weight for b in group[1:]] + [next_reader.weight]
            importance = sum(w.abs().sum((0, 2, 3)) for w in consumers)
            order = torch.argsort(importance, descending=True, stable=True)
            for block in group:
                _permute(block.point_linear.conv.weight, order, 0)
                _permute_bn(block.point_linear.bn, order)
            for weight in consumers:
                _permute(weight, order, 1)


def _permute(tensor: torch.Tensor, order: torch.Tensor, dim: int) -> None:
    tensor.copy_(tensor.index_select(dim, order))


def _permute_bn(bn: nn.BatchNorm2d, order: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        _permute(getattr(bn, name), order, 0)


def build_supernet(preset: str | SearchSpace) -> Supernet:
    """A freshly initialised supernet of a named space (or of a `SearchSpace`)."""
    space = SearchSpace.preset(preset) if isinstance(preset, str) else preset
    return Supernet(space)


def state_dict_problems(expected: Mapping[str, Any], state: Mapping[str, Any]) -> list[str]:
    """How `state` differs from the `expected` state dict, as short phrases ("2 missing keys
    (a, b)", "1 shape mismatches (...)"); empty when every key and shape matches."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)]

    def some(items: list[str]) -> str:
        return ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
    return [f"{len(items)} {what} ({some(items)})" for what, items in
            (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if items]
