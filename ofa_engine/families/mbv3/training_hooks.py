"""MobileNetV3's training hooks: elastic kernel, expand ratio, depth and width, OFA's
progressive shrinking, and the channel sorts between its phases."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np

from ...space.training import TrainingHooks
from .space import SearchSpace, SubnetConfig

__all__ = ["MobileNetV3Training"]

# "middle[:<expand stage>]": every block's expanded channels (and SE hidden units), keeping the
# channels of the <expand stage> largest expand ratios ahead; "stage": the channels a stage's
# blocks share, which the width multiplier slices.
_SORT = re.compile(r"^(middle(:\d+)?|stage)$")


class MobileNetV3Training(TrainingHooks):
    """Hooks for a MobileNetV3 `SearchSpace`. Its elastic dimensions are named as the recipe
    file's phase fields: kernel_sizes, expand_ratios, depths and widths (indices into the
    width multipliers)."""

    family = "mbv3"
    space: SearchSpace

    def elastic_dimensions(self) -> dict[str, tuple]:
        space = self.space
        return {"kernel_sizes": tuple(space.kernel_sizes), "expand_ratios": tuple(space.expand_ratios),
                "depths": tuple(space.depths), "widths": tuple(range(len(space.width_mults)))}

    def sample(self, choices: Mapping[str, Sequence], rng: np.random.Generator | None, image_size: int,
               smallest: bool = False, largest: bool = False) -> SubnetConfig:
        """One width for the network, a kernel and an expand ratio per block slot, a depth per
        stage (drawn in this order)."""
        space = self.space
        ks, es, ds, ws = (choices[n] for n in ("kernel_sizes", "expand_ratios", "depths", "widths"))
        if smallest or largest:
            pick = min if smallest else max
            return SubnetConfig(pick(ws), [pick(ks)] * space.num_slots, [pick(es)] * space.num_slots,
                                [pick(ds)] * space.num_stages, image_size)
        return SubnetConfig(int(rng.choice(ws)), rng.choice(ks, space.num_slots).tolist(),
                            rng.choice(es, space.num_slots).tolist(), rng.choice(ds, space.num_stages).tolist(),
                            image_size)

    def default_recipe(self) -> dict[str, Any]:
        """Our recipe (ANCHORS.md's schedule, shortened to fit 2 CPU cores): the full network,
        then elastic kernel, depth, expand ratio and width, then phases that train everything
        elastic at once (the last three with in-place distillation). Each version of it, why its
        phases were added and what they measured: docs/training.md, "The bundled run"."""
        space = self.space
        ks, ds, es = list(space.kernel_sizes), list(space.depths), list(space.expand_ratios)
        es_desc = sorted(es, reverse=True)
        all_w = list(range(len(space.width_mults)))
        full = dict(kernel_sizes=ks, depths=ds)

        def phase(name: str, epochs: float, lr: float, **fields: Any) -> dict[str, Any]:
            return {"name": name, "epochs": epochs, "lr": lr, **fields}

        phases = [
            phase("full", 30, 0.1, distill=False, warmup_epochs=0.5),
            phase("kernel", 4, 0.01, kernel_sizes=ks, subnets_per_step=3),
            phase("depth", 4, 0.008, subnets_per_step=3, **full),
        ]
        for stage in range(1, len(es)):
            phases.append(phase(f"expand-{stage}", 3 if stage < len(es) - 1 else 4, 0.008,
                                expand_ratios=sorted(es_desc[:stage + 1]), subnets_per_step=3,
                                sort_channels=f"middle:{stage - 1}", **full))
        if len(all_w) > 1:
            phases.append(phase("width", 10, 0.01, expand_ratios=es, widths=all_w, subnets_per_step=3,
                                sort_channels="stage", **full))
        everything = dict(expand_ratios=es, widths=all_w if len(all_w) > 1 else None, subnets_per_step=3, **full)
        phases += [
            phase("all", 15, 0.01, largest_weight=2.0, **everything),
            phase("all-2", 20, 0.015, largest_weight=3.0, **everything),
            phase("all-3", 12, 0.005, largest_weight=6.0, **everything),
            phase("all-inplace", 12, 0.01, largest_weight=4.0, distill_from="largest", **everything),
            phase("all-inplace-2", 10, 0.015, largest_weight=4.0, distill_from="largest", **everything),
            phase("all-inplace-4sub", 10, 0.015, largest_weight=4.0, distill_from="largest",
                  **{**everything, "subnets_per_step": 4}),
        ]
        return {"phases": phases, "sandwich_largest": True}

    def random_configs(self, n: int, rng: np.random.Generator) -> list[SubnetConfig]:
        return self.space.from_arrays(self.space.sample_population(n, rng))

    def width_index(self, config: SubnetConfig) -> int:
        return int(config.wid)

    def channel_sorts(self) -> tuple[str, ...]:
        return ("middle:<expand stage>", "stage")

    def check_sort(self, how: str, where: str = "phase") -> None:
        if not (isinstance(how, str) and _SORT.match(how)):
            super().check_sort(how, where)

    def reorganize(self, supernet: Any, how: str) -> None:
        self.check_sort(how)
        kind, _, arg = how.partition(":")
        if kind == "middle":
            supernet.reorganize_channels(expand_stage=int(arg or 0), middle=True, stage=False)
        else:
            supernet.reorganize_channels(middle=False, stage=True)
