"""The MobileNetV3 family writes the ONNX graph torch's TorchScript exporter writes, without tracing
(families/mbv3/onnx_graph.py): the same nodes, initializers and logits, on every registered preset."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

import ofa_engine.families.mbv3.onnx_graph as onnx_graph
from ofa_engine import SearchSpace, build_supernet, export_onnx
from ofa_engine.families import FAMILIES, family_of
from ofa_engine.runtime.export import INPUT_NAME, OUTPUT_NAME, _torchscript_export, read_metadata

MBV3_PRESETS = FAMILIES.get("mbv3").preset_names()
# A user's own spaces: what the presets do not have (SE and h-swish in the first block, stages
# without SE, a stride-1 stage, expand ratio 1 (no inverted bottleneck), 3 input channels).
_OWN = dict(name="own-a", in_channels=3, num_classes=4, width_mults=(1.0, 1.25),
            base_widths=(16, 16, 24, 32, 64, 64), first_conv_stride=2, first_block_stride=1,
            first_block_act="h_swish", first_block_se=True, stage_strides=(1, 2),
            stage_acts=("h_swish", "relu"), stage_se=(False, True), kernel_sizes=(3, 5, 7),
            expand_ratios=(1, 3, 6), depths=(1, 2, 3), resolutions=(16, 24))
OWN_SPACES = [SearchSpace(**_OWN),
              SearchSpace(**{**_OWN, "name": "own-b", "first_block_se": False, "first_block_act": "relu",
                             "stage_se": (False, False), "stage_acts": ("relu", "relu"), "in_channels": 1})]


def _seeded(supernet: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded weights and BN statistics far from the fresh init's (gamma 1, mean 0, var 1), so that
    folding them is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in supernet.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        for m in supernet.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return supernet


@pytest.fixture(scope="module", params=MBV3_PRESETS + OWN_SPACES, ids=lambda p: getattr(p, "name", p))
def supernet(request):
    return _seeded(family_of(request.param, fast=False).build_supernet(), 0)


def _torch_export(net: torch.nn.Module, family, tmp_path) -> onnx.ModelProto:
    """What torch's TorchScript exporter writes for `net` (export_onnx's settings)."""
    path = tmp_path / "torch.onnx"
    _torchscript_export()(net.eval(), (torch.zeros(1, *family.input_shape(net.config)),), str(path),
                          opset_version=onnx_graph.OPSET, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          do_constant_folding=True, keep_initializers_as_inputs=False)
    return onnx.load(str(path))


def _ours(net: torch.nn.Module, family) -> onnx.ModelProto:
    model = family.onnx_model(net.eval(), onnx_graph.OPSET)
    assert model is not None
    return model


def _logits(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def _configs(space) -> list:
    rng = np.random.default_rng(0)
    configs = [space.parse_config("largest"), space.parse_config("smallest"), space.sample(rng), space.sample(rng)]
    # The ImageNet presets at their smallest resolution: the graph does not depend on it.
    return [type(c)(**{**c.to_dict(), "image_size": min(space.resolutions)}) for c in configs]


def test_folded_nets_give_the_exporters_file_byte_for_byte(supernet, tmp_path):
    """A net whose BNs are folded (the int8 path's float file): the whole model is the exporter's."""
    family = family_of(supernet.space, fast=False)
    for cfg in _configs(supernet.space):
        net = family.fold_bn(supernet.extract(cfg).eval())
        theirs, ours = _torch_export(net, family, tmp_path), _ours(net, family)
        ours.producer_name, ours.producer_version = theirs.producer_name, theirs.producer_version
        assert ours.SerializeToString() == theirs.SerializeToString(), cfg


def test_nets_with_bn_give_the_exporters_graph_and_logits(supernet, tmp_path):
    """With BN (the fp32 path): the same nodes and attributes, the same initializers bit for bit in
    the same order (only the folded ones are named after their conv instead of `onnx::Conv_<id>`),
    and ONNX Runtime's logits equal bit for bit."""
    family = family_of(supernet.space, fast=False)
    for cfg in _configs(supernet.space):
        net = supernet.extract(cfg).eval()
        theirs, ours = _torch_export(net, family, tmp_path), _ours(net, family)
        renamed = {}
        assert len(theirs.graph.node) == len(ours.graph.node)
        for a, b in zip(theirs.graph.node, ours.graph.node):
            renamed.update(zip(a.input, b.input))
            a = copy.deepcopy(a)
            a.input[:] = [renamed[name] for name in a.input]
            assert a.SerializeToString() == b.SerializeToString()
        assert any(name.startswith("onnx::Conv_") for name in renamed)   # the exporter folded BNs
        pairs = list(zip(theirs.graph.initializer, ours.graph.initializer, strict=True))
        for a, b in pairs:
            assert renamed[a.name] == b.name
            assert numpy_helper.to_array(a).tobytes() == numpy_helper.to_array(b).tobytes(), b.name
            assert list(a.dims) == list(b.dims) and a.data_type == b.data_type
        for part in ("input", "output"):
            assert [v.SerializeToString() for v in getattr(theirs.graph, part)] == \
                   [v.SerializeToString() for v in getattr(ours.graph, part)]
        assert (theirs.ir_version, list(theirs.opset_import)) == (ours.ir_version, list(ours.opset_import))
        x = np.random.default_rng(1).standard_normal((3, *family.input_shape(cfg)))
        x = x.astype(np.float32)
        assert np.array_equal(_logits(theirs, x), _logits(ours, x))


def test_fold_is_the_exporters_arithmetic_with_and_without_a_conv_bias():
    g = torch.Generator().manual_seed(3)
    for bias in (False, True):
        conv = torch.nn.Conv2d(4, 6, 3, bias=bias)
        bn = torch.nn.BatchNorm2d(6).eval()
        with torch.no_grad():
            for t in (conv.weight, bn.weight, bn.bias, bn.running_mean):
                t.copy_(torch.randn(t.shape, generator=g))
            bn.running_var.copy_(torch.rand(6, generator=g) + 0.1)
        weight, b = onnx_graph.fold(conv, bn)
        x = torch.randn(2, 4, 5, 5, generator=g)
        with torch.no_grad():
            expected = bn(conv(x))
        assert torch.allclose(torch.nn.functional.conv2d(x, weight, b), expected, atol=1e-5)


def test_export_onnx_uses_the_written_graph_and_says_so(tmp_path):
    supernet = _seeded(build_supernet("tiny-fmnist"), 1)
    net = supernet.extract(supernet.space.parse_config("random:5"))
    path = export_onnx(net, net.config, tmp_path / "m.onnx")
    assert read_metadata(path)["producer"]["exporter"].startswith("ofa_engine")
    # Another opset: torch's exporter writes it, and the metadata says so.
    path = export_onnx(net, net.config, tmp_path / "m18.onnx", opset=18)
    assert read_metadata(path)["producer"]["exporter"] == "torch.onnx.export (TorchScript)"


def test_a_layer_it_does_not_know_goes_to_the_exporter():
    supernet = _seeded(build_supernet("tiny-fmnist"), 2)
    largest = supernet.space.parse_config("largest")
    net = supernet.extract(largest).eval()
    assert _ours_or_none(net) is not None
    net.blocks[1].depth_conv.act = torch.nn.GELU()      # not an activation of the space
    assert _ours_or_none(net) is None
    net = supernet.extract(largest).train()
    assert _ours_or_none(net) is None                      # training BN: not written
    assert onnx_graph.onnx_model(torch.nn.Linear(2, 2), (1, 2, 2), onnx_graph.OPSET) is None


def _ours_or_none(net):
    return onnx_graph.onnx_model(net, family_of(net.space_name).input_shape(net.config), onnx_graph.OPSET)
