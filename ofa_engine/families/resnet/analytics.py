"""Efficiency of ResNet subnets from their config alone, vectorised over many configs.

Notation: r the image size; the stem's convs run at h1 = ceil(r / 2), the max pool gives
ceil(h1 / 2), every later stride-2 layer halves (rounding up) again. A bottleneck block of input
c_in at size h, middle m, output c at size h' = ceil(h / stride): conv1 1x1 (c_in -> m at h),
conv2 3x3 (m -> m, stride, at h'), conv3 1x1 (m -> c at h'), and on a stage's first block the
downsample 1x1 (c_in -> c at h', after average pooling). Counted at batch 1.

- `macs`: multiply-accumulates of every conv and linear layer (the official counter's
  convention, `ofa.utils.pytorch_utils.count_net_flops`: BN, ReLU, pooling and additions are
  not counted).
- `params`: parameters of the extracted static subnet (conv weights, BN affine parameters,
  the classifier's weight and bias); the official `count_parameters` of `get_active_subnet()`.
- `peak_activation_bytes`: MCUNet-lab method with int8 activations (1 byte per element), as
  the MobileNetV3 family counts: for each conv / linear layer, input + output elements, plus
  what is held for later: a block's shortcut (its input, or the downsample's output, which is
  computed first as the official block does) while conv1..conv3 run. Pools and additions are
  taken in place.
- `flash_bytes`: int8 weights and biases: 1 byte per conv / linear weight plus 4 bytes (int32)
  per output-channel bias (BN folded into the preceding conv's bias).

What a deployed file stores, by precision (`deployment_bytes`):
- fp32: 4 bytes per weight and per (folded) bias;
- int8 (the QDQ files of `runtime.quantize`): `flash_bytes`, plus a float32 scale per output
  channel of every weight and of every int32 bias, plus a float32 scale and an int8 zero point
  per quantized activation tensor (`ACTIVATION_TENSORS`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ...space.interface import ACTIVATION_BYTES
from .space import ResNetConfig, ResNetSpace

__all__ = ["METRICS", "PRECISIONS", "analyze", "analyze_values", "deployment_bytes", "block_terms", "stem_terms",
           "head_terms", "SUM_TERMS", "stage_sizes"]

METRICS = ("macs", "params", "peak_activation_bytes", "flash_bytes")
PRECISIONS = ("fp32", "int8")
# Bytes of one quantized activation tensor's parameters: float32 scale + int8 zero point.
ACTIVATION_QPARAM_BYTES = 5
# Quantized activation tensors of an int8 file, besides one per conv / linear output (ReLU
# folds into it): the network's input, the stem's residual sum, a block's residual sum, the
# global mean. The max pool and the downsample's average pool keep their input's scale (none
# of their own: counted in files of `quantize_onnx`).
ACTIVATION_TENSORS = {"input": 1, "stem_residual": 1, "max_pool": 0, "block_sum": 1, "avg_pool": 0, "mean": 1}
# What `block_terms` / `stem_terms` / `head_terms` return besides the peak: summed over layers.
SUM_TERMS = ("macs", "params", "flash_bytes", "flash_bytes_fp32", "flash_bytes_int8", "weights", "out_channels",
             "layers")


def _ceil_half(h: Any) -> Any:
    return (h + 1) // 2


def stage_sizes(space: ResNetSpace, image_size: Any) -> list[Any]:
    """The input size of every stage's first block (after the stem and max pool), then the
    output size of the last stage: num_stages + 1 entries (int64 arrays like `image_size`)."""
    h = _ceil_half(_ceil_half(np.asarray(image_size, np.int64)))
    sizes = [h]
    for s in range(space.num_stages):
        h = _ceil_half(h) if space.stride(s) == 2 else h
        sizes.append(h)
    return sizes


class _Layers:
    """Sums of conv / linear layers (broadcast int64 arrays)."""

    def __init__(self) -> None:
        self.macs = self.weights = self.biases = self.bn = self.out_channels = self.layers = 0
        self.activations = 0
        self.peak = 0

    def layer(self, macs, weights, out_channels, *, bn=True, bias=False, live=0) -> None:
        """One conv (BN after it when `bn`) or linear layer (`bias`); `live`: the elements
        alive while it runs."""
        self.macs = self.macs + macs
        self.weights = self.weights + weights
        self.bn = self.bn + (out_channels if bn else 0)
        self.biases = self.biases + (out_channels if bias else 0)
        self.out_channels = self.out_channels + out_channels
        self.layers = self.layers + 1
        self.activations = self.activations + 1
        self.peak = np.maximum(self.peak, live)

    def tensors(self, count: int) -> None:
        self.activations = self.activations + count

    def result(self) -> dict[str, Any]:
        biases = self.biases + self.bn          # BN folds into a per-channel bias
        flash = self.weights + 4 * biases
        return {"macs": self.macs, "params": self.weights + self.biases + 2 * self.bn, "flash_bytes": flash,
                "flash_bytes_fp32": 4 * (self.weights + biases),
                "flash_bytes_int8": (flash + 4 * (self.out_channels + biases)
                                     + ACTIVATION_QPARAM_BYTES * self.activations),
                "weights": self.weights, "out_channels": self.out_channels, "layers": self.layers,
                "peak_activation_bytes": self.peak}


def block_terms(c_in: Any, mid: Any, c_out: Any, size: Any, stride: int, downsample: bool) -> dict[str, Any]:
    """Every metric of one bottleneck block (broadcastable int64 arrays): input `c_in` channels
    at `size`, `mid` middle and `c_out` output channels."""
    c_in, m, c, h = (np.asarray(v, np.int64) for v in (c_in, mid, c_out, size))
    out = _ceil_half(h) if stride == 2 else h
    t = _Layers()
    if downsample:
        pooled = c_in * out * out
        t.layer(out * out * c_in * c, c_in * c, c, live=pooled + c * out * out + (c_in * h * h if stride == 2 else 0))
        t.tensors(ACTIVATION_TENSORS["avg_pool"] if stride == 2 else 0)
        held = c * out * out                     # the downsampled shortcut, computed first
    else:
        held = 0                                 # the identity shortcut is conv1's input
    t.layer(h * h * c_in * m, c_in * m, m, live=(c_in + m) * h * h + held)
    shortcut = held if downsample else c_in * h * h
    t.layer(out * out * m * m * 9, m * m * 9, m, live=m * h * h + m * out * out + shortcut)
    t.layer(out * out * m * c, m * c, c, live=(m + c) * out * out + shortcut)
    t.tensors(ACTIVATION_TENSORS["block_sum"])
    return t.result()


def stem_terms(space: ResNetSpace, mid: Any, c_out: Any, kept: Any, image_size: Any) -> dict[str, Any]:
    """Every metric of the input stem (its residual conv counted where `kept`) and max pool."""
    mid, c, r = (np.asarray(v, np.int64) for v in (mid, c_out, image_size))
    kept = np.asarray(kept, bool)
    h = _ceil_half(r)
    first = _Layers()
    first.tensors(ACTIVATION_TENSORS["input"] + ACTIVATION_TENSORS["max_pool"])
    first.layer(h * h * space.in_channels * 9 * mid, space.in_channels * 9 * mid, mid,
                live=space.in_channels * r * r + mid * h * h)
    first.layer(h * h * mid * 9 * c, mid * 9 * c, c, live=(mid + c) * h * h)
    residual = _Layers()
    residual.layer(h * h * mid * mid * 9, mid * mid * 9, mid, live=2 * mid * h * h)
    residual.tensors(ACTIVATION_TENSORS["stem_residual"])
    a, b = first.result(), residual.result()
    out = {name: a[name] + np.where(kept, b[name], 0) for name in SUM_TERMS}
    out["peak_activation_bytes"] = np.maximum(a["peak_activation_bytes"], np.where(kept, b["peak_activation_bytes"], 0))
    return out


def head_terms(space: ResNetSpace, c_in: Any) -> dict[str, Any]:
    """Every metric of the global mean and the classifier on `c_in` channels."""
    c, k = np.asarray(c_in, np.int64), space.num_classes
    t = _Layers()
    t.tensors(ACTIVATION_TENSORS["mean"])
    t.layer(c * k, c * k, k, bn=False, bias=True, live=c + k)
    return t.result()


def analyze_values(space: ResNetSpace, v: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every metric (`METRICS` and the deployed `flash_bytes_fp32` / `flash_bytes_int8`, plus
    `weights`, `out_channels`, `layers`) of configs given as `ResNetGenome.values` arrays,
    int64 (N,)."""
    w, e_index, active = v["w"], v["e_index"], v["active"]
    stem_mid = np.array(space.stem_mid_channels, np.int64)[w[:, 0]]
    stem_out = np.array(space.stem_out_channels, np.int64)[w[:, 1]]
    total = stem_terms(space, stem_mid, stem_out, v["stem_kept"], v["image_size"])
    total = {name: np.asarray(total[name], np.int64) for name in total}
    sizes = stage_sizes(space, v["image_size"])
    c_in = stem_out
    slot = 0
    for s, slots in enumerate(space.stage_slots):
        c_out = np.array(space.stage_out_channels[s], np.int64)[w[:, 2 + s]]
        for i in range(slots):
            mid = space.middle_table[s][w[:, 2 + s], e_index[:, slot]]
            terms = block_terms(c_in if i == 0 else c_out, mid, c_out, sizes[s] if i == 0 else sizes[s + 1],
                                space.stride(s) if i == 0 else 1, i == 0)
            keep = active[:, slot]
            for name in SUM_TERMS:
                total[name] = total[name] + np.where(keep, terms[name], 0)
            total["peak_activation_bytes"] = np.maximum(total["peak_activation_bytes"],
                                                        np.where(keep, terms["peak_activation_bytes"], 0))
            slot += 1
        c_in = c_out
    head = head_terms(space, c_in)
    for name in SUM_TERMS:
        total[name] = total[name] + head[name]
    total["peak_activation_bytes"] = np.maximum(total["peak_activation_bytes"], head["peak_activation_bytes"])
    return {name: np.asarray(value, np.int64) for name, value in total.items()}


