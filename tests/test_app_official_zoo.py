"""The app with packages of the official zoo's other families (issue 36): the sidebar picker lists
a ResNet50D and a ProxylessNAS package, How OFA works explains them, the ResNet specializes and
downloads, Deploy everywhere runs on the ProxylessNAS package, and CNN or Transformer? puts one
subnet of every installed family side by side.

The packages are small spaces of those families (3 classes, 32 px, random weights), so that the
app's work stays in seconds; the official-size networks are checked against the official code in
tests/test_official_resnet.py and tests/test_official_proxyless.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

pytest.importorskip("streamlit")

from ofa_engine.families import family_named, family_of  # noqa: E402
from ofa_engine.packages import clear_package_cache  # noqa: E402
from ofa_engine.packages.build import write_package  # noqa: E402
from tests.helpers_packages import LABELS, random_images  # noqa: E402
from tests.test_app_packages import check_downloaded_onnx, open_app, pick, specialize_in_app  # noqa: E402

# Small spaces of the two families: the official layouts, narrower, at 32 px, 3 classes.
SPACES = {
    "resnet": dataclasses.replace(family_named("resnet").preset("ofa-resnet50d"), name="resnet-shapes",
                                  num_classes=3, labels=LABELS, resolutions=(24, 32), stem_channels=16,
                                  stage_widths=(32, 64, 96, 128), mean=(0.2, 0.2, 0.2), std=(0.3, 0.3, 0.3)),
    "proxyless": dataclasses.replace(family_named("proxyless").preset("ofa-proxyless-w1.3"), name="proxyless-shapes",
                                     num_classes=3, labels=LABELS, resolutions=(24, 28, 32), width_mult=0.5,
                                     mean=(0.2, 0.2, 0.2), std=(0.3, 0.3, 0.3)),
}


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory) -> Path:
    """A folder with one package of each family (12 + 12 random images, no predictor)."""
    root = tmp_path_factory.mktemp("zoo")
    for family, space in SPACES.items():
        torch.manual_seed(0)
        supernet = family_of(space).build_supernet().eval()
        with torch.no_grad():
            # int8 files must agree with the float model: logits far apart, as a trained net's are.
            linear = supernet.classifier.linear if family == "resnet" else supernet.classifier
            linear.bias.copy_(torch.tensor([0.0, 8.0, 16.0]))
        write_package(root / space.name, supernet, random_images(12, 1), random_images(12, 2), name=space.name,
                      provenance={"dataset": "random test images", "commands": ["made by test_app_official_zoo"],
                                  "date": "2026-12-05T00:00:00Z"})
    yield root
    clear_package_cache()
    from app.resources import package_entries
    package_entries.clear()


def ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.mark.slow   # the app opened, two int8 specializations and four in the comparison
def test_zoo_packages_specialize_deploy_and_compare_in_the_app(zoo_dir, monkeypatch, tmp_path):
    at = open_app(monkeypatch, zoo_dir)
    options = at.sidebar.selectbox(key="supernet_choice").options
    for space in SPACES.values():
        assert any(o.startswith(f"{space.name} (from ") for o in options), options

    at.selectbox(key="spec_profile").set_value("stm32f746").run()
    for family, space in SPACES.items():
        pick(at, space.name)
        ok(at)
        model = " ".join(c.value for c in at.sidebar.caption)
        assert f"`{space.name}`" in model and "3-class 3-channel" in model, model
        at.switch_page("views/how_ofa_works.py").run()   # says the family is imported, not trained here
        ok(at)
        assert f"This family (`{family}`) is not trained here" in " ".join(m.value for m in at.markdown)
        if family == "resnet":   # the Specialize page: its report and download
            at.switch_page("views/specialize.py").run()
            done = specialize_in_app(at, "stm32f746")
            report = done["report"]
            assert report["space"] == space.name and report["precision"] == "int8"
            assert set(report["config"]) == {"d", "e", "w", "image_size"}     # the lab's form
            assert family_of(space).validate(report["config"])
            check_downloaded_onnx(done, tmp_path, LABELS)
        else:                    # Deploy everywhere: a file per device, in its precision
            at.switch_page("views/deploy.py").run()
            at.multiselect(key="deploy_devices").set_value(["stm32f412"]).run()
            at.button[0].click().run()
            ok(at)
            (entry,) = at.session_state["deployment"]
            assert entry["profile"] == "stm32f412" and entry["precision"] == "int8"
            assert entry["report"]["space"] == space.name
            assert set(entry["report"]["config"]) == {"ks", "e", "d", "image_size"}    # the lab's form
            assert any(b.proto.label.startswith("Download all (1 ONNX file") for b in at.get("download_button"))

    # CNN or Transformer?: one row per installed family, these packages picked for theirs.
    at.switch_page("views/families.py").run()
    for family, space in SPACES.items():
        box = at.selectbox(key=f"fam_pkg_{family}")
        (path,) = [o for o in box.options if Path(o).name == space.name]
        box.set_value(path).run()
    at.selectbox(key="fam_profile").set_value("cpu-ort-1t").run()
    at.radio(key="fam_field").set_value("macs_m").run()
    ok(at)
    at.button(key="fam_run").click().run()
    ok(at)
    table = at.dataframe[0].value
    assert sorted(table["family"]) == ["mbv3", "proxyless", "resnet", "vit"], table
    for family, space in SPACES.items():
        row = table[table["family"] == family].iloc[0]
        assert row["package"] == space.name and row["accuracy measured"] >= 0, row
