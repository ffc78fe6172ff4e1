"""Controls and result views shared by the Specialize and Compare pages."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import streamlit as st

from app import charts
from app.lazy import lazy_module
from app import format as fmt
from app.resources import (USER_ERRORS, get_evaluator, get_profile, md, profile_label, profile_names,
                           user_errors)

# Imported on first use: the home page's first run draws no chart (app/lazy.py).
pd = lazy_module("pandas")

# Budget kinds offered in the UI: constraint field -> (label, unit, history column, scale).
BUDGETS: dict[str, tuple[str, str, str, float]] = {
    "latency_ms": ("Latency", "ms", "latency_ms", 1.0),
    "peak_memory_kb": ("Peak memory", "KB", "peak_memory_kb", 1.0),
    "flash_kb": ("Flash", "KB", "flash_kb", 1.0),
    "macs_m": ("MACs", "M", "macs", 1e6),
}
MAX_POINTS = 2500  # candidates drawn in the browser (the history may hold tens of thousands)


def profile_picker(key: str) -> str | None:
    """Select box over bundled + this session's profiles; None (with a message) when there is none."""
    names: list[str] = []
    with user_errors("Loading the device profiles"):
        names = profile_names()
    if not names:
        st.error("No device profile is available: assets/profiles/ is empty.")
        return None
    default = names.index("cpu-ort-1t") if "cpu-ort-1t" in names else 0
    return st.selectbox("Device profile", names, index=default, format_func=profile_label, key=key)


def describe_profile(name: str) -> None:
    profile = get_profile(name)
    memory = ", ".join(f"{k.replace('_kb', '').upper()} {fmt.memory_kb(v, 4)}" for k, v in dict(profile.memory).items()
                       if v is not None) or "no memory limit"
    quality = profile.quality
    model = getattr(profile.latency_model, "to_dict", lambda: {})().get("type", "?")
    detail = (f"latency model `{model}`, held-out MAPE {fmt.percent(quality['mape'])}, Kendall tau "
              f"{quality['kendall_tau']:.2f}" if quality else f"latency model `{model}` (analytical)")
    measured = " Real latency is measured on this server after the search." if profile.measures_locally else ""
    from app.resources import latency_provenance
    st.caption(f"**{md(profile.display_name)}** - {md(profile.kind)} profile, {memory}; {detail}.{measured} "
               f"Latency predictions from: {md(latency_provenance(profile))}.")


def _slider_step(lo: float, hi: float) -> float:
    span = max(hi - lo, 1e-9)
    return float(10 ** math.floor(math.log10(span / 200)))


def slider_bounds(lo: float, hi: float) -> tuple[float, float, float]:
    """(left end, right end, step): the smallest achievable value rounded *up* to the step, so
    every position of the slider is a budget some subnet meets."""
    step = _slider_step(lo, hi)
    return (round(math.ceil(lo / step - 1e-9) * step, 6), round(math.ceil(hi / step) * step, 6), step)


