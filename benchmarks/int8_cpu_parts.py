"""Where the CPU of an int8 `specialize` call goes, part by part, each part timed on its own.

    python benchmarks/int8_cpu_parts.py [--case int8-mcu] [--runs 5] [--batches 50,250,500]

bench_specialize.py times the call's stages by wall clock, with both cores shared between them;
this script takes the case's subnet (bench_specialize's budget, the same call) and times each part
of the call alone, in this process's CPU seconds (user + system, getrusage), medians of `--runs`:

- the search (one core);
- BN recalibration on the package's 2,000 calibration images, one worker (CPU) and `specialize`'s
  two (wall);
- the float file's predictions on the 2,000 evaluation images (ONNX Runtime, one thread);
- the calibration and the QDQ writer (`quantize_onnx` on `specialize`'s 500 calibration images,
  with 8 evaluation images so that its evaluation passes add nothing);
- the int8 file's predictions on the 2,000 evaluation images (one thread, its QDQ as written);
- the whole call (`specialize`), with its page faults;

then ONNX Runtime's profile of the int8 file's predictions: each op type's share of the kernel
time; and with `--batches` (e.g. 50,250,500) the two prediction passes and the calibration at
each batch size (images per ONNX Runtime run), with whether the results are the same as at the
first size (the logits bit for bit, the int8 file byte for byte). The parts add up to more than the call's wall time on 2 cores: the call runs them on both
(see docs/specialize-speed.md, "Where the CPU goes").
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_specialize  # noqa: E402

CASES = ("int8-mcu", "int8-cpu")


def _usage() -> tuple[float, float, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, time.perf_counter(), usage.ru_minflt


def _timed(fn, runs: int) -> tuple[float, float, float]:
    """Median CPU s, wall s and page faults of `runs` calls of `fn` (after one untimed call)."""
    fn()
    cpu, wall, faults = [], [], []
    for _ in range(runs):
        c0, w0, f0 = _usage()
        fn()
        c1, w1, f1 = _usage()
        cpu.append(c1 - c0)
        wall.append(w1 - w0)
        faults.append(f1 - f0)
    return statistics.median(cpu), statistics.median(wall), statistics.median(faults)


def _op_shares(model: bytes, x: np.ndarray, batch: int) -> dict[str, float]:
    """Each op type's share of ONNX Runtime's kernel time over `x` (one thread, QDQ as written)."""
    import onnxruntime
    with tempfile.TemporaryDirectory(prefix="ofa-int8-parts-") as tmp:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for start in range(0, len(x), batch):
            session.run(None, {name: x[start:start + batch]})
        events = json.loads(Path(session.end_profiling()).read_text())
    times: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            times[event["args"]["op_name"]] += event["dur"]
    total = sum(times.values())
    return {op: t / total for op, t in times.most_common()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="int8-mcu", choices=CASES)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batches", default="",
                        help="comma-separated batch sizes to time the prediction passes and the calibration at")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--batches {args.batches!r}: comma-separated integers >= 1")
    if any(b < 1 for b in batches):
        parser.error(f"--batches {args.batches!r}: comma-separated integers >= 1")

    import torch
    torch.set_num_threads(1)
    from ofa_engine.devices.machine import cpu_model
    from ofa_engine.devices.profiles import load_profile
    from ofa_engine.families import family_of
    from ofa_engine.pipeline.specialize import calibration_subset, load_resources
    from ofa_engine.runtime.evaluation import calibrate_bn, module_copy
    from ofa_engine.runtime.export import MIN_OPSET, write_onnx_unverified
    from ofa_engine.runtime import quantize
    from ofa_engine.runtime.ort import make_session
    from ofa_engine.runtime.quantize import quantize_onnx, top1
    from ofa_engine.search import Constraints, search

    first = bench_specialize.run_case(args.case)   # the call's subnet, and a warm process
    res = load_resources("tiny-fmnist")
    space = res.space
    family = family_of(space, fast=False)
    cfg = family.config_from_dict(first["config"])
    name = "stm32f746" if args.case == "int8-mcu" else "cpu-ort-1t"
    profile = load_profile(name).for_precision("int8")
    if hasattr(profile, "for_space"):
        profile = profile.for_space(space)
    evaluator = res.evaluator(profile, "int8")
    constraints = Constraints.from_dict(bench_specialize.budget(name, "int8")).with_device_memory(profile)

    net = res.supernet.extract(cfg)
    calib = res.inputs("calib", cfg.image_size)
    calibrate_bn(net, calib, workers=2)
    folded = family.fold_bn(module_copy(net).eval())
    evaluation = np.ascontiguousarray(np.asarray(res.inputs("test2k", cfg.image_size)), dtype=np.float32)
    labels = np.asarray(res.test.labels)
    subset = np.ascontiguousarray(np.asarray(calib)[calibration_subset(res.calib)], dtype=np.float32)

    rows = []
    with tempfile.TemporaryDirectory(prefix="ofa-int8-parts-") as tmp:
        float_path = Path(tmp) / "float.onnx"
        int8_path = Path(tmp) / "int8.onnx"
        write_onnx_unverified(folded, space, cfg, float_path, MIN_OPSET)   # export_onnx's default, as specialize
        quantize_onnx(float_path, int8_path, subset, evaluation, labels)
        int8_bytes = int8_path.read_bytes()

        def part(label: str, fn, note: str = "") -> None:
            cpu, wall, faults = _timed(fn, args.runs)
            rows.append((label, cpu, wall, faults, note))

        part("search", lambda: search(evaluator, constraints, "evolution", 0), "one core")
        part("BN recalibration, 1 worker", lambda: calibrate_bn(module_copy(net), calib, workers=1),
             f"{len(calib)} images")
        part("BN recalibration, 2 workers", lambda: calibrate_bn(module_copy(net), calib, workers=2),
             "specialize's")
        part("float file's predictions", lambda: top1(str(float_path), evaluation),
             f"{len(evaluation)} images, 1 thread")
        part("calibration + QDQ writer", lambda: quantize_onnx(
            float_path, Path(tmp) / "q.onnx", subset, evaluation[:8], labels[:8], floor=0.0),
            f"{len(subset)} images (8 evaluation images)")
        part("int8 file's predictions", lambda: top1(int8_bytes, evaluation),
             f"{len(evaluation)} images, 1 thread, QDQ as written")
        part("the whole call", lambda: bench_specialize.run_case(args.case), "specialize, 2 cores")
        shares = _op_shares(int8_bytes, evaluation, quantize.EVALUATION_BATCH)

        by_batch = []   # (batch, float CPU s, int8 CPU s, calibration CPU s, same results)
        reference = None
        for batch in batches:
            logits = [np.concatenate([session.run(None, {"input": evaluation[i:i + batch]})[0]
                                      for i in range(0, len(evaluation), batch)])
                      for session in (make_session(str(float_path), threads=1, fuse_qdq=False),
                                      make_session(int8_bytes, threads=1, fuse_qdq=False))]
            float_cpu = _timed(lambda: top1(str(float_path), evaluation, batch), args.runs)[0]
            int8_cpu = _timed(lambda: top1(int8_bytes, evaluation, batch), args.runs)[0]
            saved = quantize.PERCENTILE_BATCH
            quantize.PERCENTILE_BATCH = batch
            try:
                calibration_cpu = _timed(lambda: quantize_onnx(float_path, Path(tmp) / "b.onnx", subset, evaluation[:8],
                                                               labels[:8], floor=0.0), args.runs)[0]
            finally:
                quantize.PERCENTILE_BATCH = saved
            results = (*logits, (Path(tmp) / "b.onnx").read_bytes())
            if reference is None:
                reference = results
            same = all(np.array_equal(a, b) for a, b in zip(results[:2], reference[:2])) and results[2] == reference[2]
            by_batch.append((batch, float_cpu, int8_cpu, calibration_cpu, same))

    print(f"`python benchmarks/int8_cpu_parts.py --case {args.case} --runs {args.runs}` on "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {cpu_model()}, {os.cpu_count()} logical CPUs; "
          f"subnet at resolution {cfg.image_size}; medians of {args.runs} runs after one untimed run.\n")
    print("| part | CPU s | wall s | page faults | what |")
    print("|---|---:|---:|---:|---|")
    for label, cpu, wall, faults, note in rows:
        print(f"| {label} | {cpu:.3f} | {wall:.3f} | {faults:,.0f} | {note} |")
    print("\nONNX Runtime's kernel time of the int8 file's predictions, by op type: "
          + ", ".join(f"{op} {share:.0%}" for op, share in shares.items() if share >= 0.005))
    if by_batch:
        print(f"\n| images a run | float file's predictions CPU s | int8 file's predictions CPU s | "
              f"calibration + QDQ writer CPU s | results as at {by_batch[0][0]} |")
        print("|---:|---:|---:|---:|---|")
        for batch, float_cpu, int8_cpu, calibration_cpu, same in by_batch:
            print(f"| {batch} | {float_cpu:.3f} | {int8_cpu:.3f} | {calibration_cpu:.3f} | {'same' if same else '**different**'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
