"""This machine, measured on this machine: the start-up latency profile and its cache.

The bundled `cpu-ort-*` profiles were fitted on another VM. The first time the app (or
`python -m ofa_engine profile-this-machine`) runs here, `profile_this_machine` measures a
few subnets spread over the space (`profile_kit.kit_configs`: farthest-point choice in the
latency features, the largest and smallest first), in ONNX Runtime with the interleaved rounds
of `runtime.measure.measure_many`, and fits each profile few-shot on top of the bundled one of
that space (`reference_profile_name`: tiny-fmnist's cpu-ort-1t / cpu-ort-2t, vit-fmnist's
cpu-ort-1t-vit-fmnist; `predictors.latency.fewshot`, method chosen in docs/latency-fewshot.md).
Several spaces are measured one after the other by one process
(`start_profile_this_machine(("tiny-fmnist", "vit-fmnist"))`), never at once: two measurements
would slow each other. The result is an ordinary profile (`load_profile(path)`) cached on disk
under a key of what the latency depends on (`cache_key`: CPU model, core count, ORT version,
threads, precision, space) and reused from then on; `refresh=True` measures again. Around each
thread count's measurement the run also times how steady the machine is
(`runtime.measure.machine_speed`, half a second before and after) and keeps it in the profile's
provenance (`machine_speed`): on a machine whose speed swings within a second, no measurement,
and so no profile, is closer than that swing, and the label says so (docs/latency-measurement.md).

The app calls, without blocking a page:

- `start_profile_this_machine(...)` -> the background process (`python -m ofa_engine
  profile-this-machine ...`), or None when the profiles are cached or a run is under way;
- `this_machine_status(threads, ...)` -> `Status(ready, progress, profile_path, message,
  running)`, from the cache and the small status JSON the run rewrites (atomically) as it goes;
- `load_this_machine_profile(threads, ...)` -> the cached `DeviceProfile`, or None;
- `latency_label(threads, ...)` -> what to write next to predictions: the measured profile's
  provenance when ready (with the speed swing when the machine was unsteady), otherwise
  "reference machine (X), not this one".

A cache or status file that cannot be read is ignored with a logged warning; the next run
rebuilds it. The cache folder: `$OFA_CACHE_DIR`, else `$XDG_CACHE_HOME/ofa_engine`, else
`~/.cache/ofa_engine`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..files import atomic_write_json, atomic_write_text, read_json
from ..progress import Progress, report
from .profiles import DeviceProfile, ProfileError, load_profile, today

__all__ = ["Status", "cache_key", "cache_dir", "cache_path", "status_path", "this_machine_status",
           "load_this_machine_profile", "start_profile_this_machine", "profile_this_machine",
           "latency_label", "reference_profile_name", "profile_name", "STARTUP_SUBNETS", "STARTUP_ROUNDS", "STARTUP_RUNS",
           "STARTUP_WARMUP", "STARTUP_THREADS", "CACHE_ENV", "DEFAULT_SPACE"]

log = logging.getLogger(__name__)

CACHE_ENV = "OFA_CACHE_DIR"
DEFAULT_SPACE = "tiny-fmnist"  # the bundled package's space: the default setting of every function here
STARTUP_THREADS = (1, 2)       # the bundled CPU profiles the app offers
# The start-up run: subnets, and measure_many's rounds / timed runs / warm-up per burst. Sized
# to stay under 60 s of one core for fp32 at 1 and 2 threads (docs/latency-fewshot.md).
STARTUP_SUBNETS, STARTUP_ROUNDS, STARTUP_RUNS, STARTUP_WARMUP = 20, 7, 20, 5
# How steady the machine was (runtime.measure.machine_speed), timed half before and half after
# each thread count's measurement; recorded in the profile's provenance.
STARTUP_SPEED_SECONDS = 1.0
_KEY_VERSION = 1


@dataclass(frozen=True)
class Status:
    """Where the profile of this machine stands, for one setting (threads, precision, space).

    `ready`: the cached profile is there and valid (`profile_path`); `running`: a measuring
    process is alive; `progress` in 0..1; `message` for a person to read."""

    ready: bool
    progress: float
    profile_path: Path | None
    message: str
    running: bool = False


# ---------------------------------------------------------------------- the cache
def cache_key(threads: int, precision: str = "fp32", space: str = DEFAULT_SPACE) -> dict[str, Any]:
    """What a latency profile of this machine depends on: CPU model, logical core count, ONNX
    Runtime version, threads, precision and search space (a dict of JSON values)."""
    cpu, cores, ort_version = _machine()
    return {"version": _KEY_VERSION, "cpu": cpu, "cores": cores, "ort": ort_version,
            "threads": int(threads), "precision": str(precision), "space": str(space)}


@functools.lru_cache(maxsize=1)
def _machine() -> tuple[str, int | None, str]:
    # Read once per process: the app polls the status every second or so. The installed
    # version from its metadata, not by importing onnxruntime (0.4 s, the app's first page).
    from importlib.metadata import PackageNotFoundError, version

    from .machine import cpu_model
    try:
        ort_version = version("onnxruntime")
    except PackageNotFoundError:
        import onnxruntime   # installed without metadata (a source tree on the path)
        ort_version = onnxruntime.__version__
    return cpu_model(), os.cpu_count(), ort_version


def _key_id(key: Mapping[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps(dict(key), sort_keys=True).encode()).hexdigest()[:12]
    return f"this-machine-{key['space']}-{key['precision']}-{key['threads']}t-{digest}"


def cache_dir() -> Path:
    """`$OFA_CACHE_DIR`, else `$XDG_CACHE_HOME/ofa_engine`, else `~/.cache/ofa_engine`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ofa_engine"


