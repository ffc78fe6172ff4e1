"""The categorical genome of a `ProxylessSpace`.

Gene order: resolution, depth per elastic stage (the last stage's depth is always 1: no gene),
kernel per block slot, expand ratio per block slot. Every option list is ascending, so index - 1
is always "one step smaller". A slot's kernel and expand are inactive when its stage's depth
leaves the slot out (the last stage's one slot is always active). The encoding holds the
resolution, then per slot kernel and expand (OFA's one-hot layout; inactive slots all zeros).

`ProxylessGenome.to_population` wraps a genome array as a `ProxylessPopulation`, the batch
form `ProxylessFamily.decode` hands the predictors and device profiles, so a search's batches
reach the gathers without the genes -> configs -> genes round trip.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ...space.genome import RESOLUTION, CategoricalGenome, GenePopulation

__all__ = ["ProxylessGenome", "ProxylessPopulation"]


class ProxylessGenome(CategoricalGenome):
    """Index encoding of a `ProxylessSpace` (given as `space`; this module does not import it,
    since the space builds its genome from here)."""

    def __init__(self, space: Any):
        self.space = space
        s, n = space.num_stages - 1, space.num_slots     # elastic stages, block slots
        self.num_elastic_stages, self.num_slots = s, n
        self.res_gene = 0
        self.d_genes = slice(1, 1 + s)
        self.ks_genes = slice(1 + s, 1 + s + n)
        self.e_genes = slice(1 + s + n, 1 + s + 2 * n)
        self.resolutions = np.array(space.resolutions, np.int64)
        self.depths = np.array(space.depths, np.int64)
        self.kernel_sizes = np.array(space.kernel_sizes, np.int64)
        self.expand_ratios = np.array(space.expand_ratios, np.int64)
        # Slot -> its stage and position; the last slot (the last stage's block) has no depth gene.
        stage_index = [space.slot_stage(i) for i in range(n)]
        self.slot_stage = np.array([st for st, _ in stage_index], np.int64)
        self.slot_index = np.array([ix for _, ix in stage_index], np.int64)
        names = (["resolution"] + [f"d{i}" for i in range(s)] + [f"ks{i}" for i in range(n)]
                 + [f"e{i}" for i in range(n)])
        cardinality = ([len(self.resolutions)] + [len(self.depths)] * s + [len(self.kernel_sizes)] * n
                       + [len(self.expand_ratios)] * n)
        ks, e = np.arange(1 + s, 1 + s + n), np.arange(1 + s + n, 1 + s + 2 * n)
        encoding = np.concatenate([[self.res_gene], np.stack([ks, e], 1).reshape(-1)])
        super().__init__(names, cardinality, groups={RESOLUTION: [self.res_gene]}, active=self._active_genes,
                         encoding=encoding)

    def active_slots(self, genes: np.ndarray) -> np.ndarray:
        """(N, slots) bool: the slot's block is kept by its stage's depth."""
        genes = np.asarray(genes, np.int64).reshape(-1, self.num_genes)
        depth = np.concatenate([self.depths[genes[:, self.d_genes]], np.ones((len(genes), 1), np.int64)], 1)
        return self.slot_index[None, :] < depth[:, self.slot_stage]

    def _active_genes(self, genes: np.ndarray) -> np.ndarray:
        active = np.ones(genes.shape, bool)
        slots = self.active_slots(genes)
        active[:, self.ks_genes] = slots
        active[:, self.e_genes] = slots
        return active

    # ------------------------------------------------------------- conversions
    def values(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        """The choices of genomes as values: `image_size` (N,), `d` (N, stages, the last 1),
        `ks`, `e` (N, slots) int64 and `active` (N, slots) bool."""
        genes = np.asarray(genes, np.int64).reshape(-1, self.num_genes)
        d = np.concatenate([self.depths[genes[:, self.d_genes]], np.ones((len(genes), 1), np.int64)], 1)
        return {"image_size": self.resolutions[genes[:, self.res_gene]], "d": d,
                "ks": self.kernel_sizes[genes[:, self.ks_genes]], "e": self.expand_ratios[genes[:, self.e_genes]],
                "active": self.active_slots(genes)}

    def to_configs(self, genes: np.ndarray) -> list[Any]:
        from .space import ProxylessConfig   # the space imports this module
        v = self.values(genes)
        return [ProxylessConfig(ks=tuple(k.tolist()), e=tuple(x.tolist()), d=tuple(d.tolist()), image_size=int(r))
                for k, x, d, r in zip(v["ks"], v["e"], v["d"], v["image_size"])]

    def to_population(self, genes: np.ndarray) -> "ProxylessPopulation":
        """Genomes (N, G) as a `ProxylessPopulation` (range-checked; `ValueError` naming the gene)."""
        return ProxylessPopulation(self, genes)

    def from_configs(self, configs: Sequence[Any] | Any) -> np.ndarray:
        """Genomes of `ProxylessConfig`s, config dicts, or one of either; validated (`ValueError`
        naming the field, the value and what is allowed). A `ProxylessPopulation` of this
        genome's space gives its genes as they are (checked when it was made)."""
        from .space import ProxylessConfig
        if isinstance(configs, ProxylessPopulation) and (configs.genome is self or configs.genome.space == self.space):
            return configs.genes
        if isinstance(configs, (ProxylessConfig, Mapping)):
            configs = [configs]
        rows = []
        for cfg in configs:
            cfg = self.space.validate(cfg)
            rows.append([int(np.searchsorted(self.resolutions, cfg.image_size)),
                         *np.searchsorted(self.depths, cfg.d[:-1]).tolist(),
                         *np.searchsorted(self.kernel_sizes, cfg.ks).tolist(),
                         *np.searchsorted(self.expand_ratios, cfg.e).tolist()])
        return np.array(rows, np.int64).reshape(len(rows), self.num_genes)


class ProxylessPopulation(GenePopulation):
    """Subnets of one `ProxylessGenome` held as their genes (`GenePopulation`): what the family's
    `decode` returns; as a sequence, its `ProxylessConfig`s."""

    __slots__ = ()