def budget_controls(profile_name: str, key: str, submit_label: str, submit_icon: str | None = None,
                    disabled: bool = False) -> tuple[dict[str, float] | None, bool]:
    """Multiselect of budget kinds, then a form with one slider each (smallest to largest
    achievable on the profile, from `budget_ranges`) and the page's action as its submit button
    `submit_label`. Returns ({constraint field: limit} or None on an error, submitted).

    Moving a slider inside the form reruns nothing until the form is submitted, so rapid slider
    input (keyboard steps, drags) cannot queue up reruns ahead of the action."""
    from ofa_engine.search import budget_ranges

    ranges: dict[str, Any] | None = None
    with st.spinner("Loading the supernet and predictors (first start only) ..."), \
            user_errors("Computing the budget ranges"):
        ranges = budget_ranges(get_evaluator(profile_name))
    if ranges is None:
        return None, False
    offered = [f for f in BUDGETS if f in ranges]
    default = ["latency_ms"] if "latency_ms" in offered else offered[:1]
    kinds = st.multiselect("Budget on", offered, default=default, key=f"{key}_kinds",
                           format_func=lambda f: f"{BUDGETS[f][0]} ({BUDGETS[f][1]})",
                           help="Every chosen bound must hold. A device's SRAM / Flash apply too.")
    limits: dict[str, float] = {}
    form = st.form(f"{key}_form", border=False, enter_to_submit=False)
    columns = form.columns(max(len(kinds), 1))
    for column, field in zip(columns, kinds):
        lo, hi = float(ranges[field]["min"]), float(ranges[field]["max"])
        lo_r, hi_r, step = slider_bounds(lo, hi)
        label, unit = BUDGETS[field][:2]
        decimals = max(0, -math.floor(math.log10(step)))
        widget_key = f"{key}_{field}"
        # A value set by "use the smallest achievable" lives in the session state; passing a
        # default as well would make Streamlit warn on the page.
        default_value = None if widget_key in st.session_state else round(
            math.floor((lo_r + 0.4 * (hi_r - lo_r)) / step) * step, 6)
        limits[field] = column.slider(
            f"{label} budget ({unit})", min_value=lo_r, max_value=hi_r, value=default_value, step=step,
            key=widget_key, format=f"%.{decimals}f {unit}",   # the value used, to the step, with its unit
            help=f"Achievable on this profile: {fmt.sig(lo, 4)} to {fmt.sig(hi, 4)} {unit}"
                 f"{'' if ranges[field].get('exact') else ' (estimated)'}.")
    if not kinds:
        form.info("No budget chosen: the search returns the most accurate subnet.", icon=":material/info:")
    submitted = form.form_submit_button(submit_label, type="primary", icon=submit_icon, disabled=disabled)
    return limits, submitted


def _smallest_subnet_metrics(profile_name: str) -> dict[str, float]:
    """Each constraint field's value (its unit) for the space's smallest subnet on the profile."""
    from ofa_engine.search.constraints import METRIC_OF
    evaluator = get_evaluator(profile_name)
    metrics = evaluator.efficiency_of(evaluator.genome.uniform("min"), latency=evaluator.has_latency)
    return {f: float(np.asarray(metrics[m])[0]) / scale for f, (m, scale) in METRIC_OF.items()
            if m in metrics and np.isfinite(np.asarray(metrics[m], float)[0])}


def _use_smallest(profile_name: str, key: str, fields: list[str]) -> None:
    """Callback: every chosen budget at least the smallest subnet's value (rounded up to the
    slider's step), so that subnet, at least, meets them all."""
    from ofa_engine.search import budget_ranges
    ranges = budget_ranges(get_evaluator(profile_name))
    smallest = _smallest_subnet_metrics(profile_name)
    for field in fields:
        widget_key = f"{key}_{field}"
        lo_r, hi_r, step = slider_bounds(float(ranges[field]["min"]), float(ranges[field]["max"]))
        need = round(math.ceil(smallest.get(field, lo_r) / step - 1e-9) * step, 6)
        st.session_state[widget_key] = min(max(float(st.session_state.get(widget_key, lo_r)), need, lo_r), hi_r)


def budget_feasibility(profile_name: str, limits: Mapping[str, float], key: str) -> bool:
    """Checks, before any click, whether a subnet meets `limits` and the device's memory. If none
    does, shows the engine's reason in the open and, when the device itself can hold a subnet,
    a one-click "Use the smallest achievable" (sets the budgets so the smallest subnet meets
    them). Returns True when the budget can be met."""
    from ofa_engine.search import Constraints, InfeasibleBudgetError, check_budget
    profile = get_profile(profile_name)
    cache = st.session_state.setdefault("_feasibility", {})
    cache_key = (profile_name, hash(profile.to_json()), tuple(sorted(limits.items())))
    if cache_key not in cache:
        try:
            check_budget(get_evaluator(profile_name), Constraints(**limits).with_device_memory(profile))
            cache[cache_key] = None
        except InfeasibleBudgetError as exc:
            cache[cache_key] = str(exc)
        except USER_ERRORS as exc:
            cache[cache_key] = str(exc)
    reason = cache[cache_key]
    if reason is None:
        return True
    device = Constraints().with_device_memory(profile)
    smallest = _smallest_subnet_metrics(profile_name)
    device_ok = all(smallest.get(f, 0.0) <= v for f, _, v in device.items())
    if not device_ok:
        st.error(f"**No subnet fits this device.** {md(reason)}. The device's memory "
                 f"({', '.join(f'{f} {fmt.budget(v, BUDGETS[f][1])}' for f, _, v in device.items())}) is below "
                 f"what the smallest subnet of this supernet needs; pick another profile.", icon=":material/error:")
        return False
    st.error(f"**This budget cannot be met.** {md(reason)}.", icon=":material/error:")
    st.button("Use the smallest achievable", key=f"{key}_use_smallest", icon=":material/south:",
              on_click=_use_smallest, args=(profile_name, key, list(limits)),
              help="Sets every chosen budget to at least what the smallest subnet needs on this profile.")
    return False


