"""Multi-objective search: NSGA-II, accuracy vs the budgeted efficiency metric.

Deb et al.'s NSGA-II with constrained domination (a feasible candidate beats an infeasible
one; of two infeasible ones the smaller total excess wins): non-dominated sorting and crowding
distance over parents + offspring, binary tournaments, uniform crossover and per-choice
mutation. The result's `pareto` holds the feasible non-dominated candidates of the final
population; the best config is the most accurate feasible candidate seen.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ...space.genome import RESOLUTION
from . import (Iterations, Probability, SearchStrategy, StrategyOptions, register_strategy, bounded_count,
               sample_feasible)

_OBJECTIVE_ORDER = ("latency_ms", "peak_memory_kb", "flash_kb", "macs", "params")
# Non-dominated sorting compares every pair of parents + offspring: (2 x population)^2 memory.
MAX_NSGA2_POPULATION = 2_000


class NSGA2Options(StrategyOptions):
    population: bounded_count("MAX_NSGA2_POPULATION", MAX_NSGA2_POPULATION) = 100
    generations: Iterations = 100
    mutate_prob: Probability = 0.1
    resolution_mutate_prob: Probability = 0.5
    objective: str | None = Field(None, description=f"one of {list(_OBJECTIVE_ORDER)} or None")


def _fronts(objectives: np.ndarray, violation: np.ndarray) -> np.ndarray:
    """Front index (0 = non-dominated) of each row under constrained domination (minimise all)."""
    a, b = objectives[:, None, :], objectives[None, :, :]
    pareto = (a <= b).all(2) & (a < b).any(2)
    feasible = violation == 0
    va, vb = violation[:, None], violation[None, :]
    dominates = np.where(feasible[:, None] & feasible[None, :], pareto,
                         (feasible[:, None] & ~feasible[None, :]) | (~feasible[:, None] & ~feasible[None, :] & (va < vb)))
    count = dominates.sum(0)                       # how many dominate each row
    front = np.full(len(objectives), -1)
    level = 0
    remaining = np.ones(len(objectives), bool)
    while remaining.any():
        current = remaining & (count == 0)
        front[current] = level
        remaining &= ~current
        count = count - dominates[current].sum(0)
        level += 1
    return front


def _crowding(objectives: np.ndarray, front: np.ndarray) -> np.ndarray:
    distance = np.zeros(len(objectives))
    for level in np.unique(front):
        idx = np.nonzero(front == level)[0]
        if len(idx) <= 2:
            distance[idx] = np.inf
            continue
        for k in range(objectives.shape[1]):
            values = objectives[idx, k]
            order = np.argsort(values, kind="stable")
            span = values[order[-1]] - values[order[0]]
            distance[idx[order[0]]] = distance[idx[order[-1]]] = np.inf
            if span > 0:
                distance[idx[order[1:-1]]] += (values[order[2:]] - values[order[:-2]]) / span
    return distance


@register_strategy
class NSGA2(SearchStrategy):
    """`objective`: the efficiency metric traded against accuracy (None: the first bounded one of
    latency_ms, peak_memory_kb, flash_kb, macs, params; latency_ms when unbounded with a profile)."""

    name = "nsga2"
    Options = NSGA2Options

    def run(self, problem, rng: np.random.Generator) -> dict:
        o = self.options
        g = problem.genome
        objective = o["objective"] or self._default_objective(problem)
        if objective not in _OBJECTIVE_ORDER or (objective == "latency_ms" and not problem.evaluator.has_latency):
            raise ValueError(f"strategy 'nsga2' option 'objective' = {objective!r}; allowed: "
                             f"{[m for m in _OBJECTIVE_ORDER if m != 'latency_ms' or problem.evaluator.has_latency]}")
        self.options["objective"] = objective
        size = o["population"]

        population = sample_feasible(problem, size, rng)
        rows = problem.evaluations + np.arange(size)
        metrics = problem.evaluate(population, 0)
        objectives = np.stack([-metrics["accuracy"], np.asarray(metrics[objective], np.float64)], 1)
        violation = metrics["violation"]
        front = _fronts(objectives, violation)
        crowd = _crowding(objectives, front)
        for generation in range(1, o["generations"] + 1):
            # Binary tournaments: lower front, then larger crowding distance.
            i, j = rng.integers(size, size=(2, 2 * size))
            better = (front[i] < front[j]) | ((front[i] == front[j]) & (crowd[i] >= crowd[j]))
            winners = np.where(better, i, j)
            a, b = population[winners[:size]], population[winners[size:]]
            children = g.mutate(g.crossover(a, b, rng), rng, o["mutate_prob"],
                                {RESOLUTION: o["resolution_mutate_prob"]})
            child_rows = problem.evaluations + np.arange(size)
            m = problem.evaluate(children, generation)
            population = np.concatenate([population, children])
            rows = np.concatenate([rows, child_rows])
            objectives = np.concatenate([objectives, np.stack([-m["accuracy"], np.asarray(m[objective], np.float64)], 1)])
            violation = np.concatenate([violation, m["violation"]])
            front = _fronts(objectives, violation)
            crowd = _crowding(objectives, front)
            keep = np.lexsort((-crowd, front))[:size]
            population, rows, objectives, violation = population[keep], rows[keep], objectives[keep], violation[keep]
            front, crowd = _fronts(objectives, violation), None
            crowd = _crowding(objectives, front)
        best = (front == 0) & (violation == 0)
        # One row per distinct config on the front.
        _, first = np.unique(population[best], axis=0, return_index=True)
        return {"pareto_rows": rows[best][np.sort(first)], "objective": objective}

    @staticmethod
    def _default_objective(problem) -> str:
        bounded = {metric for _, metric, _ in problem.constraints.items()}
        for metric in _OBJECTIVE_ORDER:
            if metric in bounded:
                return metric
        return "latency_ms" if problem.evaluator.has_latency else "macs"
