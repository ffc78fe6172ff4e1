"""Device profiles: the bundled ones and their predictor quality; upload your own; the kit."""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from app import format as fmt
from app.resources import (MAX_UPLOAD_BYTES, USER_ERRORS, bundled_profile_names, device_name, get_profile, get_space,
                           latency_source, log, md, profile_names, session_profiles, unavailable_profile_names,
                           user_errors)
from ofa_engine.devices.profiles import load_profile, load_validation
from ofa_engine.files import loads_json

st.title("Device profiles")
st.markdown("A profile says how fast subnets run on a device (a latency model fitted to "
            "measurements, or an analytical model for microcontrollers) and how much memory it has. "
            "Bring your own device: run the **profile kit** on it and upload the CSV it writes.")

if "profile_flash" in st.session_state:
    st.success(st.session_state.pop("profile_flash"), icon=":material/check_circle:")


def summary_row(name: str) -> dict:
    profile = get_profile(name)
    quality = profile.quality or {}
    memory = dict(profile.memory)
    # An analytical model was not fitted to measurements: it has no held-out score to show (its
    # kind says why; the first score says so too, the others stay narrow).
    none = "n/a"

    def score(key: str, show) -> str:
        return show(quality[key]) if quality.get(key) is not None else none

    # The quality columns right after the name: at 1400 px the later columns scroll off-screen.
    # Text, formatted here (app.format): a number column would show a missing score as "None".
    return {"profile": name, "device": device_name(profile),
            "MAPE": score("mape", fmt.percent) if profile.kind != "analytical" else "n/a (analytical)", "Kendall tau": score("kendall_tau", lambda v: f"{v:.3f}"),
            "RMSE": score("rmse_ms", lambda v: fmt.quantity(v, "ms")),
            "within 10 %": score("within_10pct", fmt.percent),
            "held-out subnets": score("n_test", lambda v: f"{int(v)}"),
            "latency model": profile.latency_model.to_dict().get("type"),
            "SRAM/RAM": fmt.memory_limit(memory.get("sram_kb", memory.get("ram_kb")))
            if memory.get("sram_kb", memory.get("ram_kb")) is not None else "no limit",
            "Flash": fmt.memory_limit(memory["flash_kb"]) if memory.get("flash_kb") is not None else "no limit",
            "kind": profile.kind, "source": "this session" if name in session_profiles() else "bundled",
            "threads": str(profile.threads) if profile.threads is not None else "n/a",   # one type per column
            "batch": profile.batch_size, "latency from": latency_source(profile)}


rows = []
with user_errors("Loading the profiles"):
    rows = [summary_row(n) for n in profile_names()]
unavailable = unavailable_profile_names()
st.caption(f"Profiles for the space `{md(get_space().name)}` of the chosen supernet."
           + (f" Not offered (their latency model was fitted to another space): {md(', '.join(unavailable))}; "
              "analytical MCU profiles work for any space, a measured one needs the profile kit run for this "
              "space (`profile-kit --supernet PKG`, then `fit-profile --supernet PKG`)." if unavailable else ""))
if rows:
    st.caption("How good each latency model is, on subnets measured on the device but kept out of the fit: "
               "MAPE is the average error (lower is better), Kendall tau how well it orders the subnets (1: "
               "perfectly); an analytical profile was not fitted to measurements, so it has no score.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "device": st.column_config.TextColumn(width="large"),
        "latency from": st.column_config.TextColumn(width="medium")})


def validation_chart(measured: np.ndarray, predicted: np.ndarray) -> alt.LayerChart:
    """Predicted against measured latency on one square chart: both axes share one domain, so
    the dashed diagonal is y = x and a point's distance from it is the prediction error."""
    frame = pd.DataFrame({"measured (ms)": measured, "predicted (ms)": predicted,
                          "error (%)": (predicted / measured - 1) * 100})
    hi = float(max(frame["measured (ms)"].max(), frame["predicted (ms)"].max())) * 1.05
    lo = float(min(frame["measured (ms)"].min(), frame["predicted (ms)"].min())) * 0.95
    scale = alt.Scale(domain=[lo, hi], nice=False, zero=False)
    x = alt.X("measured (ms):Q", title="latency measured on the device (ms)", scale=scale)
    y = alt.Y("predicted (ms):Q", title="latency predicted by the model (ms)", scale=scale)
    line = alt.Chart(pd.DataFrame({"measured (ms)": [lo, hi], "predicted (ms)": [lo, hi]})).mark_line(
        color="#888", strokeDash=[4, 4], clip=True).encode(x=x, y=y)
    points = alt.Chart(frame).mark_circle(size=50, opacity=0.7).encode(
        x=x, y=y, tooltip=[alt.Tooltip(c, format=".3f") for c in frame.columns])
    return (line + points).properties(width=360, height=360)


