"""The int8 calibration pass alone: wall time and peak memory per subnet and image count.

    PYTHONPATH=<checkout> python benchmarks/calibration_pass.py [--subnets largest,smallest,random0]
                                                               [--images 500,2000] [--runs 2]

For each subnet of the bundled tiny-fmnist supernet (BN recalibrated and folded, written as
`export_onnx`'s int8 path writes its float file) and each count of calibration images (the
first N bundled ones), a fresh process runs `quantize_onnx` with 8 evaluation images, so that
the call is its percentile calibration (`WORKERS` threads), and reports the calibration's wall
time (its `timings["calibrate"]`) and the call's peak resident memory above what the process
held just before (VmHWM, reset by /proc/self/clear_refs, less VmRSS; Linux). Uses only what
the head before issue 34's fifth part (bd4981e) had, so that the same script measures a
checkout of it (docs/specialize-speed.md). 1 torch / BLAS thread.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def _one(float_path: str, images_path: str, count: int) -> dict:
    """In this process: `quantize_onnx` of `float_path` calibrated on the first `count` images and
    checked on 8 of them (so that the call is its calibration): the calibration's seconds
    (`timings["calibrate"]`) and the call's peak memory."""
    from ofa_engine.runtime.quantize import quantize_onnx
    images = np.load(images_path)[:count]
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ofa-calibration-pass-") as tmp:
        with open("/proc/self/clear_refs", "w") as clear:   # the high-water mark starts again from here
            clear.write("5")
        before = _status_kb("VmRSS")
        quantize_onnx(float_path, Path(tmp) / "q.onnx", images, images[:8], floor=0.0, timings=timings)
        peak = _status_kb("VmHWM") - before
    return {"seconds": timings["calibrate"], "peak_mb": peak / 1024}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _float_files(subnets: list[str], folder: Path) -> dict[str, tuple[Path, Path]]:
    """{subnet: (float ONNX file, its preprocessed calibration images .npy)}."""
    import torch
    from ofa_engine import extract_calibrated, load_supernet
    from ofa_engine.datasets.images import load_split
    from ofa_engine.families import family_of
    from ofa_engine.runtime.evaluation import module_copy
    from ofa_engine.runtime.export import write_onnx_unverified
    from ofa_engine.runtime.preprocess import preprocess
    torch.set_num_threads(1)
    supernet = load_supernet("tiny-fmnist")
    space = supernet.space
    family = family_of(space)
    rng = np.random.default_rng(0)
    configs = {"largest": space.largest(), "smallest": space.smallest()}
    configs.update({f"random{i}": space.sample(rng) for i in range(5)})
    calib = load_split("calib")
    files = {}
    for name in subnets:
        cfg = configs[name]
        folded = family.fold_bn(module_copy(extract_calibrated(supernet, cfg)).eval())
        files[name] = (folder / f"{name}.onnx", folder / f"{name}.npy")
        write_onnx_unverified(folded, space, cfg, files[name][0], 17)
        np.save(files[name][1], preprocess(calib.images, space, cfg.image_size).numpy())
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subnets", default="largest,smallest,random0")
    parser.add_argument("--images", default="500,2000")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--one", nargs=3, metavar=("FLOAT_ONNX", "IMAGES_NPY", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one[0], args.one[1], int(args.one[2]))))
        return 0
    subnets = [s for s in args.subnets.split(",") if s]
    counts = [int(c) for c in args.images.split(",") if c]
    print("| subnet | images | runs | seconds (median) | peak memory MB (median) |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="ofa-calibration-pass-") as tmp:
        files = _float_files(subnets, Path(tmp))
        for name in subnets:
            for count in counts:
                rows = [json.loads(subprocess.run([sys.executable, __file__, "--one", str(files[name][0]),
                                                   str(files[name][1]), str(count)],
                                                  capture_output=True, text=True, check=True).stdout)
                        for _ in range(args.runs)]
                print(f"| {name} | {count} | {args.runs} | {statistics.median(r['seconds'] for r in rows):.2f} | "
                      f"{statistics.median(r['peak_mb'] for r in rows):.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
