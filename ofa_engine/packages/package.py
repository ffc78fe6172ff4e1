"""Loading supernet packages: one loader for a bundled name, a folder or a .zip.

`load_package(name_or_path)` validates the manifest, then every file it names: the weights
(safetensors, or an ofa_engine supernet file read with `torch.load(weights_only=True)`; either
way no code from the file runs), the calibration and evaluation images (.npz read with
`allow_pickle=False`), the optional accuracy predictor and latency profiles. Anything wrong is
a `PackageError` naming the file and the field; nothing is half-loaded. A package is loaded
once per process (by its resolved path) and is read-only afterwards: its image arrays are not
writeable and every subnet the pipeline needs is extracted into a new module.

A .zip is read without trusting it: at most MAX_ZIP_MEMBERS members, no member outside the
package (no '..', no absolute path, no link), sizes bounded before anything is decompressed
(MAX_PACKAGE_BYTES in all, MAX_MEMBER_BYTES each).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..datasets.images import ASSETS_DIR, ImageSet
from ..families import family_named, family_of
from ..files import exception_reason, read_json
from .manifest import MANIFEST_NAME, ImagesRef, Manifest, PackageError, check_member_name, validate_manifest

__all__ = ["SupernetPackage", "PackageEntry", "load_package", "load_weights", "list_packages", "packages_dir_from_env",
           "bundled_packages", "clear_package_cache", "BUNDLED_DIR", "ENV_VAR", "MAX_PACKAGE_BYTES",
           "MAX_MEMBER_BYTES", "MAX_ZIP_MEMBERS", "MAX_IMAGES_BYTES"]

BUNDLED_DIR = ASSETS_DIR / "supernets"
ENV_VAR = "OFA_SUPERNETS"
MAX_PACKAGE_BYTES = 2 << 30      # a zip's members together, uncompressed (ImageNet w1.2: ~150 MB)
MAX_MEMBER_BYTES = 1 << 30       # one file of a package
MAX_ZIP_MEMBERS = 1000
MAX_IMAGES_BYTES = 1 << 30       # one images .npz, decompressed


@dataclass(frozen=True, eq=False)
class SupernetPackage:
    """A loaded, validated package (read-only). `space` is the weights' space with the manifest's
    labels and preprocessing; `supernet` is in eval mode; `accuracy_predictor` is None when the
    package has none (the search then ranks by MACs: `accuracy_source`)."""

    name: str
    origin: str                      # the folder or zip it was loaded from, or "bundled:<name>"
    path: Path                       # the folder or the .zip
    manifest: Manifest
    space: Any                       # its family's (manifest.family) space object
    supernet: Any = field(repr=False)
    calibration: ImageSet = field(repr=False)
    evaluation: ImageSet = field(repr=False)
    accuracy_predictor: Any = field(default=None, repr=False)
    latency_profiles: tuple = field(default=(), repr=False)

    @property
    def has_weights(self) -> bool:
        """False for a package loaded with `load_package(..., weights=False)`: everything but the
        supernet (`supernet` is None; `load_weights(package)` reads only the weights)."""
        return self.supernet is not None

    @property
    def bundled(self) -> bool:
        return self.origin.startswith("bundled:")

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.manifest.labels)

    @property
    def num_classes(self) -> int:
        return len(self.manifest.labels)

    @property
    def channels(self) -> int:
        return self.manifest.preprocessing.channels

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(self.manifest.preprocessing.resolutions)

    @property
    def provenance(self) -> dict[str, Any]:
        return self.manifest.provenance.model_dump(mode="json")

    @property
    def accuracy_source(self) -> str:
        """'predictor' when the package has an accuracy predictor, else 'proxy: MACs'."""
        return "predictor" if self.accuracy_predictor is not None else "proxy: MACs"

    def predictor_or_proxy(self) -> Any:
        """The accuracy predictor, or the explicit MACs proxy (`MacsProxy`) when there is none."""
        if self.accuracy_predictor is not None:
            return self.accuracy_predictor
        from ..predictors.accuracy import MacsProxy
        return MacsProxy(self.space)

    def summary(self) -> dict[str, Any]:
        """What an app shows about the package (JSON-safe)."""
        return {"name": self.name, "origin": self.origin, "family": self.manifest.family,
                "space": self.space.name, "channels": self.channels, "classes": self.num_classes,
                "labels": list(self.labels), "resolutions": list(self.resolutions),
                "calibration_images": len(self.calibration), "evaluation_images": len(self.evaluation),
                "accuracy_source": self.accuracy_source,
                "latency_profiles": [getattr(p, "name", str(p)) for p in self.latency_profiles],
                "provenance": self.provenance}


@dataclass(frozen=True)
class PackageEntry:
    """One package found by `list_packages`: its manifest (read and validated, weights not
    loaded), or the error that makes it unusable."""

    name: str
    path: Path
    source: str                      # "bundled" or the folder it was found in
    manifest: Manifest | None
    error: str | None = None


# ---------------------------------------------------------------------- resolving
def bundled_packages() -> dict[str, Path]:
    """Bundled package name -> its folder (assets/supernets/<name>/ with a manifest.json)."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(BUNDLED_DIR.iterdir()) if (p / MANIFEST_NAME).is_file()}


