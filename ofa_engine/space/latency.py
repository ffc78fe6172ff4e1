"""What the learned latency models, the device profiles and the kits need of a network family.

A family that has latency features returns a `LatencyFeatures` bound to one of its spaces from
`NetworkFamily.latency_features()` (MobileNetV3: `families/mbv3/latency_features.py`). The
latency models (`ofa_engine.predictors.latency`) are family-neutral: they see

- feature rows (`features`): per-config sums of per-block quantities (MACs of each layer kind,
  elements moved, block counts, ...), named by `feature_names`; the learned model is linear in
  them, and few-shot fitting scales the groups of `feature_groups`;
- MACs (`total_macs`), the input of the MACs-linear and analytical models;
- lookup-table keys (`block_keys`, `fixed_keys`): names of the pieces a subnet is made of,
  which a lookup-table model maps to milliseconds measured in isolation (`unique_blocks` and
  `block_module` build those isolated pieces);
- gather tables: every quantity above is a sum over a subnet's active blocks of a per-block
  table plus a per-config fixed part. `gather(configs, block_table, fixed_table)` computes
  that sum for a whole population at once (the fast path of every model and of the search);
  `table_range` gives its exact extremes over the space. The tables' shapes are the family's
  own business: a caller only builds them from `feature_tables` / `macs_tables` / the keys
  (same leading shape, any trailing axes) and hands them back.

`Configs`: one config, a sequence of configs or a population of the family (whatever its
`decode` returns).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping

import numpy as np

from .genome import GenePopulation

__all__ = ["LatencyFeatures", "GenomeLatencyFeatures", "Configs"]

Configs = Any   # one config | a sequence of configs | a population of the family


class LatencyFeatures(ABC):
    """A family's latency features, bound to one space (`self.space`)."""

    space: Any

    # ------------------------------------------------------------- features
    @property
    @abstractmethod
    def feature_names(self) -> tuple[str, ...]:
        """Names of `features`' columns: first the per-block ones (the columns of
        `feature_tables()[0]`), then the fixed ones (those of `feature_tables()[1]`)."""

    @property
    def feature_groups(self) -> dict[str, tuple[str, ...]]:
        """Groups of features a device may run at different relative speeds (1x1 convs,
        depthwise convs, ...): the parts few-shot fitting scales separately. Default: one group."""
        return {"all": self.feature_names}

    def features(self, configs: Configs) -> tuple[np.ndarray, tuple[str, ...]]:
        """(N, F) float64 feature rows of `configs` and their names (`feature_names`)."""
        block, fixed = self.feature_tables()
        n_block = block.shape[-1]
        block_full = np.concatenate([block, np.zeros(block.shape[:-1] + (fixed.shape[-1],))], -1)
        fixed_full = np.concatenate([np.zeros(fixed.shape[:-1] + (n_block,)), fixed], -1)
        return self.gather(configs, block_full, fixed_full), self.feature_names

    def total_macs(self, configs: Configs) -> np.ndarray:
        """(N,) float64 MACs of `configs` (the same counts as the family's `analyze`)."""
        return self.gather(configs, *self.macs_tables())

    # ------------------------------------------------------------- configs
    @abstractmethod
    def count(self, configs: Configs) -> int:
        """How many configs `configs` holds, validated (`ValueError` with the space's message
        for a bad one)."""

    @abstractmethod
    def take(self, configs: Configs, index: np.ndarray) -> Configs:
        """The configs at `index` (an integer array) of `configs`, as a population."""

    @abstractmethod
    def dataset_configs(self, n: int, seed: int = 0) -> list[Any]:
        """`n` >= 2 configs to measure for a latency dataset (seeded): the largest and the
        smallest first, then ones that cover the space's coarse choices (widths, resolutions)
        evenly."""

    # ------------------------------------------------------------- lookup-table keys
    @abstractmethod
    def block_keys(self) -> np.ndarray:
        """Object array of the keys of the per-block table (shaped like `feature_tables()[0]`
        without its feature axis)."""

    @abstractmethod
    def fixed_keys(self) -> tuple[np.ndarray, ...]:
        """Object arrays shaped like the fixed table: its value is the sum of the values of
        the keys at the same place in each (e.g. the stem's and the head's)."""

    @abstractmethod
    def unique_blocks(self) -> list[dict[str, Any]]:
        """One entry per distinct key: {"key": ..., "kind": ..., plus what `block_module`
        needs to build it}."""

    @abstractmethod
    def block_module(self, entry: Mapping[str, Any], supernet: Any) -> tuple[Any, tuple[int, ...]]:
        """(the isolated `nn.Module` of a `unique_blocks` entry, cut from `supernet`, and its
        batch-1 input shape): what a lookup table measures."""

    # ------------------------------------------------------------- int8 files
    def int8_scale_counts(self, configs: Configs) -> tuple[np.ndarray, np.ndarray]:
        """((N,) scales, (N,) layers): the float32 per-channel scales an int8 QDQ file of each
        config's extracted net stores (one per output channel of every conv / linear weight,
        one per bias channel) and its conv / linear layers: what bounds the file beyond the
        weights (the MCU kit's Flash check). `ValueError` for a family that cannot say."""
        raise ValueError(f"{type(self).__name__} does not count the int8 scales of its layers")

    # ------------------------------------------------------------- gather tables
    @abstractmethod
    def feature_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(per-block table (..., F_block), fixed table (..., F_fixed)) float64 of the features."""

    @abstractmethod
    def macs_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(per-block table, fixed table) float64 of MACs."""

    @abstractmethod
    def gather(self, configs: Configs, block_table: np.ndarray, fixed_table: np.ndarray) -> np.ndarray:
        """Per config, the sum over its active blocks of `block_table` plus its `fixed_table`
        entry: (N,) or (N, F) when the tables have a trailing axis. One gather, no loop."""

    @abstractmethod
    def table_range(self, block_table: np.ndarray, fixed_table: np.ndarray) -> tuple[float, float]:
        """Exact (min, max) over every subnet of the space of what `gather` sums (scalar tables)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self.space, 'name', self.space)!r})"


class GenomeLatencyFeatures(LatencyFeatures):
    """`LatencyFeatures` of a family whose configs all go through its genome (`space.genome`:
    `from_configs` validates configs, dicts and populations alike, `to_configs` and
    `to_population` give them back): counting and taking configs come from there."""

    def _genes(self, configs: Configs) -> np.ndarray:
        """Validated genomes (N, G) of a population, one config, its dict or a sequence of either."""
        return self.space.genome.from_configs(configs)

    def count(self, configs: Configs) -> int:
        return int(self._genes(configs).shape[0])

    def take(self, configs: Configs, index: np.ndarray) -> Any:
        """The configs at `index`: a population of a population, else a list of configs."""
        genes = self._genes(configs)[np.asarray(index, np.int64)]
        if isinstance(configs, GenePopulation):
            return self.space.genome.to_population(genes)
        return self.space.genome.to_configs(genes)
