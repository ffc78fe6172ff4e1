"""OFA's evolutionary search (EvolutionFinder), vectorised over the population.

Same algorithm and defaults as the official implementation: population 100, 500 generations;
each generation keeps the best 25% as parents and makes 50 children by mutation (each choice
redrawn with probability 0.1, the resolution with 0.5) and 50 by uniform crossover of two
random parents; every child is redrawn until it meets the constraints. Here all children of a
generation are drawn, checked and redrawn as arrays (several candidates per child at once, the
first feasible one kept: the same distribution as redrawing one at a time), which is what
makes 500 generations take about a second instead of 12-25 s. `max_redraws` rounds without a
feasible child leave it a copy of its (feasible) parent.
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
        is_mutant = np.arange(size) < n_mutants

        population = sample_feasible(problem, size, rng)
        accuracy = problem.evaluate(population, 0)["accuracy"]
        parent_efficiency = problem.efficiency(population)
        for generation in range(1, o["generations"] + 1):
            order = np.argsort(-accuracy, kind="stable")[:n_parents]
            parents, parent_accuracy = population[order], accuracy[order]
            parent_efficiency = {k: v[order] for k, v in parent_efficiency.items()}
            first = rng.integers(n_parents, size=size)
            second = rng.integers(n_parents, size=size)
            children = parents[first].copy()
            # Efficiency of the children, kept from the feasibility checks for `evaluate`.
            child_efficiency = {k: v[first].copy() for k, v in parent_efficiency.items()}
            pending = np.arange(size)
            draws = 2   # candidates per pending child and round: one check covers most redraws
            for _ in range(o["max_redraws"]):
                slot = np.repeat(pending, draws)
                mutant = is_mutant[slot]
                candidates = parents[first[slot]]
                candidates[mutant] = g.mutate(candidates[mutant], rng, o["mutate_prob"],
                                              {RESOLUTION: o["resolution_mutate_prob"]})
                candidates[~mutant] = g.crossover(candidates[~mutant], parents[second[slot[~mutant]]], rng)
                ok, efficiency = problem.check(candidates)
                # First feasible candidate of each pending child (= redrawing until feasible).
                hit = ok.reshape(-1, draws)
                found = hit.any(1)
                pick = np.nonzero(found)[0] * draws + hit[found].argmax(1)
                done = pending[found]
                children[done] = candidates[pick]
                for key, value in efficiency.items():
                    child_efficiency[key][done] = value[pick]
                pending = pending[~found]
                if len(pending) == 0:
                    break
                draws = min(draws * 2, 64)
            # Children never found feasible stay copies of their (feasible) first parent.
            child_accuracy = problem.evaluate(children, generation, child_efficiency)["accuracy"]
            population = np.concatenate([parents, children])
            accuracy = np.concatenate([parent_accuracy, child_accuracy])
            parent_efficiency = {k: np.concatenate([parent_efficiency[k], child_efficiency[k]])
                                 for k in parent_efficiency}
