"""The elastic Vision Transformer's sections of "How OFA works", read from the chosen package's
supernet: what is elastic (embedding width, depth, heads, MLP ratio) with a subnet built from
those choices and the largest and smallest subnets' layers, where the MACs go (linear layers,
attention's quadratic term, the MLP), and the embedding channels, heads and MLP units sorted by
importance (`ViTSupernet.importance()`).

The numbers come from the family's closed forms (`analytics.block_terms`, `describe`) and from the
supernet's weights; the functions above the drawing ones return plain data (tested)."""

from __future__ import annotations

import json
from typing import Any, Sequence

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from app import charts
from app import format as fmt
from app.layers import extremes, family
from app.resources import get_accuracy_predictor, get_package, get_space, get_supernet
from ofa_engine.families.vit.analytics import block_terms

__all__ = ["render", "macs_parts", "importance_vectors", "kept_shares"]

# The parts of a block's MACs, in the order they are drawn.
PARTS = ("linear (qkv, projection)", "attention (q kᵀ, attn v)", "MLP")


# ------------------------------------------------------------------------------ data
def macs_parts(space: Any, cfg: Any) -> list[dict[str, Any]]:
    """Each active block's MACs split into its linear projections (qkv and output: 4 T c a),
    attention's quadratic terms (q kᵀ and attn v: 2 h T² d) and its MLP (2 T c m), read from
    `block_terms` (the family's one formula) at arguments that switch the other parts off: with
    no channels only the quadratic term is left, with no MLP units the MLP is gone."""
    rows = []
    c = cfg.embed_dim
    for slot in range(cfg.depth):
        heads, hidden = cfg.num_heads[slot], space.mlp_hidden(c, cfg.mlp_ratio[slot])
        total = int(block_terms(space, c, heads, hidden)["macs"])
        without_mlp = int(block_terms(space, c, heads, 0)["macs"])
        attention = int(block_terms(space, 0, heads, 0)["macs"])
        for part, macs in zip(PARTS, (without_mlp - attention, attention, total - without_mlp)):
            rows.append({"block": f"L{slot + 1}", "part": part, "macs": macs})
    return rows


def importance_vectors(supernet: Any) -> dict[str, Any]:
    """`supernet.importance()` as numpy: `embed` (channels,), `heads` and `mlp` (one per block)."""
    imp = supernet.importance()
    return {"embed": imp["embed"].numpy(), "heads": [h.numpy() for h in imp["heads"]],
            "mlp": [m.numpy() for m in imp["mlp"]]}


