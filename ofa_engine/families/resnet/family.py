"""The OFA ResNet50D family (official `ofa_resnet50`) behind the family interface
(`ofa_engine.space.family.NetworkFamily`)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .. import FAMILIES
from ...space.family import NetworkFamily
from .analytics import METRICS, analyze, analyze_values, block_terms, deployment_bytes, head_terms, stage_sizes, \
    stem_terms
from .genome import ResNetPopulation
from .space import PRESETS, ResNetConfig, ResNetSpace, space_from_dict
from .tables import efficiency_tables

__all__ = ["ResNetFamily"]

# What `analytic_efficiency` returns: the interface's metrics and both deployed files' Flash.
EFFICIENCY = METRICS + ("flash_bytes_fp32", "flash_bytes_int8")


@FAMILIES.register("resnet")
class ResNetFamily(NetworkFamily):
    """`space`: a `ResNetSpace` or preset name. `fast`: `analytic_efficiency` from the exact
    tables (`tables`; False: the block-by-block walk, the same numbers, kept to compare)."""

    family = "resnet"
    space_type, config_type, presets = ResNetSpace, ResNetConfig, PRESETS
    read_space = staticmethod(space_from_dict)
    products_in_layers = True   # convolutions and the classifier only

    def __init__(self, space: ResNetSpace | str, fast: bool = True):
        super().__init__(space)
        self.fast = fast

    # ------------------------------------------------------------- configs
    def to_configs(self, genes: np.ndarray) -> list[ResNetConfig]:
        return self.genome.to_configs(np.asarray(genes, np.int64))

    def to_genes(self, configs: Any) -> np.ndarray:
        """Genomes of a `ResNetPopulation`, a `ResNetConfig`, a config dict or a sequence of
        either (validated)."""
        return self.genome.from_configs(configs)

    def decode(self, genes: np.ndarray) -> ResNetPopulation:
        """A `ResNetPopulation`: what this family's predictors and device profiles take (their
        gathers read its genes, no configs built and validated back)."""
        return self.genome.to_population(genes)

    # ------------------------------------------------------------- efficiency
    def analytic_efficiency(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        if self.fast:
            out = efficiency_tables(self.space).compute(genes)
        else:
            out = analyze_values(self.space, self.genome.values(genes))
        return {name: out[name] for name in EFFICIENCY}

    # ------------------------------------------------------------- networks and analytics
    def build_supernet(self) -> Any:
        from .supernet import ResNetSupernet   # torch only when a network is built
        return ResNetSupernet(self.space)

    def fold_bn(self, module: Any) -> Any:
        from .static import fold_bn
        return fold_bn(module)

    def analyze(self, configs: Any) -> dict[str, Any]:
        return analyze(self.space, configs)

    def deployment_bytes(self, configs: Any, precision: str) -> dict[str, Any]:
        return deployment_bytes(self.space, configs, precision)

    @property
    def encoding_size(self) -> int:
        return int(self.genome.encoding_size)

    def encode(self, configs: Any) -> np.ndarray:
        """One-hot rows of the genome: d[0], the stage depths, every slot's expand ratio (slots
        past the depth all zero), the widths, the resolution."""
        return self.genome.encode(self.to_genes(configs))

    def latency_features(self) -> Any:
        from .latency_features import ResNetLatencyFeatures
        return ResNetLatencyFeatures(self.space)

    @classmethod
    def import_official(cls, state_dict: Mapping[str, Any]) -> Any:
        from .official import import_official_resnet
        return import_official_resnet(state_dict)

    @classmethod
    def official_predictor(cls, state_dict: Mapping[str, Any], space: Any) -> Any:
        from .official import official_predictor_arrays
        return official_predictor_arrays(state_dict, space)

    def describe(self, config: Any) -> list[dict[str, Any]]:
        """The input stem (its residual conv inactive when skipped), every block slot (those
        past a stage's depth inactive) and the head."""
        cfg = self.validate(config)
        space, r = self.space, cfg.image_size
        mid, out = space.stem_mid_channels[cfg.w[0]], space.stem_out_channels[cfg.w[1]]
        kept = space.stem_kept(cfg)
        h = (r + 1) // 2
        sizes = [int(x) for x in stage_sizes(space, r)]
        with_res = stem_terms(space, mid, out, True, r)
        without = stem_terms(space, mid, out, False, r)
        rows = [{"layer": "stem", "group": "stem", "kind": "conv 3x3 s2, conv 3x3, max pool",
                 "choices": {"width": space.width_mults[cfg.w[0]], "out_width": space.width_mults[cfg.w[1]]},
                 "in_shape": (space.in_channels, r, r), "out_shape": (out, sizes[0], sizes[0]), "width": out,
                 "macs": int(without["macs"]), "params": int(without["params"]), "active": True},
                {"layer": "stem.res", "group": "stem", "kind": "residual conv 3x3",
                 "choices": {}, "in_shape": (mid, h, h), "out_shape": (mid, h, h), "width": mid,
                 "macs": int(with_res["macs"] - without["macs"]), "params": int(with_res["params"] - without["params"]),
                 "active": kept}]
        active, c_in = space.active_slots(cfg), out
        for slot, (s, i) in enumerate(zip(space.slot_stage, space.slot_index)):
            c = space.stage_out_channels[s][cfg.w[2 + s]]
            m = space.middle_channels(c, cfg.e[slot])
            first = i == 0
            stride = space.stride(s) if first else 1
            size = sizes[s] if first else sizes[s + 1]
            terms = block_terms(c_in if first else c, m, c, size, stride, first)
            rows.append({"layer": f"S{s + 1}.B{i + 1}", "group": f"stage {s + 1}",
                         "kind": f"bottleneck e{cfg.e[slot]:g}" + (" + downsample" if first else ""),
                         "choices": {"expand": cfg.e[slot], "width": space.width_mults[cfg.w[2 + s]]},
                         "in_shape": (c_in if first else c, size, size), "out_shape": (c, sizes[s + 1], sizes[s + 1]),
                         "width": m, "macs": int(terms["macs"]), "params": int(terms["params"]),
                         "active": bool(active[slot])})
            c_in = c
        head = head_terms(space, c_in)
        rows.append({"layer": "head", "group": "head", "kind": "global mean, classifier", "choices": {},
                     "in_shape": (c_in, sizes[-1], sizes[-1]), "out_shape": (space.num_classes,), "width": c_in,
                     "macs": int(head["macs"]), "params": int(head["params"]), "active": True})
        return rows
