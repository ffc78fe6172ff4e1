"""The sidebar: the supernet picker, the chosen package's description and provenance, and the
status of this machine's latency profile."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app import format as fmt
from app.layers import space_summary
from app.resources import (SUPERNET_KEY, USER_ERRORS, entries_text, get_package, machine_label, md, package_entries,
                           selected_package_path, space_entries, start_this_machine, this_machine_spaces,
                           this_machine_status, unavailable_profile_names, user_errors)


def _entry_label(entry: Any) -> str:
    where = "bundled" if entry.source == "bundled" else f"from {entry.path.parent}"
    return f"{entry.name} ({where})"


def supernet_picker() -> None:
    """Lists the bundled packages and those in $OFA_SUPERNETS; a broken one is shown with its
    error and cannot be chosen. The choice (a path) lives in st.session_state[SUPERNET_KEY]."""
    entries: tuple = ()
    with user_errors("Listing the supernet packages"):
        entries = package_entries()
    usable = [e for e in entries if e.error is None]
    broken = [e for e in entries if e.error is not None]
    paths = [str(e.path) for e in usable]
    labels = {str(e.path): _entry_label(e) for e in usable}
    current = selected_package_path()
    if current not in paths:            # a package that vanished from the folder: back to the bundled one
        st.session_state.pop(SUPERNET_KEY, None)
        current = selected_package_path()
        if current not in paths:
            paths.insert(0, current)
    st.sidebar.selectbox("Supernet", paths, index=paths.index(current), key="supernet_choice",
                         format_func=lambda p: labels.get(p, p), on_change=_picked,
                         help="A supernet package: the bundled one, or those in the folder named by the "
                              "OFA_SUPERNETS environment variable (docs/packages.md).")
    for entry in broken:
        st.sidebar.caption(f":red[**{md(entry.name)}** cannot be used: {md(entry.error)}]")


def _picked() -> None:
    st.session_state[SUPERNET_KEY] = st.session_state["supernet_choice"]
    # Results of another supernet do not describe this one.
    for key in ("specialization", "deployment", "deployment_settings", "deploy_settings", "landscape"):
        st.session_state.pop(key, None)
    from app.widgets import BUDGETS, forget
    for page in ("spec", "cmp"):      # budgets of another space's ranges: back to this one's defaults
        for field in BUDGETS:
            st.session_state.pop(f"{page}_{field}", None)
    forget(tuple(f"{page}_{field}" for page in ("spec", "cmp") for field in BUDGETS))


def describe_package() -> None:
    """The model in one paragraph, its provenance, and which profiles it can use."""
    with user_errors("Loading the supernet package"):
        package = get_package()
        space = package.space
        colour = "grayscale" if package.channels == 1 else f"{package.channels}-channel"
        labels = ", ".join(package.labels[:4]) + (", ..." if package.num_classes > 4 else "")
        st.sidebar.caption(
            f"**The model**: supernet `{md(package.name)}`, a {package.num_classes}-class {colour} image "
            f"classifier ({md(labels)}) trained on {md((package.provenance.get('dataset') or 'unstated data').split(' (')[0])}, "
            + (f"at {min(package.resolutions)}-{max(package.resolutions)} px input. Every subnet you specialize "
               f"is one of its {len(space.resolutions)} resolutions x its elastic choices: "
               if len(space.resolutions) > 1 else
               f"at {space.resolutions[0]} px input. Every subnet you specialize is one of its elastic choices: ")
            + f"{md(space_summary(space))}.")
        if package.accuracy_source != "predictor":
            st.sidebar.caption(":orange[This package has no accuracy predictor: the search ranks subnets by "
                               "MACs (an explicit proxy), and predicted accuracies are not shown.]")
        unavailable = unavailable_profile_names()
        if unavailable:
            st.sidebar.caption(f"Not offered for `{md(space.name)}` (their latency model was fitted to another "
                               f"space): {', '.join(md(n) for n in unavailable)}. Analytical MCU profiles work for "
                               f"any space.")
        with st.sidebar.expander("Provenance of this supernet"):
            provenance = package.provenance
            st.markdown(f"**dataset**: {md(provenance.get('dataset') or 'not stated')}  \n"
                        f"**date**: {md(provenance.get('date') or 'not stated')}  \n"
                        f"**accuracy**: {md(package.accuracy_source)}  \n**from**: `{md(package.origin)}`")
            report = provenance.get("accuracy_report") or {}
            if report:
                st.markdown("**accuracy report**: " + ", ".join(
                    f"{md(k)} {fmt.percent(v) if isinstance(v, float) and 0 <= v <= 1 else md(v)}"
                    for k, v in report.items() if not isinstance(v, (dict, list))))
            for command in provenance.get("commands") or []:
                st.code(command, language="bash")
            if provenance.get("notes"):
                st.caption(md(provenance["notes"]))


def _machine_status_body(space: str) -> None:
    entries = space_entries(space)
    statuses = {e.threads: this_machine_status(e.threads, space) for e in entries}
    replaced = [e for e in entries if e.replaces]     # listed (with the reference's latency) until measured
    running = [s for s in statuses.values() if s.running]
    if st.session_state.get("machine_was_running") and not running:
        st.session_state["machine_was_running"] = False
        st.rerun()    # the whole page: the cpu-ort-1t/2t entries now use this machine's profile
    st.session_state["machine_was_running"] = bool(running)
    if all(s.ready for s in statuses.values()):
        st.caption(f"**This machine**: measured; {md(entries_text([e.name for e in entries]))} predict with its "
                   f"profile ({md(machine_label(1, space))}).")
    elif running:
        progress = min(s.progress for s in running)
        st.progress(progress, text=f"Measuring this machine ({md(running[0].message)})")
        st.caption(f"Until it is ready, {md(entries_text([e.name for e in replaced]))} latencies are the "
                   f"{md(machine_label(1, space))}.")
    else:   # none measured, or some (a run that measured one thread count only, or died)
        missing = [t for t, s in statuses.items() if not s.ready]
        threads = ", ".join(f"{t} thread{'s' * (t > 1)}" for t in missing)
        labels = "; ".join(f"{e.threads} thread{'s' * (e.threads > 1)}: {md(machine_label(e.threads, space))}"
                           for e in replaced)
        st.caption(f"**This machine** is not measured at {threads} ({md(statuses[missing[0]].message)}); "
                   f"{md(entries_text([e.name for e in replaced]))} latencies are from: {labels}.")
    if st.button("Re-measure this machine", key="remeasure_machine", icon=":material/speed:", disabled=bool(running),
                 help=f"Measures ~20 subnets of each bundled space ({', '.join(this_machine_spaces())}) in ONNX "
                      "Runtime at 1 and 2 threads in a background process (about a minute of one core per space) "
                      "and refits this machine's profiles (the cpu-ort-* entries' latency)."):
        with user_errors("Starting the measurement"):
            start_this_machine(refresh=True)
            st.rerun()


def machine_status() -> None:
    """This machine's profile for the chosen package's space: ready, its progress while
    measuring (polled every 2 s), or not measured; and a button to measure again. Only for a
    space this machine is measured for (a bundled package's with a bundled CPU profile)."""
    try:
        space = get_package().space.name
    except USER_ERRORS:
        return
    if space not in this_machine_spaces():
        return
    running = any(this_machine_status(e.threads, space).running for e in space_entries(space))
    with st.sidebar:
        fragment = getattr(st, "fragment", None)
        if fragment is not None and running:     # polled while measuring; a plain block otherwise
            fragment(run_every=2.0)(_machine_status_body)(space)
        else:
            _machine_status_body(space)
