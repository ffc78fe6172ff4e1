"""Specialize (home): pick a device and a budget, search the supernet, download the subnet."""

from __future__ import annotations

import json
import re
import time

import streamlit as st

from app import charts, layers
from app.lazy import lazy_module
from app import format as fmt
from app.resources import (USER_ERRORS, configure_threads, get_package, get_profile, get_space, has_batchnorm,
                           latency_provenance, log, md, user_errors, engine_alone)
from app.widgets import (BUDGETS, budget_controls, budget_feasibility, candidates_chart, describe_profile, keep,
                         metric_cards, prediction_panel, profile_picker, progress_frame, score_title,
                         searched_limits_for, stage_text)
from ofa_engine.search import STRATEGIES

# Imported on first use: the home page's first run draws no chart (app/lazy.py).
alt = lazy_module("altair")

st.title("Specialize a model for your device")
package = get_package()
st.markdown(f"Choose a device and a budget; the engine searches the trained once-for-all supernet `{md(package.name)}` "
            f"(a {package.num_classes}-class {'grayscale' if package.channels == 1 else f'{package.channels}-channel'} "
            "image classifier; the sidebar picks another) for the most accurate subnet that "
            "fits, extracts it and exports it to ONNX. *Deploy everywhere* does it for every device at once.")

space = get_space()
# The profile on a row of its own: its name is long, and a narrow box cut it off.
profile_name = profile_picker("spec_profile")
if profile_name is None:
    st.stop()
middle, right, _ = st.columns([2, 1, 3])
# Settings kept across page switches (app.widgets.keep: the kept value is the default).
strategy = middle.selectbox("Search strategy", STRATEGIES,
                            index=STRATEGIES.index(keep("spec_strategy", "evolution")),
                            key="spec_strategy", help="See 'Compare strategies' for how they differ.")
seed = right.number_input("Seed", 0, 10_000, keep("spec_seed", 0), key="spec_seed")
describe_profile(profile_name)
precisions = list(get_profile(profile_name).precisions)   # the profile's deployment precision first
precision = st.radio("Precision of the ONNX file", precisions,
                     index=precisions.index(keep(f"spec_precision_{profile_name}", precisions[0])), horizontal=True,
                     key=f"spec_precision_{profile_name}",
                     help="int8: static post-training quantization (QDQ), calibrated on 2,000 images, "
                          "what a microcontroller runs; fp32: the float network. The default is the "
                          "profile's deployment precision.")
limits, submitted = budget_controls(profile_name, "spec", "Specialize", ":material/bolt:", precision=precision)
if limits is None:
    st.stop()
feasible = budget_feasibility(profile_name, limits, "spec", precision)   # the reason in the open, before any click


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def run_specialization() -> None:
    with st.status("Specializing ...", expanded=True) as status:
        started = time.perf_counter()
        bar = st.progress(0.0, text="starting")

        def warming(done: int, total: int, step: str) -> None:
            bar.progress(min(max(done / total, 0.0), 1.0),
                         text=f"first run since the server started: {step} ({time.perf_counter() - started:.1f} s)")

        def progress(done: int, total: int, stage: str) -> None:
            bar.progress(min(max(done / total, 0.0), 1.0),
                         text=f"{stage_text(stage, has_batchnorm)} ({time.perf_counter() - started:.1f} s)")

        from ofa_engine.search import Constraints, InfeasibleBudgetError

        try:
            # The first click after a start waits for what the warm-up still loads (by step); no
            # warm-up step runs beside it: it would slow the search and skew the measured latency.
            with engine_alone(warming) as waited:
                if waited:
                    bar.progress(0.0, text="starting")
                waited_s = time.perf_counter() - started
                from ofa_engine import specialize

                configure_threads()
                profile = get_profile(profile_name)
                # A latency budget on a measured profile is searched with its safety margin (app.budgets).
                constraints = Constraints(**searched_limits_for(profile_name, limits, precision))
                spec = specialize(profile, constraints, strategy=strategy, seed=int(seed), progress=progress,
                                  precision=precision, supernet=package)
            spec.report["latency_source"] = latency_provenance(profile)
        except USER_ERRORS as exc:
            status.update(label="No subnet: the budget cannot be met" if isinstance(exc, InfeasibleBudgetError)
                          else "Cannot specialize with these settings", state="error")
            st.session_state.pop("specialization", None)
            st.error(md(exc), icon=":material/error:")
            return
        except Exception as exc:  # noqa: BLE001 - never a traceback in the browser
            log.exception("specialize failed")
            status.update(label="Specialization failed", state="error")
            st.session_state.pop("specialization", None)
            st.error(f"The specialization failed unexpectedly ({type(exc).__name__}: {md(exc)}).",
                     icon=":material/error:")
            return
        elapsed = time.perf_counter() - started
        log.info("specialize: %.2f s (waited %.2f s for the warm-up; stages %s)", elapsed, waited_s,
                 spec.report.get("timings_s"))
        status.update(label=f"Done in {elapsed:.1f} s: {spec.result.evaluations:,} candidates evaluated "
                            f"with {strategy}", state="complete", expanded=False)
    st.session_state["specialization"] = {
        "profile": profile_name, "strategy": strategy, "limits": dict(limits), "seed": int(seed),
        "precision": precision, "report": spec.report, "onnx_bytes": spec.onnx_bytes, "result": spec.result, "elapsed_s": elapsed}


