"""Search wall time on the ViT package before / after `ViTFamily.decode` returned a
`ViTPopulation` (before: the interface's default, a list of validated `ViTConfig`s that the
latency features convert back to genes). Interleaved in one process, median of `--repeats`;
also checks that both give the same result.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_vit_search.py
"""

from __future__ import annotations

import os

# One BLAS / OpenMP thread, set before numpy loads (a shared machine).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ofa_engine.devices.profiles import load_profile  # noqa: E402
from ofa_engine.families.vit.family import ViTFamily  # noqa: E402
from ofa_engine.packages import load_package  # noqa: E402
from ofa_engine.search.constraints import Constraints  # noqa: E402
from ofa_engine.search.core import search  # noqa: E402
from ofa_engine.search.evaluator import Evaluator  # noqa: E402
from ofa_engine.space.interface import DiscreteSearchSpace  # noqa: E402

CASES = [("cpu-ort-1t-vit-fmnist", 0.4, "evolution"), ("cpu-ort-1t-vit-fmnist", 0.4, "random"),
         ("stm32f746", 45.0, "evolution")]


def run(evaluator: Evaluator, latency_ms: float, strategy: str, configs: bool):
    """(seconds, result) of one search; `configs`: decode through plain configs (before)."""
    fast = ViTFamily.decode
    if configs:
        ViTFamily.decode = DiscreteSearchSpace.decode
    try:
        start = time.perf_counter()
        result = search(evaluator, Constraints(latency_ms=latency_ms), strategy, seed=0)
        return time.perf_counter() - start, result
    finally:
        ViTFamily.decode = fast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pkg = load_package("vit-fmnist")
    print(f"| profile | strategy | before (configs) s | after (population) s | speed-up | same result |")
    print("|---|---|---:|---:|---:|---|")
    for profile, bound, strategy in CASES:
        evaluator = Evaluator(pkg.space, load_profile(profile).for_space(pkg.space), pkg.accuracy_predictor)
        times: dict[bool, list[float]] = {True: [], False: []}
        results = {}
        for _ in range(args.repeats):
            for configs in (True, False):
                seconds, results[configs] = run(evaluator, bound, strategy, configs)
                times[configs].append(seconds)
        before, after = (statistics.median(times[c]) for c in (True, False))
        a, b = results[True], results[False]
        same = (a.config == b.config and a.predicted == b.predicted and a.evaluations == b.evaluations
                and all(np.array_equal(a.history[k], b.history[k], equal_nan=a.history[k].dtype.kind == "f")
                        for k in a.history))
        print(f"| {profile} | {strategy} | {before:.2f} | {after:.2f} | {before / after:.1f}x | {same} |")


if __name__ == "__main__":
    main()
