"""Budgets a subnet must meet, checked vectorised over whole populations.

A constraint is an upper bound on one efficiency metric. Field names carry the unit the user
types (`macs_m` in millions); `METRIC_OF` maps each to the evaluator's metric and the factor
that converts the limit into that metric's unit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np

__all__ = ["Constraints", "InfeasibleBudgetError", "CONSTRAINT_FIELDS", "METRIC_OF", "UNITS"]

# constraint field -> (evaluator metric, metric units per constraint unit)
METRIC_OF: dict[str, tuple[str, float]] = {
    "latency_ms": ("latency_ms", 1.0),
    "peak_memory_kb": ("peak_memory_kb", 1.0),
    "flash_kb": ("flash_kb", 1.0),
    "macs_m": ("macs", 1e6),
    "params_m": ("params", 1e6),
}
CONSTRAINT_FIELDS = tuple(METRIC_OF)
UNITS = {"latency_ms": "ms", "peak_memory_kb": "KB", "flash_kb": "KB", "macs_m": "M MACs",
         "params_m": "M params"}


class InfeasibleBudgetError(ValueError):
    """No subnet of the space meets the budget. `.smallest` maps each violated constraint
    field to the smallest value achievable for it on the profile (in the field's unit)."""

    def __init__(self, message: str, smallest: Mapping[str, float] | None = None):
        super().__init__(message)
        self.smallest = dict(smallest or {})


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:   # an int beyond float range (10**400)
        return False


@dataclass(frozen=True)
class Constraints:
    """Upper bounds; `None` leaves a metric free. Any combination may be given at once."""

    latency_ms: float | None = None
    peak_memory_kb: float | None = None
    flash_kb: float | None = None
    macs_m: float | None = None
    params_m: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not _finite(value) or float(value) <= 0:
                shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
                raise ValueError(f"constraint '{f.name}' = {shown}; allowed: a positive number "
                                 f"({UNITS[f.name]}) or None")
            object.__setattr__(self, f.name, float(value))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Constraints":
        if data is not None and not isinstance(data, Mapping):
            raise ValueError(f"constraints must be an object of {list(CONSTRAINT_FIELDS)}, got "
                             f"{type(data).__name__}")
        data = dict(data or {})
        unknown = sorted(set(data) - set(CONSTRAINT_FIELDS))
        if unknown:
            raise ValueError(f"unknown constraint(s) {unknown}; allowed: {list(CONSTRAINT_FIELDS)}")
        return cls(**data)

    def to_dict(self) -> dict[str, float]:
        """The given bounds only."""
        return {name: getattr(self, name) for name in CONSTRAINT_FIELDS if getattr(self, name) is not None}

    def items(self) -> list[tuple[str, str, float]]:
        """(field, metric, limit in the metric's unit) for every given bound."""
        return list(self._bounds)

    @functools.cached_property
    def _bounds(self) -> tuple[tuple[str, str, float], ...]:
        # Computed once: the feasibility checks of a search read it thousands of times.
        return tuple((name, METRIC_OF[name][0], value * METRIC_OF[name][1]) for name, value in self.to_dict().items())

    def __bool__(self) -> bool:
        return bool(self.to_dict())

    def tightened(self, **limits: float | None) -> "Constraints":
        """A copy where each given limit replaces the bound if it is tighter (or the bound is free)."""
        values = {name: getattr(self, name) for name in CONSTRAINT_FIELDS}
        for name, limit in limits.items():
            if limit is None:
                continue
            if name not in values:
                raise ValueError(f"unknown constraint '{name}'; allowed: {list(CONSTRAINT_FIELDS)}")
            values[name] = float(limit) if values[name] is None else min(values[name], float(limit))
        return Constraints(**values)

    def with_device_memory(self, profile: Any) -> "Constraints":
        """Add the device's memory as bounds: peak activations must fit its SRAM (or RAM) and
        the weights its Flash. A user bound that is tighter is kept."""
        memory = getattr(profile, "memory", None)
        if memory is None:
            return self

        def get(key: str):
            return memory.get(key) if isinstance(memory, Mapping) else getattr(memory, key, None)

        sram = get("sram_kb")
        return self.tightened(peak_memory_kb=sram if sram is not None else get("ram_kb"),
                              flash_kb=get("flash_kb"))

    # ------------------------------------------------------------- vectorised checks
    def feasible(self, metrics: Mapping[str, np.ndarray]) -> np.ndarray:
        """(N,) bool: every bound met."""
        ok = None
        for _, metric, limit in self._bounds:
            met = np.asarray(metrics[metric]) <= limit
            ok = met if ok is None else np.logical_and(ok, met, out=ok)
        return np.ones(len(next(iter(metrics.values()))), bool) if ok is None else ok

    def violation(self, metrics: Mapping[str, np.ndarray]) -> np.ndarray:
        """(N,) float: sum over bounds of the relative excess max(0, value / limit - 1); 0 when feasible."""
        n = len(next(iter(metrics.values())))
        total = np.zeros(n)
        for _, metric, limit in self._bounds:
            total += np.maximum(0.0, np.asarray(metrics[metric], np.float64) / limit - 1.0)
        return total
