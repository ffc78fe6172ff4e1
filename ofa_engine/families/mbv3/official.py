"""Import the MIT lab's released OFA MobileNetV3 supernets into our `Supernet`.

The official checkpoints `ofa_mbv3_d234_e346_k357_w1.0` and `..._w1.2` (the dict at
`torch.load(f)["state_dict"]`) hold the weights of `ofa.imagenet_classification.elastic_nn.
networks.OFAMobileNetV3`. Our supernet has the same layers under other names; this module
maps one naming onto the other and checks every key, shape and dtype before anything is
loaded, so a wrong file fails with a message instead of a half-loaded network.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Mapping, NoReturn

import torch

from .space import SearchSpace
from .supernet import Supernet, build_supernet

__all__ = ["import_official_ofa", "official_predictor_arrays", "OFFICIAL_PRESETS"]

# Our preset for each official width multiplier (in the order tried when detecting).
OFFICIAL_PRESETS = ("ofa-mbv3-w1.0", "ofa-mbv3-w1.2")

_BLOCK_LAYER = r"(inverted_bottleneck|depth_conv|point_linear)"
# (our name pattern, official name template); block indices are shifted by one because the
# official `blocks.0` is our `first_block`.
_RULES = [
    (r"first_conv\.(.+)", "first_conv.{0}"),
    (r"first_block\.(depth_conv|point_linear)\.(conv\.weight|bn\.\w+)", "blocks.0.conv.{0}.{1}"),
    (rf"blocks\.(\d+)\.{_BLOCK_LAYER}\.conv\.weight", "blocks.{0}.conv.{1}.conv.conv.weight"),
    (rf"blocks\.(\d+)\.{_BLOCK_LAYER}\.bn\.(\w+)", "blocks.{0}.conv.{1}.bn.bn.{2}"),
    (r"blocks\.(\d+)\.depth_conv\.conv\.transform_(\d+to\d+)", "blocks.{0}.conv.depth_conv.conv.{1}_matrix"),
    (r"blocks\.(\d+)\.se\.(reduce|expand)\.(weight|bias)", "blocks.{0}.conv.depth_conv.se.fc.{1}.{2}"),
    (r"final_expand\.(.+)", "final_expand_layer.{0}"),
    (r"feature_mix\.conv\.weight", "feature_mix_layer.conv.weight"),
    (r"classifier\.(weight|bias)", "classifier.linear.{0}"),
]


def _official_name(ours: str) -> str:
    for pattern, template in _RULES:
        match = re.fullmatch(pattern, ours)
        if match:
            groups = list(match.groups())
            if template.startswith("blocks.{0}"):
                groups[0] = str(int(groups[0]) + 1)
            return template.format(*groups)
    raise AssertionError(f"no official name for our parameter '{ours}'")  # a bug in _RULES


@functools.lru_cache(maxsize=None)
def _key_map(preset: str) -> tuple[tuple[str, str, tuple[int, ...], bool], ...]:
    """(official key, our key, shape, is_floating) for every state entry, in our order."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        state = build_supernet(preset).state_dict()
    return tuple((_official_name(k), k, tuple(v.shape), v.is_floating_point()) for k, v in state.items())


def _legacy_spellings(key: str) -> list[str]:
    """Other spellings of an official key accepted by `OFAMobileNetV3.load_state_dict`.

    Older releases name the block's layer `mobile_inverted_conv` instead of `conv`, and the
    official loader also accepts the static-layer spelling of dynamic layers (`.bn.` for
    `.bn.bn.`, `.conv.weight` for `.conv.conv.weight`) and vice versa.
    """
    key = key.replace(".mobile_inverted_conv.", ".conv.")
    out = [key]
    for old, new in ((".bn.bn.", ".bn."), (".conv.conv.weight", ".conv.weight"),
                     (".linear.linear.", ".linear."), (".linear.", ".linear.linear."),
                     (".bn.", ".bn.bn."), (".conv.weight", ".conv.conv.weight")):
        if old in key:
            out.append(key.replace(old, new, 1))
    return out


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else f"<{type(value).__name__}>"


def _fail(message: str) -> NoReturn:
    raise ValueError(f"not an official OFA MobileNetV3 (w1.0 / w1.2) state dict: {message}")


