"""The Streamlit app, page by page, with streamlit.testing.v1.AppTest (no browser, no server).

Every test also checks that no exception reached the page: user errors must be messages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from ofa_engine import SearchSpace, analyze  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
TIMEOUT = 300  # s per script run: the first loads the supernet; a specialization extracts a subnet


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    if page is not None:
        at.switch_page(f"views/{page}.py").run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def plain(text: str) -> str:
    """Markdown as the reader sees it: the app escapes user text (app.resources.md)."""
    return re.sub(r"\\(.)", r"\1", text)


def errors(at: AppTest) -> list[str]:
    return [plain(e.value) for e in at.error]


def download_labels(at: AppTest) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


def fast_profile(at: AppTest, key: str) -> str:
    """A measured CPU profile when there is one (latency budget), else the first profile."""
    box = at.selectbox(key=key)
    names = profile_options(at, key)
    name = "cpu-ort-1t" if "cpu-ort-1t" in names else names[0]
    box.set_value(name).run()
    return name


def profile_options(at: AppTest, key: str) -> list[str]:
    """Profile names of a profile select box (labels 'Display name [name]' or 'name (this session)')."""
    return [m.group(1) if (m := re.search(r"\[([^\]]+)\]", label)) else label.split(" (")[0]
            for label in at.selectbox(key=key).options]


# ------------------------------------------------------------------------------ navigation
def test_home_is_specialize_with_its_controls():
    at = open_page()
    assert at.title[0].value.startswith("Specialize")
    assert [b.label for b in at.main.button] == ["Specialize"]
    model = " ".join(c.value for c in at.sidebar.caption)
    assert "10-class grayscale" in model and "Fashion-MNIST" in model and "T-shirt/top" in model, model
    assert at.selectbox(key="spec_profile").options
    assert at.selectbox(key="spec_strategy").value == "evolution"
    assert at.multiselect(key="spec_kinds").value  # a budget kind is preselected
    assert not errors(at)


# ------------------------------------------------------------------------------ specialize
def test_specialize_small_budget_shows_cards_charts_and_downloads():
    at = open_page()
    fast_profile(at, "spec_profile")
    at.selectbox(key="spec_strategy").set_value("random").run()
    at.multiselect(key="spec_kinds").set_value(["macs_m"]).run()
    slider = at.slider(key="spec_macs_m")
    budget = slider.min + 0.25 * (slider.max - slider.min)
    slider.set_value(round(budget / slider.step) * slider.step).run()
    at.button[0].click().run()
    assert_clean(at)
    assert not errors(at)
    labels = [m.label.split(" ≤ ")[0] for m in at.metric]
    for label in ("Accuracy", "Latency", "Peak memory", "Flash", "MACs"):
        assert label in labels
    macs = next(m for m in at.metric if m.label.startswith("MACs ≤"))
    assert float(macs.value.split()[0]) <= at.slider(key="spec_macs_m").value + 1e-6
    assert {"Download ONNX", "Download report (JSON)"} <= set(download_labels(at))
    assert len(at.get("vega_lite_chart")) >= 3  # config picture, candidates, progress
    result = at.session_state["specialization"]
    assert len(result["onnx_bytes"]) > 10_000  # an ONNX model with its weights
    assert result["report"]["config"] == result["result"].config.to_dict()


def test_specialize_precision_defaults_to_the_profile_and_shows_in_the_result():
    at = open_page()
    at.selectbox(key="spec_profile").set_value("cpu-ort-1t").run()
    assert at.radio(key="spec_precision_cpu-ort-1t").value == "fp32"
    assert list(at.radio(key="spec_precision_cpu-ort-1t").options) == ["fp32", "int8"]
    at.selectbox(key="spec_profile").set_value("stm32f746").run()
    radio = at.radio(key="spec_precision_stm32f746")
    assert radio.value == "int8" and list(radio.options) == ["int8"]   # its latency model is of int8 kernels
    assert_clean(at)


@pytest.mark.slow   # an int8 specialization (quantized on 500 calibration images, checked on 2,000)
def test_specialize_stm32f746_in_int8_downloads_a_file_within_its_flash():
    at = open_page()
    at.selectbox(key="spec_profile").set_value("stm32f746").run()
    at.button[0].click().run()
    assert_clean(at)
    assert not errors(at)
    result = at.session_state["specialization"]
    assert result["precision"] == "int8" and result["report"]["precision"] == "int8"
    assert len(result["onnx_bytes"]) <= 1024 * 1024
    assert any(h.value.endswith(", int8") for h in at.subheader)
    assert any("**int8** ONNX file" in c.value and "fp32" in c.value for c in at.caption)


def test_every_slider_at_its_minimum_is_a_budget_some_subnet_meets():
    at = open_page()
    at.selectbox(key="spec_profile").set_value("cpu-ort-1t").run()   # fp32: int8's check is tested above
    at.multiselect(key="spec_kinds").set_value(["peak_memory_kb", "flash_kb", "macs_m"]).run()
    for key in ("spec_peak_memory_kb", "spec_flash_kb", "spec_macs_m"):
        slider = at.slider(key=key)
        slider.set_value(slider.min).run()
    at.button[0].click().run()
    assert_clean(at)
    assert not errors(at), errors(at)
    assert "Download ONNX" in download_labels(at)


def test_impossible_uploaded_profile_shows_its_reason_before_any_click():
    """A profile whose SRAM no subnet fits (uploaded): the reason is on the page at once, with no
    'use the smallest achievable' (the device cannot be changed); Specialize then downloads nothing."""
    from ofa_engine.devices.profiles import load_profile
    data = load_profile("stm32f746").to_dict()
    data["name"], data["display_name"] = "tiny-board", "Tiny board"
    data["memory"] = {**data["memory"], "sram_kb": 1.0}
    at = open_page("profiles")
    at.file_uploader(key="json_upload").set_value(("p.json", json.dumps(data).encode(), "application/json")).run()
    at.button(key="json_add").click().run()
    at.switch_page("views/specialize.py").run()
    at.selectbox(key="spec_profile").set_value("tiny-board").run()
    assert_clean(at)
    message = " ".join(errors(at))
    assert "No subnet fits this device" in message and "smallest achievable" in message, message
    assert "peak_memory_kb <= 1 " in message, message
    assert not [b for b in at.button if b.key == "spec_use_smallest"]
    at.button[0].click().run()
    assert_clean(at)
    assert "Download ONNX" not in download_labels(at)


def test_budgets_no_subnet_meets_together_offer_the_smallest_achievable_in_one_click():
    at = open_page()
    at.selectbox(key="spec_profile").set_value("cpu-ort-1t").run()
    at.multiselect(key="spec_kinds").set_value(["latency_ms", "macs_m"]).run()
    for key in ("spec_latency_ms", "spec_macs_m"):
        at.slider(key=key).set_value(at.slider(key=key).min)
    at.button[0].click().run()     # the form's submit: both sliders at their minimum
    assert_clean(at)
    message = " ".join(errors(at))
    assert "This budget cannot be met" in message and "each alone is achievable" in message, message
    assert "Download ONNX" not in download_labels(at)
    at.button(key="spec_use_smallest").click().run()
    assert_clean(at)
    assert not errors(at), errors(at)
    assert at.slider(key="spec_latency_ms").value > at.slider(key="spec_latency_ms").min or \
        at.slider(key="spec_macs_m").value > at.slider(key="spec_macs_m").min
    at.button[0].click().run()
    assert_clean(at)
    assert not errors(at), errors(at)
    assert "Download ONNX" in download_labels(at)


def test_cards_have_units_noisy_latency_is_remeasured_and_the_model_predicts():
    """One specialization: every card's title and value carry units; a measured latency whose
    spread straddles the budget says 'noisy' (not 'over budget') with a re-measure button; the
    'See the model work' panel labels evaluation images and an uploaded PNG."""
    import io

    from PIL import Image

    from app import format as fmt
    at = open_page()
    at.selectbox(key="spec_profile").set_value("cpu-ort-1t").run()
    at.button[0].click().run()
    assert_clean(at)
    assert not errors(at), errors(at)
    cards = {m.label.split(" ≤ ")[0]: m for m in at.metric}
    assert re.fullmatch(r"Latency ≤ [0-9.]+ ms", cards["Latency"].label)
    assert re.fullmatch(r"[0-9.]+ ms", cards["Latency"].value)
    assert re.fullmatch(r"[0-9.]+ %", cards["Accuracy"].value)
    for label in ("Peak memory", "Flash"):
        assert re.fullmatch(r"[0-9.,]+ (KB|MB)", cards[label].value), cards[label].value
    assert re.fullmatch(r"[0-9.]+ M", cards["MACs"].value)
    report = at.session_state["specialization"]["report"]
    assert cards["MACs"].value == fmt.quantity(report["predicted"]["macs"] / 1e6, "M")
    assert any(c.value.startswith("median of the runs, IQR ") and c.value.endswith(" ms") for c in at.caption)

    # The stored measurement made noisy: median over the budget, but by less than its spread.
    limit = at.slider(key="spec_latency_ms").value
    report["measured"]["latency_ms"], report["measured"]["latency_iqr_ms"] = limit * 1.05, limit * 0.2
    at.run()
    captions = " ".join(c.value for c in at.caption)
    assert "measurement was noisy" in captions and "over budget" not in captions, captions
    at.button(key="spec_remeasure").click().run()
    assert_clean(at)
    latency = at.session_state["specialization"]["latency"]
    assert latency["median_ms"] > 0 and latency["runs"] > 0
    assert any(c.value.startswith("Latency re-measured: median") for c in at.caption)

    shown = [plain(m.value) for m in at.markdown if m.value.startswith("true: ")]
    assert len(shown) == 8
    from ofa_engine.families.mbv3.space import FASHION_MNIST_LABELS
    assert [re.match(r"true: \*\*(.+?)\*\*", t).group(1) for t in shown] == list(FASHION_MNIST_LABELS[:8])
    assert all("predicted: " in t for t in shown)

    from ofa_engine.datasets.images import load_split
    image = load_split("test2k").images[0]
    png = io.BytesIO()
    Image.fromarray(255 - image).save(png, format="PNG")     # dark on light: the invert box undoes it
    at.checkbox(key="spec_predict_invert").check()
    at.file_uploader(key="spec_predict_image").set_value(("boot.png", png.getvalue(), "image/png")).run()
    assert_clean(at)
    assert not errors(at), errors(at)
    assert any(m.value.startswith("Predicted: **") for m in at.markdown)
    at.file_uploader(key="spec_predict_image").set_value(("x.png", b"not an image", "image/png")).run()
    assert any("'x.png' cannot be read as a PNG or JPEG" in e for e in errors(at)), errors(at)
    huge = io.BytesIO()
    Image.new("L", (5000, 4000)).save(huge, format="PNG")
    at.file_uploader(key="spec_predict_image").set_value(("huge.png", huge.getvalue(), "image/png")).run()
    assert any("'huge.png' is 5000 x 4000 pixels; allowed: at most 16,777,216" in e for e in errors(at)), errors(at)


def test_user_errors_shows_the_users_mistake_and_reports_a_bug_as_a_bug(monkeypatch, caplog):
    """`user_errors` shows the engine's message for a user's mistake (ValueError); a KeyError
    is a bug: logged with its traceback, and shown as an unexpected failure, not as the user's."""
    import logging

    import app.resources as resources
    shown = []
    monkeypatch.setattr(resources.st, "error", lambda text, **kwargs: shown.append(plain(text)))
    with resources.user_errors("The profile JSON"):
        raise ValueError("profile: missing field(s) ['quality']")
    with caplog.at_level(logging.ERROR, logger="ofa_app"), resources.user_errors("The profile JSON"):
        {}["quality"]
    assert shown[0] == "The profile JSON: profile: missing field(s) ['quality']"
    assert shown[1].startswith("The profile JSON failed unexpectedly (KeyError: 'quality')")
    assert "server log" in shown[1]
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [KeyError]
    assert KeyError not in resources.USER_ERRORS


