"""What the trainer asks of a network family: which subnets a step trains and what each phase
of progressive shrinking makes elastic.

A family's `training()` returns its `TrainingHooks`, bound to one space. The trainer
(`ofa_engine.training`) knows recipes, losses and checkpoints, never a family's configs: a
recipe phase lists, per *elastic dimension* of the family, the values it trains ("kernel_sizes":
[3, 5, 7] for MobileNetV3, "embed_dim": [64, 96] for a ViT); a dimension the phase leaves out
keeps its largest value. The hooks turn those lists into configs (`sample`), give the family's
default schedule in the recipe file's JSON form (`default_recipe`) and re-sort a supernet's
channels by importance before a phase that starts to shrink them (`reorganize`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["TrainingHooks"]


class TrainingHooks(ABC):
    """A family's training hooks for the space `space` (the family's own space object)."""

    family: str

    def __init__(self, space: Any):
        self.space = space

    # ------------------------------------------------------------- elastic dimensions
    @abstractmethod
    def elastic_dimensions(self) -> dict[str, tuple]:
        """{name: every value the space allows}, in the order `sample` draws them. The names are
        what a recipe phase lists."""

    def largest_value(self, name: str) -> Any:
        """The value a dimension keeps in a phase that leaves it out (default: the maximum)."""
        return max(self.elastic_dimensions()[name])

    def phase_choices(self, listed: Mapping[str, Sequence | None], where: str = "phase") -> dict[str, tuple]:
        """The values each elastic dimension takes in a phase that lists `listed` ({name: values};
        a missing, null or empty list means the largest value only). `ValueError` naming `where`,
        the dimension and what is allowed for a name or a value the space does not have."""
        dimensions = self.elastic_dimensions()
        unknown = sorted(name for name, values in listed.items() if values and name not in dimensions)
        if unknown:
            raise ValueError(f"{where}: elastic dimension(s) {unknown} not in family '{self.family}'; "
                             f"allowed: {', '.join(dimensions)}")
        choices = {}
        for name, allowed in dimensions.items():
            values = tuple(listed.get(name) or ())
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"{where}: {name} = {list(values)} has {bad}, not in space "
                                 f"'{self.space.name}'; allowed: {list(allowed)}")
            choices[name] = values or (self.largest_value(name),)
        return choices

    @abstractmethod
    def sample(self, choices: Mapping[str, Sequence], rng: np.random.Generator | None, image_size: int,
               smallest: bool = False, largest: bool = False) -> Any:
        """A config at `image_size` drawn from `choices` (`phase_choices`' form), or the
        smallest / largest one among them, which draws nothing from `rng`. What it draws, in
        which order, fixes the subnets of a seeded run: a family keeps it stable."""

    # ------------------------------------------------------------- the schedule
    @abstractmethod
    def default_recipe(self) -> dict[str, Any]:
        """The family's default progressive-shrinking run for this space, as a recipe file's
        JSON object ({"phases": [...], ...}: `ofa_engine.training.Recipe.from_dict` reads it)."""

    # ------------------------------------------------------------- the accuracy dataset
    def random_configs(self, n: int, rng: np.random.Generator) -> list[Any]:
        """`n` uniformly random configs drawn from `rng` (the accuracy dataset's subnets; a
        family keeps the draws stable). Default: `space.sample(rng)`, `n` times."""
        return [self.space.sample(rng) for _ in range(n)]

    def width_index(self, config: Any) -> int:
        """The accuracy dataset's "wid" column: the index of the config's network-wide width
        choice (0 for a family without one)."""
        return 0

    # ------------------------------------------------------------- channel sorting
    def channel_sorts(self) -> tuple[str, ...]:
        """A phase's allowed `sort_channels` values, in words ("stage", "middle:<stage>");
        default: none."""
        return ()

    def check_sort(self, how: str, where: str = "phase") -> None:
        """`ValueError` naming `where` unless `how` is one of `channel_sorts()` (a family whose
        forms take arguments overrides this)."""
        allowed = self.channel_sorts()
        if how in allowed:
            return
        raise ValueError(f"{where}: sort_channels = {how!r}; allowed for family '{self.family}': "
                         f"{', '.join(repr(a) for a in allowed) if allowed else 'null (it sorts no channels)'}")

    def reorganize(self, supernet: Any, how: str) -> None:
        """Sort `supernet`'s channels by importance as `how` says (one of `channel_sorts`), in
        place, leaving the function of the largest subnet unchanged."""
        self.check_sort(how)
