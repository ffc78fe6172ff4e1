"""ofa_engine.runtime.measure: latency statistics of ONNX models and the profile-kit runner."""

import ast
import csv
import io
import json
import os
import warnings

import numpy as np
import onnxruntime
import pytest
import torch

from ofa_engine.runtime import measure, ort
from ofa_engine.runtime.measure import LatencyStats, main, measure_latency, measure_many


def _tiny_onnx(path=None, channels=4, size=8, dynamic=True) -> bytes:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, channels, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(channels, 3)).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # the TorchScript exporter is "legacy"
        torch.onnx.export(model, (torch.zeros(1, 1, size, size),), buffer, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}} if dynamic else None)
    data = buffer.getvalue()
    if path is not None:
        with open(path, "wb") as fh:
            fh.write(data)
    return data


@pytest.fixture(scope="module")
def tiny_bytes():
    return _tiny_onnx()


def test_stats_are_sane(tiny_bytes, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_bytes)
    for source in (tiny_bytes, path, str(path)):
        stats = measure_latency(source, threads=1, batch_size=2, warmup=2, runs=15)
        assert isinstance(stats, LatencyStats)
        assert 0 < stats.q1_ms <= stats.median_ms <= stats.q3_ms
        assert stats.iqr_ms == pytest.approx(stats.q3_ms - stats.q1_ms)
        assert (stats.runs, stats.threads, stats.batch_size) == (15, 1, 2)
    pooled = measure_latency(tiny_bytes, warmup=0, runs=5, repeats=3)
    assert pooled.runs == 15
    assert set(pooled.to_dict()) == {"median_ms", "q1_ms", "q3_ms", "iqr_ms", "runs", "threads", "batch_size"}


def test_fixed_batch_model_keeps_its_shape():
    stats = measure_latency(_tiny_onnx(dynamic=False), batch_size=4, warmup=0, runs=3)
    assert stats.median_ms > 0


@pytest.mark.parametrize("kwargs, field", [({"threads": 0}, "threads"), ({"runs": 0}, "runs"),
                                           ({"batch_size": True}, "batch_size"), ({"warmup": -1}, "warmup"),
                                           ({"repeats": 0}, "repeats")])
def test_bad_arguments_name_the_field(tiny_bytes, kwargs, field):
    with pytest.raises(ValueError, match=field):
        measure_latency(tiny_bytes, **kwargs)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        measure_latency(tmp_path / "nope.onnx")


def _kit(tmp_path, models=2):
    entries = []
    for i in range(models):
        name = f"m{i:03d}.onnx"
        _tiny_onnx(tmp_path / name, channels=4 + 4 * i)
        entries.append({"file": name, "config": {"wid": i, "note": "any-JSON"}})
    manifest = {"format": measure.KIT_FORMAT, "version": measure.KIT_VERSION, "space": "tiny-fmnist",
                "batch_size": 1, "models": entries}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return entries


