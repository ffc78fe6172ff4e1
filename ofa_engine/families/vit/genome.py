"""The categorical genome of a `ViTSpace`.

Gene order: embed_dim, depth, heads per block slot, MLP ratio per block slot. Every option
list is ascending, so index - 1 is always "one step smaller" (repair relies on it). The heads
and MLP ratio of a slot are inactive when the depth leaves the slot out. The encoding holds
every gene in gene order (inactive ones all zeros).

Strategies work on genomes; `ViTGenome.to_population` wraps a genome array as a
`ViTPopulation`, the batch form `ViTFamily.decode` hands the predictors and device profiles, so
a search's batches reach the gathers without the genes -> configs -> genes round trip.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ...space.genome import CategoricalGenome, GenePopulation

__all__ = ["ViTGenome", "ViTPopulation"]


class ViTGenome(CategoricalGenome):
    """Index encoding of a `ViTSpace` (given as `space`; this module does not import it, since
    the space builds its genome from here)."""

    def __init__(self, space: Any):
        self.space = space
        n = space.max_depth
        self.num_slots = n
        self.embed_gene, self.depth_gene = 0, 1
        self.heads_genes = slice(2, 2 + n)
        self.ratio_genes = slice(2 + n, 2 + 2 * n)
        self.embed_dims = np.array(space.embed_dims, np.int64)
        self.depths = np.array(space.depths, np.int64)
        self.num_heads = np.array(space.num_heads, np.int64)
        self.mlp_ratios = np.array(space.mlp_ratios, np.float64)
        names = ["embed_dim", "depth"] + [f"heads{i}" for i in range(n)] + [f"mlp_ratio{i}" for i in range(n)]
        cardinality = ([len(self.embed_dims), len(self.depths)] + [len(self.num_heads)] * n
                       + [len(self.mlp_ratios)] * n)
        super().__init__(names, cardinality, active=self._active_genes)

    def active_slots(self, genes: np.ndarray) -> np.ndarray:
        """(N, slots) bool: the slot's block is kept by the depth."""
        depth = self.depths[np.asarray(genes, np.int64)[:, self.depth_gene]]
        return np.arange(self.num_slots)[None, :] < depth[:, None]

    def _active_genes(self, genes: np.ndarray) -> np.ndarray:
        active = np.ones(genes.shape, bool)
        slots = self.active_slots(genes)
        active[:, self.heads_genes] = slots
        active[:, self.ratio_genes] = slots
        return active

    # ------------------------------------------------------------- conversions
    def values(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        """The choices of genomes as values: `embed_dim`, `depth` (N,), `num_heads`,
        `mlp_ratio`, `mlp_hidden` (N, slots) and `active` (N, slots) bool."""
        genes = np.asarray(genes, np.int64).reshape(-1, self.num_genes)
        embed = self.embed_dims[genes[:, self.embed_gene]]
        ratio = self.mlp_ratios[genes[:, self.ratio_genes]]
        return {"embed_dim": embed, "depth": self.depths[genes[:, self.depth_gene]],
                "num_heads": self.num_heads[genes[:, self.heads_genes]], "mlp_ratio": ratio,
                "mlp_hidden": self.space.mlp_hidden(embed[:, None], ratio), "active": self.active_slots(genes)}

    def to_configs(self, genes: np.ndarray) -> list[Any]:
        from .space import ViTConfig   # the space imports this module
        v = self.values(genes)
        return [ViTConfig(embed_dim=int(c), depth=int(d), num_heads=tuple(h.tolist()), mlp_ratio=tuple(r.tolist()),
                          image_size=self.space.image_size)
                for c, d, h, r in zip(v["embed_dim"], v["depth"], v["num_heads"], v["mlp_ratio"])]

    def to_population(self, genes: np.ndarray) -> "ViTPopulation":
        """Genomes (N, G) as a `ViTPopulation` (range-checked; `ValueError` naming the gene)."""
        return ViTPopulation(self, genes)

    def from_configs(self, configs: Sequence[Any] | Any) -> np.ndarray:
        """Genomes of `ViTConfig`s, config dicts, or one of either; validated (`ValueError`
        naming the field, the value and what is allowed). A `ViTPopulation` of this genome's
        space gives its genes as they are (checked when it was made)."""
        from .space import ViTConfig
        if isinstance(configs, ViTPopulation) and (configs.genome is self or configs.genome.space == self.space):
            return configs.genes
        if isinstance(configs, (ViTConfig, Mapping)):
            configs = [configs]
        rows = []
        for cfg in configs:
            cfg = self.space.validate(cfg)
            rows.append([int(np.searchsorted(self.embed_dims, cfg.embed_dim)),
                         int(np.searchsorted(self.depths, cfg.depth)),
                         *np.searchsorted(self.num_heads, cfg.num_heads).tolist(),
                         *np.searchsorted(self.mlp_ratios, cfg.mlp_ratio).tolist()])
        return np.array(rows, np.int64).reshape(len(rows), self.num_genes)


class ViTPopulation(GenePopulation):
    """Subnets of one `ViTGenome` held as their genes (`GenePopulation`): what the family's
    `decode` returns; as a sequence, its `ViTConfig`s."""

    __slots__ = ()
