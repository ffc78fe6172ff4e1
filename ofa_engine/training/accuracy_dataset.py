"""The accuracy-predictor dataset: measured holdout accuracy of many random subnets.

Each row is one subnet of a trained supernet, extracted, BN-recalibrated on the calibration
images (as `extract_calibrated` does before deployment) and evaluated on the 5k holdout, which
training never saw. Rows are appended to a CSV and flushed to disk one by one, so the build
(about an hour on one CPU thread for 1,000 subnets) can be stopped at any point and resumed:
configs already in the file are skipped and a truncated last line is dropped.

    python -m ofa_engine accuracy-dataset --supernet tiny-fmnist --n 1000 \\
        --out assets/supernets/tiny-fmnist/accuracy-dataset.csv
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..datasets.images import ImageSet
from ..families import family_of
from ..runtime.evaluation import calibrate_bn
from ..runtime.preprocess import preprocess
from ..progress import Progress, report

__all__ = ["CSV_FIELDS", "PreprocessedImages", "evaluate_holdout", "dataset_configs", "canonical_key", "read_accuracy_csv",
           "build_accuracy_dataset"]

CSV_FIELDS = ("config", "image_size", "wid", "macs", "accuracy", "seconds")
DATASET_SEED = 0


def canonical_key(space: Any, cfg: Any) -> bytes:
    """Identity of the network a config describes (its row of the family's encoding: for
    MobileNetV3, slots the depth leaves out do not count). `space`: a space or its family."""
    return family_of(space, fast=False).encode([cfg]).tobytes()


def dataset_configs(space: Any, n: int, seed: int = DATASET_SEED) -> list[Any]:
    """The largest and smallest subnet, then `n` uniformly random ones (seeded), without
    duplicate networks. The list for a given (space, n, seed) never changes; another `n` gives
    other random subnets (a resumed build keeps the rows it has, so the file stays a uniform
    sample either way)."""
    if n < 0:
        raise ValueError(f"--n must be >= 0, got {n}")
    family = family_of(space, fast=False)
    sampled = family.training().random_configs(n, np.random.default_rng(seed))
    seen: set[bytes] = set()
    configs = []
    for cfg in [space.largest(), space.smallest(), *sampled]:
        key = canonical_key(family, cfg)
        if key not in seen:
            seen.add(key)
            configs.append(cfg)
    return configs


def _complete_text(path: Path) -> str:
    """The file's text up to its last newline (a row cut off by an interrupted write is dropped)."""
    text = path.read_text(encoding="utf-8")
    return text[:text.rfind("\n") + 1]


def read_accuracy_csv(path: str | Path, space: Any = None) -> list[dict]:
    """Rows of an accuracy CSV: dicts with `config` (the config of `space`, validated; its JSON
    dict, unchecked, without a space), `image_size`, `wid`, `macs` (int), `accuracy`
    (fraction), `seconds`. A truncated last line is ignored; any other bad row raises
    `ValueError` naming the file, the line and the problem."""
    path = Path(path)
    text = _complete_text(path)
    if not text:
        return []
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != CSV_FIELDS:
        raise ValueError(f"{path}: header is {reader.fieldnames}; expected {list(CSV_FIELDS)}")
    family = family_of(space, fast=False) if space is not None else None
    rows = []
    for line, raw in enumerate(reader, start=2):
        try:
            cfg = json.loads(raw["config"])
            if not isinstance(cfg, dict):
                raise ValueError(f"a subnet config must be a JSON object, got {type(cfg).__name__}")
            if family is not None:
                cfg = family.config_from_dict(cfg)
            row = {"config": cfg, "image_size": int(raw["image_size"]), "wid": int(raw["wid"]),
                   "macs": int(raw["macs"]), "accuracy": float(raw["accuracy"]),
                   "seconds": float(raw["seconds"])}
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}, line {line}: {exc}") from None
        if not 0.0 <= row["accuracy"] <= 1.0:
            raise ValueError(f"{path}, line {line}: accuracy {row['accuracy']} is not a fraction in 0..1")
        rows.append(row)
    return rows


class PreprocessedImages:
    """Network input per image size, computed once (preprocessing dominates small subnets)."""

    def __init__(self, images: np.ndarray, space: Any, channels_last: bool):
        self.images, self.space, self.channels_last = images, space, channels_last
        self._by_size: dict[int, torch.Tensor] = {}

    def __call__(self, image_size: int) -> torch.Tensor:
        if image_size not in self._by_size:
            x = preprocess(self.images, self.space, image_size)
            self._by_size[image_size] = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
        return self._by_size[image_size]


