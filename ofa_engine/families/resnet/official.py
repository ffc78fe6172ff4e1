"""Import the MIT lab's released OFA ResNet50D supernet (`ofa_resnet50`) into our `ResNetSupernet`.

The official checkpoint (the dict at `torch.load(f)["state_dict"]`) holds the weights of
`ofa.imagenet_classification.elastic_nn.networks.OFAResNets(depth_list=[0, 1, 2],
expand_ratio_list=[0.2, 0.25, 0.35], width_mult_list=[0.65, 0.8, 1.0])`: 368 entries, BN
`num_batches_tracked` included. Its names are ours with the innermost module doubled (the
dynamic layers wrap a static one: `blocks.0.conv1.conv.conv.weight` for our
`blocks.0.conv1.conv.weight`, `.bn.bn.`, `classifier.linear.linear.`). Every key, shape and
dtype is checked before anything is loaded, so a wrong file fails with a message instead of a
half-loaded network.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, NoReturn

import numpy as np
import torch

from .space import ResNetSpace
from .supernet import ResNetSupernet, build_supernet

__all__ = ["import_official_resnet", "official_predictor_arrays", "OFFICIAL_PRESET", "official_key",
           "OFFICIAL_RESOLUTIONS"]

OFFICIAL_PRESET = "ofa-resnet50d"
# The image sizes of the lab's ResNet accuracy predictor's encoder (`ResNetArchEncoder`).
OFFICIAL_RESOLUTIONS = (128, 144, 160, 176, 192, 224, 240, 256)


def official_key(ours: str) -> str:
    """The official name of our state-dict key: the innermost module doubled."""
    *path, module, leaf = ours.split(".")
    return ".".join(path + [module, module, leaf])


@functools.lru_cache(maxsize=None)
def _key_map(preset: str) -> tuple[tuple[str, str, tuple[int, ...], bool], ...]:
    """(official key, our key, shape, is_floating) for every state entry, in our order."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        state = build_supernet(preset).state_dict()
    return tuple((official_key(k), k, tuple(v.shape), v.is_floating_point()) for k, v in state.items())


def _official_spelling(key: str, names: Mapping[str, Any]) -> str | None:
    """The official name `key` stands for, as `OFAResNets.load_state_dict` resolves it (the
    key itself, or the static-layer spelling: `.linear.` -> `.linear.linear.`, else `bn.` ->
    `bn.bn.`, else `conv.weight` -> `conv.conv.weight`), or None."""
    if key in names:
        return key
    if ".linear." in key:
        key = key.replace(".linear.", ".linear.linear.")
    elif "bn." in key:
        key = key.replace("bn.", "bn.bn.")
    elif "conv.weight" in key:
        key = key.replace("conv.weight", "conv.conv.weight")
    return key if key in names else None


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else f"<{type(value).__name__}>"


def _fail(message: str) -> NoReturn:
    raise ValueError(f"not an official OFA ResNet50D state dict: {message}")


