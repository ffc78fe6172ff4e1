"""Static post-training quantization of an exported float ONNX file to int8 QDQ ONNX.

`quantize_onnx` takes a float file (BN already folded, see `export_onnx(..., precision="int8")`),
calibrates the activation ranges on preprocessed calibration images as
`onnxruntime.quantization.quantize_static` does (the default percentile method computed in one
pass that summarises each batch as it runs, `_percentile_ranges`) and writes the QDQ file
`quantize_static` writes: per-channel symmetric int8 weights, per-tensor int8 activations,
int32 biases. Our own writer (`_prepare` + `_write_qdq`, numpy) writes it for the graphs of
our exports, byte for byte the file of ORT's quant_pre_process + QDQ quantizer, which still
write it for any other graph (`_quantize_with_ort`; tests/test_int8_writer.py compares the two).
The quantized (compacted) file is then checked against the float one: its top-1 agreement on
evaluation images must reach `AGREEMENT_FLOOR`, else it is refused (`QuantizationRefusedError`)
and nothing is written.

`weight_bytes` counts what a deployment stores for the weights: the quantized initializers
(int8 weights, int32 biases) apart from their scales and zero points, so that it can be set
against the analytic `flash_bytes` (the family's `analyze`).

The calibration method was chosen by measured accuracy on subnets of the bundled supernet
(docs/int8.md, written by benchmarks/bench_int8.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from .common import QuantizationRefusedError
from .ort import make_session

__all__ = ["PRECISIONS", "CALIBRATION_METHODS", "DEFAULT_CALIBRATION", "AGREEMENT_FLOOR", "SCHEME",
           "PERCENTILE", "EVALUATED_WITH", "QuantizationRefusedError", "QuantizationReport", "check_precision",
           "check_calibration_method", "check_images", "quantize_onnx", "weight_bytes", "top1",
           "quantization_metadata", "estimate_overhead_bytes", "QUANTIZERS"]

PRECISIONS = ("fp32", "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Chosen by measured accuracy on the bundled supernet's subnets (docs/int8.md).
DEFAULT_CALIBRATION = "percentile"
# The percentile of |activation| kept by the "percentile" method (ORT's default is 99.999;
# 99.99 measured better, docs/int8.md).
PERCENTILE = 99.99
# Lowest top-1 agreement between the int8 file and its float original on the evaluation images
# that is accepted; a file below it is refused. Measured agreements on the bundled supernet are
# 0.95-0.98 (docs/int8.md), so a file under 0.90 means a broken calibration, not rounding.
AGREEMENT_FLOOR = 0.90
# How the agreement and the accuracies of an int8 file are measured: its QuantizeLinear and
# DequantizeLinear nodes run as written, the ops between them in float (`make_session(...,
# fuse_qdq=False)`), which is the file's arithmetic as ONNX defines it and the same on every CPU.
# ORT's default session fuses them into integer kernels whose results depend on the CPU (on this
# x86 without VNNI, u8 x s8 products can saturate): 55 of 10,000 test predictions of the
# stm32f746 case's file differ from the file's arithmetic that way, none with QDQ as written
# (docs/int8.md).
EVALUATED_WITH = "onnxruntime, QDQ as written (session.disable_quant_qdq=1)"
SCHEME = ("QDQ; weights int8 per-channel symmetric; activations int8 per-tensor asymmetric; "
          "biases int32; BN folded into the convolutions")
# Images per batch of ONNX Runtime's calibrators (`_reader`: their histograms are merged batch by
# batch, so the batch is part of their method) and of the percentile pass of our writer
# (`_writer_ranges`: its ranges depend on the set of values only, the same at any batch size;
# smaller batches hold fewer activations at once: 50 took ~5% less CPU than 100 and half the
# arena, docs/specialize-speed.md).
CALIBRATION_BATCH = 100
PERCENTILE_BATCH = 50
# Images per ONNX Runtime run of the prediction passes (`top1`): small enough for a batch's
# activations to stay in the core's caches. An image's logits do not depend on the batch it is
# in (bit for bit from 3 images up: tests/test_int8.py); 50 took 20-30% less CPU than 250 or
# 500 (docs/specialize-speed.md).
EVALUATION_BATCH = 50
# Threads of the calibration pass and of the evaluation passes (ONNX Runtime sessions of one
# intra-op thread each; the results do not depend on it).
WORKERS = 2


@dataclass(frozen=True)
class QuantizationReport:
    """What `quantize_onnx` measured: agreement with the float file (and the accuracies when labels
    were given) on `evaluation_images` images, calibration on `calibration_images`."""

    method: str
    calibration_images: int
    evaluation_images: int
    agreement: float
    float_accuracy: float | None
    int8_accuracy: float | None
    agreement_floor: float = AGREEMENT_FLOOR

    def to_dict(self) -> dict[str, Any]:
        return {"precision": "int8", "scheme": SCHEME, "calibration_method": self.method,
                "calibration_images": self.calibration_images,
                "evaluation_images": self.evaluation_images, "agreement": self.agreement,
                "agreement_floor": self.agreement_floor, "float_accuracy": self.float_accuracy,
                "int8_accuracy": self.int8_accuracy, "evaluated_with": EVALUATED_WITH}


def check_precision(precision: Any) -> str:
    """`precision` if it is one of `PRECISIONS`, else `ValueError` naming the allowed ones."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r}; allowed: {', '.join(PRECISIONS)}")
    return precision


def check_calibration_method(method: Any) -> str:
    if not isinstance(method, str) or method.lower() not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method = {method!r}; allowed: {', '.join(CALIBRATION_METHODS)}")
    return method.lower()


def check_images(x: Any, shape: tuple[int, int, int], what: str) -> np.ndarray:
    """`x` as a float32 (N, C, S, S) array with `shape` == (C, S, S) and N >= 1, else `ValueError`
    saying what was given and what is needed."""
    arr = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    if arr.ndim != 4 or tuple(arr.shape[1:]) != tuple(shape):
        raise ValueError(f"{what} images have shape {tuple(arr.shape)}; needed: (N, {shape[0]}, "
                         f"{shape[1]}, {shape[2]}) preprocessed images, N >= 1")
    if len(arr) == 0:
        raise ValueError(f"{what} set is empty; needed: at least one image")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{what} images are {arr.dtype}; needed: preprocessed float32 images "
                         f"(ofa_engine.runtime.preprocess.preprocess)")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} images contain NaN or infinite values")
    return np.ascontiguousarray(arr, dtype=np.float32)


def top1(path_or_bytes: str | os.PathLike | bytes, x: np.ndarray, batch_size: int = EVALUATION_BATCH, *,
         threads: int = 1, memory_arena: bool = True) -> np.ndarray:
    """Predicted classes of the ONNX model on `x` (ORT, one intra-op thread, QDQ as written:
    `EVALUATED_WITH`), its batches spread over `threads` threads of one session (`run` is
    thread-safe: the same predictions however many). `memory_arena`: `make_session`'s."""
    session = make_session(path_or_bytes, threads=1, fuse_qdq=False, memory_arena=memory_arena)
    name = session.get_inputs()[0].name

    def predict(start: int) -> np.ndarray:
        return session.run(None, {name: x[start:start + batch_size]})[0].argmax(1)

    starts = range(0, len(x), batch_size)
    if threads <= 1:
        return np.concatenate([predict(start) for start in starts])
    with ThreadPoolExecutor(threads) as pool:
        return np.concatenate(list(pool.map(predict, starts)))


