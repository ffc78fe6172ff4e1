"""What the latency predictors see of a ProxylessNAS subnet: per-block features, block keys, gather tables.

A block slot's block depends only on the resolution, its kernel and its expand ratio (its input
width and map size are fixed by the layout: every stage keeps at least one block, and a stage's
first block reads the previous stage's width whatever its depth). So the tables are dense over
those choices: a block table (S, R, K, E[, F]) indexed by slot and the option indices of the
resolution, kernel and expand ratio, and a fixed table (R[, F]) for the stem (first conv + first
block) and the head (feature mix, pooling, classifier). A population's value is one gather and
a masked sum over the slots its depths keep (`ProxylessLatencyFeatures.gather`).

Features (`block_features`, `FIXED_FEATURES`), per block with input / output maps si / so,
input / expanded / output channels c / m / o, kernel k:
- `blocks`: 1 per block (the cost of running a block whatever its size);
- `expand_macs` si^2 c m and `project_macs` so^2 m o: the 1x1 convs;
- `dw_macs_k{k}`: the depthwise conv so^2 m k^2, one column per kernel size (a 7x7 depthwise
  runs at another speed per MAC than a 3x3);
- `expanded_elements`: m (si^2 + so^2), the expanded tensors (their BN and ReLU6 fold or are
  proportional to it);
- `residual_elements`: o so^2 for a block with a residual (the addition);
- fixed: `stem_macs`, `head_macs` and `stem_elements` (the first block's output).
The MACs columns add up to `analytics.analyze`'s MACs exactly (`macs_tables`).

Lookup-table keys: OFA's latency-table style names of a block's geometry; one stem and one
head per resolution. `block_module` cuts each out of a supernet as a static module.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import numpy as np

from ...space.latency import Configs, GenomeLatencyFeatures
from ..mbv3.analytics import LayerTally
from .analytics import block_tally
from .layout import ACTIVATION, walk
from .space import ProxylessConfig, ProxylessSpace

__all__ = ["block_features", "FIXED_FEATURES", "block_key", "stem_key", "head_key", "ProxylessLatencyFeatures"]

FIXED_FEATURES = ("stem_macs", "head_macs", "stem_elements")


def block_features(space: ProxylessSpace) -> tuple[str, ...]:
    """The per-block feature names of `space` (one depthwise column per kernel size)."""
    return (("blocks", "expand_macs") + tuple(f"dw_macs_k{k}" for k in space.kernel_sizes)
            + ("project_macs", "expanded_elements", "residual_elements"))


def _groups(space: ProxylessSpace) -> dict[str, tuple[str, ...]]:
    return {"conv1x1": ("expand_macs", "project_macs"),
            "depthwise": tuple(f"dw_macs_k{k}" for k in space.kernel_sizes),
            "elementwise": ("expanded_elements", "residual_elements"),
            "blocks": ("blocks",),
            "stem_head": FIXED_FEATURES}


def _space(space: ProxylessSpace | str) -> ProxylessSpace:
    return ProxylessSpace.preset(space) if isinstance(space, str) else space


# ---------------------------------------------------------------------- geometry of every combination
@functools.lru_cache(maxsize=8)
def _combinations(space: ProxylessSpace) -> tuple[dict[str, np.ndarray], list[Any]]:
    """Per-slot geometry as (S, R, K, E) arrays (plus per-slot stride / residual), and the
    stem, first block and head walked over the (R, K, E) combinations (every slot active)."""
    R, K, E, S = len(space.resolutions), len(space.kernel_sizes), len(space.expand_ratios), space.num_slots
    r, k, e = (a.reshape(-1) for a in np.meshgrid(np.arange(R), np.arange(K), np.arange(E), indexing="ij"))
    n = r.shape[0]
    blocks = walk(space, np.array(space.resolutions, np.int64)[r],
                  np.repeat(np.array(space.kernel_sizes, np.int64)[k][:, None], S, 1),
                  np.repeat(np.array(space.expand_ratios, np.int64)[e][:, None], S, 1), np.ones((n, S), bool))
    per_slot = [b for b in blocks if b.kind == "block"]
    fields = ("in_size", "out_size", "in_channels", "out_channels", "mid_channels", "kernel", "expand_ratio")
    grid = {f: np.stack([getattr(b, f).reshape(R, K, E) for b in per_slot]) for f in fields}
    grid["stride"] = np.array([b.stride for b in per_slot])
    grid["residual"] = np.array([b.residual for b in per_slot])
    return grid, [b for b in blocks if b.kind != "block"]


def _per_res(values: np.ndarray, space: ProxylessSpace) -> np.ndarray:
    """(R,) view of a stem / head quantity walked over the (R, K, E) combinations."""
    shape = (len(space.resolutions), len(space.kernel_sizes), len(space.expand_ratios))
    return np.asarray(values).reshape(shape)[:, 0, 0]


@functools.lru_cache(maxsize=8)
def _feature_tables(space: ProxylessSpace) -> tuple[np.ndarray, np.ndarray]:
    """(S, R, K, E, F) block features and (R, F0) stem / head features, float64 (exact counts)."""
    g, (stem, first, head) = _combinations(space)
    si, so, cin, cout, mid, kk = (g[f] for f in ("in_size", "out_size", "in_channels", "out_channels",
                                                 "mid_channels", "kernel"))
    residual = g["residual"][:, None, None, None].astype(np.int64)
    feats = {"blocks": np.ones(si.shape, np.int64), "expand_macs": si ** 2 * cin * mid,
             "project_macs": so ** 2 * mid * cout, "expanded_elements": mid * (si ** 2 + so ** 2),
             "residual_elements": residual * cout * so ** 2}
    for k in space.kernel_sizes:
        feats[f"dw_macs_k{k}"] = so ** 2 * mid * kk ** 2 * (kk == k)
    block = np.stack([np.broadcast_to(feats[name], si.shape).astype(np.float64) for name in block_features(space)], -1)

    def macs(*blocks: Any) -> np.ndarray:
        t = LayerTally(blocks[0].in_size.shape[0])
        for b in blocks:
            block_tally(t, b, space.num_classes)
        return _per_res(t.macs, space)

    fixed = np.stack([macs(stem, first), macs(head), _per_res(first.out_size ** 2 * first.out_channels, space)],
                     -1).astype(np.float64)
    for table in (block, fixed):
        table.flags.writeable = False      # cached and shared: no caller may change them
    return block, fixed


@functools.lru_cache(maxsize=8)
def _macs_tables(space: ProxylessSpace) -> tuple[np.ndarray, np.ndarray]:
    """(S, R, K, E) block MACs and (R,) stem + head MACs, float64."""
    block, fixed = _feature_tables(space)
    names = block_features(space)
    idx = [names.index(n) for n in names if "_macs" in n]
    out = block[..., idx].sum(-1), fixed[..., :2].sum(-1)
    for table in out:
        table.flags.writeable = False
    return out


# ---------------------------------------------------------------------- keys
def block_key(size_in: int, c_in: int, size_out: int, c_out: int, expand: int, kernel: int, stride: int,
              residual: bool) -> str:
    """OFA latency-table style key of one elastic block."""
    return (f"expanded_conv-input:{size_in}x{size_in}x{c_in}-output:{size_out}x{size_out}x{c_out}"
            f"-expand:{expand}-kernel:{kernel}-stride:{stride}-idskip:{int(residual)}-se:0-act:{ACTIVATION}")


def stem_key(space: ProxylessSpace, image_size: int) -> str:
    """Key of the stem (first conv + first block) at `image_size`."""
    w = space.widths
    return (f"proxyless_stem-input:{image_size}x{image_size}x{space.in_channels}-first_conv:{w[0]}"
            f"-first_block:{w[1]}")


def head_key(space: ProxylessSpace, size: int) -> str:
    """Key of the head (feature mix, pooling, classifier) on a `size` x `size` map."""
    w = space.widths
    return f"proxyless_head-input:{size}x{size}x{w[-2]}-feature_mix:{w[-1]}-classes:{space.num_classes}"


# ---------------------------------------------------------------------- the family-neutral interface
class ProxylessLatencyFeatures(GenomeLatencyFeatures):
    """Latency features of a `ProxylessSpace` (or preset name): tables (S, R, K, E[, F]) per
    block slot and (R[, F]) fixed (stem + head), as the module's docstring says."""

    def __init__(self, space: ProxylessSpace | str):
        self.space = _space(space)

    # ------------------------------------------------------------- features
    @property
    def feature_names(self) -> tuple[str, ...]:
        return block_features(self.space) + FIXED_FEATURES

    @property
    def feature_groups(self) -> dict[str, tuple[str, ...]]:
        return _groups(self.space)

    def feature_tables(self) -> tuple[np.ndarray, np.ndarray]:
        return _feature_tables(self.space)

    def macs_tables(self) -> tuple[np.ndarray, np.ndarray]:
        return _macs_tables(self.space)

    # ------------------------------------------------------------- configs
    def dataset_configs(self, n: int, seed: int = 0) -> list[ProxylessConfig]:
        """The largest, the smallest, then random configs whose resolutions cycle through every
        resolution in a seeded order, each block's choices and each stage's depth uniform."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ValueError(f"n = {n!r}; allowed: an integer >= 2 (the largest and smallest come first)")
        space, genome = self.space, self.space.genome
        extremes = [space.largest(), space.smallest()]
        if n == 2:
            return extremes
        rng = np.random.default_rng(seed)
        genes = genome.random(n - 2, rng)
        count = len(space.resolutions)
        picks = np.concatenate([rng.permutation(count) for _ in range(-(-(n - 2) // count))])[:n - 2]
        genes[:, genome.res_gene] = picks
        return extremes + genome.to_configs(genes)

    # ------------------------------------------------------------- lookup-table keys
    def block_keys(self) -> np.ndarray:
        g, _ = _combinations(self.space)
        keys = np.empty(g["in_size"].shape, object)
        for i in np.ndindex(keys.shape):
            s = i[0]
            keys[i] = block_key(int(g["in_size"][i]), int(g["in_channels"][i]), int(g["out_size"][i]),
                                int(g["out_channels"][i]), int(g["expand_ratio"][i]), int(g["kernel"][i]),
                                int(g["stride"][s]), bool(g["residual"][s]))
        return keys

    def fixed_keys(self) -> tuple[np.ndarray, np.ndarray]:
        _, (_, _, head) = _combinations(self.space)
        head_in = _per_res(head.in_size, self.space)
        stems = np.array([stem_key(self.space, r) for r in self.space.resolutions], object)
        heads = np.array([head_key(self.space, int(s)) for s in head_in], object)
        return stems, heads

    def unique_blocks(self) -> list[dict[str, Any]]:
        """One entry per key: blocks ("block", with image_size, slot, ks, e), then the stems
        ("stem") and heads ("head") with their image_size."""
        space, keys = self.space, self.block_keys()
        seen: dict[str, dict[str, Any]] = {}
        for s, r, k, e in np.ndindex(keys.shape):
            seen.setdefault(keys[s, r, k, e], {"key": keys[s, r, k, e], "kind": "block",
                                               "image_size": space.resolutions[r], "slot": s,
                                               "ks": space.kernel_sizes[k], "e": space.expand_ratios[e]})
        for kind, table in zip(("stem", "head"), self.fixed_keys()):
            for r, key in enumerate(table):
                seen.setdefault(key, {"key": key, "kind": kind, "image_size": space.resolutions[r]})
        return list(seen.values())

    def block_module(self, entry: Mapping[str, Any], supernet: Any) -> tuple[Any, tuple[int, ...]]:
        """The static module of a `unique_blocks` entry cut from `supernet` (a `ProxylessSupernet`
        of this space), eval mode, and its batch-1 input shape."""
        import torch
        from torch import nn

        space, kind = self.space, entry.get("kind")
        if kind not in ("block", "stem", "head"):
            raise ValueError(f"lookup-table entry kind = {kind!r}; allowed: 'block', 'stem', 'head'")
        slot = entry.get("slot", 0)
        cfg = ProxylessConfig(ks=[entry.get("ks", space.kernel_sizes[0])] * space.num_slots,
                              e=[entry.get("e", space.expand_ratios[0])] * space.num_slots,
                              d=[space.max_depth] * (space.num_stages - 1) + [1], image_size=entry["image_size"])
        with torch.no_grad():
            net = supernet.extract(cfg)
            stem = nn.Sequential(net.first_conv, net.blocks[0]).eval()
            x = torch.zeros(1, space.in_channels, cfg.image_size, cfg.image_size)
            if kind == "stem":
                return stem, tuple(x.shape)
            h = stem(x)
            for i in range(slot if kind == "block" else space.num_slots):
                h = net.blocks[1 + i](h)
        if kind == "block":
            return net.blocks[1 + slot].eval(), tuple(h.shape)
        return _head(net).eval(), tuple(h.shape)

    # ------------------------------------------------------------- int8 files
    def int8_scale_counts(self, configs: Configs) -> tuple[np.ndarray, np.ndarray]:
        """Per config, the per-channel scales of an int8 file of its extracted net (one per
        output channel of every conv / linear weight and one per bias channel; every conv's BN
        folds into a bias) and its conv / linear layers."""
        v = self.space.genome.values(self._genes(configs))
        w, active = self.space.widths, v["active"]
        blocks = walk(self.space, v["image_size"], v["ks"], v["e"], active)[2:-1]
        per_block = np.stack([2 * (2 * b.mid_channels + b.out_channels) for b in blocks], 1)
        outputs = 2 * (w[0] + w[0] + w[1] + w[-1] + self.space.num_classes)
        return outputs + np.where(active, per_block, 0).sum(1), 5 + 3 * active.sum(1)

    # ------------------------------------------------------------- gathers
    def gather(self, configs: Configs, block_table: np.ndarray, fixed_table: np.ndarray) -> np.ndarray:
        """Sum over the kept slots of `block_table[s, r, k, e]` plus `fixed_table[r]`, per config
        (tables may have a trailing feature axis). One gather, no Python loop over configs."""
        genome = self.space.genome
        genes = self._genes(configs)
        r = genes[:, genome.res_gene]
        slots = np.arange(genome.num_slots)[None, :]
        per_block = block_table[slots, r[:, None], genes[:, genome.ks_genes], genes[:, genome.e_genes]]
        active = genome.active_slots(genes).astype(per_block.dtype)
        return np.einsum("ns...,ns->n...", per_block, active) + fixed_table[r]

    def table_range(self, block_table: np.ndarray, fixed_table: np.ndarray) -> tuple[float, float]:
        """Exact (min, max) over every subnet: for a resolution, each slot picks its (kernel,
        expand) freely and each elastic stage its depth (the running sum of its slots), the last
        stage's one block always counts; then the extreme over the resolutions."""
        space = self.space
        table = np.asarray(block_table, np.float64)
        S, R = table.shape[:2]
        per_slot = table.reshape(S, R, -1)
        depths = np.array(space.depths) - 1
        elastic = (space.num_stages - 1) * space.max_depth
        out = []
        for pick in (np.min, np.max):
            slot_value = pick(per_slot, -1)                                       # (S, R)
            stages = slot_value[:elastic].reshape(space.num_stages - 1, space.max_depth, R)
            per_stage = pick(np.cumsum(stages, 1)[:, depths, :], 1)               # (stages, R)
            total = per_stage.sum(0) + slot_value[elastic] + np.asarray(fixed_table, np.float64)
            out.append(float(pick(total)))
        return out[0], out[1]


def _head(net: Any) -> Any:
    """The head of an extracted subnet (feature mix, pooling, classifier) as a module."""
    from torch import nn

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.feature_mix, self.classifier = net.feature_mix, net.classifier

        def forward(self, x):
            return self.classifier(self.feature_mix(x).mean((2, 3)))

    return Head()
