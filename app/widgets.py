"""Controls and result views shared by the Specialize and Compare pages."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
import streamlit as st

from app import charts
from app.resources import get_evaluator, get_profile, profile_label, profile_names, user_errors

# Budget kinds offered in the UI: constraint field -> (label, unit, history column, scale).
BUDGETS: dict[str, tuple[str, str, str, float]] = {
    "latency_ms": ("Latency", "ms", "latency_ms", 1.0),
    "peak_memory_kb": ("Peak memory", "KB", "peak_memory_kb", 1.0),
    "flash_kb": ("Flash", "KB", "flash_kb", 1.0),
    "macs_m": ("MACs", "M", "macs", 1e6),
}
MAX_POINTS = 2500  # candidates drawn in the browser (the history may hold tens of thousands)


def profile_picker(key: str) -> str | None:
    """Select box over bundled + this session's profiles; None (with a message) when there is none."""
    names: list[str] = []
    with user_errors("Loading the device profiles"):
        names = profile_names()
    if not names:
        st.error("No device profile is available: assets/profiles/ is empty.")
        return None
    default = names.index("cpu-ort-1t") if "cpu-ort-1t" in names else 0
    return st.selectbox("Device profile", names, index=default, format_func=profile_label, key=key)


def describe_profile(name: str) -> None:
    profile = get_profile(name)
    memory = ", ".join(f"{k.replace('_kb', '').upper()} {v:g} KB" for k, v in dict(profile.memory).items()
                       if v is not None) or "no memory limit"
    quality = profile.quality
    model = getattr(profile.latency_model, "to_dict", lambda: {})().get("type", "?")
    detail = (f"latency model `{model}`, held-out MAPE {quality['mape']:.1%}, Kendall tau "
              f"{quality['kendall_tau']:.2f}" if quality else f"latency model `{model}` (analytical)")
    measured = " Real latency is measured on this server after the search." if profile.measures_locally else ""
    st.caption(f"**{profile.display_name}** - {profile.kind} profile, {memory}; {detail}.{measured}")


def _slider_step(lo: float, hi: float) -> float:
    span = max(hi - lo, 1e-9)
    return float(10 ** math.floor(math.log10(span / 200)))


def budget_controls(profile_name: str, key: str) -> dict[str, float] | None:
    """Multiselect of budget kinds + one slider each (smallest to largest achievable on the
    profile, from `budget_ranges`). Returns {constraint field: limit}; None on an error."""
    from ofa_engine.search import budget_ranges

    ranges: dict[str, Any] | None = None
    with user_errors("Computing the budget ranges"):
        ranges = budget_ranges(get_evaluator(profile_name))
    if ranges is None:
        return None
    offered = [f for f in BUDGETS if f in ranges]
    default = ["latency_ms"] if "latency_ms" in offered else offered[:1]
    kinds = st.multiselect("Budget on", offered, default=default, key=f"{key}_kinds",
                           format_func=lambda f: f"{BUDGETS[f][0]} ({BUDGETS[f][1]})",
                           help="Every chosen bound must hold. A device's SRAM / Flash apply too.")
    limits: dict[str, float] = {}
    columns = st.columns(max(len(kinds), 1))
    for column, field in zip(columns, kinds):
        lo, hi = float(ranges[field]["min"]), float(ranges[field]["max"])
        step = _slider_step(lo, hi)
        # The left end is the smallest achievable value rounded *up* to the step, so every
        # position of the slider is a budget some subnet meets.
        lo_r, hi_r = math.ceil(lo / step - 1e-9) * step, math.ceil(hi / step) * step
        value = lo_r + 0.4 * (hi_r - lo_r)
        label, unit = BUDGETS[field][:2]
        decimals = max(0, -math.floor(math.log10(step)))
        limits[field] = column.slider(
            f"{label} budget ({unit})", min_value=round(lo_r, 6), max_value=round(hi_r, 6),
            value=round(math.floor(value / step) * step, 6), step=step, key=f"{key}_{field}",
            format=f"%.{decimals}f {unit}",   # the value used, to the step, with its unit
            help=f"Achievable on this profile: {lo:.4g} to {hi:.4g} {unit}"
                 f"{'' if ranges[field].get('exact') else ' (estimated)'}.")
    if not kinds:
        st.info("No budget chosen: the search returns the most accurate subnet.", icon=":material/info:")
    return limits


def history_frame(result, max_points: int = MAX_POINTS, seed: int = 0) -> pd.DataFrame:
    """The search history as a DataFrame (accuracy in %, MACs in M), subsampled for drawing;
    the chosen config's row is always kept."""
    hist = {k: np.asarray(v) for k, v in result.history.items()}
    frame = pd.DataFrame(hist)
    frame["accuracy_pct"] = frame["accuracy"] * 100
    frame["macs_m"] = frame["macs"] / 1e6
    frame["evaluation"] = np.arange(1, len(frame) + 1)
    if len(frame) > max_points:
        keep = np.random.default_rng(seed).choice(len(frame), max_points, replace=False)
        frame = frame.iloc[np.sort(keep)]
    return frame.reset_index(drop=True)


