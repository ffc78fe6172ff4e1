"""What every family's import of the MIT lab's checkpoints shares: reading an official state dict
into our names, and reading an official accuracy predictor's layers.

A family describes its official checkpoint by a table per preset it may be (official key -> our
key, shape, floating point or not) and by the other spellings of a key that the official
`load_state_dict` accepts; `map_official_state` checks every key, shape and dtype against that
before anything is loaded, so a wrong file fails with a message naming the first offending key,
its shape and the expected shape instead of a half-loaded network. `predictor_layers` reads the
layers of an `ofa.nas.accuracy_predictor.AccuracyPredictor`; each family re-indexes its first
layer from the lab's encoding onto its own.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NoReturn, Sequence

import re

import numpy as np
import torch

__all__ = ["OfficialTable", "map_official_state", "predictor_layers", "key_table", "renamed", "mobilenet_spellings"]

# official key -> (our key, shape, is_floating_point)
OfficialTable = Mapping[str, tuple[str, tuple[int, ...], bool]]


def key_table(state: Mapping[str, torch.Tensor], official_name: Callable[[str], str]
              ) -> tuple[tuple[str, str, tuple[int, ...], bool], ...]:
    """(official key, our key, shape, is_floating) of every entry of our supernet's `state` (a
    meta-device state dict will do: shapes only), in our order."""
    return tuple((official_name(k), k, tuple(v.shape), v.is_floating_point()) for k, v in state.items())


def renamed(ours: str, rules: Sequence[tuple[str, str]]) -> str:
    """The official name of our key by the first (pattern, template) rule that matches it. The
    MobileNet-style networks' official `blocks.0` is our `first_block`: in a template starting
    `blocks.{0}`, the block index is shifted by one."""
    for pattern, template in rules:
        match = re.fullmatch(pattern, ours)
        if match:
            groups = list(match.groups())
            if template.startswith("blocks.{0}"):
                groups[0] = str(int(groups[0]) + 1)
            return template.format(*groups)
    raise AssertionError(f"no official name for our parameter '{ours}'")  # a bug in the rules


def mobilenet_spellings(key: str) -> list[str]:
    """The spellings of an official key that the MobileNet-style supernets' `load_state_dict`
    accepts (`OFAMobileNetV3`, `OFAProxylessNASNets`): `mobile_inverted_conv` for `conv` (older
    releases), and the static-layer spelling of dynamic layers (`.bn.` for `.bn.bn.`,
    `.conv.weight` for `.conv.conv.weight`) and vice versa."""
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


def map_official_state(state_dict: Any, tables: Mapping[str, OfficialTable],
                       spellings: Callable[[str], Sequence[str]], fail: Callable[[str], NoReturn],
                       network: str) -> tuple[str, dict[str, torch.Tensor]]:
    """(preset, {our key: tensor}) of an official state dict.

    `state_dict`: the checkpoint's `"state_dict"` entry (the outer checkpoint dict is accepted
    too, and a `module.` prefix on every key, as `DataParallel` writes, is stripped). `tables`:
    the table of each preset the checkpoint may be, all with the same official keys; the preset
    whose shapes all match is taken (on a tie the first; else the closest, to name the first
    mismatch). `spellings(key)`: the official keys `key` may stand for, in order (itself first).
    Every official entry must be given exactly once, as a tensor of the right shape, floating
    point where the table says so and a real number type otherwise (BN's batch counter).
    `fail(message)` raises; `network` names the official network in messages."""
    if isinstance(state_dict, Mapping) and isinstance(state_dict.get("state_dict"), Mapping):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, Mapping):
        fail(f"expected a mapping of names to tensors, got {type(state_dict).__name__}")
    if not state_dict:
        fail("the state dict is empty")
    bad = next((k for k in state_dict if not isinstance(k, str)), None)
    if bad is not None:
        fail(f"key {bad!r} is not a string")
    items = list(state_dict.items())
    if all(k.startswith("module.") for k, _ in items):
        items = [(k[len("module."):], v) for k, v in items]

    presets = list(tables)
    names = tables[presets[0]]

    def expected(official: str) -> str:
        shapes = {p: tables[p][official][1] for p in presets}
        if len(set(shapes.values())) == 1:
            return str(next(iter(shapes.values())))
        return " or ".join(f"{s} ({p})" for p, s in shapes.items())

    # 1. Resolve every given key to an official name; values must be tensors, each entry once.
    given: dict[str, tuple[str, torch.Tensor]] = {}   # official name -> (key as given, tensor)
    for key, value in items:
        official = next((k for k in spellings(key) if k in names), None)
        if official is None:
            fail(f"unexpected key '{key}' with shape {_shape(value)} (expected shape: none, no such entry in "
                 f"an official {network})")
        if not isinstance(value, torch.Tensor):
            fail(f"key '{key}' holds a {type(value).__name__}, not a tensor (expected shape {expected(official)})")
        if official in given:
            fail(f"key '{key}' with shape {_shape(value)} names the same entry as '{given[official][0]}' "
                 f"(expected shape {expected(official)}, once)")
        given[official] = (key, value)

    # 2. The preset whose shapes all match (else the closest), then every entry checked.
    def matches(preset: str) -> int:
        return sum(official in given and tuple(given[official][1].shape) == shape
                   for official, (_, shape, _) in tables[preset].items())

    preset = max(presets, key=matches)   # max keeps the first preset on ties
    mapped: dict[str, torch.Tensor] = {}
    for official, (ours, shape, floating) in tables[preset].items():
        if official not in given:
            fail(f"missing key '{official}' (shape: none, expected shape {shape} for {preset})")
        key, value = given[official]
        if tuple(value.shape) != shape:
            fail(f"key '{key}' has shape {_shape(value)}, expected shape {shape} for {preset}")
        # Parameters and BN statistics must be floating point; the BN batch counter may be any
        # real number type (it is cast to int64).
        ok = value.is_floating_point() if floating else not (value.is_complex() or value.dtype == torch.bool)
        if not ok:
            fail(f"key '{key}' with shape {_shape(value)} has dtype {value.dtype}, expected a "
                 f"{'floating-point' if floating else 'real number'} tensor of shape {shape}")
        mapped[ours] = value
    return preset, mapped


def predictor_layers(state_dict: Any) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """(weights (in, out), biases, base_acc) of an official accuracy predictor's state dict
    (`ofa.nas.accuracy_predictor.AccuracyPredictor`: `layers.{0..n-1}.0` Linear + ReLU, a last
    `layers.n` Linear without bias (a zero bias here), and `base_acc`), the layers chained and
    one output; `ValueError` naming the key or the layer for anything else. The first layer's
    input width is the caller's to check (it depends on the lab's encoding of the space)."""
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
        if w.ndim != 2:
            raise ValueError(f"official accuracy predictor: layer {i}'s weight has shape {tuple(w.T.shape)}; "
                             f"expected (outputs, inputs)")
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
    return weights, biases, float(base[0])
