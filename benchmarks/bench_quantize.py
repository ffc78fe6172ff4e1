"""`quantize_onnx` wall time: our QDQ writer against ONNX Runtime's quant_pre_process + QDQ
quantizer (the path it replaced, still taken for graphs the writer does not handle), side by side.

    python benchmarks/bench_quantize.py [--runs 5] [--subnets largest,smallest,random0,random1]

Per subnet of the bundled tiny-fmnist supernet (BN folded, exported as `export_onnx` does): the
float file is quantized as `specialize` does it (its 500 calibration images, the 2,000
evaluation images of the package, the default percentile calibration), once with the writer
("after", `quantizer="writer"`) and once down ORT's path ("before", `quantizer="ort"`); the two
alternate run by run (stage times from `quantize_onnx(..., timings=...)`). The table gives the medians of the whole call and of its stages in the
"after" runs (preparation + calibration, writer, the two evaluation passes), and whether both
wrote the same bytes. 1 torch / BLAS thread; the calibration and evaluation passes use
`quantize.WORKERS` threads as in `specialize`.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import datetime  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ofa_engine.devices.machine import cpu_model  # noqa: E402
from ofa_engine.families.mbv3.static import fold_bn  # noqa: E402
from ofa_engine.pipeline.specialize import INT8_CALIBRATION_IMAGES, calibration_subset, load_resources  # noqa: E402
from ofa_engine.runtime.quantize import quantize_onnx  # noqa: E402
from ofa_engine.runtime.evaluation import calibrate_bn  # noqa: E402
from ofa_engine.runtime.export import write_onnx_unverified  # noqa: E402
from ofa_engine.runtime.preprocess import preprocess  # noqa: E402


def _configs(space, names):
    rng = np.random.default_rng(34)
    known = {"largest": space.largest(), "smallest": space.smallest()}
    known.update({f"random{i}": space.sample(rng) for i in range(4)})
    return {name: known[name] for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--subnets", default="largest,smallest,random0,random1")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)
    res = load_resources("tiny-fmnist")
    space = res.space
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        for name, cfg in _configs(space, args.subnets.split(",")).items():
            net = res.supernet.extract(cfg)
            calib_x = res.inputs("calib", cfg.image_size)
            calibrate_bn(net, calib_x)
            float_path = Path(tmp) / f"{name}.onnx"
            write_onnx_unverified(fold_bn(copy.deepcopy(net).eval()), space, cfg, float_path, 17)
            calib = calib_x[calibration_subset(res.calib)].numpy()
            test = res.test   # uint8 images, preprocessed as export_onnx does
            evaluation = preprocess(np.asarray(test.images), space, cfg.image_size).numpy()
            times = {"before": [], "after": []}
            stages: dict[str, list[float]] = {}
            written = {}
            for run in range(args.runs + 1):   # run 0 warms both up, untimed
                for variant in (("before", "after") if run % 2 else ("after", "before")):
                    seconds: dict[str, float] = {}
                    out = Path(tmp) / f"{name}-{variant}.onnx"
                    start = time.perf_counter()
                    quantize_onnx(float_path, out, calib, evaluation, test.labels, floor=0.0, timings=seconds,
                                  quantizer="writer" if variant == "after" else "ort")
                    wall = time.perf_counter() - start
                    written[variant] = out.read_bytes()
                    if run:
                        times[variant].append(wall)
                        if variant == "after":
                            for stage, value in seconds.items():
                                stages.setdefault(stage, []).append(value)
            before, after = statistics.median(times["before"]), statistics.median(times["after"])
            rows.append((name, before, after, {k: statistics.median(v) for k, v in stages.items()},
                         written["before"] == written["after"]))

    print(f"`quantize_onnx`, {INT8_CALIBRATION_IMAGES} calibration / {len(evaluation)} evaluation images, "
          f"medians of {args.runs} interleaved runs; {cpu_model()}, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print()
    print("| subnet | before (ORT quantizer) s | after (writer) s | before / after | after: prepare + "
          "calibrate s | after: write s | after: evaluate s | same file |")
    print("|---|---|---|---|---|---|---|---|")
    for name, before, after, stage, same in rows:
        print(f"| {name} | {before:.2f} | {after:.2f} | {before / after:.2f}x | "
              f"{stage.get('calibrate', 0):.2f} | {stage.get('write', 0):.3f} | "
              f"{stage.get('evaluate', 0):.2f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
