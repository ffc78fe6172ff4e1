"""Smallest and largest achievable value of every metric, for sliders and budget errors.

MACs, params, Flash and peak activation are minimised and maximised *exactly*, each on its
own, by dynamic programming over the efficiency tables: for a fixed (width, resolution) the
slots are independent given the depths, so each slot takes its best (kernel, expand), each
stage its best depth (prefix sums, or prefix maxima for the peak), then the best (width,
resolution) wins. No monotonicity is assumed, so the extreme need not be the uniform
smallest / largest config. Latency comes from a black-box profile and accuracy from a learned
predictor, so their ranges are estimates: the best of the coarse lattice, the uniform extremes,
random samples and a short evolutionary refinement (`exact` is False for them; the true
minimum can only be lower than the estimated one).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .constraints import METRIC_OF
from .evaluator import Evaluator
from ..space.genome import Genome

__all__ = ["budget_ranges", "exact_extreme", "lattice", "refine"]

_TABLE_METRIC = {"macs": 0, "params": 1, "flash_kb": 2}


def exact_extreme(evaluator: Evaluator, metric: str, mode: str) -> tuple[float, np.ndarray]:
    """(value in the metric's unit, genome (1, G)) of the exact min or max of an analytic metric
    ('macs', 'params', 'flash_kb', 'peak_memory_kb')."""
    t, g = evaluator.tables, evaluator.genome
    if t is None:
        raise ValueError("exact extremes need the efficiency tables")
    pick, arg = (np.min, np.argmin) if mode == "min" else (np.max, np.argmax)
    W, R, K, E = t.shape
    space = evaluator.space
    slots, maxd = space.num_slots, space.max_depth
    if metric == "peak_memory_kb":
        per_slot, fixed, combine = t.peak.astype(np.float64), t.fixed_peak.astype(np.float64), "max"
    else:
        col = _TABLE_METRIC[metric]
        per_slot, fixed, combine = t.values[..., col].astype(np.float64), t.fixed_values[:, col].astype(np.float64), "sum"
    per_slot = per_slot.reshape(slots, W * R, K * E)
    slot_val, slot_arg = pick(per_slot, 2), arg(per_slot, 2)                 # (slots, WR)
    by_stage = slot_val.reshape(space.num_stages, maxd, W * R)
    prefix = np.cumsum(by_stage, 1) if combine == "sum" else np.maximum.accumulate(by_stage, 1)
    options = prefix[:, g.depths - 1, :]                                     # (stages, D, WR)
    stage_val, stage_arg = pick(options, 1), arg(options, 1)                 # (stages, WR)
    total = fixed + stage_val.sum(0) if combine == "sum" else np.maximum(fixed, stage_val.max(0))
    wr = int(arg(total))
    genes = np.zeros((1, g.num_genes), np.int64)
    genes[0, g.wid_gene], genes[0, g.res_gene] = divmod(wr, R)
    genes[0, g.d_genes] = stage_arg[:, wr]
    genes[0, g.ks_genes], genes[0, g.e_genes] = np.divmod(slot_arg[:, wr], E)
    value = float(total[wr])
    if metric in ("peak_memory_kb", "flash_kb"):
        value /= 1024.0
    return value, genes


def lattice(genome: Genome, groups: int = 1) -> np.ndarray:
    """Coarse lattice: every width and resolution, the same (kernel, expand, depth) option index
    within each of `groups` contiguous groups of stages."""
    s = genome.num_stages
    groups = max(1, min(groups, s))
    stage_group = (np.arange(s) * groups) // s
    K, E, D = len(genome.kernel_sizes), len(genome.expand_ratios), len(genome.depths)
    per_group = np.array(np.meshgrid(np.arange(K), np.arange(E), np.arange(D), indexing="ij")).reshape(3, -1).T
    combos = np.array(np.meshgrid(*([np.arange(len(per_group))] * groups), indexing="ij")).reshape(groups, -1).T
    wr = np.array(np.meshgrid(genome.widths, np.arange(len(genome.resolutions)), indexing="ij")).reshape(2, -1).T
    n = len(wr) * len(combos)
    genes = np.zeros((n, genome.num_genes), np.int64)
    genes[:, genome.wid_gene] = np.repeat(wr[:, 0], len(combos))
    genes[:, genome.res_gene] = np.repeat(wr[:, 1], len(combos))
    choice = per_group[np.tile(combos, (len(wr), 1))]                        # (n, groups, 3)
    slot_group = stage_group[genome.slot_stage]
    genes[:, genome.ks_genes] = choice[:, slot_group, 0]
    genes[:, genome.e_genes] = choice[:, slot_group, 1]
    genes[:, genome.d_genes] = choice[:, stage_group, 2]
    return genes


def refine(genome: Genome, objective: Callable[[np.ndarray], np.ndarray], start: np.ndarray,
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
        children = genome.mutate(genome.crossover(a, b, rng), rng, 0.1, 0.3)
        pop = np.concatenate([parents, children])
        score = objective(pop)
    order = np.argsort(score, kind="stable")[:population]
    return pop[order], score[order]


def _estimate(evaluator: Evaluator, values: Callable[[np.ndarray], np.ndarray], mode: str,
              seed: int) -> tuple[float, np.ndarray]:
    g, rng = evaluator.genome, np.random.default_rng(seed)
    sign = 1.0 if mode == "min" else -1.0
    start = np.concatenate([lattice(g), g.uniform("min"), g.uniform("max"), g.random(2048, rng)])
    pop, score = refine(g, lambda x: sign * values(x), start, rng)
    return float(sign * score[0]), pop[:1]


def budget_ranges(evaluator: Evaluator) -> dict[str, dict[str, Any]]:
    """{field: {"min", "max", "exact", "unit", "min_config", "max_config"}} for accuracy
    (fraction) and every constraint field (latency_ms, peak_memory_kb, flash_kb, macs_m,
    params_m, in the constraint's unit). Computed once per evaluator (a second or less)."""
    return evaluator.cached("budget_ranges", lambda: _budget_ranges(evaluator))


def _budget_ranges(evaluator: Evaluator) -> dict[str, dict[str, Any]]:
    g = evaluator.genome
    out: dict[str, dict[str, Any]] = {}

    def entry(lo, hi, exact: bool, unit: str) -> dict[str, Any]:
        (lo_v, lo_g), (hi_v, hi_g) = lo, hi
        return {"min": lo_v, "max": hi_v, "exact": exact, "unit": unit,
                "min_config": g.to_configs(lo_g)[0].to_dict(), "max_config": g.to_configs(hi_g)[0].to_dict()}

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
        if evaluator.tables is not None:
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
