"""The four latency models, as estimators over feature rows.

Every model follows scikit-learn's convention: hyper-parameters in `__init__`, `fit(X, y)`
returns the model, `predict(X)` maps an (N, F) array of feature rows to (N,) milliseconds.
`feature_rows(space, configs)` gives a model its rows (from `families.mbv3.latency_features`),
and `predict_ms(space, configs)` is `predict(feature_rows(...))` over configs or a population.

- "macs-linear": latency_ms = ms_per_mmac * MACs / 1e6 + intercept_ms (the MACs-proxy
  baseline); rows: (MACs,).
- "lut": OFA-style lookup table. Every elastic block is keyed by its geometry as in the
  official OFA latency tables (input size, in / out channels, expand ratio, kernel, stride,
  residual, SE, activation); the fixed stem (first conv + first block) and head (final expand,
  pooling, feature mix, classifier) are keyed per input shape. Blocks are measured in
  isolation (`ofa_engine.devices.latency_dataset.measure_block_table`) and summed; a linear
  calibration (scale, offset), the fitted part, absorbs what isolated blocks cannot see
  (per-run overhead, cache effects across blocks). Rows: (sum of block ms,).
- "block-linear": the learned predictor (chosen by measurement, see docs/predictors-report.md):
  linear in per-block architecture features (`latency_features.BLOCK_FEATURES` and
  `FIXED_FEATURES`), fitted by ridge regression on relative error.
- "analytical-mcu": latency_ms = MACs / (macs_per_cycle * clock_mhz * 1e3) + overhead_ms,
  for microcontroller classes that nobody measured here (`fit` calibrates macs_per_cycle and
  overhead_ms for the given clock). Rows: (MACs,).

The types are registered in `LATENCY_MODELS` (type name -> class); `MODEL_TYPES` lists them.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ...families.mbv3.latency_features import (BLOCK_FEATURES, FIXED_FEATURES, Configs, architecture_features,
                                               block_keys, feature_tables, fixed_keys, gather, macs_tables,
                                               table_range, total_macs)
from ...families.mbv3.space import SearchSpace
from ...registry import Registry
from ..linear import ridge_solve

__all__ = ["LatencyModel", "MacsLinearModel", "LookupTableModel", "BlockLinearModel", "AnalyticalMCUModel",
           "LATENCY_MODELS", "MODEL_TYPES", "LEARNED_KIND", "DEFAULT_RIDGE", "ModelSchema"]

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


def _space(space: SearchSpace | str) -> SearchSpace:
    return SearchSpace.preset(space) if isinstance(space, str) else space


def _check_space(model_space: str | None, space: SearchSpace, what: str) -> None:
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

    def feature_rows(self, space: SearchSpace | str, configs: Configs) -> np.ndarray:
        """(N, F) float64 feature rows of `configs` for `predict`."""
        raise NotImplementedError

    def fit(self, x: np.ndarray, y: Sequence[float]) -> "LatencyModel":
        """Fit to feature rows `x` and measured milliseconds `y`; returns the model."""
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) float64 milliseconds of (N, F) feature rows."""
        raise NotImplementedError

    def predict_ms(self, space: SearchSpace | str, configs: Configs) -> np.ndarray:
        """Milliseconds of configs (one, a list or a population), (N,) float64."""
        space = _space(space)
        form = self.gather_form(space)
        if form is None:
            return self.predict(self.feature_rows(space, configs))
        block, fixed, finish = form
        return finish(gather(space, configs, block, fixed))

    def gather_form(self, space: SearchSpace) -> tuple[np.ndarray, np.ndarray, Any] | None:
        """(block table, fixed table, finish) such that `predict_ms(space, configs)` is
        `finish(latency_features.gather(space, configs, block, fixed))`, for models whose
        prediction is a sum over blocks followed by a per-config function (every model here);
        None otherwise. Lets a caller that has its own gather (the search's genome tables)
        compute the same numbers."""
        return None

    def prediction_range(self, space: SearchSpace | str) -> tuple[float, float]:
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
        return total_macs(_space(space), configs)[:, None]

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
        return (*macs_tables(space), _on_column(self.predict))

    def prediction_range(self, space):
        space = _space(space)
        return _linear_range(*table_range(space, *macs_tables(space)), self.ms_per_mmac / 1e6, self.intercept_ms)

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

    `blocks` maps keys (`block_key`, `stem_key`, `head_key`) to milliseconds measured in
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

    def tables(self, space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
        """Dense (W, R, S, K, E) block ms and (W, R) stem + head ms; ValueError for a missing key."""
        _check_space(self.space, space, "lut")
        if self._tables is None:
            keys = block_keys(space)
            stems, heads = fixed_keys(space)
            missing = sorted({k for k in (*keys.ravel(), *stems.ravel(), *heads.ravel()) if k not in self.blocks})
            if missing:
                raise ValueError(f"lut latency model lacks {len(missing)} block key(s) of space "
                                 f"'{space.name}', e.g. '{missing[0]}'; measure them with "
                                 f"latency_data.measure_block_table")
            lookup = np.vectorize(self.blocks.__getitem__, otypes=[np.float64])
            self._tables = (lookup(keys), lookup(stems) + lookup(heads))
        return self._tables

    def raw_sum_ms(self, space, configs) -> np.ndarray:
        """Sum of the measured block, stem and head ms of each config (before calibration)."""
        space = _space(space)
        return gather(space, configs, *self.tables(space))

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
        space = _space(space)
        return _linear_range(*table_range(space, *self.tables(space)), self.scale, self.offset_ms)

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
    by default all of them. `ridge`: the fit's penalty on standardised coefficients.
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

    def __init__(self, space: str, features: Sequence[str] = BLOCK_FEATURES + FIXED_FEATURES,
                 coef: Sequence[float] | None = None, intercept_ms: float = 0.0, *, ridge: float = DEFAULT_RIDGE):
        known = BLOCK_FEATURES + FIXED_FEATURES
        features = tuple(str(f) for f in features)
        unknown = [f for f in features if f not in known]
        if unknown:
            raise ValueError(f"{self.type} latency model: unknown feature '{unknown[0]}'; allowed: {list(known)}")
        if coef is not None and len(coef) != len(features):
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

    def feature_rows(self, space, configs):
        space = _space(space)
        _check_space(self.space, space, self.type)
        x, names = architecture_features(space, configs)
        return x if names == self.features else x[:, [names.index(f) for f in self.features]]

    def fit(self, x, y):
        x = _rows(x, len(self.features), self.type)
        y = _targets(x, y)
        beta = _relative_fit(np.concatenate([x, np.ones((len(y), 1))], 1), y, self.ridge)
        self.coef = np.array([float(c) for c in beta[:-1]], np.float64)
        self.intercept_ms = float(beta[-1])
        self._weights = {}
        return self

    def predict(self, x):
        if self.coef is None:
            raise self._unfitted()
        return _rows(x, len(self.features), self.type) @ self.coef + self.intercept_ms

    def _tables(self, space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
        # Fold the coefficients into the tables once: a prediction is then one scalar gather.
        if self.coef is None:
            raise self._unfitted()
        if space.name not in self._weights:
            block, fixed = feature_tables(space)
            names = BLOCK_FEATURES + FIXED_FEATURES
            w = np.zeros(len(names))
            for f, c in zip(self.features, self.coef):
                w[names.index(f)] = c
            nb = len(BLOCK_FEATURES)
            self._weights[space.name] = (block @ w[:nb], fixed @ w[nb:] + self.intercept_ms)
        return self._weights[space.name]

    def gather_form(self, space):
        _check_space(self.space, space, self.type)
        return (*self._tables(space), _unchanged)

    def prediction_range(self, space):
        space = _space(space)
        _check_space(self.space, space, self.type)
        return table_range(space, *self._tables(space))

    def scaled(self, factor):
        factor = _scale_factor(factor)
        return BlockLinearModel(self.space, self.features, self.coef * factor, self.intercept_ms * factor,
                                ridge=self.ridge)

    def to_dict(self):
        if self.coef is None:
            raise self._unfitted()
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
        return total_macs(_space(space), configs)[:, None]

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
        return (*macs_tables(space), _on_column(self.predict))

    def prediction_range(self, space):
        space = _space(space)
        return _linear_range(*table_range(space, *macs_tables(space)),
                             1.0 / (self.macs_per_cycle * self.clock_mhz * 1e3), self.overhead_ms)

    def to_dict(self):
        if self.macs_per_cycle is None:
            raise self._unfitted()
        return {"type": self.type, "clock_mhz": self.clock_mhz, "macs_per_cycle": self.macs_per_cycle,
                "overhead_ms": self.overhead_ms, "source": self.source}


MODEL_TYPES = tuple(LATENCY_MODELS.names())