def packages_dir_from_env(environ: Any = None) -> Path | None:
    """The folder named by OFA_SUPERNETS (None when unset or empty); `PackageError` when it names
    something that is not a folder."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise PackageError(f"{ENV_VAR}={value!r} is not a folder; allowed: a folder of supernet packages "
                           f"(sub-folders with a {MANIFEST_NAME}, or .zip files)")
    return path


def _resolve(name_or_path: str | os.PathLike) -> tuple[Path, str]:
    key = os.fspath(name_or_path)
    bundled = bundled_packages()
    if key in bundled:
        return bundled[key], f"bundled:{key}"
    path = Path(key).expanduser()
    if not key or not path.exists():
        raise PackageError(f"supernet package '{key}' is neither a bundled package "
                           f"({', '.join(bundled) or 'none'}) nor an existing folder or .zip")
    if path.is_dir():
        if not (path / MANIFEST_NAME).is_file():
            raise PackageError(f"{path}: no {MANIFEST_NAME}; a supernet package is a folder with a "
                               f"{MANIFEST_NAME} (docs/packages.md), or a .zip of one")
        return path.resolve(), str(path)
    if zipfile.is_zipfile(path):
        return path.resolve(), str(path)
    raise PackageError(f"{path}: not a supernet package; allowed: a folder with a {MANIFEST_NAME} "
                       f"or a .zip of one")


_CACHE: dict[tuple[str, bool], SupernetPackage] = {}
_CACHE_LOCK = threading.Lock()
_LOAD_LOCKS: dict[tuple[str, bool], threading.Lock] = {}


def load_package(name_or_path: str | os.PathLike | SupernetPackage, *, weights: bool = True) -> SupernetPackage:
    """The package of a bundled name ('tiny-fmnist'), a folder or a .zip, loaded and validated
    once per process (later calls return the same object). `PackageError` (a ValueError) names
    the file and the field of anything wrong.

    `weights=False`: everything but the supernet (manifest, space, images, predictor, profiles,
    each validated; the weights file only found and its digest checked), without importing
    torch: what a page showing budgets and predictions needs, in a fraction of the time. Its
    `supernet` is None; the pipeline reads the weights alone when it needs them
    (`load_weights`, `pipeline.resources`). A loaded package passed in is returned as it is."""
    if isinstance(name_or_path, SupernetPackage):
        return name_or_path
    path, origin = _resolve(name_or_path)
    key = (str(path), bool(weights))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        lock = _LOAD_LOCKS.setdefault(key, threading.Lock())
    with lock:   # one load per package, other packages load meanwhile
        with _CACHE_LOCK:
            if key in _CACHE:
                return _CACHE[key]
        package = (_load_zip(path, origin, weights) if path.is_file()
                   else _load_folder(path, origin, str(path), weights))
        with _CACHE_LOCK:
            _CACHE[key] = package
        return package


def load_weights(package: SupernetPackage) -> Any:
    """The trained supernet (eval mode) of `package`. A package loaded with its weights has it;
    for one loaded with `weights=False`, only its weights file is read (for a zip, that one
    member), its digest checked and the network checked against the manifest, once per process:
    the package with weights is then cached too, sharing the images and predictor already
    loaded, so `load_package(package.path)` returns it without loading anything again.
    `PackageError` as `load_package` raises it (a weights file changed since: its digest)."""
    if package.supernet is not None:
        return package.supernet
    key = (str(package.path), True)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key].supernet
        lock = _LOAD_LOCKS.setdefault(key, threading.Lock())
    with lock:
        with _CACHE_LOCK:
            if key in _CACHE:
                return _CACHE[key].supernet
        net = (_zip_weights(package) if package.path.is_file()
               else _folder_weights(package.path, package.manifest, package.space, str(package.path)))
        with _CACHE_LOCK:
            _CACHE[key] = dataclasses.replace(package, supernet=net, space=net.space)
        return net


def clear_package_cache(path: str | os.PathLike | None = None) -> None:
    """Forget loaded packages (all, or the one at `path`): after a command wrote into one."""
    with _CACHE_LOCK:
        if path is None:
            _CACHE.clear()
        else:
            for weights in (True, False):
                _CACHE.pop((str(Path(path).resolve()), weights), None)


def list_packages(extra_dir: str | os.PathLike | None = None) -> list[PackageEntry]:
    """The bundled packages, then those in `extra_dir` (sub-folders with a manifest.json, and
    .zip files; e.g. `packages_dir_from_env()`), by name. Only manifests are read; a package
    whose manifest is broken is listed with its error, so one bad file hides no other."""
    entries = [_entry(name, path, "bundled") for name, path in bundled_packages().items()]
    if extra_dir is not None:
        folder = Path(extra_dir)
        if not folder.is_dir():
            raise PackageError(f"'{folder}' is not a folder of supernet packages")
        for path in sorted(folder.iterdir())[:MAX_ZIP_MEMBERS]:
            if (path.is_dir() and (path / MANIFEST_NAME).is_file()) or (path.suffix == ".zip" and path.is_file()):
                entries.append(_entry(path.stem if path.is_file() else path.name, path, str(folder)))
    return entries


def _entry(name: str, path: Path, source: str) -> PackageEntry:
    try:
        if path.is_dir():
            manifest = _read_manifest(path / MANIFEST_NAME, str(path / MANIFEST_NAME))
        else:
            with zipfile.ZipFile(path) as zf:
                prefix = _zip_layout(zf, str(path))[0]
                info = zf.getinfo(prefix + MANIFEST_NAME)
                if info.file_size > (1 << 20):
                    raise PackageError(f"{path}:{info.filename} is {info.file_size:,} bytes; the limit is 1 MiB")
                from ..files import loads_json
                data = loads_json(zf.read(info), f"{path}:{info.filename}")
                manifest = validate_manifest(data, f"{path}:{info.filename}")
        return PackageEntry(manifest.name, path, source, manifest)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        return PackageEntry(name, path, source, None, str(exc))


# ---------------------------------------------------------------------- zip
def _zip_layout(zf: zipfile.ZipFile, where: str) -> tuple[str, list[zipfile.ZipInfo]]:
    """(prefix, members): the folder inside the zip that holds manifest.json ('' or 'name/'),
    after checking every member's name, kind, count and size."""
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise PackageError(f"{where}: {len(infos):,} members; allowed: at most {MAX_ZIP_MEMBERS} (MAX_ZIP_MEMBERS)")
    total = 0
    for info in infos:
        name = info.filename[:-1] if info.is_dir() else info.filename
        try:
            check_member_name(name)
        except ValueError as exc:
            raise PackageError(f"{where}: member {info.filename!r} is refused; allowed: {exc}") from None
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise PackageError(f"{where}: member {info.filename!r} is a symbolic link; allowed: plain files")
        if info.file_size > MAX_MEMBER_BYTES:
            raise PackageError(f"{where}: member {info.filename!r} is {info.file_size:,} bytes "
                               f"uncompressed; allowed: at most {MAX_MEMBER_BYTES:,} (MAX_MEMBER_BYTES)")
        total += info.file_size
    if total > MAX_PACKAGE_BYTES:
        raise PackageError(f"{where}: {total:,} bytes uncompressed; allowed: at most {MAX_PACKAGE_BYTES:,} "
                           f"(MAX_PACKAGE_BYTES)")
    names = {i.filename for i in infos}
    if MANIFEST_NAME in names:
        prefix = ""
    else:
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) != 1 or f"{next(iter(tops))}/{MANIFEST_NAME}" not in names:
            raise PackageError(f"{where}: no {MANIFEST_NAME} at the top of the zip or in its one folder")
        prefix = next(iter(tops)) + "/"
    return prefix, [i for i in infos if i.filename.startswith(prefix) and not i.is_dir()]


