"""The ONNX graph of an extracted MobileNetV3 subnet, written directly from its layers.

torch's TorchScript exporter takes ~0.2 s for a subnet of the bundled supernet (tracing, its
graph passes, the BN folding of its eval peephole); the graph it writes is fixed by the
network's layout, so it is written here in ~10 ms (issue 34). The graph is the exporter's: the
same nodes in the same order, with its node and tensor names and attributes, the same
initializers in its order, and BNs folded with its arithmetic (`fold`: gamma / sqrt(var + eps)
in float32, as torch's eval peephole computes it), so ONNX Runtime computes the same logits bit
for bit (tests/test_onnx_graph.py compares both files on every registered preset). One name
differs: a BN-folded conv's weight and bias, which the exporter calls `onnx::Conv_<id>` (ids
of its internal graph), are named here after their conv (`blocks.3.depth_conv.conv.weight`),
as the exporter names them in a net whose BNs were already folded (the int8 path's).

`onnx_model` returns None for anything it does not know (another opset, a module of another
kind): the caller then uses torch's exporter.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from .static import ConvBNAct, MBConv, SqueezeExcite, StaticNet

__all__ = ["OPSET", "onnx_model", "fold"]

# The opset this writer writes (the engine's MIN_OPSET and default): ReduceMean takes its axes as
# an attribute up to opset 17.
OPSET = 17
# The IR version torch's exporter writes for it.
IR_VERSION = 8
INPUT_NAME, OUTPUT_NAME = "input", "logits"
_ACTIVATIONS = {nn.ReLU: "Relu", nn.Hardswish: "HardSwish"}


class _Unsupported(Exception):
    """A layer this writer does not write (the exporter does)."""


def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of `conv` with the eval-mode `bn` folded in, computed as torch's ONNX eval
    peephole computes them: scale = gamma / sqrt(var + eps); weight x scale per output channel;
    bias (b - mean) x scale + beta, or beta - mean x scale without a conv bias."""
    scale = bn.weight.detach().div(bn.running_var.add(bn.eps).sqrt())
    weight = conv.weight.detach() * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    if conv.bias is not None:
        bias = conv.bias.detach().sub(bn.running_mean).mul(scale).add(bn.bias.detach())
    else:
        bias = bn.bias.detach().sub(bn.running_mean.mul(scale))
    return weight, bias


class _Graph:
    """Nodes and initializers as the exporter orders them: parameters used as they are first (in
    the module's parameter order), then the BN-folded ones in node order."""

    def __init__(self, net: nn.Module) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.params = {id(p): name for name, p in net.named_parameters()}
        self.plain: dict[str, np.ndarray] = {}
        self.folded: list[tuple[str, np.ndarray]] = []

    def node(self, scope: str, op: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        name = f"{scope}/{op}"
        out = output or f"{name}_output_0"
        node = helper.make_node(op, inputs, [out], name=name)
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
        self.nodes.append(node)
        return out

    def parameter(self, p: torch.Tensor) -> str:
        name = self.params[id(p)]
        self.plain[name] = p.detach().numpy()
        return name

    def conv(self, scope: str, x: str, conv: nn.Conv2d, bn: nn.Module) -> str:
        """A Conv node for the module at `scope`, with `bn` (a BatchNorm2d or an Identity) folded."""
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise _Unsupported(f"{scope}: {conv}")
        if isinstance(bn, nn.BatchNorm2d):
            if bn.training or not bn.track_running_stats or not bn.affine:
                raise _Unsupported(f"{scope}: {bn}")
            weight, bias = fold(conv, bn)
            prefix = self.params[id(conv.weight)].rsplit(".", 1)[0]
            inputs = [f"{prefix}.weight", f"{prefix}.bias"]
            self.folded += [(inputs[0], weight.numpy()), (inputs[1], bias.numpy())]
        elif isinstance(bn, nn.Identity):
            inputs = [self.parameter(conv.weight)] + ([] if conv.bias is None else [self.parameter(conv.bias)])
        else:
            raise _Unsupported(f"{scope}: {bn}")
        kernel = list(conv.kernel_size)
        pads = list(conv.padding)
        return self.node(scope, "Conv", [x, *inputs], dilations=list(conv.dilation),
                         group=conv.groups, kernel_shape=kernel, pads=pads + pads, strides=list(conv.stride))

    def initializers(self) -> list[TensorProto]:
        # The exporter's order: the parameters used unchanged (module order), then the folded ones.
        order = [name for name in self.params.values() if name in self.plain]
        tensors = [(name, self.plain[name]) for name in order] + self.folded
        return [numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32), name) for name, a in tensors]


