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
from ...space.space_fields import SpaceFields
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
    f = SpaceFields(data, ViTSpace, where)
    in_channels = f.one("in_channels", 1, MAX_SPACE_IN_CHANNELS)
    num_classes = f.one("num_classes", 2, MAX_SPACE_CLASSES)
    try:
        return ViTSpace(
            name=f.name(), in_channels=in_channels, num_classes=num_classes,
            image_size=f.one("image_size", 1, MAX_SPACE_RESOLUTION), patch_size=f.one("patch_size", 1, MAX_SPACE_RESOLUTION),
            embed_dims=f.ints("embed_dims", 1, MAX_SPACE_WIDTH), depths=f.ints("depths", 1, MAX_SPACE_DEPTH),
            num_heads=f.ints("num_heads", 1, MAX_SPACE_HEADS), mlp_ratios=f.reals("mlp_ratios", 0.0625, MAX_SPACE_MLP_RATIO),
            head_dim=f.one("head_dim", 1, MAX_SPACE_HEAD_DIM),
            layer_norm_eps=f.real("layer_norm_eps", 0.0, 1.0, open_low=True, open_high=True),
            mean=f.reals("mean", -1e3, 1e3, in_channels), std=f.reals("std", 1e-6, 1e3, in_channels),
            labels=f.labels(num_classes))
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
