"""ONNX export: valid file, metadata, equality with PyTorch, dynamic batch, atomic writes."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import ofa_engine.runtime.export as export_module
from ofa_engine import SearchSpace, build_supernet, export_onnx
from ofa_engine.runtime.export import ExportVerificationError, read_metadata, verify_onnx
from ofa_engine.runtime.preprocess import preprocessing_spec



def _give_weights_scale(supernet, seed: int) -> None:
    """Replace the fresh init (whose logits are ~1e-10, so any export would "match") with
    seeded weights and BN statistics that give logits of order 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in supernet.named_parameters():
            if "transform" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
            elif p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=g) * math.sqrt(2.0 / fan_in))
        for name, m in supernet.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                # Small gamma on the residual branch keeps deep subnets from blowing up.
                scale = 0.3 if "point_linear" in name else 1.0
                m.weight.copy_((torch.rand(m.weight.shape, generator=g) + 0.5) * scale)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        supernet.classifier.bias.copy_(torch.randn(supernet.classifier.bias.shape, generator=g))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    supernet = build_supernet("tiny-fmnist")
    _give_weights_scale(supernet, 0)
    return supernet


@pytest.fixture(scope="module")
def mbv3():
    torch.manual_seed(0)
    supernet = build_supernet("ofa-mbv3-w1.0")
    _give_weights_scale(supernet, 1)
    return supernet


