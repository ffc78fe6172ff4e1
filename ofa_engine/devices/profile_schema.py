"""The device-profile schema, declared once (pydantic v2), and its error messages.

One pydantic model per part of a profile (`RuntimeSchema`, `MemorySchema`, `QualitySchema`,
`ProvenanceSchema`) and one for the whole (`ProfileSchema`). Each field's description says
what is allowed; `validate_profile` turns the first problem pydantic finds into a
`ProfileError` that names the file, the field, the value and that description, in the words
the engine has always used (pydantic's own text never reaches the user).

The schema only checks: the data keeps its author's key order and values (numpy scalars
become Python numbers), so a profile written, read and written again is byte-for-byte equal.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, ClassVar, Literal, Mapping, Optional

import numpy as np
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, Strict,
                      ValidationError, ValidationInfo, field_validator, model_validator)
from pydantic_core import PydanticCustomError

from ..families import preset_names

__all__ = ["ProfileError", "ProfileSchema", "RuntimeSchema", "MemorySchema", "QualitySchema",
           "ProvenanceSchema", "validate_profile", "to_plain", "PROFILE_FORMAT", "PROFILE_VERSION", "FIELDS",
           "KINDS", "MAX_THREADS", "MAX_BATCH_SIZE", "ANALYTICAL_MODEL_TYPE", "ANY_SPACE"]

PROFILE_FORMAT, PROFILE_VERSION = "ofa-engine/device-profile", 1
KINDS = ("measured", "analytical")
ANALYTICAL_MODEL_TYPE = "analytical-mcu"
# The `space` of a profile that applies to every space: an analytical profile counts MACs,
# memory and Flash from the config of whichever space it is used with.
ANY_SPACE = "*"
# A profile may come from anyone (an upload in the app), and the server acts on two of its
# numbers: it starts `threads` ONNX Runtime threads and allocates a batch of `batch_size`
# inputs to measure a subnet. 64 threads is more cores than the machines we target have;
# 256 inputs of the largest space (3 x 224 x 224 float32) are 154 MB.
MAX_THREADS = 64
MAX_BATCH_SIZE = 256


class ProfileError(ValueError):
    """An invalid device profile (file, dict or field); the message names the field and what is allowed."""


# ---------------------------------------------------------------------- value types
def _rule(message: str, field: str | None = None) -> PydanticCustomError:
    """A failed rule of ours: `message` follows "field '<field>' " in the error as it is."""
    return PydanticCustomError("profile_rule", "{message}", {"message": message, "field": field})


def _not_allowed() -> PydanticCustomError:
    # The message is then "= <value>; allowed: <the field's description>".
    return PydanticCustomError("not_allowed", "not allowed")


def _python_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _number(value: Any) -> int | float:
    value = _python_scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _not_allowed()
    return value


def _kb(value: Any) -> int | float | None:
    value = _python_scalar(value)
    if value is not None and _number(value) <= 0:
        raise _not_allowed()
    return value


def _scalar(value: Any) -> Any:
    value = _python_scalar(value)
    if value is None or isinstance(value, (str, bool)):
        return value
    return _number(value)


def _not_blank(text: str) -> str:
    if not text.strip():
        raise _not_allowed()
    return text


def _required_text(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise _rule(f"= {value!r}; required: a non-empty string")
    return value


def _readable_version(version: int) -> int:
    if version > PROFILE_VERSION:
        raise _rule(f"= {version}: written by a newer ofa_engine; this one reads version {PROFILE_VERSION}")
    return version


def _precision(value: Any) -> Any:
    if value is not None and value not in ("fp32", "int8"):
        raise _not_allowed()
    return value


Int = Annotated[int, BeforeValidator(_python_scalar), Strict()]
Number = Annotated[float, PlainValidator(_number)]
KB = Annotated[Optional[float], PlainValidator(_kb)]
Scalar = Annotated[Any, PlainValidator(_scalar)]
OptionalText = Annotated[Optional[Annotated[str, Strict()]], Field(description="a string or null")]
NUMBER, KB_TEXT = "a number", "a positive number of KB (1 KB = 1024 bytes), or null for unlimited"


# ---------------------------------------------------------------------- the parts
class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # What any key beyond the declared fields may hold (models with extra="allow").
    extra_allowed: ClassVar[str] = ""
    # Appended to "lacks [...]; required: [...]".
    required_note: ClassVar[str] = ""


class RuntimeSchema(_Part):
    """How the latencies were (or would be) obtained; more keys may describe it further."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Scalar]
    extra_allowed = "a string, number, boolean or null"
    required_note = " (null where not applicable)"

    engine: Annotated[str, Strict(), Field(min_length=1, description="a non-empty string (e.g. 'onnxruntime')")]
    version: OptionalText
    provider: OptionalText
    graph_optimization: OptionalText
    measure_locally: Annotated[bool, Strict(), Field(description="true or false")] = False
    # The precision the device deploys (the default of `specialize`); older files lack it.
    precision: Annotated[Optional[str], PlainValidator(_precision),
                         Field(description="'fp32', 'int8', or null (fp32)")] = None


