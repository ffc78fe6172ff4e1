"""Every search strategy on the same budget, 5 seeds: predicted and measured accuracy, evaluations,
time; then OFA-default evolution time and `specialize` end to end. Prints markdown tables.

    python benchmarks/bench_search.py [--profile cpu-ort-1t] [--latency-fraction 0.3] [--seeds 5]

The budget is latency <= min + fraction x (max - min) of the profile's predicted latency range.
Measured accuracy: the chosen subnet extracted, BN-recalibrated on the bundled calibration
images, exported, and run in ONNX Runtime on the bundled test2k images.
"""

from __future__ import annotations

import os

# One BLAS / OpenMP thread, set before numpy loads: on a shared 2-core machine extra threads
# only spin (OpenBLAS made a 100-row predictor call 30x slower).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ofa_engine.search import STRATEGIES, Constraints, budget_ranges, search  # noqa: E402
from ofa_engine import specialize  # noqa: E402
from ofa_engine.pipeline.specialize import load_resources, onnx_accuracy  # noqa: E402


def measured_accuracy(res, cfg, cache: dict) -> float:
    if cfg not in cache:
        from ofa_engine.runtime.evaluation import calibrate_bn
        from ofa_engine.runtime.export import export_onnx
        net = calibrate_bn(res.supernet.extract(cfg), res.inputs("calib", cfg.image_size))
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(net, cfg, Path(tmp) / "m.onnx", space=res.space)
            cache[cfg] = onnx_accuracy(Path(path).read_bytes(), res.inputs("test2k", cfg.image_size), res.test.labels)
    return cache[cfg]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu-ort-1t")
    parser.add_argument("--latency-fraction", type=float, default=0.3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--supernet", default="tiny-fmnist")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from ofa_engine.devices.profiles import load_profile
    profile = load_profile(args.profile)
    res = load_resources(args.supernet)
    ev = res.evaluator(profile)
    t = time.perf_counter()
    ranges = budget_ranges(ev)
    ranges_s = time.perf_counter() - t
    lat = ranges["latency_ms"]
    budget = Constraints(latency_ms=round(lat["min"] + args.latency_fraction * (lat["max"] - lat["min"]), 4))
    search(ev, budget, "evolution", seed=0, generations=5)   # warm caches

    print(f"command: python benchmarks/bench_search.py --profile {args.profile} "
          f"--latency-fraction {args.latency_fraction} --seeds {args.seeds}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs (shared), python {platform.python_version()}, "
          f"torch {torch.__version__}, 1 torch / BLAS thread")
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"budget: latency_ms <= {budget.latency_ms} on {args.profile} (predicted range "
          f"{lat['min']:.4f}..{lat['max']:.4f} ms); budget_ranges took {ranges_s:.2f} s\n")
    print("| strategy | best predicted acc (median) | measured acc test2k (median) | evaluations | "
          "predictor calls | wall s (median) | CPU s (median) |")
    print("|---|---|---|---|---|---|---|")
    cache: dict = {}
    for strategy in STRATEGIES:
        rows = []
        for seed in range(args.seeds):
            cpu = time.process_time()
            r = search(ev, budget, strategy, seed=seed)
            cpu = time.process_time() - cpu
            rows.append((r.predicted["accuracy"], measured_accuracy(res, r.config, cache), r.evaluations,
                         r.predictor_calls, r.wall_time_s, cpu))
        med = [statistics.median(col) for col in zip(*rows)]
        print(f"| {strategy} | {100 * med[0]:.2f}% | {100 * med[1]:.2f}% | {med[2]:.0f} | {med[3]:.0f} | "
              f"{med[4]:.3f} | {med[5]:.3f} |")

    print("\n| specialize (evolution, OFA defaults) | median | min | max |")
    print("|---|---|---|---|")
    stages: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        spec = specialize(profile, budget, "evolution", seed=seed, supernet=args.supernet)
        stages.setdefault("total", []).append(spec.report["total_time_s"])
        for key, value in spec.report["timings_s"].items():
            stages.setdefault(key, []).append(value)
    for key, values in stages.items():
        print(f"| {key} s | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
