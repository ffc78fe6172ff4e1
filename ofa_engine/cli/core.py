"""Commands on one subnet and on training: analyze, export, evaluate, train, make-subsets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets.labels import FASHION_MNIST_LABELS
from ..families import family_of, preset_names
from ..files import check_output_path, read_json
from ..runtime.common import MAX_OPSET, MIN_OPSET
from .args import (EXIT_OK, SUPERNET_HELP, UsageError, config_argument, load_config, load_source, load_space,
                   load_weights, precision_argument, print_json, register, space_argument)


def _analyze(space: Any, cfg: Any) -> dict[str, Any]:
    """The closed-form metrics of `cfg` by its space's family."""
    return family_of(space, fast=False).analyze(cfg)


# ---------------------------------------------------------------------- analyze
def _analyze_arguments(parser: argparse.ArgumentParser) -> None:
    space_argument(parser)
    config_argument(parser)


@register("analyze", "print MACs, params, peak activation and flash bytes of a subnet (JSON)",
          _analyze_arguments)
def run_analyze(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    cfg = load_config(space, args.config)
    print_json({"space": space.name, "config": cfg.to_dict(), "metrics": _analyze(space, cfg)})
    return EXIT_OK


# ---------------------------------------------------------------------- export
def _export_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--space", metavar="NAME",
                        help=f"search space (fresh or --weights), one of {', '.join(preset_names())}")
    source.add_argument("--supernet", metavar="PKG",
                        help=SUPERNET_HELP + "; the subnet's BN statistics are recalibrated on its "
                             "calibration images (unless --no-bn-recalibration)")
    parser.add_argument("--weights", metavar="FILE",
                        help="with --space: supernet state dict (torch.save or .safetensors); "
                             "without it the weights are freshly initialised (seed 0)")
    config_argument(parser)
    parser.add_argument("--out", required=True, metavar="PATH", help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 17..20 (default 17)")
    parser.add_argument("--no-bn-recalibration", action="store_true",
                        help="with --supernet: keep the supernet's own BN statistics (to compare the "
                             "subnet with another implementation's)")
    precision_argument(parser)


@register("export", "extract a subnet and write it as a verified ONNX file", _export_arguments)
def run_export(args: argparse.Namespace) -> int:
    check_output_path(args.out, "--out")   # before any work, naming the path as given
    if not MIN_OPSET <= args.opset <= MAX_OPSET:
        raise ValueError(f"--opset {args.opset}; allowed: {MIN_OPSET}..{MAX_OPSET} (MIN_OPSET..MAX_OPSET)")
    from ..training.bundled import extract_calibrated
    if args.supernet is None and args.no_bn_recalibration:
        raise UsageError("--no-bn-recalibration goes with --supernet (a --space export is never recalibrated)")
    if args.supernet is not None:
        if args.weights is not None:
            raise UsageError("--weights goes with --space, not with --supernet")
        supernet, package = load_source(args.supernet)
        space = supernet.space
        cfg = load_config(space, args.config)
        if args.no_bn_recalibration:
            net = supernet.extract(cfg)
        else:
            net = extract_calibrated(supernet, cfg, package.calibration if package is not None else None)
        precision_inputs = {} if package is None else {"calibration": package.calibration,
                                                       "evaluation": package.evaluation}
    else:
        precision_inputs = {}
        space = load_space(args.space)
        cfg = load_config(space, args.config)
        import torch

        # A fixed seed makes an export without --weights reproducible, without touching the
        # caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            supernet = family_of(space, fast=False).build_supernet()
        if args.weights is not None:
            load_weights(supernet, args.weights)
        else:
            print("warning: no --weights given; exporting freshly initialised weights", file=sys.stderr)
        net = supernet.extract(cfg)
    from ..runtime.export import export_onnx, verify_onnx
    from ..runtime.quantize import quantization_metadata, weight_bytes
    if args.precision == "fp32":
        precision_inputs = {}
    path = export_onnx(net, cfg, args.out, space=space, opset=args.opset, precision=args.precision,
                       **precision_inputs)
    summary = {
        "path": str(path),
        "bytes": Path(path).stat().st_size,
        "space": space.name,
        "config": cfg.to_dict(),
        "metrics": _analyze(space, cfg),
        "opset": args.opset,
    }
    if args.supernet is not None:
        summary["bn"] = "the supernet's own statistics" if args.no_bn_recalibration else "recalibrated"
    if args.precision == "fp32":
        # Re-measured on the file at its final path (export_onnx already checked it).
        summary["max_abs_diff"] = verify_onnx(path, net)
    else:
        summary["precision"] = args.precision
        summary["weight_bytes"] = weight_bytes(path)["weight_bytes"]
        summary["quantization"] = quantization_metadata(path)
    print_json(summary)
    return EXIT_OK


# ---------------------------------------------------------------------- evaluate
def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--supernet", required=True, metavar="PKG", help=SUPERNET_HELP)
    config_argument(parser)
    parser.add_argument("--split", default=None, choices=["test", "holdout", "test2k", "evaluation"],
                        help="evaluation: the package's evaluation images (the default for a package of "
                             "other data); for Fashion-MNIST supernets also test (the 10k official test set, "
                             "their default), holdout (the 5k held out of training) and test2k (the bundled "
                             "2k test images, no download)")


@register("evaluate", "accuracy of a subnet (BN recalibrated) and its MACs, as JSON", _evaluate_arguments)
def run_evaluate(args: argparse.Namespace) -> int:
    from ..datasets.images import load_split
    from ..runtime.evaluation import accuracy
    from ..training.bundled import extract_calibrated
    supernet, package = load_source(args.supernet)
    space = supernet.space
    cfg = load_config(space, args.config)
    fashion = space.in_channels == 1 and tuple(space.labels or FASHION_MNIST_LABELS) == FASHION_MNIST_LABELS
    split = args.split or ("test" if fashion or package is None else "evaluation")
    if split == "evaluation":
        if package is None:
            raise ValueError(f"--split evaluation: '{args.supernet}' is a supernet file, not a package; "
                             f"allowed here: test, holdout, test2k")
        data = package.evaluation
    elif not fashion:
        raise ValueError(f"--split {split} holds Fashion-MNIST images; supernet '{args.supernet}' is for "
                         f"other data (space '{space.name}'); allowed: --split evaluation")
    else:
        data = load_split(split)
    net = extract_calibrated(supernet, cfg, package.calibration if package is not None else None)
    print_json({"supernet": str(args.supernet), "config": cfg.to_dict(), "split": split,
                 "images": len(data), "accuracy": accuracy(net, data.images, data.labels, space),
                 "macs": _analyze(space, cfg)["macs"]})
    return EXIT_OK


# ---------------------------------------------------------------------- train
def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", default="tiny-fmnist", help="search space preset (default tiny-fmnist)")
    parser.add_argument("--out", required=True, help="run folder: checkpoint.pt, log.jsonl, supernet.pt")
    parser.add_argument("--recipe", help="JSON file with a recipe (see docs/training.md); default: our recipe")
    parser.add_argument("--scratch-config", metavar="C",
                        help="train only this subnet from scratch with the full-network phase "
                             "(the from-scratch twin): largest, smallest, random:SEED or JSON")
    parser.add_argument("--epoch-scale", type=float, default=1.0, help="multiply every phase's epochs")
    parser.add_argument("--data", default="fashion-mnist",
                        help="'fashion-mnist' (Debian package) or 'folder:PATH' (ImageFolder, one sub-folder per class)")
    parser.add_argument("--image-size", type=int, default=28, help="stored size of ImageFolder images")
    parser.add_argument("--channels", type=int, choices=(1, 3),
                        help="with folder:PATH: input channels (default: the space's); another count than "
                             "the space's takes its normalisation from the training images")
    parser.add_argument("--max-train-images", type=int, help="use only the first N training images")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--init-from", metavar="FILE",
                        help="a supernet file that stands for the recipe's first (full-network) phase, "
                             "e.g. another run's phase-00-full.pt: start at the second phase")
    parser.add_argument("--max-steps", type=int, help="stop (after a checkpoint) once this call ran N steps")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--no-progress", action="store_true")


