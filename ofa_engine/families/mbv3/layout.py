"""The MobileNetV3 layout, walked once: per-block geometry of whole populations.

Layout of a `SearchSpace`: first conv (3x3, "stem") -> first block (depthwise-separable, no
expansion) -> `num_stages` elastic stages of `max_depth` slots of inverted bottlenecks ->
head (final 1x1 expand, global pool, feature-mix 1x1, classifier).

`walk` turns integer arrays of configs into one `BlockGeometry` per block of that layout:
channels, kernel, stride, spatial sizes, SE width, residual and whether the block is active,
each an (N,) int array over the population. The supernet builder, `analytics.analyze`, the
efficiency tables, the latency features and the app's layer chart all read it from here.

This module imports nothing of `space.py` at run time (the space imports `make_divisible`
and `ChannelPlan` from here), so it takes the space as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:
    from .space import SearchSpace, SubnetConfig

__all__ = ["make_divisible", "make_divisible_array", "ChannelPlan", "channel_plan", "out_size",
           "BlockGeometry", "walk", "walk_configs", "BLOCK_KINDS"]

BLOCK_KINDS = ("stem", "first_block", "block", "head")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round `value` to the nearest multiple of `divisor`, never more than 10% below it.

    Same rule as the official OFA / MobileNet code, so that channel counts match theirs.
    `make_divisible_array` is the same rule on arrays.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def make_divisible_array(values: Any, divisor: int = 8, min_value: int | None = None) -> np.ndarray:
    """`make_divisible` of every element (non-negative values), as an int64 array."""
    v = np.asarray(values)
    min_value = divisor if min_value is None else min_value
    if np.issubdtype(v.dtype, np.integer):
        # Integer inputs: int(v + d / 2) == v + d // 2, exactly, for any divisor.
        rounded = (v.astype(np.int64) + divisor // 2) // divisor * divisor
    else:
        rounded = np.floor(v + divisor / 2).astype(np.int64) // divisor * divisor
    rounded = np.maximum(min_value, rounded)
    return np.where(rounded < 0.9 * v, rounded + divisor, rounded).astype(np.int64)


@dataclass(frozen=True)
class ChannelPlan:
    """Channel counts of every layer of a network at one width multiplier."""

    first_conv: int
    first_block: int
    stages: tuple[int, ...]
    final_expand: int
    feature_mix: int


def channel_plan(space: "SearchSpace", wid: int) -> ChannelPlan:
    """The channel counts of `space` at width index `wid`."""
    mult = space.width_mults[wid]
    w = [make_divisible(b * mult, space.channel_divisor) for b in space.base_widths]
    return ChannelPlan(w[0], w[1], tuple(w[2:-2]), w[-2], w[-1])


def out_size(size: Any, stride: int) -> Any:
    """Spatial size after a conv with "same" padding (k // 2, odd k): ceil(size / stride)."""
    return -(-size // stride)


@dataclass(frozen=True)
class BlockGeometry:
    """One block of the layout for N configs: the array fields hold one entry per config.

    kind: "stem" (first conv), "first_block", "block" (an elastic slot) or "head".
    stage / index / slot: the elastic stage, position in it and slot (stage * max_depth +
    index); -1 outside the elastic stages.
    Channels: a block reads `in_channels`, runs `mid_channels` inside (the expanded width of an
    inverted bottleneck; the input width of the first block, which does not expand; the output
    width of the stem) and writes `out_channels`. For the head, `mid_channels` is the final
    expand and `out_channels` the feature mix (the classifier follows). `se_channels` is the SE
    hidden width, 0 without SE. `expands`: the block has a 1x1 expansion conv.
    `in_size` / `out_size`: spatial size (square) entering / leaving; the head leaves at 1.
    `active`: the block runs in that config (only elastic slots are ever inactive; an inactive
    slot's sizes are those it would have, its input being the last active block's output).
    """

    kind: str
    stage: int
    index: int
    slot: int
    stride: int
    residual: bool
    activation: str
    se: bool
    expands: bool
    in_channels: np.ndarray
    mid_channels: np.ndarray
    out_channels: np.ndarray
    se_channels: np.ndarray
    kernel: np.ndarray
    expand_ratio: np.ndarray
    in_size: np.ndarray
    out_size: np.ndarray
    active: np.ndarray

    def row(self, i: int) -> dict[str, Any]:
        """Config `i`'s view of this block as plain Python values."""
        out = {}
        for name, value in self.__dict__.items():
            out[name] = value[i].item() if isinstance(value, np.ndarray) else value
        return out


def walk(space: "SearchSpace", wid: np.ndarray, image_size: np.ndarray, ks: np.ndarray, e: np.ndarray,
         active: np.ndarray) -> list[BlockGeometry]:
    """Every block of `space` for N configs given as (validated) integer arrays: `wid` (N,),
    `image_size` (N,), `ks` / `e` / `active` (N, slots). Stem, first block, one entry per
    elastic slot (inactive ones included, flagged), head."""
    wid = np.asarray(wid, np.int64)
    n = wid.shape[0]
    plans = [channel_plan(space, w) for w in range(len(space.width_mults))]

    def width(values) -> np.ndarray:
        return np.array(values, np.int64)[wid]

    div, red = space.channel_divisor, space.se_reduction
    ones = np.ones(n, np.int64)
    always = np.ones(n, bool)
    blocks = []

    def se_width(mid: np.ndarray, use_se: bool) -> np.ndarray:
        return make_divisible_array(mid // red, div) if use_se else np.zeros_like(mid)

    # Stem: 3x3 conv, BN, h-swish.
    size = np.asarray(image_size, np.int64)
    c_in, c = np.full(n, space.in_channels, np.int64), width([p.first_conv for p in plans])
    out = out_size(size, space.first_conv_stride)
    blocks.append(BlockGeometry("stem", -1, -1, -1, space.first_conv_stride, False, "h_swish", False, False,
                                c_in, c, c, np.zeros(n, np.int64), 3 * ones, ones, size, out, always))
    size = out

    # First block: depthwise 3x3 -> (SE) -> pointwise, no expansion.
    c_out = width([p.first_block for p in plans])
    out = out_size(size, space.first_block_stride)
    blocks.append(BlockGeometry(
        "first_block", -1, -1, -1, space.first_block_stride,
        space.first_block_stride == 1 and space.base_widths[0] == space.base_widths[1],
        space.first_block_act, space.first_block_se, False,
        c, c, c_out, se_width(c, space.first_block_se), 3 * ones, ones, size, out, always))
    size, c = out, c_out

    ks, e, active = np.asarray(ks, np.int64), np.asarray(e, np.int64), np.asarray(active, bool)
    in_base = space.base_widths[1]
    for slot in range(space.num_slots):
        stage, index = divmod(slot, space.max_depth)
        stride = space.stage_strides[stage] if index == 0 else 1
        out_base = space.base_widths[2 + stage]
        c_out = width([p.stages[stage] for p in plans])
        mid = make_divisible_array(c * e[:, slot], div)
        mask = active[:, slot]
        out = out_size(size, stride)
        blocks.append(BlockGeometry(
            "block", stage, index, slot, stride, stride == 1 and in_base == out_base,
            space.stage_acts[stage], space.stage_se[stage], True,
            c, mid, c_out, se_width(mid, space.stage_se[stage]), ks[:, slot], e[:, slot], size, out, mask))
        size = np.where(mask, out, size)
        c = np.where(mask, c_out, c)
        in_base = out_base

    # Head: final expand 1x1 (BN, h-swish), global pool, feature mix 1x1 (h-swish), classifier.
    blocks.append(BlockGeometry(
        "head", space.num_stages, -1, -1, 1, False, "h_swish", False, False,
        c, width([p.final_expand for p in plans]), width([p.feature_mix for p in plans]),
        np.zeros(n, np.int64), ones, ones, size, ones, always))
    return blocks


def walk_configs(space: "SearchSpace", configs: "SubnetConfig | Mapping[str, Any] | Any") -> list[BlockGeometry]:
    """`walk` of a config, a list of configs or a population (validated by the space)."""
    a = space.to_arrays(configs)
    return walk(space, a["wid"], a["image_size"], a["ks"], a["e"], a["active"])
