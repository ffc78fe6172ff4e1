"""Train once, deploy everywhere: one supernet specialized for every device profile at once."""

from __future__ import annotations

import math
import time

import altair as alt
import pandas as pd
import streamlit as st

from app import format as fmt
from app.resources import (USER_ERRORS, configure_threads, device_name, get_evaluator, get_package, get_profile,
                           get_space, latency_provenance, latency_source, log, md, profile_names, supernet_name,
                           user_errors)
from app.deployment import deployment_zip, file_name, result_rows
from app.widgets import slider_bounds, prediction_panel

st.title("Train once, deploy everywhere")
SUPERNET = supernet_name()
_package = get_package()
st.markdown(
    f"Once-for-all trains **one** supernet (`{md(SUPERNET)}`, a {_package.num_classes}-class "
    f"{'grayscale' if _package.channels == 1 else f'{_package.channels}-channel'} image classifier) and then cuts from it, without any retraining, the subnet that fits each "
    "device best. One click specializes it for every profile below, each under its own latency "
    "budget (editable) and within its device's memory, and gives you all the ONNX files in one zip.")

space = get_space()


def default_budget(name: str) -> float | None:
    """The home page's default: 40 % of the achievable latency range, on the slider's step."""
    from ofa_engine.search import budget_ranges
    ranges = budget_ranges(get_evaluator(name))
    if "latency_ms" not in ranges:
        return None
    lo, hi, step = slider_bounds(float(ranges["latency_ms"]["min"]), float(ranges["latency_ms"]["max"]))
    return round(math.floor((lo + 0.4 * (hi - lo)) / step) * step, 6)


names = profile_names()
# Chips carry the profile name only (a long label is cut off); the table below names each device.
devices = st.multiselect("Devices", names, default=names, key="deploy_devices",
                         help="Device profiles: the table below says what each one is and whose latency it predicts")
rows = []
with st.spinner("Loading the supernet and predictors (first start only) ..."), user_errors("Loading the profiles"):
    for name in devices:
        profile = get_profile(name)
        budget = default_budget(name)
        memory = ", ".join(f"{k.replace('_kb', '').replace('flash', 'Flash').replace('sram', 'SRAM').replace('ram', 'RAM')} "
                           f"{fmt.memory_kb(v)}" for k, v in dict(profile.memory).items() if v is not None) or "no limit"
        rows.append({"profile": name, "device": device_name(profile),
                     "latency budget (ms)": budget, "precision": getattr(profile, "precision", "fp32"), "device memory": memory})
if not rows:
    st.info("Choose at least one device.", icon=":material/info:")
    st.stop()

