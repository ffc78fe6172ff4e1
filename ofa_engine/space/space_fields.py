"""Reading a family's space from a user's file: every field checked before anything is built.

A space's `to_dict()` form comes back from manifests and supernet files, which anyone may
write. `SpaceFields` checks the object's keys against the space dataclass (no unknown field, no
missing required one) and reads each field within the family's limits, so a crafted file gets a
`ValueError` naming where it is, the field, its value (cut to 80 characters) and what is
allowed, and never a network of gigabytes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["SpaceFields", "MAX_SPACE_CHOICES"]

MAX_SPACE_CHOICES = 64     # entries of any list of choices (resolutions, kernels, ...)


class SpaceFields:
    """The fields of `data` (a space's `to_dict()` form) for the dataclass `space_type`;
    `where` names the object in messages."""

    def __init__(self, data: Any, space_type: type, where: str):
        if not isinstance(data, dict):
            raise ValueError(f"{where} must be an object of search-space fields, got {type(data).__name__}")
        self.data, self.where = data, where
        self.fields = {f.name: f for f in dataclasses.fields(space_type)}
        unknown = sorted(set(map(str, data)) - set(self.fields))
        if unknown:
            raise ValueError(f"{where}: unknown fields {unknown}; allowed: {sorted(self.fields)}")
        missing = [n for n, f in self.fields.items() if f.default is dataclasses.MISSING and n not in data]
        if missing:
            raise ValueError(f"{where}: missing fields {missing}")

    def get(self, name: str) -> Any:
        """The field's value, or the dataclass's default."""
        return self.data.get(name, self.fields[name].default)

    def fail(self, name: str, allowed: str) -> ValueError:
        shown = repr(self.get(name))
        return ValueError(f"{self.where}: field '{name}' = {shown[:80] + '...' if len(shown) > 80 else shown}; "
                          f"allowed: {allowed}")

    def ints(self, name: str, low: int, high: int, size: int | None = None,
             max_len: int = MAX_SPACE_CHOICES) -> tuple[int, ...]:
        """A list of 1 to `max_len` (or exactly `size`) integers in [low, high]."""
        values = self.get(name)
        if (not isinstance(values, (list, tuple)) or not 0 < len(values) <= max_len
                or (size is not None and len(values) != size)
                or any(isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high for v in values)):
            raise self.fail(name, f"a list of {size if size is not None else f'1 to {max_len}'} integers "
                                  f"in [{low}, {high}]")
        return tuple(values)

    def reals(self, name: str, low: float, high: float, size: int | None = None) -> tuple[float, ...]:
        """A list of 1 to MAX_SPACE_CHOICES (or exactly `size`) numbers in [low, high]."""
        values = self.get(name)
        if (not isinstance(values, (list, tuple)) or not 0 < len(values) <= MAX_SPACE_CHOICES
                or (size is not None and len(values) != size)
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high
                       for v in values)):
            raise self.fail(name, f"a list of {size if size is not None else f'1 to {MAX_SPACE_CHOICES}'} "
                                  f"numbers in [{low:g}, {high:g}]")
        return tuple(float(v) for v in values)

    def one(self, name: str, low: int, high: int) -> int:
        """An integer in [low, high]."""
        value = self.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(name, f"an integer in [{low}, {high}]")
        return value

    def real(self, name: str, low: float, high: float, open_low: bool = False, open_high: bool = False) -> float:
        """A number in [low, high] (open at either end when asked)."""
        value = self.get(name)
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high
                or (open_low and value == low) or (open_high and value == high)):
            raise self.fail(name, f"a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}")
        return float(value)

    def name(self, max_len: int = 100) -> str:
        """The space's `name`: 1 to `max_len` characters."""
        value = self.get("name")
        if not isinstance(value, str) or not 0 < len(value) <= max_len:
            raise self.fail("name", f"a name of 1 to {max_len} characters")
        return value

    def labels(self, num_classes: int) -> tuple[str, ...]:
        """The space's `labels`: none, or one name of up to 200 characters per class."""
        value = self.get("labels")
        if (not isinstance(value, (list, tuple)) or (value and len(value) != num_classes)
                or any(not isinstance(x, str) or len(x) > 200 for x in value)):
            raise self.fail("labels", f"none, or {num_classes} names of up to 200 characters")
        return tuple(value)
