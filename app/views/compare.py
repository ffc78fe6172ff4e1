"""Compare strategies: every search strategy on the same device and budget."""

from __future__ import annotations

import time

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from app.layers import config_json
from app.resources import USER_ERRORS, accuracy_source, get_evaluator, log, md
from app.widgets import budget_controls, budget_feasibility, describe_profile, keep, profile_picker, score_title
from ofa_engine.search import STRATEGIES, Constraints, InfeasibleBudgetError, search

st.title("Compare search strategies")
st.markdown("Run every strategy on the same device and budget. All of them query the same "
            "predictors, so they differ only in **which** candidates they evaluate and how many: "
            "quality (best predicted accuracy within budget) vs evaluations vs time.")

if accuracy_source() != "predictor":
    st.info("This package has no accuracy predictor: every strategy ranks by the MACs proxy "
            "(`accuracy_source: proxy: MACs`), so the 'accuracy' columns below are its score, not an accuracy.",
            icon=":material/info:")
# The profile on a row of its own: its name is long, and a narrow box cut it off.
profile_name = profile_picker("cmp_profile")
if profile_name is None:
    st.stop()
right, _ = st.columns([1, 5])
# Settings kept across page switches (app.widgets.keep: the kept value is the default).
seed = right.number_input("Seed", 0, 10_000, keep("cmp_seed", 0), key="cmp_seed")
describe_profile(profile_name)
strategies = st.multiselect("Strategies", STRATEGIES, default=keep("cmp_strategies", list(STRATEGIES)),
                            key="cmp_strategies")
limits, submitted = budget_controls(profile_name, "cmp", "Run all strategies", ":material/play_arrow:",
                                    disabled=not strategies)
if limits is None:
    st.stop()
feasible = budget_feasibility(profile_name, limits, "cmp")


def curve(result, strategy: str) -> pd.DataFrame:
    hist = result.history
    acc = np.where(np.asarray(hist["feasible"], bool), np.asarray(hist["accuracy"], float), -np.inf)
    best = np.maximum.accumulate(acc)
    n = len(best)
    # At most ~300 points per strategy: the curve is a step function.
    idx = np.unique(np.concatenate([np.linspace(0, n - 1, min(n, 300)).astype(int),
                                    np.nonzero(np.diff(best, prepend=-np.inf) > 0)[0]]))
    frame = pd.DataFrame({"strategy": strategy, "evaluations": idx + 1, "best accuracy (%)": best[idx] * 100})
    return frame[np.isfinite(frame["best accuracy (%)"])]


if submitted and feasible:
    rows, curves, failed = [], [], False
    evaluator = get_evaluator(profile_name)
    with st.status("Running the strategies ...", expanded=True) as status:
        for strategy in strategies:
            st.write(f"{strategy} ...")
            try:
                started = time.perf_counter()
                result = search(evaluator, Constraints(**limits), strategy, seed=int(seed))
                wall = time.perf_counter() - started
            except InfeasibleBudgetError as exc:  # the same for every strategy: stop here
                status.update(label="No subnet meets this budget", state="error")
                st.error(md(exc), icon=":material/error:")
                failed = True
                break
            except Exception as exc:  # noqa: BLE001 - one strategy failing must not hide the others
                if not isinstance(exc, USER_ERRORS):
                    log.exception("search %s failed", strategy)
                st.warning(f"{strategy}: {md(exc)}", icon=":material/warning:")
                continue
            p = result.predicted
            rows.append({"strategy": strategy, "accuracy (%)": p["accuracy"] * 100,
                         "latency (ms)": p.get("latency_ms"), "peak memory (KB)": p["peak_memory_kb"],
                         "Flash (KB)": p["flash_kb"], "MACs (M)": p["macs"] / 1e6,
                         "evaluations": result.evaluations, "time (s)": wall,
                         "config": config_json(result.config)})
            curves.append(curve(result, strategy))
        if not failed and rows:
            status.update(label=f"Ran {len(rows)} of {len(strategies)} strategies", state="complete",
                          expanded=len(rows) < len(strategies))
        elif not failed:
            status.update(label="No strategy finished", state="error")
    if failed or not rows:
        st.session_state.pop("comparison", None)
    else:
        st.session_state["comparison"] = {"rows": pd.DataFrame(rows), "curves": pd.concat(curves),
                                          "settings": (profile_name, dict(limits), int(seed))}

done = st.session_state.get("comparison")
if done is not None:
    table, curves = done["rows"], done["curves"]
    if done["settings"] != (profile_name, dict(limits), int(seed)):
        st.caption("Settings changed since this comparison: run it again to update.")
    best = table["accuracy (%)"].max()
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "accuracy (%)": st.column_config.ProgressColumn(format="%.2f %%", min_value=float(table["accuracy (%)"].min()) - 1,
                                                        max_value=float(best)),
        "latency (ms)": st.column_config.NumberColumn(format="%.3f ms"),
        "peak memory (KB)": st.column_config.NumberColumn(format="%.1f KB"),
        "Flash (KB)": st.column_config.NumberColumn(format="%.1f KB"),
        "MACs (M)": st.column_config.NumberColumn(format="%.3f M"),
        "time (s)": st.column_config.NumberColumn(format="%.3f s"),
        "config": st.column_config.TextColumn(width="large", help="the chosen subnet (JSON)")})
    with st.expander("Chosen configs in full (JSON)"):
        st.code("\n".join(f"{row.strategy}: {row.config}" for row in table.itertuples()), language="text",
                wrap_lines=True)
    left, right = st.columns(2)
    left.markdown("**Best accuracy within budget vs candidates evaluated**")
    left.altair_chart(alt.Chart(curves).mark_line(interpolate="step-after").encode(
        x=alt.X("evaluations:Q", scale=alt.Scale(type="log"), title="candidates evaluated (log)"),
        y=alt.Y("best accuracy (%):Q", title=f"best {score_title(accuracy_source())}", scale=alt.Scale(zero=False)),
        color=alt.Color("strategy:N", legend=alt.Legend(orient="bottom", columns=3)),
        tooltip=["strategy", "evaluations", alt.Tooltip("best accuracy (%):Q", format=".2f")],
    ).properties(height=340), width="stretch")
    right.markdown("**Quality vs time** (point size: evaluations)")
    right.altair_chart(alt.Chart(table).mark_circle(opacity=0.8).encode(
        x=alt.X("time (s):Q", title="search time here (s)", scale=alt.Scale(zero=False)),
        y=alt.Y("accuracy (%):Q", title=score_title(accuracy_source()), scale=alt.Scale(zero=False)),
        # Legends below the plot: at the side, the size legend's labels ("40,000") were clipped.
        size=alt.Size("evaluations:Q", scale=alt.Scale(range=[60, 600]),
                      legend=alt.Legend(orient="bottom", format="~s", labelLimit=0)),   # 10k, 20k
        color=alt.Color("strategy:N", legend=alt.Legend(orient="bottom", columns=3)),
        tooltip=list(table.columns[:-1]),
    ).properties(height=340), width="stretch")
