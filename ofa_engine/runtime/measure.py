"""Latency of an ONNX model in ONNX Runtime (CPU), and the profile kit's runner.

This file imports only the standard library, numpy and `ort.py` (sessions and timing, which
imports onnxruntime): it is copied verbatim into a profile kit as `runner.py`, with `ort.py`
beside it, to run on a device that has nothing else installed::

    python runner.py KIT_DIR [--threads T] [--batch-size B] [--runs R]

reads `KIT_DIR/manifest.json` ({"format": "ofa-engine/profile-kit", "version": 1, "space": ...,
"batch_size": ..., "models": [{"file": "m000.onnx", "config": {...}}, ...]}) and writes
`KIT_DIR/results.csv` (columns `file,config,median_ms,q1_ms,q3_ms,runs,threads,batch_size`,
config as compact JSON) atomically.

Method: one session per model (`ort.make_session`) with `intra_op_num_threads = threads`, one
inter-op thread, sequential execution, every graph optimisation on and, with one thread, no
spinning worker threads; `warmup` untimed runs, then `runs` timed runs of one fixed random
input (wall clock, `ort.time_session`). The median is the latency; the interquartile range
says how noisy the machine was.

Many models (`measure_many`, the kit runner, the latency datasets): shared and virtual
machines go through slow phases lasting seconds, which a model measured in one stretch takes
for its own latency. So every model gets `rounds` short bursts, visited in a fresh random
order each round, and its latency is the median over rounds of each burst's median: a slow
phase spoils a few bursts of many models, not all bursts of one.

How steady the machine is (`machine_speed`): some machines change speed faster than any
interleaving can average out. `machine_speed` times a fixed single-threaded workload for a
while and reports the spread of its 10th-90th percentile; a spread above `STEADY_SPREAD` means
the machine cannot time a model to +-10% at all, whatever the protocol. The kit runner and the
start-up profile record it beside their results.

The measurements behind both choices (machines, dates, commands): ofa_engine's
docs/latency-measurement.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

if __package__:
    from .ort import input_feed, make_session, time_session
else:   # runner.py of a profile kit: ort.py is copied beside it
    from ort import input_feed, make_session, time_session

__all__ = ["LatencyStats", "MachineSpeed", "measure_latency", "measure_many", "machine_speed", "run_kit", "main",
           "speed_samples", "KIT_FORMAT", "KIT_VERSION", "RESULT_COLUMNS", "STEADY_SPREAD", "SPEED_FILE"]

KIT_FORMAT, KIT_VERSION = "ofa-engine/profile-kit", 1
RESULT_COLUMNS = ("file", "config", "median_ms", "q1_ms", "q3_ms", "runs", "threads", "batch_size")
DEFAULT_WARMUP, DEFAULT_RUNS = 20, 100
# measure_many: runs per burst, warm-up per burst, bursts (rounds) per model.
MANY_RUNS, MANY_WARMUP, MANY_ROUNDS = 30, 5, 11
# machine_speed: a machine whose fixed workload's 10th-90th percentile spread (over its median)
# exceeds this cannot time a model to +-10%; loop iterations of one sample (~1-2 ms here).
STEADY_SPREAD, SPEED_WORK = 0.10, 20_000
SPEED_FILE = "machine_speed.json"   # written by run_kit beside results.csv


@dataclass(frozen=True)
class LatencyStats:
    """Summary of `runs` timed inferences, in milliseconds."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    iqr_ms: float
    runs: int
    threads: int
    batch_size: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MachineSpeed:
    """How steady the machine's speed was: `samples` timings (ms) of one fixed single-threaded
    workload over `seconds`. `spread` = (p90 - p10) / median; `steady` when it is at most
    `STEADY_SPREAD`."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    samples: int
    seconds: float

    @classmethod
    def from_times(cls, times_ms: Sequence[float], seconds: float) -> "MachineSpeed":
        t = np.asarray(times_ms, np.float64)
        if t.size < 1 or not np.isfinite(t).all() or (t <= 0).any():
            raise ValueError("machine speed: needs one or more positive, finite timings")
        p10, median, p90 = np.percentile(t, [10, 50, 90])
        return cls(float(median), float(p10), float(p90), int(t.size), float(seconds))

    @property
    def spread(self) -> float:
        return (self.p90_ms - self.p10_ms) / self.median_ms

    @property
    def steady(self) -> bool:
        return self.spread <= STEADY_SPREAD

    def describe(self) -> str:
        """One line for a person: the spread, and what it means for the measurements."""
        head = (f"machine speed: a fixed workload took {self.p10_ms:.2f}-{self.p90_ms:.2f} ms (10th-90th "
                f"percentile of {self.samples} samples over {self.seconds:.1f} s), a spread of "
                f"{100 * self.spread:.0f}%")
        if self.steady:
            return f"{head}: steady (at most {100 * STEADY_SPREAD:.0f}%)"
        return (f"{head}: UNSTEADY (more than {100 * STEADY_SPREAD:.0f}%): this machine changes speed by about that "
                f"much within seconds, so latencies measured here scatter by as much; measure on a quieter "
                f"machine, or expect predictions no closer than that")

    def to_dict(self) -> dict:
        return {**asdict(self), "spread": round(self.spread, 4), "steady": self.steady}


def speed_samples(seconds: float = 1.0, work: int = SPEED_WORK, min_samples: int = 10) -> np.ndarray:
    """Timings (ms) of a fixed single-threaded pure-Python loop (`work` iterations), repeated
    for `seconds` and at least `min_samples` times; about `seconds` of one core. `ValueError`
    for `seconds` outside (0, 60] or a bad count."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 60:
        raise ValueError(f"seconds = {seconds!r}; allowed: a number in (0, 60]")
    work, min_samples = _positive_int(work, "work"), _positive_int(min_samples, "min_samples")
    clock = time.perf_counter_ns
    times = []
    end = clock() + int(seconds * 1e9)
    while clock() < end or len(times) < min_samples:
        t0 = clock()
        x = 0
        for i in range(work):
            x += i
        times.append((clock() - t0) / 1e6)
    return np.array(times)


