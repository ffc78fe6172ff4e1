"""Search strategies: one file each, all behind `SearchStrategy`.

A strategy gets a `Problem` (genome, feasibility check, `evaluate` that records history) and a
seeded `numpy.random.Generator`; it returns nothing, or a dict with extra outcomes
(`pareto_rows` + `objective` for multi-objective search). Adding a strategy = one file with a
subclass and one line in `_REGISTRY`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

__all__ = ["SearchStrategy", "make_strategy", "strategy_classes", "sample_feasible"]


class SearchStrategy:
    """Base class: `defaults` lists every option and its default; `run` does the search."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(f"strategy '{self.name}' has no option(s) {unknown}; allowed: "
                             f"{sorted(self.defaults)}")
        self.options = {**self.defaults, **options}
        for key, default in self.defaults.items():
            value = self.options[key]
            if isinstance(default, bool) or default is None or isinstance(default, str):
                continue
            if isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                    raise ValueError(f"strategy '{self.name}' option '{key}' = {value!r}; allowed: an integer >= 1")
                self.options[key] = int(value)
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 0:
                    raise ValueError(f"strategy '{self.name}' option '{key}' = {value!r}; allowed: a number >= 0")
                self.options[key] = float(value)

    def run(self, problem, rng: np.random.Generator) -> dict[str, Any] | None:
        raise NotImplementedError


def sample_feasible(problem, n: int, rng: np.random.Generator, max_rounds: int = 50) -> np.ndarray:
    """`n` uniformly random feasible genomes by vectorised rejection sampling; under a budget so
    tight that `max_rounds` batches find too few, the rest are mutants of the known feasible
    configs (`problem.seeds`), redrawn until feasible, else copies of them."""
    g = problem.genome
    found: list[np.ndarray] = []
    count = 0
    batch = max(2 * n, 256)
    for _ in range(max_rounds):
        cand = g.random(batch, rng)
        ok = cand[problem.feasible(cand)]
        found.append(ok)
        count += len(ok)
        if count >= n:
            break
    pool = np.concatenate(found)[:n] if found else np.zeros((0, g.num_genes), np.int64)
    if len(pool) < n:
        seeds = problem.seeds
        need = n - len(pool)
        base = seeds[rng.integers(len(seeds), size=need)]
        extra = base.copy()
        pending = np.arange(need)
        for _ in range(max_rounds):
            cand = g.mutate(base[pending], rng, 0.1)
            ok = problem.feasible(cand)
            extra[pending[ok]] = cand[ok]
            pending = pending[~ok]
            if len(pending) == 0:
                break
        pool = np.concatenate([pool, extra])
    return pool


def _registry() -> dict[str, type[SearchStrategy]]:
    from .evolution import Evolution
    from .gradient import Gradient
    from .grid import Grid
    from .nsga2 import NSGA2
    from .random_search import RandomSearch
    from .rl import Reinforce
    return {cls.name: cls for cls in (Grid, RandomSearch, Evolution, Reinforce, Gradient, NSGA2)}


def strategy_classes() -> dict[str, type[SearchStrategy]]:
    return _registry()


def make_strategy(name: str, **options: Any) -> SearchStrategy:
    classes = _registry()
    if name not in classes:
        raise ValueError(f"unknown strategy '{name}'; allowed: {', '.join(classes)}")
    return classes[name](**options)
