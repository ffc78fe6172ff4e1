"""Device profiles: a target device, its memory limits and how fast subnets run on it.

A profile is one JSON file (``"format": "ofa-engine/device-profile", "version": 1``)::

    {"format": "ofa-engine/device-profile", "version": 1,
     "name": "stm32f746", "display_name": "STM32F746 (Cortex-M7, 216 MHz)",
     "kind": "analytical",                # "measured" (fitted to real latencies) | "analytical"
     "space": "tiny-fmnist",              # the search space the latency model describes
     "batch_size": 1,
     "threads": null,                     # ONNX Runtime intra-op threads; null for microcontrollers
     "runtime": {"engine": ..., "version": ..., "provider": ..., "graph_optimization": ...,
                 "measure_locally": false, ...},
     "memory": {"sram_kb": 320, "flash_kb": 1024},   # or "ram_kb"; null = unlimited
     "latency_model": {"type": "analytical-mcu", ...},  # see ofa_engine.predictors.latency
     "quality": null,                     # held-out rmse_ms, mape, kendall_tau, within_10pct, n_test
     "provenance": {"machine": ..., "date": ..., "command": ..., ...}}

Every file is validated on load; a `ProfileError` (a `ValueError`) names the field, the
value and what is allowed. Memory limits are in KB (1024 bytes) and compare with
`analyze(...)["peak_activation_bytes"] / 1024` (SRAM / RAM: int8 activations) and
`["flash_bytes"] / 1024` (Flash: int8 weights).

Bundled profiles live in ``assets/profiles/`` (see its README for how each was produced):
`list_profiles()` names them, `load_profile(name_or_path_or_dict)` loads one.
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import json
import math
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from ..families.mbv3.analytics import analyze
from ..datasets.images import ASSETS_DIR
from ..families.mbv3.space import SearchSpace, SubnetConfig, list_presets

__all__ = ["DeviceProfile", "ProfileError", "load_profile", "list_profiles", "fit_profile",
           "load_validation", "write_validation_csv", "validation_path", "mcu_profile",
           "write_mcu_profiles", "McuPart", "MCU_PARTS", "PROFILE_FORMAT", "PROFILE_VERSION",
           "PROFILES_DIR", "MAX_PROFILE_BYTES"]

PROFILE_FORMAT, PROFILE_VERSION = "ofa-engine/device-profile", 1
PROFILES_DIR = ASSETS_DIR / "profiles"
MAX_PROFILE_BYTES = 1 << 20
KINDS = ("measured", "analytical")
FIELDS = ("format", "version", "name", "display_name", "kind", "space", "batch_size", "threads",
          "runtime", "memory", "latency_model", "quality", "provenance")
RUNTIME_REQUIRED = ("engine", "version", "provider", "graph_optimization")
QUALITY_REQUIRED = ("rmse_ms", "mape", "kendall_tau", "within_10pct", "n_test")
PROVENANCE_REQUIRED = ("machine", "date", "command")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ANALYTICAL_MODEL_TYPE = "analytical-mcu"


class ProfileError(ValueError):
    """An invalid device profile (file, dict or field); the message names the field and what is allowed."""


# ---------------------------------------------------------------------- the profile
@dataclass(frozen=True, eq=False)
class DeviceProfile:
    """A validated device profile. Immutable: mappings are read-only views.

    Build one with `load_profile`, `DeviceProfile.from_dict` or `fit_profile`; constructing it
    directly validates the same way (a `latency_model` may be given as its dict).
    """

    name: str
    display_name: str
    kind: str
    space: str
    batch_size: int
    threads: int | None
    runtime: Mapping[str, Any]
    memory: Mapping[str, float | None]
    latency_model: Any   # an ofa_engine.predictors.latency.LatencyModel
    quality: Mapping[str, float] | None
    provenance: Mapping[str, Any]
    _search_space: SearchSpace = field(init=False, repr=False)

    def __post_init__(self) -> None:
        model = self.latency_model
        data = {"format": PROFILE_FORMAT, "version": PROFILE_VERSION, "name": self.name,
                "display_name": self.display_name, "kind": self.kind, "space": self.space,
                "batch_size": self.batch_size, "threads": self.threads, "runtime": _thaw(self.runtime),
                "memory": _thaw(self.memory), "latency_model": _model_dict(model),
                "quality": _thaw(self.quality), "provenance": _thaw(self.provenance)}
        data, model = _validate(data, "profile")
        for key in ("runtime", "memory", "quality", "provenance"):
            object.__setattr__(self, key, _freeze(data[key]))
        object.__setattr__(self, "latency_model", model)
        object.__setattr__(self, "_search_space", SearchSpace.preset(self.space))

    # ----------------------------------------------------------------- predictions
    def predict_latency_ms(self, configs_or_pop: Any) -> np.ndarray:
        """Predicted latency (ms, one batch of `batch_size`) of each config: a `SubnetConfig`,
        a list of them or a population; float64 array of shape (N,)."""
        out = self.latency_model.predict_ms(self._search_space, configs_or_pop)
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def memory_usage_kb(self, configs_or_pop: Any) -> dict[str, np.ndarray]:
        """`peak_memory_kb` (int8 activations) and `flash_kb` (int8 weights) of each config, from
        `analyze`, in KB: the figures the `memory` limits apply to."""
        metrics = analyze(self._search_space, _as_batch(configs_or_pop))
        return {"peak_memory_kb": np.asarray(metrics["peak_activation_bytes"], np.float64) / 1024,
                "flash_kb": np.asarray(metrics["flash_bytes"], np.float64) / 1024}

    def fits_memory(self, configs_or_pop: Any) -> np.ndarray:
        """Boolean array: does each config fit the activation-memory and Flash limits?"""
        usage = self.memory_usage_kb(configs_or_pop)
        ok = np.ones(usage["flash_kb"].shape, bool)
        if self.activation_memory_kb is not None:
            ok &= usage["peak_memory_kb"] <= self.activation_memory_kb
        if self.flash_kb is not None:
            ok &= usage["flash_kb"] <= self.flash_kb
        return ok

    # ----------------------------------------------------------------- properties
    @property
    def search_space(self) -> SearchSpace:
        return self._search_space

    @property
    def activation_memory_kb(self) -> float | None:
        """The SRAM (microcontrollers) or RAM limit for activations in KB; None = unlimited."""
        return self.memory.get("sram_kb", self.memory.get("ram_kb"))

    @property
    def flash_kb(self) -> float | None:
        return self.memory.get("flash_kb")

    @property
    def measures_locally(self) -> bool:
        """True when the engine can measure real latency for this profile on the machine it runs
        on: an ONNX Runtime CPU profile made for "this machine" (runtime.measure_locally)."""
        return (self.kind == "measured" and self.runtime.get("engine") == "onnxruntime"
                and bool(self.runtime.get("measure_locally", False)))

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """The profile as plain JSON-safe data, in the schema's field order."""
        return {"format": PROFILE_FORMAT, "version": PROFILE_VERSION, "name": self.name,
                "display_name": self.display_name, "kind": self.kind, "space": self.space,
                "batch_size": self.batch_size, "threads": self.threads, "runtime": _thaw(self.runtime),
                "memory": _thaw(self.memory), "latency_model": _model_dict(self.latency_model),
                "quality": _thaw(self.quality), "provenance": _thaw(self.provenance)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "profile") -> "DeviceProfile":
        """Validate `data` (a parsed profile JSON) and build the profile; `ProfileError` otherwise."""
        data, model = _validate(data, source)
        return cls(**{k: data[k] for k in FIELDS if k not in ("format", "version", "latency_model")},
                   latency_model=model)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile's JSON to `path` atomically (a temporary file, then rename)."""
        path = Path(path)
        _atomic_write_text(path, self.to_json())
        return path

    def __repr__(self) -> str:
        return (f"DeviceProfile(name={self.name!r}, kind={self.kind!r}, space={self.space!r}, "
                f"threads={self.threads}, memory={dict(self.memory)})")