def _load_zip(path: Path, origin: str, weights: bool = True) -> SupernetPackage:
    package = _from_zip(path, lambda root, label: _load_folder(root, origin, label, weights))
    return dataclasses.replace(package, path=path)


def _from_zip(path: Path, load: Callable[[Path, str], Any], only: str | None = None) -> Any:
    """`load(root, label)` on the package members of the zip `path` (all, or only the one named
    `only`), extracted into a temporary folder `root`; errors name the zip, not that folder."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"{path}: not a readable zip ({exc})") from None
    with zf, tempfile.TemporaryDirectory(prefix="ofa-package-") as tmp:
        prefix, members = _zip_layout(zf, str(path))
        root = Path(tmp)
        for info in members:
            name = info.filename[len(prefix):]
            if only is None or name == only:
                _extract(zf, info, root / name, path)
        try:
            return load(root, f"{path}:{prefix}".rstrip("/:") + ":")
        except PackageError as exc:   # name the zip, not the temporary folder
            raise PackageError(str(exc).replace(f"{root}/", f"{path}:{prefix}").replace(str(root), str(path))) from None


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, path: Path) -> None:
    """Write one member to `target`, reading no more than its declared size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(info) as src, open(target, "wb") as dst:
        left = info.file_size
        while True:   # bounded by the declared size, whatever the stream holds
            chunk = src.read(min(1 << 20, left + 1))
            if not chunk:
                break
            left -= len(chunk)
            if left < 0:
                raise PackageError(f"{path}: member {info.filename!r} holds more than its declared size")
            dst.write(chunk)


