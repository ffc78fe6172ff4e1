import numpy as np
import pytest
import torch

from ofa_engine.lessons.blocks import (BLOCKS, COMPARED_BLOCKS, attention_token_sweep, block_cost,
                               bottleneck_mac_saving, compare_blocks, count_with_hooks, create_block,
                               export_block_onnx, shuffle_group_mixing, training_activation_ranking)
from ofa_engine.runtime.ort import make_session

# (input shape (C, H, W), out_channels, params) per block: several shapes and parameters each.
CASES = {
    "fc": [((16, 1, 1), 10, {}), ((7, 1, 1), None, {})],
    "conv": [((8, 5, 6), 12, {}), ((4, 7, 7), None, {"kernel_size": 5})],
    "group_conv": [((8, 5, 6), 12, {}), ((12, 4, 4), 6, {"groups": 3, "kernel_size": 1})],
    "depthwise_conv": [((8, 5, 6), None, {}), ((5, 4, 3), None, {"kernel_size": 5})],
    "pointwise_conv": [((8, 5, 6), 3, {}), ((3, 2, 2), None, {})],
    "resnet_basic": [((8, 5, 6), None, {}), ((8, 4, 4), 16, {})],
    "resnet_bottleneck": [((16, 5, 6), None, {}), ((32, 4, 4), 24, {"reduction": 2})],
    "resnext": [((32, 5, 6), None, {}), ((32, 4, 4), 16, {"groups": 4, "reduction": 4})],
    "depthwise_separable": [((8, 5, 6), None, {}), ((6, 3, 4), 10, {})],
    "inverted_bottleneck": [((8, 5, 6), None, {}), ((6, 3, 4), 10, {"expansion": 3})],
    "shufflenet": [((16, 5, 6), None, {}), ((24, 4, 4), 48, {"groups": 3, "reduction": 2})],
    "attention": [((16, 5, 6), None, {}), ((12, 1, 9), 8, {"heads": 3}), ((8, 3, 3), None, {"heads": 1})],
}
PARAMS = [(name, *case) for name, cases in CASES.items() for case in cases]


def test_every_block_has_cases():
    assert set(CASES) == set(BLOCKS)


@pytest.mark.parametrize("name,shape,out,params", PARAMS)
@pytest.mark.parametrize("dtype_bytes", [4, 1])
def test_closed_form_equals_hook_counting(name, shape, out, params, dtype_bytes):
    expected = count_with_hooks(create_block(name, shape[0], out, **params), shape, dtype_bytes=dtype_bytes)
    assert block_cost(name, shape, out, dtype_bytes=dtype_bytes, **params) == expected


@pytest.mark.parametrize("name,shape,out,params", [(n, *CASES[n][0]) for n in CASES])
def test_onnx_export_matches_torch(name, shape, out, params, tmp_path):
    torch.manual_seed(0)
    module = create_block(name, shape[0], out, **params)
    with torch.no_grad():  # non-trivial BN statistics so that eval-mode BN is tested too
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    module.eval()
    path = tmp_path / "block.onnx"
    export_block_onnx(module, shape, path)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = module(x).numpy()
    session = make_session(path, threads=1)
    (actual,) = session.run(None, {"input": x.numpy()})
    assert actual.shape == expected.shape
    assert np.max(np.abs(actual - expected)) <= 1e-4


@pytest.mark.parametrize("channels,groups", [(16, 4), (24, 3), (64, 8)])
def test_shuffle_mixes_every_group(channels, groups):
    mixing = shuffle_group_mixing(channels, groups)
    assert len(mixing) == groups
    assert all(sources == set(range(groups)) for sources in mixing)


