"""Train once, deploy everywhere: one supernet specialized for every device profile at once."""

from __future__ import annotations

import math
import time

import altair as alt
import pandas as pd
import streamlit as st

from app import format as fmt
from app.resources import (USER_ERRORS, configure_threads, device_name, engine_alone, get_evaluator, get_package, get_profile,
                           get_space, latency_provenance, latency_source, log, md, profile_names, supernet_name,
                           user_errors)
from app.deployment import (budget_refusals, coincidence_notes, default_budgets, deployment_zip, file_name,
                            result_rows)
from app.layers import config_of
from app.summary import SUMMARY_CAPTION, summary_svg
from app.widgets import keep, prediction_panel, searched_limits_for

st.title("Train once, deploy everywhere")
SUPERNET = supernet_name()
_package = get_package()
st.markdown(
    f"Once-for-all trains **one** supernet (`{md(SUPERNET)}`, a {_package.num_classes}-class "
    f"{'grayscale' if _package.channels == 1 else f'{_package.channels}-channel'} image classifier) and then cuts from it, without any retraining, the subnet that fits each "
    "device best. One click specializes it for every profile below, each under its own latency "
    "budget (editable) and within its device's memory, and gives you all the ONNX files in one zip.")
st.image(summary_svg(), caption=SUMMARY_CAPTION)

space = get_space()
SETTINGS = "deploy_settings"   # st.session_state: {profile: {"budget_ms", "precision"}}: the table's last values


def latency_ranges(names: list[str]) -> dict[str, dict]:
    """Every offered profile's `budget_ranges` (cached by the engine per evaluator)."""
    from ofa_engine.search import budget_ranges
    return {n: budget_ranges(get_evaluator(n)) for n in names}


def refusal(name: str, budget: float | None, precision: str | None = None) -> str | None:
    """The engine's reason why the profile cannot predict files of `precision`, or why no subnet
    meets `budget` and the device's memory; None when it can."""
    from ofa_engine.search import Constraints, InfeasibleBudgetError, check_budget
    profile = get_profile(name)
    try:
        if precision is not None:
            profile.check_precision(precision)
        limits = {} if budget is None else {"latency_ms": float(budget)}
        check_budget(get_evaluator(name, precision), Constraints(**limits).with_device_memory(profile))
    except (InfeasibleBudgetError, *USER_ERRORS) as exc:
        return str(exc)
    return None


names = profile_names()
# Chips carry the profile name only (a long label is cut off); the table below names each device.
devices = st.multiselect("Devices", names, default=[n for n in keep("deploy_devices", names) if n in names],
                         key="deploy_devices",
                         help="Device profiles: the table below says what each one is and whose latency it predicts")
rows = []
with st.spinner("Loading the supernet and predictors (first start only) ..."), user_errors("Loading the profiles"):
    defaults = default_budgets(latency_ranges(names))
    settings = st.session_state.setdefault(SETTINGS, {})
    for name in devices:
        profile = get_profile(name)
        kept = settings.get(name, {})
        memory = ", ".join(f"{k.replace('_kb', '').replace('flash', 'Flash').replace('sram', 'SRAM').replace('ram', 'RAM')} "
                           f"{fmt.memory_limit(v)}" for k, v in dict(profile.memory).items() if v is not None) or "no limit"
        rows.append({"profile": name, "device": device_name(profile),
                     "latency budget (ms)": kept.get("budget_ms", defaults.get(name)),
                     "precision": kept.get("precision", getattr(profile, "precision", "fp32")), "device memory": memory})
if not rows:
    st.info("Choose at least one device.", icon=":material/info:")
    st.stop()
st.caption("Default budgets: one deadline shared by the devices of similar speed (the microcontrollers; the CPUs), "
           "within each one's achievable range, so a faster device gets a larger subnet. On a profile fitted to measurements the "
           "search keeps a safety margin below the budget (the profile's measured error), so that the file "
           "measured here meets the budget itself.")

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
                                                                 help="The device's latency budget"),
            "precision": st.column_config.SelectboxColumn(options=["fp32", "int8"], required=True),
        })
    go = st.form_submit_button("Specialize for every device", type="primary", icon=":material/rocket_launch:")


def chosen_settings(chosen: pd.DataFrame) -> list[dict]:
    """The table as plain rows: {"profile", "budget_ms" (None: no budget), "precision"}."""
    return [{"profile": r["profile"], "precision": r["precision"],
             "budget_ms": None if r["latency budget (ms)"] is None or pd.isna(r["latency budget (ms)"])
             else float(r["latency budget (ms)"])} for r in chosen.to_dict("records")]


