"""int8 accuracy against the number of calibration images, on the 10k test set; one JSON line a row.

    PYTHONPATH=<checkout> python benchmarks/int8_calibration_images.py [2000,500,250] [RANDOM]

For the largest, the smallest and RANDOM (default 5) seeded random subnets (`default_rng(0)`;
the first 5 are bench_int8.py's):
`extract_calibrated`, `export_onnx` in fp32 and in int8 calibrated on N bundled calibration
images for each N given: the N that `specialize` would pick (`calibration_subset`; the first N
in a checkout without it), or with none given `export_onnx`'s default, all 2,000; and the top-1
accuracy of both files on `load_split("test")` in ONNX Runtime. Uses only APIs that the
head before issue 34 (048d96a) had, so that the same script measures a checkout of it
(docs/specialize-speed.md).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ofa_engine import export_onnx, extract_calibrated, load_supernet  # noqa: E402
from ofa_engine.datasets.images import load_split  # noqa: E402
from ofa_engine.runtime.preprocess import preprocess  # noqa: E402
from ofa_engine.runtime.quantize import top1  # noqa: E402


def _subset(calib, n: int) -> np.ndarray:
    """The `n` calibration images `specialize` would calibrate on (`calibration_subset`), or the
    first `n` in a checkout that has no such function (before issue 34)."""
    try:
        from ofa_engine.pipeline.specialize import calibration_subset
    except ImportError:
        return np.arange(n)
    index = calibration_subset(calib, n)
    return np.arange(n) if isinstance(index, slice) else index.numpy()


def main() -> int:
    counts = [int(c) for c in sys.argv[1].split(",")] if len(sys.argv) > 1 else [None]
    randoms = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    torch.set_num_threads(1)
    supernet = load_supernet("tiny-fmnist")
    space = supernet.space
    test, calib = load_split("test"), load_split("calib")
    rng = np.random.default_rng(0)
    subnets = [("largest", space.largest()), ("smallest", space.smallest())]
    subnets += [(f"random {i}", space.sample(rng)) for i in range(randoms)]
    for name, cfg in subnets:
        net = extract_calibrated(supernet, cfg)
        x = preprocess(test.images, space, cfg.image_size).numpy()
        with tempfile.TemporaryDirectory() as tmp:
            f32 = export_onnx(net, cfg, Path(tmp) / "f.onnx")
            p32 = top1(f32, x)
            for n in counts:
                options = {} if n is None else {"calibration": calib.subset(_subset(calib, n))}
                t = time.perf_counter()
                i8 = export_onnx(net, cfg, Path(tmp) / f"q{n}.onnx", precision="int8", **options)
                seconds = time.perf_counter() - t
                p8 = top1(i8, x)
                print(json.dumps({
                    "subnet": name, "res": cfg.image_size, "calib": n or len(calib),
                    "fp32": float((p32 == test.labels).mean()), "int8": float((p8 == test.labels).mean()),
                    "agree": float((p32 == p8).mean()), "int8_bytes": i8.stat().st_size,
                    "sha256": hashlib.sha256(i8.read_bytes()).hexdigest()[:16], "export_s": round(seconds, 2)}),
                    flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
