"""Controls and result views shared by the Specialize and Compare pages."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
import streamlit as st

from app import charts
from app.budgets import at_position, default_budget, latency_verdict, position_in, slider_bounds, snap
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
KEPT = "_kept_settings"   # st.session_state: the settings' last values, kept across page switches


# What each stage of the engine's `specialize` does, for the Specialize page's progress bar.
STAGES = {"load": "loading the supernet and predictors", "search": "searching",
          "extract": "extracting the subnet and recalibrating its BatchNorm",
          "export": "exporting to ONNX and verifying it in ONNX Runtime (int8: quantizing and checking it)",
          "measure accuracy": "measuring accuracy on 2,000 test images",
          "measure latency": "measuring latency with ONNX Runtime", "done": "done"}
# A network without BatchNorm (the ViT: LayerNorm) has no statistics to recalibrate.
STAGES_WITHOUT_BN = {**STAGES, "extract": "extracting the subnet (no BatchNorm to recalibrate)"}


def stage_text(stage: str, has_batchnorm: Callable[[], bool]) -> str:
    """What `stage` does; `has_batchnorm()` (whether the network has BatchNorm) is asked at the
    extraction only, when the engine loads the supernet anyway."""
    return (STAGES_WITHOUT_BN if stage == "extract" and not has_batchnorm() else STAGES).get(stage, stage)


def keep(key: str, default: Any) -> Any:
    """The default to give the widget `key` so that its value survives page switches (Streamlit
    drops the state of a widget that a run does not draw): its current value, saved in a plain
    session-state entry, or the saved one once the widget's own state is gone, else `default`.
    The widget's state itself is never written: the kept value is its default, the same in
    every run, so the browser shows it and Streamlit has nothing to warn about."""
    kept = st.session_state.setdefault(KEPT, {})
    if key in st.session_state:
        kept[key] = st.session_state[key]
    return kept.get(key, default)


def forget(prefixes: tuple[str, ...]) -> None:
    """Drop the kept settings (and budget positions) whose key starts with one of `prefixes`."""
    kept = st.session_state.setdefault(KEPT, {})
    for key in [k for k in kept if k.startswith(prefixes)]:
        del kept[key]
    positions = st.session_state.setdefault(POSITIONS, {})
    for key in [k for k in positions if k.startswith(prefixes)]:
        del positions[key]


def profile_picker(key: str) -> str | None:
    """Select box over bundled + this session's profiles; None (with a message) when there is none."""
    names: list[str] = []
    with user_errors("Loading the device profiles"):
        names = profile_names()
    if not names:
        st.error("No device profile is available: assets/profiles/ is empty.")
        return None
    chosen = keep(key, "cpu-ort-1t" if "cpu-ort-1t" in names else names[0])
    index = names.index(chosen) if chosen in names else 0    # a session profile of another supernet: gone
    return st.selectbox("Device profile", names, index=index, format_func=profile_label, key=key)


def describe_profile(name: str) -> None:
    """The profile in plain words first (what predicts its latency, how far off it was), then
    the details for those who know the terms."""
    profile = get_profile(name)
    names = {"sram_kb": "SRAM", "ram_kb": "RAM", "flash_kb": "Flash"}
    memory = ", ".join(f"{names.get(k, k)} {fmt.memory_limit(v)}" for k, v in dict(profile.memory).items()
                       if v is not None) or "no memory limit"
    quality = profile.quality
    model = getattr(profile.latency_model, "to_dict", lambda: {})().get("type", "?")
    if quality:
        plain_words = (f"Latency {fmt.figure_source('learned_model')} fitted to subnets measured on the device; "
                       f"on subnets it was not fitted to, it was off by {fmt.percent(quality['mape'])} on average")
        detail = f"model `{model}`, held-out MAPE {fmt.percent(quality['mape'])}, Kendall tau {quality['kendall_tau']:.2f}"
    else:
        plain_words = f"Latency {fmt.figure_source('analytical')} from the MACs and the clock (no device measured)"
        detail = f"model `{model}`"
    measured = " The real latency is then measured on this server." if profile.measures_locally else ""
    from app.resources import latency_provenance
    st.caption(f"**{md(profile.display_name)}** ({md(profile.kind)} profile, {memory}). {plain_words}.{measured} "
               f"Details: {detail}. Latency predictions from: {md(latency_provenance(profile))}.")