with st.form("deploy_form", border=False, enter_to_submit=False):
    table = st.data_editor(
        # Keyed by the device list: an edit is kept per row, and a different list is a new table.
        pd.DataFrame(rows), hide_index=True, width="stretch", key=f"deploy_table_{'|'.join(devices)}",
        # Whose latency each profile predicts is in the results table (a grid cell cuts long text).
        disabled=["profile", "device", "device memory"],
        column_config={
            "device": st.column_config.TextColumn(width="large"),
            "device memory": st.column_config.TextColumn(width="medium"),
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
        profile = get_profile(name)
        entry = {"profile": name, "device": profile.display_name, "device_short": device_name(profile),
                 "precision": row["precision"], "budget_ms": None if budget is None or pd.isna(budget) else float(budget),
                 "latency_source": latency_provenance(profile), "latency_source_short": latency_source(profile)}

        def progress(done: int, total: int, stage: str, i=i, name=name) -> None:
            bar.progress(min((i + done / total) / len(chosen), 1.0),
                         text=f"{name}: {stage} ({i + 1} of {len(chosen)}, {time.perf_counter() - started:.0f} s)")

        try:
            limits = {} if entry["budget_ms"] is None else {"latency_ms": entry["budget_ms"]}
            spec = specialize(profile, Constraints(**limits), "evolution", seed=0, progress=progress,
                              precision=row["precision"], supernet=_package)
            spec.report["latency_source"] = entry["latency_source"]
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
    chosen = table
    if chosen.empty:
        st.warning("No device chosen: add at least one above.", icon=":material/warning:")
    else:
        bad = [p for p, b in zip(chosen["profile"], chosen["latency budget (ms)"]) if pd.notna(b) and b <= 0]
        if bad:
            st.error(f"Latency budget of {md(', '.join(bad))} must be above 0 ms.", icon=":material/error:")
        else:
            st.session_state["deployment"] = specialize_all(chosen)

deployment = st.session_state.get("deployment")
if not deployment:
    st.stop()


ok = [e for e in deployment if e["report"] is not None]
st.subheader(f"{len(ok)} subnets of one supernet, `{md(SUPERNET)}`")
# A static table: every value in full (a data grid cuts long cells), a few rows only.
st.table(pd.DataFrame(result_rows(deployment, space)).set_index("profile"))
for e in deployment:
    if e["error"]:
        st.error(f"{md(e['device'])}: {md(e['error'])}", icon=":material/error:")
if ok:
    st.download_button(f"Download all ({len(ok)} ONNX files + manifest.json)", deployment_zip(deployment, space, SUPERNET),
                       file_name=f"ofa-{SUPERNET}-deployment.zip", mime="application/zip", type="primary",
                       icon=":material/download:", on_click="ignore")
    points = pd.DataFrame([{"profile": e["profile"], "device": e["device"],
                            "accuracy (%)": e["report"]["measured"]["accuracy"] * 100,
                            "latency from": e.get("latency_source", ""),
                            "predicted latency (ms)": e["report"]["predicted"].get("latency_ms"),
                            "latency budget (ms)": e["budget_ms"],
                            "subnet": f"{e['report']['config']['image_size']} px, "
                                      f"{fmt.quantity(e['report']['measured']['macs'] / 1e6, 'M')} MACs"}
                           for e in ok])
    y = alt.Y("profile:N", sort=None, title=None, axis=alt.Axis(labelLimit=0))
    tooltip = ["device", "subnet", "latency from", alt.Tooltip("accuracy (%):Q", format=".2f"),
               alt.Tooltip("predicted latency (ms):Q", format=".3g"), alt.Tooltip("latency budget (ms):Q", format=".4g")]
    low = float(points["accuracy (%)"].min())
    height = 34 * len(points)
    accuracy = alt.Chart(points).encode(y=y, tooltip=tooltip)
    accuracy = (accuracy.mark_bar(color="#4c78a8").encode(
        x=alt.X("accuracy (%):Q", title="measured accuracy (%)",
                scale=alt.Scale(domain=[math.floor(low) - 2, 100], clamp=True)))
        + accuracy.mark_text(align="left", dx=4, fontSize=11).encode(x="accuracy (%):Q", text="subnet:N")
    ).properties(width=370, height=height)
    # Dots, not bars, on the log axis: a bar starts at 0, which a log axis cannot draw.
    latency = alt.Chart(points).encode(y=y, tooltip=tooltip)
    latency = (latency.mark_tick(color="black", thickness=2, size=20).encode(
        x=alt.X("latency budget (ms):Q", title="predicted latency (ms, log); black: budget",
                scale=alt.Scale(type="log")))
        + latency.mark_circle(color="#f58518", size=140, opacity=1).encode(x="predicted latency (ms):Q")
    ).properties(width=370, height=height)
    st.markdown(f"**Every device's subnet comes from the same trained `{md(SUPERNET)}` weights**: its measured "
                f"accuracy (label: input size and MACs) and its predicted latency against its budget.")
    st.altair_chart(alt.hconcat(accuracy, latency, spacing=40), width="content")

    st.subheader("See the model work")
    pick = st.selectbox("Device", [e["profile"] for e in ok], key="deploy_predict_device",
                        format_func=lambda p: next(e["device"] for e in ok if e["profile"] == p))
    chosen_entry = next(e for e in ok if e["profile"] == pick)
    st.caption(f"`{file_name(chosen_entry)}` from the zip, run in ONNX Runtime on this server.")
    prediction_panel(chosen_entry["onnx_bytes"], chosen_entry["report"]["config"]["image_size"], "deploy_predict")
