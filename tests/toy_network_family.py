"""A toy network family, defined here only: a tiny elastic CNN on 1 x 8 x 8 images behind the
family interface (`ofa_engine.space.family.NetworkFamily`), for tests that drive the whole
pipeline (package -> specialize -> ONNX) on a family the engine has never heard of.

Layout: conv 3x3 stem (`width` channels) + BN + ReLU -> `depth` blocks of conv 3x3 (`width`
-> `width`) + BN + ReLU -> global average pool -> linear classifier. Elastic: `width` (the
first channels of every layer), `depth` (the first blocks) and `image_size` (the input is
resized by preprocessing). Closed forms count what torch's FLOP counter counts (convolutions
and the classifier; BN, ReLU and the pool are free), the params of the extracted module and,
for the fp32 file, the BN-folded weights and biases.

The family is not registered on import: a test registers it (`FAMILIES.register("toy",
ToyNetFamily)`) and unregisters it when done.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ofa_engine.space.family import NetworkFamily
from ofa_engine.space.genome import CategoricalGenome
from ofa_engine.space.interface import ACTIVATION_BYTES

__all__ = ["ToyNetConfig", "ToyNetSpace", "ToyNetFamily", "ToyNetSupernet", "PRESET", "LABELS", "FAMILY",
           "synthetic_images", "trained_supernet"]

FAMILY = "toy"
LABELS = ("blank", "horizontal", "vertical")
CONFIG_FIELDS = ("width", "depth", "image_size")
KERNEL = 3


@dataclass(frozen=True)
class ToyNetConfig:
    """One subnet: immutable, hashable, JSON-serialisable."""

    width: int
    depth: int
    image_size: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ToyNetConfig":
        if not isinstance(data, Mapping) or set(data) != set(CONFIG_FIELDS):
            raise ValueError(f"a toy subnet config needs exactly the fields {list(CONFIG_FIELDS)}, got "
                             f"{sorted(data) if isinstance(data, Mapping) else type(data).__name__}")
        for name in CONFIG_FIELDS:
            if isinstance(data[name], bool) or not isinstance(data[name], (int, np.integer)):
                raise ValueError(f"config field '{name}' = {data[name]!r}; allowed: an integer")
        return cls(**{name: int(data[name]) for name in CONFIG_FIELDS})


@dataclass(frozen=True)
class ToyNetSpace:
    """The choices of the toy CNN and what every family's space offers (space/family.py)."""

    name: str
    in_channels: int
    num_classes: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    resolutions: tuple[int, ...]
    mean: tuple[float, ...] = (0.2,)
    std: tuple[float, ...] = (0.3,)
    labels: tuple[str, ...] = ()

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def options(self) -> dict[str, tuple[int, ...]]:
        return {"width": self.widths, "depth": self.depths, "image_size": self.resolutions}

    def validate(self, config: ToyNetConfig | Mapping[str, Any]) -> ToyNetConfig:
        cfg = config if isinstance(config, ToyNetConfig) else ToyNetConfig.from_dict(config)
        for field, allowed in self.options().items():
            if getattr(cfg, field) not in allowed:
                raise ValueError(f"config field '{field}' = {getattr(cfg, field)}; allowed: {list(allowed)}")
        return cfg

    def largest(self) -> ToyNetConfig:
        return ToyNetConfig(max(self.widths), max(self.depths), max(self.resolutions))

    def smallest(self) -> ToyNetConfig:
        return ToyNetConfig(min(self.widths), min(self.depths), min(self.resolutions))

    @property
    def genome(self) -> CategoricalGenome:
        return CategoricalGenome(CONFIG_FIELDS, [len(v) for v in self.options().values()],
                                 groups={"resolution": [2]})

    def sample(self, rng: np.random.Generator | int | None = None) -> ToyNetConfig:
        genes = self.genome.random(1, np.random.default_rng(rng))[0]
        return ToyNetConfig(*(int(opts[i]) for opts, i in zip(self.options().values(), genes)))

    def parse_config(self, text: str) -> ToyNetConfig:
        """'largest', 'smallest', 'random:SEED' or a JSON object."""
        text = text.strip()
        if text in ("largest", "smallest"):
            return getattr(self, text)()
        if text.startswith("random:") and text[7:].isdigit():
            return self.sample(int(text[7:]))
        try:
            return self.validate(json.loads(text))
        except json.JSONDecodeError:
            raise ValueError(f"config '{text}' is neither largest, smallest, random:SEED nor a JSON object") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def space_from_dict(data: Any, where: str = "space") -> ToyNetSpace:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be an object of toy space fields, got {type(data).__name__}")
    fields = {f.name for f in dataclasses.fields(ToyNetSpace)}
    unknown = sorted(set(map(str, data)) - fields)
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown}; allowed: {sorted(fields)}")
    try:
        return ToyNetSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


