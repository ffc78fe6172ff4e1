"""Shared tiny training setup for tests/test_train.py, also runnable as a script.

    python tests/helpers_train.py OUT [--resume] [--max-steps N] [--pause-at PHASE:STEP]

trains the tiny recipe below on synthetic data into OUT (one torch thread, seeded), so that a
test can SIGKILL it mid-run and resume it. `--pause-at PHASE:STEP` prints "PAUSED ..." and
waits for ever (for the kill) just before the optimizer step that would make the phase's step
count STEP+1: a known point, the checkpoint before it written and the steps since it lost. Used
by helpers_ddp.py under torchrun as well.
"""

from __future__ import annotations

import os
import sys
import threading

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ofa_engine.datasets.images import ImageSet  # noqa: E402
from ofa_engine.families.mbv3.space import SearchSpace  # noqa: E402
from ofa_engine.training.recipe import Phase, Recipe  # noqa: E402

SPACE = "tiny-fmnist"
N_TRAIN = 128
BATCH = 16          # 8 steps per epoch in one process, 4 per rank under 2-process DDP


def synthetic_sets(n: int = N_TRAIN, seed: int = 0):
    """(train, val, calib): random 28x28 uint8 images with 10 classes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int64)
    data = ImageSet(images, labels, tuple(f"c{i}" for i in range(10)))
    small = data.subset(np.arange(16))
    return data, small, small


def tiny_recipe(**overrides) -> Recipe:
    """full (4 steps, no distillation) then elastic kernel (6 steps, 2 subnets, distils)."""
    base = dict(
        phases=(Phase("full", epochs=0.5, lr=0.05, distill=False),
                Phase("kernel", epochs=0.75, lr=0.02, kernel_sizes=(3, 5, 7), subnets_per_step=2)),
        batch_size=BATCH, eval_images=16, checkpoint_every=2, seed=0)
    base.update(overrides)
    return Recipe(**base)


def pause_before_step(phase: int, step: int) -> None:
    """Block the training thread before the optimizer step at (phase index, steps done in it)."""
    from ofa_engine.training import loop
    real = loop._PhaseSteps.step

    def step_or_pause(self, x, y):
        state = self.run.state
        if (state["phase"], state["step"]) == (phase, step):
            print(f"PAUSED phase {phase} step {step}", flush=True)
            threading.Event().wait()     # until the test kills the process
        return real(self, x, y)
    loop._PhaseSteps.step = step_or_pause


def main(argv: list[str]) -> int:
    from ofa_engine.training.loop import train

    torch.set_num_threads(1)
    out = argv[0]
    resume = "--resume" in argv
    max_steps = int(argv[argv.index("--max-steps") + 1]) if "--max-steps" in argv else None
    if "--pause-at" in argv:
        pause_before_step(*(int(v) for v in argv[argv.index("--pause-at") + 1].split(":")))
    train_set, val_set, calib = synthetic_sets()
    final = train(SearchSpace.preset(SPACE), tiny_recipe(), train_set, val_set, calib, out,
                  resume=resume, max_steps=max_steps, progress=False)
    print(f"DONE {final}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
