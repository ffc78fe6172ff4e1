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
    order = _round_robin([rng.permutation(np.flatnonzero(labels == c)) for c in classes])
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
    _, first = np.unique(labels, return_index=True)
    classes = labels[np.sort(first)]                    # in the order of their first item
    return np.sort(np.array(_round_robin([np.flatnonzero(labels == c) for c in classes])[:n], np.int64))


def _round_robin(queues: list[np.ndarray]) -> list[int]:
    """The items of `queues` with the k-th of every queue before the (k+1)-th of any."""
    return [q[k] for k in range(max(len(q) for q in queues)) for q in queues if k < len(q)]
