"""Writing supernet packages: from a trained supernet and images, from a training run and an
ImageFolder, and adding an accuracy predictor (or a profile) to an existing package.

A package is written whole into a temporary folder beside its destination, then renamed into
place (or zipped atomically), so an interrupted write leaves nothing half-made; an existing
package is never overwritten. Weights go out as safetensors, images as compressed uint8 .npz.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import secrets
import shutil
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..datasets.images import ImageSet
from ..families import family_of
from ..files import atomic_path, atomic_write, atomic_write_json, check_output_path
from .manifest import MANIFEST_NAME, PACKAGE_FORMAT, PACKAGE_VERSION, PackageError, validate_manifest
from .package import clear_package_cache, load_package

__all__ = ["write_package", "package_from_run", "check_destination", "add_accuracy_predictor", "add_command",
           "add_latency_profile", "latency_profile_file", "writable_folder", "PROFILES_FOLDER", "accuracy_report",
           "sha256_of", "utc_now", "WEIGHTS_FILE", "CALIBRATION_FILE", "EVALUATION_FILE", "PREDICTOR_FILE",
           "DATASET_FILE"]

WEIGHTS_FILE = "supernet.safetensors"
CALIBRATION_FILE = "calibration.npz"
EVALUATION_FILE = "evaluation.npz"
PREDICTOR_FILE = "accuracy-predictor.npz"    # its metadata: accuracy-predictor.json
DATASET_FILE = "accuracy-dataset.csv"
PROFILES_FOLDER = "profiles"                 # <name>.json, and <name>.validation.csv beside it


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def check_destination(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.suffix == ".zip":
        check_output_path(out, "--out")
        if out.exists():
            raise ValueError(f"--out '{out}' exists; a package is never overwritten (remove it, or choose "
                             f"another name)")
        return out
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise ValueError(f"--out '{out}' exists and is not an empty folder; a package is never overwritten")
    if not out.parent.is_dir():
        raise ValueError(f"--out '{out}': folder '{out.parent}' does not exist")
    return out


def _save_images(path: Path, data: ImageSet, num_classes: int) -> None:
    dtype = np.uint8 if num_classes <= 256 else np.int32
    atomic_write(path, lambda fh: np.savez_compressed(fh, images=np.ascontiguousarray(data.images, np.uint8),
                                                      labels=np.asarray(data.labels).astype(dtype)))


def write_package(out: str | os.PathLike, supernet: Any, calibration: ImageSet, evaluation: ImageSet, *,
                  name: str, labels: Sequence[str] | None = None, provenance: Mapping[str, Any] | None = None,
                  predictor_images: str = "evaluation", space: str | None = None,
                  accuracy_predictor: Any = None, extra_files: Mapping[str, str | os.PathLike] | None = None
                  ) -> Path:
    """Write a package of `supernet` (any family's; the manifest names its family) to the folder `out` (or `out.zip`) and
    return its path; the package is then loaded once as a check. `labels`: one per classifier
    output (default: the space's). `space`: a preset name to record instead of the space's
    fields (the official presets). `accuracy_predictor`: an `AccuracyPredictor` to include.
    `extra_files`: package file name -> a file to copy in (e.g. an accuracy-dataset CSV)."""
    from safetensors.torch import save_file
    out = check_destination(out)
    sp = supernet.space
    labels = list(labels if labels is not None else sp.labels)
    if len(labels) != sp.num_classes:
        raise PackageError(f"labels: {len(labels)} names for a classifier of {sp.num_classes} outputs; "
                           f"allowed: one label per output")
    stored = {int(calibration.images.shape[-1]), int(evaluation.images.shape[-1])}
    final = out.with_suffix("") if out.suffix == ".zip" else out
    tmp = final.parent / f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    tmp.mkdir()
    try:
        state = {k: v.detach().float().contiguous() if v.is_floating_point() else v.detach().contiguous()
                 for k, v in supernet.state_dict().items()}
        with atomic_path(tmp / WEIGHTS_FILE) as t:
            save_file(state, str(t), metadata={"format": "ofa-engine/supernet-state-dict", "space": sp.name})
        _save_images(tmp / CALIBRATION_FILE, calibration, sp.num_classes)
        _save_images(tmp / EVALUATION_FILE, evaluation, sp.num_classes)
        space_field: Any = space if space is not None else {
            k: list(v) if isinstance(v, tuple) else v for k, v in sp.to_dict().items()}
        manifest: dict[str, Any] = {
            "format": PACKAGE_FORMAT, "version": PACKAGE_VERSION, "name": name,
            "family": family_of(sp, fast=False).family,
            "space": space_field,
            "weights": {"file": WEIGHTS_FILE, "format": "safetensors", "sha256": sha256_of(tmp / WEIGHTS_FILE)},
            "labels": labels,
            "preprocessing": {"channels": sp.in_channels, "mean": list(sp.mean), "std": list(sp.std),
                              "resolutions": list(sp.resolutions),
                              "stored_size": stored.pop() if len(stored) == 1 else None},
            "calibration": _images_ref(tmp, CALIBRATION_FILE, calibration, provenance, "calibration_source"),
            "evaluation": _images_ref(tmp, EVALUATION_FILE, evaluation, provenance, "evaluation_source"),
            "accuracy_predictor": None,
            "predictor_images": predictor_images,
            "latency_profiles": [],
            "provenance": {k: v for k, v in dict(provenance or {}).items()
                           if k not in ("calibration_source", "evaluation_source")},
        }
        manifest["provenance"].setdefault("date", utc_now())
        for file_name, source in dict(extra_files or {}).items():
            shutil.copyfile(source, tmp / file_name)
        if accuracy_predictor is not None:
            accuracy_predictor.save(tmp / PREDICTOR_FILE)
            manifest["accuracy_predictor"] = {"file": PREDICTOR_FILE, "sha256": sha256_of(tmp / PREDICTOR_FILE)}
        validate_manifest(manifest, f"{out}: {MANIFEST_NAME}")
        atomic_write_json(tmp / MANIFEST_NAME, manifest)
        if out.suffix == ".zip":
            def write(fh):
                with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:   # the .npz are compressed already
                    for path in sorted(tmp.iterdir()):
                        zf.write(path, f"{final.name}/{path.name}")
            atomic_write(out, write)
            shutil.rmtree(tmp)
        else:
            if out.exists():
                out.rmdir()   # an empty folder (checked above)
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    clear_package_cache(out)
    load_package(out)   # what was written loads (and is cached for this process)
    return out


def _images_ref(root: Path, file_name: str, data: ImageSet, provenance: Mapping[str, Any] | None,
                key: str) -> dict[str, Any]:
    return {"file": file_name, "sha256": sha256_of(root / file_name), "count": len(data),
            "source": str(dict(provenance or {}).get(key, ""))}


def accuracy_report(supernet: Any, calibration: ImageSet, evaluation: ImageSet) -> dict[str, Any]:
    """Top-1 of the largest and smallest subnets on `evaluation`, BN recalibrated on `calibration`
    (a network without BatchNorm, such as the ViT, has nothing to recalibrate: "bn" says so)."""
    from ..runtime.evaluation import accuracy, calibrate_bn, has_batchnorm
    space = supernet.space
    has_bn = has_batchnorm(supernet)
    out: dict[str, Any] = {"images": len(evaluation), "calibration_images": len(calibration),
                           "bn": ("recalibrated on the package's calibration images" if has_bn
                                  else "none: the network has no BatchNorm, nothing to recalibrate")}
    for which, cfg in (("largest", space.largest()), ("smallest", space.smallest())):
        net = calibrate_bn(supernet.extract(cfg), calibration.images, space)
        out[which] = round(float(accuracy(net, evaluation.images, evaluation.labels, space)), 6)
    return out


FASHION_MNIST_DATA = "fashion-mnist"
_FMNIST_SOURCES = {
    "calibration_source": "2,000 Fashion-MNIST training images (the 55k train split, never the holdout), seed 1: "
                          "python -m ofa_engine make-subsets",
    "evaluation_source": "2,000 images of the official 10k Fashion-MNIST test set, seed 1: "
                         "python -m ofa_engine make-subsets",
}


def package_from_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike, out: str | os.PathLike, *,
                     calibration_images: int = 500, evaluation_images: int = 500, seed: int = 0,
                     image_size: int | None = None, name: str | None = None,
                     command: str | None = None) -> Path:
    """A package of a finished training run (`RUN_DIR/supernet.pt`) with `calibration_images`
    and `evaluation_images` sampled from the ImageFolder `data_dir` (seeded, stratified by class,
    disjoint), stored at `image_size` (default: the space's largest resolution).

    `data_dir` "fashion-mnist": a run trained on Fashion-MNIST (`train --data fashion-mnist`);
    the package then holds the bundled 2,000 calibration and 2,000 test images (the bundled
    tiny-fmnist package's, `make-subsets`; the counts, seed and size arguments do not apply),
    and its accuracy predictor learns from the 5k holdout, as the bundled package's does."""
    from ..training.checkpoint import load_supernet_file
    run_dir = Path(run_dir)
    check_destination(out)
    weights = run_dir / "supernet.pt"
    if not run_dir.is_dir():
        raise ValueError(f"--run '{run_dir}' is not a folder; allowed: a training run folder (train --out)")
    if not weights.is_file():
        raise ValueError(f"--run '{run_dir}' has no supernet.pt: the run has not finished (resume it with "
                         f"`python -m ofa_engine train --out {run_dir} --resume`)")
    supernet = load_supernet_file(weights)
    space = supernet.space
    log = run_dir / "log.jsonl"
    if str(data_dir) == FASHION_MNIST_DATA:
        calib, evaluation, sources, dataset, predictor_images = _fashion_mnist_images(space)
    else:
        calib, evaluation, sources, dataset = _folder_images(space, data_dir, calibration_images,
                                                             evaluation_images, seed, image_size)
        predictor_images = "evaluation"
    provenance = {
        "commands": [f"python -m ofa_engine train --out {run_dir} ... (training run)"]
                    + ([command] if command else []),
        "dataset": dataset,
        "date": utc_now(),
        "accuracy_report": accuracy_report(supernet, calib, evaluation),
        "notes": (f"weights: {weights} ({sha256_of(weights)}); training log: "
                  f"{log if log.exists() else 'none'}"),
        **sources,
    }
    family = family_of(space, fast=False)
    preset = space.name if space.name in family.preset_names() and family.preset(space.name) == space else None
    return write_package(out, supernet, calib, evaluation, name=name or Path(out).stem,
                         labels=list(calib.classes), provenance=provenance, predictor_images=predictor_images,
                         space=preset)


def _fashion_mnist_images(space: Any) -> tuple[ImageSet, ImageSet, dict[str, str], str, str]:
    from ..datasets.images import load_split
    from ..datasets.labels import FASHION_MNIST_LABELS
    if space.in_channels != 1 or space.num_classes != len(FASHION_MNIST_LABELS) or (
            space.labels and tuple(space.labels) != tuple(FASHION_MNIST_LABELS)):
        raise PackageError(f"--data {FASHION_MNIST_DATA}: the run's space '{space.name}' has {space.in_channels} "
                           f"input channel(s) and labels {list(space.labels)[:3]}..., not Fashion-MNIST's "
                           f"(1 channel, {list(FASHION_MNIST_LABELS)[:3]}...); allowed: a run trained with "
                           f"--data fashion-mnist, or the ImageFolder the run was trained on")
    return (load_split("calib"), load_split("test2k"), dict(_FMNIST_SOURCES),
            "Fashion-MNIST (Debian package dataset-fashion-mnist): 55k training images, 5k holdout "
            "(split seed 0), 10k test", "fashion-mnist-holdout")


def _folder_images(space: Any, data_dir: str | os.PathLike, calibration_images: int, evaluation_images: int,
                   seed: int, image_size: int | None) -> tuple[ImageSet, ImageSet, dict[str, str], str]:
    from ..datasets.images import sample_image_folder
    size = image_size if image_size is not None else max(space.resolutions)
    calib, evaluation = sample_image_folder(data_dir, size, space.in_channels, calibration_images,
                                            evaluation_images, seed)
    if space.labels and tuple(calib.classes) != tuple(space.labels):
        raise PackageError(f"--data '{data_dir}': its classes {list(calib.classes)[:5]} are not the labels the "
                           f"supernet was trained with ({list(space.labels)[:5]}); allowed: the training data's "
                           f"class folders")
    if len(calib.classes) != space.num_classes:
        raise PackageError(f"--data '{data_dir}' has {len(calib.classes)} classes, the supernet's classifier "
                           f"{space.num_classes} outputs")
    source = (f"{{n}} images sampled from the ImageFolder '{data_dir}' (seed {seed}, stratified by class, "
              f"calibration and evaluation disjoint), stored at {size} x {size}")
    return (calib, evaluation, {"calibration_source": source.format(n=calibration_images),
                                "evaluation_source": source.format(n=evaluation_images)},
            f"ImageFolder '{data_dir}' ({len(calib.classes)} classes)")


def _folder_of(package: Any) -> Path:
    if package.bundled:
        return package.path
    if not package.path.is_dir():
        raise ValueError(f"'{package.path}' is a zip; results are written into a package folder (unzip it "
                         f"first)")
    return package.path


def _rewrite_manifest(folder: Path, change) -> None:
    from ..files import read_json
    data = read_json(folder / MANIFEST_NAME)
    change(data)
    validate_manifest(data, str(folder / MANIFEST_NAME))
    atomic_write_json(folder / MANIFEST_NAME, data)
    clear_package_cache(folder)


def add_command(package: Any, command: str) -> None:
    """Record `command` in the package's provenance (a package folder)."""
    folder = _folder_of(package)

    def change(data: dict) -> None:
        commands = data.setdefault("provenance", {}).setdefault("commands", [])
        if command not in commands:
            commands.append(command)
    _rewrite_manifest(folder, change)


def add_accuracy_predictor(package: Any, predictor: Any, metadata: Mapping[str, Any],
                           command: str | None = None) -> Path:
    """Save `predictor` into the package folder and name it in the manifest; returns the .npz."""
    folder = _folder_of(package)
    path = predictor.save(folder / PREDICTOR_FILE, metadata)

    def change(data: dict) -> None:
        data["accuracy_predictor"] = {"file": PREDICTOR_FILE, "sha256": sha256_of(path)}
        if command:
            commands = data.setdefault("provenance", {}).setdefault("commands", [])
            commands.append(command)
        quality = metadata.get("quality")
        if quality:
            data.setdefault("provenance", {}).setdefault("accuracy_report", {})["predictor"] = dict(quality)
    _rewrite_manifest(folder, change)
    return path


def writable_folder(package: Any) -> Path:
    """The folder a command writes into; `PackageError` for a zip (read-only)."""
    if not package.bundled and not package.path.is_dir():
        raise PackageError(f"--supernet '{package.path}' is a zip, which is read-only; unzip it and pass the "
                           f"folder to write into the package (or give --out)")
    return _folder_of(package)


def latency_profile_file(name: str) -> str:
    """Where a package keeps the latency profile `name` (relative to the package folder)."""
    return f"{PROFILES_FOLDER}/{name}.json"


def add_latency_profile(package: Any, profile: Any, command: str | None = None,
                        validation_csv: str | os.PathLike | None = None) -> Path:
    """Write `profile` (a `DeviceProfile` fitted for the package's space) into the package folder
    as profiles/<name>.json and name it, with its digest, in the manifest's `latency_profiles`;
    returns the file. `validation_csv`: its held-out predictions, moved beside it (charts only;
    not in the manifest). Refused for a zip, a profile of another space, or a name the package
    already has; if the manifest cannot be rewritten, the files written are removed."""
    folder = writable_folder(package)
    if not profile.applies_to(package.space):
        raise PackageError(f"profile '{profile.name}' is for space '{profile.space}', not the package's "
                           f"'{package.space.name}'")
    taken = {p.name for p in package.latency_profiles}
    file_name = latency_profile_file(profile.name)
    listed = {ref.file for ref in package.manifest.latency_profiles}
    if profile.name in taken or file_name in listed:
        raise PackageError(f"{folder}: the package already has a latency profile '{profile.name}'; allowed: "
                           f"another --name")
    (folder / PROFILES_FOLDER).mkdir(exist_ok=True)
    path = profile.save(folder / file_name)
    written = [path]
    if validation_csv is not None:
        target = folder / PROFILES_FOLDER / f"{profile.name}.validation.csv"
        atomic_write(target, lambda fh: fh.write(Path(validation_csv).read_bytes()))
        written.append(target)

    def change(data: dict) -> None:
        data.setdefault("latency_profiles", []).append({"file": file_name, "sha256": sha256_of(path)})
        if command:
            commands = data.setdefault("provenance", {}).setdefault("commands", [])
            commands.append(command)
    before = (folder / MANIFEST_NAME).read_bytes()
    try:
        _rewrite_manifest(folder, change)
        load_package(folder)   # the package loads with it (and is cached again)
    except BaseException:
        # Back to the package as it was: its manifest, without the files written here.
        atomic_write(folder / MANIFEST_NAME, lambda fh: fh.write(before))
        clear_package_cache(folder)
        for item in written:
            item.unlink(missing_ok=True)
        raise
    return path
