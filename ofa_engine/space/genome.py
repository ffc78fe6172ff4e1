"""Configs as rows of choice indices: the form every strategy works on, for any family.

A *genome* array has shape (N, genes), one int per gene, indexing that gene's option list.
A family lists its genes (names, option counts), may name groups of genes (e.g. "resolution",
whose mutation probability OFA sets apart) and says which genes a config leaves *inactive*
(e.g. the kernel of a block that the depth drops). Random draws, mutation, crossover, local
moves and the one-hot encoding are written here once, vectorised over the population.
Families that order each gene's options ascending get "index - 1 is one step smaller" for
free, which repair relies on.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence as SequenceABC
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

__all__ = ["CategoricalGenome", "GenePopulation", "RESOLUTION"]

# The group of genes that set the input resolution, in families that have one: OFA's search
# mutates it with its own probability.
RESOLUTION = "resolution"


class CategoricalGenome:
    """Categorical genes with optional named groups and a family-supplied active mask.

    `names`, `cardinality`: one entry per gene. `groups`: {group name: gene indices}.
    `active`: genes (N, G) -> (N, G) bool, True where a gene's choice matters (None: always).
    `encoding`: the genes that the one-hot encoding holds (each once), in its order (None: every
    gene in gene order); each takes as many columns as it has options.
    """

    def __init__(self, names: Sequence[str], cardinality: Sequence[int],
                 groups: Mapping[str, Sequence[int]] | None = None,
                 active: Callable[[np.ndarray], np.ndarray] | None = None,
                 encoding: Sequence[int] | None = None):
        self.names = tuple(names)
        self.cardinality = np.asarray(cardinality, np.int64)
        if len(self.names) != len(self.cardinality) or (self.cardinality < 1).any():
            raise ValueError("a genome needs one name and at least one option per gene")
        self.num_genes = len(self.names)
        self.groups = {name: np.asarray(idx, np.int64) for name, idx in (groups or {}).items()}
        self._active = active
        self.encoded_genes = np.arange(self.num_genes) if encoding is None else np.asarray(encoding, np.int64)
        columns_per_gene = self.cardinality[self.encoded_genes]
        self.encoding_offsets = np.concatenate([[0], np.cumsum(columns_per_gene)[:-1]]).astype(np.int64)
        self.encoding_size = int(columns_per_gene.sum())
        # Per gene in gene order: its first encoding column (0 for genes left out) and whether
        # the encoding holds it.
        self._gene_columns = np.zeros(self.num_genes, np.int64)
        self._gene_columns[self.encoded_genes] = self.encoding_offsets
        self._encoded = np.isin(np.arange(self.num_genes), self.encoded_genes)
        self._largest_option = self.cardinality - 1
        self._key_dtype = np.dtype((np.void, self.num_genes))   # a genome's bytes as one value

    def active(self, genes: np.ndarray) -> np.ndarray:
        """(N, G) bool: True where the gene's choice changes the config."""
        genes = np.asarray(genes, np.int64).reshape(-1, self.num_genes)
        if self._active is None:
            return np.ones(genes.shape, bool)
        return self._active(genes)

    def canonical(self, genes: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        """int8 copy with inactive genes set to 0: equal rows are the same config. `active`:
        the genes' `active` mask if already known."""
        return np.multiply(genes, self.active(genes) if active is None else active, dtype=np.int8)

    def keys(self, genes: np.ndarray, active: np.ndarray | None = None) -> list[bytes]:
        """One hashable key per genome, equal for equal configs (the bytes of `canonical`)."""
        canon = np.ascontiguousarray(self.canonical(genes, active))
        return canon.view(self._key_dtype).reshape(-1).tolist()

    # ------------------------------------------------------------- variation
    def random(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` genomes, every gene uniform over its options."""
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
               group_probs: Mapping[str, float | None] | None = None) -> np.ndarray:
        """Each gene redrawn uniformly with probability `prob`; the genes of a group named in
        `group_probs` with that group's probability instead (groups this genome lacks, or given
        None, are ignored: a strategy can ask for a resolution probability of any family)."""
        out = np.array(genes, np.int64)
        self._redraw(out, rng.random(out.shape), prob, group_probs)
        return out

    def offspring(self, first: np.ndarray, second: np.ndarray, rows: np.ndarray, n_mutants: int,
                  rng: np.random.Generator, prob: float,
                  group_probs: Mapping[str, float | None] | None = None) -> np.ndarray:
        """Children of `rows` of `first`: the first `n_mutants` mutated (`mutate`), the others
        crossed with the same rows of `second` (`crossover`). The same draws and children as
        those two calls in that order, in one pass: an evolution makes its children so."""
        out = first.take(rows, 0).astype(np.int64, copy=False)
        # mutate's uniforms, then crossover's: one stream of draws.
        u = rng.random(out.shape)
        self._redraw(out[:n_mutants], u[:n_mutants], prob, group_probs)
        crossed = out[n_mutants:]
        _pick(u[n_mutants:] < 0.5, crossed, second.take(rows[n_mutants:], 0), out=crossed)
        return out

    def _redraw(self, genes: np.ndarray, u: np.ndarray, prob: float,
                group_probs: Mapping[str, float | None] | None) -> None:
        """`mutate` in place: `genes` (contiguous int64) and their uniform draws `u`."""
        p, divisor = self._mutation_probs(float(prob), tuple(sorted((group_probs or {}).items())))
        # One uniform draw per gene: u < p redraws, and u / p is then uniform on [0, 1). Only
        # the redrawn genes (about p of them) are computed, by flat position.
        redrawn = (u < p).ravel().nonzero()[0]
        gene = redrawn % self.num_genes
        fresh = u.reshape(-1)[redrawn] / divisor[gene]
        fresh *= self.cardinality[gene]
        fresh = fresh.astype(np.int64)
        np.minimum(fresh, self._largest_option[gene], out=fresh)
        genes.reshape(-1)[redrawn] = fresh

    @functools.lru_cache(maxsize=16)
    def _mutation_probs(self, prob: float, group_probs: tuple[tuple[str, float | None], ...]
                        ) -> tuple[np.ndarray, np.ndarray]:
        """(per-gene redraw probability, the divisor that maps u < p onto [0, 1)); strategies
        mutate thousands of times with the same probabilities."""
        p = np.full(self.num_genes, prob)
        for name, value in group_probs:
            if value is not None and name in self.groups:
                p[self.groups[name]] = value
        return p, np.maximum(p, 1e-12)

    def crossover(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Uniform crossover: every gene from either parent with probability 1/2."""
        return _pick(rng.random(a.shape) < 0.5, a, b)

    def neighbours(self, genes: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Every single-gene move by `step` (-1 smaller, +1 larger) that stays in range, for one
        genome (1, G): (moves (M, G), gene index of each move (M,))."""
        g = genes.reshape(1, -1)
        target = g[0] + step
        # Moves on inactive genes change nothing; skip them.
        ok = (target >= 0) & (target < self.cardinality) & self.active(g)[0]
        idx = np.nonzero(ok)[0]
        moves = np.repeat(g, len(idx), axis=0)
        moves[np.arange(len(idx)), idx] = target[idx]
        return moves, idx

    def all_moves(self, genes: np.ndarray) -> np.ndarray:
        """Every config one choice away from `genes` (1, G): each active gene set to each of its
        other options."""
        g = genes.reshape(1, -1)
        moves = []
        for gene in np.nonzero(self.active(g)[0])[0]:
            options = np.delete(np.arange(self.cardinality[gene]), g[0, gene])
            m = np.repeat(g, len(options), axis=0)
            m[:, gene] = options
            moves.append(m)
        return np.concatenate(moves) if moves else g[:0]

    # ------------------------------------------------------------- encoding
    def encode(self, genes: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        """One-hot float32 (N, encoding_size): per encoded gene, its option's column is 1;
        inactive genes are all zeros. `active`: the genes' `active` mask if already known."""
        genes = np.asarray(genes, np.int64)
        active = self.active(genes) if active is None else active
        n = len(genes)
        out = np.zeros((n, self.encoding_size), np.float32)
        # Flat positions of every gene's column, in gene order (no reordering gather: each
        # position is set once, in any order); one masked scatter sets those of the active
        # encoded genes.
        flat = genes + self._gene_columns
        flat += np.arange(0, n * self.encoding_size, self.encoding_size)[:, None]
        out.reshape(-1)[flat[active & self._encoded]] = 1.0
        return out


def _pick(mask: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """`np.where(mask, a, b)` for integer genes, as arithmetic: `where` branches on every
    element, and a random mask makes those branches unpredictable (about 3x slower here).
    `out` may be `a` itself (in place)."""
    out = np.subtract(a, b, out=out, dtype=np.result_type(a, b))
    out *= mask
    out += b
    return out


class GenePopulation(SequenceABC):
    """Subnets of one genome held as their (N, G) genes: the batch form a family's `decode`
    hands its predictors and device profiles (the ViT, ProxylessNAS and ResNet50D families
    subclass it, to be told apart by type), so a search's batches reach the tables and gathers
    without the genes -> configs -> genes round trip.

    The genes are range-checked once, here (`ValueError` naming the gene), and read-only; the
    family's `from_configs` returns them unchecked, since every in-range genome of those
    families is a valid config. As a sequence it is its configs, built on access
    (`genome.to_configs`), so a consumer written for a list of configs works too.
    """

    __slots__ = ("genome", "genes")

    def __init__(self, genome: CategoricalGenome, genes: np.ndarray):
        genes = np.array(genes, np.int64).reshape(-1, genome.num_genes)   # a copy: read-only below
        bad = (genes < 0) | (genes >= genome.cardinality)
        if bad.any():
            row, gene = (int(i[0]) for i in np.nonzero(bad))
            raise ValueError(f"gene '{genome.names[gene]}' of row {row} = {int(genes[row, gene])}; "
                             f"allowed: 0 to {int(genome.cardinality[gene]) - 1}")
        genes.flags.writeable = False
        self.genome, self.genes = genome, genes

    def __len__(self) -> int:
        return int(self.genes.shape[0])

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return type(self)(self.genome, self.genes[index])
        return self.genome.to_configs(self.genes[index][None])[0]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.genome.to_configs(self.genes))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.genome.space.name!r}, {len(self)} subnets)"
