"""Few-shot latency fitting: a new device from K measured subnets, with a fitted profile as prior.

A block-linear model fitted on one device (the prior) already knows which parts of a subnet
cost what; another device mostly differs by how fast it runs each kind of layer. So with K
measured subnets of the new device (K from `MIN_FEWSHOT_SUBNETS`), fitting few numbers on top
of the prior beats fitting the 15 coefficients from scratch. The methods (`FEWSHOT_METHODS`):

- "scale": latency = a * prior(x) (one number);
- "scale-offset": latency = a * prior(x) + b;
- "group-scale": the prior's prediction split into its parts (the family's
  `LatencyFeatures.feature_groups`; MobileNetV3: 1x1 convs, depthwise convs, elementwise work,
  SE, per-block overhead, stem and head) and one scale per
  part plus an offset, pulled towards one common scale by a ridge penalty (a low-rank
  correction of the prior's coefficients: one direction per group);
- "ridge-prior": every coefficient refitted, with a ridge penalty towards the scale-offset fit
  of the prior (HELP-style: the prior as the starting point, the data move it where they can);
- "scratch": the block-linear model fitted on the K alone (no prior), ridge by
  cross-validation: the baseline.

Every method returns a plain `BlockLinearModel`, so a few-shot profile is an ordinary profile.
All fits minimise squared relative error, like the models themselves. The default
(`DEFAULT_FEWSHOT_METHOD`) was chosen by measurement: docs/latency-fewshot.md
(`python benchmarks/latency_fewshot.py`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ...space.latency import Configs
from ..linear import ridge_solve
from .models import LEARNED_KIND, BlockLinearModel, LatencyModel, features_of

__all__ = ["FEWSHOT_METHODS", "DEFAULT_FEWSHOT_METHOD", "MIN_FEWSHOT_SUBNETS",
           "fewshot_fit", "fewshot_fit_rows", "spread_indices", "GROUP_PENALTY", "PRIOR_PENALTY"]

FEWSHOT_METHODS = ("scale", "scale-offset", "group-scale", "ridge-prior", "scratch")
DEFAULT_FEWSHOT_METHOD = "ridge-prior"
MIN_FEWSHOT_SUBNETS = 5

# Ridge penalties (on standardised columns, relative-error rows) of the group scales towards
# their common scale, and of the refitted coefficients towards the prior's scale-offset fit. Not
# scaled by K: with more subnets the data outweigh the prior. 3 was the best of 0.3 / 3 / 30 on
# the bundled datasets' transfers (1t <-> 2t, fp32 -> int8; docs/latency-fewshot.md).
GROUP_PENALTY = 3.0
PRIOR_PENALTY = 3.0


def _prior_rows(prior: BlockLinearModel, x: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    return x[:, [names.index(f) for f in prior.features]]


def _check_space(prior: BlockLinearModel, x: np.ndarray, features: Any) -> None:
    """The prior and the rows describe one space: the prior's model was fitted for it, and the
    rows carry its family's features (a prior of another space would pick the wrong columns)."""
    name = features.space.name
    if prior.space and prior.space != name:
        raise ValueError(f"the few-shot prior was fitted for space '{prior.space}', the measured subnets are of "
                         f"space '{name}'; allowed: a prior of space '{name}' (a measured profile of it)")
    if x.ndim != 2 or x.shape[1] != len(features.feature_names):
        raise ValueError(f"x has shape {x.shape}; allowed: (K, {len(features.feature_names)}), the latency "
                         f"features of space '{name}' ({', '.join(features.feature_names)})")