@st.cache_data(show_spinner=False, max_entries=16)
def analytical_curve(profile_json: str) -> pd.DataFrame:
    from app.layers import family
    space = get_space()
    profile = load_profile(json.loads(profile_json), space=space)
    fam = family(space)
    pop = fam.decode(fam.genome.random(400, np.random.default_rng(0)))
    return pd.DataFrame({"MACs (M)": fam.analyze(pop)["macs"] / 1e6,
                         "predicted latency (ms)": profile.predict_latency_ms(pop)})


def add_session_profile(profile, validation=None) -> None:
    if profile.name in bundled_profile_names():
        raise ValueError(f"profile name '{profile.name}' is taken by a bundled profile; allowed: any other "
                         f"name (bundled: {', '.join(bundled_profile_names())})")
    session_profiles()[profile.name] = profile
    if validation is not None:
        st.session_state.setdefault("session_validation", {})[profile.name] = validation


def calibrate_button(profile) -> None:
    """Measure a few reference subnets now and add the profile rescaled to this machine's speed
    at that moment (docs/latency-calibration.md)."""
    from ofa_engine.devices.calibration import DEFAULT_SUBNETS
    st.caption("This server's speed drifts. Calibrating measures "
               f"{DEFAULT_SUBNETS} reference subnets now (a few seconds) and adds a copy of this "
               "profile rescaled to the speed measured. It helps when the speed has shifted and "
               "stays shifted; on a shared VM whose speed moves within seconds it does not.")
    if not st.button("Calibrate to this machine now", key="calibrate", icon=":material/speed:"):
        return
    from ofa_engine.devices.calibration import calibrate_profile
    with st.spinner(f"Measuring {DEFAULT_SUBNETS} reference subnets with ONNX Runtime ..."), \
            user_errors("Calibrating the profile"):
        result = calibrate_profile(profile)
        add_session_profile(result.profile, {
            "measured_ms": result.measured_ms, "predicted_ms": result.predicted_ms * result.scale,
            "what": "reference subnets measured for the calibration (in-sample)"})
        log.info("profile %s calibrated: %s", profile.name, result.summary())
        st.session_state["profile_flash"] = (
            f"Profile '{md(result.profile.name)}' added: this machine now runs these subnets at "
            f"{result.scale:.2f}x the latency '{md(profile.name)}' predicts ({len(result.configs)} subnets measured "
            f"in {result.seconds:.1f} s). Pick it on the Specialize page; it lives in this session only.")
    if "profile_flash" in st.session_state:
        st.rerun()


# ------------------------------------------------------------------------------ one profile
st.header("Predictor quality")
names = profile_names()
if names:
    name = st.selectbox("Profile", names, key="prof_detail")   # the table above says which are this session's
    with user_errors("Showing the profile"):
        profile = get_profile(name)
        validation = (st.session_state.get("session_validation", {}).get(name) if name in session_profiles()
                      else load_validation(name if profile.name == name else profile))
        left, right = st.columns([3, 2])
        with left:
            if validation is not None:
                what = validation.get("what", "held-out subnets")
                st.markdown(f"**Latency predicted by the model vs measured on the device**, on "
                            f"{len(validation['measured_ms'])} {what} (dashed: prediction = measurement)")
                st.altair_chart(validation_chart(np.asarray(validation["measured_ms"]),
                                                 np.asarray(validation["predicted_ms"])), width="content")
            else:
                # What the curve is depends on the profile: a formula, or a model fitted to measurements
                # whose held-out data is not at hand (this machine's profile, an uploaded JSON).
                if profile.quality:
                    st.markdown(f"**Latency {fmt.figure_source('learned_model')} vs MACs** (400 random subnets; "
                                "the measurements it was fitted to are not shown here: its scores are on the right)")
                else:
                    st.markdown(f"**Latency {fmt.figure_source('analytical')} vs MACs** (400 random subnets; "
                                "no device measured)")
                st.altair_chart(alt.Chart(analytical_curve(profile.to_json())).mark_circle(size=20).encode(
                    x=alt.X("MACs (M):Q", title="MACs (millions)"),
                    y=alt.Y("predicted latency (ms):Q", title="latency of the profile's model (ms)"),
                ).properties(height=340), width="stretch")
        with right:
            if profile.quality:
                q = profile.quality
                st.markdown(f"On {int(q.get('n_test') or 0)} subnets measured on the device but kept out of the "
                            f"fit, the model was off by {fmt.percent(q['mape'])} on average (MAPE) and ranked them "
                            f"almost as measured (Kendall tau: 1 is the same order).")
                a, b = st.columns(2)
                a.metric("MAPE", fmt.percent(q["mape"]))
                b.metric("Kendall tau", fmt.sig(q["kendall_tau"]))
                a.metric("RMSE", fmt.quantity(q["rmse_ms"], "ms"))
                b.metric("within 10 %", fmt.percent(q["within_10pct"]))
            provenance = dict(profile.provenance)
            st.caption("Provenance (as the profile states it):")
            st.text(f"machine: {provenance.get('machine')}\ndate: {provenance.get('date')}\n"
                    f"command: {provenance.get('command')}")
            st.download_button("Download profile JSON", profile.to_json(), file_name=f"{profile.name}.json",
                               mime="application/json", icon=":material/download:", on_click="ignore")
            with st.expander("Profile JSON"):
                st.json(profile.to_dict(), expanded=False)
            if profile.measures_locally:
                calibrate_button(profile)

