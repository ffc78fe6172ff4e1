"""Training speed of candidate ViT spaces on this CPU: what sized the `vit` family's preset.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_vit_train_speed.py [--threads 1 2] [--steps 5]

For each candidate space (the registered preset first) and each torch thread count: one
training step (forward, cross-entropy, backward, SGD with momentum; batch 128 of random
28x28 images) of the largest, the smallest and two random subnets, median of `--steps` timed
steps after one untimed. Prints markdown: machine, date, command; per space the MACs of the
largest and smallest subnet and the step times; the estimated seconds per epoch of 60k
images for sandwich training (largest + smallest + 2 random subnets per step, 469 steps) and
for the largest alone. In-place distillation's soft targets come from the largest's forward
pass of the same step, so they add no forward pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install

from ofa_engine.devices.machine import cpu_model  # noqa: E402
from ofa_engine.families.vit.analytics import analyze  # noqa: E402
from ofa_engine.families.vit.space import ViTSpace  # noqa: E402
from ofa_engine.families.vit.supernet import ViTSupernet  # noqa: E402

BATCH, EPOCH_IMAGES = 128, 60_000
PRESET = ViTSpace.preset("vit-fmnist")
CANDIDATES = [
    PRESET,
    # 16 tokens of 7x7 patches: wider and deeper for the same MACs, but a coarser view.
    dataclasses.replace(PRESET, name="cand-p7-w128", patch_size=7, embed_dims=(64, 96, 128), depths=(4, 5, 6),
                        num_heads=(2, 3, 4), head_dim=32, mlp_ratios=(1.0, 2.0, 3.0)),
    # 49 tokens, a wider stream and one more block than the preset.
    dataclasses.replace(PRESET, name="cand-p4-w96", embed_dims=(64, 80, 96), depths=(4, 5, 6),
                        num_heads=(2, 3, 4), head_dim=16, mlp_ratios=(1.0, 1.5, 2.0)),
]


def step_seconds(net: ViTSupernet, cfg, steps: int) -> float:
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, net.space.in_channels, net.space.image_size, net.space.image_size, generator=gen)
    y = torch.randint(0, net.space.num_classes, (BATCH,), generator=gen)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x, cfg), y).backward()
        opt.step()

    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    steps_per_epoch = -(-EPOCH_IMAGES // BATCH)
    print(f"machine: {cpu_model()}; date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"torch {torch.__version__}")
    print(f"command: `OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_vit_train_speed.py "
          f"--threads {' '.join(map(str, args.threads))} --steps {args.steps}`\n")
    print(f"Training step, batch {BATCH}, median of {args.steps}; epoch = {steps_per_epoch} steps of "
          f"{BATCH} (60k images); sandwich = largest + smallest + 2 random subnets per step.\n")
    print("| space | tokens | largest MMACs | smallest MMACs | largest params | threads | largest s/step "
          "| smallest s/step | random s/step (mean of 2) | sandwich s/epoch | largest-only s/epoch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for space in CANDIDATES:
        net = ViTSupernet(space).train()
        big, small = analyze(space, space.largest()), analyze(space, space.smallest())
        randoms = [space.sample(seed) for seed in (1, 2)]
        for threads in args.threads:
            torch.set_num_threads(threads)
            t_big = step_seconds(net, space.largest(), args.steps)
            t_small = step_seconds(net, space.smallest(), args.steps)
            t_rand = statistics.mean(step_seconds(net, cfg, args.steps) for cfg in randoms)
            sandwich = steps_per_epoch * (t_big + t_small + 2 * t_rand)
            print(f"| {space.name} | {space.num_patches} | {big['macs'] / 1e6:.1f} | {small['macs'] / 1e6:.1f} "
                  f"| {big['params'] / 1e3:.0f}k | {threads} | {t_big:.3f} | {t_small:.3f} | {t_rand:.3f} "
                  f"| {sandwich:.0f} | {steps_per_epoch * t_big:.0f} |", flush=True)


if __name__ == "__main__":
    main()
