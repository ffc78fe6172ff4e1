"""The ProxylessNAS search space and the subnet config: defined once, used by every other module of the family.

A `ProxylessConfig` is a plain immutable value in the MIT lab's form, exactly the keyword
arguments of the official `OFAProxylessNASNets.set_active_subnet` plus the resolution::

    {"ks": [7, 5, ...], "e": [6, 4, ...], "d": [4, 2, 3, 4, 2, 1], "image_size": 224}

`ks` / `e` hold one entry per elastic block slot: `max(depths)` slots for each stage but the
last, and one for the last stage (which always has exactly one block); slots the depth leaves
out keep their entries, as the lab's configs do. `d` has one entry per stage; the last is
always 1 (the lab's `sample_active_subnet` sets it so).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ...registry import Registry
from ...space.config_fields import JsonConfig, as_int, as_ints
from ...space.config_text import parse_config_text
from ...space.space_fields import SpaceFields
from ..mbv3.layout import make_divisible
from .genome import ProxylessGenome

__all__ = ["PRESETS", "ProxylessConfig", "ProxylessSpace", "CONFIG_FIELDS", "list_presets", "space_from_dict",
           "IMAGENET_MEAN", "IMAGENET_STD"]

CONFIG_FIELDS = ("ks", "e", "d", "image_size")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ProxylessConfig(JsonConfig):
    """One subnet of a ProxylessNAS space. Immutable, hashable and JSON-serialisable."""

    FIELDS: ClassVar[tuple[str, ...]] = CONFIG_FIELDS
    KIND: ClassVar[str] = "ProxylessNAS"

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    image_size: int

    def __post_init__(self) -> None:
        # Accept lists (straight from JSON) but store tuples so the value stays immutable.
        for name in ("ks", "e", "d"):
            object.__setattr__(self, name, as_ints(getattr(self, name), name))
        object.__setattr__(self, "image_size", as_int(self.image_size, "image_size"))



@dataclass(frozen=True)
class ProxylessSpace:
    """The choices of an OFA ProxylessNAS space and the fixed layout around them.

    Layout (ReLU6 everywhere, no SE, BatchNorm eps `bn_eps`): first conv 3x3 stride 2 ->
    first block (depthwise 3x3 -> pointwise, expand 1, no residual) -> `len(stage_strides)`
    stages of inverted bottlenecks, every stage but the last with `max(depths)` elastic slots,
    the last with one -> feature mix 1x1 conv + BN + ReLU6 -> global mean -> dropout ->
    classifier. `base_widths`: first conv, first block, one per stage, feature mix (before
    `width_mult`, rounded to `channel_divisor` as the official code rounds).
    """

    name: str
    in_channels: int
    num_classes: int
    width_mult: float
    base_widths: tuple[int, ...]
    stage_strides: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[int, ...]
    depths: tuple[int, ...]
    resolutions: tuple[int, ...]
    channel_divisor: int = 8
    dropout: float = 0.1
    bn_eps: float = 1e-3
    bn_momentum: float = 0.1
    # Preprocessing of raw images, owned here so that training, evaluation and export agree.
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.base_widths) != len(self.stage_strides) + 3:
            raise ValueError(f"space '{self.name}': base_widths has {len(self.base_widths)} entries; allowed: "
                             f"{len(self.stage_strides) + 3} (first conv, first block, one per stage, feature mix)")
        if len(self.stage_strides) < 2:
            raise ValueError(f"space '{self.name}': stage_strides = {list(self.stage_strides)}; allowed: at least "
                             f"2 stages (elastic stages, then the one-block last stage)")
        for field in ("kernel_sizes", "expand_ratios", "depths", "resolutions"):
            values = getattr(self, field)
            if not values or list(values) != sorted(set(values)):
                raise ValueError(f"space '{self.name}': field '{field}' = {list(values)}; "
                                 f"allowed: a non-empty ascending list without repeats")

    # ----------------------------------------------------------------- presets
    @staticmethod
    def preset(name: str) -> "ProxylessSpace":
        """A named space (see `list_presets()`)."""
        return PRESETS.get(name)

    # ----------------------------------------------------------------- layout
    @property
    def num_stages(self) -> int:
        return len(self.stage_strides)

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def num_slots(self) -> int:
        """Elastic block slots: `max_depth` per stage but the last, one in the last."""
        return (self.num_stages - 1) * self.max_depth + 1

    @functools.cached_property
    def widths(self) -> tuple[int, ...]:
        """Channels after the multiplier: first conv, first block, one per stage, feature mix."""
        return tuple(make_divisible(b * self.width_mult, self.channel_divisor) for b in self.base_widths)

    def slot_stage(self, slot: int) -> tuple[int, int]:
        """(stage, index within the stage) of a block slot."""
        return divmod(slot, self.max_depth) if slot < self.num_slots - 1 else (self.num_stages - 1, 0)

    def middle_channels(self, in_channels: Any, expand_ratio: Any) -> Any:
        """An inverted bottleneck's expanded width: make_divisible(round(c_in x e)) (ints)."""
        return make_divisible(round(in_channels * expand_ratio), self.channel_divisor)

    # ----------------------------------------------------------------- configs
    def validate(self, cfg: ProxylessConfig | Mapping[str, Any]) -> ProxylessConfig:
        """`cfg` as a `ProxylessConfig` of this space, or `ValueError` naming the field, the
        value and what is allowed."""
        if not isinstance(cfg, ProxylessConfig):
            cfg = ProxylessConfig.from_dict(cfg)
        for field, allowed, length, per in (("ks", self.kernel_sizes, self.num_slots, "block slot"),
                                            ("e", self.expand_ratios, self.num_slots, "block slot"),
                                            ("d", self.depths, self.num_stages - 1, "stage")):
            values = getattr(cfg, field)
            if field == "d":
                if len(values) != self.num_stages:
                    raise ValueError(f"config field 'd' has {len(values)} entries; space '{self.name}' needs "
                                     f"{self.num_stages} (one per stage, the last 1)")
                if values[-1] != 1:
                    raise ValueError(f"config field 'd' has last entry {values[-1]}; allowed: 1 (the last stage "
                                     f"has one block)")
                values = values[:-1]
            elif len(values) != length:
                raise ValueError(f"config field '{field}' has {len(values)} entries; space '{self.name}' needs "
                                 f"{length} (one per {per}: {self.max_depth} per stage but the last, 1 for the last)")
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"config field '{field}' has value {bad[0]}; allowed: {list(allowed)}")
        if cfg.image_size not in self.resolutions:
            raise ValueError(f"config field 'image_size' = {cfg.image_size}; allowed: {_describe(self.resolutions)}")
        return cfg

    def _uniform(self, pick) -> ProxylessConfig:
        return ProxylessConfig(ks=[pick(self.kernel_sizes)] * self.num_slots,
                               e=[pick(self.expand_ratios)] * self.num_slots,
                               d=[pick(self.depths)] * (self.num_stages - 1) + [1],
                               image_size=pick(self.resolutions))

    def largest(self) -> ProxylessConfig:
        return self._uniform(max)

    def smallest(self) -> ProxylessConfig:
        return self._uniform(min)

    def sample(self, rng: np.random.Generator | int | None = None) -> ProxylessConfig:
        """A uniformly random config (each choice drawn independently, as OFA samples)."""
        return self.genome.to_configs(self.genome.random(1, np.random.default_rng(rng)))[0]

    def parse_config(self, text: str) -> ProxylessConfig:
        """Parse 'largest', 'smallest', 'random:SEED', a JSON object or a path to a JSON file."""
        return parse_config_text(self, text, ProxylessConfig)

    def lab_config(self, cfg: ProxylessConfig | Mapping[str, Any]) -> dict[str, list[int]]:
        """The keyword arguments of the official `set_active_subnet` for `cfg` (ks, e, d)."""
        cfg = self.validate(cfg)
        return {"ks": list(cfg.ks), "e": list(cfg.e), "d": list(cfg.d)}

    @functools.cached_property
    def genome(self) -> ProxylessGenome:
        """The index encoding strategies search over (built once per space)."""
        return ProxylessGenome(self)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _describe(values: Sequence[int]) -> str:
    steps = {b - a for a, b in zip(values, values[1:])}
    if len(values) > 6 and len(steps) == 1:
        return f"{values[0]}..{values[-1]} step {steps.pop()}"
    return str(list(values))


