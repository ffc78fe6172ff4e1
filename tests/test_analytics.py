"""`analyze` (closed-form, vectorised) against independent counting on extracted static models.

The reference counters below only look at the extracted `StaticNet` (its modules, its
parameters and forward hooks on a batch-1 input); they share no code with analytics.py.
"""

import dataclasses
import functools

import numpy as np
import pytest
import torch
from torch import nn

from ofa_engine import SearchSpace, SubnetConfig, analyze, build_supernet
from ofa_engine.families.mbv3.analytics import METRICS
from ofa_engine.families.mbv3.layout import make_divisible, make_divisible_array, walk_configs
from ofa_engine.families.mbv3.space import list_presets
from ofa_engine.families.mbv3.static import ConvBNAct, MBConv
from conftest import PRESETS

torch.set_num_threads(1)

TINY = SearchSpace.preset("tiny-fmnist")
MBV3 = SearchSpace.preset("ofa-mbv3-w1.0")


# --------------------------------------------------------------------------- reference counters
@functools.lru_cache(maxsize=None)
def supernet(name: str):
    torch.manual_seed(0)
    return build_supernet(name).eval()


def count_by_hooks(model: nn.Module, in_channels: int, image_size: int, profile: list | None = None) -> dict:
    """macs, params, peak_activation_bytes and flash_bytes of a static model, by inspection.

    `profile`, when given, receives (layer name, elements held, of which residual input) for
    every conv / linear layer in execution order."""
    names = {id(m): name for name, m in model.named_modules()}
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    # Convs whose output goes through a BatchNorm (to be folded into an int32 bias).
    bn_followed = {id(m.conv) for m in model.modules()
                   if isinstance(m, ConvBNAct) and isinstance(m.bn, nn.BatchNorm2d)}
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert n_bn == len(bn_followed), "a BatchNorm that is not the .bn of a ConvBNAct"

    macs, peak, seen = 0, 0, []
    block = {"active": False}   # the MBConv being run: its input numel, residual flag, convs so far

    def block_pre(module, inputs):
        block.update(active=True, residual=bool(module.residual), input=inputs[0].numel(), convs=0)

    def block_post(module, inputs, output):
        block["active"] = False

    def layer_hook(module, inputs, output):
        nonlocal macs, peak
        x = inputs[0]
        assert x.shape[0] == 1 and output.shape[0] == 1
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            macs += module.in_features * module.out_features
        held, extra = x.numel() + output.numel(), 0
        if block["active"]:
            if block["residual"] and block["convs"] > 0:
                extra = block["input"]
            block["convs"] += 1
        peak = max(peak, held + extra)
        if profile is not None:
            profile.append((names[id(module)], held + extra, extra))
        seen.append(module)

    handles = [m.register_forward_hook(layer_hook) for m in layers]
    for m in model.modules():
        if isinstance(m, MBConv):
            handles += [m.register_forward_pre_hook(block_pre), m.register_forward_hook(block_post)]
    try:
        with torch.no_grad():
            y = model(torch.randn(1, in_channels, image_size, image_size))
    finally:
        for h in handles:
            h.remove()
    assert y.shape[0] == 1
    # Every conv / linear ran exactly once, so nothing was missed or double counted.
    assert len(seen) == len(layers) and {id(m) for m in seen} == {id(m) for m in layers}

    flash = 0
    for m in layers:
        out_channels = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        has_bias = m.bias is not None
        flash += m.weight.numel() + 4 * (out_channels if (has_bias or id(m) in bn_followed) else 0)
    params = sum(p.numel() for p in model.parameters())
    return {"macs": macs, "params": params, "peak_activation_bytes": peak, "flash_bytes": flash}


def check_against_hooks(name: str | SearchSpace, cfg: SubnetConfig) -> list:
    """Assert analyze == hook counts; return the per-layer activation profile."""
    space = SearchSpace.preset(name) if isinstance(name, str) else name
    model = (supernet(name) if isinstance(name, str) else build_supernet(space)).extract(cfg)
    profile = []
    expected = count_by_hooks(model, space.in_channels, cfg.image_size, profile)
    got = analyze(space, cfg)
    assert got == expected, f"{space.name} {cfg.to_json()}: analyze {got} != hooks {expected}"
    return profile


