"""Exact table-based efficiency metrics of ResNet populations (the search's hot path).

Why tables are exact: a stride sits only on a stage's first slot, which every depth keeps
(`ResNetSpace` requires base_depths + min(depth_list) >= 1), so the size entering every slot
depends only on the resolution; a slot's input channels on its own stage's `w` (or, on a
stage's first slot, the previous stage's / the stem's); its middle channels on that `w` and its
expand ratio. So each slot's terms (`analytics.block_terms`) are a function of (slot, w_in,
w_out, e, r), and the stem + head's (`stem_terms`, `head_terms`) of (d[0], w[0], w[1], the
last stage's w, r). A population's metrics are one gather per slot, a sum over the slots (a
max for the peak) and the fixed part: the additions the block-by-block walk
(`analytics.analyze_values`) makes, in int64, so the results are equal, not close.

The per-slot table is folded with the depth (rows (slot, depth index of its stage, w_in, w_out,
e, r), zero where the depth leaves the slot out), so a slot's row is linear in the genes and
needs no mask: `genes @ index_weights + index_offset`.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from .analytics import SUM_TERMS, block_terms, head_terms, stage_sizes, stem_terms
from .space import ResNetSpace

__all__ = ["EfficiencyTables", "efficiency_tables", "TABLE_METRICS", "block_grid", "fixed_grid"]

# What the tables hold: `analyze`'s metrics and both deployed files' Flash (summed over layers),
# then the peak activation (a maximum).
SUMMED = ("macs", "params", "flash_bytes", "flash_bytes_fp32", "flash_bytes_int8")
TABLE_METRICS = SUMMED + ("peak_activation_bytes",)
PEAK = len(SUMMED)


@functools.lru_cache(maxsize=8)
def block_grid(space: ResNetSpace) -> dict[str, np.ndarray]:
    """(slots, W_in, W_out, E, R) int64 arrays of every block slot's input channels `c_in`,
    middle `mid`, output `c_out`, input size `size`, and per slot `stride`, `first`."""
    n_w, n_e, n_r = len(space.width_mults), len(space.expand_ratios), len(space.resolutions)
    shape = (space.num_slots, n_w, n_w, n_e, n_r)
    out = {k: np.zeros(shape, np.int64) for k in ("c_in", "mid", "c_out", "size")}
    sizes = stage_sizes(space, np.array(space.resolutions, np.int64))
    wi, wo, e, r = np.meshgrid(np.arange(n_w), np.arange(n_w), np.arange(n_e), np.arange(n_r), indexing="ij")
    for slot, (s, i) in enumerate(zip(space.slot_stage, space.slot_index)):
        widths = np.array(space.stage_out_channels[s], np.int64)
        prev = np.array(space.stem_out_channels if s == 0 else space.stage_out_channels[s - 1], np.int64)
        out["c_out"][slot] = widths[wo]
        out["c_in"][slot] = prev[wi] if i == 0 else widths[wo]
        out["mid"][slot] = space.middle_table[s][wo, e]
        out["size"][slot] = (sizes[s] if i == 0 else sizes[s + 1])[r]
    out["first"] = np.array(space.slot_index, np.int64) == 0
    out["stride"] = np.array([space.stride(s) if i == 0 else 1 for s, i in zip(space.slot_stage, space.slot_index)])
    return out


@functools.lru_cache(maxsize=8)
def fixed_grid(space: ResNetSpace) -> dict[str, np.ndarray]:
    """(2, W, W, W, R) arrays: stem residual conv kept (0 / 1), w[0], w[1], the last stage's w,
    the resolution."""
    n_w, n_r = len(space.width_mults), len(space.resolutions)
    k, w0, w1, wl, r = np.meshgrid(np.arange(2), np.arange(n_w), np.arange(n_w), np.arange(n_w), np.arange(n_r),
                                   indexing="ij")
    return {"kept": k.astype(bool), "mid": np.array(space.stem_mid_channels, np.int64)[w0],
            "out": np.array(space.stem_out_channels, np.int64)[w1],
            "last": np.array(space.stage_out_channels[-1], np.int64)[wl],
            "image_size": np.array(space.resolutions, np.int64)[r]}


def _columns(terms: dict[str, np.ndarray]) -> np.ndarray:
    """(..., len(TABLE_METRICS)) int64: the summed metrics, then the peak."""
    return np.stack([np.asarray(terms[name], np.int64) for name in TABLE_METRICS], -1)


class EfficiencyTables:
    """Per-slot and fixed (stem + head) `TABLE_METRICS` of every choice of a `ResNetSpace`."""

    def __init__(self, space: ResNetSpace):
        self.space = space
        self.genome = g = space.genome
        grid = block_grid(space)
        per_slot = np.stack([_columns(block_terms(grid["c_in"][s], grid["mid"][s], grid["c_out"][s],
                                                  grid["size"][s], int(grid["stride"][s]), bool(grid["first"][s])))
                             for s in range(space.num_slots)])                # (slots, W, W, E, R, M)
        # Fold the depth in: (slots, D, W, W, E, R, M), zero where the stage's depth drops the slot.
        kept = np.array(space.base_depths, np.int64)[g.slot_stage][:, None] + g.depths[None, :]   # (slots, D)
        active = g.slot_index[:, None] < kept
        folded = np.where(active[:, :, None, None, None, None, None], per_slot[:, None], 0)
        # Metric-major (M, rows): a gather gives (M, N, slots), summed along its contiguous axis.
        self.slot_table = np.ascontiguousarray(folded.reshape(-1, len(TABLE_METRICS)).T)
        # Stem + head on (kept, w0, w1, w_last, r), then re-indexed by the stem gene (its
        # choice's "kept" is d[0] == the largest depth).
        f = fixed_grid(space)
        stem = stem_terms(space, f["mid"], f["out"], f["kept"], f["image_size"])
        head = head_terms(space, f["last"])
        fixed = {name: stem[name] + head[name] for name in SUM_TERMS}
        fixed["peak_activation_bytes"] = np.maximum(stem["peak_activation_bytes"], head["peak_activation_bytes"])
        stem_kept = (g.stem_choices == space.max_depth).astype(np.int64)
        self.fixed_table = np.ascontiguousarray(_columns(fixed)[stem_kept].reshape(-1, len(TABLE_METRICS)).T)
        for table in (self.slot_table, self.fixed_table):
            table.flags.writeable = False          # cached and shared
        self._prepare_index(per_slot.shape[1:-1])

    def _prepare_index(self, shape: tuple[int, ...]) -> None:
        """Row numbers linear in the genes: slot rows `genes @ slot_weights + slot_offset`,
        the fixed row `genes @ fixed_weights`."""
        g, space = self.genome, self.space
        n_w, _, n_e, n_r = shape
        stages, slots = space.num_stages, space.num_slots
        genes = np.arange(g.num_genes)
        depth_genes, width_genes = genes[g.depth_genes], genes[g.width_genes]
        expand_genes = genes[g.expand_genes]
        combo = n_w * n_w * n_e * n_r
        weights = np.zeros((g.num_genes, slots), np.int64)
        for slot, (s, i) in enumerate(zip(space.slot_stage, space.slot_index)):
            weights[depth_genes[s], slot] += combo
            # w_in: the previous stage's (the stem's w[1]) on a stage's first slot, its own later
            w_in = width_genes[1 + s] if i == 0 else width_genes[2 + s]
            weights[w_in, slot] += n_w * n_e * n_r
            weights[width_genes[2 + s], slot] += n_e * n_r
            weights[expand_genes[slot], slot] += n_r
            weights[g.res_gene, slot] += 1
        self.slot_weights = weights.astype(np.float64)   # one BLAS product, exact for these small integers
        self.slot_offset = np.arange(slots, dtype=np.int64) * (len(g.depths) * combo)
        fixed = np.zeros(g.num_genes, np.int64)
        fixed[g.stem_gene] = n_w * n_w * n_w * n_r
        fixed[width_genes[0]] = n_w * n_w * n_r
        fixed[width_genes[1]] = n_w * n_r
        fixed[width_genes[1 + stages]] = n_r
        fixed[g.res_gene] = 1
        self.fixed_weights = fixed

    def compute(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        """Every `TABLE_METRICS` entry of a genome array (N, G): (N,) int64 arrays."""
        genes = np.asarray(genes, np.int64).reshape(-1, self.genome.num_genes)
        rows = (genes @ self.slot_weights).astype(np.int64)
        rows += self.slot_offset
        per_slot = np.take(self.slot_table, rows, axis=1)                      # (M, N, slots)
        fixed = np.take(self.fixed_table, genes @ self.fixed_weights, axis=1)   # (M, N)
        sums = per_slot[:PEAK].sum(-1) + fixed[:PEAK]
        peak = np.maximum(per_slot[PEAK].max(-1), fixed[PEAK])
        out = {name: sums[k] for k, name in enumerate(SUMMED)}
        out["peak_activation_bytes"] = peak
        return out


_TABLES_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def _tables_for(space: ResNetSpace) -> EfficiencyTables:
    return EfficiencyTables(space)


def efficiency_tables(space: ResNetSpace) -> EfficiencyTables:
    """The tables of `space`, built once per process (a few milliseconds for the preset)."""
    with _TABLES_LOCK:
        return _tables_for(space)