def import_official_ofa(state_dict: Mapping[str, Any]) -> Supernet:
    """Our `Supernet` holding the weights of an official OFA MobileNetV3 supernet.

    `state_dict`: the `"state_dict"` entry of an official `ofa_mbv3_d234_e346_k357_w1.0` or
    `_w1.2` checkpoint (the outer checkpoint dict is accepted too, and a `module.` prefix on
    every key, as `DataParallel` writes, is stripped). The width (preset `ofa-mbv3-w1.0` or
    `ofa-mbv3-w1.2`) is detected from the shapes. Every official entry (475, BN
    `num_batches_tracked` included) must be present exactly once with the right shape.

    Raises `ValueError` naming the first offending key, its shape and the expected shape
    when the dict is not such a state dict; nothing is loaded then. The returned supernet is
    in training mode, like `build_supernet`'s; call `.eval()` before inference.
    """
    if isinstance(state_dict, Mapping) and isinstance(state_dict.get("state_dict"), Mapping):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, Mapping):
        _fail(f"expected a mapping of names to tensors, got {type(state_dict).__name__}")
    if not state_dict:
        _fail("the state dict is empty")
    bad = next((k for k in state_dict if not isinstance(k, str)), None)
    if bad is not None:
        _fail(f"key {bad!r} is not a string")
    items = list(state_dict.items())
    if all(k.startswith("module.") for k, _ in items):
        items = [(k[len("module."):], v) for k, v in items]

    tables = {p: {off: (ours, shape, floating) for off, ours, shape, floating in _key_map(p)}
              for p in OFFICIAL_PRESETS}
    names = tables[OFFICIAL_PRESETS[0]]  # every preset has the same official names

    def expected(key: str) -> str:
        shapes = {p: tables[p][key][1] for p in OFFICIAL_PRESETS}
        if len(set(shapes.values())) == 1:
            return str(next(iter(shapes.values())))
        return " or ".join(f"{s} ({p})" for p, s in shapes.items())

    # 1. Resolve every given key to an official name; values must be tensors.
    given: dict[str, tuple[str, torch.Tensor]] = {}  # official name -> (key as given, tensor)
    for key, value in items:
        official = next((k for k in _legacy_spellings(key) if k in names), None)
        if official is None:
            _fail(f"unexpected key '{key}' with shape {_shape(value)} (expected shape: none, "
                  f"no such entry in an official OFA MobileNetV3)")
        if not isinstance(value, torch.Tensor):
            _fail(f"key '{key}' holds a {type(value).__name__}, not a tensor "
                  f"(expected shape {expected(official)})")
        if official in given:
            _fail(f"key '{key}' with shape {_shape(value)} names the same entry as "
                  f"'{given[official][0]}' (expected shape {expected(official)}, once)")
        given[official] = (key, value)

    # 2. The width whose shapes all match (else the closest, to name the first mismatch).
    def matches(preset: str) -> int:
        return sum(official in given and tuple(given[official][1].shape) == shape
                   for official, (_, shape, _) in tables[preset].items())

    preset = max(OFFICIAL_PRESETS, key=matches)  # max keeps the first preset on ties
    mapped: dict[str, torch.Tensor] = {}
    for official, (ours, shape, floating) in tables[preset].items():
        if official not in given:
            _fail(f"missing key '{official}' (shape: none, expected shape {shape} for {preset})")
        key, value = given[official]
        if tuple(value.shape) != shape:
            _fail(f"key '{key}' has shape {_shape(value)}, expected shape {shape} for {preset}")
        # Parameters and BN statistics must be floating point; the BN batch counter may be
        # any real number type (it is cast to int64).
        ok = value.is_floating_point() if floating else not (value.is_complex() or value.dtype == torch.bool)
        if not ok:
            _fail(f"key '{key}' with shape {_shape(value)} has dtype {value.dtype}, expected a "
                  f"{'floating-point' if floating else 'real number'} tensor of shape {shape}")
        mapped[ours] = value

    supernet = build_supernet(preset)
    supernet.load_state_dict(mapped, strict=True)
    return supernet