def import_official_resnet(state_dict: Mapping[str, Any]) -> ResNetSupernet:
    """Our `ResNetSupernet` (preset `ofa-resnet50d`) holding the weights of the official OFA
    ResNet50D supernet.

    `state_dict`: the `"state_dict"` entry of the official `ofa_resnet50` checkpoint (the
    outer checkpoint dict is accepted too, a `module.` prefix on every key is stripped, and the
    static-layer spellings the official loader accepts are accepted). Every official entry (368)
    must be present exactly once with the right shape and a real dtype. `ValueError` naming the
    first offending key, its shape and the expected shape otherwise; nothing is loaded then.
    The returned supernet is in training mode; call `.eval()` before inference.
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

    table = {off: (ours, shape, floating) for off, ours, shape, floating in _key_map(OFFICIAL_PRESET)}
    given: dict[str, tuple[str, torch.Tensor]] = {}   # official name -> (key as given, tensor)
    for key, value in items:
        official = _official_spelling(key, table)
        if official is None:
            _fail(f"unexpected key '{key}' with shape {_shape(value)} (expected shape: none, no such entry "
                  f"in the official OFA ResNet50D)")
        expected = table[official][1]
        if not isinstance(value, torch.Tensor):
            _fail(f"key '{key}' holds a {type(value).__name__}, not a tensor (expected shape {expected})")
        if official in given:
            _fail(f"key '{key}' with shape {_shape(value)} names the same entry as '{given[official][0]}' "
                  f"(expected shape {expected}, once)")
        given[official] = (key, value)

    mapped: dict[str, torch.Tensor] = {}
    for official, (ours, shape, floating) in table.items():
        if official not in given:
            _fail(f"missing key '{official}' (shape: none, expected shape {shape})")
        key, value = given[official]
        if tuple(value.shape) != shape:
            _fail(f"key '{key}' has shape {_shape(value)}, expected shape {shape}")
        # Parameters and BN statistics must be floating point; the BN batch counter may be any
        # real number type (it is cast to int64).
        ok = value.is_floating_point() if floating else not (value.is_complex() or value.dtype == torch.bool)
        if not ok:
            _fail(f"key '{key}' with shape {_shape(value)} has dtype {value.dtype}, expected a "
                  f"{'floating-point' if floating else 'real number'} tensor of shape {shape}")
        mapped[ours] = value

    supernet = build_supernet(OFFICIAL_PRESET)
    supernet.load_state_dict(mapped, strict=True)
    return supernet


# ---------------------------------------------------------------------- accuracy predictor
def _predictor_layers(state_dict: Any) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """(weights (in, out), biases, base_acc) of an `ofa.nas.accuracy_predictor.AccuracyPredictor`
    state dict (`layers.{0..n-1}.0` Linear + ReLU, `layers.n` Linear without bias, `base_acc`);
    `ValueError` naming the key for anything else."""
    if isinstance(state_dict, Mapping) and isinstance(state_dict.get("state_dict"), Mapping):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"not an official OFA accuracy predictor: expected a mapping of names to tensors, "
                         f"got {type(state_dict).__name__}")
    names = [str(k) for k in state_dict if str(k).startswith("layers.")]
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

    def array(key: str) -> np.ndarray:
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
    for i, (w, b) in enumerate(zip(weights, biases)):
        if w.ndim != 2 or (i and w.shape[0] != weights[i - 1].shape[1]):
            raise ValueError(f"official accuracy predictor: layer {i} has weight shape {tuple(w.T.shape)}, "
                             f"which does not follow layer {i - 1}")
        if b.shape != (w.shape[1],):
            raise ValueError(f"official accuracy predictor: layer {i}'s bias has shape {b.shape}")
    if weights[-1].shape[1] != 1:
        raise ValueError(f"official accuracy predictor: the last layer has {weights[-1].shape[1]} outputs; expected 1")
    base = array("base_acc").reshape(-1)
    if base.shape != (1,):
        raise ValueError(f"official accuracy predictor: 'base_acc' has shape {base.shape}; expected (1,)")
    return weights, biases, float(base[0])


def official_predictor_arrays(state_dict: Mapping[str, Any], space: ResNetSpace
                              ) -> tuple[list[Any], list[Any], float]:
    """(weights (in, out), biases, base_acc) of the lab's ResNet accuracy predictor
    (`AccuracyPredictor` over `ResNetArchEncoder(image_size_list=OFFICIAL_RESOLUTIONS,
    depth_list, expand_list, width_mult_list)` of `space`), re-indexed from its encoding onto
    ours (`ResNetFamily.encode`), so that our MLP on our encoding computes its function exactly.

    Its encoding (`ResNetArchEncoder.arch2feature`, 82 columns for the official space): the
    resolution one-hot (8 sizes), the input-stem bit one-hot (column 1 when d[0] > 0, i.e. the
    stem's residual conv kept), every `w` entry one-hot, every block slot's expand ratio one-hot
    (slots the depth leaves out all zero). Ours (the genome's one-hot, gene order): d[0], the
    stage depths, the slots' expand ratios, `w`, the resolution. Our stage-depth columns (the
    lab's encoding has no such columns: the depth shows as the slots left zero) get zero
    weights. `ValueError` naming the key and the shape for anything else."""
    weights, biases, base_acc = _predictor_layers(state_dict)
    n_res, n_w, n_e = len(OFFICIAL_RESOLUTIONS), len(space.width_mults), len(space.expand_ratios)
    missing = [r for r in space.resolutions if r not in OFFICIAL_RESOLUTIONS]
    if missing:
        raise ValueError(f"official ResNet accuracy predictor: it encodes the image sizes "
                         f"{list(OFFICIAL_RESOLUTIONS)}; space '{space.name}' has {missing} besides")
    official_dim = n_res + 2 + space.num_widths * n_w + space.num_slots * n_e
    first = weights[0]
    if first.shape[0] != official_dim:
        raise ValueError(f"official accuracy predictor: 'layers.0.0.weight' has shape {tuple(first.T.shape)}; "
                         f"space '{space.name}' needs (hidden, {official_dim}) ({n_res} resolutions + 2 "
                         f"input-stem + {space.num_widths} widths x {n_w} + {space.num_slots} blocks x {n_e} "
                         f"expand ratios)")
    e_start = n_res + 2 + space.num_widths * n_w
    # Our column -> the official column (-1: no official column, zero weights), in gene order.
    columns = [n_res + int(d0 > 0) for d0 in space.stem_skip_choices]
    columns += [-1] * space.num_stages * len(space.depth_list)
    columns += [e_start + slot * n_e + j for slot in range(space.num_slots) for j in range(n_e)]
    columns += [n_res + 2 + i * n_w + j for i in range(space.num_widths) for j in range(n_w)]
    columns += [OFFICIAL_RESOLUTIONS.index(r) for r in space.resolutions]
    ours = np.zeros((len(columns), first.shape[1]), np.float32)
    for row, official in enumerate(columns):
        if official >= 0:
            ours[row] = first[official]
    weights[0] = ours
    return weights, biases, base_acc