# ------------------------------------------------------------------------------ your own device
st.header("Add your device")


@contextlib.contextmanager
def server_paths_hidden(tmp: str):
    """Re-raise a user error without the server's temporary folder in its message: it names the
    uploaded file as the user called it."""
    try:
        yield
    except USER_ERRORS as exc:
        text = str(exc)
        hidden = re.sub(re.escape(str(Path(tmp))) + r"/(\d+/)?", "", text)
        if hidden == text:
            raise
        raise ValueError(hidden) from None


def read_upload(upload, kind: str) -> bytes:
    data = upload.getvalue()
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(f"{kind} '{upload.name}' is {len(data):,} bytes; allowed: at most {MAX_UPLOAD_BYTES:,}")
    if not data.strip():
        raise ValueError(f"{kind} '{upload.name}' is empty")
    return data


# A key keeps the open tab across reruns (an upload reruns the page; without it the page jumped
# back to the first tab and hid the button that goes with the upload).
kit_tab, csv_tab, json_tab = st.tabs(["1. Download the profile kit", "2. Upload measured latencies (CSV)",
                                      "Upload a profile (JSON)"], key="add_device_tab", on_change="rerun")
with kit_tab:
    kit_kind = st.radio("Your device", ["runs Python (a CPU, a phone, a board with Linux)", "a microcontroller"],
                        horizontal=True, key="kit_kind")
mcu_kit = kit_kind == "a microcontroller"
with kit_tab:
    if mcu_kit:
        from ofa_engine.devices.mcu_kit import DEFAULT_MCU_KIT_SUBNETS
        st.markdown("A microcontroller runs no Python: this kit holds N **int8** ONNX files that fit the chosen "
                    "board (static batch-1 input, standard operators: what STM32Cube.AI / X-CUBE-AI imports; "
                    "TFLite Micro after your own onnx2tf conversion), a `results.csv` template and a README. "
                    "Time each file on the board with your toolchain, fill in `latency_ms`, and upload the "
                    "file in tab 2: the fitted profile keeps the board's SRAM and Flash.")
        boards = [n for n in profile_names() if get_profile(n).memory.get("flash_kb") is not None]
        board = st.selectbox("Board (its SRAM and Flash limit the files)", boards, key="mcu_kit_board")
        n = st.slider("Subnets in the kit", 20, 60, DEFAULT_MCU_KIT_SUBNETS, step=1, key="mcu_kit_n")
    else:
        st.markdown("The kit holds N subnets as ONNX files, a manifest and a runner that needs only "
                    "Python, numpy and onnxruntime: copy it to the device, run "
                    "`python runner.py .` and it writes `results.csv`.")
        n = st.slider("Subnets in the kit", 20, 200, 60, step=10, key="kit_n")
    if mcu_kit and st.button("Prepare the microcontroller kit", icon=":material/memory:"):
        from ofa_engine.devices.mcu_kit import mcu_kit_zip_bytes
        bar = st.progress(0.0, text=f"Quantizing {n} subnets to int8 ONNX ...")

        def mcu_kit_progress(done: int, total: int, message: str) -> None:   # the engine's Progress
            bar.progress(min(done / max(total, 1), 1.0), text=f"{done} of {total}: {message}")

        with user_errors("Building the microcontroller kit"):
            st.session_state["mcu_kit_zip"] = (board, n, mcu_kit_zip_bytes(get_space(), board, n=n,
                                                                           progress=mcu_kit_progress))
        bar.empty()
    if mcu_kit and "mcu_kit_zip" in st.session_state:
        kit_board, kit_n, kit = st.session_state["mcu_kit_zip"]
        st.download_button(f"Download the {kit_board} kit ({kit_n} int8 files, {fmt.memory_bytes(len(kit))})", kit,
                           file_name=f"ofa-mcu-kit-{kit_board}.zip", mime="application/zip",
                           icon=":material/download:", on_click="ignore")
    if not mcu_kit and st.button("Prepare the profile kit", icon=":material/inventory_2:"):
        from ofa_engine.devices.profile_kit import kit_zip_bytes
        bar = st.progress(0.0, text=f"Exporting {n} subnets to ONNX ...")

        def kit_progress(done: int, total: int, message: str) -> None:   # the engine's Progress
            bar.progress(min(done / max(total, 1), 1.0), text=f"{done} of {total}: {message}")

        with user_errors("Building the kit"):
            st.session_state["kit_zip"] = (n, kit_zip_bytes(get_space(), n=n, progress=kit_progress))
        bar.empty()
    if not mcu_kit and "kit_zip" in st.session_state:
        kit_n, kit = st.session_state["kit_zip"]
        st.download_button(f"Download profile kit ({kit_n} subnets, {fmt.memory_bytes(len(kit))})", kit,
                           file_name="ofa-profile-kit.zip", mime="application/zip",
                           icon=":material/download:", on_click="ignore")

