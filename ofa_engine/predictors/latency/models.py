"""The four latency models, as estimators over feature rows.

Every model follows scikit-learn's convention: hyper-parameters in `__init__`, `fit(X, y)`
returns the model, `predict(X)` maps an (N, F) array of feature rows to (N,) milliseconds.
`feature_rows(space, configs)` gives a model its rows (from the `LatencyFeatures` of the
space's family, `features_of`), and `predict_ms(space, configs)` is `predict(feature_rows(...))`
over configs or a population. A space is a family's space object or a preset name.

- "macs-linear": latency_ms = ms_per_mmac * MACs / 1e6 + intercept_ms (the MACs-proxy
  baseline); rows: (MACs,).
- "lut": OFA-style lookup table. Every elastic block is keyed by its geometry (the family's
  `block_keys`; MobileNetV3: as in the official OFA latency tables: input size, in / out
  channels, expand ratio, kernel, stride, residual, SE, activation); the fixed parts (stem,
  head) are keyed per input shape (`fixed_keys`). Blocks are measured in
  isolation (`ofa_engine.devices.latency_dataset.measure_block_table`) and summed; a linear
  calibration (scale, offset), the fitted part, absorbs what isolated blocks cannot see
  (per-run overhead, cache effects across blocks). Rows: (sum of block ms,).
- "block-linear": the learned predictor (chosen by measurement, see docs/predictors-report.md):
  linear in per-block architecture features (the family's `LatencyFeatures.feature_names`),
  fitted by ridge regression on relative error.
- "analytical-mcu": latency_ms = MACs / (macs_per_cycle * clock_mhz * 1e3) + overhead_ms,
  for microcontroller classes that nobody measured here (`fit` calibrates macs_per_cycle and
  overhead_ms for the given clock). Rows: (MACs,).

The types are registered in `LATENCY_MODELS` (type name -> class); `MODEL_TYPES` lists them.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Any, ClassVar, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ...families import family_of
from ...registry import Registry
from ...space.latency import Configs, LatencyFeatures
from ..linear import ridge_solve

__all__ = ["LatencyModel", "MacsLinearModel", "LookupTableModel", "BlockLinearModel", "AnalyticalMCUModel",
           "LATENCY_MODELS", "MODEL_TYPES", "LEARNED_KIND", "DEFAULT_RIDGE", "ModelSchema", "features_of",
           "architecture_features", "total_macs", "unique_blocks"]

LEARNED_KIND = "block-linear"
DEFAULT_RIDGE = 1e-3                       # used when there are too few subnets to cross-validate

LATENCY_MODELS: Registry[type["LatencyModel"]] = Registry("latency model type")

# Field types of the `to_dict` schemas (pydantic, strict: no strings or booleans for numbers).
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
PositiveNumber = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]
NonNegativeNumber = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
Text = Annotated[str, Field(strict=True)]


class ModelSchema(BaseModel):
    """Base of a model's `to_dict` schema; `allowed` says, per field, what it accepts (for
    messages). A container field maps to (the field, one item)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    allowed: ClassVar[dict[str, str | tuple[str, str]]] = {}


SpaceLike = Any   # a family's space object or preset name


def _family_features(space: SpaceLike) -> tuple[Any, LatencyFeatures | None]:
    fam = family_of(space, fast=False)
    return fam, fam.latency_features()


@functools.lru_cache(maxsize=32)
def _cached_family_features(space: SpaceLike) -> tuple[Any, LatencyFeatures | None]:
    return _family_features(space)


def _resolve(space: SpaceLike) -> tuple[Any, LatencyFeatures | None]:
    """(the family bound to `space`, its latency features or None), cached per space: the
    predictions of a profile ask for them on every call."""
    try:
        hash(space)
    except TypeError:
        return _family_features(space)
    return _cached_family_features(space)