def machine_speed(seconds: float = 1.0, work: int = SPEED_WORK, min_samples: int = 10) -> MachineSpeed:
    """How steady this machine's speed is: `speed_samples` summarised (`MachineSpeed`)."""
    times = speed_samples(seconds, work, min_samples)
    return MachineSpeed.from_times(times, float(times.sum()) / 1e3)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} = {value!r}; allowed: an integer >= 1")
    return int(value)


def _session(model: str | os.PathLike | bytes, threads: int, shared: bool = True):
    # Spinning worker threads would steal the CPU from the measuring thread's neighbours and
    # make a shared machine noisier; only useful with several threads.
    return make_session(model, threads, allow_spinning=threads > 1, shared=shared)


def measure_latency(onnx_path_or_bytes: str | os.PathLike | bytes, threads: int = 1, batch_size: int = 1,
                    warmup: int = DEFAULT_WARMUP, runs: int = DEFAULT_RUNS, repeats: int = 1) -> LatencyStats:
    """Median and interquartile range of the latency (ms) of one ONNX model in ONNX Runtime CPU.

    The input shape comes from the model; a dynamic batch dimension becomes `batch_size`.
    `repeats` > 1 measures `runs` times in each of `repeats` fresh sessions and pools the
    times (`runs` in the result is the total): a session's memory placement shifts its
    latency by several percent, which one session alone would take for the truth.
    Raises `ValueError` for bad arguments or an unsupported input and `FileNotFoundError` for
    a missing file.
    """
    threads = _positive_int(threads, "threads")
    batch_size = _positive_int(batch_size, "batch_size")
    runs = _positive_int(runs, "runs")
    repeats = _positive_int(repeats, "repeats")
    if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
        raise ValueError(f"warmup = {warmup!r}; allowed: an integer >= 0")
    sessions = (_session(onnx_path_or_bytes, threads, shared=repeats == 1) for _ in range(repeats))
    times = np.concatenate([time_session(s, input_feed(s, batch_size), int(warmup), runs) for s in sessions])
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return LatencyStats(float(median), float(q1), float(q3), float(q3 - q1), int(times.size), threads,
                        batch_size)


def measure_many(models: Sequence[str | os.PathLike | bytes], threads: int = 1, batch_size: int = 1,
                 rounds: int = MANY_ROUNDS, runs: int = MANY_RUNS, warmup: int = MANY_WARMUP,
                 seed: int = 0, progress: Callable[[int, int, str], None] | None = None) -> list[LatencyStats]:
    """Latency of each model, measured interleaved (see the module docstring): `rounds`
    bursts of `warmup` + `runs` inferences per model, models in a seeded random order each
    round. `median_ms` is the median over rounds of the burst medians; `q1_ms` / `q3_ms` are
    the quartiles of all timed runs of the model. `progress(round, rounds, message)` after each
    round."""
    threads, batch_size = _positive_int(threads, "threads"), _positive_int(batch_size, "batch_size")
    rounds, runs = _positive_int(rounds, "rounds"), _positive_int(runs, "runs")
    if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
        raise ValueError(f"warmup = {warmup!r}; allowed: an integer >= 0")
    sessions = [_session(m, threads) for m in models]
    times = np.zeros((len(sessions), rounds, runs))
    order_rng = np.random.default_rng(seed)
    for r in range(rounds):
        for i in order_rng.permutation(len(sessions)):
            # A fresh (identical, seeded) input per burst: one model's input in memory at a time.
            times[i, r] = time_session(sessions[i], input_feed(sessions[i], batch_size), int(warmup), runs)
        if progress is not None:
            progress(r + 1, rounds, f"measured round {r + 1}/{rounds}")
    stats = []
    for t in times:
        q1, q3 = np.percentile(t, [25, 75])
        median = float(np.median(np.median(t, axis=1)))
        stats.append(LatencyStats(median, float(q1), float(q3), float(q3 - q1), int(t.size), threads, batch_size))
    return stats