def kept_shares(importance: np.ndarray, kept: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    """For each (choice, units kept): the share of the total importance in the first units, and
    the share they would hold on average if the order were random (units kept / all units)."""
    total = float(importance.sum())
    return [{"choice": choice, "units kept": int(n),
             "share of total importance": float(importance[:n].sum()) / total if total > 0 else float("nan"),
             "share if unsorted (expected)": n / len(importance)} for choice, n in kept]


def is_sorted(importance: np.ndarray) -> bool:
    """True when the units are in order of non-increasing importance (as `sort_by_importance` leaves them)."""
    return bool(np.all(np.diff(importance) <= 1e-9 * max(float(np.abs(importance).max()), 1.0)))


# ------------------------------------------------------------------------------ drawing
def render(first_section: int) -> int:
    """Draw the sections, numbered from `first_section`; return the next section's number."""
    space = get_space()
    cfg = build_a_subnet(first_section, space)
    where_the_macs_go(first_section + 1, space, cfg)
    sorted_by_importance(first_section + 2, space, get_supernet())
    return first_section + 3


def build_a_subnet(number: int, space: Any) -> Any:
    st.header(f"{number}. What is elastic in a Transformer: build a subnet")
    heads_text = ", ".join(str(h) for h in space.num_heads)
    st.markdown(
        f"The image is cut into {space.num_patches} patches of {space.patch_size}x{space.patch_size} pixels "
        "(tokens); each encoder block lets every token attend to every other (multi-head self-attention), "
        "then passes each through a small MLP. Four things shrink, as HAT and OFA-Transformers shrink theirs:\n"
        f"- **embedding width** ({', '.join(map(str, space.embed_dims))}): the first channels of every token, "
        "in every block;\n"
        f"- **depth** ({', '.join(map(str, space.depths))} blocks): the first blocks;\n"
        f"- **heads** per block ({heads_text} of {space.head_dim} dimensions each): the first heads of q, k and v;\n"
        f"- **MLP ratio** per block ({', '.join(f'{r:g}' for r in space.mlp_ratios)}): the first "
        "ratio x width hidden units.\n\n"
        f"The input resolution is fixed at {space.image_size} px (the position embedding is learned per patch).")
    fam = family(space)
    c1, c2, c3, c4 = st.columns(4)
    embed = c1.select_slider("Embedding width", options=list(space.embed_dims), value=max(space.embed_dims),
                             key="vit_embed")
    depth = c2.select_slider("Depth", options=list(space.depths), value=max(space.depths), key="vit_depth")
    heads = c3.select_slider("Heads (all blocks)", options=list(space.num_heads), value=max(space.num_heads),
                             key="vit_heads")
    ratio = c4.select_slider("MLP ratio (all blocks)", options=list(space.mlp_ratios), value=max(space.mlp_ratios),
                             format_func=lambda r: f"{r:g}", key="vit_ratio")
    cfg = fam.config_from_dict({"embed_dim": embed, "depth": depth, "num_heads": [heads] * space.max_depth,
                                "mlp_ratio": [ratio] * space.max_depth, "image_size": space.image_size})
    stats = fam.analyze(cfg)
    largest = fam.analyze(space.largest())
    m1, m2, m3, m4, m5 = st.columns(5)
    m1.metric("MACs", fmt.quantity(stats["macs"] / 1e6, "M"), f"{stats['macs'] / largest['macs'] - 1:+.0%} vs largest",
              delta_color="off")
    m2.metric("Params", fmt.quantity(stats["params"] / 1e3, "K"),
              f"{stats['params'] / largest['params'] - 1:+.0%} vs largest", delta_color="off")
    m3.metric("Peak memory (int8)", fmt.memory_bytes(stats["peak_activation_bytes"]))
    m4.metric("Flash (int8 file)", fmt.memory_bytes(fam.deployment_bytes(cfg, "int8")["flash_bytes"]),
              help="What the device stores of its int8 file, computed analytically from the config.")
    if get_package().accuracy_source == "predictor":
        m5.metric("Predicted accuracy", fmt.percent(float(get_accuracy_predictor().predict([cfg])[0])))
    else:
        m5.metric("Predicted accuracy", "n/a", help="This package has no accuracy predictor (the search ranks "
                                                    "subnets by MACs).")
    st.altair_chart(charts.config_picture(space, cfg), width="content")
    with st.expander("Layer table and config JSON"):
        st.dataframe(charts.config_table(space, cfg), hide_index=True, width="stretch")
        st.code(json.dumps(cfg.to_dict()), language="json")

    st.markdown("**The largest and the smallest subnet**, layer by layer (the family's `describe` rows):")
    smallest, biggest = extremes(space)
    frame = pd.DataFrame([{"subnet": name, "layer": r["layer"], "kind": r["kind"],
                           "choices": ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in r["choices"].items()),
                           "MACs": r["macs"], "params": r["params"]}
                          for name, rows in (("largest", biggest), ("smallest", smallest))
                          for r in rows if r["active"]])
    st.dataframe(frame, hide_index=True, width="stretch")
    return cfg


def where_the_macs_go(number: int, space: Any, cfg: Any) -> None:
    st.header(f"{number}. Where the MACs go: projections, attention, MLP")
    t, d = space.num_patches, space.head_dim
    st.markdown(
        f"With T = {t} tokens, width c, h heads of d = {d} dimensions and m MLP units, a block costs "
        "4 T c (h d) MACs in its linear projections (q, k, v and the output), **2 h T² d in attention** "
        "(q kᵀ and attn v: quadratic in the number of tokens, and independent of the width) and 2 T c m "
        "in its MLP. A narrower embedding shrinks the projections and the MLP, not attention's quadratic "
        "term; fewer heads shrink both the projections and attention.")
    frames = []
    for name, subnet in (("largest", space.largest()), ("your subnet (above)", cfg), ("smallest", space.smallest())):
        frames.append(pd.DataFrame(macs_parts(space, subnet)).assign(subnet=name))
    frame = pd.concat(frames, ignore_index=True).assign(macs_m=lambda f: f["macs"] / 1e6)
    st.altair_chart(alt.Chart(frame).mark_bar().encode(
        x=alt.X("block:N", title="block"), y=alt.Y("macs_m:Q", title="MACs (M)"),
        color=alt.Color("part:N", sort=list(PARTS), title=None),
        column=alt.Column("subnet:N", sort=["largest", "your subnet (above)", "smallest"], title=None),
        tooltip=["subnet", "block", "part", alt.Tooltip("macs_m:Q", format=".3f", title="MACs (M)")],
    ).properties(width=170, height=200), width="content")
    totals = frame.groupby(["subnet", "part"], sort=False)["macs"].sum().unstack()[list(PARTS)]
    shares = totals.div(totals.sum(axis=1), axis=0)
    st.caption("Share of the blocks' MACs: " + "; ".join(
        f"{name}: " + ", ".join(f"{part.split(' (')[0]} {fmt.percent(shares.loc[name, part], 2)}" for part in PARTS)
        for name in shares.index) + ". The patch embedding and the classifier are outside the blocks.")


