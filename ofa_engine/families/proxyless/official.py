"""Import the MIT lab's released OFA ProxylessNAS supernet into our `ProxylessSupernet`.

The official checkpoint `ofa_proxyless_d234_e346_k357_w1.3` (the dict at
`torch.load(f)["state_dict"]`) holds the weights of `ofa.imagenet_classification.elastic_nn.
networks.OFAProxylessNASNets(width_mult=1.3, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6],
depth_list=[2, 3, 4])`: 446 entries. Our supernet has the same layers under close names; this
module maps one naming onto the other and checks every key, shape and dtype before anything is
loaded, so a wrong file fails with a message instead of a half-loaded network.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, NoReturn

import torch

from ..official_checkpoints import key_table, map_official_state, mobilenet_spellings, predictor_layers, renamed
from .space import ProxylessSpace
from .supernet import ProxylessSupernet

__all__ = ["import_official_proxyless", "official_predictor_arrays", "OFFICIAL_PRESET", "key_map"]

OFFICIAL_PRESET = "ofa-proxyless-w1.3"

_LAYER = r"(inverted_bottleneck|depth_conv|point_linear)"
# (our name pattern, official name template); block indices are shifted by one because the
# official `blocks.0` (a static MBConvLayer) is our `first_block`.
_RULES = [
    (r"first_conv\.(conv\.weight|bn\.\w+)", "first_conv.{0}"),
    (r"first_block\.(depth_conv|point_linear)\.(conv\.weight|bn\.\w+)", "blocks.0.conv.{0}.{1}"),
    (rf"blocks\.(\d+)\.{_LAYER}\.conv\.weight", "blocks.{0}.conv.{1}.conv.conv.weight"),
    (rf"blocks\.(\d+)\.{_LAYER}\.bn\.(\w+)", "blocks.{0}.conv.{1}.bn.bn.{2}"),
    (r"blocks\.(\d+)\.depth_conv\.conv\.transform_(\d+to\d+)", "blocks.{0}.conv.depth_conv.conv.{1}_matrix"),
    (r"feature_mix\.(conv\.weight|bn\.\w+)", "feature_mix_layer.{0}"),
    (r"classifier\.(weight|bias)", "classifier.linear.{0}"),
]


@functools.lru_cache(maxsize=None)
def key_map(preset: str = OFFICIAL_PRESET) -> tuple[tuple[str, str, tuple[int, ...], bool], ...]:
    """(official key, our key, shape, is_floating) for every state entry, in our order."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        state = ProxylessSupernet(ProxylessSpace.preset(preset)).state_dict()
    return key_table(state, lambda ours: renamed(ours, _RULES))


def _fail(message: str) -> NoReturn:
    raise ValueError(f"not an official OFA ProxylessNAS (w1.3) state dict: {message}")


def import_official_proxyless(state_dict: Mapping[str, Any]) -> ProxylessSupernet:
    """Our `ProxylessSupernet` (preset `ofa-proxyless-w1.3`) holding the weights of the official
    `ofa_proxyless_d234_e346_k357_w1.3` supernet.

    `state_dict`: the checkpoint's `"state_dict"` entry (the outer checkpoint dict is accepted
    too, and a `module.` prefix on every key, as `DataParallel` writes, is stripped). Every
    official entry (446, BN `num_batches_tracked` included) must be present exactly once with
    the right shape and a real dtype. Raises `ValueError` naming the first offending key, its
    shape and the expected shape otherwise; nothing is loaded then. The supernet is returned in
    training mode; call `.eval()` before inference.
    """
    table = {official: (ours, shape, floating) for official, ours, shape, floating in key_map(OFFICIAL_PRESET)}
    _, mapped = map_official_state(state_dict, {OFFICIAL_PRESET: table}, mobilenet_spellings, _fail,
                                   "OFA ProxylessNAS")
    supernet = ProxylessSupernet(ProxylessSpace.preset(OFFICIAL_PRESET))
    supernet.load_state_dict(mapped, strict=True)
    return supernet


# ---------------------------------------------------------------------- accuracy predictor
def official_predictor_arrays(state_dict: Mapping[str, Any], space: ProxylessSpace
                              ) -> tuple[list[Any], list[Any], float]:
    """(weights (in, out), biases, base_acc) of an `ofa.nas.accuracy_predictor.AccuracyPredictor`
    for this space (`layers.{0..}.0` Linear + ReLU, a last `layers.N` Linear without bias, plus
    `base_acc`), re-indexed from its encoding onto ours (`ProxylessFamily.encode`), so that our
    MLP on our encoding computes its function exactly.

    The lab released no ProxylessNAS predictor; this reads one trained on the official encoder
    `MobileNetArchEncoder(..., n_stage=6)`: the resolution one-hot, every block's kernel one-hot,
    every block's expand one-hot, with 24 blocks (SPACE_TYPE "mbv3": 6 stages x 4, the last
    stage's three extra slots always zero) or 21 (SPACE_TYPE "mbv2"). Ours: the resolution,
    then per slot kernel and expand together. `ValueError` naming the key and the shape for
    anything else."""
    weights, biases, base_acc = predictor_layers(state_dict)
    n_res, n_k, n_e, slots = len(space.resolutions), len(space.kernel_sizes), len(space.expand_ratios), space.num_slots
    first = weights[0]
    # The official encoder's block count: 6 stages x 4 slots (SPACE_TYPE "mbv3") or 5 x 4 + 1 ("mbv2").
    allowed = {n_res + blocks * (n_k + n_e): blocks for blocks in ((space.num_stages) * space.max_depth, slots)}
    if first.ndim != 2 or first.shape[0] not in allowed:
        raise ValueError(f"official accuracy predictor: 'layers.0.0.weight' has shape {tuple(first.T.shape)}; "
                         f"space '{space.name}' needs (hidden, {' or '.join(map(str, allowed))}) ({n_res} resolutions "
                         f"+ {' or '.join(map(str, allowed.values()))} blocks x ({n_k} kernels + {n_e} expand ratios))")
    blocks = allowed[first.shape[0]]
    # Our column -> the official column. Slot s of ours is the official block s in both layouts
    # (the mbv3-style encoder reads block 20 as stage 5's first and leaves 21..23 empty).
    columns = list(range(n_res))
    for slot in range(slots):
        columns += [n_res + slot * n_k + j for j in range(n_k)]
        columns += [n_res + blocks * n_k + slot * n_e + j for j in range(n_e)]
    weights[0] = first[columns].copy()
    return weights, biases, base_acc