POSITIONS = "_budget_positions"   # st.session_state: {widget key: (profile, place in its range 0..1)}


def budget_controls(profile_name: str, key: str, submit_label: str, submit_icon: str | None = None,
                    disabled: bool = False, precision: str | None = None) -> tuple[dict[str, float] | None, bool]:
    """Multiselect of budget kinds, then a form with one slider each (smallest to largest
    achievable on the profile, from `budget_ranges`) and the page's action as its submit button
    `submit_label`. Returns ({constraint field: limit} or None on an error, submitted).

    Moving a slider inside the form reruns nothing until the form is submitted, so rapid slider
    input (keyboard steps, drags) cannot queue up reruns ahead of the action. `precision`: that
    of the file (None: the profile's own), whose latency, Flash and peak memory the ranges are."""
    from ofa_engine.search import budget_ranges

    ranges: dict[str, Any] | None = None
    with st.spinner("Loading the supernet and predictors (first start only) ..."), \
            user_errors("Computing the budget ranges"):
        ranges = budget_ranges(get_evaluator(profile_name, precision))
    if ranges is None:
        return None, False
    offered = [f for f in BUDGETS if f in ranges]
    default = ["latency_ms"] if "latency_ms" in offered else offered[:1]
    kinds = st.multiselect("Budget on", offered, default=[f for f in keep(f"{key}_kinds", default) if f in offered],
                           key=f"{key}_kinds",
                           format_func=lambda f: f"{BUDGETS[f][0]} ({BUDGETS[f][1]})",
                           help="Every chosen bound must hold. A device's SRAM / Flash apply too.")
    limits: dict[str, float] = {}
    form = st.form(f"{key}_form", border=False, enter_to_submit=False)
    columns = form.columns(max(len(kinds), 1))
    positions = st.session_state.setdefault(POSITIONS, {})
    for column, field in zip(columns, kinds):
        lo, hi = float(ranges[field]["min"]), float(ranges[field]["max"])
        lo_r, hi_r, step = slider_bounds(lo, hi)
        label, unit = BUDGETS[field][:2]
        decimals = max(0, -math.floor(math.log10(step)))
        widget_key = f"{key}_{field}"
        placed = positions.get(widget_key)
        if placed is not None and (placed[0] != profile_name or widget_key not in st.session_state):
            # Another device (another range), or back from another page (Streamlit dropped the
            # slider's state): the budget keeps its place in the range, not the slider's left end.
            st.session_state[widget_key] = at_position(placed[1], lo, hi)
        elif widget_key in st.session_state:
            st.session_state[widget_key] = snap(float(st.session_state[widget_key]), lo, hi)
        # A value in the session state (kept, or set by "use the smallest achievable"): no default
        # as well, or Streamlit warns on the page.
        default_value = None if widget_key in st.session_state else default_budget(lo, hi)
        limits[field] = column.slider(
            f"{label} budget ({unit})", min_value=lo_r, max_value=hi_r, value=default_value, step=step,
            key=widget_key, format=f"%.{decimals}f {unit}",   # the value used, to the step, with its unit
            help=f"Achievable on this profile: {fmt.sig(lo, 4)} to {fmt.sig(hi, 4)} {unit}"
                 f"{'' if ranges[field].get('exact') else ' (estimated)'}.")
        positions[widget_key] = (profile_name, position_in(limits[field], lo, hi))
    if not kinds:
        form.info("No budget chosen: the search returns the most accurate subnet.", icon=":material/info:")
    submitted = form.form_submit_button(submit_label, type="primary", icon=submit_icon, disabled=disabled)
    return limits, submitted


def latency_margin_of(profile_name: str, precision: str | None = None) -> float:
    """The safety margin kept below a latency budget on the profile (`app.budgets.latency_margin`
    of its held-out measurements: the bundled profile's validation file, or an uploaded one's
    held-out subnets); 0 on an analytical profile."""
    from app.budgets import latency_margin
    from app.resources import session_profiles
    from ofa_engine.devices.profiles import load_validation
    profile = get_profile(profile_name)
    if precision is not None and precision != profile.precision:
        profile = profile.for_precision(precision)   # its own latency model's held-out quality
    if not profile.quality:
        return 0.0
    if profile_name in session_profiles():
        validation = st.session_state.get("session_validation", {}).get(profile_name)
    else:
        validation = load_validation(profile)
    return latency_margin(profile.quality, validation)


