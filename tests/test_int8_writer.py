"""The int8 export's own QDQ writer (runtime/quantize.py `_prepare` + `_write_qdq`) against
ONNX Runtime's quant_pre_process + QDQ quantizer, the path it replaced (kept for the graphs the
writer does not handle, and here the oracle): the same written file byte for byte (so the same
quantized initializers and the same ONNX Runtime outputs, also checked as values) on the
largest, the smallest and random subnets of the bundled supernet, for every calibration method;
the vectorised parameter arithmetic against ORT's own functions; the fallback."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from ofa_engine import extract_calibrated, load_supernet
from ofa_engine.datasets.images import load_split
from ofa_engine.families.mbv3.static import fold_bn
from ofa_engine.runtime import quantize as q
from ofa_engine.runtime.export import write_onnx_unverified
from ofa_engine.runtime.ort import make_session
from ofa_engine.runtime.preprocess import preprocess

N_CALIB, N_EVAL = 200, 300


@pytest.fixture(scope="module")
def supernet():
    return load_supernet("tiny-fmnist")


def _float_file(supernet, cfg, path):
    net = extract_calibrated(supernet, cfg)
    write_onnx_unverified(fold_bn(copy.deepcopy(net).eval()), supernet.space, cfg, path, 17)
    return path


def _images(supernet, cfg):
    calib, test = load_split("calib"), load_split("test2k")
    return (preprocess(calib.images[:N_CALIB], supernet.space, cfg.image_size).numpy(),
            preprocess(test.images[:N_EVAL], supernet.space, cfg.image_size).numpy())


def _ours_and_ort(float_path, tmp_path, calib, evaluation, monkeypatch, method="percentile"):
    """quantize_onnx's file with the writer and with ORT's path (the writer switched off)."""
    calls = []
    write = q._write_qdq
    monkeypatch.setattr(q, "_write_qdq", lambda *a: calls.append(1) or write(*a))
    ours = q.quantize_onnx(float_path, tmp_path / "ours.onnx", calib, evaluation, method=method, floor=0.0)
    assert calls, "the writer was not used"
    monkeypatch.setattr(q, "_prepare", lambda model: None)
    theirs = q.quantize_onnx(float_path, tmp_path / "ort.onnx", calib, evaluation, method=method, floor=0.0)
    assert len(calls) == 1, "the writer was used with _prepare switched off"
    assert ours == theirs
    return tmp_path / "ours.onnx", tmp_path / "ort.onnx"


def _logits(path, x):
    session = make_session(path, threads=1)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _configs(space):
    rng = np.random.default_rng(34)
    return [("largest", space.largest()), ("smallest", space.smallest())] + \
        [(f"random{i}", space.sample(rng)) for i in range(3)]


@pytest.mark.parametrize("which", ["largest", "smallest", "random0", "random1", "random2"])
def test_writer_gives_ort_s_file(supernet, tmp_path, monkeypatch, which):
    cfg = dict(_configs(supernet.space))[which]
    float_path = _float_file(supernet, cfg, tmp_path / "float.onnx")
    calib, evaluation = _images(supernet, cfg)
    ours, ort = _ours_and_ort(float_path, tmp_path, calib, evaluation, monkeypatch)

    # Equal element for element: every quantized initializer, scale and zero point ...
    mine = {i.name: numpy_helper.to_array(i) for i in onnx.load(ours).graph.initializer}
    theirs = {i.name: numpy_helper.to_array(i) for i in onnx.load(ort).graph.initializer}
    assert mine.keys() == theirs.keys()
    for name, value in theirs.items():
        assert mine[name].dtype == value.dtype and np.array_equal(mine[name], value), name
    assert {v.dtype for v in mine.values()} == {np.dtype(np.int8), np.dtype(np.int32), np.dtype(np.float32)}
    # ... the same outputs in ONNX Runtime, bit for bit ...
    assert np.array_equal(_logits(ours, evaluation), _logits(ort, evaluation))
    # ... and the same file.
    assert ours.read_bytes() == ort.read_bytes()


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_writer_gives_ort_s_file_for_the_other_calibrations(supernet, tmp_path, monkeypatch, method):
    """ORT's calibrators (minmax, entropy) run on the writer's prepared graph: their ranges, so
    the file, are those of quant_pre_process's."""
    cfg = supernet.space.smallest()
    float_path = _float_file(supernet, cfg, tmp_path / "float.onnx")
    calib, evaluation = _images(supernet, cfg)
    ours, ort = _ours_and_ort(float_path, tmp_path, calib[:100], evaluation[:50], monkeypatch, method)
    assert ours.read_bytes() == ort.read_bytes()