with csv_tab:
    st.markdown("Upload the kit's `results.csv` (columns `file,config,median_ms,q1_ms,q3_ms,runs,threads,"
                "batch_size`; or the microcontroller kit's template with `latency_ms` filled in, one run). "
                "A latency model is fitted on 80 % of the subnets and scored on the rest; the "
                "profile lives in this browser session only. On a noisy device, run the kit several times "
                "and upload every `results.csv`: each subnet's latency is then the geometric mean of its runs.")
    c1, c2, c3 = st.columns(3)
    new_device = c1.text_input("Device name", "my device", max_chars=64, key="csv_name")
    ram_kb = c2.number_input("RAM for activations (KB, 0 = unlimited)", 0, 10_000_000, 0, key="csv_ram")
    flash_kb = c3.number_input("Flash / storage for weights (KB, 0 = unlimited)", 0, 10_000_000, 0, key="csv_flash")
    uploads = st.file_uploader("Latency CSV (one or more runs of the same kit)", type=["csv"], key="csv_upload",
                               accept_multiple_files=True)
    if st.button("Create profile", disabled=not uploads, key="csv_create"):
        from ofa_engine.devices.profile_kit import fit_profile_from_csv
        with user_errors("The latency CSV"), tempfile.TemporaryDirectory(prefix="ofa-upload-") as tmp, \
                server_paths_hidden(tmp):
            paths = []
            for i, upload in enumerate(uploads):
                # One folder per upload, the file under the user's own name: errors name that.
                (Path(tmp) / str(i + 1)).mkdir()
                paths.append(Path(tmp) / str(i + 1) / (Path(upload.name).name or "results.csv"))
                paths[-1].write_bytes(read_upload(upload, "CSV"))
            validation_path = Path(tmp) / "validation.csv"
            profile = fit_profile_from_csv(paths, new_device, space=get_space(), ram_kb=ram_kb or None,
                                           flash_kb=flash_kb or None, validation_out=validation_path,
                                           command="uploaded in the app")
            held = pd.read_csv(validation_path)
            add_session_profile(profile, {"measured_ms": held["measured_ms"].to_numpy(),
                                          "predicted_ms": held["predicted_ms"].to_numpy()})
            st.session_state["profile_flash"] = (
                f"Profile '{md(profile.name)}' created: held-out MAPE {fmt.percent(profile.quality['mape'])}, Kendall tau "
                f"{profile.quality['kendall_tau']:.3f}. It is now in the profile lists of every page "
                f"(this session only).")
        if "profile_flash" in st.session_state:
            st.rerun()

with json_tab:
    st.markdown("A profile JSON (`\"format\": \"ofa-engine/device-profile\"`), e.g. downloaded from "
                "this page. It is validated field by field; nothing in it is executed.")
    upload_json = st.file_uploader("Profile JSON", type=["json"], key="json_upload")
    if st.button("Add profile", disabled=upload_json is None, key="json_add"):
        with user_errors("The profile JSON"):
            data = read_upload(upload_json, "JSON file")
            # Bounded parse (size, nesting depth) as for every user JSON in the engine.
            parsed = loads_json(data, f"'{upload_json.name}'")
            if not isinstance(parsed, dict):
                raise ValueError(f"a profile is a JSON object, got {type(parsed).__name__}")
            profile = load_profile(parsed, space=get_space())   # refuses a profile of another space
            add_session_profile(profile)
            log.info("session profile %s added", profile.name)
            st.session_state["profile_flash"] = f"Profile '{md(profile.name)}' added for this session."
        if "profile_flash" in st.session_state:
            st.rerun()