def test_format_gives_significant_digits_and_units():
    from app import format as fmt
    assert fmt.sig(0.51634) == "0.516" and fmt.sig(449.93) == "450" and fmt.sig(0.99996) == "1.00"
    assert fmt.quantity(0.2119, "ms") == "0.212 ms" and fmt.quantity(None, "ms") == "n/a"
    assert fmt.memory_kb(3.125, 4) == "3.125 KB" and fmt.memory_kb(2048) == "2.00 MB"
    assert fmt.memory_bytes(78675968 * 1024) == "75.0 GB" and fmt.quantity(1536, "KB") == "1.50 MB"
    assert fmt.budget(0.5167, "ms") == "0.5167 ms" and fmt.percent(0.8512) == "85.1 %"


@pytest.mark.parametrize("median, iqr, verdict", [(0.50, 0.02, "within"), (0.60, 0.05, "over"),
                                                  (0.53, 0.05, "noisy"), (0.53, None, "over")])
def test_latency_is_over_budget_only_when_its_spread_clears_the_budget(median, iqr, verdict):
    from app.widgets import card_values, latency_verdict
    assert latency_verdict(median, iqr, 0.52) == verdict
    report = {"predicted": {"latency_ms": 0.5}, "measured": {"latency_ms": median, "latency_iqr_ms": iqr}}
    card = next(c for c in card_values(report, {"latency_ms": 0.52}) if c["field"] == "latency_ms")
    assert card["verdict"] == verdict and card["label"] == "Latency ≤ 0.52 ms"


