"""A subnet's layers as its family describes them, for every page (no Streamlit, no pandas here).

The rows are the family's `describe(config)` (`ofa_engine.space.family.DESCRIBE_FIELDS`: layer,
group, kind, choices, in_shape, out_shape, width, macs, params, active); the app renders them
without knowing the family. A config may be the family's config object or its dict (a report's
"config").
"""

from __future__ import annotations

import json
from functools import lru_cache
from numbers import Number
from typing import Any, Iterable, Mapping, Sequence

from ofa_engine.families import family_of

__all__ = ["family", "config_of", "config_json", "describe", "chart_layers", "choice_names", "choice_span",
           "choice_labels", "extremes", "elastic_depth_groups", "subnet_summary", "space_summary", "shape_text"]


def family(space: Any) -> Any:
    """The `NetworkFamily` of `space` (its space object or a family), without the search's
    efficiency tables (none of the app's descriptions need them)."""
    return family_of(space, fast=False)


def config_of(space: Any, config: Any) -> Any:
    """`config` as the family's (validated) config object; a dict is read as `config_to_dict` writes it."""
    fam = family(space)
    return fam.config_from_dict(config) if isinstance(config, Mapping) else fam.validate(config)


def config_json(config: Any) -> str:
    """A config as compact JSON (its `to_dict()`)."""
    return json.dumps(config.to_dict(), separators=(",", ":"))


def describe(space: Any, config: Any) -> list[dict[str, Any]]:
    """The family's rows of `config`'s subnet, one per layer (inactive ones included)."""
    return family(space).describe(config_of(space, config))


@lru_cache(maxsize=8)
def extremes(space: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of `space`'s smallest and largest subnets (cached: the space is immutable).
    Callers must not change them."""
    fam = family(space)
    return fam.describe(fam.space.smallest()), fam.describe(fam.space.largest())


def choice_names(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every choice name of `rows`, in their order of first appearance."""
    return list(dict.fromkeys(name for row in rows for name in row["choices"]))


def chart_layers(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The active rows of the repeated elastic layers: those with the most frequent set of
    choice names (MobileNetV3: the blocks' kernel and expand; not the stem and head, whose
    only choice is the network's width)."""
    keys = [tuple(row["choices"]) for row in rows if row["choices"]]
    if not keys:
        return [row for row in rows if row["active"]]
    common = max(dict.fromkeys(keys), key=keys.count)
    return [row for row in rows if row["active"] and tuple(row["choices"]) == common]


def choice_span(values: Iterable[Any]) -> str:
    """The values a choice takes, in a few characters: "5", "3-7" (numbers), "a/b" (others)."""
    values = list(dict.fromkeys(values))
    if all(isinstance(v, Number) and not isinstance(v, bool) for v in values):
        low, high = min(values), max(values)
        return f"{low}" if low == high else f"{low}-{high}"
    return "/".join(sorted(map(str, values)))


def choice_labels(names: Sequence[str]) -> dict[str, str]:
    """Each choice name's shortest prefix that no other name starts with ("kernel" -> "k")."""
    out = {}
    for name in names:
        others = [n for n in names if n != name]
        size = next((i for i in range(1, len(name) + 1) if not any(n.startswith(name[:i]) for n in others)),
                    len(name))
        out[name] = name[:size]
    return out


def elastic_depth_groups(space: Any) -> list[str]:
    """The groups whose number of active layers varies (some layer of it is left out of the
    smallest subnet but runs in the largest), in row order."""
    smallest, largest = extremes(space)
    return list(dict.fromkeys(big["group"] for small, big in zip(smallest, largest)
                              if big["active"] and not small["active"]))


def subnet_summary(space: Any, config: Any) -> str:
    """One line: each choice's values over the active layers, the resolution and the number of
    active layers of each group with elastic depth ("width 1.0, kernel 3-7, expand 3-6, 28 px,
    depths [2, 3, 4, 2, 2]"; one such group: "depth 3")."""
    rows = [row for row in describe(space, config) if row["active"]]
    parts = [f"{name} {choice_span(row['choices'][name] for row in rows if name in row['choices'])}"
             for name in choice_names(rows)]
    parts.append(f"{config_of(space, config).image_size} px")
    groups = elastic_depth_groups(space)
    depths = [sum(row["group"] == g for row in rows) for g in groups]
    if len(groups) == 1:        # one group (a Transformer's encoder): its depth, not a list of one
        parts.append(f"depth {depths[0]}")
    elif groups:
        parts.append(f"depths {depths}")
    return ", ".join(parts)


def space_summary(space: Any) -> str:
    """The elastic choices of `space` in words ("width 0.5-1.0, kernel 3-7, expand 3-6 and the
    depth of 5 groups"; one group with elastic depth: "... and depth 3-5"), from its smallest and
    largest subnets."""
    smallest, largest = extremes(space)
    rows = [row for row in smallest + largest if row["active"]]
    parts = [f"{name} {choice_span(row['choices'][name] for row in rows if name in row['choices'])}"
             for name in choice_names(rows)]
    groups = elastic_depth_groups(space)
    if len(groups) == 1:        # one group (a Transformer's encoder): the layers it may keep
        rows_of = [[row for row in side if row["active"] and row["group"] == groups[0]] for side in (smallest, largest)]
        parts.append(f"depth {choice_span(len(side) for side in rows_of)}")
    elif groups:
        parts.append(f"the depth of {len(groups)} groups")
    if not parts:
        return "no elastic choice but the resolution"
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def shape_text(shape: Sequence[int]) -> str:
    """An activation shape as "24x8x8"."""
    return "x".join(str(n) for n in shape)
