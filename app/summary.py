"""Once-for-all in one picture: train once, cut many, deploy (an SVG built here, no Streamlit,
no downloaded asset).

    st.image(summary_svg(), caption=SUMMARY_CAPTION)
"""

from __future__ import annotations

from html import escape
from typing import Sequence

__all__ = ["SUMMARY_CAPTION", "summary_svg"]

SUMMARY_CAPTION = ("Once-for-all in one picture: one network is trained once; smaller networks are cut from it "
                   "without retraining; each device gets the most accurate one that fits its time and memory.")

_BLUE, _ORANGE, _GREY, _INK = "#4c78a8", "#f58518", "#e8ecf2", "#1f2a37"


def _box(x: float, y: float, w: float, h: float, fill: str, stroke: str = "none") -> str:
    return f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{fill}" stroke="{stroke}"/>'


def _text(x: float, y: float, text: str, size: int = 14, weight: str = "normal", fill: str = _INK,
          anchor: str = "middle") -> str:
    return (f'<text x="{x}" y="{y}" font-family="sans-serif" font-size="{size}" font-weight="{weight}" '
            f'fill="{fill}" text-anchor="{anchor}">{escape(text)}</text>')


def _arrow(x1: float, x2: float, y: float) -> str:
    return (f'<line x1="{x1}" y1="{y}" x2="{x2 - 8}" y2="{y}" stroke="{_INK}" stroke-width="2"/>'
            f'<polygon points="{x2},{y} {x2 - 10},{y - 6} {x2 - 10},{y + 6}" fill="{_INK}"/>')


def _network(x: float, y: float, widths: Sequence[float], height: float, colour: str) -> str:
    """A network as a row of layers (bars); `widths` their heights as a share of `height`."""
    out, step = [], 14
    for i, share in enumerate(widths):
        h = height * share
        out.append(_box(x + i * step, y + (height - h) / 2, 10, h, colour))
    return "".join(out)


def summary_svg(devices: Sequence[str] = ("fast CPU", "phone", "microcontroller")) -> str:
    """Three panels left to right: 1. train once (one large network), 2. cut many (three subnets
    of it, fewer and thinner layers), 3. deploy (each subnet to the device it fits)."""
    width, height = 760, 200
    full = [1.0, 0.9, 0.95, 0.85, 0.9, 0.8, 0.85, 0.75]
    cuts = [full, [s * 0.75 for s in full[:6]], [s * 0.5 for s in full[:4]]]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(SUMMARY_CAPTION)}">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    # 1. Train once
    parts += [_box(10, 30, 200, 160, _GREY), _text(110, 22, "1. Train once", 15, "bold"),
              _network(55, 55, full, 90, _BLUE), _text(110, 180, "one supernet, trained once", 12)]
    parts.append(_arrow(215, 265, 105))
    # 2. Cut many
    parts += [_box(270, 30, 220, 160, _GREY), _text(380, 22, "2. Cut many", 15, "bold")]
    for i, layers in enumerate(cuts):
        parts.append(_network(290, 42 + i * 42, layers, 34, _BLUE if i == 0 else _ORANGE if i == 1 else "#54a24b"))
        parts.append(_text(410, 64 + i * 42, ["large", "medium", "small"][i], 12, anchor="start"))
    parts.append(_text(380, 180, "they share its weights: no retraining", 12))
    parts.append(_arrow(495, 545, 105))
    # 3. Deploy
    parts += [_box(550, 30, 200, 160, _GREY), _text(650, 22, "3. Deploy", 15, "bold")]
    for i, device in enumerate(devices[:3]):
        parts.append(_box(565, 44 + i * 42, 170, 32, "white", _INK))
        parts.append(_text(650, 65 + i * 42, f"{['large', 'medium', 'small'][i]} → {device}", 12))
    parts.append(_text(650, 180, "each gets the best that fits", 12))
    parts.append("</svg>")
    return "".join(parts)
