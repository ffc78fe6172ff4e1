"""Search wall time on the ProxylessNAS family before / after its exact efficiency tables
(`families/proxyless/tables.py`). Before: `analytic_efficiency` and `analyze` of several configs
walked the layout block by block (`analytics.analyze_values`, still the reference; patched
back in for the "walk" column); after: one gather from the per-slot tables. The default
evolution search (seed 0) under a MACs budget, the stm32f746 profile and the MACs proxy as
accuracy (no predictor: what `specialize` uses for a package without one), on the preset and on
the small space of tests/test_app_official_zoo.py. Interleaved in one process, median of
`--repeats`; also checks that both give the same result (config, metrics, whole history).

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_proxyless_search.py
"""

from __future__ import annotations

import os

# One BLAS / OpenMP thread, set before numpy loads (a shared machine).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ofa_engine.devices.profiles import load_profile  # noqa: E402
from ofa_engine.families.proxyless import analytics  # noqa: E402
from ofa_engine.families.proxyless.family import EFFICIENCY, ProxylessFamily  # noqa: E402
from ofa_engine.families.proxyless.space import ProxylessSpace  # noqa: E402
from ofa_engine.predictors.accuracy import MacsProxy  # noqa: E402
from ofa_engine.search.constraints import Constraints  # noqa: E402
from ofa_engine.search.core import search  # noqa: E402
from ofa_engine.search.evaluator import Evaluator  # noqa: E402

PRESET = ProxylessSpace.preset("ofa-proxyless-w1.3")
# tests/test_app_official_zoo.py's SPACES["proxyless"] (that module needs streamlit).
SMALL = dataclasses.replace(PRESET, name="proxyless-shapes", num_classes=3, labels=("circle", "square", "triangle"),
                            resolutions=(24, 28, 32), width_mult=0.5, mean=(0.2, 0.2, 0.2), std=(0.3, 0.3, 0.3))
CASES = [("ofa-proxyless-w1.3", PRESET, 300.0), ("proxyless-shapes", SMALL, 3.0)]


def _walk_efficiency(self, genes):
    out = analytics.analyze_values(self.space, self.genome.values(genes))
    return {name: out[name] for name in EFFICIENCY}


def _walk_analyze(self, configs):
    return analytics.analyze(self.space, configs)


def _walk_deployment_bytes(self, configs, precision):
    return analytics.deployment_bytes(self.space, configs, precision)


WALK = {"analytic_efficiency": _walk_efficiency, "analyze": _walk_analyze, "deployment_bytes": _walk_deployment_bytes}


def run(space: ProxylessSpace, macs_m: float, walk: bool):
    """(seconds, result) of one search; `walk`: the block-by-block analytics (before)."""
    tables = {name: getattr(ProxylessFamily, name) for name in WALK}
    if walk:
        for name, method in WALK.items():
            setattr(ProxylessFamily, name, method)
    try:
        start = time.perf_counter()
        evaluator = Evaluator(space, load_profile("stm32f746"), MacsProxy(space))
        result = search(evaluator, Constraints(macs_m=macs_m), "evolution", seed=0)
        return time.perf_counter() - start, result
    finally:
        for name, method in tables.items():
            setattr(ProxylessFamily, name, method)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("| space | MACs budget | walk s | tables s | speed-up | same result |")
    print("|---|---:|---:|---:|---:|---|")
    for name, space, macs_m in CASES:
        times: dict[bool, list[float]] = {True: [], False: []}
        results = {}
        for _ in range(args.repeats):
            for walk in (True, False):
                seconds, results[walk] = run(space, macs_m, walk)
                times[walk].append(seconds)
        before, after = (statistics.median(times[w]) for w in (True, False))
        a, b = results[True], results[False]
        same = (a.config == b.config and a.predicted == b.predicted and a.evaluations == b.evaluations
                and np.array_equal(a.history_genes, b.history_genes)
                and all(np.array_equal(a.history[k], b.history[k], equal_nan=a.history[k].dtype.kind == "f")
                        for k in a.history))
        print(f"| {name} | {macs_m:g} M | {before:.2f} | {after:.2f} | {before / after:.1f}x | {same} |")


if __name__ == "__main__":
    main()
