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
import re
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
SUPERNET = "tiny-fmnist"
PREDICTOR_CSV = ROOT / "assets" / "supernets" / SUPERNET / "accuracy-dataset.csv"
PROFILES_DIR = ROOT / "assets" / "profiles"
MAX_UPLOAD_BYTES = 512 * 1024  # profile CSVs / JSONs are a few KB; keep uploads small
MAX_IMAGE_UPLOAD_BYTES = 1000 * 1024   # an image to classify (Streamlit itself refuses > 1 MB)
MAX_IMAGE_UPLOAD_PIXELS = 4096 * 4096  # checked from the header before the image is decoded

log = logging.getLogger("ofa_app")

# Errors a user can cause: the engine raises these with a message naming the field, the value
# and what is allowed (ValueError covers InfeasibleBudgetError and ProfileError).
USER_ERRORS = (ValueError, FileNotFoundError, KeyError)


def configure_threads() -> None:
    """One torch thread per request by default: the server runs several sessions on few cores.
    Only once torch is loaded (by the warm-up or a page that needs it): the home page's first run
    does not wait for torch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    threads = int(os.environ.get("OFA_APP_TORCH_THREADS", "1"))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


_WARMUP: list[threading.Thread] = []
_WARMUP_LOCK = threading.Lock()


def start_warmup() -> threading.Thread:
    """Load torch, the supernet, the predictor, the data and the default profile's budget ranges
    in a background thread, once per process. The first page renders meanwhile; whatever needs
    them waits for the engine's own lock (`load_resources`), so nothing is loaded twice."""
    with _WARMUP_LOCK:
        if not _WARMUP:
            def warm() -> None:
                import time
                clock, steps = time.perf_counter(), []

                def done(what: str) -> None:
                    nonlocal clock
                    steps.append(f"{what} {time.perf_counter() - clock:.2f} s")
                    clock = time.perf_counter()
                try:
                    import altair, pandas  # noqa: F401 - the home page's own imports, meanwhile
                    done("altair+pandas")
                    import torch
                    torch.set_num_threads(int(os.environ.get("OFA_APP_TORCH_THREADS", "1")))
                    done("torch")
                    from ofa_engine.devices.profiles import load_profile
                    from ofa_engine.pipeline.specialize import load_resources
                    resources = load_resources(SUPERNET)
                    done("supernet+predictor+data")
                    from ofa_engine.search import budget_ranges
                    budget_ranges(resources.evaluator(load_profile("cpu-ort-1t")))
                    done("budget ranges")
                    log.info("engine warm: %s", ", ".join(steps))
                except Exception:  # noqa: BLE001 - the page that needs it reports the error
                    log.exception("warming up the engine failed")
            thread = threading.Thread(target=warm, name="ofa-warmup", daemon=True)
            thread.start()
            _WARMUP.append(thread)
        return _WARMUP[0]


# Inline Markdown of st.markdown / st.error (emphasis, code, links, HTML, math, colour and icon
# directives); user text in an error message never starts a line, so block syntax cannot apply.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>~$:|])")


def md(text: object) -> str:
    """`text` with its Markdown characters escaped (and on one line), to show user-supplied
    text (a profile's name, an uploaded value quoted in an error) in st.markdown / st.error as
    it is: `__import__` stays `__import__`, not a bold 'import'."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


@contextlib.contextmanager
def user_errors(what: str) -> Iterator[None]:
    """Show an exception raised inside the block as an `st.error` message, never a traceback.

    Errors a user can cause show the engine's message as is; anything else is logged with its
    traceback on the server and shown as a short message."""
    try:
        yield
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        st.error(f"{what}: {md(message)}", icon=":material/error:")
    except Exception as exc:  # noqa: BLE001 - the app must not show a traceback
        log.exception("%s failed", what)
        st.error(f"{what} failed unexpectedly ({type(exc).__name__}: {md(exc)}). "
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


@st.cache_resource(show_spinner=False, max_entries=8)
def _onnx_session(onnx_bytes: bytes):
    from ofa_engine.runtime.ort import make_session
    return make_session(onnx_bytes, threads=1, allow_spinning=False)


def classify(onnx_bytes: bytes, images: np.ndarray, image_size: int) -> np.ndarray:
    """Class probabilities (N, classes) of uint8 `images` (N,H,W[,C]) by the ONNX file, run in
    ONNX Runtime here, the images preprocessed by the engine's one preprocessing function."""
    from ofa_engine.runtime.preprocess import preprocess
    session = _onnx_session(onnx_bytes)
    x = preprocess(np.ascontiguousarray(images), get_space(), image_size).numpy()
    (name,) = [i.name for i in session.get_inputs()]
    logits = np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    logits = logits - logits.max(1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


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