# ---------------------------------------------------------------------- profile-kit runner
def _read_manifest(kit_dir: str) -> dict:
    path = os.path.join(kit_dir, "manifest.json")
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(2, "No manifest.json in the kit folder", path) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"'{path}' is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != KIT_FORMAT:
        raise ValueError(f"'{path}': field 'format' must be '{KIT_FORMAT}'")
    if manifest.get("version") != KIT_VERSION:
        raise ValueError(f"'{path}': field 'version' = {manifest.get('version')!r}; this runner "
                         f"reads version {KIT_VERSION}")
    models = manifest.get("models")
    if not isinstance(models, list) or not models:
        raise ValueError(f"'{path}': field 'models' must be a non-empty list")
    for i, entry in enumerate(models):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or "config" not in entry:
            raise ValueError(f"'{path}': models[{i}] must be an object with 'file' (string) and 'config'")
        if os.path.basename(entry["file"]) != entry["file"]:
            raise ValueError(f"'{path}': models[{i}].file = {entry['file']!r} must be a plain file "
                             f"name inside the kit folder")
    return manifest


def run_kit(kit_dir: str, threads: int = 1, batch_size: int | None = None, runs: int = MANY_RUNS,
            warmup: int = MANY_WARMUP, rounds: int = MANY_ROUNDS,
            progress: Callable[[int, int, str], None] | None = None, speed_seconds: float = 2.0,
            speed_report: Callable[[MachineSpeed], None] | None = None) -> str:
    """Measure every model of a profile kit (`measure_many`) and write `KIT_DIR/results.csv`
    atomically; returns its path. `batch_size` defaults to the manifest's. How steady the
    machine was (`machine_speed`, half of `speed_seconds` before the models and half after) goes
    to `KIT_DIR/machine_speed.json` (`MachineSpeed.to_dict`) and to `speed_report`."""
    manifest = _read_manifest(kit_dir)
    batch_size = int(manifest.get("batch_size", 1)) if batch_size is None else batch_size
    if isinstance(speed_seconds, bool) or not isinstance(speed_seconds, (int, float)) or not 0 < speed_seconds <= 120:
        raise ValueError(f"speed_seconds = {speed_seconds!r}; allowed: a number in (0, 120]")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    models = manifest["models"]
    before = speed_samples(speed_seconds / 2)
    all_stats = measure_many([os.path.join(kit_dir, entry["file"]) for entry in models], threads=threads,
                             batch_size=batch_size, rounds=rounds, runs=runs, warmup=warmup,
                             progress=progress)
    times = np.concatenate([before, speed_samples(speed_seconds / 2)])
    speed = MachineSpeed.from_times(times, float(times.sum()) / 1e3)
    for entry, stats in zip(models, all_stats):
        config = json.dumps(entry["config"], separators=(",", ":"))
        writer.writerow([entry["file"], config, f"{stats.median_ms:.6f}", f"{stats.q1_ms:.6f}",
                         f"{stats.q3_ms:.6f}", stats.runs, stats.threads, stats.batch_size])
    out = os.path.join(kit_dir, "results.csv")
    _write_atomic(os.path.join(kit_dir, SPEED_FILE), json.dumps(speed.to_dict(), indent=1) + "\n")
    _write_atomic(out, buffer.getvalue())
    if speed_report is not None:
        speed_report(speed)
    return out


def _write_atomic(path: str, text: str) -> None:
    # Written by hand, not with ofa_engine.files: the runner runs where ofa_engine is not installed.
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv: Sequence[str] | None = None) -> int:
    """`python runner.py KIT_DIR [--threads T] [--batch-size B] [--rounds N] [--runs R] [--warmup W]
    [--speed-seconds S] [--quiet]`."""
    parser = argparse.ArgumentParser(
        description="Measure the ONNX models of an ofa_engine profile kit; writes KIT_DIR/results.csv.")
    parser.add_argument("kit_dir", metavar="KIT_DIR")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="batch size (default: the manifest's batch_size)")
    parser.add_argument("--rounds", type=int, default=MANY_ROUNDS,
                        help=f"bursts per model, interleaved across models (default {MANY_ROUNDS})")
    parser.add_argument("--runs", type=int, default=MANY_RUNS, help=f"timed runs per burst "
                        f"(default {MANY_RUNS})")
    parser.add_argument("--warmup", type=int, default=MANY_WARMUP,
                        help=f"untimed runs before each burst (default {MANY_WARMUP})")
    parser.add_argument("--speed-seconds", type=float, default=2.0,
                        help="how long to time the machine's own speed, half before and half after the models "
                             "(default 2; machine_speed.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)

    def progress(done: int, total: int, message: str) -> None:
        print(f"round {done}/{total}", file=sys.stderr)

    try:
        out = run_kit(args.kit_dir, threads=args.threads, batch_size=args.batch_size, runs=args.runs,
                      warmup=args.warmup, rounds=args.rounds, progress=None if args.quiet else progress,
                      speed_seconds=args.speed_seconds, speed_report=lambda speed: print(speed.describe(), file=sys.stderr))
    except (ValueError, OSError) as exc:
        where = f": '{exc.filename}'" if isinstance(exc, OSError) and exc.filename else ""
        print(f"error: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}{where}",
              file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
