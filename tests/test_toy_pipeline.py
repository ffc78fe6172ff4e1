"""A network family the engine has never heard of goes through the whole pipeline: the toy CNN of
`toy_network_family` (defined in the tests only, registered for this module) is written as a
package by the engine's own writer, loaded back, and specialized into ONNX files that ONNX
Runtime runs, with the numbers the family's closed forms give. Nothing on the way may assume
MobileNetV3 (issue 35)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from ofa_engine.datasets.images import ImageSet
from ofa_engine.families import FAMILIES, family_named, family_of
from ofa_engine.packages import load_package
from ofa_engine.packages.build import accuracy_report, write_package

from toy_network_family import FAMILY, LABELS, PRESET, ToyNetConfig, ToyNetFamily, synthetic_images, trained_supernet

# Between the smallest subnet's MACs (6,492) and the largest's (115,224): some subnets fit, not all.
BUDGET = {"macs_m": 0.05}


@pytest.fixture(scope="module")
def toy_family():
    FAMILIES.register(FAMILY, ToyNetFamily)
    try:
        yield family_named(FAMILY)
    finally:
        FAMILIES.unregister(FAMILY)


@pytest.fixture(scope="module")
def built(toy_family, tmp_path_factory):
    """(package folder, the supernet written into it, its calibration and evaluation images)."""
    supernet = trained_supernet()
    calibration = ImageSet(*synthetic_images(90, seed=1), LABELS)
    evaluation = ImageSet(*synthetic_images(120, seed=2), LABELS)
    provenance = {"commands": ["tests/test_toy_pipeline.py"], "dataset": "synthetic bars (toy_network_family)",
                  "accuracy_report": accuracy_report(supernet, calibration, evaluation),
                  "calibration_source": "synthetic_images(90, seed=1)",
                  "evaluation_source": "synthetic_images(120, seed=2)"}
    folder = write_package(tmp_path_factory.mktemp("packages") / "toy-pkg", supernet, calibration, evaluation,
                           name="toy-pkg", provenance=provenance)
    return folder, supernet, calibration, evaluation


def test_the_toy_family_keeps_the_contract(toy_family):
    family = family_of(PRESET.name)
    assert isinstance(family, ToyNetFamily) and family.family == FAMILY
    assert toy_family.space_from_dict(json.loads(json.dumps(PRESET.to_dict()))) == PRESET
    net = family.build_supernet()
    assert family.supernet_problems(net.state_dict()) == []
    rng = np.random.default_rng(0)
    for cfg in [PRESET.largest(), PRESET.smallest()] + [PRESET.sample(rng) for _ in range(4)]:
        sub = net.extract(cfg)
        assert (sub.config, sub.space_name) == (cfg, PRESET.name)
        analytic = family.analyze(cfg)
        assert family.count_macs(sub, cfg) == analytic["macs"]
        assert sum(p.numel() for p in sub.parameters()) == analytic["params"]
        rows = family.describe(cfg)
        assert sum(r["macs"] for r in rows if r["active"]) == analytic["macs"]
        assert sum(r["params"] for r in rows if r["active"]) == analytic["params"]
        x = torch.randn(2, *family.input_shape(cfg))
        with torch.no_grad():
            torch.testing.assert_close(net.eval()(x, cfg), sub(x))
        assert family.to_configs(family.to_genes(cfg)) == [cfg]
        assert PRESET.parse_config(json.dumps(cfg.to_dict())) == cfg


def test_the_engine_writes_and_loads_a_package_of_the_toy_family(built):
    folder, supernet, calibration, evaluation = built
    package = load_package(folder)
    assert package.manifest.family == FAMILY and package.space == PRESET
    assert package.summary()["family"] == FAMILY and package.labels == LABELS
    assert package.accuracy_source == "proxy: MACs"
    loaded = package.supernet.state_dict()
    for key, value in supernet.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    np.testing.assert_array_equal(package.calibration.images, calibration.images)
    np.testing.assert_array_equal(package.evaluation.labels, evaluation.labels)
    report = package.provenance["accuracy_report"]
    assert report["largest"] > 0.8 and report["smallest"] > 0.8     # chance: 1/3


@pytest.mark.parametrize("strategy, precision", [("evolution", "fp32"), ("random", "int8"), ("grid", "fp32")])
def test_specialize_turns_a_toy_package_into_onnx(built, tmp_path, strategy, precision):
    from ofa_engine import specialize
    from ofa_engine.runtime.evaluation import calibrate_bn
    from ofa_engine.runtime.export import read_metadata
    from ofa_engine.runtime.ort import make_session
    from ofa_engine.runtime.preprocess import preprocess
    folder, supernet, calibration, evaluation = built
    out = tmp_path / "toy.onnx"
    spec = specialize(None, BUDGET, strategy, seed=0, supernet=folder, out=out, precision=precision)
    report, family = spec.report, family_of(PRESET)
    cfg = family.validate(report["config"])
    assert isinstance(spec.result.config, ToyNetConfig) and cfg == spec.result.config == spec.model.config
    assert report["space"] == PRESET.name and report["supernet"] == "toy-pkg"
    # The MACs proxy (no predictor) ranks by MACs: the subnet is the one with the most MACs in budget.
    every = family.analytic_efficiency(np.array(list(np.ndindex(*family.genome.cardinality))))["macs"]
    best = every[every <= BUDGET["macs_m"] * 1e6].max()
    analytic = family.analyze(cfg)
    assert report["predicted"]["macs"] == analytic["macs"] == best
    assert report["predicted"]["accuracy_source"] == "proxy: MACs"
    assert (report["measured"]["macs"], report["measured"]["params"]) == (analytic["macs"], analytic["params"])
    deployed = family.deployment_bytes(cfg, precision)
    assert report["measured"]["peak_memory_kb"] * 1024 == deployed["peak_activation_bytes"]
    if precision == "fp32":   # the file stores the BN-folded weights and biases in float32
        assert report["measured"]["flash_kb"] * 1024 == deployed["flash_bytes"]

    # The subnet's BN statistics are the package's calibration images'.
    expected = calibrate_bn(supernet.extract(cfg), calibration.images, PRESET)
    for key, value in expected.state_dict().items():
        torch.testing.assert_close(spec.model.state_dict()[key], value)

    # The file: a valid ONNX model with the toy config, space and labels, that ONNX Runtime runs
    # as the extracted module does, and whose accuracy is the report's.
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    assert out.read_bytes() == spec.onnx_bytes
    assert json.loads(out.with_suffix(".json").read_text())["config"] == report["config"]
    meta = read_metadata(out)
    assert meta["config"] == cfg.to_dict() and meta["space"] == PRESET.name and meta["labels"] == list(LABELS)
    assert meta["preprocessing"]["resize"] == [cfg.image_size] * 2
    x = preprocess(evaluation.images, PRESET, cfg.image_size)
    (logits,) = make_session(str(out)).run(None, {"input": x.numpy()})
    with torch.no_grad():
        reference = spec.model(x).numpy()
    if precision == "fp32":
        np.testing.assert_allclose(logits, reference, atol=1e-4)
    else:
        assert meta["precision"] == "int8"
        assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.9
    assert report["measured"]["accuracy"] == pytest.approx(float((logits.argmax(1) == evaluation.labels).mean()))


def test_specialize_on_the_toy_package_is_deterministic_and_reads_a_zip_without_weights(built, tmp_path):
    """The same seed gives the same subnet and file; a zip of the package, loaded without its
    weights (the app's way), specializes to the same."""
    import shutil
    from ofa_engine import specialize
    folder = built[0]
    a = specialize(None, BUDGET, "evolution", seed=3, supernet=folder).report
    b = specialize(None, BUDGET, "evolution", seed=3, supernet=folder).report
    zipped = load_package(shutil.make_archive(str(tmp_path / "toy-pkg"), "zip", folder.parent, folder.name),
                          weights=False)
    assert zipped.supernet is None and zipped.space == PRESET
    c = specialize(None, BUDGET, "evolution", seed=3, supernet=zipped).report
    assert a["config"] == b["config"] == c["config"]
    assert a["measured"]["accuracy"] == b["measured"]["accuracy"] == c["measured"]["accuracy"]
    assert a["onnx"]["sha256"] == b["onnx"]["sha256"] == c["onnx"]["sha256"]


@pytest.fixture(scope="module")
def with_predictor(built, tmp_path_factory):
    """A second package of the same supernet with an accuracy predictor fitted on every subnet's
    measured accuracy (BN recalibrated on the calibration images, on the evaluation images)."""
    from ofa_engine.predictors.accuracy import fit_accuracy_predictor
    from ofa_engine.runtime.evaluation import accuracy, calibrate_bn
    _, supernet, calibration, evaluation = built
    family = family_of(PRESET)
    configs = family.to_configs(np.array(list(np.ndindex(*family.genome.cardinality))))
    measured = [accuracy(calibrate_bn(supernet.extract(c), calibration.images, PRESET), evaluation.images,
                         evaluation.labels, PRESET) for c in configs]
    predictor = fit_accuracy_predictor(PRESET, configs, measured, epochs=100, ensemble=2)
    folder = write_package(tmp_path_factory.mktemp("packages") / "toy-predicted", supernet, calibration, evaluation,
                           name="toy-predicted", accuracy_predictor=predictor)
    return folder, predictor, configs


def test_specialize_a_toy_package_with_its_predictor_for_an_mcu(with_predictor, tmp_path):
    """The package's accuracy predictor (on the family's encoding) ranks the subnets, and an
    analytical MCU profile predicts latency, SRAM and Flash of the toy's int8 file."""
    from ofa_engine import specialize
    folder, predictor, configs = with_predictor
    assert load_package(folder).accuracy_source == "predictor"
    spec = specialize("stm32f746", BUDGET, "evolution", seed=0, supernet=folder, out=tmp_path / "mcu.onnx")
    report, family = spec.report, family_of(PRESET)
    cfg = family.validate(report["config"])
    assert report["precision"] == "int8" and report["profile"] == "stm32f746"
    assert report["predicted"]["accuracy_source"] == "predictor"
    assert report["predicted"]["accuracy"] == pytest.approx(float(predictor.predict([cfg])[0]))
    assert report["predicted"]["latency_ms"] > 0
    macs = family.analyze(configs)["macs"]
    feasible = [c for c, m in zip(configs, macs) if m <= BUDGET["macs_m"] * 1e6]
    assert report["predicted"]["accuracy"] == pytest.approx(float(predictor.predict(feasible).max()))
    assert report["measured"]["macs"] == family.analyze(cfg)["macs"]
    assert report["measured"]["peak_memory_kb"] * 1024 == family.deployment_bytes(cfg, "int8")["peak_activation_bytes"]
    assert onnx.load(str(tmp_path / "mcu.onnx")).graph.node   # a readable model, quantized


def test_a_manifest_leaves_the_smallest_resolution_to_the_family(tmp_path):
    """The manifest bounds resolutions to 1..1024 only (the toy family takes 6 x 6 input);
    MobileNetV3 still refuses a size below its own 8, naming the field."""
    import shutil
    from ofa_engine.packages.manifest import PackageError
    from ofa_engine.packages.package import BUNDLED_DIR
    folder = tmp_path / "tiny"
    shutil.copytree(BUNDLED_DIR / "tiny-fmnist", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["preprocessing"]["resolutions"] = [4] + manifest["preprocessing"]["resolutions"][1:]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match="preprocessing.resolutions"):
        load_package(folder, weights=False)