@register("train", "progressive-shrinking training (resumable; runs under torchrun too)", _train_arguments)
def run_train(args: argparse.Namespace) -> int:
    from ..datasets.images import load_image_folder, load_split

    space = load_space(args.space)
    if args.data == "fashion-mnist":
        train_set, val_set = load_split("train"), load_split("holdout")
        calib = train_set.subset(np.random.default_rng(1).choice(len(train_set), 2000, replace=False))
    elif args.data.startswith("folder:"):
        channels = args.channels or space.in_channels
        data = load_image_folder(args.data.split(":", 1)[1], args.image_size, channels)
        order = np.random.default_rng(0).permutation(len(data))
        n_val = max(1, len(data) // 10)
        train_set, val_set = data.subset(order[n_val:]), data.subset(order[:n_val])
        calib = train_set.subset(np.arange(min(2000, len(train_set))))
        normalisation = {}
        if channels != space.in_channels:
            # Per-channel mean and std of the training images (after scaling to [0, 1]).
            pixels = (train_set.images if channels > 1 else train_set.images[:, None]).astype(np.float64) / 255.0
            normalisation = {"in_channels": channels,
                             "mean": tuple(round(float(v), 4) for v in pixels.mean(axis=(0, 2, 3))),
                             "std": tuple(round(max(float(v), 1e-3), 4) for v in pixels.std(axis=(0, 2, 3)))}
        space = family_of(space, fast=False).space_from_dict(
            {**space.to_dict(), "name": f"{space.name}-custom", "num_classes": len(data.classes),
             "labels": tuple(data.classes), **normalisation}, f"--data {args.data}")
    else:
        raise ValueError(f"--data must be 'fashion-mnist' or 'folder:PATH', got '{args.data}'")
    if args.max_train_images is not None:
        if args.max_train_images < 1:
            raise ValueError(f"--max-train-images must be >= 1, got {args.max_train_images}")
        train_set = train_set.subset(np.arange(min(args.max_train_images, len(train_set))))
    # The data and the arguments are checked before torch and the trainer load.
    import torch

    from ..training.train import Recipe, default_recipe, train, twin_recipe
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.recipe:
        recipe = Recipe.from_dict(read_json(args.recipe, f"--recipe {args.recipe}"), space)
    else:
        recipe = default_recipe(space)
    if args.scratch_config:
        recipe = twin_recipe(space, space.parse_config(args.scratch_config), recipe)
    recipe = recipe.scaled(args.epoch_scale) if args.epoch_scale != 1.0 else recipe
    final = train(space, recipe, train_set, val_set, calib, args.out, resume=args.resume,
                  max_steps=args.max_steps, progress=not args.no_progress, init_from=args.init_from)
    if final.exists():
        print(json.dumps({"supernet": str(final)}))
    return 0


# ---------------------------------------------------------------------- bundled data
@register("make-subsets", "write the bundled 2k calibration / 2k test subsets from the Debian package",
          lambda parser: None)
def run_make_subsets(args: argparse.Namespace) -> int:
    from ..datasets.images import make_bundled_subsets
    print_json({name: str(path) for name, path in make_bundled_subsets().items()})
    return EXIT_OK
