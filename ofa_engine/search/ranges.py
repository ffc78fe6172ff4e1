"""Smallest and largest achievable value of every metric, for sliders and budget errors.

MACs, params, Flash and peak activation are exact where the space computes exact extremes
(MobileNetV3: dynamic programming over its efficiency tables, see
`MobileNetV3Family.exact_extreme`). Latency comes from a black-box profile and accuracy from a
learned predictor, and a space without exact extremes leaves its analytic metrics black boxes
too, so those ranges are estimates: the best of the coarse lattice, the uniform extremes,
random samples and a short evolutionary refinement (`exact` is False for them; the true
minimum can only be lower than the estimated one).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..space.genome import RESOLUTION, CategoricalGenome
from .constraints import METRIC_OF
from .evaluator import Evaluator

__all__ = ["budget_ranges", "exact_extreme", "refine"]

def exact_extreme(evaluator: Evaluator, metric: str, mode: str) -> tuple[float, np.ndarray]:
    """(value in the metric's unit, genome (1, G)) of the exact min or max of an analytic metric
    ('macs', 'params', 'flash_kb', 'peak_memory_kb'), for spaces with exact extremes."""
    analytic, scale = evaluator.analytic_source(metric)   # in the evaluator's precision
    value, genes = evaluator.space.exact_extreme(analytic, mode)
    if scale is not None and scale != 1.0:
        value /= scale
    return value, genes


def refine(genome: CategoricalGenome, objective: Callable[[np.ndarray], np.ndarray], start: np.ndarray,
           rng: np.random.Generator, population: int = 64, generations: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Minimise `objective` (vectorised over genomes) by a small elitist evolution from `start`.
    Returns (genomes, objective values) of the final population, best first."""
    pop = start[np.argsort(objective(start), kind="stable")[:population]]
    while len(pop) < population:
        pop = np.concatenate([pop, genome.mutate(pop, rng, 0.2)])[:population]
    score = objective(pop)
    for _ in range(generations):
        order = np.argsort(score, kind="stable")
        parents = pop[order[: population // 4]]
        a = parents[rng.integers(len(parents), size=population)]
        b = parents[rng.integers(len(parents), size=population)]
        children = genome.mutate(genome.crossover(a, b, rng), rng, 0.1, {RESOLUTION: 0.3})
        pop = np.concatenate([parents, children])
        score = objective(pop)
    order = np.argsort(score, kind="stable")[:population]
    return pop[order], score[order]


def _estimate(evaluator: Evaluator, values: Callable[[np.ndarray], np.ndarray], mode: str,
              seed: int) -> tuple[float, np.ndarray]:
    g, rng = evaluator.genome, np.random.default_rng(seed)
    sign = 1.0 if mode == "min" else -1.0
    start = np.concatenate([evaluator.space.lattice(1), g.uniform("min"), g.uniform("max"), g.random(2048, rng)])
    pop, score = refine(g, lambda x: sign * values(x), start, rng)
    return float(sign * score[0]), pop[:1]


def budget_ranges(evaluator: Evaluator) -> dict[str, dict[str, Any]]:
    """{field: {"min", "max", "exact", "unit", "min_config", "max_config"}} for accuracy
    (fraction) and every constraint field (latency_ms, peak_memory_kb, flash_kb, macs_m,
    params_m, in the constraint's unit). Computed once per evaluator (a second or less)."""
    return evaluator.cached("budget_ranges", lambda: _budget_ranges(evaluator))


def _budget_ranges(evaluator: Evaluator) -> dict[str, dict[str, Any]]:
    space = evaluator.space
    out: dict[str, dict[str, Any]] = {}

    def entry(lo, hi, exact: bool, unit: str) -> dict[str, Any]:
        (lo_v, lo_g), (hi_v, hi_g) = lo, hi
        return {"min": lo_v, "max": hi_v, "exact": exact, "unit": unit,
                "min_config": space.config_to_dict(space.to_configs(lo_g)[0]),
                "max_config": space.config_to_dict(space.to_configs(hi_g)[0])}

    out["accuracy"] = entry(*(_estimate(evaluator, evaluator.accuracy_of, m, 0) for m in ("min", "max")),
                            exact=False, unit="fraction")
    for field, (metric, scale) in METRIC_OF.items():
        if metric == "latency_ms":
            if not evaluator.has_latency:
                continue
            fn = lambda x: evaluator.efficiency_of(x)["latency_ms"]   # noqa: E731
            lo, hi = (_estimate(evaluator, fn, m, 1) for m in ("min", "max"))
            out[field] = entry(lo, hi, exact=False, unit="ms")
            continue
        if space.has_exact_extremes:
            lo, hi = (exact_extreme(evaluator, metric, m) for m in ("min", "max"))
            exact = True
        else:
            fn = lambda x, k=metric: np.asarray(evaluator.efficiency_of(x, latency=False)[k], np.float64)  # noqa: E731
            lo, hi = (_estimate(evaluator, fn, m, 2) for m in ("min", "max"))
            exact = False
        out[field] = entry((lo[0] / scale, lo[1]), (hi[0] / scale, hi[1]), exact,
                           {"latency_ms": "ms", "peak_memory_kb": "KB", "flash_kb": "KB",
                            "macs_m": "millions", "params_m": "millions"}[field])
    return out
