"""The OFA ResNet50D search space and its subnet config, in the MIT lab's form.

A `ResNetConfig` holds exactly the keyword arguments of the official
`OFAResNets.set_active_subnet` plus `image_size`::

    {"d": [2, 0, 1, 2, 1], "e": [0.25, ...18 values], "w": [2, 1, 0, 2, 1, 2], "image_size": 160}

- `d[0]`: the input stem's middle (residual) conv is kept when d[0] is the largest depth and
  skipped otherwise; the lab samples it from {min, max} of the depths ({0, 2}), so those are
  the values allowed here. `d[1..]`: per stage, blocks added to the stage's base depth.
- `e`: one expand ratio per block slot (every slot of the largest depth, the slots the depth
  leaves out included, as the lab's `e` has): a block's middle channels are
  make_divisible(round(out_channels x e), 8).
- `w`: indices into `width_mults`: w[0] the stem's first two convs, w[1] its last conv,
  w[2 + s] every block of stage s.

The layout (`ResNetSpace`, ResNet50D as `ofa_resnets.py` builds it): conv 3x3 stride 2 ->
(skippable residual conv 3x3) -> conv 3x3 -> max pool 3x3 stride 2 -> 4 stages of bottleneck
blocks (1x1 -> 3x3 (stride) -> 1x1, + shortcut; the first block of a stage downsamples its
shortcut with average pooling + 1x1 conv, "ResNet-D") -> global mean -> linear classifier.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np

from ...registry import Registry
from ...space.config_fields import JsonConfig, as_float, as_int, as_list
from ...space.config_text import parse_config_text
from ...space.space_fields import SpaceFields
from .genome import ResNetGenome

__all__ = ["PRESETS", "ResNetConfig", "ResNetSpace", "CONFIG_FIELDS", "make_divisible", "space_from_dict",
           "list_presets", "IMAGENET_MEAN", "IMAGENET_STD"]

CONFIG_FIELDS = ("d", "e", "w", "image_size")
CHANNEL_DIVISOR = 8        # the official MyNetwork.CHANNEL_DIVISIBLE
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """The official `make_divisible`: the nearest multiple of `divisor` (at least `divisor`),
    never more than 10% below `value`."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


@dataclass(frozen=True)
class ResNetConfig(JsonConfig):
    """One subnet of a ResNet space (the lab's `set_active_subnet` arguments + `image_size`).
    Immutable, hashable and JSON-serialisable."""

    FIELDS: ClassVar[tuple[str, ...]] = CONFIG_FIELDS
    KIND: ClassVar[str] = "ResNet"

    d: tuple[int, ...]
    e: tuple[float, ...]
    w: tuple[int, ...]
    image_size: int

    def __post_init__(self) -> None:
        # Lists straight from JSON are stored as tuples so the value stays immutable.
        object.__setattr__(self, "d", tuple(as_int(v, "d") for v in as_list(self.d, "d")))
        object.__setattr__(self, "e", tuple(as_float(v, "e") for v in as_list(self.e, "e")))
        object.__setattr__(self, "w", tuple(as_int(v, "w") for v in as_list(self.w, "w")))
        object.__setattr__(self, "image_size", as_int(self.image_size, "image_size"))



