"""What every consumer of a search space may rely on, whatever the network family.

Strategies, the evaluator, the budget ranges and the pipeline see a space only through
`DiscreteSearchSpace` (Archai's discrete-search API): a categorical `genome` to sample, mutate,
cross and encode, conversions between genomes and the family's configs, and the analytic
efficiency of genomes. A family implements it once (MobileNetV3:
`ofa_engine.families.mbv3.family.MobileNetV3Family`); the tests run every strategy on a toy
family to prove nothing else is assumed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping

import numpy as np

from .genome import CategoricalGenome

__all__ = ["ANALYTIC_METRICS", "DEPLOYED_FLASH", "ACTIVATION_BYTES", "DiscreteSearchSpace"]

# Efficiency a family computes from the architecture alone: int64 arrays, MACs and params as
# counts, the peak activation memory and the deployed weights in bytes.
ANALYTIC_METRICS = ("macs", "params", "peak_activation_bytes", "flash_bytes")
# What a deployed file of each precision stores (weights, biases and, for int8, every scale and
# zero point): analytic metrics a family may add to `ANALYTIC_METRICS` (MobileNetV3 does,
# `analytics.deployment_bytes`); without them the evaluator counts `flash_bytes` for every
# precision. Activations take ACTIVATION_BYTES per value (`peak_activation_bytes` counts values).
DEPLOYED_FLASH = {"fp32": "flash_bytes_fp32", "int8": "flash_bytes_int8"}
ACTIVATION_BYTES = {"fp32": 4, "int8": 1}


class DiscreteSearchSpace(ABC):
    """A family's search space as strategies see it. `name` names it in messages and files."""

    name: str

    @property
    @abstractmethod
    def genome(self) -> CategoricalGenome:
        """The categorical genome: sample / mutate / cross / encode populations of genes."""

    # ------------------------------------------------------------- configs
    @abstractmethod
    def validate(self, config: Any) -> Any:
        """`config` as this family's config type, or ValueError naming the field, the value and
        what is allowed."""

    @abstractmethod
    def to_configs(self, genes: np.ndarray) -> list[Any]:
        """The configs of genomes (N, G), in order."""

    @abstractmethod
    def to_genes(self, configs: Any) -> np.ndarray:
        """Genomes (N, G) of one config, a sequence of configs (or their dicts), or whatever
        batch form the family's predictors take (validated)."""

    def decode(self, genes: np.ndarray) -> Any:
        """Genomes in the batch form the family's predictors and device profiles take (their
        `predict(batch)` / `predict_latency_ms(batch)`): by default a list of configs."""
        return self.to_configs(genes)

    @abstractmethod
    def config_to_dict(self, config: Any) -> dict[str, Any]:
        """A config as a JSON-safe dict."""

    @abstractmethod
    def config_from_dict(self, data: Mapping[str, Any]) -> Any:
        """The config of a JSON dict (validated)."""

    # ------------------------------------------------------------- efficiency
    @abstractmethod
    def analytic_efficiency(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        """{metric: (N,) int64} for every metric in `ANALYTIC_METRICS`."""

    @property
    def has_exact_extremes(self) -> bool:
        """True when `exact_extreme` computes the true minimum and maximum."""
        return False

    def exact_extreme(self, metric: str, mode: str) -> tuple[float, np.ndarray]:
        """(value, genome (1, G)) of the exact 'min' or 'max' of an analytic metric, for
        families with `has_exact_extremes`."""
        raise ValueError(f"search space '{self.name}' computes no exact extremes of '{metric}'")

    def relaxation(self) -> Any:
        """The family's differentiable relaxation for gradient search, or None (see
        `ofa_engine.search.strategies.gradient.Gradient` for what it provides)."""
        return None

    # ------------------------------------------------------------- coarse lattice (grid search)
    @property
    def lattice_levels(self) -> int:
        """The finest lattice level `lattice` accepts (levels run from 1)."""
        return self.genome.num_genes

    def lattice_size(self, level: int) -> int:
        """The number of points of `lattice(level)` (an upper bound in the generic lattice)."""
        return int(np.prod([self.genome.cardinality[idx].max() for idx in self._lattice_groups(level)]))

    def lattice(self, level: int) -> np.ndarray:
        """A coarse lattice of genomes, finer as `level` grows. Generic form: the genes in
        `level` contiguous groups, every gene of a group at the same option index (clipped to
        its options), without repeated points."""
        card = self.genome.cardinality
        groups = self._lattice_groups(level)
        combos = np.array(np.meshgrid(*[np.arange(card[idx].max()) for idx in groups], indexing="ij"))
        combos = combos.reshape(len(groups), -1).T
        genes = np.zeros((len(combos), len(card)), np.int64)
        for k, idx in enumerate(groups):
            genes[:, idx] = np.minimum(combos[:, k:k + 1], card[idx] - 1)
        _, first = np.unique(genes, axis=0, return_index=True)
        return genes[np.sort(first)]

    def _lattice_groups(self, level: int) -> list[np.ndarray]:
        n = self.genome.num_genes
        group = (np.arange(n) * max(1, min(level, n))) // n
        return [np.nonzero(group == k)[0] for k in np.unique(group)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

