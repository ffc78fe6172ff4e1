import threading

import numpy as np
import pytest
import torch
from torch import nn

from ofa_engine import SearchSpace, build_supernet
from ofa_engine.families.mbv3.static import ConvBNAct, MBConv, SqueezeExcite, StaticNet, fold_bn
from conftest import PRESETS, calibrated_supernet

STANDARD = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Hardswish, nn.Hardsigmoid, nn.Linear, nn.Dropout,
            nn.Identity, nn.Sequential, ConvBNAct, MBConv, SqueezeExcite, StaticNet)

_NETS = {}


def net_of(name):
    if name not in _NETS:
        _NETS[name] = calibrated_supernet(name)
    return _NETS[name]


def _configs(space, n):
    return [space.largest(), space.smallest()] + [space.sample(seed) for seed in range(n - 2)]


@pytest.mark.parametrize("name", PRESETS)
def test_extract_equals_supernet_on_50_configs(name):
    net = net_of(name)
    space = net.space
    torch.manual_seed(1)
    worst = 0.0
    for cfg in _configs(space, 50):
        x = torch.randn(1, space.in_channels, cfg.image_size, cfg.image_size)
        with torch.no_grad():
            expected = net(x, cfg)
            static = net.extract(cfg)
            got = static(x)
        assert got.shape == (1, space.num_classes)
        assert expected.abs().max() > 1e-2  # a meaningful comparison, not of near-zero outputs
        # Relative to the logits' size: the supernet and the static net may run different
        # (equally exact) kernels, e.g. the depthwise matrix path on small maps, and an
        # untrained net's logits reach the hundreds.
        worst = max(worst, float((got - expected).abs().max() / expected.abs().max().clamp(min=1.0)))
        assert not static.training and static.config == cfg
    assert worst <= 1e-5


def test_extracted_net_uses_only_standard_layers_and_owns_its_weights(tiny_net):
    cfg = tiny_net.space.sample(4)
    static = tiny_net.extract(cfg)
    assert all(isinstance(m, STANDARD) for m in static.modules())
    shared = {p.data_ptr() for p in tiny_net.parameters()}
    assert not any(p.data_ptr() in shared for p in static.parameters())
    # Its size follows the config: depth d gives sum(d) elastic blocks after the first block.
    assert len(static.blocks) == 1 + sum(cfg.d)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fold_bn_keeps_the_outputs_and_leaves_no_batchnorm(tiny_net, seed):
    cfg = tiny_net.space.sample(seed)
    static = tiny_net.extract(cfg)
    torch.manual_seed(seed)
    x = torch.randn(8, tiny_net.space.in_channels, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        expected = static(x)
        n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in static.modules())
        folded = fold_bn(static)
        got = folded(x)
    assert n_bn > 0 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert expected.abs().max() > 1e-2
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    with pytest.raises(ValueError, match="eval mode"):
        fold_bn(tiny_net.extract(cfg).train())


def test_extracted_kernel_uses_transform_matrices(tiny_net):
    space = tiny_net.space
    cfg = space.largest().__class__(**{**space.largest().to_dict(), "ks": [3] * space.num_slots})
    static = tiny_net.extract(cfg)
    dw = static.blocks[1].depth_conv.conv.weight
    crop = tiny_net.blocks[0].depth_conv.conv.weight[:dw.shape[0], :, 2:5, 2:5]
    assert dw.shape[-1] == 3
    assert not torch.allclose(dw, crop)  # a learned transform, not a plain crop


