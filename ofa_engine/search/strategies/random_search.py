"""Random search: N uniformly random configs that meet the constraints."""

from __future__ import annotations

import numpy as np

from . import Count, SearchStrategy, StrategyOptions, register_strategy, sample_feasible


class RandomOptions(StrategyOptions):
    samples: Count = 1000
    batch: Count = 100


@register_strategy
class RandomSearch(SearchStrategy):
    """`samples` feasible configs by rejection sampling (efficiency checks are cheap; only
    feasible ones are scored), evaluated in batches of `batch` (one iteration each)."""

    name = "random"
    Options = RandomOptions

    def run(self, problem, rng: np.random.Generator) -> None:
        pool = sample_feasible(problem, self.options["samples"], rng)
        for i, start in enumerate(range(0, len(pool), self.options["batch"])):
            problem.evaluate(pool[start:start + self.options["batch"]], i)