@dataclass(frozen=True)
class ResNetSpace:
    """The choices of an elastic ResNet (OFA's `OFAResNets`) and the fixed layout around them.

    `depth_list`: blocks a stage may add to its `base_depths` entry; `expand_ratios`: a block's
    middle width over its output width; `width_mults`: the multipliers `w` indexes;
    `stage_widths`: the output channels of each stage at multiplier 1; `stem_channels`: the
    stem's output at multiplier 1 (its first two convs have half). Strides: 2 in the stem's
    first conv and the max pool, then 1 in the first stage and 2 in every later one.
    """

    name: str
    resolutions: tuple[int, ...]
    in_channels: int = 3
    num_classes: int = 1000
    depth_list: tuple[int, ...] = (0, 1, 2)
    expand_ratios: tuple[float, ...] = (0.2, 0.25, 0.35)
    width_mults: tuple[float, ...] = (0.65, 0.8, 1.0)
    base_depths: tuple[int, ...] = (2, 2, 4, 2)
    stage_widths: tuple[int, ...] = (256, 512, 1024, 2048)
    stem_channels: int = 64
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    labels: tuple[str, ...] = ()
    bn_eps: float = 1e-5          # the official net's BatchNorm eps and momentum
    bn_momentum: float = 0.1

    def __post_init__(self) -> None:
        for field in ("resolutions", "depth_list", "expand_ratios", "width_mults"):
            values = getattr(self, field)
            if not values or list(values) != sorted(set(values)):
                raise ValueError(f"space '{self.name}': field '{field}' = {list(values)}; "
                                 f"allowed: a non-empty ascending list without repeats")
        if len(self.base_depths) != len(self.stage_widths) or not self.base_depths:
            raise ValueError(f"space '{self.name}': fields 'base_depths' {list(self.base_depths)} and "
                             f"'stage_widths' {list(self.stage_widths)} need one entry per stage each")
        if min(self.depth_list) < 0 or min(self.base_depths) + min(self.depth_list) < 1:
            raise ValueError(f"space '{self.name}': every stage needs at least one block; allowed: "
                             f"depth_list >= 0 and base_depths + min(depth_list) >= 1")

    @staticmethod
    def preset(name: str) -> "ResNetSpace":
        """A named space (see `list_presets()`)."""
        return PRESETS.get(name)

    # ----------------------------------------------------------------- layout
    @property
    def num_stages(self) -> int:
        return len(self.stage_widths)

    @property
    def max_depth(self) -> int:
        return max(self.depth_list)

    @property
    def stem_skip_choices(self) -> tuple[int, ...]:
        """The values of d[0]: the smallest (stem conv skipped) and the largest depth (kept)."""
        return tuple(sorted({min(self.depth_list), max(self.depth_list)}))

    @property
    def stage_slots(self) -> tuple[int, ...]:
        """Block slots per stage: its base depth plus the largest added depth."""
        return tuple(b + self.max_depth for b in self.base_depths)

    @property
    def num_slots(self) -> int:
        return sum(self.stage_slots)

    @property
    def num_widths(self) -> int:
        """Entries of `w`: two for the stem, one per stage."""
        return 2 + self.num_stages

    @property
    def slot_stage(self) -> tuple[int, ...]:
        return tuple(s for s, n in enumerate(self.stage_slots) for _ in range(n))

    @property
    def slot_index(self) -> tuple[int, ...]:
        """Each slot's position in its stage (0: the stage's first, downsampling block)."""
        return tuple(i for n in self.stage_slots for i in range(n))

    @functools.cached_property
    def stem_out_channels(self) -> tuple[int, ...]:
        """The stem's output channels per width index."""
        return tuple(make_divisible(self.stem_channels * m) for m in self.width_mults)

    @functools.cached_property
    def stem_mid_channels(self) -> tuple[int, ...]:
        """The channels of the stem's first two convs per width index."""
        return tuple(make_divisible(c // 2) for c in self.stem_out_channels)

    @functools.cached_property
    def stage_out_channels(self) -> tuple[tuple[int, ...], ...]:
        """[stage][width index] output channels of the stage's blocks."""
        return tuple(tuple(make_divisible(c * m) for m in self.width_mults) for c in self.stage_widths)

    def middle_channels(self, out_channels: int, expand_ratio: float) -> int:
        """A block's middle channels: make_divisible(round(out x e), 8), as the official block."""
        return make_divisible(round(out_channels * expand_ratio))

    @functools.cached_property
    def middle_table(self) -> np.ndarray:
        """(stages, widths, expand ratios) int64 middle channels (Python's rounding, as the
        official code; a lookup table so vectorised code never re-rounds)."""
        return np.array([[[self.middle_channels(c, e) for e in self.expand_ratios] for c in widths]
                         for widths in self.stage_out_channels], np.int64)

    def stride(self, stage: int) -> int:
        return 1 if stage == 0 else 2

    def num_blocks(self, cfg: "ResNetConfig") -> list[int]:
        """Blocks kept per stage."""
        return [b + d for b, d in zip(self.base_depths, cfg.d[1:])]

    def stem_kept(self, cfg: "ResNetConfig") -> bool:
        """Whether the stem's residual conv runs: d[0] is the largest depth (the official rule)."""
        return cfg.d[0] == self.max_depth

    def active_slots(self, cfg: "ResNetConfig") -> list[bool]:
        kept = self.num_blocks(cfg)
        return [i < kept[s] for s, i in zip(self.slot_stage, self.slot_index)]

    # ----------------------------------------------------------------- configs
    def validate(self, cfg: ResNetConfig | Mapping[str, Any]) -> ResNetConfig:
        """`cfg` as a `ResNetConfig` of this space, or `ValueError` naming the field, the value
        and what is allowed."""
        if not isinstance(cfg, ResNetConfig):
            cfg = ResNetConfig.from_dict(cfg)
        for field, size, what in (("d", 1 + self.num_stages, "the stem's d[0], then one per stage"),
                                  ("e", self.num_slots, "one per block slot, slots past the depth ignored"),
                                  ("w", self.num_widths, "two for the stem, then one per stage")):
            if len(getattr(cfg, field)) != size:
                raise ValueError(f"config field '{field}' has {len(getattr(cfg, field))} entries; space "
                                 f"'{self.name}' needs {size} ({what})")
        if cfg.d[0] not in self.stem_skip_choices:
            raise ValueError(f"config field 'd' has d[0] = {cfg.d[0]}; allowed: {list(self.stem_skip_choices)} "
                             f"(the input stem's residual conv skipped / kept)")
        checks = (("d", cfg.d[1:], self.depth_list), ("e", cfg.e, self.expand_ratios),
                  ("w", cfg.w, tuple(range(len(self.width_mults)))))
        for field, values, allowed in checks:
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"config field '{field}' has value {bad[0]}; allowed: {list(allowed)}")
        if cfg.image_size not in self.resolutions:
            raise ValueError(f"config field 'image_size' = {cfg.image_size}; allowed: {list(self.resolutions)}")
        return cfg

    def _uniform(self, pick) -> ResNetConfig:
        return ResNetConfig(d=(pick(self.stem_skip_choices),) + (pick(self.depth_list),) * self.num_stages,
                            e=(pick(self.expand_ratios),) * self.num_slots,
                            w=(pick(range(len(self.width_mults))),) * self.num_widths,
                            image_size=pick(self.resolutions))

    def largest(self) -> ResNetConfig:
        return self._uniform(max)

    def smallest(self) -> ResNetConfig:
        return self._uniform(min)

    def sample(self, rng: np.random.Generator | int | None = None) -> ResNetConfig:
        """A uniformly random config (every choice drawn independently, d[0] from {min, max}
        depth as the lab samples it)."""
        return self.genome.to_configs(self.genome.random(1, np.random.default_rng(rng)))[0]

    def parse_config(self, text: str) -> ResNetConfig:
        """Parse 'largest', 'smallest', 'random:SEED', a JSON object or a path to a JSON file."""
        return parse_config_text(self, text, ResNetConfig)

    @functools.cached_property
    def genome(self) -> ResNetGenome:
        """The index encoding strategies search over (built once per space)."""
        return ResNetGenome(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Limits on a space read from a file (a package's manifest): far above the presets, low enough
# that no file can make the engine allocate without bound.
MAX_SPACE_CHANNELS = 8192
MAX_SPACE_STAGES = 8
MAX_SPACE_DEPTH = 16
MAX_SPACE_CHOICES = 64
MAX_SPACE_RESOLUTION = 1024
MAX_SPACE_CLASSES = 100_000
MAX_SPACE_IN_CHANNELS = 64
MAX_SUPERNET_PARAMS = 100_000_000  # 400 MB of float32 weights, ~2x the official ResNet50D's


def supernet_params(space: ResNetSpace) -> int:
    """Parameters of the supernet of `space` (its largest weights), by arithmetic."""
    mid, out = max(space.stem_mid_channels), max(space.stem_out_channels)
    params = space.in_channels * mid * 9 + mid * mid * 9 + mid * out * 9 + 2 * (2 * mid + out)
    c_in = out
    for s, slots in enumerate(space.stage_slots):
        c_out = max(space.stage_out_channels[s])
        m = space.middle_channels(c_out, max(space.expand_ratios))
        for i in range(slots):
            params += c_in * m + 9 * m * m + m * c_out + 2 * (2 * m + c_out)
            if i == 0:
                params += c_in * c_out + 2 * c_out
            c_in = c_out
    return params + (c_in + 1) * space.num_classes


def space_from_dict(data: Any, where: str = "space") -> ResNetSpace:
    """The `ResNetSpace` of its `to_dict()` form; `ValueError` naming `where`, the field and
    what is allowed (unknown or missing fields, wrong types, values past the limits above, a
    supernet past MAX_SUPERNET_PARAMS). Arithmetic only: nothing is allocated."""
    f = SpaceFields(data, ResNetSpace, where)
    in_channels = f.one("in_channels", 1, MAX_SPACE_IN_CHANNELS)
    num_classes = f.one("num_classes", 2, MAX_SPACE_CLASSES)
    try:
        space = ResNetSpace(
            name=f.name(), resolutions=f.ints("resolutions", 8, MAX_SPACE_RESOLUTION), in_channels=in_channels,
            num_classes=num_classes, depth_list=f.ints("depth_list", 0, MAX_SPACE_DEPTH),
            expand_ratios=f.reals("expand_ratios", 0.01, 4.0), width_mults=f.reals("width_mults", 0.05, 8.0),
            base_depths=f.ints("base_depths", 0, MAX_SPACE_DEPTH, max_len=MAX_SPACE_STAGES),
            stage_widths=f.ints("stage_widths", 1, MAX_SPACE_CHANNELS, max_len=MAX_SPACE_STAGES),
            stem_channels=f.one("stem_channels", 1, MAX_SPACE_CHANNELS),
            mean=f.reals("mean", -10.0, 10.0, in_channels), std=f.reals("std", 1e-6, 10.0, in_channels),
            labels=f.labels(num_classes), bn_eps=f.real("bn_eps", 0.0, 1.0, open_low=True, open_high=True),
            bn_momentum=f.real("bn_momentum", 0.0, 1.0, open_low=True, open_high=True))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    widest = max(max(max(c) for c in space.stage_out_channels), max(space.stem_out_channels))
    widest = max(widest, int(space.middle_table.max()))
    if widest > MAX_SPACE_CHANNELS:
        raise ValueError(f"{where}: layers of {widest} channels after the width multipliers and expand ratios; "
                         f"allowed: at most {MAX_SPACE_CHANNELS} (MAX_SPACE_CHANNELS)")
    params = supernet_params(space)
    if params > MAX_SUPERNET_PARAMS:
        raise ValueError(f"{where}: the space describes a supernet of {params:,} parameters; "
                         f"allowed: at most {MAX_SUPERNET_PARAMS:,} (MAX_SUPERNET_PARAMS)")
    return space


def list_presets() -> list[str]:
    return sorted(PRESETS.names())


PRESETS: Registry[ResNetSpace] = Registry("ResNet search space")
# The official `ofa_resnet50` (ResNet50D): 1000 ImageNet classes; resolutions: the lab's ResNet
# accuracy predictor's image sizes within 128-224.
PRESETS.register("ofa-resnet50d", ResNetSpace(name="ofa-resnet50d", resolutions=(128, 144, 160, 176, 192, 224)))
