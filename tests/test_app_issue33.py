"""Issue 33, the app's side: per-device default budgets that give the devices different subnets,
budgets checked before any work, the latency safety margin, settings that survive page switches
and device changes, figures labelled as what they are, and the one-picture summary."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from app import format as fmt  # noqa: E402
from app.budgets import (at_position, default_budget, latency_margin, latency_verdict, position_in,  # noqa: E402
                         searched_limits, shared_deadlines, slider_bounds)

APP = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
TIMEOUT = 300
STM32 = ("stm32f412", "stm32f746", "stm32h743")


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    if page is not None:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def engine():
    from ofa_engine.devices.profiles import load_profile
    from ofa_engine.packages import load_package
    from ofa_engine.packages.package import bundled_packages
    from ofa_engine.pipeline.resources import load_resources
    package = load_package(str(bundled_packages()["tiny-fmnist"]), weights=False)
    resources = load_resources(package)
    profiles = {n: load_profile(n).for_space(package.space) for n in (*STM32, "cpu-ort-1t", "cpu-ort-2t")}
    return resources, {n: p.for_precision(p.precision) for n, p in profiles.items()}


# ------------------------------------------------------------------------------ default budgets (item 3)
def test_deploy_defaults_give_the_three_stm32_boards_three_different_subnets(engine):
    from app.deployment import default_budgets
    from ofa_engine.search import Constraints, budget_ranges, search
    resources, profiles = engine
    ranges = {n: budget_ranges(resources.evaluator(p)) for n, p in profiles.items()}
    budgets = default_budgets(ranges)
    for name, budget in budgets.items():       # every default is a budget the device can meet
        lo, hi = ranges[name]["latency_ms"]["min"], ranges[name]["latency_ms"]["max"]
        assert slider_bounds(lo, hi)[0] <= budget <= slider_bounds(lo, hi)[1], (name, budget)
    configs = {}
    for name in STM32:
        constraints = Constraints(latency_ms=budgets[name]).with_device_memory(profiles[name])
        configs[name] = search(resources.evaluator(profiles[name]), constraints, "evolution", seed=0).config
    assert len({c.to_json() for c in configs.values()}) == 3, configs
    # The faster the board, the larger its subnet under the shared deadline.
    macs = [resources.evaluator(profiles[n]).efficiency(configs[n])["macs"][0] for n in STM32]
    assert macs[0] < macs[1] < macs[2], macs


def test_shared_deadline_groups_devices_whose_ranges_overlap():
    ranges = {"a": (19.3, 362.5), "b": (4.47, 83.9), "c": (2.0, 37.8), "cpu": (0.21, 0.97)}
    budgets = shared_deadlines(ranges)
    assert budgets["cpu"] == default_budget(0.21, 0.97)                       # alone: its own default
    assert budgets["a"] == pytest.approx(budgets["b"], rel=0.02)              # one deadline for the MCUs
    assert budgets["c"] == slider_bounds(2.0, 37.8)[1]                        # clamped to its range


def test_coinciding_subnets_are_explained_on_the_page():
    from app.deployment import coincidence_notes
    from ofa_engine import SearchSpace
    space = SearchSpace.preset("tiny-fmnist")
    cfg = {"wid": 1, "ks": [3] * 15, "e": [3] * 15, "d": [2] * 5, "image_size": 28}
    report = {"config": cfg, "predicted": {"latency_ms": 10.0, "flash_kb": 900.0, "peak_memory_kb": 20.0},
              "searched_constraints": {"latency_ms": 10.1, "flash_kb": 1024, "peak_memory_kb": 256}}
    deployment = [{"profile": n, "report": report} for n in ("stm32f412", "stm32f746")] + [
        {"profile": "x", "report": None}]
    (note,) = coincidence_notes(deployment, space)
    assert note.startswith("stm32f412 and stm32f746 got the same subnet (width 0.75, kernel 3, expand 3, 28 px, "
                           "depths [2, 2, 2, 2, 2])")
    assert "latency budget is what limits" in note
    memory_bound = {**report, "predicted": {"latency_ms": 5.0, "flash_kb": 1020.0, "peak_memory_kb": 20.0}}
    (note,) = coincidence_notes([{"profile": n, "report": memory_bound} for n in ("a", "b")], space)
    assert "memory is what limits" in note


# ------------------------------------------------------------------------------ checks and margin (item 4)
def test_impossible_budget_on_deploy_everywhere_is_refused_before_any_work():
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["deploy_settings"] = {"cpu-ort-1t": {"budget_ms": 0.01, "precision": "fp32"}}
    at.run()
    at.switch_page("views/deploy.py").run()
    at.multiselect(key="deploy_devices").set_value(["cpu-ort-1t", "stm32f746"]).run()
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert any("Nothing was specialized: 1 of 2 devices cannot be specialized as set" in e for e in errors), errors
    assert any(e.startswith("cpu-ort-1t:") and "smallest achievable" in e for e in errors), errors
    assert "deployment" not in at.session_state


def test_deploy_results_of_other_budgets_carry_a_note_and_count_only_the_devices_that_succeeded():
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["deployment"] = [{"profile": "stm32f746", "device": "STM32F746", "precision": "int8",
                                       "budget_ms": 1.0, "report": None, "onnx_bytes": None, "error": "no subnet"}]
    at.session_state["deployment_settings"] = [{"profile": "stm32f746", "precision": "int8", "budget_ms": 1.0}]
    at.run()
    at.switch_page("views/deploy.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.subheader[0].value.startswith("0 subnets of one supernet") and "(1 device failed)" in at.subheader[0].value
    assert any("not the table above as it is now" in w.value for w in at.warning)


def test_safety_margin_comes_from_the_held_out_spread_and_only_latency_is_tightened():
    validation = {"measured_ms": np.array([1.0, 1.1, 1.05, 0.95, 1.2, 1.0]), "predicted_ms": np.ones(6)}
    margin = latency_margin({"mape": 0.05}, validation)
    assert margin == pytest.approx(np.percentile(validation["measured_ms"] - 1, 90))
    assert latency_margin({"mape": 0.03}) == pytest.approx(0.06)           # no held-out file: 2 x MAPE
    assert latency_margin(None) == 0.0 and latency_margin({"mape": 0.5}) == 0.25
    assert searched_limits({"latency_ms": 1.0, "flash_kb": 100}, 0.1) == {"latency_ms": 0.9, "flash_kb": 100}


@pytest.mark.parametrize("median, iqr, verdict", [(0.199, 0.002, "over"), (0.190, 0.01, "noisy"), (0.18, 0.1, "within")])
def test_deploy_table_flags_a_measured_latency_over_its_budget_as_specialize_does(median, iqr, verdict):
    from app.deployment import VERDICT_WORDS, result_rows
    from ofa_engine import SearchSpace
    space = SearchSpace.preset("tiny-fmnist")
    report = {"config": {"wid": 0, "ks": [3] * 15, "e": [3] * 15, "d": [2] * 5, "image_size": 24},
              "measured": {"accuracy": 0.9, "latency_ms": median, "latency_iqr_ms": iqr, "peak_memory_kb": 10,
                           "flash_kb": 200, "macs": 1e6},
              "predicted": {"latency_ms": 0.18}}
    entry = {"profile": "cpu-ort-1t", "device": "cpu", "precision": "fp32", "budget_ms": 0.188, "searched_ms": 0.181,
             "report": report, "onnx_bytes": b"x" * 10, "error": None}
    (row,) = result_rows([entry], space)
    assert latency_verdict(median, iqr, 0.188) == verdict
    assert row["latency measured"].endswith(VERDICT_WORDS[verdict]) and row["latency budget"].startswith("0.188 ms (searched under 0.181 ms")


# ------------------------------------------------------------------------------ settings (item 6)
def test_device_change_keeps_the_budget_place_and_settings_survive_page_switches():
    at = open_page()
    at.selectbox(key="spec_profile").set_value("cpu-ort-1t").run()
    slider = at.slider(key="spec_latency_ms")
    lo, hi = slider.min, slider.max
    at.slider(key="spec_latency_ms").set_value(round(lo + 0.75 * (hi - lo), 4)).run()
    place = position_in(at.slider(key="spec_latency_ms").value, lo, hi)
    at.selectbox(key="spec_profile").set_value("stm32f746").run()
    new = at.slider(key="spec_latency_ms")
    assert new.value > new.min and position_in(new.value, new.min, new.max) == pytest.approx(place, abs=0.02)
    at.selectbox(key="spec_strategy").set_value("random").run()
    at.switch_page("views/profiles.py").run()
    at.switch_page("views/specialize.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="spec_profile").value == "stm32f746"
    assert at.selectbox(key="spec_strategy").value == "random"
    assert at.slider(key="spec_latency_ms").value == pytest.approx(new.value)


def test_a_place_in_one_range_is_the_same_place_in_another():
    value = at_position(0.6, 0.2, 1.0)
    assert position_in(value, 0.2, 1.0) == pytest.approx(0.6, abs=0.01)
    assert position_in(at_position(0.6, 4.0, 80.0), 4.0, 80.0) == pytest.approx(0.6, abs=0.01)


# ------------------------------------------------------------------------------ labels (items 2, 7, 8)
def test_cards_say_what_each_figure_is_and_budgets_read_without_trailing_zeros():
    from app.widgets import card_values
    report = {"predicted": {"accuracy": 0.9, "latency_ms": 20.0, "peak_memory_kb": 11.2, "flash_kb": 906, "macs": 4e6},
              "measured": {"accuracy": 0.89, "peak_memory_kb": 11.2, "flash_kb": 950, "macs": 4e6},
              "effective_constraints": {"latency_ms": 30.0, "peak_memory_kb": 320.0, "flash_kb": 1024.0}}
    cards = {c["field"]: c for c in card_values(report, {"latency_ms": 30.0}, profile_kind="analytical")}
    assert cards["latency_ms"]["source"] == "computed analytically"
    assert cards["peak_memory_kb"]["label"] == "Peak memory ≤ 320 KB" and cards["flash_kb"]["label"] == "Flash ≤ 1 MB"
    assert not cards["peak_memory_kb"]["delta"].startswith("measured")     # an analytic figure is not "measured"
    assert cards["accuracy"]["delta"].startswith("measured ")
    learned = {c["field"]: c for c in card_values(report, {"latency_ms": 30.0}, profile_kind="measured")}
    assert learned["latency_ms"]["source"] == "predicted by a learned model"
    labelled = {**report, "labels": {"predicted": {"latency_ms": "measured_on_device"}}}
    assert card_values(labelled, {})[1]["source"] == "measured on the device"   # the report's own label wins
    with pytest.raises(ValueError, match="allowed: measured_here"):
        fmt.figure_source("guessed")
    assert [fmt.memory_limit(v) for v in (320, 1024, 3.125, 2048)] == ["320 KB", "1 MB", "3.125 KB", "2 MB"]


def test_profiles_page_titles_say_what_the_chart_is():
    at = open_page("profiles")
    at.selectbox(key="prof_detail").set_value("stm32f746").run()
    titles = " ".join(m.value for m in at.markdown)
    assert "Latency computed analytically vs MACs" in titles and "no device measured" in titles
    at.selectbox(key="prof_detail").set_value("cpu-ort-1t").run()
    titles = " ".join(m.value for m in at.markdown)
    assert "measured on the device" in titles and "no measurements" not in titles and "no device measured" not in titles


def test_summary_picture_is_an_svg_with_the_three_steps():
    from app.summary import summary_svg
    root = ET.fromstring(summary_svg())
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert ["1. Train once", "2. Cut many", "3. Deploy"] == [t for t in texts if re.match(r"\d\. ", t)]


def test_profiles_page_offers_the_microcontroller_kit_for_the_bundled_boards():
    at = open_page("profiles")
    at.radio(key="kit_kind").set_value("a microcontroller").run()
    assert not at.exception, [e.value for e in at.exception]
    assert list(at.selectbox(key="mcu_kit_board").options) == ["stm32f412", "stm32f746", "stm32h743"]
    assert any(b.label == "Prepare the microcontroller kit" for b in at.button)
    assert not any(b.label == "Prepare the profile kit" for b in at.button)
    assert any("X-CUBE-AI" in m.value and "latency_ms" in m.value for m in at.markdown)


def test_deploy_everywhere_refuses_a_precision_the_profile_cannot_predict_before_any_work():
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["deploy_settings"] = {"stm32f746": {"budget_ms": 40.0, "precision": "fp32"}}
    at.run()
    at.switch_page("views/deploy.py").run()
    at.multiselect(key="deploy_devices").set_value(["stm32f746"]).run()
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert any(e.startswith("stm32f746:") and "int8 files only" in e for e in errors), errors
    assert "deployment" not in at.session_state