def _activation(g: _Graph, scope: str, x: str, act: nn.Module) -> str:
    if isinstance(act, nn.Identity):
        return x
    op = _ACTIVATIONS.get(type(act))
    if op is None:
        raise _Unsupported(f"{scope}: {act}")
    return g.node(f"{scope}/act", op, [x])


def _conv_bn_act(g: _Graph, scope: str, x: str, layer: nn.Module) -> str:
    if type(layer) is not ConvBNAct:
        raise _Unsupported(f"{scope}: {type(layer).__name__}")
    return _activation(g, scope, g.conv(f"{scope}/conv", x, layer.conv, layer.bn), layer.act)


def _squeeze_excite(g: _Graph, scope: str, x: str, se: SqueezeExcite) -> str:
    for conv in (se.reduce, se.expand):
        if type(conv) is not nn.Conv2d or conv.kernel_size != (1, 1) or conv.groups != 1:
            raise _Unsupported(f"{scope}: {conv}")
    y = g.node(scope, "ReduceMean", [x], axes=[2, 3], keepdims=1)
    y = g.conv(f"{scope}/reduce", y, se.reduce, nn.Identity())
    y = g.node(f"{scope}/relu", "Relu", [y])
    y = g.conv(f"{scope}/expand", y, se.expand, nn.Identity())
    # torch's hardsigmoid: alpha 1/6 (float32), beta the default 0.5
    y = g.node(f"{scope}/gate", "HardSigmoid", [y], alpha=1.0 / 6.0)
    return g.node(scope, "Mul", [x, y])


def _block(g: _Graph, scope: str, x: str, block: nn.Module) -> str:
    if type(block) is not MBConv:
        raise _Unsupported(f"{scope}: {type(block).__name__}")
    y = x
    if not isinstance(block.inverted_bottleneck, nn.Identity):
        y = _conv_bn_act(g, f"{scope}/inverted_bottleneck", y, block.inverted_bottleneck)
    y = _conv_bn_act(g, f"{scope}/depth_conv", y, block.depth_conv)
    if isinstance(block.se, SqueezeExcite):
        y = _squeeze_excite(g, f"{scope}/se", y, block.se)
    elif not isinstance(block.se, nn.Identity):
        raise _Unsupported(f"{scope}/se: {type(block.se).__name__}")
    y = _conv_bn_act(g, f"{scope}/point_linear", y, block.point_linear)
    return g.node(scope, "Add", [x, y]) if block.residual else y


def onnx_model(net: nn.Module, input_shape: tuple[int, int, int], opset: int) -> onnx.ModelProto | None:
    """The ONNX model (no metadata) of the extracted, eval-mode `net` as torch's TorchScript
    exporter writes it (input "input" (batch, *input_shape), output "logits" (batch, classes),
    a dynamic batch axis), or None when this writer does not handle `net` or `opset`."""
    if opset != OPSET or type(net) is not StaticNet or net.training:
        return None
    g = _Graph(net)
    try:
        with torch.no_grad():
            x = _conv_bn_act(g, "/first_conv", INPUT_NAME, net.first_conv)
            for i, block in enumerate(net.blocks):
                x = _block(g, f"/blocks/blocks.{i}", x, block)
            x = _conv_bn_act(g, "/final_expand", x, net.final_expand)
            x = g.node("", "ReduceMean", [x], axes=[2, 3], keepdims=1)
            x = _conv_bn_act(g, "/feature_mix", x, net.feature_mix)
            x = g.node("", "Flatten", [x], axis=1)
            if type(net.classifier) is not nn.Linear or net.classifier.bias is None:
                raise _Unsupported(f"classifier: {net.classifier}")
            g.node("/classifier", "Gemm", [x, g.parameter(net.classifier.weight), g.parameter(net.classifier.bias)],
                   output=OUTPUT_NAME, alpha=1.0, beta=1.0, transB=1)
            initializers = g.initializers()
    except _Unsupported:
        return None
    classes = net.classifier.out_features
    graph = helper.make_graph(
        g.nodes, "main_graph",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *input_shape])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", classes])],
        initializers)
    model = helper.make_model(graph, opset_imports=[], ir_version=IR_VERSION)
    model.opset_import.add(version=OPSET)   # the default domain, left unset as the exporter leaves it
    return model