# --------------------------------------------------------------------------- configs
def _tiny_configs(n: int = 24) -> list[SubnetConfig]:
    """Random tiny-fmnist configs; widths and resolutions cycled so that every pair appears."""
    rng = np.random.default_rng(1234)
    out = []
    for i in range(n):
        cfg = TINY.sample(rng)
        out.append(dataclasses.replace(cfg, wid=i % len(TINY.width_mults),
                                       image_size=TINY.resolutions[(i // len(TINY.width_mults))
                                                                   % len(TINY.resolutions)]))
    return out


TINY_CONFIGS = _tiny_configs()


def _mbv3_small_configs(n: int = 6) -> list[SubnetConfig]:
    rng = np.random.default_rng(99)
    small = [r for r in MBV3.resolutions if r <= 160]
    return [dataclasses.replace(MBV3.sample(rng), image_size=int(rng.choice(small))) for _ in range(n)]


def test_tiny_configs_cover_the_space():
    assert len(TINY_CONFIGS) >= 20
    assert {c.wid for c in TINY_CONFIGS} == set(range(len(TINY.width_mults)))
    assert {c.image_size for c in TINY_CONFIGS} == set(TINY.resolutions)
    assert {(c.wid, c.image_size) for c in TINY_CONFIGS} == {
        (w, r) for w in range(len(TINY.width_mults)) for r in TINY.resolutions}
    assert {k for c in TINY_CONFIGS for k in c.ks} == set(TINY.kernel_sizes)
    assert {e for c in TINY_CONFIGS for e in c.e} == set(TINY.expand_ratios)
    assert {d for c in TINY_CONFIGS for d in c.d} == set(TINY.depths)


# --------------------------------------------------------------------------- hooks vs analyze
@pytest.mark.parametrize("cfg", TINY_CONFIGS, ids=[f"tiny{i}" for i in range(len(TINY_CONFIGS))])
def test_tiny_random_matches_hooks(cfg):
    check_against_hooks("tiny-fmnist", cfg)


@pytest.mark.parametrize("which", ["largest", "smallest"])
@pytest.mark.parametrize("name", PRESETS)
def test_extremes_match_hooks(name, which):
    space = SearchSpace.preset(name)
    check_against_hooks(name, getattr(space, which)())


@pytest.mark.parametrize("cfg", _mbv3_small_configs(), ids=[f"mbv3-{i}" for i in range(6)])
def test_mbv3_random_small_resolution_matches_hooks(cfg):
    check_against_hooks("ofa-mbv3-w1.0", cfg)


def test_residual_blocks_are_exercised():
    """tiny-fmnist has residual blocks (the first, unexpanded block included) and plain ones,
    so the hook counter's residual bookkeeping runs on both kinds (the probes above make it
    decide the peak)."""
    model = supernet("tiny-fmnist").extract(TINY.largest())
    blocks = [m for m in model.modules() if isinstance(m, MBConv)]
    assert blocks[0].residual and isinstance(blocks[0].inverted_bottleneck, nn.Identity)
    assert sum(b.residual for b in blocks) >= 5 and not all(b.residual for b in blocks)


# --------------------------------------------------------------------------- peak-location probes
# In the presets the peak always sits in a non-residual layer of stage 0, so the residual and
# first-conv parts of the peak rule never decide `peak_activation_bytes` there. These small
# custom spaces move the peak onto each of those parts (checked on the hook profile).
PROBE_BASE = SearchSpace(
    name="probe", in_channels=1, num_classes=4, width_mults=(1.0,),
    base_widths=(16, 16, 24, 32, 64, 64), first_conv_stride=2, first_block_stride=1,
    first_block_act="relu", first_block_se=False, stage_strides=(2, 2),
    stage_acts=("relu", "h_swish"), stage_se=(True, True), kernel_sizes=(3, 5),
    expand_ratios=(3, 6), depths=(1, 2), resolutions=(16, 24))

PROBES = {
    # wide input image: the first conv's input dominates
    "first_conv": (dict(in_channels=16, base_widths=(8, 8, 16, 24, 64, 64)),
                   ["largest", "smallest"], "first_conv.conv", False),
    # expand ratio 1: the residual first block's point-linear (in + out + block input) peaks
    "first_block_residual": (dict(expand_ratios=(1, 3)), ["smallest"],
                             "blocks.0.point_linear.conv", True),
    # stride-1 stage 0 keeping the width: residual expanded block at full resolution
    "residual_depthwise": (dict(stage_strides=(1, 2), base_widths=(16, 16, 16, 32, 64, 64)),
                           ["largest", "smallest"], "blocks.1.depth_conv.conv", True),
    # stride-1 stage 0 changing the width: no residual there even though the stride is 1
    "stride1_width_change": (dict(stage_strides=(1, 2), base_widths=(32, 32, 16, 24, 64, 64)),
                             ["largest", "smallest"], "blocks.1.depth_conv.conv", False),
}


@pytest.mark.parametrize("probe", list(PROBES))
def test_peak_probes_match_hooks(probe):
    overrides, which, peak_layer, residual_at_peak = PROBES[probe]
    space = dataclasses.replace(PROBE_BASE, name=f"probe-{probe}", **overrides)
    rng = np.random.default_rng(3)
    for cfg in [space.sample(rng) for _ in range(3)] + [getattr(space, w)() for w in which]:
        profile = check_against_hooks(space, cfg)
        if cfg in [getattr(space, w)() for w in which]:
            peak = max(held for _, held, _ in profile)
            first = next(p for p in profile if p[1] == peak)
            assert first[0] == peak_layer, (probe, cfg, first)
            assert (first[2] > 0) == residual_at_peak, (probe, cfg, first)
            # The part of the rule being probed decides the peak: without it the peak is lower.
            if residual_at_peak:
                assert max(held - extra for _, held, extra in profile) < peak
            elif peak_layer == "first_conv.conv":   # the only layer at the peak, so its input counts
                assert profile[0][0] == peak_layer and max(h for _, h, _ in profile[1:]) < peak


# --------------------------------------------------------------------------- official anchors
def _uniform(space: SearchSpace, k: int, e: int, d: int, size: int) -> SubnetConfig:
    return SubnetConfig(wid=0, ks=[k] * space.num_slots, e=[e] * space.num_slots,
                        d=[d] * space.num_stages, image_size=size)


@pytest.mark.parametrize("name,k,e,d,size,mmacs", [
    ("ofa-mbv3-w1.0", 7, 6, 4, 224, 566.17),
    ("ofa-mbv3-w1.0", 3, 3, 2, 224, 121.28),
    ("ofa-mbv3-w1.0", 7, 6, 4, 192, 417.29),
    ("ofa-mbv3-w1.0", 3, 3, 2, 128, 41.48),
    ("ofa-mbv3-w1.2", 7, 6, 4, 224, 843.10),
    ("ofa-mbv3-w1.2", 3, 3, 2, 224, 193.08),
    ("ofa-mbv3-w1.0", 3, 3, 4, 224, 226.19),   # "D4-W3-K3"
])
def test_official_ofa_mac_anchors(name, k, e, d, size, mmacs):
    space = SearchSpace.preset(name)
    assert round(analyze(space, _uniform(space, k, e, d, size))["macs"] / 1e6, 2) == mmacs


@pytest.mark.parametrize("which,mparams", [("largest", 7.665), ("smallest", 3.411)])
def test_official_ofa_param_anchors(which, mparams):
    assert round(analyze(MBV3, getattr(MBV3, which)())["params"] / 1e6, 3) == mparams


# --------------------------------------------------------------------------- vectorised vs single
@pytest.mark.parametrize("name", ["tiny-fmnist", "ofa-mbv3-w1.0"])
def test_vectorised_equals_single(name):
    space = SearchSpace.preset(name)
    rng = np.random.default_rng(7)
    configs = [space.sample(rng) for _ in range(1000)]
    batch = analyze(space, configs)
    assert set(batch) == set(METRICS)
    for key in METRICS:
        assert isinstance(batch[key], np.ndarray) and batch[key].dtype == np.int64
        assert batch[key].shape == (1000,)
    for i in range(0, 1000, 20):   # 50 of them, one by one
        single = analyze(space, configs[i])
        assert single == {key: int(batch[key][i]) for key in METRICS}, i
    # The rows really differ: a batch that just repeated one config would fail here.
    assert len(np.unique(batch["macs"])) > 900


def test_single_config_returns_plain_ints_and_accepts_names_and_dicts():
    cfg = TINY_CONFIGS[5]
    result = analyze(TINY, cfg)
    assert set(result) == set(METRICS)
    assert all(type(v) is int for v in result.values())
    assert analyze("tiny-fmnist", cfg) == result
    assert analyze("tiny-fmnist", cfg.to_dict()) == result
    batch = analyze("tiny-fmnist", [cfg, cfg.to_dict()])
    assert all(batch[key].tolist() == [result[key]] * 2 for key in METRICS)


@pytest.mark.parametrize("field,value", [
    ("wid", 3), ("ks", [4] * 15), ("e", [3] * 14), ("d", [4] * 5), ("image_size", 30)])
def test_invalid_config_in_list_names_the_field(field, value):
    configs = [c.to_dict() for c in TINY_CONFIGS]
    configs[11] = {**configs[11], field: value}
    with pytest.raises(ValueError, match=f"'{field}'"):
        analyze(TINY, configs)


def test_unknown_space_name():
    with pytest.raises(ValueError, match="unknown search space"):
        analyze("nope", TINY.largest())


# --------------------------------------------------------------------------- monotonicity
def _grown(cfg: SubnetConfig) -> list[tuple[SubnetConfig, bool]]:
    """Every config that grows exactly one choice of `cfg` by one step, and whether that
    choice is live (an inactive slot's ks / e do not change the network)."""
    s = TINY
    nxt = lambda values, v: values[values.index(v) + 1] if v != values[-1] else None
    active = set(s.active_slots(cfg))
    out = []
    if cfg.wid + 1 < len(s.width_mults):
        out.append((dataclasses.replace(cfg, wid=cfg.wid + 1), True))
    if nxt(s.resolutions, cfg.image_size):
        out.append((dataclasses.replace(cfg, image_size=nxt(s.resolutions, cfg.image_size)), True))
    for field, values in (("ks", s.kernel_sizes), ("e", s.expand_ratios)):
        for slot in range(s.num_slots):
            v = nxt(values, getattr(cfg, field)[slot])
            if v is not None:
                new = list(getattr(cfg, field))
                new[slot] = v
                out.append((dataclasses.replace(cfg, **{field: new}), slot in active))
    for stage in range(s.num_stages):
        v = nxt(s.depths, cfg.d[stage])
        if v is not None:
            new = list(cfg.d)
            new[stage] = v
            out.append((dataclasses.replace(cfg, d=new), True))
    return out


def test_growing_any_dimension_never_decreases_macs():
    rng = np.random.default_rng(5)
    bases = [TINY.sample(rng) for _ in range(40)] + [TINY.smallest()]
    pairs = [(i, g, live) for i, b in enumerate(bases) for g, live in _grown(b)]
    assert len(pairs) > 500
    before = analyze(TINY, bases)
    after = analyze(TINY, [g for _, g, _ in pairs])
    idx = np.array([i for i, _, _ in pairs])
    live = np.array([lv for _, _, lv in pairs])
    assert live.any() and (~live).any()
    assert (after["macs"] >= before["macs"][idx]).all()
    # Sharper: a live change strictly adds MACs; a dead slot's ks / e changes no metric.
    assert (after["macs"][live] > before["macs"][idx][live]).all()
    for key in METRICS:
        assert (after[key][~live] == before[key][idx][~live]).all(), key


# --------------------------------------------------------------------------- the layout walk
def _static_geometry(space: SearchSpace, cfg: SubnetConfig) -> list[dict]:
    """Per block of the extracted static net, read off its modules and forward hooks only."""
    model = supernet(space.name).extract(cfg)
    sizes = {}
    units = [model.first_conv, *model.blocks, model.final_expand]
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.__setitem__(id(m), (i[0].shape[-1], o.shape[-1])))
             for m in units]
    try:
        with torch.no_grad():
            model(torch.randn(1, space.in_channels, cfg.image_size, cfg.image_size))
    finally:
        for h in hooks:
            h.remove()
    act = lambda m: {nn.ReLU: "relu", nn.Hardswish: "h_swish"}[type(m)]
    conv = model.first_conv.conv
    rows = [dict(in_channels=conv.in_channels, out_channels=conv.out_channels, kernel=conv.kernel_size[0],
                 stride=conv.stride[0], activation=act(model.first_conv.act),
                 in_size=sizes[id(model.first_conv)][0], out_size=sizes[id(model.first_conv)][1])]
    for block in model.blocks:
        dw = block.depth_conv.conv
        expands = isinstance(block.inverted_bottleneck, ConvBNAct)
        rows.append(dict(in_channels=(block.inverted_bottleneck.conv.in_channels if expands else dw.in_channels),
                         mid_channels=dw.out_channels, out_channels=block.point_linear.conv.out_channels,
                         se_channels=block.se.reduce.out_channels if not isinstance(block.se, nn.Identity) else 0,
                         kernel=dw.kernel_size[0], stride=dw.stride[0], residual=block.residual,
                         activation=act(block.depth_conv.act), expands=expands,
                         in_size=sizes[id(block)][0], out_size=sizes[id(block)][1]))
    rows.append(dict(in_channels=model.final_expand.conv.in_channels, mid_channels=model.final_expand.conv.out_channels,
                     out_channels=model.feature_mix.conv.out_channels, in_size=sizes[id(model.final_expand)][0]))
    return rows


