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

from ..official_checkpoints import key_table, map_official_state, predictor_layers
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
    return key_table(state, official_key)


def _spellings(key: str) -> list[str]:
    """The official names `key` may stand for, as `OFAResNets.load_state_dict` resolves it: the
    key itself, else its static-layer spelling (`.linear.` -> `.linear.linear.`, else `bn.` ->
    `bn.bn.`, else `conv.weight` -> `conv.conv.weight`)."""
    for old, new in ((".linear.", ".linear.linear."), ("bn.", "bn.bn."), ("conv.weight", "conv.conv.weight")):
        if old in key:
            return [key, key.replace(old, new)]
    return [key]


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
    table = {off: (ours, shape, floating) for off, ours, shape, floating in _key_map(OFFICIAL_PRESET)}
    _, mapped = map_official_state(state_dict, {OFFICIAL_PRESET: table}, _spellings, _fail, "OFA ResNet50D")
    supernet = build_supernet(OFFICIAL_PRESET)
    supernet.load_state_dict(mapped, strict=True)
    return supernet


# ---------------------------------------------------------------------- accuracy predictor
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
    weights, biases, base_acc = predictor_layers(state_dict)
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
