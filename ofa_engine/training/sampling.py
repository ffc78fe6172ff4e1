"""Which subnets a training step trains: the phase's choices and the sandwich rule.

What a phase's lists mean and how a config is drawn from them is the family's
(`TrainingHooks`, reached through the space); the sandwich rule is the trainer's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .recipe import Phase, Recipe, training_hooks

__all__ = ["phase_choices", "sample_config", "step_configs"]


def phase_choices(space: Any, phase: Phase) -> dict[str, tuple]:
    """The values each elastic dimension of `space`'s family may take in `phase`: its lists, or
    the space's largest value where the phase leaves a list out."""
    return training_hooks(space).phase_choices(phase.elastic_choices(), f"phase {phase.name!r}")


def sample_config(space: Any, choices: dict[str, tuple], rng: np.random.Generator | None,
                  image_size: int, smallest: bool = False, largest: bool = False, hooks: Any = None) -> Any:
    """A random subnet among `choices` at `image_size`, or their smallest / largest one (which
    draws nothing from `rng`). `hooks`: the space's training hooks, if the caller has them."""
    hooks = hooks or training_hooks(space)
    return hooks.sample(choices, rng, image_size, smallest=smallest, largest=largest)


def step_configs(space: Any, recipe: Recipe, phase: Phase, choices: dict[str, tuple],
                 rng: np.random.Generator, image_size: int, hooks: Any = None) -> list[Any]:
    """The subnets of one step: the phase's smallest (and largest) first when the recipe's
    sandwich rule asks for them and the step has room, the rest drawn at random."""
    hooks = hooks or training_hooks(space)
    n = phase.subnets_per_step
    fixed = []
    if recipe.sandwich and n > 1:
        fixed.append(hooks.sample(choices, rng, image_size, smallest=True))
    if recipe.sandwich_largest and n > 1 and n > len(fixed) + (1 if n > 2 else 0):
        fixed.append(hooks.sample(choices, rng, image_size, largest=True))
    return fixed + [hooks.sample(choices, rng, image_size) for _ in range(n - len(fixed))]
