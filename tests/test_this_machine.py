"""This machine's start-up profile: cache key, honest label, corrupt cache, status, CLI."""

import json
import logging
import os
import subprocess
import sys

import pytest

from ofa_engine.cli.main import main
from ofa_engine.devices import this_machine as tm
from ofa_engine.devices.profile_kit import this_machine
from ofa_engine.devices.profiles import load_profile, today

TINY = {"n": 5, "rounds": 1, "runs": 2, "warmup": 0, "speed_seconds": 0.05}   # seconds, not a measurement to trust


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(tm.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_key_names_what_latency_depends_on(cache):
    key = tm.cache_key(1, "fp32", "tiny-fmnist")
    assert {"cpu", "cores", "ort", "threads", "precision", "space"} <= set(key)
    assert key["cores"] == os.cpu_count() and key["threads"] == 1
    paths = {tm.cache_path(t, p, s) for t in (1, 2) for p in ("fp32", "int8") for s in ("tiny-fmnist", "ofa-mbv3-w1.0")}
    assert len(paths) == 8 and all(p.parent == cache for p in paths)
    assert tm.cache_path(1) == tm.cache_path(1)   # deterministic
    assert tm.status_path(2).name.endswith(".status.json")


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv(tm.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tm.cache_dir() == tmp_path / "xdg" / "ofa_engine"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tm.cache_dir() == tmp_path / "home" / ".cache" / "ofa_engine"


def test_honest_label_before_ready(cache):
    status = tm.this_machine_status(1)
    assert not status.ready and status.profile_path is None and status.progress == 0.0
    reference = load_profile("cpu-ort-1t").provenance["machine"]
    label = tm.latency_label(1)
    assert label.startswith(f"reference machine ({reference}") and label.endswith("not this one")
    assert "Intel" in label
    assert tm.load_this_machine_profile(1) is None


def test_measure_cache_and_reuse(cache, tmp_path):
    seen = []
    paths = tm.profile_this_machine(threads=(1,), out=tmp_path / "mine.json",
                                    progress=lambda d, t, m: seen.append((d, t)), **TINY)
    assert seen[-1][0] == seen[-1][1]   # progress reached its total
    profile = load_profile(tmp_path / "mine.json")   # a normal profile file
    assert profile.threads == 1 and profile.measures_locally and profile.name == "this-machine-1t"
    p = profile.provenance
    assert p["subnets"] == 5 and p["fit"] in ("ridge-prior", "scale-offset") and p["prior"] == "cpu-ort-1t"
    assert p["cache_key"] == tm.cache_key(1) and p["date"] == today() and p["machine"] == this_machine()
    assert p["machine_speed"]["samples"] >= 10 and p["machine_speed"]["steady"] in (True, False)
    status = tm.this_machine_status(1)
    assert status.ready and status.profile_path == paths[1] and status.progress == 1.0
    assert json.loads(tm.status_path(1).read_text())["state"] == "done"
    assert tm.latency_label(1).startswith("this machine (")
    # Cached: a second run measures nothing, and start_... starts nothing.
    before = paths[1].stat().st_mtime_ns
    tm.profile_this_machine(threads=(1,), **TINY)
    assert paths[1].stat().st_mtime_ns == before
    assert tm.start_profile_this_machine(threads=(1,)) is None


def test_label_says_when_the_machine_was_unsteady(cache):
    tm.profile_this_machine(threads=(1,), **TINY)
    path = tm.cache_path(1)
    data = json.loads(path.read_text())
    for steady, spread in ((True, 0.04), (False, 0.62)):
        data["provenance"]["machine_speed"] = {**data["provenance"]["machine_speed"], "steady": steady,
                                               "spread": spread}
        path.write_text(json.dumps(data))
        label = tm.latency_label(1)
        assert label.startswith("this machine (")
        assert ("its speed swung by 62% while measured" in label) == (not steady)


def test_corrupt_cache_is_ignored_and_rebuilt(cache, caplog):
    path = tm.cache_path(1)
    path.parent.mkdir(parents=True)
    path.write_text('{"format": "ofa-engine/device-profile", "version": 1, "name": ')   # cut short
    with caplog.at_level(logging.WARNING, logger="ofa_engine.devices.this_machine"):
        status = tm.this_machine_status(1)
    assert not status.ready
    assert any("corrupt cached profile" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    assert tm.latency_label(1).endswith("not this one")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ofa_engine.devices.this_machine"):
        tm.profile_this_machine(threads=(1,), **TINY)
    assert any("will be measured again" in r.getMessage() for r in caplog.records)
    assert load_profile(path).name == "this-machine-1t" and tm.this_machine_status(1).ready


def test_a_profile_of_another_machine_in_the_cache_is_not_taken(cache, caplog):
    path = tm.cache_path(1)
    path.parent.mkdir(parents=True)
    load_profile("cpu-ort-1t").save(path)   # valid profile, but no cache_key of this machine
    with caplog.at_level(logging.WARNING, logger="ofa_engine.devices.this_machine"):
        assert tm.load_this_machine_profile(1) is None
    assert any("cache_key does not match" in r.getMessage() for r in caplog.records)


def test_status_of_a_run_that_died(cache):
    path = tm.status_path(1)
    path.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"state": "running", "progress": 0.4, "message": "exported subnet 8/20",
                                "pid": dead.pid}))
    status = tm.this_machine_status(1)
    assert not status.running and not status.ready and status.progress == 0.4
    assert "stopped before it finished" in status.message
    path.write_text("not json")
    assert tm.this_machine_status(1).message == "not measured on this machine yet"


