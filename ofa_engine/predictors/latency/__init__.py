"""Latency predictors: config -> milliseconds, vectorised over populations, JSON-serialisable.

- `models`: the four model types as estimators (`fit(X, y) -> self`, `predict(X)`), registered
  in `LATENCY_MODELS`;
- `fit`: fitting to measured configs, evaluation, ridge selection and the profile protocol;
- `schema`: `latency_model_from_dict`, the validated inverse of `to_dict`.

What a model sees of a subnet (block keys, architecture features, MACs) is specific to the
network family: the family's `LatencyFeatures` (`ofa_engine.space.latency`), reached through
`features_of(space)`; `architecture_features`, `total_macs` and `unique_blocks` of a space are
re-exported here, with the metrics of `ofa_engine.predictors.metrics`.
"""

from ..metrics import kendall_tau, latency_metrics, split_indices
from .fit import (LEARNED_RIDGES, ProfileFit, evaluate_latency_model, fit_latency_model, fit_profile_latency,
                  profile_fit, select_ridge)
from .models import (DEFAULT_RIDGE, LATENCY_MODELS, LEARNED_KIND, MODEL_TYPES, AnalyticalMCUModel, BlockLinearModel,
                     LatencyModel, LookupTableModel, MacsLinearModel, architecture_features, features_of, total_macs,
                     unique_blocks)
from .schema import latency_model_from_dict

__all__ = ["LatencyModel", "MacsLinearModel", "LookupTableModel", "BlockLinearModel", "AnalyticalMCUModel",
           "LATENCY_MODELS", "MODEL_TYPES", "LEARNED_KIND", "DEFAULT_RIDGE", "LEARNED_RIDGES",
           "latency_model_from_dict", "fit_latency_model", "evaluate_latency_model", "fit_profile_latency",
           "profile_fit", "ProfileFit", "select_ridge", "latency_metrics", "kendall_tau", "split_indices",
           "features_of", "unique_blocks", "architecture_features", "total_macs"]
