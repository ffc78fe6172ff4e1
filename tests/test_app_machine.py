"""The app and this machine's latency profile (issue 24): cpu-ort-1t/2t are labelled "reference
machine (...), not this one" until this machine's profile is cached, then "this machine (...)" and
the predictions use it; the start-up measurement starts once per process (not in the test suite:
OFA_APP_PROFILE_AT_START=0, tests/conftest.py) and the sidebar button measures again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from ofa_engine import SearchSpace  # noqa: E402
from ofa_engine.devices import this_machine as tm  # noqa: E402
from ofa_engine.devices.profile_kit import kit_configs  # noqa: E402
from ofa_engine.devices.profiles import load_profile  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
TIMEOUT = 300


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(tm.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def starts(monkeypatch):
    """The start function replaced by a recorder: no subprocess is started by these tests."""
    import app.resources as resources
    calls = []
    monkeypatch.setattr(tm, "start_profile_this_machine", lambda **kw: calls.append(kw))
    monkeypatch.setattr(resources, "_THIS_MACHINE", [])
    return calls


def write_cached_profile(threads: int = 1, slowdown: float = 2.0):
    """This machine's cached profile, written by the engine's own fit (fit_this_machine_profile)
    and save, from latencies made up as `slowdown` x the reference profile's (no measurement)."""
    space = SearchSpace.preset("tiny-fmnist")
    configs = kit_configs(space, 8, seed=0)
    reference = load_profile(f"cpu-ort-{threads}t")
    latencies = slowdown * np.asarray(reference.predict_latency_ms(configs), float)
    profile = tm.fit_this_machine_profile(space, threads, "fp32", configs, latencies)
    path = tm.cache_path(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile.save(path)
    assert tm.this_machine_status(threads).ready
    return profile


def open_app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def label_of(at: AppTest, name: str) -> str:
    (label,) = [o for o in at.selectbox(key="spec_profile").options if f"[{name}]" in o]
    return label


def test_reference_label_until_measured_then_this_machine(cache, starts, tmp_path):
    reference = load_profile("cpu-ort-1t").provenance
    at = open_app()
    label = label_of(at, "cpu-ort-1t")
    assert f"reference machine ({reference['machine']}, {reference['date']}), not this one" in label, label
    assert "not this one" in label_of(at, "cpu-ort-2t")
    assert "stm32" not in label and "not this one" not in label_of(at, "stm32f746")   # only the CPU profiles
    captions = " ".join(c.value for c in at.caption)
    assert "Latency predictions from: reference machine" in captions, captions
    assert "not measured" in " ".join(c.value for c in at.sidebar.caption)

    mine = write_cached_profile(1)
    # A new page load (a selectbox whose option labels change keeps its index in the browser; AppTest
    # looks the old value up by its new label, so a fresh session stands in for the reload).
    at = open_app()
    label = label_of(at, "cpu-ort-1t")
    assert "this machine (" in label and f"measured {mine.provenance['date']} from 8 subnets" in label, label
    assert "not this one" in label_of(at, "cpu-ort-2t")                       # 2 threads: not measured yet
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert "is not measured at 2 threads (not measured on this machine yet)" in sidebar, sidebar
    assert "1 thread: this machine (" in sidebar and "2 threads: reference machine (" in sidebar, sidebar
    at.selectbox(key="spec_profile").set_value("cpu-ort-1t").run()
    assert "Latency predictions from: this machine (" in " ".join(c.value for c in at.caption)
    at.main.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    report = at.session_state["specialization"]["report"]
    assert report["profile"] == "this-machine-1t" and report["latency_source"].startswith("this machine (")
    from ofa_engine import SubnetConfig
    config = SubnetConfig.from_dict(report["config"])
    assert report["predicted"]["latency_ms"] == pytest.approx(float(mine.predict_latency_ms([config])[0]), rel=1e-6)
    assert report["predicted"]["latency_ms"] != pytest.approx(
        float(load_profile("cpu-ort-1t").predict_latency_ms([config])[0]), rel=0.2)   # not the reference's
    assert any(c.value.startswith("Predicted latency from the profile `this-machine-1t`: this machine (")
               for c in at.caption)


def test_start_once_per_process_never_in_tests_and_the_button_measures_again(cache, starts, monkeypatch):
    import app.resources as resources
    assert resources.start_this_machine() is None and starts == []     # OFA_APP_PROFILE_AT_START=0 here
    monkeypatch.setenv(resources.THIS_MACHINE_ENV, "1")
    resources.start_this_machine()
    resources.start_this_machine()                                     # once per process
    # Every bundled package's space with a bundled CPU profile, the CNN's first, in the one run.
    assert starts == [{"space": ("tiny-fmnist", "vit-fmnist"), "threads": (1, 2), "refresh": False}]
    at = open_app()
    at.sidebar.button(key="remeasure_machine").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert starts[-1] == {"space": ("tiny-fmnist", "vit-fmnist"), "threads": (1, 2), "refresh": True}


def test_progress_is_shown_while_measuring(cache, starts):
    import json
    import os
    for threads in (1, 2):      # a run under way: this process stands in for the measuring one
        path = tm.status_path(threads)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"state": "running", "progress": 0.4, "message": "measuring subnet 8 of 20",
                                    "pid": os.getpid()}))
    at = open_app()
    (bar,) = at.sidebar.get("progress")
    assert "Measuring this machine (measuring subnet 8 of 20)" in bar.proto.text
    assert at.sidebar.button(key="remeasure_machine").disabled
    assert "not this one" in label_of(at, "cpu-ort-1t")


