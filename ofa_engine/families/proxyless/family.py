"""The OFA ProxylessNAS family (official `ofa_proxyless_d234_e346_k357_w1.3`) behind the family interface."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ...space.family import NetworkFamily
from ...space.interface import ACTIVATION_BYTES
from .. import FAMILIES
from ..mbv3.analytics import LayerTally
from .analytics import PRECISIONS, analyze, block_tally, deployment_bytes
from .genome import ProxylessPopulation
from .layout import walk_values
from .space import PRESETS, ProxylessConfig, ProxylessSpace, space_from_dict
from .tables import EfficiencyTables, efficiency_tables

__all__ = ["ProxylessFamily"]

# What `analytic_efficiency` returns: the interface's metrics and both deployed files' Flash.
EFFICIENCY = ("macs", "params", "peak_activation_bytes", "flash_bytes", "flash_bytes_fp32", "flash_bytes_int8")


@FAMILIES.register("proxyless")
class ProxylessFamily(NetworkFamily):
    """`space`: a `ProxylessSpace` or preset name. The analytics of several configs
    (`analytic_efficiency`, `analyze`, `deployment_bytes` of a sequence or a population) come
    from the exact per-slot tables (`tables.py`, built on first use, once per space: cheap, so
    `fast` is accepted for the registry's sake and changes nothing); one config is walked
    block by block (`analytics.py`, the reference the tables are tested against)."""

    family = "proxyless"
    space_type, config_type, presets = ProxylessSpace, ProxylessConfig, PRESETS
    read_space = staticmethod(space_from_dict)
    products_in_layers = True   # convolutions and the classifier only

    @property
    def tables(self) -> EfficiencyTables:
        """The space's efficiency tables (built on first use, kept per process)."""
        return efficiency_tables(self.space)

    # ------------------------------------------------------------- configs
    def to_configs(self, genes: np.ndarray) -> list[ProxylessConfig]:
        return self.genome.to_configs(np.asarray(genes, np.int64))

    def to_genes(self, configs: Any) -> np.ndarray:
        """Genomes of a `ProxylessPopulation`, a config, a config dict or a sequence of either."""
        return self.genome.from_configs(configs)

    def decode(self, genes: np.ndarray) -> ProxylessPopulation:
        """A `ProxylessPopulation`: what this family's predictors and device profiles take."""
        return self.genome.to_population(genes)

    # ------------------------------------------------------------- efficiency and analytics
    def analytic_efficiency(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        out = self.tables.compute(genes)
        return {name: out[name] for name in EFFICIENCY}

    def _tabled(self, configs: Any) -> dict[str, np.ndarray] | None:
        """Every table metric of several configs (or a population); None for one config."""
        if isinstance(configs, (ProxylessConfig, Mapping)):
            return None
        return self.tables.compute(self.genome.from_configs(configs))

    def analyze(self, configs: Any) -> dict[str, Any]:
        out = self._tabled(configs)
        if out is None:
            return analyze(self.space, configs)
        return {name: out[name] for name in EFFICIENCY}

    def deployment_bytes(self, configs: Any, precision: str) -> dict[str, Any]:
        out = self._tabled(configs) if precision in PRECISIONS else None
        if out is None:
            return deployment_bytes(self.space, configs, precision)
        return {"flash_bytes": out[f"flash_bytes_{precision}"],
                "peak_activation_bytes": ACTIVATION_BYTES[precision] * out["peak_activation_bytes"]}

    # ------------------------------------------------------------- networks
    def build_supernet(self) -> Any:
        from .supernet import ProxylessSupernet   # torch only when a network is built
        return ProxylessSupernet(self.space)

    def fold_bn(self, module: Any) -> Any:
        from .static import fold_bn
        return fold_bn(module)

    # ------------------------------------------------------------- predictors
    @property
    def encoding_size(self) -> int:
        return int(self.genome.encoding_size)

    def encode(self, configs: Any) -> np.ndarray:
        """One-hot rows of the genome: resolution, then per block slot kernel and expand ratio
        (slots the depth leaves out all zero)."""
        return self.genome.encode(self.to_genes(configs))

    def latency_features(self) -> Any:
        from .latency_features import ProxylessLatencyFeatures
        return ProxylessLatencyFeatures(self.space)

    # ------------------------------------------------------------- imports
    @classmethod
    def import_official(cls, state_dict: Mapping[str, Any]) -> Any:
        from .official import import_official_proxyless
        return import_official_proxyless(state_dict)

    @classmethod
    def official_predictor(cls, state_dict: Mapping[str, Any], space: Any) -> Any:
        from .official import official_predictor_arrays
        return official_predictor_arrays(state_dict, space)

    # ------------------------------------------------------------- the app and the reports
    def describe(self, config: Any) -> list[dict[str, Any]]:
        """Stem, first block, every block slot (those the depth leaves out inactive) and head."""
        cfg = self.validate(config)
        space = self.space
        values = self.genome.values(self.to_genes(cfg))
        rows = []
        for geometry in walk_values(space, values):
            b = geometry.row(0)
            tally = LayerTally(1)
            block_tally(tally, geometry, space.num_classes)
            kind, choices = b["kind"], {}
            if kind == "stem":
                layer, group, words = "stem", "stem", "conv 3x3, stride 2 + ReLU6"
            elif kind == "head":
                layer, group, words = "head", "head", "1x1 conv + ReLU6, pooling, classifier"
            elif kind == "first_block":
                layer, group, words = "B0", "stem", "depthwise separable k3"
            else:
                layer, group = f"S{b['stage'] + 1}.B{b['index'] + 1}", f"stage {b['stage'] + 1}"
                words = f"MBConv k{b['kernel']} e{b['expand_ratio']}" + (" + residual" if b["residual"] else "")
                choices = {"kernel": b["kernel"], "expand": b["expand_ratio"]}
            out_size = b["out_size"]
            rows.append({"layer": layer, "group": group, "kind": words, "choices": choices,
                         "in_shape": (b["in_channels"], b["in_size"], b["in_size"]),
                         "out_shape": ((space.num_classes,) if kind == "head"
                                       else (b["out_channels"], out_size, out_size)),
                         "width": b["out_channels"] if kind == "head" else b["mid_channels"],
                         "macs": int(tally.macs[0]), "params": int(tally.params[0]), "active": bool(b["active"])})
        return rows
