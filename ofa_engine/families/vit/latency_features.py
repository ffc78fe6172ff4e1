"""What the latency predictors see of a ViT subnet: per-block features, block keys, gather tables.

Every encoder block of a space sees the same tokens (T, the patch grid), so a block depends
only on its choices: the width c (`embed_dim`, one per config), its heads h and its MLP ratio
(m = round(ratio x c) hidden units). The tables are dense over those choices: a block table
(E, H, R[, F]) indexed by (embed_dim, heads, mlp_ratio) indices, and a fixed table (E[, F]) by
embed_dim for the patch embedding and the head. A population's value is one gather and a
masked sum over the block slots kept by the depth (`ViTLatencyFeatures.gather`).

Features (`BLOCK_FEATURES`, `FIXED_FEATURES`), a = h x head_dim, d = head_dim, K classes:

- `blocks`: 1 per block (the cost of running a block's ops whatever their size: dispatch, reshapes);
- `layernorm_elements`: 2 T c, the two LayerNorms' inputs; the two residual additions (2 T c)
  are proportional, so this column prices them too;
- `attention_linear_macs`: the qkv and output projections, 3 T c a + T a c (qkv is always 3x
  the projection: one column, not two that move together);
- `attention_matmul_macs`: attention's quadratic term, q k^T and attn v, h T^2 d each; the
  softmax (h T^2 elements) and q's scaling (T a) are proportional to it within a space;
- `mlp_macs`: fc1 and fc2, 2 T c m;
- `gelu_elements`: T m, the MLP's hidden activations (GELU);
- `embed_head_macs` (fixed): the patch embedding T c C_in p^2 plus the classifier c K; the
  position embedding's addition, the final LayerNorm and the mean are proportional to c too.

Any further per-block quantity (element counts of reshapes, the softmax, residuals) is a
linear combination of these within a space, so a linear model cannot tell it apart; leaving
them out keeps every column identifiable (an unpenalised fit is not singular). The MACs
columns add up to `analytics.analyze`'s MACs exactly (`macs_tables`).

Lookup-table keys: one per (embed_dim, heads, MLP hidden units) block, one patch embedding
and one head per embed_dim; `block_module` cuts each out of a supernet as a static module.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import numpy as np

from ...space.latency import Configs, GenomeLatencyFeatures
from .analytics import block_terms, fixed_terms
from .space import ViTConfig, ViTSpace

__all__ = ["BLOCK_FEATURES", "FIXED_FEATURES", "FEATURE_GROUPS", "block_key", "patch_embed_key", "head_key",
           "ViTLatencyFeatures"]

BLOCK_FEATURES = ("blocks", "layernorm_elements", "attention_linear_macs", "attention_matmul_macs", "mlp_macs",
                  "gelu_elements")
FIXED_FEATURES = ("embed_head_macs",)
# Parts of a block-linear prediction that one device may run at different relative speeds.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "linear": ("attention_linear_macs", "mlp_macs"),
    "attention": ("attention_matmul_macs",),
    "elementwise": ("layernorm_elements", "gelu_elements"),
    "blocks": ("blocks",),
    "embed_head": ("embed_head_macs",),
}


def _space(space: ViTSpace | str) -> ViTSpace:
    return ViTSpace.preset(space) if isinstance(space, str) else space


# ---------------------------------------------------------------------- the choices of every block
@functools.lru_cache(maxsize=8)
def _grid(space: ViTSpace) -> dict[str, np.ndarray]:
    """(E, H, R) int64 arrays of every block's width `c`, heads `h` and MLP hidden units `m`."""
    c, h, r = np.meshgrid(np.array(space.embed_dims, np.int64), np.array(space.num_heads, np.int64),
                          np.array(space.mlp_ratios, np.float64), indexing="ij")
    return {"c": c, "h": h, "m": space.mlp_hidden(c, r)}


@functools.lru_cache(maxsize=8)
def _feature_tables(space: ViTSpace) -> tuple[np.ndarray, np.ndarray]:
    """(E, H, R, F) block features (`BLOCK_FEATURES`) and (E, F0) fixed ones (`FIXED_FEATURES`),
    float64 (integer counts, exact in float64)."""
    g = _grid(space)
    c, h, m = g["c"], g["h"], g["m"]
    t, d = space.num_patches, space.head_dim
    a = h * d
    block = {
        "blocks": np.ones(c.shape, np.int64),
        "layernorm_elements": 2 * t * c,
        "attention_linear_macs": 4 * t * c * a,
        "attention_matmul_macs": 2 * h * t * t * d,
        "mlp_macs": 2 * t * c * m,
        "gelu_elements": t * m,
    }
    embed = np.array(space.embed_dims, np.int64)
    fixed = {"embed_head_macs": fixed_terms(space, embed)["macs"]}
    block_table = np.stack([block[name] for name in BLOCK_FEATURES], -1).astype(np.float64)
    fixed_table = np.stack([fixed[name] for name in FIXED_FEATURES], -1).astype(np.float64)
    for table in (block_table, fixed_table):
        table.flags.writeable = False      # cached and shared: no caller may change them
    return block_table, fixed_table