# Limits on a space read from a file (a package's manifest): far above the preset (1664
# channels, 6 stages of depth 4, 224 px, 1000 classes, 8M parameters), low enough that no file
# can make the engine allocate without bound.
MAX_SPACE_CHANNELS = 8192
MAX_SPACE_STAGES = 16
MAX_SPACE_DEPTH = 16
MAX_SPACE_CHOICES = 64
MAX_SPACE_KERNEL = 15
MAX_SPACE_EXPAND = 16
MAX_SPACE_RESOLUTION = 1024
MAX_SPACE_CLASSES = 100_000
MAX_SPACE_IN_CHANNELS = 64
MAX_SUPERNET_PARAMS = 100_000_000


def _supernet_params(space: ProxylessSpace) -> int:
    """Parameters of the supernet `space` describes (its largest subnet), by arithmetic."""
    w = space.widths
    k2, e = max(space.kernel_sizes) ** 2, max(space.expand_ratios)
    params = space.in_channels * w[0] * 9 + 2 * w[0] + w[0] * 9 + 2 * w[0] + w[0] * w[1] + 2 * w[1]
    c_in = w[1]
    for stage in range(space.num_stages):
        for _ in range(space.max_depth if stage < space.num_stages - 1 else 1):
            c_out = w[2 + stage]
            mid = space.middle_channels(c_in, e)
            params += c_in * mid + mid * k2 + mid * c_out + 4 * mid + 2 * c_out
            c_in = c_out
    return params + c_in * w[-1] + 2 * w[-1] + (w[-1] + 1) * space.num_classes


