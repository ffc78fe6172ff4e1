"""Configs as rows of choice indices: the form every strategy works on.

A *genome* array has shape (N, genes), one int per choice, indexing that choice's sorted
option list. Gene order: wid, resolution, depth per stage, kernel per slot, expand per slot.
Options are sorted ascending, so index - 1 is always "one step smaller" (used by repair).
Strategies sample, mutate and cross genomes with vectorised numpy and convert to a
population (`to_population`) or to `SubnetConfig`s only at the edges.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..families.mbv3.space import SearchSpace, SubnetConfig

__all__ = ["Genome"]


class Genome:
    """Index encoding of a `SearchSpace`."""

    def __init__(self, space: SearchSpace):
        self.space = space
        s, n = space.num_stages, space.num_slots
        self.num_stages, self.num_slots = s, n
        self.wid_gene, self.res_gene = 0, 1
        self.d_genes = slice(2, 2 + s)
        self.ks_genes = slice(2 + s, 2 + s + n)
        self.e_genes = slice(2 + s + n, 2 + s + 2 * n)
        self.num_genes = 2 + s + 2 * n
        self.widths = np.arange(len(space.width_mults))
        self.resolutions = np.array(space.resolutions, np.int64)
        self.depths = np.array(sorted(space.depths), np.int64)
        self.kernel_sizes = np.array(sorted(space.kernel_sizes), np.int64)
        self.expand_ratios = np.array(sorted(space.expand_ratios), np.int64)
        self.cardinality = np.array([len(self.widths), len(self.resolutions)] + [len(self.depths)] * s
                                    + [len(self.kernel_sizes)] * n + [len(self.expand_ratios)] * n, np.int64)
        # Gene -> stage it belongs to (-1 for global genes), and slot -> stage / position.
        self.slot_stage = np.arange(n) // space.max_depth
        self.slot_index = np.arange(n) % space.max_depth
        self.res_mutation_genes = np.zeros(self.num_genes, bool)
        self.res_mutation_genes[self.res_gene] = True

    # ------------------------------------------------------------- conversions
    def to_population(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        genes = np.asarray(genes, np.int64)
        return {"wid": genes[:, self.wid_gene].copy(),
                "ks": self.kernel_sizes[genes[:, self.ks_genes]],
                "e": self.expand_ratios[genes[:, self.e_genes]],
                "d": self.depths[genes[:, self.d_genes]],
                "image_size": self.resolutions[genes[:, self.res_gene]]}

    def from_population(self, pop: Mapping[str, np.ndarray]) -> np.ndarray:
        a = self.space.to_arrays(pop)   # validates
        n = a["wid"].shape[0]
        genes = np.empty((n, self.num_genes), np.int64)
        genes[:, self.wid_gene] = a["wid"]
        genes[:, self.res_gene] = np.searchsorted(self.resolutions, a["image_size"])
        genes[:, self.d_genes] = np.searchsorted(self.depths, a["d"])
        genes[:, self.ks_genes] = np.searchsorted(self.kernel_sizes, a["ks"])
        genes[:, self.e_genes] = np.searchsorted(self.expand_ratios, a["e"])
        return genes

    def from_configs(self, configs: Sequence[SubnetConfig] | SubnetConfig) -> np.ndarray:
        if isinstance(configs, SubnetConfig):
            configs = [configs]
        a = self.space.to_arrays(list(configs))
        return self.from_population({k: a[k] for k in ("wid", "ks", "e", "d", "image_size")})

    def to_configs(self, genes: np.ndarray) -> list[SubnetConfig]:
        return self.space.from_arrays(self.to_population(genes))

    def active(self, genes: np.ndarray) -> np.ndarray:
        """(N, slots) bool: the slot's block is kept by its stage's depth."""
        depth = self.depths[genes[:, self.d_genes]]                     # (N, stages)
        return self.slot_index[None, :] < depth[:, self.slot_stage]

    # ------------------------------------------------------------- variation
    def random(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return (rng.random((n, self.num_genes)) * self.cardinality).astype(np.int64)

    def uniform(self, index: int | str) -> np.ndarray:
        """One genome with the same option index in every gene ('min' / 'max' allowed)."""
        g = np.zeros((1, self.num_genes), np.int64)
        if index == "max":
            g[0] = self.cardinality - 1
        elif index != "min":
            g[0] = np.minimum(index, self.cardinality - 1)
        return g

    def mutate(self, genes: np.ndarray, rng: np.random.Generator, prob: float,
               res_prob: float | None = None) -> np.ndarray:
        """Each gene redrawn uniformly with probability `prob` (`res_prob` for the resolution,
        as OFA's EvolutionFinder does)."""
        p = np.full(self.num_genes, float(prob))
        if res_prob is not None:
            p[self.res_gene] = res_prob
        # One uniform draw per gene: u < p redraws, and u / p is then uniform on [0, 1).
        u = rng.random(genes.shape)
        redraw = u < p
        fresh = (u / np.maximum(p, 1e-12) * self.cardinality).astype(np.int64)
        return np.where(redraw, np.minimum(fresh, self.cardinality - 1), genes)

    def crossover(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Uniform crossover: every gene from either parent with probability 1/2."""
        return np.where(rng.random(a.shape) < 0.5, a, b)

    def neighbours(self, genes: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Every single-gene move by `step` (-1 smaller, +1 larger) that stays in range, for one
        genome (1, G): (moves (M, G), gene index of each move (M,))."""
        g = genes.reshape(1, -1)
        target = g[0] + step
        ok = (target >= 0) & (target < self.cardinality)
        # Moves on slots that the depth leaves out change nothing; skip them.
        active = self.active(g)[0]
        ok[self.ks_genes] &= active
        ok[self.e_genes] &= active
        idx = np.nonzero(ok)[0]
        moves = np.repeat(g, len(idx), axis=0)
        moves[np.arange(len(idx)), idx] = target[idx]
        return moves, idx

    def encode(self, genes: np.ndarray) -> np.ndarray:
        """`SearchSpace.encode` of genomes, without re-validating them (float32, (N, encoding_size))."""
        n = len(genes)
        n_res, n_wid = len(self.resolutions), len(self.widths)
        n_k, n_e = len(self.kernel_sizes), len(self.expand_ratios)
        out = np.zeros((n, self.space.encoding_size), np.float32)
        rows = np.arange(n)
        out[rows, genes[:, self.res_gene]] = 1.0
        out[rows, n_res + genes[:, self.wid_gene]] = 1.0
        base = n_res + n_wid + np.arange(self.num_slots) * (n_k + n_e)
        r, s = np.nonzero(self.active(genes))
        out[r, base[s] + genes[:, self.ks_genes][r, s]] = 1.0
        out[r, base[s] + n_k + genes[:, self.e_genes][r, s]] = 1.0
        return out

    def all_moves(self, genes: np.ndarray) -> np.ndarray:
        """Every config one choice away from `genes` (1, G): each gene set to each of its other
        options (kernel / expand only on active slots)."""
        g = genes.reshape(1, -1)
        active = self.active(g)[0]
        use = np.ones(self.num_genes, bool)
        use[self.ks_genes] = active
        use[self.e_genes] = active
        moves = []
        for gene in np.nonzero(use)[0]:
            options = np.delete(np.arange(self.cardinality[gene]), g[0, gene])
            m = np.repeat(g, len(options), axis=0)
            m[:, gene] = options
            moves.append(m)
        return np.concatenate(moves) if moves else g[:0]
