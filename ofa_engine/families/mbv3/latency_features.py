"""What the latency predictors see of a MobileNetV3 subnet: block keys and per-block features.

Everything here is a dense table over (wid, resolution index, slot, kernel index, expand
index) built from one `layout.walk` of every combination (each slot's block depends only on
those, as `tables.py` explains), plus (wid, resolution index) tables for the stem and head.
A population's value is then one gather and a masked sum (`gather`): 10,000 configs take a
few milliseconds.

- Keys (`block_key`, `stem_key`, `head_key`): the OFA latency-table style names of a block's
  geometry, which a lookup-table model maps to measured milliseconds.
- Features (`BLOCK_FEATURES`, `FIXED_FEATURES`): MACs of each layer kind, depthwise MACs per
  kernel size, expanded-tensor elements, SE and block counts, stem/head MACs; the learned
  model is linear in them.

`MobileNetV3LatencyFeatures` is these functions behind the family-neutral `LatencyFeatures`
(`ofa_engine.space.latency`), which the latency models, profiles and kits use.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from ...space.latency import Configs, LatencyFeatures
from .analytics import LayerTally
from .layout import BlockGeometry, walk, walk_configs
from .space import SearchSpace, SubnetConfig, is_population

__all__ = ["block_key", "stem_key", "head_key", "block_keys", "fixed_keys", "unique_blocks",
           "BLOCK_FEATURES", "FIXED_FEATURES", "FEATURE_GROUPS", "feature_tables", "macs_tables", "gather",
           "architecture_features", "total_macs", "table_range", "Configs", "sample_configs", "block_module",
           "int8_scale_counts", "MobileNetV3LatencyFeatures"]

BLOCK_FEATURES = ("blocks", "expand_macs", "dw_macs_k3", "dw_macs_k5", "dw_macs_k7", "project_macs",
                  "se_blocks", "se_macs", "expanded_elements", "hswish_elements", "residual_elements")
FIXED_FEATURES = ("stem_macs", "head_macs", "stem_elements")
# Parts of a block-linear prediction that one device may run at different relative speeds.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "conv1x1": ("expand_macs", "project_macs"),
    "depthwise": ("dw_macs_k3", "dw_macs_k5", "dw_macs_k7"),
    "elementwise": ("expanded_elements", "hswish_elements", "residual_elements"),
    "se": ("se_blocks", "se_macs"),
    "blocks": ("blocks",),
    "stem_head": ("stem_macs", "head_macs", "stem_elements"),
}


def _space(space: SearchSpace | str) -> SearchSpace:
    return SearchSpace.preset(space) if isinstance(space, str) else space


# ---------------------------------------------------------------------- geometry of every combination
@functools.lru_cache(maxsize=8)
def _combinations(space: SearchSpace) -> tuple[dict[str, np.ndarray], list[BlockGeometry]]:
    """Per-slot geometry as (W, R, S, K, E) arrays, and the stem / first block / head walked
    over the (W, R, K, E) combinations (every slot active)."""
    W, R, K, E = (len(space.width_mults), len(space.resolutions), len(space.kernel_sizes),
                  len(space.expand_ratios))
    wid, res, k, e = (a.reshape(-1) for a in np.meshgrid(np.arange(W), np.arange(R), np.arange(K),
                                                       np.arange(E), indexing="ij"))
    n, slots = wid.shape[0], space.num_slots
    blocks = walk(space, wid, np.array(space.resolutions, np.int64)[res],
                  np.repeat(np.array(space.kernel_sizes, np.int64)[k][:, None], slots, 1),
                  np.repeat(np.array(space.expand_ratios, np.int64)[e][:, None], slots, 1),
                  np.ones((n, slots), bool))
    per_slot = [b for b in blocks if b.kind == "block"]
    fields = ("in_size", "out_size", "in_channels", "out_channels", "mid_channels", "se_channels",
              "kernel", "expand_ratio")
    grid = {f: np.stack([getattr(b, f).reshape(W, R, K, E) for b in per_slot], 2) for f in fields}
    for flag in ("stride", "residual", "se"):
        grid[flag] = np.array([getattr(b, flag) for b in per_slot])
    grid["activation"] = tuple(b.activation for b in per_slot)
    return grid, [b for b in blocks if b.kind != "block"]


def _per_wid_res(values: np.ndarray, space: SearchSpace) -> np.ndarray:
    """(W, R) view of a stem / head quantity walked over the (W, R, K, E) combinations."""
    shape = (len(space.width_mults), len(space.resolutions), len(space.kernel_sizes), len(space.expand_ratios))
    return values.reshape(shape)[:, :, 0, 0]


# ---------------------------------------------------------------------- keys
def block_key(size_in: int, c_in: int, size_out: int, c_out: int, expand: int, kernel: int, stride: int,
              residual: bool, se: bool, act: str) -> str:
    """OFA latency-table style key of one elastic block."""
    return (f"expanded_conv-input:{size_in}x{size_in}x{c_in}-output:{size_out}x{size_out}x{c_out}"
            f"-expand:{expand}-kernel:{kernel}-stride:{stride}-idskip:{int(residual)}"
            f"-se:{int(se)}-act:{act}")


def stem_key(space: SearchSpace, wid: int, image_size: int) -> str:
    """Key of the stem (first conv + first block) at width index `wid` and `image_size`."""
    p = space.channels(wid)
    return f"stem-input:{image_size}x{image_size}x{space.in_channels}-first_conv:{p.first_conv}-first_block:{p.first_block}"


def head_key(space: SearchSpace, wid: int, size: int) -> str:
    """Key of the head (final expand, pool, feature mix, classifier) on a `size` x `size` map."""
    p = space.channels(wid)
    return (f"head-input:{size}x{size}x{p.stages[-1]}-final_expand:{p.final_expand}"
            f"-feature_mix:{p.feature_mix}-classes:{space.num_classes}")


def block_keys(space: SearchSpace) -> np.ndarray:
    """Object array (W, R, S, K, E) of block keys."""
    g, _ = _combinations(space)
    keys = np.empty(g["in_size"].shape, object)
    for w, r, s, ki, ei in np.ndindex(keys.shape):
        i = (w, r, s, ki, ei)
        keys[i] = block_key(int(g["in_size"][i]), int(g["in_channels"][i]), int(g["out_size"][i]),
                            int(g["out_channels"][i]), int(g["expand_ratio"][i]), int(g["kernel"][i]),
                            int(g["stride"][s]), bool(g["residual"][s]), bool(g["se"][s]), g["activation"][s])
    return keys


def fixed_keys(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """(W, R) object arrays of stem and head keys."""
    _, (_, _, head) = _combinations(space)
    head_in = _per_wid_res(head.in_size, space)
    stems = np.empty(head_in.shape, object)
    heads = np.empty(head_in.shape, object)
    for w, r in np.ndindex(head_in.shape):
        stems[w, r] = stem_key(space, w, space.resolutions[r])
        heads[w, r] = head_key(space, w, int(head_in[w, r]))
    return stems, heads


def unique_blocks(space: SearchSpace | str) -> list[dict[str, Any]]:
    """One entry per distinct block key of the space, with a (wid, image_size, slot, ks, e) that
    realises it: what `devices.latency_dataset.measure_block_table` measures. Stem and head entries have
    kind "stem" / "head" and a (wid, image_size)."""
    space = _space(space)
    keys = block_keys(space)
    seen: dict[str, dict[str, Any]] = {}
    for w, r, s, ki, ei in np.ndindex(keys.shape):
        key = keys[w, r, s, ki, ei]
        if key not in seen:
            seen[key] = {"key": key, "kind": "block", "wid": w, "image_size": space.resolutions[r], "slot": s,
                         "ks": space.kernel_sizes[ki], "e": space.expand_ratios[ei]}
    stems, heads = fixed_keys(space)
    for kind, table in (("stem", stems), ("head", heads)):
        for w, r in np.ndindex(table.shape):
            key = table[w, r]
            if key not in seen:
                seen[key] = {"key": key, "kind": kind, "wid": w, "image_size": space.resolutions[r]}
    return list(seen.values())


# ---------------------------------------------------------------------- features
@functools.lru_cache(maxsize=8)
def feature_tables(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """(W, R, S, K, E, F) block features (`BLOCK_FEATURES`) and (W, R, F0) stem/head features
    (`FIXED_FEATURES`), float64 (integer counts, exact in float64)."""
    g, (stem, first, head) = _combinations(space)
    si, so, cin, cout = g["in_size"], g["out_size"], g["in_channels"], g["out_channels"]
    mid, kk = g["mid_channels"], g["kernel"]
    axes = (None, None, slice(None), None, None)
    se = g["se"][axes].astype(np.int64)
    hs = np.array([a == "h_swish" for a in g["activation"]], np.int64)[axes]
    res = g["residual"][axes].astype(np.int64)
    shape = si.shape
    dw = so ** 2 * mid * kk ** 2
    feats = {
        "blocks": np.ones(shape, np.int64),
        "expand_macs": si ** 2 * cin * mid,
        "project_macs": so ** 2 * mid * cout,
        "se_blocks": se,
        "se_macs": se * 2 * mid * g["se_channels"],
        "expanded_elements": mid * (si ** 2 + so ** 2),
        "hswish_elements": hs * mid * (si ** 2 + so ** 2),
        "residual_elements": res * cout * so ** 2,
    }
    for size in (3, 5, 7):
        feats[f"dw_macs_k{size}"] = dw * (kk == size)
    block = np.stack([np.broadcast_to(feats[name], shape).astype(np.float64) for name in BLOCK_FEATURES], -1)

    def macs(*blocks: BlockGeometry) -> np.ndarray:
        t = LayerTally(blocks[0].in_size.shape[0])
        for b in blocks:
            t.block(b, space.num_classes)
        return _per_wid_res(t.macs, space)

    stem_elements = _per_wid_res(first.out_size ** 2 * stem.out_channels, space)
    fixed = np.stack([macs(stem, first).astype(np.float64), macs(head).astype(np.float64),
                      stem_elements.astype(np.float64)], -1)
    return block, fixed


@functools.lru_cache(maxsize=8)
def macs_tables(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """(W, R, S, K, E) block MACs and (W, R) stem + head MACs, float64."""
    block, fixed = feature_tables(space)
    idx = [BLOCK_FEATURES.index(n) for n in
           ("expand_macs", "dw_macs_k3", "dw_macs_k5", "dw_macs_k7", "project_macs", "se_macs")]
    return block[..., idx].sum(-1), fixed[..., :2].sum(-1)


# ---------------------------------------------------------------------- gathers
def _value_index(allowed: Sequence[int], values: np.ndarray) -> np.ndarray | None:
    """Index of each value in `allowed` by table lookup (faster than searchsorted / isin), or
    None when some value is not allowed."""
    table = np.full(max(allowed) + 1, -1, np.int64)
    table[list(allowed)] = np.arange(len(allowed))
    if values.size and (values.min() < 0 or values.max() > max(allowed)):
        return None
    index = table[values]
    return None if (index < 0).any() else index


def _config_indices(space: SearchSpace, configs: Configs):
    """(wid, res_index, ks_index, e_index, active) of validated configs or a population.

    Populations take a lookup-table fast path; anything unusual goes through
    `space.to_arrays`, which raises the space's own message for a bad config.
    """
    if is_population(configs):
        try:
            wid = np.asarray(configs["wid"], np.int64).reshape(-1)
            n = wid.shape[0]
            ks = np.asarray(configs["ks"], np.int64)
            e = np.asarray(configs["e"], np.int64)
            d = np.asarray(configs["d"], np.int64)
            res = np.asarray(configs["image_size"], np.int64)
            shapes_ok = (ks.shape == e.shape == (n, space.num_slots) and d.shape == (n, space.num_stages)
                         and res.shape == (n,))
        except (KeyError, TypeError, ValueError):
            shapes_ok = False
        if shapes_ok:
            indices = (_value_index(space.kernel_sizes, ks), _value_index(space.expand_ratios, e),
                       _value_index(space.resolutions, res), _value_index(space.depths, d))
            wid_ok = n == 0 or (wid.min() >= 0 and wid.max() < len(space.width_mults))
            if wid_ok and all(i is not None for i in indices):
                active = (np.arange(space.max_depth)[None, None, :] < d[:, :, None]).reshape(n, space.num_slots)
                return wid, indices[2], indices[0], indices[1], active
    a = space.to_arrays(configs)
    return a["wid"], a["res_index"], a["ks_index"], a["e_index"], a["active"]


def gather(space: SearchSpace, configs: Configs, block_table: np.ndarray, fixed_table: np.ndarray
           ) -> np.ndarray:
    """Sum over active blocks of `block_table[w, r, s, k, e]` plus `fixed_table[w, r]`, per config.

    Tables may have a trailing feature axis. One gather, no Python loop over configs.
    """
    wid, r, ks_i, e_i, active = _config_indices(space, configs)
    n_w, n_r, n_s, n_k, n_e = block_table.shape[:5]
    # Flat index into the table: ((w * R + r) * S + s) * K * E + k * E + e.
    base = (wid * n_r + r) * (n_s * n_k * n_e)
    flat = base[:, None] + np.arange(n_s)[None, :] * (n_k * n_e) + ks_i * n_e + e_i
    features = block_table.shape[5:]
    per_block = block_table.reshape((-1,) + features)[flat]          # (N, S[, F])
    if features:
        total = np.einsum("nsf,ns->nf", per_block, active.astype(per_block.dtype))
    else:
        total = np.where(active, per_block, 0.0).sum(1)
    return total + fixed_table[wid, r]


def table_range(space: SearchSpace, block_table: np.ndarray, fixed_table: np.ndarray) -> tuple[float, float]:
    """Exact (min, max) over every subnet of `space` of what `gather` sums from these tables.

    Given (wid, resolution), each slot's kernel and expand ratio and each stage's depth are
    free choices, so the extremes are: per slot the extreme over (k, e), per stage the extreme
    over depths of the running sum of its slots, summed over stages, plus the fixed part.
    """
    n_w, n_r, n_s = block_table.shape[:3]
    slot_values = block_table.reshape(n_w, n_r, n_s, -1)
    depths = np.array(sorted(space.depths)) - 1
    out = []
    for pick in (np.min, np.max):
        per_slot = pick(slot_values, -1).reshape(n_w, n_r, space.num_stages, space.max_depth)
        per_stage = pick(np.cumsum(per_slot, -1)[..., depths], -1)
        out.append(float(pick(per_stage.sum(-1) + fixed_table)))
    return out[0], out[1]


def architecture_features(space: SearchSpace | str, configs: Configs) -> tuple[np.ndarray, tuple[str, ...]]:
    """(N, F) float64 features of the learned model and their names."""
    space = _space(space)
    block, fixed = feature_tables(space)
    n_b = block.shape[-1]
    block_full = np.concatenate([block, np.zeros(block.shape[:-1] + (fixed.shape[-1],))], -1)
    fixed_full = np.concatenate([np.zeros(fixed.shape[:-1] + (n_b,)), fixed], -1)
    return gather(space, configs, block_full, fixed_full), BLOCK_FEATURES + FIXED_FEATURES


def total_macs(space: SearchSpace | str, configs: Configs) -> np.ndarray:
    """MACs per config (same count as `analytics.analyze`), float64, by table gather."""
    space = _space(space)
    return gather(space, configs, *macs_tables(space))


# ---------------------------------------------------------------------- datasets and isolated blocks
def sample_configs(space: SearchSpace, n: int, seed: int = 0) -> list[SubnetConfig]:
    """`n` >= 2 configs: the largest, the smallest, then random ones whose (width, resolution)
    pairs cycle through every combination in a seeded order (so all widths and resolutions are
    evenly covered) with the per-block choices drawn uniformly."""
    if n == 2:
        return [space.largest(), space.smallest()]
    rng = np.random.default_rng(seed)
    pop = space.sample_population(n - 2, rng)
    combos = np.array([(w, r) for w in range(len(space.width_mults)) for r in space.resolutions])
    picks = np.concatenate([rng.permutation(len(combos)) for _ in range(-(-(n - 2) // len(combos)))])[:n - 2]
    pop["wid"], pop["image_size"] = combos[picks, 0], combos[picks, 1]
    return [space.largest(), space.smallest()] + space.from_arrays(pop)


def block_module(space: SearchSpace, supernet: Any, entry: dict[str, Any]) -> tuple[Any, tuple[int, ...]]:
    """The isolated module of a `unique_blocks` entry, cut from `supernet` (a `Supernet` of
    `space`), and its input shape (batch 1)."""
    import torch
    from torch import nn

    d = [space.max_depth] * space.num_stages
    slot = entry.get("slot", 0)
    ks = [entry.get("ks", space.kernel_sizes[0])] * space.num_slots
    e = [entry.get("e", space.expand_ratios[0])] * space.num_slots
    cfg = SubnetConfig(wid=entry["wid"], ks=ks, e=e, d=d, image_size=entry["image_size"])
    with torch.no_grad():
        net = supernet.extract(cfg)
    x = torch.zeros(1, space.in_channels, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        stem = nn.Sequential(net.first_conv, net.blocks[0])
        if entry["kind"] == "stem":
            return stem, tuple(x.shape)
        h = stem(x)
        for i in range(slot if entry["kind"] == "block" else space.num_slots):
            h = net.blocks[1 + i](h)
    if entry["kind"] == "block":
        return net.blocks[1 + slot], tuple(h.shape)
    return _head_module(net), tuple(h.shape)


def _head_module(net: Any) -> Any:
    """The head of an extracted subnet (final expand, pool, feature mix, classifier) as a module."""
    import torch
    from torch import nn

    class _Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.final_expand, self.feature_mix, self.classifier = net.final_expand, net.feature_mix, net.classifier

        def forward(self, x):
            x = self.feature_mix(self.final_expand(x).mean((2, 3), keepdim=True))
            return self.classifier(torch.flatten(x, 1))

    return _Head()


def int8_scale_counts(space: SearchSpace, configs: Configs) -> tuple[np.ndarray, np.ndarray]:
    """((N,) float32 scales, (N,) layers) of each config's extracted net: the per-channel
    scales an int8 QDQ file stores (one per output channel of every conv / linear weight and
    one per bias channel) and its conv / linear layers, from the layer walk (no network built)."""
    blocks = walk_configs(space, configs)
    n = blocks[0].in_size.shape[0]
    scales, layers = np.zeros(n, np.int64), np.zeros(n, np.int64)

    def layer(out_channels: Any, has_bias: bool, mask: Any = True) -> None:
        nonlocal scales, layers
        scales = scales + np.where(mask, np.asarray(out_channels) * (2 if has_bias else 1), 0)
        layers = layers + np.where(mask, 1, 0)

    for b in blocks:
        if b.kind == "stem":
            layer(b.out_channels, True)
        elif b.kind == "head":
            # final expand (BN folded), feature mix (no bias), classifier (bias)
            layer(b.mid_channels, True)
            layer(b.out_channels, False)
            layer(space.num_classes, True)
        else:
            if b.expands:
                layer(b.mid_channels, True, b.active)
            layer(b.mid_channels, True, b.active)              # depthwise
            if b.se:
                layer(b.se_channels, True, b.active)
                layer(b.mid_channels, True, b.active)
            layer(b.out_channels, True, b.active)              # project
    return scales, layers


# ---------------------------------------------------------------------- the family-neutral interface
class MobileNetV3LatencyFeatures(LatencyFeatures):
    """The functions of this module for one `SearchSpace` (or preset name). Tables are
    (W, R, S, K, E[, F]) per block slot and (W, R[, F]) fixed (stem + head), as above."""

    def __init__(self, space: SearchSpace | str):
        self.space = _space(space)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return BLOCK_FEATURES + FIXED_FEATURES

    @property
    def feature_groups(self) -> dict[str, tuple[str, ...]]:
        return dict(FEATURE_GROUPS)

    def features(self, configs: Configs) -> tuple[np.ndarray, tuple[str, ...]]:
        return architecture_features(self.space, configs)

    def total_macs(self, configs: Configs) -> np.ndarray:
        return total_macs(self.space, configs)

    def count(self, configs: Configs) -> int:
        return int(self.space.to_arrays(configs)["wid"].shape[0])

    def take(self, configs: Configs, index: np.ndarray) -> dict[str, np.ndarray]:
        a = self.space.to_arrays(configs)
        return {k: a[k][index] for k in ("wid", "ks", "e", "d", "image_size")}

    def dataset_configs(self, n: int, seed: int = 0) -> list[SubnetConfig]:
        return sample_configs(self.space, n, seed)

    def block_keys(self) -> np.ndarray:
        return block_keys(self.space)

    def fixed_keys(self) -> tuple[np.ndarray, ...]:
        return fixed_keys(self.space)

    def unique_blocks(self) -> list[dict[str, Any]]:
        return unique_blocks(self.space)

    def block_module(self, entry, supernet):
        return block_module(self.space, supernet, entry)

    def int8_scale_counts(self, configs: Configs) -> tuple[np.ndarray, np.ndarray]:
        return int8_scale_counts(self.space, configs)

    def feature_tables(self) -> tuple[np.ndarray, np.ndarray]:
        return feature_tables(self.space)

    def macs_tables(self) -> tuple[np.ndarray, np.ndarray]:
        return macs_tables(self.space)

    def gather(self, configs: Configs, block_table: np.ndarray, fixed_table: np.ndarray) -> np.ndarray:
        return gather(self.space, configs, block_table, fixed_table)

    def table_range(self, block_table: np.ndarray, fixed_table: np.ndarray) -> tuple[float, float]:
        return table_range(self.space, block_table, fixed_table)
