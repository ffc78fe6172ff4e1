"""Network families behind the search-space interface (`ofa_engine.space.interface`).

A family registers its `DiscreteSearchSpace` class in `FAMILIES`; `search_space(x)` turns a
family's own space object, or a preset name, into that interface, so that the search, the
evaluator and the app never name a family. Today: MobileNetV3 (`families/mbv3/`).
"""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from ..space.interface import DiscreteSearchSpace

__all__ = ["FAMILIES", "search_space"]


def _load_families() -> None:
    from .mbv3 import family  # noqa: F401  (registers "mbv3")


FAMILIES: Registry[type] = Registry("network family", loader=_load_families)


def search_space(space: Any, *, fast: bool = True) -> DiscreteSearchSpace:
    """`space` as a `DiscreteSearchSpace`: itself if it is one, else the space of the family
    that accepts it (a family's space object or one of its preset names); `ValueError` naming
    the known families and presets otherwise. `fast`: the family's exact tables, if it has any."""
    if isinstance(space, DiscreteSearchSpace):
        return space
    for _, family in FAMILIES.items():
        if family.accepts(space):
            return family(space, fast=fast)
    presets = sorted(p for _, family in FAMILIES.items() for p in family.preset_names())
    raise ValueError(f"unknown search space {space!r}; known: {', '.join(presets)} "
                     f"(families: {', '.join(FAMILIES.names())})")