def history_frame(result, max_points: int = MAX_POINTS, seed: int = 0) -> pd.DataFrame:
    """The search history as a DataFrame (accuracy in %, MACs in M), subsampled for drawing;
    the chosen config's row is always kept."""
    hist = {k: np.asarray(v) for k, v in result.history.items()}
    frame = pd.DataFrame(hist)
    frame["accuracy_pct"] = frame["accuracy"] * 100
    frame["macs_m"] = frame["macs"] / 1e6
    frame["evaluation"] = np.arange(1, len(frame) + 1)
    if len(frame) > max_points:
        keep = np.random.default_rng(seed).choice(len(frame), max_points, replace=False)
        frame = frame.iloc[np.sort(keep)]
    return frame.reset_index(drop=True)


def progress_frame(result) -> pd.DataFrame:
    """Best feasible predicted accuracy after each iteration and after each evaluation count."""
    hist = result.history
    iteration = np.asarray(hist["iteration"])
    acc = np.where(np.asarray(hist["feasible"], bool), np.asarray(hist["accuracy"], float), np.nan)
    best_so_far = np.fmax.accumulate(np.nan_to_num(acc, nan=-np.inf))
    frame = pd.DataFrame({"iteration": iteration, "evaluations": np.arange(1, len(acc) + 1),
                          "best accuracy (%)": best_so_far * 100})
    frame = frame[np.isfinite(frame["best accuracy (%)"])]
    return frame.groupby("iteration", as_index=False).last()


def latency_verdict(median_ms: float, iqr_ms: float | None, limit: float | None) -> str:
    """'within' (the median meets the budget), 'over' (even the median minus one IQR, a lower
    bound of the first quartile, is over it), else 'noisy': the runs' spread straddles the
    budget, so the measurement cannot say whether the subnet is over it."""
    if limit is None or median_ms <= float(limit) * (1 + 1e-9):
        return "within"
    spread = 0.0 if iqr_ms is None or not math.isfinite(float(iqr_ms)) else float(iqr_ms)
    return "over" if median_ms - spread > float(limit) else "noisy"