PRESET = ToyNetSpace(name="toy-8x8", in_channels=1, num_classes=3, widths=(4, 6, 8), depths=(1, 2, 3),
                     resolutions=(6, 8), labels=LABELS)


# ---------------------------------------------------------------------- closed forms
def closed_form(space: ToyNetSpace, width: Any, depth: Any, size: Any) -> dict[str, Any]:
    """Every metric of subnets (ints or int64 arrays broadcast together)."""
    w, d, s = (np.asarray(v, np.int64) for v in (width, depth, size))
    c, k, taps = space.in_channels, space.num_classes, KERNEL * KERNEL
    pixels = s * s
    macs = pixels * w * c * taps + d * pixels * w * w * taps + w * k
    params = (taps * c * w + 2 * w) + d * (taps * w * w + 2 * w) + (w * k + k)
    folded = (taps * c * w + w) + d * (taps * w * w + w) + (w * k + k)    # BN into conv biases
    biases = w + d * w + k
    peak = np.maximum(np.maximum(c * pixels + w * pixels, np.where(d > 0, 2 * w * pixels, 0)), w * pixels + w)
    return {"macs": macs, "params": params, "peak_activation_bytes": peak,
            "flash_bytes": folded + 3 * biases,                 # int8 weights, int32 biases
            "flash_bytes_fp32": 4 * folded}


def layer_rows(space: ToyNetSpace, cfg: ToyNetConfig) -> list[dict[str, Any]]:
    w, s, c, k, taps = cfg.width, cfg.image_size, space.in_channels, space.num_classes, KERNEL * KERNEL
    rows = [{"layer": "stem", "group": "stem", "kind": "conv 3x3 + BN + ReLU", "choices": {"width": w},
             "in_shape": (c, s, s), "out_shape": (w, s, s), "width": w, "macs": s * s * w * c * taps,
             "params": taps * c * w + 2 * w, "active": True}]
    for i in range(space.max_depth):
        rows.append({"layer": f"B{i + 1}", "group": "blocks", "kind": "conv 3x3 + BN + ReLU", "choices": {"width": w},
                     "in_shape": (w, s, s), "out_shape": (w, s, s), "width": w, "macs": s * s * w * w * taps,
                     "params": taps * w * w + 2 * w, "active": i < cfg.depth})
    rows.append({"layer": "head", "group": "head", "kind": "average pool + classifier", "choices": {},
                 "in_shape": (w, s, s), "out_shape": (k,), "width": w, "macs": w * k, "params": w * k + k,
                 "active": True})
    return rows


