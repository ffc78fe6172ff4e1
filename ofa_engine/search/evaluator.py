"""Predicted metrics of whole populations: accuracy (predictor), latency (device profile) and the
analytic efficiency metrics (from the search space, see `ofa_engine.space.interface`).
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

import numpy as np

from ..families import search_space
from ..space.interface import ACTIVATION_BYTES, DEPLOYED_FLASH, DiscreteSearchSpace

__all__ = ["Evaluator", "METRIC_NAMES", "EFFICIENCY_METRICS", "efficiency_metrics"]

EFFICIENCY_METRICS = ("latency_ms", "peak_memory_kb", "flash_kb", "macs", "params")
METRIC_NAMES = ("accuracy",) + EFFICIENCY_METRICS


# The analytic metric (`ANALYTIC_METRICS`) behind each of the evaluator's, and its divisor
# (Flash and peak memory depend on the precision: `Evaluator.analytic_source`).
_ANALYTIC_SOURCE = {"peak_memory_kb": ("peak_activation_bytes", 1024.0), "flash_kb": ("flash_bytes", 1024.0),
                    "macs": ("macs", None), "params": ("params", None)}
PRECISIONS = tuple(DEPLOYED_FLASH)
_UNSET = object()


def efficiency_metrics(analytic: Mapping[str, Any], evaluator: "Evaluator | None" = None) -> dict[str, Any]:
    """The evaluator's analytic metrics (KB for memory) of a space's `analytic_efficiency`, in
    `evaluator`'s precision (`Evaluator.analytic_source`; None: int8 weights and 1 byte per
    activation value, as `analyze` counts them); works on numpy arrays and on torch tensors alike."""
    out = {}
    for metric in ("peak_memory_kb", "flash_kb", "macs", "params"):
        source, divisor = _ANALYTIC_SOURCE[metric] if evaluator is None else evaluator.analytic_source(metric)
        out[metric] = analytic[source] if divisor is None else analytic[source] / divisor
    return out


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
    predictor name. `precision` ("fp32" or "int8"; None: the profile's, else fp32): that of the
    files the search is for: Flash is what such a file stores (weights, biases and, for int8,
    every scale and zero point) and peak memory counts its activations' bytes
    (`analytic_source`).

    Read-only after construction, so one evaluator may serve many threads.
    """

    def __init__(self, space: DiscreteSearchSpace | Any, profile: Any = None, accuracy_predictor: Any = None,
                 *, fast: bool = True, precision: str | None = None):
        self.space = search_space(space, fast=fast)
        precision = precision if precision is not None else getattr(profile, "precision", None) or "fp32"
        if precision not in PRECISIONS:
            raise ValueError(f"precision = {precision!r}; allowed: {', '.join(PRECISIONS)}")
        self.precision = precision
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
        self._kernel: Any = _UNSET
        self._deployed_flash: bool | None = None
        self._kernel_lock = threading.Lock()
        # `efficiency_of`'s plans (threads that race compute the same plan).
        self._plans: dict[tuple[bool, tuple[str, ...]], tuple] = {}

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

    def analytic_source(self, metric: str) -> tuple[str, float | None]:
        """(the space's analytic metric, its divisor) behind one of the evaluator's metrics, in
        this evaluator's precision: Flash is the deployed file's (`DEPLOYED_FLASH`; a space that
        does not compute it counts `flash_bytes`), peak memory `peak_activation_bytes` values of
        `ACTIVATION_BYTES` each."""
        source, divisor = _ANALYTIC_SOURCE[metric]
        if metric == "peak_memory_kb":
            return source, divisor / ACTIVATION_BYTES[self.precision]
        if metric == "flash_kb" and self._has_deployed_flash():
            return DEPLOYED_FLASH[self.precision], divisor
        return source, divisor

    def _has_deployed_flash(self) -> bool:
        # Not `cached`: this runs inside cached computations (budget ranges). Racing threads
        # compute the same answer.
        if self._deployed_flash is None:
            probe = self.space.analytic_efficiency(self.genome.uniform("min"))
            self._deployed_flash = DEPLOYED_FLASH[self.precision] in probe
        return self._deployed_flash

    def efficiency_of(self, genes: np.ndarray, latency: bool = True,
                      metrics: tuple[str, ...] = EFFICIENCY_METRICS) -> dict[str, np.ndarray]:
        """Efficiency metrics of a genome array: all of `EFFICIENCY_METRICS`, or those named in
        `metrics` (the search's feasibility checks ask only for the bounded ones);
        `latency=False` skips the profile (NaN)."""
        key = (latency, tuple(metrics))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._efficiency_plan(latency, key[1])
        kernel, kernel_names, want_latency, kernel_latency, sources = plan
        if kernel is not None:
            # Any integer genes (the history's are int8): the kernel's row index converts them.
            genes = np.asarray(genes)
            analytic = kernel(genes, kernel_names)
        else:
            genes = np.asarray(genes, np.int64)
            analytic = self.analytic_of(genes)
        out = {}
        for metric, source, divisor in sources:
            if metric == "latency_ms":
                if kernel_latency:
                    out[metric] = analytic["latency_ms"]
                else:
                    out[metric] = self.latency_of(genes) if want_latency else np.full(len(genes), np.nan)
            else:
                out[metric] = analytic[source] if divisor is None else analytic[source] / divisor
        return out

    def _efficiency_plan(self, latency: bool, metrics: tuple[str, ...]) -> tuple:
        """What `efficiency_of` computes for one (latency, metrics) request: (kernel, the
        kernel's names, latency wanted, latency from the kernel, (metric, source, divisor) per
        metric). Worked out once per request: the search asks the same thousands of times."""
        kernel = self.genome_kernel()
        want_latency = "latency_ms" in metrics and latency and self.profile is not None
        kernel_latency = want_latency and kernel is not None and "latency_ms" in kernel.names
        sources = tuple((m, *self.analytic_source(m)) if m != "latency_ms" else (m, None, None) for m in metrics)
        kernel_names = [source for m, source, _ in sources if m != "latency_ms"] + ["latency_ms"] * kernel_latency
        return kernel, kernel_names, want_latency, kernel_latency, sources

    def latency_of(self, genes: np.ndarray) -> np.ndarray:
        if self.profile is None:
            return np.full(len(genes), np.nan)
        genes = np.asarray(genes, np.int64)
        kernel = self.genome_kernel()
        if kernel is not None and "latency_ms" in kernel.names:
            return kernel(genes, ["latency_ms"])["latency_ms"]
        batch = self.space.decode(genes)
        return np.asarray(self.profile.predict_latency_ms(batch), np.float64).reshape(-1)

    def genome_kernel(self) -> Any:
        """The space's `efficiency_kernel` for this profile (the exact tables' fast path, latency
        included where the profile's model allows), built on first use; None when the space has
        none."""
        if self._kernel is _UNSET:
            # Its own lock: `cached` computations (budget ranges) call this.
            with self._kernel_lock:
                if self._kernel is _UNSET:
                    build = getattr(self.space, "efficiency_kernel", None)
                    self._kernel = build(self.profile) if build is not None else None
        return self._kernel

    def accuracy_of(self, genes: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        """Predicted accuracy of a genome array (`active`: its genome `active` mask if known)."""
        genes = np.asarray(genes, np.int64)
        predict_encoded = getattr(self.accuracy_predictor, "predict_encoded", None)
        if predict_encoded is not None:
            # Genomes are valid by construction: skip the batch's re-validation.
            out = predict_encoded(self.genome.encode(genes, active))
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