def space_from_dict(data: Any, where: str = "space") -> ProxylessSpace:
    """The `ProxylessSpace` of its `to_dict()` form; `ValueError` naming `where`, the field and
    what is allowed (unknown or missing fields, wrong types, values past the MAX_SPACE_* limits,
    a supernet past MAX_SUPERNET_PARAMS). Arithmetic only: nothing is allocated."""
    f = SpaceFields(data, ProxylessSpace, where)
    in_channels = f.one("in_channels", 1, MAX_SPACE_IN_CHANNELS)
    num_classes = f.one("num_classes", 1, MAX_SPACE_CLASSES)
    strides = f.ints("stage_strides", 1, 2)
    if not 2 <= len(strides) <= MAX_SPACE_STAGES:
        raise f.fail("stage_strides", f"2 to {MAX_SPACE_STAGES} stages (MAX_SPACE_STAGES)")
    kernels = f.ints("kernel_sizes", 1, MAX_SPACE_KERNEL)
    if any(k % 2 == 0 for k in kernels):
        raise f.fail("kernel_sizes", "odd kernel sizes")
    try:
        space = ProxylessSpace(
            name=f.name(), in_channels=in_channels, num_classes=num_classes,
            width_mult=f.real("width_mult", 0.05, 8.0), base_widths=f.ints("base_widths", 1, MAX_SPACE_CHANNELS),
            stage_strides=strides, kernel_sizes=kernels, expand_ratios=f.ints("expand_ratios", 1, MAX_SPACE_EXPAND),
            depths=f.ints("depths", 1, MAX_SPACE_DEPTH), resolutions=f.ints("resolutions", 8, MAX_SPACE_RESOLUTION),
            channel_divisor=f.one("channel_divisor", 1, 64), dropout=f.real("dropout", 0.0, 0.99),
            bn_eps=f.real("bn_eps", 0.0, 0.1, open_low=True), bn_momentum=f.real("bn_momentum", 0.0, 1.0),
            mean=f.reals("mean", -10.0, 10.0, in_channels), std=f.reals("std", 1e-6, 10.0, in_channels),
            labels=f.labels(num_classes))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    widest = max(max(space.widths), max(space.middle_channels(c, max(space.expand_ratios)) for c in space.widths[1:-2]))
    if widest > MAX_SPACE_CHANNELS:
        raise f.fail("base_widths", f"layers of at most {MAX_SPACE_CHANNELS} channels after width_mult and "
                                    f"expansion (MAX_SPACE_CHANNELS); the widest has {widest}")
    params = _supernet_params(space)
    if params > MAX_SUPERNET_PARAMS:
        raise ValueError(f"{where}: the space describes a supernet of about {params:,} parameters; allowed: at most "
                         f"{MAX_SUPERNET_PARAMS:,} (MAX_SUPERNET_PARAMS)")
    return space


def list_presets() -> list[str]:
    return sorted(PRESETS.names())


PRESETS: Registry[ProxylessSpace] = Registry("ProxylessNAS search space")
# The lab's `ofa_proxyless_d234_e346_k357_w1.3`: OFAProxylessNASNets(width_mult=1.3,
# ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]), ProxylessNAS widths.
PRESETS.register("ofa-proxyless-w1.3", ProxylessSpace(
    name="ofa-proxyless-w1.3", in_channels=3, num_classes=1000, width_mult=1.3,
    base_widths=(32, 16, 24, 40, 80, 96, 192, 320, 1280), stage_strides=(2, 2, 2, 1, 2, 1),
    kernel_sizes=(3, 5, 7), expand_ratios=(3, 4, 6), depths=(2, 3, 4), resolutions=tuple(range(128, 225, 4))))
