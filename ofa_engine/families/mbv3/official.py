"""Import the MIT lab's released OFA MobileNetV3 supernets into our `Supernet`.

The official checkpoints `ofa_mbv3_d234_e346_k357_w1.0` and `..._w1.2` (the dict at
`torch.load(f)["state_dict"]`) hold the weights of `ofa.imagenet_classification.elastic_nn.
networks.OFAMobileNetV3`. Our supernet has the same layers under other names; this module
maps one naming onto the other and checks every key, shape and dtype before anything is
loaded, so a wrong file fails with a message instead of a half-loaded network.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, NoReturn

import torch

from ..official_checkpoints import key_table, map_official_state, mobilenet_spellings, predictor_layers, renamed
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


@functools.lru_cache(maxsize=None)
def _key_map(preset: str) -> tuple[tuple[str, str, tuple[int, ...], bool], ...]:
    """(official key, our key, shape, is_floating) for every state entry, in our order."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        state = build_supernet(preset).state_dict()
    return key_table(state, lambda ours: renamed(ours, _RULES))


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
    tables = {p: {off: (ours, shape, floating) for off, ours, shape, floating in _key_map(p)}
              for p in OFFICIAL_PRESETS}
    preset, mapped = map_official_state(state_dict, tables, mobilenet_spellings, _fail, "OFA MobileNetV3")
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

    weights, biases, base_acc = predictor_layers(state_dict)
    n_res, n_k, n_e, slots = (len(space.resolutions), len(space.kernel_sizes), len(space.expand_ratios),
                              space.num_slots)
    official_dim = n_res + slots * (n_k + n_e)
    first = weights[0]
    if first.shape[0] != official_dim:
        raise ValueError(f"official accuracy predictor: 'layers.0.0.weight' has shape "
                         f"{tuple(first.T.shape)}; space '{space.name}' needs (hidden, {official_dim}) "
                         f"({n_res} resolutions + {slots} slots x ({n_k} kernels + {n_e} expand ratios))")
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
    return weights, biases, base_acc
