"""The manifest of a supernet package (`manifest.json`), declared once with pydantic.

A package is one folder (or a .zip of it) that holds everything the pipeline needs for one
trained supernet: its weights, labels and preprocessing, calibration and evaluation images,
optionally an accuracy predictor and latency profiles, and its provenance. The format and
every field: docs/packages.md.

`validate_manifest` turns the first problem pydantic finds into a `PackageError` naming the
file, the field (dotted path), the value and what is allowed; pydantic's own text never
reaches the user.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

__all__ = ["PackageError", "Manifest", "FileRef", "ImagesRef", "Preprocessing", "Provenance", "MANIFEST_NAME",
           "PACKAGE_FORMAT", "PACKAGE_VERSION", "PREDICTOR_IMAGES", "validate_manifest", "check_member_name"]

PACKAGE_FORMAT = "ofa-engine/supernet-package"
PACKAGE_VERSION = 1
MANIFEST_NAME = "manifest.json"
# Where the accuracy-dataset command takes its labelled images from: the package's own
# evaluation images, or (the bundled Fashion-MNIST package) the 5k holdout of the Debian package.
PREDICTOR_IMAGES = ("evaluation", "fashion-mnist-holdout")
MAX_LABELS = 100_000
MAX_NAME = 200
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


class PackageError(ValueError):
    """A supernet package that cannot be used; the message names the file and the field."""


def check_member_name(name: Any) -> str:
    """`name` when it is a plain relative POSIX path inside the package (no '..', no absolute
    path, no backslash, no drive, no empty part), else `ValueError` saying what is allowed."""
    if not isinstance(name, str) or not 0 < len(name) <= 255:
        raise ValueError("a relative file name of 1..255 characters")
    path = PurePosixPath(name)
    if (name.startswith("/") or "\\" in name or ":" in name or "\x00" in name
            or any(part in ("", ".", "..") for part in name.split("/"))):
        raise ValueError("a relative path inside the package (no '..', '/' at the start, '\\' or ':')")
    return str(path)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FileRef(_Strict):
    """A file of the package."""

    file: StrictStr = Field(description="a relative path inside the package")
    sha256: Optional[StrictStr] = Field(None, description="'sha256:' and 64 hex digits, or null")

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        return check_member_name(value)

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
            raise ValueError("'sha256:' followed by 64 lowercase hex digits")
        return value


class WeightsRef(FileRef):
    format: Literal["safetensors", "torch"] = Field(
        description="'safetensors' (a state dict), or 'torch' (an ofa_engine supernet file, "
                    "torch.load(weights_only=True))")


class ImagesRef(FileRef):
    """uint8 images with their labels in one .npz (`images`, `labels`; no pickles)."""

    count: StrictInt = Field(ge=1, le=1_000_000, description="the number of images, 1..1,000,000")
    source: StrictStr = Field("", max_length=2000, description="where the images come from (text)")


class PredictorRef(FileRef):
    """An accuracy predictor written by `fit-accuracy-predictor` (the .npz; its .json beside it)."""

    @field_validator("file")
    @classmethod
    def _npz(cls, value: str) -> str:
        if not value.endswith(".npz"):
            raise ValueError("a .npz file (its .json metadata beside it)")
        return value


class Preprocessing(_Strict):
    channels: StrictInt = Field(ge=1, le=64, description="input channels, 1..64")
    mean: list[Union[StrictInt, float]] = Field(min_length=1, max_length=64,
                                                description="one mean per channel (after scaling to [0, 1])")
    std: list[Union[StrictInt, float]] = Field(min_length=1, max_length=64,
                                               description="one positive std per channel")
    resolutions: list[StrictInt] = Field(min_length=1, max_length=64,
                                         description="the input sizes of the space, 1..1024 pixels (a family's "
                                                     "space bounds its own further)")
    stored_size: Optional[StrictInt] = Field(None, ge=1, le=1024,
                                             description="the size the bundled images are stored at, or null")

    @field_validator("std")
    @classmethod
    def _std(cls, value: list) -> list:
        if any(not 0 < v <= 10 for v in value):
            raise ValueError("numbers in (0, 10]")
        return value

    @field_validator("resolutions")
    @classmethod
    def _resolutions(cls, value: list) -> list:
        # Only a sanity bound: the family's space refuses sizes its networks cannot take
        # (MobileNetV3: below 8), and the resolutions must be the space's (`package._space`).
        if any(not 1 <= v <= 1024 for v in value):
            raise ValueError("integers 1..1024")
        return value


class Provenance(_Strict):
    commands: list[StrictStr] = Field(default_factory=list, max_length=100,
                                      description="the commands that made the package, in order")
    dataset: StrictStr = Field("", max_length=2000, description="the dataset the supernet was trained on")
    date: StrictStr = Field("", max_length=100, description="when the package was made (ISO 8601 UTC)")
    accuracy_report: dict[str, Any] = Field(default_factory=dict,
                                            description="measured accuracies (an object), e.g. of the largest "
                                                        "and smallest subnets on the evaluation images")
    notes: StrictStr = Field("", max_length=10_000, description="free text")


class Manifest(_Strict):
    format: Literal["ofa-engine/supernet-package"] = Field(description=f"'{PACKAGE_FORMAT}'")
    version: StrictInt = Field(description=f"the manifest version; this ofa_engine reads version {PACKAGE_VERSION}")
    name: StrictStr = Field(description="1..100 letters, digits, '.', '_', '+' or '-', starting with a letter or digit")
    family: StrictStr = Field(description="the network family: a registered family's name, e.g. 'mbv3' "
                                          "(OFA MobileNetV3)")
    space: Union[StrictStr, dict[str, Any]] = Field(
        description="a search-space preset name, or the space's fields as its family's space.to_dict() writes them")
    weights: WeightsRef
    labels: list[StrictStr] = Field(min_length=1, max_length=MAX_LABELS,
                                    description="one class name per classifier output, up to 200 characters each")
    preprocessing: Preprocessing
    calibration: ImagesRef
    evaluation: ImagesRef
    accuracy_predictor: Optional[PredictorRef] = None
    predictor_images: Literal["evaluation", "fashion-mnist-holdout"] = Field(
        "evaluation", description="the images accuracy-dataset labels subnets on: 'evaluation' (the package's) "
                                  "or 'fashion-mnist-holdout'")
    latency_profiles: list[FileRef] = Field(default_factory=list, max_length=100,
                                            description="device-profile JSON files fitted for this space")
    provenance: Provenance = Field(default_factory=Provenance)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if value != PACKAGE_VERSION:
            raise ValueError(f"version {PACKAGE_VERSION} (this ofa_engine reads manifests of version "
                             f"{PACKAGE_VERSION} only)")
        return value

    @field_validator("family")
    @classmethod
    def _family(cls, value: str) -> str:
        from ..families import FAMILIES
        if value not in FAMILIES.names():
            raise ValueError(f"a registered network family: {', '.join(repr(n) for n in FAMILIES.names())}")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("1..100 letters, digits, '.', '_', '+' or '-', starting with a letter or digit")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        if any(not 0 < len(v) <= MAX_NAME for v in value):
            raise ValueError(f"names of 1..{MAX_NAME} characters")
        return value

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _field_path(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("str", "dict[str,any]", "function-after[_file(), str]", "int", "float"):
            continue   # pydantic's union-member names, not fields
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(the manifest)"


def _allowed(model: type[BaseModel], loc: tuple) -> str | None:
    """The description of the field at `loc`, for the error's 'allowed' part."""
    current: Any = model
    description = None
    for item in loc:
        if isinstance(item, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(str(item))
        if field is None:
            return description
        annotation = field.annotation
        args = getattr(annotation, "__args__", ()) or ()
        nested = [a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        current = nested[0] if nested else None
        description = field.description or (
            f"an object with the fields {sorted(current.model_fields)}" if current is not None else None)
    return description


def validate_manifest(data: Any, where: str) -> Manifest:
    """The `Manifest` of `data` (parsed JSON), or `PackageError` naming `where`, the field, the
    value and what is allowed."""
    if not isinstance(data, dict):
        raise PackageError(f"{where}: the manifest must be a JSON object, got {type(data).__name__}")
    version = data.get("version")
    if "version" in data and version != PACKAGE_VERSION:
        raise PackageError(f"{where}: field 'version' = {version!r}; this ofa_engine reads package "
                           f"manifests of version {PACKAGE_VERSION} only")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        field = _field_path(loc)
        if error["type"] == "missing":
            raise PackageError(f"{where}: field '{field}' is missing") from None
        if error["type"] == "extra_forbidden":
            raise PackageError(f"{where}: unknown field '{field}'") from None
        value = repr(error.get("input"))
        value = value[:80] + "..." if len(value) > 80 else value
        ctx = error.get("ctx") or {}
        reason = str(ctx["error"]) if "error" in ctx else (_allowed(Manifest, loc) or error["msg"])
        raise PackageError(f"{where}: field '{field}' = {value}; allowed: {reason}") from None
