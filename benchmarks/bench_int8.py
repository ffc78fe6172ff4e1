"""fp32 against int8 (static PTQ, QDQ ONNX) for subnets of the bundled supernet; writes docs/int8.md.

    python benchmarks/bench_int8.py [--random 5] [--seed 0] [--rounds 7] [--runs 30] [--out docs/int8.md]

1. Calibration method: MinMax, entropy and percentile (99.999, ORT's default, and 99.99) on
   three seeded random subnets, accuracy on the bundled test2k images (the evaluation images of
   every int8 export).
2. For the largest, the smallest and `--random` seeded random subnets (`extract_calibrated`):
   accuracy of the fp32 file and of the int8 file (the engine's default calibration) on the 10k
   Fashion-MNIST test set, file sizes, the int8 file's weight bytes against the analytic
   `flash_bytes`, and ORT 1-thread batch-1 latency, fp32 against int8: median over `--rounds`
   rounds (the two files alternate) of the median of `--runs` timed runs (after 10 warm-up ones).
Prints the markdown and writes it to `--out`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout, no install

from benchmarks.docsections import write_sections  # noqa: E402
from ofa_engine import analyze, export_onnx, extract_calibrated, load_supernet  # noqa: E402
from ofa_engine.datasets.images import load_split  # noqa: E402
from ofa_engine.devices.profile_kit import cpu_model  # noqa: E402
from ofa_engine.families.mbv3.static import fold_bn  # noqa: E402
from ofa_engine.runtime.export import read_metadata, write_onnx_unverified  # noqa: E402
from ofa_engine.runtime.ort import input_feed, make_session, time_session  # noqa: E402
from ofa_engine.runtime.preprocess import preprocess  # noqa: E402
from ofa_engine.runtime.quantize import (AGREEMENT_FLOOR, DEFAULT_CALIBRATION, PERCENTILE,  # noqa: E402
                                         SCHEME, quantize_onnx, top1, weight_bytes)

METHODS = [("minmax", None), ("entropy", None), ("percentile", 99.999), ("percentile", 99.99)]


def method_table(supernet, n: int, seed: int) -> list[str]:
    space = supernet.space
    calib, test = load_split("calib"), load_split("test2k")
    rng = np.random.default_rng(seed + 7)
    cfgs = [space.sample(rng) for _ in range(n)]
    names = [m if p is None else f"{m} {p}" for m, p in METHODS]
    lines = ["| subnet | fp32 (folded) | " + " | ".join(names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    sums = np.zeros(len(METHODS))
    for i, cfg in enumerate(cfgs):
        net = fold_bn(extract_calibrated(supernet, cfg).eval())
        with tempfile.TemporaryDirectory() as tmp:
            fp = Path(tmp) / "f.onnx"
            write_onnx_unverified(net, space, cfg, fp, 17)
            cx = preprocess(calib.images, space, cfg.image_size).numpy()
            ex = preprocess(test.images, space, cfg.image_size).numpy()
            cells, fp32 = [], None
            for j, (method, pct) in enumerate(METHODS):
                rep = quantize_onnx(fp, Path(tmp) / "q.onnx", cx, ex, test.labels, method=method, floor=0.0,
                                    percentile=pct or PERCENTILE)
                fp32 = rep.float_accuracy
                drop = 100 * (rep.int8_accuracy - rep.float_accuracy)
                sums[j] += drop
                cells.append(f"{100 * rep.int8_accuracy:.2f} ({drop:+.2f}; agree {100 * rep.agreement:.1f})")
        lines.append(f"| random {i} ({cfg.image_size}px, wid {cfg.wid}) | {100 * fp32:.2f} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    lines.append("| mean change (points) | | " + " | ".join(f"{s / n:+.2f}" for s in sums) + " |")
    best = names[int(np.argmax(sums))]
    lines += ["", f"Smallest mean loss: {best}."]
    return lines


def latency_pair(a: Path, b: Path, rounds: int, runs: int) -> tuple[float, float]:
    sessions = [make_session(a, threads=1), make_session(b, threads=1)]
    feeds = [input_feed(s) for s in sessions]
    medians = [[], []]
    for _ in range(rounds):
        for k in (0, 1):
            medians[k].append(float(np.median(time_session(sessions[k], feeds[k], 10, runs))))
    return float(np.median(medians[0])), float(np.median(medians[1]))


def main_table(supernet, n_random: int, seed: int, rounds: int, runs: int) -> tuple[list[str], list[float]]:
    space = supernet.space
    test = load_split("test")
    rng = np.random.default_rng(seed)
    subnets = [("largest", space.largest()), ("smallest", space.smallest())]
    subnets += [(f"random {i}", space.sample(rng)) for i in range(n_random)]
    lines = ["| subnet | res | fp32 acc % | int8 acc % | change | agree % | fp32 file KB | int8 file KB "
             "| int8 weight bytes | analytic flash_bytes | scales + graph KB | fp32 ms | int8 ms | int8/fp32 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    drops, ratios = [], []
    for name, cfg in subnets:
        net = extract_calibrated(supernet, cfg)
        with tempfile.TemporaryDirectory() as tmp:
            f32 = export_onnx(net, cfg, Path(tmp) / "f.onnx")
            i8 = export_onnx(net, cfg, Path(tmp) / "q.onnx", precision="int8")   # bundled calib / test2k
            x = preprocess(test.images, space, cfg.image_size).numpy()
            p32, p8 = top1(f32, x), top1(i8, x)
            acc32, acc8 = float((p32 == test.labels).mean()), float((p8 == test.labels).mean())
            sizes = weight_bytes(i8)
            flash = int(analyze(space, cfg)["flash_bytes"])
            ms32, ms8 = latency_pair(f32, i8, rounds, runs)
            s32, s8 = f32.stat().st_size, i8.stat().st_size
            assert read_metadata(i8)["quantization"]["calibration_method"] == DEFAULT_CALIBRATION
        drops.append(100 * (acc8 - acc32))
        ratios.append(ms8 / ms32)
        lines.append(f"| {name} | {cfg.image_size} | {100 * acc32:.2f} | {100 * acc8:.2f} | {drops[-1]:+.2f} | "
                     f"{100 * float((p32 == p8).mean()):.1f} | {s32 / 1024:,.1f} | {s8 / 1024:,.1f} | "
                     f"{sizes['weight_bytes']:,} | {flash:,} | {(s8 - sizes['weight_bytes']) / 1024:,.1f} | "
                     f"{ms32:.3f} | {ms8:.3f} | {ms8 / ms32:.2f} |")
        print(lines[-1], flush=True)
    return lines, drops, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods-subnets", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "docs" / "int8.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    supernet = load_supernet("tiny-fmnist")
    start = datetime.datetime.now(datetime.timezone.utc)
    command = "python benchmarks/bench_int8.py " + " ".join(sys.argv[1:])
    methods = method_table(supernet, args.methods_subnets, args.seed)
    rows, drops, ratios = main_table(supernet, args.random, args.seed, args.rounds, args.runs)
    worst = min(drops)
    verdict = ("every row within 1.0 point of fp32" if worst >= -1.0 else
               f"missed on {sum(d < -1.0 for d in drops)} row(s): the worst drop is {-worst:.2f} points, "
               f"{-worst - 1.0:.2f} over the target")
    text = "\n".join([
        "# int8 deployment: static post-training quantization to QDQ ONNX",
        "",
        f"Written by `{command.strip()}` on {start:%Y-%m-%d %H:%M} UTC; machine: {cpu_model()}, "
        f"{os.cpu_count()} logical CPUs (a virtual machine shared with another process while this ran), "
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}.",
        "",
        "`export_onnx(..., precision=\"int8\")` and `specialize(..., precision=\"int8\")` (CLI `--precision int8`)"
        " fold BN into the convolutions, export the float file, and quantize it as "
        "`onnxruntime.quantization.quantize_static` does (runtime/quantize.py; the percentile calibration "
        "computed in one vectorised pass, docs/specialize-speed.md):",
        "",
        f"- scheme: {SCHEME};",
        "- calibrated on the 2,000 bundled calibration images (`load_split(\"calib\")`), preprocessed "
        "as the subnet's input (`runtime.preprocess`); `specialize` on 500 of its package's, spread over "
        "its classes (`INT8_CALIBRATION_IMAGES`, `calibration_subset`; chosen by measurement in "
        "docs/specialize-speed.md);",
        f"- checked on the 2,000 bundled test images (`load_split(\"test2k\")`): the top-1 agreement with the "
        f"float model is recorded in the file's metadata (`quantization`) and a file below "
        f"`AGREEMENT_FLOOR` = {AGREEMENT_FLOOR:.2f} is refused (`QuantizationRefusedError`);",
        "- the file is compacted (short tensor names, no node names or shape annotations, the all-zero "
        "weight zero points dropped): it runs the same in ONNX Runtime and passes `onnx.checker`.",
        "",
        "## Calibration method",
        "",
        f"Accuracy (%) of the int8 file on test2k (change against the BN-folded float file, and top-1 "
        f"agreement) for {args.methods_subnets} seeded random subnets:",
        "",
        *methods,
        "",
        f"The engine uses `{DEFAULT_CALIBRATION}` at {PERCENTILE} (`DEFAULT_CALIBRATION`, `PERCENTILE`): the "
        "method chosen on these measurements (first run of this script, then fixed in the code).",
        "",
        "## fp32 against int8 on the 10k Fashion-MNIST test set",
        "",
        "Accuracy on `load_split(\"test\")` (10,000 images) of the fp32 file (`export_onnx`) and of the int8 "
        "file; agree = top-1 agreement of the two; weight bytes = the int8 file's quantized initializers "
        "(int8 weights, int32 biases) against `analyze(...)[\"flash_bytes\"]`; scales + graph = the rest of "
        "the file. Latency: ORT CPU, 1 thread, batch 1, median over rounds of the median of "
        f"{args.runs} timed runs, {args.rounds} rounds, the two files alternating.",
        "",
        *rows,
        "",
        f"Target: int8 within 1.0 point of fp32 for every row; result: {verdict}.",
        "",
        "Weight bytes and Flash: the int8 file's weight bytes equal the analytic `flash_bytes` exactly in "
        "every row (tolerance 0 bytes, tested in tests/test_int8.py). The difference between file size and "
        "Flash is made of a float32 scale per output channel of every weight and another per int32 bias "
        "channel (the bias scale, input scale x weight scale), the activations' per-tensor scales and zero "
        "points (a few hundred bytes) and the graph itself; the weights' zero points are all 0 (symmetric) "
        "and are dropped. `specialize` in int8 keeps the whole file within a device's Flash: "
        "`estimate_overhead_bytes` (an upper bound of that difference) tightens the Flash bound of the search "
        "when the best subnet leaves no room for it.",
        "",
        f"Latency: int8 / fp32 ranges from {min(ratios):.2f} to {max(ratios):.2f} (median "
        f"{float(np.median(ratios)):.2f}) on these subnets: ORT's x86 int8 kernels run at their own speed, "
        "so the int8 latency model is fitted on its own dataset (assets/latency/cpu-1t-int8.csv, below).",
        "",
        "Limits. The activations are signed int8 (S8S8), what int8 microcontroller kernels (CMSIS-NN "
        f"class) take; ONNX Runtime on this x86 CPU runs these files in {min(ratios):.0f}-{max(ratios):.0f}x "
        "the fp32 time at batch 1. Whether uint8 activations (U8S8) would be faster here was not measured. "
        "In int8, `specialize` for cpu-ort-1t searches with the int8 latency model below "
        "(`DeviceProfile.for_precision`, `PRECISION_LATENCY_MODELS`); cpu-ort-2t has no int8 dataset and "
        "keeps its fp32 model, and the app's latency budget sliders still span the fp32 model's range. "
        "With `measures_locally` the reported latency is that of the int8 file itself.",
        '',
    ])
    out = Path(args.out)
    # Only this script's parts: the sections of int8_mcu_files.py and int8_latency_model.py stay.
    write_sections(out, text, before="## int8 files for the microcontroller profiles")
    print(text)


if __name__ == "__main__":
    main()
