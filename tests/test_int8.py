"""int8 deployment: QDQ export of random configs, metadata, weight bytes against the analytic
Flash, the agreement floor, bad calibration input, unknown precisions, the profiles' precision,
the CLI flag, and the microcontroller profiles' Flash budgets."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from ofa_engine import analyze, export_onnx, extract_calibrated, load_supernet, specialize
from ofa_engine.cli.main import main
from ofa_engine.datasets.images import ImageSet, load_split
from ofa_engine.devices.profile_schema import ProfileError
from ofa_engine.devices.profiles import load_profile
from ofa_engine.packages.package import bundled_packages
from ofa_engine.pipeline.specialize import INT8_CALIBRATION_IMAGES, calibration_subset
from ofa_engine.runtime.export import read_metadata
from ofa_engine.runtime.ort import make_session
from ofa_engine.runtime.preprocess import preprocess
from ofa_engine.runtime.quantize import (AGREEMENT_FLOOR, EVALUATED_WITH, EVALUATION_BATCH, PERCENTILE_BATCH, SCHEME,
                                         QuantizationRefusedError, check_precision, estimate_overhead_bytes,
                                         quantization_metadata, top1, weight_bytes)
from tests.helpers_qdq import qdq_reference_logits

# Enough images to calibrate and to measure agreement, few enough to keep each export ~2 s.
N_CALIB, N_EVAL = 200, 300


@pytest.fixture(scope="module")
def supernet():
    return load_supernet("tiny-fmnist")


@pytest.fixture(scope="module")
def sets():
    calib, test = load_split("calib"), load_split("test2k")
    return calib.subset(np.arange(N_CALIB)), test.subset(np.arange(N_EVAL))


@pytest.fixture(scope="module")
def small(supernet):
    cfg = supernet.space.smallest()
    return cfg, extract_calibrated(supernet, cfg)


def _export(net, cfg, path, sets, **kw):
    calib, test = sets
    return export_onnx(net, cfg, path, precision="int8", calibration=calib, evaluation=test, **kw)


@pytest.mark.parametrize("seed", [3, 11])
def test_int8_export_of_random_configs(supernet, sets, tmp_path, seed):
    space = supernet.space
    cfg = space.sample(np.random.default_rng(seed))
    net = extract_calibrated(supernet, cfg)
    path = _export(net, cfg, tmp_path / "m.onnx", sets)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # every conv / gemm weight is int8, per channel (a 1-D scale with one entry per output channel)
    inits = {i.name: i for i in model.graph.initializer}
    weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
               and inits[n.input[0]].data_type == onnx.TensorProto.INT8]
    assert weights and all(len(inits[n.input[1]].dims) == 1 and inits[n.input[1]].dims[0] > 1
                           for n in weights if len(inits[n.input[0]].dims) == 4)

    meta = read_metadata(path)
    assert meta["precision"] == "int8" and meta["config"] == cfg.to_dict()
    q = meta["quantization"]
    assert q["scheme"] == SCHEME and q["calibration_method"] == "percentile"
    assert q["calibration_images"] == N_CALIB and q["evaluation_images"] == N_EVAL
    assert AGREEMENT_FLOOR <= q["agreement"] <= 1.0 and q["agreement_floor"] == AGREEMENT_FLOOR

    # The file runs in ORT and its accuracy is what the metadata says, measured with its QDQ
    # as written; those predictions are the file's ONNX arithmetic, computed without ORT.
    test = sets[1]
    x = preprocess(test.images, space, cfg.image_size).numpy()
    assert q["evaluated_with"] == EVALUATED_WITH
    int8 = make_session(path, fuse_qdq=False).run(None, {"input": x})[0].argmax(1)
    assert float((int8 == test.labels).mean()) == pytest.approx(q["int8_accuracy"])
    reference = qdq_reference_logits(model, x).argmax(1)
    assert np.mean(int8 == reference) >= 0.995   # a float32 sum order may flip a near tie

    # Weight bytes (int8 weights + int32 biases) are exactly the analytic Flash; scales apart.
    sizes = weight_bytes(path)
    assert sizes["weight_bytes"] == int(analyze(space, cfg)["flash_bytes"])
    assert sizes["zero_point_bytes"] == 0 and sizes["scale_bytes"] > 0
    # size check: far below the float file, and only the quantization parameters and the graph
    # come on top of the weights
    # specialize's upper estimate of what comes on top of the weights holds for this file
    assert path.stat().st_size - sizes["weight_bytes"] <= estimate_overhead_bytes(net)
    fp32 = export_onnx(net, cfg, tmp_path / "f.onnx")
    assert path.stat().st_size < 0.4 * fp32.stat().st_size
    assert path.stat().st_size < sizes["weight_bytes"] + sizes["scale_bytes"] + 64 * 1024


def test_fp32_default_is_unchanged(small, tmp_path):
    cfg, net = small
    path = export_onnx(net, cfg, tmp_path / "f.onnx")
    assert "precision" not in read_metadata(path) and quantization_metadata(path) is None
    # A float file runs the same in the session that measures int8 files (QDQ as written).
    x = np.random.default_rng(0).standard_normal((8, 1, cfg.image_size, cfg.image_size)).astype(np.float32)
    np.testing.assert_array_equal(make_session(path).run(None, {"input": x})[0],
                                  make_session(path, fuse_qdq=False).run(None, {"input": x})[0])
    # a float file's weights: its float32 initializers, at least 4 bytes per parameter of the
    # folded net (BN folded by the exporter's constant folding)
    assert weight_bytes(path)["weight_bytes"] >= 4 * int(analyze(net.space_name, cfg)["params"]) * 0.9


@pytest.mark.parametrize("package", sorted(bundled_packages()))
def test_an_image_s_logits_do_not_depend_on_its_evaluation_batch(package, tmp_path):
    """`top1` runs EVALUATION_BATCH images at a time: each image's logits are those of any other
    batch of 3 or more, bit for bit, for the fp32 and the int8 file of every bundled package's
    smallest subnet (so the accuracies and agreements reported do not depend on the batch)."""
    from ofa_engine.pipeline.specialize import load_resources
    res = load_resources(package)
    cfg = res.space.smallest()
    net = extract_calibrated(res.supernet, cfg)
    calib, test = load_split("calib").subset(np.arange(N_CALIB)), load_split("test2k").subset(np.arange(N_EVAL))
    files = [export_onnx(net, cfg, tmp_path / "f.onnx"),
             export_onnx(net, cfg, tmp_path / "q.onnx", precision="int8", calibration=calib, evaluation=test)]
    x = preprocess(test.images, res.space, cfg.image_size).numpy()
    for path in files:
        session = make_session(path, fuse_qdq=False)
        by_batch = {size: np.concatenate([session.run(None, {"input": x[i:i + size]})[0]
                                          for i in range(0, len(x), size)])
                    for size in (EVALUATION_BATCH, 3, 7, 250, len(x))}
        for size, logits in by_batch.items():
            np.testing.assert_array_equal(logits, by_batch[len(x)], err_msg=f"{path.name}, batches of {size}")
        assert np.array_equal(top1(path, x), by_batch[len(x)].argmax(1))


def test_the_percentile_calibration_gives_the_same_file_at_any_batch(small, sets, tmp_path, monkeypatch):
    """The writer's percentile pass (`PERCENTILE_BATCH` images a run) summarises each batch and
    its ranges depend only on the set of values: the int8 file is the same byte for byte in
    batches of 7, of PERCENTILE_BATCH and of all 200 images."""
    from ofa_engine.runtime import quantize
    cfg, net = small
    written = {}
    for batch in (7, PERCENTILE_BATCH, N_CALIB):
        monkeypatch.setattr(quantize, "PERCENTILE_BATCH", batch)
        written[batch] = _export(net, cfg, tmp_path / f"q{batch}.onnx", sets).read_bytes()
    assert written[7] == written[PERCENTILE_BATCH] == written[N_CALIB]


def test_agreement_floor_refuses_and_writes_nothing(small, sets, tmp_path):
    cfg, net = small
    path = tmp_path / "m.onnx"
    path.write_bytes(b"keep")
    with pytest.raises(QuantizationRefusedError, match="below the floor of 101%"):
        _export(net, cfg, path, sets, agreement_floor=1.01)
    assert path.read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]



def test_latency_only_int8_files_of_untrained_weights_export(tmp_path):
    """Latency datasets time int8 files of untrained weights (logits ~1e-12, top-1 meaningless):
    they ask for no agreement, and the compaction check must not refuse them either."""
    from ofa_engine import SearchSpace
    from ofa_engine.runtime.export import export_subnets
    space = SearchSpace.preset("tiny-fmnist")
    configs = [space.sample(np.random.default_rng([3, i])) for i in range(2)]
    paths = export_subnets(space, configs, [tmp_path / f"{i}.onnx" for i in range(2)], precision="int8")
    for path in paths:
        assert quantization_metadata(path)["agreement_floor"] == 0.0
        make_session(path)

@pytest.mark.parametrize("calibration, message", [
    (np.zeros((0, 28, 28), np.uint8), "calibration set is empty"),
    (np.zeros((0, 1, 20, 20), np.float32), "calibration set is empty"),
    (np.zeros((5, 1, 7, 7), np.float32), r"calibration images have shape \(5, 1, 7, 7\); needed: \(N, 1, 20, 20\)"),
    (np.zeros((5, 3, 9, 28, 28), np.uint8), "calibration images: images must be"),
    (np.full((5, 1, 20, 20), np.nan, np.float32), "NaN"),
    (np.zeros((5, 1, 20, 20), np.int64), "needed: preprocessed float32"),
])
def test_bad_calibration_input_is_refused(small, sets, tmp_path, calibration, message):
    cfg, net = small
    with pytest.raises(ValueError, match=message):
        export_onnx(net, cfg, tmp_path / "m.onnx", precision="int8", calibration=calibration,
                    evaluation=sets[1])
    assert not list(tmp_path.iterdir())


def test_unknown_precision_is_refused(small, tmp_path):
    cfg, net = small
    for bad in ("int4", "FP32", None, 8):
        with pytest.raises(ValueError, match="allowed: fp32, int8"):
            export_onnx(net, cfg, tmp_path / "m.onnx", precision=bad)
        with pytest.raises(ValueError, match="allowed: fp32, int8"):
            check_precision(bad)
    with pytest.raises(ValueError, match="calibration method = 'kl'"):
        export_onnx(net, cfg, tmp_path / "m.onnx", precision="int8", calibration_method="kl")
    with pytest.raises(ValueError, match="precision = 'fp16'"):
        specialize("stm32f746", precision="fp16")
    assert not list(tmp_path.iterdir())


def test_profiles_state_their_precision():
    for name in ("stm32f412", "stm32f746", "stm32h743"):
        profile = load_profile(name)
        assert profile.precision == "int8" and profile.precisions == ("int8",)   # int8 kernels only
    assert load_profile("cpu-ort-1t").precisions == ("fp32", "int8")   # its int8 latency model
    assert load_profile("cpu-ort-2t").precisions == ("fp32",)
    data = load_profile("cpu-ort-1t").to_dict()
    data["runtime"]["precision"] = "int8"
    assert load_profile(data).precision == "int8"
    data["runtime"]["precision"] = "int4"
    with pytest.raises(ProfileError, match=r"'runtime.precision' = 'int4'; allowed: 'fp32', 'int8'"):
        load_profile(data)


def test_cli_precision_flag(capsys, tmp_path):
    assert main(["export", "--supernet", "tiny-fmnist", "--config", "smallest", "--out",
                 str(tmp_path / "m.onnx"), "--precision", "int4"]) == 2
    assert "invalid choice: 'int4'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow   # an int8 specialization per MCU profile (quantizer calibration)
@pytest.mark.parametrize("name", ["stm32f412", "stm32f746", "stm32h743"])
def test_mcu_specialize_int8_fits_the_flash_budget(name, tmp_path):
    profile = load_profile(name)
    spec = specialize(name, out=tmp_path / "m.onnx")   # the profile's precision: int8
    report = spec.report
    assert report["precision"] == "int8" and read_metadata(spec.onnx_path)["precision"] == "int8"
    assert len(spec.onnx_bytes) == spec.onnx_path.stat().st_size <= profile.flash_kb * 1024
    measured = report["measured"]
    # Flash: the file's weights and biases and every scale and zero point (tests/test_deployment_bytes.py)
    sizes = weight_bytes(spec.onnx_bytes)
    assert round(measured["flash_kb"] * 1024) == (sizes["weight_bytes"] + sizes["scale_bytes"] + sizes["zero_point_bytes"]
                                                  + sizes["activation_qparam_bytes"]) > measured["weight_bytes"]
    assert set(measured["accuracies"]) == {"fp32", "int8"}
    assert measured["accuracies"]["int8"] == measured["accuracy"]
    assert measured["int8_agreement"] >= AGREEMENT_FLOOR
    assert read_metadata(spec.onnx_path)["quantization"]["calibration_images"] == INT8_CALIBRATION_IMAGES


def test_int8_calibration_subset_spreads_over_the_package_classes():
    calib = load_split("calib")
    index = calibration_subset(calib)
    assert len(index) == INT8_CALIBRATION_IMAGES < len(calib)
    assert np.bincount(calib.labels[index.numpy()]).tolist() == [INT8_CALIBRATION_IMAGES // 10] * 10
    # a package whose images are grouped by class gets every class too, not the first few
    grouped = calib.subset(np.argsort(calib.labels, kind="stable"))
    assert np.bincount(grouped.labels[calibration_subset(grouped).numpy()]).tolist() == [INT8_CALIBRATION_IMAGES // 10] * 10
    assert calibration_subset(ImageSet(calib.images, None, calib.classes), 7) == slice(0, 7)


def test_latency_model_per_precision():
    cpu = load_profile("cpu-ort-1t")
    int8 = cpu.for_precision("int8")
    assert cpu.for_precision("fp32") is cpu and int8.precision == "int8"
    cfgs = [cpu.search_space.largest(), cpu.search_space.smallest()]
    # the int8 model is another fit (ORT's x86 int8 kernels run at another speed), with its quality
    assert not np.allclose(int8.predict_latency_ms(cfgs), cpu.predict_latency_ms(cfgs), rtol=0.2)
    assert int8.quality["n_train"] + int8.quality["n_test"] == 100
    # a profile without an int8 model keeps its own; a look-alike is not the bundled profile
    other = load_profile("cpu-ort-2t")
    assert other.for_precision("int8") is other
    data = cpu.to_dict()
    data["display_name"] = "someone else's machine"
    lookalike = load_profile(data)
    assert lookalike.for_precision("int8") is lookalike


@pytest.mark.slow   # an int8 specialization (quantizer calibration)
def test_cpu_specialize_in_int8_searches_with_the_int8_latency_model():
    spec = specialize("cpu-ort-1t", precision="int8", strategy="random")
    int8 = load_profile("cpu-ort-1t").for_precision("int8")
    predicted = spec.report["predicted"]["latency_ms"]
    assert predicted == pytest.approx(float(int8.predict_latency_ms(spec.result.config)[0]))
    assert spec.report["measured"]["latency_ms"] > 0 and spec.report["precision"] == "int8"
