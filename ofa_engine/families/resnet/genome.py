"""The categorical genome of a `ResNetSpace`.

Gene order: d[0] (the stem's residual conv: min or max depth), d[1..] (one per stage), e (one
per block slot), w (two for the stem, one per stage), the resolution. Every option list is
ascending, so index - 1 is always "one step smaller". A slot's expand ratio is inactive when
its stage's depth leaves the slot out. The encoding (`encode`) holds every gene in gene order,
one-hot, inactive ones all zeros.

Strategies work on genomes; `ResNetGenome.to_population` wraps a genome array as a
`ResNetPopulation`, the batch form `ResNetFamily.decode` hands the predictors and device
profiles, so a search's batches reach the tables and gathers without the genes -> configs ->
genes round trip.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ...space.genome import RESOLUTION, CategoricalGenome, GenePopulation

__all__ = ["ResNetGenome", "ResNetPopulation"]


class ResNetGenome(CategoricalGenome):
    """Index encoding of a `ResNetSpace` (given as `space`; this module does not import it,
    since the space builds its genome from here)."""

    def __init__(self, space: Any):
        self.space = space
        stages, slots, widths = space.num_stages, space.num_slots, space.num_widths
        self.stem_gene = 0
        self.depth_genes = slice(1, 1 + stages)
        self.expand_genes = slice(1 + stages, 1 + stages + slots)
        self.width_genes = slice(1 + stages + slots, 1 + stages + slots + widths)
        self.res_gene = 1 + stages + slots + widths
        self.stem_choices = np.array(space.stem_skip_choices, np.int64)
        self.depths = np.array(space.depth_list, np.int64)
        self.expand_ratios = np.array(space.expand_ratios, np.float64)
        self.resolutions = np.array(space.resolutions, np.int64)
        self.slot_stage = np.array(space.slot_stage, np.int64)
        self.slot_index = np.array(space.slot_index, np.int64)
        self.base_depths = np.array(space.base_depths, np.int64)
        n_w = len(space.width_mults)
        names = (["d0"] + [f"d{s + 1}" for s in range(stages)] + [f"e{i}" for i in range(slots)]
                 + [f"w{i}" for i in range(widths)] + ["image_size"])
        cardinality = ([len(self.stem_choices)] + [len(self.depths)] * stages + [len(self.expand_ratios)] * slots
                       + [n_w] * widths + [len(self.resolutions)])
        super().__init__(names, cardinality, groups={RESOLUTION: [self.res_gene]}, active=self._active_genes)

    def active_slots(self, genes: np.ndarray) -> np.ndarray:
        """(N, slots) bool: the slot's block is kept by its stage's depth."""
        genes = np.asarray(genes, np.int64).reshape(-1, self.num_genes)
        kept = self.base_depths[None, :] + self.depths[genes[:, self.depth_genes]]     # (N, stages)
        return self.slot_index[None, :] < kept[:, self.slot_stage]

    def _active_genes(self, genes: np.ndarray) -> np.ndarray:
        active = np.ones(genes.shape, bool)
        active[:, self.expand_genes] = self.active_slots(genes)
        return active

    # ------------------------------------------------------------- conversions
    def values(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        """The choices of genomes as values: `stem_kept` (N,) bool, `depth` (N, stages) blocks
        added, `w` (N, widths) width indices, `e_index` (N, slots) expand-ratio indices,
        `expand` (N, slots), `image_size` (N,), `active` (N, slots) bool."""
        genes = np.asarray(genes, np.int64).reshape(-1, self.num_genes)
        return {"stem_kept": self.stem_choices[genes[:, self.stem_gene]] == self.space.max_depth,
                "d0": self.stem_choices[genes[:, self.stem_gene]],
                "depth": self.depths[genes[:, self.depth_genes]], "w": genes[:, self.width_genes],
                "e_index": genes[:, self.expand_genes], "expand": self.expand_ratios[genes[:, self.expand_genes]],
                "image_size": self.resolutions[genes[:, self.res_gene]], "active": self.active_slots(genes)}

    def to_configs(self, genes: np.ndarray) -> list[Any]:
        from .space import ResNetConfig   # the space imports this module
        v = self.values(genes)
        return [ResNetConfig(d=(int(d0),) + tuple(d.tolist()), e=tuple(e.tolist()), w=tuple(w.tolist()),
                             image_size=int(r))
                for d0, d, e, w, r in zip(v["d0"], v["depth"], v["expand"], v["w"], v["image_size"])]

    def to_population(self, genes: np.ndarray) -> "ResNetPopulation":
        """Genomes (N, G) as a `ResNetPopulation` (range-checked; `ValueError` naming the gene)."""
        return ResNetPopulation(self, genes)

    def from_configs(self, configs: Sequence[Any] | Any) -> np.ndarray:
        """Genomes of `ResNetConfig`s, config dicts, or one of either; validated (`ValueError`
        naming the field, the value and what is allowed). A `ResNetPopulation` of this genome's
        space gives its genes as they are (checked when it was made)."""
        from .space import ResNetConfig
        if isinstance(configs, ResNetPopulation) and (configs.genome is self or configs.genome.space == self.space):
            return configs.genes
        if isinstance(configs, (ResNetConfig, Mapping)):
            configs = [configs]
        rows = []
        for cfg in configs:
            cfg = self.space.validate(cfg)
            rows.append([int(np.searchsorted(self.stem_choices, cfg.d[0])),
                         *np.searchsorted(self.depths, cfg.d[1:]).tolist(),
                         *np.searchsorted(self.expand_ratios, cfg.e).tolist(), *cfg.w,
                         int(np.searchsorted(self.resolutions, cfg.image_size))])
        return np.array(rows, np.int64).reshape(len(rows), self.num_genes)


class ResNetPopulation(GenePopulation):
    """Subnets of one `ResNetGenome` held as their genes (`GenePopulation`): what the family's
    `decode` returns; as a sequence, its `ResNetConfig`s."""

    __slots__ = ()
