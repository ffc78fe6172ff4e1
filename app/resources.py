"""What the pages share: heavy engine objects (loaded once per process) and error display.

Everything returned by an `st.cache_resource` function here is shared by every session of the
server, so the pages only read it: the supernet's `forward`/`extract` take the subnet as an
argument (no active-subnet state), predictors and profiles are immutable, and per-user data
(uploaded profiles, results) lives in `st.session_state`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
SUPERNET = "tiny-fmnist"
PREDICTOR_CSV = ROOT / "assets" / "supernets" / SUPERNET / "accuracy-dataset.csv"
PROFILES_DIR = ROOT / "assets" / "profiles"
MAX_UPLOAD_BYTES = 512 * 1024  # profile CSVs / JSONs are a few KB; keep uploads small

log = logging.getLogger("ofa_app")

# Errors a user can cause: the engine raises these with a message naming the field, the value
# and what is allowed (ValueError covers InfeasibleBudgetError and ProfileError).
USER_ERRORS = (ValueError, FileNotFoundError, KeyError)


def configure_threads() -> None:
    """One torch thread per request by default: the server runs several sessions on few cores."""
    import torch
    threads = int(os.environ.get("OFA_APP_TORCH_THREADS", "1"))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def user_errors(what: str) -> Iterator[None]:
    """Show an exception raised inside the block as an `st.error` message, never a traceback.

    Errors a user can cause show the engine's message as is; anything else is logged with its
    traceback on the server and shown as a short message."""
    try:
        yield
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        st.error(f"{what}: {message}", icon=":material/error:")
    except Exception as exc:  # noqa: BLE001 - the app must not show a traceback
        log.exception("%s failed", what)
        st.error(f"{what} failed unexpectedly ({type(exc).__name__}: {exc}). "
                 f"The server log has the details.", icon=":material/error:")


# ------------------------------------------------------------------------------------ engine
@st.cache_resource(show_spinner=False)
def get_space():
    from ofa_engine import SearchSpace
    return SearchSpace.preset(SUPERNET)


@st.cache_resource(show_spinner="Loading the supernet and predictors ...")
def get_engine():
    """The engine's process-wide resources (supernet, accuracy predictor, data, evaluators per
    profile), the same objects `specialize` uses, so they are loaded once."""
    from ofa_engine.pipeline.specialize import load_resources
    return load_resources(SUPERNET)


@st.cache_resource(show_spinner="Loading the supernet ...")
def _own_supernet():
    from ofa_engine import load_supernet
    return load_supernet(SUPERNET).eval()


def get_supernet():
    """The trained supernet (read only: forward/extract take the subnet as an argument)."""
    try:
        return get_engine().supernet
    except (ImportError, FileNotFoundError):  # predictor or search not in this checkout: the net alone
        return _own_supernet()


@st.cache_resource(show_spinner=False)
def get_split(name: str):
    from ofa_engine.datasets.images import load_split
    return load_split(name)


def get_accuracy_predictor():
    return get_engine().predictor


@st.cache_resource(show_spinner=False)
def bundled_profile_names() -> tuple[str, ...]:
    from ofa_engine.devices.profiles import list_profiles
    return tuple(list_profiles())


@st.cache_resource(show_spinner=False)
def get_bundled_profile(name: str):
    from ofa_engine.devices.profiles import load_profile
    return load_profile(name)


def session_profiles() -> dict[str, Any]:
    """Profiles uploaded in this browser session (never shared between users)."""
    return st.session_state.setdefault("session_profiles", {})


def profile_names() -> list[str]:
    return list(bundled_profile_names()) + [n for n in session_profiles() if n not in bundled_profile_names()]


def get_profile(name: str):
    custom = session_profiles()
    return custom[name] if name in custom else get_bundled_profile(name)


def profile_label(name: str) -> str:
    """'Display name [name]' of a bundled profile, 'name (this session)' of an uploaded one. The
    label needs no session state: a select box formats its value outside the script run too."""
    if name not in bundled_profile_names():
        return f"{name} (this session)"
    try:
        return f"{get_bundled_profile(name).display_name} [{name}]"
    except USER_ERRORS:
        return name


def get_evaluator(name: str):
    """The search evaluator of a profile: the engine keeps one per profile (with its cached
    budget ranges) and replaces it when a session uploads a different profile of that name."""
    return get_engine().evaluator(get_profile(name))


# ------------------------------------------------------------------------------------ data
@st.cache_data(show_spinner=False)
def predictor_samples() -> "Any | None":
    """The accuracy predictor's training data (config, macs, accuracy) as a DataFrame, or None."""
    import pandas as pd
    if not PREDICTOR_CSV.exists():
        return None
    frame = pd.read_csv(PREDICTOR_CSV)
    missing = {"config", "macs", "accuracy"} - set(frame.columns)
    if missing:
        log.warning("%s lacks columns %s", PREDICTOR_CSV, sorted(missing))
        return None
    return frame


@st.cache_data(show_spinner=False, max_entries=4)
def measured_samples(n: int, seed: int, images: int) -> "Any":
    """Accuracy of `n` random subnets measured on `images` test images (BN recalibrated on as
    many calibration images): the slow fallback when no predictor data is bundled."""
    import pandas as pd
    from ofa_engine import analyze, extract_calibrated
    from ofa_engine.runtime.evaluation import accuracy

    space, supernet = get_space(), get_supernet()
    calib, test = get_split("calib"), get_split("test2k")
    calib = calib.subset(np.arange(min(images, len(calib))))
    test = test.subset(np.arange(min(images, len(test))))
    configs = [space.sample(np.random.default_rng([seed, i])) for i in range(n)]
    macs = analyze(space, configs)["macs"]
    rows = []
    for cfg, m in zip(configs, macs):
        net = extract_calibrated(supernet, cfg, calib)
        rows.append({"config": cfg.to_json(), "macs": int(m),
                     "accuracy": float(accuracy(net, test.images, test.labels, space))})
    return pd.DataFrame(rows)