@pytest.mark.parametrize("which", ["largest", "smallest", "random0", "random1", "random2"])
def test_writer_reads_only_the_ranges_it_says(supernet, tmp_path, which):
    """quantize_onnx's percentile pass computes only the ranges of `ranges_read()` (a Relu's input
    takes the Relu's range): those ranges are the numbers computed beside all the others, and the
    file written from them alone is the file written from all of them; any other range, however
    wrong, changes nothing; a range it needs and lacks is an error, not another file."""
    cfg = dict(_configs(supernet.space))[which]
    prepared = q._prepare(onnx.load(_float_file(supernet, cfg, tmp_path / "float.onnx")))
    calib, _ = _images(supernet, cfg)
    calibrated = q._calibrated_tensors(prepared)
    read = q._qdq_plan(prepared, calibrated).ranges_read()
    relu_inputs = {n.input[0] for n in prepared.graph.node if n.op_type == "Relu"}
    assert set(read) < set(calibrated) and relu_inputs & set(calibrated) - set(read)
    full = q._writer_ranges(prepared, calib, "percentile", q.PERCENTILE)
    assert set(full) == set(calibrated)
    some = q._writer_ranges(prepared, calib, "percentile", q.PERCENTILE, read)
    assert set(some) == set(read)
    assert {k: [float(v) for v in r] for k, r in some.items()} == {k: [float(v) for v in full[k]] for k in read}

    expected = q._compact(q._write_qdq(prepared, full)).SerializeToString()
    plan = q._qdq_plan(prepared, calibrated)
    assert q._compact(q._write_qdq(prepared, some, plan)).SerializeToString() == expected
    wrong = dict(full)
    for name in set(calibrated) - set(read):
        wrong[name] = (np.float32(-123.0), np.float32(321.0))
    assert q._compact(q._write_qdq(prepared, wrong)).SerializeToString() == expected
    with pytest.raises(ValueError, match="no range for the calibrated tensors"):
        q._write_qdq(prepared, {k: v for k, v in some.items() if k != read[0]}, q._qdq_plan(prepared, calibrated))
    with pytest.raises(ValueError, match="not among the calibrated tensors"):
        q._writer_ranges(prepared, calib, "percentile", q.PERCENTILE, read + ["no-such-tensor"])


def test_prepared_graph_is_quant_pre_process_s(supernet, tmp_path):
    """The HardSwish inlining and the attributes as quant_pre_process writes them, node for
    node, and the same tensors to calibrate (those of `select_tensors_to_calibrate`)."""
    from onnxruntime.quantization.calibrate import CalibraterBase
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
    from onnxruntime.quantization.shape_inference import quant_pre_process
    float_path = _float_file(supernet, supernet.space.largest(), tmp_path / "float.onnx")
    quant_pre_process(str(float_path), str(tmp_path / "prepared.onnx"))
    theirs = load_model_with_shape_infer(tmp_path / "prepared.onnx")
    ours = q._prepare(onnx.load(float_path))
    assert [n.SerializeToString() for n in ours.graph.node] == [n.SerializeToString() for n in theirs.graph.node]
    assert {n.op_type for n in ours.graph.node} >= {"HardSigmoid", "Mul"}
    assert "HardSwish" not in {n.op_type for n in ours.graph.node}
    assert list(ours.opset_import) == list(theirs.opset_import)
    selector = CalibraterBase.__new__(CalibraterBase)
    selector.op_types_to_calibrate = q._op_types()
    assert q._calibrated_tensors(ours) == sorted(CalibraterBase.select_tensors_to_calibrate(selector, theirs)[0])
    assert q._QUANTIZED_OPS == set(q._ORT_ATTRIBUTES) & set(q._op_types())


