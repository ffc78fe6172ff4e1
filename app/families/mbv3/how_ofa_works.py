"""MobileNetV3's sections of "How OFA works", read from the real supernet: the elastic kernel
(centre crop + learned transform of each depthwise convolution), a subnet built from the
family's own choices, and the channels sorted by importance."""

from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
import torch

from app import charts
from app import format as fmt
from app.layers import family
from app.resources import get_accuracy_predictor, get_package, get_space, get_supernet
from ofa_engine.families.mbv3.space import SubnetConfig

__all__ = ["render"]


def render(first_section: int) -> int:
    """Draw the sections, numbered from `first_section`; return the next section's number."""
    space = get_space()
    supernet = get_supernet()
    elastic_kernel(first_section, space, supernet)
    build_a_subnet(first_section + 1, space)
    channel_sorting(first_section + 2, space, supernet)
    return first_section + 3


def slot_label(space, slot: int) -> str:
    stage, index = divmod(slot, space.max_depth)
    return f"stage {stage + 1}, block {index + 1}"


def elastic_kernel(number: int, space, supernet) -> None:
    st.header(f"{number}. Elastic kernel: centre crop + learned transform")
    st.markdown(
        "Each depthwise convolution stores only its **7x7** kernel. The 5x5 kernel is the centre 5x5 "
        "of it passed through a learned 25x25 matrix shared by all channels (`transform_7to5`); the "
        "3x3 kernel is the centre of that 5x5 through a 9x9 matrix (`transform_5to3`). The matrices "
        "start as the identity; training moves them so that small kernels work on their own.")
    left, right = st.columns(2)
    slot = left.selectbox("Block", range(space.num_slots), format_func=lambda s: slot_label(space, s),
                          key="kernel_slot")
    depthwise = supernet.blocks[slot].depth_conv.conv
    max_channels = depthwise.weight.shape[0]
    channel = right.slider("Channel", 0, max_channels - 1, 0, key="kernel_channel")

    with torch.no_grad():
        full = depthwise.weight[channel, 0].numpy()
        kernels = {k: depthwise.active_weight(channel + 1, k)[channel, 0].numpy() for k in depthwise.kernel_sizes}
        transforms = {(big, small): getattr(depthwise, f"transform_{big}to{small}").numpy()
                      for big, small in depthwise.transform_pairs()}

    row = []
    big = max(depthwise.kernel_sizes)
    row.append(charts.heatmap(full, f"stored {big}x{big} (crop outlined)", 150, ((big - 5) // 2, (big - 5) // 2, 5)))
    for (b, s), matrix in transforms.items():
        row.append(charts.heatmap(matrix, f"transform {b}to{s} ({s * s}x{s * s})", 150))
        crop = ((s - 3) // 2, (s - 3) // 2, 3) if s > min(depthwise.kernel_sizes) else None
        row.append(charts.heatmap(kernels[s], f"active {s}x{s}", 150, crop))
    st.altair_chart(alt.hconcat(*row).resolve_scale(color="independent"), width="content")

    drift = []
    for s_ in range(space.num_slots):
        conv = supernet.blocks[s_].depth_conv.conv
        for b, s in conv.transform_pairs():
            m = getattr(conv, f"transform_{b}to{s}").detach().numpy()
            drift.append({"block": slot_label(space, s_), "slot": s_, "transform": f"{b}to{s}",
                          "distance from identity": float(np.linalg.norm(m - np.eye(len(m))) / np.sqrt(len(m)))})
    drift_frame = pd.DataFrame(drift)
    cropped = float(np.abs(kernels[min(depthwise.kernel_sizes)]
                           - full[(big - 3) // 2:(big + 3) // 2, (big - 3) // 2:(big + 3) // 2]).max())
    st.caption(f"Largest difference between the active 3x3 kernel and a plain centre crop of the 7x7 "
               f"for this channel: {cropped:.4f}. Below: how much training changed each learned transform; 0 "
               f"would mean the small kernel is still a plain crop of the large one. (The bar is the distance of "
               f"the matrix M from the identity I: the Frobenius norm of M - I, divided by the square root of its "
               f"number of rows so that the 25x25 and 9x9 matrices compare.)")
    st.altair_chart(alt.Chart(drift_frame).mark_bar().encode(
        x=alt.X("slot:O", title="block slot (0: stage 1, block 1; hover for the block)"), xOffset="transform:N",
        y=alt.Y("distance from identity:Q", title="change from a plain crop (no unit)"), color="transform:N",
        tooltip=["block", "transform", alt.Tooltip("distance from identity:Q", format=".4f")],
    ).properties(height=200), width="stretch")


def build_a_subnet(number: int, space) -> None:
    st.header(f"{number}. Depth, expand ratio, width and resolution: build a subnet")
    st.markdown(
        "**Depth** keeps the first *d* blocks of a stage (the later ones are skipped). The "
        "**expand ratio** sets the inverted bottleneck's middle width; the **width multiplier** "
        "scales every layer's channels; the **resolution** is the input size. The bars are the "
        "active blocks (height = expanded channels, colour = kernel).")
    fam = family(space)
    c1, c2, c3, c4 = st.columns(4)
    wid = c1.select_slider("Width multiplier", options=list(range(len(space.width_mults))),
                           value=len(space.width_mults) - 1, format_func=lambda i: f"x{space.width_mults[i]}")
    image_size = c2.select_slider("Resolution", options=list(space.resolutions), value=max(space.resolutions))
    kernel = c3.select_slider("Kernel (all blocks)", options=list(space.kernel_sizes), value=max(space.kernel_sizes))
    expand = c4.select_slider("Expand ratio (all blocks)", options=list(space.expand_ratios),
                              value=max(space.expand_ratios))
    depth_cols = st.columns(space.num_stages)
    depths = [col.select_slider(f"Depth, stage {i + 1}", options=list(space.depths), value=max(space.depths),
                                key=f"depth_{i}") for i, col in enumerate(depth_cols)]
    cfg = SubnetConfig(wid=wid, ks=[kernel] * space.num_slots, e=[expand] * space.num_slots, d=depths,
                       image_size=image_size)
    stats = {k: float(v[0]) for k, v in fam.analyze([cfg]).items()}
    largest = {k: float(v[0]) for k, v in fam.analyze([space.largest()]).items()}
    m1, m2, m3, m4, m5 = st.columns(5)
    m1.metric("MACs", fmt.quantity(stats["macs"] / 1e6, "M"), f"{stats['macs'] / largest['macs'] - 1:+.0%} vs largest",
              delta_color="off")
    m2.metric("Params", fmt.quantity(stats["params"] / 1e6, "M") if stats["params"] >= 1e6
              else fmt.quantity(stats["params"] / 1e3, "K"),
              f"{stats['params'] / largest['params'] - 1:+.0%} vs largest", delta_color="off")
    m3.metric("Peak memory (int8)", fmt.memory_bytes(stats["peak_activation_bytes"]))
    m4.metric("Flash (int8 file)", fmt.memory_bytes(fam.deployment_bytes(cfg, "int8")["flash_bytes"]),
              help="What the device stores of its int8 file: int8 weights, int32 biases, their scales and the "
                   "activations' scales and zero points (computed analytically; equal to the downloaded file's).")
    try:
        if get_package().accuracy_source != "predictor":
            raise ValueError("this package has no accuracy predictor (the search ranks by MACs)")
        predicted = float(get_accuracy_predictor().predict([cfg])[0])
        m5.metric("Predicted accuracy", fmt.percent(predicted))
    except Exception as exc:  # noqa: BLE001 - a missing predictor must not break the page
        m5.metric("Predicted accuracy", "n/a", help=str(exc))
    st.altair_chart(charts.config_picture(space, cfg), width="content")
    with st.expander("Layer table and config JSON"):
        st.dataframe(charts.config_table(space, cfg), hide_index=True, width="stretch")
        st.code(json.dumps(cfg.to_dict()), language="json")


def channel_sorting(number: int, space, supernet) -> None:
    st.header(f"{number}. Width: channels sorted by importance")
    st.markdown(
        "A smaller expand ratio keeps the **first** middle channels of a block, so training sorts them "
        "by importance (L1 norm of the weights that read them, `reorganize_channels`): the channels "
        "a small subnet keeps are the ones that matter most. Dashed lines: the channels kept at each "
        "expand ratio for the widest input.")
    slot2 = st.selectbox("Block", range(space.num_slots), format_func=lambda s: slot_label(space, s),
                         key="sort_slot", index=3)
    block = supernet.blocks[slot2]
    with torch.no_grad():
        importance = block.point_linear.conv.weight.abs().sum((0, 2, 3)).numpy()
    max_in = block.inverted_bottleneck.conv.weight.shape[1]
    cuts = pd.DataFrame([{"expand": f"e={e}", "channels": block.middle_channels(max_in, e)}
                         for e in space.expand_ratios])
    imp = pd.DataFrame({"channel": np.arange(len(importance)), "L1 importance": importance})
    channel_axis = alt.X("channel:Q", title="middle channel (index after sorting)",
                         scale=alt.Scale(domain=[0, len(importance)], nice=False))
    bars = alt.Chart(imp).mark_bar(width=3).encode(x=channel_axis,
                                                   y=alt.Y("L1 importance:Q", title="importance (sum of |weights|)"),
                                                   tooltip=["channel", "L1 importance"])
    rules = alt.Chart(cuts).mark_rule(strokeDash=[5, 3], color="#e45756").encode(
        x=alt.X("channels:Q", scale=alt.Scale(domain=[0, len(importance)], nice=False)), tooltip=["expand", "channels"])
    labels = alt.Chart(cuts).mark_text(align="left", dx=3, dy=-5, color="#e45756").encode(
        x="channels:Q", y=alt.value(10), text="expand:N")
    st.altair_chart((bars + rules + labels).properties(height=220), width="stretch")
    share = [{"expand ratio": e, "channels kept": block.middle_channels(max_in, e),
              "share of total importance": importance[:block.middle_channels(max_in, e)].sum() / importance.sum(),
              "share if unsorted (expected)": block.middle_channels(max_in, e) / len(importance)}
             for e in space.expand_ratios]
    st.dataframe(pd.DataFrame(share), hide_index=True, column_config={
        "share of total importance": st.column_config.NumberColumn(format="%.3f"),
        "share if unsorted (expected)": st.column_config.NumberColumn(format="%.3f")})
