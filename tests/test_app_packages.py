"""The app with a supernet package of your own (issue 22, the app): the sidebar picker lists the
packages in $OFA_SUPERNETS (a broken one with its error, not selectable), every page reads the chosen
package, and a specialization under an MCU profile downloads an ONNX file of the package's channels,
classes and labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from ofa_engine.families.mbv3.supernet import Supernet  # noqa: E402
from ofa_engine.packages import ENV_VAR, clear_package_cache  # noqa: E402
from ofa_engine.packages.build import write_package  # noqa: E402
from tests.helpers_packages import LABELS, SPACE, random_images  # noqa: E402
from ofa_engine.runtime.export import read_metadata  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
TIMEOUT = 300


@pytest.fixture(scope="module")
def packages_dir(tmp_path_factory) -> Path:
    """A folder with a package of an untrained 3-channel, 3-class supernet (12 + 12 random
    images, no predictor) and a broken package (a manifest of another version)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("supernets")
    supernet = Supernet(SPACE).eval()
    with torch.no_grad():
        # The microcontroller profiles (the only ones offered for this space) export int8 files,
        # which must agree with the float model: logits far apart, as a trained net's are, not the
        # near-ties of random weights that int8 rounding flips.
        supernet.classifier.bias.copy_(torch.tensor([0.0, 8.0, 16.0]))
    write_package(root / "shapes", supernet, random_images(12, 1), random_images(12, 2), name="shapes",
                  provenance={"dataset": "random test images", "commands": ["made by test_app_packages"],
                              "date": "2026-12-02T00:00:00Z"})
    (root / "broken").mkdir()
    manifest = json.loads((root / "shapes" / "manifest.json").read_text())
    (root / "broken" / "manifest.json").write_text(json.dumps({**manifest, "name": "broken", "version": 2}))
    yield root
    clear_package_cache()


def open_app(monkeypatch, folder: Path) -> AppTest:
    monkeypatch.setenv(ENV_VAR, str(folder))
    from app.resources import package_entries
    package_entries.clear()           # listed again with this folder
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def pick(at: AppTest, name: str) -> str:
    """Choose the listed package `name` in the sidebar picker; returns its path."""
    from app.resources import package_entries
    (path,) = [str(e.path) for e in package_entries() if e.error is None and e.name == name]
    at.sidebar.selectbox(key="supernet_choice").set_value(path).run()
    assert not at.exception, [e.value for e in at.exception]
    return path


def specialize_in_app(at: AppTest, profile: str = "stm32f746", macs_m: float | None = None) -> dict:
    """Specialize on the home page under `profile` (in its precision; the budget at its default,
    or MACs only), and return the session's result (report, onnx_bytes)."""
    at.selectbox(key="spec_profile").set_value(profile).run()
    if macs_m is not None:
        at.multiselect(key="spec_kinds").set_value(["macs_m"]).run()
        at.slider(key="spec_macs_m").set_value(macs_m).run()
    at.main.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at.session_state["specialization"]


def check_downloaded_onnx(done: dict, tmp_path: Path, labels: tuple[str, ...], channels: int = 3) -> None:
    import onnx
    path = tmp_path / "downloaded.onnx"
    path.write_bytes(done["onnx_bytes"])
    model = onnx.load(path)
    dims = lambda value: [d.dim_value for d in value.type.tensor_type.shape.dim][1:]  # noqa: E731
    assert dims(model.graph.input[0])[0] == channels and dims(model.graph.output[0]) == [len(labels)]
    metadata = read_metadata(path)
    assert metadata["labels"] == list(labels)
    assert metadata["preprocessing"]["channels"] == channels


def test_picker_lists_packages_and_a_broken_one_with_its_error(packages_dir, monkeypatch, tmp_path):
    at = open_app(monkeypatch, packages_dir)
    box = at.sidebar.selectbox(key="supernet_choice")
    assert box.value.endswith("tiny-fmnist") and any(o.startswith("shapes (from ") for o in box.options)
    assert not any(o.startswith("broken") for o in box.options)      # not selectable
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "broken" in captions and "version" in captions, captions  # shown with its error
    assert at.main.button[0].label == "Specialize" and not at.error   # the app still works

    at.selectbox(key="spec_profile").set_value("stm32f746").run()   # its budgets, for tiny-fmnist's ranges
    pick(at, "shapes")
    assert not at.error, [e.value for e in at.error]
    model = " ".join(c.value for c in at.sidebar.caption)
    assert "`shapes`" in model and "3-class 3-channel" in model and "circle" in model, model
    assert "MACs" in model                                            # no predictor: the proxy, said so
    assert "cpu-ort-1t" in model and "Not offered" in model           # learned profiles of another space
    options = at.selectbox(key="spec_profile").options
    assert not any("[cpu-ort-" in o for o in options) and any("[stm32f746]" in o for o in options), options
    assert "Re-measure this machine" not in [b.label for b in at.sidebar.button]   # only for tiny-fmnist
    provenance = " ".join(m.value for m in at.sidebar.markdown) + " ".join(c.value for c in at.sidebar.code)
    assert "random test images" in provenance and "made by test_app_packages" in provenance, provenance

    done = specialize_in_app(at, "stm32f746")
    assert done["report"]["predicted"]["accuracy_source"] == "proxy: MACs"
    assert any("ranked the subnets by **MACs**" in w.value for w in at.warning)
    check_downloaded_onnx(done, tmp_path, LABELS)
    # The prediction panel: the package's evaluation images and labels.
    panel = " ".join(m.value for m in at.main.markdown)
    assert re.search(r"true: \*\*(circle|square|triangle)\*\*", panel), panel

    # The other pages read the package too (no exception, no failure).
    for page in ("deploy", "compare", "how_ofa_works", "profiles"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
    # How OFA works: this package has no accuracy-dataset CSV, and says so.
    at.switch_page("views/how_ofa_works.py").run()
    assert any("has no accuracy-predictor data set" in i.value for i in at.info)