@torch.no_grad()
def evaluate_holdout(supernet: Any, cfg: Any, calib: PreprocessedImages,
                     holdout: PreprocessedImages, labels: torch.Tensor, batch_size: int,
                     channels_last: bool) -> float:
    """Top-1 accuracy of `cfg` on `holdout` after BN recalibration on `calib` (fraction)."""
    net = supernet.extract(cfg)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    # Same recalibration (and batch size) as `extract_calibrated`, so the accuracy is that of
    # the network a user deploys.
    calibrate_bn(net, calib(cfg.image_size))
    # 10-20% faster; argmax as without (logits within ~1e-5); keeps channels_last
    family_of(supernet.space, fast=False).fold_bn(net)
    x = holdout(cfg.image_size)
    correct = 0
    for start in range(0, len(x), batch_size):
        correct += int((net(x[start:start + batch_size]).argmax(1) == labels[start:start + batch_size]).sum())
    return correct / len(x)


def _append_row(fh, row: Sequence) -> None:
    """One row, written and synced under an exclusive lock: another shard's start-up check
    (`_drop_cut_off_row`) never sees it half written."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    try:
        fh.write(buffer.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _drop_cut_off_row(path: Path) -> None:
    """Truncate a row cut off by an interrupted write (a killed builder). Measured and cut under
    the same lock as `_append_row`, so rows that other shards append meanwhile are kept."""
    with open(path, "r+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        data = fh.read()
        complete = data.rfind(b"\n") + 1
        if complete != len(data):
            fh.truncate(complete)


def build_accuracy_dataset(supernet: Any, configs: Iterable[Any], out: str | Path,
                           holdout: ImageSet, calib: ImageSet, max_new: int | None = None,
                           batch_size: int = 500, channels_last: bool = True,
                           shard: tuple[int, int] = (0, 1),
                           progress: Progress | None = None) -> int:
    """Append the accuracy of every config of `configs` not yet in `out`; returns how many rows
    were added. Stops after `max_new` new rows when given (the rest is done on a later call).

    `shard=(k, n)` takes only the configs at positions k, k+n, k+2n, ... so that n processes
    can fill one CSV together (each row is one O_APPEND write).
    `progress(done, total, message)` is called after each row (the message names the
    accuracy, the seconds and the subnet's resolution and width).
    """
    k, n = shard
    if not 0 <= k < n:
        raise ValueError(f"shard {k}/{n}: need 0 <= K < N")
    configs = [cfg for i, cfg in enumerate(configs) if i % n == k]
    space = supernet.space
    family = family_of(space, fast=False)
    hooks = family.training()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done_keys: set[bytes] = set()
    if out.exists():
        _drop_cut_off_row(out)
        done_keys = {canonical_key(family, row["config"]) for row in read_accuracy_csv(out, space)}
    todo = [cfg for cfg in configs if canonical_key(family, space.validate(cfg)) not in done_keys]
    todo = list({canonical_key(family, c): c for c in todo}.values())   # keeps the order
    if max_new is not None:
        todo = todo[:max_new]
    if not todo:
        return 0
    calib_x = PreprocessedImages(calib.images, space, channels_last)
    holdout_x = PreprocessedImages(holdout.images, space, channels_last)
    labels = torch.as_tensor(np.array(holdout.labels, dtype=np.int64))   # a copy: package arrays are read-only
    macs = family.analyze(todo)["macs"]
    supernet.eval()
    with open(out, "a", encoding="utf-8", newline="") as fh:
        if fh.tell() == 0:
            _append_row(fh, CSV_FIELDS)
        for i, cfg in enumerate(todo):
            start = time.perf_counter()
            acc = evaluate_holdout(supernet, cfg, calib_x, holdout_x, labels, batch_size, channels_last)
            seconds = time.perf_counter() - start
            wid = hooks.width_index(cfg)
            _append_row(fh, [json.dumps(cfg.to_dict(), separators=(",", ":")), cfg.image_size, wid, int(macs[i]),
                             f"{acc:.6f}", f"{seconds:.3f}"])
            report(progress, i + 1, len(todo),
                   f"acc={acc:.4f} {seconds:.2f}s (r={cfg.image_size}, wid={wid})")
    return len(todo)