def tally(space: ResNetSpace | str, cfg: Any) -> tuple[dict[str, np.ndarray], bool]:
    """(metrics, one config given): one config by the block-by-block walk, a list or a
    population from the exact tables (`tables`: equal numbers, a gather instead of a walk)."""
    space = ResNetSpace.preset(space) if isinstance(space, str) else space
    single = isinstance(cfg, (ResNetConfig, Mapping))
    genome = space.genome
    genes = genome.from_configs(cfg)
    if single:
        return analyze_values(space, genome.values(genes)), single
    from .tables import efficiency_tables   # it builds on this module's terms
    return efficiency_tables(space).compute(genes), single


def _as_given(result: dict[str, np.ndarray], single: bool) -> dict[str, Any]:
    return {key: int(value[0]) for key, value in result.items()} if single else result


def analyze(space: ResNetSpace | str, cfg: ResNetConfig | Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    """`macs`, `params`, `peak_activation_bytes` and `flash_bytes` of one config (ints) or of a
    list of configs or a population (int64 arrays), without building any network."""
    out, single = tally(space, cfg)
    return _as_given({name: out[name] for name in METRICS}, single)


def deployment_bytes(space: ResNetSpace | str, cfg: ResNetConfig | Mapping[str, Any] | Sequence[Any],
                     precision: str) -> dict[str, Any]:
    """What a device stores and holds for a file of `precision` ("fp32" or "int8"):
    `flash_bytes` (see the module's docstring) and `peak_activation_bytes` in that precision.
    Ints for one config, int64 arrays for a list or a population. `ValueError` for another
    precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r}; allowed: {', '.join(PRECISIONS)}")
    out, single = tally(space, cfg)
    return _as_given({"flash_bytes": out[f"flash_bytes_{precision}"],
                      "peak_activation_bytes": ACTIVATION_BYTES[precision] * out["peak_activation_bytes"]}, single)
