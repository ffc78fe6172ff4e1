"""Commands on supernet packages: package (from a training run), import-official, packages (list)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from .args import EXIT_OK, print_json, register

# The package module (torch, torchvision) is imported inside the commands, after the arguments
# are checked.


def _positive(flag: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{flag} = {value}; allowed: a positive number of images")


def _image_size(value: int | None) -> None:
    if value is not None and not 8 <= value <= 1024:
        raise ValueError(f"--image-size {value}; allowed: 8..1024 pixels")


def _command(name: str, args: argparse.Namespace, flags: tuple[str, ...]) -> str:
    """The command line that reproduces this call (recorded in the package's provenance)."""
    parts = ["python", "-m", "ofa_engine", name]
    for flag in flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None and value is not False:
            parts += [flag] if value is True else [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def _check_out(out: str) -> None:
    path = Path(out)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise ValueError(f"--out '{out}' exists; a package is never overwritten (remove it, or choose another name)")
    if not path.parent.is_dir():
        raise ValueError(f"--out '{out}': folder '{path.parent}' does not exist")


# ---------------------------------------------------------------------- package
def _package_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="a finished training run (train --out)")
    parser.add_argument("--data", required=True, metavar="IMAGEFOLDER",
                        help="the ImageFolder (one sub-folder per class) to sample the images from, or "
                             "'fashion-mnist' (a run trained on it: the bundled 2k calibration and test images)")
    parser.add_argument("--out", required=True, metavar="PKG", help="package folder to create, or PKG.zip")
    parser.add_argument("--calibration-images", type=int, default=500, metavar="N",
                        help="images for BN recalibration (default 500)")
    parser.add_argument("--evaluation-images", type=int, default=500, metavar="M",
                        help="images for the measured accuracy (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified sample (default 0)")
    parser.add_argument("--image-size", type=int, help="stored image size (default: the largest resolution)")
    parser.add_argument("--name", help="package name (default: the --out folder's name)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


@register("package", "make a supernet package from a training run and an ImageFolder", _package_arguments)
def run_package(args: argparse.Namespace) -> int:
    _positive("--calibration-images", args.calibration_images)
    _positive("--evaluation-images", args.evaluation_images)
    _image_size(args.image_size)
    _check_out(args.out)
    run_dir = Path(args.run)
    if not (run_dir / "supernet.pt").is_file():   # before torch loads
        raise ValueError(f"--run '{args.run}' " + ("has no supernet.pt: the run has not finished (resume it "
                         f"with `python -m ofa_engine train --out {args.run} --resume`)" if run_dir.is_dir()
                         else "is not a folder; allowed: a training run folder (train --out)"))
    if args.data != "fashion-mnist" and not Path(args.data).is_dir():
        raise ValueError(f"--data '{args.data}' is not a folder; allowed: an ImageFolder (one sub-folder per "
                         f"class), or 'fashion-mnist'")
    import torch

    from ..packages import load_package
    from ..packages.build import package_from_run
    torch.set_num_threads(max(1, args.threads))
    sampling = ("--calibration-images", "--evaluation-images", "--seed", "--image-size")
    # (the sampling options do not apply to the bundled Fashion-MNIST images: not recorded then)
    flags = ("--run", "--data", "--out", *(sampling if args.data != "fashion-mnist" else ()), "--name")
    path = package_from_run(args.run, args.data, args.out, calibration_images=args.calibration_images,
                            evaluation_images=args.evaluation_images, seed=args.seed, image_size=args.image_size,
                            name=args.name, command=_command("package", args, flags))
    print_json({"package": str(path), **_brief(load_package(path))})
    return EXIT_OK


def _brief(package) -> dict:
    summary = package.summary()
    return {k: summary[k] for k in ("name", "space", "channels", "classes", "labels", "resolutions",
                                    "calibration_images", "evaluation_images", "accuracy_source")} | {
        "accuracy_report": summary["provenance"].get("accuracy_report", {})}


# ---------------------------------------------------------------------- import-official
def _official_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PTH",
                        help="official checkpoint, as the lab names them: ofa_mbv3_d234_e346_k357_w1.0 / _w1.2, "
                             "ofa_proxyless_d234_e346_k357_w1.3 or ofa_resnet50 (family detected from its keys; "
                             "read weights_only)")
    parser.add_argument("--accuracy-predictor", metavar="PTH",
                        help="the official accuracy predictor of that supernet (3x400 MLP + base_acc: acc_predictor.pth for "
                             "MobileNetV3, ofa_resnet50_acc_predictor.pth for ResNet50D), imported into the package")
    parser.add_argument("--data", required=True, metavar="IMAGENET_DIR",
                        help="an ImageNet folder (1000 class sub-folders, e.g. the validation set)")
    parser.add_argument("--out", required=True, metavar="PKG", help="package folder to create, or PKG.zip")
    parser.add_argument("--calibration-images", type=int, default=2000, metavar="N", help="default 2000")
    parser.add_argument("--evaluation-images", type=int, default=1000, metavar="M", help="default 1000")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified sample (default 0)")
    parser.add_argument("--image-size", type=int, help="stored image size (default: 224, the largest resolution)")
    parser.add_argument("--name", help="package name (default: the --out folder's name)")
    parser.add_argument("--no-accuracy-report", action="store_true",
                        help="skip measuring the largest and smallest subnets on the evaluation images")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


@register("import-official", "make a package of an official OFA ImageNet checkpoint (MobileNetV3, "
          "ProxylessNAS or ResNet50D)",
          _official_arguments)
def run_import_official(args: argparse.Namespace) -> int:
    _positive("--calibration-images", args.calibration_images)
    _positive("--evaluation-images", args.evaluation_images)
    _image_size(args.image_size)
    _check_out(args.out)
    for flag, value in (("--checkpoint", args.checkpoint), ("--accuracy-predictor", args.accuracy_predictor)):
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{flag} '{value}' does not exist")
    if not Path(args.data).is_dir():
        raise ValueError(f"--data '{args.data}' is not a folder; allowed: an ImageNet folder of class sub-folders")
    import torch

    from ..packages import load_package
    from ..packages.official import import_official_package
    torch.set_num_threads(max(1, args.threads))
    path = import_official_package(args.checkpoint, args.data, args.out, accuracy_predictor=args.accuracy_predictor,
                                   calibration_images=args.calibration_images,
                                   evaluation_images=args.evaluation_images, seed=args.seed,
                                   image_size=args.image_size, name=args.name, command=_command(
                                       "import-official", args, (
                                           "--checkpoint", "--accuracy-predictor", "--data", "--out",
                                           "--calibration-images", "--evaluation-images", "--seed", "--image-size",
                                           "--name", "--no-accuracy-report")),
                                   measure_accuracy=not args.no_accuracy_report)
    brief = _brief(load_package(path))
    brief["labels"] = brief["labels"][:5] + (["..."] if len(brief["labels"]) > 5 else [])
    print_json({"package": str(path), **brief})
    return EXIT_OK


# ---------------------------------------------------------------------- packages
def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", metavar="FOLDER",
                        help="a folder of packages to list besides the bundled ones (default: $OFA_SUPERNETS)")


@register("packages", "list the bundled supernet packages and those in a folder (JSON)", _list_arguments)
def run_packages(args: argparse.Namespace) -> int:
    from ..packages import list_packages, packages_dir_from_env
    folder = Path(args.dir) if args.dir else packages_dir_from_env()
    rows = []
    for entry in list_packages(folder):
        row = {"name": entry.name, "path": str(entry.path), "source": entry.source}
        if entry.manifest is not None:
            m = entry.manifest
            row |= {"space": m.space if isinstance(m.space, str) else m.space.get("name"),
                    "channels": m.preprocessing.channels, "classes": len(m.labels),
                    "accuracy_predictor": m.accuracy_predictor is not None}
        else:
            row["error"] = entry.error
        rows.append(row)
    print_json({"packages": rows})
    return EXIT_OK
