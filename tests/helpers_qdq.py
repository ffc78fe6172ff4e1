"""The arithmetic of a QDQ ONNX file as the ONNX operators define it, computed independently of
ONNX Runtime: each node in torch, float64 between the nodes, every value rounded to float32
where the operator's output is float32. The int8 file's reported accuracy is measured in ONNX
Runtime with its QDQ as written (`make_session(..., fuse_qdq=False)`); tests check that those
predictions are this arithmetic's.

Covers the ops of this engine's int8 files (QuantizeLinear, DequantizeLinear, Conv,
HardSigmoid, Mul, Add, ReduceMean, Flatten, Gemm, Relu); any other op raises."""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.float().double()


def qdq_reference_logits(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The graph's single output for input `x` (the graph's single input)."""
    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    env: dict[str, torch.Tensor] = {graph.input[0].name: torch.from_numpy(np.asarray(x, np.float32)).double()}

    def value(name: str) -> torch.Tensor:
        return env[name] if name in env else torch.from_numpy(consts[name].astype(np.float64))

    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        op, ins, out = node.op_type, list(node.input), node.output[0]
        if op == "QuantizeLinear":
            zero = consts[ins[2]]
            info = np.iinfo(zero.dtype)
            scale = value(ins[1]).float()
            # ONNX: saturate(round_half_to_even(x / y_scale) + y_zero_point), x / y_scale in float32
            q = torch.round(value(ins[0]).float() / scale).double() + float(zero)
            env[out] = q.clamp(info.min, info.max)
        elif op == "DequantizeLinear":
            v, scale = value(ins[0]), value(ins[1])
            zero = value(ins[2]) if len(ins) > 2 and ins[2] else torch.zeros((), dtype=torch.float64)
            if scale.ndim == 1 and v.ndim > 1:
                shape = [1] * v.ndim
                shape[attrs.get("axis", 1)] = -1
                scale = scale.reshape(shape)
                zero = zero.reshape(shape) if zero.ndim else zero
            env[out] = _f32((v - zero) * scale)
        elif op == "Conv":
            pads = attrs.get("pads", [0, 0, 0, 0])
            if pads[0] != pads[2] or pads[1] != pads[3]:
                raise NotImplementedError("asymmetric padding")
            bias = value(ins[2]) if len(ins) > 2 and ins[2] else None
            env[out] = _f32(F.conv2d(value(ins[0]), value(ins[1]), bias, stride=attrs.get("strides", [1, 1]),
                                     padding=(pads[0], pads[1]), dilation=attrs.get("dilations", [1, 1]),
                                     groups=attrs.get("group", 1)))
        elif op == "HardSigmoid":
            env[out] = _f32((attrs.get("alpha", 0.2) * value(ins[0]) + attrs.get("beta", 0.5)).clamp(0, 1))
        elif op == "Relu":
            env[out] = value(ins[0]).clamp(min=0)
        elif op == "Mul":
            env[out] = _f32(value(ins[0]) * value(ins[1]))
        elif op == "Add":
            env[out] = _f32(value(ins[0]) + value(ins[1]))
        elif op == "ReduceMean":
            axes = attrs["axes"] if "axes" in attrs else [int(a) for a in consts[ins[1]]]
            env[out] = _f32(value(ins[0]).mean(dim=tuple(axes), keepdim=bool(attrs.get("keepdims", 1))))
        elif op == "Flatten":
            env[out] = value(ins[0]).flatten(attrs.get("axis", 1))
        elif op == "Gemm":
            a, b = value(ins[0]), value(ins[1])
            a = a.T if attrs.get("transA", 0) else a
            b = b.T if attrs.get("transB", 0) else b
            c = value(ins[2]) if len(ins) > 2 and ins[2] else 0.0
            env[out] = _f32(attrs.get("alpha", 1.0) * (a @ b) + attrs.get("beta", 1.0) * c)
        else:
            raise NotImplementedError(f"op {op}")
    return env[graph.output[0].name].numpy()
