"""Seeded, class-stratified picks of calibration and evaluation images (numpy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["stratified_split", "stratified_prefix"]


def stratified_split(labels: np.ndarray, n_first: int, n_second: int, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint index arrays of `n_first` and `n_second` items, each spread evenly over the
    classes of `labels`: the images of every class are shuffled (seeded), then the classes take
    turns (in a seeded order), so that each pick holds every class about equally often (as far
    as a class has images). `ValueError` when there are fewer than `n_first + n_second` items."""
    labels = np.asarray(labels).reshape(-1)
    for what, n in (("first", n_first), ("second", n_second)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"the {what} pick needs a positive number of images, got {n!r}")
    if n_first + n_second > len(labels):
        raise ValueError(f"{n_first} + {n_second} images were asked for, but the data holds only "
                         f"{len(labels)}; allowed: at most {len(labels)} in all")
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(labels))
    queues = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    # Round-robin: the k-th image of every class before the (k+1)-th of any.
    order = [q[k] for k in range(max(len(q) for q in queues)) for q in queues if k < len(q)]
    # The round-robin order continues after the first pick, so the second is stratified too.
    first, second = order[:n_first], order[n_first:n_first + n_second]
    return np.sort(np.array(first, np.int64)), np.sort(np.array(second, np.int64))


def stratified_prefix(labels: np.ndarray, n: int) -> np.ndarray:
    """Sorted indices of `n` of the items (all of them when `n` >= their number), spread evenly
    over the classes of `labels` without any draw: the classes take turns in the order of their
    first item, each giving its items in their stored order. Where the items are in random
    order this is as good as their first `n`; where they are grouped by class (a package sampled
    from an image folder), a prefix would hold a few classes only."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n = {n!r}; allowed: a positive number of images")
    labels = np.asarray(labels).reshape(-1)
    if n >= len(labels):
        return np.arange(len(labels))
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    by_class = np.argsort(inverse, kind="stable")           # each class's items in stored order
    counts = np.bincount(inverse)
    rank = np.empty(len(labels), np.int64)                    # an item's place within its class
    rank[by_class] = np.arange(len(labels)) - np.repeat(np.cumsum(counts) - counts, counts)
    turn = np.argsort(np.argsort(first))[inverse]             # its class's turn: by first item
    return np.sort(np.argsort(rank * len(first) + turn, kind="stable")[:n])
