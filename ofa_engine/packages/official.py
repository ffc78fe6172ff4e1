"""A package of one of the MIT lab's released OFA ImageNet supernets (MobileNetV3 w1.0 / w1.2,
ProxylessNAS w1.3, ResNet50D; and, optionally, its accuracy predictor), with calibration and
evaluation images sampled from an ImageNet folder.

Checkpoints are read with `torch.load(weights_only=True)`: a file holding anything other than
tensors and plain values is refused, never run. The weights are mapped by the family that
recognises them (`NetworkFamily.import_official`: the families `mbv3`, `proxyless` and
`resnet`), the predictor by the space's family (`NetworkFamily.official_predictor`).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from ..families import FAMILIES, family_of
from ..files import exception_reason
from ..space.family import NetworkFamily
from .build import accuracy_report, utc_now, write_package
from .manifest import PackageError

__all__ = ["import_official_package", "load_official_predictor", "read_checkpoint", "MAX_CHECKPOINT_BYTES"]

MAX_CHECKPOINT_BYTES = 1 << 30     # the w1.2 checkpoint is ~40 MB


def read_checkpoint(path: str | os.PathLike, what: str) -> Any:
    """`torch.load(path, weights_only=True)`, or `PackageError` naming `what` and the file."""
    import torch
    path = Path(path)
    if not path.is_file():
        raise PackageError(f"{what} '{path}' does not exist")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise PackageError(f"{what} '{path}' is {path.stat().st_size:,} bytes; allowed: at most "
                           f"{MAX_CHECKPOINT_BYTES:,} (MAX_CHECKPOINT_BYTES)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # weights_only refuses code; corrupt files raise their own types
        if isinstance(exc, pickle.UnpicklingError) and "weights_only" in str(exc).lower():
            reason = "it holds objects other than tensors and plain values, which are never loaded"
        else:
            reason = exception_reason(exc)
        raise PackageError(f"{what} '{path}' cannot be read ({type(exc).__name__}: {reason})") from None


def _official_families() -> list[type]:
    """The registered families that import official checkpoints (they override `import_official`)."""
    return [family for _, family in FAMILIES.items()
            if family.import_official.__func__ is not NetworkFamily.import_official.__func__]


def import_official(state: Any) -> Any:
    """The supernet of an official checkpoint's state dict, imported by the first family that
    recognises it; `ValueError` with each family's reason otherwise (just the reason when only
    one family imports official checkpoints)."""
    reasons = []
    for family in _official_families():
        try:
            return family.import_official(state)
        except ValueError as exc:
            reasons.append((family.family, str(exc)))
    if len(reasons) == 1:
        raise ValueError(reasons[0][1])
    raise ValueError("; ".join(f"{name}: {reason}" for name, reason in reasons) or "no family imports official "
                     "checkpoints")


def load_official_predictor(path: str | os.PathLike, space: Any):
    """Our `AccuracyPredictor` computing the official OFA predictor's function (acc_predictor.pth)."""
    from ..predictors.accuracy import AccuracyPredictor
    state = read_checkpoint(path, "--accuracy-predictor")
    family = family_of(space, fast=False)
    try:
        arrays = family.official_predictor(state, space)
        if arrays is None:
            raise ValueError(f"family '{family.family}' has no official accuracy predictor")
        weights, biases, base_acc = arrays
    except ValueError as exc:
        raise PackageError(f"--accuracy-predictor '{path}': {exc}") from None
    return AccuracyPredictor(space, weights, biases, base_acc, 1.0,
                             metadata={"source": f"the official OFA accuracy predictor '{Path(path).name}' "
                                                 f"(3x400 MLP + base_acc), re-indexed onto our encoding",
                                       "target": "the official predictor's output (ImageNet top-1, fraction)"})


def import_official_package(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, out: str | os.PathLike, *,
                            accuracy_predictor: str | os.PathLike | None = None, calibration_images: int = 2000,
                            evaluation_images: int = 1000, seed: int = 0, image_size: int | None = None,
                            name: str | None = None, command: str | None = None,
                            measure_accuracy: bool = True) -> Path:
    """A package of an official OFA checkpoint (its family and space detected from the keys and
    shapes), with images
    sampled from the ImageNet folder `data_dir` (one sub-folder per class, 1000 classes, sorted as
    torchvision sorts them: the official class order), stored at `image_size` (default: the
    space's largest resolution)."""
    from ..datasets.images import sample_image_folder
    from .build import check_destination
    check_destination(out)
    state = read_checkpoint(checkpoint, "--checkpoint")
    try:
        supernet = import_official(state).eval()
    except ValueError as exc:
        raise PackageError(f"--checkpoint '{checkpoint}': {exc}") from None
    space = supernet.space
    predictor = load_official_predictor(accuracy_predictor, space) if accuracy_predictor is not None else None
    size = image_size if image_size is not None else max(space.resolutions)
    calib, evaluation = sample_image_folder(data_dir, size, 3, calibration_images, evaluation_images, seed)
    if len(calib.classes) != space.num_classes:
        raise PackageError(f"--data '{data_dir}' has {len(calib.classes)} class folders; the official "
                           f"classifier has {space.num_classes} outputs (ImageNet's classes, one folder each)")
    source = (f"{{n}} images sampled from '{data_dir}' (seed {seed}, stratified by class, calibration and "
              f"evaluation disjoint), stored at {size} x {size}")
    provenance = {
        "commands": [command] if command else [],
        "dataset": f"ImageNet (the official OFA supernet); images from '{data_dir}'",
        "date": utc_now(),
        "accuracy_report": accuracy_report(supernet, calib, evaluation) if measure_accuracy else {},
        "notes": (f"weights: the official checkpoint '{Path(checkpoint).name}', mapped onto space '{space.name}' "
                  f"by the '{family_of(space, fast=False).family}' family's import_official; "
                  f"accuracy predictor: {Path(accuracy_predictor).name if accuracy_predictor else 'none'}. "
                  f"Preprocessing: scale, resize to the subnet's size, ImageNet mean / std (the official "
                  f"evaluation resizes to size / 0.875 and crops the centre instead)"),
        "calibration_source": source.format(n=calibration_images),
        "evaluation_source": source.format(n=evaluation_images),
    }
    return write_package(out, supernet, calib, evaluation, name=name or Path(out).stem,
                         labels=list(calib.classes), provenance=provenance, space=space.name,
                         accuracy_predictor=predictor)
