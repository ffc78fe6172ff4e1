"""Rescale a measured latency profile to this machine's speed right now.

A shared CPU can run uniformly faster or slower from hour to hour with the subnets' ranking
intact, and a profile predicts the speed of the hours it was fitted in. This module measures a
few reference subnets now, takes the geometric mean of measured / predicted (one number: the
drift is a common factor) and returns a copy of the profile whose latency model predicts that
many times more::

    from ofa_engine.devices.calibration import calibrate_profile
    result = calibrate_profile("cpu-ort-2t")      # about 8 subnets, a few seconds
    result.scale, result.profile.predict_latency_ms(configs)

This helps only where the speed shifted and stays shifted: on a machine whose speed also moves
within seconds, a factor measured a few seconds before does not carry over. Measurements:
docs/latency-calibration.md (`benchmarks/bench_calibration.py`) and docs/latency-measurement.md.

Only profiles measured on this machine (`profile.measures_locally`) can be calibrated here:
another device's latency cannot be measured from this one. Command line:
``python -m ofa_engine calibrate-profile cpu-ort-2t --out now.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from ..progress import Progress
from ..runtime.export import export_subnets
from ..runtime.measure import MANY_ROUNDS, MANY_RUNS, MANY_WARMUP, measure_many
from ..settings import check_local_measurement
from .latency_dataset import sample_configs
from .profiles import DeviceProfile, ProfileError, load_profile

__all__ = ["Calibration", "calibrate_profile", "reference_configs", "calibration_scale",
           "DEFAULT_SUBNETS", "MAX_SUBNETS"]

DEFAULT_SUBNETS, MAX_SUBNETS = 8, 64
REFERENCE_SEED = 20261128   # not the latency datasets' seed 0: the references are fresh subnets


class Calibration(NamedTuple):
    """A calibrated profile and the measurements behind it."""

    profile: DeviceProfile        # the rescaled copy
    scale: float                  # measured / predicted, geometric mean over the references
    configs: list[Any]   # the reference subnets
    measured_ms: np.ndarray       # their latency now
    predicted_ms: np.ndarray      # what the uncalibrated profile predicted for them
    seconds: float                # wall time of export + measurement

    def summary(self) -> dict[str, Any]:
        ratio = self.measured_ms / self.predicted_ms
        after = np.abs(self.measured_ms / (self.predicted_ms * self.scale) - 1)
        return {"profile": self.profile.name, "scale": round(self.scale, 4), "subnets": len(self.configs),
                "ratio_min": round(float(ratio.min()), 4), "ratio_max": round(float(ratio.max()), 4),
                "mape_before": round(float(np.mean(np.abs(ratio - 1))), 4),
                "mape_after": round(float(np.mean(after)), 4), "seconds": round(self.seconds, 2)}


def reference_configs(profile: DeviceProfile, n: int = DEFAULT_SUBNETS, seed: int = REFERENCE_SEED
                      ) -> list[Any]:
    """`n` reference subnets: the largest, the smallest and random ones covering every width
    and resolution evenly (`latency_dataset.sample_configs`), so the factor is not taken at one
    end of the latency range."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= MAX_SUBNETS:
        raise ValueError(f"subnets = {n!r}; allowed: an integer from 2 to {MAX_SUBNETS}")
    return sample_configs(profile.search_space, int(n), seed)


def calibration_scale(measured_ms, predicted_ms) -> float:
    """Geometric mean of measured / predicted: the common factor of a uniform speed change."""
    measured = np.asarray(measured_ms, np.float64).reshape(-1)
    predicted = np.asarray(predicted_ms, np.float64).reshape(-1)
    if measured.shape != predicted.shape or measured.size == 0:
        raise ValueError(f"{measured.size} measured and {predicted.size} predicted latencies; "
                         f"allowed: the same number, at least one")
    if not (np.all(np.isfinite(measured)) and np.all(measured > 0)
            and np.all(np.isfinite(predicted)) and np.all(predicted > 0)):
        raise ValueError("latencies must be finite and > 0 to calibrate a profile")
    return float(np.exp(np.mean(np.log(measured / predicted))))


def calibrate_profile(profile: str | os.PathLike | DeviceProfile, n: int = DEFAULT_SUBNETS, *,
                      seed: int = REFERENCE_SEED, rounds: int = MANY_ROUNDS, runs: int = MANY_RUNS,
                      warmup: int = MANY_WARMUP, name: str | None = None,
                      measure: Callable[[list[Path], int, int], list[float]] | None = None,
                      progress: Progress | None = None) -> Calibration:
    """Measure `n` reference subnets here with the profile's threads and batch size, interleaved
    (`measure.measure_many`), and return the profile rescaled by measured / predicted.

    The copy is named `name` (default `<name>-calibrated`); its provenance records the factor,
    the time and the reference subnets, its `quality` stays the held-out score of the original fit
    (rankings and relative errors do not change with a common factor). `measure(paths, threads,
    batch_size) -> median ms` replaces the timing (tests). `progress(round, rounds, message)`
    after each measuring round. `ProfileError` for a profile this machine cannot measure.
    """
    profile = load_profile(profile)
    if not profile.measures_locally:
        raise ProfileError(f"profile '{profile.name}' is not measured on this machine (kind "
                           f"{profile.kind}, engine {profile.runtime.get('engine')!r}, measure_locally "
                           f"{bool(profile.runtime.get('measure_locally', False))}); allowed: a measured "
                           f"ONNX Runtime CPU profile of this machine. Calibrate another device's "
                           f"profile by running the profile kit there and fitting it again")
    check_local_measurement(profile.threads or 1, profile.batch_size, f"profile '{profile.name}'")
    configs = reference_configs(profile, n, seed)
    predicted = profile.predict_latency_ms(configs)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ofa-calibrate-") as tmp:
        # Latency does not depend on the weights' values: an untrained supernet exports the same
        # graphs as the trained one, without loading it (the latency datasets do the same).
        paths = export_subnets(profile.search_space, configs,
                               [Path(tmp) / f"ref-{i:02d}.onnx" for i in range(len(configs))])
        if measure is None:
            stats = measure_many(paths, threads=profile.threads, batch_size=profile.batch_size,
                                 rounds=rounds, runs=runs, warmup=warmup, seed=seed, progress=progress)
            measured = np.array([s.median_ms for s in stats])
        else:
            measured = np.asarray(measure(paths, profile.threads, profile.batch_size), np.float64)
    seconds = time.perf_counter() - start
    scale = calibration_scale(measured, predicted)
    when = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    provenance = {**dict(profile.provenance), "calibration": {
        "scale": scale, "measured_at": when, "base_profile": profile.name, "subnets": len(configs),
        "seed": seed, "rounds": rounds,
        "note": "latency model = the base profile's x scale (geometric mean of measured / predicted "
                "on the reference subnets); quality is the base fit's held-out score"}}
    calibrated = dataclasses.replace(
        profile, name=name or _calibrated_name(profile.name),
        display_name=f"{profile.display_name} - calibrated x{scale:.2f} at {when[11:16]}"[:200],
        latency_model=profile.latency_model.scaled(scale), provenance=provenance)
    return Calibration(calibrated, scale, configs, measured, predicted, seconds)


def _calibrated_name(name: str) -> str:
    suffix = "-calibrated"
    return name if name.endswith(suffix) else name[:64 - len(suffix)] + suffix
