"""The building blocks of the notes as torch modules, with closed-form costs and measured latency.

Every block maps an input of shape (batch, C, H, W) to (batch, C_out, H, W) (stride 1, "same"
padding). The attention block flattens the H*W positions into N = H*W tokens of dimension C
and folds its output back, so all blocks take the same input and can sit in one table; a token
sequence of length N is the input (C, 1, N). The primitive `fc` takes a vector: input (C, 1, 1).

Cost conventions (`block_cost`, checked against forward-hook counting in the tests):
- `macs`: multiply-accumulates of every conv and linear layer and of the two attention matmuls
  (Q K^T and A V), batch 1. BN, activations, softmax, shuffle and additions are not counted.
- `params`: all parameters, BN affine parameters included (running statistics are buffers).
- `inference_peak_bytes`: sequential execution; for each conv / linear / matmul / softmax layer
  the elements of its input(s) + output; in a block with a residual connection, layers after the
  block's first one also hold the block input (the rule of the MobileNetV3 family's closed-form
  analytics); the maximum over layers, times `dtype_bytes` (4 = float32; 1 = int8). Tensors that merely wait for a later
  layer (V while Q K^T runs) are not counted, so this is a lower bound of a real runtime's peak.
- `training_activation_bytes`: the tensors saved for backward, approximated as the inputs of
  every conv / linear / BN / activation / softmax / matmul layer (the attention matrix appears
  twice: softmax input and A V input), batch 1, times `dtype_bytes`.

Blocks are created through one factory, `create_block(name, in_channels, **params)`; `BLOCKS`
lists the registered names. Residual connections are added only when in and out channels are
equal (no projection shortcut).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..runtime.export import EXPORT_LOCK
from ..runtime.ort import make_session, time_session

__all__ = ["BlockCost", "BLOCKS", "PRIMITIVES", "COMPARED_BLOCKS", "create_block", "block_cost",
           "count_with_hooks", "export_block_onnx", "measure_onnx_latency", "compare_blocks", "attention_token_sweep",
           "training_activation_ranking", "bottleneck_mac_saving", "shuffle_group_mixing",
           "MatMul", "ChannelShuffle", "MAX_INPUT_ELEMENTS", "MAX_MEASURED_PEAK_BYTES"]

Shape = Sequence[int]

# What a block may cost before we build, run or measure it (closed-form costs need no memory
# and have no cap). A 224x224 attention input would need ~40 GB for its N x N attention.
MAX_INPUT_ELEMENTS = 1 << 23             # C x H x W of an input that is run: 32 MiB of float32
MAX_MEASURED_PEAK_BYTES = 512 << 20      # float32 inference peak of a block that is run (closed form)


@dataclass(frozen=True)
class BlockCost:
    """Cost of one block at batch 1; see the module docstring for the conventions."""
    macs: int
    params: int
    inference_peak_bytes: int
    training_activation_bytes: int


# ---------------------------------------------------------------------------------------------
# Validation


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} = {value!r}; allowed: a positive integer")
    return int(value)


def _divides(name: str, value: int, what: str, total: int) -> None:
    if total % value:
        allowed = [d for d in range(1, total + 1) if total % d == 0]
        raise ValueError(f"{name} = {value}: {what} = {total} must be divisible by {name}; "
                         f"allowed: {allowed}")


def _check_shape(input_shape: Shape) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"input_shape = {tuple(input_shape)!r}; allowed: (C, H, W) of positive ints")
    c, h, w = (_positive(n, v) for n, v in zip(("C", "H", "W"), input_shape))
    return c, h, w


def _check_runnable(input_shape: Shape, peak_bytes: int | None = None) -> None:
    """`ValueError` naming the cap when running a block on `input_shape` would allocate too much."""
    c, h, w = _check_shape(input_shape)
    if c * h * w > MAX_INPUT_ELEMENTS:
        raise ValueError(f"input C x H x W = {c} x {h} x {w} = {c * h * w:,} values; allowed: at most "
                         f"{MAX_INPUT_ELEMENTS:,} (MAX_INPUT_ELEMENTS) for a block that is run or measured")
    if peak_bytes is not None and peak_bytes > MAX_MEASURED_PEAK_BYTES:
        raise ValueError(f"input {c} x {h} x {w}: the block's inference peak is {peak_bytes / 2**20:,.0f} MiB; "
                         f"allowed: at most {MAX_MEASURED_PEAK_BYTES / 2**20:,.0f} MiB "
                         f"(MAX_MEASURED_PEAK_BYTES) to measure latency; use a smaller input or turn "
                         f"latency off (the closed-form costs have no limit)")


# ---------------------------------------------------------------------------------------------
# Modules


class MatMul(nn.Module):
    """`a @ b` as a module, so that hooks see the attention matmuls."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: (g, C/g) -> transpose -> (C/g, g)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.reshape(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def _conv_bn(c_in: int, c_out: int, k: int, groups: int = 1, act: type[nn.Module] | None = nn.ReLU
             ) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out)]
    return layers + ([act()] if act else [])


