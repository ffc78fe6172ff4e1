"""Efficiency of ViT subnets from their config alone, vectorised over many configs.

Notation: T tokens (the patch grid, no class token), c the embedding width, h a block's
heads, a = h x head_dim its attention width, m its MLP hidden units, p the patch size, K the
classes. Counted at batch 1.

- `macs`: multiply-accumulates of every convolution and matrix product: the patch
  embedding T c C_in p^2; per block the qkv projection 3 T c a, attention's quadratic terms
  q k^T and attn v, h T^2 head_dim each, the output projection T a c, the MLP 2 T c m; the
  classifier c K. LayerNorm, softmax, GELU, the scaling of q, additions and the mean are not
  counted (the CNN's convention), which is what `static.count_macs` (torch's FlopCounterMode
  on the extracted module) counts; the tests check the two agree.
- `params`: parameters of the extracted module: patch conv (weights and bias), position
  embedding T c, per block two LayerNorms (2 c each), qkv and projection (weights and
  biases), fc1 and fc2 (weights and biases); the final LayerNorm and the classifier.
- `peak_activation_bytes`: values live at once (1 byte each in int8), MCUNet-lab style for
  each conv, matrix product and LayerNorm: its inputs and outputs plus what is held for later
  (a block's input until its residual addition, v from the qkv projection until attn v).
  Element-wise ops (GELU, softmax, the scaling, residual additions) are taken in place. Per
  block the peak is max(2Tc + 3Ta, Tc + 3Ta + hT^2, 2Tc + Tm): at the qkv projection, at
  q k^T (q, k, v, the scores and the block input), at fc1 / fc2.
- `flash_bytes`: the quantized parameters of the int8 file that `runtime.quantize.quantize_onnx`
  writes of the TorchScript export at opset 17 (ONNX Runtime's QDQ quantizer: `nn.Linear` on
  tokens is exported as MatMul + Add): 1 byte per weight, per MatMul bias, per LayerNorm
  weight and per position-embedding value, 4 bytes (int32) per LayerNorm bias and per bias of
  the patch conv and the classifier, and the 3 scalar constants the quantizer quantizes (q's
  scaling, GELU's 0.5 and 1; the exporter writes each once).

What a deployed file stores, by precision (`deployment_bytes`):
- fp32: 4 bytes per parameter (tests: the float ONNX file's initializers; the exporter stores
  bit-identical tensors once, which only untrained weights have);
- int8: `flash_bytes`, plus a float32 scale per output channel of every weight (and of the
  conv's and the classifier's int32 biases), one per parameter quantized per tensor (MatMul
  biases, LayerNorm weights and biases, the position embedding, the 3 constants), an int8
  zero point per tensor quantized to int8 (the file drops the zero points that are 0: it may
  be up to 6 bytes per block + 5 smaller) and a float32 scale + int8 zero point per quantized
  activation tensor (20 per block, 6 outside). Tests: equal to `runtime.quantize.weight_bytes`
  of such files within that bound.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ...space.interface import ACTIVATION_BYTES
from .space import ViTConfig, ViTSpace

__all__ = ["METRICS", "PRECISIONS", "analyze", "analyze_values", "deployment_bytes", "block_terms", "fixed_terms"]

METRICS = ("macs", "params", "peak_activation_bytes", "flash_bytes")
PRECISIONS = ("fp32", "int8")
# Bytes of one quantized activation tensor's parameters: float32 scale + int8 zero point.
ACTIVATION_QPARAM_BYTES = 5
# Quantized activation tensors of an int8 file (counted in files of `quantize_onnx`).
FIXED_ACTIVATION_TENSORS, BLOCK_ACTIVATION_TENSORS = 6, 20
# Scalar constants the quantizer quantizes: q's scaling, GELU's 0.5 and 1 (stored once).
QUANTIZED_CONSTANTS = 3
# Sums over the blocks, and the maximum (peak); `block_terms` / `fixed_terms` give all of them.
SUM_TERMS = ("macs", "params", "flash_bytes", "flash_bytes_fp32", "flash_bytes_int8")


def _stored(params, int8_values, int32_values, scales, int8_zero_points, activations) -> dict[str, Any]:
    """Flash of a group of layers: parameters, the int8 file's quantized values (`flash_bytes`),
    the fp32 file and the whole int8 file (see the module's docstring)."""
    flash = int8_values + 4 * int32_values
    return {"params": params, "flash_bytes": flash, "flash_bytes_fp32": 4 * params,
            "flash_bytes_int8": flash + 4 * scales + int8_zero_points + ACTIVATION_QPARAM_BYTES * activations}


def block_terms(space: ViTSpace, c: Any, heads: Any, hidden: Any) -> dict[str, Any]:
    """Every metric of one encoder block of width `c` with `heads` heads and `hidden` MLP units
    (numbers or broadcastable int64 arrays): the `SUM_TERMS` and `peak_activation_bytes`."""
    c, h, m = (np.asarray(v, np.int64) for v in (c, heads, hidden))
    t, d = space.num_patches, space.head_dim
    a = h * d
    weights = 4 * a * c + 2 * c * m              # qkv, proj, fc1, fc2
    outputs = 3 * a + 2 * c + m                  # their output channels = their biases
    # 4 MatMul biases and 2 LayerNorm weights int8 per tensor, 2 LayerNorm biases int32 per tensor
    out = _stored(weights + outputs + 4 * c, weights + outputs + 2 * c, 2 * c, outputs + 8, 6,
                  BLOCK_ACTIVATION_TENSORS)
    out["macs"] = 3 * t * c * a + 2 * h * t * t * d + t * a * c + 2 * t * c * m
    out["peak_activation_bytes"] = np.maximum(np.maximum(2 * t * c + 3 * t * a, t * c + 3 * t * a + h * t * t),
                                              2 * t * c + t * m)
    return out


def fixed_terms(space: ViTSpace, c: Any) -> dict[str, Any]:
    """Every metric of the layers outside the blocks (patch embedding, position embedding,
    final LayerNorm, mean, classifier) at width `c`."""
    c = np.asarray(c, np.int64)
    t, k, p2, cin = space.num_patches, space.num_classes, space.patch_size ** 2, space.in_channels
    weights = c * cin * p2 + c * k
    # int8: conv and classifier weights (per channel), position embedding, final LayerNorm
    # weight, constants (per tensor); int32: their biases (per channel), the LayerNorm bias.
    out = _stored(weights + c + k + t * c + 2 * c, weights + t * c + c + QUANTIZED_CONSTANTS, c + k + c,
                  2 * (c + k) + 3 + QUANTIZED_CONSTANTS, 2 + QUANTIZED_CONSTANTS, FIXED_ACTIVATION_TENSORS)
    out["macs"] = t * c * cin * p2 + c * k
    pixels = cin * space.image_size ** 2
    out["peak_activation_bytes"] = np.maximum(np.maximum(pixels + t * c, 2 * t * c), c + k)
    return out


def analyze_values(space: ViTSpace, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every metric (`METRICS` and the deployed `flash_bytes_fp32` / `flash_bytes_int8`) of
    configs given as `ViTGenome.values` arrays, int64 (N,)."""
    c = values["embed_dim"][:, None]
    blocks = block_terms(space, c, values["num_heads"], values["mlp_hidden"])
    fixed = fixed_terms(space, values["embed_dim"])
    active = values["active"]
    out = {name: fixed[name] + np.where(active, blocks[name], 0).sum(1) for name in SUM_TERMS}
    out["peak_activation_bytes"] = np.maximum(fixed["peak_activation_bytes"],
                                              np.where(active, blocks["peak_activation_bytes"], 0).max(1))
    return {name: np.asarray(value, np.int64) for name, value in out.items()}


def _tally(space: ViTSpace | str, cfg: Any) -> tuple[dict[str, np.ndarray], bool]:
    space = ViTSpace.preset(space) if isinstance(space, str) else space
    single = isinstance(cfg, (ViTConfig, Mapping))
    return analyze_values(space, space.to_arrays(cfg)), single


def _as_given(result: dict[str, np.ndarray], single: bool) -> dict[str, Any]:
    return {key: int(value[0]) for key, value in result.items()} if single else result


def analyze(space: ViTSpace | str, cfg: ViTConfig | Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    """`macs`, `params`, `peak_activation_bytes` and `flash_bytes` of one config (ints) or of a
    list of configs (int64 arrays), without building any network."""
    out, single = _tally(space, cfg)
    return _as_given({name: out[name] for name in METRICS}, single)


def deployment_bytes(space: ViTSpace | str, cfg: ViTConfig | Mapping[str, Any] | Sequence[Any],
                     precision: str) -> dict[str, Any]:
    """What a device stores and holds for a file of `precision` ("fp32" or "int8"):
    `flash_bytes` (see the module's docstring) and `peak_activation_bytes`, the peak of live
    activations in that precision. Ints for one config, int64 arrays for a list. `ValueError`
    for another precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r}; allowed: {', '.join(PRECISIONS)}")
    out, single = _tally(space, cfg)
    return _as_given({"flash_bytes": out[f"flash_bytes_{precision}"],
                      "peak_activation_bytes": ACTIVATION_BYTES[precision] * out["peak_activation_bytes"]}, single)