@functools.lru_cache(maxsize=8)
def _macs_tables(space: ViTSpace) -> tuple[np.ndarray, np.ndarray]:
    """(E, H, R) block MACs and (E,) patch embedding + classifier MACs, from analytics' closed
    forms (the MACs columns of `_feature_tables` split them by kind; the tests check they add up)."""
    g = _grid(space)
    block = block_terms(space, g["c"], g["h"], g["m"])["macs"].astype(np.float64)
    fixed = fixed_terms(space, np.array(space.embed_dims, np.int64))["macs"].astype(np.float64)
    for table in (block, fixed):
        table.flags.writeable = False
    return block, fixed


# ---------------------------------------------------------------------- keys
def block_key(space: ViTSpace, c: int, heads: int, hidden: int) -> str:
    """Key of one encoder block: tokens, width, heads x head size, MLP hidden units."""
    return f"vit_block-tokens:{space.num_patches}-embed:{c}-heads:{heads}x{space.head_dim}-mlp:{hidden}-act:gelu"


def patch_embed_key(space: ViTSpace, c: int) -> str:
    """Key of the patch embedding (conv, flatten, + position embedding) at width `c`."""
    s = space.image_size
    return f"vit_patch_embed-input:{s}x{s}x{space.in_channels}-patch:{space.patch_size}-embed:{c}"


def head_key(space: ViTSpace, c: int) -> str:
    """Key of the head (final LayerNorm, mean over the tokens, classifier) at width `c`."""
    return f"vit_head-tokens:{space.num_patches}-embed:{c}-classes:{space.num_classes}"


# ---------------------------------------------------------------------- isolated modules
@functools.lru_cache(maxsize=1)
def _piece_types() -> tuple[type, type]:
    """The patch embedding and the head of `StaticViT` as modules of their own (torch is
    imported only when a lookup table is measured)."""
    import torch
    from torch import nn

    class PatchEmbedding(nn.Module):
        def __init__(self, conv: nn.Conv2d, pos_embed: torch.Tensor):
            super().__init__()
            self.conv, self.pos_embed = conv, nn.Parameter(pos_embed)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).flatten(2).transpose(1, 2) + self.pos_embed

    class Head(nn.Module):
        def __init__(self, norm: nn.LayerNorm, classifier: nn.Linear):
            super().__init__()
            self.norm, self.classifier = norm, classifier

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.norm(x).mean(1))

    return PatchEmbedding, Head