# ------------------------------------------------------------------------------ every bundled space (issue 35)
VIT = "vit-fmnist"


def write_cached_space_profile(space_name: str, threads: int, slowdown: float = 2.0):
    """`write_cached_profile` for any space: latencies made up from its bundled prior's model."""
    from ofa_engine.families import family_of
    space = family_of(space_name, fast=False).space
    configs = kit_configs(space, 8, seed=0)
    reference = load_profile(tm.reference_profile_name(threads, "fp32", space_name))
    latencies = slowdown * np.asarray(reference.predict_latency_ms(configs), float)
    profile = tm.fit_this_machine_profile(space, threads, "fp32", configs, latencies)
    path = tm.cache_path(threads, "fp32", space_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile.save(path)
    assert tm.this_machine_status(threads, "fp32", space_name).ready
    return profile


def mark_running(space_name: str, progress: float, message: str) -> None:
    """A run under way for the space (this process stands in for the measuring one)."""
    import json
    import os
    for threads in (1, 2):
        path = tm.status_path(threads, "fp32", space_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"state": "running", "progress": progress, "message": message,
                                    "pid": os.getpid()}))


def open_vit(at: AppTest | None = None) -> AppTest:
    from ofa_engine.packages.package import bundled_packages
    at = at or open_app()
    at.sidebar.selectbox(key="supernet_choice").set_value(str(bundled_packages()[VIT])).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_entries_this_machine_serves_per_space():
    import app.resources as resources
    entries = {e.name: (e.space, e.threads, e.replaces) for e in resources.this_machine_entries()}
    assert resources.this_machine_spaces() == ("tiny-fmnist", VIT)     # the CNN's first
    assert entries == {"cpu-ort-1t": ("tiny-fmnist", 1, True), "cpu-ort-2t": ("tiny-fmnist", 2, True),
                       "cpu-ort-1t-vit-fmnist": (VIT, 1, True),
                       "this-machine-2t-vit-fmnist": (VIT, 2, False)}   # no bundled 2-thread ViT profile
    assert resources.entries_text(["cpu-ort-1t", "cpu-ort-2t"]) == "cpu-ort-1t/2t"
    assert resources.entries_text(["cpu-ort-1t-vit-fmnist", "this-machine-2t-vit-fmnist"]) == (
        "cpu-ort-1t-vit-fmnist and this-machine-2t-vit-fmnist")