def test_runner_writes_results_csv(tmp_path, capsys):
    entries = _kit(tmp_path)
    assert main([str(tmp_path), "--rounds", "2", "--runs", "5", "--warmup", "1", "--speed-seconds", "0.1",
                 "--quiet"]) == 0
    with open(tmp_path / "results.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == measure.RESULT_COLUMNS
        rows = list(reader)
    assert [r["file"] for r in rows] == [e["file"] for e in entries]
    for row, entry in zip(rows, entries):
        assert json.loads(row["config"]) == entry["config"]
        assert " " not in row["config"]                       # compact JSON
        assert 0 < float(row["q1_ms"]) <= float(row["median_ms"]) <= float(row["q3_ms"])
        assert (row["runs"], row["threads"], row["batch_size"]) == ("10", "1", "1")
    # Atomic: no temporary file is left behind; how steady the machine was goes beside the results.
    assert sorted(os.listdir(tmp_path)) == ["m000.onnx", "m001.onnx", "machine_speed.json", "manifest.json",
                                            "results.csv"]
    speed = json.loads((tmp_path / measure.SPEED_FILE).read_text())
    assert speed["samples"] >= 10 and speed["steady"] == (speed["spread"] <= measure.STEADY_SPREAD)
    assert "machine speed:" in capsys.readouterr().err   # printed even with --quiet (not a progress line)


def test_runner_failure_leaves_previous_results(tmp_path, capsys):
    _kit(tmp_path)
    (tmp_path / "results.csv").write_text("old\n")
    (tmp_path / "m001.onnx").unlink()
    assert main([str(tmp_path), "--runs", "2", "--speed-seconds", "0.1", "--quiet"]) == 2
    assert "m001.onnx" in capsys.readouterr().err
    assert (tmp_path / "results.csv").read_text() == "old\n"
    assert not (tmp_path / measure.SPEED_FILE).exists()   # nothing of a failed run is written
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("manifest, message", [
    ({"format": "other"}, "format"),
    ({"format": measure.KIT_FORMAT, "version": 99, "models": []}, "version"),
    ({"format": measure.KIT_FORMAT, "version": 1, "models": []}, "models"),
    ({"format": measure.KIT_FORMAT, "version": 1, "models": [{"file": "../x.onnx", "config": {}}]}, "plain file"),
])
def test_runner_rejects_bad_manifests(tmp_path, capsys, manifest, message):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert main([str(tmp_path), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_runner_imports_only_numpy_and_onnxruntime():
    """The kit's runner.py (measure.py) and the ort.py beside it need nothing of ofa_engine."""
    imported = set()
    for module in (measure, ort):
        for node in ast.walk(ast.parse(open(module.__file__, encoding="utf-8").read())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                imported.add("ort" if node.level == 1 else node.module.split(".")[0])
    stdlib = {"argparse", "contextlib", "contextvars", "csv", "dataclasses", "hashlib", "io", "json", "os", "sys",
              "time", "typing"}
    assert imported - stdlib == {"numpy", "onnxruntime", "ort"}


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_session_factory_honours_the_thread_count(tiny_bytes, tmp_path, threads):
    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_bytes)
    for source in (tiny_bytes, path):
        options = ort.make_session(source, threads).get_session_options()
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (threads, 1)
        assert options.execution_mode == onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    spinning = ort.make_session(tiny_bytes, threads, allow_spinning=False).get_session_options()
    assert spinning.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    as_written = ort.make_session(tiny_bytes, threads, fuse_qdq=False).get_session_options()
    assert as_written.get_session_config_entry("session.disable_quant_qdq") == "1"
    basic = ort.make_session(tiny_bytes, threads, graph_optimization="ORT_ENABLE_BASIC").get_session_options()
    assert basic.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.enable_cpu_mem_arena
    no_arena = ort.make_session(tiny_bytes, threads, memory_arena=False)
    assert not no_arena.get_session_options().enable_cpu_mem_arena
    feed = ort.input_feed(no_arena, batch_size=5)
    np.testing.assert_array_equal(no_arena.run(None, feed)[0], ort.make_session(tiny_bytes, threads).run(None, feed)[0])
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="threads"):
            ort.make_session(tiny_bytes, bad)
    with pytest.raises(FileNotFoundError):
        ort.make_session(tmp_path / "nope.onnx")


def _qdq_bytes() -> bytes:
    """A one-node-pair QDQ model (QuantizeLinear -> DequantizeLinear) on a (N, 4) input."""
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["input", "scale", "zero"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["logits"])], "qdq",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("zero", TensorProto.INT8, [], [0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_shared_sessions_hand_out_one_session_per_model_and_options(tiny_bytes, tmp_path):
    """Inside `shared_sessions()` the same model content with the same options is one session,
    whether given as bytes or as a path; options that cannot change a float model's results
    (spinning with one thread, the QDQ setting) do not tell sessions apart; everything else
    does; outside the block, and with shared=False, every call opens its own."""
    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_bytes)
    other, qdq = _tiny_onnx(channels=5), _qdq_bytes()
    assert ort.make_session(tiny_bytes) is not ort.make_session(tiny_bytes)
    with ort.shared_sessions():
        first = ort.make_session(path, 1)
        assert ort.make_session(tiny_bytes, 1, allow_spinning=False) is first
        assert ort.make_session(tiny_bytes, 1, fuse_qdq=False) is first
        assert measure._session(tiny_bytes, 1) is first
        for kwargs in ({"threads": 2}, {"memory_arena": False}, {"graph_optimization": "ORT_ENABLE_BASIC"},
                       {"shared": False}):
            assert ort.make_session(tiny_bytes, **kwargs) is not first, kwargs
        assert ort.make_session(other) is not first
        assert ort.make_session(tiny_bytes, 2, allow_spinning=False) is not ort.make_session(tiny_bytes, 2)
        as_written = ort.make_session(qdq, fuse_qdq=False)
        assert ort.make_session(qdq) is not as_written and ort.make_session(qdq, fuse_qdq=False) is as_written
        assert as_written.get_session_options().get_session_config_entry("session.disable_quant_qdq") == "1"
        with ort.shared_sessions():   # a block of its own
            assert ort.make_session(tiny_bytes) is not first
        assert ort.make_session(tiny_bytes) is first
    assert ort.make_session(tiny_bytes) is not first
    with pytest.raises(FileNotFoundError), ort.shared_sessions():
        ort.make_session(tmp_path / "nope.onnx")


def test_latency_repeats_take_fresh_sessions_inside_a_shared_block(tiny_bytes, monkeypatch):
    """`measure_latency(repeats=N)` promises N fresh sessions: a `shared_sessions()` block does not
    hand it the same one N times (one repeat takes the block's session)."""
    opened = []
    real = ort._new_session
    monkeypatch.setattr(ort, "_new_session", lambda *a, **k: opened.append(1) or real(*a, **k))
    with ort.shared_sessions():
        measure_latency(tiny_bytes, repeats=3, warmup=0, runs=2)
        assert len(opened) == 3
        ort.make_session(tiny_bytes, 1, allow_spinning=False)
        measure_latency(tiny_bytes, warmup=0, runs=2)
        assert len(opened) == 4


def test_time_session_times_the_given_feed(tiny_bytes):
    session = ort.make_session(tiny_bytes)
    feed = ort.input_feed(session, batch_size=3)
    assert feed["input"].shape == (3, 1, 8, 8) and feed["input"].dtype == np.float32
    np.testing.assert_array_equal(feed["input"], ort.input_feed(session, batch_size=3)["input"])   # seeded
    times = ort.time_session(session, feed, warmup=1, runs=7)
    assert times.shape == (7,) and times.dtype == np.float64 and np.all(times > 0)


def test_measure_many_interleaves_rounds_and_validates(tiny_bytes):
    stats = measure_many([tiny_bytes, tiny_bytes], threads=1, rounds=3, runs=4, warmup=0)
    assert len(stats) == 2
    for s in stats:
        assert (s.runs, s.threads, s.batch_size) == (12, 1, 1)
        assert 0 < s.q1_ms <= s.q3_ms and s.median_ms > 0
    seen = []
    measure_many([tiny_bytes], rounds=2, runs=1, warmup=0, progress=lambda r, n, message: seen.append((r, n, message)))
    assert seen == [(1, 2, "measured round 1/2"), (2, 2, "measured round 2/2")]
    with pytest.raises(ValueError, match="rounds"):
        measure_many([tiny_bytes], rounds=0)


def test_machine_speed_summarises_a_fixed_workload():
    speed = measure.machine_speed(0.05, min_samples=12)
    assert speed.samples >= 12 and speed.seconds > 0
    assert 0 < speed.p10_ms <= speed.median_ms <= speed.p90_ms
    assert speed.spread == pytest.approx((speed.p90_ms - speed.p10_ms) / speed.median_ms)
    assert speed.steady == (speed.spread <= measure.STEADY_SPREAD)
    data = speed.to_dict()
    assert measure.MachineSpeed(**{k: data[k] for k in ("median_ms", "p10_ms", "p90_ms", "samples", "seconds")}) == speed
    assert measure.speed_samples(0.01, work=100, min_samples=7).shape[0] >= 7


def test_speed_samples_stop_once_the_time_is_spent_and_not_before_the_minimum(monkeypatch):
    """On a clock that moves 1 ms per reading (a fake: no real timing), the samples take 1 ms
    each and the loop stops once `seconds` are spent, or at `min_samples` if that is later."""
    from types import SimpleNamespace
    readings = []

    def clock() -> int:
        readings.append(len(readings) * 1_000_000)
        return readings[-1]

    monkeypatch.setattr(measure, "time", SimpleNamespace(perf_counter_ns=clock))
    times = measure.speed_samples(0.010, work=10, min_samples=2)
    assert np.all(times == 1.0) and 2 <= len(times) <= 10        # within the 10 ms budget
    assert readings[-1] <= 10_000_000 + 3_000_000                 # stopped within a sample of the end
    readings.clear()
    times = measure.speed_samples(0.001, work=10, min_samples=7)  # the budget ends before the minimum
    assert np.all(times == 1.0) and len(times) == 7
    readings.clear()
    speed = measure.machine_speed(0.010, work=10, min_samples=2)
    assert speed.median_ms == speed.p10_ms == speed.p90_ms == 1.0 and speed.steady
    assert speed.seconds == pytest.approx(speed.samples / 1e3)


def test_machine_speed_says_what_unsteady_means():
    steady = measure.MachineSpeed.from_times([1.0] * 9 + [1.05], 1.0)
    assert steady.steady and steady.spread == pytest.approx(0.005) and "steady (at most 10%)" in steady.describe()
    two_speeds = measure.MachineSpeed.from_times([0.6] * 50 + [1.2] * 50, 1.0)
    assert not two_speeds.steady and two_speeds.spread == pytest.approx(0.6 / 0.9)
    text = two_speeds.describe()
    assert "UNSTEADY" in text and "spread of 67%" in text and "quieter machine" in text


@pytest.mark.parametrize("seconds", [0, -1, 61, True, "1", float("nan")])
def test_machine_speed_rejects_bad_durations(seconds):
    with pytest.raises(ValueError, match=r"seconds = .*allowed: a number in \(0, 60\]"):
        measure.machine_speed(seconds)


@pytest.mark.parametrize("times", [[], [0.0, 1.0], [float("nan")], [-1.0]])
def test_machine_speed_needs_positive_timings(times):
    with pytest.raises(ValueError, match="positive, finite timings"):
        measure.MachineSpeed.from_times(times, 1.0)


def test_runner_refuses_a_bad_speed_duration(tmp_path, capsys):
    _kit(tmp_path)
    assert main([str(tmp_path), "--speed-seconds", "0", "--quiet"]) == 2
    assert "speed_seconds = 0.0; allowed: a number in (0, 120]" in capsys.readouterr().err
    assert not (tmp_path / "results.csv").exists()