# ---------------------------------------------------------------------- the family-neutral interface
class ViTLatencyFeatures(GenomeLatencyFeatures):
    """Latency features of a `ViTSpace` (or preset name). Tables are (E, H, R[, F]) per block,
    indexed by the option indices of embed_dim, heads and mlp_ratio, and (E[, F]) fixed (patch
    embedding + head), as the module's docstring says."""

    def __init__(self, space: ViTSpace | str):
        self.space = _space(space)

    # ------------------------------------------------------------- features
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
    def dataset_configs(self, n: int, seed: int = 0) -> list[ViTConfig]:
        """The largest, the smallest, then random configs whose (embed_dim, depth) pairs cycle
        through every combination in a seeded order (widths and depths evenly covered), with
        each block's heads and MLP ratio drawn uniformly."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ValueError(f"n = {n!r}; allowed: an integer >= 2 (the largest and smallest come first)")
        space, genome = self.space, self.space.genome
        extremes = [space.largest(), space.smallest()]
        if n == 2:
            return extremes
        rng = np.random.default_rng(seed)
        genes = genome.random(n - 2, rng)
        combos = np.array([(e, d) for e in range(len(space.embed_dims)) for d in range(len(space.depths))])
        cycles = -(-(n - 2) // len(combos))
        picks = np.concatenate([rng.permutation(len(combos)) for _ in range(cycles)])[:n - 2]
        genes[:, genome.embed_gene], genes[:, genome.depth_gene] = combos[picks, 0], combos[picks, 1]
        return extremes + genome.to_configs(genes)

    # ------------------------------------------------------------- lookup-table keys
    def block_keys(self) -> np.ndarray:
        g = _grid(self.space)
        keys = np.empty(g["c"].shape, object)
        for i in np.ndindex(keys.shape):
            keys[i] = block_key(self.space, int(g["c"][i]), int(g["h"][i]), int(g["m"][i]))
        return keys

    def fixed_keys(self) -> tuple[np.ndarray, np.ndarray]:
        patch = np.array([patch_embed_key(self.space, c) for c in self.space.embed_dims], object)
        head = np.array([head_key(self.space, c) for c in self.space.embed_dims], object)
        return patch, head

    def unique_blocks(self) -> list[dict[str, Any]]:
        """One entry per key: blocks ("block", with embed_dim, heads, mlp_ratio), then the patch
        embeddings ("patch_embed") and heads ("head") with their embed_dim."""
        space, keys = self.space, self.block_keys()
        seen: dict[str, dict[str, Any]] = {}
        for e, h, r in np.ndindex(keys.shape):
            seen.setdefault(keys[e, h, r], {"key": keys[e, h, r], "kind": "block", "embed_dim": space.embed_dims[e],
                                            "heads": space.num_heads[h], "mlp_ratio": space.mlp_ratios[r]})
        for kind, table in zip(("patch_embed", "head"), self.fixed_keys()):
            for e, key in enumerate(table):
                seen.setdefault(key, {"key": key, "kind": kind, "embed_dim": space.embed_dims[e]})
        return list(seen.values())

    def block_module(self, entry: Mapping[str, Any], supernet: Any) -> tuple[Any, tuple[int, ...]]:
        """The static module of a `unique_blocks` entry cut from `supernet` (a `ViTSupernet` of
        this space; weights do not change latency, the first block slot's serve every block),
        eval mode, and its batch-1 input shape."""
        import torch

        space, kind = self.space, entry.get("kind")
        c = entry["embed_dim"]
        tokens = (1, space.num_patches, c)
        with torch.no_grad():
            if kind == "block":
                hidden = space.mlp_hidden(c, entry["mlp_ratio"])
                return supernet.blocks[0].extract(c, entry["heads"], hidden).eval(), tokens
            patch_embedding, head = _piece_types()
            if kind == "patch_embed":
                module = patch_embedding(supernet.patch_embed.extract(c), supernet.pos_embed[:, :, :c].clone())
                return module.eval(), (1, space.in_channels, space.image_size, space.image_size)
            if kind == "head":
                module = head(supernet.norm.extract(c), supernet.head.extract(c, space.num_classes))
                return module.eval(), tokens
        raise ValueError(f"lookup-table entry kind = {kind!r}; allowed: 'block', 'patch_embed', 'head'")

    # ------------------------------------------------------------- int8 files
    def int8_scale_counts(self, configs: Configs) -> tuple[np.ndarray, np.ndarray]:
        """Per config, the per-channel scales the MCU kit's Flash bound counts (one per output
        channel of every conv / linear weight and one per bias channel: every layer here has a
        bias) and the conv / linear layers: the patch conv, per block qkv, projection, fc1 and
        fc2, the classifier. An upper bound for a ViT's int8 file, whose MatMul biases are
        quantized per tensor (`analytics`)."""
        v = self.space.genome.values(self._genes(configs))
        c, d = v["embed_dim"], self.space.head_dim
        per_block = 3 * v["num_heads"] * d + c[:, None] + v["mlp_hidden"] + c[:, None]    # qkv, proj, fc1, fc2
        outputs = c + self.space.num_classes + np.where(v["active"], per_block, 0).sum(1)
        return 2 * outputs, 2 + 4 * v["depth"]

    # ------------------------------------------------------------- gathers
    def gather(self, configs: Configs, block_table: np.ndarray, fixed_table: np.ndarray) -> np.ndarray:
        """Sum over the kept blocks of `block_table[e, h, r]` plus `fixed_table[e]`, per config
        (tables may have a trailing feature axis). One gather, no Python loop over configs."""
        genome = self.space.genome
        genes = self._genes(configs)
        e = genes[:, genome.embed_gene]
        per_block = block_table[e[:, None], genes[:, genome.heads_genes], genes[:, genome.ratio_genes]]
        active = genome.active_slots(genes).astype(per_block.dtype)
        return np.einsum("ns...,ns->n...", per_block, active) + fixed_table[e]

    def table_range(self, block_table: np.ndarray, fixed_table: np.ndarray) -> tuple[float, float]:
        """Exact (min, max) over every subnet: given the width, every kept block picks its
        heads and MLP ratio freely and every slot has the same choices, so a depth-d extreme
        is d times a block's extreme; then the extreme over the depths and the widths."""
        per_block = np.asarray(block_table, np.float64).reshape(block_table.shape[0], -1)
        depths = np.array(self.space.depths, np.float64)
        out = []
        for pick in (np.min, np.max):
            by_depth = depths[None, :] * pick(per_block, 1)[:, None] + np.asarray(fixed_table)[:, None]
            out.append(float(pick(by_depth)))
        return out[0], out[1]
