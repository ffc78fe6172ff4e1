"""Predicted metrics of whole populations: accuracy (predictor), latency (device profile) and the
analytic efficiency metrics (through the family's exact tables where it has them, see
`ofa_engine.families.mbv3.tables`).
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, Sequence

import numpy as np

from ..families.mbv3.analytics import analyze
from ..families.mbv3.space import SearchSpace, SubnetConfig, is_population
from ..families.mbv3.tables import EfficiencyTables, efficiency_tables
from ..space.genome import Genome

__all__ = ["Evaluator", "EfficiencyTables", "METRIC_NAMES", "EFFICIENCY_METRICS"]

EFFICIENCY_METRICS = ("latency_ms", "peak_memory_kb", "flash_kb", "macs", "params")
METRIC_NAMES = ("accuracy",) + EFFICIENCY_METRICS


class Evaluator:
    """Predicted metrics of configs on one device.

    `space`: a `SearchSpace` or preset name. `profile`: anything with
    `.predict_latency_ms(pop) -> (N,) ms` (a `DeviceProfile`, or a stand-in in tests), a profile
    name, or None (no latency: `latency_ms` is NaN and a latency bound is refused).
    `accuracy_predictor`: anything with `.predict(pop) -> (N,)` fraction, or a predictor name.

    Read-only after construction, so one evaluator may serve many threads.
    """

    def __init__(self, space: SearchSpace | str, profile: Any = None, accuracy_predictor: Any = None,
                 *, fast: bool = True):
        self.space = SearchSpace.preset(space) if isinstance(space, str) else space
        if isinstance(profile, str):
            from ..devices.profiles import load_profile
            profile = load_profile(profile)
        if isinstance(accuracy_predictor, str):
            from ..predictors.accuracy import load_accuracy_predictor
            accuracy_predictor = load_accuracy_predictor(accuracy_predictor)
        for what, obj in (("profile", profile), ("accuracy predictor", accuracy_predictor)):
            other = getattr(obj, "space", None)
            other = getattr(other, "name", other)
            if isinstance(other, str) and other != self.space.name:
                raise ValueError(f"{what} is for space '{other}', not '{self.space.name}'")
        if accuracy_predictor is None:
            raise ValueError("Evaluator needs an accuracy predictor (an object with .predict(pop))")
        self.profile = profile
        self.accuracy_predictor = accuracy_predictor
        self.genome = Genome(self.space)
        self.tables = efficiency_tables(self.space) if fast else None
        self._cache_lock = threading.Lock()
        self._cache: dict[str, Any] = {}

    @property
    def fast_path(self) -> bool:
        return self.tables is not None

    @property
    def has_latency(self) -> bool:
        return self.profile is not None

    @property
    def profile_name(self) -> str:
        return str(getattr(self.profile, "name", "no profile") if self.profile is not None else "no profile")

    # ------------------------------------------------------------- genome level (strategies)
    def analytic_of(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        if self.tables is not None:
            return self.tables.compute(genes)
        return analyze(self.space, self.genome.to_population(genes))

    def efficiency_of(self, genes: np.ndarray, latency: bool = True) -> dict[str, np.ndarray]:
        """Efficiency metrics of a genome array; `latency=False` skips the profile (NaN)."""
        genes = np.asarray(genes, np.int64)
        a = self.analytic_of(genes)
        lat = self.latency_of(genes) if latency else np.full(len(genes), np.nan)
        return {"latency_ms": lat,
                "peak_memory_kb": a["peak_activation_bytes"] / 1024.0,
                "flash_kb": a["flash_bytes"] / 1024.0,
                "macs": a["macs"], "params": a["params"]}

    def latency_of(self, genes: np.ndarray) -> np.ndarray:
        if self.profile is None:
            return np.full(len(genes), np.nan)
        pop = self.genome.to_population(np.asarray(genes, np.int64))
        return np.asarray(self.profile.predict_latency_ms(pop), np.float64).reshape(-1)

    def accuracy_of(self, genes: np.ndarray) -> np.ndarray:
        genes = np.asarray(genes, np.int64)
        predict_encoded = getattr(self.accuracy_predictor, "predict_encoded", None)
        if predict_encoded is not None:
            # Genomes are valid by construction: skip the population's re-validation.
            out = predict_encoded(self.genome.encode(genes))
        else:
            out = self.accuracy_predictor.predict(self.genome.to_population(genes))
        return np.asarray(out, np.float64).reshape(-1)

    def metrics_of(self, genes: np.ndarray, latency: bool = True) -> dict[str, np.ndarray]:
        out = {"accuracy": self.accuracy_of(genes)}
        out.update(self.efficiency_of(genes, latency))
        return out

    # ------------------------------------------------------------- public (configs / populations)
    def _genes(self, configs: Any) -> np.ndarray:
        if is_population(configs):
            return self.genome.from_population(configs)
        if isinstance(configs, (SubnetConfig, Mapping)):
            configs = [configs]
        return self.genome.from_configs([c if isinstance(c, SubnetConfig) else SubnetConfig.from_dict(c)
                                         for c in configs])

    def efficiency(self, configs: SubnetConfig | Sequence[SubnetConfig] | Mapping[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
        """latency_ms, peak_memory_kb, flash_kb, macs, params of configs or a population."""
        return self.efficiency_of(self._genes(configs))

    def metrics(self, configs: SubnetConfig | Sequence[SubnetConfig] | Mapping[str, np.ndarray]
                ) -> dict[str, np.ndarray]:
        """accuracy (fraction), latency_ms, peak_memory_kb, flash_kb, macs, params, as arrays."""
        return self.metrics_of(self._genes(configs))

    def cached(self, key: str, compute):
        """Per-evaluator memo (e.g. budget ranges), computed once even under concurrent calls."""
        with self._cache_lock:
            if key not in self._cache:
                self._cache[key] = compute()
            return self._cache[key]
