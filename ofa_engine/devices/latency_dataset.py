"""Latency datasets: sample subnets, export, measure in ONNX Runtime, write resumable CSVs.

Two datasets feed the latency predictors (`latency_models`):

- whole subnets (`build_latency_dataset`, command `latency-dataset`): one row per config with
  its efficiency features and measured latency;
- isolated blocks (`measure_block_table`, command `latency-blocks`): one row per OFA-style
  block key (plus the stem and head per input shape), the lookup table of the "lut" model.

Both append one row at a time (flushed) and skip rows already present, so an interrupted run
resumes where it stopped. Latency does not depend on weight values: subnets come from a
freshly initialised supernet (seed 0). What is sampled and how a block is cut out of the
supernet belong to the space's family (its `LatencyFeatures`: `dataset_configs`,
`unique_blocks`, `block_module`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..families import family_of
from ..predictors.latency import features_of
from ..progress import Progress
from ..runtime.export import EXPORT_LOCK, export_subnets, torch_threads, untrained_supernet
from ..runtime.measure import MANY_ROUNDS, MANY_RUNS, MANY_WARMUP, measure_many
from .profiles import config_json, configs_from_json

__all__ = ["DATASET_COLUMNS", "BLOCK_COLUMNS", "sample_configs", "build_latency_dataset", "read_latency_dataset",
           "measure_block_table", "read_block_table"]

DATASET_COLUMNS = ("config", "macs", "params", "peak_activation_bytes", "flash_bytes", "median_ms", "q1_ms",
                   "q3_ms", "runs", "threads", "batch_size")
BLOCK_COLUMNS = ("key", "kind", "median_ms", "q1_ms", "q3_ms", "runs", "threads", "batch_size")


def sample_configs(space: Any, n: int, seed: int = 0) -> list[Any]:
    """`n` configs of `space` (a space object or preset name): the largest, the smallest, then
    random ones that cover the space's coarse choices evenly (the family's
    `LatencyFeatures.dataset_configs`; MobileNetV3: every (width, resolution) pair in a seeded
    cycle, the per-block choices drawn uniformly)."""
    if n < 2:
        raise ValueError(f"--n = {n}; allowed: an integer >= 2 (the largest and smallest come first)")
    return features_of(space).dataset_configs(n, seed)


def _existing(path: Path, column: str, columns: tuple[str, ...]) -> set[str]:
    if not path.exists() or path.stat().st_size == 0:
        return set()
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != columns:
            raise ValueError(f"'{path}' exists with columns {reader.fieldnames}; expected {list(columns)} "
                             f"(delete it or choose another --out)")
        return {row[column] for row in reader}


def _open_append(path: Path, columns: tuple[str, ...]):
    new = not path.exists() or path.stat().st_size == 0
    fh = open(path, "a", newline="", encoding="utf-8")
    writer = csv.writer(fh, lineterminator="\n")
    if new:
        writer.writerow(columns)
        fh.flush()
    return fh, writer


def build_latency_dataset(space: Any, n: int, out: str | os.PathLike, *, threads: int = 1,
                          batch_size: int = 1, seed: int = 0, runs: int = MANY_RUNS, rounds: int = MANY_ROUNDS,
                          warmup: int = MANY_WARMUP, onnx_cache: str | os.PathLike | None = None,
                          first: int | None = None, progress: Progress | None = None,
                          precision: str = "fp32", skip_refused: bool = False) -> Path:
    """Measure `sample_configs(space, n, seed)` and append rows to the CSV `out` (resumable).

    `onnx_cache`: a folder keeping the exported files (named by a hash of the config), so that
    a second dataset (other thread count) skips the export. `first`: measure only the first
    `first` configs of that sample (e.g. to measure some of them again, for the noise floor).
    Every missing config is exported first (the slow, resumable part), then all of them are
    measured together with `measure.measure_many` (interleaved rounds) and the rows appended.
    `progress(round, rounds, message)` after each measuring round. `precision="int8"`: the
    subnets are measured as int8 QDQ files (`export_subnets`). `skip_refused`: a subnet whose
    int8 file the quantizer's own check refuses (`QuantizationRefusedError`) is left out (no
    row; tried again by a rerun) instead of stopping the dataset.
    """
    fam = family_of(space, fast=False)
    space = fam.space
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(2, "Output directory does not exist", str(out.parent))
    configs = sample_configs(space, n, seed)[:first]
    done = _existing(out, "config", DATASET_COLUMNS)
    todo = [c for c in configs if config_json(c) not in done]
    if not todo:
        return out
    metrics = fam.analyze(todo)
    cache = Path(onnx_cache) if onnx_cache is not None else None
    with tempfile.TemporaryDirectory(prefix="ofa-latency-") as tmp:
        folder = cache if cache is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        suffix = "" if precision == "fp32" else f"-{precision}"
        targets = [folder / (hashlib.sha1(f"{space.name}:{config_json(c)}".encode()).hexdigest()[:16] + suffix + ".onnx")
                   for c in todo]
        if skip_refused:
            from ..runtime.common import QuantizationRefusedError
            kept = []
            for i, (cfg, target) in enumerate(zip(todo, targets)):
                try:
                    export_subnets(space, [cfg], [target], precision=precision)
                    kept.append(i)
                except QuantizationRefusedError:
                    if progress is not None:
                        progress(0, rounds, f"skipped a subnet whose {precision} file was refused: {config_json(cfg)}")
            todo, targets = [todo[i] for i in kept], [targets[i] for i in kept]
            metrics = {k: np.asarray(v)[kept] for k, v in metrics.items()}
            if not todo:
                return out
        paths = export_subnets(space, todo, targets, precision=precision)
        all_stats = measure_many(paths, threads=threads, batch_size=batch_size, rounds=rounds, runs=runs,
                                 warmup=warmup, progress=progress)
        fh, writer = _open_append(out, DATASET_COLUMNS)
        try:
            for i, (cfg, stats) in enumerate(zip(todo, all_stats)):
                writer.writerow([config_json(cfg), *(int(metrics[m][i]) for m in
                                                  ("macs", "params", "peak_activation_bytes", "flash_bytes")),
                                 f"{stats.median_ms:.5f}", f"{stats.q1_ms:.5f}", f"{stats.q3_ms:.5f}",
                                 stats.runs, threads, batch_size])
        finally:
            fh.close()
    return out


def read_latency_dataset(path: str | os.PathLike, space: Any = None
                         ) -> tuple[list[Any], np.ndarray, list[dict[str, str]]]:
    """(configs, median_ms, rows) of a dataset CSV written by `build_latency_dataset` or the
    profile-kit runner (any CSV with `config` and `median_ms` columns). The configs are of
    `space` (a space object or preset name), validated; without one, of the first preset
    space that accepts them all (`profiles.configs_from_json`)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"config", "median_ms"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"'{path}' lacks column(s) {sorted(missing)}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"'{path}' has no rows")
    configs = configs_from_json([row["config"] for row in rows], space, f"'{path}'")
    return configs, np.array([float(r["median_ms"]) for r in rows]), rows


