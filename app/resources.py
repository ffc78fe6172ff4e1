"""What the pages share: heavy engine objects (loaded once per process) and error display.

Everything returned by an `st.cache_resource` function here is shared by every session of the
server, so the pages only read it: the supernet's `forward`/`extract` take the subnet as an
argument (no active-subnet state), predictors and profiles are immutable, and per-user data
(uploaded profiles, results) lives in `st.session_state`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import streamlit as st

from ofa_engine.runtime.common import QuantizationRefusedError   # no torch / ONNX: light

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_SUPERNET = "tiny-fmnist"   # the default package; its space's this-machine profiles are measured first
SUPERNET_KEY = "supernet"          # st.session_state: the chosen package's path (a str)
PREDICTOR_CSV_NAME = "accuracy-dataset.csv"
PROFILES_DIR = ROOT / "assets" / "profiles"
MAX_UPLOAD_BYTES = 512 * 1024  # profile CSVs / JSONs are a few KB; keep uploads small
MAX_IMAGE_UPLOAD_BYTES = 1000 * 1024   # an image to classify (Streamlit itself refuses > 1 MB)
MAX_IMAGE_UPLOAD_PIXELS = 4096 * 4096  # checked from the header before the image is decoded

log = logging.getLogger("ofa_app")

# Errors a user can cause or act on: the engine raises these with a message naming the field,
# the value and what is allowed (ValueError covers InfeasibleBudgetError and ProfileError), and
# an int8 file that disagrees with its float model is refused with the measured agreement. Not
# KeyError: the engine turns a user's missing field or unknown name into a ValueError, so a
# KeyError is a bug, logged with its traceback and never shown as the user's mistake.
USER_ERRORS = (ValueError, FileNotFoundError, QuantizationRefusedError)


_TORCH_READY = threading.Event()   # set once `import torch` has finished (the warm-up's, or a page's)


def configure_threads() -> None:
    """One torch thread per request by default: the server runs several sessions on few cores.
    Only once torch is loaded (by the warm-up or a page that needs it): the home page's first run
    does not wait for torch. A torch still being imported by the warm-up thread is a partly
    initialised module: left alone (the warm-up sets the threads when its import is over)."""
    if not _TORCH_READY.is_set():
        torch = sys.modules.get("torch")
        spec = getattr(torch, "__spec__", None)
        if torch is None or spec is None or getattr(spec, "_initializing", False):
            return
        _TORCH_READY.set()
    import torch
    threads = int(os.environ.get("OFA_APP_TORCH_THREADS", "1"))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------- warm-up
@dataclass(frozen=True)
class WarmupStep:
    """One step of the warm-up: `name` for the server log, `label` for a page that waits on it.
    `needed`: a specialization waits for it (the needed steps come first); the others run only
    while no specialization does. `ahead`: it only pays a first specialization's costs ahead of
    time, so it is skipped once a specialization has run (that one paid them)."""

    name: str
    label: str
    run: Callable[[], object]
    needed: bool = True
    ahead: bool = False


class Warmup:
    """Steps run once each, in order, in one background thread (`start` starts it once, however
    many sessions and reruns call it). A specialization runs inside `alone()`: it waits for the
    needed steps and for the step running, and no step starts while it runs. A step that raises
    ends the warm-up (logged): what needed it raises the same error again where it is used, and
    the page shows it."""

    def __init__(self, steps: Sequence[WarmupStep], then: Callable[[], object] | None = None,
                 name: str = "ofa-warmup"):
        self.steps = tuple(steps)
        needed = [i for i, step in enumerate(self.steps) if step.needed]
        if needed and needed[-1] != len(needed) - 1:
            raise ValueError(f"warm-up steps {[s.name for s in self.steps]}: the needed ones must come first")
        self._needed = len(needed)
        self.then = then   # run after the steps, failed or not, in the same thread
        self.name = name
        self.seconds: dict[str, float] = {}   # step name -> its wall time, once it has run
        self.skipped: list[str] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._next = 0            # index of the step running or about to run (len(steps): finished)
        self._busy = False        # a step is running
        self._finished = False
        self._alone = 0           # specializations running (or waiting to run) alone
        self._used = False        # a specialization has started

    def start(self) -> threading.Thread:
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            return self._thread

    @property
    def started(self) -> bool:
        with self._changed:
            return self._thread is not None

    @property
    def finished(self) -> bool:
        with self._changed:
            return self._finished

    def _run(self) -> None:
        try:
            for index, step in enumerate(self.steps):
                with self._changed:
                    self._next = index
                    self._changed.notify_all()
                    while not step.needed and self._alone:
                        self._changed.wait()
                    if step.ahead and self._used:
                        self.skipped.append(step.name)
                        continue
                    self._busy = True
                started = time.perf_counter()
                try:
                    step.run()
                finally:
                    with self._changed:
                        self._busy = False
                        self._changed.notify_all()
                self.seconds[step.name] = time.perf_counter() - started
                log.info("warm-up: %s done (%.2f s)", step.name, self.seconds[step.name])
        except Exception:  # noqa: BLE001 - the page that needs it raises it again and shows it
            log.exception("warming up the engine failed")
        finally:
            with self._changed:
                self._finished = True
                self._next = len(self.steps)
                self._changed.notify_all()
            log.info("engine warm: %s%s", ", ".join(f"{name} {s:.2f} s" for name, s in self.seconds.items()),
                     f"; skipped: {', '.join(self.skipped)}" if self.skipped else "")
            if self.then is not None:
                self.then()

    def _ready(self) -> bool:
        return self._finished or self._thread is None or (self._next >= self._needed and not self._busy)

    @contextlib.contextmanager
    def alone(self, on_step: Callable[[int, int, str], None] | None = None,
              tick_s: float = 0.25) -> Iterator[bool]:
        """Run the block with the needed steps done and no step running (at once when the
        warm-up is over or was never started); no step starts until the block is over. Yields
        whether it waited. `on_step(done, total, label)` (the engine's progress signature, the
        step's label as the stage) is called while it waits, when a step starts and every
        `tick_s`, outside the lock."""
        waited = False
        with self._changed:
            self._alone += 1
            self._used = True
        try:
            while True:
                with self._changed:
                    if self._ready():
                        break
                    running = self._next
                waited = True
                if on_step is not None:
                    on_step(running, len(self.steps), self.steps[running].label)
                with self._changed:
                    if not self._ready() and self._next == running:
                        self._changed.wait(tick_s)
            yield waited
        finally:
            with self._changed:
                self._alone -= 1
                self._changed.notify_all()


# Set when the first script run of the process is over (`first_page_done`): the warm-up imports
# torch only then (or after FIRST_PAGE_WAIT_S without a visitor): torch's import, ~2 s of one
# core and mostly the GIL, beside the home page's first run (which does not need it) made the
# page appear about a second later.
_FIRST_PAGE = threading.Event()
FIRST_PAGE_WAIT_S = 10.0


def first_page_done() -> None:
    """Called by the entry script at the end of every run; the first call lets the warm-up go on."""
    _FIRST_PAGE.set()


def _wait_first_page() -> None:
    _FIRST_PAGE.wait(FIRST_PAGE_WAIT_S)


def _warmup_steps() -> list[WarmupStep]:
    """What the first Specialize click needs, in the order it needs it; each step loads into the
    engine's and the app's process-wide caches (the same objects the pages then get)."""
    loaded: dict[str, Any] = {}

    def package() -> None:
        from ofa_engine.packages import load_package
        from ofa_engine.packages.package import bundled_packages
        from ofa_engine.pipeline.resources import load_resources
        # The same object as the pages' `_package(path)`: the engine caches by path.
        loaded["resources"] = load_resources(load_package(str(bundled_packages()[BUNDLED_SUPERNET]), weights=False))

    def ranges() -> None:
        from ofa_engine.devices.profiles import load_profile
        from ofa_engine.search import budget_ranges
        budget_ranges(loaded["resources"].evaluator(load_profile("cpu-ort-1t")))

    def torch() -> None:
        import torch  # noqa: F401 - then configure_threads may touch it
        _TORCH_READY.set()
        configure_threads()

    def onnx() -> None:
        import onnx  # noqa: F401 - ~0.8 s here, most of it in its ml_dtypes extension

    def pipeline() -> None:
        import ofa_engine.pipeline.specialize  # noqa: F401
        import ofa_engine.runtime.export  # noqa: F401 - torch.onnx
        import ofa_engine.runtime.measure  # noqa: F401 - onnxruntime

    def supernet() -> None:
        loaded["resources"].supernet   # noqa: B018 - loads and validates the weights

    def first_calls() -> None:
        first_specialize_calls(loaded["resources"])

    def charts() -> None:
        import altair
        import pandas
        # The first chart loads Vega-Lite's schema to validate itself.
        altair.Chart(pandas.DataFrame({"x": [0.0]})).mark_point().encode(x="x:Q").to_dict()

    # Before the first page: what needs no torch (the page's own runs interleave with these
    # imports; onnx's one long step, its ml_dtypes extension, comes first, before the browser
    # has loaded the page's scripts). After it: torch and what needs it.
    return [WarmupStep("package without weights+predictor+data", "loading the supernet package", package),
            WarmupStep("budget ranges", "computing the budget ranges", ranges),
            WarmupStep("onnx", "loading ONNX", onnx),
            WarmupStep("altair+pandas", "loading the charts", charts),
            WarmupStep("first page", "loading torch", _wait_first_page),
            WarmupStep("torch", "loading torch", torch),
            WarmupStep("onnxruntime+exporter", "loading ONNX Runtime and the exporter", pipeline),
            WarmupStep("supernet", "loading the supernet's weights", supernet),
            WarmupStep("first calls", "preparing the images and a first export", first_calls, needed=False,
                       ahead=True)]


def first_specialize_calls(resources: Any) -> None:
    """The first-time costs of a specialization, paid on a throwaway subnet: the preprocessed
    calibration and evaluation images at every resolution (the engine's cache, the same tensors
    `specialize` reads), then BN recalibration on two worker threads, ONNX export verified in
    ONNX Runtime and an ONNX Runtime accuracy pass, all on the smallest subnet and a few images.
    Nothing shared is written but those caches: the subnet is a new module, dropped after."""
    import tempfile
    from ofa_engine.pipeline.specialize import WORKERS, onnx_accuracy
    from ofa_engine.runtime.evaluation import calibrate_bn
    from ofa_engine.runtime.export import export_onnx

    space = resources.space
    for size in space.resolutions:
        resources.inputs("calib", size)
        resources.inputs("test2k", size)
    cfg = space.smallest()
    net = resources.supernet.extract(cfg)
    calibrate_bn(net, resources.inputs("calib", cfg.image_size)[:2 * WORKERS], batch_size=2, workers=WORKERS)
    with tempfile.TemporaryDirectory(prefix="ofa-warmup-") as folder:
        onnx_bytes = Path(export_onnx(net, cfg, Path(folder) / "model.onnx", space=space)).read_bytes()
    onnx_accuracy(onnx_bytes, resources.inputs("test2k", cfg.image_size)[:2 * WORKERS], resources.test.labels[:2 * WORKERS],
                  batch_size=2)


_WARMUP_LOCK = threading.Lock()
# Then (not meanwhile: it would time a busy CPU) this machine's latency profile, in its own
# process; the pages keep the reference profiles until it is ready. (A lambda: defined below.)
ENGINE_WARMUP = Warmup(_warmup_steps(), then=lambda: start_this_machine())


def start_warmup() -> threading.Thread:
    """Start the engine's warm-up (`ENGINE_WARMUP`) in a background thread, once per process:
    the bundled package without its weights (space, predictor, images, profiles: no torch), the
    default profile's budget ranges, onnx and the chart libraries; then, once the first page has
    rendered, the rest of what the first specialization needs (torch, ONNX Runtime and the
    exporter, the supernet's weights) and a throwaway first call of its first-time paths; then
    start measuring this machine (`start_this_machine`, a subprocess). Pages render meanwhile: what they need waits for the
    engine's own locks (`load_package`, `load_resources`) or Python's import lock, so nothing is
    loaded twice; a specialization runs in `engine_alone`."""
    with _WARMUP_LOCK:
        if not ENGINE_WARMUP.started:
            # The bundled profiles' registry fills itself on first use without a lock: filled here,
            # before the thread, a page never lists it half-filled (empty) while the warm-up loads one.
            from ofa_engine.devices.profiles import list_profiles
            list_profiles()
        return ENGINE_WARMUP.start()


def engine_alone(on_step: Callable[[int, int, str], None] | None = None) -> contextlib.AbstractContextManager[bool]:
    """`with engine_alone(on_step) as waited:` around a specialization: it waits for what the
    warm-up still has to load for it (`on_step(done, total, label)` says what), and no warm-up
    step runs beside it, so none shares the CPU with its search or its latency measurement."""
    return ENGINE_WARMUP.alone(on_step)


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
        st.error(f"{what}: {md(exc)}", icon=":material/error:")
    except Exception as exc:  # noqa: BLE001 - the app must not show a traceback
        log.exception("%s failed", what)
        st.error(f"{what} failed unexpectedly ({type(exc).__name__}: {md(exc)}). "
                 f"The server log has the details.", icon=":material/error:")


# ------------------------------------------------------------------------------------ packages
@st.cache_resource(show_spinner=False, ttl=30)
def package_entries() -> tuple[Any, ...]:
    """The bundled packages and those in $OFA_SUPERNETS (manifests only; a broken one carries its
    error). Re-read every 30 s, so a package copied into the folder appears without a restart."""
    from ofa_engine.packages import list_packages, packages_dir_from_env
    return tuple(list_packages(packages_dir_from_env()))


def selected_package_path() -> str:
    """The path of this session's package (the bundled tiny-fmnist until another is picked)."""
    chosen = st.session_state.get(SUPERNET_KEY)
    if chosen:
        return str(chosen)
    from ofa_engine.packages.package import bundled_packages
    return str(bundled_packages()[BUNDLED_SUPERNET])


@st.cache_resource(show_spinner="Loading the supernet package ...")
def _package(path: str):
    """One loaded package per path, per process (the engine's own cache too); read only. Without
    its weights (no torch): the supernet is the engine's (`get_supernet`), loaded when needed."""
    from ofa_engine.packages import load_package
    return load_package(path, weights=False)


def get_package():
    """This session's `SupernetPackage` without its weights (space, images, predictor, profiles,
    labels, provenance; `get_supernet()` for the supernet)."""
    return _package(selected_package_path())


def supernet_name() -> str:
    return get_package().name


def get_space():
    """The chosen package's space (channels, classes, labels, resolutions of its manifest)."""
    return get_package().space


@st.cache_resource(show_spinner="Loading the supernet and predictors ...")
def _engine(path: str):
    from ofa_engine.pipeline.resources import load_resources
    return load_resources(_package(path))


def get_engine():
    """The engine's process-wide resources of the chosen package (supernet, accuracy predictor or
    MACs proxy, images, evaluators per profile), the same objects `specialize` uses."""
    return _engine(selected_package_path())


def get_supernet():
    """The trained supernet (read only: forward/extract take the subnet as an argument); the
    first call loads torch and the weights unless the warm-up has."""
    return get_engine().supernet


@st.cache_resource(show_spinner=False)
def _has_batchnorm(path: str) -> bool:
    from ofa_engine.runtime.evaluation import has_batchnorm as any_batchnorm
    return any_batchnorm(_engine(path).supernet)


def has_batchnorm() -> bool:
    """Whether the chosen package's network has BatchNorm, whose statistics a subnet recalibrates
    after extraction (MobileNetV3: yes; the ViT's LayerNorms keep none). Loads the supernet."""
    return _has_batchnorm(selected_package_path())


def get_split(name: str):
    """The package's images: "calib" its calibration images, anything else ("test2k") its
    evaluation images (the bundled package: 2,000 Fashion-MNIST test images)."""
    package = get_package()
    return package.calibration if name == "calib" else package.evaluation


def get_accuracy_predictor():
    """The package's accuracy predictor, or the MACs proxy (`accuracy_source()` says which)."""
    return get_engine().predictor


def accuracy_source() -> str:
    return get_package().accuracy_source


def predictor_csv() -> Path | None:
    """The package's accuracy-dataset CSV (the predictor's training data), if it has one."""
    path = Path(get_package().path)
    return path / PREDICTOR_CSV_NAME if path.is_dir() and (path / PREDICTOR_CSV_NAME).is_file() else None


@st.cache_resource(show_spinner=False)
def bundled_profile_names() -> tuple[str, ...]:
    from ofa_engine.devices.profiles import list_profiles
    return tuple(list_profiles())


@st.cache_resource(show_spinner=False)
def get_bundled_profile(name: str):
    from ofa_engine.devices.profiles import load_profile
    return load_profile(name)


@st.cache_resource(show_spinner=False)
def _profiles_for(path: str) -> tuple[tuple[str, bool], ...]:
    from ofa_engine.devices.profiles import profiles_for_space
    return tuple((row.name, bool(row.has_latency_model)) for row in profiles_for_space(_package(path)))


@st.cache_resource(show_spinner=False)
def _package_profile(path: str, name: str):
    """A profile bound to the package's space: the package's own of that name, else the bundled
    one (an analytical profile: a copy predicting with this space's MACs and memory)."""
    package = _package(path)
    own = {p.name: p for p in package.latency_profiles}
    profile = own.get(name) or get_bundled_profile(name)
    return profile.for_space(package.space)


def session_profiles() -> dict[str, Any]:
    """Profiles uploaded in this browser session (never shared between users)."""
    return st.session_state.setdefault("session_profiles", {})


def profile_names() -> list[str]:
    """The profiles offered for the chosen package: those with a latency model for its space
    (analytical MCU profiles: any space; measured ones: their own space), then this session's."""
    path = selected_package_path()
    offered = [n for n, has in _profiles_for(path) if has]
    # This machine's profiles that replace no bundled one (the ViT at 2 threads), once measured,
    # after the space's other CPU entries.
    space = _package(path).space.name
    for entry in space_entries(space):
        if entry.replaces or entry.name in offered or this_machine_profile(entry.threads, space) is None:
            continue
        before = [i for i, n in enumerate(offered) if (e := this_machine_entry(n)) is not None and e.space == space]
        offered.insert(before[-1] + 1 if before else len(offered), entry.name)
    return offered + [n for n in session_profiles() if n not in offered]


def unavailable_profile_names() -> list[str]:
    """Profiles whose latency model describes another space than the chosen package's: not offered."""
    return [n for n, has in _profiles_for(selected_package_path()) if not has and n not in session_profiles()]


def get_profile(name: str):
    """The profile `name` for the chosen package: this session's upload, else the package's or the
    bundled one bound to its space; for an entry of this machine (cpu-ort-1t/2t,
    cpu-ort-1t-vit-fmnist, this-machine-2t-vit-fmnist), this machine's measured profile once ready."""
    custom = session_profiles()
    if name in custom:
        return custom[name]
    entry = this_machine_entry(name)
    if entry is not None:
        measured = this_machine_profile(entry.threads, entry.space)
        if measured is not None:
            return measured
    return _package_profile(selected_package_path(), name)


def profile_label(name: str) -> str:
    """'Device [name]' of a bundled profile (the device without the machine its display name
    starts with, so that the chosen profile is not cut off in its box; the caption below it says
    the rest), 'name (this session)' of an uploaded one; an entry of this machine's profiles
    (cpu-ort-1t/2t, ...) says whose machine its latency is (reference or this one). The label
    needs no session state: a select box formats its value outside the script run too."""
    entry = this_machine_entry(name)
    if name not in bundled_profile_names() and (entry is None or entry.replaces):
        return f"{name} (this session)"
    measured = None if entry is None else this_machine_profile(entry.threads, entry.space)
    try:
        label = f"{device_name(measured or get_bundled_profile(name))} [{name}]"
    except USER_ERRORS:
        return name
    return label if entry is None else f"{label}: {machine_label(entry.threads, entry.space)}"


def get_evaluator(name: str, precision: str | None = None):
    """The search evaluator of a profile for files of `precision` (None: the profile's own): its
    latency model for that precision, Flash and peak memory of such a file. The engine keeps one
    per profile and precision (with its cached budget ranges) and replaces it when a session
    uploads a different profile of that name."""
    profile = get_profile(name)
    if precision is not None and precision != profile.precision:
        profile = profile.for_precision(precision)
    return get_engine().evaluator(profile, precision)


# ------------------------------------------------------------------------------ this machine
# The bundled ONNX Runtime CPU profiles were fitted on reference VMs (tiny-fmnist's cpu-ort-1t/2t
# on an Intel VM, vit-fmnist's cpu-ort-1t-vit-fmnist on an AMD VM). The app measures this machine
# in the background, one subprocess, for every bundled package's space that has such a profile,
# one space after the other (tiny-fmnist first: its profiles are ready as early as before), at
# each of THIS_MACHINE_THREADS. Once cached, a profile replaces its space's bundled profile of
# that thread count, or, where the space has none (the ViT at 2 threads: its prior is the
# 1-thread profile), is offered under its own name.
THIS_MACHINE_THREADS = (1, 2)
THIS_MACHINE_ENV = "OFA_APP_PROFILE_AT_START"   # "0": do not measure this machine at start-up (tests)
_THIS_MACHINE: list[Any] = []   # the process started by this server, if any


@dataclass(frozen=True)
class MachineEntry:
    """A device-list entry that this machine's profile of (`space`, `threads`) serves: `name` is
    the bundled profile it replaces once measured (`replaces`), or this machine's own profile
    name, offered only once measured."""

    name: str
    space: str
    threads: int
    replaces: bool


def _manifest_space(manifest: Any) -> str:
    space = manifest.space
    return str(space if isinstance(space, str) else space.get("name", ""))


@functools.lru_cache(maxsize=1)   # bundled files only; called from the warm-up's thread too
def this_machine_spaces() -> tuple[str, ...]:
    """The bundled packages' spaces that have a bundled ONNX Runtime CPU profile (the few-shot
    prior of this machine's), BUNDLED_SUPERNET's first, then in listing order."""
    from ofa_engine.devices.this_machine import reference_profile_name
    from ofa_engine.packages import list_packages
    spaces = []
    for entry in list_packages():
        if entry.error is not None:
            continue
        space = _manifest_space(entry.manifest)
        try:
            reference_profile_name(THIS_MACHINE_THREADS[0], "fp32", space)
        except ValueError:   # no bundled CPU profile of that space: nothing to start from
            continue
        spaces.append(space)
    return tuple(sorted(dict.fromkeys(spaces), key=lambda space: space != BUNDLED_SUPERNET))


@functools.lru_cache(maxsize=1)
def this_machine_entries() -> tuple[MachineEntry, ...]:
    """Every entry this machine's profiles serve: per measured space and thread count, the
    bundled profile of that space measured at that thread count (tiny-fmnist: cpu-ort-1t,
    cpu-ort-2t; vit-fmnist: cpu-ort-1t-vit-fmnist), else this machine's own profile name."""
    from ofa_engine.devices.profiles import load_profile
    from ofa_engine.devices.this_machine import profile_name, reference_profile_name
    entries = []
    for space in this_machine_spaces():
        for threads in THIS_MACHINE_THREADS:
            prior = reference_profile_name(threads, "fp32", space)
            if load_profile(prior).threads == threads:
                entries.append(MachineEntry(prior, space, threads, True))
            else:
                entries.append(MachineEntry(profile_name(threads, "fp32", space), space, threads, False))
    return tuple(entries)


def this_machine_entry(name: str) -> MachineEntry | None:
    """The entry `name` if this machine's profile serves it (e.g. cpu-ort-1t), else None."""
    return next((e for e in this_machine_entries() if e.name == name), None)


def space_entries(space: str) -> list[MachineEntry]:
    """This machine's entries for `space` (none for a space it does not measure)."""
    return [e for e in this_machine_entries() if e.space == space]


def entries_text(names: Sequence[str]) -> str:
    """Entry names in a sentence: a shared prefix written once ('cpu-ort-1t/2t'), else joined by 'and'."""
    names = list(names)
    prefix = os.path.commonprefix(names)
    prefix = prefix[:prefix.rfind("-") + 1]
    if len(names) > 1 and prefix:
        return prefix + "/".join(n[len(prefix):] for n in names)
    return " and ".join(names)


def start_this_machine(refresh: bool = False) -> Any:
    """Start measuring this machine in the background, once per process (or again with
    `refresh`); never waits. Every space of `this_machine_spaces()` is measured, one after the
    other, by the one process. Not when $OFA_APP_PROFILE_AT_START is "0" (unless `refresh`: a
    user asked). Returns the process or None (cached, already running, or disabled)."""
    if not refresh and os.environ.get(THIS_MACHINE_ENV, "1").strip() == "0":
        return None
    with _WARMUP_LOCK:
        if _THIS_MACHINE and not refresh:
            return None
        from ofa_engine.devices.this_machine import start_profile_this_machine
        try:
            process = start_profile_this_machine(space=this_machine_spaces(), threads=THIS_MACHINE_THREADS,
                                                 refresh=refresh)
        except Exception:  # noqa: BLE001 - the reference profiles stay in use; the log says why
            log.exception("starting the measurement of this machine failed")
            process = None
        _THIS_MACHINE.append(process)
        return process


def this_machine_status(threads: int, space: str = BUNDLED_SUPERNET):
    from ofa_engine.devices.this_machine import this_machine_status as status
    return status(threads, "fp32", space)


def _cache_file(threads: int, space: str) -> tuple[str, float | None]:
    """This machine's cached profile for `threads` and `space`: its path and modification time
    (None: absent), the key under which the app caches what it reads from it."""
    from ofa_engine.devices.this_machine import cache_path
    path = cache_path(threads, "fp32", space)
    try:
        return str(path), path.stat().st_mtime_ns
    except OSError:
        return str(path), None


@st.cache_resource(show_spinner=False, max_entries=16)
def _this_machine_profile(threads: int, space: str, path: str, stamp: float | None):
    from ofa_engine.devices.this_machine import load_this_machine_profile
    return load_this_machine_profile(threads, "fp32", space, Path(path).parent)


def this_machine_profile(threads: int, space: str = BUNDLED_SUPERNET):
    """This machine's measured profile for `threads` and `space` (read again when its file
    changes), or None."""
    path, stamp = _cache_file(threads, space)
    return None if stamp is None else _this_machine_profile(threads, space, path, stamp)


@st.cache_resource(show_spinner=False, max_entries=16)
def _machine_label(threads: int, space: str, path: str, stamp: float | None) -> str:
    from ofa_engine.devices.this_machine import latency_label
    return latency_label(threads, "fp32", space, Path(path).parent)


def machine_label(threads: int, space: str = BUNDLED_SUPERNET) -> str:
    """'reference machine (X, date), not this one' until this machine is measured, then 'this
    machine (X), measured DATE from N subnets' (the engine's `latency_label`)."""
    return _machine_label(threads, space, *_cache_file(threads, space))


def latency_provenance(profile: Any) -> str:
    """Whose latency a profile predicts: machine and date (this machine's or the reference's)."""
    name = str(getattr(profile, "name", ""))
    entry = this_machine_entry(name)
    if entry is not None:
        return machine_label(entry.threads, entry.space)
    if name.startswith("this-machine-"):
        return machine_label(int(getattr(profile, "threads", None) or 1),
                             str(getattr(profile, "space", None) or BUNDLED_SUPERNET))
    p = dict(getattr(profile, "provenance", {}) or {})
    machine, date = p.get("machine"), p.get("date")
    return f"{machine or 'analytical model'}, {date or 'undated'}"


# "Reference machine (Intel Xeon VM, 2026-11-28): ONNX Runtime CPU, 1 thread", as the measured CPU
# profiles name themselves: the machine in brackets, then the device.
_MACHINE_PREFIX = re.compile(r"^(?:Reference machine|This machine) \((?P<machine>.*?)\):\s*(?P<device>.+)$")


def device_name(profile: Any) -> str:
    """The device a profile describes, without the machine a measured CPU profile names first:
    'ONNX Runtime CPU, 1 thread' (for chips and table cells; `latency_source` says whose machine)."""
    match = _MACHINE_PREFIX.match(str(getattr(profile, "display_name", "")))
    return match["device"] if match else str(getattr(profile, "display_name", getattr(profile, "name", "")))


def latency_source(profile: Any) -> str:
    """`latency_provenance` in a few words, for a table cell: 'this machine, measured DATE',
    'reference machine (Intel Xeon VM, 2026-11-28), not this one', 'analytical model (no device
    measured), DATE' or 'MACHINE, DATE'."""
    name = str(getattr(profile, "name", ""))
    entry = this_machine_entry(name)
    measured = this_machine_profile(entry.threads, entry.space) if entry is not None else (
        profile if name.startswith("this-machine-") else None)
    if measured is not None:
        return f"this machine, measured {dict(measured.provenance or {}).get('date') or 'undated'}"
    p = dict(getattr(profile, "provenance", {}) or {})
    match = _MACHINE_PREFIX.match(str(getattr(profile, "display_name", "")))
    if entry is not None:
        return f"reference machine ({match['machine'] if match else p.get('machine')}), not this one"
    if match:
        return match["machine"]
    return f"{p.get('machine') or 'analytical model'}, {p.get('date') or 'undated'}"


@st.cache_resource(show_spinner=False, max_entries=8)
def _onnx_session(onnx_bytes: bytes):
    from ofa_engine.runtime.ort import make_session
    return make_session(onnx_bytes, threads=1, allow_spinning=False, fuse_qdq=False)   # int8: QDQ as measured


def classify(onnx_bytes: bytes, images: np.ndarray, image_size: int) -> np.ndarray:
    """Class probabilities (N, classes) of uint8 `images` (N,H,W[,C]) by the ONNX file, run in
    ONNX Runtime here, the images preprocessed by the engine's one preprocessing function."""
    from ofa_engine.runtime.preprocess import preprocess
    session = _onnx_session(onnx_bytes)
    x = preprocess(np.require(images, requirements=["C", "W"]), get_space(), image_size).numpy()  # a package's arrays are read-only
    (name,) = [i.name for i in session.get_inputs()]
    logits = np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    logits = logits - logits.max(1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


# ------------------------------------------------------------------------------------ data
@st.cache_data(show_spinner=False)
def _predictor_samples(path: str) -> "Any | None":
    import pandas as pd
    frame = pd.read_csv(path)
    missing = {"config", "macs", "accuracy"} - set(frame.columns)
    if missing:
        log.warning("%s lacks columns %s", path, sorted(missing))
        return None
    return frame


def predictor_samples() -> "Any | None":
    """The package's accuracy-predictor training data (config, macs, accuracy) as a DataFrame, or
    None when the package has none."""
    path = predictor_csv()
    return None if path is None else _predictor_samples(str(path))


@st.cache_data(show_spinner=False, max_entries=4)
def _measured_samples(path: str, n: int, seed: int, images: int) -> "Any":
    import pandas as pd
    from app.layers import config_json, family
    from ofa_engine import extract_calibrated
    from ofa_engine.runtime.evaluation import accuracy

    package = _package(path)
    space, supernet = package.space, _engine(path).supernet
    calib, test = package.calibration, package.evaluation
    calib = calib.subset(np.arange(min(images, len(calib))))
    test = test.subset(np.arange(min(images, len(test))))
    configs = [space.sample(np.random.default_rng([seed, i])) for i in range(n)]
    macs = family(space).analyze(configs)["macs"]
    rows = []
    for cfg, m in zip(configs, macs):
        net = extract_calibrated(supernet, cfg, calib)
        rows.append({"config": config_json(cfg), "macs": int(m),
                     "accuracy": float(accuracy(net, test.images, test.labels, space))})
    return pd.DataFrame(rows)


def measured_samples(n: int, seed: int, images: int) -> "Any":
    """Accuracy of `n` random subnets of the chosen package measured on `images` evaluation
    images (BN, if the network has any, recalibrated on as many calibration images): the slow
    fallback when the package has no predictor data."""
    return _measured_samples(selected_package_path(), n, seed, images)


def display_images(images: np.ndarray) -> np.ndarray:
    """uint8 images (N,H,W) or (N,C,H,W) as st.image takes them: (N,H,W) or (N,H,W,C)."""
    if images.ndim == 4:
        images = np.moveaxis(images, 1, -1)
        if images.shape[-1] == 1:
            images = images[..., 0]
    return np.ascontiguousarray(images)