# ---------------------------------------------------------------------- the family
class ToyNetFamily(NetworkFamily):
    """The toy family bound to a `ToyNetSpace` (or its preset's name)."""

    family = FAMILY

    @staticmethod
    def accepts(space: Any) -> bool:
        return isinstance(space, ToyNetSpace) or space == PRESET.name

    @staticmethod
    def preset_names() -> list[str]:
        return [PRESET.name]

    @classmethod
    def space_from_dict(cls, data: Any, where: str = "space") -> ToyNetSpace:
        return space_from_dict(data, where)

    @classmethod
    def preset(cls, name: str) -> ToyNetSpace:
        if name != PRESET.name:
            raise ValueError(f"unknown toy space '{name}'; known: {PRESET.name}")
        return PRESET

    def __init__(self, space: ToyNetSpace | str, fast: bool = True):
        self.space = self.preset(space) if isinstance(space, str) else space
        self.name = self.space.name
        self._genome = self.space.genome
        self._options = {k: np.array(v, np.int64) for k, v in self.space.options().items()}

    @property
    def genome(self) -> CategoricalGenome:
        return self._genome

    def validate(self, config: Any) -> ToyNetConfig:
        return self.space.validate(config)

    def to_configs(self, genes: np.ndarray) -> list[ToyNetConfig]:
        v = self._values(genes)
        return [ToyNetConfig(int(w), int(d), int(s)) for w, d, s in zip(v["width"], v["depth"], v["image_size"])]

    def to_genes(self, configs: Any) -> np.ndarray:
        configs = [configs] if isinstance(configs, (ToyNetConfig, Mapping)) else list(configs)
        rows = [[int(np.searchsorted(self._options[f], getattr(self.validate(c), f))) for f in CONFIG_FIELDS]
                for c in configs]
        return np.array(rows, np.int64).reshape(len(rows), len(CONFIG_FIELDS))

    def config_to_dict(self, config: Any) -> dict[str, Any]:
        return self.validate(config).to_dict()

    def config_from_dict(self, data: Mapping[str, Any]) -> ToyNetConfig:
        return self.validate(data)

    def _values(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        genes = np.asarray(genes, np.int64).reshape(-1, len(CONFIG_FIELDS))
        return {f: self._options[f][genes[:, i]] for i, f in enumerate(CONFIG_FIELDS)}

    def analytic_efficiency(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        v = self._values(genes)
        return closed_form(self.space, v["width"], v["depth"], v["image_size"])

    def analyze(self, configs: Any) -> dict[str, Any]:
        out = self.analytic_efficiency(self.to_genes(configs))
        if isinstance(configs, (ToyNetConfig, Mapping)):
            return {k: int(v[0]) for k, v in out.items()}
        return out

    def deployment_bytes(self, configs: Any, precision: str) -> dict[str, Any]:
        """fp32: the BN-folded float32 weights and biases; int8: `flash_bytes` (scales left out)."""
        out = self.analyze(configs)
        flash = out["flash_bytes_fp32"] if precision == "fp32" else out["flash_bytes"]
        peak = out["peak_activation_bytes"] * ACTIVATION_BYTES[precision]
        return {"flash_bytes": flash, "peak_activation_bytes": peak}

    def build_supernet(self) -> Any:
        return ToyNetSupernet(self.space)

    def fold_bn(self, module: Any) -> Any:
        from torch.nn.utils.fusion import fuse_conv_bn_eval
        layers = list(module.layers)
        for i, layer in enumerate(layers[:-1]):
            if isinstance(layer, nn.Conv2d) and isinstance(layers[i + 1], nn.BatchNorm2d):
                layers[i], layers[i + 1] = fuse_conv_bn_eval(layer, layers[i + 1]), nn.Identity()
        module.layers = nn.Sequential(*layers)
        return module

    @property
    def encoding_size(self) -> int:
        return int(self.genome.encoding_size)

    def encode(self, configs: Any) -> np.ndarray:
        return self.genome.encode(self.to_genes(configs))

    def describe(self, config: Any) -> list[dict[str, Any]]:
        return layer_rows(self.space, self.validate(config))


# ---------------------------------------------------------------------- the networks
class ToyNet(nn.Module):
    """An extracted subnet: standard layers only, with `config` and `space_name`."""

    def __init__(self, layers: Sequence[nn.Module], config: ToyNetConfig, space_name: str):
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.config, self.space_name = config, space_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ToyNetSupernet(nn.Module):
    """The elastic supernet: every layer owns its widest weights; `forward(x, config)` slices
    them (stateless), `extract(config)` copies the slices into a `ToyNet`."""

    def __init__(self, space: ToyNetSpace):
        super().__init__()
        self.space = space
        width = max(space.widths)
        channels = [space.in_channels] + [width] * space.max_depth
        self.convs = nn.ModuleList(nn.Conv2d(c, width, KERNEL, padding=1, bias=False) for c in channels)
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in channels)
        self.classifier = nn.Linear(width, space.num_classes)

    def forward(self, x: torch.Tensor, config: Any) -> torch.Tensor:
        cfg = self.space.validate(config)
        w = cfg.width
        for conv, bn in list(zip(self.convs, self.bns))[:cfg.depth + 1]:
            x = F.conv2d(x, conv.weight[:w, :x.shape[1]], padding=1)
            x = F.relu(F.batch_norm(x, bn.running_mean[:w], bn.running_var[:w], bn.weight[:w], bn.bias[:w],
                                    self.training, bn.momentum, bn.eps))
        return F.linear(x.mean((2, 3)), self.classifier.weight[:, :w], self.classifier.bias)

    @torch.no_grad()
    def extract(self, config: Any) -> ToyNet:
        cfg = self.space.validate(config)
        w, layers = cfg.width, []
        for i, (conv, bn) in enumerate(list(zip(self.convs, self.bns))[:cfg.depth + 1]):
            static = nn.Conv2d(self.space.in_channels if i == 0 else w, w, KERNEL, padding=1, bias=False)
            static.weight.copy_(conv.weight[:w, :static.in_channels])
            norm = nn.BatchNorm2d(w, eps=bn.eps, momentum=bn.momentum)
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(norm, name).copy_(getattr(bn, name)[:w])
            layers += [static, norm, nn.ReLU()]
        head = nn.Linear(w, self.space.num_classes)
        head.weight.copy_(self.classifier.weight[:, :w])
        head.bias.copy_(self.classifier.bias)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), head]
        return ToyNet(layers, cfg, self.space.name).eval()


