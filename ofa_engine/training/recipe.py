"""Training recipes: the phases of progressive shrinking and the settings shared by all of them.

`Phase` and `Recipe` are frozen dataclasses (plain, comparable, JSON-serialisable values). Their
schema is declared once, as pydantic models: constructing either one validates it, and
`Recipe.from_dict` (a recipe file) turns every schema error into a message that names the
field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

from pydantic import (BaseModel, ConfigDict, Field, Strict, StrictBool, StrictInt, StrictStr, ValidationError,
                      field_validator)

from ..families.mbv3.space import SearchSpace, SubnetConfig

__all__ = ["DISTILL_SOURCES", "Phase", "Recipe", "default_recipe", "twin_recipe", "extends"]

DISTILL_SOURCES = ("teacher", "largest")


# ---------------------------------------------------------------------- schema
_Number = Annotated[float, Strict()]   # an int or a float, never a bool or a string


def _number(default: Any, description: str, **bounds: float) -> Any:
    """A finite int or float field (never a bool or a string) with bounds."""
    return Field(default, description=description, allow_inf_nan=False, **bounds)


class _PhaseSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(description="a string")
    epochs: _Number = _number(..., "a finite number > 0", gt=0)
    lr: _Number = _number(..., "a finite number > 0", gt=0)
    kernel_sizes: Optional[tuple[StrictInt, ...]] = Field(None, description="null or a list of integers")
    depths: Optional[tuple[StrictInt, ...]] = Field(None, description="null or a list of integers")
    expand_ratios: Optional[tuple[StrictInt, ...]] = Field(None, description="null or a list of integers")
    widths: Optional[tuple[StrictInt, ...]] = Field(None, description="null or a list of width indices")
    subnets_per_step: StrictInt = Field(1, ge=1, description="an integer >= 1")
    distill: StrictBool = Field(True, description="true or false")
    sort_channels: Optional[StrictStr] = Field(None, pattern=r"^(middle(:\d+)?|stage)$",
                                               description="null, 'middle:<stage>' or 'stage'")
    warmup_epochs: _Number = _number(0.0, "a finite number >= 0", ge=0)
    fixed_config: Optional[dict] = Field(None, description="null or a subnet config object")
    largest_weight: _Number = _number(1.0, "a finite number > 0 (1 = the largest subnet weighs as much as "
                                    "the others)", gt=0)
    distill_from: Literal["teacher", "largest"] = Field(
        "teacher", description=", ".join(repr(s) for s in DISTILL_SOURCES))

    @field_validator("fixed_config")
    @classmethod
    def _config(cls, value: dict | None) -> dict | None:
        if value is not None:
            SubnetConfig.from_dict(value)
        return value


class _RecipeSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phases: tuple[_PhaseSchema, ...] = Field(min_length=1, description="a list of at least one phase")
    batch_size: StrictInt = Field(256, ge=1, description="an integer >= 1")
    momentum: _Number = _number(0.9, "a finite number >= 0", ge=0)
    weight_decay: _Number = _number(3e-5, "a finite number >= 0", ge=0)
    label_smoothing: _Number = _number(0.1, "a number in 0..1", ge=0, le=1)
    kd_ratio: _Number = _number(1.0, "a finite number >= 0", ge=0)
    sandwich: StrictBool = Field(True, description="true or false")
    sandwich_largest: StrictBool = Field(False, description="true or false")
    augment: StrictBool = Field(True, description="true or false")
    seed: StrictInt = Field(0, ge=0, description="an integer >= 0")
    eval_images: StrictInt = Field(2000, ge=1, description="an integer >= 1")
    checkpoint_every: StrictInt = Field(50, ge=1, description="an integer >= 1")


def _fields(schema: type[BaseModel]) -> list[str]:
    return list(schema.model_fields)


def _message(error: dict, data: dict) -> str:
    """One pydantic error as our message: where, the field, the value, what is allowed."""
    loc = error["loc"]
    if loc and loc[0] == "phases" and len(loc) >= 3 and isinstance(loc[1], int):
        phase = data["phases"][loc[1]]
        where, field, schema = f"phase {phase.get('name', loc[1])!r}", loc[2], _PhaseSchema
    elif loc:
        where, field, schema = "recipe", loc[0], _RecipeSchema
    else:
        return f"recipe: {error['msg']}"
    if error["type"] == "missing":
        required = [n for n, f in schema.model_fields.items() if f.is_required()]
        return f"{where}: field '{field}' is missing; required: {', '.join(required)}"
    if error["type"] == "too_short" and field == "phases":
        return "a recipe needs at least one phase"
    if error["type"] == "value_error":   # fixed_config: SubnetConfig's own message
        return f"{where}: {field}: {error['msg'].removeprefix('Value error, ')}"
    value = error.get("input")
    allowed = schema.model_fields[field].description if field in schema.model_fields else error["msg"]
    return f"{where}: {field} = {value!r}; allowed: {allowed}"


def _validate_phase(data: dict, name: Any) -> None:
    """`ValueError` with our message for the first problem of a phase dict."""
    try:
        _PhaseSchema.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ValueError(_message({**error, "loc": ("phases", 0, *error["loc"])}, {"phases": [{"name": name}]})) from None


def _validate(data: dict) -> None:
    """`ValueError` with our message for the first problem of a recipe dict."""
    unknown = sorted(set(data) - set(_fields(_RecipeSchema)))
    if unknown:
        raise ValueError(f"unknown recipe fields {unknown}; allowed: {sorted(_fields(_RecipeSchema))}")
    for phase in data.get("phases", ()):
        bad = sorted(set(phase) - set(_fields(_PhaseSchema)))
        if bad:
            raise ValueError(f"unknown phase fields {bad}; allowed: {sorted(_fields(_PhaseSchema))}")
    try:
        _RecipeSchema.model_validate(data)
    except ValidationError as exc:
        raise ValueError(_message(exc.errors()[0], data)) from None


def _as_tuples(phase: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in phase.items()}


# ---------------------------------------------------------------------- the recipe
@dataclass(frozen=True)
class Phase:
    """One progressive-shrinking phase. A choice list left as None means 'largest only'."""

    name: str
    epochs: float
    lr: float
    kernel_sizes: tuple[int, ...] | None = None
    depths: tuple[int, ...] | None = None
    expand_ratios: tuple[int, ...] | None = None
    widths: tuple[int, ...] | None = None       # indices into the space's width multipliers
    subnets_per_step: int = 1
    distill: bool = True
    sort_channels: str | None = None            # None, "middle:<expand_stage>" or "stage"
    warmup_epochs: float = 0.0
    # Train only this architecture (a config dict; the resolution is still drawn per batch, as
    # in the full phase): the from-scratch twin of an extracted subnet.
    fixed_config: dict | None = None
    # Loss weight of the phase's largest subnet in each step (the others weigh 1): above 1, the
    # shared weights lean towards the largest subnet, which weight sharing otherwise pulls down.
    largest_weight: float = 1.0
    # Whom the subnets distil from: "teacher", the frozen full network of the first phase (OFA),
    # or "largest", the phase's largest subnet in the same step, its logits detached (BigNAS's
    # in-place distillation: the teacher moves with the shared weights; the largest subnet
    # itself learns from the labels only). "largest" needs the largest subnet in every step:
    # the recipe's sandwich_largest and at least 3 subnets per step.
    distill_from: str = "teacher"

    def __post_init__(self) -> None:
        _validate_phase(dataclasses.asdict(self), self.name)


@dataclass(frozen=True)
class Recipe:
    """A progressive-shrinking run: its phases (in order) and the settings they share."""

    phases: tuple[Phase, ...]
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 3e-5
    label_smoothing: float = 0.1
    kd_ratio: float = 1.0
    sandwich: bool = True          # the smallest subnet of the phase is one of each step's subnets
    sandwich_largest: bool = False  # ... and the largest too (BigNAS's full sandwich rule)
    augment: bool = True           # random 2-pixel shifts and horizontal flips
    seed: int = 0
    eval_images: int = 2000        # validation images for the per-epoch log
    checkpoint_every: int = 50     # steps between mid-epoch checkpoints

    def __post_init__(self) -> None:
        if not all(isinstance(p, Phase) for p in self.phases):
            raise ValueError("Recipe.phases must be Phase objects (Recipe.from_dict reads dicts)")
        _validate({**dataclasses.asdict(self), "phases": [dataclasses.asdict(p) for p in self.phases]})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Recipe":
        """A recipe from its JSON form (`to_dict`); `ValueError` naming the field, the value and
        what is allowed when it does not follow the schema."""
        if not isinstance(data, dict):
            raise ValueError(f"a recipe must be a JSON object of recipe fields, got {type(data).__name__} "
                             f"{str(data)[:80]}")
        phases = data.get("phases", [])
        if not isinstance(phases, (list, tuple)):
            raise ValueError(f"recipe: phases = {phases!r}; allowed: a list of at least one phase")
        for i, p in enumerate(phases):
            if not isinstance(p, dict):
                raise ValueError(f"recipe: phase {i} = {p!r}; allowed: a JSON object of phase fields")
        phases = [_as_tuples(p) for p in phases]
        _validate({**data, "phases": phases})
        for p in phases:
            if p.get("fixed_config") is not None:
                p["fixed_config"] = SubnetConfig.from_dict(p["fixed_config"]).to_dict()
        return cls(**{**data, "phases": tuple(Phase(**p) for p in phases)})

    def scaled(self, epoch_scale: float) -> "Recipe":
        return dataclasses.replace(self, phases=tuple(
            dataclasses.replace(p, epochs=p.epochs * epoch_scale) for p in self.phases))


def extends(done: Recipe, recipe: Recipe) -> bool:
    """True if `recipe` is `done` itself or `done` with phases appended: a run may be resumed
    with it, and continuing a finished run gives the same weights as running `recipe` at once
    (the checkpoint between two phases holds the whole state)."""
    n = len(done.phases)
    return (len(recipe.phases) >= n
            and dataclasses.replace(recipe, phases=recipe.phases[:n]) == done)


def twin_recipe(space: SearchSpace, cfg: SubnetConfig, base: Recipe | None = None) -> Recipe:
    """The from-scratch baseline for `cfg`: the full-network phase of `base` (same epochs, LR,
    schedule, augmentation, resolution drawn per batch) training only `cfg`'s architecture."""
    base = base or default_recipe(space)
    full = base.phases[0]
    return dataclasses.replace(base, phases=(dataclasses.replace(
        full, name="scratch", distill=False, fixed_config=space.validate(cfg).to_dict()),))