def cache_path(threads: int, precision: str = "fp32", space: str = DEFAULT_SPACE,
               directory: str | os.PathLike | None = None) -> Path:
    """Where the cached profile of this setting lives (it may not exist yet)."""
    return Path(directory or cache_dir()) / f"{_key_id(cache_key(threads, precision, space))}.json"


def status_path(threads: int, precision: str = "fp32", space: str = DEFAULT_SPACE,
                directory: str | os.PathLike | None = None) -> Path:
    """The status JSON a measuring run rewrites for this setting."""
    return cache_path(threads, precision, space, directory).with_suffix(".status.json")


def _read_cached(path: Path) -> DeviceProfile | None:
    """The cached profile, or None if absent; a file that does not load is logged and ignored."""
    if not path.is_file():
        return None
    try:
        profile = load_profile(path)
    except (ProfileError, ValueError, OSError) as exc:
        log.warning("ignoring the corrupt cached profile '%s' (%s); it will be measured again", path, exc)
        return None
    key = profile.provenance.get("cache_key")
    if not isinstance(key, Mapping) or _key_id(key) != path.stem:
        log.warning("ignoring the cached profile '%s': its cache_key does not match this machine; it will "
                    "be measured again", path)
        return None
    return profile


def load_this_machine_profile(threads: int = 1, precision: str = "fp32", space: str = DEFAULT_SPACE,
                              directory: str | os.PathLike | None = None) -> DeviceProfile | None:
    """The measured profile of this machine for the setting, from the cache; None if there is
    none yet (or the cached file is corrupt: logged, and the next run rebuilds it)."""
    return _read_cached(cache_path(threads, precision, space, directory))


def _pid_alive(pid: Any) -> bool:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child of ours stays a zombie until reaped; it no longer measures.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _read_status(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path, f"status file '{path}'", max_bytes=64 * 1024)
    except (ValueError, OSError) as exc:
        log.warning("ignoring the unreadable status file '%s' (%s)", path, exc)
        return None
    return data if isinstance(data, dict) else None


def this_machine_status(threads: int = 1, precision: str = "fp32", space: str = DEFAULT_SPACE,
                        directory: str | os.PathLike | None = None) -> Status:
    """Where the profile of this machine stands for the setting (reads two small files; never
    blocks, never measures)."""
    path = cache_path(threads, precision, space, directory)
    profile = _read_cached(path)
    if profile is not None:
        return Status(True, 1.0, path, f"measured on this machine on {profile.provenance.get('date')} "
                                       f"({profile.provenance.get('subnets', '?')} subnets)")
    status = _read_status(path.with_suffix(".status.json"))
    if status is None:
        return Status(False, 0.0, None, "not measured on this machine yet")
    running = status.get("state") == "running" and _pid_alive(status.get("pid"))
    progress = status.get("progress")
    progress = float(progress) if isinstance(progress, (int, float)) and not isinstance(progress, bool) else 0.0
    message = str(status.get("message", ""))[:500]
    if status.get("state") == "running" and not running:
        message = f"the measuring process stopped before it finished ({message}); start it again"
    return Status(False, min(max(progress, 0.0), 1.0), None, message, running)


