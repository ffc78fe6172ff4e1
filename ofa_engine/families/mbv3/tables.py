"""Exact table-based efficiency metrics of MobileNetV3-family populations.

Why tables are exact: in these spaces a stride sits only on a stage's first slot, which is
always active (every depth choice is >= 1), so the spatial size entering every slot depends
only on the resolution; a block's input channels depend only on the width and on whether the
slot is its stage's first; its residual connection only on the slot. So each slot's MACs,
params, Flash bytes and peak activation are a function of (slot, wid, resolution, kernel,
expand), and the stem + head of (wid, resolution). A population's metrics are a gather, a
mask by depth and a sum (a max for the peak). The tables are built from the layout walk with
`analytics`' own per-block counter and checked against `analyze` on a seeded sample when
first built; a space where they disagree falls back to `analyze`.
"""

from __future__ import annotations

import functools
import threading
import warnings
from typing import Sequence

import numpy as np

from ...space.interface import ANALYTIC_METRICS, DEPLOYED_FLASH
from .analytics import LayerTally, analyze, deployment_bytes
from .layout import walk
from .space import SearchSpace

__all__ = ["EfficiencyTables", "efficiency_tables", "TABLE_METRICS", "TABLE_COLUMNS"]

# `analyze`'s metrics and the Flash of a deployed file per precision (`deployment_bytes`).
TABLE_METRICS = tuple(ANALYTIC_METRICS) + tuple(DEPLOYED_FLASH.values())
# Columns of `values` (the peak is apart: a maximum, not a sum).
TABLE_COLUMNS = {"macs": 0, "params": 1, "flash_bytes": 2, DEPLOYED_FLASH["fp32"]: 3, DEPLOYED_FLASH["int8"]: 4}


def _tally_columns(t: LayerTally) -> np.ndarray:
    """(N, 5) the summed metrics of `TABLE_COLUMNS` of a tally (`deployment_bytes`' formulas)."""
    return np.stack([t.macs, t.params, t.flash, t.deployed_flash("fp32"), t.deployed_flash("int8")], 1)