def default_recipe(space: SearchSpace) -> Recipe:
    """Our recipe (ANCHORS.md's schedule, shortened to fit 2 CPU cores): the full network, then
    elastic kernel, depth, expand ratio and width, then phases that train everything elastic at
    once (the last three with in-place distillation). Each version of it, why its phases were
    added and what they measured: docs/training.md, "The bundled run"."""
    ks, ds, es = space.kernel_sizes, space.depths, space.expand_ratios
    es_desc = sorted(es, reverse=True)
    all_w = tuple(range(len(space.width_mults)))
    full = dict(kernel_sizes=ks, depths=ds)
    phases = [
        Phase("full", epochs=30, lr=0.1, distill=False, warmup_epochs=0.5),
        Phase("kernel", epochs=4, lr=0.01, kernel_sizes=ks, subnets_per_step=3),
        Phase("depth", epochs=4, lr=0.008, subnets_per_step=3, **full),
    ]
    for stage in range(1, len(es)):
        phases.append(Phase(f"expand-{stage}", epochs=3 if stage < len(es) - 1 else 4, lr=0.008,
                            expand_ratios=tuple(sorted(es_desc[:stage + 1])), subnets_per_step=3,
                            sort_channels=f"middle:{stage - 1}", **full))
    if len(all_w) > 1:
        phases.append(Phase("width", epochs=10, lr=0.01, expand_ratios=es, widths=all_w,
                            subnets_per_step=3, sort_channels="stage", **full))
    widths = all_w if len(all_w) > 1 else None
    everything = dict(expand_ratios=es, widths=widths, subnets_per_step=3, **full)
    phases += [
        Phase("all", epochs=15, lr=0.01, largest_weight=2.0, **everything),
        Phase("all-2", epochs=20, lr=0.015, largest_weight=3.0, **everything),
        Phase("all-3", epochs=12, lr=0.005, largest_weight=6.0, **everything),
        Phase("all-inplace", epochs=12, lr=0.01, largest_weight=4.0, distill_from="largest", **everything),
        Phase("all-inplace-2", epochs=10, lr=0.015, largest_weight=4.0, distill_from="largest", **everything),
        Phase("all-inplace-4sub", epochs=10, lr=0.015, largest_weight=4.0, distill_from="largest",
              **{**everything, "subnets_per_step": 4}),
    ]
    return Recipe(phases=tuple(phases), sandwich_largest=True)
