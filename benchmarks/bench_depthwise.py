"""Depthwise convolution on small feature maps: oneDNN's convolution vs the per-channel matrix
path of ofa_engine.families.mbv3.elastic (used in training where the kernel is larger than the map).

    python benchmarks/bench_depthwise.py [--threads 2] [--runs 7] [--steps 5]

Prints markdown: machine, date, command; forward + backward time of single depthwise layers
(batch 256, channels_last, the shapes of tiny-fmnist's last stages at 32 px), median of `--runs`;
then whole training steps of the tiny-fmnist supernet as the recipe runs them (batch 256, one
resolution per step drawn from the space's; loss summed, one backward): an elastic phase's step
(the largest, the smallest and one random subnet) and a full-network step (the largest alone),
median of `--steps` timed steps after one untimed, with and without the matrix path.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install

import ofa_engine.families.mbv3.elastic as elastic  # noqa: E402
import ofa_engine.training.train as T  # noqa: E402
from ofa_engine.runtime.preprocess import preprocess  # noqa: E402
from ofa_engine.devices.profile_kit import cpu_model  # noqa: E402
from ofa_engine.families.mbv3.space import SearchSpace  # noqa: E402
from ofa_engine.families.mbv3.supernet import Supernet  # noqa: E402

LAYERS = [(576, 2, 7, 1), (576, 2, 3, 1), (432, 2, 7, 1), (288, 4, 7, 1), (288, 4, 5, 1), (288, 4, 7, 2),
          (192, 4, 7, 1)]


def median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def layer_rows(runs: int) -> list[str]:
    rows = []
    for c, hw, k, stride in LAYERS:
        x = torch.randn(256, c, hw, hw).to(memory_format=torch.channels_last).requires_grad_()
        w = torch.randn(c, 1, k, k, requires_grad=True)
        onednn = median_ms(lambda: F.conv2d(x, w, None, stride, k // 2, 1, c).sum().backward(), runs)
        matrix = median_ms(lambda: elastic.depthwise_conv_small_map(x, w, stride).sum().backward(), runs)
        rows.append(f"| {c} x {hw}x{hw} | {k}x{k} | {stride} | {onednn:.1f} | {matrix:.1f} | {onednn / matrix:.1f}x |")
    return rows


def step_ms(steps: int, matrix_path: bool, elastic_step: bool = True) -> float:
    space = SearchSpace.preset("tiny-fmnist")
    torch.manual_seed(0)
    net = Supernet(space).to(memory_format=torch.channels_last).train()
    loss = T.SubnetsLoss(net, 0.1, 1.0)
    rng = np.random.default_rng(0)
    images = torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (256,))
    choices = T.phase_choices(space, T.default_recipe(space).phases[-1])
    sizes = iter(np.random.default_rng(1).choice(space.resolutions, steps + 1).tolist())

    def step():
        size = int(next(sizes))
        x = preprocess(images, space, size).contiguous(memory_format=torch.channels_last)
        configs = [T.sample_config(space, choices, rng, size, largest=True)]
        if elastic_step:
            configs += [T.sample_config(space, choices, rng, size, smallest=True), T.sample_config(space, choices, rng, size)]
        loss(x, labels, configs, None).backward()

    if matrix_path:
        return median_ms(step, steps)
    never = mock.patch.object(elastic.ElasticDepthwiseConv2d, "forward",
                              lambda self, x, k: F.conv2d(x, self.active_weight(x.size(1), k), None,
                                                          self.stride, k // 2, 1, x.size(1)))
    with never:
        return median_ms(step, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"`python benchmarks/bench_depthwise.py {' '.join(sys.argv[1:])}` on {now}, {cpu_model()}, "
          f"{args.threads} torch thread(s), torch {torch.__version__}\n")
    print("| layer (channels x map) | kernel | stride | oneDNN fwd+bwd (ms) | matrix path (ms) | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(layer_rows(args.runs)))
    print(f"\n| training step, batch 256, median of {args.steps} | oneDNN everywhere (ms) | "
          f"matrix path where kernel > map (ms) | speed-up |\n|---|---:|---:|---:|")
    for label, elastic_step in (("elastic phase: largest + smallest + random subnet", True),
                                ("full-network phase: largest subnet", False)):
        old, new = step_ms(args.steps, False, elastic_step), step_ms(args.steps, True, elastic_step)
        print(f"| {label} | {old:.0f} | {new:.0f} | {old / new:.1f}x |")


if __name__ == "__main__":
    main()
