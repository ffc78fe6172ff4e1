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
    assert starts == [{"space": "tiny-fmnist", "threads": (1, 2), "refresh": False}]
    at = open_app()
    at.sidebar.button(key="remeasure_machine").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert starts[-1] == {"space": "tiny-fmnist", "threads": (1, 2), "refresh": True}


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
