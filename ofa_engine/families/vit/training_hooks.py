"""The elastic ViT's training hooks: elastic embedding width, depth, heads and MLP ratio,
sandwich sampling with in-place distillation, and the importance sort before shrinking."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ...space.training import TrainingHooks
from .space import ViTConfig, ViTSpace

__all__ = ["ViTTraining"]


class ViTTraining(TrainingHooks):
    """Hooks for a `ViTSpace`. Elastic dimensions (a recipe phase's `choices`): embed_dim, depth,
    num_heads and mlp_ratio (one value drawn per block slot for the last two)."""

    family = "vit"
    space: ViTSpace

    def elastic_dimensions(self) -> dict[str, tuple]:
        space = self.space
        return {"embed_dim": tuple(space.embed_dims), "depth": tuple(space.depths),
                "num_heads": tuple(space.num_heads), "mlp_ratio": tuple(space.mlp_ratios)}

    def sample(self, choices: Mapping[str, Sequence], rng: np.random.Generator | None, image_size: int,
               smallest: bool = False, largest: bool = False) -> ViTConfig:
        """One embedding width and depth for the network, heads and an MLP ratio per block slot
        (drawn in this order)."""
        slots = self.space.max_depth
        widths, depths, heads, ratios = (tuple(choices[n]) for n in ("embed_dim", "depth", "num_heads", "mlp_ratio"))
        if smallest or largest:
            pick = min if smallest else max
            return ViTConfig(int(pick(widths)), int(pick(depths)), [int(pick(heads))] * slots,
                             [float(pick(ratios))] * slots, image_size)
        return ViTConfig(int(rng.choice(widths)), int(rng.choice(depths)),
                         [int(h) for h in rng.choice(heads, slots)], [float(r) for r in rng.choice(ratios, slots)],
                         image_size)

    def default_recipe(self) -> dict[str, Any]:
        """The full network first (AdamW, labels only), then everything elastic at once with the
        sandwich rule (smallest, largest and two random subnets per step) and in-place
        distillation from the step's largest subnet (BigNAS), the units sorted by importance
        first. Why these numbers: docs/vit.md."""
        everything = {name: list(values) for name, values in self.elastic_dimensions().items()}
        return {
            "optimizer": "adamw", "weight_decay": 0.05, "batch_size": 256, "sandwich_largest": True,
            "phases": [
                {"name": "full", "epochs": 30, "lr": 1e-3, "warmup_epochs": 2, "distill": False},
                {"name": "elastic", "epochs": 25, "lr": 5e-4, "warmup_epochs": 1, "subnets_per_step": 4,
                 "choices": everything, "sort_channels": "importance", "distill_from": "largest",
                 "largest_weight": 2.0},
            ]}

    def width_index(self, config: ViTConfig) -> int:
        return list(self.space.embed_dims).index(int(config.embed_dim))

    def channel_sorts(self) -> tuple[str, ...]:
        return ("importance",)

    def reorganize(self, supernet: Any, how: str) -> None:
        self.check_sort(how)
        supernet.sort_by_importance()