def quantize_onnx(float_path: str | os.PathLike, out_path: str | os.PathLike, calibration: np.ndarray,
                  evaluation: np.ndarray, labels: np.ndarray | None = None, *,
                  method: str = DEFAULT_CALIBRATION, floor: float = AGREEMENT_FLOOR,
                  metadata: Mapping[str, str] | None = None, percentile: float = PERCENTILE,
                  quantizer: str = "writer", timings: dict[str, float] | None = None) -> QuantizationReport:
    """Quantize the float file at `float_path` into `out_path` (not atomic: the caller writes into
    a temporary path) and check it.

    `calibration`, `evaluation`: preprocessed float32 (N, C, S, S) images (`check_images`);
    `labels` (optional) of `evaluation`, for the two accuracies. `metadata`: the float file's
    metadata_props, copied, plus `precision` and `quantization` (the report, JSON).
    `percentile`: the "percentile" method's (benchmarks compare values). `quantizer`: "writer"
    (ours, where it handles every node; else ORT's) or "ort" (ONNX Runtime's pre-processing and
    QDQ quantizer: the reference, the same file). `timings`, when given, receives the seconds of
    "calibrate" (preparation included), "write" and "evaluate". Raises `ValueError` for bad
    images, method or quantizer, `QuantizationRefusedError` when the agreement with the float
    file is below `floor`.
    """
    method = check_calibration_method(method)
    if quantizer not in QUANTIZERS:
        raise ValueError(f"quantizer = {quantizer!r}; allowed: {', '.join(QUANTIZERS)}")
    clock = _Stopwatch(timings)
    float_model = onnx.load(os.fspath(float_path), load_external_data=False)
    dims = float_model.graph.input[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) for d in dims[1:])
    calibration = check_images(calibration, shape, "calibration")
    evaluation = check_images(evaluation, shape, "evaluation")
    if labels is not None and len(labels) != len(evaluation):
        raise ValueError(f"{len(labels)} labels for {len(evaluation)} evaluation images")

    # Our QDQ writer (`_write_qdq`) where it handles every node; ONNX Runtime's quant_pre_process
    # and QDQ quantizer otherwise: the same file either way (tests/test_int8_writer.py).
    # The agreement (and the int8 accuracy) is measured on the compacted file, the one that gets
    # written. (The compaction renames tensors and drops all-zero zero points; tests/test_int8.py
    # runs the written file and checks the agreement its metadata states.)
    # The float file's predictions need only the float file: they are computed in the background
    # from the start, on one more thread that takes whatever CPU the calibration, the writer
    # and the int8 file's session leave (their serial steps), the int8 file's after it.
    with ThreadPoolExecutor(1) as background:
        # (In this context: inside `specialize`'s `shared_sessions` block the float file's session
        # is the one its export check opened.)
        expected_future = background.submit(contextvars.copy_context().run, top1, os.fspath(float_path), evaluation)
        proto = None
        prepared = _prepare(float_model) if quantizer == "writer" else None
        if prepared is not None:
            try:
                with clock("calibrate"):
                    # Our percentile pass computes only the ranges the file is written from (a
                    # Relu's input takes the Relu's: 21 of the stm32f746 case's 152 tensors, 29%
                    # of the values, unread); ORT's calibrators compute them all.
                    plan = read = None
                    if method == "percentile":
                        plan = _qdq_plan(prepared, _calibrated_tensors(prepared))
                        read = plan.ranges_read()
                    ranges = _writer_ranges(prepared, calibration, method, percentile, read)
                with clock("write"):
                    proto = _compact(_write_qdq(prepared, ranges, plan))
            except _Unsupported:
                proto = None
        if proto is None:
            with clock("calibrate"):   # ORT's pre-processing, calibration and quantizer together
                proto = _compact(_quantize_with_ort(float_path, out_path, calibration, method, percentile))
        with clock("evaluate"):
            predicted = top1(proto.SerializeToString(), evaluation, threads=WORKERS)
            expected = expected_future.result()
    agreement = float((expected == predicted).mean())
    report = QuantizationReport(
        method=method, calibration_images=len(calibration), evaluation_images=len(evaluation),
        agreement=agreement, agreement_floor=floor,
        float_accuracy=None if labels is None else float((expected == np.asarray(labels)).mean()),
        int8_accuracy=None if labels is None else float((predicted == np.asarray(labels)).mean()))
    if not agreement >= floor:
        raise QuantizationRefusedError(
            f"the int8 file agrees with the float model on {agreement:.1%} of {len(evaluation)} "
            f"evaluation images, below the floor of {floor:.0%} (AGREEMENT_FLOOR); the file was "
            f"refused (try another calibration method: {', '.join(CALIBRATION_METHODS)})")

    proto.producer_name = float_model.producer_name
    proto.doc_string = float_model.doc_string
    props = dict(metadata or {})
    props["precision"] = json.dumps("int8")
    props["quantization"] = json.dumps(report.to_dict())
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, os.fspath(out_path))
    return report


QUANTIZERS = ("writer", "ort")


