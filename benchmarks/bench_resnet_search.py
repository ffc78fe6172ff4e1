"""Search wall time on the ResNet family before / after its exact efficiency tables
(`families/resnet/tables.py`) and `ResNetFamily.decode` returning a `ResNetPopulation`.

Before (the old path, still callable): `Evaluator(..., fast=False)` (the search's
`analytic_efficiency` by the block-by-block walk), `decode` as the interface's default (a list of
validated `ResNetConfig`s that the latency features and the predictors convert back to genes),
and `analyze` / `deployment_bytes` of a batch by the walk (what the MACs proxy and the profile's
memory check call). After: the defaults. Evolution, seed 0, default options, under a MACs
budget, on the stm32f746 profile; the preset `ofa-resnet50d` and the zoo's small space
(tests/test_app_official_zoo.py), each with a seeded random MLP predictor and with the MACs
proxy (a package without a predictor). Interleaved in one process, median of `--repeats`;
also checks that both give the same result (config, metrics, every history column).

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_resnet_search.py
"""

from __future__ import annotations

import os

# One BLAS / OpenMP thread, set before numpy loads (a shared machine).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Mapping  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from ofa_engine.devices.profiles import load_profile  # noqa: E402
from ofa_engine.families import family_of  # noqa: E402
from ofa_engine.families.resnet import analytics  # noqa: E402
from ofa_engine.families.resnet.family import ResNetFamily  # noqa: E402
from ofa_engine.families.resnet.space import ResNetConfig  # noqa: E402
from ofa_engine.predictors.accuracy import AccuracyPredictor, MacsProxy  # noqa: E402
from ofa_engine.search.constraints import Constraints  # noqa: E402
from ofa_engine.search.core import search  # noqa: E402
from ofa_engine.search.evaluator import Evaluator  # noqa: E402
from ofa_engine.space.interface import DiscreteSearchSpace  # noqa: E402


def random_predictor(space, seed: int = 0) -> AccuracyPredictor:
    """A seeded random MLP on the family's encoding (the encode path of a real predictor)."""
    rng = np.random.default_rng(seed)
    sizes = [family_of(space).encoding_size, 32, 1]
    return AccuracyPredictor(space, weights=[rng.standard_normal((a, b)) * 0.3 for a, b in zip(sizes, sizes[1:])],
                             biases=[rng.standard_normal(b) * 0.1 for b in sizes[1:]], baseline_bias=0.7,
                             target_scale=0.05)


def _walk_tally(space, cfg):
    """`analytics.tally` as it was: every batch by the block-by-block walk."""
    single = isinstance(cfg, (ResNetConfig, Mapping))
    genome = space.genome
    return analytics.analyze_values(space, genome.values(genome.from_configs(cfg))), single


@contextlib.contextmanager
def old_path(old: bool):
    saved = ResNetFamily.decode, analytics.tally
    if old:
        ResNetFamily.decode, analytics.tally = DiscreteSearchSpace.decode, _walk_tally
    try:
        yield
    finally:
        ResNetFamily.decode, analytics.tally = saved


def run(space, predictor, macs_m: float, old: bool):
    """(seconds, result) of one search on the old or the new path."""
    with old_path(old):
        evaluator = Evaluator(space, load_profile("stm32f746").for_space(space), predictor, fast=not old)
        start = time.perf_counter()
        result = search(evaluator, Constraints(macs_m=macs_m), "evolution", seed=0)
        return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from test_app_official_zoo import SPACES
    cases = [("ofa-resnet50d", family_of("ofa-resnet50d").space, 1500.0),
             ("resnet-shapes (small)", SPACES["resnet"], 1.467)]
    print("| space | predictor | MACs budget (M) | before s | after s | speed-up | same result |")
    print("|---|---|---:|---:|---:|---:|---|")
    for label, space, macs_m in cases:
        for predictor_name, predictor in (("random MLP", random_predictor(space)), ("MACs proxy", MacsProxy(space))):
            times: dict[bool, list[float]] = {True: [], False: []}
            results = {}
            run(space, predictor, macs_m, False)   # tables built, caches warm
            for _ in range(args.repeats):
                for old in (True, False):
                    seconds, results[old] = run(space, predictor, macs_m, old)
                    times[old].append(seconds)
            before, after = (statistics.median(times[o]) for o in (True, False))
            a, b = results[True], results[False]
            same = (a.config == b.config and a.predicted == b.predicted and a.evaluations == b.evaluations
                    and all(np.array_equal(a.history[k], b.history[k], equal_nan=a.history[k].dtype.kind == "f")
                            for k in a.history))
            print(f"| {label} | {predictor_name} | {macs_m:g} | {before:.2f} | {after:.2f} | {before / after:.1f}x "
                  f"| {same} |", flush=True)


if __name__ == "__main__":
    main()
