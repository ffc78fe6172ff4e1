"""Grid search: exhaustive over a coarse lattice of the space."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from . import Count, SearchStrategy, StrategyOptions, register_strategy


class GridOptions(StrategyOptions):
    groups: Annotated[int, Field(ge=1)] | None = Field(
        None, description="an integer from 1 to the space's lattice levels, or None")
    max_points: Count = 5000
    batch: Count = 1000


@register_strategy
class Grid(SearchStrategy):
    """The space's lattice at level `groups` (None: the finest level with at most `max_points`
    points). MobileNetV3: every width and resolution x the same (kernel, expand, depth) within
    each of `groups` contiguous stage groups (1 = one choice for the whole network,
    num_stages = per stage)."""

    name = "grid"
    Options = GridOptions

    def run(self, problem, rng: np.random.Generator) -> None:
        space = problem.space
        groups = self.options["groups"]
        if groups is None:
            groups = 1
            while groups < space.lattice_levels and space.lattice_size(groups + 1) <= self.options["max_points"]:
                groups += 1
        elif groups > space.lattice_levels:
            raise ValueError(f"strategy 'grid' option 'groups' = {groups!r}; allowed: "
                             f"1..{space.lattice_levels} or None")
        self.options["groups"] = groups
        points = space.lattice(groups)
        for i, start in enumerate(range(0, len(points), self.options["batch"])):
            problem.evaluate(points[start:start + self.options["batch"]], i)
