"""Numbers as the app shows them: significant digits, always with a unit (no Streamlit here).

Every card, table cell and caption of the app formats its numbers through these functions, so a
value reads the same everywhere and a test can compare what the page shows with `quantity(...)`.
The engine's "KB" is 1024 bytes (its profiles and constraints say KB); memory above 1024 KB is
shown in MB (1024 KB).
"""

from __future__ import annotations

import math

__all__ = ["sig", "budget", "quantity", "memory_kb", "memory_bytes", "memory_limit", "percent", "latency_spread",
           "FIGURE_SOURCES", "figure_source", "default_figure_kinds"]

# What a figure is, in the same words on every page (and, once the engine's report carries them in
# `report["labels"]`, the report's): one of four kinds.
FIGURE_SOURCES = {
    "measured_here": "measured here",                      # on this server, on the exported file
    "measured_on_device": "measured on the device",        # from a profile's measurements
    "learned_model": "predicted by a learned model",       # a predictor fitted to measurements
    "analytical": "computed analytically",                 # a formula or a count on the network
}


def sig(value: float, digits: int = 3) -> str:
    """`value` to `digits` significant digits, in plain notation, no trailing zeros beyond them
    (0.5163 -> "0.516", 449.93 -> "450", 12345 -> "12,300"); 'n/a' for None / NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    value = float(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(digits - 1 - magnitude, 0)
    rounded = round(value, decimals)
    if abs(rounded) >= 10 ** (magnitude + 1) and decimals > 0:   # 0.9996 -> 1.00: one decimal fewer
        decimals -= 1
    if decimals == 0:
        return f"{round(value, digits - 1 - magnitude) if magnitude >= digits else value:,.0f}"
    return f"{value:,.{decimals}f}"


def budget(value: float, unit: str) -> str:
    """A budget exactly as used (up to 6 significant digits, as a slider's value is): '0.5167 ms',
    '3.2 KB', '0.49 M'."""
    return f"{float(value):.6g} {unit}"


def quantity(value: float | None, unit: str, digits: int = 3) -> str:
    """'0.516 ms', '4.37 M' ... ('n/a' without a unit for a missing value). Memory units (KB, MB,
    bytes) go through `memory_kb` / `memory_bytes` instead."""
    if unit in ("KB", "MB", "bytes", "B"):
        kb = None if value is None else float(value) * {"KB": 1, "MB": 1024, "bytes": 1 / 1024, "B": 1 / 1024}[unit]
        return memory_kb(kb, digits)
    text = sig(value, digits)
    return text if text == "n/a" else f"{text} {unit}"


def memory_kb(kb: float | None, digits: int = 3) -> str:
    """A size in KB (1024 bytes) as 'x KB' below 1024 KB, else 'x MB' ('x GB' from 1024 MB)."""
    if kb is None or (isinstance(kb, float) and not math.isfinite(kb)):
        return "n/a"
    kb = float(kb)
    if abs(kb) >= 1024 ** 2:
        return f"{sig(kb / 1024 ** 2, digits)} GB"
    return f"{sig(kb / 1024, digits)} MB" if abs(kb) >= 1024 else f"{sig(kb, digits)} KB"


def memory_bytes(n: float | None, digits: int = 3) -> str:
    """A size in bytes as KB / MB (never raw bytes)."""
    return memory_kb(None if n is None else float(n) / 1024, digits)


def percent(fraction: float | None, digits: int = 3) -> str:
    """0.8512 -> '85.1 %'."""
    if fraction is None or (isinstance(fraction, float) and not math.isfinite(fraction)):
        return "n/a"
    return f"{sig(float(fraction) * 100, digits)} %"


def latency_spread(median_ms: float, iqr_ms: float | None) -> str:
    """'0.373 ms ± 0.021 ms (IQR)': a measured latency as its median and the spread of its runs."""
    if iqr_ms is None or (isinstance(iqr_ms, float) and not math.isfinite(iqr_ms)):
        return quantity(median_ms, "ms")
    return f"{quantity(median_ms, 'ms')} (IQR {quantity(iqr_ms, 'ms', 2)})"


def memory_limit(kb: float | None) -> str:
    """A memory bound as set (a device's SRAM, a budget): up to 4 significant digits, no
    trailing zeros, in KB below 1024 KB and MB above, as `memory_kb` ('320 KB', '1 MB', '3.125 KB')."""
    text = memory_kb(kb, 4)
    number, _, unit = text.partition(" ")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return f"{number} {unit}".strip()


def figure_source(kind: str) -> str:
    """The words for what a figure is: 'measured here', 'measured on the device', 'predicted by a
    learned model' or 'computed analytically' (FIGURE_SOURCES); a kind that is already those
    words (an engine label) is returned as it is."""
    if kind in FIGURE_SOURCES:
        return FIGURE_SOURCES[kind]
    if kind in FIGURE_SOURCES.values():
        return kind
    raise ValueError(f"figure kind '{kind}' is unknown; allowed: {', '.join(FIGURE_SOURCES)}")


def default_figure_kinds(profile_kind: str | None, accuracy_source: str = "predictor") -> dict[str, dict[str, str]]:
    """{"predicted": {field: kind}, "measured": {field: kind}} of a specialize report's figures, as
    the engine computes them today; a report's own `labels` take their place where it has them.
    `profile_kind`: the profile's kind ('analytical', 'measured', ...; None: no profile)."""
    latency = "analytical" if profile_kind in (None, "analytical") else "learned_model"
    return {"predicted": {"accuracy": "learned_model" if accuracy_source == "predictor" else "analytical",
                          "latency_ms": latency, "peak_memory_kb": "analytical", "flash_kb": "analytical",
                          "macs": "analytical"},
            "measured": {"accuracy": "measured_here", "latency_ms": "measured_here",
                         "peak_memory_kb": "analytical", "flash_kb": "analytical", "macs": "analytical"}}