@pytest.mark.parametrize("name", list_presets())
def test_layout_walk_matches_the_extracted_network(name):
    space = SearchSpace.preset(name)
    configs = [space.sample(seed) for seed in range(3)]
    walked = walk_configs(space, configs)
    assert [b.kind for b in walked] == ["stem", "first_block"] + ["block"] * space.num_slots + ["head"]
    for i, cfg in enumerate(configs):
        expected = _static_geometry(space, cfg)
        got = [b.row(i) for b in walked if b.active[i]]
        assert len(got) == len(expected) == 3 + sum(cfg.d)
        for g, e in zip(got, expected):
            assert {k: g[k] for k in e} == e, (name, cfg, g["kind"], g["slot"])
        for g in got:
            if g["kind"] == "block":
                assert (g["kernel"], g["expand_ratio"]) == (cfg.ks[g["slot"]], cfg.e[g["slot"]])


def test_make_divisible_scalar_and_vectorised_agree():
    ints = np.arange(0, 3000)
    floats = np.random.default_rng(0).uniform(0, 3000, 5000)
    for divisor in (1, 2, 3, 5, 8, 16):
        for min_value in (None, 1, 24):
            for values in (ints, floats, floats.round(1)):
                scalar = [make_divisible(v, divisor, min_value) for v in values.tolist()]
                vector = make_divisible_array(values, divisor, min_value)
                assert vector.dtype == np.int64 and vector.tolist() == scalar, (divisor, min_value)
    # The official rule: nearest multiple, never more than 10% below the value.
    assert [make_divisible(v) for v in (16 * 1.2, 40 * 1.2, 3.9, 100)] == [24, 48, 8, 104]
