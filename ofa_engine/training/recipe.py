"""Training recipes: the phases of progressive shrinking and the settings shared by all of them.

`Phase` and `Recipe` are frozen dataclasses (plain, comparable, JSON-serialisable values). Their
schema is declared once, as pydantic models: constructing either one validates it, and
`Recipe.from_dict` (a recipe file) turns every schema error into a message that names the
field, the value and what is allowed.

A recipe is family-neutral: a phase lists, per elastic dimension of the network family, the
values it trains (`Phase.elastic_choices`); what those names mean, the family's default schedule
and its channel sorts are the family's training hooks (`ofa_engine.space.training`).
`check_recipe(space, recipe)` checks a recipe against a space's family (the trainer does so
before it writes anything).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, StrictInt, StrictStr, ValidationError

from ..families import family_of

__all__ = ["DISTILL_SOURCES", "Phase", "Recipe", "default_recipe", "twin_recipe", "extends", "check_recipe",
           "training_hooks", "MBV3_DIMENSIONS"]

DISTILL_SOURCES = ("teacher", "largest", "file")
# Phase fields that name elastic dimensions: MobileNetV3's, fields of the recipe file since its
# first version. Other families' dimensions go in a phase's `choices`.
MBV3_DIMENSIONS = ("kernel_sizes", "depths", "expand_ratios", "widths")


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
    choices: Optional[dict[StrictStr, Optional[tuple[_Number, ...]]]] = Field(
        None, description="null or an object of elastic dimension names -> lists of numbers")
    sort_channels: Optional[StrictStr] = Field(None, pattern=r"^[a-z][a-z_-]*(:\d+)?$",
                                               description="null or one of the family's channel sorts "
                                                           "(MobileNetV3: 'middle:<stage>' or 'stage')")
    warmup_epochs: _Number = _number(0.0, "a finite number >= 0", ge=0)
    fixed_config: Optional[dict] = Field(None, description="null or a subnet config object (checked against "
                                                           "the space by check_recipe)")
    largest_weight: _Number = _number(1.0, "a finite number > 0 (1 = the largest subnet weighs as much as "
                                    "the others)", gt=0)
    distill_from: Literal["teacher", "largest", "file"] = Field(
        "teacher", description=", ".join(repr(s) for s in DISTILL_SOURCES))
    teacher_file: Optional[StrictStr] = Field(None, min_length=1, description="null or the path of a supernet "
                                              "file (with distill_from 'file')")


class _RecipeSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phases: tuple[_PhaseSchema, ...] = Field(min_length=1, description="a list of at least one phase")
    batch_size: StrictInt = Field(256, ge=1, description="an integer >= 1")
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="'sgd' or 'adamw'")
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
    """One progressive-shrinking phase. A choice list left as None means 'largest only'.

    The elastic dimensions it trains: MobileNetV3's as fields of their own (kernel_sizes,
    depths, expand_ratios, widths), any family's in `choices` ({name: values}, e.g. a ViT's
    {"embed_dim": (64, 96)}); `elastic_choices()` gives both as one dict."""

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
    # ... or "file": the largest subnet of another trained supernet, `teacher_file` (a supernet
    # file of any family with the same classes, e.g. a CNN teaching a Transformer as in DeiT),
    # frozen; then every subnet of the step, the largest included, learns from the labels and
    # from it.
    distill_from: str = "teacher"
    # The values of elastic dimensions other than the four fields above ({name: values}).
    choices: Mapping[str, tuple] | None = None
    teacher_file: str | None = None

    def __post_init__(self) -> None:
        _validate_phase(dataclasses.asdict(self), self.name)
        if self.choices is not None:
            twice = sorted(set(self.choices) & set(MBV3_DIMENSIONS))
            if twice:
                raise ValueError(f"phase {self.name!r}: {twice} given in choices; a dimension with a field of "
                                 f"its own ({', '.join(MBV3_DIMENSIONS)}) is set there only")
            object.__setattr__(self, "choices", {k: None if v is None else tuple(v) for k, v in self.choices.items()})
        if (self.distill_from == "file") != (self.teacher_file is not None):
            raise ValueError(f"phase {self.name!r}: distill_from 'file' and teacher_file go together "
                             f"(distill_from = {self.distill_from!r}, teacher_file = {self.teacher_file!r}); "
                             f"allowed: both, or neither")
        if self.distill_from == "file" and not self.distill:
            raise ValueError(f"phase {self.name!r}: distill_from 'file' with distill false; allowed: distill true")

    def elastic_choices(self) -> dict[str, tuple | None]:
        """{dimension: the values this phase trains} (None: the largest only)."""
        return {**{name: getattr(self, name) for name in MBV3_DIMENSIONS}, **(self.choices or {})}

    def to_dict(self) -> dict[str, Any]:
        """Its recipe-file form; `choices` and `teacher_file` only where they are set (a
        MobileNetV3 recipe's form is the one it had before they existed)."""
        data = dataclasses.asdict(self)
        for field in ("choices", "teacher_file"):
            if data[field] is None:
                del data[field]
        return data


@dataclass(frozen=True)
class Recipe:
    """A progressive-shrinking run: its phases (in order) and the settings they share."""

    phases: tuple[Phase, ...]
    batch_size: int = 256
    # "sgd": SGD with Nesterov momentum `momentum` (OFA's); "adamw": AdamW (betas 0.9, 0.999),
    # what Vision Transformers train with. Weight decay on weights only either way.
    optimizer: str = "sgd"
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
        """Its recipe-file form; `optimizer` only where it is not SGD (an SGD recipe's form is
        the one it had before the field existed)."""
        data = {**dataclasses.asdict(self), "phases": [p.to_dict() for p in self.phases]}
        if data["optimizer"] == "sgd":
            del data["optimizer"]
        return data

    @classmethod
    def from_dict(cls, data: Any, space: Any = None) -> "Recipe":
        """A recipe from its JSON form (`to_dict`); `ValueError` naming the field, the value and
        what is allowed when it does not follow the schema. With `space` (any family's space
        object), also checked against it (`check_recipe`) and each `fixed_config` written in the
        family's own form."""
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
        if space is not None:
            for p in phases:
                if p.get("fixed_config") is not None:
                    p["fixed_config"] = _fixed_config(space, p["fixed_config"], p["name"])
        recipe = cls(**{**data, "phases": tuple(Phase(**p) for p in phases)})
        if space is not None:
            check_recipe(space, recipe)
        return recipe

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


def training_hooks(space: Any) -> Any:
    """The `TrainingHooks` of `space`'s family (a family's space object or preset name)."""
    return family_of(space, fast=False).training()


def _fixed_config(space: Any, config: Any, phase: str) -> dict[str, Any]:
    """A phase's fixed_config validated by `space`, in its family's dict form."""
    try:
        return family_of(space, fast=False).validate(config).to_dict()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"phase {phase!r}: fixed_config: {exc}") from None