def reference_profile_name(threads: int = 1, precision: str = "fp32", space: str = DEFAULT_SPACE) -> str:
    """The bundled profile a setting starts from (the few-shot prior): among the bundled ONNX
    Runtime CPU profiles of `space` (tiny-fmnist: cpu-ort-1t and cpu-ort-2t; vit-fmnist:
    cpu-ort-1t-vit-fmnist), the one measured at `threads`, else the one with the fewest threads.
    `ValueError` naming the spaces that have one when `space` has none. (`precision` picks no
    other file: the prior is that profile's model for the precision, `for_precision`.)"""
    candidates = _bundled_cpu_profiles()
    mine = sorted((t != int(threads), t, name) for name, (s, t) in candidates.items() if s == space)
    if not mine:
        spaces = sorted({s for s, _ in candidates.values()})
        raise ValueError(f"space {space!r} has no bundled ONNX Runtime CPU profile to start this machine's "
                         f"profile from; allowed spaces: {', '.join(spaces)}")
    return mine[0][2]


def _bundled_cpu_profiles() -> dict[str, tuple[str, int]]:
    """Bundled measured ONNX Runtime CPU profile name -> (space, threads), read from the files'
    fields (a few small JSON files; the app asks again only when a cache file changes)."""
    from .profiles import BUNDLED_PROFILES
    found = {}
    for name, path in BUNDLED_PROFILES.items():
        try:
            data = read_json(path, f"bundled profile '{name}'")
        except (ValueError, OSError):
            continue   # load_profile names what is wrong with it where it is used
        if not isinstance(data, dict) or not isinstance(data.get("runtime"), dict):
            continue
        if (data.get("kind") == "measured" and data["runtime"].get("engine") == "onnxruntime"
                and isinstance(data.get("threads"), int) and isinstance(data.get("space"), str)):
            found[name] = (data["space"], data["threads"])
    return found


def _reference_profile(threads: int, precision: str, space: str = DEFAULT_SPACE) -> DeviceProfile:
    return load_profile(reference_profile_name(threads, precision, space)).for_precision(precision)


def latency_label(threads: int = 1, precision: str = "fp32", space: str = DEFAULT_SPACE,
                  directory: str | os.PathLike | None = None) -> str:
    """The honest label of the latency predictions for the setting: the measured profile's
    provenance when it is ready (and, when the machine's speed was unsteady while measured,
    `runtime.measure.machine_speed`, by how much, since its latencies scatter that much),
    otherwise "reference machine (X), not this one" with X the machine the bundled profile was
    fitted on."""
    profile = load_this_machine_profile(threads, precision, space, directory)
    if profile is not None:
        p = profile.provenance
        label = f"this machine ({p.get('machine')}), measured {p.get('date')} from {p.get('subnets')} subnets"
        speed = p.get("machine_speed")
        if isinstance(speed, Mapping) and speed.get("steady") is False and isinstance(speed.get("spread"), (int, float)):
            label += f"; its speed swung by {100 * float(speed['spread']):.0f}% while measured: expect as much scatter"
        return label
    reference = _reference_profile(threads, precision, space)
    p = reference.provenance
    return f"reference machine ({p.get('machine')}, {p.get('date')}), not this one"