def _importance_chart(values: np.ndarray, cuts: Sequence[tuple[str, int]], unit: str) -> alt.LayerChart:
    """Bars of the units' importance in their current order, with a dashed line where each choice cuts."""
    imp = pd.DataFrame({unit: np.arange(len(values)), "L1 importance": values})
    scale = alt.Scale(domain=[0, len(values)], nice=False)
    bars = alt.Chart(imp).mark_bar().encode(x=alt.X(f"{unit}:Q", title=f"{unit} (index after sorting)", scale=scale),
                                            y=alt.Y("L1 importance:Q", title="importance (sum of |weights|)"),
                                            tooltip=[unit, alt.Tooltip("L1 importance:Q", format=".3f")])
    frame = pd.DataFrame([{"choice": c, "kept": n} for c, n in cuts])
    rules = alt.Chart(frame).mark_rule(strokeDash=[5, 3], color="#e45756").encode(
        x=alt.X("kept:Q", scale=scale), tooltip=["choice", "kept"])
    labels = alt.Chart(frame).mark_text(align="left", dx=3, dy=-5, color="#e45756").encode(
        x="kept:Q", y=alt.value(10), text="choice:N")
    return (bars + rules + labels).properties(height=200)


def sorted_by_importance(number: int, space: Any, supernet: Any) -> None:
    st.header(f"{number}. Width, heads and MLP units sorted by importance")
    st.markdown(
        "A smaller subnet keeps the **first** channels, heads and hidden units, so training sorts them by "
        "importance (`sort_by_importance`: the L1 norm of the weights that read a unit) and applies each "
        "permutation to the layer that writes the unit and every layer that reads it: the largest subnet "
        "computes exactly the same function, and every smaller one keeps the units that matter most. "
        "Dashed lines: where each choice cuts.")
    imp = importance_vectors(supernet)
    widest = max(space.embed_dims)
    groups = {
        "embedding channels": (imp["embed"], [(f"width {c}", c) for c in space.embed_dims], "channel"),
    }
    slot = st.selectbox("Block", range(space.max_depth), format_func=lambda s: f"L{s + 1}", key="vit_sort_block")
    groups["heads"] = (imp["heads"][slot], [(f"{h} heads", h) for h in space.num_heads], "head")
    groups["MLP units"] = (imp["mlp"][slot], [(f"ratio {r:g}", space.mlp_hidden(widest, r)) for r in space.mlp_ratios],
                           "hidden unit")
    left, middle, right = st.columns([2, 1, 2])
    for column, (name, (values, cuts, unit)) in zip((left, middle, right), groups.items()):
        column.markdown(f"**{name}**" + ("" if name == "embedding channels" else f" of block L{slot + 1}"))
        column.altair_chart(_importance_chart(values, cuts, unit), width="stretch")
    rows = [{"units": name, **row} for name, (values, cuts, _) in groups.items() for row in kept_shares(values, cuts)]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "share of total importance": st.column_config.NumberColumn(format="%.3f"),
        "share if unsorted (expected)": st.column_config.NumberColumn(format="%.3f")})
    unsorted = [name for name, (values, _, _) in groups.items() if not is_sorted(values)]
    if unsorted:
        st.caption(f"Not in order of importance here: {', '.join(unsorted)} (the weights were changed after the "
                   "last sort, or never sorted: the shares above are then what the current order keeps).")
    else:
        st.caption("Every group shown is in order of non-increasing importance, as the last sort left it. MLP cuts "
                   f"are drawn at the widest embedding ({widest}); a narrower one keeps ratio x its width.")