def check_recipe(space: Any, recipe: Recipe) -> None:
    """`ValueError` naming the phase and the field for the first thing of `recipe` that the
    family of `space` cannot train: an elastic dimension it lacks or a value its space lacks,
    a channel sort it does not know, a fixed_config that is not one of its configs."""
    hooks = training_hooks(space)
    for phase in recipe.phases:
        where = f"phase {phase.name!r}"
        hooks.phase_choices(phase.elastic_choices(), where)
        if phase.sort_channels is not None:
            hooks.check_sort(phase.sort_channels, where)
        if phase.fixed_config is not None:
            _fixed_config(space, phase.fixed_config, phase.name)


def twin_recipe(space: Any, cfg: Any, base: Recipe | None = None) -> Recipe:
    """The from-scratch baseline for `cfg`: the full-network phase of `base` (same epochs, LR,
    schedule, augmentation, resolution drawn per batch) training only `cfg`'s architecture."""
    base = base or default_recipe(space)
    full = base.phases[0]
    return dataclasses.replace(base, phases=(dataclasses.replace(
        full, name="scratch", distill=False, fixed_config=space.validate(cfg).to_dict()),))


def default_recipe(space: Any) -> Recipe:
    """The default progressive-shrinking run of `space`'s family (its training hooks'
    `default_recipe`; MobileNetV3's: docs/training.md, "The bundled run")."""
    return Recipe.from_dict(training_hooks(space).default_recipe())