class EfficiencyTables:
    """Per-slot and fixed (stem + head) MACs / params / Flash / peak activation of a space."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.genome = g = space.genome
        W, R, K, E = (len(g.widths), len(g.resolutions), len(g.kernel_sizes), len(g.expand_ratios))
        self.shape = (W, R, K, E)
        n_combo = W * R * K * E
        wid, res, k, e = (a.reshape(-1) for a in np.meshgrid(np.arange(W), np.arange(R), np.arange(K),
                                                           np.arange(E), indexing="ij"))
        # One walk over every (wid, resolution, kernel, expand) combination with every slot
        # active: row i of slot s is that slot's block under combination i.
        slots = space.num_slots
        blocks = walk(space, wid, g.resolutions[res], np.repeat(g.kernel_sizes[k][:, None], slots, 1),
                      np.repeat(g.expand_ratios[e][:, None], slots, 1), np.ones((n_combo, slots), bool))
        self.values = np.zeros((slots, n_combo, len(TABLE_COLUMNS)), np.int64)   # `TABLE_COLUMNS`
        self.peak = np.zeros((slots, n_combo), np.int64)
        fixed = LayerTally(n_combo)
        for b in blocks:
            if b.kind == "block":
                t = LayerTally(n_combo)
                t.block(b, space.num_classes)
                self.values[b.slot] = _tally_columns(t)
                self.peak[b.slot] = t.peak
            else:
                fixed.block(b, space.num_classes)
        # Stem and head depend on (wid, resolution) only: the first kernel / expand combination.
        first = np.arange(W * R) * (K * E)
        self.fixed_values = _tally_columns(fixed)[first]
        self.fixed_peak = fixed.peak[first]
        self._prepare_gather()

    def _prepare_gather(self) -> None:
        g = self.genome
        slots, n_combo = self.peak.shape
        n_depths = len(g.depths)
        # A slot is active when its stage's depth index reaches `min_depth_index`. Each metric
        # gets one flat table: rows (slot, depth index of its stage, combination), zero where
        # that depth leaves the slot out, so that no mask is needed at gather time, then the
        # fixed part's rows (wid, resolution) from `fixed_start` on.
        self.min_depth_index = np.searchsorted(g.depths, g.slot_index + 1)
        self.slot_active = np.arange(n_depths)[None, :] >= self.min_depth_index[:, None]   # (slots, D)
        self.fixed_start = slots * n_depths * n_combo
        fixed = {name: self.fixed_values[:, col] for name, col in TABLE_COLUMNS.items()}
        fixed["peak_activation_bytes"] = self.fixed_peak
        per_slot = {name: self.values[..., col] for name, col in TABLE_COLUMNS.items()}
        per_slot["peak_activation_bytes"] = self.peak
        self.metric_tables = {name: np.concatenate([self._fold(per_slot[name]), fixed[name]])
                              for name in TABLE_METRICS}
        # Every row number is linear in the genes: genes @ index_weights + index_offset, one
        # column per slot and a last one for the fixed part (row wid * R + resolution).
        W, R, K, E = self.shape
        weights = np.zeros((g.num_genes, slots + 1))
        slot = np.arange(slots)
        gene = np.arange(g.num_genes)
        weights[g.wid_gene, :slots], weights[g.res_gene, :slots] = R * K * E, K * E
        weights[gene[g.ks_genes], slot] = E
        weights[gene[g.e_genes], slot] = 1
        weights[gene[g.d_genes][g.slot_stage], slot] = n_combo
        weights[g.wid_gene, slots], weights[g.res_gene, slots] = R, 1
        self.index_weights = weights    # float64: one BLAS product, exact for these small integers
        self.index_offset = np.append(slot * (n_depths * n_combo), self.fixed_start)
        # float32 when every row number (and so every partial sum of the product: the terms are
        # non-negative) is below 2**24, where float32 holds integers exactly: half the bytes.
        largest_row = int((self.index_offset + (g.cardinality - 1) @ weights).max())
        self._index_weights = weights.astype(np.float32) if largest_row < 2 ** 24 else weights

    def _fold(self, per_slot: np.ndarray) -> np.ndarray:
        """(slots, combos) -> flat (slots * D * combos,), zero where the depth drops the slot."""
        folded = np.where(self.slot_active[:, :, None], per_slot[:, None, :], 0)
        return folded.astype(per_slot.dtype).reshape(-1)

    def row_index(self, genes: np.ndarray) -> np.ndarray:
        """(N, slots + 1) rows of a genome array in a metric's flat table: each slot's, then
        that of its (wid, resolution) in the fixed part."""
        weights = self._index_weights
        rows = (genes.astype(weights.dtype) @ weights).astype(np.int64)
        rows += self.index_offset
        return rows

    def compute(self, genes: np.ndarray, metrics: Sequence[str] = ANALYTIC_METRICS,
                index: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """`analyze`'s metrics (int64 arrays) of a genome array: all four, or those named among
        `TABLE_METRICS` (`index`: the genes' `row_index` if already known)."""
        index = self.row_index(genes) if index is None else index
        return {name: self.gather(self.metric_tables[name], index, peak=name == "peak_activation_bytes")
                for name in metrics}

    @staticmethod
    def gather(table: np.ndarray, index: np.ndarray, peak: bool = False) -> np.ndarray:
        """(N,) sum (`peak`: max) over slots of a flat metric table, plus (max with) its fixed
        part: one gather of all `row_index` columns. `take`, not fancy indexing: several times
        faster on these small gathers; the ufuncs' `reduce`, which `sum` and `max` call, without
        their Python-level wrappers. An integer sum is exact in any order: one row sum. A float
        table adds the slots first and the fixed term last: the additions of
        `latency_features.gather` in its order (a row sum over the slots with 0.0 for inactive
        ones, then the fixed term), so equal results."""
        values = table.take(index)
        if peak:
            return np.maximum.reduce(values, 1)
        if table.dtype.kind != "f":
            return np.add.reduce(values, 1)
        return np.add.reduce(values[:, :-1], 1) + values[:, -1]

    def slot_table(self, block_table: np.ndarray, fixed_table: np.ndarray) -> np.ndarray:
        """A quantity given as `latency_features` tables ((W, R, slots, K, E) per slot and (W, R)
        fixed, option axes in the genome's order) in the layout `gather` reads."""
        per_slot = np.moveaxis(np.asarray(block_table, np.float64), 2, 0).reshape(len(self.slot_active), -1)
        return np.concatenate([self._fold(per_slot), np.asarray(fixed_table, np.float64).reshape(-1)])

    def verify(self, n: int = 256, seed: int = 0) -> bool:
        """True when the tables equal `analyze` and `deployment_bytes` on a seeded sample plus
        the extreme configs."""
        g = self.genome
        genes = np.concatenate([g.random(n, np.random.default_rng(seed)), g.uniform("min"), g.uniform("max")])
        population = g.to_population(genes)
        expected = analyze(self.space, population)
        for precision, name in DEPLOYED_FLASH.items():
            expected[name] = deployment_bytes(self.space, population, precision)["flash_bytes"]
        got = self.compute(genes, TABLE_METRICS)
        return all(np.array_equal(expected[k], got[k]) for k in expected)


@functools.lru_cache(maxsize=None)
def _tables_for(space: SearchSpace) -> EfficiencyTables | None:
    try:
        tables = EfficiencyTables(space)
        if tables.verify():
            return tables
    except Exception as exc:   # an unexpected layout: analyze still works
        warnings.warn(f"search space '{space.name}': efficiency tables unavailable ({exc}); using analyze()")
        return None
    warnings.warn(f"search space '{space.name}': efficiency tables disagree with analyze(); using analyze()")
    return None


_TABLES_LOCK = threading.Lock()


def efficiency_tables(space: SearchSpace) -> EfficiencyTables | None:
    """The verified tables of `space` (built once per process), or None when they do not apply."""
    with _TABLES_LOCK:
        return _tables_for(space)
