"""Network families behind the family interface (`ofa_engine.space.family.NetworkFamily`).

A family registers its `NetworkFamily` class in `FAMILIES` under its name (a package
manifest's `family`). `family_of(x)` turns a family's own space object, or a preset name, into
that interface, bound to the space; `family_named(name)` gives the class (to read a space from
a manifest: `family_named(m.family).space_from_dict(m.space)`). The search, the evaluator, the
pipeline, the predictors, the devices, training and the app reach a family only this way.
Today: MobileNetV3 (`families/mbv3/`), the ViT (`families/vit/`), ResNet50D (`families/resnet/`)
and ProxylessNAS (`families/proxyless/`).
"""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from ..space.interface import DiscreteSearchSpace

__all__ = ["FAMILIES", "search_space", "family_of", "family_named", "preset_names"]


def _load_families() -> None:
    from .mbv3 import family  # noqa: F401  (registers "mbv3")
    from .vit import family as _vit  # noqa: F401  (registers "vit")
    from .resnet import family as _resnet  # noqa: F401  (registers "resnet")
    from .proxyless import family as _proxyless  # noqa: F401  (registers "proxyless")


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
    raise ValueError(f"unknown search space {space!r}; known: {', '.join(sorted(preset_names()))} "
                     f"(families: {', '.join(sorted(FAMILIES.names()))})")


def family_of(space: Any, *, fast: bool = True) -> Any:
    """The `NetworkFamily` bound to `space` (a family's space object, one of its preset names,
    or a family already); `ValueError` naming the known families and presets otherwise."""
    return search_space(space, fast=fast)


def family_named(name: str) -> type:
    """The family class registered as `name` (`ValueError` naming the registered ones)."""
    return FAMILIES.get(name)


def preset_names() -> list[str]:
    """Every registered family's preset space names, family by family in name order."""
    return [p for name, family in sorted(FAMILIES.items()) for p in family.preset_names()]
