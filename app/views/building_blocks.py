"""Building blocks: the notes' comparison table, computed for the input shape and widths chosen
here (closed-form costs from `ofa_engine.lessons.blocks`, latency measured with ONNX Runtime on demand)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st
import torch

from app import format as fmt
from app.resources import user_errors
from ofa_engine.lessons.blocks import (BLOCKS, MAX_INPUT_ELEMENTS, MAX_MEASURED_PEAK_BYTES, ChannelShuffle,
                                       attention_token_sweep, bottleneck_mac_saving, compare_blocks,
                                       shuffle_group_mixing)

KB = 1024   # the engine's KB: 1024 bytes
COLUMNS = {"macs_m": "MACs (M)", "params_k": "params (K)", "inference_peak_kib": "inference peak fp32 (KB)",
           "inference_peak_int8_kib": "inference peak int8 (KB)",
           "training_activation_kib": "training activations fp32 (KB)",
           "latency_ms": "ORT latency (ms)", "latency_iqr_ms": "latency IQR (ms)"}
MEMORY = ("inference_peak_kib", "inference_peak_int8_kib", "training_activation_kib")


@st.cache_data(show_spinner=False, max_entries=64)
def block_table(shape: tuple[int, int, int], channels: int, params: tuple, measure: bool) -> pd.DataFrame:
    rows = compare_blocks(shape, channels, params={k: dict(v) for k, v in params}, measure=measure,
                          runs=20, warmup=3)
    frame = pd.DataFrame(rows)
    return pd.DataFrame({
        "block": frame["block"],
        "description": [BLOCKS[b].description for b in frame["block"]],
        "macs_m": frame["macs"] / 1e6, "params_k": frame["params"] / 1e3,
        "inference_peak_kib": frame["inference_peak_bytes"] / KB,
        "inference_peak_int8_kib": frame["inference_peak_bytes_int8"] / KB,
        "training_activation_kib": frame["training_activation_bytes"] / KB,
        "latency_ms": frame["latency_ms"], "latency_iqr_ms": frame["latency_iqr_ms"]})


@st.cache_data(show_spinner=False, max_entries=16)
def token_sweep(tokens: tuple[int, ...], dim: int, heads: int, measure: bool) -> pd.DataFrame:
    frame = pd.DataFrame(attention_token_sweep(list(tokens), dim, heads, measure=measure, runs=10, warmup=2))
    frame["other_macs"] = frame["macs"] - frame["attention_matmul_macs"]
    return frame


st.title("Building blocks")
st.markdown(
    "The primitive operations and blocks of the notes as PyTorch modules (`ofa_engine.lessons.blocks`), "
    "with **closed-form** MACs, params and activation memory (batch 1; tested equal to counting "
    "with forward hooks) and, on request, **ONNX Runtime latency measured on this server** "
    "(1 thread, median of 20 runs). Every block maps (C, H, W) to (C_out, H, W); attention takes "
    "the H x W positions as tokens. See docs/building-blocks.md for the conventions.")

# ------------------------------------------------------------------------------ controls
c1, c2, c3, c4 = st.columns(4)
channels_in = c1.number_input("Input channels C", 8, 1024, 64, step=8)
height = c2.number_input("Height H", 1, 224, 56)
width = c3.number_input("Width W", 1, 224, 56)
channels_out = c4.number_input("Output channels", 8, 1024, 64, step=8,
                               help="Residual connections are used only when this equals C.")
with st.expander("Block parameters"):
    p1, p2, p3, p4, p5, p6 = st.columns(6)
    overrides = {
        "resnet_bottleneck": {"reduction": p1.number_input("Bottleneck reduction", 1, 64, 4)},
        "resnext": {"reduction": p2.number_input("ResNeXt reduction", 1, 64, 2),
                    "groups": p3.number_input("ResNeXt groups (cardinality)", 1, 256, 8)},
        "inverted_bottleneck": {"expansion": p4.number_input("Inverted-bottleneck expansion", 1, 12, 6)},
        "shufflenet": {"groups": p5.number_input("ShuffleNet groups", 1, 64, 4), "reduction": 4},
        "attention": {"heads": p6.number_input("Attention heads", 1, 64, 4)},
    }
measure = st.toggle("Measure ONNX Runtime latency on this server", value=False, key="blocks_measure",
                    help="Exports each block to ONNX and times it (a few seconds; large inputs longer).")
shape = (int(channels_in), int(height), int(width))
params_key = tuple(sorted((k, tuple(sorted(v.items()))) for k, v in overrides.items()))
elements = shape[0] * shape[1] * shape[2]
st.caption(f"Latency is measured only for inputs of at most {MAX_INPUT_ELEMENTS:,} values (C x H x W, "
           f"MAX_INPUT_ELEMENTS) and blocks whose float32 inference peak is at most "
           f"{fmt.memory_bytes(MAX_MEASURED_PEAK_BYTES)} (MAX_MEASURED_PEAK_BYTES): larger ones could exhaust "
           f"the server's memory (a 224 x 224 attention input asks for ~40 GB). Closed-form costs have no cap.")

table = None
with user_errors("Block parameters"):
    with st.spinner("Computing ..."):
        table = block_table(shape, int(channels_out), params_key, False)
    if measure:
        largest = float(table["inference_peak_kib"].max()) * KB
        if elements > MAX_INPUT_ELEMENTS or largest > MAX_MEASURED_PEAK_BYTES:
            heaviest = table.loc[table["inference_peak_kib"].idxmax(), "block"]
            st.warning(f"Latency not measured: input C x H x W = {shape[0]} x {shape[1]} x {shape[2]} = "
                       f"{elements:,} values (cap {MAX_INPUT_ELEMENTS:,}, MAX_INPUT_ELEMENTS); largest float32 "
                       f"inference peak {fmt.memory_bytes(largest)} (`{heaviest}`; cap "
                       f"{fmt.memory_bytes(MAX_MEASURED_PEAK_BYTES)}, MAX_MEASURED_PEAK_BYTES). The closed-form "
                       f"costs are below; use a smaller input to measure.", icon=":material/warning:")
            measure = False
        else:
            with st.spinner("Measuring the blocks with ONNX Runtime ..."):
                table = block_table(shape, int(channels_out), params_key, True)

if table is not None:
    st.subheader(f"Comparison at input {shape[0]}x{shape[1]}x{shape[2]}, {int(channels_out)} output channels")
    # The descriptions in a static table of their own: in a grid cell a long one was cut off.
    st.table(pd.DataFrame({"block": table["block"], "what it is": table["description"]}).set_index("block"))
    shown = table.drop(columns=["description"] + ([] if measure else ["latency_ms", "latency_iqr_ms"]))
    # Memory in KB, or MB when the largest value is over 10 MB (never raw bytes).
    in_mb = float(table[list(MEMORY)].to_numpy().max()) > 10 * 1024
    labels = {k: (v.replace("(KB)", "(MB)") if in_mb and k in MEMORY else v) for k, v in COLUMNS.items()}
    if in_mb:
        shown = shown.assign(**{k: shown[k] / 1024 for k in MEMORY})
    units = {"macs_m": " M", "params_k": " K", "latency_ms": " ms", "latency_iqr_ms": " ms"}
    st.dataframe(shown.rename(columns=labels), hide_index=True, width="stretch", column_config={
        "block": st.column_config.TextColumn(width="medium"),
        **{label: st.column_config.NumberColumn(
            format=("%.3f" if "latency" in key else "%.2f") + units.get(key, " MB" if in_mb else " KB"))
           for key, label in labels.items()}})
    metric = st.radio("Chart", [k for k in COLUMNS if measure or "latency" not in k and k != "latency_iqr_ms"],
                      format_func=COLUMNS.get, horizontal=True)
    log_scale = st.toggle("Log scale", value=True, key="blocks_log")
    encoding = dict(
        x=alt.X(f"{metric}:Q", title=COLUMNS[metric],
                scale=alt.Scale(type="log") if log_scale else alt.Scale(type="linear")),
        y=alt.Y("block:N", sort="-x", title=None, axis=alt.Axis(labelLimit=0)),
        color=alt.Color("block:N", legend=None),
        tooltip=["block", "description", alt.Tooltip(f"{metric}:Q", format=",.3f")])
    if log_scale:
        # Bars start at zero, which a log axis cannot show (the chart came out blank): start them
        # at half the smallest positive value instead.
        positive = table[metric][table[metric] > 0]
        table = table.assign(bar_start=float(positive.min()) / 2 if len(positive) else 1.0)
        encoding["x2"] = alt.X2("bar_start:Q")
    chart = alt.Chart(table).mark_bar().encode(**encoding)
    st.altair_chart(chart.properties(height=230), width="stretch")
    if measure:
        st.caption("Latency vs MACs: blocks above the trend run fewer MACs per millisecond "
                   "(grouped / depthwise convolutions, attention's softmax and reshapes).")
        st.altair_chart(alt.Chart(table).mark_circle(size=120).encode(
            x=alt.X("macs_m:Q", title="MACs (M)", scale=alt.Scale(type="log")),
            y=alt.Y("latency_ms:Q", title="ORT latency (ms)", scale=alt.Scale(type="log")),
            color="block:N", tooltip=["block", "macs_m", "latency_ms"]).properties(height=260), width="stretch")

    ranked = table.sort_values("training_activation_kib", ascending=False)
    top, ratio = ranked.iloc[0], ranked.iloc[0]["training_activation_kib"] / ranked.iloc[-1]["training_activation_kib"]
    st.markdown(
        f"**Training memory.** `{top['block']}` keeps the most activations for backward "
        f"({fmt.memory_kb(top['training_activation_kib'])}, {ratio:.1f}x the smallest, "
        f"`{ranked.iloc[-1]['block']}`): the inverted bottleneck works at `expansion` times the "
        f"width and attention stores the (heads x N x N) attention matrix.")

# ------------------------------------------------------------------------------ bottleneck
st.header("The bottleneck's 1x1 reduction")
with user_errors("Bottleneck"):
    saving = bottleneck_mac_saving((int(channels_in), int(height), int(width)),
                                   overrides["resnet_bottleneck"]["reduction"])
    b1, b2, b3 = st.columns(3)
    b1.metric("Bottleneck MACs", f"{saving['bottleneck_macs'] / 1e6:,.2f} M")
    b2.metric("Plain 3x3-3x3 block MACs", f"{saving['plain_macs'] / 1e6:,.2f} M")
    b3.metric("Ratio", f"{saving['ratio']:.3f}")
    st.caption("1x1 reduce to C/r, 3x3 at C/r, 1x1 expand back, vs two full-width 3x3 convs: "
               "the ratio is (1/r + 9/r^2 + 1/r) / 18.")

# ------------------------------------------------------------------------------ attention sweep
st.header("Self-attention is quadratic in the number of tokens")
a1, a2, a3 = st.columns(3)
dim = a1.number_input("Token dimension", 8, 512, 64, step=8)
heads = a2.number_input("Heads", 1, 16, 4, key="sweep_heads")
max_tokens = a3.select_slider("Up to N tokens", options=[64, 256, 1024, 4096], value=1024)
measure_sweep = st.toggle("Measure sweep latency", value=False, key="measure_sweep")
tokens = tuple(n for n in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096) if n <= max_tokens)
with user_errors("Token sweep"):
    with st.spinner("Sweeping ..."):
        sweep = token_sweep(tokens, int(dim), int(heads), measure_sweep)
    long = sweep.melt(id_vars=["tokens"], value_vars=["attention_matmul_macs", "other_macs"],
                      var_name="part", value_name="MACs")
    long["part"] = long["part"].map({"attention_matmul_macs": "QK^T + AV (2 N^2 d)",
                                     "other_macs": "projections (4 N d^2)"})
    left, right = st.columns(2)
    left.altair_chart(alt.Chart(long).mark_area().encode(
        x=alt.X("tokens:Q", title="tokens N"), y=alt.Y("MACs:Q", stack=True), color="part:N",
        tooltip=["tokens", "part", alt.Tooltip("MACs:Q", format=",")]).properties(height=260,
                                                                                     title="MACs"), width="stretch")
    memory = sweep.assign(peak_kib=sweep["inference_peak_bytes"] / KB,
                          train_kib=sweep["training_activation_bytes"] / KB)
    mem_long = memory.melt(id_vars=["tokens"], value_vars=["peak_kib", "train_kib"], var_name="memory",
                           value_name="KB")
    mem_long["memory"] = mem_long["memory"].map({"peak_kib": "inference peak", "train_kib": "training"})
    right.altair_chart(alt.Chart(mem_long).mark_line(point=True).encode(
        x=alt.X("tokens:Q", title="tokens N", scale=alt.Scale(type="log", base=2)),
        y=alt.Y("KB:Q", title="KB", scale=alt.Scale(type="log")), color="memory:N",
        tooltip=["tokens", "memory", alt.Tooltip("KB:Q", format=",.1f")]).properties(
        height=260, title="activation memory fp32 (log-log)"), width="stretch")
    if measure_sweep:
        st.altair_chart(alt.Chart(sweep).mark_line(point=True).encode(
            x=alt.X("tokens:Q", scale=alt.Scale(type="log", base=2)),
            y=alt.Y("latency_ms:Q", title="ORT latency (ms)", scale=alt.Scale(type="log")),
            tooltip=["tokens", "latency_ms"]).properties(height=220), width="stretch")
    share = sweep.iloc[-1]["attention_matmul_macs"] / sweep.iloc[-1]["macs"]
    st.caption(f"At N = {sweep.iloc[-1]['tokens']:,} the two attention matmuls are {share:.0%} of the "
               f"block's MACs; doubling N multiplies them by 4 and the projections by 2.")

# ------------------------------------------------------------------------------ shuffle
st.header("ShuffleNet's channel shuffle mixes the groups")
s1, s2 = st.columns(2)
shuffle_channels = s1.number_input("Channels", 2, 256, 16, key="shuffle_channels")
shuffle_groups = s2.number_input("Groups", 1, 64, 4, key="shuffle_groups")
with user_errors("Channel shuffle"):
    mixing = shuffle_group_mixing(int(shuffle_channels), int(shuffle_groups))
    c, g = int(shuffle_channels), int(shuffle_groups)
    source_group = torch.arange(c).div(c // g, rounding_mode="floor").float().reshape(1, c, 1, 1)
    shuffled = ChannelShuffle(g)(source_group).flatten().long().tolist()
    cells = pd.DataFrame([{"row": row, "channel": i, "from input group": int(group)}
                          for row, groups in (("before", source_group.flatten().long().tolist()),
                                              ("after shuffle", shuffled))
                          for i, group in enumerate(groups)])
    st.altair_chart(alt.Chart(cells).mark_rect(stroke="white").encode(
        x=alt.X("channel:O", title="channel position (the next grouped conv takes consecutive blocks of C/g)"),
        y=alt.Y("row:N", title=None, sort=["before", "after shuffle"]),
        color=alt.Color("from input group:N", scale=alt.Scale(scheme="tableau10"),
                        legend=alt.Legend(orient="bottom", columns=16)),
        tooltip=["row", "channel", "from input group"],
    ).properties(height=alt.Step(36)), width="stretch")
    everywhere = all(len(s) == int(shuffle_groups) for s in mixing)
    st.caption(("After the shuffle every output group reads channels of every input group, so the next "
                "grouped 1x1 conv sees all groups." if everywhere else
                "With fewer channels per group than groups, each output group sees only some input groups.")
               + " Without the shuffle each group would only ever see itself.")
