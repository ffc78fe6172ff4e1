"""What the rest of the engine and the app may ask of a network family.

A family (MobileNetV3: `families/mbv3/`) registers one class in `ofa_engine.families.FAMILIES`
under its name (the package manifest's `family`). That class is the family's search space as
strategies see it (`DiscreteSearchSpace`) and, through `NetworkFamily`, everything else that
depends on the network's structure: its spaces and configs, building and checking a supernet,
extracting, counting and folding networks, closed-form analytics, the predictors' encodings, the
latency features of the learned latency models, the training hooks and `describe`, the
family-neutral rows that the app and the reports render. Outside `families/`, code reaches a
family only here: `family_of(space)` (a family's space object or preset name) or
`family_named(name)` (`ofa_engine.families`).

Every family's space object offers: `name`, `in_channels`, `num_classes`, `labels`, `mean` and
`std` (the preprocessing's, per channel), `resolutions`, `validate(config)`, `largest()`,
`smallest()`, `sample(rng)`, `to_dict()`, `parse_config(text)`; a config offers `image_size` and
`to_dict()`. A supernet is an `nn.Module` with `space`, `forward(x, config)` and
`extract(config)`, which returns a module of standard layers (the network that gets exported)
with the attributes `config` and `space_name`.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from .interface import DiscreteSearchSpace

__all__ = ["NetworkFamily", "DESCRIBE_FIELDS"]

# The fields of every row of `describe` (one row per layer or block of a subnet, in order):
# layer: its short name ("stem", "S2.B1", "L3", "head"); group: what it belongs to, for charts
# that facet ("stage 2", "encoder", "stem"); kind: what it is in words ("MBConv k5 e4 + SE",
# "attention 4 heads + MLP x3"); choices: the elastic choices made there, as {name: value} ({}
# for a fixed layer); in_shape / out_shape: the activation shapes entering / leaving ((C, H, W)
# or (tokens, dim)); width: its widest inner dimension (an MBConv's expanded channels, a
# Transformer layer's MLP width), what a layer chart draws; macs, params: its closed-form
# counts; active: whether it runs in this subnet (an elastic layer left out is listed, inactive,
# so that the rows of subnets of one space line up).
DESCRIBE_FIELDS = ("layer", "group", "kind", "choices", "in_shape", "out_shape", "width", "macs", "params",
                   "active")


class NetworkFamily(DiscreteSearchSpace):
    """A family bound to one of its spaces (`self.space`). `family` is its registered name.

    A family that sets `space_type` (its space class), `config_type` (its config class, with
    `from_dict` and `to_dict`), `presets` (the `Registry` of its preset spaces) and `read_space`
    (its space's reader of the `to_dict()` form, a staticmethod) gets the space and config
    methods below from them; one that does not overrides them."""

    family: str
    space: Any
    space_type: ClassVar[type]
    config_type: ClassVar[type]
    presets: ClassVar[Any]
    read_space: ClassVar[Callable[[Any, str], Any]]
    # True for a family whose networks multiply only in Conv2d and Linear layers (the CNNs):
    # `count_macs` then counts those layers with hooks, the FLOP counter's number ~10x faster.
    products_in_layers: ClassVar[bool] = False

    def __init__(self, space: Any, fast: bool = True):
        """`space`: the family's space object or a preset name. `fast`: use the family's exact
        tables where it has any (a family without tables ignores it)."""
        self.space = self.preset(space) if isinstance(space, str) else space
        self.name = self.space.name

    # ------------------------------------------------------------- spaces and configs
    @classmethod
    def accepts(cls, space: Any) -> bool:
        """True for this family's space objects and preset names."""
        return isinstance(space, cls.space_type) or (isinstance(space, str) and space in cls.presets)

    @classmethod
    def preset_names(cls) -> list[str]:
        """The names of this family's preset spaces."""
        return cls.presets.names()

    @classmethod
    def space_from_dict(cls, data: Any, where: str = "space") -> Any:
        """The space object of its `to_dict()` form; `ValueError` naming `where` and the field."""
        return cls.read_space(data, where)

    @classmethod
    def preset(cls, name: str) -> Any:
        """The preset space `name` (`ValueError` naming the presets otherwise)."""
        return cls.presets.get(name)

    @property
    def genome(self) -> Any:
        return self.space.genome

    def validate(self, config: Any) -> Any:
        return self.space.validate(config)

    def config_to_dict(self, config: Any) -> dict[str, Any]:
        return config.to_dict()

    def config_from_dict(self, data: Mapping[str, Any]) -> Any:
        return self.space.validate(self.config_type.from_dict(data))

    def space_to_dict(self) -> dict[str, Any]:
        return self.space.to_dict()

    def input_shape(self, config: Any) -> tuple[int, int, int]:
        """(C, H, W) of the images a subnet of `config` takes."""
        size = int(self.validate(config).image_size)
        return int(self.space.in_channels), size, size

    # ------------------------------------------------------------- networks
    @abstractmethod
    def build_supernet(self) -> Any:
        """A freshly initialised supernet of this space."""

    def supernet_problems(self, state: Mapping[str, Any]) -> list[str]:
        """How the state dict `state` differs from this space's supernet, as short phrases
        ("2 missing keys (a, b)", "1 shape mismatches (...)"); empty when it fits."""
        expected = self.build_supernet().state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        mismatched = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                      if k in state and tuple(getattr(state[k], "shape", ())) != tuple(v.shape)]

        def some(items: list[str]) -> str:
            return ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
        return [f"{len(items)} {what} ({some(items)})" for what, items in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
                if items]

    def fold_bn(self, module: Any) -> Any:
        """`module` (an extracted subnet, eval mode) with its normalisation folded into the
        preceding layers where the family has such layers, in place; returned."""
        return module

    def onnx_model(self, module: Any, opset: int) -> Any:
        """The ONNX model (an `onnx.ModelProto`, no metadata) of the extracted, eval-mode
        `module`, written by the family without tracing, or None (the default): torch's
        exporter writes it. A family that writes it writes the exporter's graph (the same
        nodes, initializers and outputs)."""
        return None

    def count_macs(self, module: Any, config: Any) -> int:
        """Multiply-accumulates of one batch-1 forward pass of the extracted `module` of
        `config`, counted by PyTorch's FLOP counter (convolutions, linear layers and every
        matrix product, attention's included; FLOPs / 2), or, for a family whose products are
        all in its Conv2d and Linear layers (`products_in_layers`), by forward hooks on those:
        the same number (tests/test_family_pipeline.py) in ~5 ms instead of ~55 ms."""
        import torch
        x = torch.zeros(1, *self.input_shape(config))
        if self.products_in_layers:
            return _layer_macs(module, x)
        from torch.utils.flop_counter import FlopCounterMode
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            module(x)
        return int(counter.get_total_flops()) // 2

    # ------------------------------------------------------------- closed-form analytics
    @abstractmethod
    def analyze(self, configs: Any) -> dict[str, Any]:
        """{metric: value} for one config, {metric: (N,) int64} for several: every metric of
        `ANALYTIC_METRICS` (and the family's `DEPLOYED_FLASH` metrics, if it has them)."""

    def deployment_bytes(self, configs: Any, precision: str) -> dict[str, Any]:
        """What a file of `precision` stores: {"flash_bytes": ..., "peak_activation_bytes": ...}
        (bytes; one value for one config, arrays for several). Default: the weights' count of
        `analyze` and one value of ACTIVATION_BYTES[precision] per activation."""
        from .interface import ACTIVATION_BYTES, DEPLOYED_FLASH
        out = self.analyze(configs)
        flash = out.get(DEPLOYED_FLASH.get(precision, ""), out["flash_bytes"])
        return {"flash_bytes": flash,
                "peak_activation_bytes": out["peak_activation_bytes"] * ACTIVATION_BYTES[precision]}

    # ------------------------------------------------------------- predictors
    @property
    @abstractmethod
    def encoding_size(self) -> int:
        """Width of `encode`'s rows."""

    @abstractmethod
    def encode(self, configs: Any) -> np.ndarray:
        """The accuracy predictor's input rows (N, encoding_size) float32 of configs."""

    def latency_features(self) -> Any:
        """The family's features for the learned latency models (a `LatencyFeatures`, see
        `ofa_engine.space.latency`), or None when the family has none (then only profiles
        that need no features apply: MACs-linear and the analytical ones)."""
        return None

    # ------------------------------------------------------------- training and imports
    def training(self) -> Any:
        """The family's training hooks (a `TrainingHooks`, see `ofa_engine.space.training`):
        which subnets a step trains, what each phase of progressive shrinking makes elastic,
        how channels are re-sorted. `ValueError` for a family that cannot be trained here."""
        raise ValueError(f"family '{self.family}' has no training hooks")

    @classmethod
    def import_official(cls, state_dict: Mapping[str, Any]) -> Any:
        """The supernet of an official checkpoint's state dict (its space recognised from the
        keys and shapes); `ValueError` for a family without official checkpoints or a state
        dict it does not recognise."""
        raise ValueError(f"family '{cls.family}' imports no official checkpoints")

    @classmethod
    def official_predictor(cls, state_dict: Mapping[str, Any], space: Any) -> Any:
        """The arrays of an official accuracy predictor for `space`, or None."""
        return None

    # ------------------------------------------------------------- the app and the reports
    @abstractmethod
    def describe(self, config: Any) -> list[dict[str, Any]]:
        """One row per layer of `config`'s subnet, each with the `DESCRIBE_FIELDS`."""

    def describe_many(self, configs: Sequence[Any]) -> list[list[dict[str, Any]]]:
        return [self.describe(c) for c in configs]


def _layer_macs(net: Any, x: Any) -> int:
    """Multiply-accumulates of `net`'s Conv2d and Linear layers on the input `x` (forward hooks)."""
    import torch
    from torch import nn
    total = [0]

    def conv(m: nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
        total[0] += output.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m: nn.Linear, inputs: tuple, output: torch.Tensor) -> None:
        total[0] += output.numel() * m.in_features

    handles = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
               for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return total[0]
