"""The categorical genome of a MobileNetV3 `SearchSpace`.

Gene order: wid, resolution, depth per stage, kernel per slot, expand per slot. Every option
list is sorted ascending, so index - 1 is always "one step smaller" (used by repair). A slot's
kernel and expand are inactive when its stage's depth leaves the slot out. The encoding holds
resolution, width, then per slot kernel and expand: OFA's one-hot layout (`SearchSpace.encode`).
Strategies work on genomes and convert to a population (`to_population`) or to `SubnetConfig`s
only at the edges.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ...space.genome import RESOLUTION, CategoricalGenome

__all__ = ["MobileNetV3Genome"]

# Largest number of depth combinations whose active masks are tabulated (beyond: computed).
_MAX_ACTIVE_TABLE = 1 << 16


class MobileNetV3Genome(CategoricalGenome):
    """Index encoding of a `SearchSpace` (given as `space`; this module does not import it,
    since the space builds its genome from here)."""

    def __init__(self, space: Any):
        self.space = space
        s, n = space.num_stages, space.num_slots
        self.num_stages, self.num_slots = s, n
        self.wid_gene, self.res_gene = 0, 1
        self.d_genes = slice(2, 2 + s)
        self.ks_genes = slice(2 + s, 2 + s + n)
        self.e_genes = slice(2 + s + n, 2 + s + 2 * n)
        self.widths = np.arange(len(space.width_mults))
        self.resolutions = np.array(space.resolutions, np.int64)
        self.depths = np.array(sorted(space.depths), np.int64)
        self.kernel_sizes = np.array(sorted(space.kernel_sizes), np.int64)
        self.expand_ratios = np.array(sorted(space.expand_ratios), np.int64)
        # Slot -> the stage it belongs to and its position in the stage.
        self.slot_stage = np.arange(n) // space.max_depth
        self.slot_index = np.arange(n) % space.max_depth
        names = (["wid", "resolution"] + [f"d{i}" for i in range(s)] + [f"ks{i}" for i in range(n)]
                 + [f"e{i}" for i in range(n)])
        cardinality = ([len(self.widths), len(self.resolutions)] + [len(self.depths)] * s
                       + [len(self.kernel_sizes)] * n + [len(self.expand_ratios)] * n)
        ks, e = np.arange(2 + s, 2 + s + n), np.arange(2 + s + n, 2 + s + 2 * n)
        encoding = np.concatenate([[self.res_gene, self.wid_gene], np.stack([ks, e], 1).reshape(-1)])
        super().__init__(names, cardinality, groups={RESOLUTION: [self.res_gene]},
                         active=self._active_genes, encoding=encoding)
        # The active mask depends on the depth genes alone: one row per combination of them,
        # looked up by the depth genes' mixed-radix number (the search asks once per generation).
        n_depths = len(self.depths)
        self._depth_radix = n_depths ** np.arange(s)[::-1]
        self._active_table = None
        if n_depths ** s <= _MAX_ACTIVE_TABLE:
            combos = np.zeros((n_depths ** s, self.num_genes), np.int64)
            combos[:, self.d_genes] = np.arange(n_depths ** s)[:, None] // self._depth_radix % n_depths
            self._active_table = self._active_genes(combos)

    def active_slots(self, genes: np.ndarray) -> np.ndarray:
        """(N, slots) bool: the slot's block is kept by its stage's depth."""
        depth = self.depths[genes[:, self.d_genes]]                     # (N, stages)
        return self.slot_index[None, :] < depth[:, self.slot_stage]

    def active(self, genes: np.ndarray) -> np.ndarray:
        if self._active_table is None:
            return super().active(genes)
        genes = np.asarray(genes, np.int64).reshape(-1, self.num_genes)
        return self._active_table.take(genes[:, self.d_genes] @ self._depth_radix, 0)

    def _active_genes(self, genes: np.ndarray) -> np.ndarray:
        active = np.ones(genes.shape, bool)
        slots = self.active_slots(genes)
        active[:, self.ks_genes] = slots
        active[:, self.e_genes] = slots
        return active

    # ------------------------------------------------------------- conversions
    def to_population(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        genes = np.asarray(genes, np.int64)
        return {"wid": genes[:, self.wid_gene].copy(),
                "ks": self.kernel_sizes[genes[:, self.ks_genes]],
                "e": self.expand_ratios[genes[:, self.e_genes]],
                "d": self.depths[genes[:, self.d_genes]],
                "image_size": self.resolutions[genes[:, self.res_gene]]}

    def from_population(self, pop: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.from_arrays(self.space.to_arrays(pop))   # validates

    def from_arrays(self, a: Mapping[str, np.ndarray]) -> np.ndarray:
        """Genomes of `SearchSpace.to_arrays` output (already validated)."""
        n = a["wid"].shape[0]
        genes = np.empty((n, self.num_genes), np.int64)
        genes[:, self.wid_gene] = a["wid"]
        genes[:, self.res_gene] = np.searchsorted(self.resolutions, a["image_size"])
        genes[:, self.d_genes] = np.searchsorted(self.depths, a["d"])
        genes[:, self.ks_genes] = np.searchsorted(self.kernel_sizes, a["ks"])
        genes[:, self.e_genes] = np.searchsorted(self.expand_ratios, a["e"])
        return genes

    def from_configs(self, configs: Sequence[Any] | Any) -> np.ndarray:
        """Genomes of `SubnetConfig`s (or one), validated."""
        return self.from_arrays(self.space.to_arrays(configs))

    def to_configs(self, genes: np.ndarray) -> list[Any]:
        return self.space.from_arrays(self.to_population(genes))
