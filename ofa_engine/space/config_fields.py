"""What every family's subnet config shares: checked JSON fields, a dict and a JSON form.

A family's config is a frozen dataclass of ints, floats and tuples of them (the lab's JSON form:
lists become tuples, so the value stays immutable and hashable). `JsonConfig` gives it
`to_dict` / `from_dict` / `to_json` / `from_json` from its `FIELDS` (exactly those fields, in that
order, no other); `as_int`, `as_float` and `as_list` check one field's values in
`__post_init__`, each `ValueError` naming the field and the value.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Iterable, Mapping

import numpy as np

from ..files import loads_json

__all__ = ["JsonConfig", "as_int", "as_float", "as_list", "as_ints"]


def as_int(value: Any, field: str) -> int:
    """An integer (an integral float too, as JSON may write it); `ValueError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"config field '{field}' must hold integers, got {value!r}")
    return int(value)


def as_float(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"config field '{field}' must hold numbers, got {value!r}")
    return float(value)


def as_list(value: Any, field: str, what: str = "a list") -> Iterable:
    """`value` if it is a list-like of entries (not a string or a mapping); `what` says what is allowed."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValueError(f"config field '{field}' must be {what}, got {value!r}")
    return value


def as_ints(value: Any, field: str) -> tuple[int, ...]:
    return tuple(as_int(v, field) for v in as_list(value, field, "a list of integers"))


class JsonConfig:
    """Mixin of a family's config dataclass: `FIELDS` its fields in JSON order, `KIND` the
    family's word in messages ("ViT" -> "a ViT subnet config ..."; "" for none)."""

    FIELDS: ClassVar[tuple[str, ...]]
    KIND: ClassVar[str] = ""

    @classmethod
    def _what(cls) -> str:
        return f"{cls.KIND} subnet config".strip()

    def to_dict(self) -> dict[str, Any]:
        return {f: list(v) if isinstance(v := getattr(self, f), tuple) else v for f in self.FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        if not isinstance(data, Mapping):
            raise ValueError(f"a {cls._what()} must be a JSON object, got {type(data).__name__}")
        missing = [f for f in cls.FIELDS if f not in data]
        extra = sorted(map(str, set(data) - set(cls.FIELDS)))
        if missing or extra:
            raise ValueError(f"{cls._what()} must have exactly the fields {list(cls.FIELDS)}; "
                             f"missing {missing}, unexpected {extra}")
        return cls(**{f: data[f] for f in cls.FIELDS})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str):
        # Bounded parse: size and nesting are capped before json sees the text.
        return cls.from_dict(loads_json(text, cls._what()))