# ------------------------------------------------------------------------------ deploy everywhere
@pytest.mark.slow   # five specializations, three of them int8 (quantized)
def test_deploy_everywhere_specializes_each_device_and_zips_them_with_a_manifest():
    import io
    import zipfile

    import onnxruntime as ort

    from app.deployment import deployment_zip
    at = open_page("deploy")
    at.multiselect(key="deploy_devices").set_value(["cpu-ort-1t", "stm32f412"]).run()
    at.button[0].click().run()
    assert_clean(at)
    assert not errors(at), errors(at)
    deployment = at.session_state["deployment"]
    assert [e["profile"] for e in deployment] == ["cpu-ort-1t", "stm32f412"]
    assert [e["precision"] for e in deployment] == ["fp32", "int8"]   # each profile's own
    table = at.table[0].value
    assert list(table.index) == ["cpu-ort-1t", "stm32f412"], table
    # Short cells (a long one is cut off): the device without its machine, whose latency in a few words.
    assert list(table["device"]) == ["ONNX Runtime CPU, 1 thread", "STM32F412 (Cortex-M4, 100 MHz, 256 KB SRAM, 1 MB Flash)"]
    assert list(table["latency from"]) == ["reference machine (Intel Xeon VM, 2026-11-28), not this one",
                                           "analytical (no device measured), 2026-11-28"]
    assert all(len(v) <= 60 for v in table["latency from"])
    assert all(re.fullmatch(r"[0-9.]+ %", a) for a in table["accuracy"])
    assert any(label.startswith("Download all (2 ONNX files") for label in download_labels(at))
    assert len([m for m in at.markdown if m.value.startswith("true: ")]) == 8

    space = SearchSpace.preset("tiny-fmnist")
    with zipfile.ZipFile(io.BytesIO(deployment_zip(deployment, space, "tiny-fmnist"))) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert manifest["supernet"] == "tiny-fmnist"
        assert sorted(z.namelist()) == sorted(["manifest.json"] + [d["file"] for d in manifest["devices"]])
        for device, entry in zip(manifest["devices"], deployment):
            assert device["config"] == entry["report"]["config"]
            session = ort.InferenceSession(z.read(device["file"]), providers=["CPUExecutionProvider"])
            size = device["config"]["image_size"]
            assert session.get_inputs()[0].shape[-2:] == [size, size]
            assert device["measured"]["accuracy"] == entry["report"]["measured"]["accuracy"]
        assert manifest["devices"][0]["latency_source"].startswith("reference machine (Intel(R) Xeon(R) Processor")