def features_of(space: SpaceLike | LatencyFeatures) -> LatencyFeatures:
    """The `LatencyFeatures` of `space`'s family, bound to it; `ValueError` for a family without
    any (only the MACs models apply there)."""
    if isinstance(space, LatencyFeatures):
        return space
    fam, features = _resolve(space)
    if features is None:
        raise ValueError(f"space '{fam.space.name}' (family '{fam.family}') has no latency features; "
                         f"allowed latency models for it: 'macs-linear', 'analytical-mcu'")
    return features


def _space_of(space: SpaceLike | LatencyFeatures) -> Any:
    """The space object of a space object, preset name or `LatencyFeatures`."""
    return space.space if isinstance(space, LatencyFeatures) else _resolve(space)[0].space


def architecture_features(space: SpaceLike, configs: Configs) -> tuple[np.ndarray, tuple[str, ...]]:
    """(N, F) float64 feature rows of the learned model and their names (`features_of(space).features`)."""
    return features_of(space).features(configs)


def total_macs(space: SpaceLike, configs: Configs) -> np.ndarray:
    """(N,) float64 MACs per config: the family's table gather, or its `analyze` for a family
    without latency features."""
    if isinstance(space, LatencyFeatures):
        return space.total_macs(configs)
    fam, features = _resolve(space)
    if features is not None:
        return features.total_macs(configs)
    return np.asarray(fam.analyze(configs)["macs"], np.float64).reshape(-1)


def _macs_range(space: SpaceLike) -> tuple[float, float]:
    """Exact (min, max) MACs over the subnets of `space`."""
    if not isinstance(space, LatencyFeatures):
        fam, features = _resolve(space)
        if features is None:
            fam = family_of(fam.space)
            if not fam.has_exact_extremes:
                raise ValueError(f"space '{fam.space.name}' has neither latency features nor exact extremes: "
                                 f"the range of a MACs model over it is unknown")
            return fam.exact_extreme("macs", "min")[0], fam.exact_extreme("macs", "max")[0]
        space = features
    return space.table_range(*space.macs_tables())


def unique_blocks(space: SpaceLike) -> list[dict[str, Any]]:
    """The entries of a lookup table of `space` (`features_of(space).unique_blocks()`)."""
    return features_of(space).unique_blocks()


def _check_space(model_space: str | None, space: Any, what: str) -> None:
    if model_space is not None and model_space != space.name:
        raise ValueError(f"this {what} latency model was fitted for space '{model_space}', "
                         f"not '{space.name}'")


def _scale_factor(factor: Any) -> float:
    if isinstance(factor, bool) or not isinstance(factor, (int, float, np.floating)) \
            or not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"scale factor = {factor!r}; allowed: a finite number > 0")
    return float(factor)


def _rows(x: Any, width: int, what: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"{what} latency model: feature rows of shape {x.shape}; allowed: (N, {width})")
    return x