# ---------------------------------------------------------------------- accuracy predictor
def official_predictor_arrays(state_dict: Mapping[str, Any], space: SearchSpace
                              ) -> tuple[list[Any], list[Any], float]:
    """(weights (in, out), biases, base_acc) of the official OFA accuracy predictor
    (`ofa.nas.accuracy_predictor.AccuracyPredictor`: `layers.{0,1,2}.0` Linear + ReLU, then
    `layers.3` Linear without bias, plus `base_acc`), re-indexed from its encoding onto ours
    (`space.encode`), so that our MLP on our encoding computes its function exactly.

    Its encoding (`MobileNetArchEncoder.arch2feature`): the resolution one-hot, then every
    slot's kernel one-hot, then every slot's expand one-hot (slots the depth leaves out all
    zero). Ours: resolution, width, then per slot kernel and expand together. The width column
    (one multiplier in the official spaces: always 1) gets zero weights. `ValueError` naming the
    key and the shape for anything else."""
    import numpy as np

    if isinstance(state_dict, Mapping) and isinstance(state_dict.get("state_dict"), Mapping):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"not an official OFA accuracy predictor: expected a mapping of names to tensors, "
                         f"got {type(state_dict).__name__}")
    n_res, n_k, n_e, slots = (len(space.resolutions), len(space.kernel_sizes), len(space.expand_ratios),
                              space.num_slots)
    official_dim = n_res + slots * (n_k + n_e)
    names = [k for k in state_dict if k.startswith("layers.")]
    layer_ids = sorted({int(k.split(".")[1]) for k in names if k.split(".")[1].isdigit()})
    expected = {"base_acc"} | {f"layers.{i}.0.{p}" for i in layer_ids[:-1] for p in ("weight", "bias")}
    if layer_ids:
        expected.add(f"layers.{layer_ids[-1]}.weight")
    unexpected = sorted(set(map(str, state_dict)) - expected)
    missing = sorted(expected - set(map(str, state_dict)))
    if len(layer_ids) < 2 or layer_ids != list(range(len(layer_ids))) or unexpected or missing:
        raise ValueError(f"not an official OFA accuracy predictor: expected keys layers.I.0.weight / "
                         f"layers.I.0.bias, a last layers.N.weight and base_acc; missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")

    def array(key: str):
        value = state_dict[key]
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"official accuracy predictor: '{key}' is not a floating-point tensor")
        return value.detach().float().numpy()

    weights, biases = [], []
    for i in layer_ids[:-1]:
        weights.append(array(f"layers.{i}.0.weight").T.copy())
        biases.append(array(f"layers.{i}.0.bias").reshape(-1))
    weights.append(array(f"layers.{layer_ids[-1]}.weight").T.copy())
    biases.append(np.zeros(1, np.float32))
    first = weights[0]
    if first.ndim != 2 or first.shape[0] != official_dim:
        raise ValueError(f"official accuracy predictor: 'layers.0.0.weight' has shape "
                         f"{tuple(first.T.shape)}; space '{space.name}' needs (hidden, {official_dim}) "
                         f"({n_res} resolutions + {slots} slots x ({n_k} kernels + {n_e} expand ratios))")
    for i, (w, b) in enumerate(zip(weights, biases)):
        if i and w.shape[0] != weights[i - 1].shape[1]:
            raise ValueError(f"official accuracy predictor: layer {i} takes {w.shape[0]} inputs, "
                             f"layer {i - 1} gives {weights[i - 1].shape[1]}")
        if b.shape != (w.shape[1],):
            raise ValueError(f"official accuracy predictor: layer {i}'s bias has shape {b.shape}")
    if weights[-1].shape[1] != 1:
        raise ValueError(f"official accuracy predictor: the last layer has {weights[-1].shape[1]} outputs; expected 1")
    base = array("base_acc").reshape(-1)
    if base.shape != (1,):
        raise ValueError(f"official accuracy predictor: 'base_acc' has shape {base.shape}; expected (1,)")
    # Our column -> the official column (-1: the width column, zero weights).
    columns = list(range(n_res)) + [-1] * len(space.width_mults)
    for slot in range(slots):
        columns += [n_res + slot * n_k + j for j in range(n_k)]
        columns += [n_res + slots * n_k + slot * n_e + j for j in range(n_e)]
    ours = np.zeros((len(columns), first.shape[1]), np.float32)
    for row, official in enumerate(columns):
        if official >= 0:
            ours[row] = first[official]
    weights[0] = ours
    return weights, biases, float(base[0])