# ------------------------------------------------------------------------------ compare
def test_compare_strategies_table_and_charts():
    at = open_page("compare")
    fast_profile(at, "cmp_profile")
    at.multiselect(key="cmp_kinds").set_value(["macs_m"]).run()
    at.multiselect(key="cmp_strategies").set_value(["random", "evolution"]).run()
    at.button[0].click().run()
    assert_clean(at)
    assert not errors(at)
    table = at.dataframe[0].value
    assert list(table["strategy"]) == ["random", "evolution"]
    assert (table["MACs (M)"] <= at.slider(key="cmp_macs_m").value + 1e-6).all()
    assert (table["evaluations"] > 0).all()
    assert len(at.get("vega_lite_chart")) == 2


# ------------------------------------------------------------------------------ profiles
def latency_csv(n: int = 40, seed: int = 0, noise_seed: int | None = None) -> bytes:
    space = SearchSpace.preset("tiny-fmnist")
    configs = [space.sample(seed * 1000 + i) for i in range(n)]
    macs = analyze(space, configs)["macs"]
    rng = np.random.default_rng(seed if noise_seed is None else noise_seed)
    lines = ["file,config,median_ms,q1_ms,q3_ms,runs,threads,batch_size"]
    for i, (cfg, m) in enumerate(zip(configs, macs)):
        ms = 0.05 + m / 2e7 * (1 + 0.03 * rng.standard_normal())
        lines.append(f'm{i:03d}.onnx,"{cfg.to_json().replace(chr(34), chr(34) * 2)}",{ms:.5f},{ms * 0.98:.5f},'
                     f"{ms * 1.02:.5f},20,1,1")
    return ("\n".join(lines) + "\n").encode()


