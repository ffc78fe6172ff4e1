"""A MobileNetV3 `SearchSpace` behind the family-agnostic search-space interface.

Everything the strategies and the evaluator need of this family, in one place: the genome,
config conversions, the analytic efficiency (exact tables, or `analyze`), its exact extremes,
the stage-grouped lattice of grid search and the differentiable relaxation of gradient search.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ...space.family import NetworkFamily
from ...space.interface import ANALYTIC_METRICS, DEPLOYED_FLASH
from .. import FAMILIES
from .analytics import LayerTally, analyze, deployment_bytes
from .layout import walk_configs
from .space import PRESETS, SearchSpace, SubnetConfig, is_population, space_from_dict
from .tables import TABLE_COLUMNS, TABLE_METRICS, EfficiencyTables, efficiency_tables

__all__ = ["MobileNetV3Family", "GenomeKernel"]


@FAMILIES.register("mbv3")
class MobileNetV3Family(NetworkFamily):
    """`space`: a `SearchSpace` or preset name. `fast`: use the exact efficiency tables where
    they apply (False: `analyze` every time, and no exact extremes)."""

    family = "mbv3"
    space_type, config_type, presets = SearchSpace, SubnetConfig, PRESETS
    read_space = staticmethod(space_from_dict)
    products_in_layers = True   # convolutions and the classifier only

    def __init__(self, space: SearchSpace | str, fast: bool = True):
        super().__init__(space)
        self.tables: EfficiencyTables | None = efficiency_tables(self.space) if fast else None

    # ------------------------------------------------------------- configs
    def to_configs(self, genes: np.ndarray) -> list[SubnetConfig]:
        return self.genome.to_configs(np.asarray(genes, np.int64))

    def to_genes(self, configs: Any) -> np.ndarray:
        """Genomes of a population (see `is_population`), a `SubnetConfig`, a config dict or a
        sequence of either."""
        if is_population(configs):
            return self.genome.from_population(configs)
        if isinstance(configs, (SubnetConfig, Mapping)):
            configs = [configs]
        return self.genome.from_configs([c if isinstance(c, SubnetConfig) else SubnetConfig.from_dict(c)
                                         for c in configs])

    def decode(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        """A population: what this family's predictors and device profiles take."""
        return self.genome.to_population(np.asarray(genes, np.int64))

    # ------------------------------------------------------------- networks
    def build_supernet(self) -> Any:
        from .supernet import Supernet   # torch only when a network is built
        return Supernet(self.space)

    def fold_bn(self, module: Any) -> Any:
        from .static import fold_bn
        return fold_bn(module)

    def onnx_model(self, module: Any, opset: int) -> Any:
        from .onnx_graph import onnx_model
        config = getattr(module, "config", None)
        return None if config is None else onnx_model(module, self.input_shape(config), opset)

    # ------------------------------------------------------------- analytics and predictors
    def analyze(self, configs: Any) -> dict[str, Any]:
        return analyze(self.space, configs)

    def deployment_bytes(self, configs: Any, precision: str) -> dict[str, Any]:
        return deployment_bytes(self.space, configs, precision)

    @property
    def encoding_size(self) -> int:
        return self.space.encoding_size

    def encode(self, configs: Any) -> np.ndarray:
        return self.space.encode(configs)

    def latency_features(self) -> Any:
        from .latency_features import MobileNetV3LatencyFeatures
        return MobileNetV3LatencyFeatures(self.space)

    def training(self) -> Any:
        from .training_hooks import MobileNetV3Training
        return MobileNetV3Training(self.space)

    @classmethod
    def import_official(cls, state_dict: Mapping[str, Any]) -> Any:
        from .official import import_official_ofa
        return import_official_ofa(state_dict)

    @classmethod
    def official_predictor(cls, state_dict: Mapping[str, Any], space: Any) -> Any:
        from .official import official_predictor_arrays
        return official_predictor_arrays(state_dict, space)

    def describe(self, config: Any) -> list[dict[str, Any]]:
        """Stem, every block slot (inactive ones too) and head of `config`'s subnet."""
        cfg = self.validate(config)
        space = self.space
        rows = []
        for geometry in walk_configs(space, cfg):
            b = geometry.row(0)
            tally = LayerTally(1)
            tally.block(geometry, space.num_classes)
            counts = tally.result()
            kind, choices = b["kind"], {}
            if kind == "stem":
                layer, group, words = "stem", "stem", f"conv {b['kernel']}x{b['kernel']}, stride {b['stride']}"
            elif kind == "head":
                layer, group, words = "head", "head", "1x1 convs, pooling, classifier"
            else:
                layer = f"S{b['stage'] + 1}.B{b['index'] + 1}" if kind == "block" else "B0"
                group = f"stage {b['stage'] + 1}" if kind == "block" else "stem"
                words = (f"MBConv k{b['kernel']} e{b['expand_ratio']}" if b["expands"]
                         else f"depthwise separable k{b['kernel']}") + (" + SE" if b["se"] else "")
                if kind == "block":
                    choices = {"kernel": b["kernel"], "expand": b["expand_ratio"]}
            if kind in ("stem", "head"):
                choices = {"width": space.width_mults[cfg.wid]}
            rows.append({"layer": layer, "group": group, "kind": words, "choices": choices,
                         "in_shape": (b["in_channels"], b["in_size"], b["in_size"]),
                         "out_shape": (b["out_channels"], b["out_size"], b["out_size"]),
                         "width": b["mid_channels"], "macs": int(counts["macs"][0]),
                         "params": int(counts["params"][0]), "active": bool(b["active"])})
        return rows

    # ------------------------------------------------------------- efficiency
    def analytic_efficiency(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        if self.tables is not None:
            return self.tables.compute(genes, TABLE_METRICS)
        configs = self.decode(genes)
        out = analyze(self.space, configs)
        for precision, name in DEPLOYED_FLASH.items():
            out[name] = deployment_bytes(self.space, configs, precision)["flash_bytes"]
        return out

    def efficiency_kernel(self, profile: Any = None) -> "GenomeKernel | None":
        """Analytic metrics and the latency of `profile` (a `DeviceProfile` bound to this space,
        or None) computed straight from genomes by the exact tables (see `GenomeKernel`); None
        without tables."""
        if self.tables is None:
            return None
        form = getattr(profile, "latency_gather_form", None)
        try:
            latency = form() if form is not None else None
        except ValueError:
            # e.g. a lookup table that lacks keys: the profile's own prediction says so when asked.
            latency = None
        return GenomeKernel(self.space, self.tables, latency)

    @property
    def has_exact_extremes(self) -> bool:
        return self.tables is not None

    def exact_extreme(self, metric: str, mode: str) -> tuple[float, np.ndarray]:
        """Exact min / max by dynamic programming over the tables: for a fixed (width,
        resolution) the slots are independent given the depths, so each slot takes its best
        (kernel, expand), each stage its best depth (prefix sums, or prefix maxima for the
        peak), then the best (width, resolution) wins. No monotonicity is assumed, so the
        extreme need not be the uniform smallest / largest config."""
        t, g, space = self.tables, self.genome, self.space
        if t is None:
            return super().exact_extreme(metric, mode)
        if metric not in TABLE_METRICS:
            raise ValueError(f"metric '{metric}'; allowed: {list(TABLE_METRICS)}")
        pick, arg = (np.min, np.argmin) if mode == "min" else (np.max, np.argmax)
        W, R, K, E = t.shape
        slots, maxd = space.num_slots, space.max_depth
        if metric == "peak_activation_bytes":
            per_slot, fixed, combine = t.peak.astype(np.float64), t.fixed_peak.astype(np.float64), "max"
        else:
            col = TABLE_COLUMNS[metric]
            per_slot, fixed, combine = t.values[..., col].astype(np.float64), t.fixed_values[:, col].astype(np.float64), "sum"
        per_slot = per_slot.reshape(slots, W * R, K * E)
        slot_val, slot_arg = pick(per_slot, 2), arg(per_slot, 2)                 # (slots, WR)
        by_stage = slot_val.reshape(space.num_stages, maxd, W * R)
        prefix = np.cumsum(by_stage, 1) if combine == "sum" else np.maximum.accumulate(by_stage, 1)
        options = prefix[:, g.depths - 1, :]                                     # (stages, D, WR)
        stage_val, stage_arg = pick(options, 1), arg(options, 1)                 # (stages, WR)
        total = fixed + stage_val.sum(0) if combine == "sum" else np.maximum(fixed, stage_val.max(0))
        wr = int(arg(total))
        genes = np.zeros((1, g.num_genes), np.int64)
        genes[0, g.wid_gene], genes[0, g.res_gene] = divmod(wr, R)
        genes[0, g.d_genes] = stage_arg[:, wr]
        genes[0, g.ks_genes], genes[0, g.e_genes] = np.divmod(slot_arg[:, wr], E)
        return float(total[wr]), genes

    def relaxation(self) -> Any:
        if self.tables is None:
            return None
        # torch only when gradient search runs.
        from .relaxation import MobileNetV3Relaxation
        return MobileNetV3Relaxation(self.genome, self.tables)

    # ------------------------------------------------------------- coarse lattice
    @property
    def lattice_levels(self) -> int:
        return self.space.num_stages

    def lattice_size(self, level: int) -> int:
        g = self.genome
        per_group = len(g.kernel_sizes) * len(g.expand_ratios) * len(g.depths)
        return len(g.widths) * len(g.resolutions) * per_group ** level

    def lattice(self, level: int) -> np.ndarray:
        """Every width and resolution, the same (kernel, expand, depth) option index within each
        of `level` contiguous groups of stages."""
        genome = self.genome
        s = genome.num_stages
        groups = max(1, min(level, s))
        stage_group = (np.arange(s) * groups) // s
        K, E, D = len(genome.kernel_sizes), len(genome.expand_ratios), len(genome.depths)
        per_group = np.array(np.meshgrid(np.arange(K), np.arange(E), np.arange(D), indexing="ij")).reshape(3, -1).T
        combos = np.array(np.meshgrid(*([np.arange(len(per_group))] * groups), indexing="ij")).reshape(groups, -1).T
        wr = np.array(np.meshgrid(genome.widths, np.arange(len(genome.resolutions)), indexing="ij")).reshape(2, -1).T
        n = len(wr) * len(combos)
        genes = np.zeros((n, genome.num_genes), np.int64)
        genes[:, genome.wid_gene] = np.repeat(wr[:, 0], len(combos))
        genes[:, genome.res_gene] = np.repeat(wr[:, 1], len(combos))
        choice = per_group[np.tile(combos, (len(wr), 1))]                        # (n, groups, 3)
        slot_group = stage_group[genome.slot_stage]
        genes[:, genome.ks_genes] = choice[:, slot_group, 0]
        genes[:, genome.e_genes] = choice[:, slot_group, 1]
        genes[:, genome.d_genes] = choice[:, stage_group, 2]
        return genes


class GenomeKernel:
    """The search's hot path: metrics of a genome array from one row index of the exact tables.

    `kernel(genes, names)` -> {name: (N,) array} for names among `ANALYTIC_METRICS` (int64,
    equal to `analyze`) and "latency_ms" when a latency form was given (a `DeviceProfile`'s
    `latency_gather_form`): then the profile's `predict_latency_ms` of the decoded genes, number
    for number, since the gathered table is the same and summed in the same order. A latency
    model that sums the MACs table (macs-linear, analytical-mcu) reuses the MACs: their float
    sum is an exact integer, so it equals the integer sum converted.
    """

    def __init__(self, space: SearchSpace, tables: EfficiencyTables, latency_form: Any = None):
        self.tables = tables
        self.names = tuple(TABLE_METRICS) + (("latency_ms",) if latency_form is not None else ())
        self._latency = self._latency_from_macs = self._finish = None
        if latency_form is None:
            return
        block, fixed, self._finish = latency_form
        g = tables.genome
        # latency_features orders each option axis as the space lists it, the genome ascending.
        order = [[list(values).index(v) for v in genome_values] for values, genome_values in
                 ((space.resolutions, g.resolutions), (space.kernel_sizes, g.kernel_sizes),
                  (space.expand_ratios, g.expand_ratios))]
        block = np.asarray(block)[:, order[0]][:, :, :, order[1]][:, :, :, :, order[2]]
        self._latency = tables.slot_table(block, np.asarray(fixed)[:, order[0]])
        macs, start = tables.metric_tables["macs"], tables.fixed_start
        self._latency_from_macs = (np.array_equal(self._latency, macs)
                                   and int(macs[:start].max()) * tables.slot_active.shape[0] + int(macs[start:].max()) < 2 ** 53)

    def __call__(self, genes: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        t = self.tables
        index = t.row_index(genes)
        out = t.compute(genes, [n for n in names if n != "latency_ms"], index)
        if "latency_ms" in names:
            if self._finish is None:
                raise ValueError("this kernel has no latency model; allowed metrics: " + ", ".join(self.names))
            if self._latency_from_macs:
                macs = out["macs"] if "macs" in out else t.compute(genes, ("macs",), index)["macs"]
                sums = macs.astype(np.float64)
            else:
                sums = t.gather(self._latency, index)
            out["latency_ms"] = self._finish(sums)
        return out
