"""OFA's evolutionary search (EvolutionFinder), vectorised over the population.

Same algorithm and defaults as the official implementation: population 100, 500 generations;
each generation keeps the best 25% as parents and makes 50 children by mutation (each choice
redrawn with probability 0.1, the resolution with 0.5) and 50 by uniform crossover of two
random parents; every child is redrawn until it meets the constraints. Here all children of a
generation are drawn, checked and redrawn as arrays (several candidates per child at once, the
first feasible one kept: the same distribution as redrawing one at a time), and a check
computes only the bounded metrics; each generation's accuracy is recorded alone, the history's
other metrics computed once at the end. `max_redraws` rounds without a feasible child leave it
a copy of its (feasible) parent. Speed against the official finder: docs/search.md.
"""

from __future__ import annotations

import numpy as np

from ...space.genome import RESOLUTION
from . import (Fraction, Iterations, PopulationSize, Probability, SearchStrategy,
               StrategyOptions, register_strategy, sample_feasible)


class EvolutionOptions(StrategyOptions):
    """OFA's EvolutionFinder defaults; `resolution_mutate_prob` applies to spaces with a
    resolution gene group."""

    population: PopulationSize = 100
    generations: Iterations = 500
    parent_ratio: Fraction = 0.25
    mutation_ratio: Fraction = 0.5
    mutate_prob: Probability = 0.1
    resolution_mutate_prob: Probability = 0.5
    max_redraws: Iterations = 100


@register_strategy
class Evolution(SearchStrategy):
    name = "evolution"
    Options = EvolutionOptions

    def run(self, problem, rng: np.random.Generator) -> None:
        o = self.options
        g = problem.genome
        size = o["population"]
        n_parents = max(1, int(round(o["parent_ratio"] * size)))
        n_mutants = int(round(o["mutation_ratio"] * size))
        group_probs = {RESOLUTION: o["resolution_mutate_prob"]}

        # The first round of every generation redraws every child, twice.
        everyone = np.arange(size)
        first_slot = np.repeat(everyone, 2)
        first_split = int(np.searchsorted(first_slot, n_mutants))
        population = sample_feasible(problem, size, rng)
        accuracy = problem.evaluate_accuracy(population, 0)
        # Array methods (`take`, `repeat`, `argsort`), not numpy's functions of the same name:
        # those are Python-level wrappers, slow once each generation's predictor call has
        # evicted them from the cache.
        for generation in range(1, o["generations"] + 1):
            order = (-accuracy).argsort(kind="stable")[:n_parents]
            parents, parent_accuracy = population[order], accuracy[order]
            # Each child's first and second parent, in one draw: the same numbers as two draws
            # of `size` (the generator hands out its 32-bit draws in sequence either way).
            # A pending child's row still holds its first parent (only found children change).
            children, other_parent = parents.take(rng.integers(n_parents, size=2 * size), 0).reshape(2, size, -1)
            pending = everyone
            draws = 2   # candidates per pending child and round: one check covers most redraws
            for _ in range(o["max_redraws"]):
                # Children 0 .. n_mutants - 1 are mutants, the rest crossovers; `slot` is sorted,
                # so the mutants' candidates come first.
                if pending is everyone:
                    slot, split = first_slot, first_split
                else:
                    slot = pending.repeat(draws)
                    split = int(slot.searchsorted(n_mutants))
                candidates = g.offspring(children, other_parent, slot, split, rng, o["mutate_prob"], group_probs)
                # First feasible candidate of each pending child (= redrawing until feasible): the
                # first True of its `draws`, if its row holds one (flat positions, not boolean
                # indexing of 2-D rows: the cheaper form on these small arrays).
                hit = problem.feasible(candidates)
                chosen = hit.reshape(-1, draws).argmax(1)
                chosen += np.arange(0, len(hit), draws)
                found = hit[chosen]
                children[pending[found]] = candidates.take(chosen[found], 0)
                pending = pending[~found]
                if len(pending) == 0:
                    break
                draws = min(draws * 2, 64)
            # Children never found feasible stay copies of their (feasible) first parent.
            child_accuracy = problem.evaluate_accuracy(children, generation)
            population = np.concatenate([parents, children])
            accuracy = np.concatenate([parent_accuracy, child_accuracy])