if submitted and feasible:
    run_specialization()

done = st.session_state.get("specialization")
if done is None:
    st.stop()

report, result = done["report"], done["result"]
stale = ((done["profile"], done["limits"], done["strategy"], done["seed"], done["precision"])
         != (profile_name, limits, strategy, int(seed), precision))
st.divider()
st.subheader(f"Result for {md(get_profile(done['profile']).display_name) if done['profile'] else ''}, "
             f"{done['precision']}")
if stale:
    st.caption("Settings changed since this result: press Specialize to update it.")
verdict = metric_cards(report, done["limits"], done.get("latency"))
if report.get("latency_source") and (report.get("predicted") or {}).get("latency_ms") is not None:
    st.caption(f"Predicted latency from the profile `{md(report.get('profile', done['profile']))}`: "
               f"{md(report['latency_source'])}.")
if (report.get("predicted") or {}).get("accuracy_source") == "proxy: MACs":
    st.warning("This package has no accuracy predictor: the search ranked the subnets by **MACs** (an explicit "
               "proxy, `accuracy_source: proxy: MACs`), so no predicted accuracy is shown; the measured accuracy is "
               "the exported file's on the package's evaluation images. `fit-accuracy-predictor` adds one "
               "(docs/packages.md).", icon=":material/info:")
if verdict == "noisy":
    if st.button("Re-measure the latency", key="spec_remeasure", icon=":material/replay:",
                 help="Times the downloaded ONNX file again with ONNX Runtime on this server (the "
                      "engine's measure_latency: warm-up, then the median of many runs)."):
        from ofa_engine.runtime.measure import measure_latency
        profile = get_profile(done["profile"])
        with st.spinner("Timing the ONNX file with ONNX Runtime ..."), \
                user_errors("Re-measuring the latency"):
            stats = measure_latency(done["onnx_bytes"], threads=int(profile.threads or 1),
                                    batch_size=int(profile.batch_size or 1))
            done["latency"] = {"median_ms": stats.median_ms, "iqr_ms": stats.iqr_ms, "runs": stats.runs}
            st.rerun()
if done.get("latency"):
    st.caption(f"Latency re-measured: median {fmt.latency_spread(done['latency']['median_ms'], done['latency']['iqr_ms'])} "
               f"over {done['latency']['runs']} runs (the report keeps the first measurement).")
measured = report.get("measured", {})
accuracies = measured.get("accuracies") or {}
st.caption(f"**{done['precision']}** ONNX file: {fmt.memory_bytes(len(done['onnx_bytes']))}, weights "
           f"{fmt.memory_bytes(measured.get('weight_bytes', 0))}; measured accuracy "
           + ", ".join(f"{p} {fmt.percent(a)}" for p, a in accuracies.items())
           + (f" (int8 agrees with fp32 on {fmt.percent(measured['int8_agreement'])} of the test images)"
              if "int8_agreement" in measured else ""))
name = f"ofa-{slug(done['profile'])}-{done['strategy']}-{done['precision']}"
d1, d2, _ = st.columns([1, 1, 2])
d1.download_button("Download ONNX", done["onnx_bytes"], file_name=f"{name}.onnx", mime="application/octet-stream",
                   type="primary", icon=":material/download:", on_click="ignore")
d2.download_button("Download report (JSON)", json.dumps(report, indent=2, default=str), file_name=f"{name}.json",
                   mime="application/json", icon=":material/description:", on_click="ignore")

cfg = result.config
st.markdown(f"**Chosen subnet**: {layers.subnet_summary(space, cfg)}")
st.altair_chart(charts.config_picture(space, cfg), width="content")

st.subheader("See the model work")
st.caption("The downloaded ONNX file itself, run in ONNX Runtime on this server.")
prediction_panel(done["onnx_bytes"], cfg.image_size, "spec_predict")

budgeted = [f for f in done["limits"] if f in BUDGETS] or ["macs_m"]
accuracy_source = (report.get("predicted") or {}).get("accuracy_source", "predictor")
score = "best predicted accuracy" if accuracy_source == "predictor" else "best MACs proxy score"
chart_col, progress_col = st.columns([3, 2])
with chart_col:
    x_field = st.radio("Candidates against", budgeted, horizontal=True, key="spec_chart_metric",
                       format_func=lambda f: BUDGETS[f][0]) if len(budgeted) > 1 else budgeted[0]
    st.markdown(f"**All {result.evaluations:,} evaluated candidates** (red: Pareto front of those within "
                f"budget; diamond: chosen; dashed: budget)")
    st.altair_chart(candidates_chart(result, done["limits"], x_field, accuracy_source), width="stretch")
with progress_col:
    st.markdown(f"**Search progress**: {score} within budget")
    progress_data = progress_frame(result)
    st.altair_chart(alt.Chart(progress_data).mark_line(point=True, interpolate="step-after").encode(
        x=alt.X("evaluations:Q", title="candidates evaluated"),
        y=alt.Y("best accuracy (%):Q", title=score_title(accuracy_source), scale=alt.Scale(zero=False)),
        tooltip=["iteration", "evaluations", alt.Tooltip("best accuracy (%):Q", format=".2f")],
    ).properties(height=380), width="stretch")

with st.expander("Layer table, config and report"):
    st.dataframe(charts.config_table(space, cfg), hide_index=True, width="stretch")
    st.code(layers.config_json(cfg), language="json")
    st.json(report, expanded=False)