def _zip_weights(package: SupernetPackage) -> Any:
    """The supernet of a zip package loaded without it: only the weights member is extracted."""
    manifest, space = package.manifest, package.space
    return _from_zip(package.path, lambda root, label: _folder_weights(root, manifest, space, label),
                     only=manifest.weights.file)


# ---------------------------------------------------------------------- folder
def _read_manifest(path: Path, where: str) -> Manifest:
    try:
        data = read_json(path, where)
    except OSError as exc:
        raise PackageError(f"{where} cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise PackageError(str(exc)) from None
    return validate_manifest(data, where)


def _member(root: Path, name: str, where: str, field: str, label: str) -> Path:
    """The file `name` of the package, inside `root` (no link out of it), existing."""
    path = root / name
    display = f"{label}{name}" if label.endswith(":") else str(path)
    if not path.is_file():
        raise PackageError(f"{where}: field '{field}' names '{name}', which is missing ({display})")
    real, real_root = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    if real_root not in real.parents:
        raise PackageError(f"{where}: field '{field}': '{name}' leads outside the package")
    if path.stat().st_size > MAX_MEMBER_BYTES:
        raise PackageError(f"{display}: {path.stat().st_size:,} bytes; allowed: at most {MAX_MEMBER_BYTES:,} "
                           f"(MAX_MEMBER_BYTES)")
    return path


def _check_digest(path: Path, expected: str | None, display: str, field: str) -> None:
    if expected is None:
        return
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    if "sha256:" + h.hexdigest() != expected:
        raise PackageError(f"{display}: its sha256 is not the one in field '{field}.sha256'; the file "
                           f"was changed or corrupted")


def _load_folder(root: Path, origin: str, label: str, weights: bool = True) -> SupernetPackage:
    where = f"{label}{MANIFEST_NAME}" if label.endswith(":") else str(root / MANIFEST_NAME)
    manifest = _read_manifest(root / MANIFEST_NAME, where)

    def show(name: str) -> str:
        return f"{label}{name}" if label.endswith(":") else str(root / name)

    space = _space(manifest, where)
    supernet = None
    if weights:
        supernet = _folder_weights(root, manifest, space, label)
        space = supernet.space   # the manifest's (checked equal), on the loaded network
    else:   # found and its digest checked, not loaded
        weights_path = _member(root, manifest.weights.file, where, "weights.file", label)
        _check_digest(weights_path, manifest.weights.sha256, show(manifest.weights.file), "weights")
    images = {}
    for part in ("calibration", "evaluation"):
        ref: ImagesRef = getattr(manifest, part)
        path = _member(root, ref.file, where, f"{part}.file", label)
        _check_digest(path, ref.sha256, show(ref.file), part)
        images[part] = _load_images(path, ref, manifest, space, show(ref.file), f"{part}.count", where)
    predictor = None
    if manifest.accuracy_predictor is not None:
        ref = manifest.accuracy_predictor
        path = _member(root, ref.file, where, "accuracy_predictor.file", label)
        _check_digest(path, ref.sha256, show(ref.file), "accuracy_predictor")
        from ..predictors.accuracy import load_accuracy_predictor
        try:
            predictor = load_accuracy_predictor(path, space=space)
        except ValueError as exc:
            raise PackageError(f"field 'accuracy_predictor': {exc}") from None
    profiles = []
    for i, ref in enumerate(manifest.latency_profiles):
        path = _member(root, ref.file, where, f"latency_profiles[{i}].file", label)
        _check_digest(path, ref.sha256, show(ref.file), f"latency_profiles[{i}]")
        from ..devices.profiles import load_profile
        try:
            # Bound to the package's space (which may be its own, not a preset); a profile of
            # another space is refused.
            profile = load_profile(path, space=space)
        except (ValueError, OSError) as exc:
            raise PackageError(f"{show(ref.file)} (field 'latency_profiles[{i}]'): {exc}") from None
        profiles.append(profile)
    return SupernetPackage(manifest.name, origin, root, manifest, space, supernet, images["calibration"],
                           images["evaluation"], predictor, tuple(profiles))


def _folder_weights(root: Path, manifest: Manifest, space: Any, label: str) -> Any:
    """The supernet of the weights file in folder `root`: found, its digest checked, loaded and
    checked against the manifest (`_load_weights`)."""
    where = f"{label}{MANIFEST_NAME}" if label.endswith(":") else str(root / MANIFEST_NAME)
    name = manifest.weights.file
    weights_path = _member(root, name, where, "weights.file", label)
    display = f"{label}{name}" if label.endswith(":") else str(root / name)
    _check_digest(weights_path, manifest.weights.sha256, display, "weights")
    return _load_weights(weights_path, manifest, space, where, display)


def _space(manifest: Manifest, where: str) -> Any:
    """The manifest's space (a preset or its fields, read by the manifest's family) with the
    manifest's labels and preprocessing."""
    family = family_named(manifest.family)
    if isinstance(manifest.space, str):
        try:
            base = family.preset(manifest.space)
        except ValueError as exc:
            raise PackageError(f"{where}: field 'space': {exc}") from None
    else:
        try:
            base = family.space_from_dict(manifest.space, f"{where}: field 'space'")
        except ValueError as exc:
            raise PackageError(str(exc)) from None
    pre = manifest.preprocessing
    if pre.channels != base.in_channels:
        raise PackageError(f"{where}: field 'preprocessing.channels' = {pre.channels}, but space "
                           f"'{base.name}' takes {base.in_channels} input channel(s)")
    for name in ("mean", "std"):
        if len(getattr(pre, name)) != pre.channels:
            raise PackageError(f"{where}: field 'preprocessing.{name}' has {len(getattr(pre, name))} "
                               f"values; allowed: one per channel ({pre.channels})")
    if tuple(pre.resolutions) != tuple(base.resolutions):
        raise PackageError(f"{where}: field 'preprocessing.resolutions' = {pre.resolutions}, but space "
                           f"'{base.name}' has resolutions {list(base.resolutions)}")
    # Labels that do not fit the classifier are refused where the weights are read, naming both
    # (`_load_weights`); until then the space keeps its own.
    labels = tuple(manifest.labels) if len(manifest.labels) == base.num_classes else base.labels
    try:
        return family.space_from_dict({**base.to_dict(), "mean": tuple(float(v) for v in pre.mean),
                                       "std": tuple(float(v) for v in pre.std), "labels": labels},
                                      f"{where}: field 'space'")
    except ValueError as exc:
        raise PackageError(str(exc)) from None


def _labels_error(where: str, manifest: Manifest, outputs: int, display: str) -> PackageError:
    return PackageError(f"{where}: field 'labels' has {len(manifest.labels)} names, but the classifier in "
                        f"{display} has {outputs} outputs; allowed: one label per output")


def _load_weights(path: Path, manifest: Manifest, space: Any, where: str, display: str):
    import torch

    family = family_of(space, fast=False)
    if manifest.weights.format == "torch":
        from ..training.checkpoint import load_supernet_file
        try:
            net = load_supernet_file(path)
        except FileNotFoundError as exc:
            raise PackageError(str(exc)) from None
        except ValueError as exc:
            raise PackageError(f"{display} (field 'weights'): {exc}") from None
        theirs = net.space
        if theirs.num_classes != len(manifest.labels):
            raise _labels_error(where, manifest, theirs.num_classes, display)
        if theirs.labels and tuple(theirs.labels) != tuple(manifest.labels):
            raise PackageError(f"{where}: field 'labels' differs from the labels stored in {display} "
                               f"({list(theirs.labels)[:5]}...)")
        ours = space
        if family_of(theirs, fast=False).family != family.family:
            raise PackageError(f"{display} (field 'weights') is a supernet of family "
                               f"'{family_of(theirs, fast=False).family}'; field 'family' is '{family.family}'")
        a, b = theirs.to_dict(), ours.to_dict()
        differ = [k for k in a if k not in ("labels", "name") and a[k] != b[k]]
        if differ or theirs.name != ours.name:
            k = differ[0] if differ else "name"
            raise PackageError(f"{display} (field 'weights') is a supernet of another architecture than field "
                               f"'space': '{k}' is {a[k]!r} in the weights, {b[k]!r} in the manifest")
        net.space = ours
        return net.eval()
    # safetensors: a plain state dict, never code.
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise PackageError(f"{display} (field 'weights'): not a readable safetensors file "
                           f"({type(exc).__name__}: {exception_reason(exc)})") from None
    classifier = state.get("classifier.weight")
    if classifier is not None and classifier.dim() == 2 and classifier.shape[0] != len(manifest.labels):
        raise _labels_error(where, manifest, int(classifier.shape[0]), display)
    if space.num_classes != len(manifest.labels):
        raise PackageError(f"{where}: field 'labels' has {len(manifest.labels)} names, but field 'space' "
                           f"has {space.num_classes} classes; allowed: one label per class")
    with torch.device("meta"):   # shapes only: nothing allocated, no random draws
        problems = family.supernet_problems(state)
    if problems:
        raise PackageError(f"{display} (field 'weights') holds weights of another architecture than "
                           f"space '{space.name}': {'; '.join(problems)}")
    net = family.build_supernet()
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return net.eval()


def _load_images(path: Path, ref: ImagesRef, manifest: Manifest, space: Any, display: str,
                 count_field: str, where: str) -> ImageSet:
    try:
        with zipfile.ZipFile(path) as zf:
            size = sum(i.file_size for i in zf.infolist())
            if size > MAX_IMAGES_BYTES:
                raise PackageError(f"{display}: {size:,} bytes decompressed; allowed: at most "
                                   f"{MAX_IMAGES_BYTES:,} (MAX_IMAGES_BYTES)")
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("images", "labels") if k not in f.files]
            if missing:
                raise PackageError(f"{display}: missing array(s) {missing}; expected 'images' and 'labels'")
            images, labels = f["images"], f["labels"]
    except PackageError:
        raise
    except Exception as exc:   # zip, npy header, "Object arrays cannot be loaded" all differ
        raise PackageError(f"{display}: not a readable .npz of uint8 images ({type(exc).__name__}: "
                           f"{exception_reason(exc)})") from None
    c = space.in_channels
    shape_ok = (images.ndim == 3 and c == 1) or (images.ndim == 4 and images.shape[1] == c)
    if images.dtype != np.uint8 or not shape_ok or min(images.shape[1:], default=0) < 1 \
            or max(images.shape[-2:]) > 1024:
        allowed = "(N, H, W)" if c == 1 else f"(N, {c}, H, W)"
        raise PackageError(f"{display}: field 'images' has shape {tuple(images.shape)} and dtype {images.dtype}; "
                           f"allowed: uint8 {allowed} with H, W 1..1024 ({c} channel(s), preprocessing.channels)")
    if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise PackageError(f"{display}: field 'labels' has shape {tuple(labels.shape)} and dtype {labels.dtype}; "
                           f"allowed: integers, one per image ({len(images)})")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(manifest.labels)):
        raise PackageError(f"{display}: field 'labels' holds class {int(labels.max())}; allowed: "
                           f"0..{len(manifest.labels) - 1} (one per name in the manifest's 'labels')")
    if len(images) != ref.count:
        raise PackageError(f"{where}: field '{count_field}' = {ref.count}, but {display} holds {len(images)} images")
    images = np.ascontiguousarray(images)
    labels = labels.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return ImageSet(images, labels, tuple(manifest.labels))
