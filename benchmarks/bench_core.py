"""Timings of the engine core, and its MAC/param counts next to the official OFA counter.

    PYTHONPATH=. python benchmarks/bench_core.py [--repeats 5] [--configs 10000] [--threads N]

Prints markdown: machine, extraction / ONNX export times of the largest subnets, analyze and
encode throughput over random configs, and the official-counter check. Each timing is the
median of `--repeats` runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install

from ofa_engine import SearchSpace, SubnetConfig, analyze, build_supernet, export_onnx  # noqa: E402
from ofa_engine.runtime import export as export_module  # noqa: E402
from ofa_engine.devices.profile_kit import cpu_model  # noqa: E402

SPACES = ("tiny-fmnist", "ofa-mbv3-w1.0")

# Reference values printed by the official OFA code's own counter (ANCHORS.md), in millions.
OFFICIAL_MACS_M = [
    ("ofa-mbv3-w1.0", "largest", 224, 566.17),
    ("ofa-mbv3-w1.0", "smallest", 224, 121.28),
    ("ofa-mbv3-w1.0", "largest", 192, 417.29),
    ("ofa-mbv3-w1.0", "smallest", 128, 41.48),
    ("ofa-mbv3-w1.2", "largest", 224, 843.10),
    ("ofa-mbv3-w1.2", "smallest", 224, 193.08),
    ("ofa-mbv3-w1.0", "D4-E3-K3", 224, 226.19),   # the paper's "D4-W3-K3" subnet
]
OFFICIAL_PARAMS_M = [("ofa-mbv3-w1.0", "largest", 7.665), ("ofa-mbv3-w1.0", "smallest", 3.411)]


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()   # warm-up: first calls pay for imports, allocator growth, JIT caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def named_config(space: SearchSpace, name: str, image_size: int) -> SubnetConfig:
    if name == "D4-E3-K3":
        base = space.largest().to_dict()
        base.update(ks=[3] * space.num_slots, e=[3] * space.num_slots)
    else:
        base = getattr(space, name)().to_dict()
    return SubnetConfig.from_dict({**base, "image_size": image_size})


def machine_info() -> list[str]:
    cpu = cpu_model()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- date: {now}",
        f"- CPU: {cpu}, {os.cpu_count()} logical cores",
        f"- torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
        f"{onnxruntime.__version__}, numpy {np.__version__}, Python {platform.python_version()}",
    ]


def bench_export(repeats: int, workdir: Path) -> list[str]:
    rows = ["| space | subnet | extract (ms) | export + verify (ms) | export only (ms) | verify only (ms) "
            "| ONNX size (MB) |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in SPACES:
        torch.manual_seed(0)
        supernet = build_supernet(name)
        space = supernet.space
        cfg = space.largest()
        net = supernet.extract(cfg)
        path = workdir / f"{name}.onnx"
        extract_s = median_seconds(lambda: supernet.extract(cfg), repeats)
        export_s = median_seconds(lambda: export_onnx(net, cfg, path), repeats)
        # The same steps export_onnx takes, apart: writing (incl. onnx.checker) and the ORT check.
        write_s = median_seconds(lambda: export_module.write_onnx_unverified(net, space, cfg, path, 17), repeats)
        verify_s = median_seconds(lambda: export_module.verify_onnx(path, net), repeats)
        size_mb = path.stat().st_size / 1e6
        rows.append(f"| {name} | largest @{cfg.image_size} | {extract_s * 1e3:.1f} | {export_s * 1e3:.0f} "
                    f"| {write_s * 1e3:.0f} | {verify_s * 1e3:.0f} | {size_mb:.2f} |")
    return rows


def bench_throughput(repeats: int, n_configs: int) -> list[str]:
    rows = ["| space | analyze (configs/s) | encode (configs/s) |", "|---|---:|---:|"]
    for name in SPACES:
        space = SearchSpace.preset(name)
        rng = np.random.default_rng(0)
        configs = [space.sample(rng) for _ in range(n_configs)]
        analyze_s = median_seconds(lambda: analyze(space, configs), repeats)
        encode_s = median_seconds(lambda: space.encode(configs), repeats)
        rows.append(f"| {name} | {n_configs / analyze_s:,.0f} | {n_configs / encode_s:,.0f} |")
    return rows


def official_check() -> list[str]:
    # The official values are rounded, so "same" means equal after the same rounding.
    rows = ["| space | subnet | resolution | MACs, ours (M) | MACs, official (M) | same |",
            "|---|---|---:|---:|---:|:---:|"]
    for name, subnet, size, official in OFFICIAL_MACS_M:
        space = SearchSpace.preset(name)
        ours = analyze(space, named_config(space, subnet, size))["macs"] / 1e6
        rows.append(f"| {name} | {subnet} | {size} | {ours:.6f} | {official:.2f} | "
                    f"{'yes' if round(ours, 2) == official else 'NO'} |")
    rows += ["", "| space | subnet | params, ours (M) | params, official (M) | same |",
             "|---|---|---:|---:|:---:|"]
    for name, subnet, official in OFFICIAL_PARAMS_M:
        space = SearchSpace.preset(name)
        ours = analyze(space, getattr(space, subnet)())["params"] / 1e6
        rows.append(f"| {name} | {subnet} | {ours:.6f} | {official:.3f} | "
                    f"{'yes' if round(ours, 3) == official else 'NO'} |")
    return rows


def space_sizes() -> list[str]:
    rows = ["| space | subnet | resolution | MACs (M) | params (M) | peak activation (kB, int8) "
            "| flash (kB, int8) |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in ("tiny-fmnist", "ofa-mbv3-w1.0", "ofa-mbv3-w1.2"):
        space = SearchSpace.preset(name)
        for subnet in ("smallest", "largest"):
            cfg = getattr(space, subnet)()
            m = analyze(space, cfg)
            rows.append(f"| {name} | {subnet} | {cfg.image_size} | {m['macs'] / 1e6:.2f} | "
                        f"{m['params'] / 1e6:.3f} | {m['peak_activation_bytes'] / 1e3:.1f} | "
                        f"{m['flash_bytes'] / 1e3:.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", type=int, default=10_000, help="random configs for the throughput rows")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    out = ["### Machine", *machine_info(), "",
           f"### Extraction and ONNX export (median of {args.repeats}, fresh weights, opset 17)"]
    with tempfile.TemporaryDirectory() as workdir:
        out += bench_export(args.repeats, Path(workdir))
    out += ["", f"### Throughput over {args.configs:,} random configs (one vectorised call, median of "
                f"{args.repeats}, validation included)", *bench_throughput(args.repeats, args.configs),
            "", "### Checked against the official OFA counter", *official_check(),
            "", "### Space sizes (analyze)", *space_sizes()]
    print("\n".join(out))


if __name__ == "__main__":
    main()
