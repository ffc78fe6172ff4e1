"""Efficiency of subnets from their config alone, vectorised over many configs.

Conventions (checked against counting hooks on extracted models in the tests):
- `macs`: multiply-accumulates of every conv and linear layer, batch 1 (the official OFA
  counter's convention: BN, activations, pooling and additions are not counted).
- `params`: parameters of the extracted static subnet (conv and linear weights and biases,
  BN affine parameters).
- `peak_activation_bytes`: MCUNet-lab method with int8 activations (1 byte per element): for
  each conv / linear layer, input + output elements; inside a block with a residual
  connection, layers after the first also hold the block's input; the peak is the maximum.
- `flash_bytes`: int8 weights and biases: 1 byte per conv / linear weight plus 4 bytes (int32)
  per output-channel bias, BN folded into the preceding conv's bias.

What a deployed file stores, by precision (`deployment_bytes`; equal to the bytes of the
exported file's initializers, `runtime.quantize.weight_bytes`, in tests/test_deployment_bytes.py):
- fp32: 4 bytes per weight and per (folded) bias;
- int8 (the QDQ files of `runtime.quantize`): `flash_bytes`, plus a float32 scale per output
  channel of every weight and of every int32 bias (their zero points are 0 and not stored),
  plus a float32 scale and an int8 zero point per quantized activation tensor (the input, every
  conv / linear output, each hard-swish's two halves, the SE's mean, gate and product, every
  residual sum, the head's pooled features);
- peak activation memory: the int8 element count, times 4 bytes in fp32.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ...space.interface import ACTIVATION_BYTES
from .layout import BlockGeometry, walk_configs
from .space import SearchSpace, SubnetConfig, is_population

__all__ = ["analyze", "deployment_bytes", "METRICS", "LayerTally", "PRECISIONS"]

METRICS = ("macs", "params", "peak_activation_bytes", "flash_bytes")
PRECISIONS = ("fp32", "int8")
# Bytes of one quantized activation tensor's parameters: float32 scale + int8 zero point.
ACTIVATION_QPARAM_BYTES = 5
# Quantized activation tensors an activation function adds after a conv: hard-swish is exported
# as x * hard_sigmoid(x), whose two outputs are quantized; ReLU folds into the conv's output.
ACTIVATION_TENSORS = {"relu": 0, "h_swish": 2, None: 0}


class LayerTally:
    """Accumulates the four metrics over layers for N configs at once (int64 arrays)."""

    def __init__(self, n: int):
        self.macs = np.zeros(n, np.int64)
        self.params = np.zeros(n, np.int64)
        self.flash = np.zeros(n, np.int64)
        self.peak = np.zeros(n, np.int64)
        # For `deployment_bytes`: weights, (folded) biases, weight scales (output channels) and
        # quantized activation tensors.
        self.weights = np.zeros(n, np.int64)
        self.biases = np.zeros(n, np.int64)
        self.channels = np.zeros(n, np.int64)
        self.activations = np.zeros(n, np.int64)

    def layer(self, macs, weights, biases, bn_channels, activation_elements, mask=True, *,
              out_channels=0, activations=1) -> None:
        """One conv / linear layer; rows where `mask` is False are skipped. `out_channels`: its
        output channels; `activations`: the quantized activation tensors it writes."""
        mask = np.asarray(mask)
        self.macs += np.where(mask, macs, 0)
        self.params += np.where(mask, weights + biases + 2 * bn_channels, 0)
        # BN folds into a per-channel int32 bias; a conv with its own bias keeps it.
        self.flash += np.where(mask, weights + 4 * (biases + bn_channels), 0)
        self.peak = np.maximum(self.peak, np.where(mask, activation_elements, 0))
        self.weights += np.where(mask, weights, 0)
        self.biases += np.where(mask, biases + bn_channels, 0)
        self.channels += np.where(mask, out_channels, 0)
        self.activations += np.where(mask, activations, 0)

    def deployed_flash(self, precision: str) -> np.ndarray:
        """What a file of `precision` stores (see the module's docstring): fp32 weights and
        biases; or int8 weights, int32 biases, a scale per weight and bias channel and each
        quantized activation's scale and zero point."""
        if precision == "fp32":
            return 4 * (self.weights + self.biases)
        return self.flash + 4 * (self.channels + self.biases) + ACTIVATION_QPARAM_BYTES * self.activations

    def tensors(self, count, mask=True) -> None:
        """Quantized activation tensors written by operators that are not layers."""
        self.activations += np.where(np.asarray(mask), count, 0)

    def block(self, b: BlockGeometry, num_classes: int) -> None:
        """Every layer of one block of the layout (inactive rows skipped)."""
        size, out, c_in, mid, c_out = b.in_size, b.out_size, b.in_channels, b.mid_channels, b.out_channels
        act = 1 + ACTIVATION_TENSORS[b.activation]   # a conv's output tensors with its activation
        if b.kind == "stem":
            k2 = b.kernel * b.kernel
            self.tensors(1)   # the network's input
            self.layer(out * out * c_out * c_in * k2, c_out * c_in * k2, 0, c_out,
                       c_in * size * size + c_out * out * out, out_channels=c_out, activations=act)
            return
        if b.kind == "head":
            # final expand 1x1 (BN), global pool, feature mix 1x1 (no BN, no bias), classifier;
            # both 1x1 convs with hard-swish, the pool's output and the logits quantized.
            fe, fm, k = mid, c_out, num_classes
            self.layer(size * size * c_in * fe, c_in * fe, 0, fe, (c_in + fe) * size * size,
                       out_channels=fe, activations=3)
            self.tensors(1)
            self.layer(fe * fm, fe * fm, 0, 0, fe + fm, out_channels=fm, activations=3)
            self.layer(fm * k, fm * k, k, 0, fm + k, out_channels=k)
            return
        mask, k = b.active, b.kernel
        # With a residual, every layer after the block's first one also holds the block input.
        res = c_in * size * size if b.residual else 0
        if b.expands:
            self.layer(size * size * c_in * mid, c_in * mid, 0, mid, (c_in + mid) * size * size, mask,
                       out_channels=mid, activations=act)
        self.layer(out * out * mid * k * k, mid * k * k, 0, mid,
                   mid * (size * size + out * out) + (res if b.expands else 0), mask,
                   out_channels=mid, activations=act)
        if b.se:
            se = b.se_channels
            # mean -> reduce (ReLU) -> expand -> hard-sigmoid gate -> product with the input
            self.tensors(1, mask)
            self.layer(mid * se, mid * se, se, 0, mid + se + res, mask, out_channels=se)
            self.layer(se * mid, se * mid, mid, 0, se + mid + res, mask, out_channels=mid)
            self.tensors(2, mask)
        self.layer(out * out * mid * c_out, mid * c_out, 0, c_out, (mid + c_out) * out * out + res, mask,
                   out_channels=c_out)
        if b.residual:
            self.tensors(1, mask)

    def result(self) -> dict[str, np.ndarray]:
        """The four metrics by `analyze`'s names."""
        return {"macs": self.macs, "params": self.params, "peak_activation_bytes": self.peak,
                "flash_bytes": self.flash}


def _tally(space: SearchSpace | str, cfg: Any) -> tuple[LayerTally, SearchSpace, bool]:
    """Every layer of `cfg` (one config, a list or a population) counted, and whether it was one."""
    space = SearchSpace.preset(space) if isinstance(space, str) else space
    single = isinstance(cfg, SubnetConfig) or (isinstance(cfg, Mapping) and not is_population(cfg))
    blocks = walk_configs(space, cfg)
    t = LayerTally(blocks[0].in_size.shape[0])
    for b in blocks:
        t.block(b, space.num_classes)
    return t, space, single


def _as_given(result: dict[str, np.ndarray], single: bool) -> dict[str, Any]:
    return {key: int(value[0]) for key, value in result.items()} if single else result


def analyze(space: SearchSpace | str, cfg: SubnetConfig | Mapping[str, Any] | Sequence[SubnetConfig]
            ) -> dict[str, Any]:
    """`macs`, `params`, `peak_activation_bytes` and `flash_bytes` of one config (ints) or of a
    list of configs or a population (int64 arrays), without building any network."""
    t, _, single = _tally(space, cfg)
    return _as_given(t.result(), single)


def deployment_bytes(space: SearchSpace | str, cfg: SubnetConfig | Mapping[str, Any] | Sequence[SubnetConfig],
                     precision: str) -> dict[str, Any]:
    """What a device stores and holds for a file of `precision` ("fp32" or "int8"):
    `flash_bytes`, the file's weights, biases and quantization parameters (see the module's
    docstring), and `peak_activation_bytes`, the peak of live activations in that precision.
    Ints for one config, int64 arrays for a list or a population. `ValueError` for another
    precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r}; allowed: {', '.join(PRECISIONS)}")
    t, _, single = _tally(space, cfg)
    return _as_given({"flash_bytes": t.deployed_flash(precision),
                      "peak_activation_bytes": ACTIVATION_BYTES[precision] * t.peak}, single)
