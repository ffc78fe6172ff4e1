"""Commands that build and fit the predictors: accuracy-dataset, fit-accuracy-predictor.

Both take a supernet package (`--supernet PKG`): without `--out` they write into it (the CSV
beside its weights, the predictor named in its manifest) and record the command in its
provenance. A plain supernet file from training still works with `--out`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..predictors.metrics import split_indices as train_test_split
from .args import EXIT_OK, SUPERNET_HELP, UsageError, load_source, load_space, register

# torch and the predictor and dataset modules are imported inside the commands: building the
# parser of another command, or refusing a bad argument, should not wait for them.


def _accuracy_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    from ..training.accuracy_dataset import DATASET_SEED
    parser.add_argument("--supernet", required=True, metavar="PKG", help=SUPERNET_HELP)
    # --subnets: torchrun's own parser takes `--n` for an ambiguous abbreviation of its options
    parser.add_argument("--n", "--subnets", type=int, default=1000, help="random subnets (plus largest and smallest)")
    parser.add_argument("--seed", type=int, default=DATASET_SEED, help="seed of the random subnets")
    parser.add_argument("--out", metavar="CSV",
                        help="CSV to write or resume (default: accuracy-dataset.csv in the package folder)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--max-new", type=int, default=None, help="stop after this many new rows")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="do every N-th config starting at K (run N processes on one CSV); under "
                             "torchrun each rank takes its own (K=RANK, N=WORLD_SIZE) and the parts "
                             "are merged into the CSV")
    # Measured on the largest subnet (1 thread): 12 s channels_last vs 37-47 s NCHW.
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="run in channels_last memory format (default; 3x faster here)")


@register("accuracy-dataset", "measure holdout accuracy of random subnets into a CSV (resumable)", _accuracy_dataset_arguments)
def run_accuracy_dataset(args: argparse.Namespace) -> int:
    import torch

    from ..datasets.images import load_split
    from ..training.accuracy_dataset import (build_accuracy_dataset, build_accuracy_dataset_part, dataset_configs,
                                             part_path, read_accuracy_csv, torchrun_shard)

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    ranks = torchrun_shard()
    if ranks is not None and args.shard is not None:
        raise UsageError(f"--shard {args.shard} with torchrun (RANK={ranks[0]}, WORLD_SIZE={ranks[1]}): "
                         f"torchrun gives each rank its shard; drop --shard, or run without torchrun")
    shard = _parse_shard(args.shard or "0/1")
    torch.set_num_threads(args.threads)
    supernet, package = load_source(args.supernet)
    out = _package_output(args.out, package, "accuracy-dataset.csv", "--out")
    configs = dataset_configs(supernet.space, args.n, args.seed)
    if package is None or package.manifest.predictor_images == "fashion-mnist-holdout":
        holdout, calib = load_split("holdout"), load_split("calib")
    else:   # the package's own labelled images
        holdout, calib = package.evaluation, package.calibration
    started = time.perf_counter()

    def progress(done: int, todo: int, message: str) -> None:
        elapsed = time.perf_counter() - started
        if done <= 2 or done % 25 == 0 or done == todo:
            eta = (todo - done) * elapsed / done
            print(f"[{done}/{todo}] {message} elapsed {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min", flush=True)

    options = {"max_new": args.max_new, "channels_last": args.channels_last, "progress": progress}
    if ranks is None or ranks[1] == 1:
        added = build_accuracy_dataset(supernet, configs, out, holdout, calib, shard=shard, **options)
        merged = None
    else:
        added, merged = build_accuracy_dataset_part(supernet, configs, out, holdout, calib, *ranks, **options)
    total = len(read_accuracy_csv(out, supernet.space)) if out.exists() else 0
    summary = {"out": str(out), "added": added, "rows": total}
    if merged is not None:   # the other ranks' parts may still be running: the last one merges
        summary.update(rank=ranks[0], part=str(part_path(out, *ranks)), merged=merged)
    if package is not None and args.out is None and merged is not False:
        from ..packages.build import add_command
        add_command(package, f"python -m ofa_engine accuracy-dataset --supernet {args.supernet} --n {args.n} "
                             f"--seed {args.seed}")
    print(json.dumps({**summary, "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    return EXIT_OK


def _parse_shard(text: str) -> tuple[int, int]:
    """`K/N` as (K, N); a clear error otherwise (the range is checked by the builder)."""
    try:
        shard = tuple(int(part) for part in text.split("/"))
        if len(shard) != 2:
            raise ValueError
    except ValueError:
        raise ValueError(f"--shard must look like K/N (e.g. 0/2), got '{text}'") from None
    return shard


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it lies below it (a recorded command then
    names no machine's folders), else as it is."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _package_output(out: str | None, package, file_name: str, flag: str) -> Path:
    """`out`, or the file `file_name` in the package folder when `out` is None."""
    if out is not None:
        return Path(out)
    if package is None:
        raise UsageError(f"{flag} is needed with a supernet file (without it the result goes into a package)")
    if not package.path.is_dir():
        raise ValueError(f"--supernet '{package.path}' is a zip; give {flag}, or unzip the package to write "
                         f"into it")
    return package.path / file_name


def _fit_accuracy_arguments(parser: argparse.ArgumentParser) -> None:
    from ..predictors.accuracy import DEFAULT_ENSEMBLE, DEFAULT_HIDDEN, DEFAULT_WEIGHT_DECAY
    parser.add_argument("--csv", metavar="CSV",
                        help="dataset from `accuracy-dataset` (default: the package's accuracy-dataset.csv)")
    parser.add_argument("--space", default=None, metavar="NAME",
                        help="search space of the CSV (default: the package's, else tiny-fmnist)")
    parser.add_argument("--supernet", default=None, metavar="PKG",
                        help="package (or supernet file) the CSV was measured on: its digest goes into the "
                             "metadata; without --out the predictor is written into the package")
    parser.add_argument("--out", metavar="NPZ",
                        help="predictor file (.npz; .json beside it); default: into the --supernet package")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="held-out share (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="split and training seed")
    parser.add_argument("--hidden", default=",".join(map(str, DEFAULT_HIDDEN)), metavar="W,W,...",
                        help="hidden layer widths (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--weight-decay", type=float, default=DEFAULT_WEIGHT_DECAY)
    parser.add_argument("--ensemble", type=int, default=DEFAULT_ENSEMBLE, metavar="K",
                        help="average K MLPs (seeds SEED..SEED+K-1), saved as one MLP (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


@register("fit-accuracy-predictor", "train the accuracy predictor on an accuracy-dataset CSV", _fit_accuracy_arguments)
def run_fit_accuracy_predictor(args: argparse.Namespace) -> int:
    if args.out is None and args.supernet is None:
        raise UsageError("give --out, or --supernet PKG to write the predictor into that package")
    if args.csv is not None and not Path(args.csv).is_file():   # before torch loads
        raise FileNotFoundError(2, "No such file", args.csv)
    import torch

    from ..predictors.accuracy import MAX_WIDTH, evaluate_accuracy_predictor, file_digest, fit_accuracy_predictor
    from ..training.accuracy_dataset import read_accuracy_csv
    from ..training.bundled import BUNDLED_SUPERNETS

    supernet_name = args.supernet or "tiny-fmnist"
    package = None
    if args.supernet is not None and (args.out is None or args.csv is None or args.space is None):
        package = load_source(args.supernet)[1]
    csv_path = args.csv if args.csv is not None else _shown(_package_output(None, package, "accuracy-dataset.csv", "--csv"))
    if not Path(csv_path).is_file():
        raise FileNotFoundError(2, "No such file (run accuracy-dataset first)", csv_path)

    torch.set_num_threads(max(1, args.threads))
    try:
        hidden = tuple(int(w) for w in args.hidden.split(","))
    except ValueError:
        raise ValueError(f"--hidden must be comma-separated integers, got '{args.hidden}'") from None
    if not hidden or not all(1 <= w <= MAX_WIDTH for w in hidden):
        raise ValueError(f"--hidden widths must be 1..{MAX_WIDTH}, got '{args.hidden}'")
    space = load_space(args.space) if args.space is not None else (
        package.space if package is not None else load_space("tiny-fmnist"))
    rows = read_accuracy_csv(csv_path, space)
    if len(rows) < 10:
        raise ValueError(f"--csv: {csv_path} has {len(rows)} rows; at least 10 are needed")
    configs = [r["config"] for r in rows]
    y = np.array([r["accuracy"] for r in rows])
    train, test = train_test_split(len(rows), args.test_fraction, args.seed)
    predictor = fit_accuracy_predictor(space, [configs[i] for i in train], y[train],
                                       hidden=hidden, epochs=args.epochs, weight_decay=args.weight_decay,
                                       seed=args.seed, ensemble=args.ensemble)
    quality = evaluate_accuracy_predictor(predictor, [configs[i] for i in test], y[test])
    quality["n_train"] = int(len(train))
    if package is not None and package.path.is_dir():
        supernet_file = package.path / package.manifest.weights.file
    else:
        supernet_file = BUNDLED_SUPERNETS.get(supernet_name, Path(supernet_name))
    if package is not None and package.manifest.predictor_images == "evaluation":
        target = (f"top-1 accuracy on the package's {len(package.evaluation)} evaluation images, BN recalibrated "
                  f"on its calibration images (fraction)")
    else:
        target = "top-1 accuracy on the 5k Fashion-MNIST holdout, BN recalibrated (fraction)"
    out_text = args.out if args.out is not None else "(into the package)"
    metadata = {
        "space": space.name,
        "supernet": supernet_name,
        "supernet_digest": file_digest(supernet_file) if Path(supernet_file).is_file() else None,
        # The builder only appends, so the first `rows` rows identify the data even while it runs.
        "dataset": {"csv": str(csv_path), "rows": len(rows)},
        "quality": {**quality, "split": f"seeded {args.test_fraction:.0%} held-out (seed {args.seed})"},
        "target": target,
        "training": predictor.metadata["training"],
        "command": (f"python -m ofa_engine fit-accuracy-predictor --csv {csv_path} --space {space.name} "
                    f"--supernet {supernet_name} --out {out_text} --test-fraction {args.test_fraction} "
                    f"--seed {args.seed} --hidden {args.hidden} "
                    f"--epochs {args.epochs} --weight-decay {args.weight_decay} --ensemble {args.ensemble}"),
    }
    if args.out is None:
        from ..packages.build import add_accuracy_predictor
        if not package.path.is_dir():
            raise ValueError(f"--supernet '{package.path}' is a zip; give --out, or unzip the package to write into it")
        path = add_accuracy_predictor(package, predictor, metadata, command=metadata["command"])
    else:
        path = predictor.save(args.out, metadata)
    print(json.dumps({"out": str(path), **metadata["quality"]}, indent=2))
    return EXIT_OK