def test_cli_refusals(cache, capsys):
    assert main(["profile-this-machine", "--threads", "0"]) == 2
    assert "--threads '0'; allowed: integers >= 1" in capsys.readouterr().err
    assert main(["profile-this-machine", "--threads", "1", "--n", "3"]) == 2
    assert "n = 3 subnets; allowed: an integer 5..200" in capsys.readouterr().err
    assert main(["profile-this-machine", "--precision", "fp16"]) == 2
    assert main(["profile-this-machine", "--space", "nope"]) == 2
    assert main(["profile-this-machine", "--out", str(cache / "missing" / "x.json")]) == 2
    assert not cache.exists()   # nothing measured or written


def test_cli_status_only_measures_nothing(cache, capsys):
    assert main(["profile-this-machine", "--status", "--threads", "1,2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["1t"]["ready"] is False and out["2t"]["label"].endswith("not this one")
    assert not cache.exists()


def test_cli_writes_a_loadable_profile(cache, tmp_path, capsys):
    out = tmp_path / "here.json"
    assert main(["profile-this-machine", "--threads", "1", "--n", "5", "--rounds", "1", "--runs", "2",
                 "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["1t"]["ready"] is True and printed["1t"]["label"].startswith("this machine (")
    speed = printed["1t"]["machine_speed"]
    assert speed["steady"] == (speed["spread"] <= 0.10)
    assert ("its speed swung by" in printed["1t"]["label"]) == (not speed["steady"])
    profile = load_profile(out)
    assert profile.provenance["subnets"] == 5 and profile.runtime["precision"] == "fp32"
    assert profile.provenance["command"] == ("python -m ofa_engine profile-this-machine --space tiny-fmnist "
                                             f"--threads 1 --precision fp32 --n 5 --rounds 1 --runs 2 --out {out}")
    assert load_profile(printed["1t"]["profile"]).to_json() == profile.to_json()


@pytest.mark.slow   # a background process exports and times subnets
def test_background_start_is_marked_running_at_once_and_ends_ready(cache):
    process = tm.start_profile_this_machine(threads=(1,), extra_args=["--n", "5", "--rounds", "1", "--runs", "2"])
    assert process is not None
    # Marked running before start_profile_this_machine returns, for as long as the process is
    # not reaped (a finished child stays a zombie until wait): no race with its speed.
    running = tm.this_machine_status(1)
    assert running.running or running.ready, running
    assert tm.start_profile_this_machine(threads=(1,)) is None   # one run at a time
    assert process.wait(300) == 0     # a hang guard only: the run's end is the process's exit
    assert tm.this_machine_status(1).ready and not tm.this_machine_status(1).running
    assert load_profile(tm.cache_path(1)).provenance["subnets"] == 5
