"""The search space and the subnet config: defined once, used by every other module.

A `SubnetConfig` is a plain immutable value in the MIT lab's JSON form::

    {"wid": 0, "ks": [7, 5, ...], "e": [6, 4, ...], "d": [4, 2, ...], "image_size": 224}

`wid` indexes the space's width-multiplier list, `ks` / `e` hold one entry per block slot
(stages x max depth, including slots that the depth leaves out) and `d` is the number of
active blocks per stage.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ...datasets.labels import FASHION_MNIST_LABELS as _FASHION_MNIST_LABELS
from ...registry import Registry
from ...space.config_fields import JsonConfig, as_int, as_ints
from ...space.config_text import parse_config_text
from .genome import MobileNetV3Genome
from .layout import ChannelPlan, channel_plan, make_divisible

__all__ = ["PRESETS", "SubnetConfig", "SearchSpace", "ChannelPlan", "make_divisible", "list_presets", "is_population",
           "MAX_SPACE_CHANNELS", "MAX_SPACE_STAGES", "MAX_SPACE_DEPTH", "MAX_SPACE_CHOICES", "MAX_SPACE_KERNEL",
           "MAX_SPACE_RESOLUTION", "MAX_SPACE_CLASSES", "MAX_SPACE_IN_CHANNELS", "MAX_SUPERNET_PARAMS",
           "check_space_limits"]

# Limits on a space that comes from a user's file (a supernet file): checked before anything is
# built, so a crafted file cannot make us allocate gigabytes. Our largest preset (ofa-mbv3-w1.2)
# has 1536 channels, 5 stages of depth 4, resolution 224, 1000 classes and 10.7M parameters.
MAX_SPACE_CHANNELS = 8192          # any layer's width, after the multiplier and the expansion
MAX_SPACE_STAGES = 16
MAX_SPACE_DEPTH = 16               # blocks per stage
MAX_SPACE_CHOICES = 64             # entries of any list of choices (resolutions, kernels, ...)
MAX_SPACE_KERNEL = 15
MAX_SPACE_RESOLUTION = 1024
MAX_SPACE_CLASSES = 100_000
MAX_SPACE_IN_CHANNELS = 64
MAX_SUPERNET_PARAMS = 100_000_000  # 400 MB of float32 weights, ~10x our largest preset
# The fields of a subnet config, and of a population (one array per field, a row per config).
CONFIG_FIELDS = ("wid", "ks", "e", "d", "image_size")


@dataclass(frozen=True)
class SubnetConfig(JsonConfig):
    """One subnet of a search space. Immutable, hashable and JSON-serialisable."""

    FIELDS: ClassVar[tuple[str, ...]] = CONFIG_FIELDS

    wid: int
    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    image_size: int

    def __post_init__(self) -> None:
        # Accept lists (e.g. straight from JSON) but store tuples so the value stays immutable.
        for name in ("ks", "e", "d"):
            object.__setattr__(self, name, as_ints(getattr(self, name), name))
        object.__setattr__(self, "wid", as_int(self.wid, "wid"))
        object.__setattr__(self, "image_size", as_int(self.image_size, "image_size"))



@dataclass(frozen=True)
class SearchSpace:
    """The choices of an OFA MobileNetV3-style space and the fixed layout around them.

    Layout: first conv (3x3) -> first block (depthwise-separable, expand 1) -> `num_stages`
    elastic stages of up to `max(depths)` inverted-bottleneck blocks -> final 1x1 expand ->
    global pool -> feature-mix 1x1 -> classifier.
    """

    name: str
    in_channels: int
    num_classes: int
    width_mults: tuple[float, ...]
    # Base widths before the multiplier: first_conv, first_block, one per stage, final_expand, feature_mix.
    base_widths: tuple[int, ...]
    first_conv_stride: int
    first_block_stride: int
    first_block_act: str
    first_block_se: bool
    stage_strides: tuple[int, ...]
    stage_acts: tuple[str, ...]
    stage_se: tuple[bool, ...]
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[int, ...]
    depths: tuple[int, ...]
    resolutions: tuple[int, ...]
    channel_divisor: int = 8
    se_reduction: int = 4
    dropout: float = 0.1
    # Preprocessing of raw images, owned here so that training, evaluation and export agree.
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.stage_strides)
        if not (len(self.stage_acts) == len(self.stage_se) == n and len(self.base_widths) == n + 4):
            raise ValueError(f"search space '{self.name}': stage lists disagree in length")

    # ----------------------------------------------------------------- presets
    @staticmethod
    def preset(name: str) -> "SearchSpace":
        """A named space: 'ofa-mbv3-w1.0', 'ofa-mbv3-w1.2' or 'tiny-fmnist'."""
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
        return self.num_stages * self.max_depth

    def channels(self, wid: int) -> ChannelPlan:
        return channel_plan(self, wid)

    def middle_channels(self, in_channels: int, expand_ratio: int) -> int:
        return make_divisible(round(in_channels * expand_ratio), self.channel_divisor)

    # ----------------------------------------------------------------- configs
    def validate(self, cfg: SubnetConfig | Mapping[str, Any]) -> SubnetConfig:
        """Return `cfg` as a `SubnetConfig` of this space, or raise `ValueError` naming the problem."""
        if not isinstance(cfg, SubnetConfig):
            cfg = SubnetConfig.from_dict(cfg)
        if not 0 <= cfg.wid < len(self.width_mults):
            raise ValueError(f"config field 'wid' = {cfg.wid} is not an index into the width "
                             f"multipliers {list(self.width_mults)}; allowed: 0..{len(self.width_mults) - 1}")
        for field, allowed, length in (("ks", self.kernel_sizes, self.num_slots),
                                       ("e", self.expand_ratios, self.num_slots),
                                       ("d", self.depths, self.num_stages)):
            values = getattr(cfg, field)
            if len(values) != length:
                raise ValueError(f"config field '{field}' has {len(values)} entries; space "
                                 f"'{self.name}' needs {length} (one per "
                                 f"{'stage' if field == 'd' else 'block slot'})")
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"config field '{field}' has value {bad[0]}; allowed: {list(allowed)}")
        if cfg.image_size not in self.resolutions:
            raise ValueError(f"config field 'image_size' = {cfg.image_size}; allowed: "
                             f"{_describe_range(self.resolutions)}")
        return cfg

    def _uniform(self, pick) -> SubnetConfig:
        return SubnetConfig(wid=pick(range(len(self.width_mults))),
                            ks=[pick(self.kernel_sizes)] * self.num_slots,
                            e=[pick(self.expand_ratios)] * self.num_slots,
                            d=[pick(self.depths)] * self.num_stages,
                            image_size=pick(self.resolutions))

    def largest(self) -> SubnetConfig:
        return self._uniform(max)

    def smallest(self) -> SubnetConfig:
        return self._uniform(min)

    def sample(self, rng: np.random.Generator | int | None = None) -> SubnetConfig:
        """A uniformly random config (each choice drawn independently, as OFA samples)."""
        rng = np.random.default_rng(rng)
        return SubnetConfig(
            wid=int(rng.integers(len(self.width_mults))),
            ks=rng.choice(self.kernel_sizes, self.num_slots).tolist(),
            e=rng.choice(self.expand_ratios, self.num_slots).tolist(),
            d=rng.choice(self.depths, self.num_stages).tolist(),
            image_size=int(rng.choice(self.resolutions)))

    def sample_population(self, n: int, rng: np.random.Generator | int | None = None
                          ) -> dict[str, np.ndarray]:
        """`n` uniformly random configs as a population (see `is_population`), vectorised."""
        rng = np.random.default_rng(rng)
        return {"wid": rng.integers(len(self.width_mults), size=n),
                "ks": rng.choice(np.array(self.kernel_sizes), (n, self.num_slots)),
                "e": rng.choice(np.array(self.expand_ratios), (n, self.num_slots)),
                "d": rng.choice(np.array(self.depths), (n, self.num_stages)),
                "image_size": rng.choice(np.array(self.resolutions), n)}

    def active_slots(self, cfg: SubnetConfig) -> list[int]:
        return [stage * self.max_depth + i for stage, depth in enumerate(cfg.d) for i in range(depth)]

    def parse_config(self, text: str) -> SubnetConfig:
        """Parse 'largest', 'smallest', 'random:SEED', a JSON object or a path to a JSON file."""
        return parse_config_text(self, text, SubnetConfig)

    # ----------------------------------------------------------------- encoding
    @property
    def encoding_size(self) -> int:
        return (len(self.resolutions) + len(self.width_mults)
                + self.num_slots * (len(self.kernel_sizes) + len(self.expand_ratios)))

    def encode(self, configs: SubnetConfig | Sequence[SubnetConfig]) -> np.ndarray:
        """OFA-style one-hot features, shape (N, encoding_size), float32: the genome's encoding.

        Layout: [resolution | width | per slot: ks one-hot, e one-hot]; slots the depth
        leaves out are all zeros.
        """
        return self.genome.encode(self.genome.from_arrays(self.to_arrays(configs)))

    @functools.cached_property
    def genome(self) -> MobileNetV3Genome:
        """The index encoding strategies search over (built once per space)."""
        return MobileNetV3Genome(self)

    def to_arrays(self, configs: SubnetConfig | Sequence[SubnetConfig] | Mapping[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
        """Validated configs (or a population, see `is_population`) as integer arrays: the
        population fields plus `active` (N, slots) and the choice indices, for vectorised code.

        Validation runs on the arrays; only when something is wrong are the configs checked one
        by one, to raise `validate`'s message for the first bad one.
        """
        if is_population(configs):
            ks, e, d, res, wid = self._check_population(configs)
            n = wid.shape[0]
        else:
            if isinstance(configs, (SubnetConfig, Mapping)):
                configs = [configs]
            configs = [c if isinstance(c, SubnetConfig) else SubnetConfig.from_dict(c) for c in configs]
            n = len(configs)
            arrays = self._stack(configs, n)
            if arrays is None:
                for c in configs:
                    self.validate(c)
                raise AssertionError("unreachable: a config failed the array check but passed validate()")
            ks, e, d, res, wid = arrays
        slot_index = np.arange(self.max_depth)
        active = (slot_index[None, None, :] < d[:, :, None]).reshape(n, self.num_slots)
        return {
            "wid": wid, "ks": ks, "e": e, "d": d, "image_size": res, "active": active,
            "ks_index": np.searchsorted(self.kernel_sizes, ks),
            "e_index": np.searchsorted(self.expand_ratios, e),
            "res_index": np.searchsorted(self.resolutions, res),
        }

    def _check_population(self, pop: Mapping[str, np.ndarray]):
        """(ks, e, d, image_size, wid) of a population (see `is_population`), or ValueError."""
        missing = [key for key in CONFIG_FIELDS if key not in pop]
        if missing:
            raise ValueError(f"a population needs the fields {list(CONFIG_FIELDS)}; missing {missing}")
        wid = np.asarray(pop["wid"], np.int64).reshape(-1)
        n = wid.shape[0]
        shapes = {"ks": (n, self.num_slots), "e": (n, self.num_slots), "d": (n, self.num_stages),
                  "image_size": (n,)}
        arrays = {}
        for key, shape in shapes.items():
            value = np.asarray(pop[key], np.int64)
            if value.shape != shape:
                raise ValueError(f"population field '{key}' has shape {value.shape}; space "
                                 f"'{self.name}' needs {shape}")
            arrays[key] = value
        for key, allowed in (("ks", self.kernel_sizes), ("e", self.expand_ratios), ("d", self.depths),
                             ("image_size", self.resolutions)):
            bad = ~np.isin(arrays[key], allowed)
            if bad.any():
                raise ValueError(f"population field '{key}' has value {arrays[key][bad][0]}; "
                                 f"allowed: {list(allowed)}")
        if ((wid < 0) | (wid >= len(self.width_mults))).any():
            raise ValueError(f"population field 'wid' must index the width multipliers "
                             f"{list(self.width_mults)}; allowed: 0..{len(self.width_mults) - 1}")
        return arrays["ks"], arrays["e"], arrays["d"], arrays["image_size"], wid

    def from_arrays(self, pop: Mapping[str, np.ndarray]) -> list[SubnetConfig]:
        """The configs of a population (validated), in order."""
        ks, e, d, res, wid = self._check_population(pop)
        return [SubnetConfig(wid=int(w), ks=tuple(k.tolist()), e=tuple(x.tolist()), d=tuple(y.tolist()),
                             image_size=int(r)) for w, k, x, y, r in zip(wid, ks, e, d, res)]

    def _stack(self, configs: list[SubnetConfig], n: int):
        """(ks, e, d, image_size, wid) arrays if every config is valid, else None."""
        slots, stages = self.num_slots, self.num_stages
        if not all(len(c.ks) == slots and len(c.e) == slots and len(c.d) == stages for c in configs):
            return None
        chain = itertools.chain.from_iterable
        ks = np.fromiter(chain(c.ks for c in configs), np.int64, n * slots).reshape(n, slots)
        e = np.fromiter(chain(c.e for c in configs), np.int64, n * slots).reshape(n, slots)
        d = np.fromiter(chain(c.d for c in configs), np.int64, n * stages).reshape(n, stages)
        res = np.fromiter((c.image_size for c in configs), np.int64, n)
        wid = np.fromiter((c.wid for c in configs), np.int64, n)
        valid = (np.isin(ks, self.kernel_sizes).all() and np.isin(e, self.expand_ratios).all()
                 and np.isin(d, self.depths).all() and np.isin(res, self.resolutions).all()
                 and ((wid >= 0) & (wid < len(self.width_mults))).all())
        return (ks, e, d, res, wid) if valid else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def is_population(value: Any) -> bool:
    """True for a *population*: a mapping of integer arrays with one row per config,
    `wid` (N,), `ks` and `e` (N, slots), `d` (N, stages), `image_size` (N,) -- the form the
    vectorised code (predictors, search) passes around instead of lists of `SubnetConfig`."""
    return isinstance(value, Mapping) and isinstance(value.get("wid"), np.ndarray)


def _describe_range(values: Sequence[int]) -> str:
    steps = {b - a for a, b in zip(values, values[1:])}
    if len(values) > 6 and len(steps) == 1:
        return f"{values[0]}..{values[-1]} step {steps.pop()}"
    return str(list(values))


_OFA_MBV3 = dict(
    in_channels=3, num_classes=1000,
    base_widths=(16, 16, 24, 40, 80, 112, 160, 960, 1280),
    first_conv_stride=2, first_block_stride=1, first_block_act="relu", first_block_se=False,
    stage_strides=(2, 2, 2, 1, 2),
    stage_acts=("relu", "relu", "h_swish", "h_swish", "h_swish"),
    stage_se=(False, True, False, True, True),
    kernel_sizes=(3, 5, 7), expand_ratios=(3, 4, 6), depths=(2, 3, 4),
)

# The dataset's class names live with the dataset (`ofa_engine.datasets.labels`); kept under
# this name for the presets below and for callers that import it from here.
FASHION_MNIST_LABELS = _FASHION_MNIST_LABELS

PRESETS: Registry[SearchSpace] = Registry("search space")
PRESETS.register("ofa-mbv3-w1.0", SearchSpace(name="ofa-mbv3-w1.0", width_mults=(1.0,),
                                              resolutions=tuple(range(128, 225, 4)), **_OFA_MBV3))
PRESETS.register("ofa-mbv3-w1.2", SearchSpace(name="ofa-mbv3-w1.2", width_mults=(1.2,),
                                              resolutions=tuple(range(160, 225, 4)), **_OFA_MBV3))
# Our bundled Fashion-MNIST supernet: the same family, scaled down (sized in docs/core.md).
PRESETS.register("tiny-fmnist", SearchSpace(
    name="tiny-fmnist", in_channels=1, num_classes=10,
    width_mults=(0.5, 0.75, 1.0),
    base_widths=(16, 16, 24, 32, 48, 72, 96, 256, 512),
    first_conv_stride=2, first_block_stride=1, first_block_act="relu", first_block_se=False,
    stage_strides=(2, 2, 1, 2, 1),
    stage_acts=("relu", "relu", "h_swish", "h_swish", "h_swish"),
    stage_se=(False, True, False, True, True),
    kernel_sizes=(3, 5, 7), expand_ratios=(3, 4, 6), depths=(2, 3),
    resolutions=(20, 24, 28, 32),
    mean=(0.2860,), std=(0.3530,), labels=FASHION_MNIST_LABELS,
))


def _limit_error(where: str, field: str, value: Any, allowed: str) -> ValueError:
    shown = repr(value)
    return ValueError(f"{where}: field '{field}' = {shown[:80] + '...' if len(shown) > 80 else shown}; "
                      f"allowed: {allowed}")


def check_space_limits(space: SearchSpace, where: str = "space") -> SearchSpace:
    """`space` when every field has its type and stays within the MAX_SPACE_* limits (and the
    supernet it describes within MAX_SUPERNET_PARAMS), else `ValueError` naming `where`, the
    field, the value and the limit. Arithmetic only: nothing is allocated."""
    def ints(field: str, low: int, high: int, limit: str, *, many: bool = False) -> None:
        value = getattr(space, field)
        items = value if many else (value,)
        if many and (not isinstance(value, tuple) or not 1 <= len(value) <= MAX_SPACE_CHOICES):
            raise _limit_error(where, field, value, f"a list of 1..{MAX_SPACE_CHOICES} integers (MAX_SPACE_CHOICES)")
        for v in items:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not low <= v <= high:
                raise _limit_error(where, field, value, f"integers {low}..{high} ({limit})")

    def reals(field: str, low: float, high: float, *, many: bool = True, size: int | None = None) -> None:
        value = getattr(space, field)
        items = value if many else (value,)
        if many and (not isinstance(value, tuple) or not 1 <= len(value) <= MAX_SPACE_CHOICES
                     or (size is not None and len(value) != size)):
            count = f"{size} numbers" if size is not None else f"1..{MAX_SPACE_CHOICES} numbers"
            raise _limit_error(where, field, value, f"a list of {count}")
        for v in items:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
                raise _limit_error(where, field, value, f"finite numbers in [{low}, {high}]")

    if not isinstance(space.name, str) or not 0 < len(space.name) <= 100:
        raise _limit_error(where, "name", space.name, "a name of 1..100 characters")
    ints("in_channels", 1, MAX_SPACE_IN_CHANNELS, "MAX_SPACE_IN_CHANNELS")
    ints("num_classes", 1, MAX_SPACE_CLASSES, "MAX_SPACE_CLASSES")
    ints("channel_divisor", 1, 64, "channel divisor")
    ints("se_reduction", 1, 64, "SE reduction")
    ints("first_conv_stride", 1, 2, "strides")
    ints("first_block_stride", 1, 2, "strides")
    ints("stage_strides", 1, 2, "strides", many=True)
    if len(space.stage_strides) > MAX_SPACE_STAGES:
        raise _limit_error(where, "stage_strides", space.stage_strides,
                           f"at most {MAX_SPACE_STAGES} stages (MAX_SPACE_STAGES)")
    ints("depths", 1, MAX_SPACE_DEPTH, "MAX_SPACE_DEPTH", many=True)
    ints("kernel_sizes", 1, MAX_SPACE_KERNEL, "MAX_SPACE_KERNEL", many=True)
    if any(k % 2 == 0 for k in space.kernel_sizes):
        raise _limit_error(where, "kernel_sizes", space.kernel_sizes, "odd kernel sizes")
    ints("expand_ratios", 1, 16, "expand ratios", many=True)
    ints("resolutions", 8, MAX_SPACE_RESOLUTION, "MAX_SPACE_RESOLUTION", many=True)
    ints("base_widths", 1, MAX_SPACE_CHANNELS, "MAX_SPACE_CHANNELS", many=True)
    reals("width_mults", 0.05, 8.0)
    reals("dropout", 0.0, 0.99, many=False)
    reals("mean", -10.0, 10.0, size=space.in_channels)
    reals("std", 1e-6, 10.0, size=space.in_channels)
    acts = ("relu", "h_swish")
    for field, value in (("first_block_act", (space.first_block_act,)), ("stage_acts", space.stage_acts)):
        if not isinstance(value, tuple) or any(a not in acts for a in value):
            raise _limit_error(where, field, value, f"activations from {list(acts)}")
    for field, value in (("first_block_se", (space.first_block_se,)), ("stage_se", space.stage_se)):
        if not isinstance(value, tuple) or any(not isinstance(v, bool) for v in value):
            raise _limit_error(where, field, value, "true / false")
    if not isinstance(space.labels, tuple) or (space.labels and len(space.labels) != space.num_classes) \
            or any(not isinstance(v, str) or len(v) > 200 for v in space.labels):
        raise _limit_error(where, "labels", space.labels, f"none, or {space.num_classes} names of up to 200 characters")

    # Widest layer and parameter count of the supernet (its largest subnet), by arithmetic.
    mult = max(space.width_mults)
    w = [make_divisible(b * mult, space.channel_divisor) for b in space.base_widths]
    k2, e, depth = max(space.kernel_sizes) ** 2, max(space.expand_ratios), max(space.depths)
    widest = max(max(w), max(space.middle_channels(c, e) for c in w[2:-2]))
    if widest > MAX_SPACE_CHANNELS:
        raise _limit_error(where, "base_widths", space.base_widths,
                           f"layers of at most {MAX_SPACE_CHANNELS} channels after width multiplier "
                           f"{mult} and expand ratio {e} (MAX_SPACE_CHANNELS); the widest has {widest}")
    params = space.in_channels * w[0] * 9 + w[0] * 9 + w[0] * w[1]
    c_in = w[1]
    for c_out in w[2:-2]:
        for _ in range(depth):
            mid = space.middle_channels(c_in, e)
            params += c_in * mid + mid * k2 + mid * c_out + 2 * mid * (mid // space.se_reduction + 1) + 4 * mid
            c_in = c_out
    params += c_in * w[-2] + w[-2] * w[-1] + (w[-1] + 1) * space.num_classes
    if params > MAX_SUPERNET_PARAMS:
        raise ValueError(f"{where}: the space describes a supernet of about {params:,} parameters; "
                         f"allowed: at most {MAX_SUPERNET_PARAMS:,} (MAX_SUPERNET_PARAMS)")
    return space


def list_presets() -> list[str]:
    return sorted(PRESETS.names())


def space_from_dict(data: Any, where: str = "space") -> SearchSpace:
    """The `SearchSpace` of its `to_dict()` form; `ValueError` naming `where` and the field."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object of search-space fields, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(SearchSpace)}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown}; allowed: {sorted(fields)}")
    required = [name for name, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise ValueError(f"{where}: missing fields {missing}")
    try:
        space = SearchSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    # A user's file: bounded before anything is built from it (MAX_SPACE_*, MAX_SUPERNET_PARAMS).
    return check_space_limits(space, where)
