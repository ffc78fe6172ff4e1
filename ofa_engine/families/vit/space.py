"""The ViT search space and the subnet config: defined once, used by every other module of the family.

A `ViTConfig` is a plain immutable value in HAT's JSON style::

    {"embed_dim": 96, "depth": 6, "num_heads": [4, 3, 4, 2, 4, 4],
     "mlp_ratio": [2.0, 1.5, 2.0, 2.0, 1.0, 2.0], "image_size": 28}

`embed_dim` is the width of the residual stream (the first channels after the importance
sort), `depth` the number of encoder blocks kept (the first ones). `num_heads` and `mlp_ratio`
hold one entry per block slot (the space's largest depth), including the slots that the
depth leaves out, as the CNN's `ks` / `e` do: every config of a space has the same shape, and
a genome is a fixed-length row. A block's MLP has `round(mlp_ratio * embed_dim)` hidden units;
each head has the space's fixed `head_dim`.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ...registry import Registry
from ...space.config_fields import JsonConfig, as_float, as_int, as_list
from ...space.config_text import parse_config_text
from .genome import ViTGenome

__all__ = ["PRESETS", "ViTConfig", "ViTSpace", "CONFIG_FIELDS", "list_presets"]

CONFIG_FIELDS = ("embed_dim", "depth", "num_heads", "mlp_ratio", "image_size")
_PER_SLOT = "a list (one entry per block slot)"


@dataclass(frozen=True)
class ViTConfig(JsonConfig):
    """One subnet of a ViT space. Immutable, hashable and JSON-serialisable."""

    FIELDS: ClassVar[tuple[str, ...]] = CONFIG_FIELDS
    KIND: ClassVar[str] = "ViT"

    embed_dim: int
    depth: int
    num_heads: tuple[int, ...]
    mlp_ratio: tuple[float, ...]
    image_size: int

    def __post_init__(self) -> None:
        # Accept lists (straight from JSON) but store tuples so the value stays immutable.
        object.__setattr__(self, "num_heads", tuple(as_int(v, "num_heads") for v in as_list(self.num_heads, "num_heads", _PER_SLOT)))
        object.__setattr__(self, "mlp_ratio", tuple(as_float(v, "mlp_ratio") for v in as_list(self.mlp_ratio, "mlp_ratio", _PER_SLOT)))
        for name in ("embed_dim", "depth", "image_size"):
            object.__setattr__(self, name, as_int(getattr(self, name), name))



@dataclass(frozen=True)
class ViTSpace:
    """The choices of an elastic Vision Transformer and the fixed layout around them.

    Layout: patch embedding (conv, kernel = stride = `patch_size`) -> + learned position
    embedding -> `max(depths)` pre-norm encoder blocks (LN -> multi-head self-attention ->
    + residual, LN -> MLP with GELU -> + residual) -> LN -> mean over the tokens -> linear
    classifier. No class token: mean pooling needs no extra parameter, keeps the token count
    (and attention's quadratic term) at the patch count, and trains as well as a class token
    on small images (timm's `global_pool='avg'`).
    """

    name: str
    in_channels: int
    num_classes: int
    image_size: int
    patch_size: int
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    head_dim: int
    layer_norm_eps: float = 1e-6
    # Preprocessing of raw images, owned here so that training, evaluation and export agree.
    mean: tuple[float, ...] = (0.2860,)
    std: tuple[float, ...] = (0.3530,)
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field in ("embed_dims", "depths", "num_heads", "mlp_ratios"):
            values = getattr(self, field)
            if not values or list(values) != sorted(set(values)):
                raise ValueError(f"space '{self.name}': field '{field}' = {list(values)}; "
                                 f"allowed: a non-empty ascending list without repeats")
        if self.image_size % self.patch_size:
            raise ValueError(f"space '{self.name}': image_size {self.image_size} is not a multiple of "
                             f"patch_size {self.patch_size}")
        for c in self.embed_dims:
            for r in self.mlp_ratios:
                if abs(r * c - round(r * c)) > 1e-9:
                    raise ValueError(f"space '{self.name}': mlp_ratio {r} x embed_dim {c} is not a whole "
                                     f"number of hidden units")

    # ----------------------------------------------------------------- presets
    @staticmethod
    def preset(name: str) -> "ViTSpace":
        """A named space (see `list_presets()`)."""
        return PRESETS.get(name)

    # ----------------------------------------------------------------- layout
    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def num_patches(self) -> int:
        """Tokens of the encoder: the patch grid (no class token)."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The input resolutions of the space: one (the position embedding is not elastic)."""
        return (self.image_size,)

    def mlp_hidden(self, embed_dim: Any, mlp_ratio: Any) -> Any:
        """Hidden units of a block's MLP: round(ratio x embed_dim) (ints or int64 arrays)."""
        hidden = np.rint(np.asarray(mlp_ratio, np.float64) * np.asarray(embed_dim)).astype(np.int64)
        return int(hidden) if hidden.ndim == 0 else hidden

    @property
    def max_mlp_hidden(self) -> int:
        return self.mlp_hidden(max(self.embed_dims), max(self.mlp_ratios))

    # ----------------------------------------------------------------- configs
    def validate(self, cfg: ViTConfig | Mapping[str, Any]) -> ViTConfig:
        """`cfg` as a `ViTConfig` of this space, or `ValueError` naming the field, the value and
        what is allowed."""
        if not isinstance(cfg, ViTConfig):
            cfg = ViTConfig.from_dict(cfg)
        for field, allowed in (("embed_dim", self.embed_dims), ("depth", self.depths),
                               ("image_size", self.resolutions)):
            value = getattr(cfg, field)
            if value not in allowed:
                raise ValueError(f"config field '{field}' = {value}; allowed: {list(allowed)}")
        for field, allowed in (("num_heads", self.num_heads), ("mlp_ratio", self.mlp_ratios)):
            values = getattr(cfg, field)
            if len(values) != self.max_depth:
                raise ValueError(f"config field '{field}' has {len(values)} entries; space '{self.name}' "
                                 f"needs {self.max_depth} (one per block slot, slots past 'depth' ignored)")
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"config field '{field}' has value {bad[0]}; allowed: {list(allowed)}")
        return cfg

    def _uniform(self, pick) -> ViTConfig:
        return ViTConfig(embed_dim=pick(self.embed_dims), depth=pick(self.depths),
                         num_heads=[pick(self.num_heads)] * self.max_depth,
                         mlp_ratio=[pick(self.mlp_ratios)] * self.max_depth, image_size=self.image_size)

    def largest(self) -> ViTConfig:
        return self._uniform(max)

    def smallest(self) -> ViTConfig:
        return self._uniform(min)

    def sample(self, rng: np.random.Generator | int | None = None) -> ViTConfig:
        """A uniformly random config (each choice drawn independently, as OFA and HAT sample)."""
        return self.genome.to_configs(self.genome.random(1, np.random.default_rng(rng)))[0]

    def parse_config(self, text: str) -> ViTConfig:
        """Parse 'largest', 'smallest', 'random:SEED', a JSON object or a path to a JSON file."""
        return parse_config_text(self, text, ViTConfig)

    @functools.cached_property
    def genome(self) -> ViTGenome:
        """The index encoding strategies search over (built once per space)."""
        return ViTGenome(self)

    def to_arrays(self, configs: ViTConfig | Mapping[str, Any] | Sequence[Any]) -> dict[str, np.ndarray]:
        """Validated configs as arrays, one row per config: `embed_dim`, `depth` (N,),
        `num_heads`, `mlp_hidden` (N, slots) int64, `active` (N, slots) bool."""
        return self.genome.values(self.genome.from_configs(configs))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Limits on a space read from a file (a package's manifest, a checkpoint): far above the presets,
# low enough that no file can make the engine allocate without bound.
MAX_SPACE_WIDTH = 4096
MAX_SPACE_DEPTH = 64
MAX_SPACE_HEADS = 64
MAX_SPACE_HEAD_DIM = 256
MAX_SPACE_MLP_RATIO = 16.0
MAX_SPACE_CHOICES = 64
MAX_SPACE_RESOLUTION = 1024
MAX_SPACE_CLASSES = 100_000
MAX_SPACE_IN_CHANNELS = 64


def space_from_dict(data: Any, where: str = "space") -> ViTSpace:
    """The `ViTSpace` of its `to_dict()` form; `ValueError` naming `where`, the field and what
    is allowed (unknown or missing fields, wrong types, values past the limits above)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object of search-space fields, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(ViTSpace)}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown}; allowed: {sorted(fields)}")
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise ValueError(f"{where}: missing fields {missing}")

    def ints(name: str, low: int, high: int) -> tuple[int, ...]:
        values = data[name]
        if (not isinstance(values, (list, tuple)) or not 0 < len(values) <= MAX_SPACE_CHOICES
                or any(isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high for v in values)):
            raise ValueError(f"{where}: field '{name}' = {values!r}; allowed: a list of 1 to {MAX_SPACE_CHOICES} "
                             f"integers in [{low}, {high}]")
        return tuple(values)

    def one(name: str, low: int, high: int) -> int:
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{where}: field '{name}' = {value!r}; allowed: an integer in [{low}, {high}]")
        return value

    def reals(name: str, low: float, high: float, size: int | None = None) -> tuple[float, ...]:
        values = data.get(name, fields[name].default)
        if (not isinstance(values, (list, tuple)) or not 0 < len(values) <= MAX_SPACE_CHOICES
                or (size is not None and len(values) != size)
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high for v in values)):
            count = f"{size}" if size is not None else f"1 to {MAX_SPACE_CHOICES}"
            raise ValueError(f"{where}: field '{name}' = {values!r}; allowed: a list of {count} numbers in "
                             f"[{low:g}, {high:g}]")
        return tuple(float(v) for v in values)

    name = data["name"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: field 'name' = {name!r}; allowed: a non-empty string")
    in_channels = one("in_channels", 1, MAX_SPACE_IN_CHANNELS)
    labels = data.get("labels", ())
    if not isinstance(labels, (list, tuple)) or any(not isinstance(x, str) for x in labels):
        raise ValueError(f"{where}: field 'labels' = {labels!r}; allowed: a list of strings")
    eps = data.get("layer_norm_eps", fields["layer_norm_eps"].default)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ValueError(f"{where}: field 'layer_norm_eps' = {eps!r}; allowed: a number in (0, 1)")
    try:
        return ViTSpace(
            name=name, in_channels=in_channels, num_classes=one("num_classes", 2, MAX_SPACE_CLASSES),
            image_size=one("image_size", 1, MAX_SPACE_RESOLUTION), patch_size=one("patch_size", 1, MAX_SPACE_RESOLUTION),
            embed_dims=ints("embed_dims", 1, MAX_SPACE_WIDTH), depths=ints("depths", 1, MAX_SPACE_DEPTH),
            num_heads=ints("num_heads", 1, MAX_SPACE_HEADS), mlp_ratios=reals("mlp_ratios", 0.0625, MAX_SPACE_MLP_RATIO),
            head_dim=one("head_dim", 1, MAX_SPACE_HEAD_DIM), layer_norm_eps=float(eps),
            mean=reals("mean", -1e3, 1e3, in_channels), std=reals("std", 1e-6, 1e3, in_channels),
            labels=tuple(labels))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def list_presets() -> list[str]:
    return sorted(PRESETS.names())


FASHION_MNIST_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

PRESETS: Registry[ViTSpace] = Registry("ViT search space")
_FMNIST = dict(in_channels=1, num_classes=10, image_size=28, mean=(0.2860,), std=(0.3530,),
               labels=FASHION_MNIST_LABELS)
# Sized by measured training speed on the 2-core CPU (docs/vit.md, benchmarks/bench_vit_train_speed.py).
PRESETS.register("vit-fmnist", ViTSpace(
    name="vit-fmnist", patch_size=4, embed_dims=(48, 64, 80), depths=(3, 4, 5), num_heads=(2, 3, 4),
    mlp_ratios=(1.0, 1.5, 2.0), head_dim=16, **_FMNIST))
