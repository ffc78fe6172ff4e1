"""`latency_model_from_dict`: a model's `to_dict` form, validated by its pydantic schema.

Messages name the model type, the field, the value and what is allowed. Beyond the types,
a model must predict a positive latency for every subnet of its space: each model is linear
in non-negative per-block quantities, so `prediction_range` gives the exact minimum over the
space cheaply (the fitted coefficients themselves may be negative, as ridge fits produce).
"""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import ValidationError

from ...families import family_of, preset_names
from .models import LATENCY_MODELS, MODEL_TYPES, LatencyModel, ModelSchema

__all__ = ["latency_model_from_dict"]


def _location(loc: tuple) -> str:
    field, rest = str(loc[0]), loc[1:]
    return field + "".join(f"[{part!r}]" if isinstance(part, str) else f"[{part}]" for part in rest)


def _message(kind: str, schema: type[ModelSchema], exc: ValidationError) -> str:
    errors = exc.errors()
    names = sorted(schema.model_fields) + ["type"]
    missing = sorted(str(e["loc"][0]) for e in errors if e["type"] == "missing")
    if missing:
        return f"{kind} latency model: missing field(s) {missing}"
    extra = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if extra:
        return f"{kind} latency model: unexpected field(s) {extra}; allowed: {sorted(names)}"
    error = errors[0]
    loc = error["loc"]
    allowed = schema.allowed.get(str(loc[0]), "")
    if isinstance(allowed, tuple):
        allowed = allowed[0] if len(loc) == 1 else allowed[1]
    where = f"field '{loc[0]}'" if len(loc) == 1 else _location(loc)
    return f"{kind} latency model: {where} = {error['input']!r}; allowed: {allowed}"


def _space(space: Any) -> Any:
    return family_of(space, fast=False).space


def _spaces_to_check(data: Mapping[str, Any], space: Any) -> list[Any]:
    if space is not None:
        return [_space(space)]
    name = data.get("space")
    if name is None:
        # A model without a space serves any space: check every registered one.
        return [_space(p) for p in preset_names()]
    return [_space(name)] if name in preset_names() else []


def _check_positive(model: LatencyModel, kind: str, spaces: list[Any]) -> None:
    for space in spaces:
        try:
            smallest, _ = model.prediction_range(space)
        except ValueError:
            # A lookup table lacking keys of the space: predict_ms says so when it is used.
            continue
        if not smallest > 0:
            fields = [f for f in model.Schema.model_fields if f not in ("space", "source", "features", "blocks")]
            raise ValueError(f"{kind} latency model: fields {fields} = "
                             f"{[model.to_dict()[f] for f in fields]} predict {smallest:.4g} ms for some "
                             f"subnet of space '{space.name}'; allowed: values whose smallest prediction "
                             f"over the space is > 0")


def latency_model_from_dict(d: Mapping[str, Any], space: Any = None) -> LatencyModel:
    """Rebuild a model from `to_dict()` output; `ValueError` naming the field that is wrong.

    The model must predict > 0 ms for every subnet of `space` (default: the space the dict
    names, or every registered space for a model that names none).
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"a latency model must be a JSON object, got {type(d).__name__}")
    kind = d.get("type")
    if not isinstance(kind, str) or kind not in LATENCY_MODELS:
        raise ValueError(f"latency model field 'type' = {kind!r}; allowed: {list(MODEL_TYPES)}")
    cls = LATENCY_MODELS.get(kind)
    try:
        data = cls.Schema.model_validate({k: v for k, v in d.items() if k != "type"})
    except ValidationError as exc:
        raise ValueError(_message(kind, cls.Schema, exc)) from None
    model = cls.from_schema(data)
    _check_positive(model, kind, _spaces_to_check(d, space))
    return model