def _run_ort(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def _check_exported(path, net, space: SearchSpace) -> None:
    cfg = net.config
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17

    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and out.name == "logits"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value          # dynamic batch
    assert [d.dim_value for d in dims[1:]] == [space.in_channels, cfg.image_size, cfg.image_size]

    meta = read_metadata(path)
    assert meta["config"] == cfg.to_dict()
    assert meta["space"] == space.name
    assert meta["preprocessing"] == preprocessing_spec(space, cfg.image_size)
    assert meta["labels"] == (list(space.labels) or [f"class_{i}" for i in range(space.num_classes)])
    assert len(meta["labels"]) == space.num_classes
    assert meta["producer"]["name"] == "ofa_engine" and meta["producer"]["opset"] >= 17

    # Dynamic batch with a batch size that was neither traced (1) nor verified (2).
    x = torch.randn(3, space.in_channels, cfg.image_size, cfg.image_size,
                    generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        expected = net(x).numpy()
    actual = _run_ort(path, x.numpy())
    assert actual.shape == (3, space.num_classes)
    assert np.abs(expected).max() > 0.1       # the comparison is not vacuous
    assert np.abs(actual - expected).max() <= 1e-4


@pytest.mark.parametrize("config", ["largest", "smallest", "random:1", "random:2", "random:3"])
def test_export_tiny_fmnist(tiny, tmp_path, config):
    cfg = tiny.space.parse_config(config)
    net = tiny.extract(cfg)
    path = export_onnx(net, cfg, tmp_path / "model.onnx")
    assert path == tmp_path / "model.onnx"
    _check_exported(path, net, tiny.space)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]   # no temp file left


def test_export_mbv3_small_resolution(mbv3, tmp_path):
    cfg = SearchSpace.preset("ofa-mbv3-w1.0").sample(7)
    cfg = type(cfg)(**{**cfg.to_dict(), "image_size": 128})
    net = mbv3.extract(cfg)
    path = export_onnx(net, cfg.to_dict(), str(tmp_path / "mbv3.onnx"))   # dict config, str path
    _check_exported(path, net, mbv3.space)
    labels = read_metadata(path)["labels"]
    assert labels[:2] == ["class_0", "class_1"] and len(labels) == 1000


def test_export_keeps_training_mode_and_uses_eval(tiny, tmp_path):
    cfg = tiny.space.sample(4)
    net = tiny.extract(cfg).train()
    path = export_onnx(net, cfg, tmp_path / "m.onnx")
    assert net.training
    assert "Dropout" not in {node.op_type for node in onnx.load(str(path)).graph.node}


def test_failed_verification_leaves_no_file(tiny, tmp_path, monkeypatch):
    cfg = tiny.space.sample(5)
    net = tiny.extract(cfg)
    monkeypatch.setattr(export_module, "verification", lambda path, model: export_module.Verification(0.5, 3.0))
    target = tmp_path / "model.onnx"
    with pytest.raises(ExportVerificationError, match="differs from PyTorch"):
        export_onnx(net, cfg, target)
    assert list(tmp_path.iterdir()) == []

    target.write_bytes(b"previous export")          # an existing file survives a failed export
    with pytest.raises(ExportVerificationError):
        export_onnx(net, cfg, target)
    assert target.read_bytes() == b"previous export"
    assert list(tmp_path.iterdir()) == [target]


def test_nan_output_fails_verification(tiny, tmp_path, monkeypatch):
    cfg = tiny.space.sample(5)
    monkeypatch.setattr(export_module, "verification", lambda path, model: export_module.Verification(float("nan"), 3.0))
    with pytest.raises(ExportVerificationError):
        export_onnx(tiny.extract(cfg), cfg, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("writer", ["family", "torch"])
def test_failed_writer_leaves_no_file(tiny, tmp_path, monkeypatch, writer):
    """The family's graph writer (opset 17) and torch's exporter (opset 18, which the family's
    writer leaves to it) crash: nothing is left."""
    cfg = tiny.space.sample(6)

    def broken_export(model, args, f, **kwargs):
        with open(f, "wb") as fh:                 # a half-written file
            fh.write(b"\x08partial")
        raise RuntimeError("exporter crashed")

    def broken_writer(*args, **kwargs):
        raise RuntimeError("exporter crashed")

    import torch.onnx.utils

    import ofa_engine.families.mbv3.onnx_graph as onnx_graph
    monkeypatch.setattr(torch.onnx, "export", broken_export)
    monkeypatch.setattr(torch.onnx.utils, "export", broken_export)   # the same exporter, without its warning
    if writer == "family":
        monkeypatch.setattr(onnx_graph, "onnx_model", broken_writer)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_onnx(tiny.extract(cfg), cfg, tmp_path / "m.onnx", opset=17 if writer == "family" else 18)
    assert list(tmp_path.iterdir()) == []


def test_verify_onnx_detects_a_different_model(tiny, tmp_path):
    cfg = tiny.space.sample(8)
    net = tiny.extract(cfg)
    path = export_onnx(net, cfg, tmp_path / "m.onnx")
    other = tiny.extract(cfg)
    with torch.no_grad():
        other.classifier.bias.add_(1.0)
    assert verify_onnx(path, net) <= 1e-4
    assert verify_onnx(path, other) == pytest.approx(1.0, abs=1e-4)


def test_the_tolerance_is_relative_to_the_largest_logit_above_one(tiny, tmp_path, monkeypatch):
    """float32 rounding grows with the values: 1e-4 of the largest |logit| when that is above 1
    (a deep ImageNet network's logits on the random batch reach the hundreds), 1e-4 otherwise."""
    cfg = tiny.space.sample(5)
    net = tiny.extract(cfg)
    for diff, largest, ok in ((5e-3, 100.0, True), (2e-2, 100.0, False), (5e-4, 0.5, False), (5e-5, 0.5, True)):
        monkeypatch.setattr(export_module, "verification",
                            lambda path, model, d=diff, m=largest: export_module.Verification(d, m))
        target = tmp_path / "m.onnx"
        if ok:
            assert export_onnx(net, cfg, target) == target
            target.unlink()
        else:
            with pytest.raises(ExportVerificationError, match=r"allowed .*largest \|logit\|"):
                export_onnx(net, cfg, target)
            assert not target.exists()


def test_rejects_supernet_and_mismatched_config(tiny, tmp_path):
    cfg = tiny.space.largest()
    with pytest.raises(ValueError, match="Supernet.extract"):
        export_onnx(tiny, cfg, tmp_path / "m.onnx")
    net = tiny.extract(cfg)
    with pytest.raises(ValueError, match=r"\['image_size'\] differ"):
        export_onnx(net, {**cfg.to_dict(), "image_size": 24}, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="'ks'"):
        export_onnx(net, {**cfg.to_dict(), "ks": [4] * 15}, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="does not match the model"):
        export_onnx(net, cfg, tmp_path / "m.onnx", space="ofa-mbv3-w1.0")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(net, cfg, tmp_path / "m.onnx", opset=13)
    with pytest.raises(ValueError, match="does not exist"):
        export_onnx(net, cfg, tmp_path / "missing" / "m.onnx")
    with pytest.raises(ValueError, match="opset = 10000; allowed: an integer 17..20"):
        export_onnx(net, cfg, tmp_path / "m.onnx", opset=10000)
    with pytest.raises(ValueError, match="path '' names no file"):
        export_onnx(net, cfg, "")
    assert list(tmp_path.iterdir()) == []


def test_metadata_is_plain_json(tiny, tmp_path):
    cfg = tiny.space.smallest()
    path = export_onnx(tiny.extract(cfg), cfg, tmp_path / "m.onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert set(props) == {"config", "space", "preprocessing", "labels", "producer"}
    assert props["space"] == "tiny-fmnist"
    for key in ("config", "preprocessing", "labels", "producer"):
        json.loads(props[key])
