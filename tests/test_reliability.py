"""Reliability of what the engine writes (issue 32): concurrent int8 exports, SIGTERM at every
stage of `specialize`, temporary files of killed writers, run folders of refused trainings, I/O
errors naming the user's path, and what a library's error or warning shows the user.

Every stop is driven by the stage it aims at (a hook that signals the process at that stage),
never by timing.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ofa_engine import files
from ofa_engine.files import OutputWriteError, atomic_path, atomic_write_bytes, exception_reason

ROOT = Path(__file__).resolve().parent.parent
OLD_MODEL, OLD_REPORT = b"old model", '{"old": "report"}\n'
SEARCH_OPTIONS = ["--option", "population=8", "--option", "generations=2"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def small_package(tmp_path_factory) -> Path:
    """The bundled trained supernet with 64 calibration and 200 evaluation images: int8 files
    that pass the agreement floor, quantized and checked in a fraction of the bundled time."""
    from ofa_engine.packages import load_package
    from ofa_engine.packages.build import write_package
    bundled = load_package("tiny-fmnist")
    return write_package(tmp_path_factory.mktemp("package") / "small", bundled.supernet,
                         bundled.calibration.subset(np.arange(64)), bundled.evaluation.subset(np.arange(200)),
                         name="small")


def _old_pair(folder: Path) -> tuple[Path, Path]:
    model, report = folder / "m.onnx", folder / "m.json"
    model.write_bytes(OLD_MODEL)
    report.write_text(OLD_REPORT)
    return model, report


def _pair_state(folder: Path) -> str:
    """'old' or 'new' (a report whose model hash is the model's); fails on anything else, a
    temporary file left behind included."""
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["m.json", "m.onnx"], names
    model, report = (folder / "m.onnx").read_bytes(), (folder / "m.json").read_text()
    if model == OLD_MODEL and report == OLD_REPORT:
        return "old"
    assert model != OLD_MODEL and report != OLD_REPORT, "one file old, the other new"
    onnx_facts = json.loads(report)["onnx"]
    assert onnx_facts["sha256"] == hashlib.sha256(model).hexdigest()
    assert onnx_facts["bytes"] == len(model)
    return "new"


# ------------------------------------------------------------------ int8: no process-wide state
def _float_onnx(tiny_net, path: Path) -> None:
    import copy
    from ofa_engine.families.mbv3.static import fold_bn
    from ofa_engine.runtime.export import write_onnx_unverified
    space = tiny_net.space
    cfg = space.smallest()
    write_onnx_unverified(fold_bn(copy.deepcopy(tiny_net.extract(cfg)).eval()), space, cfg, path, 17)


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_int8_calibration_writes_quantize_static_s_file_and_prints_nothing(method, tiny_net, tmp_path, capfd):
    """The quiet calibration (the percentile method's own one-pass computation included) gives
    ONNX Runtime's `quantize_static` file byte for byte."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from ofa_engine.runtime import quantize as q
    _float_onnx(tiny_net, tmp_path / "float.onnx")
    quant_pre_process(str(tmp_path / "float.onnx"), str(tmp_path / "prepared.onnx"))
    size = tiny_net.space.smallest().image_size
    x = np.random.default_rng(0).standard_normal((48, 1, size, size)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([x[:16], x[16:32], x[32:]])   # several batches: histograms merge

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    capfd.readouterr()
    # ORT's own session setting (no graph optimisation): the same activations, so the same file.
    ranges = q._calibration_ranges(tmp_path / "prepared.onnx", tmp_path / "augmented.onnx", Reader(), method,
                                   q.PERCENTILE, graph_optimization="ORT_DISABLE_ALL")
    if method == "percentile":
        # The default (optimised graph, ~3x faster): the activations differ by float rounding,
        # the ranges by no more than that. (Compared before the quantizer adjusts them in place.)
        fast = q._calibration_ranges(tmp_path / "prepared.onnx", tmp_path / "augmented.onnx", Reader(), method,
                                     q.PERCENTILE)
        assert set(fast.data) == set(ranges.data)
        for name, data in ranges.data.items():
            np.testing.assert_allclose(fast.data[name].range_value, data.range_value, rtol=1e-4, atol=1e-5)
    q._quantize_qdq(tmp_path / "prepared.onnx", tmp_path / "ours.onnx", ranges, method, q.PERCENTILE)
    assert capfd.readouterr().out == ""

    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    quantize_static(str(tmp_path / "prepared.onnx"), str(tmp_path / "ort.onnx"), Reader(),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=calibrate,
                    extra_options=q._extra_options(method, q.PERCENTILE))
    if method != "minmax":
        assert "histogram" in capfd.readouterr().out   # what the quiet calibration does not print
    assert (tmp_path / "ours.onnx").read_bytes() == (tmp_path / "ort.onnx").read_bytes()


def test_percentile_range_is_ort_s_histogram_rule(capsys):
    """The one-pass percentile range equals ORT's own histogram collector's (which prints: the
    test captures it), on arrays with ties, saturated and constant values and sizes where p N is
    an integer."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    from ofa_engine.runtime import quantize as q
    rng = np.random.default_rng(0)
    for i in range(60):
        n = int(rng.choice([1, 2, 37, 1000, 10000, 20000, 100000]))
        x = rng.standard_normal(n).astype(np.float32) * np.float32(rng.uniform(0.1, 10))
        x = [x, np.maximum(x, 0), np.clip(x, -1, 6), np.round(x * 4) / 4, np.full(n, 3.0, np.float32)][i % 5]
        for percentile in (99.99, 99.0):
            collector = HistogramCollector(method="percentile", symmetric=True, num_bins=q.PERCENTILE_BINS,
                                           num_quantized_bins=128, percentile=percentile, scenario="same")
            collector.collect({"t": [x]})
            expected = collector.compute_collection_result()["t"][:2]
            got = q._percentile_range(x, percentile / 100)
            assert [float(v) for v in got] == [float(v) for v in expected], (n, i % 5, percentile)


def test_percentile_range_of_batches_is_that_of_their_concatenation():
    """The calibration's ranges come from a tensor's batches as separate arrays: the same range
    as on their concatenation (large arrays, where only a tail is sorted, and small ones, ties
    and a constant array), the owned batches overwritten, the others left as they are."""
    from ofa_engine.runtime import quantize as q
    rng = np.random.default_rng(1)
    for i in range(30):
        sizes = rng.integers(1, [50, 5000, 200000][i % 3], size=int(rng.integers(1, 6)))
        whole = rng.standard_normal(int(sizes.sum())).astype(np.float32) * np.float32(rng.uniform(0.1, 10))
        whole = [whole, np.clip(whole, -1, 6), np.round(whole * 4) / 4, np.full(whole.size, -2.0, np.float32)][i % 4]
        pieces = np.split(whole, np.cumsum(sizes)[:-1])
        owned = [bool(rng.integers(2)) for _ in pieces]
        given = [p.copy() for p in pieces]
        got = q._percentile_range_of_parts(list(zip(given, owned)), 0.9999)
        assert [float(v) for v in got] == [float(v) for v in q._percentile_range(whole, 0.9999)], i
        for piece, kept, mine in zip(pieces, given, owned):
            np.testing.assert_array_equal(kept, np.abs(piece) if mine else piece)


def test_percentile_range_from_batch_summaries_is_that_of_all_values():
    """The calibration summarises each batch as soon as it has run (min, max, min |x| and the top
    tail of |x|) and lets its activations go: the same range as from all the values at once, for
    tensors whose p N is an integer (kept whole), saturated, tied, one-signed and constant
    values, a last batch smaller than the others, and batches not ours to overwrite."""
    from ofa_engine.runtime import quantize as q
    rng = np.random.default_rng(2)
    kinds = [lambda x: x, lambda x: np.maximum(x, 0), lambda x: np.clip(x, -1, 6), lambda x: np.round(x * 4) / 4,
             lambda x: np.clip(x / 6 + 0.5, 0, 1), lambda x: -np.abs(x), lambda x: np.full_like(x, 3.0)]
    seen = set()
    for i in range(56):
        batches = [[100, 100, 100, 100, 100], [100, 100, 30], [16, 16, 16], [500]][i % 4]
        images = sum(batches)
        per_image = int(rng.choice([20, 40, 37, 1000, 1600, 6]))      # 500 x 20 or 40: p N an integer
        whole = (rng.standard_normal(images * per_image) * rng.uniform(0.1, 10)).astype(np.float32)
        whole = kinds[i % len(kinds)](whole).astype(np.float32).reshape(images, per_image)
        pieces = np.split(whole, np.cumsum(batches)[:-1])
        owned = [bool(rng.integers(2)) for _ in pieces]
        given = [p.copy() for p in pieces]
        summaries = tuple(q._batch_summary(x, mine, len(x), images, 0.9999) for x, mine in zip(given, owned))
        seen.add(type(summaries[0]).__name__)
        got = q._range_of_summaries(summaries, 0.9999)
        assert [float(v) for v in got] == [float(v) for v in q._percentile_range(whole.reshape(-1), 0.9999)], i
        for piece, kept, mine in zip(pieces, given, owned):
            if not mine:
                np.testing.assert_array_equal(kept, piece)
    assert seen == {"_Tail", "tuple"}   # both ways taken


def test_percentile_summaries_refuse_what_they_cannot_give():
    """A batch kept whole among summarised ones (a value that is not finite) or batches that do
    not add up to the tensor's values give no range from summaries (the pass computes it again
    from all the values); a value that is not finite has no range at all (ValueError)."""
    from ofa_engine.runtime import quantize as q
    x = np.random.default_rng(3).standard_normal((3, 100, 40)).astype(np.float32)
    bad = x[2].copy()
    bad[0, 0] = np.nan
    parts = (q._batch_summary(x[0], False, 100, 300, 0.9999), q._batch_summary(x[1], False, 100, 300, 0.9999),
             q._batch_summary(bad, True, 100, 300, 0.9999))
    assert type(parts[0]).__name__ == "_Tail" and isinstance(parts[2], tuple)
    assert q._range_of_summaries(parts, 0.9999) is None
    assert q._range_of_summaries(parts[:2], 0.9999) is None           # 200 images of the 300 assumed
    with pytest.raises(ValueError, match="not finite"):
        q._percentile_range_of_parts([(x[0], False), (bad, True)], 0.9999)


def test_a_tensor_its_summaries_cannot_give_is_calibrated_again_from_all_its_values(tiny_net, tmp_path,
                                                                                     monkeypatch):
    """Where one batch of a tensor is kept whole and the others summarised (a value that is not
    finite, a first axis that is not the batch), the pass runs the batches again for that tensor
    and keeps all its values: the same ranges as when every summary could be used."""
    import onnx
    import onnxruntime
    from ofa_engine.runtime import quantize as q
    _float_onnx(tiny_net, tmp_path / "float.onnx")
    prepared = q._prepare(onnx.load(tmp_path / "float.onnx"))
    size = tiny_net.space.smallest().image_size
    x = np.random.default_rng(4).standard_normal((130, 1, size, size)).astype(np.float32)
    expected = q._writer_ranges(prepared, x, "percentile", q.PERCENTILE)
    real, lock, forced, runs = q._batch_summary, threading.Lock(), [], []

    def one_batch_whole(batch_x, owned, batch, images, quantile):
        summary = real(batch_x, owned, batch, images, quantile)
        with lock:
            if isinstance(summary, q._Tail) and not forced:
                forced.append(True)
                return batch_x, owned
        return summary

    real_run = onnxruntime.InferenceSession.run

    def run(self, *args, **kwargs):
        runs.append(1)
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(q, "_batch_summary", one_batch_whole)
    monkeypatch.setattr(onnxruntime.InferenceSession, "run", run)
    got = q._writer_ranges(prepared, x, "percentile", q.PERCENTILE)
    assert forced and len(runs) == 2 * -(-len(x) // q.PERCENTILE_BATCH)   # every batch, twice
    assert {k: [float(v) for v in r] for k, r in got.items()} == {k: [float(v) for v in r] for k, r in expected.items()}


@pytest.mark.parametrize("whole", [0, 1])
def test_summaries_with_a_batch_kept_whole_in_any_place_ask_for_all_the_values(whole):
    """Whichever batch of a tensor is kept whole (the first one included: it raised
    AttributeError), its summaries give no range and the pass computes it from all the values."""
    from ofa_engine.runtime import quantize as q
    rng = np.random.default_rng(5)
    batches = [rng.standard_normal((50, 8, 6, 6)).astype(np.float32) for _ in range(2)]
    quantile = q.PERCENTILE / 100
    parts = [q._batch_summary(b.copy(), True, 50, 100, quantile) for b in batches]
    assert all(isinstance(p, q._Tail) for p in parts)
    assert q._range_of_summaries(tuple(parts), quantile) == q._percentile_range(np.concatenate(batches), quantile)
    parts[whole] = (batches[whole].copy(), True)
    assert q._range_of_summaries(tuple(parts), quantile) is None


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_int8_calibration_takes_a_set_that_is_not_a_multiple_of_its_batch(method, tiny_net, tmp_path):
    """130 images are calibrated in batches of 100 and 30; ORT's histogram collector cannot stack
    batches of two sizes and raised ValueError."""
    from ofa_engine.runtime.quantize import CALIBRATION_BATCH, quantize_onnx
    _float_onnx(tiny_net, tmp_path / "float.onnx")
    size = tiny_net.space.smallest().image_size
    x = np.random.default_rng(1).standard_normal((130, 1, size, size)).astype(np.float32)
    assert len(x) % CALIBRATION_BATCH
    report = quantize_onnx(tmp_path / "float.onnx", tmp_path / "q.onnx", x, x[:8], method=method, floor=0.0)
    assert report.calibration_images == 130 and (tmp_path / "q.onnx").stat().st_size > 0


@pytest.mark.slow
def test_eight_concurrent_int8_specializations_keep_stdout_and_return_their_own_reports(
        small_package, tmp_path, capfd, monkeypatch):
    """8 threads specialize to int8 at once (~20 s on 2 cores): `sys.stdout` is never swapped
    (checked inside every ONNX Runtime run, calibration included) and what any thread prints
    reaches it; each call returns the report of its own budget and file."""
    import onnxruntime
    from ofa_engine.pipeline.specialize import load_resources, specialize
    from ofa_engine.runtime.export import read_metadata
    load_resources(small_package)
    original = sys.stdout
    seen: list[bool] = []
    real_run = onnxruntime.InferenceSession.run

    def run(self, *args, **kwargs):
        seen.append(sys.stdout is original)
        sys.stdout.write("MARK-run\n")
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", run)
    stop, ticks = threading.Event(), [0]

    def ticker() -> None:
        while not stop.is_set():
            sys.stdout.write("MARK-tick\n")
            ticks[0] += 1
            stop.wait(0.005)

    budgets = [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 3.5]

    def one(i: int):
        return specialize("stm32f746", {"macs_m": budgets[i]}, seed=i, out=tmp_path / f"m{i}.onnx",
                          supernet=small_package, precision="int8",
                          strategy_options={"population": 8, "generations": 2})

    capfd.readouterr()
    printer = threading.Thread(target=ticker)
    printer.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            specs = list(pool.map(one, range(8)))
    finally:
        stop.set()
        printer.join()
    assert sys.stdout is original
    out = capfd.readouterr().out
    assert seen and all(seen), f"sys.stdout was swapped during {seen.count(False)} of {len(seen)} runs"
    assert out.count("MARK-run") == len(seen) and out.count("MARK-tick") == ticks[0]
    assert out.replace("MARK-run\n", "").replace("MARK-tick\n", "") == ""   # nothing else printed

    for i, spec in enumerate(specs):
        path = tmp_path / f"m{i}.onnx"
        meta = read_metadata(path)
        assert spec.report["constraints"]["macs_m"] == budgets[i]
        assert spec.report["precision"] == meta["precision"] == "int8"
        assert meta["config"] == spec.report["config"]
        assert path.read_bytes() == spec.onnx_bytes
        assert json.loads((tmp_path / f"m{i}.json").read_text()) == spec.report
        assert spec.report["onnx"]["sha256"] == hashlib.sha256(spec.onnx_bytes).hexdigest()
    assert len({json.dumps(s.report["config"], sort_keys=True) for s in specs}) > 1


# ------------------------------------------------------------------ SIGTERM at every stage
# (stage, profile, expected pair): the progress stages of `specialize`, then the points of the
# final commit (temporary files written, the model moved but not the report, both moved).
# (No profile where no latency is measured: an fp32 file, no device.)
STAGES = [("load", None, "old"), ("search", None, "old"), ("extract", None, "old"),
          ("export", None, "old"), ("measure accuracy", None, "old"),
          ("measure latency", "cpu-ort-1t", "old"), ("temporary files written", None, "old"),
          ("model moved", None, "new"), ("done", None, "new")]

# Installs the hooks in a process: at STAGE it sends itself SIGTERM (a real, process-wide
# signal: the kernel hands it to any of the process's threads); where the signal should stop the
# run at once, it then waits for the handler to raise (a bounded wait, never reached).
HOOKS = r'''
import importlib, os, signal, time
_pipeline = importlib.import_module("ofa_engine.pipeline.specialize")

def _terminate(wait):
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + 60
    while wait and time.monotonic() < deadline:
        pass
    if wait:
        raise SystemExit("SIGTERM was not handled within 60 s")

def install(stage, model_path):
    real_progress, real_fsync, real_replace = _pipeline.report_progress, os.fsync, os.replace
    def progress(callback, done, total, message=""):
        if message == stage:
            _terminate(wait=True)
        return real_progress(callback, done, total, message)
    def fsync(fd):
        if stage == "temporary files written":
            _terminate(wait=True)
        return real_fsync(fd)
    def replace(src, dst, **kwargs):
        real_replace(src, dst, **kwargs)
        if stage == "model moved" and os.fspath(dst) == os.fspath(model_path):
            _terminate(wait=False)   # held back until the report is in place too
    _pipeline.report_progress, os.fsync, os.replace = progress, fsync, replace
    return real_progress, real_fsync, real_replace

def uninstall(saved):
    _pipeline.report_progress, os.fsync, os.replace = saved
'''


def _specialize_args(package: Path, profile: str | None, out: Path) -> list[str]:
    device = [] if profile is None else ["--profile", profile]
    return ["specialize", *device, "--supernet", str(package), "--out", str(out), "--precision", "fp32",
            *SEARCH_OPTIONS]


@pytest.mark.parametrize("stage,profile,expected", STAGES, ids=[s[0].replace(" ", "-") for s in STAGES])
def test_sigterm_at_every_stage_of_specialize_leaves_the_old_pair_or_the_new_one(
        stage, profile, expected, small_package, tmp_path, capsys):
    """In this process (the CLI's own handler): 143, 'no partial output', and the old pair
    before the model is in place, the new pair from then on, never one without the other."""
    from ofa_engine.cli.main import main
    hooks: dict = {}
    exec(HOOKS, hooks)
    model, _ = _old_pair(tmp_path)
    received: list[int] = []
    safety = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    saved = hooks["install"](stage, model)
    try:
        code = main(_specialize_args(small_package, profile, model))
    finally:
        hooks["uninstall"](saved)
        signal.signal(signal.SIGTERM, safety)
    err = capsys.readouterr().err
    assert received == [], "the CLI's handler was not in place"
    assert code == 143, err
    assert "stopped by SIGTERM; no partial output was left" in err
    assert _pair_state(tmp_path) == expected


CHILD = HOOKS + r'''
import runpy, sys
stage, model = sys.argv[1], sys.argv[2]
install(stage, model)
sys.argv = ["ofa_engine", *sys.argv[3:]]
runpy.run_module("ofa_engine", run_name="__main__", alter_sys=True)
'''


@pytest.mark.slow
def test_sigterm_at_every_stage_of_a_specialize_process(small_package, tmp_path):
    """`python -m ofa_engine specialize` in its own process, stopped at each stage (~30 s on
    2 cores, three processes at a time): exit 143, the old pair or the new one, no temporary
    file, no traceback."""
    def run(item):
        stage, profile, expected = item
        folder = tmp_path / stage.replace(" ", "-")
        folder.mkdir()
        model, _ = _old_pair(folder)
        proc = subprocess.run([sys.executable, "-c", CHILD, stage, str(model),
                               *_specialize_args(small_package, profile, model)],
                              cwd=folder, env=_env(), capture_output=True, text=True, timeout=300)
        return stage, expected, proc, folder

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, STAGES))
    for stage, expected, proc, folder in results:
        assert proc.returncode == 143, (stage, proc.stderr[-2000:])
        assert "no partial output was left" in proc.stderr and "Traceback" not in proc.stderr, stage
        assert _pair_state(folder) == expected, stage


def test_the_model_is_moved_into_place_before_its_report(tmp_path, monkeypatch, small_package):
    from ofa_engine.pipeline.specialize import specialize
    moved: list[str] = []
    real = os.replace

    def replace(src, dst, **kwargs):
        if Path(dst).parent == tmp_path:   # (the export's own file in its private folder aside)
            moved.append(Path(dst).name)
        return real(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    spec = specialize(None, out=tmp_path / "m.onnx", supernet=small_package, precision="fp32",
                      strategy_options={"population": 8, "generations": 2})
    assert moved == ["m.onnx", "m.json"]
    assert spec.report["onnx"] == {"path": str(tmp_path / "m.onnx"), "bytes": len(spec.onnx_bytes),
                                   "sha256": hashlib.sha256((tmp_path / "m.onnx").read_bytes()).hexdigest()}


def test_signals_held_delivers_a_held_sigterm_after_the_block():
    received: list[str] = []

    def handler(signum, frame):
        received.append("handled")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with files.signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):   # bytecodes at which Python would run a pending handler
                pass
            received.append("block done")
        assert received == ["block done", "handled"]
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_signals_held_does_nothing_outside_the_main_thread():
    handlers = []

    def body():
        with files.signals_held():
            handlers.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert handlers == [before]


# ------------------------------------------------------------------ temporary files of killed writers
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_write_removes_only_the_stale_temporary_files_of_its_own_target(tmp_path):
    dead = _dead_pid()
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE) as alive:
        stale = tmp_path / f".m.onnx.{dead}-0123abcd.tmp"
        kept = [tmp_path / f".m.onnx.{alive.pid}-0123abcd.tmp",     # a running writer's
                tmp_path / f".m.onnx.{os.getpid()}-89abcdef.tmp",   # this process's (another thread)
                tmp_path / f".other.onnx.{dead}-0123abcd.tmp",      # another target's
                tmp_path / f".m.onnx.{dead}-0123abcd.tmp.bak",      # not our naming
                tmp_path / f".m.onnx.{dead}-xyz.tmp",
                tmp_path / f"m.onnx.{dead}-0123abcd.tmp"]
        for path in [stale, *kept]:
            path.write_bytes(b"partial")
        (tmp_path / f".m.onnx.{dead}-fedcba98.tmp").mkdir()         # a folder: never ours
        atomic_write_bytes(tmp_path / "m.onnx", b"new")
        alive.stdin.close()
    assert not stale.exists()
    assert all(p.read_bytes() == b"partial" for p in kept)
    assert (tmp_path / f".m.onnx.{dead}-fedcba98.tmp").is_dir()
    assert (tmp_path / "m.onnx").read_bytes() == b"new"


KILLED_WRITER = r'''
import sys
from ofa_engine.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"x" * 1_800_000)
    print(tmp.name, flush=True)
    sys.stdin.read()
'''


def test_the_temporary_file_of_a_sigkilled_writer_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], env=_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    tmp_name = proc.stdout.readline().strip()       # the writer is in the middle of its write
    assert (tmp_path / tmp_name).stat().st_size == 1_800_000
    atomic_write_bytes(target, b"meanwhile")          # a running writer's file is left alone
    assert (tmp_path / tmp_name).exists()
    proc.kill()
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()
    assert (tmp_path / tmp_name).exists() and target.read_bytes() == b"meanwhile"
    atomic_write_bytes(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    assert target.read_bytes() == b"new"


# ------------------------------------------------------------------ run folders of refused trainings
def test_a_refused_training_leaves_no_run_folder(tmp_path):
    from helpers_train import synthetic_sets, tiny_recipe
    from ofa_engine.families.mbv3.space import SearchSpace
    from ofa_engine.training.loop import train
    from ofa_engine.training.recipe import Phase
    train_set, val_set, calib = synthetic_sets()
    space = SearchSpace.preset("tiny-fmnist")
    with pytest.raises(ValueError, match="too few"):
        train(space, tiny_recipe(batch_size=256), train_set, val_set, calib, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="distils from the full network"):
        train(space, tiny_recipe(phases=(Phase("kernel", 1, 0.1, kernel_sizes=(3, 5, 7)),)), train_set, val_set,
              calib, tmp_path / "run", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_train_on_a_too_small_image_folder_refuses_and_leaves_no_run_folder(tmp_path, capsys):
    from PIL import Image
    from ofa_engine.cli.main import main
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(3):
            image = Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8))
            image.save(tmp_path / "images" / label / f"{i}.png")
    code = main(["train", "--data", f"folder:{tmp_path / 'images'}", "--out", str(tmp_path / "run"),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "too few" in err, err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ I/O errors name the user's path
@pytest.mark.parametrize("code,why", [(errno.ENOSPC, "No space left on device (the disk is full)"),
                                      (errno.EROFS, "Read-only file system (the file system is read-only)"),
                                      (errno.EACCES, "Permission denied (the folder is read-only or not yours)")])
def test_a_failed_move_names_the_target_as_given(code, why, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("m.onnx").write_bytes(b"old")

    def replace(src, dst, **kwargs):
        raise OSError(code, os.strerror(code), os.fspath(src), None, os.fspath(dst))

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputWriteError) as info:
        atomic_write_bytes("m.onnx", b"new")
    assert str(info.value) == f"cannot write 'm.onnx': {why}"
    assert info.value.errno == code
    assert sorted(os.listdir()) == ["m.onnx"] and Path("m.onnx").read_bytes() == b"old"


def test_a_full_disk_while_writing_names_the_target(tmp_path):
    def write(fh):
        raise OSError(errno.ENOSPC, "No space left on device")   # as file.write raises it: no name

    with pytest.raises(OutputWriteError, match=r"^cannot write '.*out\.bin': No space left on device"):
        files.atomic_write(tmp_path / "out.bin", write)
    assert list(tmp_path.iterdir()) == []


def test_errors_unrelated_to_the_target_keep_their_own_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        with atomic_path(tmp_path / "m.onnx"):
            open(tmp_path / "missing.onnx", "rb")
    assert list(tmp_path.iterdir()) == []


def test_the_cli_names_the_user_s_path_when_the_disk_is_read_only(tmp_path, monkeypatch, capsys):
    from ofa_engine.cli.main import main
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()

    def replace(src, dst, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", os.fspath(src), None, os.fspath(dst))

    monkeypatch.setattr(os, "replace", replace)
    code = main(["export", "--space", "tiny-fmnist", "--config", "smallest", "--out", "out/model.onnx"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: cannot write 'out/model.onnx': Read-only file system (the file system is read-only)" in err
    assert ".tmp" not in err and list((tmp_path / "out").iterdir()) == []


def test_a_folder_that_refuses_the_temporary_file_is_named_by_the_target(tmp_path, monkeypatch):
    """What open() raises in a read-only folder (as root too): the temporary file's name."""
    def refusing_open(file, mode="r", *args, **kwargs):
        if "w" in mode:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return open(file, mode, *args, **kwargs)

    monkeypatch.setattr(files, "open", refusing_open, raising=False)
    with pytest.raises(OutputWriteError) as info:
        atomic_write_bytes(tmp_path / "m.onnx", b"x")
    assert str(info.value) == (f"cannot write '{tmp_path / 'm.onnx'}': Permission denied "
                               f"(the folder is read-only or not yours)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.may_skip_in_ci
@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_named(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputWriteError, match=r"^cannot write '.*ro/m\.onnx': Permission denied"):
            atomic_write_bytes(folder / "m.onnx", b"x")
    finally:
        folder.chmod(0o755)


# ------------------------------------------------------------------ what libraries show the user
def test_exception_reason_keeps_whole_sentences():
    long = ("PytorchStreamReader failed reading zip archive: failed finding central directory. This is an "
            "internal miniz error. If you are seeing this error, there is a high likelihood that your "
            "checkpoint file is corrupted. This can happen if the checkpoint was not saved properly, was "
            "transferred incorrectly, or the file was modified after saving.")
    reason = exception_reason(RuntimeError(long))
    assert reason.endswith("your checkpoint file is corrupted.") and long.startswith(reason)
    assert exception_reason(RuntimeError("short one\nsecond line")) == "short one"
    assert exception_reason(EOFError()) == "(no message)"
    assert exception_reason(ValueError("\x1b[1mbold\x1b[0m text")) == "bold text"
    word = exception_reason(ValueError("x" * 50 + " " + "y" * 400))
    assert word == "x" * 50 + "..."


def test_a_truncated_supernet_file_is_explained_in_whole_sentences(tmp_path):
    import torch
    from ofa_engine.training.checkpoint import load_supernet_file
    torch.save({"a": torch.zeros(1000)}, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError) as info:
        load_supernet_file(tmp_path / "cut.pt")
    message = str(info.value)
    assert "failed finding central directory." in message
    assert message.endswith(".)"), message   # the quoted explanation ends with its sentence


def test_an_export_from_the_cli_prints_no_warning(tmp_path):
    """torch's legacy-exporter notice and its warning about read-only image arrays reached the
    user on every export."""
    proc = subprocess.run([sys.executable, "-m", "ofa_engine", "export", "--supernet", "tiny-fmnist", "--config",
                           "smallest", "--out", "m.onnx"], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_the_onnx_export_sets_no_warning_filter(tiny_net, tmp_path, monkeypatch):
    """Warning filters are the process's: changing them around an export (catch_warnings) is not
    thread-safe, and concurrent exports could leave one behind or drop another thread's."""
    import warnings
    from ofa_engine.runtime.export import write_onnx_unverified
    calls: list[str] = []
    for name in ("simplefilter", "filterwarnings", "resetwarnings"):
        real = getattr(warnings, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if "ofa_engine" in caller:
                calls.append(f"{_name} from {caller}")
            return _real(*args, **kwargs)

        monkeypatch.setattr(warnings, name, spy)
    cfg = tiny_net.space.smallest()
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_onnx_unverified(tiny_net.extract(cfg), tiny_net.space, cfg, tmp_path / "m.onnx", 17)
    assert calls == []
    assert warnings.filters == before
    assert not [w for w in caught if "legacy TorchScript" in str(w.message)]
