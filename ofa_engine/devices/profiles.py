"""Device profiles: a target device, its memory limits and how fast subnets run on it.

A profile is one JSON file (``"format": "ofa-engine/device-profile", "version": 1``)::

    {"format": "ofa-engine/device-profile", "version": 1,
     "name": "stm32f746", "display_name": "STM32F746 (Cortex-M7, 216 MHz)",
     "kind": "analytical",                # "measured" (fitted to real latencies) | "analytical"
     "space": "*",                        # "*": any space (analytical); else the space the
                                          # latency model was fitted to (a preset or a package's)
     "batch_size": 1,
     "threads": null,                     # ONNX Runtime intra-op threads; null for microcontrollers
     "runtime": {"engine": ..., "version": ..., "provider": ..., "graph_optimization": ...,
                 "measure_locally": false, ...},
     "memory": {"sram_kb": 320, "flash_kb": 1024},   # or "ram_kb"; null = unlimited
     "latency_model": {"type": "analytical-mcu", ...},  # see ofa_engine.predictors.latency
     "quality": null,                     # held-out rmse_ms, mape, kendall_tau, within_10pct, n_test
     "provenance": {"machine": ..., "date": ..., "command": ..., ...}}

An analytical profile (`"space": "*"`) applies to every space: it counts MACs, activation
memory and Flash from the config. A measured profile is bound to the space its latency model
was fitted to; `profile.for_space(space)` gives the profile bound to a space (the evaluator and
the pipeline do this), or a `ProfileError` saying why it does not apply there;
`profiles_for_space(space, package)` says which profiles have a latency model for a space.

Every file is validated on load against the schema of `devices.profile_schema`; a
`ProfileError` (a `ValueError`) names the field, the value and what is allowed. Memory limits are in KB (1024 bytes) and compare with
`analyze(...)["peak_activation_bytes"] / 1024` (SRAM / RAM: int8 activations) and
`["flash_bytes"] / 1024` (Flash: int8 weights).

Bundled profiles live in ``assets/profiles/`` (see its README for how each was produced):
`list_profiles()` names them, `load_profile(name_or_path_or_dict)` loads one. The analytical
microcontroller profiles among them are written by `devices.mcu`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import functools
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from ..datasets.images import ASSETS_DIR
from ..families import family_of, preset_names
from ..files import MAX_JSON_BYTES, atomic_write_text, loads_json, read_json
from ..registry import Registry
from ..space.interface import DiscreteSearchSpace
from .profile_schema import (ANALYTICAL_MODEL_TYPE, ANY_SPACE, FIELDS, KINDS, MAX_BATCH_SIZE, MAX_THREADS,
                             PROFILE_FORMAT, PROFILE_VERSION, ProfileError, to_plain, validate_profile)

__all__ = ["DeviceProfile", "ProfileError", "load_profile", "list_profiles", "fit_profile",
           "load_validation", "write_validation_csv", "validation_path", "today", "BUNDLED_PROFILES",
           "PROFILE_FORMAT", "PROFILE_VERSION", "PROFILES_DIR", "MAX_PROFILE_BYTES", "MAX_THREADS",
           "MAX_BATCH_SIZE", "FIELDS", "KINDS", "ANALYTICAL_MODEL_TYPE", "ANY_SPACE", "profiles_for_space",
           "ProfileForSpace", "space_fingerprint", "configs_from_json", "config_json"]

PROFILES_DIR = ASSETS_DIR / "profiles"
MAX_PROFILE_BYTES = MAX_JSON_BYTES


def _register_bundled() -> None:
    for path in sorted(PROFILES_DIR.glob("*.json")):
        BUNDLED_PROFILES.register(path.stem, path)


# Bundled profile name -> its JSON file (the *.json files in assets/profiles).
BUNDLED_PROFILES: Registry[Path] = Registry("bundled device profile", loader=_register_bundled)


# Latency models of a bundled profile in another precision than its own, fitted on this
# machine's datasets (benchmarks/int8_latency_model.py, docs/int8.md): name -> precision -> file.
PRECISION_LATENCY_MODELS: dict[str, dict[str, Path]] = {
    "cpu-ort-1t": {"int8": ASSETS_DIR / "latency" / "cpu-ort-1t-int8.model.json"},
    "cpu-ort-1t-vit-fmnist": {"int8": ASSETS_DIR / "latency" / "cpu-ort-1t-vit-fmnist-int8.model.json"}}


# ---------------------------------------------------------------------- the profile
@dataclass(frozen=True, eq=False)
class DeviceProfile:
    """A validated device profile. Immutable: mappings are read-only views.

    Build one with `load_profile`, `DeviceProfile.from_dict` or `fit_profile`; constructing it
    directly validates the same way (a `latency_model` may be given as its dict).
    `bound_space`: the space object (of a registered family) its predictions are for (default:
    the preset its `space` names; none for `space` "*" or a package's space until `for_space`
    binds one).
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
    bound_space: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        bound = self.bound_space
        if bound is not None and not _is_space(bound):
            raise ProfileError(f"bound_space must be a search space object of a registered network family, "
                               f"got {type(bound).__name__}")
        data, model = validate_profile(self.to_dict(), "profile", bound)
        for key in ("runtime", "memory", "quality", "provenance"):
            object.__setattr__(self, key, _freeze(data[key]))
        object.__setattr__(self, "latency_model", model)
        if bound is None and self.space in preset_names():
            bound = _space(self.space)
        elif bound is not None:
            self._check_applies(bound)
        object.__setattr__(self, "bound_space", bound)

    # ----------------------------------------------------------------- spaces
    @property
    def any_space(self) -> bool:
        """True for a profile that applies to every space (`space` "*": analytical)."""
        return self.space == ANY_SPACE

    def applies_to(self, space: Any) -> bool:
        """Does this profile's latency model describe `space` (a space object or its name)?"""
        try:
            self._check_applies(space)
        except ProfileError:
            return False
        return True

    def _check_applies(self, space: Any) -> None:
        name = space if isinstance(space, str) else space.name
        if self.any_space:
            return
        if self.space != name:
            raise ProfileError(
                f"profile '{self.name}' is for space '{self.space}', not '{name}': its "
                f"'{_model_dict(self.latency_model).get('type')}' latency model was fitted to measured "
                f"subnets of '{self.space}'; allowed: an analytical profile (space '{ANY_SPACE}', e.g. the "
                f"stm32 ones) or one fitted for '{name}' (python -m ofa_engine profile-kit --supernet PKG, "
                f"then fit-profile --supernet PKG)")
        recorded = self.provenance.get("space_fingerprint") if isinstance(self.provenance, Mapping) else None
        if recorded is not None and not isinstance(space, str) and recorded != space_fingerprint(space):
            raise ProfileError(
                f"profile '{self.name}' was fitted for a space named '{name}' of another architecture "
                f"(provenance.space_fingerprint differs: channels, classes, blocks or resolutions); "
                f"allowed: a profile fitted for this space")

    def for_space(self, space: Any) -> "DeviceProfile":
        """This profile bound to `space` (a space object or a preset name): itself when it is
        bound to it already; for an analytical profile (any space), a copy whose predictions use
        `space`'s MACs and memory; a `ProfileError` naming both spaces when its latency model
        describes another space."""
        if isinstance(space, str):
            self._check_applies(space)
            space = _space(space)
        self._check_applies(space)
        if self.bound_space is space or self.bound_space == space:
            return self
        return dataclasses.replace(self, bound_space=space)

    def _space_for(self, space: Any) -> Any:
        if space is not None:
            return self.for_space(space).bound_space
        if self.bound_space is None:
            raise ProfileError(
                f"profile '{self.name}' applies to any space ('{ANY_SPACE}') and is not bound to one; "
                f"say which: profile.for_space(space), or pass space=")
        return self.bound_space

    # ----------------------------------------------------------------- predictions
    def predict_latency_ms(self, configs_or_pop: Any, space: Any = None) -> np.ndarray:
        """Predicted latency (ms, one batch of `batch_size`) of each config: a config,
        a list of them or a population; float64 array of shape (N,). `space`: the space of the
        configs (default: the one the profile is bound to)."""
        out = self.latency_model.predict_ms(self._space_for(space), configs_or_pop)
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def latency_gather_form(self) -> tuple[np.ndarray, np.ndarray, Any] | None:
        """(block table, fixed table, finish) of the bound space such that `predict_latency_ms(c)`
        equals `finish(features.gather(c, block, fixed))` number for number (`features`: the
        `LatencyFeatures` of the space's family, `predictors.latency.features_of`), or
        None when the latency model has no such form (see `LatencyModel.gather_form`)."""
        form = self.latency_model.gather_form(self.search_space)
        if form is None:
            return None
        block, fixed, finish = form
        return block, fixed, lambda sums: np.asarray(finish(sums), dtype=np.float64).reshape(-1)

    def memory_usage_kb(self, configs_or_pop: Any, space: Any = None) -> dict[str, np.ndarray]:
        """`peak_memory_kb` (int8 activations) and `flash_kb` (int8 weights) of each config, from
        the family's `analyze`, in KB, (N,) arrays: the figures the `memory` limits apply to."""
        metrics = family_of(self._space_for(space), fast=False).analyze(configs_or_pop)
        return {"peak_memory_kb": np.asarray(metrics["peak_activation_bytes"], np.float64).reshape(-1) / 1024,
                "flash_kb": np.asarray(metrics["flash_bytes"], np.float64).reshape(-1) / 1024}

    def fits_memory(self, configs_or_pop: Any, space: Any = None) -> np.ndarray:
        """Boolean array: does each config fit the activation-memory and Flash limits?"""
        usage = self.memory_usage_kb(configs_or_pop, space)
        ok = np.ones(usage["flash_kb"].shape, bool)
        if self.activation_memory_kb is not None:
            ok &= usage["peak_memory_kb"] <= self.activation_memory_kb
        if self.flash_kb is not None:
            ok &= usage["flash_kb"] <= self.flash_kb
        return ok

    # ----------------------------------------------------------------- properties
    @property
    def search_space(self) -> Any:
        """The space the profile is bound to (`ProfileError` when it is not bound to one)."""
        return self._space_for(None)

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

    @property
    def precision(self) -> str:
        """The precision this device deploys, the default of `specialize`: `runtime.precision`
        (the microcontroller profiles say int8), fp32 where the profile does not say."""
        return self.runtime.get("precision") or "fp32"

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions this profile can predict the latency of, its own first: its own, and
        another where the bundled profile has a latency model measured in it
        (`PRECISION_LATENCY_MODELS`: the int8 models of cpu-ort-1t and cpu-ort-1t-vit-fmnist).
        `specialize` refuses the others: the microcontroller profiles' analytical model counts
        int8 kernels, and an fp32 file's latency, Flash and SRAM on them would be numbers of
        another file."""
        return (self.precision,) + tuple(p for p in ("fp32", "int8")
                                         if p != self.precision and self.for_precision(p).precision == p)

    def check_precision(self, precision: str) -> str:
        """`precision` if this profile can predict the latency of its files (`precisions`),
        else `ValueError` naming the allowed ones."""
        allowed = self.precisions
        if precision not in allowed:
            # Its latency, Flash and SRAM figures would be those of another file.
            raise ValueError(f"profile '{self.name}' predicts the latency of {' and '.join(allowed)} files only, "
                             f"not {precision}; allowed precision: {', '.join(allowed)}")
        return precision

    def for_precision(self, precision: str) -> "DeviceProfile":
        """This profile for files of `precision`: itself when that is its own precision; for a
        bundled profile with a latency model measured in that precision (`PRECISION_LATENCY_MODELS`),
        a copy with that model, its quality and `runtime.precision`; otherwise itself (its latency
        model then stands for the other precision too: the microcontroller profiles' analytical
        model counts int8 MACs whatever the file)."""
        if precision == self.precision:
            return self
        path = PRECISION_LATENCY_MODELS.get(self.name, {}).get(precision)
        # Only the bundled profile itself (same content), not another one that took its name.
        if path is None or self.name not in BUNDLED_PROFILES or load_profile(self.name).to_json() != self.to_json():
            return self
        fitted = read_json(path)
        provenance = {**to_plain(self.provenance), "latency_model_" + precision: f"assets/latency/{path.name}"}
        return DeviceProfile(
            name=self.name, display_name=f"{self.display_name} ({precision})", kind=self.kind, space=self.space,
            batch_size=self.batch_size, threads=self.threads,
            runtime={**to_plain(self.runtime), "precision": precision}, memory=to_plain(self.memory),
            latency_model=fitted["latency_model"], quality=fitted["quality"], provenance=provenance,
            bound_space=self.bound_space)

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """The profile as plain JSON-safe data, in the schema's field order."""
        return {"format": PROFILE_FORMAT, "version": PROFILE_VERSION, "name": self.name,
                "display_name": self.display_name, "kind": self.kind, "space": self.space,
                "batch_size": self.batch_size, "threads": self.threads, "runtime": to_plain(self.runtime),
                "memory": to_plain(self.memory), "latency_model": _model_dict(self.latency_model),
                "quality": to_plain(self.quality), "provenance": to_plain(self.provenance)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "profile",
                  space: Any = None) -> "DeviceProfile":
        """Validate `data` (a parsed profile JSON) and build the profile; `ProfileError` otherwise.
        `space`: the space to bind it to, which may be a package's own (not a preset)."""
        data, model = validate_profile(data, source, space)
        try:
            profile = cls(**{k: data[k] for k in FIELDS if k not in ("format", "version", "latency_model")},
                          latency_model=model, bound_space=None if data["space"] == ANY_SPACE else space)
            return profile if space is None else profile.for_space(space)
        except ProfileError as exc:   # a profile of another space
            raise ProfileError(f"{source}: {exc}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile's JSON to `path` atomically (a temporary file, then rename)."""
        return atomic_write_text(path, self.to_json())

    def __repr__(self) -> str:
        return (f"DeviceProfile(name={self.name!r}, kind={self.kind!r}, space={self.space!r}, "
                f"threads={self.threads}, memory={dict(self.memory)})")


# ---------------------------------------------------------------------- loading
def list_profiles() -> list[str]:
    """Names of the bundled profiles (the JSON files in assets/profiles), sorted."""
    return sorted(BUNDLED_PROFILES.names())


def load_profile(profile: str | os.PathLike | Mapping[str, Any] | DeviceProfile,
                 space: Any = None) -> DeviceProfile:
    """A profile from a bundled name (see `list_profiles`), a JSON file path, a parsed dict, or
    a `DeviceProfile` (returned as is). `ProfileError` for an invalid or unknown profile.
    `space`: bind it to this space object (which may be a package's own, not a preset);
    `ProfileError` when its latency model describes another space."""
    if isinstance(profile, DeviceProfile):
        return profile if space is None else profile.for_space(space)
    if isinstance(profile, Mapping):
        return DeviceProfile.from_dict(profile, "profile", space)
    if not isinstance(profile, (str, os.PathLike)):
        raise ProfileError(f"a profile is a bundled name, a path, a dict or a DeviceProfile; got "
                           f"{type(profile).__name__}")
    text = os.fspath(profile)
    if text in BUNDLED_PROFILES:
        bundled = _load_bundled(text)
        return bundled if space is None else bundled.for_space(space)
    path = Path(text)
    if not path.is_file():
        raise ProfileError(f"unknown profile '{text}': neither a bundled profile "
                           f"({', '.join(list_profiles())}) nor an existing JSON file")
    return _load_file(path, space)


@functools.lru_cache(maxsize=None)
def _load_bundled(name: str) -> DeviceProfile:
    # Profiles are immutable, so one shared instance per bundled name is safe.
    return _load_file(BUNDLED_PROFILES.get(name))


def _load_file(path: Path, space: Any = None) -> DeviceProfile:
    what = f"profile file '{path}'"
    size = path.stat().st_size
    if size > MAX_PROFILE_BYTES:
        raise ProfileError(f"{what} is {size:,} bytes; allowed: at most {MAX_PROFILE_BYTES:,} bytes (1 MB)")
    try:
        data = read_json(path, what, max_bytes=MAX_PROFILE_BYTES)
    except ValueError as exc:   # not UTF-8, not JSON, nested too deep
        raise ProfileError(str(exc)) from None
    return DeviceProfile.from_dict(data, what, space)


class ProfileForSpace(NamedTuple):
    """One row of `profiles_for_space`: a profile's name and whether it has a latency model for
    the space (False: it is listed, but its latency model describes another space)."""

    name: str
    has_latency_model: bool


def profiles_for_space(space: Any, package: Any = None) -> list[ProfileForSpace]:
    """Which profiles have a latency model for `space` (a space object, a preset name, or a
    supernet package whose space is meant; `package`: a loaded `SupernetPackage` whose own
    `latency_profiles` are listed too): the bundled profiles (sorted), then the package's. A
    package's profile shadows a bundled one of the same name. Analytical profiles (space "*")
    have one for every space; a measured one only for the space it was fitted to."""
    if package is None and hasattr(space, "latency_profiles") and hasattr(space, "space"):
        package, space = space, space.space
    if package is not None and isinstance(space, str) and space == package.space.name:
        space = package.space
    own = list(getattr(package, "latency_profiles", ()) or ())
    own_names = {p.name for p in own}
    rows = [ProfileForSpace(name, load_profile(name).applies_to(space))
            for name in list_profiles() if name not in own_names]
    rows += [ProfileForSpace(p.name, p.applies_to(space)) for p in own]
    return rows


def space_fingerprint(space: Any) -> str:
    """sha256 of what a latency model of `space` (a dataclass space object) depends on: its name
    and architecture fields (not labels, mean, std or dropout). Recorded in the provenance of a profile fitted by the
    kit, so that it is not taken for another space of the same name."""
    import hashlib
    fields = {k: v for k, v in dataclasses.asdict(space).items() if k not in ("labels", "mean", "std", "dropout")}
    return "sha256:" + hashlib.sha256(json.dumps(fields, sort_keys=True, default=list).encode()).hexdigest()


def fit_profile(csv_path: str | os.PathLike, name: str, **options: Any) -> DeviceProfile:
    """Fit a measured profile to a latency CSV (the profile kit's results.csv); see
    `ofa_engine.devices.profile_kit.fit_profile_from_csv` for the options."""
    from .profile_kit import fit_profile_from_csv
    return fit_profile_from_csv(csv_path, name, **options)


# ---------------------------------------------------------------------- helpers
def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _model_dict(model: Any) -> Any:
    return to_plain(model) if isinstance(model, Mapping) else to_plain(model.to_dict())


def _space(name: str) -> Any:
    """The space object of a preset name."""
    return family_of(name, fast=False).space


def _is_space(value: Any) -> bool:
    """Is `value` a space object (not a preset name) of a registered family?"""
    if isinstance(value, (str, DiscreteSearchSpace)):
        return False
    try:
        family_of(value, fast=False)
    except ValueError:
        return False
    return True


def configs_from_json(texts: Sequence[str], space: Any = None, where: str = "", first_row: int = 2) -> list[Any]:
    """The configs of compact JSON texts (a CSV's `config` column), validated: of `space` (a
    space object or preset name), or, without one, of the first preset space (`preset_names`)
    that accepts them all. `ValueError` naming `where` and the row (`first_row` for the first)."""
    data = []
    for i, text in enumerate(texts):
        try:
            data.append(loads_json(text, "subnet config"))
        except ValueError as exc:
            raise ValueError(f"{where} row {i + first_row}: {exc}") from None
    candidates = [space] if space is not None else preset_names()
    problem = None
    for candidate in candidates:
        fam = family_of(candidate, fast=False)
        configs = []
        for i, item in enumerate(data):
            try:
                configs.append(fam.config_from_dict(item))
            except (ValueError, TypeError) as exc:
                problem = problem or f"{where} row {i + first_row}: {exc}"
                break
        else:
            return configs
    if space is not None or len(candidates) == 1:
        raise ValueError(problem)
    raise ValueError(f"{where}: the configs are of none of the spaces {candidates} (the first: {problem})")


def today() -> str:
    """Today's date, ISO format (a profile's `provenance.date`)."""
    return _dt.date.today().isoformat()


# ---------------------------------------------------------------------- validation data
def validation_path(name: str) -> Path:
    """Where a bundled measured profile keeps its held-out predictions (for charts)."""
    return PROFILES_DIR / f"{name}.validation.csv"


def write_validation_csv(path: str | os.PathLike, configs: Sequence[Any],
                         measured_ms: Sequence[float], predicted_ms: Sequence[float]) -> Path:
    """Write held-out subnets as `config,measured_ms,predicted_ms` (config = compact JSON), atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["config", "measured_ms", "predicted_ms"])
    for cfg, measured, predicted in zip(configs, measured_ms, predicted_ms, strict=True):
        writer.writerow([config_json(cfg), f"{float(measured):.6f}", f"{float(predicted):.6f}"])
    return atomic_write_text(path, buffer.getvalue())


def load_validation(profile: str | os.PathLike | DeviceProfile) -> dict[str, Any] | None:
    """Held-out predictions of a measured profile: {"configs": [config], "measured_ms":
    array, "predicted_ms": array}, from `<name>.validation.csv` next to the bundled profiles (or
    the given CSV path); None when there is none (analytical profiles). The configs are of the
    profile's space (`configs_from_json`; a CSV path alone: the preset space they fit)."""
    space = None
    if isinstance(profile, DeviceProfile):
        path, space = validation_path(profile.name), profile.bound_space
    elif os.fspath(profile).endswith(".csv"):
        path = Path(profile)
    else:
        path = validation_path(os.fspath(profile))
    if not path.is_file():
        return None
    texts, measured, predicted = [], [], []
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            texts.append(row["config"])
            measured.append(float(row["measured_ms"]))
            predicted.append(float(row["predicted_ms"]))
    configs = configs_from_json(texts, space, f"validation file '{path}'")
    return {"configs": configs, "measured_ms": np.array(measured), "predicted_ms": np.array(predicted)}


def config_json(config: Any) -> str:
    """A config as compact JSON (the CSVs' `config` column)."""
    to_json = getattr(config, "to_json", None)
    return to_json() if to_json is not None else json.dumps(config.to_dict(), separators=(",", ":"))