# ---------------------------------------------------------------------- loading
def list_profiles() -> list[str]:
    """Names of the bundled profiles (the JSON files in assets/profiles), sorted."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.json"))


def load_profile(profile: str | os.PathLike | Mapping[str, Any] | DeviceProfile) -> DeviceProfile:
    """A profile from a bundled name (see `list_profiles`), a JSON file path, a parsed dict, or
    a `DeviceProfile` (returned as is). `ProfileError` for an invalid or unknown profile."""
    if isinstance(profile, DeviceProfile):
        return profile
    if isinstance(profile, Mapping):
        return DeviceProfile.from_dict(profile, "profile")
    if not isinstance(profile, (str, os.PathLike)):
        raise ProfileError(f"a profile is a bundled name, a path, a dict or a DeviceProfile; got "
                           f"{type(profile).__name__}")
    text = os.fspath(profile)
    if text in list_profiles():
        return _load_bundled(text)
    path = Path(text)
    if not path.is_file():
        raise ProfileError(f"unknown profile '{text}': neither a bundled profile "
                           f"({', '.join(list_profiles())}) nor an existing JSON file")
    return _load_file(path)


@functools.lru_cache(maxsize=None)
def _load_bundled(name: str) -> DeviceProfile:
    # Profiles are immutable, so one shared instance per bundled name is safe.
    return _load_file(PROFILES_DIR / f"{name}.json")


def _load_file(path: Path) -> DeviceProfile:
    size = path.stat().st_size
    if size > MAX_PROFILE_BYTES:
        raise ProfileError(f"profile file '{path}' is {size:,} bytes; allowed: at most "
                           f"{MAX_PROFILE_BYTES:,} bytes (1 MB)")
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProfileError(f"profile file '{path}' is not UTF-8 text; a profile is a JSON file") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"profile file '{path}' is not valid JSON: {exc.msg} at line {exc.lineno} "
                           f"column {exc.colno}") from None
    return DeviceProfile.from_dict(data, f"profile file '{path}'")


def fit_profile(csv_path: str | os.PathLike, name: str, **options: Any) -> DeviceProfile:
    """Fit a measured profile to a latency CSV (the profile kit's results.csv); see
    `ofa_engine.devices.profile_kit.fit_profile_from_csv` for the options."""
    from .profile_kit import fit_profile_from_csv
    return fit_profile_from_csv(csv_path, name, **options)


# ---------------------------------------------------------------------- validation
def _validate(data: Any, source: str) -> tuple[dict[str, Any], Any]:
    """(the checked data with defaults filled, the latency model object), or ProfileError."""
    def fail(where: str, message: str) -> ProfileError:
        return ProfileError(f"{source}: field '{where}' {message}")

    if not isinstance(data, Mapping):
        raise ProfileError(f"{source}: a profile must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ProfileError(f"{source}: unknown field(s) {unknown}; allowed: {list(FIELDS)}")
    missing = [k for k in FIELDS if k not in data]
    if missing:
        raise ProfileError(f"{source}: missing field(s) {missing}; a profile has the fields {list(FIELDS)}")
    if data["format"] != PROFILE_FORMAT:
        raise fail("format", f"= {data['format']!r}; allowed: '{PROFILE_FORMAT}'")
    version = data["version"]
    if not _is_int(version) or version < 1:
        raise fail("version", f"= {version!r}; allowed: {PROFILE_VERSION}")
    if version > PROFILE_VERSION:
        raise fail("version", f"= {version}: written by a newer ofa_engine; this one reads version "
                              f"{PROFILE_VERSION}")
    out: dict[str, Any] = {"format": PROFILE_FORMAT, "version": PROFILE_VERSION}

    name = data["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail("name", f"= {name!r}; allowed: 1-64 characters of lowercase letters, digits, "
                           f"'.', '_' and '-', starting with a letter or digit")
    out["name"] = name
    display = data["display_name"]
    if not isinstance(display, str) or not display.strip() or len(display) > 200:
        raise fail("display_name", f"= {display!r}; allowed: a non-empty string of at most 200 characters")
    out["display_name"] = display
    kind = data["kind"]
    if kind not in KINDS:
        raise fail("kind", f"= {kind!r}; allowed: {list(KINDS)}")
    out["kind"] = kind
    space = data["space"]
    if not isinstance(space, str) or space not in list_presets():
        raise fail("space", f"= {space!r}; allowed: {list_presets()}")
    out["space"] = space
    batch = data["batch_size"]
    if not _is_int(batch) or batch < 1:
        raise fail("batch_size", f"= {batch!r}; allowed: an integer >= 1")
    out["batch_size"] = int(batch)
    threads = data["threads"]
    if threads is None:
        if kind == "measured":
            raise fail("threads", "= null; a measured profile states its thread count (an integer >= 1)")
    elif not _is_int(threads) or threads < 1:
        raise fail("threads", f"= {threads!r}; allowed: an integer >= 1, or null for a "
                              f"microcontroller (no threads)")
    out["threads"] = None if threads is None else int(threads)

    out["runtime"] = _check_runtime(data["runtime"], fail)
    out["memory"] = _check_memory(data["memory"], fail)
    out["quality"] = _check_quality(data["quality"], fail)
    out["provenance"] = _check_provenance(data["provenance"], fail)

    model_data = data["latency_model"]
    if not isinstance(model_data, Mapping):
        raise fail("latency_model", f"must be an object (a fitted latency model), got "
                                    f"{type(model_data).__name__}")
    model_type = model_data.get("type")
    if kind == "analytical" and model_type != ANALYTICAL_MODEL_TYPE:
        raise fail("latency_model.type", f"= {model_type!r}; an analytical profile uses "
                                         f"'{ANALYTICAL_MODEL_TYPE}'")
    if kind == "measured" and model_type == ANALYTICAL_MODEL_TYPE:
        raise fail("latency_model.type", f"= {model_type!r}; a measured profile holds a model fitted "
                                         f"to its measurements, not '{ANALYTICAL_MODEL_TYPE}'")
    from ..predictors.latency import latency_model_from_dict
    try:
        model = latency_model_from_dict(dict(model_data))
    except ValueError as exc:
        raise fail("latency_model", f"is invalid: {exc}") from None
    model_space = model_data.get("space")
    if model_space is not None and model_space != space:
        raise fail("latency_model.space", f"= {model_space!r} but the profile's space is '{space}'")
    out["latency_model"] = model_data
    return out, model


def _check_runtime(runtime: Any, fail) -> dict[str, Any]:
    if not isinstance(runtime, Mapping):
        raise fail("runtime", f"must be an object {{{', '.join(RUNTIME_REQUIRED)}, ...}}, got "
                              f"{type(runtime).__name__}")
    missing = [k for k in RUNTIME_REQUIRED if k not in runtime]
    if missing:
        raise fail("runtime", f"lacks {missing}; required: {list(RUNTIME_REQUIRED)} (null where "
                              f"not applicable)")
    engine = runtime["engine"]
    if not isinstance(engine, str) or not engine:
        raise fail("runtime.engine", f"= {engine!r}; allowed: a non-empty string (e.g. 'onnxruntime')")
    out = {}
    for key, value in runtime.items():
        if not isinstance(key, str):
            raise fail("runtime", f"has a non-string key {key!r}")
        if key == "measure_locally":
            if not isinstance(value, bool):
                raise fail("runtime.measure_locally", f"= {value!r}; allowed: true or false")
        elif key in RUNTIME_REQUIRED[1:]:
            if value is not None and not isinstance(value, str):
                raise fail(f"runtime.{key}", f"= {value!r}; allowed: a string or null")
        elif not _is_scalar(value):
            raise fail(f"runtime.{key}", f"= {value!r}; allowed: a string, number, boolean or null")
        out[key] = value
    return out


def _check_memory(memory: Any, fail) -> dict[str, float | None]:
    if not isinstance(memory, Mapping):
        raise fail("memory", f"must be an object {{sram_kb or ram_kb, flash_kb}}, got "
                             f"{type(memory).__name__}")
    allowed = ("sram_kb", "ram_kb", "flash_kb")
    unknown = sorted(set(memory) - set(allowed))
    if unknown:
        raise fail("memory", f"has unknown key(s) {unknown}; allowed: {list(allowed)}")
    if ("sram_kb" in memory) == ("ram_kb" in memory) or "flash_kb" not in memory:
        raise fail("memory", f"has keys {sorted(memory)}; required: exactly one of 'sram_kb' "
                             f"(microcontrollers) or 'ram_kb', and 'flash_kb'")
    out = {}
    for key in allowed:
        if key not in memory:
            continue
        value = memory[key]
        if value is not None and (not _is_number(value) or value <= 0):
            raise fail(f"memory.{key}", f"= {value!r}; allowed: a positive number of KB "
                                        f"(1 KB = 1024 bytes), or null for unlimited")
        out[key] = value
    return out


def _check_quality(quality: Any, fail) -> dict[str, float] | None:
    if quality is None:
        return None
    if not isinstance(quality, Mapping):
        raise fail("quality", f"must be an object {{{', '.join(QUALITY_REQUIRED)}}} or null, got "
                              f"{type(quality).__name__}")
    missing = [k for k in QUALITY_REQUIRED if k not in quality]
    if missing:
        raise fail("quality", f"lacks {missing}; required: {list(QUALITY_REQUIRED)}")
    for key, value in quality.items():
        if not isinstance(key, str) or not _is_number(value):
            raise fail(f"quality.{key}", f"= {value!r}; allowed: a number")
    return dict(quality)


def _check_provenance(provenance: Any, fail) -> dict[str, Any]:
    if not isinstance(provenance, Mapping):
        raise fail("provenance", f"must be an object {{{', '.join(PROVENANCE_REQUIRED)}, ...}}, got "
                                 f"{type(provenance).__name__}")
    for key in PROVENANCE_REQUIRED:
        if not isinstance(provenance.get(key), str) or not provenance[key]:
            raise fail(f"provenance.{key}", f"= {provenance.get(key)!r}; required: a non-empty string")
    try:
        json.dumps(provenance, allow_nan=False)
    except (TypeError, ValueError):
        raise fail("provenance", "must hold only JSON values (strings, numbers, lists, objects)") from None
    return dict(provenance)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool)) or _is_number(value)


# ---------------------------------------------------------------------- helpers
def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _model_dict(model: Any) -> Any:
    return _thaw(model) if isinstance(model, Mapping) else _thaw(model.to_dict())


def _as_batch(configs_or_pop: Any) -> Any:
    if isinstance(configs_or_pop, SubnetConfig):
        return [configs_or_pop]
    if isinstance(configs_or_pop, Mapping) and not isinstance(configs_or_pop.get("wid"), np.ndarray):
        return [configs_or_pop]
    return configs_or_pop


def _atomic_write_text(path: Path, text: str) -> None:
    if not path.parent.is_dir():
        raise FileNotFoundError(2, "No such directory", str(path.parent))
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def today() -> str:
    return _dt.date.today().isoformat()


# ---------------------------------------------------------------------- validation data
def validation_path(name: str) -> Path:
    """Where a bundled measured profile keeps its held-out predictions (for charts)."""
    return PROFILES_DIR / f"{name}.validation.csv"


def write_validation_csv(path: str | os.PathLike, configs: Sequence[SubnetConfig],
                         measured_ms: Sequence[float], predicted_ms: Sequence[float]) -> Path:
    """Write held-out subnets as `config,measured_ms,predicted_ms` (config = compact JSON), atomically."""
    import io
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["config", "measured_ms", "predicted_ms"])
    for cfg, measured, predicted in zip(configs, measured_ms, predicted_ms, strict=True):
        writer.writerow([cfg.to_json(), f"{float(measured):.6f}", f"{float(predicted):.6f}"])
    path = Path(path)
    _atomic_write_text(path, buffer.getvalue())
    return path


def load_validation(profile: str | os.PathLike | DeviceProfile) -> dict[str, Any] | None:
    """Held-out predictions of a measured profile: {"configs": [SubnetConfig], "measured_ms":
    array, "predicted_ms": array}, from `<name>.validation.csv` next to the bundled profiles (or
    the given CSV path); None when there is none (analytical profiles)."""
    if isinstance(profile, DeviceProfile):
        path = validation_path(profile.name)
    elif os.fspath(profile).endswith(".csv"):
        path = Path(profile)
    else:
        path = validation_path(os.fspath(profile))
    if not path.is_file():
        return None
    configs, measured, predicted = [], [], []
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            configs.append(SubnetConfig.from_json(row["config"]))
            measured.append(float(row["measured_ms"]))
            predicted.append(float(row["predicted_ms"]))
    return {"configs": configs, "measured_ms": np.array(measured), "predicted_ms": np.array(predicted)}


# ---------------------------------------------------------------------- microcontrollers
@dataclass(frozen=True)
class McuPart:
    """A microcontroller class for an analytical profile (datasheet figures)."""

    display_name: str
    core: str
    clock_mhz: float
    sram_kb: int
    flash_kb: int
    macs_per_cycle: float
    macs_per_cycle_source: str


# Cortex-M7: TinyEngine's published latencies on an STM32H743 at 480 MHz (github.com/mit-han-lab/
# tinyengine README, "Measured Results"): mcunet-in3, 81.8M MACs, 336 ms -> 81.8e6 / (0.336 s *
# 480e6 Hz) = 0.507 MACs/cycle; mcunet-vww0, 6.0M MACs, 27 ms -> 0.463. We use 0.5 for both M7
# parts. Cortex-M4 has no dual issue (the M7 pairs the operand load with the SIMD MAC in the
# inner loop), so we take half: 0.25, an assumption until measured on a real F412.
_M7_SOURCE = ("TinyEngine measured on STM32H743 @ 480 MHz (mit-han-lab/tinyengine README, 'Measured "
              "Results'): mcunet-in3 81.8M MACs in 336 ms = 0.507 MACs/cycle, mcunet-vww0 6.0M MACs "
              "in 27 ms = 0.463 MACs/cycle; rounded to 0.5 for the Cortex-M7")
_M4_SOURCE = ("half the Cortex-M7 figure (0.5, TinyEngine on STM32H743, see stm32h743.json): the "
              "Cortex-M4 is single-issue where the M7 dual-issues the operand load with the SIMD MAC "
              "(SMLAD) of the int8 inner loop; an assumption, not a measurement on an F412")

MCU_PARTS: dict[str, McuPart] = {
    "stm32f412": McuPart("STM32F412 (Cortex-M4, 100 MHz, 256 KB SRAM, 1 MB Flash)", "Cortex-M4",
                         100.0, 256, 1024, 0.25, _M4_SOURCE),
    "stm32f746": McuPart("STM32F746 (Cortex-M7, 216 MHz, 320 KB SRAM, 1 MB Flash)", "Cortex-M7",
                         216.0, 320, 1024, 0.5, _M7_SOURCE),
    "stm32h743": McuPart("STM32H743 (Cortex-M7, 480 MHz, 512 KB SRAM, 2 MB Flash)", "Cortex-M7",
                         480.0, 512, 2048, 0.5, _M7_SOURCE),
}
MCU_FORMULA = "latency_ms = MACs / (macs_per_cycle * clock_mhz * 1e3) + overhead_ms"


def mcu_profile(name: str, space: str = "tiny-fmnist", date: str | None = None) -> DeviceProfile:
    """The analytical profile of a microcontroller class in `MCU_PARTS` (int8 deployment with
    CMSIS-NN / TinyEngine-style kernels): SRAM holds the peak int8 activations, Flash the int8
    weights, latency = MACs at the part's clock and `macs_per_cycle` (see `MCU_FORMULA`)."""
    if name not in MCU_PARTS:
        raise ValueError(f"unknown microcontroller '{name}'; known: {sorted(MCU_PARTS)}")
    part = MCU_PARTS[name]
    model = {"type": ANALYTICAL_MODEL_TYPE, "clock_mhz": part.clock_mhz,
             "macs_per_cycle": part.macs_per_cycle, "overhead_ms": 0.0,
             "source": part.macs_per_cycle_source}
    return DeviceProfile(
        name=name, display_name=part.display_name, kind="analytical", space=space, batch_size=1,
        threads=None,
        runtime={"engine": "int8 MCU kernels (CMSIS-NN / TinyEngine class)", "version": None,
                 "provider": None, "graph_optimization": None, "core": part.core,
                 "clock_mhz": part.clock_mhz, "precision": "int8", "measure_locally": False},
        memory={"sram_kb": part.sram_kb, "flash_kb": part.flash_kb},
        latency_model=model, quality=None,
        provenance={
            "machine": "analytical (no device measured)",
            "date": date or today(),
            "command": "python -m ofa_engine.devices.profiles --write-mcu assets/profiles",
            "formula": MCU_FORMULA,
            "macs_per_cycle_source": part.macs_per_cycle_source,
            "memory": "SRAM limit vs analyze() peak_activation_bytes (int8 activations, MCUNet "
                      "method); Flash limit vs analyze() flash_bytes (int8 weights + int32 biases); "
                      "runtime code and buffers not counted",
            "budgets_source": "MCUNet / TinyNAS microcontroller budgets (F412 256 KB / 1 MB, F746 "
                              "320 KB / 1 MB, H743 512 KB / 2 MB); clocks from the ST datasheets "
                              "(F412 100 MHz, F746 216 MHz, H743 480 MHz)",
        })


def write_mcu_profiles(out_dir: str | os.PathLike = PROFILES_DIR, space: str = "tiny-fmnist") -> list[Path]:
    """Write the analytical microcontroller profiles (one JSON each) to `out_dir`."""
    out_dir = Path(out_dir)
    return [mcu_profile(name, space).save(out_dir / f"{name}.json") for name in MCU_PARTS]


if __name__ == "__main__":   # python -m ofa_engine.devices.profiles --write-mcu DIR
    import argparse
    parser = argparse.ArgumentParser(description="write the bundled analytical MCU profiles")
    parser.add_argument("--write-mcu", metavar="DIR", required=True)
    parser.add_argument("--space", default="tiny-fmnist")
    args = parser.parse_args()
    for written in write_mcu_profiles(args.write_mcu, args.space):
        print(written)