def test_the_vit_package_gets_this_machine_in_place_of_its_cpu_profile(cache, starts):
    reference = load_profile("cpu-ort-1t-vit-fmnist").provenance
    at = open_vit()
    label = label_of(at, "cpu-ort-1t-vit-fmnist")
    assert f"reference machine ({reference['machine']}, {reference['date']}), not this one" in label, label
    assert not any("this-machine-2t-vit-fmnist" in o for o in at.selectbox(key="spec_profile").options)
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert ("is not measured at 1 thread, 2 threads (not measured on this machine yet); cpu-ort-1t-vit-fmnist "
            "latencies are from: 1 thread: reference machine (") in sidebar, sidebar

    mark_running(VIT, 0.0, "starting")            # the one run measures the CNN first
    at = open_vit()
    (bar,) = at.sidebar.get("progress")
    assert "Measuring this machine (starting)" in bar.proto.text
    assert "Until it is ready, cpu-ort-1t-vit-fmnist latencies are the reference machine (" in " ".join(
        c.value for c in at.sidebar.caption)

    mine = {t: write_cached_space_profile(VIT, t) for t in (1, 2)}
    at = open_vit()
    label = label_of(at, "cpu-ort-1t-vit-fmnist")
    assert "this machine (" in label and f"measured {mine[1].provenance['date']} from 8 subnets" in label, label
    label = label_of(at, "this-machine-2t-vit-fmnist")
    assert label.startswith("ONNX Runtime CPU, 2 threads, vit-fmnist [this-machine-2t-vit-fmnist]: this machine ("), (
        label)
    names = [o[o.index("[") + 1:o.index("]")] if "[" in o else o for o in at.selectbox(key="spec_profile").options]
    assert names.index("this-machine-2t-vit-fmnist") == names.index("cpu-ort-1t-vit-fmnist") + 1   # right after it
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert ("**This machine**: measured; cpu-ort-1t-vit-fmnist and this-machine-2t-vit-fmnist predict with its "
            "profile (this machine (") in sidebar, sidebar
    at.selectbox(key="spec_profile").set_value("this-machine-2t-vit-fmnist").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Latency predictions from: this machine (" in " ".join(c.value for c in at.caption)
    # The CNN's entries are another space's: still the reference machine's.
    at = open_app()
    assert "not this one" in label_of(at, "cpu-ort-1t")


def test_the_cnn_sidebar_and_labels_are_unchanged_while_the_vit_is_measured(cache, starts):
    mark_running(VIT, 0.3, "measuring subnet 6 of 20")
    at = open_app()
    assert not at.sidebar.get("progress")                  # the CNN's space is not being measured
    assert "not measured" in " ".join(c.value for c in at.sidebar.caption)
    assert "not this one" in label_of(at, "cpu-ort-1t")


# ------------------------------------------------------------------------------ CNN or Transformer? on this CPU
def open_families() -> AppTest:
    from app.resources import package_entries
    package_entries.clear()
    at = open_app()
    at.switch_page("views/families.py").run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    return at


def test_the_family_comparison_says_what_this_machine_lacks_until_both_spaces_are_measured(cache, starts):
    write_cached_profile(1)
    mark_running(VIT, 0.4, "exported subnet 8/20")
    at = open_families()
    assert not any(o.startswith("This machine") for o in at.selectbox(key="fam_profile").options)
    (info,) = [i.value for i in at.info if "No bundled CPU profile predicts both families" in i.value]
    assert "This machine, 1 thread: `vit-fmnist`: measuring at start, 40 % (exported subnet 8/20)" in info, info
    # 2 threads: neither space measured; the CNN's is not running.
    assert ("This machine, 2 threads: `tiny-fmnist`: not measured on this machine yet, `vit-fmnist`: measuring at "
            "start, 40 %") in info, info


def test_the_family_comparison_offers_this_machine_for_both_families_once_measured(cache, starts):
    cnn = write_cached_profile(1)
    vit = write_cached_space_profile(VIT, 1)
    at = open_families()
    options = at.selectbox(key="fam_profile").options
    assert "This machine, 1 thread" in options and "This machine, 2 threads" not in options
    (info,) = [i.value for i in at.info if "No bundled CPU profile predicts both families" in i.value]
    assert "This machine, 2 threads: `tiny-fmnist`: not measured" in info and "1 thread:" not in info, info
    at.selectbox(key="fam_profile").set_value("This machine, 1 thread").run()
    at.radio(key="fam_field").set_value("latency_ms").run()
    assert not at.exception and not at.error and not at.warning, [w.value for w in at.warning]
    (served,) = [c.value for c in at.caption if c.value.startswith("**This machine, 1 thread** predicts each family")]
    assert f"`mbv3` (`tiny-fmnist`): {cnn.name} (this machine (" in served, served
    assert f"`vit` (`vit-fmnist`): {vit.name} (this machine (" in served, served
    assert (cnn.name, vit.name) == ("this-machine-1t", "this-machine-1t-vit-fmnist")
    achievable = next(c.value for c in at.caption if c.value.startswith("Achievable on this profile"))
    assert "`mbv3`" in achievable and "`vit`" in achievable      # a latency range for each family