def searched_limits_for(profile_name: str, limits: Mapping[str, float], precision: str | None = None) -> dict[str, float]:
    """The bounds to search on the profile: the latency budget less its safety margin
    (`latency_margin_of`), unless no subnet meets the tightened budget with the other bounds and
    the device's memory (a budget at the smallest achievable): then the user's budget as it is."""
    from app.budgets import searched_limits
    from ofa_engine.search import Constraints, InfeasibleBudgetError, check_budget
    searched = searched_limits(limits, latency_margin_of(profile_name, precision))
    if searched == dict(limits):
        return searched
    profile = get_profile(profile_name)
    try:
        check_budget(get_evaluator(profile_name, precision), Constraints(**searched).with_device_memory(profile))
    except InfeasibleBudgetError:
        return dict(limits)
    return searched


def _smallest_subnet_metrics(profile_name: str, precision: str | None = None) -> dict[str, float]:
    """Each constraint field's value (its unit) for the space's smallest subnet on the profile."""
    from ofa_engine.search.constraints import METRIC_OF
    evaluator = get_evaluator(profile_name, precision)
    metrics = evaluator.efficiency_of(evaluator.genome.uniform("min"), latency=evaluator.has_latency)
    return {f: float(np.asarray(metrics[m])[0]) / scale for f, (m, scale) in METRIC_OF.items()
            if m in metrics and np.isfinite(np.asarray(metrics[m], float)[0])}


def _use_smallest(profile_name: str, key: str, fields: list[str], precision: str | None = None) -> None:
    """Callback: every chosen budget at least the smallest subnet's value (rounded up to the
    slider's step), so that subnet, at least, meets them all."""
    from ofa_engine.search import budget_ranges
    ranges = budget_ranges(get_evaluator(profile_name, precision))
    smallest = _smallest_subnet_metrics(profile_name, precision)
    for field in fields:
        widget_key = f"{key}_{field}"
        lo_r, hi_r, step = slider_bounds(float(ranges[field]["min"]), float(ranges[field]["max"]))
        need = round(math.ceil(smallest.get(field, lo_r) / step - 1e-9) * step, 6)
        st.session_state[widget_key] = min(max(float(st.session_state.get(widget_key, lo_r)), need, lo_r), hi_r)