def test_supernet_has_no_active_subnet_state():
    # Extraction from two threads at once: each gets exactly its own config's network.
    net = net_of("tiny-fmnist")
    space = net.space
    configs = [space.sample(100 + i) for i in range(16)]
    inputs = {cfg: torch.randn(2, 1, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(i))
              for i, cfg in enumerate(configs)}
    with torch.no_grad():
        expected = {cfg: net.extract(cfg)(inputs[cfg]) for cfg in configs}
    results, errors = {}, []
    barrier = threading.Barrier(2)

    def work(part):
        try:
            barrier.wait()
            for cfg in part:
                with torch.no_grad():
                    results[cfg] = (net.extract(cfg)(inputs[cfg]), net(inputs[cfg], cfg))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(configs[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for cfg in configs:
        static_out, super_out = results[cfg]
        assert torch.equal(static_out, expected[cfg])
        assert torch.allclose(super_out, expected[cfg], atol=1e-5)


@pytest.mark.parametrize("name", ["tiny-fmnist", "ofa-mbv3-w1.0"])
def test_reorganize_channels_keeps_function(name):
    net = calibrated_supernet(name, seed=3)
    space = net.space
    cfg = space.largest().__class__(**{**space.largest().to_dict(), "image_size": space.resolutions[0]})
    x = torch.randn(2, space.in_channels, cfg.image_size, cfg.image_size)
    before_weights = net.blocks[0].point_linear.conv.weight.clone()
    with torch.no_grad():
        before = net(x, cfg)
        net.reorganize_channels()
        after = net(x, cfg)
    # Equal up to float32 summation order (logits are O(10) here).
    assert torch.allclose(before, after, rtol=1e-5, atol=1e-4)
    assert not torch.equal(before_weights, net.blocks[0].point_linear.conv.weight)  # something moved
    # Middle channels are now sorted by importance.
    for block in net.blocks:
        imp = block.point_linear.conv.weight.abs().sum((0, 2, 3))
        assert torch.all(imp[:-1] >= imp[1:])


def test_reorganize_protects_smaller_expand_widths():
    net = calibrated_supernet("tiny-fmnist", seed=4)
    block = net.blocks[1]
    max_in = block.inverted_bottleneck.conv.weight.shape[1]
    keep = block.middle_channels(max_in, 4)
    inner = set(map(tuple, block.point_linear.conv.weight[:, :keep].transpose(0, 1).reshape(keep, -1).tolist()))
    with torch.no_grad():
        net.reorganize_channels(expand_stage=1, stage=False)
    after = block.point_linear.conv.weight[:, :keep].transpose(0, 1).reshape(keep, -1).tolist()
    assert set(map(tuple, after)) == inner  # the e4 channels stay the e4 channels


def test_stage_channel_sort_keeps_function_and_orders_by_importance():
    net = calibrated_supernet("tiny-fmnist", seed=5)
    space = net.space
    size = space.resolutions[0]  # where the BN statistics were calibrated: O(1) outputs
    x = torch.randn(2, 1, size, size)
    cfg = space.largest().__class__(**{**space.largest().to_dict(), "image_size": size})
    with torch.no_grad():
        before = net(x, cfg)
        net.reorganize_channels(middle=False, stage=True)
        assert torch.allclose(before, net(x, cfg), rtol=1e-5, atol=1e-4)


def test_any_resolution_of_the_space_runs(tiny_net):
    space = tiny_net.space
    for size in space.resolutions:
        cfg = space.sample(size).__class__(**{**space.sample(size).to_dict(), "image_size": size})
        assert tiny_net(torch.randn(1, 1, size, size), cfg).shape == (1, 10)


def test_forward_rejects_invalid_config(tiny_net):
    with pytest.raises(ValueError, match="'image_size' = 99"):
        tiny_net(torch.randn(1, 1, 28, 28), {**tiny_net.space.largest().to_dict(), "image_size": 99})


@pytest.mark.parametrize("c,h,w,k,stride", [(8, 2, 2, 7, 1), (8, 2, 2, 3, 1), (6, 4, 4, 7, 2), (6, 4, 4, 5, 1),
                                            (5, 3, 4, 5, 2), (4, 6, 6, 3, 1)])
def test_depthwise_matrix_path_equals_the_convolution_with_gradients(c, h, w, k, stride):
    from torch.nn import functional as F
    from ofa_engine.families.mbv3.elastic import depthwise_conv_small_map
    torch.manual_seed(0)
    x = torch.randn(3, c, h, w).to(memory_format=torch.channels_last).requires_grad_()
    weight = torch.randn(c, 1, k, k, requires_grad=True)
    grad_out = None
    results = []
    for fn in (lambda: F.conv2d(x, weight, None, stride, k // 2, 1, c),
               lambda: depthwise_conv_small_map(x, weight, stride)):
        x.grad = weight.grad = None
        y = fn()
        grad_out = torch.randn_like(y) if grad_out is None else grad_out
        y.backward(grad_out)
        results.append((y.detach(), x.grad.clone(), weight.grad.clone(), y.is_contiguous(memory_format=torch.channels_last)))
    (y0, gx0, gw0, _), (y1, gx1, gw1, channels_last) = results
    assert y1.shape == y0.shape
    assert torch.allclose(y1, y0, atol=1e-5) and torch.allclose(gx1, gx0, atol=1e-5)
    assert torch.allclose(gw1, gw0, atol=1e-4)
    assert channels_last


def test_elastic_depthwise_takes_the_matrix_path_only_where_the_kernel_exceeds_the_map(monkeypatch):
    import ofa_engine.families.mbv3.elastic as elastic
    calls = []
    real = elastic.depthwise_conv_small_map
    monkeypatch.setattr(elastic, "depthwise_conv_small_map", lambda *a: calls.append(a[0].shape) or real(*a))
    layer = elastic.ElasticDepthwiseConv2d(16, (3, 5, 7), stride=1)
    for size, k, matrix in [(2, 3, True), (4, 5, True), (4, 3, False), (6, 7, True), (8, 7, False)]:
        calls.clear()
        layer(torch.randn(2, 16, size, size), k)
        assert bool(calls) == matrix, (size, k)
