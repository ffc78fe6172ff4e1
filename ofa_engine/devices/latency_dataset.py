"""Latency datasets: sample subnets, export, measure in ONNX Runtime, write resumable CSVs.

Two datasets feed the latency predictors (`latency_models`):

- whole subnets (`build_latency_dataset`, command `latency-dataset`): one row per config with
  its efficiency features and measured latency;
- isolated blocks (`measure_block_table`, command `latency-blocks`): one row per OFA-style
  block key (plus the stem and head per input shape), the lookup table of the "lut" model.

Both append one row at a time (flushed) and skip rows already present, so an interrupted run
resumes where it stopped. Latency does not depend on weight values: subnets come from a
freshly initialised supernet (seed 0).
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

from ..families.mbv3.analytics import analyze
from ..families.mbv3.space import SearchSpace, SubnetConfig
from ..families.mbv3.supernet import Supernet
from ..predictors.latency import unique_blocks
from ..progress import Progress
from ..runtime.export import EXPORT_LOCK, export_subnets, torch_threads, untrained_supernet
from ..runtime.measure import MANY_ROUNDS, MANY_RUNS, MANY_WARMUP, measure_many

__all__ = ["DATASET_COLUMNS", "BLOCK_COLUMNS", "sample_configs", "build_latency_dataset", "read_latency_dataset",
           "measure_block_table", "read_block_table"]

DATASET_COLUMNS = ("config", "macs", "params", "peak_activation_bytes", "flash_bytes", "median_ms", "q1_ms",
                   "q3_ms", "runs", "threads", "batch_size")
BLOCK_COLUMNS = ("key", "kind", "median_ms", "q1_ms", "q3_ms", "runs", "threads", "batch_size")


def sample_configs(space: SearchSpace, n: int, seed: int = 0) -> list[SubnetConfig]:
    """`n` configs: the largest, the smallest, then random ones whose (width, resolution) pairs
    cycle through every combination in a seeded order (so all widths and resolutions are evenly
    covered) with the per-block choices drawn uniformly."""
    if n < 2:
        raise ValueError(f"--n = {n}; allowed: an integer >= 2 (the largest and smallest come first)")
    if n == 2:
        return [space.largest(), space.smallest()]
    rng = np.random.default_rng(seed)
    pop = space.sample_population(n - 2, rng)
    combos = np.array([(w, r) for w in range(len(space.width_mults)) for r in space.resolutions])
    picks = np.concatenate([rng.permutation(len(combos)) for _ in range(-(-(n - 2) // len(combos)))])[:n - 2]
    pop["wid"], pop["image_size"] = combos[picks, 0], combos[picks, 1]
    return [space.largest(), space.smallest()] + space.from_arrays(pop)


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


def build_latency_dataset(space: SearchSpace | str, n: int, out: str | os.PathLike, *, threads: int = 1,
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
    space = SearchSpace.preset(space) if isinstance(space, str) else space
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(2, "Output directory does not exist", str(out.parent))
    configs = sample_configs(space, n, seed)[:first]
    done = _existing(out, "config", DATASET_COLUMNS)
    todo = [c for c in configs if c.to_json() not in done]
    if not todo:
        return out
    metrics = analyze(space, todo)
    cache = Path(onnx_cache) if onnx_cache is not None else None
    with tempfile.TemporaryDirectory(prefix="ofa-latency-") as tmp:
        folder = cache if cache is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        suffix = "" if precision == "fp32" else f"-{precision}"
        targets = [folder / (hashlib.sha1(f"{space.name}:{c.to_json()}".encode()).hexdigest()[:16] + suffix + ".onnx")
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
                        progress(0, rounds, f"skipped a subnet whose {precision} file was refused: {cfg.to_json()}")
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
                writer.writerow([cfg.to_json(), *(int(metrics[m][i]) for m in
                                                  ("macs", "params", "peak_activation_bytes", "flash_bytes")),
                                 f"{stats.median_ms:.5f}", f"{stats.q1_ms:.5f}", f"{stats.q3_ms:.5f}",
                                 stats.runs, threads, batch_size])
        finally:
            fh.close()
    return out


def read_latency_dataset(path: str | os.PathLike) -> tuple[list[SubnetConfig], np.ndarray, list[dict[str, str]]]:
    """(configs, median_ms, rows) of a dataset CSV written by `build_latency_dataset` or the
    profile-kit runner (any CSV with `config` and `median_ms` columns)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"config", "median_ms"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"'{path}' lacks column(s) {sorted(missing)}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"'{path}' has no rows")
    configs = []
    for i, row in enumerate(rows):
        try:
            configs.append(SubnetConfig.from_json(row["config"]))
        except ValueError as exc:
            raise ValueError(f"'{path}' row {i + 2}: {exc}") from None
    return configs, np.array([float(r["median_ms"]) for r in rows]), rows


# ---------------------------------------------------------------------- isolated blocks
class _Head(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.final_expand, self.feature_mix, self.classifier = net.final_expand, net.feature_mix, net.classifier

    def forward(self, x):
        x = self.feature_mix(self.final_expand(x).mean((2, 3), keepdim=True))
        return self.classifier(torch.flatten(x, 1))


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


def _block_module(space: SearchSpace, supernet: Supernet, entry: dict[str, Any]) -> tuple[nn.Module, tuple]:
    """The isolated module of a `unique_blocks` entry and its input shape (batch 1)."""
    d = [space.max_depth] * space.num_stages
    slot = entry.get("slot", 0)
    ks = [entry.get("ks", space.kernel_sizes[0])] * space.num_slots
    e = [entry.get("e", space.expand_ratios[0])] * space.num_slots
    cfg = SubnetConfig(wid=entry["wid"], ks=ks, e=e, d=d, image_size=entry["image_size"])
    with torch.no_grad():
        net = supernet.extract(cfg)
    x = torch.zeros(1, space.in_channels, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        stem = nn.Sequential(net.first_conv, net.blocks[0])
        if entry["kind"] == "stem":
            return stem, tuple(x.shape)
        h = stem(x)
        for i in range(slot if entry["kind"] == "block" else space.num_slots):
            h = net.blocks[1 + i](h)
    if entry["kind"] == "block":
        return net.blocks[1 + slot], tuple(h.shape)
    return _Head(net), tuple(h.shape)


def measure_block_table(space: SearchSpace | str, out: str | os.PathLike, *, threads: int = 1,
                        batch_size: int = 1, runs: int = MANY_RUNS, rounds: int = MANY_ROUNDS,
                        warmup: int = MANY_WARMUP, keys: Sequence[str] | None = None,
                        progress: Progress | None = None) -> Path:
    """Measure every distinct block key of `space` (and the stem / head per input shape) in
    isolation; append rows to the CSV `out` (resumable). The "lut" model's table.
    `keys` restricts the measurement to those keys (tests). `progress(round, rounds, message)`
    after each measuring round."""
    space = SearchSpace.preset(space) if isinstance(space, str) else space
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(2, "Output directory does not exist", str(out.parent))
    entries = unique_blocks(space)
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
            module, shape = _block_module(space, supernet, entry)
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

