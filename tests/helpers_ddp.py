"""Two-process DDP run of the tiny recipe on synthetic data (CPU, gloo).

    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc_per_node=2 \
        tests/helpers_ddp.py OUT

train() picks gloo on CPU from the RANK / WORLD_SIZE variables that torchrun sets. Besides
train()'s own files, every rank writes OUT/batches-rank<R>.json: the indices (into the
synthetic training set) of the images of each step it trained on, so that a test can check
that the ranks saw different shards.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import helpers_train  # noqa: E402
import ofa_engine.training.loop as loop  # noqa: E402


def main(argv: list[str]) -> int:
    out = argv[0]
    train_set, _, _ = helpers_train.synthetic_sets()
    index_of = {train_set.images[i].tobytes(): i for i in range(len(train_set))}
    batches: list[list[int]] = []
    augment = loop.augment

    def recording_augment(images, gen, pad=2):
        # Called once per step on the step's raw uint8 batch, before augmentation.
        batches.append([index_of[img[0].numpy().tobytes()] for img in images])
        return augment(images, gen, pad)

    loop.augment = recording_augment   # the name the training step calls
    rc = helpers_train.main(argv)
    rank = int(os.environ.get("RANK", "0"))
    with open(os.path.join(out, f"batches-rank{rank}.json"), "w", encoding="utf-8") as fh:
        json.dump(batches, fh)
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()
    return rc


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