class MemorySchema(_Part):
    """Limits in KB: exactly one of `sram_kb` (microcontrollers) or `ram_kb`, and `flash_kb`."""

    sram_kb: Annotated[KB, Field(description=KB_TEXT)] = None
    ram_kb: Annotated[KB, Field(description=KB_TEXT)] = None
    flash_kb: Annotated[KB, Field(description=KB_TEXT)] = None

    @model_validator(mode="before")
    @classmethod
    def _one_activation_limit(cls, data: Any) -> Any:
        # Unknown keys are reported first (extra="forbid"), then which keys are required.
        if isinstance(data, Mapping) and not set(data) - set(cls.model_fields):
            if ("sram_kb" in data) == ("ram_kb" in data) or "flash_kb" not in data:
                raise _rule(f"has keys {sorted(data)}; required: exactly one of 'sram_kb' "
                            f"(microcontrollers) or 'ram_kb', and 'flash_kb'")
        return data


class QualitySchema(_Part):
    """The held-out score of a fitted latency model; more numbers may be added."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Number]
    extra_allowed = NUMBER

    rmse_ms: Annotated[Number, Field(description=NUMBER)]
    mape: Annotated[Number, Field(description=NUMBER)]
    kendall_tau: Annotated[Number, Field(description=NUMBER)]
    within_10pct: Annotated[Number, Field(description=NUMBER)]
    n_test: Annotated[Number, Field(description=NUMBER)]


RequiredText = Annotated[Any, AfterValidator(_required_text), Field(validate_default=True)]


class ProvenanceSchema(_Part):
    """Where the profile comes from; any further JSON values may be recorded."""

    model_config = ConfigDict(extra="allow")

    machine: RequiredText = None
    date: RequiredText = None
    command: RequiredText = None

    @model_validator(mode="wrap")
    @classmethod
    def _json_values_only(cls, data: Any, handler: Any) -> Any:
        model = handler(data)
        try:
            json.dumps(data, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            raise _rule("must hold only JSON values (strings, numbers, lists, objects)") from None
        return model


# ---------------------------------------------------------------------- the profile
class ProfileSchema(BaseModel):
    """A device profile, schema `ofa-engine/device-profile` version 1 (see `devices.profiles`)."""

    model_config = ConfigDict(extra="forbid")

    format: Annotated[Literal["ofa-engine/device-profile"], Field(description=f"'{PROFILE_FORMAT}'")]
    version: Annotated[Int, Field(ge=1, description=str(PROFILE_VERSION)), AfterValidator(_readable_version)]
    name: Annotated[str, Strict(), Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description=(
        "1-64 characters of lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"))]
    display_name: Annotated[str, Strict(), Field(max_length=200, description=(
        "a non-empty string of at most 200 characters")), AfterValidator(_not_blank)]
    kind: Annotated[Literal["measured", "analytical"], Field(description=str(list(KINDS)))]
    space: Any
    batch_size: Annotated[Int, Field(ge=1, le=MAX_BATCH_SIZE, description=(
        f"an integer >= 1, at most {MAX_BATCH_SIZE} (MAX_BATCH_SIZE)"))]
    threads: Annotated[Optional[Int], Field(ge=1, le=MAX_THREADS, description=(
        f"an integer >= 1, or null for a microcontroller (no threads); at most {MAX_THREADS} (MAX_THREADS)"))]
    runtime: Annotated[RuntimeSchema, Field(description="an object {engine, version, provider, graph_optimization, ...}")]
    memory: Annotated[MemorySchema, Field(description="an object {sram_kb or ram_kb, flash_kb}")]
    latency_model: Any
    quality: Annotated[Optional[QualitySchema], Field(description=(
        "an object {rmse_ms, mape, kendall_tau, within_10pct, n_test} or null"))]
    provenance: Annotated[ProvenanceSchema, Field(description="an object {machine, date, command, ...}")]

    @field_validator("space", mode="plain")
    @classmethod
    def _known_space(cls, space: Any, info: ValidationInfo) -> str:
        # A preset, '*' (analytical profiles: any space), or the space the profile is loaded for
        # (a package's own space, passed as validation context by `validate_profile`).
        own = (info.context or {}).get("space_name")
        if space == ANY_SPACE:
            if info.data.get("kind") == "measured":
                raise _rule(f"= '{ANY_SPACE}'; '{ANY_SPACE}' (any space) is for analytical profiles only: a "
                            f"measured profile's latency model is fitted to the subnets of one space; allowed: "
                            f"{preset_names()}" + (f" or '{own}'" if own else ""))
            return space
        if not isinstance(space, str) or (space not in preset_names() and space != own):
            allowed = preset_names() + ([own] if own and own not in preset_names() else [])
            raise _rule(f"= {space!r}; allowed: {allowed}, or '{ANY_SPACE}' for an analytical profile (any space)")
        return space

    @field_validator("threads")
    @classmethod
    def _measured_states_threads(cls, threads: int | None, info: ValidationInfo) -> int | None:
        if threads is None and info.data.get("kind") == "measured":
            raise _rule("= null; a measured profile states its thread count (an integer >= 1)")
        return threads

    @field_validator("latency_model", mode="plain")
    @classmethod
    def _fitted_model(cls, data: Any, info: ValidationInfo) -> Any:
        """The latency model object (`predictors.latency`), agreeing with the kind and space."""
        if not isinstance(data, Mapping):
            raise _rule(f"must be an object (a fitted latency model), got {type(data).__name__}")
        kind, model_type = info.data.get("kind"), data.get("type")
        if kind == "analytical" and model_type != ANALYTICAL_MODEL_TYPE:
            raise _rule(f"= {model_type!r}; an analytical profile uses '{ANALYTICAL_MODEL_TYPE}'",
                        "latency_model.type")
        if kind == "measured" and model_type == ANALYTICAL_MODEL_TYPE:
            raise _rule(f"= {model_type!r}; a measured profile holds a model fitted to its measurements, "
                        f"not '{ANALYTICAL_MODEL_TYPE}'", "latency_model.type")
        from ..predictors.latency import latency_model_from_dict
        context = info.context or {}
        own = context.get("space") if data.get("space") == context.get("space_name") else None
        try:
            # A model of the space the profile is loaded for is checked on that space itself.
            model = latency_model_from_dict(dict(data), space=own)
        except ValueError as exc:
            raise _rule(f"is invalid: {exc}") from None
        space, model_space = info.data.get("space"), data.get("space")
        if model_space is not None and model_space != space:
            raise _rule(f"= {model_space!r} but the profile's space is '{space}'", "latency_model.space")
        return model


FIELDS = tuple(ProfileSchema.model_fields)
_PARTS: dict[str, type[_Part]] = {"runtime": RuntimeSchema, "memory": MemorySchema, "quality": QualitySchema,
                                  "provenance": ProvenanceSchema}
# The order problems are reported in: the fitted model is checked last.
_REPORT_ORDER = [f for f in FIELDS if f != "latency_model"] + ["latency_model"]


# ---------------------------------------------------------------------- validation
def validate_profile(data: Any, source: str, space: Any = None) -> tuple[dict[str, Any], Any]:
    """(the checked profile as plain data in `FIELDS` order, its latency model object), or
    `ProfileError` naming `source`, the field, the value and what is allowed. `space`: a
    space object beyond the presets that the profile may be for (a package's own space)."""
    context = {"space": space, "space_name": getattr(space, "name", None)}
    try:
        checked = ProfileSchema.model_validate(data, context=context)
    except ValidationError as exc:
        raise ProfileError(_message(exc.errors(include_url=False), source)) from None
    except RecursionError:
        raise ProfileError(f"{source}: nests too deeply to be a profile") from None
    out = {key: to_plain(data[key]) for key in FIELDS if key != "latency_model"}
    out["format"], out["version"] = PROFILE_FORMAT, PROFILE_VERSION
    # Memory limits in the schema's order; every other part keeps its author's order.
    out["memory"] = {key: out["memory"][key] for key in MemorySchema.model_fields if key in out["memory"]}
    out["latency_model"] = to_plain(data["latency_model"])
    return {key: out[key] for key in FIELDS}, checked.latency_model


def _message(errors: list[dict[str, Any]], source: str) -> str:
    def top(kind: str) -> list[str]:
        return [e["loc"][0] for e in errors if len(e["loc"]) == 1 and e["type"] == kind]

    if not errors[0]["loc"]:
        return f"{source}: a profile must be a JSON object, got {type(errors[0]['input']).__name__}"
    unknown = top("extra_forbidden")
    if unknown:
        return f"{source}: unknown field(s) {sorted(unknown)}; allowed: {list(FIELDS)}"
    missing = top("missing")
    if missing:
        return f"{source}: missing field(s) {missing}; a profile has the fields {list(FIELDS)}"
    errors = sorted(errors, key=lambda e: _REPORT_ORDER.index(e["loc"][0]))
    part = errors[0]["loc"][0]
    # Within a part, its missing and unknown keys come before its bad values.
    for kind in ("missing", "extra_forbidden"):
        keys = [e["loc"][1] for e in errors if e["loc"][0] == part and len(e["loc"]) == 2 and e["type"] == kind]
        if keys and kind == "missing":
            schema = _PARTS[part]
            required = [k for k, f in schema.model_fields.items() if f.is_required()]
            return f"{source}: field '{part}' lacks {keys}; required: {required}{schema.required_note}"
        if keys:
            return (f"{source}: field '{part}' has unknown key(s) {sorted(keys)}; allowed: "
                    f"{list(_PARTS[part].model_fields)}")
    error = errors[0]
    field = ".".join(str(key) for key in error["loc"])
    if error["type"] == "profile_rule":
        return f"{source}: field '{error['ctx']['field'] or field}' {error['ctx']['message']}"
    allowed = _allowed(error["loc"])
    if error["type"] == "model_type":
        return f"{source}: field '{field}' must be {allowed}, got {type(error['input']).__name__}"
    return f"{source}: field '{field}' = {error['input']!r}; allowed: {allowed}"


def _allowed(loc: tuple) -> str:
    """The description of the field at `loc` (a profile field or a key of one of its parts)."""
    if len(loc) == 1:
        return ProfileSchema.model_fields[loc[0]].description or ""
    schema = _PARTS[loc[0]]
    field = schema.model_fields.get(loc[1])
    return field.description if field is not None else schema.extra_allowed


def to_plain(value: Any) -> Any:
    """A plain JSON-safe copy: mappings become dicts, sequences lists, numpy scalars numbers."""
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