def specialize_all(chosen: list[dict]) -> list[dict]:
    from ofa_engine import specialize
    from ofa_engine.search import Constraints
    configure_threads()
    out = []
    bar = st.progress(0.0, text="starting")
    started = time.perf_counter()
    for i, row in enumerate(chosen):
        name, budget = row["profile"], row["budget_ms"]
        profile = get_profile(name)
        limits = {} if budget is None else {"latency_ms": budget}
        searched = searched_limits_for(name, limits, row["precision"])
        entry = {"profile": name, "device": profile.display_name, "device_short": device_name(profile),
                 "precision": row["precision"], "budget_ms": budget, "searched_ms": searched.get("latency_ms"),
                 "latency_source": latency_provenance(profile), "latency_source_short": latency_source(profile)}

        def progress(done: int, total: int, stage: str, i=i, name=name) -> None:
            bar.progress(min((i + done / total) / len(chosen), 1.0),
                         text=f"{name}: {stage} ({i + 1} of {len(chosen)}, {time.perf_counter() - started:.0f} s)")

        try:
            spec = specialize(profile, Constraints(**searched), "evolution", seed=0, progress=progress,
                              precision=row["precision"], supernet=_package)
            spec.report["latency_source"] = entry["latency_source"]
            entry.update(report=spec.report, onnx_bytes=spec.onnx_bytes, error=None)
        except USER_ERRORS as exc:
            entry.update(report=None, onnx_bytes=None, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - one device failing must not hide the others
            log.exception("specialize for %s failed", name)
            entry.update(report=None, onnx_bytes=None, error=f"failed unexpectedly ({type(exc).__name__}: {exc})")
        out.append(entry)
    done = sum(e["report"] is not None for e in out)
    bar.progress(1.0, text=f"{done} of {len(chosen)} devices specialized in {time.perf_counter() - started:.1f} s")
    return out


if go:
    chosen = chosen_settings(table)
    st.session_state[SETTINGS].update({r["profile"]: {"budget_ms": r["budget_ms"], "precision": r["precision"]}
                                       for r in chosen})
    if not chosen:
        st.warning("No device chosen: add at least one above.", icon=":material/warning:")
    else:
        # Every budget checked before any work: an impossible one is refused at once, with its reason.
        with st.spinner("Checking every budget ..."):
            refused = budget_refusals(chosen, refusal)
        if refused:
            st.error(f"**Nothing was specialized: {len(refused)} of {len(chosen)} devices cannot be specialized as "
                     "set** (a budget no subnet meets, or a precision the profile does not model). Change them, or "
                     "remove those devices, and press the button again.", icon=":material/error:")
            for name, reason in refused.items():
                st.error(f"{md(name)}: {md(reason)}", icon=":material/block:")
            st.stop()
        # No warm-up step runs beside the specializations (their latency measurements included).
        with engine_alone():
            st.session_state["deployment"] = specialize_all(chosen)
        st.session_state["deployment_settings"] = chosen

deployment = st.session_state.get("deployment")
if not deployment:
    st.stop()


ok = [e for e in deployment if e["report"] is not None]
failed = len(deployment) - len(ok)
st.subheader(f"{len(ok)} subnet{'s' * (len(ok) != 1)} of one supernet, `{md(SUPERNET)}`"
             + (f" ({failed} device{'s' * (failed != 1)} failed)" if failed else ""))
if st.session_state.get("deployment_settings") != chosen_settings(table):
    st.warning("These results are for the devices and budgets of the last run, not the table above as it is now: "
               "press **Specialize for every device** to update them.", icon=":material/history:")
# A static table: every value in full (a data grid cuts long cells), a few rows only.
st.table(pd.DataFrame(result_rows(deployment, space)).set_index("profile"))
for e in deployment:
    if e["error"]:
        st.error(f"{md(e['device'])}: {md(e['error'])}", icon=":material/error:")
for note in coincidence_notes(deployment, space):
    st.info(md(note), icon=":material/info:")
if ok:
    st.download_button(f"Download all ({len(ok)} ONNX files + manifest.json)", deployment_zip(deployment, space, SUPERNET),
                       file_name=f"ofa-{SUPERNET}-deployment.zip", mime="application/zip", type="primary",
                       icon=":material/download:", on_click="ignore")
    points = pd.DataFrame([{"profile": e["profile"], "device": e["device"],
                            "accuracy (%)": e["report"]["measured"]["accuracy"] * 100,
                            "latency from": e.get("latency_source", ""),
                            "predicted latency (ms)": e["report"]["predicted"].get("latency_ms"),
                            "latency budget (ms)": e["budget_ms"],
                            "subnet": f"{config_of(space, e['report']['config']).image_size} px, "
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
        x=alt.X("latency budget (ms):Q", title="latency predicted by the profile (ms, log scale); black: budget",
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
    prediction_panel(chosen_entry["onnx_bytes"], config_of(space, chosen_entry["report"]["config"]).image_size,
                     "deploy_predict")