def test_profiles_page_lists_bundled_profiles_with_quality_chart():
    at = open_page("profiles")
    assert not errors(at)
    table = at.dataframe[0].value
    assert set(table["profile"]) >= {"stm32f412", "stm32f746", "stm32h743"}
    rows = table.set_index("profile")
    # Scores formatted with units; an analytical model was not fitted, so it has none (not "None").
    assert rows.loc["cpu-ort-1t", "MAPE"] == "2.05 %" and rows.loc["cpu-ort-1t", "held-out subnets"] == "80"
    assert rows.loc["stm32f746", "MAPE"] == "n/a (analytical)" and rows.loc["stm32f746", "Kendall tau"] == "n/a"
    assert not table.isin(["None", None]).any().any()
    # One type per column: Arrow refuses a column of ints and text (the page then logs an error).
    assert all(table[column].map(type).nunique() == 1 for column in table), table.dtypes
    assert rows.loc["cpu-ort-1t", "device"] == "ONNX Runtime CPU, 1 thread"
    assert len(at.get("vega_lite_chart")) == 1
    assert "Download profile JSON" in download_labels(at)


def test_calibrate_adds_a_rescaled_session_profile():
    """'Calibrate to this machine now' measures reference subnets here and adds
    '<name>-calibrated', offered on the Specialize page; an analytical profile has no button."""
    at = open_page("profiles")
    at.selectbox(key="prof_detail").set_value("stm32f746").run()
    assert not [b for b in at.button if b.key == "calibrate"]
    at.selectbox(key="prof_detail").set_value("cpu-ort-1t").run()
    at.button(key="calibrate").click().run()
    assert_clean(at)
    assert not errors(at)
    assert "cpu-ort-1t-calibrated" in set(at.dataframe[0].value["profile"])
    flash = [s.value for s in at.success if "cpu-ort-1t-calibrated" in s.value]
    assert flash and re.search(r"at \d+\.\d\dx the latency", flash[0])
    at.selectbox(key="prof_detail").set_value("cpu-ort-1t-calibrated").run()
    assert_clean(at)
    assert any("reference subnets measured for the calibration" in m.value for m in at.markdown)
    at.switch_page("views/specialize.py").run()
    assert "cpu-ort-1t-calibrated" in profile_options(at, "spec_profile")


