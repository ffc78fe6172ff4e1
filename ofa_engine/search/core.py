"""The search problem every strategy sees, its result, and `search()` itself.

A strategy only sees a `Problem`: the search space (`ofa_engine.space.interface`) and its
genome (sample / mutate / cross / encode), a cheap vectorised
feasibility check (`problem.feasible`, the bounded metrics only) and `problem.evaluate`, which
predicts every metric of a batch and records it in the history (`evaluate_accuracy`: accuracy
now, the rest when the history is read). The best result is chosen the same way
for every strategy: the most accurate feasible candidate ever evaluated (first one on ties).
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field
from itertools import compress, repeat
from typing import Any, Mapping

import numpy as np

from .constraints import METRIC_OF, UNITS, Constraints, InfeasibleBudgetError
from .evaluator import METRIC_NAMES, Evaluator
from .ranges import budget_ranges, exact_extreme, refine
from .strategies import STRATEGY_REGISTRY, make_strategy

__all__ = ["Problem", "SearchResult", "search", "check_budget", "STRATEGIES"]

STRATEGIES = tuple(STRATEGY_REGISTRY.names())
# The history's per-row metrics, besides the iteration.
_HISTORY_METRICS = METRIC_NAMES + ("feasible", "violation")


class Problem:
    """An evaluator, constraints and the history of one search run (not shared between runs)."""

    def __init__(self, evaluator: Evaluator, constraints: Constraints, seeds: np.ndarray):
        self.evaluator = evaluator
        self.constraints = constraints
        self.space = evaluator.space
        self.genome = evaluator.genome
        # Feasible genomes known before the search (at least one): a fallback for strategies
        # whose sampler finds nothing feasible under a tight budget.
        self.seeds = seeds
        self._needs_latency = any(metric == "latency_ms" for _, metric, _ in constraints.items())
        # The metrics the bounds read: all a feasibility check computes.
        self._bounded = tuple(dict.fromkeys(metric for _, metric, _ in constraints.items()))
        # (iteration, int8 genes, metrics) per recorded batch: `evaluate_accuracy` leaves all
        # but accuracy to `_complete_history`. int8: 50k candidates x ~40 genes stay ~2 MB, and
        # the history is one cheap concatenation.
        self._chunks: list[tuple[np.ndarray | int, np.ndarray, dict[str, np.ndarray]]] = []
        self.evaluations = 0
        self.predictor_calls = 0   # distinct configs sent to the accuracy predictor
        self._accuracy_cache: dict[bytes, float] = {}

    def efficiency(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        """Efficiency metrics (latency only when a bound needs it)."""
        return self.evaluator.efficiency_of(genes, latency=self._needs_latency)

    def feasible(self, genes: np.ndarray) -> np.ndarray:
        """(N,) bool: every bound met (only the bounded metrics are computed)."""
        if not self._bounded:
            return np.ones(len(genes), bool)
        return self.constraints.feasible(self.evaluator.efficiency_of(genes, metrics=self._bounded))

    def violation(self, genes: np.ndarray) -> np.ndarray:
        if not self._bounded:
            return np.zeros(len(genes))
        return self.constraints.violation(self.evaluator.efficiency_of(genes, metrics=self._bounded))

    def evaluate(self, genes: np.ndarray, iteration: int) -> dict[str, np.ndarray]:
        """All predicted metrics of `genes` plus `feasible` and `violation`; recorded in the history."""
        genes = np.asarray(genes, np.int64)
        metrics = self._efficiency_record(genes, self._accuracy(genes))
        self._chunks.append((iteration, genes.astype(np.int8), metrics))
        self.evaluations += len(genes)
        return metrics

    def evaluate_accuracy(self, genes: np.ndarray, iteration: int) -> np.ndarray:
        """`evaluate(genes, iteration)["accuracy"]`, recorded the same way, for strategies that
        rank by accuracy alone (evolution: its children are feasible by construction). The
        other metrics are computed when the history is read, for all such batches at once:
        the same numbers, without a per-batch cost."""
        genes = np.asarray(genes, np.int64)
        accuracy = self._accuracy(genes)
        self._chunks.append((iteration, genes.astype(np.int8), {"accuracy": accuracy}))
        self.evaluations += len(genes)
        return accuracy

    def _efficiency_record(self, genes: np.ndarray, accuracy: np.ndarray) -> dict[str, np.ndarray]:
        metrics = self.evaluator.efficiency_of(genes)
        metrics["accuracy"] = accuracy
        metrics["feasible"] = self.constraints.feasible(metrics)
        metrics["violation"] = self.constraints.violation(metrics)
        return metrics

    def _complete_history(self) -> None:
        """Merge the history into one batch, computing the metrics of the rows that
        `evaluate_accuracy` recorded all at once (the same per-row numbers as `evaluate`)."""
        chunks = self._chunks
        if len(chunks) == 1 and not np.isscalar(chunks[0][0]) and "feasible" in chunks[0][2]:
            return
        if all(np.isscalar(it) for it, _, _ in chunks):
            # One iteration number per batch (no merged batch yet): one repeat, not a fill each.
            iterations = np.repeat(np.array([it for it, _, _ in chunks], np.int32), [len(g) for _, g, _ in chunks])
        else:
            iterations = np.concatenate([np.full(len(g), it, np.int32) if np.isscalar(it) else it
                                         for it, g, _ in chunks])
        genes = np.concatenate([g for _, g, _ in chunks])
        deferred_chunks = ["feasible" not in m for _, _, m in chunks]
        if not any(deferred_chunks):
            metrics = {key: np.concatenate([m[key] for _, _, m in chunks]) for key in _HISTORY_METRICS}
        elif all(deferred_chunks):
            accuracy = np.concatenate([m["accuracy"] for _, _, m in chunks])
            metrics = self._efficiency_record(genes, accuracy)
        else:
            accuracy = np.concatenate([m["accuracy"] for _, _, m in chunks])
            deferred = np.repeat(deferred_chunks, [len(g) for _, g, _ in chunks])
            computed = self._efficiency_record(genes[deferred], accuracy[deferred])
            metrics = {}
            for key in _HISTORY_METRICS:
                value = computed[key]
                merged = np.empty(len(genes), value.dtype)
                merged[deferred] = value
                merged[~deferred] = np.concatenate([m[key] for _, _, m in chunks if "feasible" in m])
                metrics[key] = merged
        self._chunks = [(iterations, genes, metrics)]

    def _accuracy(self, genes: np.ndarray) -> np.ndarray:
        """Predicted accuracy, memoised per search: evolution revisits many configs (children
        equal to a parent or to each other), so only configs not seen before reach the predictor,
        in the order they first appear. Keys ignore inactive genes (they do not change the net)."""
        active = self.genome.active(genes)
        keys = self.genome.keys(genes, active)
        cache = self._accuracy_cache
        known = list(map(cache.get, keys))
        if None in known:
            # The configs not seen before, each at the first row that holds it, in row order
            # (one pass over the rows not cached only: this runs once per generation).
            new: dict[bytes, int] = {}
            for row in compress(range(len(keys)), map(operator.is_, known, repeat(None))):
                new.setdefault(keys[row], row)
            rows = np.fromiter(new.values(), np.int64, len(new))
            values = self.evaluator.accuracy_of(genes[rows], active[rows])
            self.predictor_calls += len(rows)
            cache.update(zip(new, values.tolist()))
            known = map(cache.__getitem__, keys)
        return np.fromiter(known, np.float64, len(keys))

    def history(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(iteration, the metrics, feasible, violation as equal-length arrays; int8 genes)."""
        if not self._chunks:
            empty = {k: np.zeros(0) for k in ("iteration",) + _HISTORY_METRICS}
            return empty, np.zeros((0, self.genome.num_genes), np.int8)
        self._complete_history()
        iterations, genes, metrics = self._chunks[0]
        hist = {"iteration": iterations}
        for key in _HISTORY_METRICS:
            hist[key] = metrics[key]
        return hist, genes