# ---------------------------------------------------------------------- the measuring run
def _write_status(paths: Sequence[Path], state: str, progress: float, message: str, **extra: Any) -> None:
    data = {"state": state, "progress": round(float(progress), 4), "message": message, "pid": os.getpid(),
            "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **extra}
    for path in paths:
        atomic_write_json(path, data)


def _loo_quality(space: Any, prior: Any, x: np.ndarray, y: np.ndarray, method: str) -> dict[str, float]:
    """Leave-one-out score of the few-shot fit over the K measured subnets (there is nothing
    else to hold out at start-up)."""
    from ..predictors.latency import latency_metrics
    from ..predictors.latency.fewshot import fewshot_fit_rows
    predicted = np.empty_like(y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        fitted = fewshot_fit_rows(prior, x[keep], y[keep], method, min_subnets=len(y) - 1, space=space)
        predicted[i] = fitted.predict(x[i:i + 1])[0]
    quality = latency_metrics(predicted, y)
    return {k: int(v) if k == "n_test" else float(v) for k, v in quality.items()}


def _name_details(space: str, precision: str) -> list[str]:
    """What a profile's name and display name add to 'this machine, N threads': the space and
    the precision where they are not the defaults (the default space's names stay as they were)."""
    return [d for d, shown in ((space, space != DEFAULT_SPACE), (precision, precision != "fp32")) if shown]


def profile_name(threads: int, precision: str = "fp32", space: str = DEFAULT_SPACE) -> str:
    """The name of this machine's profile of a setting: 'this-machine-1t' for the default space
    in fp32, 'this-machine-2t-vit-fmnist' for another space."""
    return f"this-machine-{threads}t" + "".join(f"-{d}" for d in _name_details(space, precision))


def fit_this_machine_profile(space: Any, threads: int, precision: str, configs: Sequence[Any],
                             latencies_ms: np.ndarray, *, spread: np.ndarray | None = None,
                             key: Mapping[str, Any] | None = None, command: str = "",
                             measure_seconds: float | None = None, speed: Any = None,
                             protocol: tuple[int, int, int] = (STARTUP_ROUNDS, STARTUP_WARMUP, STARTUP_RUNS)
                             ) -> DeviceProfile:
    """The profile of this machine from measured subnets: a few-shot fit
    (`DEFAULT_FEWSHOT_METHOD`) on top of the bundled reference profile's model, scored
    leave-one-out; falls back to the prior's scale and offset if the fit would predict <= 0 ms
    somewhere in the space."""
    from ..predictors.latency import architecture_features
    from ..predictors.latency.fewshot import DEFAULT_FEWSHOT_METHOD, fewshot_fit_rows
    from .machine import cpu_model, this_machine

    import onnxruntime

    reference = _reference_profile(threads, precision, space.name)
    prior = reference.latency_model
    x, _ = architecture_features(space, _configs_of(space, configs))
    y = np.asarray(latencies_ms, np.float64)
    method = DEFAULT_FEWSHOT_METHOD
    model = fewshot_fit_rows(prior, x, y, method, space=space)
    if not model.prediction_range(space)[0] > 0:
        method = "scale-offset"
        model = fewshot_fit_rows(prior, x, y, method, space=space)
    quality = _loo_quality(space, prior, x, y, method)
    key = dict(key or cache_key(threads, precision, space.name))
    # The default space's names stay as they were; another space's name and display name say which.
    details = _name_details(space.name, precision)
    provenance: dict[str, Any] = {
        "machine": this_machine(), "date": today(), "command": command or "profile_this_machine()",
        "cache_key": key, "subnets": len(y), "fit": method, "prior": reference.name,
        "prior_machine": reference.provenance.get("machine"),
        "method": (f"{len(y)} subnets spread over the space (kit_configs) measured here with "
                   f"ofa_engine.runtime.measure.measure_many ({protocol[0]} interleaved rounds of {protocol[1]} "
                   f"warm-up + {protocol[2]} timed runs; the latency is the median of the burst medians); few-shot fit '{method}' on top of "
                   f"the bundled '{reference.name}' profile's model; quality: leave-one-out over the {len(y)}"),
        "measured": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if measure_seconds is not None:
        provenance["run_cpu_seconds"] = round(float(measure_seconds), 2)
    if spread is not None:
        provenance["median_relative_spread"] = round(float(np.median(spread)), 4)
    if speed is not None:   # a runtime.measure.MachineSpeed
        provenance["machine_speed"] = speed.to_dict()
    return DeviceProfile(
        name=profile_name(threads, precision, space.name),
        display_name=f"This machine ({cpu_model()}): ONNX Runtime CPU, {threads} thread{'s' * (threads > 1)}"
                     + "".join(f", {d}" for d in details),
        kind="measured", space=space.name, batch_size=1, threads=int(threads),
        runtime={"engine": "onnxruntime", "version": onnxruntime.__version__, "provider": "CPUExecutionProvider",
                 "graph_optimization": "ORT_ENABLE_ALL", "execution_mode": "sequential", "measure_locally": True,
                 "precision": precision},
        memory={"ram_kb": None, "flash_kb": None}, latency_model=model.to_dict(), quality=quality,
        provenance=provenance)


def _configs_of(space: Any, configs: Sequence[Any]) -> list[Any]:
    """`configs` validated as configs of `space`; `ValueError` naming the space and the first
    config that is not one of it (a config of another family would otherwise fail deep in the
    features with that family's message)."""
    from ..families import family_of
    family = family_of(space, fast=False)
    try:
        return [family.validate(cfg) for cfg in configs]
    except ValueError as exc:
        raise ValueError(f"the measured subnets must be configs of space '{family.space.name}' "
                         f"(family '{family.family}'): {exc}") from None


def _check_setting(threads: Sequence[int], precision: str, n: int) -> tuple[int, ...]:
    from ..predictors.latency.fewshot import MIN_FEWSHOT_SUBNETS
    from ..settings import check_local_measurement
    threads = tuple(dict.fromkeys(int(t) for t in threads))
    if not threads:
        raise ValueError("threads: none given; allowed: one or more integers >= 1, e.g. 1,2")
    for t in threads:
        check_local_measurement(t, 1, "profile-this-machine")
    if precision not in ("fp32", "int8"):
        raise ValueError(f"precision = {precision!r}; allowed: 'fp32', 'int8'")
    if isinstance(n, bool) or not isinstance(n, int) or not MIN_FEWSHOT_SUBNETS <= n <= 200:
        raise ValueError(f"n = {n!r} subnets; allowed: an integer {MIN_FEWSHOT_SUBNETS}..200")
    return threads


def profile_this_machine(space: str = DEFAULT_SPACE, threads: Sequence[int] = STARTUP_THREADS,
                         precision: str = "fp32", *, n: int = STARTUP_SUBNETS, rounds: int = STARTUP_ROUNDS,
                         runs: int = STARTUP_RUNS, warmup: int = STARTUP_WARMUP, refresh: bool = False,
                         directory: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                         progress: Progress | None = None, command: str = "",
                         speed_seconds: float = STARTUP_SPEED_SECONDS) -> dict[int, Path]:
    """Measure and fit the profiles of this machine for each thread count; returns threads ->
    cached profile path. Settings already cached (and valid) are kept unless `refresh`.
    How steady the machine was (`machine_speed`, `speed_seconds` per thread count, half before
    and half after) goes into each profile's provenance, and a warning is logged when unsteady.
    The same exported subnets serve every thread count. `out`: also write the profile there
    (one thread count; with several, `<out stem>-<T>t.json`). Progress goes to `progress` and
    to each setting's status file (`status_path`), which another process may poll."""
    from ..families import family_of
    from ..predictors.latency.fewshot import MIN_FEWSHOT_SUBNETS
    from ..runtime.common import QuantizationRefusedError
    from ..runtime.export import export_subnets
    from ..runtime.measure import MachineSpeed, measure_many, speed_samples
    from .profile_kit import kit_configs

    threads = _check_setting(threads, precision, n)
    space_obj = family_of(space, fast=False).space
    for t in threads:   # a space without a bundled prior is refused before anything is measured
        _reference_profile(t, precision, space_obj.name)
    folder = Path(directory or cache_dir())
    folder.mkdir(parents=True, exist_ok=True)
    paths = {t: cache_path(t, precision, space_obj.name, folder) for t in threads}
    todo = [t for t in threads if refresh or _read_cached(paths[t]) is None]
    statuses = [paths[t].with_suffix(".status.json") for t in todo]
    start_cpu, start_wall = time.process_time(), time.time()
    steps = n + rounds * len(todo) + len(todo)
    done = [0]

    def step(message: str) -> None:
        done[0] += 1
        report(progress, done[0], steps, message)
        _write_status(statuses, "running", done[0] / steps, message)

    try:
        if todo:
            _write_status(statuses, "running", 0.0, f"choosing {n} subnets to measure")
            configs = kit_configs(space_obj, n, seed=0)
            with tempfile.TemporaryDirectory(prefix="ofa-this-machine-") as tmp:
                files, kept = [], []
                for i, cfg in enumerate(configs):
                    try:
                        files += export_subnets(space_obj, [cfg], [Path(tmp) / f"m{i:03d}.onnx"],
                                                precision=precision)
                        kept.append(cfg)
                    except QuantizationRefusedError:   # int8 only: the quantizer's own check
                        log.warning("skipped subnet %s: its %s file was refused", cfg.to_json(), precision)
                    step(f"exported subnet {i + 1}/{n}")
                configs = kept
                if len(configs) < MIN_FEWSHOT_SUBNETS:
                    raise ValueError(f"only {len(configs)} of {n} subnets could be exported as {precision}; "
                                     f"a profile needs {MIN_FEWSHOT_SUBNETS}")
                for t in todo:
                    before = speed_samples(speed_seconds / 2)
                    stats = measure_many(files, threads=t, rounds=rounds, runs=runs, warmup=warmup,
                                         progress=lambda r, total, m, t=t: step(f"{t} thread(s): {m}"))
                    speed_times = np.concatenate([before, speed_samples(speed_seconds / 2)])
                    speed = MachineSpeed.from_times(speed_times, float(speed_times.sum()) / 1e3)
                    if not speed.steady:
                        log.warning("%s thread(s): %s", t, speed.describe())
                    medians = np.array([s.median_ms for s in stats])
                    spread = np.array([s.iqr_ms / s.median_ms for s in stats])
                    profile = fit_this_machine_profile(
                        space_obj, t, precision, configs, medians, spread=spread,
                        key=cache_key(t, precision, space_obj.name), command=command,
                        measure_seconds=time.process_time() - start_cpu, protocol=(rounds, warmup, runs),
                        speed=speed)
                    atomic_write_text(paths[t], profile.to_json())
                    step(f"{t} thread(s): fitted and cached {paths[t].name}")
            seconds = time.process_time() - start_cpu
            _write_status(statuses, "done", 1.0, f"measured {n} subnets in {time.time() - start_wall:.0f} s "
                                                 f"({seconds:.0f} s of CPU)")
    except BaseException as exc:
        _write_status(statuses, "failed", done[0] / steps, f"{type(exc).__name__}: {exc}"[:500])
        raise
    if out is not None:
        out = Path(out)
        for t in threads:
            target = out if len(threads) == 1 else out.with_name(f"{out.stem}-{t}t{out.suffix or '.json'}")
            atomic_write_text(target, paths[t].read_text(encoding="utf-8"))
    return paths


def start_profile_this_machine(space: str | Sequence[str] = DEFAULT_SPACE, threads: Sequence[int] = STARTUP_THREADS,
                               precision: str = "fp32", *, refresh: bool = False,
                               directory: str | os.PathLike | None = None,
                               extra_args: Sequence[str] = ()) -> subprocess.Popen | None:
    """Start `python -m ofa_engine profile-this-machine` in the background (its own process,
    output to `<cache>/profile-this-machine.log`) and return it; None when every setting is
    already cached (and not `refresh`) or a run for one of them is alive. `space`: one space or
    several (e.g. ("tiny-fmnist", "vit-fmnist")), measured one after the other in that one
    process, each at every thread count. Poll `this_machine_status` for its progress."""
    spaces = [space] if isinstance(space, str) else list(dict.fromkeys(space))
    threads = _check_setting(threads, precision, STARTUP_SUBNETS)
    if not spaces:
        raise ValueError("space: none given; allowed: one or more preset space names, e.g. tiny-fmnist")
    for name in spaces:   # refused here, not in the background process's log
        for t in threads:
            reference_profile_name(t, precision, name)
    folder = Path(directory or cache_dir())
    settings = [(name, t) for name in spaces for t in threads]
    statuses = {s: this_machine_status(s[1], precision, s[0], folder) for s in settings}
    if any(s.running for s in statuses.values()):
        return None
    if not refresh and all(s.ready for s in statuses.values()):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ofa_engine", "profile-this-machine", "--space", ",".join(spaces),
            "--threads", ",".join(str(t) for t in threads), "--precision", precision,
            "--cache-dir", str(folder), *(["--refresh"] if refresh else []), *extra_args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    with open(folder / "profile-this-machine.log", "ab") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True)
    # Mark the run as started at once, so that a second caller does not start another (unless
    # the child has already written its own status).
    for name, t in settings:
        path = cache_path(t, precision, name, folder).with_suffix(".status.json")
        data = _read_status(path)
        if data is None or data.get("pid") != process.pid:
            atomic_write_json(path, {"state": "running", "progress": 0.0, "message": "starting",
                                     "pid": process.pid})
    return process
