"""Latency predictors: config -> milliseconds, vectorised over populations, JSON-serialisable.

Four model types, each a `LatencyModel` with `predict_ms(space, configs_or_pop)` and
`to_dict()`; `latency_model_from_dict(d)` validates a dict and rebuilds the model.

- "macs-linear": latency = a * MACs + b (the MACs-proxy baseline).
- "lut": OFA-style lookup table. Every elastic block is keyed by its geometry as in the
  official OFA latency tables (input size, in / out channels, expand ratio, kernel, stride,
  residual, SE, activation); the fixed stem (first conv + first block) and head (final expand,
  pooling, feature mix, classifier) are keyed per input shape. Blocks are measured in
  isolation (`ofa_engine.devices.latency_dataset.measure_block_table`) and summed; an optional linear
  calibration (scale, offset) fitted on whole-network measurements absorbs what isolated
  blocks cannot see (per-run overhead, cache effects across blocks).
- "block-linear": the learned predictor (chosen by measurement, see docs/predictors-report.md):
  a linear model over per-block architecture features (MACs of each layer kind, depthwise MACs
  per kernel size, expanded-tensor elements, SE and block counts, stem/head MACs), fitted by
  ridge regression on relative error. Features come from a precomputed per-block table and a
  numpy gather, so 10,000 configs take a few milliseconds.
- "analytical-mcu": latency_ms = MACs / (macs_per_cycle * clock_mhz * 1e3) + overhead_ms,
  for microcontroller classes that nobody measured here.

Fitting: `fit_latency_model(space, configs, latencies_ms, kind)`; evaluation:
`evaluate_latency_model(model, space, configs, measured_ms)` -> rmse_ms, mape, kendall_tau,
within_10pct, n_test. `fit_profile_latency` does the 80/20 protocol used for device profiles.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from ..families.mbv3.space import SearchSpace, is_population
from .metrics import kendall_tau, split_indices  # noqa: F401  (part of this module's API)

__all__ = ["LatencyModel", "MacsLinearModel", "LookupTableModel", "BlockLinearModel", "AnalyticalMCUModel",
           "latency_model_from_dict", "fit_latency_model", "evaluate_latency_model", "fit_profile_latency",
           "profile_fit", "ProfileFit", "select_ridge", "LEARNED_RIDGES",
           "kendall_tau", "block_geometry", "block_key", "stem_key", "head_key", "MODEL_TYPES",
           "LEARNED_KIND", "BLOCK_FEATURES"]

LEARNED_KIND = "block-linear"
LEARNED_RIDGES = (0.0, 1e-4, 1e-3, 1e-2)   # candidates for the learned model's ridge penalty
DEFAULT_RIDGE = 1e-3                       # used when there are too few subnets to cross-validate
MODEL_TYPES = ("macs-linear", "lut", LEARNED_KIND, "analytical-mcu")

Configs = Any   # SubnetConfig | Sequence[SubnetConfig] | population (see space.is_population)


def _space(space: SearchSpace | str) -> SearchSpace:
    return SearchSpace.preset(space) if isinstance(space, str) else space


# ---------------------------------------------------------------------- block geometry
@dataclass(frozen=True)
class _Geometry:
    """Every block of a space as dense arrays over (wid, res_index, slot[, k_index, e_index])."""

    size_in: np.ndarray     # (W, R, S)
    size_out: np.ndarray    # (W, R, S)
    c_in: np.ndarray        # (W, S)
    c_out: np.ndarray       # (W, S)
    stride: np.ndarray      # (S,)
    residual: np.ndarray    # (S,) bool
    se: np.ndarray          # (S,) bool
    act: tuple[str, ...]    # (S,)
    mid: np.ndarray         # (W, S, E)
    se_mid: np.ndarray      # (W, S, E) SE hidden units
    # stem / head, per (wid, res_index)
    stem_in: np.ndarray     # (R,)
    stem_out: np.ndarray    # (R,) spatial size after the first conv (and first block)
    head_in: np.ndarray     # (R,) spatial size entering the final expand
    stem_macs: np.ndarray   # (W, R)
    head_macs: np.ndarray   # (W, R)


def _ceil_div(a, b):
    return -(-a // b)


@functools.lru_cache(maxsize=8)
def block_geometry(space: SearchSpace) -> _Geometry:
    """Shapes of every block of `space` (cached: the space is an immutable value)."""
    plans = [space.channels(w) for w in range(len(space.width_mults))]
    res = np.array(space.resolutions, np.int64)
    size = _ceil_div(_ceil_div(res, space.first_conv_stride), space.first_block_stride)
    stem_out = size.copy()
    sizes_in, sizes_out, strides, residual, se, acts = [], [], [], [], [], []
    c_in = np.zeros((len(plans), space.num_slots), np.int64)
    c_out = np.zeros_like(c_in)
    in_base = space.base_widths[1]
    for slot in range(space.num_slots):
        stage, index = divmod(slot, space.max_depth)
        stride = space.slot_stride(slot)
        out_base = space.base_widths[2 + stage]
        out = _ceil_div(size, stride)
        sizes_in.append(size)
        sizes_out.append(out)
        strides.append(stride)
        residual.append(stride == 1 and in_base == out_base)
        se.append(space.stage_se[stage])
        acts.append(space.stage_acts[stage])
        for w, plan in enumerate(plans):
            c_in[w, slot] = plan.stages[stage - 1] if index == 0 and stage > 0 else (
                plan.first_block if index == 0 else plan.stages[stage])
            c_out[w, slot] = plan.stages[stage]
        size, in_base = out, out_base
    n_w = len(plans)
    size_in = np.broadcast_to(np.stack(sizes_in, 1)[None], (n_w, len(res), space.num_slots)).copy()
    size_out = np.broadcast_to(np.stack(sizes_out, 1)[None], (n_w, len(res), space.num_slots)).copy()
    div = space.channel_divisor
    e = np.array(space.expand_ratios, np.int64)
    mid = _make_divisible(c_in[:, :, None] * e[None, None, :], div)
    se_mid = _make_divisible(mid // space.se_reduction, div)
    # Stem and head MACs per (wid, res): first conv 3x3, first block (dw 3x3, SE?, pw); head:
    # final expand 1x1, feature mix, classifier (same conventions as analytics.analyze).
    stem_macs = np.zeros((n_w, len(res)), np.int64)
    head_macs = np.zeros_like(stem_macs)
    conv_out = _ceil_div(res, space.first_conv_stride)
    for w, p in enumerate(plans):
        stem = conv_out ** 2 * p.first_conv * space.in_channels * 9
        stem = stem + stem_out ** 2 * p.first_conv * 9 + stem_out ** 2 * p.first_conv * p.first_block
        if space.first_block_se:
            s = _make_divisible(np.array(p.first_conv // space.se_reduction), div)
            stem = stem + 2 * p.first_conv * s
        stem_macs[w] = stem
        head_macs[w] = (size ** 2 * p.stages[-1] * p.final_expand + p.final_expand * p.feature_mix
                        + p.feature_mix * space.num_classes)
    return _Geometry(size_in, size_out, c_in, c_out, np.array(strides), np.array(residual, bool),
                     np.array(se, bool), tuple(acts), mid, se_mid, res, stem_out, size, stem_macs, head_macs)


def _make_divisible(v, divisor: int) -> np.ndarray:
    v = np.asarray(v, np.int64)
    rounded = np.maximum(divisor, (v + divisor // 2) // divisor * divisor)
    return np.where(rounded < 0.9 * v, rounded + divisor, rounded)


def block_key(size_in: int, c_in: int, size_out: int, c_out: int, expand: int, kernel: int, stride: int,
              residual: bool, se: bool, act: str) -> str:
    """OFA latency-table style key of one elastic block."""
    return (f"expanded_conv-input:{size_in}x{size_in}x{c_in}-output:{size_out}x{size_out}x{c_out}"
            f"-expand:{expand}-kernel:{kernel}-stride:{stride}-idskip:{int(residual)}"
            f"-se:{int(se)}-act:{act}")


def stem_key(space: SearchSpace, wid: int, image_size: int) -> str:
    p = space.channels(wid)
    return f"stem-input:{image_size}x{image_size}x{space.in_channels}-first_conv:{p.first_conv}-first_block:{p.first_block}"


def head_key(space: SearchSpace, wid: int, size: int) -> str:
    p = space.channels(wid)
    return (f"head-input:{size}x{size}x{p.stages[-1]}-final_expand:{p.final_expand}"
            f"-feature_mix:{p.feature_mix}-classes:{space.num_classes}")


def _block_keys(space: SearchSpace) -> np.ndarray:
    """Object array (W, R, S, K, E) of block keys."""
    g = block_geometry(space)
    n_w, n_r, n_s = g.size_in.shape
    keys = np.empty((n_w, n_r, n_s, len(space.kernel_sizes), len(space.expand_ratios)), object)
    for w, r, s, ki, ei in np.ndindex(keys.shape):
        keys[w, r, s, ki, ei] = block_key(int(g.size_in[w, r, s]), int(g.c_in[w, s]), int(g.size_out[w, r, s]),
                                          int(g.c_out[w, s]), space.expand_ratios[ei], space.kernel_sizes[ki],
                                          int(g.stride[s]), bool(g.residual[s]), bool(g.se[s]), g.act[s])
    return keys


def _fixed_keys(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """(W, R) object arrays of stem and head keys."""
    g = block_geometry(space)
    n_w, n_r = g.stem_macs.shape
    stems = np.empty((n_w, n_r), object)
    heads = np.empty((n_w, n_r), object)
    for w, r in np.ndindex(n_w, n_r):
        stems[w, r] = stem_key(space, w, space.resolutions[r])
        heads[w, r] = head_key(space, w, int(g.head_in[r]))
    return stems, heads


def unique_blocks(space: SearchSpace | str) -> list[dict[str, Any]]:
    """One entry per distinct block key of the space, with a (wid, image_size, slot, ks, e) that
    realises it: what `latency_data.measure_block_table` measures. Stem and head entries have
    kind "stem" / "head" and a (wid, image_size)."""
    space = _space(space)
    keys = _block_keys(space)
    seen: dict[str, dict[str, Any]] = {}
    for w, r, s, ki, ei in np.ndindex(keys.shape):
        key = keys[w, r, s, ki, ei]
        if key not in seen:
            seen[key] = {"key": key, "kind": "block", "wid": w, "image_size": space.resolutions[r], "slot": s,
                         "ks": space.kernel_sizes[ki], "e": space.expand_ratios[ei]}
    stems, heads = _fixed_keys(space)
    for kind, table in (("stem", stems), ("head", heads)):
        for w, r in np.ndindex(table.shape):
            key = table[w, r]
            if key not in seen:
                seen[key] = {"key": key, "kind": kind, "wid": w, "image_size": space.resolutions[r]}
    return list(seen.values())


# ---------------------------------------------------------------------- per-block features
BLOCK_FEATURES = ("blocks", "expand_macs", "dw_macs_k3", "dw_macs_k5", "dw_macs_k7", "project_macs",
                  "se_blocks", "se_macs", "expanded_elements", "hswish_elements", "residual_elements")
FIXED_FEATURES = ("stem_macs", "head_macs", "stem_elements")


@functools.lru_cache(maxsize=8)
def _feature_tables(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """(W, R, S, K, E, F) block features and (W, R, F0) stem/head features, float64."""
    g = block_geometry(space)
    n_w, n_r, n_s = g.size_in.shape
    k = np.array(space.kernel_sizes, np.int64)
    n_k, n_e = len(k), len(space.expand_ratios)
    shape = (n_w, n_r, n_s, n_k, n_e)
    si = g.size_in[:, :, :, None, None].astype(np.float64)
    so = g.size_out[:, :, :, None, None].astype(np.float64)
    cin = g.c_in[:, None, :, None, None].astype(np.float64)
    cout = g.c_out[:, None, :, None, None].astype(np.float64)
    mid = g.mid[:, None, :, None, :].astype(np.float64)
    se_mid = g.se_mid[:, None, :, None, :].astype(np.float64)
    kk = k[None, None, None, :, None].astype(np.float64)
    se = g.se[None, None, :, None, None].astype(np.float64)
    hs = np.array([a == "h_swish" for a in g.act], np.float64)[None, None, :, None, None]
    res = g.residual[None, None, :, None, None].astype(np.float64)
    dw = so ** 2 * mid * kk ** 2
    feats = {
        "blocks": np.ones(shape),
        "expand_macs": si ** 2 * cin * mid,
        "project_macs": so ** 2 * mid * cout,
        "se_blocks": se,
        "se_macs": se * 2 * mid * se_mid,
        "expanded_elements": mid * (si ** 2 + so ** 2),
        "hswish_elements": hs * mid * (si ** 2 + so ** 2),
        "residual_elements": res * cout * so ** 2,
    }
    for i, size in enumerate((3, 5, 7)):
        feats[f"dw_macs_k{size}"] = dw * (kk == size)
    block = np.stack([np.broadcast_to(feats[name], shape) for name in BLOCK_FEATURES], -1)
    stem_elements = (g.stem_out[None, :] ** 2 * np.array([space.channels(w).first_conv
                                                          for w in range(n_w)])[:, None]).astype(np.float64)
    fixed = np.stack([g.stem_macs.astype(np.float64), g.head_macs.astype(np.float64), stem_elements], -1)
    return block, fixed


def _value_index(allowed: Sequence[int], values: np.ndarray) -> np.ndarray | None:
    """Index of each value in `allowed` by table lookup (faster than searchsorted / isin), or
    None when some value is not allowed."""
    table = np.full(max(allowed) + 1, -1, np.int64)
    table[list(allowed)] = np.arange(len(allowed))
    if values.size and (values.min() < 0 or values.max() > max(allowed)):
        return None
    index = table[values]
    return None if (index < 0).any() else index


def _config_indices(space: SearchSpace, configs: Configs):
    """(wid, res_index, ks_index, e_index, active) of validated configs or a population.

    Populations take a lookup-table fast path; anything unusual goes through
    `space.to_arrays`, which raises the space's own message for a bad config.
    """
    if is_population(configs):
        try:
            wid = np.asarray(configs["wid"], np.int64).reshape(-1)
            n = wid.shape[0]
            ks = np.asarray(configs["ks"], np.int64)
            e = np.asarray(configs["e"], np.int64)
            d = np.asarray(configs["d"], np.int64)
            res = np.asarray(configs["image_size"], np.int64)
            shapes_ok = (ks.shape == e.shape == (n, space.num_slots) and d.shape == (n, space.num_stages)
                         and res.shape == (n,))
        except (KeyError, TypeError, ValueError):
            shapes_ok = False
        if shapes_ok:
            indices = (_value_index(space.kernel_sizes, ks), _value_index(space.expand_ratios, e),
                       _value_index(space.resolutions, res), _value_index(space.depths, d))
            wid_ok = n == 0 or (wid.min() >= 0 and wid.max() < len(space.width_mults))
            if wid_ok and all(i is not None for i in indices):
                active = (np.arange(space.max_depth)[None, None, :] < d[:, :, None]).reshape(n, space.num_slots)
                return wid, indices[2], indices[0], indices[1], active
    a = space.to_arrays(configs)
    return a["wid"], a["res_index"], a["ks_index"], a["e_index"], a["active"]


def _gather(space: SearchSpace, configs: Configs, block_table: np.ndarray, fixed_table: np.ndarray
            ) -> np.ndarray:
    """Sum over active blocks of `block_table[w, r, s, k, e]` plus `fixed_table[w, r]`, per config.

    Tables may have a trailing feature axis. One gather, no Python loop over configs.
    """
    wid, r, ks_i, e_i, active = _config_indices(space, configs)
    n_w, n_r, n_s, n_k, n_e = block_table.shape[:5]
    # Flat index into the table: ((w * R + r) * S + s) * K * E + k * E + e.
    base = (wid * n_r + r) * (n_s * n_k * n_e)
    flat = base[:, None] + np.arange(n_s)[None, :] * (n_k * n_e) + ks_i * n_e + e_i
    features = block_table.shape[5:]
    per_block = block_table.reshape((-1,) + features)[flat]          # (N, S[, F])
    if features:
        total = np.einsum("nsf,ns->nf", per_block, active.astype(per_block.dtype))
    else:
        total = np.where(active, per_block, 0.0).sum(1)
    return total + fixed_table[wid, r]


def architecture_features(space: SearchSpace | str, configs: Configs) -> tuple[np.ndarray, tuple[str, ...]]:
    """(N, F) float64 features of the learned model and their names."""
    space = _space(space)
    block, fixed = _feature_tables(space)
    n_b = block.shape[-1]
    block_full = np.concatenate([block, np.zeros(block.shape[:-1] + (fixed.shape[-1],))], -1)
    fixed_full = np.concatenate([np.zeros(fixed.shape[:-1] + (n_b,)), fixed], -1)
    return _gather(space, configs, block_full, fixed_full), BLOCK_FEATURES + FIXED_FEATURES


@functools.lru_cache(maxsize=8)
def _macs_tables(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    block, fixed = _feature_tables(space)
    idx = [BLOCK_FEATURES.index(n) for n in
           ("expand_macs", "dw_macs_k3", "dw_macs_k5", "dw_macs_k7", "project_macs", "se_macs")]
    return block[..., idx].sum(-1), fixed[..., :2].sum(-1)


def total_macs(space: SearchSpace | str, configs: Configs) -> np.ndarray:
    """MACs per config (same count as `analytics.analyze`), float64, by table gather."""
    space = _space(space)
    return _gather(space, configs, *_macs_tables(space))


# ---------------------------------------------------------------------- models
class LatencyModel:
    """Base class: `predict_ms(space, configs_or_pop)` -> (N,) float64 ms; `to_dict()`."""

    type: str = ""

    def predict_ms(self, space: SearchSpace | str, configs: Configs) -> np.ndarray:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def scaled(self, factor: float) -> "LatencyModel":
        """The same model predicting `factor` times the latency (a machine running uniformly
        faster or slower than when it was measured: `ofa_engine.devices.calibration`)."""
        raise ValueError(f"a {self.type} latency model cannot be rescaled by measurement")

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"[:200]


def _check_space(model_space: str | None, space: SearchSpace, what: str) -> None:
    if model_space is not None and model_space != space.name:
        raise ValueError(f"this {what} latency model was fitted for space '{model_space}', "
                         f"not '{space.name}'")


class MacsLinearModel(LatencyModel):
    """latency_ms = ms_per_mmac * MACs / 1e6 + intercept_ms."""

    type = "macs-linear"

    def __init__(self, ms_per_mmac: float, intercept_ms: float):
        self.ms_per_mmac = float(ms_per_mmac)
        self.intercept_ms = float(intercept_ms)

    def predict_ms(self, space, configs):
        space = _space(space)
        return total_macs(space, configs) * (self.ms_per_mmac / 1e6) + self.intercept_ms

    def scaled(self, factor):
        factor = _scale_factor(factor)
        return MacsLinearModel(self.ms_per_mmac * factor, self.intercept_ms * factor)

    def to_dict(self):
        return {"type": self.type, "ms_per_mmac": self.ms_per_mmac, "intercept_ms": self.intercept_ms}


class AnalyticalMCUModel(LatencyModel):
    """latency_ms = MACs / (macs_per_cycle * clock_mhz * 1e3) + overhead_ms."""

    type = "analytical-mcu"

    def __init__(self, clock_mhz: float, macs_per_cycle: float, overhead_ms: float = 0.0, source: str = ""):
        self.clock_mhz = float(clock_mhz)
        self.macs_per_cycle = float(macs_per_cycle)
        self.overhead_ms = float(overhead_ms)
        self.source = str(source)

    def predict_ms(self, space, configs):
        space = _space(space)
        return total_macs(space, configs) / (self.macs_per_cycle * self.clock_mhz * 1e3) + self.overhead_ms

    def to_dict(self):
        return {"type": self.type, "clock_mhz": self.clock_mhz, "macs_per_cycle": self.macs_per_cycle,
                "overhead_ms": self.overhead_ms, "source": self.source}


class LookupTableModel(LatencyModel):
    """OFA-style per-block lookup table: latency = scale * (sum of block ms + stem + head) + offset_ms.

    `blocks` maps keys (`block_key`, `stem_key`, `head_key`) to milliseconds measured in
    isolation; scale 1 and offset 0 is the pure OFA table.
    """

    type = "lut"

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
            keys = _block_keys(space)
            stems, heads = _fixed_keys(space)
            missing = sorted({k for k in (*keys.ravel(), *stems.ravel(), *heads.ravel()) if k not in self.blocks})
            if missing:
                raise ValueError(f"lut latency model lacks {len(missing)} block key(s) of space "
                                 f"'{space.name}', e.g. '{missing[0]}'; measure them with "
                                 f"latency_data.measure_block_table")
            lookup = np.vectorize(self.blocks.__getitem__, otypes=[np.float64])
            self._tables = (lookup(keys), lookup(stems) + lookup(heads))
        return self._tables

    def raw_sum_ms(self, space, configs) -> np.ndarray:
        space = _space(space)
        return _gather(space, configs, *self.tables(space))

    def predict_ms(self, space, configs):
        return self.raw_sum_ms(space, configs) * self.scale + self.offset_ms

    def with_calibration(self, scale: float, offset_ms: float) -> "LookupTableModel":
        return LookupTableModel(self.space, self.blocks, scale, offset_ms, self.source)

    def scaled(self, factor):
        factor = _scale_factor(factor)
        return self.with_calibration(self.scale * factor, self.offset_ms * factor)

    def to_dict(self):
        return {"type": self.type, "space": self.space, "scale": self.scale, "offset_ms": self.offset_ms,
                "source": self.source, "blocks": dict(sorted(self.blocks.items()))}


class BlockLinearModel(LatencyModel):
    """The learned predictor: latency_ms = intercept_ms + sum_f coef[f] * feature_f(config).

    Features: `architecture_features` (per-block sums from a precomputed table, stem/head terms).
    """

    type = LEARNED_KIND

    def __init__(self, space: str, features: Sequence[str], coef: Sequence[float], intercept_ms: float):
        known = BLOCK_FEATURES + FIXED_FEATURES
        features = tuple(str(f) for f in features)
        unknown = [f for f in features if f not in known]
        if unknown:
            raise ValueError(f"{self.type} latency model: unknown feature '{unknown[0]}'; allowed: {list(known)}")
        if len(coef) != len(features):
            raise ValueError(f"{self.type} latency model: {len(coef)} coefficients for {len(features)} features")
        self.space = str(space)
        self.features = features
        self.coef = np.array([float(c) for c in coef], np.float64)
        self.intercept_ms = float(intercept_ms)
        self._weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _tables(self, space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
        # Fold the coefficients into the tables once: a prediction is then one scalar gather.
        if space.name not in self._weights:
            block, fixed = _feature_tables(space)
            names = BLOCK_FEATURES + FIXED_FEATURES
            w = np.zeros(len(names))
            for f, c in zip(self.features, self.coef):
                w[names.index(f)] = c
            nb = len(BLOCK_FEATURES)
            self._weights[space.name] = (block @ w[:nb], fixed @ w[nb:] + self.intercept_ms)
        return self._weights[space.name]

    def predict_ms(self, space, configs):
        space = _space(space)
        _check_space(self.space, space, self.type)
        return _gather(space, configs, *self._tables(space))

    def scaled(self, factor):
        factor = _scale_factor(factor)
        return BlockLinearModel(self.space, self.features, self.coef * factor, self.intercept_ms * factor)

    def to_dict(self):
        return {"type": self.type, "space": self.space, "features": list(self.features),
                "coef": [float(c) for c in self.coef], "intercept_ms": self.intercept_ms}


def _scale_factor(factor: Any) -> float:
    if isinstance(factor, bool) or not isinstance(factor, (int, float, np.floating)) \
            or not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"scale factor = {factor!r}; allowed: a finite number > 0")
    return float(factor)


# ---------------------------------------------------------------------- from_dict
def _number(d: Mapping[str, Any], field: str, kind: str, positive: bool = False, default=None) -> float:
    if field not in d:
        if default is not None:
            return default
        raise ValueError(f"{kind} latency model: missing field '{field}'")
    value = d[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{kind} latency model: field '{field}' = {value!r}; allowed: a finite number")
    if positive and value <= 0:
        raise ValueError(f"{kind} latency model: field '{field}' = {value!r}; allowed: a number > 0")
    return float(value)


def _string(d: Mapping[str, Any], field: str, kind: str, default: str | None = None) -> str:
    value = d.get(field, default)
    if not isinstance(value, str):
        raise ValueError(f"{kind} latency model: field '{field}' must be a string, got {value!r}")
    return value


def _fields(d: Mapping[str, Any], kind: str, required: set[str], optional: set[str]) -> None:
    missing = sorted(required - set(d))
    extra = sorted(set(d) - required - optional - {"type"})
    if missing:
        raise ValueError(f"{kind} latency model: missing field(s) {missing}")
    if extra:
        raise ValueError(f"{kind} latency model: unexpected field(s) {extra}; allowed: "
                         f"{sorted(required | optional | {'type'})}")


def latency_model_from_dict(d: Mapping[str, Any]) -> LatencyModel:
    """Rebuild a model from `to_dict()` output; `ValueError` naming the field that is wrong."""
    if not isinstance(d, Mapping):
        raise ValueError(f"a latency model must be a JSON object, got {type(d).__name__}")
    kind = d.get("type")
    if kind not in MODEL_TYPES:
        raise ValueError(f"latency model field 'type' = {kind!r}; allowed: {list(MODEL_TYPES)}")
    if kind == "macs-linear":
        _fields(d, kind, {"ms_per_mmac", "intercept_ms"}, set())
        return MacsLinearModel(_number(d, "ms_per_mmac", kind), _number(d, "intercept_ms", kind))
    if kind == "analytical-mcu":
        _fields(d, kind, {"clock_mhz", "macs_per_cycle"}, {"overhead_ms", "source"})
        return AnalyticalMCUModel(_number(d, "clock_mhz", kind, positive=True),
                                  _number(d, "macs_per_cycle", kind, positive=True),
                                  _number(d, "overhead_ms", kind, default=0.0), _string(d, "source", kind, ""))
    if kind == "lut":
        _fields(d, kind, {"space", "blocks"}, {"scale", "offset_ms", "source"})
        blocks = d["blocks"]
        if not isinstance(blocks, Mapping) or not blocks:
            raise ValueError("lut latency model: field 'blocks' must be a non-empty object of key -> ms")
        for key, value in blocks.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise ValueError(f"lut latency model: blocks['{key}'] = {value!r}; allowed: a number >= 0")
        return LookupTableModel(_string(d, "space", kind), blocks, _number(d, "scale", kind, default=1.0),
                                _number(d, "offset_ms", kind, default=0.0), _string(d, "source", kind, ""))
    _fields(d, kind, {"space", "features", "coef", "intercept_ms"}, set())
    features, coef = d["features"], d["coef"]
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise ValueError(f"{kind} latency model: field 'features' must be a list of strings")
    if not isinstance(coef, list):
        raise ValueError(f"{kind} latency model: field 'coef' must be a list of numbers")
    for i, c in enumerate(coef):
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c):
            raise ValueError(f"{kind} latency model: coef[{i}] = {c!r}; allowed: a finite number")
    return BlockLinearModel(_string(d, "space", kind), features, coef, _number(d, "intercept_ms", kind))


# ---------------------------------------------------------------------- fitting
def _weighted_lstsq(x: np.ndarray, y: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """Least squares on *relative* error (weights 1/y): the target is "within +-10%", not ms.

    `x` includes a constant column (last); the ridge penalty (on standardised columns) spares it.
    """
    w = 1.0 / y
    xs = x * w[:, None]
    ys = y * w
    scale = np.sqrt((xs ** 2).mean(0))
    scale[scale == 0] = 1.0
    xn = xs / scale
    penalty = np.full(x.shape[1], ridge)
    penalty[-1] = 0.0
    a = xn.T @ xn + np.diag(penalty) * len(y)
    beta = np.linalg.solve(a, xn.T @ ys)
    return beta / scale


def _check_fit_inputs(space: SearchSpace, configs: Configs, latencies_ms) -> np.ndarray:
    y = np.asarray(latencies_ms, np.float64).reshape(-1)
    n = space.to_arrays(configs)["wid"].shape[0]
    if y.shape[0] != n:
        raise ValueError(f"{n} configs but {y.shape[0]} latencies")
    if n < 2:
        raise ValueError(f"fitting a latency model needs at least 2 measured configs, got {n}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("latencies_ms must be finite and > 0")
    return y


def fit_latency_model(space: SearchSpace | str, configs: Configs, latencies_ms: Sequence[float],
                      kind: str = "learned", *, block_table: Mapping[str, float] | LookupTableModel | None = None,
                      ridge: float = DEFAULT_RIDGE) -> LatencyModel:
    """Fit a latency model to measured configs.

    kind: "learned" (= "block-linear"), "macs-linear" or "lut" (needs `block_table`: a dict of
    block key -> ms or a `LookupTableModel`; fits its calibration scale / offset). All fits
    minimise squared *relative* error.
    """
    space = _space(space)
    y = _check_fit_inputs(space, configs, latencies_ms)
    kind = LEARNED_KIND if kind == "learned" else kind
    if kind == "macs-linear":
        x = np.stack([total_macs(space, configs) / 1e6, np.ones_like(y)], 1)
        a, b = _weighted_lstsq(x, y)
        return MacsLinearModel(a, b)
    if kind == "lut":
        if block_table is None:
            raise ValueError("fitting a 'lut' latency model needs block_table (measured block latencies)")
        lut = block_table if isinstance(block_table, LookupTableModel) else LookupTableModel(space.name, block_table)
        raw = lut.raw_sum_ms(space, configs)
        scale, offset = _weighted_lstsq(np.stack([raw, np.ones_like(y)], 1), y)
        return lut.with_calibration(scale, offset)
    if kind == LEARNED_KIND:
        x, names = architecture_features(space, configs)
        beta = _weighted_lstsq(np.concatenate([x, np.ones((len(y), 1))], 1), y, ridge=ridge)
        return BlockLinearModel(space.name, names, beta[:-1], beta[-1])
    raise ValueError(f"kind = {kind!r}; allowed: 'learned', 'macs-linear', 'lut'")


# ---------------------------------------------------------------------- evaluation
def latency_metrics(predicted_ms: Sequence[float], measured_ms: Sequence[float]) -> dict[str, float]:
    """rmse_ms, mape (fraction), kendall_tau, within_10pct (fraction), n_test."""
    p = np.asarray(predicted_ms, np.float64).reshape(-1)
    m = np.asarray(measured_ms, np.float64).reshape(-1)
    if p.shape != m.shape:
        raise ValueError(f"{p.shape[0]} predictions but {m.shape[0]} measurements")
    if m.shape[0] == 0:
        raise ValueError("no measurements to evaluate on")
    rel = np.abs(p - m) / m
    return {"rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))), "mape": float(rel.mean()),
            "kendall_tau": kendall_tau(p, m), "within_10pct": float(np.mean(rel <= 0.10 + 1e-9)),   # 1e-9: 2.2 vs 2.0 is within
            "n_test": int(m.shape[0])}


def evaluate_latency_model(model: LatencyModel, space: SearchSpace | str, configs: Configs,
                           measured_ms: Sequence[float]) -> dict[str, float]:
    """Quality of `model` on measured configs: rmse_ms, mape, kendall_tau, within_10pct, n_test."""
    return latency_metrics(model.predict_ms(space, configs), measured_ms)


def _subset(space: SearchSpace, configs: Configs, index: np.ndarray):
    a = space.to_arrays(configs)
    return {k: a[k][index] for k in ("wid", "ks", "e", "d", "image_size")}


def select_ridge(space: SearchSpace | str, configs: Configs, latencies_ms: Sequence[float],
                 ridges: Sequence[float] = LEARNED_RIDGES, folds: int = 5,
                 seed: int = 0) -> tuple[float, list[tuple[float, float, float]]]:
    """The learned model's ridge penalty chosen by `folds`-fold cross-validation (seeded): the
    one with the most held-out predictions within +-10%, ties broken by the lower MAPE.
    Returns (ridge, rows of (ridge, mean within_10pct, mean mape)); with fewer than
    2 x `folds` subnets there is nothing to cross-validate: (DEFAULT_RIDGE, [])."""
    space = _space(space)
    y = _check_fit_inputs(space, configs, latencies_ms)
    if len(y) < 2 * folds:
        return DEFAULT_RIDGE, []
    parts = np.array_split(np.random.default_rng(seed).permutation(len(y)), folds)
    rows = []
    for ridge in ridges:
        within, mape = [], []
        for k in range(folds):
            train = np.concatenate([parts[j] for j in range(folds) if j != k])
            model = fit_latency_model(space, _subset(space, configs, train), y[train], ridge=ridge)
            scores = evaluate_latency_model(model, space, _subset(space, configs, parts[k]), y[parts[k]])
            within.append(scores["within_10pct"])
            mape.append(scores["mape"])
        rows.append((float(ridge), float(np.mean(within)), float(np.mean(mape))))
    best = max(rows, key=lambda r: (r[1], -r[2]))
    return best[0], rows


class ProfileFit(NamedTuple):
    """What the profile protocol produces: the shipped `model` (fitted on every subnet), its
    `quality` on the held-out subnets, the `held_out` model that was scored (fitted on `train`
    only) and the `train` / `test` indices of the seeded split."""
    model: LatencyModel
    quality: dict[str, float]
    held_out: LatencyModel
    train: np.ndarray
    test: np.ndarray


def profile_fit(space: SearchSpace | str, configs: Configs, latencies_ms: Sequence[float],
                kind: str = "learned", seed: int = 0, test_fraction: float = 0.2) -> ProfileFit:
    """The protocol of a measured device profile: split the subnets (seeded, `test_fraction`
    held out); for the learned model choose the ridge penalty by cross-validation on the training
    part only (`select_ridge`); fit there and score on the held-out part (quality: rmse_ms, mape,
    kendall_tau, within_10pct, n_test, n_train, and ridge for the learned model); then refit on
    all the data with the same options (the shipped model)."""
    space = _space(space)
    y = _check_fit_inputs(space, configs, latencies_ms)
    if not 0.05 <= test_fraction <= 0.5:
        raise ValueError(f"test_fraction = {test_fraction}; allowed: 0.05..0.5")
    if len(y) < 5:
        raise ValueError(f"a profile needs at least 5 measured subnets (80/20 split), got {len(y)}")
    train, test = split_indices(len(y), test_fraction, seed)
    options = {}
    if kind == "learned":
        options["ridge"], _ = select_ridge(space, _subset(space, configs, train), y[train], seed=seed)
    held_out = fit_latency_model(space, _subset(space, configs, train), y[train], kind=kind, **options)
    scores = evaluate_latency_model(held_out, space, _subset(space, configs, test), y[test])
    quality = {k: int(v) if k.startswith("n_") else float(v) for k, v in scores.items()}
    quality.update(n_train=len(train), **options)
    return ProfileFit(fit_latency_model(space, configs, y, kind=kind, **options), quality, held_out, train, test)


def fit_profile_latency(space: SearchSpace | str, configs: Configs, latencies_ms: Sequence[float],
                        seed: int = 0, test_fraction: float = 0.2) -> tuple[LatencyModel, dict[str, float]]:
    """`profile_fit` of the learned model: (the shipped model, its held-out quality)."""
    fit = profile_fit(space, configs, latencies_ms, "learned", seed, test_fraction)
    return fit.model, fit.quality
