"""Two-process DDP run of a tiny ViT recipe on synthetic data (CPU, gloo): the ViT family under
torchrun, as tests/helpers_ddp.py runs the CNN's.

    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc_per_node=2 \\
        tests/helpers_ddp_vit.py OUT
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import helpers_train  # noqa: E402
from ofa_engine.families import family_of  # noqa: E402
from ofa_engine.training.loop import train  # noqa: E402
from ofa_engine.training.recipe import Phase, Recipe  # noqa: E402


def tiny_vit_recipe() -> Recipe:
    """full (4 steps alone), then elastic (4 steps of the sandwich: smallest, largest, one random,
    in-place distillation): every elastic dimension, so subnets leave blocks and heads unused."""
    return Recipe(phases=(Phase("full", epochs=1, lr=1e-3, distill=False),
                          Phase("elastic", epochs=1, lr=5e-4, subnets_per_step=3, distill_from="largest",
                                choices={"embed_dim": (48, 64, 80), "depth": (3, 4, 5), "num_heads": (2, 3, 4),
                                         "mlp_ratio": (1.0, 1.5, 2.0)})),
                  batch_size=helpers_train.BATCH, optimizer="adamw", sandwich_largest=True, eval_images=16,
                  checkpoint_every=2, seed=0)


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    train_set, val_set, calib = helpers_train.synthetic_sets()
    final = train(family_of("vit-fmnist").space, tiny_vit_recipe(), train_set, val_set, calib, argv[0],
                  progress=False)
    print(f"DONE {final}", flush=True)
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
