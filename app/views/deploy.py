"""Train once, deploy everywhere: one supernet specialized for every device profile at once."""

from __future__ import annotations

import io
import json
import math
import time
import zipfile

import altair as alt
import pandas as pd
import streamlit as st

from app import format as fmt
from app.resources import (SUPERNET, USER_ERRORS, configure_threads, get_evaluator, get_profile, get_space, log,
                           md, profile_label, profile_names, user_errors)
from app.widgets import _slider_bounds, prediction_panel

st.title("Train once, deploy everywhere")
st.markdown(
    f"Once-for-all trains **one** supernet (`{SUPERNET}`, a 10-class Fashion-MNIST classifier of 28 px "
    "grayscale images) and then cuts from it, without any retraining, the subnet that fits each "
    "device best. One click specializes it for every profile below, each under its own latency "
    "budget (editable) and within its device's memory, and gives you all the ONNX files in one zip.")

space = get_space()


def default_budget(name: str) -> float | None:
    """The home page's default: 40 % of the achievable latency range, on the slider's step."""
    from ofa_engine.search import budget_ranges
    ranges = budget_ranges(get_evaluator(name))
    if "latency_ms" not in ranges:
        return None
    lo, hi, step = _slider_bounds(float(ranges["latency_ms"]["min"]), float(ranges["latency_ms"]["max"]))
    return round(math.floor((lo + 0.4 * (hi - lo)) / step) * step, 6)


rows = []
with st.spinner("Loading the supernet and predictors (first start only) ..."), user_errors("Loading the profiles"):
    for name in profile_names():
        profile = get_profile(name)
        budget = default_budget(name)
        memory = ", ".join(f"{k.replace('_kb', '').upper()} {fmt.memory_kb(v, 4)}" for k, v in dict(profile.memory).items()
                           if v is not None) or "no limit"
        rows.append({"include": True, "profile": name, "device": profile_label(name),
                     "latency budget (ms)": budget, "precision": getattr(profile, "precision", "fp32"), "device memory": memory})
if not rows:
    st.stop()

with st.form("deploy_form", border=False, enter_to_submit=False):
    table = st.data_editor(
        pd.DataFrame(rows), hide_index=True, width="stretch", key="deploy_table",
        disabled=["profile", "device", "device memory"],
        column_config={
            "include": st.column_config.CheckboxColumn(width="small"),
            "latency budget (ms)": st.column_config.NumberColumn(min_value=0.0, format="%.4g ms",
                                                                 help="The device's predicted latency bound"),
            "precision": st.column_config.SelectboxColumn(options=["fp32", "int8"], required=True),
        })
    go = st.form_submit_button("Specialize for every device", type="primary", icon=":material/rocket_launch:")


