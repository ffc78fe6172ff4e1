"""Efficiency of ProxylessNAS subnets from their config alone, vectorised over many configs.

The conventions are MobileNetV3's (`families/mbv3/analytics.py`, checked here against the
official counter and the extracted nets in tests/test_proxyless_family.py):
- `macs`: multiply-accumulates of every conv and linear layer, batch 1 (the official
  `count_net_flops`: BN, activations, pooling and additions are not counted);
- `params`: parameters of the extracted subnet (conv and linear weights and biases, BN affine);
- `peak_activation_bytes`: MCUNet's method, int8 activations: for each conv / linear layer its
  input + output elements, plus the block's input in the layers after the first of a block with
  a residual; the peak is the maximum;
- `flash_bytes`: int8 weights, int32 biases, BN folded into the preceding conv's bias.

`deployment_bytes`: fp32 files store 4 bytes per weight and (folded) bias; int8 QDQ files
`flash_bytes` plus a float32 scale per output channel of every weight and every int32 bias and
a scale + zero point per quantized activation tensor (the input, every conv / linear output,
every residual sum, the pooled features; ReLU6 folds into its conv's output like ReLU).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ...space.interface import ACTIVATION_BYTES
from ..mbv3.analytics import LayerTally
from ..mbv3.layout import BlockGeometry
from .genome import ProxylessPopulation
from .layout import walk_values
from .space import ProxylessConfig, ProxylessSpace

__all__ = ["analyze", "deployment_bytes", "tally_blocks", "block_tally", "METRICS", "PRECISIONS"]

METRICS = ("macs", "params", "peak_activation_bytes", "flash_bytes")
PRECISIONS = ("fp32", "int8")


def block_tally(t: LayerTally, b: BlockGeometry, num_classes: int) -> None:
    """Every layer of one block of the layout into `t` (inactive rows skipped)."""
    size, out, c_in, mid, c_out = b.in_size, b.out_size, b.in_channels, b.mid_channels, b.out_channels
    if b.kind == "stem":
        k2 = b.kernel * b.kernel
        t.tensors(1)   # the network's input
        t.layer(out * out * c_out * c_in * k2, c_out * c_in * k2, 0, c_out, c_in * size * size + c_out * out * out,
                out_channels=c_out)
        return
    if b.kind == "head":
        # feature mix 1x1 (BN, ReLU6) on the map, global mean (its output quantized), classifier.
        fm, k = c_out, num_classes
        t.layer(size * size * c_in * fm, c_in * fm, 0, fm, (c_in + fm) * size * size, out_channels=fm)
        t.tensors(1)
        t.layer(fm * k, fm * k, k, 0, fm + k, out_channels=k)
        return
    mask, k = b.active, b.kernel
    res = c_in * size * size if b.residual else 0
    if b.expands:
        t.layer(size * size * c_in * mid, c_in * mid, 0, mid, (c_in + mid) * size * size, mask, out_channels=mid)
    t.layer(out * out * mid * k * k, mid * k * k, 0, mid, mid * (size * size + out * out) + (res if b.expands else 0),
            mask, out_channels=mid)
    t.layer(out * out * mid * c_out, mid * c_out, 0, c_out, (mid + c_out) * out * out + res, mask,
            out_channels=c_out)
    if b.residual:
        t.tensors(1, mask)


def tally_blocks(space: ProxylessSpace, blocks: Sequence[BlockGeometry]) -> LayerTally:
    t = LayerTally(blocks[0].in_size.shape[0])
    for b in blocks:
        block_tally(t, b, space.num_classes)
    return t


def _values(space: ProxylessSpace, configs: Any) -> tuple[dict[str, np.ndarray], bool]:
    """(genome values, whether one config was given) of one config, a sequence or a population."""
    single = isinstance(configs, (ProxylessConfig, Mapping))
    genome = space.genome
    return genome.values(genome.from_configs(configs)), single


def analyze_values(space: ProxylessSpace, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The four metrics and both deployed files' Flash of genome `values`, as int64 arrays."""
    t = tally_blocks(space, walk_values(space, values))
    out = {"macs": t.macs, "params": t.params, "peak_activation_bytes": t.peak, "flash_bytes": t.flash}
    out.update({f"flash_bytes_{p}": t.deployed_flash(p) for p in PRECISIONS})
    return out


def _as_given(result: dict[str, np.ndarray], single: bool) -> dict[str, Any]:
    return {key: int(value[0]) for key, value in result.items()} if single else result


def analyze(space: ProxylessSpace, configs: ProxylessConfig | Mapping[str, Any] | Sequence[Any] | ProxylessPopulation
            ) -> dict[str, Any]:
    """`macs`, `params`, `peak_activation_bytes`, `flash_bytes` and the deployed files' Flash
    (`flash_bytes_fp32`, `flash_bytes_int8`) of one config (ints) or of a sequence of configs or
    a population (int64 arrays), without building any network."""
    values, single = _values(space, configs)
    return _as_given(analyze_values(space, values), single)


def deployment_bytes(space: ProxylessSpace, configs: Any, precision: str) -> dict[str, Any]:
    """What a device stores and holds for a file of `precision` ("fp32" or "int8"):
    `flash_bytes` (weights, biases, quantization parameters) and `peak_activation_bytes` in that
    precision. Ints for one config, int64 arrays for several. `ValueError` for another precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r}; allowed: {', '.join(PRECISIONS)}")
    values, single = _values(space, configs)
    t = tally_blocks(space, walk_values(space, values))
    return _as_given({"flash_bytes": t.deployed_flash(precision),
                      "peak_activation_bytes": ACTIVATION_BYTES[precision] * t.peak}, single)