def _targets(x: np.ndarray, y: Any) -> np.ndarray:
    y = np.asarray(y, np.float64).reshape(-1)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} feature rows but {y.shape[0]} latencies")
    if y.shape[0] < 2:
        raise ValueError(f"fitting a latency model needs at least 2 measured configs, got {y.shape[0]}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("latencies_ms must be finite and > 0")
    return y


def _relative_fit(x: np.ndarray, y: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    # Least squares on *relative* error (rows weighted 1 / y): the target is "within +-10%",
    # not milliseconds. The last column is the constant, spared by the penalty.
    return ridge_solve(x, y, ridge * len(y), row_scale=1.0 / y, standardize=True, unpenalized=[-1])


def _on_column(predict: Any) -> Any:
    """`finish` of a one-feature model: its `predict` on the gathered sums as (N, 1) rows."""
    return lambda sums: predict(sums[:, None])


def _macs_form(space: SpaceLike, predict: Any) -> tuple[np.ndarray, np.ndarray, Any] | None:
    """`gather_form` of a model of MACs: the family's MACs tables, None without features."""
    features = space if isinstance(space, LatencyFeatures) else _resolve(space)[1]
    return None if features is None else (*features.macs_tables(), _on_column(predict))


def _known_features(space: str) -> tuple[str, ...] | None:
    """The feature names of the family of the preset `space`, None for a name that is no preset."""
    try:
        _, features = _resolve(space)
    except ValueError:
        return None
    return None if features is None else features.feature_names


def _check_features(kind: str, features: Sequence[str], known: Sequence[str]) -> None:
    unknown = [f for f in features if f not in known]
    if unknown:
        raise ValueError(f"{kind} latency model: unknown feature '{unknown[0]}'; allowed: {list(known)}")


def _unchanged(sums: np.ndarray) -> np.ndarray:
    return sums


def _linear_range(lo: float, hi: float, slope: float, intercept: float) -> tuple[float, float]:
    ends = (lo * slope + intercept, hi * slope + intercept)
    return min(ends), max(ends)


class LatencyModel:
    """Base class: `fit(X, y) -> self`, `predict(X)`, `feature_rows(space, configs)`,
    `predict_ms(space, configs)` -> (N,) float64 ms, `to_dict()`, `prediction_range(space)`."""

    type: ClassVar[str] = ""
    Schema: ClassVar[type[ModelSchema]]

    def feature_rows(self, space: SpaceLike, configs: Configs) -> np.ndarray:
        """(N, F) float64 feature rows of `configs` for `predict`."""
        raise NotImplementedError

    def fit(self, x: np.ndarray, y: Sequence[float]) -> "LatencyModel":
        """Fit to feature rows `x` and measured milliseconds `y`; returns the model."""
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) float64 milliseconds of (N, F) feature rows."""
        raise NotImplementedError

    def predict_ms(self, space: SpaceLike, configs: Configs) -> np.ndarray:
        """Milliseconds of configs (one, a list or a population), (N,) float64."""
        form = self.gather_form(space)
        if form is None:
            return self.predict(self.feature_rows(space, configs))
        block, fixed, finish = form
        return finish(features_of(space).gather(configs, block, fixed))

    def gather_form(self, space: SpaceLike) -> tuple[np.ndarray, np.ndarray, Any] | None:
        """(block table, fixed table, finish) such that `predict_ms(space, configs)` is
        `finish(features_of(space).gather(configs, block, fixed))`, for models whose
        prediction is a sum over blocks followed by a per-config function (every model here,
        on a family with latency features); None otherwise. Lets a caller that has its own
        gather (the search's genome tables) compute the same numbers."""
        return None

    def prediction_range(self, space: SpaceLike) -> tuple[float, float]:
        """Exact (smallest, largest) prediction over every subnet of `space`."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_schema(cls, data: ModelSchema) -> "LatencyModel":
        """The model of a validated `to_dict` form."""
        return cls(**data.model_dump())

    def scaled(self, factor: float) -> "LatencyModel":
        """The same model predicting `factor` times the latency (a machine running uniformly
        faster or slower than when it was measured: `ofa_engine.devices.calibration`)."""
        raise ValueError(f"a {self.type} latency model cannot be rescaled by measurement")

    def _unfitted(self) -> ValueError:
        return ValueError(f"this {self.type} latency model is not fitted yet; call fit(X, y) first")

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"[:200]


@LATENCY_MODELS.register("macs-linear")
class MacsLinearModel(LatencyModel):
    """latency_ms = ms_per_mmac * MACs / 1e6 + intercept_ms."""

    type = "macs-linear"

    class Schema(ModelSchema):
        allowed: ClassVar = {"ms_per_mmac": "a finite number", "intercept_ms": "a finite number"}
        ms_per_mmac: Number
        intercept_ms: Number

    def __init__(self, ms_per_mmac: float | None = None, intercept_ms: float | None = None):
        self.ms_per_mmac = None if ms_per_mmac is None else float(ms_per_mmac)
        self.intercept_ms = None if intercept_ms is None else float(intercept_ms)

    def feature_rows(self, space, configs):
        return total_macs(space, configs)[:, None]

    def fit(self, x, y):
        x = _rows(x, 1, self.type)
        y = _targets(x, y)
        self.ms_per_mmac, self.intercept_ms = (float(v) for v in
                                               _relative_fit(np.stack([x[:, 0] / 1e6, np.ones_like(y)], 1), y))
        return self

    def predict(self, x):
        if self.ms_per_mmac is None:
            raise self._unfitted()
        return _rows(x, 1, self.type)[:, 0] * (self.ms_per_mmac / 1e6) + self.intercept_ms

    def gather_form(self, space):
        if self.ms_per_mmac is None:
            raise self._unfitted()
        return _macs_form(space, self.predict)

    def prediction_range(self, space):
        return _linear_range(*_macs_range(space), self.ms_per_mmac / 1e6, self.intercept_ms)

    def scaled(self, factor):
        factor = _scale_factor(factor)
        return MacsLinearModel(self.ms_per_mmac * factor, self.intercept_ms * factor)

    def to_dict(self):
        if self.ms_per_mmac is None:
            raise self._unfitted()
        return {"type": self.type, "ms_per_mmac": self.ms_per_mmac, "intercept_ms": self.intercept_ms}


@LATENCY_MODELS.register("lut")
class LookupTableModel(LatencyModel):
    """OFA-style per-block lookup table: latency = scale * (sum of block ms + stem + head) + offset_ms.

    `blocks` maps keys (the family's `block_keys` and `fixed_keys`) to milliseconds measured in
    isolation; scale 1 and offset 0 is the pure OFA table. `fit` calibrates scale and offset.
    """

    type = "lut"

    class Schema(ModelSchema):
        allowed: ClassVar = {"space": "a string", "source": "a string", "scale": "a finite number",
                             "offset_ms": "a finite number",
                             "blocks": ("a non-empty object of block key -> ms", "a finite number >= 0")}
        space: Text
        blocks: dict[str, NonNegativeNumber] = Field(min_length=1)
        scale: Number = 1.0
        offset_ms: Number = 0.0
        source: Text = ""

    def __init__(self, space: str, blocks: Mapping[str, float], scale: float = 1.0, offset_ms: float = 0.0,
                 source: str = ""):
        self.space = str(space)
        self.blocks = {str(k): float(v) for k, v in blocks.items()}
        self.scale = float(scale)
        self.offset_ms = float(offset_ms)
        self.source = str(source)
        self._tables: tuple[np.ndarray, np.ndarray] | None = None

    def tables(self, space: SpaceLike) -> tuple[np.ndarray, np.ndarray]:
        """Dense per-block ms and fixed (stem + head) ms gather tables of the space's
        `LatencyFeatures` (MobileNetV3: (W, R, S, K, E) and (W, R)); ValueError for a missing key."""
        features = features_of(space)
        _check_space(self.space, features.space, "lut")
        if self._tables is None:
            keys = features.block_keys()
            fixed_keys = features.fixed_keys()
            missing = sorted({k for table in (keys, *fixed_keys) for k in table.ravel() if k not in self.blocks})
            if missing:
                raise ValueError(f"lut latency model lacks {len(missing)} block key(s) of space "
                                 f"'{features.space.name}', e.g. '{missing[0]}'; measure them with "
                                 f"latency_data.measure_block_table")
            lookup = np.vectorize(self.blocks.__getitem__, otypes=[np.float64])
            fixed = lookup(fixed_keys[0])
            for table in fixed_keys[1:]:
                fixed = fixed + lookup(table)
            self._tables = (lookup(keys), fixed)
        return self._tables

    def raw_sum_ms(self, space, configs) -> np.ndarray:
        """Sum of the measured block, stem and head ms of each config (before calibration)."""
        features = features_of(space)
        return features.gather(configs, *self.tables(features))

    def gather_form(self, space):
        return (*self.tables(space), _on_column(self.predict))

    def feature_rows(self, space, configs):
        return self.raw_sum_ms(space, configs)[:, None]

    def fit(self, x, y):
        x = _rows(x, 1, self.type)
        y = _targets(x, y)
        self.scale, self.offset_ms = (float(v) for v in _relative_fit(np.stack([x[:, 0], np.ones_like(y)], 1), y))
        return self

    def predict(self, x):
        return _rows(x, 1, self.type)[:, 0] * self.scale + self.offset_ms

    def prediction_range(self, space):
        features = features_of(space)
        return _linear_range(*features.table_range(*self.tables(features)), self.scale, self.offset_ms)

    def with_calibration(self, scale: float, offset_ms: float) -> "LookupTableModel":
        return LookupTableModel(self.space, self.blocks, scale, offset_ms, self.source)

    def scaled(self, factor):
        factor = _scale_factor(factor)
        return self.with_calibration(self.scale * factor, self.offset_ms * factor)

    def to_dict(self):
        return {"type": self.type, "space": self.space, "scale": self.scale, "offset_ms": self.offset_ms,
                "source": self.source, "blocks": dict(sorted(self.blocks.items()))}


@LATENCY_MODELS.register(LEARNED_KIND)
class BlockLinearModel(LatencyModel):
    """The learned predictor: latency_ms = intercept_ms + sum_f coef[f] * feature_f(config).

    Features: `architecture_features` (per-block sums from a precomputed table, stem/head terms),
    by default (None) all of them, in the order of the space's family. `features` are checked
    against the family's when `space` names a preset; otherwise when rows are asked for. A model
    of no known space keeps None until then (few-shot scoring on bare rows). `ridge`: the fit's
    penalty on standardised coefficients.
    """

    type = LEARNED_KIND

    class Schema(ModelSchema):
        allowed: ClassVar = {"space": "a string", "intercept_ms": "a finite number",
                             "features": ("a list of feature names", "a string"),
                             "coef": ("a list of numbers, one per feature", "a finite number")}
        space: Text
        features: list[Text]
        coef: list[Number]
        intercept_ms: Number

    def __init__(self, space: str, features: Sequence[str] | None = None,
                 coef: Sequence[float] | None = None, intercept_ms: float = 0.0, *, ridge: float = DEFAULT_RIDGE):
        known = _known_features(str(space))
        if features is None:
            features = known
        if features is not None:
            features = tuple(str(f) for f in features)
            if known is not None:
                _check_features(self.type, features, known)
        if coef is not None and features is not None and len(coef) != len(features):
            raise ValueError(f"{self.type} latency model: {len(coef)} coefficients for {len(features)} features")
        self.space = str(space)
        self.features = features
        self.ridge = float(ridge)
        self.coef = None if coef is None else np.array([float(c) for c in coef], np.float64)
        self.intercept_ms = float(intercept_ms)
        self._weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_schema(cls, data):
        return cls(data.space, data.features, data.coef, data.intercept_ms)

    def _named(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """This model's features, checked against the family's `names` (None: all of them)."""
        if self.features is None:
            if self.coef is not None and len(self.coef) != len(names):
                raise ValueError(f"{self.type} latency model: {len(self.coef)} coefficients for "
                                 f"{len(names)} features")
            self.features = names
        _check_features(self.type, self.features, names)
        return self.features

    def feature_rows(self, space, configs):
        features = features_of(space)
        _check_space(self.space, features.space, self.type)
        x, names = features.features(configs)
        wanted = self._named(names)
        return x if names == wanted else x[:, [names.index(f) for f in wanted]]

    def fit(self, x, y):
        x = _rows(x, np.shape(x)[-1] if self.features is None else len(self.features), self.type)
        y = _targets(x, y)
        beta = _relative_fit(np.concatenate([x, np.ones((len(y), 1))], 1), y, self.ridge)
        self.coef = np.array([float(c) for c in beta[:-1]], np.float64)
        self.intercept_ms = float(beta[-1])
        self._weights = {}
        return self

    def predict(self, x):
        if self.coef is None:
            raise self._unfitted()
        return _rows(x, len(self.coef), self.type) @ self.coef + self.intercept_ms

    def _tables(self, features: LatencyFeatures) -> tuple[np.ndarray, np.ndarray]:
        # Fold the coefficients into the tables once: a prediction is then one scalar gather.
        if self.coef is None:
            raise self._unfitted()
        name = features.space.name
        if name not in self._weights:
            block, fixed = features.feature_tables()
            names = features.feature_names
            w = np.zeros(len(names))
            for f, c in zip(self._named(names), self.coef):
                w[names.index(f)] = c
            nb = block.shape[-1]
            self._weights[name] = (block @ w[:nb], fixed @ w[nb:] + self.intercept_ms)
        return self._weights[name]

    def gather_form(self, space):
        features = features_of(space)
        _check_space(self.space, features.space, self.type)
        return (*self._tables(features), _unchanged)

    def prediction_range(self, space):
        features = features_of(space)
        _check_space(self.space, features.space, self.type)
        return features.table_range(*self._tables(features))

    def scaled(self, factor):
        factor = _scale_factor(factor)
        return BlockLinearModel(self.space, self.features, self.coef * factor, self.intercept_ms * factor,
                                ridge=self.ridge)

    def to_dict(self):
        if self.coef is None:
            raise self._unfitted()
        if self.features is None and _known_features(self.space) is not None:
            self._named(_known_features(self.space))     # a model given its space after fitting
        if self.features is None:
            raise ValueError(f"this {self.type} latency model of space '{self.space}' has no feature names; "
                             f"allowed: a model of a preset space, or one given its features")
        return {"type": self.type, "space": self.space, "features": list(self.features),
                "coef": [float(c) for c in self.coef], "intercept_ms": self.intercept_ms}


@LATENCY_MODELS.register("analytical-mcu")
class AnalyticalMCUModel(LatencyModel):
    """latency_ms = MACs / (macs_per_cycle * clock_mhz * 1e3) + overhead_ms.

    `fit` calibrates macs_per_cycle and overhead_ms on measurements at the given clock.
    """

    type = "analytical-mcu"

    class Schema(ModelSchema):
        allowed: ClassVar = {"clock_mhz": "a finite number > 0", "macs_per_cycle": "a finite number > 0",
                             "overhead_ms": "a finite number", "source": "a string"}
        clock_mhz: PositiveNumber
        macs_per_cycle: PositiveNumber
        overhead_ms: Number = 0.0
        source: Text = ""

    def __init__(self, clock_mhz: float, macs_per_cycle: float | None = None, overhead_ms: float = 0.0,
                 source: str = ""):
        self.clock_mhz = float(clock_mhz)
        self.macs_per_cycle = None if macs_per_cycle is None else float(macs_per_cycle)
        self.overhead_ms = float(overhead_ms)
        self.source = str(source)

    def feature_rows(self, space, configs):
        return total_macs(space, configs)[:, None]

    def fit(self, x, y):
        x = _rows(x, 1, self.type)
        y = _targets(x, y)
        ms_per_mac_cycle, overhead = _relative_fit(np.stack([x[:, 0] / (self.clock_mhz * 1e3),
                                                              np.ones_like(y)], 1), y)
        if not ms_per_mac_cycle > 0:
            raise ValueError(f"{self.type} latency model: the measurements do not grow with MACs "
                             f"(fitted cycles per MAC {ms_per_mac_cycle:.3g}); allowed: > 0")
        self.macs_per_cycle, self.overhead_ms = 1.0 / float(ms_per_mac_cycle), float(overhead)
        return self

    def predict(self, x):
        if self.macs_per_cycle is None:
            raise self._unfitted()
        return _rows(x, 1, self.type)[:, 0] / (self.macs_per_cycle * self.clock_mhz * 1e3) + self.overhead_ms

    def gather_form(self, space):
        if self.macs_per_cycle is None:
            raise self._unfitted()
        return _macs_form(space, self.predict)

    def prediction_range(self, space):
        return _linear_range(*_macs_range(space),
                             1.0 / (self.macs_per_cycle * self.clock_mhz * 1e3), self.overhead_ms)

    def to_dict(self):
        if self.macs_per_cycle is None:
            raise self._unfitted()
        return {"type": self.type, "clock_mhz": self.clock_mhz, "macs_per_cycle": self.macs_per_cycle,
                "overhead_ms": self.overhead_ms, "source": self.source}


MODEL_TYPES = tuple(LATENCY_MODELS.names())
