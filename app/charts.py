"""Altair charts and tables of the app, as pure functions of engine data (no Streamlit here)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from app.lazy import lazy_module
from ofa_engine.families.mbv3.layout import walk_configs

# Imported on first use: the home page's first run draws no chart (app/lazy.py).
alt = lazy_module("altair")
pd = lazy_module("pandas")

METRIC_LABELS = {
    "accuracy": "accuracy (%)",
    "latency_ms": "latency (ms)",
    "peak_memory_kb": "peak memory (KB)",
    "flash_kb": "Flash (KB)",
    "macs": "MACs (M)",
    "macs_m": "MACs (M)",
    "params": "params (M)",
    "params_m": "params (M)",
}


def config_table(space, cfg) -> pd.DataFrame:
    """One row per active block of `cfg`: stage, block, kernel, expand ratio, channels, stride."""
    rows = []
    for geometry in walk_configs(space, cfg):
        b = geometry.row(0)
        if b["kind"] != "block" or not b["active"]:
            continue
        size = b["out_size"]
        rows.append({"stage": b["stage"] + 1, "block": b["index"] + 1,
                     "label": f"S{b['stage'] + 1}.B{b['index'] + 1}",
                     "kernel": b["kernel"], "expand": b["expand_ratio"], "in_channels": b["in_channels"],
                     "middle_channels": b["mid_channels"], "out_channels": b["out_channels"],
                     "stride": b["stride"], "feature_map": f"{size}x{size}", "se": b["se"],
                     "activation": b["activation"]})
    return pd.DataFrame(rows)


def config_picture(space, cfg, height: int = 220) -> alt.Chart:
    """The active blocks of `cfg` left to right: bar height = expanded (middle) channels,
    colour = kernel size, label = kernel and expand ratio; stages separated by facets."""
    frame = config_table(space, cfg)
    frame["text"] = [f"k{k}\ne{e}" for k, e in zip(frame["kernel"], frame["expand"])]
    palette = ["#9ecae9", "#4c78a8", "#1f3f6e", "#0b1f3a"]
    kernel_scale = alt.Scale(domain=list(space.kernel_sizes), range=palette[:len(space.kernel_sizes)])
    max_mid = space.middle_channels(max(space.channels(len(space.width_mults) - 1).stages), max(space.expand_ratios))
    base = alt.Chart(frame).encode(
        x=alt.X("label:N", sort=None, title=None, axis=alt.Axis(labelAngle=0)),
        tooltip=["label", "kernel", "expand", "in_channels", "middle_channels", "out_channels",
                 "stride", "feature_map", "se", "activation"])
    bars = base.mark_bar(stroke="#333", strokeWidth=0.5).encode(
        y=alt.Y("middle_channels:Q", title="expanded channels", scale=alt.Scale(domain=[0, max_mid])),
        color=alt.Color("kernel:O", scale=kernel_scale, title="kernel",
                        legend=alt.Legend(symbolType="square", symbolStrokeWidth=0, symbolOpacity=1)))
    text = base.mark_text(dy=-16, fontSize=10, lineBreak="\n").encode(y="middle_channels:Q", text="text:N")
    return (bars + text).properties(height=height, width=34 * space.max_depth).facet(
        column=alt.Column("stage:O", title=None, header=alt.Header(labelExpr="'stage ' + datum.value")),
        spacing=4).resolve_scale(x="independent")


def heatmap(matrix: np.ndarray, title: str, size: int = 160, highlight: tuple[int, int, int] | None = None
            ) -> alt.Chart:
    """A small matrix as a diverging heatmap (0 = white). `highlight` = (row0, col0, n) outlines
    the n x n square starting at (row0, col0) and fades the cells outside it."""
    matrix = np.asarray(matrix, dtype=float)
    rows, cols = matrix.shape
    r0, c0, n = highlight if highlight is not None else (0, 0, max(rows, cols))
    frame = pd.DataFrame([{"row": r, "col": c, "value": matrix[r, c],
                           "inside": bool(r0 <= r < r0 + n and c0 <= c < c0 + n)}
                          for r in range(rows) for c in range(cols)])
    limit = float(np.abs(matrix).max()) or 1.0
    outline = highlight is not None
    return alt.Chart(frame).mark_rect(stroke="black").encode(
        x=alt.X("col:O", axis=None), y=alt.Y("row:O", axis=None),
        color=alt.Color("value:Q", scale=alt.Scale(scheme="redblue", domain=[-limit, limit], reverse=True),
                        legend=None),
        opacity=alt.condition("datum.inside", alt.value(1.0), alt.value(0.35)),
        strokeWidth=alt.condition("datum.inside", alt.value(1.2 if outline else 0.0), alt.value(0.0)),
        tooltip=["row", "col", alt.Tooltip("value:Q", format=".4f")],
    ).properties(width=size, height=size, title=title)


def pareto_mask(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """True for the points no other point beats (lower or equal cost and higher quality)."""
    cost, quality = np.asarray(cost, float), np.asarray(quality, float)
    order = np.lexsort((-quality, cost))
    mask = np.zeros(len(cost), bool)
    best = -np.inf
    for i in order:
        if quality[i] > best:
            mask[i], best = True, quality[i]
    return mask


def tradeoff_chart(frame: pd.DataFrame, x: str, y: str = "accuracy", *, budget: float | None = None,
                   chosen: dict[str, float] | None = None, x_title: str | None = None,
                   y_title: str | None = None, height: int = 360, color: str | None = None,
                   tooltip: Sequence[str] = ()) -> alt.LayerChart:
    """Scatter of `y` against `x` with the Pareto front (max y, min x), an optional vertical
    budget line and an optional highlighted chosen point."""
    frame = frame.copy()
    frame["pareto"] = pareto_mask(frame[x].to_numpy(), frame[y].to_numpy())
    x_enc = alt.X(f"{x}:Q", title=x_title or METRIC_LABELS.get(x, x), scale=alt.Scale(zero=False))
    y_enc = alt.Y(f"{y}:Q", title=y_title or METRIC_LABELS.get(y, y), scale=alt.Scale(zero=False))
    points = alt.Chart(frame).mark_circle(size=28, opacity=0.45).encode(
        x=x_enc, y=y_enc,
        color=alt.Color(f"{color}:N") if color else alt.value("#4c78a8"),
        tooltip=list(tooltip) or [x, y])
    front = alt.Chart(frame[frame["pareto"]].sort_values(x)).mark_line(
        color="#e45756", interpolate="step-after", strokeWidth=2).encode(x=x_enc, y=y_enc)
    layers: list[alt.Chart] = [points, front]
    if budget is not None:
        layers.append(alt.Chart(pd.DataFrame({x: [budget]})).mark_rule(
            color="#f58518", strokeDash=[6, 4], strokeWidth=2).encode(x=f"{x}:Q"))
    if chosen is not None:
        layers.append(alt.Chart(pd.DataFrame([chosen])).mark_point(
            shape="diamond", size=260, filled=True, color="#f58518", stroke="black").encode(
            x=f"{x}:Q", y=f"{y}:Q", tooltip=list(chosen)))
    return alt.layer(*layers).properties(height=height)
