"""ONNX export of an extracted subnet, verified against PyTorch before it reaches its path.

The file carries everything a third party needs to run it: the subnet config, the space,
the preprocessing (`preprocessing_spec`) and the class labels, as ONNX metadata_props.
Any family's subnets export the same way: what depends on the family (the input shape, folding
BN, building a supernet) comes from the family of the space (`ofa_engine.families.family_of`).

`export_subnets` exports many configs of an untrained supernet for latency measurements
(the latency datasets, calibration): latency does not depend on weight values.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import onnx
import torch
from torch import nn

from ..families import family_of
from ..files import atomic_path, check_output_path
from .evaluation import module_copy
from .ort import make_session
from .preprocess import preprocess, preprocessing_spec
from .common import MAX_OPSET, MIN_OPSET, ExportVerificationError
from .quantize import (AGREEMENT_FLOOR, DEFAULT_CALIBRATION, QuantizationRefusedError, check_precision,
                       quantize_onnx)

__all__ = ["export_onnx", "verify_onnx", "verification", "Verification", "read_metadata", "write_onnx_unverified", "export_subnets",
           "untrained_supernet", "torch_threads", "ExportVerificationError", "EXPORT_LOCK", "MIN_OPSET",
           "MAX_OPSET", "TOLERANCE", "QuantizationRefusedError"]

# Largest |ORT - torch| allowed on any logit of the verification batch, relative to the largest
# |logit| where that is above 1 (float32 rounding grows with the values: a deep ImageNet network's
# logits on the random batch reach the hundreds).
TOLERANCE = 1e-4
INPUT_NAME, OUTPUT_NAME = "input", "logits"


def export_onnx(model: nn.Module, cfg: Any, path: str | os.PathLike, *,
                space: Any = None, opset: int = MIN_OPSET, precision: str = "fp32",
                calibration: Any = None, evaluation: Any = None,
                calibration_method: str = DEFAULT_CALIBRATION,
                agreement_floor: float = AGREEMENT_FLOOR) -> Path:
    """Write `model` (from `Supernet.extract(cfg)`) to `path` as a verified ONNX file.

    `cfg`: the model's config (or its dict); `space`: the space it was extracted from, a family's
    space object or preset name (None: the preset named by the model's `space_name`).

    Input "input" (batch, C, S, S) float32 with a dynamic batch axis; output "logits"
    (batch, num_classes). Metadata: `config`, `space`, `preprocessing`, `labels`, `producer`.

    The model is exported in eval mode into a temporary file next to `path`, checked with
    `onnx.checker`, run in onnxruntime on a seeded random batch and compared with PyTorch;
    only a file within `TOLERANCE` replaces `path` (atomically). On any failure nothing is
    left behind and an existing file at `path` is untouched.

    `precision="int8"`: static post-training quantization (runtime/quantize.py) of a BN-folded
    copy of `model` to QDQ ONNX, calibrated on `calibration` (default: the bundled 2,000
    calibration images) and checked on `evaluation` (default: the bundled test2k images): a file
    whose top-1 agreement with the float model is below `agreement_floor` is refused
    (`QuantizationRefusedError`). Both sets: an `ImageSet` (its images uint8 or already
    preprocessed), uint8 images, or preprocessed float32 (N, C, S, S) input. The metadata then
    also has `precision` and `quantization` (scheme, calibration method and image count,
    agreement, both accuracies when labels were given).

    Raises `ValueError` for a model that is not an extracted static net, a `cfg` that is not
    the model's config, an unsupported opset or precision, or a bad calibration / evaluation set,
    and `ExportVerificationError` when the file does not match PyTorch.
    """
    check_precision(precision)
    family, cfg = _check_inputs(model, cfg, space, opset)
    path = check_output_path(path, "path")
    if precision == "int8":
        return _export_int8(model, family, cfg, path, opset, calibration, evaluation, calibration_method,
                            agreement_floor)
    with atomic_path(path) as tmp:
        write_onnx_unverified(model, family.space, cfg, tmp, opset)
        _check_verification(tmp, model, path)
    return path


def _check_verification(written: Path, model: nn.Module, path: Path) -> None:
    """`ExportVerificationError` unless the file `written` computes `model` within `TOLERANCE`
    (relative to the largest |logit| when above 1); `path` is the file it is meant to become."""
    check = verification(written, model)
    allowed = TOLERANCE * max(1.0, check.max_abs_logit)
    if not check.max_abs_diff <= allowed:   # also catches NaN
        raise ExportVerificationError(
            f"ONNX output differs from PyTorch by {check.max_abs_diff:.3g} (allowed {allowed:.3g}: {TOLERANCE:g} "
            f"x max(1, largest |logit| {check.max_abs_logit:.3g})); nothing was written to '{path}'")


def _export_int8(model: nn.Module, family: Any, cfg: Any, path: Path, opset: int,
                 calibration: Any, evaluation: Any, method: str, floor: float) -> Path:
    import tempfile
    space = family.space
    calib_x, _ = _image_inputs(calibration, "calib", space, cfg.image_size, "calibration")
    eval_x, labels = _image_inputs(evaluation, "test2k", space, cfg.image_size, "evaluation")
    # fold_bn replaces the copy's convs with new folded ones: the model's own stay as they are.
    folded = family.fold_bn(module_copy(model).eval())
    with tempfile.TemporaryDirectory(prefix="ofa-export-") as tmpdir:
        float_path = Path(tmpdir) / "float.onnx"
        write_onnx_unverified(folded, space, cfg, float_path, opset)
        _check_verification(float_path, folded, path)
        metadata = {p.key: p.value for p in onnx.load(os.fspath(float_path)).metadata_props}
        with atomic_path(path) as tmp:
            quantize_onnx(float_path, tmp, calib_x, eval_x, labels, method=method, floor=floor,
                          metadata=metadata)
    return path


def _image_inputs(images: Any, default_split: str, space: Any, size: int, what: str
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """Preprocessed float32 input and the labels (None when unknown) of a calibration / evaluation
    set given as an ImageSet, uint8 images or preprocessed float input (None: the bundled split)."""
    if images is None:
        from ..datasets.images import load_split
        images = load_split(default_split)
    labels = getattr(images, "labels", None)
    x = getattr(images, "images", images)
    if isinstance(x, torch.Tensor):
        x = x.numpy()
    x = np.asarray(x)
    if x.size == 0 or len(x) == 0:
        raise ValueError(f"{what} set is empty; needed: at least one image")
    if x.dtype == np.uint8:
        try:
            x = preprocess(x, space, size).numpy()
        except ValueError as exc:
            raise ValueError(f"{what} images: {exc}") from None
    return x, None if labels is None else np.asarray(labels)


class Verification(NamedTuple):
    """A file run against its PyTorch model on a seeded random batch: the largest
    |onnxruntime - PyTorch| over the logits, and the largest |logit| of PyTorch's."""

    max_abs_diff: float
    max_abs_logit: float


def verify_onnx(path: str | os.PathLike, model: nn.Module, *, batch_size: int = 2, seed: int = 0) -> float:
    """Largest |onnxruntime - PyTorch| over the logits of a seeded random batch
    (`verification`'s `max_abs_diff`)."""
    return verification(path, model, batch_size=batch_size, seed=seed).max_abs_diff


def verification(path: str | os.PathLike, model: nn.Module, *, batch_size: int = 2, seed: int = 0) -> Verification:
    """Run the file `path` and `model` on a seeded random batch and compare their logits.

    `model`: an extracted subnet (its `config` gives the image size); the channel count is the
    one the file's input declares. `batch_size` 2 differs from the traced batch (1), so this also
    checks the dynamic batch axis.
    """
    try:
        # One thread: a batch of 2 needs no more, and spinning worker threads slow a shared CPU.
        session = make_session(path, threads=1)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ExportVerificationError(f"onnxruntime cannot run '{path}': {exc}") from exc
    channels = session.get_inputs()[0].shape[1]
    if isinstance(channels, bool) or not isinstance(channels, int):
        raise ExportVerificationError(f"'{path}': its input's channel axis is {channels!r}, not a fixed count")
    size = int(model.config.image_size)
    x = torch.randn((batch_size, channels, size, size), generator=torch.Generator().manual_seed(seed))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(x).numpy()
    except RuntimeError as exc:
        raise ExportVerificationError(f"the PyTorch model cannot run the input of '{path}' "
                                      f"{tuple(x.shape)}: {exc}") from exc
    finally:
        model.train(was_training)
    try:
        (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ExportVerificationError(f"onnxruntime cannot run '{path}': {exc}") from exc
    if actual.shape != expected.shape:
        raise ExportVerificationError(
            f"onnxruntime output shape {actual.shape} != PyTorch output shape {expected.shape}")
    expected = expected.astype(np.float64)
    return Verification(float(np.max(np.abs(actual.astype(np.float64) - expected))), float(np.max(np.abs(expected))))


def untrained_supernet(space: Any, seed: int = 0) -> nn.Module:
    """A freshly initialised supernet of `space` (a family's space object or preset name; torch
    seeded with `seed`, the global RNG left as it was): for latency measurements, which do not
    depend on weight values."""
    family = family_of(space, fast=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return family.build_supernet()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` torch threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# An int8 file for a latency measurement: random weights, so its agreement with the float model
# means nothing (floor 0); the scales' values do not change the kernels ORT runs, so a few seeded
# random inputs calibrate it (MinMax, the fastest method).
LATENCY_CALIBRATION_IMAGES = 32


def export_subnets(space: Any, configs: Sequence[Any], paths: Sequence[Path],
                   precision: str = "fp32") -> list[Path]:
    """Export each config of an `untrained_supernet(space)` to its path, skipping paths that
    already exist (a resumable cache); returns the paths. `precision="int8"`: quantized files
    calibrated on `LATENCY_CALIBRATION_IMAGES` seeded random inputs (latency only)."""
    check_precision(precision)
    paths = [Path(p) for p in paths]
    family = family_of(space, fast=False)
    space = family.space
    # Exports run beside latency measurements; one torch thread is plenty for them.
    with torch_threads(1):
        supernet = untrained_supernet(space)
        for cfg, path in zip(configs, paths, strict=True):
            if not path.exists():
                options: dict[str, Any] = {}
                if precision == "int8":
                    x = np.random.default_rng(0).standard_normal(
                        (LATENCY_CALIBRATION_IMAGES, *family.input_shape(cfg)))
                    options = {"precision": "int8", "calibration": x.astype(np.float32),
                               "evaluation": x.astype(np.float32), "calibration_method": "minmax",
                               "agreement_floor": 0.0}
                with torch.no_grad():
                    export_onnx(supernet.extract(cfg), cfg, path, space=space, **options)
    return paths


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an exported file, JSON values decoded (weights are not loaded)."""
    model = onnx.load(os.fspath(path), load_external_data=False)
    out: dict[str, Any] = {}
    for prop in model.metadata_props:
        try:
            out[prop.key] = json.loads(prop.value)
        except json.JSONDecodeError:
            out[prop.key] = prop.value
    return out


def _config_json(cfg: Any) -> str:
    """A config as compact JSON (the metadata's and the error messages' form)."""
    return json.dumps(cfg.to_dict(), separators=(",", ":"))


def _check_inputs(model: Any, cfg: Any, space: Any, opset: int) -> tuple[Any, Any]:
    """(the family bound to the model's space, the validated config), or ValueError."""
    # An extracted subnet of any family: a module that knows its config and space (a supernet has
    # neither, it takes the config at each forward).
    if not (isinstance(model, nn.Module) and hasattr(model, "config") and hasattr(model, "space_name")):
        raise ValueError(f"export_onnx needs a static subnet from Supernet.extract(cfg), got "
                         f"{type(model).__name__}; extract the subnet first")
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset = {opset!r}; allowed: an integer {MIN_OPSET}..{MAX_OPSET} (MIN_OPSET..MAX_OPSET)")
    family = family_of(model.space_name if space is None else space, fast=False)
    if family.space.name != model.space_name:
        raise ValueError(f"space '{family.space.name}' does not match the model, which was extracted "
                         f"from space '{model.space_name}'")
    cfg = family.validate(cfg)
    if cfg != model.config:
        ours, extracted = cfg.to_dict(), model.config.to_dict()
        fields = [f for f in ours if ours[f] != extracted.get(f)]
        raise ValueError(f"config does not match the extracted model: field(s) {fields} differ "
                         f"(model was extracted with {_config_json(model.config)})")
    return family, cfg


# torch.onnx.export keeps process-global state ("GLOBALS.in_onnx_export"): two exports at once
# in one process fail. Every export in the engine goes through this lock.
EXPORT_LOCK = threading.Lock()


def _torchscript_export() -> Any:
    """torch's TorchScript ONNX exporter, the one `torch.onnx.export(..., dynamo=False)` runs (the
    dynamo exporter needs onnxscript, which we do not depend on). Since torch 2.9
    `torch.onnx.export(dynamo=False)` warns on every call that this exporter is the legacy one
    (a DeprecationWarning); silencing it with `warnings.catch_warnings` swaps the process's
    warning filters, which is not thread-safe (concurrent exports could leave a filter behind
    or drop another thread's). `torch.onnx.utils.export` is the same exporter without the
    notice; where a torch lacks it, the public call is used."""
    try:
        from torch.onnx.utils import export
    except ImportError:   # pragma: no cover - a torch without the legacy module
        import functools
        return functools.partial(torch.onnx.export, dynamo=False)
    return export


def write_onnx_unverified(model: nn.Module, space: Any, cfg: Any, path: Path, opset: int) -> None:
    """The ONNX file of `model` with its metadata, not checked in ONNX Runtime and not atomic:
    `export_onnx` is the API; this is its writing step (benchmarks time it alone). `space`: a
    family's space object or preset name; `cfg`: the model's config. The family writes the graph
    where it can (`NetworkFamily.onnx_model`: the exporter's graph, without tracing); torch's
    TorchScript exporter writes it otherwise."""
    family = family_of(space, fast=False)
    space = family.space
    was_training = model.training
    model.eval()
    try:
        proto = family.onnx_model(model, opset)   # the TorchScript exporter's graph, or None
        if proto is not None:
            exporter = "ofa_engine graph writer"
            proto.producer_version = torch.__version__.split("+")[0]   # as torch's exporter stamps it
        else:
            exporter = "torch.onnx.export (TorchScript)"
            dummy = torch.zeros(1, *family.input_shape(cfg))
            with EXPORT_LOCK:
                _torchscript_export()(
                    model, (dummy,), os.fspath(path), opset_version=opset,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                    do_constant_folding=True, keep_initializers_as_inputs=False)
            proto = onnx.load(os.fspath(path))
    finally:
        model.train(was_training)

    proto.producer_name = "ofa_engine"
    proto.doc_string = f"Subnet of the OFA search space '{space.name}' exported by ofa_engine."
    labels = list(space.labels) or [f"class_{i}" for i in range(space.num_classes)]
    metadata = {
        "config": _config_json(cfg),
        "space": space.name,
        "preprocessing": json.dumps(preprocessing_spec(space, cfg.image_size)),
        "labels": json.dumps(labels),
        "producer": json.dumps({"name": "ofa_engine", "torch": torch.__version__, "onnx": onnx.__version__,
                                "exporter": exporter, "opset": opset}),
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, os.fspath(path))
