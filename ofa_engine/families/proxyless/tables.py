"""Exact per-slot efficiency tables of a ProxylessNAS space: a population's analytics as one gather.

Why tables are exact: a stride sits only on a stage's first slot, which every depth keeps, and
a stage's first slot reads the previous stage's width whatever its depth (the layout walk,
`layout.walk`); so a slot's block, hence its MACs, params, Flash and peak activation, depends
only on (slot, resolution, kernel, expand), and the stem, first block and head on the
resolution alone. Every metric but the peak adds over layers (the deployed files' Flash too:
`LayerTally.deployed_flash` is linear in the tally), the peak is a maximum; so a population's
metrics are a gather of its kept slots' rows, a sum (a max) over slots and the fixed part.

The tables are built from one walk over every (resolution, kernel, expand) combination with
`analytics.block_tally`, the block-by-block counter itself; tests/test_proxyless_family.py
checks them against it.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from ..mbv3.analytics import LayerTally
from .analytics import PRECISIONS, block_tally
from .layout import walk
from .space import ProxylessSpace

__all__ = ["EfficiencyTables", "efficiency_tables", "TABLE_METRICS"]

# `analyze_values`' keys, in the tables' column order; the last one is a maximum, not a sum.
TABLE_METRICS = ("macs", "params", "flash_bytes") + tuple(f"flash_bytes_{p}" for p in PRECISIONS) + (
    "peak_activation_bytes",)
_SUMMED = len(TABLE_METRICS) - 1


def _columns(t: LayerTally) -> np.ndarray:
    """(N, metrics) of a tally in `TABLE_METRICS` order."""
    return np.stack([t.macs, t.params, t.flash] + [t.deployed_flash(p) for p in PRECISIONS] + [t.peak], 1)


class EfficiencyTables:
    """Per-slot and fixed (stem, first block, head) metrics of every choice of a `ProxylessSpace`.

    `slot_table`: (slots x depths x R x K x E, metrics) int64, a row per slot, depth option of
    its stage and (resolution, kernel, expand) combination, zero where that depth leaves the
    slot out (so a gather needs no mask); `fixed_table`: (R, metrics)."""

    def __init__(self, space: ProxylessSpace):
        self.space = space
        g = self.genome = space.genome
        R, K, E, S, D = (len(g.resolutions), len(g.kernel_sizes), len(g.expand_ratios), g.num_slots, len(g.depths))
        n_combo = R * K * E
        r, k, e = (a.reshape(-1) for a in np.meshgrid(np.arange(R), np.arange(K), np.arange(E), indexing="ij"))
        # Row i of slot s in this walk is slot s's block under combination i (every slot kept).
        blocks = walk(space, g.resolutions[r], np.repeat(g.kernel_sizes[k][:, None], S, 1),
                      np.repeat(g.expand_ratios[e][:, None], S, 1), np.ones((n_combo, S), bool))
        per_slot = np.zeros((S, n_combo, len(TABLE_METRICS)), np.int64)
        fixed = LayerTally(n_combo)
        for b in blocks:
            if b.kind == "block":
                t = LayerTally(n_combo)
                block_tally(t, b, space.num_classes)
                per_slot[b.slot] = _columns(t)
            else:
                block_tally(fixed, b, space.num_classes)
        self.fixed_table = np.ascontiguousarray(_columns(fixed)[::K * E])   # the first (k, e) of each resolution
        # Depth option d keeps slot s when its index in the stage is below depths[d]; the last
        # slot has no depth gene and is always kept.
        kept = g.slot_index[:, None] < g.depths[None, :]                   # (S, D)
        kept[-1] = True
        self.slot_table = np.where(kept[:, :, None, None], per_slot[:, None], 0).reshape(-1, len(TABLE_METRICS))
        for table in (self.slot_table, self.fixed_table):
            table.flags.writeable = False      # cached and shared
        # A slot's row is linear in the genes: genes @ index_weights + index_offset (float64:
        # one BLAS product, exact for these small integers).
        weights = np.zeros((g.num_genes, S))
        slots, genes = np.arange(S), np.arange(g.num_genes)
        weights[g.res_gene] = K * E
        weights[genes[g.ks_genes], slots] = E
        weights[genes[g.e_genes], slots] = 1
        elastic = slots[:-1]
        weights[genes[g.d_genes][g.slot_stage[elastic]], elastic] = n_combo
        self.index_weights = weights
        self.index_offset = slots * (D * n_combo)

    def slot_rows(self, genes: np.ndarray) -> np.ndarray:
        """(N, slots) row of each slot of genomes `genes` (N, G) in `slot_table`."""
        rows = (genes @ self.index_weights).astype(np.int64)
        rows += self.index_offset
        return rows

    def compute(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        """Every metric of `TABLE_METRICS` (int64 (N,) arrays) of genomes `genes` (N, G)."""
        genes = np.asarray(genes, np.int64).reshape(-1, self.genome.num_genes)
        per_slot = np.take(self.slot_table, self.slot_rows(genes), axis=0)   # (N, slots, metrics)
        fixed = np.take(self.fixed_table, genes[:, self.genome.res_gene], axis=0)
        summed = per_slot[:, :, :_SUMMED].sum(1) + fixed[:, :_SUMMED]
        peak = np.maximum(per_slot[:, :, _SUMMED].max(1), fixed[:, _SUMMED])
        out = {name: summed[:, i] for i, name in enumerate(TABLE_METRICS[:_SUMMED])}
        out["peak_activation_bytes"] = peak
        return out


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=16)
def _tables_for(space: ProxylessSpace) -> EfficiencyTables:
    return EfficiencyTables(space)


def efficiency_tables(space: ProxylessSpace) -> EfficiencyTables:
    """The tables of `space`, built on first use and kept (per process, per space)."""
    with _LOCK:
        return _tables_for(space)