# ---------------------------------------------------------------------- data and training
def synthetic_images(n: int, seed: int, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, size, size) noise images with a faint brighter row (horizontal), column
    (vertical) or neither (blank), and their labels 0..2, seeded. Faint enough that subnets
    differ in accuracy (about 0.83 to 0.97 after `trained_supernet`) and int8 files agree
    with their float models (>= 0.97)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % len(LABELS)
    images = rng.integers(0, 120, (n, size, size))
    where = rng.integers(0, size, n)
    for i in np.nonzero(labels == 1)[0]:
        images[i, where[i], :] += 70
    for i in np.nonzero(labels == 2)[0]:
        images[i, :, where[i]] += 70
    return images.astype(np.uint8), labels


def trained_supernet(space: ToyNetSpace = PRESET, steps: int = 100, seed: int = 0) -> Any:
    """A toy supernet trained with the sandwich rule (largest, smallest, one random subnet per
    step) on seeded synthetic images: a second or two on one core; eval mode."""
    from ofa_engine.runtime.preprocess import preprocess
    torch.manual_seed(seed)
    net = ToyNetSupernet(space)
    images, labels = synthetic_images(512, seed + 1000)
    inputs = {s: preprocess(images, space, s) for s in space.resolutions}
    y = torch.as_tensor(labels)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    rng = np.random.default_rng(seed)
    net.train()
    for step in range(steps):
        batch = torch.as_tensor(rng.choice(len(y), 64, replace=False))
        opt.zero_grad()
        for cfg in (space.largest(), space.smallest(), space.sample(rng)):
            loss = F.cross_entropy(net(inputs[cfg.image_size][batch], cfg), y[batch])
            loss.backward()
        opt.step()
    return net.eval()
