"""The notes' building blocks compared: closed-form costs and onnxruntime latency on this machine.

    python benchmarks/bench_blocks.py [--runs 20] [--warmup 3]

Prints markdown: machine, date, command; the comparison table for inputs 64x56x56 and 256x14x14
(out channels = in channels); the ResNet bottleneck vs a plain 3x3-3x3 block; the attention token
sweep (dim 64, 4 heads). Latency: batch 1, one onnxruntime thread, median (and IQR) of `--runs`
timed runs after `--warmup` untimed ones.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install

from ofa_engine.devices.profile_kit import cpu_model  # noqa: E402
from ofa_engine.lessons.blocks import (BLOCKS, attention_token_sweep, bottleneck_mac_saving,  # noqa: E402
                               compare_blocks)

SHAPES = [(64, 56, 56), (256, 14, 14)]
TOKENS = [16, 64, 256, 1024]


def kib(n: int) -> str:
    return f"{n / 1024:,.1f}"


def latency(row: dict) -> str:
    return f"{row['latency_ms']:.3f} ± {row['latency_iqr_ms']:.3f}" if row["latency_ms"] is not None else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(f"- command: `python benchmarks/bench_blocks.py --runs {args.runs} --warmup {args.warmup}`")
    print(f"- machine: {cpu_model()}, {torch.get_num_threads()} torch thread, onnxruntime "
          f"{onnxruntime.__version__} (1 intra-op thread), torch {torch.__version__}")
    print(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")

    for shape in SHAPES:
        c, h, w = shape
        print(f"### Input {c}x{h}x{w} (C x H x W), out channels {c}\n")
        print("| block | params | MACs (M) | inference peak fp32 (KiB) | inference peak int8 (KiB) "
              "| training activations fp32 (KiB) | ORT latency ms (median ± IQR) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in compare_blocks(shape, runs=args.runs, warmup=args.warmup):
            params = BLOCKS[row["block"]].defaults
            name = row["block"] + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")
            print(f"| {name} | {row['params']:,} | {row['macs'] / 1e6:,.2f} | {kib(row['inference_peak_bytes'])} "
                  f"| {kib(row['inference_peak_bytes_int8'])} | {kib(row['training_activation_bytes'])} "
                  f"| {latency(row)} |")
        print()

    print("### ResNet bottleneck vs plain 3x3-3x3 block (same input, full width)\n")
    print("| input | bottleneck MACs (M) | plain MACs (M) | ratio |")
    print("|---|---:|---:|---:|")
    for shape in SHAPES:
        s = bottleneck_mac_saving(shape)
        print(f"| {'x'.join(map(str, shape))} | {s['bottleneck_macs'] / 1e6:,.2f} | {s['plain_macs'] / 1e6:,.2f} "
              f"| {s['ratio']:.3f} |")
    print()

    print("### Attention token sweep (dim 64, 4 heads; input 64x1xN)\n")
    print("| tokens N | MACs (M) | of which QK^T + AV (M) | inference peak fp32 (KiB) "
          "| training activations fp32 (KiB) | ORT latency ms (median ± IQR) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in attention_token_sweep(TOKENS, dim=64, heads=4, measure=True, runs=args.runs, warmup=args.warmup):
        print(f"| {row['tokens']} | {row['macs'] / 1e6:,.3f} | {row['attention_matmul_macs'] / 1e6:,.3f} "
              f"| {kib(row['inference_peak_bytes'])} | {kib(row['training_activation_bytes'])} | {latency(row)} |")


if __name__ == "__main__":
    main()