def test_attention_macs_grow_quadratically():
    rows = attention_token_sweep([64, 128, 256, 512], dim=32, heads=4)
    for a, b in zip(rows, rows[1:]):
        assert b["attention_matmul_macs"] == 4 * a["attention_matmul_macs"]
        # the linear projections are linear in N, so the total grows between 2x and 4x, toward 4x
        assert 2 < b["macs"] / a["macs"] < 4
    ratios = [b["macs"] / a["macs"] for a, b in zip(rows, rows[1:])]
    assert ratios == sorted(ratios)
    assert rows[-1]["training_activation_bytes"] / rows[-2]["training_activation_bytes"] > 3


@pytest.mark.parametrize("shape", [(32, 8, 8), (64, 14, 14), (256, 7, 7)])
def test_inverted_bottleneck_has_largest_training_activation(shape):
    convs = [b for b in COMPARED_BLOCKS if b != "attention"]
    ranking = training_activation_ranking(shape, convs)
    assert ranking[0][0] == "inverted_bottleneck"
    assert ranking[0][1] > 2 * ranking[1][1]
    # attention's N^2 matrices overtake it beyond a few hundred tokens; at 64 tokens they do not
    if shape[1] * shape[2] <= 64:
        assert training_activation_ranking(shape)[0][0] == "inverted_bottleneck"


def test_bottleneck_saves_macs():
    saving = bottleneck_mac_saving((256, 14, 14))
    # 1x1 (C*C/4) + 3x3 (9*C*C/16) + 1x1 (C*C/4) = 17/16 C^2 per pixel vs 18 C^2 for two 3x3 convs
    assert saving["ratio"] == pytest.approx(17 / 16 / 18)


def test_compare_blocks_without_measuring():
    rows = compare_blocks((64, 8, 8), measure=False)
    assert [r["block"] for r in rows] == list(COMPARED_BLOCKS)
    for r in rows:
        assert r["latency_ms"] is None
        assert r["inference_peak_bytes"] == 4 * r["inference_peak_bytes_int8"]
        assert r["macs"] > 0 and r["params"] > 0


def test_compare_blocks_measures_latency():
    rows = compare_blocks((16, 4, 4), blocks=["depthwise_separable"], runs=3, warmup=1)
    assert rows[0]["latency_ms"] > 0 and rows[0]["latency_iqr_ms"] >= 0


@pytest.mark.parametrize("call,names", [
    (lambda: create_block("resnext", 32, groups=5), ["groups", "allowed"]),
    (lambda: create_block("attention", 30, heads=4), ["heads", "allowed"]),
    (lambda: create_block("group_conv", 8, 6, groups=4), ["groups", "out_channels"]),
    (lambda: create_block("shufflenet", 16, groups=3), ["groups", "allowed"]),
    (lambda: create_block("resnet_bottleneck", 18), ["reduction", "allowed"]),
    (lambda: create_block("conv", 0), ["in_channels", "positive"]),
    (lambda: create_block("conv", 8, -1), ["out_channels", "positive"]),
    (lambda: create_block("inverted_bottleneck", 8, expansion=0), ["expansion", "positive"]),
    (lambda: create_block("conv", 8, kernel_size=2.5), ["kernel_size", "positive"]),
    (lambda: create_block("depthwise_conv", 8, 16), ["out_channels", "allowed"]),
    (lambda: create_block("nope", 8), ["block", "allowed"]),
    (lambda: create_block("conv", 8, groups=2), ["groups", "allowed"]),
    (lambda: block_cost("conv", (8, 0, 4)), ["H", "positive"]),
    (lambda: block_cost("conv", (8, 4)), ["input_shape", "allowed"]),
    (lambda: block_cost("fc", (8, 2, 2)), ["fc", "allowed"]),
    (lambda: block_cost("conv", (8, 4, 4), dtype_bytes=0), ["dtype_bytes", "positive"]),
    (lambda: attention_token_sweep([0], 8, 2), ["tokens", "positive"]),
    (lambda: shuffle_group_mixing(10, 4), ["groups", "allowed"]),
])
def test_bad_parameters_raise_value_error_naming_them(call, names):
    with pytest.raises(ValueError) as info:
        call()
    for name in names:
        assert name in str(info.value)
