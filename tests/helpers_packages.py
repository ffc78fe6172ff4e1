"""What the package tests share: a non-preset 3-channel, 3-class space and random images of it."""

from __future__ import annotations

import dataclasses

import numpy as np

from ofa_engine import SearchSpace
from ofa_engine.datasets.images import ImageSet

LABELS = ("circle", "square", "triangle")
# A space of the kind `train --data folder:... --channels 3` makes: not a preset, 3 channels, 3 classes.
SPACE = dataclasses.replace(SearchSpace.preset("tiny-fmnist"), name="tiny-fmnist-custom", in_channels=3,
                            num_classes=3, labels=LABELS, mean=(0.2, 0.2, 0.2), std=(0.3, 0.3, 0.3))


def random_images(n: int, seed: int) -> ImageSet:
    rng = np.random.default_rng(seed)
    return ImageSet(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), np.arange(n, dtype=np.int64) % 3, LABELS)
