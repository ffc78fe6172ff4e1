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
for its own latency (measured here: two back-to-back passes over the same 60 subnets agreed
within +-10% for only ~30% of them). So every model gets `rounds` short bursts, visited in a
fresh random order each round, and its latency is the median over rounds of each burst's
median: a slow phase spoils a few bursts of many models, not all bursts of one (the same two
passes, 7 rounds: 95% within +-10%).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

if __package__:
    from .ort import input_feed, make_session, time_session
else:   # runner.py of a profile kit: ort.py is copied beside it
    from ort import input_feed, make_session, time_session

__all__ = ["LatencyStats", "measure_latency", "measure_many", "run_kit", "main",
           "KIT_FORMAT", "KIT_VERSION", "RESULT_COLUMNS"]

KIT_FORMAT, KIT_VERSION = "ofa-engine/profile-kit", 1
RESULT_COLUMNS = ("file", "config", "median_ms", "q1_ms", "q3_ms", "runs", "threads", "batch_size")
DEFAULT_WARMUP, DEFAULT_RUNS = 20, 100
# measure_many: runs per burst, warm-up per burst, bursts (rounds) per model.
MANY_RUNS, MANY_WARMUP, MANY_ROUNDS = 30, 5, 11


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


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} = {value!r}; allowed: an integer >= 1")
    return int(value)


def _session(model: str | os.PathLike | bytes, threads: int):
    # Spinning worker threads would steal the CPU from the measuring thread's neighbours and
    # make a shared machine noisier; only useful with several threads.
    return make_session(model, threads, allow_spinning=threads > 1)


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
    sessions = (_session(onnx_path_or_bytes, threads) for _ in range(repeats))
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
            progress: Callable[[int, int, str], None] | None = None) -> str:
    """Measure every model of a profile kit (`measure_many`) and write `KIT_DIR/results.csv`
    atomically; returns its path. `batch_size` defaults to the manifest's."""
    manifest = _read_manifest(kit_dir)
    batch_size = int(manifest.get("batch_size", 1)) if batch_size is None else batch_size
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    models = manifest["models"]
    all_stats = measure_many([os.path.join(kit_dir, entry["file"]) for entry in models], threads=threads,
                             batch_size=batch_size, rounds=rounds, runs=runs, warmup=warmup,
                             progress=progress)
    for entry, stats in zip(models, all_stats):
        config = json.dumps(entry["config"], separators=(",", ":"))
        writer.writerow([entry["file"], config, f"{stats.median_ms:.6f}", f"{stats.q1_ms:.6f}",
                         f"{stats.q3_ms:.6f}", stats.runs, stats.threads, stats.batch_size])
    out = os.path.join(kit_dir, "results.csv")
    # Written by hand, not with ofa_engine.files: the runner runs where ofa_engine is not installed.
    tmp = f"{out}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(buffer.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python runner.py KIT_DIR [--threads T] [--batch-size B] [--rounds N] [--runs R] [--warmup W]`."""
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
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)

    def progress(done: int, total: int, message: str) -> None:
        print(f"round {done}/{total}", file=sys.stderr)

    try:
        out = run_kit(args.kit_dir, threads=args.threads, batch_size=args.batch_size, runs=args.runs,
                      warmup=args.warmup, rounds=args.rounds, progress=None if args.quiet else progress)
    except (ValueError, OSError) as exc:
        where = f": '{exc.filename}'" if isinstance(exc, OSError) and exc.filename else ""
        print(f"error: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}{where}",
              file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
