"""Efficiency of subnets from their config alone, vectorised over many configs.

Conventions (checked against counting hooks on extracted models in the tests):
- `macs`: multiply-accumulates of every conv and linear layer, batch 1 (the official OFA
  counter's convention: BN, activations, pooling and additions are not counted).
- `params`: parameters of the extracted static subnet (conv and linear weights and biases,
  BN affine parameters).
- `peak_activation_bytes`: MCUNet-lab method with int8 activations (1 byte per element): for
  each conv / linear layer, input + output elements; inside a block with a residual
  connection, layers after the first also hold the block's input; the peak is the maximum.
- `flash_bytes`: int8 deployment: 1 byte per conv / linear weight plus 4 bytes (int32) per
  output-channel bias, BN folded into the preceding conv's bias.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .space import SearchSpace, SubnetConfig, is_population

__all__ = ["analyze", "METRICS"]

METRICS = ("macs", "params", "peak_activation_bytes", "flash_bytes")


def _make_divisible(v: np.ndarray, divisor: int) -> np.ndarray:
    rounded = np.maximum(divisor, (v + divisor // 2) // divisor * divisor)
    return np.where(rounded < 0.9 * v, rounded + divisor, rounded)


def _out_size(size: np.ndarray, stride: int) -> np.ndarray:
    # "same" padding (k // 2) with odd kernels: out = ceil(in / stride)
    return -(-size // stride)


class _Tally:
    """Accumulates metrics over layers for N configs at once; `mask` skips inactive layers."""

    def __init__(self, n: int):
        self.macs = np.zeros(n, np.int64)
        self.params = np.zeros(n, np.int64)
        self.flash = np.zeros(n, np.int64)
        self.peak = np.zeros(n, np.int64)

    def layer(self, macs, weights, biases, bn_channels, activation_elements, mask=True) -> None:
        mask = np.asarray(mask)
        self.macs += np.where(mask, macs, 0)
        self.params += np.where(mask, weights + biases + 2 * bn_channels, 0)
        # BN folds into a per-channel int32 bias; a conv with its own bias keeps it.
        self.flash += np.where(mask, weights + 4 * (biases + bn_channels), 0)
        self.peak = np.maximum(self.peak, np.where(mask, activation_elements, 0))


def analyze(space: SearchSpace | str, cfg: SubnetConfig | Mapping[str, Any] | Sequence[SubnetConfig]
            ) -> dict[str, Any]:
    """`macs`, `params`, `peak_activation_bytes` and `flash_bytes` of one config (ints) or of a
    list of configs or a population (int64 arrays), without building any network."""
    space = SearchSpace.preset(space) if isinstance(space, str) else space
    single = isinstance(cfg, SubnetConfig) or (isinstance(cfg, Mapping) and not is_population(cfg))
    a = space.to_arrays(cfg)
    n = a["wid"].shape[0]
    plans = [space.channels(w) for w in range(len(space.width_mults))]

    def width(getter) -> np.ndarray:
        return np.array([getter(p) for p in plans], np.int64)[a["wid"]]

    t = _Tally(n)
    div = space.channel_divisor
    size = a["image_size"].astype(np.int64)

    # first conv 3x3
    c_in, c = np.full(n, space.in_channels, np.int64), width(lambda p: p.first_conv)
    out = _out_size(size, space.first_conv_stride)
    t.layer(out * out * c * c_in * 9, c * c_in * 9, 0, c, c_in * size * size + c * out * out)
    size = out

    # first block: depthwise 3x3 -> (SE) -> pointwise
    c_out = width(lambda p: p.first_block)
    residual = space.first_block_stride == 1 and space.base_widths[0] == space.base_widths[1]
    size = _block(t, space, c, c, c_out, 3, space.first_block_stride, space.first_block_se,
                  residual, size, expands=False, mask=np.ones(n, bool))
    c = c_out

    in_base = space.base_widths[1]
    for slot in range(space.num_slots):
        stage, index = divmod(slot, space.max_depth)
        stride = space.slot_stride(slot)
        out_base = space.base_widths[2 + stage]
        c_out = width(lambda p, s=stage: p.stages[s])
        mid = _make_divisible(c * a["e"][:, slot], div)
        mask = a["active"][:, slot]
        new_size = _block(t, space, c, mid, c_out, a["ks"][:, slot], stride, space.stage_se[stage],
                          stride == 1 and in_base == out_base, size, expands=True, mask=mask)
        size = np.where(mask, new_size, size)
        c = np.where(mask, c_out, c)
        in_base = out_base

    # final expand 1x1, global pool, feature mix 1x1 (no BN, no bias), classifier
    fe, fm, k = width(lambda p: p.final_expand), width(lambda p: p.feature_mix), space.num_classes
    t.layer(size * size * c * fe, c * fe, 0, fe, (c + fe) * size * size)
    t.layer(fe * fm, fe * fm, 0, 0, fe + fm)
    t.layer(fm * k, fm * k, k, 0, fm + k)

    result = {"macs": t.macs, "params": t.params, "peak_activation_bytes": t.peak, "flash_bytes": t.flash}
    if single:
        return {key: int(value[0]) for key, value in result.items()}
    return result


def _block(t: _Tally, space: SearchSpace, c_in, mid, c_out, k, stride: int, use_se: bool,
           residual: bool, size, expands: bool, mask) -> np.ndarray:
    out = _out_size(size, stride)
    # With a residual, every layer after the block's first one also holds the block input.
    res = c_in * size * size if residual else 0
    if expands:
        t.layer(size * size * c_in * mid, c_in * mid, 0, mid, (c_in + mid) * size * size, mask)
    t.layer(out * out * mid * k * k, mid * k * k, 0, mid,
            mid * (size * size + out * out) + (res if expands else 0), mask)
    if use_se:
        se = _make_divisible(mid // space.se_reduction, space.channel_divisor)
        t.layer(mid * se, mid * se, se, 0, mid + se + res, mask)
        t.layer(se * mid, se * mid, mid, 0, se + mid + res, mask)
    t.layer(out * out * mid * c_out, mid * c_out, 0, c_out, (mid + c_out) * out * out + res, mask)
    return out
