"""Which subnets a training step trains: the phase's choices and the sandwich rule."""

from __future__ import annotations

import numpy as np

from ..families.mbv3.space import SearchSpace, SubnetConfig
from .recipe import Phase, Recipe

__all__ = ["phase_choices", "sample_config", "step_configs"]


def phase_choices(space: SearchSpace, phase: Phase) -> dict[str, tuple[int, ...]]:
    """The values each gene may take in `phase` ("ks", "e", "d", "wid"): its lists, or the
    space's largest value where the phase leaves a list out."""
    return {"ks": phase.kernel_sizes or (max(space.kernel_sizes),),
            "e": phase.expand_ratios or (max(space.expand_ratios),),
            "d": phase.depths or (max(space.depths),),
            "wid": phase.widths or (len(space.width_mults) - 1,)}


def sample_config(space: SearchSpace, choices: dict[str, tuple[int, ...]], rng: np.random.Generator | None,
                  image_size: int, smallest: bool = False, largest: bool = False) -> SubnetConfig:
    """A random subnet among `choices` at `image_size`, or their smallest / largest one (which
    draws nothing from `rng`)."""
    if smallest or largest:
        pick = {k: (min if smallest else max)(v) for k, v in choices.items()}
        return SubnetConfig(pick["wid"], [pick["ks"]] * space.num_slots, [pick["e"]] * space.num_slots,
                            [pick["d"]] * space.num_stages, image_size)
    return SubnetConfig(int(rng.choice(choices["wid"])), rng.choice(choices["ks"], space.num_slots).tolist(),
                        rng.choice(choices["e"], space.num_slots).tolist(),
                        rng.choice(choices["d"], space.num_stages).tolist(), image_size)


def step_configs(space: SearchSpace, recipe: Recipe, phase: Phase, choices: dict[str, tuple[int, ...]],
                 rng: np.random.Generator, image_size: int) -> list[SubnetConfig]:
    """The subnets of one step: the phase's smallest (and largest) first when the recipe's
    sandwich rule asks for them and the step has room, the rest drawn at random."""
    n = phase.subnets_per_step
    fixed = []
    if recipe.sandwich and n > 1:
        fixed.append(sample_config(space, choices, rng, image_size, smallest=True))
    if recipe.sandwich_largest and n > 1 and n > len(fixed) + (1 if n > 2 else 0):
        fixed.append(sample_config(space, choices, rng, image_size, largest=True))
    return fixed + [sample_config(space, choices, rng, image_size) for _ in range(n - len(fixed))]
