"""Budgets as data: slider positions, per-device defaults, the latency safety margin and the
verdict on a measured latency (no Streamlit here).

Pure functions of the engine's `budget_ranges` and a profile, so that they can move into the
engine (`ofa_engine.search`) as they are; the pages only call them.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["DEFAULT_POSITION", "MAX_MARGIN", "slider_bounds", "snap", "position_in", "at_position",
           "default_budget", "shared_deadlines", "latency_margin", "searched_limits", "latency_verdict",
           "identical_configs"]

DEFAULT_POSITION = 0.4   # a new budget sits at 40 % of the achievable range (on the slider's step)
MAX_MARGIN = 0.25        # a safety margin never takes more than a quarter of the budget


def _slider_step(lo: float, hi: float) -> float:
    span = max(hi - lo, 1e-9)
    return float(10 ** math.floor(math.log10(span / 200)))


def slider_bounds(lo: float, hi: float) -> tuple[float, float, float]:
    """(left end, right end, step): the smallest achievable value rounded *up* to the step, so
    every position of the slider is a budget some subnet meets."""
    step = _slider_step(lo, hi)
    return (round(math.ceil(lo / step - 1e-9) * step, 6), round(math.ceil(hi / step) * step, 6), step)


def snap(value: float, lo: float, hi: float) -> float:
    """`value` on the slider of the range [lo, hi]: rounded down to its step, within its ends."""
    lo_r, hi_r, step = slider_bounds(lo, hi)
    return round(min(max(math.floor(value / step + 1e-9) * step, lo_r), hi_r), 6)


def position_in(value: float, lo: float, hi: float) -> float:
    """Where `value` sits in the slider of [lo, hi]: 0 at its left end, 1 at its right end."""
    lo_r, hi_r, _ = slider_bounds(lo, hi)
    return float(min(max((value - lo_r) / (hi_r - lo_r), 0.0), 1.0)) if hi_r > lo_r else 0.0


def at_position(position: float, lo: float, hi: float) -> float:
    """The slider value of [lo, hi] at `position` (0..1): a budget keeps its place in the range
    when the device (so the range) changes."""
    lo_r, hi_r, _ = slider_bounds(lo, hi)
    return snap(lo_r + min(max(float(position), 0.0), 1.0) * (hi_r - lo_r), lo, hi)


def default_budget(lo: float, hi: float) -> float:
    """A new budget: DEFAULT_POSITION of the achievable range, on the slider's step."""
    return at_position(DEFAULT_POSITION, lo, hi)


def shared_deadlines(ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Default latency budgets for deploying to several devices at once: {profile: ms}.

    `ranges`: each profile's achievable latency range (min, max) in ms. Devices whose ranges
    overlap (chained) are one group, e.g. the microcontrollers apart from the CPUs; a group
    shares one deadline, the geometric mean of its members' `default_budget`s, clamped to each
    member's range. One application deadline on every device of a group, rather than the same
    share of every range: an analytical latency is the MACs scaled by the clock, so the same
    share of each range would pick the same subnet on every board, whatever its speed; with one
    deadline a faster device runs a larger subnet. A device alone in its group keeps its own
    default."""
    names = sorted(ranges, key=lambda n: ranges[n][0])
    groups: list[list[str]] = []
    for name in names:     # sorted by their minimum: a range overlaps the group before it or none
        lo = ranges[name][0]
        if groups and lo <= max(ranges[n][1] for n in groups[-1]):
            groups[-1].append(name)
        else:
            groups.append([name])
    out: dict[str, float] = {}
    for group in groups:
        own = [default_budget(*ranges[n]) for n in group]
        deadline = float(np.exp(np.mean(np.log(own))))
        for name in group:
            lo, hi = ranges[name]
            out[name] = snap(deadline, lo, hi) if len(group) > 1 else default_budget(lo, hi)
    return out


def latency_margin(quality: Mapping[str, Any] | None, validation: Mapping[str, Any] | None = None) -> float:
    """The share of a latency budget kept in reserve on a profile fitted to measurements, so that
    the measured file meets the budget it was searched for: the 90th percentile of how much the
    held-out subnets' measured latency exceeded the prediction (`validation`: the profile's
    {"measured_ms", "predicted_ms"}), else twice the held-out MAPE (`quality`), at most
    MAX_MARGIN. 0 for an analytical profile (no measurements: no spread to go by)."""
    if validation is not None and len(validation.get("measured_ms", ())) >= 5:
        measured = np.asarray(validation["measured_ms"], float)
        predicted = np.asarray(validation["predicted_ms"], float)
        excess = float(np.percentile(measured / predicted - 1.0, 90))
    elif quality and quality.get("mape") is not None:
        excess = 2.0 * float(quality["mape"])
    else:
        return 0.0
    return float(min(max(excess, 0.0), MAX_MARGIN))


def searched_limits(limits: Mapping[str, float], margin: float) -> dict[str, float]:
    """The bounds the search is given: the latency budget less its safety margin (the user's
    budget stays what the result is judged against); the other bounds as they are."""
    out = dict(limits)
    if out.get("latency_ms") is not None and margin > 0:
        out["latency_ms"] = float(out["latency_ms"]) * (1.0 - margin)
    return out


def latency_verdict(median_ms: float, iqr_ms: float | None, limit: float | None) -> str:
    """'within' (the median meets the budget), 'over' (even the median minus one IQR, a lower
    bound of the first quartile, is over it), else 'noisy': the runs' spread straddles the
    budget, so the measurement cannot say whether the subnet is over it."""
    if limit is None or median_ms <= float(limit) * (1 + 1e-9):
        return "within"
    spread = 0.0 if iqr_ms is None or not math.isfinite(float(iqr_ms)) else float(iqr_ms)
    return "over" if median_ms - spread > float(limit) else "noisy"


def identical_configs(entries: Iterable[tuple[str, Any]]) -> list[list[str]]:
    """Groups (two or more names) of entries (name, config dict) with the same config."""
    seen: dict[str, list[str]] = {}
    for name, config in entries:
        seen.setdefault(repr(sorted(dict(config).items())), []).append(name)
    return [names for names in seen.values() if len(names) > 1]
