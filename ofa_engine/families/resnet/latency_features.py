"""What the latency predictors see of a ResNet subnet: per-block features, block keys, gather tables.

A block slot's cost depends on its input width (the previous stage's `w`, or the stem's w[1],
for a stage's first block; its own stage's otherwise), its own width, its expand ratio and the
resolution. The tables are dense over those choices: a block table (slots, W_in, W_out, E, R[, F])
and a fixed table (2, W, W, W, R[, F]) for the input stem (residual conv skipped / kept, w[0],
w[1]) and the head (the last stage's w) at each resolution. A population's value is one gather
and a masked sum over the slots its depths keep (`ResNetLatencyFeatures.gather`).

Features (`BLOCK_FEATURES`, `FIXED_FEATURES`):

- `blocks`: 1 per block (dispatch, the residual addition's fixed cost);
- `conv1x1_macs`: conv1, conv3 and the downsample conv;
- `conv3x3_macs`: conv2;
- `elements`: activation elements the block writes (every conv's output, the residual sum,
  the downsample's pooled input);
- `stem_head_macs` (fixed): the stem's three 3x3 convs (two when the residual conv is skipped)
  and the classifier;
- `stem_elements` (fixed): the stem's conv outputs and the max pool's output.

The MACs columns add up to `analytics.analyze`'s MACs exactly (`macs_tables`).

Lookup-table keys: one per distinct bottleneck (input size and channels, middle, output,
stride, downsample), stem (resolution, widths, residual conv) and head; `block_module` cuts
each out of a supernet as a static module.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import numpy as np

from ...space.latency import Configs, GenomeLatencyFeatures
from .analytics import analyze_values, block_terms, head_terms, stage_sizes, stem_terms
from .space import ResNetConfig, ResNetSpace
from .tables import block_grid, fixed_grid

__all__ = ["BLOCK_FEATURES", "FIXED_FEATURES", "FEATURE_GROUPS", "ResNetLatencyFeatures"]

BLOCK_FEATURES = ("blocks", "conv1x1_macs", "conv3x3_macs", "elements")
FIXED_FEATURES = ("stem_head_macs", "stem_elements")
# Parts of a block-linear prediction that one device may run at different relative speeds.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "conv1x1": ("conv1x1_macs",),
    "conv3x3": ("conv3x3_macs",),
    "elementwise": ("elements",),
    "blocks": ("blocks",),
    "stem_head": FIXED_FEATURES,
}


def _slot_terms(space: ResNetSpace) -> dict[str, np.ndarray]:
    """`block_terms` of every entry of the block grid, plus `conv3x3_macs` and `elements`."""
    g = block_grid(space)
    parts = {k: [] for k in ("macs", "conv3x3_macs", "elements", "params")}
    for slot in range(space.num_slots):
        c_in, m, c, h = g["c_in"][slot], g["mid"][slot], g["c_out"][slot], g["size"][slot]
        stride, first = int(g["stride"][slot]), bool(g["first"][slot])
        terms = block_terms(c_in, m, c, h, stride, first)
        out = (h + 1) // 2 if stride == 2 else h
        elements = m * h * h + m * out * out + 2 * c * out * out
        if first:
            elements = elements + c * out * out + (c_in * out * out if stride == 2 else 0)
        parts["macs"].append(terms["macs"])
        parts["conv3x3_macs"].append(out * out * m * m * 9)
        parts["elements"].append(elements)
        parts["params"].append(terms["params"])
    return {k: np.stack(v) for k, v in parts.items()}


def _readonly(*tables: np.ndarray) -> tuple[np.ndarray, ...]:
    for table in tables:
        table.flags.writeable = False      # cached and shared: no caller may change them
    return tables


@functools.lru_cache(maxsize=8)
def _feature_tables(space: ResNetSpace) -> tuple[np.ndarray, np.ndarray]:
    t = _slot_terms(space)
    block = {"blocks": np.ones(t["macs"].shape, np.int64), "conv1x1_macs": t["macs"] - t["conv3x3_macs"],
             "conv3x3_macs": t["conv3x3_macs"], "elements": t["elements"]}
    f = fixed_grid(space)
    stem = stem_terms(space, f["mid"], f["out"], f["kept"], f["image_size"])
    h = (f["image_size"] + 1) // 2
    pooled = (h + 1) // 2
    stem_elements = (f["mid"] + f["out"] + np.where(f["kept"], f["mid"], 0)) * h * h + f["out"] * pooled * pooled
    fixed = {"stem_head_macs": stem["macs"] + head_terms(space, f["last"])["macs"], "stem_elements": stem_elements}
    return _readonly(np.stack([block[n] for n in BLOCK_FEATURES], -1).astype(np.float64),
                     np.stack([fixed[n] for n in FIXED_FEATURES], -1).astype(np.float64))


@functools.lru_cache(maxsize=8)
def _macs_tables(space: ResNetSpace) -> tuple[np.ndarray, np.ndarray]:
    f = fixed_grid(space)
    fixed = stem_terms(space, f["mid"], f["out"], f["kept"], f["image_size"])["macs"] + \
        head_terms(space, f["last"])["macs"]
    return _readonly(_slot_terms(space)["macs"].astype(np.float64), np.asarray(fixed, np.float64))


# ---------------------------------------------------------------------- keys
def block_key(c_in: int, mid: int, c_out: int, size: int, stride: int, downsample: bool) -> str:
    return (f"resnet_bottleneck-input:{size}x{size}x{c_in}-mid:{mid}-out:{c_out}-stride:{stride}"
            f"-downsample:{int(downsample)}")


def stem_key(space: ResNetSpace, image_size: int, mid: int, out: int, kept: bool) -> str:
    return (f"resnet_stem-input:{image_size}x{image_size}x{space.in_channels}-mid:{mid}-out:{out}"
            f"-residual:{int(kept)}")


def head_key(space: ResNetSpace, size: int, channels: int) -> str:
    return f"resnet_head-input:{size}x{size}x{channels}-classes:{space.num_classes}"


# ---------------------------------------------------------------------- the family-neutral interface
class ResNetLatencyFeatures(GenomeLatencyFeatures):
    """Latency features of a `ResNetSpace` (or preset name); tables as the module's docstring says."""

    def __init__(self, space: ResNetSpace | str):
        self.space = ResNetSpace.preset(space) if isinstance(space, str) else space

    @property
    def feature_names(self) -> tuple[str, ...]:
        return BLOCK_FEATURES + FIXED_FEATURES

    @property
    def feature_groups(self) -> dict[str, tuple[str, ...]]:
        return dict(FEATURE_GROUPS)

    def feature_tables(self) -> tuple[np.ndarray, np.ndarray]:
        return _feature_tables(self.space)

    def macs_tables(self) -> tuple[np.ndarray, np.ndarray]:
        return _macs_tables(self.space)

    # ------------------------------------------------------------- configs
    def dataset_configs(self, n: int, seed: int = 0) -> list[ResNetConfig]:
        """The largest, the smallest, then random configs whose (width, resolution) pairs cycle
        through every combination in a seeded order (every `w` entry at the pair's width), the
        depths and expand ratios drawn uniformly."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ValueError(f"n = {n!r}; allowed: an integer >= 2 (the largest and smallest come first)")
        space, genome = self.space, self.space.genome
        extremes = [space.largest(), space.smallest()]
        if n == 2:
            return extremes
        rng = np.random.default_rng(seed)
        genes = genome.random(n - 2, rng)
        combos = np.array([(w, r) for w in range(len(space.width_mults)) for r in range(len(space.resolutions))])
        cycles = -(-(n - 2) // len(combos))
        picks = np.concatenate([rng.permutation(len(combos)) for _ in range(cycles)])[:n - 2]
        genes[:, genome.width_genes] = combos[picks, 0][:, None]
        genes[:, genome.res_gene] = combos[picks, 1]
        return extremes + genome.to_configs(genes)

    # ------------------------------------------------------------- lookup-table keys
    def block_keys(self) -> np.ndarray:
        g = block_grid(self.space)
        keys = np.empty(g["c_in"].shape, object)
        for i in np.ndindex(keys.shape):
            keys[i] = block_key(int(g["c_in"][i]), int(g["mid"][i]), int(g["c_out"][i]), int(g["size"][i]),
                                int(g["stride"][i[0]]), bool(g["first"][i[0]]))
        return keys

    def fixed_keys(self) -> tuple[np.ndarray, np.ndarray]:
        f = fixed_grid(self.space)
        last = stage_sizes(self.space, f["image_size"])[-1]
        stem = np.empty(f["mid"].shape, object)
        head = np.empty(f["mid"].shape, object)
        for i in np.ndindex(stem.shape):
            stem[i] = stem_key(self.space, int(f["image_size"][i]), int(f["mid"][i]), int(f["out"][i]),
                               bool(f["kept"][i]))
            head[i] = head_key(self.space, int(last[i]), int(f["last"][i]))
        return stem, head

    def unique_blocks(self) -> list[dict[str, Any]]:
        """One entry per key: blocks ("block": slot, c_in, mid, c_out, size), then stems
        ("stem": image_size, mid, out, kept) and heads ("head": size, channels)."""
        g, keys = block_grid(self.space), self.block_keys()
        seen: dict[str, dict[str, Any]] = {}
        for i in np.ndindex(keys.shape):
            seen.setdefault(keys[i], {"key": keys[i], "kind": "block", "slot": int(i[0]), "c_in": int(g["c_in"][i]),
                                      "mid": int(g["mid"][i]), "c_out": int(g["c_out"][i]), "size": int(g["size"][i])})
        f = fixed_grid(self.space)
        last = stage_sizes(self.space, f["image_size"])[-1]
        stem_keys, head_keys = self.fixed_keys()
        for i in np.ndindex(stem_keys.shape):
            seen.setdefault(stem_keys[i], {"key": stem_keys[i], "kind": "stem", "image_size": int(f["image_size"][i]),
                                           "mid": int(f["mid"][i]), "out": int(f["out"][i]),
                                           "kept": bool(f["kept"][i])})
        for i in np.ndindex(head_keys.shape):
            seen.setdefault(head_keys[i], {"key": head_keys[i], "kind": "head", "size": int(last[i]),
                                           "channels": int(f["last"][i])})
        return list(seen.values())

    def block_module(self, entry: Mapping[str, Any], supernet: Any) -> tuple[Any, tuple[int, ...]]:
        """The static module of a `unique_blocks` entry cut from `supernet` (a `ResNetSupernet`
        of this space), eval mode, and its batch-1 input shape."""
        import torch
        from torch import nn

        from .static import ResidualConv
        kind = entry.get("kind")
        with torch.no_grad():
            if kind == "block":
                module = supernet.blocks[entry["slot"]].extract(entry["c_in"], entry["mid"], entry["c_out"])
                return module.eval(), (1, entry["c_in"], entry["size"], entry["size"])
            if kind == "stem":
                stem, mid, out = supernet.input_stem, entry["mid"], entry["out"]
                layers = [stem[0].extract(self.space.in_channels, mid)]
                if entry["kept"]:
                    layers.append(ResidualConv(stem[1].conv.extract(mid, mid)))
                layers += [stem[2].extract(mid, out), nn.MaxPool2d(3, 2, 1)]
                size = entry["image_size"]
                return nn.Sequential(*layers).eval(), (1, self.space.in_channels, size, size)
            if kind == "head":
                class Head(nn.Module):
                    def __init__(self, classifier: nn.Linear):
                        super().__init__()
                        self.classifier = classifier

                    def forward(self, x: torch.Tensor) -> torch.Tensor:
                        return self.classifier(x.mean((2, 3)))

                module = Head(supernet.classifier.linear.extract(entry["channels"]))
                return module.eval(), (1, entry["channels"], entry["size"], entry["size"])
        raise ValueError(f"lookup-table entry kind = {kind!r}; allowed: 'block', 'stem', 'head'")

    # ------------------------------------------------------------- int8 files
    def int8_scale_counts(self, configs: Configs) -> tuple[np.ndarray, np.ndarray]:
        """Per config, the per-channel scales of its int8 file (every conv / linear has a bias
        once BN is folded: two per output channel) and its conv / linear layers."""
        genome = self.space.genome
        v = analyze_values(self.space, genome.values(self._genes(configs)))
        return 2 * v["out_channels"], v["layers"]

    # ------------------------------------------------------------- gathers
    def _indices(self, genes: np.ndarray) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], np.ndarray]:
        """(block-table index arrays (N, slots), fixed-table index arrays (N,), active (N, slots))."""
        space, genome = self.space, self.space.genome
        v = genome.values(genes)
        w = v["w"]
        stage = np.array(space.slot_stage, np.int64)
        first = np.array(space.slot_index, np.int64) == 0
        w_out = w[:, 2 + stage]
        w_in = np.where(first[None, :], w[:, 1 + stage], w_out)   # w[1 + s]: the stem's w[1] or the previous stage's
        r = genes[:, genome.res_gene]
        slots = np.broadcast_to(np.arange(space.num_slots), w_out.shape)
        block = (slots, w_in, w_out, v["e_index"], np.broadcast_to(r[:, None], w_out.shape))
        fixed = (v["stem_kept"].astype(np.int64), w[:, 0], w[:, 1], w[:, -1], r)
        return block, fixed, v["active"]

    def gather(self, configs: Configs, block_table: np.ndarray, fixed_table: np.ndarray) -> np.ndarray:
        """Sum over the kept blocks of `block_table[slot, w_in, w_out, e, r]` plus
        `fixed_table[kept, w0, w1, w_last, r]`, per config (tables may have a trailing feature
        axis). One gather, no Python loop over configs."""
        block, fixed, active = self._indices(self._genes(configs))
        per_block = np.asarray(block_table)[block]
        return np.einsum("ns...,ns->n...", per_block, active.astype(per_block.dtype)) + np.asarray(fixed_table)[fixed]

    def table_range(self, block_table: np.ndarray, fixed_table: np.ndarray) -> tuple[float, float]:
        """Exact (min, max) over every subnet: given the widths and the resolution, every kept
        slot picks its expand ratio freely and every stage its depth, so each stage's extreme
        is a prefix-sum extreme over its slots; then the extreme over every combination of the
        stem choice, the widths and the resolution (an enumeration: 2 x W^(stages + 2) x R)."""
        space = self.space
        block, fixed = np.asarray(block_table, np.float64), np.asarray(fixed_table, np.float64)
        n_w, n_r = len(space.width_mults), len(space.resolutions)
        kept_options = sorted({int(d == space.max_depth) for d in space.stem_skip_choices})
        out = []
        for pick in (np.min, np.max):
            per_slot = pick(block, axis=3)                                    # (slots, W_in, W_out, R)
            stages, slot = [], 0
            for s, n in enumerate(space.stage_slots):
                rows = [per_slot[slot]] + [np.broadcast_to(np.diagonal(per_slot[slot + j], axis1=0, axis2=1)
                                                           .transpose(1, 0)[None], per_slot[slot].shape)
                                           for j in range(1, n)]
                prefix = np.cumsum(np.stack(rows), 0)                         # (n, W_in, W_out, R)
                options = prefix[np.array(space.base_depths[s]) + np.array(space.depth_list) - 1]
                stages.append(pick(options, 0))                               # (W_in, W_out, R)
                slot += n
            # Every combination: kept, w0, w1, w2.., r
            total = np.zeros((len(kept_options), n_w, n_w) + (n_w,) * space.num_stages + (n_r,))
            shape = total.shape
            idx = np.indices(shape)
            kept = np.array(kept_options)[idx[0]]
            w = idx[1:-1]
            r = idx[-1]
            total += fixed[kept, w[0], w[1], w[-1], r]
            for s in range(space.num_stages):
                total += stages[s][w[1 + s], w[2 + s], r]
            out.append(float(pick(total)))
        return out[0], out[1]