class _Stopwatch:
    """`with clock(stage):` adds the stage's seconds to `timings` (nothing when it is None)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.timings is not None:
                self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start


def _quantize_with_ort(float_path: str | os.PathLike, out_path: str | os.PathLike, calibration: np.ndarray,
                       method: str, percentile: float) -> onnx.ModelProto:
    """`quantize_static`'s way for a graph `_write_qdq` does not handle: ORT's quant_pre_process
    (shape inference, HardSwish inlined), the calibration of `_calibration_ranges` and ORT's QDQ
    quantizer, whose file is written to `out_path` and returned (not compacted)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process
    with tempfile.TemporaryDirectory(prefix="ofa-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(os.fspath(float_path), os.fspath(prepared))
        ranges = _calibration_ranges(prepared, Path(tmp) / "augmented.onnx",
                                     _reader(onnx.load(os.fspath(prepared), load_external_data=False),
                                             calibration), method, percentile)
        _quantize_qdq(prepared, out_path, ranges, method, percentile)
    return onnx.load(os.fspath(out_path))


def _reader(model: onnx.ModelProto, calibration: np.ndarray) -> Any:
    """ORT's `CalibrationDataReader` of the calibration images in batches of CALIBRATION_BATCH."""
    from onnxruntime.quantization import CalibrationDataReader
    input_name = model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(range(0, len(calibration), CALIBRATION_BATCH))

        def get_next(self) -> dict | None:
            start = next(self.batches, None)
            return None if start is None else {input_name: calibration[start:start + CALIBRATION_BATCH]}

    return Reader()


# What `quantize_onnx` asks of ONNX Runtime's quantizer: QDQ, per-channel symmetric int8 weights,
# per-tensor asymmetric int8 activations (SCHEME).
def _extra_options(method: str, percentile: float) -> dict[str, Any]:
    extra: dict[str, Any] = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = float(percentile)
    return extra


def _op_types() -> list[str]:
    """The operator types `quantize_static` quantizes by default (all it knows)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def _calibration_ranges(prepared: Path, augmented: Path, reader: Any, method: str, percentile: float,
                        graph_optimization: str = "ORT_ENABLE_ALL") -> Any:
    """The activations' ranges (`TensorsData`) that `quantize_static` would compute for `method`,
    without anything printed. `reader`: a `CalibrationDataReader` of the calibration batches.

    The "percentile" method (the default) is computed by `_percentile_ranges`: one pass over the
    images and a few vectorised passes over each tensor's values (with `graph_optimization`
    "ORT_DISABLE_ALL", ORT's own setting, the file is byte for byte `quantize_static`'s; with the
    default, ~3x faster, the activations differ by float rounding, ~1e-5, and so may a range by
    as much: tests/test_reliability.py checks both). The others go through ORT's calibrator:
    `quantize_static` calibrates with ORT's calibrators, whose histogram collector `print`s its
    progress to `sys.stdout` (where the CLI writes its JSON and every other thread prints too):
    silencing it with `contextlib.redirect_stdout` swapped `sys.stdout` for the whole process,
    so concurrent exports lost each other's output. Here the same calibrator (same options, same
    model, same images in the same batches) collects into `_quiet_collector()`, ORT's
    collector with the printing methods restated without their prints: the ranges are the same
    numbers, and no process-wide state is touched."""
    if method == "percentile":
        return _percentile_ranges(prepared, reader, percentile, graph_optimization)
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator
    calibrate_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}[method]
    calibrator = create_calibrator(prepared, _op_types(), augmented_model_path=os.fspath(augmented),
                                   calibrate_method=calibrate_method, extra_options={})
    if method == "entropy":   # the min-max calibrator prints nothing
        calibrator.collector = _quiet_collector(
            method=calibrator.method, symmetric=calibrator.symmetric, num_bins=calibrator.num_bins,
            num_quantized_bins=calibrator.num_quantized_bins, percentile=calibrator.percentile,
            scenario=calibrator.scenario)
    calibrator.collect_data(reader)
    return calibrator.compute_data()


# ORT's percentile calibrator, as `quantize_static` creates it (create_calibrator's defaults):
# a symmetric histogram of |x| in 2048 bins.
PERCENTILE_BINS = 2048


def _percentile_ranges(prepared: Path, reader: Any, percentile: float,
                       graph_optimization: str = "ORT_ENABLE_ALL") -> Any:
    """ORT's percentile calibration (`create_calibrator(..., CalibrationMethod.Percentile)` with
    `quantize_static`'s options: symmetric, 2048 bins), the same method computed faster.

    ORT runs the augmented model (every tensor to calibrate a graph output, no graph
    optimisation) over the batches, stacks each tensor's values, histograms |x| into 2048 equal
    bins between min |x| and max |x|, takes the bin where the cumulative share first reaches
    `percentile` %, and returns (-T, T), T that bin's left edge, clipped to the tensor's
    [min, max]. Here the same augmented model runs the same batches (in `WORKERS` threads, with
    ORT's `graph_optimization`: see `_calibration_ranges`); only the bin that holds the
    ceil(p N)-th smallest |x| is needed, and that value is found by a partial sort of the top
    tail instead of histogramming every value. Each batch is summarised as soon as it has run
    (its min, max, min |x| and top tail of |x|: `_batch_summary`) and its activations let go, so
    the pass holds about two batches' activations instead of all of them. Where the count of
    values below a bin edge may land within 1e-9 of p N (where ORT's floating-point cumulative
    sum could round either way) the tensor's values are kept whole and the full histogram is
    computed as ORT does."""
    from onnxruntime.quantization.calibrate import CalibraterBase, CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
    model = load_model_with_shape_infer(Path(prepared))
    selector = CalibraterBase.__new__(CalibraterBase)
    selector.op_types_to_calibrate = _op_types()
    tensors, value_infos = CalibraterBase.select_tensors_to_calibrate(selector, model)
    feeds = [feed for feed in iter(reader.get_next, None) if feed]
    ranges = _tensor_percentile_ranges(model, [value_infos[name] for name in sorted(tensors)], feeds, percentile,
                                       graph_optimization)
    return TensorsData(CalibrationMethod.Percentile,
                       {name: TensorData(lowest=low, highest=high) for name, (low, high) in ranges.items()})


def _tensor_percentile_ranges(model: onnx.ModelProto, tensors: list[Any], feeds: list[dict], percentile: float,
                              graph_optimization: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`_percentile_ranges` of the tensors (`ValueInfoProto`s, sorted by name) of `model` (changed:
    they become graph outputs) over the input `feeds`: {name: (low, high)}."""
    inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    for info in tensors:
        if info.name not in outputs and info.name not in inputs:
            model.graph.output.append(info)
    # A model of its own, run once: not kept for a `shared_sessions` block (its arena holds a
    # batch's activations of every tensor).
    session = make_session(model.SerializeToString(), threads=1, graph_optimization=graph_optimization,
                           shared=False)
    names = [o.name for o in session.get_outputs()]
    if not feeds:
        raise ValueError("No data is collected.")
    q = float(percentile) / 100.0
    if q < 0 or q > 1:
        raise ValueError("Invalid percentile. Must be in range 0 <= percentile <= 100.")
    images = sum(len(next(iter(feed.values()))) for feed in feeds)

    def summarize(feed: dict, wanted: list[Any], whole: bool) -> list[Any]:
        """The `wanted` tensors of one batch: their values (`whole`) or their `_batch_summary`."""
        out = dict(zip(names, session.run(None, feed)))
        batch = len(next(iter(feed.values())))
        summaries = []
        for info in wanted:
            # Session outputs are ours to overwrite; a graph input is the caller's array.
            x, owned = (out.pop(info.name), True) if info.name in out else (np.asarray(feed[info.name]), False)
            summaries.append((x, owned) if whole else _batch_summary(x, owned, batch, images, q))
        return summaries

    # The batches run side by side (`run` is thread-safe), each batch summarised as soon as it has
    # run (numpy lets go of the GIL) and its activations then let go: a range depends on the set
    # of values, not their order, and the pass holds about two batches' activations, not all.
    # A tensor whose summaries cannot give its range (`_range_of_summaries`) is computed from all
    # its values in a second pass of the same session (the same activations).
    result: dict[str, Any] = {}
    wanted = tensors
    with ThreadPoolExecutor(WORKERS) as pool:
        for whole in (False, True):
            parts = zip(*pool.map(lambda feed: summarize(feed, wanted, whole), feeds))
            result.update(zip((info.name for info in wanted), pool.map(_range_of_summaries, parts, repeat(q))))
            wanted = [info for info in wanted if result[info.name] is None]
            if not wanted:
                break
    return result


@dataclass
class _Tail:
    """One batch of a tensor, summarised by `_batch_summary`: its min and max, min |x|, its |x|
    values from some point up (every value of the batch among the tensor's `top` largest |x|),
    its number of values and that of the tensor over all the batches."""

    low: np.ndarray
    high: np.ndarray
    abs_low: np.ndarray
    tail: np.ndarray
    size: int
    n: int


def _batch_summary(x: np.ndarray, owned: bool, batch: int, images: int, q: float) -> Any:
    """What `_percentile_range_of_parts` needs of `x`, one batch (of `batch` images) of a tensor
    calibrated on `images` images in all: a `_Tail` where the top tail of |x| is enough, else
    `(x, owned)` itself (an owned array may be overwritten).

    The range is the left edge of the histogram bin that holds the top-th largest |x|, once a
    check on the counts below and up to that bin has passed (`_percentile_range_of_parts`).
    Every value from the top-th largest up is among some batch's `top` largest, so the batches'
    tails give that value exactly, the count up to its bin exactly (>= k) and the count below it
    bounded (<= k - 1). Where those bounds pass the check whatever the data ((k - 1) / n and k / n
    clear of q by its 1e-9 margin), a tail is enough. Otherwise (p N an integer, or nearly: the
    count may land on p N, where ORT's floating-point cumulative sum over every bin decides) the
    batch is kept whole, as it is where its first axis is not the batch's images or a value is
    not finite."""
    if x.ndim == 0 or len(x) != batch or batch == 0:
        return x, owned
    n = x.size // batch * images
    k = max(1, min(n, int(np.ceil(q * n))))
    top = n - k + 1
    if not ((k - 1) / n < q - 1e-9 and k / n >= q + 1e-9):
        return x, owned
    flat = x.reshape(-1)
    low, high = flat.min(), flat.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        return x, owned
    if low >= 0:           # |x| is x (but for the sign of a zero, which no count or bound sees)
        absolute, abs_low = flat, abs(low)
    elif high <= 0:
        absolute, abs_low = np.negative(flat, out=flat if owned else None), abs(high)
    else:
        absolute = np.absolute(flat, out=flat if owned else None)
        abs_low = absolute.min()
    tail = absolute
    if 8 * top < absolute.size:
        # From a guess on a strided sample, far enough below the batch's top-th largest |x| that
        # the values from it up number `top` or more; where they do not, the whole batch is kept.
        step = max(1, absolute.size // 4096)
        sample = absolute[::step]
        rank = max(0, sample.size - 1 - 4 * (top // step + 1) - 8)
        candidates = absolute[absolute >= np.partition(sample, rank)[rank]]
        if candidates.size >= top:
            tail = candidates
    return _Tail(low, high, abs_low, tail, absolute.size, n)


def _range_of_summaries(parts: tuple[Any, ...], q: float) -> tuple[np.ndarray, np.ndarray] | None:
    """`_percentile_range_of_parts` of a tensor's batches from their `_batch_summary`s, the same
    range; None where they cannot give it (some batches kept whole and others not, or batches
    whose sizes do not add up to the values their tails assumed)."""
    kept = [p for p in parts if not isinstance(p, _Tail)]
    if len(kept) == len(parts):
        return _percentile_range_of_parts(kept, q)
    if kept:
        return None
    n = parts[0].n
    if sum(p.size for p in parts) != n:
        return None
    dtype = parts[0].tail.dtype
    min_value, max_value = np.min([p.low for p in parts]), np.max([p.high for p in parts])
    # np.histogram's edges for data from min |x| to max |x|, as in `_percentile_range_of_parts`.
    low_high = np.array([np.min([p.abs_low for p in parts]), max(abs(min_value), abs(max_value))], dtype=dtype)
    edges = np.histogram(low_high, bins=PERCENTILE_BINS)[1].astype(dtype)
    top = n - max(1, min(n, int(np.ceil(q * n)))) + 1
    tail = np.concatenate([p.tail for p in parts])
    value = np.partition(tail, tail.size - top)[tail.size - top]
    b = min(int(np.searchsorted(edges, value, side="right")) - 1, PERCENTILE_BINS - 1)
    low = -np.array(edges[b], dtype=dtype)
    high = np.array(edges[b], dtype=dtype)
    if low < min_value:
        low = min_value
    if high > max_value:
        high = max_value
    return low, high


def _percentile_range(x: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """ORT's symmetric percentile range of the values `x` (see `_percentile_ranges`)."""
    return _percentile_range_of_parts([(x, False)], q)


def _percentile_range_of_parts(parts: list[tuple[np.ndarray, bool]], q: float) -> tuple[np.ndarray, np.ndarray]:
    """`_percentile_range` of the values of all `parts` together, each (array, owned): an owned
    array is overwritten with its absolute values, the others are left as they are. The same
    result as on their concatenation, computed without it."""
    arrays = [a.reshape(-1) for a, _ in parts]
    min_value, max_value = np.nanmin([np.nanmin(a) for a in arrays]), np.nanmax([np.nanmax(a) for a in arrays])
    arrays = [np.absolute(a, out=a) if owned else np.absolute(a) for a, (_, owned) in zip(arrays, parts)]
    n = sum(a.size for a in arrays)
    dtype = arrays[0].dtype
    # np.histogram's edges for data from min |x| to max |x| (they depend on those two only).
    low_high = np.array([np.min([a.min() for a in arrays]), np.max([a.max() for a in arrays])], dtype=dtype)
    edges = np.histogram(low_high, bins=PERCENTILE_BINS)[1].astype(dtype)
    last = PERCENTILE_BINS - 1

    def bin_of(v: Any) -> int:   # np.histogram's bin: edges[i] <= v < edges[i + 1], the last one closed
        return min(int(np.searchsorted(edges, v, side="right")) - 1, last)

    k = max(1, min(n, int(np.ceil(q * n))))     # the k-th smallest |x| holds the percentile
    top = n - k + 1                               # ... it is the top-th largest
    tail = None
    if top < n // 4:
        # A guess from a strided sample, lowered to the left edge of its bin; only the values
        # from there up are partially sorted. Any edge at or below the top-th largest |x| gives
        # the same result (every value of the bins counted below is >= it), so the sample needs
        # no particular stride; a guess above it leaves fewer than `top` candidates, and then
        # every value is sorted.
        step = max(1, n // 65536)
        sample = np.sort(np.concatenate([a[::step] for a in arrays]))
        guess = edges[bin_of(sample[max(0, len(sample) - 1 - 4 * (top // step + 1) - 8)])]
        candidate = np.concatenate([a[a >= guess] for a in arrays])
        if candidate.size >= top:
            tail = candidate
    if tail is None:
        tail = np.concatenate(arrays)
    value = np.partition(tail, tail.size - top)[tail.size - top]
    b = bin_of(value)   # edges[b] >= the tail's lower bound: counts from the tail alone
    below = n - int(np.count_nonzero(tail >= edges[b]))               # values in bins < b
    upto = n if b == last else n - int(np.count_nonzero(tail >= edges[b + 1]))
    if not (below / n < q - 1e-9 and upto / n >= q + 1e-9):   # a near tie: ORT's own arithmetic
        hist, hist_edges = np.histogram(np.concatenate(arrays), bins=PERCENTILE_BINS)
        hist_edges = hist_edges.astype(dtype)
        cdf = np.cumsum(hist / hist.sum())
        b = int(np.searchsorted(cdf, q))
        edges = hist_edges
    low = -np.array(edges[b], dtype=edges.dtype)
    high = np.array(edges[b], dtype=edges.dtype)
    if low < min_value:
        low = min_value
    if high > max_value:
        high = max_value
    return low, high


def _quantize_qdq(prepared: Path, out_path: str | os.PathLike, ranges: Any, method: str,
                  percentile: float) -> None:
    """`quantize_static`'s QDQ step with the calibration ranges given: the same quantizer, the
    same arguments. (It would also raise the opset of a model below opset 11 or of a 16-bit or
    float8 quantization; exports are opset MIN_OPSET >= 17 and int8, which it leaves as they are.)"""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
    model = load_model_with_shape_infer(Path(prepared))
    quantizer = QDQQuantizer(model, True, False, QuantType.QInt8, QuantType.QInt8, ranges, [], [], _op_types(),
                             _extra_options(method, percentile))
    quantizer.quantize_model()
    quantizer.model.save_model_to_file(os.fspath(out_path), False)


def _quiet_collector(**options: Any) -> Any:
    """ORT's `HistogramCollector` for the entropy method without its `print`s (and taking a
    last batch smaller than the others): `collect` and `compute_collection_result` do what ORT's
    do for entropy (restated from onnxruntime 1.32's calibrate.py; tests/test_reliability.py
    checks that the files are byte for byte `quantize_static`'s). The percentile method does not
    come here (`_percentile_ranges`), nor min-max (its calibrator prints nothing)."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    class QuietHistogramCollector(HistogramCollector):
        def collect(self, name_to_arr):
            if self.method != "entropy":
                raise ValueError(f"calibration method {self.method!r} is not used here")
            return self.collect_value(_EvenBatches(name_to_arr))

        def compute_collection_result(self):
            if not self.histogram_dict:
                raise ValueError("Histogram has not been collected. Please run collect() first.")
            return {tensor: (*self.get_entropy_threshold(histogram, self.num_quantized_bins), *histogram[:2])
                    for tensor, histogram in self.histogram_dict.items()}

    return QuietHistogramCollector(**options)


class _EvenBatches:
    """The calibrator's {tensor: list of its batches' arrays}, as ORT's collector reads it
    (`items()`, one tensor at a time). The collector stacks each list with np.asarray, which fails
    when the last batch is smaller than the others (a calibration set that is not a multiple of
    CALIBRATION_BATCH): such a list is joined flat instead, the same values in the same order, so
    the same histograms. Lists of equal batches pass as they are."""

    def __init__(self, name_to_arr: Mapping[str, Any]) -> None:
        self.name_to_arr = name_to_arr

    def items(self):
        for name, arr in self.name_to_arr.items():
            if isinstance(arr, list) and len({np.shape(a) for a in arr}) > 1:
                arr = np.concatenate([np.ravel(a) for a in arr])
            yield name, arr


# ------------------------------------------------------------------------------ our QDQ writer
# `quantize_static`'s file for the graphs of our exports, written with numpy: ORT's
# quant_pre_process (~0.3 s) and QDQ quantizer (~1-2 s, per-channel loops in Python) replaced
# by `_prepare` and `_write_qdq`, which give the same file byte for byte after `_compact`
# (tests/test_int8_writer.py checks it against ORT's path on subnets of the bundled supernet).
# What follows restates onnxruntime 1.32's onnxruntime/quantization (qdq_quantizer.py,
# base_quantizer.py, quant_utils.py, onnx_model.py) for these ops and options only.


class _Unsupported(Exception):
    """A graph `_write_qdq` does not handle: ORT's quantizer writes it (`_quantize_with_ort`)."""


# How quant_pre_process's ORT optimiser writes each operator's attributes: ORT fills in the
# schema's defaults and writes them in its own order. {op: (attributes in ORT's order, the
# defaults it adds)}; a node whose attributes are not exactly the others (what our exporter
# writes) goes the ORT way. HardSwish is inlined, as ORT inlines its function body.
_ORT_ATTRIBUTES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "Conv": (("auto_pad", "dilations", "group", "strides", "kernel_shape", "pads"), {"auto_pad": "NOTSET"}),
    "HardSigmoid": (("beta", "alpha"), {"beta": 0.5}),
    "ReduceMean": (("keepdims", "axes"), {}),
    "Flatten": (("axis",), {}),
    "Gemm": (("alpha", "beta", "transA", "transB"), {"transA": 0}),
    "Relu": ((), {}), "Mul": ((), {}), "Add": ((), {}), "HardSwish": ((), {}),
}
# The opsets ORT's optimiser writes into the prepared file (its registered domains).
_ORT_OPSETS = (("ai.onnx.ml", 5), ("ai.onnx.training", 1), ("ai.onnx.preview", 1), ("com.microsoft", 1),
               ("ai.onnx.preview.training", 1), ("com.microsoft.experimental", 1), ("com.microsoft.nchwc", 1),
               ("org.pytorch.aten", 1))
# The ops of `_ORT_ATTRIBUTES` that `quantize_static` calibrates and quantizes (`_op_types()`):
# HardSigmoid and ReduceMean are not, their tensors are those of their neighbours.
_QUANTIZED_OPS = frozenset({"Conv", "Gemm", "Relu", "Mul", "Add", "Flatten"})
# quant_utils.__producer__ / __version__: the producer ORT's quantizer stamps on its file.
_ORT_PRODUCER, _ORT_PRODUCER_VERSION = "onnx.quantize", "0.1.0"
_INT8_MIN, _INT8_MAX, _INT32_MAX = -128, 127, 2 ** 31 - 1


def _prepare(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """The float `model` as ORT's quant_pre_process writes it, for the graphs `_write_qdq`
    handles (None for any other): every HardSwish inlined into HardSigmoid(alpha=1/6, beta=0.5)
    and Mul, the inlined tensors named as ORT names them, the attributes filled in and ordered as
    ORT writes them, ORT's opset imports. (No shape inference: nothing downstream needs it.)"""
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1 or graph.input[0].type.tensor_type.elem_type != 1:
        return None
    names = {t for node in graph.node for t in (*node.input, *node.output)}
    floats = {i.name: i for i in graph.initializer}
    if any(i.data_type != onnx.TensorProto.FLOAT for i in graph.initializer):
        return None
    nodes, inlined, bias_users = [], 0, set()
    for node in graph.node:
        spec = _ORT_ATTRIBUTES.get(node.op_type)
        if spec is None or node.domain not in ("", "ai.onnx") or len(node.output) != 1:
            return None
        order, defaults = spec
        given = {a.name: a for a in node.attribute}
        if set(given) != set(order) - set(defaults) or (node.op_type == "HardSigmoid" and "beta" in given):
            return None
        if node.op_type in ("Conv", "Gemm"):
            # weights and biases initializers, each bias of one node, the data input not
            if node.input[0] in floats or node.input[1] not in floats or len(node.input) not in (2, 3):
                return None
            if len(node.input) == 3:
                if node.input[2] not in floats or node.input[2] in bias_users:
                    return None
                bias_users.add(node.input[2])
        elif any(t in floats for t in node.input):
            return None
        if node.op_type == "HardSwish":
            hs = "_inlfunc_HardSwish_HS_X" if inlined == 0 else f"_inlfunc_HardSwish_token_{inlined - 1}_HS_X"
            inlined += 1
            if hs in names:
                return None
            sigmoid = onnx.helper.make_node("HardSigmoid", [node.input[0]], [hs])
            sigmoid.attribute.extend([onnx.helper.make_attribute("beta", 0.5),
                                      onnx.helper.make_attribute("alpha", 1.0 / 6.0)])
            mul = onnx.helper.make_node("Mul", [node.input[0], hs], [node.output[0]])
            sigmoid.name = mul.name = ""   # ORT writes the inlined nodes' empty names
            nodes += [sigmoid, mul]
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        del copy.attribute[:]
        copy.attribute.extend(given[name] if name in given else onnx.helper.make_attribute(name, defaults[name])
                              for name in order)
        nodes.append(copy)
    prepared = onnx.ModelProto()
    prepared.CopyFrom(model)
    del prepared.graph.node[:]
    prepared.graph.node.extend(nodes)
    prepared.opset_import.extend(onnx.helper.make_opsetid(domain, version) for domain, version in _ORT_OPSETS)
    prepared.graph.doc_string = model.graph.doc_string   # ORT writes it, empty or not
    return prepared


def _calibrated_tensors(prepared: onnx.ModelProto) -> list[str]:
    """The tensors `quantize_static` calibrates (CalibraterBase.select_tensors_to_calibrate): the
    inputs and outputs, not initializers, of the nodes it quantizes, sorted by name."""
    floats = {i.name for i in prepared.graph.initializer}
    return sorted({t for node in prepared.graph.node if node.op_type in _QUANTIZED_OPS
                   for t in (*node.input, *node.output) if t and t not in floats})


def _writer_ranges(prepared: onnx.ModelProto, calibration: np.ndarray, method: str, percentile: float,
                   tensors: Any = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The calibrated (low, high) of every tensor of `_calibrated_tensors(prepared)`: the ranges
    `_calibration_ranges` gives for the file quant_pre_process writes. `tensors` (names among
    those): the percentile method computes only theirs (ORT's calibrators, all of them). Each
    tensor's range depends on its own values only: the same numbers whichever others are
    computed beside it (tests/test_int8_writer.py)."""
    input_name = prepared.graph.input[0].name
    if method == "percentile":
        augmented = onnx.ModelProto()
        augmented.CopyFrom(prepared)
        calibrated = _calibrated_tensors(prepared)
        if tensors is not None:
            unknown = sorted(set(tensors) - set(calibrated))
            if unknown:
                raise ValueError(f"tensors {unknown[:3]} are not among the calibrated tensors")
            calibrated = sorted(set(tensors))
        tensors = [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in calibrated]
        feeds = [{input_name: calibration[start:start + PERCENTILE_BATCH]}
                 for start in range(0, len(calibration), PERCENTILE_BATCH)]
        return _tensor_percentile_ranges(augmented, tensors, feeds, percentile, "ORT_ENABLE_ALL")
    with tempfile.TemporaryDirectory(prefix="ofa-quantize-") as tmp:
        path = Path(tmp) / "prepared.onnx"
        onnx.save(prepared, os.fspath(path))
        ranges = _calibration_ranges(path, Path(tmp) / "augmented.onnx", _reader(prepared, calibration), method,
                                     percentile)
    return {name: data.range_value for name, data in ranges.data.items()}


def _check_ranges(ranges: Mapping[str, tuple[Any, Any]]) -> list[np.ndarray]:
    """The (low, high) bounds of `ranges`, tensor by tensor, as arrays; `_Unsupported` unless
    each is one float32 number (ORT's min-max ranges are of shape (1,))."""
    bounds = [np.asarray(bound) for n in ranges for bound in ranges[n]]
    if any(b.size != 1 or b.dtype != np.float32 for b in bounds):
        raise _Unsupported("ranges that are not float32 numbers")
    return bounds


def _activation_qparams(ranges: Mapping[str, tuple[Any, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tensor: (int8 zero point, float32 scale)} of the activations' asymmetric int8 quantization
    of their (low, high): quant_utils.compute_scale_zp (qmin -128, qmax 127), all at once."""
    names = list(ranges)
    bounds = _check_ranges(ranges)
    low, high = np.array([b.reshape(()) for b in bounds]).reshape(-1, 2).T
    low = np.minimum(low, np.float32(0)).astype(np.float64)
    high = np.maximum(high, np.float32(0)).astype(np.float64)
    scale = (high - low) / (float(_INT8_MAX) - float(_INT8_MIN))
    tiny = scale < np.finfo(np.float32).tiny
    with np.errstate(divide="ignore", invalid="ignore"):
        zero = np.where(tiny, 0.0, np.round(float(_INT8_MIN) - low / scale)).astype(np.int8)
    scale = np.where(tiny, np.float32(1.0), scale.astype(np.float32))
    return {name: (zero[i], scale[i]) for i, name in enumerate(names)}


def _weight_scales(weight: np.ndarray, axis: int) -> np.ndarray:
    """The per-channel (along `axis`) float32 scales of `weight`'s symmetric int8 quantization
    (range -127..127: compute_scale_zp with symmetric=True; zero points 0)."""
    absmax = np.abs(np.moveaxis(weight, axis, 0).reshape(weight.shape[axis], -1)).max(axis=1)
    scale = (2.0 * absmax.astype(np.float64)) / (127.0 - -127.0)
    return np.where(scale < np.finfo(np.float32).tiny, np.float32(1.0), scale.astype(np.float32))


def _bias_safe_weight_scales(weight_scale: np.ndarray, input_scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """QDQQuantizer._adjust_weight_scale_for_int32_bias (per channel), all channels at once: a
    channel's weight scale is raised where input scale x weight scale would be too small for its
    bias to fit in int32."""
    qrange = np.float64(_INT32_MAX) - np.float64(-_INT32_MAX)
    # float32 as ORT computes it (python floats times a float32 stay float32), then float64
    smallest = (np.float32(1.0001) * (np.float32(2.0) * np.abs(bias))).astype(np.float64) / qrange
    candidate = np.float64(input_scale.item()) * weight_scale.astype(np.float64)
    raise_it = (candidate < smallest) & (candidate > 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        raised = (weight_scale.astype(np.float64) * (smallest / candidate)).astype(np.float32)
    return np.where(raise_it, raised, weight_scale)


@dataclass
class _QDQPlan:
    """What `_write_qdq` does to a prepared graph, worked out from which tensors were calibrated
    (not from their ranges): its nodes (copies), `sources` (each calibrated tensor: the one whose
    range it takes, `BaseQuantizer.adjust_tensor_ranges`), `marked` ({tensor: None (activation) |
    weight axis | (input, node) shared}), `biases` ({bias: (input, weight, beta)}) and the node
    indices `removed`."""

    nodes: list[onnx.NodeProto]
    sources: dict[str, str]
    marked: dict[str, Any]
    biases: dict[str, tuple[str, str, float]]
    removed: set[int]

    def quantized(self) -> list[str]:
        """The tensors whose ranges `_write_qdq` reads: every activation with a QDQ pair of its
        own, and every biased node's input (its scale can raise the weights')."""
        names = [name for name, kind in self.marked.items() if kind is None and name in self.sources]
        names += [x for x, _, _ in self.biases.values() if x in self.sources and x in self.marked]
        return list(dict.fromkeys(names))

    def ranges_read(self) -> list[str]:
        """The calibrated tensors whose ranges the file depends on, sorted: those `quantized`
        takes theirs from. The others' (a Relu's input, which takes the Relu's) are never read."""
        return sorted({self.sources[name] for name in self.quantized()})


def _qdq_plan(prepared: onnx.ModelProto, calibrated: Any) -> _QDQPlan:
    """`_write_qdq`'s plan for `prepared` when the tensors `calibrated` (a collection of names)
    have ranges."""
    graph = prepared.graph
    graph_input, graph_output = graph.input[0].name, graph.output[0].name
    nodes = []
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        nodes.append(copy)
    readers = Counter(t for node in nodes for t in node.input if t)
    producers = {node.output[0]: node for node in nodes}

    # BaseQuantizer.adjust_tensor_ranges: a Relu's only input takes the Relu's range.
    sources = {name: name for name in calibrated}
    for node in nodes:
        if (node.op_type == "Relu" and readers[node.input[0]] == 1 and node.input[0] in sources
                and node.output[0] in sources):
            sources[node.input[0]] = sources[node.output[0]]

    # quantize_model's marking pass
    marked: dict[str, Any] = {}
    biases: dict[str, tuple[str, str, float]] = {}   # bias: (input, weight, beta)
    removed: set[int] = set()

    def mark(name: str) -> None:
        if name and name not in marked:
            marked[name] = None

    for i, node in enumerate(nodes):
        op, x, y = node.op_type, node.input[0], node.output[0]
        if op in ("Conv", "Gemm"):
            mark(x)
            mark(y)
            trans_b = op == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
            marked[node.input[1]] = 0 if op == "Conv" or trans_b else 1
            if len(node.input) == 3:
                beta = next((a for a in node.attribute if a.name == "beta"), None)
                biases[node.input[2]] = (x, node.input[1], 1.0 if beta is None else float(beta.f))
                if beta is not None:
                    beta.f = 1.0   # set_default_beta: the bias carries beta
        elif op == "Relu":
            if x not in marked and x not in biases:
                continue
            if y in sources and x in sources and readers[x] == 1 and x not in (graph_input, graph_output):
                producers[y] = producers.pop(x)   # the producer writes the Relu's output; the Relu goes
                producers[y].output[0] = y
                marked.pop(x, None)
                removed.add(i)
            else:
                mark(x)
            mark(y)
        elif op in ("Mul", "Add"):
            for name in (*node.input, *node.output):
                mark(name)
        elif op == "Flatten":
            if x in marked or x in biases:
                marked[y] = (x, node.name)
    return _QDQPlan(nodes, sources, marked, biases, removed)


def _write_qdq(prepared: onnx.ModelProto, ranges: Mapping[str, tuple[Any, Any]],
               plan: _QDQPlan | None = None) -> onnx.ModelProto:
    """ORT's QDQQuantizer(prepared, per_channel=True, QInt8 weights and activations, ranges,
    ActivationSymmetric=False, WeightSymmetric=True).quantize_model(), as ORT saves it, for a
    graph of `_prepare`: per-channel symmetric int8 weights (Gemm's along axis 0 when transB),
    int32 biases, a QuantizeLinear -> DequantizeLinear pair with asymmetric int8 parameters on
    every activation a quantized node reads or writes, a Relu after a Conv folded into it,
    Flatten's output on its input's parameters. Raises `_Unsupported` where ORT would do
    something this does not restate.

    `plan`: `_qdq_plan(prepared, calibrated)` for the tensors ORT's calibration would have given
    ranges (None: the plan for those of `ranges`); `ranges` then needs only those of its
    `ranges_read()`: the file depends on no other. A plan is used up (the writer edits its
    nodes)."""
    if plan is None:
        plan = _qdq_plan(prepared, set(ranges))
    graph = prepared.graph
    floats = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    graph_input, graph_output = graph.input[0].name, graph.output[0].name
    nodes, sources, marked, biases, removed = plan.nodes, plan.sources, plan.marked, plan.biases, plan.removed
    _check_ranges(ranges)
    read = plan.ranges_read()
    missing = [name for name in read if name not in ranges]
    if missing:
        raise ValueError(f"no range for the calibrated tensors {missing[:3]} ({len(missing)} in all)")
    activations = _activation_qparams({name: ranges[sources[name]] for name in plan.quantized()})
    weights = {name: _weight_scales(floats[name], axis) for name, axis in marked.items()
               if isinstance(axis, int) and not isinstance(axis, bool)}
    for bias, (x, weight, _) in biases.items():
        if x in sources and x in marked and weight in weights:
            weights[weight] = _bias_safe_weight_scales(weights[weight], activations[x][1], floats[bias])

    new_nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    params: dict[str, tuple[str, str]] = {}   # tensor: (scale, zero point) initializer names
    renamed_inputs: dict[str, str] = {}

    def qdq_pair(name: str, scale: str, zero: str) -> None:
        q_input, dq_output = name, name + "_DequantizeLinear_Output"
        if name == graph_output:
            q_input, dq_output = name + "_QuantizeLinear_Input", name
            for node in nodes:
                node.output[:] = [q_input if t == name else t for t in node.output]
        else:
            renamed_inputs[name] = dq_output
        new_nodes.append(onnx.helper.make_node("QuantizeLinear", [q_input, scale, zero],
                                               [name + "_QuantizeLinear_Output"], name + "_QuantizeLinear"))
        new_nodes.append(onnx.helper.make_node("DequantizeLinear", [name + "_QuantizeLinear_Output", scale, zero],
                                               [dq_output], name + "_DequantizeLinear"))

    for name, kind in marked.items():   # _quantize_normal_tensors
        if isinstance(kind, tuple):
            continue
        scale_name, zero_name = name + "_scale", name + "_zero_point"
        if name in weights:
            scale, w = weights[name], floats[name]
            shape = [1] * w.ndim
            shape[kind] = len(scale)
            q = np.clip((w / scale.reshape(shape)).round(), _INT8_MIN, _INT8_MAX).astype(np.int8)
            new_inits += [onnx.helper.make_tensor(zero_name, onnx.TensorProto.INT8, [len(scale)], [0] * len(scale)),
                          onnx.helper.make_tensor(scale_name, onnx.TensorProto.FLOAT, [len(scale)], scale.tolist()),
                          numpy_helper.from_array(q, name + "_quantized")]
            renamed_inputs[name] = name + "_DequantizeLinear_Output"
            new_nodes.append(onnx.helper.make_node(
                "DequantizeLinear", [name + "_quantized", scale_name, zero_name],
                [name + "_DequantizeLinear_Output"], name + "_DequantizeLinear", axis=kind))
        elif name in floats or name not in activations:
            raise _Unsupported(f"tensor {name!r}: an activation initializer or one without a range")
        else:
            zero, scale = activations[name]
            new_inits += [onnx.helper.make_tensor(zero_name, onnx.TensorProto.INT8, [], [int(zero)]),
                          onnx.helper.make_tensor(scale_name, onnx.TensorProto.FLOAT, [], [float(scale)])]
            qdq_pair(name, scale_name, zero_name)
        params[name] = (scale_name, zero_name)
    pending = [name for name, kind in marked.items() if isinstance(kind, tuple)]
    while pending:   # _quantize_sharing_param_tensors
        ready = [name for name in pending if marked[name][0] in params]
        if not ready:
            raise _Unsupported("a Flatten whose input is not quantized")
        for name in pending:
            if marked[name][0] in params:
                params[name] = params[marked[name][0]]
                qdq_pair(name, *params[name])
        pending = [name for name in pending if name not in params]
    scales = {init.name: init for init in new_inits if init.data_type == onnx.TensorProto.FLOAT}
    for bias, (x, weight, beta) in biases.items():   # _quantize_bias_tensors
        if x not in params or weight not in params:
            raise _Unsupported(f"bias {bias!r} of an unquantized input")
        input_scale = numpy_helper.to_array(scales[params[x][0]])
        bias_scale = input_scale * numpy_helper.to_array(scales[params[weight][0]]) * beta
        q = np.clip((floats[bias].astype(np.float64) / bias_scale.astype(np.float64)).round(),
                    float(-_INT32_MAX - 1), float(_INT32_MAX)).astype(np.int32)
        zero = (numpy_helper.from_array(np.zeros(bias_scale.size, np.int32), bias + "_quantized_zero_point")
                if bias_scale.size > 1 else
                onnx.helper.make_tensor(bias + "_quantized_zero_point", onnx.TensorProto.INT32, [], [0]))
        new_inits += [numpy_helper.from_array(q.reshape(floats[bias].shape), bias + "_quantized"),
                      numpy_helper.from_array(bias_scale.astype(np.float32).reshape(-1), bias + "_quantized_scale"),
                      zero]
        new_nodes.append(onnx.helper.make_node(
            "DequantizeLinear", [bias + "_quantized", bias + "_quantized_scale", bias + "_quantized_zero_point"],
            [bias], bias + "_DequantizeLinear", **({"axis": 0} if bias_scale.size > 1 else {})))

    kept = [node for i, node in enumerate(nodes) if i not in removed]
    for node in kept:
        node.input[:] = [renamed_inputs.get(t, t) for t in node.input]
    all_nodes = kept + new_nodes
    used = {t for node in all_nodes for t in node.input} | {graph_output}
    inits = [i for i in graph.initializer if i.name in used and i.name not in biases] + new_inits
    model = onnx.ModelProto()
    model.CopyFrom(prepared)
    del model.graph.node[:], model.graph.initializer[:], model.graph.value_info[:]
    model.graph.node.extend(_ort_topological_order(all_nodes, [i.name for i in inits] + [graph_input]))
    model.graph.initializer.extend(inits)
    model.producer_name, model.producer_version = _ORT_PRODUCER, _ORT_PRODUCER_VERSION
    return model


def _ort_topological_order(nodes: list[onnx.NodeProto], sources: list[str]) -> list[onnx.NodeProto]:
    """`nodes` in the order ORT's ONNXModel.topological_sort puts them before the quantizer saves
    its file: nodes without inputs, then those that the sorted initializer and input names
    (`sources`) complete, then breadth first from those."""
    waiting = [sum(1 for t in node.input if t) for node in nodes]
    readers: dict[str, list[int]] = {}
    order = [node for node, count in zip(nodes, waiting) if count == 0]
    for i, node in enumerate(nodes):
        if waiting[i]:
            for t in node.input:
                if t:
                    readers.setdefault(t, []).append(i)

    def release(name: str) -> None:
        for i in readers.get(name, ()):
            waiting[i] -= 1
            if waiting[i] == 0:
                order.append(nodes[i])

    for name in sorted(set(sources)):
        release(name)
    done = 0
    while done < len(order):
        for t in order[done].output:
            release(t)
        done += 1
    if len(order) != len(nodes):
        raise _Unsupported("the graph is not a DAG")
    return order


def _compact(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with what a deployment does not need taken out: tensors renamed to short
    ids (the graph's input and output keep their names), node names and shape annotations
    dropped, and the all-zero zero points of the symmetric weights removed (the ONNX default
    for an omitted zero point is 0 of the data's type): the long names the exporter and the
    quantizer give every tensor would otherwise cost a Flash budget tens of KB."""
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in names:
            names[name] = f"t{len(names)}"
        return names[name]

    dropped: set[str] = set()
    for node in graph.node:
        if (node.op_type == "DequantizeLinear" and len(node.input) == 3 and node.input[0] in inits
                and node.input[2] in inits and not numpy_helper.to_array(inits[node.input[2]]).any()):
            dropped.add(node.input[2])
            del node.input[2]
    used = {n for node in graph.node for n in node.input}
    kept = [i for i in graph.initializer if i.name in used or i.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for node in graph.node:
        node.name = ""
        for i, name in enumerate(node.input):
            node.input[i] = short(name)
        for i, name in enumerate(node.output):
            node.output[i] = short(name)
    for init in graph.initializer:
        init.name = short(init.name)
    del graph.value_info[:]
    return proto


def weight_bytes(model: str | os.PathLike | bytes | onnx.ModelProto) -> dict[str, int]:
    """Bytes of a QDQ file's weights: `weight_bytes` is the sum of the quantized initializers
    (int8 weights and int32 biases, the data input of each DequantizeLinear fed by an
    initializer); `scale_bytes` and `zero_point_bytes` are those initializers' scales (float32)
    and zero points (int8 / int32); `activation_qparam_bytes` the activations' scales and zero
    points; `file_bytes` the serialised size. For a float file `weight_bytes` is the sum of all
    initializers."""
    if isinstance(model, bytes):
        model = onnx.load_from_string(model)
    elif not isinstance(model, onnx.ModelProto):
        model = onnx.load(os.fspath(model))
    inits = {i.name: i for i in model.graph.initializer}
    sizes = {name: numpy_helper.to_array(t).nbytes for name, t in inits.items()}
    weights = scales = zero_points = 0
    used: set[str] = set()
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            weights += sizes[node.input[0]]
            scales += sizes[node.input[1]]
            zero_points += sizes[node.input[2]] if len(node.input) > 2 and node.input[2] else 0
            used.update(node.input)
    if not used:   # a float file: every initializer is a weight or bias
        weights = sum(sizes.values())
    qparams = 0
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            qparams += sum(sizes[n] for n in node.input[1:] if n in inits and n not in used)
            used.update(node.input[1:])
    return {"weight_bytes": int(weights), "scale_bytes": int(scales), "zero_point_bytes": int(zero_points),
            "activation_qparam_bytes": int(qparams), "file_bytes": int(model.ByteSize())}


def quantization_metadata(model: str | os.PathLike | bytes) -> dict[str, Any] | None:
    """The `quantization` metadata of an int8 file written by `quantize_onnx` (None for a file
    without it, such as a float export)."""
    proto = (onnx.load_from_string(model) if isinstance(model, bytes)
             else onnx.load(os.fspath(model), load_external_data=False))
    for prop in proto.metadata_props:
        if prop.key == "quantization":
            return json.loads(prop.value)
    return None


# Graph bytes per quantized conv / linear layer in a compacted QDQ file (its ~8 nodes, the
# activations' scales and zero points), and the fixed part (metadata, inputs, outputs): generous
# upper bounds (tests/test_int8.py checks that the estimate is not below a real file's overhead).
LAYER_GRAPH_BYTES, FIXED_GRAPH_BYTES = 800, 8 * 1024


def estimate_overhead_bytes(net: Any) -> int:
    """An upper estimate of what an int8 file of `net` (a torch module) holds beyond its weight
    bytes: a float32 scale per output channel of every conv / linear weight, another per int32
    bias channel (BN folds into one), and the graph. `specialize` keeps the file within a
    Flash budget with it."""
    from torch import nn
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    folded = {id(m.conv) for m in net.modules() if hasattr(m, "conv") and hasattr(m, "bn")
              and isinstance(getattr(m, "bn"), nn.BatchNorm2d)}
    total = FIXED_GRAPH_BYTES
    for m in layers:
        out = m.weight.shape[0]
        has_bias = m.bias is not None or id(m) in folded
        total += 4 * out * (2 if has_bias else 1) + LAYER_GRAPH_BYTES
    return int(total)
