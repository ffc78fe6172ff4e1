""""BN recalibrated" only where there is BatchNorm: the ViT (LayerNorm) has none, so the report's
measured sources, a package's accuracy report and the app's progress and How OFA works text say
so only for a network with BatchNorm; MobileNetV3's words are those of before (issue 35)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ofa_engine import specialize
from ofa_engine.packages import load_package
from ofa_engine.packages.build import accuracy_report, write_package

IMAGES = 32


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """{"mbv3": a package of the bundled CNN's supernet, "vit": of the bundled ViT's}, each with 32
    calibration and evaluation images of the bundled tiny-fmnist package (cheap to specialize)."""
    bundled = load_package("tiny-fmnist")
    calibration, evaluation = (s.subset(np.arange(IMAGES)) for s in (bundled.calibration, bundled.evaluation))
    vit = load_package("vit-fmnist").supernet
    root = tmp_path_factory.mktemp("bn")
    return {name: (write_package(root / name, net, calibration, evaluation, name=f"bn-{name}"), net, calibration,
                   evaluation) for name, net in (("mbv3", bundled.supernet), ("vit", vit))}


def test_the_accuracy_report_says_bn_only_for_a_network_with_batchnorm(packages):
    _, cnn, calibration, evaluation = packages["mbv3"]
    assert accuracy_report(cnn, calibration, evaluation)["bn"] == "recalibrated on the package's calibration images"
    _, vit, calibration, evaluation = packages["vit"]
    assert accuracy_report(vit, calibration, evaluation)["bn"] == (
        "none: the network has no BatchNorm, nothing to recalibrate")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_measured_sources_say_bn_only_for_a_network_with_batchnorm(packages, precision, tmp_path):
    sources = {}
    for name, (path, *_) in packages.items():
        profile = None if precision == "fp32" else "stm32f746"     # neither measures latency here
        report = specialize(profile, {}, "random", seed=0, supernet=str(path), precision=precision,
                            strategy_options={"samples": 4}).report
        sources[name] = report["measured_sources"]
    cnn, vit = sources["mbv3"], sources["vit"]
    assert cnn["accuracy"] == (f"exported ONNX file in ONNX Runtime on the package's {IMAGES} evaluation images, "
                               f"BN recalibrated on its {IMAGES} calibration images")
    assert vit["accuracy"] == (f"exported ONNX file in ONNX Runtime on the package's {IMAGES} evaluation images "
                               "(no BatchNorm: nothing to recalibrate)")
    if precision == "fp32":
        assert cnn["flash_kb"] == "counted in the written file: its float32 weights and biases (BN folded)"
        assert vit["flash_kb"] == "counted in the written file: its float32 weights and biases"
    else:
        assert cnn["accuracies"] == ("the same images: the float model (BN folded) and the int8 file, "
                                     "both in ONNX Runtime")
        assert vit["accuracies"] == "the same images: the float model and the int8 file, both in ONNX Runtime"
    assert not any("BN" in text for text in vit.values()), vit


def test_the_specialize_progress_says_bn_only_for_a_network_with_batchnorm():
    pytest.importorskip("streamlit")
    from app.widgets import stage_text
    assert stage_text("extract", lambda: True) == "extracting the subnet and recalibrating its BatchNorm"
    assert stage_text("extract", lambda: False) == "extracting the subnet (no BatchNorm to recalibrate)"
    asked = []
    assert stage_text("search", lambda: asked.append(1)) == "searching" and not asked   # asked at extraction only


def test_how_ofa_works_says_bn_recalibrated_only_for_the_cnn(monkeypatch):
    """The landscape's line on the accuracy predictor's data, for the bundled CNN and ViT packages
    (the ViT package has no accuracy-dataset.csv yet: a few rows stand in for it)."""
    pytest.importorskip("streamlit")
    import pandas as pd
    from streamlit.testing.v1 import AppTest

    import app.resources
    from app.resources import package_entries
    from ofa_engine.packages import ENV_VAR
    from ofa_engine.packages.package import bundled_packages
    monkeypatch.delenv(ENV_VAR, raising=False)
    package_entries.clear()
    samples, csv = app.resources.predictor_samples, app.resources.predictor_csv
    rows = pd.DataFrame({"config": ["a", "b", "c"], "macs": [3e6, 5e6, 7e6], "accuracy": [0.85, 0.88, 0.9]})
    monkeypatch.setattr(app.resources, "predictor_samples", lambda: samples() if csv() is not None else rows)
    monkeypatch.setattr(app.resources, "predictor_csv", lambda: csv() or Path("accuracy-dataset.csv"))
    app = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
    lines = {}
    for name in ("tiny-fmnist", "vit-fmnist"):
        at = AppTest.from_file(str(app), default_timeout=300).run()
        at.sidebar.selectbox(key="supernet_choice").set_value(str(bundled_packages()[name])).run()
        at.switch_page("views/how_ofa_works.py").run()
        assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
        (lines[name],) = [m.value for m in at.markdown if "the accuracy predictor's training data" in m.value]
    assert "each extracted, BN-recalibrated and measured on the 5,000 Fashion-MNIST holdout" in lines["tiny-fmnist"]
    assert "each extracted and measured on" in lines["vit-fmnist"] and "BN" not in lines["vit-fmnist"]
