"""The ProxylessNAS layout, walked once: per-block geometry of whole populations.

Layout of a `ProxylessSpace`: first conv (3x3, stride 2, "stem") -> first block (depthwise
3x3 -> pointwise, no expansion, no residual) -> the block slots (every stage but the last
`max_depth`, the last one) -> head (feature mix 1x1 conv + BN + ReLU6, global mean,
classifier). `walk` gives one `BlockGeometry` (MobileNetV3's record: channels, kernel, stride,
sizes, residual, active, as (N,) arrays) per block; the supernet, the analytics, the latency
features and `describe` read it from here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..mbv3.layout import BlockGeometry, make_divisible_array, out_size

__all__ = ["walk", "walk_values", "ACTIVATION"]

ACTIVATION = "relu6"


def walk(space: Any, image_size: np.ndarray, ks: np.ndarray, e: np.ndarray, active: np.ndarray
         ) -> list[BlockGeometry]:
    """Every block of `space` for N configs given as validated arrays: `image_size` (N,),
    `ks` / `e` / `active` (N, slots). Stem, first block, one entry per slot (inactive ones
    included, flagged; their sizes are those they would have), head (`mid_channels` its input
    channels, `out_channels` the feature mix)."""
    size = np.asarray(image_size, np.int64)
    n = size.shape[0]
    w = space.widths
    ones, always, zeros = np.ones(n, np.int64), np.ones(n, bool), np.zeros(n, np.int64)
    blocks = []
    c = np.full(n, w[0], np.int64)
    out = out_size(size, 2)
    blocks.append(BlockGeometry("stem", -1, -1, -1, 2, False, ACTIVATION, False, False,
                                np.full(n, space.in_channels, np.int64), c, c, zeros, 3 * ones, ones, size, out,
                                always))
    size = out
    c_out = np.full(n, w[1], np.int64)
    blocks.append(BlockGeometry("first_block", -1, -1, -1, 1, False, ACTIVATION, False, False,
                                c, c, c_out, zeros, 3 * ones, ones, size, size, always))
    c = c_out
    ks, e, active = np.asarray(ks, np.int64), np.asarray(e, np.int64), np.asarray(active, bool)
    in_width = w[1]
    for slot in range(space.num_slots):
        stage, index = space.slot_stage(slot)
        stride = space.stage_strides[stage] if index == 0 else 1
        out_width = w[2 + stage]
        mid = make_divisible_array(c * e[:, slot], space.channel_divisor)
        mask = active[:, slot]
        out = out_size(size, stride)
        blocks.append(BlockGeometry(
            "block", stage, index, slot, stride, stride == 1 and in_width == out_width, ACTIVATION, False, True,
            c, mid, np.full(n, out_width, np.int64), zeros, ks[:, slot], e[:, slot], size, out, mask))
        size = np.where(mask, out, size)
        c = np.where(mask, out_width, c)
        in_width = out_width
    blocks.append(BlockGeometry("head", space.num_stages, -1, -1, 1, False, ACTIVATION, False, False,
                                c, c, np.full(n, w[-1], np.int64), zeros, ones, ones, size, ones, always))
    return blocks


def walk_values(space: Any, values: dict[str, np.ndarray]) -> list[BlockGeometry]:
    """`walk` of a genome's `values` (`ProxylessGenome.values`)."""
    return walk(space, values["image_size"], values["ks"], values["e"], values["active"])