def budget_feasibility(profile_name: str, limits: Mapping[str, float], key: str, precision: str | None = None) -> bool:
    """Checks, before any click, whether a subnet meets `limits` and the device's memory. If none
    does, shows the engine's reason in the open and, when the device itself can hold a subnet,
    a one-click "Use the smallest achievable" (sets the budgets so the smallest subnet meets
    them). Returns True when the budget can be met."""
    from ofa_engine.search import Constraints, InfeasibleBudgetError, check_budget
    profile = get_profile(profile_name)
    cache = st.session_state.setdefault("_feasibility", {})
    cache_key = (profile_name, hash(profile.to_json()), precision, tuple(sorted(limits.items())))
    if cache_key not in cache:
        try:
            check_budget(get_evaluator(profile_name, precision), Constraints(**limits).with_device_memory(profile))
            cache[cache_key] = None
        except InfeasibleBudgetError as exc:
            cache[cache_key] = str(exc)
        except USER_ERRORS as exc:
            cache[cache_key] = str(exc)
    reason = cache[cache_key]
    if reason is None:
        return True
    device = Constraints().with_device_memory(profile)
    smallest = _smallest_subnet_metrics(profile_name, precision)
    device_ok = all(smallest.get(f, 0.0) <= v for f, _, v in device.items())
    if not device_ok:
        st.error(f"**No subnet fits this device.** {md(reason)}. The device's memory "
                 f"({', '.join(f'{f} {fmt.budget(v, BUDGETS[f][1])}' for f, _, v in device.items())}) is below "
                 f"what the smallest subnet of this supernet needs; pick another profile.", icon=":material/error:")
        return False
    st.error(f"**This budget cannot be met.** {md(reason)}.", icon=":material/error:")
    st.button("Use the smallest achievable", key=f"{key}_use_smallest", icon=":material/south:",
              on_click=_use_smallest, args=(profile_name, key, list(limits), precision),
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


def figure_kinds(report: Mapping[str, Any], profile_kind: str | None) -> dict[str, dict[str, str]]:
    """What each of the report's figures is ({"predicted"|"measured": {field: words}}): the
    report's own `labels` where it has them, else `fmt.default_figure_kinds`."""
    accuracy_source = (report.get("predicted") or {}).get("accuracy_source", "predictor")
    kinds = fmt.default_figure_kinds(profile_kind, "predictor" if accuracy_source == "predictor" else "proxy")
    labels = report.get("labels") or {}
    return {side: {field: fmt.figure_source(str((labels.get(side) or {}).get(field, kind)))
                   for field, kind in fields.items()} for side, fields in kinds.items()}


def card_values(report: Mapping[str, Any], limits: Mapping[str, float],
                latency: Mapping[str, float] | None = None, profile_kind: str | None = "measured") -> list[dict[str, Any]]:
    """The metric cards as data: label (with the budget and its unit), value (the search's
    figure, with its unit), source (what that value is: `fmt.figure_source` words), delta (the
    exported file's figure, with what it is), note, verdict ('within' / 'over' / 'noisy' / None:
    no budget), searched (the latency bound searched, when a safety margin made it tighter). `limits`: the user's budgets (a latency searched with a safety margin is judged
    against the user's budget; the note says what was searched). `latency`: a re-measurement
    {"median_ms", "iqr_ms", "runs"} replacing the report's."""
    predicted = report.get("predicted", {}) or {}
    measured = dict(report.get("measured", {}) or {})
    effective = {**dict(limits), **(report.get("effective_constraints") or {})}
    if limits.get("latency_ms") is not None:
        effective["latency_ms"] = limits["latency_ms"]
    searched_latency = (report.get("searched_constraints") or report.get("constraints") or {}).get("latency_ms")
    if latency is not None:
        measured["latency_ms"], measured["latency_iqr_ms"] = latency["median_ms"], latency["iqr_ms"]
    kinds = figure_kinds(report, profile_kind)

    def number(value) -> float | None:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    def with_source(side: str, field: str, text: str) -> str:
        words = kinds[side].get(field, "")
        short = {"measured here": "measured", "computed analytically": "computed"}.get(words, words)
        return f"{short} {text}"

    acc_p, acc_m = number(predicted.get("accuracy")), number(measured.get("accuracy"))
    # Under the MACs proxy nothing predicts the accuracy: the card says so instead of naming a source.
    ranked_by_macs = acc_p is None and predicted.get("accuracy_source", "predictor") != "predictor"
    cards = [{"field": "accuracy", "label": "Accuracy", "value": fmt.percent(acc_p),
              "source": "" if ranked_by_macs else kinds["predicted"]["accuracy"],
              "delta": None if acc_m is None else with_source("measured", "accuracy", fmt.percent(acc_m)),
              "note": "not predicted: no accuracy predictor, the search ranked by MACs" if ranked_by_macs else None,
              "verdict": None, "searched": None}]
    for field, label, unit, scale in (("latency_ms", "Latency", "ms", 1.0), ("peak_memory_kb", "Peak memory", "KB", 1.0),
                                      ("flash_kb", "Flash", "KB", 1.0), ("macs_m", "MACs", "M", 1e6)):
        key = "macs" if field == "macs_m" else field
        value, real = number(predicted.get(key)), number(measured.get(key))
        value = None if value is None else value / scale
        real = None if real is None else real / scale
        limit = number(effective.get(field))
        shown = (lambda v: fmt.memory_kb(v)) if unit == "KB" else (lambda v, u=unit: fmt.quantity(v, u))
        title = label if limit is None else f"{label} ≤ {fmt.memory_limit(limit) if unit == 'KB' else fmt.budget(limit, unit)}"
        note, verdict = None, None
        if field == "latency_ms" and real is not None:
            iqr = number(measured.get("latency_iqr_ms"))
            delta = with_source("measured", key, fmt.quantity(real, "ms"))
            note = f"median of the runs, IQR {fmt.quantity(iqr, 'ms', 2)}" if iqr is not None else "median of the runs"
            if limit is not None:
                verdict = latency_verdict(real, iqr, limit)
        else:
            delta = None if real is None else with_source("measured", key, shown(real))
            checked = real if real is not None else value
            if limit is not None and checked is not None:
                verdict = "within" if checked <= limit * (1 + 1e-9) else "over"
        searched = None
        if field == "latency_ms" and limit is not None and searched_latency is not None \
                and float(searched_latency) < limit * (1 - 1e-6):
            margin = 1 - float(searched_latency) / limit
            searched = f"searched under {fmt.budget(float(f'{float(searched_latency):.4g}'), 'ms')} ({fmt.percent(margin, 2)} safety margin)"
        cards.append({"field": field, "label": title, "value": "n/a" if value is None else shown(value),
                      "source": kinds["predicted"].get(key, ""), "delta": delta, "note": note, "verdict": verdict,
                      "searched": searched})
    return cards


def metric_cards(report: Mapping[str, Any], limits: Mapping[str, float],
                 latency: Mapping[str, float] | None = None, profile_kind: str | None = "auto") -> str | None:
    """The search's figures (value) and the exported file's (delta) for accuracy, latency, peak
    memory, Flash and MACs of the chosen subnet, every number with its unit and what it is
    (measured here, predicted by a learned model, computed analytically); green within the
    budget, red over it. A measured latency is its median with the spread of its runs, and is
    called over budget only when the spread clears the budget. Returns the latency verdict
    ('within', 'over', 'noisy', None without a measured latency budget)."""
    sources = report.get("measured_sources", {}) or {}
    if profile_kind == "auto":      # the report's profile: its kind says what predicted the latency
        try:
            profile_kind = get_profile(str(report.get("profile"))).kind
        except (*USER_ERRORS, KeyError):
            profile_kind = None
    cols = st.columns(5)
    latency_verdict_ = None
    for col, card in zip(cols, card_values(report, limits, latency, profile_kind)):
        verdict = card["verdict"]
        colour = "off" if verdict is None else ("normal" if verdict == "within" else "inverse")
        col.metric(card["label"], card["value"], card["delta"], delta_color=colour, delta_arrow="off",
                   border=True, help=f"The large number is {card['source']}." if card["source"] else None)
        if card["source"]:
            col.caption(card["source"])
        if card["note"]:
            col.caption(card["note"])
        if card.get("searched"):
            col.caption(card["searched"])
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
            st.markdown("Large numbers: what the search used (**predicted by a learned model** or **computed "
                        "analytically**, as each card says). ≤: the **budget**, including the device's memory. "
                        "The smaller line: the exported file's figure:\n\n"
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


# The search's score on a chart's axis: with the MACs proxy (a package without an accuracy
# predictor) it is the candidate's MACs as a share of the largest subnet's, not an accuracy.
SCORE_TITLES = {"predictor": "predicted accuracy (%)",
                "proxy": "MACs, % of the largest subnet (proxy)"}


def score_title(accuracy_source: str) -> str:
    """The axis title of the search's score for a report's `accuracy_source`."""
    return SCORE_TITLES["predictor" if accuracy_source == "predictor" else "proxy"]


def candidates_chart(result, limits: Mapping[str, float], x_field: str, accuracy_source: str = "predictor") -> Any:
    """The search's score (predicted accuracy, or the MACs proxy's: `score_title`) vs the
    budgeted metric for every evaluated candidate, budget line, chosen point."""
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
                                 y_title=score_title(accuracy_source), tooltip=["iteration", x, "accuracy_pct"])
    import altair as alt
    over = alt.Chart(frame[~frame["feasible"].astype(bool)]).mark_circle(size=18, opacity=0.25, color="#bab0ac").encode(
        x=f"{x}:Q", y="accuracy_pct:Q", tooltip=["iteration", x, "accuracy_pct"])
    return alt.layer(over, *base.layer).properties(height=380)
