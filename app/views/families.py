"""CNN or Transformer? For one device profile and one budget, the best subnet of one package of
each installed network family, side by side: accuracy (predicted and measured), latency, peak
memory, Flash, MACs.

Each subnet is the engine's `specialize` (search, extract, export, accuracy of the exported file
in ONNX Runtime on the package's evaluation images): a few seconds per family on this machine.
The packages are those the supernet picker lists (bundled, and $OFA_SUPERNETS). A profile whose
latency model describes another space (the measured CPU profiles are per space) is said to be so;
a package without an accuracy predictor (ranked by MACs) too. No bundled CPU profile predicts two
spaces (each was fitted to one, on its own reference machine), so the CPU device that compares
the families is this machine: "This machine, T threads" predicts each family through this
machine's profile of that family's space at T threads, offered once every compared space's is
measured (the app measures them at start); until then the page says what is missing."""

from __future__ import annotations

import time
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from app import format as fmt
from app.budgets import default_budget, latency_margin, searched_limits, slider_bounds
from app.layers import subnet_summary
from app.resources import (THIS_MACHINE_THREADS, USER_ERRORS, bundled_profile_names, configure_threads, engine_alone,
                           get_bundled_profile, log, machine_label, md, package_entries, selected_package_path,
                           session_profiles, this_machine_entry, this_machine_profile, this_machine_spaces,
                           this_machine_status, user_errors)
from app.widgets import BUDGETS, keep

RESULT = "families_comparison"   # st.session_state: the last comparison {"settings", "rows"}
SEED, STRATEGY = 0, "evolution"
# Devices that predict every family: this machine, each family through its own space's profile.
MACHINE_DEVICES = {f"This machine, {t} thread{'s' * (t > 1)}": t for t in THIS_MACHINE_THREADS}
GET_ONE = """python -m ofa_engine train --space vit-fmnist --out runs/vit-fmnist --threads 2   # --resume after a stop
python -m ofa_engine package --run runs/vit-fmnist --data IMAGEFOLDER --out supernets/vit-fmnist
OFA_SUPERNETS=supernets make run                                                 # the picker lists it"""


def package_at(path: str) -> Any:
    """The package of a listed path, without its weights (the engine loads each path once)."""
    from ofa_engine.packages import load_package
    return load_package(path, weights=False)


def packages_by_family() -> dict[str, list[Any]]:
    """The usable listed packages (`package_entries`), grouped by their manifest's family, in listing order."""
    groups: dict[str, list[Any]] = {}
    for entry in package_entries():
        if entry.error is None:
            groups.setdefault(entry.manifest.family, []).append(entry)
    return groups


def profile_for(path: str, name: str) -> tuple[Any, Any, str | None]:
    """(the profile `name` as the app resolves it: this session's upload, this machine's measured
    profile (a `MACHINE_DEVICES` entry: of the package's space; cpu-ort-1t...: of that profile's),
    the package's own, the bundled one; the first of those bound to the package's space, or None;
    the engine's reason why none is). A measured CPU profile predicts the latency of the space it
    was fitted to only; an analytical one of any space."""
    package = package_at(path)
    if name in MACHINE_DEVICES:
        threads, space = MACHINE_DEVICES[name], package.space.name
        measured = this_machine_profile(threads, space)
        if measured is None:
            return None, None, (f"this machine's profile of space '{space}' at {threads} thread"
                                f"{'s' * (threads > 1)} is not measured yet")
        return measured, measured.for_space(package.space), None
    candidates = []
    if name in session_profiles():
        candidates.append(session_profiles()[name])
    entry = this_machine_entry(name)
    measured = None if entry is None else this_machine_profile(entry.threads, entry.space)
    if measured is not None:
        candidates.append(measured)
    candidates += [p for p in package.latency_profiles if p.name == name]
    if name in bundled_profile_names():
        candidates.append(get_bundled_profile(name))
    if not candidates:
        return None, None, f"there is no profile '{name}'"
    reason = None
    for profile in candidates:
        try:
            return profile, profile.for_space(package.space), None
        except ValueError as exc:     # ProfileError: its latency model is of another space
            reason = reason or str(exc)
    return candidates[0], None, reason