class _Block(nn.Module):
    """`body`, plus the block input when `residual`, then `post` (e.g. the final ReLU)."""

    def __init__(self, body: list[nn.Module], residual: bool, post: list[nn.Module] = ()):
        super().__init__()
        self.body = nn.Sequential(*body)
        self.residual = residual
        self.post = nn.Sequential(*post)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.post(y + x if self.residual else y)


class _Primitive(nn.Module):
    def __init__(self, layer: nn.Module, flatten: bool = False):
        super().__init__()
        self.layer, self.flatten, self.residual = layer, flatten, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(1) if self.flatten else x)


class MultiHeadSelfAttention(nn.Module):
    """Q, K, V linear projections, scaled dot-product attention per head, output projection,
    over the H*W positions of a (B, C, H, W) input taken as tokens of dimension C."""

    def __init__(self, dim: int, heads: int, out_dim: int):
        super().__init__()
        self.heads, self.residual = heads, False
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.scores, self.mix = MatMul(), MatMul()
        self.softmax = nn.Softmax(dim=-1)
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)                      # (B, N, C)

        def split(t: torch.Tensor) -> torch.Tensor:                # (B, heads, N, C/heads)
            return t.reshape(b, h * w, self.heads, c // self.heads).transpose(1, 2)

        q, k, v = split(self.q(tokens)), split(self.k(tokens)), split(self.v(tokens))
        attn = self.softmax(self.scores(q * (c // self.heads) ** -0.5, k.transpose(-2, -1)))
        out = self.mix(attn, v).transpose(1, 2).reshape(b, h * w, c)
        return self.proj(out).transpose(1, 2).reshape(b, -1, h, w)


# ---------------------------------------------------------------------------------------------
# Closed forms: a ledger of (kind, macs, params, input elements, output elements) per layer,
# written from the block parameters alone; no module is built.


@dataclass(frozen=True)
class _Layer:
    kind: str          # "conv", "linear", "matmul", "softmax", "bn", "act"
    macs: int
    params: int
    inputs: int
    outputs: int


_PEAK_KINDS = {"conv", "linear", "matmul", "softmax"}


def _conv(c_in: int, c_out: int, k: int, s: int, groups: int = 1, bias: bool = False) -> _Layer:
    w = c_out * (c_in // groups) * k * k
    return _Layer("conv", s * w, w + (c_out if bias else 0), c_in * s, c_out * s)


def _conv_bn_act(c_in: int, c_out: int, k: int, s: int, groups: int = 1, act: bool = True) -> list[_Layer]:
    layers = [_conv(c_in, c_out, k, s, groups), _Layer("bn", 0, 2 * c_out, c_out * s, c_out * s)]
    return layers + ([_Layer("act", 0, 0, c_out * s, c_out * s)] if act else [])


def _reduce(layers: list[_Layer], block_input: int, residual: bool, dtype_bytes: int) -> BlockCost:
    peak, first = 0, True
    for layer in layers:
        if layer.kind in _PEAK_KINDS:
            held = block_input if residual and not first else 0
            peak, first = max(peak, layer.inputs + layer.outputs + held), False
    return BlockCost(macs=sum(l.macs for l in layers), params=sum(l.params for l in layers),
                     inference_peak_bytes=peak * dtype_bytes,
                     training_activation_bytes=sum(l.inputs for l in layers) * dtype_bytes)


# ---------------------------------------------------------------------------------------------
# Registry: name -> (module builder, ledger builder, default params). Both take
# (c_in, c_out, **params); ledgers also take the spatial size s = H*W.


@dataclass(frozen=True)
class _Spec:
    build: Callable[..., nn.Module]
    ledger: Callable[..., tuple[list[_Layer], bool]]
    defaults: dict[str, int]
    check: Callable[..., None] = lambda c_in, c_out, **p: None
    description: str = ""


def _check_groups(c_in: int, c_out: int, groups: int, **_: int) -> None:
    _positive("groups", groups)
    _divides("groups", groups, "in_channels", c_in)
    _divides("groups", groups, "out_channels", c_out)


def _check_bottleneck(c_in: int, c_out: int, reduction: int, groups: int = 1, **_: int) -> None:
    _positive("reduction", reduction)
    _divides("reduction", reduction, "in_channels", c_in)
    _positive("groups", groups)
    _divides("groups", groups, "bottleneck channels (in_channels // reduction)", c_in // reduction)


def _check_shuffle(c_in: int, c_out: int, groups: int, reduction: int, **_: int) -> None:
    _positive("reduction", reduction)
    _divides("reduction", reduction, "out_channels", c_out)
    _positive("groups", groups)
    _divides("groups", groups, "in_channels", c_in)
    _divides("groups", groups, "bottleneck channels (out_channels // reduction)", c_out // reduction)


def _check_depthwise(c_in: int, c_out: int, **_: int) -> None:
    if c_out != c_in:
        raise ValueError(f"out_channels = {c_out}; allowed for a depthwise conv: {c_in} (= in_channels)")


def _bottleneck_build(c_in, c_out, reduction, groups=1):
    mid = c_in // reduction
    return _Block(_conv_bn(c_in, mid, 1) + _conv_bn(mid, mid, 3, groups) + _conv_bn(mid, c_out, 1, act=None),
                  residual=c_in == c_out, post=[nn.ReLU()])


def _bottleneck_ledger(c_in, c_out, s, reduction, groups=1):
    mid = c_in // reduction
    layers = (_conv_bn_act(c_in, mid, 1, s) + _conv_bn_act(mid, mid, 3, s, groups)
              + _conv_bn_act(mid, c_out, 1, s, act=False) + [_Layer("act", 0, 0, c_out * s, c_out * s)])
    return layers, c_in == c_out


def _basic_build(c_in, c_out):
    return _Block(_conv_bn(c_in, c_in, 3) + _conv_bn(c_in, c_out, 3, act=None),
                  residual=c_in == c_out, post=[nn.ReLU()])


def _basic_ledger(c_in, c_out, s):
    layers = (_conv_bn_act(c_in, c_in, 3, s) + _conv_bn_act(c_in, c_out, 3, s, act=False)
              + [_Layer("act", 0, 0, c_out * s, c_out * s)])
    return layers, c_in == c_out


def _inverted_build(c_in, c_out, expansion):
    mid = c_in * expansion
    return _Block(_conv_bn(c_in, mid, 1, act=nn.ReLU6) + _conv_bn(mid, mid, 3, mid, act=nn.ReLU6)
                  + _conv_bn(mid, c_out, 1, act=None), residual=c_in == c_out)


def _inverted_ledger(c_in, c_out, s, expansion):
    mid = c_in * expansion
    return (_conv_bn_act(c_in, mid, 1, s) + _conv_bn_act(mid, mid, 3, s, mid)
            + _conv_bn_act(mid, c_out, 1, s, act=False)), c_in == c_out


def _shuffle_build(c_in, c_out, groups, reduction):
    mid = c_out // reduction
    return _Block(_conv_bn(c_in, mid, 1, groups) + [ChannelShuffle(groups)]
                  + _conv_bn(mid, mid, 3, mid, act=None) + _conv_bn(mid, c_out, 1, groups, act=None),
                  residual=c_in == c_out, post=[nn.ReLU()])


def _shuffle_ledger(c_in, c_out, s, groups, reduction):
    mid = c_out // reduction
    layers = (_conv_bn_act(c_in, mid, 1, s, groups) + _conv_bn_act(mid, mid, 3, s, mid, act=False)
              + _conv_bn_act(mid, c_out, 1, s, groups, act=False)
              + [_Layer("act", 0, 0, c_out * s, c_out * s)])
    return layers, c_in == c_out


def _attention_ledger(c_in, c_out, s, heads):
    n, c = s, c_in

    def linear(i, o):
        return _Layer("linear", n * i * o, i * o + o, n * i, n * o)

    scores = heads * n * n
    return ([linear(c, c)] * 3 + [_Layer("matmul", n * n * c, 0, 2 * n * c, scores),
                                  _Layer("softmax", 0, 0, scores, scores),
                                  _Layer("matmul", n * n * c, 0, scores + n * c, n * c),
                                  linear(c, c_out)]), False


def _fc_ledger(c_in, c_out, s):
    if s != 1:
        raise ValueError(f"input_shape H*W = {s} for block 'fc'; allowed: (C, 1, 1) (a vector)")
    return [_Layer("linear", c_in * c_out, c_in * c_out + c_out, c_in, c_out)], False


def _check_heads(c_in, c_out, heads):
    _positive("heads", heads)
    _divides("heads", heads, "in_channels", c_in)


BLOCKS: dict[str, _Spec] = {
    # primitives
    "fc": _Spec(lambda ci, co: _Primitive(nn.Linear(ci, co), flatten=True),
                _fc_ledger, {}, description="fully connected on a vector: input (C, 1, 1)"),
    "conv": _Spec(lambda ci, co, kernel_size: _Primitive(nn.Conv2d(ci, co, kernel_size, padding=kernel_size // 2)),
                  lambda ci, co, s, kernel_size: ([_conv(ci, co, kernel_size, s, bias=True)], False),
                  {"kernel_size": 3}, description="k x k conv"),
    "group_conv": _Spec(lambda ci, co, kernel_size, groups:
                        _Primitive(nn.Conv2d(ci, co, kernel_size, padding=kernel_size // 2, groups=groups)),
                        lambda ci, co, s, kernel_size, groups:
                        ([_conv(ci, co, kernel_size, s, groups, bias=True)], False),
                        {"kernel_size": 3, "groups": 4}, _check_groups, "k x k grouped conv"),
    "depthwise_conv": _Spec(lambda ci, co, kernel_size:
                            _Primitive(nn.Conv2d(ci, ci, kernel_size, padding=kernel_size // 2, groups=ci)),
                            lambda ci, co, s, kernel_size: ([_conv(ci, ci, kernel_size, s, ci, bias=True)], False),
                            {"kernel_size": 3}, _check_depthwise, "k x k depthwise conv"),
    "pointwise_conv": _Spec(lambda ci, co: _Primitive(nn.Conv2d(ci, co, 1)),
                            lambda ci, co, s: ([_conv(ci, co, 1, s, bias=True)], False), {}, description="1x1 conv"),
    # blocks
    "resnet_basic": _Spec(_basic_build, _basic_ledger, {},
                          description="plain 3x3-3x3 block at full width (reference for the bottleneck)"),
    "resnet_bottleneck": _Spec(_bottleneck_build, _bottleneck_ledger, {"reduction": 4}, _check_bottleneck,
                               "1x1 reduce, 3x3, 1x1 expand, residual"),
    "resnext": _Spec(_bottleneck_build, _bottleneck_ledger, {"reduction": 2, "groups": 8}, _check_bottleneck,
                     "1x1 reduce, 3x3 grouped (groups = cardinality), 1x1 expand, residual"),
    "depthwise_separable": _Spec(lambda ci, co: _Block(_conv_bn(ci, ci, 3, ci) + _conv_bn(ci, co, 1), False),
                                 lambda ci, co, s: (_conv_bn_act(ci, ci, 3, s, ci) + _conv_bn_act(ci, co, 1, s), False),
                                 {}, description="MobileNet: depthwise 3x3, 1x1"),
    "inverted_bottleneck": _Spec(_inverted_build, _inverted_ledger, {"expansion": 6},
                                 lambda ci, co, expansion: _positive("expansion", expansion),
                                 "MobileNetV2: 1x1 expand, depthwise 3x3, 1x1 project, residual"),
    "shufflenet": _Spec(_shuffle_build, _shuffle_ledger, {"groups": 4, "reduction": 4}, _check_shuffle,
                        "1x1 group conv, shuffle, depthwise 3x3, 1x1 group conv, residual"),
    "attention": _Spec(lambda ci, co, heads: MultiHeadSelfAttention(ci, heads, co), _attention_ledger,
                       {"heads": 4}, _check_heads, "multi-head self-attention over H*W tokens"),
}
PRIMITIVES = ("fc", "conv", "group_conv", "depthwise_conv", "pointwise_conv")
COMPARED_BLOCKS = ("resnet_bottleneck", "resnext", "depthwise_separable", "inverted_bottleneck",
                   "shufflenet", "attention")


def _resolve(name: str, in_channels: int, out_channels: int | None, params: dict[str, Any]
             ) -> tuple[_Spec, int, int, dict[str, int]]:
    if name not in BLOCKS:
        raise ValueError(f"block = {name!r}; allowed: {sorted(BLOCKS)}")
    spec = BLOCKS[name]
    unknown = set(params) - set(spec.defaults)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for block {name!r}; "
                         f"allowed: {sorted(spec.defaults)}")
    c_in = _positive("in_channels", in_channels)
    c_out = c_in if out_channels is None else _positive("out_channels", out_channels)
    merged = {**spec.defaults, **params}
    for key, value in merged.items():
        _positive(key, value)
    spec.check(c_in, c_out, **merged)
    return spec, c_in, c_out, merged


def create_block(name: str, in_channels: int, out_channels: int | None = None, **params: int) -> nn.Module:
    """A freshly initialised block; `params` override the block's defaults (`BLOCKS[name].defaults`).

    Raises `ValueError` naming the parameter and the allowed values for an unknown block, a
    non-positive size or channels not divisible by groups / heads / reduction.
    """
    spec, c_in, c_out, merged = _resolve(name, in_channels, out_channels, params)
    return spec.build(c_in, c_out, **merged)


def block_cost(name: str, input_shape: Shape, out_channels: int | None = None, *, dtype_bytes: int = 4,
               **params: int) -> BlockCost:
    """Closed-form cost of block `name` on one input of shape (C, H, W); no module is built."""
    c, h, w = _check_shape(input_shape)
    _positive("dtype_bytes", dtype_bytes)
    spec, c_in, c_out, merged = _resolve(name, c, out_channels, params)
    layers, residual = spec.ledger(c_in, c_out, h * w, **merged)
    return _reduce(layers, c * h * w, residual, dtype_bytes)


# ---------------------------------------------------------------------------------------------
# Counting on the module itself (the tests compare it with `block_cost`)

_PEAK_TYPES = (nn.Conv2d, nn.Linear, MatMul, nn.Softmax)
_TRAIN_TYPES = _PEAK_TYPES + (nn.BatchNorm2d, nn.ReLU, nn.ReLU6)


def count_with_hooks(module: nn.Module, input_shape: Shape, *, dtype_bytes: int = 4) -> BlockCost:
    """The same four numbers as `block_cost`, counted by forward hooks on a batch-1 forward pass."""
    _check_runnable(input_shape)
    macs = peak = saved = 0
    first = True
    block_input = int(np.prod(input_shape))
    residual = bool(getattr(module, "residual", False))

    def hook(layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs, peak, saved, first
        in_elems = sum(t.numel() for t in inputs)
        saved += in_elems
        if isinstance(layer, nn.Conv2d):
            macs += output.numel() * layer.weight[0].numel()
        elif isinstance(layer, nn.Linear):
            macs += output.numel() * layer.in_features
        elif isinstance(layer, MatMul):
            macs += output.numel() * inputs[0].shape[-1]
        if isinstance(layer, _PEAK_TYPES):
            held = block_input if residual and not first else 0
            peak, first = max(peak, in_elems + output.numel() + held), False

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, _TRAIN_TYPES)]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(1, *input_shape))
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in module.parameters())
    return BlockCost(macs, params, peak * dtype_bytes, saved * dtype_bytes)


# ---------------------------------------------------------------------------------------------
# ONNX Runtime latency


def export_block_onnx(module: nn.Module, input_shape: Shape, path: str | os.PathLike, opset: int = 17) -> None:
    """Export `module` in eval mode for a batch-1 input of `input_shape` (TorchScript exporter)."""
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with EXPORT_LOCK:
                torch.onnx.export(module, (torch.zeros(1, *input_shape),), os.fspath(path), dynamo=False,
                                  opset_version=opset, input_names=["input"], output_names=["output"])
    finally:
        module.train(was_training)


def measure_onnx_latency(module: nn.Module, input_shape: Shape, *, runs: int = 30, warmup: int = 5,
                         seed: int = 0) -> dict[str, float]:
    """Median and inter-quartile range (ms) of `runs` timed onnxruntime runs at batch 1, after
    `warmup` untimed runs; the block is exported to a temporary file (opset 17)."""
    _positive("runs", runs)
    _check_runnable(input_shape)
    x = np.random.default_rng(seed).standard_normal((1, *input_shape)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "block.onnx")
        export_block_onnx(module, input_shape, path)
        # One thread: latency of a single core, comparable across blocks and not disturbed by a busy CPU.
        times = time_session(make_session(path, threads=1), {"input": x}, warmup, runs).tolist()
    q1, _, q3 = statistics.quantiles(times, n=4) if runs > 1 else (times[0],) * 3
    return {"median_ms": statistics.median(times), "iqr_ms": q3 - q1}


# ---------------------------------------------------------------------------------------------
# Tables and the notes' claims


def compare_blocks(input_shape: Shape, channels: int | None = None, *,
                   blocks: Sequence[str] = COMPARED_BLOCKS, params: dict[str, dict[str, int]] | None = None,
                   measure: bool = True, runs: int = 30, warmup: int = 5, seed: int = 0) -> list[dict[str, Any]]:
    """One row per block for an input (C, H, W) and `channels` output channels (default C):
    `macs`, `params`, `inference_peak_bytes` (float32), `inference_peak_bytes_int8`,
    `training_activation_bytes` (float32), and onnxruntime `latency_ms` / `latency_iqr_ms`
    (None when `measure` is False). `params` maps a block name to parameter overrides."""
    _check_shape(input_shape)
    params = params or {}
    rows = []
    for name in blocks:
        overrides = params.get(name, {})
        cost = block_cost(name, input_shape, channels, **overrides)
        row = {"block": name, **dataclasses.asdict(cost),
               "inference_peak_bytes_int8": block_cost(name, input_shape, channels, dtype_bytes=1,
                                                       **overrides).inference_peak_bytes,
               "latency_ms": None, "latency_iqr_ms": None}
        rows.append(row)
    if measure:
        for row in rows:   # every block checked before any is run
            _check_runnable(input_shape, row["inference_peak_bytes"])
        for row in rows:
            torch.manual_seed(seed)
            module = create_block(row["block"], input_shape[0], channels, **params.get(row["block"], {}))
            latency = measure_onnx_latency(module, input_shape, runs=runs, warmup=warmup, seed=seed)
            row["latency_ms"], row["latency_iqr_ms"] = latency["median_ms"], latency["iqr_ms"]
    return rows


def attention_token_sweep(tokens_list: Sequence[int], dim: int, heads: int, *, measure: bool = False,
                          runs: int = 20, warmup: int = 3) -> list[dict[str, Any]]:
    """Attention cost for each token count N (input (dim, 1, N)): total MACs, the attention
    matmuls' share (2 N^2 dim), activation memory, and latency when `measure`."""
    rows = []
    for n in tokens_list:
        n = _positive("tokens", n)
        cost = block_cost("attention", (dim, 1, n), heads=heads)
        row = {"tokens": n, **dataclasses.asdict(cost), "attention_matmul_macs": 2 * n * n * dim,
               "latency_ms": None, "latency_iqr_ms": None}
        if measure:
            _check_runnable((dim, 1, n), cost.inference_peak_bytes)
            torch.manual_seed(0)
            latency = measure_onnx_latency(create_block("attention", dim, heads=heads), (dim, 1, n),
                                           runs=runs, warmup=warmup)
            row["latency_ms"], row["latency_iqr_ms"] = latency["median_ms"], latency["iqr_ms"]
        rows.append(row)
    return rows


def training_activation_ranking(input_shape: Shape, blocks: Sequence[str] = COMPARED_BLOCKS
                                ) -> list[tuple[str, int]]:
    """(block, training activation bytes) at equal in/out width, largest first."""
    rows = [(name, block_cost(name, input_shape).training_activation_bytes) for name in blocks]
    return sorted(rows, key=lambda r: -r[1])


def bottleneck_mac_saving(input_shape: Shape, reduction: int = 4) -> dict[str, float]:
    """MACs of the ResNet bottleneck vs a plain 3x3-3x3 block at full width, same input."""
    bottleneck = block_cost("resnet_bottleneck", input_shape, reduction=reduction).macs
    plain = block_cost("resnet_basic", input_shape).macs
    return {"bottleneck_macs": bottleneck, "plain_macs": plain, "ratio": bottleneck / plain}


def shuffle_group_mixing(channels: int, groups: int) -> list[set[int]]:
    """For each output group of `ChannelShuffle(groups)`, the set of input groups its channels
    come from, found by running the shuffle on channels labelled with their group."""
    _positive("channels", channels)
    _positive("groups", groups)
    _divides("groups", groups, "channels", channels)
    per_group = channels // groups
    labels = torch.arange(channels).div(per_group, rounding_mode="floor").float().reshape(1, channels, 1, 1)
    shuffled = ChannelShuffle(groups)(labels).flatten().long().tolist()
    return [set(shuffled[g * per_group:(g + 1) * per_group]) for g in range(groups)]