@dataclass
class SearchResult:
    """Outcome of one search.

    `config`: the best config, in the space's config type. `predicted`: accuracy (fraction),
    latency_ms, peak_memory_kb, flash_kb, macs, params of `config`. `history`: one entry per evaluated candidate, as equal-length 1-D arrays
    (iteration, the metrics, feasible, violation) -- `pandas.DataFrame(result.history)` works;
    `history_configs(rows)` gives their configs. `evaluations` counts candidates scored (as
    OFA counts them); `predictor_calls` the distinct configs that reached the predictor. `pareto` (nsga2): the feasible non-dominated
    candidates of the final population, accuracy vs `pareto["objective"]`, sorted by it.
    """

    strategy: str
    seed: int
    config: Any
    predicted: dict[str, float]
    evaluations: int
    wall_time_s: float
    constraints: Constraints
    history: dict[str, np.ndarray]
    history_genes: np.ndarray = field(repr=False)
    evaluator: Evaluator = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    pareto: dict[str, Any] | None = None
    predictor_calls: int = 0

    def history_configs(self, rows: Any = None) -> list[Any]:
        genes = self.history_genes if rows is None else self.history_genes[np.atleast_1d(rows)]
        return self.evaluator.space.to_configs(genes.astype(np.int64))

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary (no history)."""
        out = {"strategy": self.strategy, "seed": self.seed,
               "config": self.evaluator.space.config_to_dict(self.config),
               "predicted": self.predicted, "evaluations": self.evaluations,
               "wall_time_s": round(self.wall_time_s, 4), "predictor_calls": self.predictor_calls,
               "constraints": self.constraints.to_dict(),
               "options": self.options}
        if self.pareto is not None:
            out["pareto"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.pareto.items()}
        return out


def _metrics_row(metrics: Mapping[str, np.ndarray], i: int) -> dict[str, float]:
    out = {}
    for key in METRIC_NAMES:
        v = metrics[key][i]
        out[key] = int(v) if key in ("macs", "params") else (None if np.isnan(v) else float(v))
    return out


def check_budget(evaluator: Evaluator, constraints: Constraints) -> np.ndarray:
    """Feasible genomes (at least one) for `constraints`, or `InfeasibleBudgetError` stating,
    for each bound that cannot be met, the smallest value achievable on this profile."""
    if constraints.latency_ms is not None and not evaluator.has_latency:
        raise ValueError("a latency_ms bound needs a device profile with a latency model")
    g = evaluator.genome
    smallest = g.uniform("min")
    problem = Problem(evaluator, constraints, smallest)
    if problem.feasible(smallest)[0]:
        return smallest
    # Bounds below the exact minimum of their metric (cheap): no search needed to refuse.
    minima: dict[str, float] = {}
    if evaluator.space.has_exact_extremes:
        for name, metric, _ in constraints.items():
            if metric != "latency_ms":
                minima[name] = exact_extreme(evaluator, metric, "min")[0] / METRIC_OF[name][1]
    below = {n: v for n, v in minima.items() if getattr(constraints, n) < v}
    if not below:
        # Look for a feasible config by minimising the total violation.
        rng = np.random.default_rng(0)
        start = np.concatenate([smallest, g.random(512, rng)])
        pop, score = refine(g, problem.violation, start, rng, population=64, generations=60)
        if score[0] == 0.0:
            return pop[score == 0.0]
    ranges = budget_ranges(evaluator)
    smallest_of = {n: (minima[n] if n in minima else ranges[n]["min"]) for n, _, _ in constraints.items()}
    violated = {n: v for n, v in smallest_of.items() if getattr(constraints, n) < v}
    profile = evaluator.profile_name
    def show(n: str) -> str:
        approx = "" if n in minima or ranges.get(n, {}).get("exact", False) else "~"
        return f"{n} <= {getattr(constraints, n):g} (smallest achievable: {approx}{smallest_of[n]:.4g} {UNITS[n]})"
    if violated:
        raise InfeasibleBudgetError(
            f"no subnet of '{evaluator.space.name}' meets the budget on profile '{profile}': "
            + "; ".join(show(n) for n in violated), violated)
    raise InfeasibleBudgetError(
        f"no subnet of '{evaluator.space.name}' meets all bounds at once on profile '{profile}' "
        f"(each alone is achievable): " + "; ".join(show(n) for n in smallest_of), smallest_of)


def search(evaluator: Evaluator, constraints: Constraints | Mapping[str, float] | None = None,
           strategy: str = "evolution", seed: int = 0, **options: Any) -> SearchResult:
    """Find the most accurate subnet (predicted) meeting `constraints` with one strategy.

    `strategy`: one of `STRATEGIES`; `options`: that strategy's settings (see its class's
    `Options` model). Deterministic for a given seed. Raises `InfeasibleBudgetError` when no subnet
    can meet the budget and `ValueError` for an unknown strategy or option.
    """
    if not isinstance(constraints, Constraints):
        constraints = Constraints.from_dict(constraints)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed = {seed!r}; allowed: a non-negative integer")
    runner = make_strategy(strategy, **options)
    start = time.perf_counter()
    seeds = check_budget(evaluator, constraints)
    problem = Problem(evaluator, constraints, seeds)
    outcome = runner.run(problem, np.random.default_rng(int(seed))) or {}
    hist, genes = problem.history()
    feasible = np.nonzero(hist["feasible"])[0]
    if len(feasible) == 0:
        # The strategy found nothing feasible (e.g. a short run under a tight budget): the
        # configs known feasible before the search are the answer.
        problem.evaluate(seeds, int(hist["iteration"].max(initial=0)) + 1)
        hist, genes = problem.history()
        feasible = np.nonzero(hist["feasible"])[0]
    best = int(feasible[np.argmax(hist["accuracy"][feasible])])
    pareto = None
    if "pareto_rows" in outcome:
        rows = np.asarray(outcome["pareto_rows"])
        objective = outcome["objective"]
        rows = rows[np.argsort(hist[objective][rows], kind="stable")]
        pareto = {"objective": objective, "rows": rows,
                  "configs": [evaluator.space.config_to_dict(c)
                              for c in evaluator.space.to_configs(genes[rows].astype(np.int64))]}
        for key in METRIC_NAMES:
            pareto[key] = hist[key][rows]
    wall = time.perf_counter() - start
    return SearchResult(
        strategy=strategy, seed=int(seed), config=evaluator.space.to_configs(genes[best:best + 1].astype(np.int64))[0],
        predicted=_metrics_row(hist, best), evaluations=problem.evaluations, wall_time_s=wall,
        constraints=constraints, history=hist, history_genes=genes, evaluator=evaluator,
        options=runner.options, pareto=pareto, predictor_calls=problem.predictor_calls)

