"""`specialize`: budget in, deployable ONNX subnet and an honest report out, in one call.

search (predicted metrics) -> extract the subnet from the package's supernet -> recalibrate its
BN statistics on the package's calibration images -> export ONNX (verified in ONNX Runtime; the
package's labels in its metadata) -> measure: accuracy of the exported file (ONNX Runtime) on
the package's evaluation images, latency with ONNX Runtime when the profile is this machine, MACs and params counted on the extracted network, Flash counted in the
written file (its weights and biases, and for int8 every scale and zero point), peak activation
memory in the file's precision from `deployment_bytes` on the config (an analytic count, not a
measurement). `measured_sources` says how each figure was obtained and `labels` what it is
(measured here, predicted, analytic, counted in the file), in the words the app shows. A
precision the profile cannot predict the latency of is refused (`DeviceProfile.precisions`).

The supernet is a package (`ofa_engine.packages`: a bundled name, a folder or a .zip). Without
an accuracy predictor the search ranks by MACs, an explicit proxy that the report names
(`report["predicted"]["accuracy_source"]`). The package and the preprocessed calibration /
evaluation tensors are loaded once per process (lazily, under a lock) and only read afterwards: every call extracts its own
new module, so concurrent calls never see each other's subnet.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..families import family_of
from ..files import atomic_paths
from ..progress import Progress, report as report_progress
from ..search.constraints import Constraints
from ..search.core import SearchResult, search
from ..settings import check_local_measurement
from .outputs import output_paths
from .resources import load_resources

__all__ = ["specialize", "Specialization", "load_resources", "calibration_subset"]

# Stages report as `progress(done, STEPS, stage)`: `done` of 100 steps, the stage's name.
STEPS = 100


@dataclass
class Specialization:
    """`report`: JSON-safe dict (config, predicted, measured, search, ...); `onnx_path`: the file
    written (None when `out` was None); `onnx_bytes`: its content; `model`: the extracted,
    calibrated PyTorch subnet; `result`: the `SearchResult`."""

    report: dict[str, Any]
    onnx_path: Path | None
    onnx_bytes: bytes = field(repr=False)
    model: nn.Module = field(repr=False)
    result: SearchResult = field(repr=False)


def _load_profile(profile: Any):
    if profile is None:
        return None
    if isinstance(profile, str):
        from ..devices.profiles import load_profile
        return load_profile(profile)
    return profile


# Searches an int8 specialization may take to fit its file into the device's Flash (one, unless
# the best subnet's weights leave no room for its scales and graph).
FIT_ATTEMPTS = 4

# Calibration images of an int8 file: this many of the package's calibration images, spread
# evenly over its classes (`calibration_subset`; BN statistics are still recalibrated on all of
# them). Chosen by measurement: int8 accuracy on the 10k test set is as close to fp32 with 500 as
# with 2,000, and the calibration pass takes a quarter of the time; 250 was measured and is not
# enough (docs/specialize-speed.md).
INT8_CALIBRATION_IMAGES = 500

# Threads one specialize call spreads its two heaviest steps over (BN recalibration, ONNX
# accuracy): the results do not depend on it; concurrent calls simply share the cores.
WORKERS = 2


def onnx_accuracy(onnx_bytes: bytes, inputs: torch.Tensor, labels: np.ndarray, batch_size: int | None = None,
                  workers: int = WORKERS) -> float:
    """Top-1 accuracy of the exported file itself in ONNX Runtime (1 intra-op thread per
    worker thread; `InferenceSession.run` is thread-safe): the deployed artifact is what gets
    measured, and ORT runs these depthwise nets ~2x faster than torch. An int8 file runs with
    its QDQ as written (`runtime.quantize.EVALUATED_WITH`), `batch_size` images a run (None:
    `runtime.quantize.EVALUATION_BATCH`; an image's logits do not depend on it). With ONNX
    Runtime's arena, as the export check and the latency measurement open the file: inside
    `specialize` the three share one session (`runtime.ort.shared_sessions`); without the arena
    it was faster for batches of 500, and is the same for 50."""
    from ..runtime.quantize import EVALUATION_BATCH, top1
    predicted = top1(onnx_bytes, inputs.numpy(), EVALUATION_BATCH if batch_size is None else batch_size,
                     threads=workers)
    return float((predicted == np.asarray(labels)).mean())


def calibration_subset(calibration: Any, n: int = INT8_CALIBRATION_IMAGES) -> Any:
    """Which of a package's calibration images (an ImageSet) an int8 file is calibrated on:
    `n` of them spread over their classes (`stratified_prefix`), or the first `n` where they
    have no labels; a slice or an index array."""
    if getattr(calibration, "labels", None) is None:
        return slice(0, n)
    from ..datasets.sampling import stratified_prefix
    return torch.from_numpy(stratified_prefix(calibration.labels, n))


def _predicted(predicted: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The search's predictions, saying where the accuracy came from: with the MACs proxy the
    search's score is not an accuracy, so it is reported apart and `accuracy` is None."""
    out = dict(predicted)
    if source != "predictor":
        out["accuracy_proxy_score"] = out.pop("accuracy", None)
        out["accuracy"] = None
    out["accuracy_source"] = source
    return out


# What each figure of a report is, in the words the app shows (`FIGURE_KINDS`).
MEASURED_HERE = "measured here"                  # on this machine, on the written file or the extracted net
MEASURED_ON_DEVICE = "measured on the device"    # from a profile's own measurements
PREDICTED = "predicted by a learned model"       # a model fitted to measurements (accuracy, latency)
ANALYTIC = "computed analytically"               # a formula on the config
FIGURE_KINDS = (MEASURED_HERE, MEASURED_ON_DEVICE, PREDICTED, ANALYTIC)


def _labels(prof: Any, latency_measured: bool, accuracy_source: str) -> dict[str, dict[str, str]]:
    """For the report's `predicted` and `measured` figures, what each one is (`FIGURE_KINDS`);
    a figure the report does not have (no predicted accuracy under the MACs proxy, no device
    latency, a latency not measured here) has no label."""
    predicted = {"peak_memory_kb": ANALYTIC, "flash_kb": ANALYTIC, "macs": ANALYTIC, "params": ANALYTIC}
    if accuracy_source == "predictor":
        predicted["accuracy"] = PREDICTED
    if prof is not None:
        predicted["latency_ms"] = ANALYTIC if getattr(prof, "kind", None) == "analytical" else PREDICTED
    # Flash is counted in the written file; MACs and params on the extracted network.
    measured = {"accuracy": MEASURED_HERE, "peak_memory_kb": ANALYTIC, "flash_kb": MEASURED_HERE,
                "macs": MEASURED_HERE, "params": MEASURED_HERE}
    if latency_measured:
        measured["latency_ms"] = MEASURED_HERE
    return {"predicted": predicted, "measured": measured}


def specialize(profile: Any, constraints: Constraints | Mapping[str, float] | None = None,
               strategy: str = "evolution", seed: int = 0, out: str | os.PathLike | None = None,
               supernet: Any = "tiny-fmnist", progress: Progress | None = None,
               strategy_options: Mapping[str, Any] | None = None, precision: str | None = None) -> Specialization:
    """Search the best subnet for `profile` under `constraints`, extract, calibrate, export and
    measure it. `profile`: a `DeviceProfile` or its name, or None (no device: no latency, bounds
    on MACs, params, memory and Flash only); the device's memory limits (SRAM, Flash) are added
    to the constraints. `supernet`: a package (bundled name, folder, .zip or `SupernetPackage`). `out`: ONNX path to write (its report goes next to it
    as .json); None keeps the bytes in memory only. `progress(done, 100, stage)` (the engine's
    one progress signature) is called as the stages advance: load, search, extract, export,
    measure accuracy, measure latency, done. `precision` ("fp32" or "int8"; None: the profile's
    deployment precision) is that of the exported file, which is what gets measured; an int8
    file is quantized on the calibration images and checked against its float model (the report
    gives both accuracies). Thread-safe. Raises `InfeasibleBudgetError` / `ValueError` for budgets
    or names the user got wrong."""
    start = time.perf_counter()
    timings: dict[str, float] = {}

    def step(stage: str, fraction: float) -> None:
        report_progress(progress, round(fraction * STEPS), STEPS, stage)

    step("load", 0.0)
    onnx_path, report_path = output_paths(out)   # refused before any work
    from ..runtime.quantize import check_precision
    prof = _load_profile(profile)
    precision = check_precision(getattr(prof, "precision", "fp32") if precision is None else precision)
    if hasattr(prof, "check_precision"):
        prof.check_precision(precision)   # before any work
    if hasattr(prof, "for_precision"):
        prof = prof.for_precision(precision)     # its latency model for files of that precision
    res = load_resources(supernet)
    space = res.space
    family = family_of(space, fast=False)   # analytics and counting; the evaluator has its own
    if hasattr(prof, "for_space"):
        prof = prof.for_space(space)   # analytical profiles: any space; a measured one: its own only
    prof_space = getattr(prof, "space", None)
    if isinstance(prof_space, str) and not hasattr(prof, "for_space") and prof_space != space.name:
        raise ValueError(f"profile '{getattr(prof, 'name', prof)}' is for space '{prof_space}', "
                         f"not the supernet's '{space.name}'")
    if getattr(prof, "measures_locally", False):   # before any work: the operator's limits
        check_local_measurement(int(getattr(prof, "threads", None) or 1), int(getattr(prof, "batch_size", None) or 1),
                                f"profile '{getattr(prof, 'name', 'custom')}'")
    if not isinstance(constraints, Constraints):
        constraints = Constraints.from_dict(constraints)
    effective = constraints.with_device_memory(prof)
    evaluator = res.evaluator(prof, precision)   # Flash and peak memory of a file of this precision

    from ..runtime.evaluation import calibrate_bn, has_batchnorm
    from ..runtime.quantize import estimate_overhead_bytes
    # An int8 file holds its weights' scales and its graph besides the weight bytes that the
    # Flash bound counts: the search is repeated with a tighter bound until the file fits.
    file_limit = None
    if precision == "int8" and getattr(prof, "flash_kb", None) is not None:
        file_limit = int(prof.flash_kb * 1024)
    searched = effective
    for attempt in range(FIT_ATTEMPTS):
        step("search", 0.05)
        t = time.perf_counter()
        result = search(evaluator, searched, strategy, seed, **dict(strategy_options or {}))
        timings["search"] = timings.get("search", 0.0) + time.perf_counter() - t
        cfg = result.config

        step("extract", 0.35)
        t = time.perf_counter()
        net = res.supernet.extract(cfg)          # a new module: the shared supernet is only read
        timings["extract_calibrate"] = timings.get("extract_calibrate", 0.0) + time.perf_counter() - t
        if file_limit is None:
            break
        # The search bounds what the device stores (`deployment_bytes`); the file also holds its
        # graph. The overhead depends on the layers' shapes only: BN is recalibrated once, after
        # the loop.
        excess = int(family.analyze(cfg)["flash_bytes"]) + estimate_overhead_bytes(net) - file_limit
        if excess <= 0:
            break
        if attempt == FIT_ATTEMPTS - 1:
            raise ValueError(f"no int8 file found within the Flash budget of {prof.flash_kb:g} KB after "
                             f"{FIT_ATTEMPTS} searches; set a smaller flash_kb constraint")
        stored = int(family.deployment_bytes(cfg, "int8")["flash_bytes"])
        searched = searched.tightened(flash_kb=(stored - excess) / 1024)
    t = time.perf_counter()
    calibrate_bn(net, res.inputs("calib", cfg.image_size), workers=WORKERS)
    timings["extract_calibrate"] = timings.get("extract_calibrate", 0.0) + time.perf_counter() - t

    # The export check, the accuracy pass and a one-thread latency measurement open the same
    # file alike: one ONNX Runtime session for the three (`shared_sessions`).
    from ..runtime.ort import shared_sessions
    with shared_sessions():
        step("export", 0.5)
        t = time.perf_counter()
        from ..runtime.export import export_onnx
        # export_onnx serialises torch's exporter itself (EXPORT_LOCK); everything else runs concurrently.
        precision_options: dict[str, Any] = {}
        if precision == "int8":
            # Both sets as the process's cached model input (preprocessing the 2,000 evaluation images
            # again took 20-35 ms), the evaluation set with its labels.
            from ..datasets.images import ImageSet
            precision_options = {"precision": "int8",
                                 "calibration": res.inputs("calib", cfg.image_size)[calibration_subset(res.calib)],
                                 "evaluation": ImageSet(res.inputs("test2k", cfg.image_size), res.test.labels,
                                                        res.test.classes)}
        # Into a private folder: `out` is only replaced at the end, together with its report.
        with tempfile.TemporaryDirectory(prefix="ofa-specialize-") as tmp:
            written = export_onnx(net, cfg, Path(tmp) / "model.onnx", space=space, **precision_options)
            onnx_bytes = Path(written).read_bytes()
        timings["export"] = time.perf_counter() - t
        # Checked before it reaches `out` (the overhead estimate is an upper bound, so this holds).
        if file_limit is not None and len(onnx_bytes) > file_limit:
            raise RuntimeError(f"the int8 file is {len(onnx_bytes)} bytes, over the Flash budget of "
                               f"{file_limit} bytes; nothing was written")

        step("measure accuracy", 0.7)
        t = time.perf_counter()
        from ..runtime.quantize import quantization_metadata, weight_bytes
        quantization = quantization_metadata(onnx_bytes)
        if quantization is not None and quantization.get("int8_accuracy") is not None:
            # quantize_onnx measured this very file on the same images (res.test) in ONNX Runtime.
            measured_accuracy = float(quantization["int8_accuracy"])
        else:
            measured_accuracy = onnx_accuracy(onnx_bytes, res.inputs("test2k", cfg.image_size), res.test.labels)
        timings["accuracy"] = time.perf_counter() - t

        latency = None
        if getattr(prof, "measures_locally", False):
            step("measure latency", 0.8)
            t = time.perf_counter()
            from ..runtime.measure import measure_latency
            latency = measure_latency(onnx_bytes, threads=int(getattr(prof, "threads", None) or 1),
                                      batch_size=int(getattr(prof, "batch_size", None) or 1))
            timings["latency"] = time.perf_counter() - t

    deployed = family.deployment_bytes(cfg, precision)
    sizes = weight_bytes(onnx_bytes)
    # What the device stores of this file: its weights and biases, and for int8 their scales and
    # the activations' scales and zero points (the graph's structure aside).
    file_flash = (sizes["weight_bytes"] + sizes["scale_bytes"] + sizes["zero_point_bytes"]
                  + sizes["activation_qparam_bytes"])
    accuracies = {precision: measured_accuracy}
    if quantization is not None:
        accuracies = {"fp32": quantization["float_accuracy"], "int8": measured_accuracy}
    measured = {
        "accuracy": measured_accuracy,
        "latency_ms": None if latency is None else float(latency.median_ms),
        "latency_iqr_ms": None if latency is None else float(latency.iqr_ms),
        "peak_memory_kb": deployed["peak_activation_bytes"] / 1024,
        "flash_kb": file_flash / 1024,
        "macs": family.count_macs(net, cfg),
        "params": int(sum(p.numel() for p in net.parameters())),
        "precision": precision,
        "accuracies": accuracies,
        "onnx_file_bytes": len(onnx_bytes),
        "weight_bytes": sizes["weight_bytes"],
    }
    if quantization is not None:
        measured["int8_agreement"] = quantization["agreement"]
        measured["weight_qparam_bytes"] = sizes["scale_bytes"] + sizes["zero_point_bytes"]
    # Only a network with BatchNorm (MobileNetV3, not the ViT's LayerNorms) has statistics to
    # recalibrate and fold: the sources say so only for one.
    has_bn = has_batchnorm(net)
    report = {
        "space": space.name, "supernet": res.name,
        "profile": "none" if prof is None else str(getattr(prof, "name", "custom")),
        "constraints": constraints.to_dict(), "effective_constraints": effective.to_dict(),
        "searched_constraints": searched.to_dict(),
        "config": cfg.to_dict(),
        "predicted": _predicted(result.predicted, res.accuracy_source),
        "measured": measured,
        "measured_sources": {
            "accuracy": (f"exported ONNX file in ONNX Runtime on the package's {len(res.test)} evaluation images"
                         + (f", BN recalibrated on its {len(res.calib)} calibration images" if has_bn
                            else " (no BatchNorm: nothing to recalibrate)")),
            "latency_ms": (f"ONNX Runtime CPU here, median of {latency.runs} runs, {latency.threads} thread(s), "
                           f"batch {latency.batch_size}") if latency is not None
                          else "not measured: no device profile" if prof is None
                          else "not measured: the profile is not this machine",
            "peak_memory_kb": (f"analytic (MCUNet's method on the config, {precision} activations: "
                               f"{'1 byte' if precision == 'int8' else '4 bytes'} per value)"),
            "flash_kb": ("counted in the written file: its int8 weights, int32 biases, their scales and the "
                         "activations' scales and zero points" if precision == "int8"
                         else "counted in the written file: its float32 weights and biases"
                         + (" (BN folded)" if has_bn else "")),
            "macs": ("counted on the extracted network by PyTorch's FLOP counter (convolutions, linear layers "
                     "and every matrix product)"),
            "params": "counted on the extracted network",
            "accuracies": (f"the same images: the float model{' (BN folded)' if has_bn else ''} and the int8 file, "
                           "both in ONNX Runtime"
                           if precision == "int8" else "the exported float file (see accuracy)"),
            "weight_bytes": ("the quantized initializers of the int8 file (int8 weights, int32 biases; "
                             "scales and zero points apart)" if precision == "int8"
                             else "the float32 initializers of the exported file"),
        },
        "precision": precision,
        "labels": _labels(prof, latency is not None, res.accuracy_source),
        "search": {"strategy": result.strategy, "evaluations": result.evaluations,
                   "wall_time_s": round(result.wall_time_s, 4), "seed": result.seed, "options": result.options},
        # The model's size and hash: whoever reads the report can check that the file beside it
        # is the one it describes.
        "onnx": {"path": None if onnx_path is None else str(onnx_path), "bytes": len(onnx_bytes),
                 "sha256": hashlib.sha256(onnx_bytes).hexdigest()},
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }
    report["total_time_s"] = round(time.perf_counter() - start, 4)
    if onnx_path is not None:
        report_text = json.dumps(report, indent=2) + "\n"
        # Both files are written to temporary files first; when both are complete the model is
        # moved into place first and its report last, with SIGTERM / Ctrl-C held back between
        # the two moves: a failure or a stop leaves the previous pair (model, report) or the new
        # one, and a report never stands beside a model older than itself. (A SIGKILL between
        # the moves can leave the new model beside the old report; the report's onnx.sha256
        # tells.)
        with atomic_paths(onnx_path, report_path) as (tmp_onnx, tmp_report):
            tmp_onnx.write_bytes(onnx_bytes)
            tmp_report.write_text(report_text, encoding="utf-8")
    step("done", 1.0)
    return Specialization(report=report, onnx_path=onnx_path, onnx_bytes=onnx_bytes, model=net, result=result)
