"""The ViT family behind the family interface (`ofa_engine.space.family.NetworkFamily`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import FAMILIES
from ...space.family import NetworkFamily
from .analytics import METRICS, analyze, analyze_values, block_terms, deployment_bytes, fixed_terms
from .genome import ViTPopulation
from .space import PRESETS, ViTConfig, ViTSpace, space_from_dict

__all__ = ["ViTFamily"]

# What `analytic_efficiency` returns: the interface's metrics and both deployed files' Flash.
EFFICIENCY = METRICS + ("flash_bytes_fp32", "flash_bytes_int8")


@FAMILIES.register("vit")
class ViTFamily(NetworkFamily):
    """`space`: a `ViTSpace` or preset name. `fast` is accepted for the registry's sake: the
    closed forms are already vectorised, there are no tables to skip."""

    family = "vit"
    space_type, config_type, presets = ViTSpace, ViTConfig, PRESETS
    read_space = staticmethod(space_from_dict)

    # ------------------------------------------------------------- configs
    def to_configs(self, genes: np.ndarray) -> list[ViTConfig]:
        return self.genome.to_configs(np.asarray(genes, np.int64))

    def to_genes(self, configs: Any) -> np.ndarray:
        """Genomes of a `ViTPopulation`, a `ViTConfig`, a config dict or a sequence of either
        (validated)."""
        return self.genome.from_configs(configs)

    def decode(self, genes: np.ndarray) -> ViTPopulation:
        """A `ViTPopulation`: what this family's predictors and device profiles take (their
        gathers read its genes, no configs built and validated back)."""
        return self.genome.to_population(genes)

    # ------------------------------------------------------------- efficiency
    def analytic_efficiency(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        out = analyze_values(self.space, self.genome.values(genes))
        return {name: out[name] for name in EFFICIENCY}

    # ------------------------------------------------------------- networks and analytics
    def build_supernet(self) -> Any:
        from .supernet import ViTSupernet   # torch only when a network is built
        return ViTSupernet(self.space)

    def analyze(self, configs: Any) -> dict[str, Any]:
        return analyze(self.space, configs)

    def deployment_bytes(self, configs: Any, precision: str) -> dict[str, Any]:
        return deployment_bytes(self.space, configs, precision)

    @property
    def encoding_size(self) -> int:
        return int(self.genome.encoding_size)

    def encode(self, configs: Any) -> np.ndarray:
        """One-hot rows of the genome: embed dim, depth, then per block slot heads and MLP
        ratio (slots past the depth all zero)."""
        return self.genome.encode(self.to_genes(configs))

    def latency_features(self) -> Any:
        from .latency_features import ViTLatencyFeatures
        return ViTLatencyFeatures(self.space)

    def training(self) -> Any:
        from .training_hooks import ViTTraining
        return ViTTraining(self.space)

    def describe(self, config: Any) -> list[dict[str, Any]]:
        """Patch embedding, every block slot (those past the depth inactive) and the head."""
        cfg = self.validate(config)
        space, c = self.space, cfg.embed_dim
        tokens = space.num_patches
        fixed = fixed_terms(space, c)
        stem_macs = tokens * c * space.in_channels * space.patch_size ** 2
        stem_params = c * space.in_channels * space.patch_size ** 2 + c + tokens * c
        rows = [{"layer": "patches", "group": "embedding",
                 "kind": f"patch embedding {space.patch_size}x{space.patch_size} + positions",
                 "choices": {"embed_dim": c}, "in_shape": (space.in_channels, space.image_size, space.image_size),
                 "out_shape": (tokens, c), "width": c, "macs": stem_macs, "params": stem_params, "active": True}]
        for slot in range(space.max_depth):
            heads, ratio = cfg.num_heads[slot], cfg.mlp_ratio[slot]
            hidden = space.mlp_hidden(c, ratio)
            terms = block_terms(space, c, heads, hidden)
            rows.append({"layer": f"L{slot + 1}", "group": "encoder",
                         "kind": f"attention {heads} heads + MLP x{ratio:g}",
                         "choices": {"heads": heads, "mlp_ratio": ratio}, "in_shape": (tokens, c),
                         "out_shape": (tokens, c), "width": hidden, "macs": int(terms["macs"]),
                         "params": int(terms["params"]), "active": slot < cfg.depth})
        rows.append({"layer": "head", "group": "head", "kind": "LayerNorm, token mean, classifier",
                     "choices": {}, "in_shape": (tokens, c), "out_shape": (space.num_classes,), "width": c,
                     "macs": int(fixed["macs"]) - stem_macs, "params": int(fixed["params"]) - stem_params,
                     "active": True})
        return rows

    def relaxation(self) -> Any:
        # torch only when gradient search runs.
        from .relaxation import ViTRelaxation
        return ViTRelaxation(self.space)
