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

from .layout import BlockGeometry, walk_configs
from .space import SearchSpace, SubnetConfig, is_population

__all__ = ["analyze", "METRICS", "LayerTally"]

METRICS = ("macs", "params", "peak_activation_bytes", "flash_bytes")


class LayerTally:
    """Accumulates the four metrics over layers for N configs at once (int64 arrays)."""

    def __init__(self, n: int):
        self.macs = np.zeros(n, np.int64)
        self.params = np.zeros(n, np.int64)
        self.flash = np.zeros(n, np.int64)
        self.peak = np.zeros(n, np.int64)

    def layer(self, macs, weights, biases, bn_channels, activation_elements, mask=True) -> None:
        """One conv / linear layer; rows where `mask` is False are skipped."""
        mask = np.asarray(mask)
        self.macs += np.where(mask, macs, 0)
        self.params += np.where(mask, weights + biases + 2 * bn_channels, 0)
        # BN folds into a per-channel int32 bias; a conv with its own bias keeps it.
        self.flash += np.where(mask, weights + 4 * (biases + bn_channels), 0)
        self.peak = np.maximum(self.peak, np.where(mask, activation_elements, 0))

    def block(self, b: BlockGeometry, num_classes: int) -> None:
        """Every layer of one block of the layout (inactive rows skipped)."""
        size, out, c_in, mid, c_out = b.in_size, b.out_size, b.in_channels, b.mid_channels, b.out_channels
        if b.kind == "stem":
            k2 = b.kernel * b.kernel
            self.layer(out * out * c_out * c_in * k2, c_out * c_in * k2, 0, c_out,
                       c_in * size * size + c_out * out * out)
            return
        if b.kind == "head":
            # final expand 1x1 (BN), global pool, feature mix 1x1 (no BN, no bias), classifier
            fe, fm, k = mid, c_out, num_classes
            self.layer(size * size * c_in * fe, c_in * fe, 0, fe, (c_in + fe) * size * size)
            self.layer(fe * fm, fe * fm, 0, 0, fe + fm)
            self.layer(fm * k, fm * k, k, 0, fm + k)
            return
        mask, k = b.active, b.kernel
        # With a residual, every layer after the block's first one also holds the block input.
        res = c_in * size * size if b.residual else 0
        if b.expands:
            self.layer(size * size * c_in * mid, c_in * mid, 0, mid, (c_in + mid) * size * size, mask)
        self.layer(out * out * mid * k * k, mid * k * k, 0, mid,
                   mid * (size * size + out * out) + (res if b.expands else 0), mask)
        if b.se:
            se = b.se_channels
            self.layer(mid * se, mid * se, se, 0, mid + se + res, mask)
            self.layer(se * mid, se * mid, mid, 0, se + mid + res, mask)
        self.layer(out * out * mid * c_out, mid * c_out, 0, c_out, (mid + c_out) * out * out + res, mask)

    def result(self) -> dict[str, np.ndarray]:
        """The four metrics by `analyze`'s names."""
        return {"macs": self.macs, "params": self.params, "peak_activation_bytes": self.peak,
                "flash_bytes": self.flash}


def analyze(space: SearchSpace | str, cfg: SubnetConfig | Mapping[str, Any] | Sequence[SubnetConfig]
            ) -> dict[str, Any]:
    """`macs`, `params`, `peak_activation_bytes` and `flash_bytes` of one config (ints) or of a
    list of configs or a population (int64 arrays), without building any network."""
    space = SearchSpace.preset(space) if isinstance(space, str) else space
    single = isinstance(cfg, SubnetConfig) or (isinstance(cfg, Mapping) and not is_population(cfg))
    blocks = walk_configs(space, cfg)
    t = LayerTally(blocks[0].in_size.shape[0])
    for b in blocks:
        t.block(b, space.num_classes)
    result = t.result()
    if single:
        return {key: int(value[0]) for key, value in result.items()}
    return result
