"""The app's start-up: the engine warm-up (`app.resources.Warmup`, `ENGINE_WARMUP`) runs each
step once, however many sessions start it; a specialization (`Warmup.alone`) waits for the
needed steps, shares the CPU with none, and gets the same report as without any warm-up.

Every wait here is on an event that a step or a callback sets, never a sleep."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from app import resources
from app.resources import ENGINE_WARMUP, Warmup, WarmupStep


def steps_recording(ran: list[str], gates: dict[str, threading.Event] | None = None,
                    optional: tuple[str, ...] = (), ahead: tuple[str, ...] = ()) -> list[WarmupStep]:
    """Steps a, b, c, d that append their name to `ran`, a gated one first waiting for its event."""
    gates = gates or {}

    def run(name: str):
        def step() -> None:
            if name in gates:
                assert gates[name].wait(30), f"step {name}: its gate was never opened"
            ran.append(name)
        return step
    return [WarmupStep(n, f"doing {n}", run(n), needed=n not in optional, ahead=n in ahead) for n in "abcd"]


def test_each_step_runs_once_in_order_however_many_start_and_wait():
    ran: list[str] = []
    gate = threading.Event()
    warmup = Warmup(steps_recording(ran, {"b": gate}))
    starters = [threading.Thread(target=warmup.start) for _ in range(8)]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    clicks = []

    def click() -> None:
        with warmup.alone() as waited:
            clicks.append((waited, list(ran)))
    waiters = [threading.Thread(target=click) for _ in range(3)]
    for t in waiters:
        t.start()
    gate.set()
    for t in waiters:
        t.join(30)
    warmup.start().join(30)
    assert ran == ["a", "b", "c", "d"]
    assert Counter(ran) == Counter("abcd")
    assert set(warmup.seconds) == set("abcd") and warmup.skipped == [] and warmup.finished
    assert all(seen == list("abcd") for _, seen in clicks)   # all needed: each click saw them all done


def test_a_click_waits_for_the_needed_steps_only_and_no_step_runs_beside_it():
    ran: list[str] = []
    gate = threading.Event()
    warmup = Warmup(steps_recording(ran, {"b": gate}, optional=("c", "d"), ahead=("c",)))
    warmup.start()
    labels: list[str] = []

    def on_step(done: int, total: int, label: str) -> None:
        labels.append(label)
        gate.set()   # the click came while "b" was running (or not yet started)

    with warmup.alone(on_step) as waited:
        inside = list(ran)
        assert not warmup.finished
    warmup.start().join(30)
    assert waited and labels and set(labels) <= {"doing a", "doing b"}
    assert inside == ["a", "b"]                   # the needed steps, and nothing after them
    assert ran == ["a", "b", "d"] and warmup.skipped == ["c"]   # c only pays a first click's costs ahead


def test_a_click_waits_for_the_optional_step_that_is_running():
    ran: list[str] = []
    gate, c_started = threading.Event(), threading.Event()
    steps = steps_recording(ran, {"c": gate}, optional=("c", "d"))
    steps[2] = WarmupStep("c", "doing c", lambda: (c_started.set(), gate.wait(30), ran.append("c")), needed=False)
    warmup = Warmup(steps)
    warmup.start()
    assert c_started.wait(30)
    labels: list[str] = []

    def on_step(done: int, total: int, label: str) -> None:
        labels.append(label)
        gate.set()

    with warmup.alone(on_step) as waited:
        inside = list(ran)
    warmup.start().join(30)
    assert waited and labels[0] == "doing c"
    assert inside == ["a", "b", "c"] and ran == ["a", "b", "c", "d"]


def test_a_failing_step_ends_the_warmup_and_frees_the_click(caplog):
    ran: list[str] = []
    then = threading.Event()

    def broken() -> None:
        raise RuntimeError("no weights")
    steps = steps_recording(ran)
    steps[1] = WarmupStep("b", "doing b", broken)
    warmup = Warmup(steps, then=then.set)
    warmup.start().join(30)
    with warmup.alone() as waited:
        pass
    assert ran == ["a"] and warmup.finished and then.is_set() and not waited
    assert "warming up the engine failed" in caplog.text


def test_never_started_frees_the_click_at_once_and_needed_steps_come_first():
    with Warmup(steps_recording([])).alone() as waited:
        assert waited is False
    with pytest.raises(ValueError, match="needed ones must come first"):
        Warmup([WarmupStep("x", "x", lambda: None, needed=False), WarmupStep("y", "y", lambda: None)])


def test_the_apps_warmup_loads_what_a_specialization_needs_once():
    names = [s.name for s in ENGINE_WARMUP.steps]
    assert names.index("budget ranges") < names.index("first page") < names.index("torch") < names.index("supernet")
    assert [s.name for s in ENGINE_WARMUP.steps if not s.needed] == ["first calls"]
    resources.first_page_done()
    thread = resources.start_warmup()
    assert resources.start_warmup() is thread
    thread.join(120)
    assert ENGINE_WARMUP.finished
    assert set(ENGINE_WARMUP.seconds) | set(ENGINE_WARMUP.skipped) == set(names)


# ---------------------------------------------------------------- the same report either way
VARYING = {"timings_s", "total_time_s"}
MEASURED_VARYING = {"latency_ms", "latency_iqr_ms"}


def deterministic(report: dict) -> dict:
    """The report without what depends on the clock (timings, the measured latency)."""
    out = {k: v for k, v in report.items() if k not in VARYING}
    out["measured"] = {k: v for k, v in report["measured"].items() if k not in MEASURED_VARYING}
    out["search"] = {k: v for k, v in report["search"].items() if k != "wall_time_s"}
    return out


def default_specialization():
    """The home page's default click: cpu-ort-1t, a latency budget at 40 % of its range, fp32,
    evolution, seed 0, on the bundled package loaded without its weights (as the app does)."""
    from ofa_engine import specialize
    from ofa_engine.devices.profiles import load_profile
    from ofa_engine.packages import load_package
    from ofa_engine.packages.package import bundled_packages
    from ofa_engine.pipeline.resources import load_resources
    from ofa_engine.search import budget_ranges

    package = load_package(str(bundled_packages()[resources.BUNDLED_SUPERNET]), weights=False)
    profile = load_profile("cpu-ort-1t")
    ranges = budget_ranges(load_resources(package).evaluator(profile))["latency_ms"]
    limit = ranges["min"] + 0.4 * (ranges["max"] - ranges["min"])
    return specialize(profile, {"latency_ms": limit}, "evolution", seed=0, supernet=package, precision="fp32").report


@pytest.mark.parametrize("click_during", ["torch", "first calls"])
def test_a_click_during_the_warmup_gives_the_same_report_as_without_it(click_during):
    """The app's own warm-up steps (a fresh `Warmup` of them: the process-wide one may have run
    already), the click coming while `click_during` runs: the report equals that of a plain
    `specialize` call with no warm-up around it."""
    without = default_specialization()
    resources.first_page_done()   # the real steps wait for the first page
    gate, reached = threading.Event(), threading.Event()
    steps = []
    for step in resources._warmup_steps():
        if step.name == click_during:
            def gated(run=step.run) -> None:
                reached.set()
                assert gate.wait(60)
                run()
            step = WarmupStep(step.name, step.label, gated, step.needed, step.ahead)
        steps.append(step)
    warmup = Warmup(steps)
    warmup.start()
    assert reached.wait(120)
    labels: list[str] = []

    def on_step(done: int, total: int, label: str) -> None:
        labels.append(label)
        gate.set()

    with warmup.alone(on_step) as waited:
        during = default_specialization()
    warmup.start().join(120)
    assert waited and labels[0] == next(s.label for s in steps if s.name == click_during)
    assert deterministic(during) == deterministic(without)
    assert during["onnx"]["sha256"] == without["onnx"]["sha256"]
