"""Grid search: exhaustive over a coarse lattice of the space."""

from __future__ import annotations

import numpy as np

from ..ranges import lattice
from . import SearchStrategy


class Grid(SearchStrategy):
    """Every width and resolution x the same (kernel, expand, depth) within each group of
    stages. `groups` contiguous stage groups (None: the most groups whose lattice has at most
    `max_points` points; 1 = one choice for the whole network, num_stages = per stage)."""

    name = "grid"
    defaults = {"groups": None, "max_points": 5000, "batch": 1000}

    def run(self, problem, rng: np.random.Generator) -> None:
        g = problem.genome
        groups = self.options["groups"]
        if groups is None:
            groups = 1
            per_group = len(g.kernel_sizes) * len(g.expand_ratios) * len(g.depths)
            base = len(g.widths) * len(g.resolutions)
            while groups < g.num_stages and base * per_group ** (groups + 1) <= self.options["max_points"]:
                groups += 1
        elif isinstance(groups, bool) or not isinstance(groups, int) or not 1 <= groups <= g.num_stages:
            raise ValueError(f"strategy 'grid' option 'groups' = {groups!r}; allowed: 1..{g.num_stages} or None")
        self.options["groups"] = groups
        points = lattice(g, groups)
        for i, start in enumerate(range(0, len(points), self.options["batch"])):
            problem.evaluate(points[start:start + self.options["batch"]], i)
