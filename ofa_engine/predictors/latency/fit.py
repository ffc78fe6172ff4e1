"""Fitting latency models to measured configs, scoring them, and the device-profile protocol.

Fitting: `fit_latency_model(space, configs, latencies_ms, kind)`; evaluation:
`evaluate_latency_model(model, space, configs, measured_ms)` -> rmse_ms, mape, kendall_tau,
within_10pct, n_test. `profile_fit` / `fit_profile_latency` do the 80/20 protocol used for
device profiles, with the learned model's ridge penalty chosen by `select_ridge`.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from ...space.latency import Configs, LatencyFeatures
from ..metrics import latency_metrics, split_indices
from .models import (DEFAULT_RIDGE, LEARNED_KIND, BlockLinearModel, LatencyModel, LookupTableModel, MacsLinearModel,
                     features_of)

__all__ = ["fit_latency_model", "evaluate_latency_model", "select_ridge", "profile_fit", "ProfileFit",
           "fit_profile_latency", "LEARNED_RIDGES"]

LEARNED_RIDGES = (0.0, 1e-4, 1e-3, 1e-2)   # candidates for the learned model's ridge penalty


SpaceLike = Any   # a family's space object or preset name


def _check_fit_inputs(features: LatencyFeatures, configs: Configs, latencies_ms) -> np.ndarray:
    y = np.asarray(latencies_ms, np.float64).reshape(-1)
    n = features.count(configs)
    if y.shape[0] != n:
        raise ValueError(f"{n} configs but {y.shape[0]} latencies")
    if n < 2:
        raise ValueError(f"fitting a latency model needs at least 2 measured configs, got {n}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("latencies_ms must be finite and > 0")
    return y


def fit_latency_model(space: SpaceLike, configs: Configs, latencies_ms: Sequence[float],
                      kind: str = "learned", *, block_table: Mapping[str, float] | LookupTableModel | None = None,
                      ridge: float = DEFAULT_RIDGE) -> LatencyModel:
    """Fit a latency model to measured configs.

    kind: "learned" (= "block-linear"), "macs-linear" or "lut" (needs `block_table`: a dict of
    block key -> ms or a `LookupTableModel`; fits its calibration scale / offset). All fits
    minimise squared *relative* error.
    """
    space = features_of(space)
    y = _check_fit_inputs(space, configs, latencies_ms)
    kind = LEARNED_KIND if kind == "learned" else kind
    if kind == "macs-linear":
        model: LatencyModel = MacsLinearModel()
        x = model.feature_rows(space, configs)
    elif kind == "lut":
        if block_table is None:
            raise ValueError("fitting a 'lut' latency model needs block_table (measured block latencies)")
        lut = block_table if isinstance(block_table, LookupTableModel) else LookupTableModel(space.space.name, block_table)
        x = lut.feature_rows(space, configs)
        model = LookupTableModel(lut.space, lut.blocks, source=lut.source)
    elif kind == LEARNED_KIND:
        model = BlockLinearModel(space.space.name, space.feature_names, ridge=ridge)
        x = model.feature_rows(space, configs)
    else:
        raise ValueError(f"kind = {kind!r}; allowed: 'learned', 'macs-linear', 'lut'")
    return model.fit(x, y)


def evaluate_latency_model(model: LatencyModel, space: SpaceLike, configs: Configs,
                           measured_ms: Sequence[float]) -> dict[str, float]:
    """Quality of `model` on measured configs: rmse_ms, mape, kendall_tau, within_10pct, n_test."""
    return latency_metrics(model.predict_ms(space, configs), measured_ms)


def _subset(space: LatencyFeatures, configs: Configs, index: np.ndarray) -> Configs:
    return space.take(configs, index)


def select_ridge(space: SpaceLike, configs: Configs, latencies_ms: Sequence[float],
                 ridges: Sequence[float] = LEARNED_RIDGES, folds: int = 5,
                 seed: int = 0) -> tuple[float, list[tuple[float, float, float]]]:
    """The learned model's ridge penalty chosen by `folds`-fold cross-validation (seeded): the
    one with the most held-out predictions within +-10%, ties broken by the lower MAPE.
    Returns (ridge, rows of (ridge, mean within_10pct, mean mape)); with fewer than
    2 x `folds` subnets there is nothing to cross-validate: (DEFAULT_RIDGE, [])."""
    space = features_of(space)
    y = _check_fit_inputs(space, configs, latencies_ms)
    if len(y) < 2 * folds:
        return DEFAULT_RIDGE, []
    parts = np.array_split(np.random.default_rng(seed).permutation(len(y)), folds)
    rows = []
    # No penalty is singular when a training fold has fewer subnets than the model has
    # coefficients (numpy raises); such a fold cannot choose it.
    width = len(space.feature_names) + 1
    smallest_fold = len(y) - max(len(p) for p in parts)
    # Even with enough subnets, no penalty is singular when two features move together in
    # the sample (numpy raises LinAlgError): that penalty is then not a candidate either.
    for ridge in [r for r in ridges if r > 0 or smallest_fold > width]:
        within, mape = [], []
        try:
            for k in range(folds):
                train = np.concatenate([parts[j] for j in range(folds) if j != k])
                model = fit_latency_model(space, _subset(space, configs, train), y[train], ridge=ridge)
                scores = evaluate_latency_model(model, space, _subset(space, configs, parts[k]), y[parts[k]])
                within.append(scores["within_10pct"])
                mape.append(scores["mape"])
        except np.linalg.LinAlgError:
            if ridge > 0:
                raise
            continue
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


def profile_fit(space: SpaceLike, configs: Configs, latencies_ms: Sequence[float],
                kind: str = "learned", seed: int = 0, test_fraction: float = 0.2) -> ProfileFit:
    """The protocol of a measured device profile: split the subnets (seeded, `test_fraction`
    held out); for the learned model choose the ridge penalty by cross-validation on the training
    part only (`select_ridge`); fit there and score on the held-out part (quality: rmse_ms, mape,
    kendall_tau, within_10pct, n_test, n_train, and ridge for the learned model); then refit on
    all the data with the same options (the shipped model)."""
    space = features_of(space)
    y = _check_fit_inputs(space, configs, latencies_ms)
    if not 0.05 <= test_fraction <= 0.5:
        raise ValueError(f"test_fraction = {test_fraction}; allowed: 0.05..0.5")
    if len(y) < 5:
        raise ValueError(f"a profile needs at least 5 measured subnets (80/20 split), got {len(y)}")
    train, test = split_indices(len(y), test_fraction, seed)
    options = {}
    if kind == "learned":
        options["ridge"], _ = select_ridge(space, _subset(space, configs, train), y[train], seed=seed)
        options["ridge"] = _positive_ridge(space, configs, y, options["ridge"])
    held_out = fit_latency_model(space, _subset(space, configs, train), y[train], kind=kind, **options)
    scores = evaluate_latency_model(held_out, space, _subset(space, configs, test), y[test])
    quality = {k: int(v) if k.startswith("n_") else float(v) for k, v in scores.items()}
    quality.update(n_train=len(train), **options)
    return ProfileFit(fit_latency_model(space, configs, y, kind=kind, **options), quality, held_out, train, test)


# Penalties tried, in order, when the chosen one fits a model that predicts <= 0 ms somewhere.
FALLBACK_RIDGES = (1e-2, 3e-2, 1e-1, 3e-1, 1.0)


def _positive_ridge(space: LatencyFeatures, configs: Configs, y: np.ndarray, ridge: float) -> float:
    """`ridge`, or the first larger penalty whose learned model predicts > 0 ms for every subnet
    of the space (a profile must; `latency_model_from_dict` refuses one that does not). A few
    noisy subnets can fit per-block coefficients whose sum goes negative on subnets far from the
    measured ones; a larger penalty pulls them towards each other. `ValueError` when none does."""
    for candidate in (ridge,) + tuple(r for r in FALLBACK_RIDGES if r > ridge):
        model = fit_latency_model(space, configs, y, kind="learned", ridge=candidate)
        if model.prediction_range(space)[0] > 0:
            return candidate
    raise ValueError(f"the {len(y)} measured subnets fit no latency model that predicts > 0 ms for "
                     f"every subnet of space '{space.space.name}' (ridge up to {FALLBACK_RIDGES[-1]:g}); "
                     f"measure more subnets (profile-kit --n), or fit with --model macs-linear")


def fit_profile_latency(space: SpaceLike, configs: Configs, latencies_ms: Sequence[float],
                        seed: int = 0, test_fraction: float = 0.2) -> tuple[LatencyModel, dict[str, float]]:
    """`profile_fit` of the learned model: (the shipped model, its held-out quality)."""
    fit = profile_fit(space, configs, latencies_ms, "learned", seed, test_fraction)
    return fit.model, fit.quality