# ---------------------------------------------------------------------- isolated blocks
def _onnx_bytes(module: nn.Module, shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with EXPORT_LOCK:
            torch.onnx.export(module.eval(), (torch.zeros(shape),), buffer, dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                              do_constant_folding=True)
    return buffer.getvalue()


def measure_block_table(space: Any, out: str | os.PathLike, *, threads: int = 1,
                        batch_size: int = 1, runs: int = MANY_RUNS, rounds: int = MANY_ROUNDS,
                        warmup: int = MANY_WARMUP, keys: Sequence[str] | None = None,
                        progress: Progress | None = None) -> Path:
    """Measure every distinct block key of `space` (and the stem / head per input shape) in
    isolation; append rows to the CSV `out` (resumable). The "lut" model's table.
    `keys` restricts the measurement to those keys (tests). `progress(round, rounds, message)`
    after each measuring round."""
    features = features_of(space)
    space = features.space
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(2, "Output directory does not exist", str(out.parent))
    entries = features.unique_blocks()
    if keys is not None:
        unknown = sorted(set(keys) - {e["key"] for e in entries})
        if unknown:
            raise ValueError(f"block key '{unknown[0]}' is not a block of space '{space.name}'")
        entries = [e for e in entries if e["key"] in set(keys)]
    done = _existing(out, "key", BLOCK_COLUMNS)
    todo = [entry for entry in entries if entry["key"] not in done]
    if not todo:
        return out
    supernet = untrained_supernet(space)
    models = []
    with torch_threads(1):
        for entry in todo:
            module, shape = features.block_module(entry, supernet)
            models.append(_onnx_bytes(module, shape))
    all_stats = measure_many(models, threads=threads, batch_size=batch_size, rounds=rounds, runs=runs,
                             warmup=warmup, progress=progress)
    fh, writer = _open_append(out, BLOCK_COLUMNS)
    try:
        for entry, stats in zip(todo, all_stats):
            writer.writerow([entry["key"], entry["kind"], f"{stats.median_ms:.5f}", f"{stats.q1_ms:.5f}",
                             f"{stats.q3_ms:.5f}", stats.runs, threads, batch_size])
    finally:
        fh.close()
    return out


def read_block_table(path: str | os.PathLike) -> dict[str, float]:
    """key -> median ms of a block CSV written by `measure_block_table`."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != BLOCK_COLUMNS:
            raise ValueError(f"'{path}' has columns {reader.fieldnames}; expected {list(BLOCK_COLUMNS)}")
        return {row["key"]: float(row["median_ms"]) for row in reader}

