"""ONNX Runtime sessions and their timing, set up one way for the whole engine.

Every ONNX Runtime session of the engine (export verification, latency measurement, the ONNX
accuracy of `specialize`, the notes' block timings) comes from `make_session`, and every timed
run goes through `time_session`. What differs between callers is an explicit argument.

This file imports only the standard library, numpy and onnxruntime: a profile kit ships it
beside `runner.py` (a copy of `runtime/measure.py`), to run on a device with nothing else.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import time
from typing import Iterator, Mapping, Sequence

import numpy as np
import onnxruntime

__all__ = ["CPU_PROVIDERS", "make_session", "shared_sessions", "input_feed", "time_session"]

CPU_PROVIDERS = ("CPUExecutionProvider",)

# The sessions of the innermost `shared_sessions()` block of this context, by model and options.
_SHARED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("ofa_engine_shared_sessions", default=None)


@contextlib.contextmanager
def shared_sessions() -> Iterator[None]:
    """Within the block, `make_session` opens one session per model content and options, and
    hands that one out again instead of opening another: the steps of one `specialize` call that
    run the same file alike (its export check, accuracy pass and one-thread latency measurement)
    share it (~15-20 ms a session for the tiny supernet's subnets). Options that cannot change
    what a model computes are not told apart: spinning with one thread, the QDQ setting of a
    model without QuantizeLinear / DequantizeLinear. A session is safe to run from several
    threads. The block's sessions are let go when it ends; outside a block, and for
    `make_session(..., shared=False)`, every call opens a new session. Per context: threads
    started inside the block do not share unless they run in a copy of its context."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def make_session(model: str | os.PathLike | bytes, threads: int = 1, *, allow_spinning: bool = True,
                 graph_optimization: str = "ORT_ENABLE_ALL", fuse_qdq: bool = True, memory_arena: bool = True,
                 providers: Sequence[str] = CPU_PROVIDERS, shared: bool = True) -> onnxruntime.InferenceSession:
    """A session for the ONNX file (path) or serialised model (bytes) `model`.

    `threads` intra-op threads and one inter-op thread, sequential execution, graph
    optimisation `graph_optimization` (a `GraphOptimizationLevel` name; ONNX Runtime's default
    is ORT_ENABLE_ALL). `allow_spinning=False` stops idle worker threads from spinning, which
    only helps with several threads and otherwise takes the CPU from a shared machine's
    neighbours. `FileNotFoundError` for a missing file, `ValueError` for a bad thread count.

    `fuse_qdq=False` runs a QDQ (int8) file as written: every QuantizeLinear and
    DequantizeLinear is a node of its own and the ops between them compute in float, which is the
    file's arithmetic as ONNX defines it (`session.disable_quant_qdq`; ORT still optimises the
    float ops). The default lets ORT fuse DQ -> Conv -> Q groups into its integer kernels
    (QLinearConv), the deployment speed, whose results depend on the CPU: on x86 without VNNI
    ORT converts int8 activations to uint8 where a quantized tensor has one consumer only, and
    its u8 x s8 products can saturate. Accuracies of int8 files are measured with
    `fuse_qdq=False` (docs/int8.md); a float file runs the same either way.

    `memory_arena=False` allocates each tensor from the C library instead of ONNX Runtime's
    arena, which grows by doubling: measured faster for batches of 500 images (specialize's
    accuracy pass when it ran 500 images a run: 0.200 -> 0.186 s for the fp32 case, medians of
    15 alternating calls), no different for 250 or 50 (its batches now). The same results
    either way.

    `shared`: inside a `shared_sessions()` block, the block's session of the same model and
    options if it has one (False: a new session all the same).
    """
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads = {threads!r}; allowed: an integer >= 1")
    if not isinstance(model, bytes):
        model = os.fspath(model)
        if not os.path.isfile(model):
            raise FileNotFoundError(2, "No such ONNX file", model)
    pool = _SHARED.get() if shared else None
    if pool is None:
        return _new_session(model, threads, allow_spinning, graph_optimization, fuse_qdq, memory_arena, providers)
    content = model
    if not isinstance(content, bytes):
        with open(content, "rb") as f:
            content = f.read()
    has_qdq = b"QuantizeLinear" in content or b"DequantizeLinear" in content
    key = (hashlib.sha256(content).digest(), int(threads), bool(allow_spinning) if threads > 1 else None,
           graph_optimization, bool(fuse_qdq) if has_qdq else None, bool(memory_arena), tuple(providers))
    if key not in pool:
        pool[key] = _new_session(model, threads, allow_spinning, graph_optimization, fuse_qdq, memory_arena, providers)
    return pool[key]


def _new_session(model: str | bytes, threads: int, allow_spinning: bool, graph_optimization: str, fuse_qdq: bool,
                 memory_arena: bool, providers: Sequence[str]) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, graph_optimization)
    if not allow_spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not fuse_qdq:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    options.enable_cpu_mem_arena = bool(memory_arena)
    return onnxruntime.InferenceSession(model, options, providers=list(providers))


def input_feed(session: onnxruntime.InferenceSession, batch_size: int = 1, seed: int = 0) -> dict:
    """A seeded standard-normal float32 input for every input of `session`; a symbolic (or
    missing) first dimension becomes `batch_size`. `ValueError` for another dynamic dimension
    or a non-float input."""
    rng = np.random.default_rng(seed)
    feed = {}
    for inp in session.get_inputs():
        shape = []
        for i, dim in enumerate(inp.shape):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            elif i == 0:
                shape.append(batch_size)
            else:
                raise ValueError(f"input '{inp.name}' has a dynamic dimension {i} ({dim!r}); only "
                                 f"the batch dimension (0) may be dynamic")
        if inp.type != "tensor(float)":
            raise ValueError(f"input '{inp.name}' has type {inp.type}; only tensor(float) is supported")
        feed[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return feed


def time_session(session: onnxruntime.InferenceSession, feed: Mapping[str, np.ndarray], warmup: int,
                 runs: int) -> np.ndarray:
    """Wall-clock times (ms, float64 array of `runs`) of `runs` inferences on `feed` after
    `warmup` untimed ones (`time.perf_counter_ns`)."""
    run = session.run
    for _ in range(warmup):
        run(None, feed)
    times = np.empty(runs, np.int64)
    clock = time.perf_counter_ns
    for i in range(runs):
        start = clock()
        run(None, feed)
        times[i] = clock() - start
    return times / 1e6