def machine_missing(spaces: list[str], threads: int) -> list[str]:
    """What this machine's profiles of `spaces` at `threads` lack, one phrase per space (none: ready)."""
    missing = []
    for space in spaces:
        if this_machine_profile(threads, space) is not None:
            continue
        if space not in this_machine_spaces():
            missing.append(f"`{md(space)}`: not measured here (the app measures only the bundled packages' spaces "
                           "that have a bundled CPU profile to start from)")
            continue
        status = this_machine_status(threads, space)
        missing.append(f"`{md(space)}`: measuring at start, {round(100 * status.progress)} % ({md(status.message)})"
                       if status.running else f"`{md(space)}`: {md(status.message)}")
    return missing


def machine_devices(paths: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(the `MACHINE_DEVICES` that predict every compared package: this machine's profiles of
    their spaces at that thread count are all measured; for the others, what is missing)."""
    spaces = list(dict.fromkeys(package_at(path).space.name for path in paths))
    ready, missing = [], {}
    for name, threads in MACHINE_DEVICES.items():
        lacking = machine_missing(spaces, threads)
        if lacking:
            missing[name] = lacking
        else:
            ready.append(name)
    return ready, missing


def offered_profiles(paths: list[str]) -> list[str]:
    """Every profile a compared package can use or is refused by: this machine (when it predicts
    every compared package), the bundled ones, the packages' own, this session's uploads."""
    names = machine_devices(paths)[0] + list(bundled_profile_names())
    for path in paths:
        names += [p.name for p in package_at(path).latency_profiles if p.name not in names]
    return names + [n for n in session_profiles() if n not in names]


def budget_range(path: str, bound: Any, precision: str, field: str) -> tuple[float, float] | None:
    """The achievable (min, max) of `field` for the package on the bound profile (None: no
    profile, no latency range), from the engine's `budget_ranges`."""
    from ofa_engine.pipeline.resources import load_resources
    from ofa_engine.search import budget_ranges
    if bound is None and field == "latency_ms":
        return None
    ranges = budget_ranges(load_resources(package_at(path)).evaluator(bound, precision))
    return float(ranges[field]["min"]), float(ranges[field]["max"])


def searched_bounds(path: str, profile: Any, bound: Any, precision: str, limits: dict[str, float]) -> dict[str, float]:
    """The bounds to search: a latency budget on a measured profile less its safety margin (as on
    Specialize), unless no subnet meets the tightened one; the device's memory added."""
    from ofa_engine.devices.profiles import load_validation
    from ofa_engine.pipeline.resources import load_resources
    from ofa_engine.search import Constraints, InfeasibleBudgetError, check_budget
    searched = dict(limits)
    if bound is not None and "latency_ms" in limits and bound.quality:
        try:
            validation = load_validation(bound)
        except (*USER_ERRORS, KeyError):
            validation = None
        tighter = searched_limits(limits, latency_margin(bound.quality, validation))
        try:
            check_budget(load_resources(package_at(path)).evaluator(bound, precision),
                         Constraints(**tighter).with_device_memory(profile))
            searched = tighter
        except InfeasibleBudgetError:
            pass
    return Constraints(**searched).with_device_memory(profile).to_dict()


def latency_profile_text(profile: Any, bound: Any) -> str:
    """Which profile predicted a row's latency, and whose machine: 'this-machine-1t (this machine
    (X), measured DATE from N subnets)', 'stm32f746'; or that none could."""
    if bound is None:
        return f"none ({getattr(profile, 'name', 'no profile')} has no latency model for this space)"
    name = str(getattr(profile, "name", ""))
    if name.startswith("this-machine-"):
        return f"{name} ({machine_label(int(profile.threads or 1), str(profile.space))})"
    return name


def best_subnet(path: str, profile_name: str, field: str, budget: float) -> dict[str, Any]:
    """One row of the comparison: the package's best subnet under the budget on the profile (the
    engine's `specialize`), or why there is none."""
    from ofa_engine import specialize
    package = package_at(path)
    profile, bound, refusal = profile_for(path, profile_name)
    precision = getattr(profile, "precision", "fp32")
    row: dict[str, Any] = {"family": package.manifest.family, "package": package.name}
    if bound is None and field == "latency_ms":
        return {**row, "note": f"not specialized: {refusal}"}
    limits = searched_bounds(path, profile, bound, precision, {field: float(budget)})
    try:
        report = specialize(bound, limits, strategy=STRATEGY, seed=SEED, supernet=package, precision=precision).report
    except USER_ERRORS as exc:
        return {**row, "note": f"no subnet: {exc}"}
    predicted, measured = report["predicted"], report["measured"]
    return {**row, "subnet": subnet_summary(package.space, report["config"]),
            "accuracy predicted": predicted.get("accuracy"), "accuracy measured": measured["accuracy"],
            "latency predicted (ms)": predicted.get("latency_ms"), "latency measured here (ms)": measured["latency_ms"],
            "peak memory (KB)": measured["peak_memory_kb"], "Flash (KB)": measured["flash_kb"],
            "MACs (M)": measured["macs"] / 1e6, "params (K)": measured["params"] / 1e3,
            "precision": report["precision"], "latency profile": latency_profile_text(profile, bound),
            "ranked by": "accuracy predictor" if predicted["accuracy_source"] == "predictor" else "MACs (proxy)",
            "note": "" if bound is not None else "no latency: the profile has no latency model for this space",
            "config": report["config"]}


# ------------------------------------------------------------------------------ the page
st.title("CNN or Transformer?")
st.markdown(
    "The same device and the same budget, one supernet of each network family: which family gives the "
    "better subnet? Each row below is the engine's `specialize` on that family's package (the search, "
    f"then the subnet extracted, exported to ONNX and measured: seed {SEED}, {STRATEGY} search), so the "
    "figures are those the Specialize page would give for that package.")

groups: dict[str, list[Any]] = {}
with user_errors("Listing the supernet packages"):
    groups = packages_by_family()
if len(groups) < 2:
    installed = ", ".join(f"`{md(family)}`" for family in groups) or "none"
    st.info(f"Only one network family is installed ({installed}): this page needs a package of another one, "
            "e.g. the elastic Vision Transformer (docs/vit.md). Train it, package it and let the app find it "
            "(the sidebar's picker lists the packages of the folder named by OFA_SUPERNETS, docs/packages.md):",
            icon=":material/info:")
    st.code(GET_ONE, language="bash")
    st.stop()

# One package per family: the one picked in the sidebar for its family, else the first listed.
current = selected_package_path()
paths: dict[str, str] = {}
columns = st.columns(len(groups))
for column, (family, entries) in zip(columns, groups.items()):
    options = [str(e.path) for e in entries]
    names = {str(e.path): e.name for e in entries}
    default = keep(f"fam_pkg_{family}", current if current in options else options[0])
    paths[family] = column.selectbox(f"Family `{family}`: package", options,
                                     index=options.index(default) if default in options else 0,
                                     format_func=lambda p, n=names: n.get(p, p), key=f"fam_pkg_{family}")

profile_options = offered_profiles(list(paths.values()))
left, middle = st.columns([2, 1])
default_profile = keep("fam_profile", "stm32f746" if "stm32f746" in profile_options else profile_options[0])
profile_name = left.selectbox("Device profile", profile_options, key="fam_profile",
                              index=profile_options.index(default_profile) if default_profile in profile_options else 0)
field = middle.radio("Budget on", list(BUDGETS), format_func=lambda f: BUDGETS[f][0], key="fam_field",
                     index=list(BUDGETS).index(keep("fam_field", "latency_ms")), horizontal=True)

ready_machine, missing_machine = machine_devices(list(paths.values()))
if missing_machine:
    lacking = "; ".join(f"{md(name)}: " + ", ".join(parts) for name, parts in missing_machine.items())
    st.info("No bundled CPU profile predicts both families (each was fitted to one space, on its own reference "
            "machine). **This machine** does, each family through its own space's profile measured here at the same "
            f"thread count, once those are measured; not yet: {lacking}.", icon=":material/info:")
bound_profiles = {family: profile_for(path, profile_name) for family, path in paths.items()}
if profile_name in MACHINE_DEVICES:
    st.caption(f"**{md(profile_name)}** predicts each family through its own space's profile of this machine "
               "(the same machine, the same thread count): " + "; ".join(
                   f"`{md(family)}` (`{md(package_at(paths[family]).space.name)}`): "
                   f"{md(latency_profile_text(profile, bound))}"
                   for family, (profile, bound, _) in bound_profiles.items()) + ".")
for family, (profile, bound, refusal) in bound_profiles.items():
    package = package_at(paths[family])
    if bound is None:
        consequence = ("a latency budget cannot be applied to it, so it is not specialized" if field == "latency_ms"
                       else "it is specialized under this budget with no latency figure")
        st.warning(f"**`{md(profile_name)}` cannot predict the latency of `{md(package.name)}` "
                   f"(family `{md(family)}`)**: {md(refusal)}. Here {consequence}. The analytical microcontroller "
                   "profiles (stm32*) predict any space's latency.", icon=":material/warning:")
    if package.accuracy_source != "predictor":
        st.info(f"`{md(package.name)}` (family `{md(family)}`) has no accuracy predictor: its search ranks subnets "
                "by MACs (an explicit proxy, the most MACs within budget), so it has no predicted accuracy; its "
                "measured accuracy is that of the exported file.", icon=":material/info:")

label, unit, _, _ = BUDGETS[field]
precisions = {family: getattr(profile, "precision", "fp32") for family, (profile, _, _) in bound_profiles.items()}
ranges: dict[str, tuple[float, float]] = {}
with user_errors("Computing the budget ranges"):
    for family, path in paths.items():
        found = budget_range(path, bound_profiles[family][1], precisions[family], field)
        if found is not None:
            ranges[family] = found
if not ranges:
    st.error(f"No compared package has a {label.lower()} range on `{md(profile_name)}`: pick another profile or "
             "another budget.", icon=":material/error:")
    st.stop()
low, high = min(lo for lo, _ in ranges.values()), max(hi for _, hi in ranges.values())
lo_r, hi_r, step = slider_bounds(low, high)
# Where every family has a subnet, if the ranges overlap.
start = default_budget(min(max(lo for lo, _ in ranges.values()), high), high)
budget = st.slider(f"{label} budget ({unit})", lo_r, hi_r, min(max(start, lo_r), hi_r), step,
                   key=f"fam_budget_{profile_name}_{field}")
st.caption("Achievable on this profile: " + "; ".join(
    f"`{md(family)}` {fmt.sig(lo)}-{fmt.sig(hi)} {unit}" for family, (lo, hi) in ranges.items()) + ".")

settings = (tuple(paths.values()), profile_name, field, float(budget))
if st.button("Find the best subnet of each family", type="primary", icon=":material/compare_arrows:",
             key="fam_run"):
    rows = []
    started = time.perf_counter()
    with st.spinner("Specializing each family's package ..."), engine_alone():
        configure_threads()
        for family, path in paths.items():
            try:
                rows.append(best_subnet(path, profile_name, field, float(budget)))
            except Exception as exc:  # noqa: BLE001 - one family's failure must not hide the others
                log.exception("comparing %s failed", path)
                rows.append({"family": family, "package": package_at(path).name,
                             "note": f"failed unexpectedly ({type(exc).__name__}: {exc})"})
    st.session_state[RESULT] = {"settings": settings, "rows": rows, "elapsed_s": time.perf_counter() - started}

done = st.session_state.get(RESULT)
if done is None:
    st.stop()
if done["settings"] != settings:
    st.caption(":orange[The settings changed since this comparison: click the button again to update it.]")
frame = pd.DataFrame(done["rows"])
shown = [c for c in ("family", "package", "accuracy predicted", "accuracy measured", "latency predicted (ms)",
                     "latency measured here (ms)", "peak memory (KB)", "Flash (KB)", "MACs (M)", "params (K)",
                     "precision", "latency profile", "ranked by", "subnet", "note") if c in frame.columns]
st.dataframe(frame[shown], hide_index=True, width="stretch", key="fam_table", column_config={
    "accuracy predicted": st.column_config.NumberColumn(format="percent"),
    "accuracy measured": st.column_config.NumberColumn(format="percent"),
    **{c: st.column_config.NumberColumn(format="%.3g") for c in shown if "(" in c}})
st.caption(f"{len(frame)} families in {done['elapsed_s']:.1f} s. Measured accuracy: the exported file in ONNX Runtime "
           "on each package's own evaluation images (the sidebar's provenance says which); peak memory: analytic, in "
           "the file's precision; Flash: counted in the file; MACs and params: counted on the extracted network. A "
           "predicted latency is the profile's model (analytical for the stm32 profiles); 'measured here' only "
           "for a profile of this machine.")

metrics = [c for c in ("accuracy measured", "latency predicted (ms)", "peak memory (KB)", "Flash (KB)", "MACs (M)")
           if c in frame.columns]
long = frame.melt(id_vars=["family"], value_vars=metrics, var_name="metric", value_name="value").dropna()
if not long.empty:
    st.altair_chart(alt.Chart(long).mark_bar().encode(
        x=alt.X("family:N", title=None), y=alt.Y("value:Q", title=None), color=alt.Color("family:N", legend=None),
        column=alt.Column("metric:N", sort=metrics, title=None),
        tooltip=["family", "metric", alt.Tooltip("value:Q", format=".4g")],
    ).resolve_scale(y="independent").properties(width=110, height=160), width="content")
