"""Altair charts and tables of the app, as pure functions of engine data (no Streamlit here)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from app import layers
from app.lazy import lazy_module
from ofa_engine.space.family import DESCRIBE_FIELDS

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


# The layer chart's colours, light to dark, for the first choice's smallest to largest value.
LAYER_PALETTE = ("#9ecae9", "#4c78a8", "#1f3f6e")


def _choice_columns(rows: Sequence[dict]) -> dict[str, str]:
    """{choice name: its column}: the name, or "choice NAME" where a row field has that name."""
    return {n: n if n not in DESCRIBE_FIELDS else f"choice {n}" for n in layers.choice_names(rows)}


def _layer_frame(rows: Sequence[dict], split_choices: bool = False) -> pd.DataFrame:
    """Rows of `describe` as a table: the row's fields (shapes as "24x8x8"), the choices in one
    column ("kernel 5, expand 4") and, if `split_choices`, each in its own column (`_choice_columns`)."""
    columns = _choice_columns(rows) if split_choices else {}
    return pd.DataFrame([{"layer": r["layer"], "group": r["group"], "kind": r["kind"],
                          "choices": ", ".join(f"{n} {v}" for n, v in r["choices"].items()),
                          **{c: r["choices"].get(n) for n, c in columns.items()},
                          "in_shape": layers.shape_text(r["in_shape"]), "out_shape": layers.shape_text(r["out_shape"]),
                          "width": r["width"], "macs": r["macs"], "params": r["params"]} for r in rows])


def config_table(space, cfg) -> pd.DataFrame:
    """One row per active layer of `cfg` as its family describes it: layer, group, kind, the
    elastic choices made there, activation shapes, widest inner dimension, MACs and params."""
    return _layer_frame([r for r in layers.describe(space, cfg) if r["active"]])


def config_picture(space, cfg, height: int = 220) -> alt.Chart:
    """The active elastic layers of `cfg` left to right (`app.layers.chart_layers`): bar height =
    the layer's width (MobileNetV3: expanded channels), colour = its first choice (the kernel),
    label = every choice ("k5 e4"); one facet per group (stage). The scales are the space's, from
    its smallest and largest subnets, so that two subnets' pictures compare."""
    rows = layers.chart_layers(layers.describe(space, cfg))
    smallest, largest = layers.extremes(space)
    widest = layers.chart_layers(largest)
    columns = _choice_columns(rows)
    short = layers.choice_labels(list(columns))
    frame = _layer_frame(rows, split_choices=True)
    frame["text"] = ["\n".join(f"{short[n]}{v}" for n, v in r["choices"].items()) for r in rows]
    groups = list(dict.fromkeys(r["group"] for r in widest + rows))
    top = max(r["width"] for r in widest + rows)
    per_group = max(sum(r["group"] == g for r in widest) for g in groups)
    base = alt.Chart(frame).encode(
        x=alt.X("layer:N", sort=None, title=None, axis=alt.Axis(labelAngle=0)),
        tooltip=["layer", "kind", *columns.values(), "in_shape", "width", "out_shape",
                 alt.Tooltip("macs:Q", format=","), alt.Tooltip("params:Q", format=",")])
    first = next(iter(columns), None)
    colour = (_choice_colour(first, columns[first], smallest + largest + rows) if first is not None
              else alt.value(LAYER_PALETTE[1]))
    bars = base.mark_bar(stroke="#333", strokeWidth=0.5).encode(
        y=alt.Y("width:Q", title="width (widest inner dimension)", scale=alt.Scale(domain=[0, top])), color=colour)
    text = base.mark_text(dy=-8 * max(len(columns), 1), fontSize=10, lineBreak="\n").encode(y="width:Q", text="text:N")
    return (bars + text).properties(height=height, width=34 * per_group).facet(
        column=alt.Column("group:N", title=None, sort=groups), spacing=4).resolve_scale(x="independent")


def _choice_colour(name: str, field: str, rows: Sequence[dict]) -> alt.Color:
    """Colour by the choice `name` (column `field`): light to dark over the values the space's
    extreme subnets and `rows` take (numbers), else one colour per value."""
    values = list(dict.fromkeys(r["choices"][name] for r in rows if name in r["choices"]))
    legend = alt.Legend(symbolType="square", symbolStrokeWidth=0, symbolOpacity=1)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and min(values) < max(values):
        low, high = min(values), max(values)
        return alt.Color(f"{field}:O", title=name, legend=legend, scale=alt.Scale(
            domain=sorted(values), range=[_blend((v - low) / (high - low)) for v in sorted(values)]))
    return alt.Color(f"{field}:N", title=name, legend=legend)


def _blend(share: float) -> str:
    """The colour at `share` (0 to 1) along LAYER_PALETTE, linearly between its stops."""
    stops = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in LAYER_PALETTE]
    where = share * (len(stops) - 1)
    i = min(int(where), len(stops) - 2)
    t = where - i
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(stops[i], stops[i + 1]))


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