def card_values(report: Mapping[str, Any], limits: Mapping[str, float],
                latency: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """The metric cards as data: label (with the budget and its unit), value (predicted, with
    its unit), delta (measured), note, verdict ('within' / 'over' / 'noisy' / None: no budget).
    `latency`: a re-measurement {"median_ms", "iqr_ms", "runs"} replacing the report's."""
    predicted = report.get("predicted", {}) or {}
    measured = dict(report.get("measured", {}) or {})
    effective = {**dict(limits), **(report.get("effective_constraints") or {})}
    if latency is not None:
        measured["latency_ms"], measured["latency_iqr_ms"] = latency["median_ms"], latency["iqr_ms"]

    def number(value) -> float | None:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    acc_p, acc_m = number(predicted.get("accuracy")), number(measured.get("accuracy"))
    cards = [{"field": "accuracy", "label": "Accuracy", "value": fmt.percent(acc_p),
              "delta": None if acc_m is None else f"measured {fmt.percent(acc_m)}", "note": None, "verdict": None}]
    for field, label, unit, scale in (("latency_ms", "Latency", "ms", 1.0), ("peak_memory_kb", "Peak memory", "KB", 1.0),
                                      ("flash_kb", "Flash", "KB", 1.0), ("macs_m", "MACs", "M", 1e6)):
        key = "macs" if field == "macs_m" else field
        value, real = number(predicted.get(key)), number(measured.get(key))
        value = None if value is None else value / scale
        real = None if real is None else real / scale
        limit = number(effective.get(field))
        shown = (lambda v: fmt.memory_kb(v)) if unit == "KB" else (lambda v, u=unit: fmt.quantity(v, u))
        title = label if limit is None else f"{label} ≤ {fmt.memory_kb(limit, 4) if unit == 'KB' else fmt.budget(limit, unit)}"
        note, verdict = None, None
        if field == "latency_ms" and real is not None:
            iqr = number(measured.get("latency_iqr_ms"))
            delta = f"measured {fmt.quantity(real, 'ms')}"
            note = f"median of the runs, IQR {fmt.quantity(iqr, 'ms', 2)}" if iqr is not None else "median of the runs"
            if limit is not None:
                verdict = latency_verdict(real, iqr, limit)
        else:
            delta = None if real is None else f"measured {shown(real)}"
            checked = real if real is not None else value
            if limit is not None and checked is not None:
                verdict = "within" if checked <= limit * (1 + 1e-9) else "over"
        cards.append({"field": field, "label": title, "value": "n/a" if value is None else shown(value),
                      "delta": delta, "note": note, "verdict": verdict})
    return cards


def metric_cards(report: Mapping[str, Any], limits: Mapping[str, float],
                 latency: Mapping[str, float] | None = None) -> str | None:
    """Predicted (value) and measured (delta) accuracy, latency, peak memory, Flash and MACs of
    the chosen subnet, every number with its unit; green within the budget, red over it. A
    measured latency is its median with the spread of its runs, and is called over budget only
    when the spread clears the budget. Returns the latency verdict ('within', 'over', 'noisy',
    None without a measured latency budget)."""
    sources = report.get("measured_sources", {}) or {}
    cols = st.columns(5)
    latency_verdict_ = None
    for col, card in zip(cols, card_values(report, limits, latency)):
        verdict = card["verdict"]
        colour = "off" if verdict is None else ("normal" if verdict == "within" else "inverse")
        col.metric(card["label"], card["value"], card["delta"], delta_color=colour, delta_arrow="off",
                   border=True)
        if card["note"]:
            col.caption(card["note"])
        if card["field"] == "latency_ms" and card["delta"] is not None:
            latency_verdict_ = verdict
            if verdict == "over":
                col.caption(":red[measured over budget, beyond the runs' spread: the predictor was optimistic]")
            elif verdict == "noisy":
                col.caption(":orange[the measurement was noisy: its spread straddles the budget]")
        elif verdict == "over":
            col.caption(":red[over budget]")
    if sources:
        with st.expander("How each number was obtained"):
            st.markdown("Large numbers: **predicted** (what the search optimised). ≤: the **budget**, including "
                        "the device's memory. **Measured** on the exported subnet:\n\n"
                        + "\n".join(f"- `{k}`: {md(v)}" for k, v in sources.items()))
    return latency_verdict_


def prediction_panel(onnx_bytes: bytes, image_size: int, key: str, count: int = 8) -> None:
    """See the model work: the ONNX file run in ONNX Runtime on this server on `count`
    evaluation images (true and predicted class), and on an image the user uploads (PNG / JPEG,
    capped in bytes and pixels, decoded by the engine, preprocessed by the engine's one
    preprocessing function)."""
    from app.resources import (MAX_IMAGE_UPLOAD_BYTES, MAX_IMAGE_UPLOAD_PIXELS, classify, display_images, get_package,
                               get_space, get_split)
    space = get_space()
    test = get_split("test2k")
    classes = get_package().labels
    # A fixed, seeded pick: the same images every time, one of each class first.
    rng = np.random.default_rng(0)
    index = [int(rng.choice(np.flatnonzero(test.labels == c))) for c in range(min(count, len(classes)))
             if (test.labels == c).any()]
    images = test.images[index]
    with user_errors("Running the model"):
        probabilities = classify(onnx_bytes, images, image_size)
        predicted = probabilities.argmax(1)
        right = int((predicted == test.labels[index]).sum())
        st.markdown(f"**Evaluation images** (held-out test images, never trained on): the file predicts "
                    f"{right} of {len(index)} right.")
        cols = st.columns(len(index))
        for col, image, label, guess, p in zip(cols, display_images(images), test.labels[index], predicted, probabilities):
            col.image(image, width=84, clamp=True)
            ok = int(label) == int(guess)
            col.markdown(f"true: **{md(classes[int(label)])}**  \npredicted: "
                         f"{'' if ok else ':red['}**{md(classes[int(guess)])}**{'' if ok else ']'} "
                         f"({fmt.percent(float(p[guess]))})")
    upload = st.file_uploader("Your own image (PNG or JPEG)", type=["png", "jpg", "jpeg"], key=f"{key}_image",
                              help=f"At most {fmt.memory_bytes(MAX_IMAGE_UPLOAD_BYTES)} and "
                                   f"{MAX_IMAGE_UPLOAD_PIXELS:,} pixels. It is turned to "
                                   f"{'grayscale' if space.in_channels == 1 else 'RGB'} and resized "
                                   f"to {image_size} px by the engine's preprocessing.")
    invert = st.checkbox("Invert (Fashion-MNIST garments are light on a black background)", key=f"{key}_invert")
    if upload is None:
        return
    from ofa_engine.datasets.images import decode_image_bytes
    with user_errors("Your image"):
        data = upload.getvalue()
        if len(data) > MAX_IMAGE_UPLOAD_BYTES:
            raise ValueError(f"image '{upload.name}' is {fmt.memory_bytes(len(data))}; allowed: at most "
                             f"{fmt.memory_bytes(MAX_IMAGE_UPLOAD_BYTES)}")
        pixels = decode_image_bytes(data, upload.name, channels=space.in_channels, max_pixels=MAX_IMAGE_UPLOAD_PIXELS)
        if invert:
            pixels = 255 - pixels
        p = classify(onnx_bytes, pixels[None], image_size)[0]
        top = np.argsort(p)[::-1][:3]
        left, right = st.columns([1, 4])
        left.image(pixels, width=112, clamp=True, caption="your image as decoded")
        right.markdown(f"Predicted: **{md(classes[int(top[0])])}** ({fmt.percent(float(p[top[0]]))}); then "
                       + ", ".join(f"{md(classes[int(c)])} ({fmt.percent(float(p[c]))})" for c in top[1:]))


def candidates_chart(result, limits: Mapping[str, float], x_field: str) -> Any:
    """Accuracy vs the budgeted metric for every evaluated candidate, budget line, chosen point."""
    frame = history_frame(result)
    column = BUDGETS[x_field][2] if x_field in BUDGETS else x_field
    x = "macs_m" if column == "macs" else column
    frame["candidate"] = np.where(frame["feasible"].astype(bool), "within budget", "over budget")
    chosen = {x: float(result.predicted["macs"]) / 1e6 if x == "macs_m" else float(result.predicted[x]),
              "accuracy_pct": float(result.predicted["accuracy"]) * 100}
    feasible = frame[frame["feasible"].astype(bool)]
    base = charts.tradeoff_chart(feasible if len(feasible) else frame, x, "accuracy_pct",
                                 budget=limits.get(x_field), chosen=chosen,
                                 x_title=f"{BUDGETS.get(x_field, (x, ''))[0]} ({BUDGETS.get(x_field, ('', x))[1]})",
                                 y_title="predicted accuracy (%)", tooltip=["iteration", x, "accuracy_pct"])
    import altair as alt
    over = alt.Chart(frame[~frame["feasible"].astype(bool)]).mark_circle(size=18, opacity=0.25, color="#bab0ac").encode(
        x=f"{x}:Q", y="accuracy_pct:Q", tooltip=["iteration", x, "accuracy_pct"])
    return alt.layer(over, *base.layer).properties(height=380)
