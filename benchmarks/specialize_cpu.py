"""Where a warm `specialize` call leaves the CPU idle: its wall time against its CPU time.

    python benchmarks/specialize_cpu.py [--cases fp32-cpu,int8-mcu] [--runs 3] [--search-beside-bn]

For each case of bench_specialize.py (the same budgets), after a warm-up call: the call's wall
time, its process CPU time (user, system; getrusage) and the report's stages. A call that used
CPU time close to twice its wall time kept both cores busy; the rest is serial.

`--search-beside-bn`: the fp32 case's search alone, and again with BN recalibration of its
subnet running in a second thread (what starting BN for the search's interim best would cost
the search: both threads take the GIL in turn).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_specialize  # noqa: E402


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _search_beside_bn(runs: int) -> None:
    from ofa_engine.devices.profiles import load_profile
    from ofa_engine.pipeline.specialize import load_resources
    from ofa_engine.runtime.evaluation import calibrate_bn
    from ofa_engine.search.constraints import Constraints
    from ofa_engine.search.core import search
    res = load_resources("tiny-fmnist")
    profile = load_profile("cpu-ort-1t").for_precision("fp32")
    evaluator = res.evaluator(profile, "fp32")
    constraints = Constraints.from_dict({"latency_ms": 0.35}).with_device_memory(profile)
    cfg = search(evaluator, constraints, "evolution", 0).config
    images = res.inputs("calib", cfg.image_size)
    alone, beside, bn = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        search(evaluator, constraints, "evolution", 0)
        alone.append(time.perf_counter() - start)
        done: list[float] = []

        def recalibrate() -> None:
            t = time.perf_counter()
            calibrate_bn(res.supernet.extract(cfg), images, workers=1)
            done.append(time.perf_counter() - t)

        thread = threading.Thread(target=recalibrate)
        start = time.perf_counter()
        thread.start()
        search(evaluator, constraints, "evolution", 0)
        beside.append(time.perf_counter() - start)
        thread.join()
        bn.extend(done)
    print(f"search alone {statistics.median(alone):.3f} s; beside BN recalibration in a thread "
          f"{statistics.median(beside):.3f} s (BN {statistics.median(bn):.3f} s); medians of {runs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="fp32-cpu,int8-mcu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--search-beside-bn", action="store_true")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    print("| case | runs | wall s | user s | system s | CPU / wall | stages (median s) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for case in [c for c in args.cases.split(",") if c]:
        bench_specialize.run_case(case)
        rows = []
        for _ in range(args.runs):
            user, system = _cpu()
            start = time.perf_counter()
            result = bench_specialize.run_case(case)
            wall = time.perf_counter() - start
            user2, system2 = _cpu()
            rows.append((wall, user2 - user, system2 - system, result["stages"]))
        wall, user, system = (statistics.median(r[i] for r in rows) for i in range(3))
        stages = ", ".join(f"{k} {statistics.median(r[3].get(k, 0.0) for r in rows):.2f}" for k in rows[0][3])
        print(f"| {case} | {args.runs} | {wall:.2f} | {user:.2f} | {system:.2f} | {(user + system) / wall:.2f} | "
              f"{stages} |", flush=True)
    if args.search_beside_bn:
        _search_beside_bn(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
