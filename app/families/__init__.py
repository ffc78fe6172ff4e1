"""Family-specific parts of the app's pages, registered per network family.

`EXPLANATIONS` maps a family's registered name (`ofa_engine.families.FAMILIES`,
`family_of(space).family`) to the function that draws that family's sections of "How OFA works"
(MobileNetV3: the kernel transforms of its depthwise convolutions, `app/families/mbv3/`; the
elastic ViT: its elastic widths, heads and MLPs and their importance, `app/families/vit/`). The page
draws the family-neutral parts and looks the current supernet's family up here; it never names a
family. A render function takes the number of its first section and returns the number of the
next one. Each family's folder registers on import (its `__init__`, light: the drawing module,
with torch, is imported when the function runs); the loader imports them on the first lookup.
"""

from __future__ import annotations

from typing import Callable

from ofa_engine.registry import Registry

__all__ = ["EXPLANATIONS", "explanation"]


def _load_explanations() -> None:
    from . import mbv3  # noqa: F401  (registers "mbv3")
    from . import vit  # noqa: F401  (registers "vit")


EXPLANATIONS: Registry[Callable[[int], int]] = Registry("family explanation", loader=_load_explanations)


def explanation(family: str) -> Callable[[int], int] | None:
    """The registered sections of `family` (see `EXPLANATIONS`), or None for a family without any."""
    return EXPLANATIONS.get(family) if family in EXPLANATIONS else None