def test_upload_latency_csv_creates_a_session_profile():
    at = open_page("profiles")
    at.text_input(key="csv_name").input("Lab Pi 5").run()
    at.file_uploader(key="csv_upload").set_value(("results.csv", latency_csv(), "text/csv")).run()
    at.button(key="csv_create").click().run()
    assert_clean(at)
    assert not errors(at)
    assert "lab-pi-5" in set(at.dataframe[0].value["profile"])
    assert any("lab-pi-5" in s.value for s in at.success)
    # The new profile is offered on the Specialize page of the same session.
    at.switch_page("views/specialize.py").run()
    assert "lab-pi-5" in profile_options(at, "spec_profile")


def test_several_runs_of_one_kit_make_one_profile_and_mismatched_runs_are_refused():
    at = open_page("profiles")
    at.text_input(key="csv_name").input("Noisy board").run()
    runs = [("results-1.csv", latency_csv(noise_seed=1), "text/csv"),
            ("results-2.csv", latency_csv(noise_seed=2), "text/csv")]
    at.file_uploader(key="csv_upload").set_value(runs).run()
    at.button(key="csv_create").click().run()
    assert_clean(at)
    assert not errors(at)
    assert "noisy-board" in set(at.dataframe[0].value["profile"])
    at.text_input(key="csv_name").input("Mixed board").run()
    at.file_uploader(key="csv_upload").set_value(
        [runs[0], ("other-kit.csv", latency_csv(seed=5), "text/csv")]).run()
    at.button(key="csv_create").click().run()
    assert_clean(at)
    assert any("does not measure the same subnets" in e for e in errors(at)), errors(at)
    assert "mixed-board" not in set(at.dataframe[0].value["profile"])


@pytest.mark.parametrize("payload, expected", [
    (b"file,config\nm.onnx,{}\n", "missing column"),
    (b"\xff\xfe\x00garbage", "UTF-8"),
    (b"file,config,median_ms,q1_ms,q3_ms,runs,threads,batch_size\nm.onnx,{\"wid\": 9},1,1,1,1,1,1\n", "row 1"),
])
def test_bad_latency_csv_is_refused_with_a_message(payload, expected):
    at = open_page("profiles")
    at.file_uploader(key="csv_upload").set_value(("results.csv", payload, "text/csv")).run()
    at.button(key="csv_create").click().run()
    assert_clean(at)
    assert any(expected in e for e in errors(at)), errors(at)


def test_oversized_upload_is_refused():
    at = open_page("profiles")
    at.file_uploader(key="csv_upload").set_value(("results.csv", b"x" * (600 * 1024), "text/csv")).run()
    at.button(key="csv_create").click().run()
    assert_clean(at)
    assert any("allowed: at most" in e for e in errors(at)), errors(at)


