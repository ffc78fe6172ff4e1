"""Predicted metrics of whole populations: accuracy (predictor), latency (device profile) and the
analytic efficiency metrics (from the search space, see `ofa_engine.space.interface`).
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

import numpy as np

from ..families import search_space
from ..families.mbv3.tables import EfficiencyTables
from ..space.interface import DiscreteSearchSpace

__all__ = ["Evaluator", "EfficiencyTables", "METRIC_NAMES", "EFFICIENCY_METRICS", "efficiency_metrics"]

EFFICIENCY_METRICS = ("latency_ms", "peak_memory_kb", "flash_kb", "macs", "params")
METRIC_NAMES = ("accuracy",) + EFFICIENCY_METRICS


def efficiency_metrics(analytic: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluator's analytic metrics (KB for memory) of a space's `analytic_efficiency`;
    works on numpy arrays and on torch tensors alike."""
    return {"peak_memory_kb": analytic["peak_activation_bytes"] / 1024.0,
            "flash_kb": analytic["flash_bytes"] / 1024.0,
            "macs": analytic["macs"], "params": analytic["params"]}


class Evaluator:
    """Predicted metrics of configs on one device.

    `space`: any `DiscreteSearchSpace`, or a registered family's space object or preset name
    (turned into one by `ofa_engine.families.search_space`; `fast=False` makes it skip the
    family's exact tables).
    `profile`: anything with `.predict_latency_ms(batch) -> (N,) ms` (a `DeviceProfile`, bound
    to this space with its `for_space`, or a stand-in in tests) where `batch` is the space's
    `decode` form, a profile name, or None (no latency: `latency_ms` is NaN and a latency bound
    is refused). `accuracy_predictor`: anything
    with `.predict(batch) -> (N,)` fraction (optionally `.predict_encoded(encoding)`), or a
    predictor name.

    Read-only after construction, so one evaluator may serve many threads.
    """

    def __init__(self, space: DiscreteSearchSpace | Any, profile: Any = None, accuracy_predictor: Any = None,
                 *, fast: bool = True):
        self.space = search_space(space, fast=fast)
        if isinstance(profile, str):
            from ..devices.profiles import load_profile
            profile = load_profile(profile)
        if isinstance(accuracy_predictor, str):
            from ..predictors.accuracy import load_accuracy_predictor
            accuracy_predictor = load_accuracy_predictor(accuracy_predictor)
        bind = getattr(profile, "for_space", None)
        if bind is not None:
            # A DeviceProfile bound to this space: an analytical one (space "*") counts this
            # space's MACs; one fitted to another space is refused, saying so.
            profile = bind(getattr(self.space, "space", self.space.name))
        for what, obj in (("profile", None if bind is not None else profile),
                          ("accuracy predictor", accuracy_predictor)):
            other = getattr(obj, "space", None)
            other = getattr(other, "name", other)
            if isinstance(other, str) and other != self.space.name:
                raise ValueError(f"{what} is for space '{other}', not '{self.space.name}'")
        if accuracy_predictor is None:
            raise ValueError("Evaluator needs an accuracy predictor (an object with .predict(batch))")
        self.profile = profile
        self.accuracy_predictor = accuracy_predictor
        self.genome = self.space.genome
        self._cache_lock = threading.Lock()
        self._cache: dict[str, Any] = {}

    @property
    def fast_path(self) -> bool:
        """True when the space computes exact efficiency extremes (MobileNetV3: its tables)."""
        return self.space.has_exact_extremes

    @property
    def has_latency(self) -> bool:
        return self.profile is not None

    @property
    def profile_name(self) -> str:
        return str(getattr(self.profile, "name", "no profile") if self.profile is not None else "no profile")

    # ------------------------------------------------------------- genome level (strategies)
    def analytic_of(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        return self.space.analytic_efficiency(genes)

    def efficiency_of(self, genes: np.ndarray, latency: bool = True) -> dict[str, np.ndarray]:
        """Efficiency metrics of a genome array; `latency=False` skips the profile (NaN)."""
        genes = np.asarray(genes, np.int64)
        a = efficiency_metrics(self.analytic_of(genes))
        lat = self.latency_of(genes) if latency else np.full(len(genes), np.nan)
        return {"latency_ms": lat, **a}

    def latency_of(self, genes: np.ndarray) -> np.ndarray:
        if self.profile is None:
            return np.full(len(genes), np.nan)
        batch = self.space.decode(np.asarray(genes, np.int64))
        return np.asarray(self.profile.predict_latency_ms(batch), np.float64).reshape(-1)

    def accuracy_of(self, genes: np.ndarray) -> np.ndarray:
        genes = np.asarray(genes, np.int64)
        predict_encoded = getattr(self.accuracy_predictor, "predict_encoded", None)
        if predict_encoded is not None:
            # Genomes are valid by construction: skip the batch's re-validation.
            out = predict_encoded(self.genome.encode(genes))
        else:
            out = self.accuracy_predictor.predict(self.space.decode(genes))
        return np.asarray(out, np.float64).reshape(-1)

    def metrics_of(self, genes: np.ndarray, latency: bool = True) -> dict[str, np.ndarray]:
        out = {"accuracy": self.accuracy_of(genes)}
        out.update(self.efficiency_of(genes, latency))
        return out

    # ------------------------------------------------------------- public (configs / batches)
    def efficiency(self, configs: Any) -> dict[str, np.ndarray]:
        """latency_ms, peak_memory_kb, flash_kb, macs, params of one config, several, or a
        batch (anything the space's `to_genes` takes)."""
        return self.efficiency_of(self.space.to_genes(configs))

    def metrics(self, configs: Any) -> dict[str, np.ndarray]:
        """accuracy (fraction), latency_ms, peak_memory_kb, flash_kb, macs, params, as arrays."""
        return self.metrics_of(self.space.to_genes(configs))

    def cached(self, key: str, compute):
        """Per-evaluator memo (e.g. budget ranges), computed once even under concurrent calls."""
        with self._cache_lock:
            if key not in self._cache:
                self._cache[key] = compute()
            return self._cache[key]
