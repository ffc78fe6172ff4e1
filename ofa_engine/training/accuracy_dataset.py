"""The accuracy-predictor dataset: measured holdout accuracy of many random subnets.

Each row is one subnet of a trained supernet, extracted, BN-recalibrated on the calibration
images (as `extract_calibrated` does before deployment) and evaluated on the 5k holdout, which
training never saw. Rows are appended to a CSV and flushed to disk one by one, so the build
(about an hour on one CPU thread for 1,000 subnets) can be stopped at any point and resumed:
configs already in the file are skipped and a truncated last line is dropped.

    python -m ofa_engine accuracy-dataset --supernet tiny-fmnist --n 1000 \\
        --out assets/supernets/tiny-fmnist/accuracy-dataset.csv

Under torchrun (`build_accuracy_dataset_part`) every rank labels its shard into its own part
file beside the CSV; the rank that finds all parts complete merges them into the CSV, in the
order one process writes, and removes them.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..datasets.images import ImageSet
from ..families import family_of
from ..files import atomic_write_text
from ..runtime.evaluation import calibrate_bn
from ..runtime.preprocess import preprocess
from ..progress import Progress, report

__all__ = ["CSV_FIELDS", "PreprocessedImages", "evaluate_holdout", "dataset_configs", "canonical_key", "read_accuracy_csv",
           "build_accuracy_dataset", "torchrun_shard", "part_path", "build_accuracy_dataset_part",
           "merge_accuracy_parts"]

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


def _done_keys(path: Path, family: Any) -> set[bytes]:
    """Canonical keys of the configs `path` holds (none when it does not exist)."""
    if not path.exists():
        return set()
    return {canonical_key(family, row["config"]) for row in read_accuracy_csv(path, family)}


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
                           progress: Progress | None = None, done_elsewhere: Iterable[bytes] = ()) -> int:
    """Append the accuracy of every config of `configs` not yet in `out`; returns how many rows
    were added. Stops after `max_new` new rows when given (the rest is done on a later call).

    `shard=(k, n)` takes only the configs at positions k, k+n, k+2n, ... so that n processes
    can fill one CSV together (each row is one O_APPEND write).
    `done_elsewhere`: canonical keys of configs already labelled in another file (skipped too).
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
    done_keys: set[bytes] = set(done_elsewhere)
    if out.exists():
        _drop_cut_off_row(out)
        done_keys |= _done_keys(out, family)
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



# ---------------------------------------------------------------------- torchrun: parts, merged
def torchrun_shard(environ: Any = os.environ) -> tuple[int, int] | None:
    """`(RANK, WORLD_SIZE)` when torchrun started this process (its variables are set), else None."""
    if "RANK" not in environ and "WORLD_SIZE" not in environ:
        return None
    try:
        rank, world = int(environ["RANK"]), int(environ["WORLD_SIZE"])
    except (KeyError, ValueError):
        raise ValueError(f"torchrun's RANK and WORLD_SIZE must both be integers, got RANK="
                         f"{environ.get('RANK')!r}, WORLD_SIZE={environ.get('WORLD_SIZE')!r}") from None
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank}, WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return rank, world


def part_path(out: str | Path, rank: int, world: int) -> Path:
    """Rank `rank`'s part file of `out`: `accuracy-dataset.csv.part0of2`."""
    out = Path(out)
    return out.with_name(f"{out.name}.part{rank}of{world}")


def _check_no_other_world(out: Path, world: int) -> None:
    """Parts of a run with another number of processes hold other shards: refuse to mix."""
    pattern = re.compile(re.escape(out.name) + r"\.part(\d+)of(\d+)$")
    others = sorted(p.name for p in out.parent.glob(out.name + ".part*of*")
                    if (m := pattern.match(p.name)) and int(m.group(2)) != world)
    if others:
        raise ValueError(f"{out.parent}: {', '.join(others)} are parts of a run with another number of "
                         f"processes; finish it with that many (--nproc_per_node), or delete them, "
                         f"to run {world}")


def _parts_complete(configs: Sequence[Any], out: Path, world: int, family: Any) -> bool:
    """Every config not in `out` is in its rank's part file."""
    in_out = _done_keys(out, family)
    for rank in range(world):
        wanted = {canonical_key(family, cfg) for cfg in configs[rank::world]} - in_out
        if wanted - _done_keys(part_path(out, rank, world), family):
            return False
    return True


def _csv_records(path: Path) -> list[list[str]]:
    """The rows of a CSV written by `_append_row`, fields as written, header dropped."""
    if not path.exists():
        return []
    return list(csv.reader(io.StringIO(_complete_text(path))))[1:]


def merge_accuracy_parts(configs: Sequence[Any], out: str | Path, world: int, space: Any) -> bool:
    """Merge the `world` part files of `out` into `out` when all are complete, and remove them;
    returns whether it merged. `out` keeps the rows it had; the parts' rows follow in the order
    of `configs`, as one process resuming `out` appends them (fields copied as written, so the
    file is what one process writes but for the wall-time `seconds`). Serialised by a lock on
    the folder: the ranks that find the parts complete at once merge one after the other, and
    the later ones find nothing left to do (idempotent)."""
    out = Path(out)
    family = family_of(space, fast=False)
    configs = [space.validate(cfg) for cfg in configs]
    parts = [part_path(out, rank, world) for rank in range(world)]
    folder = os.open(out.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        if not any(p.exists() for p in parts) or not _parts_complete(configs, out, world, family):
            return False
        if out.exists():
            _drop_cut_off_row(out)
        kept = out.read_text(encoding="utf-8") if out.exists() else ""
        have = _done_keys(out, family)
        by_key = {}
        for part in parts:
            for record in _csv_records(part):
                by_key[canonical_key(family, family.config_from_dict(json.loads(record[0])))] = record
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if not kept:
            writer.writerow(CSV_FIELDS)
        for cfg in configs:
            key = canonical_key(family, cfg)
            if key not in have and key in by_key:
                writer.writerow(by_key[key])
        atomic_write_text(out, kept + buffer.getvalue())
        for part in parts:
            part.unlink(missing_ok=True)
        return True
    finally:
        os.close(folder)   # releases the lock


def build_accuracy_dataset_part(supernet: Any, configs: Sequence[Any], out: str | Path,
                                holdout: ImageSet, calib: ImageSet, rank: int, world: int,
                                **options: Any) -> tuple[int, bool]:
    """One torchrun rank's share: label shard `rank` of `world` (configs not yet in `out`) into
    its part file (`part_path`; appended row by row, resumable), then merge all parts into `out`
    if they are complete (`merge_accuracy_parts`: the last rank to finish merges, no process
    waits for another). Returns (rows added to the part, whether this rank merged).
    `options`: those of `build_accuracy_dataset` (max_new, batch_size, channels_last, progress)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _check_no_other_world(out, world)
    space = supernet.space
    if out.exists():
        _drop_cut_off_row(out)
    in_out = _done_keys(out, family_of(space, fast=False))
    added = build_accuracy_dataset(supernet, configs, part_path(out, rank, world), holdout, calib,
                                   shard=(rank, world), done_elsewhere=in_out, **options)
    return added, merge_accuracy_parts(configs, out, world, space)