def test_profile_json_upload_valid_and_invalid():
    from ofa_engine.devices.profiles import load_profile
    data = load_profile("stm32f746").to_dict()
    data["name"], data["display_name"] = "my-board", "My board"
    at = open_page("profiles")
    at.file_uploader(key="json_upload").set_value(("p.json", json.dumps(data).encode(), "application/json")).run()
    at.button(key="json_add").click().run()
    assert_clean(at)
    assert not errors(at)
    assert "my-board" in set(at.dataframe[0].value["profile"])

    for payload, expected in [(b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"),
                              (json.dumps({**data, "kind": "magic"}).encode(), "kind")]:
        at.file_uploader(key="json_upload").set_value(("p.json", payload, "application/json")).run()
        at.button(key="json_add").click().run()
        assert_clean(at)
        assert any(expected in e for e in errors(at)), (expected, errors(at))


# ------------------------------------------------------------------------------ how OFA works
def test_how_ofa_works_is_interactive():
    at = open_page("how_ofa_works")
    assert not errors(at)
    assert len(at.get("vega_lite_chart")) >= 5  # kernels, transform drift, subnet, importance, landscape
    macs_before = next(m for m in at.metric if m.label == "MACs").value
    at.select_slider[0].set_value(0).run()  # smallest width multiplier
    at.select_slider(key="depth_0").set_value(2).run()
    assert_clean(at)
    assert next(m for m in at.metric if m.label == "MACs").value != macs_before
    at.selectbox(key="kernel_slot").set_value(7).run()
    at.slider(key="kernel_channel").set_value(3).run()
    assert_clean(at)


# ------------------------------------------------------------------------------ building blocks
def test_building_blocks_table_and_errors():
    at = open_page("building_blocks")
    assert not errors(at)
    table = at.dataframe[0].value
    assert len(table) == 6
    assert len(at.get("vega_lite_chart")) >= 4  # bars, token MACs, token memory, shuffle
    reduction = next(n for n in at.number_input if n.label == "Bottleneck reduction")
    reduction.set_value(7).run()
    assert_clean(at)
    assert any("divisible by reduction" in e for e in errors(at))


def test_building_blocks_measures_latency_on_a_small_input():
    at = open_page("building_blocks")
    for label, value in (("Input channels C", 16), ("Height H", 8), ("Width W", 8), ("Output channels", 16)):
        next(n for n in at.number_input if n.label == label).set_value(value).run()
    at.toggle(key="blocks_measure").set_value(True).run()
    assert_clean(at)
    assert not errors(at)
    latency = at.dataframe[0].value["ORT latency (ms)"]
    assert (latency > 0).all()


def test_building_blocks_caps_a_large_input_with_a_message_naming_the_cap_and_shows_memory_in_kb_or_mb():
    at = open_page("building_blocks")
    for label, value in (("Height H", 224), ("Width W", 224)):
        next(n for n in at.number_input if n.label == label).set_value(value).run()
    at.toggle(key="blocks_measure").set_value(True).run()
    assert_clean(at)
    assert not errors(at), errors(at)
    warning = " ".join(w.value for w in at.warning)
    assert "Latency not measured" in warning and "MAX_MEASURED_PEAK_BYTES" in warning, warning
    table = at.dataframe[0].value
    assert "ORT latency (ms)" not in table.columns and len(table) == 6
    memory = [c for c in table.columns if c.startswith(("inference peak", "training"))]
    assert memory and all(c.endswith("(MB)") for c in memory), table.columns   # 224 x 224: MB, not KiB
    text = " ".join(m.value for m in at.markdown)
    assert "KiB" not in text and re.search(r"keeps the most activations for backward \(\d[\d.,]* (KB|MB|GB),", text)


def test_user_text_is_not_markdown_and_errors_name_no_server_path():
    """A profile's display name and provenance with Markdown in them show as written; a bad
    latency CSV's error names the uploaded file, not the server's temporary folder."""
    from ofa_engine.devices.profiles import load_profile
    data = load_profile("stm32f746").to_dict()
    data["name"], data["display_name"] = "md-board", "My __import__ *board*"
    data["provenance"] = {**data.get("provenance", {}), "command": "__import__('os')"}
    at = open_page("profiles")
    at.file_uploader(key="json_upload").set_value(("p.json", json.dumps(data).encode(), "application/json")).run()
    at.button(key="json_add").click().run()
    at.selectbox(key="prof_detail").set_value("md-board").run()
    assert_clean(at)
    assert any("command: __import__('os')" in t.value for t in at.text)
    at.switch_page("views/specialize.py").run()
    at.selectbox(key="spec_profile").set_value("md-board").run()
    caption = next(c.value for c in at.caption if "board" in c.value)
    assert r"My \_\_import\_\_ \*board\*" in caption and plain(caption).startswith("**My __import__ *board***")

    at.switch_page("views/profiles.py").run()
    at.file_uploader(key="csv_upload").set_value(("my-results.csv", b"file,config\nm.onnx,{}\n", "text/csv")).run()
    at.button(key="csv_create").click().run()
    message = " ".join(errors(at))
    assert "my-results.csv" in message and "missing column" in message, message
    assert "/tmp" not in message and "ofa-upload-" not in message, message