def progress_frame(result) -> pd.DataFrame:
    """Best feasible predicted accuracy after each iteration and after each evaluation count."""
    hist = result.history
    iteration = np.asarray(hist["iteration"])
    acc = np.where(np.asarray(hist["feasible"], bool), np.asarray(hist["accuracy"], float), np.nan)
    best_so_far = np.fmax.accumulate(np.nan_to_num(acc, nan=-np.inf))
    frame = pd.DataFrame({"iteration": iteration, "evaluations": np.arange(1, len(acc) + 1),
                          "best accuracy (%)": best_so_far * 100})
    frame = frame[np.isfinite(frame["best accuracy (%)"])]
    return frame.groupby("iteration", as_index=False).last()


def metric_cards(report: Mapping[str, Any], limits: Mapping[str, float]) -> None:
    """Predicted (value) and measured (delta) accuracy, latency, peak memory, Flash and MACs of
    the chosen subnet; green / red: the measured (else predicted) value within / over budget."""
    predicted = report.get("predicted", {}) or {}
    measured = report.get("measured", {}) or {}
    effective = {**dict(limits), **(report.get("effective_constraints") or {})}
    sources = report.get("measured_sources", {}) or {}

    def number(value) -> float | None:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    cols = st.columns(5)
    acc_p, acc_m = number(predicted.get("accuracy")), number(measured.get("accuracy"))
    cols[0].metric("Accuracy", "n/a" if acc_p is None else f"{acc_p:.1%}",
                   None if acc_m is None else f"measured {acc_m:.1%}", delta_color="off", delta_arrow="off",
                   border=True)
    cards = [("latency_ms", "Latency", "ms", 1.0, 3), ("peak_memory_kb", "Peak memory", "KB", 1.0, 4),
             ("flash_kb", "Flash", "KB", 1.0, 4), ("macs_m", "MACs", "M", 1e6, 3)]
    for col, (field, label, unit, scale, digits) in zip(cols[1:], cards):
        key = "macs" if field == "macs_m" else field
        value, real = number(predicted.get(key)), number(measured.get(key))
        value = None if value is None else value / scale
        real = None if real is None else real / scale
        limit = effective.get(field)
        delta = None if real is None else f"measured {real:.{digits}g}"
        checked = real if real is not None else value
        ok = limit is None or checked is None or checked <= float(limit) * (1 + 1e-9)
        title = label if limit is None else f"{label} ≤ {float(limit):.{digits}g}"
        col.metric(title, "n/a" if value is None else f"{value:.{digits}g} {unit}", delta,
                   delta_color=("normal" if ok else "inverse") if limit is not None else "off",
                   delta_arrow="off", border=True)
        if limit is not None and not ok and real is not None:
            col.caption(":red[measured over budget: the predictor was optimistic]")
    if sources:
        with st.expander("How each number was obtained"):
            st.markdown("Large numbers: **predicted** (what the search optimised). ≤: the **budget**, including "
                        "the device's memory. **Measured** on the exported subnet:\n\n"
                        + "\n".join(f"- `{k}`: {v}" for k, v in sources.items()))


def candidates_chart(result, limits: Mapping[str, float], x_field: str) -> Any:
    """Accuracy vs the budgeted metric for every evaluated candidate, budget line, chosen point."""
    frame = history_frame(result)
    column = BUDGETS[x_field][2] if x_field in BUDGETS else x_field
    x = "macs_m" if column == "macs" else column
    frame["candidate"] = np.where(frame["feasible"].astype(bool), "within budget", "over budget")
    chosen = {x: float(result.predicted["macs"]) / 1e6 if x == "macs_m" else float(result.predicted[x]),
              "accuracy_pct": float(result.predicted["accuracy"]) * 100}
    feasible = frame[frame["feasible"].astype(bool)]
    base = charts.tradeoff_chart(feasible if len(feasible) else frame, x, "accuracy_pct",
                                 budget=limits.get(x_field), chosen=chosen,
                                 x_title=f"{BUDGETS.get(x_field, (x, ''))[0]} ({BUDGETS.get(x_field, ('', x))[1]})",
                                 y_title="predicted accuracy (%)", tooltip=["iteration", x, "accuracy_pct"])
    import altair as alt
    over = alt.Chart(frame[~frame["feasible"].astype(bool)]).mark_circle(size=18, opacity=0.25, color="#bab0ac").encode(
        x=f"{x}:Q", y="accuracy_pct:Q", tooltip=["iteration", x, "accuracy_pct"])
    return alt.layer(over, *base.layer).properties(height=380)