def _check(prior: LatencyModel, x: np.ndarray, y: np.ndarray, method: str, min_subnets: int) -> None:
    if method not in FEWSHOT_METHODS:
        raise ValueError(f"few-shot method {method!r}; allowed: {list(FEWSHOT_METHODS)}")
    if method != "scratch" and not isinstance(prior, BlockLinearModel):
        kind = prior.to_dict().get("type") if hasattr(prior, "to_dict") else type(prior).__name__
        raise ValueError(f"a few-shot prior must be a '{LEARNED_KIND}' latency model (a measured profile's); "
                         f"got '{kind}'")
    if y.shape[0] < min_subnets:
        raise ValueError(f"few-shot fitting needs at least {min_subnets} measured subnets, got "
                         f"{y.shape[0]}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("latencies_ms must be finite and > 0")


def fewshot_fit_rows(prior: BlockLinearModel | None, x: np.ndarray, y: np.ndarray,
                     method: str = DEFAULT_FEWSHOT_METHOD, *, min_subnets: int = MIN_FEWSHOT_SUBNETS,
                     space: Any = None) -> BlockLinearModel:
    """`fewshot_fit` on feature rows: `x` the (K, F) `architecture_features` of the measured
    subnets (all features of the space's family, in their order), `y` their latencies (ms).
    `space`: the space the rows are of (default: the prior's; a "scratch" fit without either
    gives a model of no space, whose feature names stay unknown). `min_subnets` is lowered
    only by leave-one-out scoring (K - 1 of the K)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64).reshape(-1)
    _check(prior, x, y, method, max(2, int(min_subnets)))
    k = len(y)
    if space is None and prior is not None:
        space = prior.space
    features = features_of(space) if space is not None else None
    if method == "scratch":
        name = features.space.name if features is not None else ""
        names = features.feature_names if features is not None else None
        return BlockLinearModel(name, names, ridge=_cv_ridge(x, y)).fit(x, y)
    names = features.feature_names
    _check_space(prior, x, features)
    px = _prior_rows(prior, x, names)
    base = px @ prior.coef + prior.intercept_ms
    w = 1.0 / y
    if method == "scale":
        a = float(np.sum(w * w * base * y) / np.sum(w * w * base * base))
        return BlockLinearModel(prior.space, prior.features, prior.coef * a, prior.intercept_ms * a)
    a, b = ridge_solve(np.stack([base, np.ones(k)], 1), y, row_scale=w)
    if method == "scale-offset":
        return BlockLinearModel(prior.space, prior.features, prior.coef * a,
                                prior.intercept_ms * a + b)
    if method == "group-scale":
        groups = [[i for i, f in enumerate(prior.features) if f in members]
                  for members in features.feature_groups.values()]
        z = np.stack([px[:, g] @ prior.coef[g] for g in groups]
                     + [np.full(k, prior.intercept_ms), np.ones(k)], 1)
        # Ridge on s - a (every part at the common scale a is the scale-offset fit).
        target = y - z[:, :-1] @ np.full(z.shape[1] - 1, a)
        delta = ridge_solve(z, target, GROUP_PENALTY, row_scale=w, standardize=True,
                            unpenalized=[z.shape[1] - 1])
        scales = a + delta[:-1]
        coef = prior.coef.copy()
        for g, s in zip(groups, scales):
            coef[g] = prior.coef[g] * s
        return BlockLinearModel(prior.space, prior.features, coef,
                                prior.intercept_ms * scales[-1] + delta[-1])
    # ridge-prior: coefficients start at the scale-offset fit, move under a ridge penalty.
    start = np.concatenate([prior.coef * a, [prior.intercept_ms * a + b]])
    design = np.concatenate([px, np.ones((k, 1))], 1)
    delta = ridge_solve(design, y - design @ start, PRIOR_PENALTY, row_scale=w, standardize=True,
                        unpenalized=[design.shape[1] - 1])
    beta = start + delta
    return BlockLinearModel(prior.space, prior.features, beta[:-1], beta[-1])


def _cv_ridge(x: np.ndarray, y: np.ndarray, folds: int = 5) -> float:
    """The from-scratch ridge penalty by leave-fold-out cross-validation on the K (the profile
    protocol's candidates and criterion, `fit.select_ridge`); with fewer than 2 x `folds` rows,
    the default penalty."""
    from .fit import LEARNED_RIDGES
    from .models import DEFAULT_RIDGE
    if len(y) < 2 * folds:
        return DEFAULT_RIDGE
    parts = np.array_split(np.random.default_rng(0).permutation(len(y)), folds)
    best = None
    # No penalty is singular when a fold has fewer rows than coefficients.
    for ridge in [r for r in LEARNED_RIDGES if r > 0 or len(y) - len(parts[0]) > x.shape[1] + 1]:
        rel = []
        for i in range(folds):
            train = np.concatenate([parts[j] for j in range(folds) if j != i])
            model = BlockLinearModel("", ridge=ridge).fit(x[train], y[train])
            rel.append(np.abs(model.predict(x[parts[i]]) / y[parts[i]] - 1))
        rel = np.concatenate(rel)
        score = (float(np.mean(rel <= 0.1 + 1e-9)), -float(rel.mean()))
        if best is None or score > best[0]:
            best = (score, ridge)
    return float(best[1])


def fewshot_fit(space: Any, prior: BlockLinearModel | None, configs: Configs,
                latencies_ms: Sequence[float], method: str = DEFAULT_FEWSHOT_METHOD) -> BlockLinearModel:
    """A block-linear latency model of a new device from K >= `MIN_FEWSHOT_SUBNETS` measured
    subnets, on top of `prior` (another device's fitted block-linear model; None only for
    "scratch"). `ValueError` for too few subnets, an unknown method or a prior of another type."""
    features = features_of(space)
    x, _ = features.features(configs)
    return fewshot_fit_rows(prior, x, latencies_ms, method, space=features)


def spread_indices(x: np.ndarray, k: int, first: Sequence[int] = ()) -> np.ndarray:
    """Indices of `k` rows of `x` spread over its space: greedy max-min (farthest point) in the
    standardised log-features, starting from `first` (e.g. the largest and smallest subnet),
    else from the row farthest from the mean. Deterministic."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k = {k}; allowed: 1..{n} (the number of candidate rows)")
    z = np.log1p(np.maximum(x, 0))
    std = z.std(0)
    z = (z - z.mean(0)) / np.where(std > 0, std, 1.0)
    chosen = [int(i) for i in first][:k]
    if not chosen:
        chosen = [int(np.argmax((z ** 2).sum(1)))]
    dist = np.min(((z[:, None, :] - z[None, chosen, :]) ** 2).sum(2), axis=1)
    while len(chosen) < k:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((z - z[nxt]) ** 2).sum(1))
    return np.array(chosen)