def specialize_all(chosen: pd.DataFrame) -> list[dict]:
    from ofa_engine import specialize
    from ofa_engine.search import Constraints
    configure_threads()
    out = []
    bar = st.progress(0.0, text="starting")
    started = time.perf_counter()
    for i, row in enumerate(chosen.to_dict("records")):
        name = row["profile"]
        budget = row["latency budget (ms)"]
        entry = {"profile": name, "device": get_profile(name).display_name, "precision": row["precision"],
                 "budget_ms": None if budget is None or pd.isna(budget) else float(budget)}

        def progress(done: int, total: int, stage: str, i=i, name=name) -> None:
            bar.progress(min((i + done / total) / len(chosen), 1.0),
                         text=f"{name}: {stage} ({i + 1} of {len(chosen)}, {time.perf_counter() - started:.0f} s)")

        try:
            limits = {} if entry["budget_ms"] is None else {"latency_ms": entry["budget_ms"]}
            spec = specialize(get_profile(name), Constraints(**limits), "evolution", seed=0, progress=progress,
                              precision=row["precision"])
            entry.update(report=spec.report, onnx_bytes=spec.onnx_bytes, error=None)
        except USER_ERRORS as exc:
            entry.update(report=None, onnx_bytes=None, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - one device failing must not hide the others
            log.exception("specialize for %s failed", name)
            entry.update(report=None, onnx_bytes=None, error=f"failed unexpectedly ({type(exc).__name__}: {exc})")
        out.append(entry)
    bar.progress(1.0, text=f"{len(chosen)} devices in {time.perf_counter() - started:.1f} s")
    return out


if go:
    chosen = table[table["include"].astype(bool)]
    if chosen.empty:
        st.warning("No device included: tick at least one row.", icon=":material/warning:")
    else:
        bad = [p for p, b in zip(chosen["profile"], chosen["latency budget (ms)"]) if pd.notna(b) and b <= 0]
        if bad:
            st.error(f"Latency budget of {md(', '.join(bad))} must be above 0 ms.", icon=":material/error:")
        else:
            st.session_state["deployment"] = specialize_all(chosen)

deployment = st.session_state.get("deployment")
if not deployment:
    st.stop()


def file_name(entry: dict) -> str:
    return f"{entry['profile']}-{entry['precision']}.onnx"


def result_rows(deployment: list[dict]) -> list[dict]:
    """One row per device, every number formatted with its unit (app.format)."""
    out = []
    for e in deployment:
        if e["report"] is None:
            out.append({"device": e["device"], "profile": e["profile"], "subnet": "none: " + e["error"]})
            continue
        r, cfg = e["report"], e["report"]["config"]
        measured, predicted = r["measured"], r["predicted"]
        latency = (fmt.latency_spread(measured["latency_ms"], measured.get("latency_iqr_ms"))
                   if measured.get("latency_ms") is not None else "not measured here")
        out.append({
            "device": e["device"], "profile": e["profile"], "precision": e["precision"],
            "subnet": f"width x{space.width_mults[cfg['wid']]}, {cfg['image_size']} px, depths {cfg['d']}",
            "accuracy": fmt.percent(measured["accuracy"]),
            "latency budget": "none" if e["budget_ms"] is None else fmt.budget(e["budget_ms"], "ms"),
            "latency predicted": fmt.quantity(predicted.get("latency_ms"), "ms"),
            "latency measured": latency,
            "peak memory": fmt.memory_kb(measured["peak_memory_kb"]),
            "Flash": fmt.memory_kb(measured["flash_kb"]),
            "MACs": fmt.quantity(measured["macs"] / 1e6, "M"),
            "file": f"{file_name(e)} ({fmt.memory_bytes(len(e['onnx_bytes']))})"})
    return out


def deployment_zip(deployment: list[dict]) -> bytes:
    """Every ONNX file and manifest.json (per device: file name, config, budget, predicted and
    measured numbers, as the engine's report gives them)."""
    manifest = {"format": "ofa-engine/deployment", "supernet": SUPERNET, "space": space.name,
                "devices": [{"profile": e["profile"], "device": e["device"], "file": file_name(e),
                             "precision": e["precision"], "latency_budget_ms": e["budget_ms"],
                             "config": e["report"]["config"], "predicted": e["report"]["predicted"],
                             "measured": e["report"]["measured"], "onnx_bytes": len(e["onnx_bytes"])}
                            for e in deployment if e["report"] is not None]}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
        for e in deployment:
            if e["report"] is not None:
                z.writestr(file_name(e), e["onnx_bytes"])
    return buffer.getvalue()


ok = [e for e in deployment if e["report"] is not None]
st.subheader(f"{len(ok)} subnets of one supernet, `{SUPERNET}`")
st.dataframe(pd.DataFrame(result_rows(deployment)), hide_index=True, width="stretch",
             column_config={"subnet": st.column_config.TextColumn(width="large")})
for e in deployment:
    if e["error"]:
        st.error(f"{md(e['device'])}: {md(e['error'])}", icon=":material/error:")
if ok:
    st.download_button(f"Download all ({len(ok)} ONNX files + manifest.json)", deployment_zip(deployment),
                       file_name=f"ofa-{SUPERNET}-deployment.zip", mime="application/zip", type="primary",
                       icon=":material/download:", on_click="ignore")
    points = pd.DataFrame([{"device": e["device"], "accuracy (%)": e["report"]["measured"]["accuracy"] * 100,
                            "predicted latency (ms)": e["report"]["predicted"].get("latency_ms"),
                            "MACs (M)": e["report"]["measured"]["macs"] / 1e6,
                            "peak memory (KB)": e["report"]["measured"]["peak_memory_kb"]} for e in ok])
    base = alt.Chart(points).encode(
        x=alt.X("MACs (M):Q", scale=alt.Scale(zero=False, padding=40)),
        y=alt.Y("accuracy (%):Q", scale=alt.Scale(zero=False, padding=30)),
        tooltip=["device", alt.Tooltip("accuracy (%):Q", format=".2f"), alt.Tooltip("MACs (M):Q", format=".3g"),
                 alt.Tooltip("predicted latency (ms):Q", format=".3g"), alt.Tooltip("peak memory (KB):Q", format=".4g")])
    chart = (base.mark_circle(size=160).encode(color=alt.Color("device:N", legend=alt.Legend(orient="bottom", columns=2)))
             + base.mark_text(dy=-14, fontSize=11).encode(text="device:N"))
    st.markdown(f"**Measured accuracy against MACs**: every point is a subnet cut from the same trained "
                f"`{SUPERNET}` weights; bigger devices get bigger, more accurate subnets.")
    st.altair_chart(chart.properties(height=360), width="stretch")

    st.subheader("See the model work")
    pick = st.selectbox("Device", [e["profile"] for e in ok], key="deploy_predict_device",
                        format_func=lambda p: next(e["device"] for e in ok if e["profile"] == p))
    chosen_entry = next(e for e in ok if e["profile"] == pick)
    st.caption(f"`{file_name(chosen_entry)}` from the zip, run in ONNX Runtime on this server.")
    prediction_panel(chosen_entry["onnx_bytes"], chosen_entry["report"]["config"]["image_size"], "deploy_predict")
