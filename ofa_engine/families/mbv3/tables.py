"""Exact table-based efficiency metrics of MobileNetV3-family populations.

Why tables are exact: in these spaces a stride sits only on a stage's first slot, which is
always active (every depth choice is >= 1), so the spatial size entering every slot depends
only on the resolution; a block's input channels depend only on the width and on whether the
slot is its stage's first; its residual connection only on the slot. So each slot's MACs,
params, Flash bytes and peak activation are a function of (slot, wid, resolution, kernel,
expand), and the stem + head of (wid, resolution). A population's metrics are a gather, a
mask by depth and a sum (a max for the peak). The tables are built with `analytics`' own
per-block counter and checked against `analyze` on a seeded sample when first built; a space
where they disagree falls back to `analyze`.
"""

from __future__ import annotations

import functools
import threading
import warnings

import numpy as np

from . import analytics
from .analytics import analyze
from .space import SearchSpace

__all__ = ["EfficiencyTables", "efficiency_tables"]


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
        plans = [space.channels(w) for w in range(W)]
        stage_width = np.array([p.stages for p in plans], np.int64)      # (W, stages)
        first_block = np.array([p.first_block for p in plans], np.int64)
        div = space.channel_divisor

        # Spatial size entering each slot, per resolution.
        size = -(-g.resolutions // space.first_conv_stride)
        size = -(-size // space.first_block_stride)
        slot_sizes = []
        for slot in range(space.num_slots):
            slot_sizes.append(size)
            size = -(-size // space.slot_stride(slot))
        self.values = np.zeros((space.num_slots, n_combo, 3), np.int64)   # macs, params, flash
        self.peak = np.zeros((space.num_slots, n_combo), np.int64)
        for slot in range(space.num_slots):
            stage, index = divmod(slot, space.max_depth)
            if index == 0:
                c_in = (first_block if stage == 0 else stage_width[:, stage - 1])[wid]
                in_base = space.base_widths[1 + stage]
            else:
                c_in = stage_width[wid, stage]
                in_base = space.base_widths[2 + stage]
            stride = space.slot_stride(slot)
            t = analytics._Tally(n_combo)
            mid = analytics._make_divisible(c_in * g.expand_ratios[e], div)
            analytics._block(t, space, c_in, mid, stage_width[wid, stage], g.kernel_sizes[k], stride,
                             space.stage_se[stage], stride == 1 and in_base == space.base_widths[2 + stage],
                             slot_sizes[slot][res], expands=True, mask=np.ones(n_combo, bool))
            self.values[slot] = np.stack([t.macs, t.params, t.flash], 1)
            self.peak[slot] = t.peak
        self.values_flat = self.values.reshape(-1, 3)
        self.peak_flat = self.peak.reshape(-1)
        self.slot_offset = np.arange(space.num_slots) * n_combo
        self.fixed_values, self.fixed_peak = self._stem_and_head(plans, W, R)
        self._prepare_gather()

    def _stem_and_head(self, plans, W: int, R: int) -> tuple[np.ndarray, np.ndarray]:
        # Mirrors `analyze` outside the elastic slots; `_verify` checks the two agree.
        space, g = self.space, self.genome
        wid, res = (a.reshape(-1) for a in np.meshgrid(np.arange(W), np.arange(R), indexing="ij"))
        n = W * R

        def width(getter) -> np.ndarray:
            return np.array([getter(p) for p in plans], np.int64)[wid]

        t = analytics._Tally(n)
        size = g.resolutions[res]
        c_in, c = np.full(n, space.in_channels, np.int64), width(lambda p: p.first_conv)
        out = -(-size // space.first_conv_stride)
        t.layer(out * out * c * c_in * 9, c * c_in * 9, 0, c, c_in * size * size + c * out * out)
        size = out
        c_out = width(lambda p: p.first_block)
        residual = space.first_block_stride == 1 and space.base_widths[0] == space.base_widths[1]
        size = analytics._block(t, space, c, c, c_out, 3, space.first_block_stride, space.first_block_se,
                                residual, size, expands=False, mask=np.ones(n, bool))
        for slot in range(space.num_slots):
            size = -(-size // space.slot_stride(slot))
        c = width(lambda p: p.stages[-1])
        fe, fm, k = width(lambda p: p.final_expand), width(lambda p: p.feature_mix), space.num_classes
        t.layer(size * size * c * fe, c * fe, 0, fe, (c + fe) * size * size)
        t.layer(fe * fm, fe * fm, 0, 0, fe + fm)
        t.layer(fm * k, fm * k, k, 0, fm + k)
        return np.stack([t.macs, t.params, t.flash], 1), t.peak

    def _prepare_gather(self) -> None:
        g = self.genome
        # One table of (macs, params, flash, peak) rows plus a zero row for inactive slots.
        self.rows = np.concatenate([np.concatenate([self.values_flat, self.peak_flat[:, None]], 1),
                                    np.zeros((1, 4), np.int64)])
        self.zero_row = len(self.rows) - 1
        self.fixed_rows = np.concatenate([self.fixed_values, self.fixed_peak[:, None]], 1)
        # A slot is active when its stage's depth index reaches this value.
        self.min_depth_index = np.searchsorted(g.depths, g.slot_index + 1)

    def combo_index(self, genes: np.ndarray) -> np.ndarray:
        """(N, slots) row of each slot's entry in `rows` (the zero row when the slot is inactive)."""
        g = self.genome
        W, R, K, E = self.shape
        wr = genes[:, g.wid_gene] * R + genes[:, g.res_gene]
        idx = genes[:, g.ks_genes] * E
        idx += genes[:, g.e_genes]
        idx += self.slot_offset
        idx += (wr * (K * E))[:, None]
        inactive = genes[:, g.d_genes].take(g.slot_stage, axis=1) < self.min_depth_index
        idx[inactive] = self.zero_row
        return idx

    def compute(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        """`analyze`'s four metrics (int64 arrays) of a genome array."""
        g = self.genome
        wr = genes[:, g.wid_gene] * self.shape[1] + genes[:, g.res_gene]
        # np.take, not fancy indexing: ~20x faster on these small 2-D gathers.
        values = np.take(self.rows, self.combo_index(genes), axis=0)      # (N, slots, 4)
        fixed = np.take(self.fixed_rows, wr, axis=0)
        totals = values.sum(1) + fixed
        peak = np.maximum(values[:, :, 3].max(1), fixed[:, 3])
        return {"macs": totals[:, 0], "params": totals[:, 1], "peak_activation_bytes": peak,
                "flash_bytes": totals[:, 2]}

    def verify(self, n: int = 256, seed: int = 0) -> bool:
        """True when the tables equal `analyze` on a seeded sample plus the extreme configs."""
        g = self.genome
        genes = np.concatenate([g.random(n, np.random.default_rng(seed)), g.uniform("min"), g.uniform("max")])
        expected = analyze(self.space, g.to_population(genes))
        got = self.compute(genes)
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