def test_activation_parameters_are_compute_scale_zp_s():
    from onnxruntime.quantization.quant_utils import compute_scale_zp
    rng = np.random.default_rng(0)
    lows = (rng.standard_normal(200) * 10 ** rng.uniform(-6, 2, 200)).astype(np.float32)
    highs = (lows + np.abs(rng.standard_normal(200)) * 10 ** rng.uniform(-6, 2, 200)).astype(np.float32)
    pairs = list(zip(lows, highs)) + [(np.float32(0), np.float32(0)), (np.float32(1), np.float32(3)),
                                      (np.float32(-3), np.float32(-1)), (np.float32(-1e-39), np.float32(1e-39))]
    ranges = {f"t{i}": (np.array(lo), np.array(hi)) for i, (lo, hi) in enumerate(pairs)}
    ours = q._activation_qparams(ranges)
    qmin, qmax = np.array(-128, dtype=np.int8), np.array(127, dtype=np.int8)
    for name, (lo, hi) in ranges.items():
        zero, scale = compute_scale_zp(lo, hi, qmin, qmax, False)
        assert ours[name][0].dtype == np.int8 and ours[name][1].dtype == np.float32
        assert (int(ours[name][0]), float(ours[name][1])) == (int(zero), float(scale)), (name, lo, hi)


def test_weight_scales_and_bias_adjustment_are_ort_s():
    """Per-channel symmetric scales (an all-zero channel included) and the int32 bias scale
    adjustment, triggered on purpose, against ORT's own per-channel code."""
    from onnxruntime.quantization.quant_utils import compute_data_quant_params
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    rng = np.random.default_rng(1)
    weight = (rng.standard_normal((8, 3, 3, 3)) * 10 ** rng.uniform(-9, 0, (8, 1, 1, 1))).astype(np.float32)
    weight[2] = 0
    scales = q._weight_scales(weight, 0)
    expected = np.array([compute_data_quant_params(weight[i].ravel(), onnx.TensorProto.INT8, True)[1]
                         for i in range(8)], dtype=np.float32)
    assert scales.dtype == np.float32 and np.array_equal(scales, expected)
    assert np.array_equal(q._weight_scales(weight.reshape(8, 27).T.copy(), 1), expected)   # Gemm, transB=0

    bias = (rng.standard_normal(8) * 10 ** rng.uniform(-3, 3, 8)).astype(np.float32)
    input_scale = np.array(1e-4, dtype=np.float32)
    adjusted = q._bias_safe_weight_scales(scales, input_scale, bias)
    updated, oracle = QDQQuantizer._adjust_weight_scale_for_int32_bias(
        None, input_scale, scales.copy(), "w", numpy_helper.from_array(bias, "b"), True)
    assert updated and not np.array_equal(adjusted, scales)   # the adjustment did happen
    assert adjusted.dtype == np.float32 and np.array_equal(adjusted, oracle)


def test_a_graph_the_writer_does_not_handle_goes_ort_s_way(supernet, tmp_path, monkeypatch):
    """An op outside the writer's (here an Identity before the classifier) leaves `_prepare`
    None and the file is ORT's quantizer's; so does an attribute set the exporter does not
    write."""
    cfg = supernet.space.smallest()
    float_path = _float_file(supernet, cfg, tmp_path / "float.onnx")
    model = onnx.load(float_path)
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    model.graph.node.insert(list(model.graph.node).index(gemm),
                            onnx.helper.make_node("Identity", [gemm.input[0]], ["identity_out"]))
    gemm.input[0] = "identity_out"
    assert q._prepare(model) is None
    other = onnx.load(float_path)
    next(n for n in other.graph.node if n.op_type == "Conv").attribute.append(
        onnx.helper.make_attribute("auto_pad", "NOTSET"))
    assert q._prepare(other) is None

    onnx.save(model, tmp_path / "identity.onnx")
    calib, evaluation = _images(supernet, cfg)
    monkeypatch.setattr(q, "_write_qdq", lambda *a: pytest.fail("the writer was used"))
    report = q.quantize_onnx(tmp_path / "identity.onnx", tmp_path / "q.onnx", calib[:100], evaluation[:50],
                             floor=0.0)
    assert report.evaluation_images == 50
    ops = {n.op_type for n in onnx.load(tmp_path / "q.onnx").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
