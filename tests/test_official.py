"""`import_official_ofa`: official OFA MobileNetV3 state dicts -> our `Supernet`.

The equivalence tests run the official implementation (PyPI package `ofa`, a test-only
dependency: `pip install --no-deps ofa==0.1.0.post202307202001`; it also needs numpy,
Pillow and torchvision to import) with random weights, and are skipped where it is absent.
The key-mapping and error tests need only torch.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

import pytest
import torch

from ofa_engine.families.mbv3.official import _key_map, import_official_ofa
from ofa_engine.families.mbv3.space import SearchSpace
from ofa_engine.families.mbv3.supernet import build_supernet
from tests.helpers_official import calibrate_bn as _calibrate_bn
from tests.helpers_official import check_import_refusals, imagenet_folder
from tests.helpers_official import official_input as _input
from tests.helpers_official import run_with_features as _run

PRESETS = {1.0: "ofa-mbv3-w1.0", 1.2: "ofa-mbv3-w1.2"}
TOL = 1e-4



@torch.no_grad()
def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Random weights that keep activations O(1) through 20 blocks, BN statistics included,
    and kernel-transform matrices away from the identity (else the transform is untested)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=gen)

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.endswith("_matrix") or leaf.startswith("transform_"):
            n = p.shape[0]
            p.copy_(torch.eye(n) + 0.15 * randn(n, n))
        elif p.dim() >= 2:
            fan_in = p[0].numel()
            p.copy_(randn(*p.shape) / math.sqrt(fan_in))
        elif ".bn." in name and leaf == "weight":
            # Small scale at the end of residual branches, so that sums of branches stay O(1).
            low, span = (0.05, 0.25) if "point_linear" in name else (0.5, 0.5)
            p.copy_(low + span * rand(*p.shape))
        else:  # BN shift, SE and classifier biases
            p.copy_(0.2 * randn(*p.shape))
    for name, b in module.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(0.2 * randn(*b.shape))
        elif name.endswith("running_var"):
            b.copy_(0.5 + 1.5 * rand(*b.shape))
        elif name.endswith("num_batches_tracked"):
            b.fill_(int(torch.randint(1, 10_000, (), generator=gen)))


def _official_state(supernet) -> dict[str, torch.Tensor]:
    """Our supernet's state under the official names (the inverse of the import)."""
    ours = supernet.state_dict()
    return {official: ours[key].clone() for official, key, _, _ in _key_map(supernet.space.name)}


def _image_size(width: float) -> int:
    return 128 if width == 1.0 else 160  # the smallest resolution of each space


def _configs(space: SearchSpace, image_size: int) -> list:
    configs = [space.largest(), space.smallest()] + [space.sample(seed) for seed in range(5)]
    # Mixed kernels in one block sequence, including 3 after 7 (the two-step transform).
    mixed = space.largest()
    configs.append(dataclasses.replace(
        mixed, ks=tuple((3, 5, 7)[i % 3] for i in range(space.num_slots)),
        e=tuple((6, 3, 4)[i % 3] for i in range(space.num_slots)), d=(4, 2, 3, 4, 2)))
    configs = [dataclasses.replace(c, image_size=image_size) for c in configs]
    # An odd feature-map size after every stride-2 layer (132 -> 66, 33, 17, 9, 5), where a
    # padding that differed from the official one would show.
    return configs + [dataclasses.replace(space.sample(10), image_size=image_size + 4)]


# ---------------------------------------------------------------- against the official code
@pytest.fixture(scope="module", params=[1.0, 1.2], ids=["w1.0", "w1.2"])
def official_pair(request):
    pytest.importorskip("ofa")
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    width = request.param
    net = OFAMobileNetV3(n_classes=1000, dropout_rate=0, width_mult=width, ks_list=[3, 5, 7],
                         expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    _randomise(net, seed=int(width * 10))
    _calibrate_bn(net, _input(_image_size(width)), seed=int(width * 10))
    supernet = import_official_ofa({"state_dict": net.state_dict()}).eval()
    return width, net, supernet


def test_detects_width_and_loads_every_tensor(official_pair):
    width, net, supernet = official_pair
    assert supernet.space.name == PRESETS[width]
    theirs = net.state_dict()
    ours = supernet.state_dict()
    assert len(theirs) == len(ours) == 475
    for official, key, _, _ in _key_map(supernet.space.name):
        assert torch.equal(ours[key], theirs[official]), key


def test_matches_official_outputs(official_pair):
    width, net, supernet = official_pair
    results, worst = [], 0.0
    with torch.no_grad():
        for cfg in _configs(supernet.space, _image_size(width)):
            x = _input(cfg.image_size)
            net.set_active_subnet(ks=list(cfg.ks), e=list(cfg.e), d=list(cfg.d))
            expected = _run(net, net.final_expand_layer, x)
            static = net.get_active_subnet(preserve_weight=True).eval()
            extracted = supernet.extract(cfg)
            for name, got in (
                    ("supernet", _run(lambda t: supernet(t, cfg), supernet.final_expand, x)),
                    ("extract", _run(extracted, extracted.final_expand, x)),
                    ("official get_active_subnet", _run(static, static.final_expand_layer, x))):
                for what, a, b in zip(("logits", "features"), got, expected):
                    diff = (a - b).abs().max().item()
                    worst = max(worst, diff)
                    assert diff <= TOL, (f"{name} {what} differ from official by {diff:.3g} "
                                         f"at {cfg.to_json()}")
            results.append(expected)
    # The comparison is meaningful: outputs are O(1), and an error of a few times TOL in a
    # weight would show, since the features depend on the input and all outputs on the config.
    for logits, features in results:
        assert 0.05 < features.std().item() < 100 and 0.05 < logits.std().item() < 100
        assert (features[0] - features[1]).abs().max() > 20 * TOL
    for i, (logits, features) in enumerate(results):
        for other, _ in results[i + 1:]:
            assert (logits - other).abs().max() > 100 * TOL
    print(f"w{width}: max |ours - official| = {worst:.3g} over {len(results)} configs x 3 paths")


def test_kernel_transform_is_exercised(official_pair):
    # Ignoring the learned 7to5 / 5to3 transforms (plain centre crop) must break agreement.
    width, net, supernet = official_pair
    cfg = dataclasses.replace(supernet.space.smallest(), image_size=_image_size(width))
    x = _input(cfg.image_size, seed=1)
    plain = import_official_ofa({k: (torch.eye(v.shape[0]) if k.endswith("_matrix") else v)
                                 for k, v in net.state_dict().items()}).eval()
    with torch.no_grad():
        net.set_active_subnet(ks=list(cfg.ks), e=list(cfg.e), d=list(cfg.d))
        _, expected = _run(net, net.final_expand_layer, x)
        _, ours = _run(lambda t: supernet(t, cfg), supernet.final_expand, x)
        _, wrong = _run(lambda t: plain(t, cfg), plain.final_expand, x)
    assert (ours - expected).abs().max() <= TOL
    assert (wrong - expected).abs().max() > 1000 * TOL


# ---------------------------------------------------------------- mapping and errors (torch only)
@pytest.fixture(scope="module")
def random_official():
    supernet = build_supernet("ofa-mbv3-w1.0")
    _randomise(supernet, seed=3)
    return supernet.state_dict(), _official_state(supernet)


@pytest.mark.parametrize("preset", sorted(PRESETS.values()))
def test_round_trip_both_widths(preset):
    supernet = build_supernet(preset)
    _randomise(supernet, seed=4)
    official = _official_state(supernet)
    assert len(official) == 475
    assert "blocks.1.conv.depth_conv.conv.7to5_matrix" in official
    assert "blocks.20.conv.depth_conv.se.fc.expand.bias" in official
    imported = import_official_ofa(official)
    assert imported.space.name == preset
    imported_state = imported.state_dict()
    for key, value in supernet.state_dict().items():
        assert torch.equal(imported_state[key], value), key


def test_accepts_checkpoint_wrapper_module_prefix_and_legacy_names(random_official):
    ours, official = random_official
    # Older releases: `mobile_inverted_conv` for `conv`, static-layer `.bn.` for `.bn.bn.`.
    legacy = {k.replace("blocks.5.conv.", "blocks.5.mobile_inverted_conv.")
              .replace("blocks.6.conv.inverted_bottleneck.bn.bn.", "blocks.6.conv.inverted_bottleneck.bn."): v
              for k, v in official.items()}
    assert "blocks.5.mobile_inverted_conv.depth_conv.se.fc.reduce.weight" in legacy
    for variant in ({"state_dict": official, "epoch": 3},
                    {"module." + k: v for k, v in official.items()},
                    legacy):
        imported = import_official_ofa(variant).state_dict()
        assert all(torch.equal(imported[k], v) for k, v in ours.items())


def _error(state) -> str:
    with pytest.raises(ValueError) as info:
        import_official_ofa(state)
    return str(info.value)


def test_missing_key(random_official):
    _, official = random_official
    state = dict(official)
    del state["blocks.7.conv.point_linear.bn.bn.running_var"]
    message = _error(state)
    assert "missing key 'blocks.7.conv.point_linear.bn.bn.running_var'" in message
    assert "(40,)" in message


def test_unexpected_key(random_official):
    _, official = random_official
    extra = "blocks.21.conv.point_linear.conv.conv.weight"
    message = _error({**official, extra: torch.zeros(3, 4, 1, 1)})
    assert "unexpected key 'blocks.21.conv.point_linear.conv.conv.weight'" in message
    assert "(3, 4, 1, 1)" in message


def test_wrong_shape(random_official):
    _, official = random_official
    key = "blocks.3.conv.inverted_bottleneck.conv.conv.weight"
    message = _error({**official, key: torch.zeros(144, 24, 3, 3)})
    assert f"key '{key}' has shape (144, 24, 3, 3), expected shape (144, 24, 1, 1)" in message


def test_mixed_widths_rejected():
    w10 = _official_state(build_supernet("ofa-mbv3-w1.0"))
    w12 = _official_state(build_supernet("ofa-mbv3-w1.2"))
    message = _error({**w10, "classifier.linear.weight": w12["classifier.linear.weight"]})
    assert "'classifier.linear.weight' has shape (1000, 1536), expected shape (1000, 1280)" in message


def test_non_tensor_and_bad_dtype(random_official):
    _, official = random_official
    message = _error({**official, "first_conv.conv.weight": [[0.0]]})
    assert "'first_conv.conv.weight' holds a list" in message and "(16, 3, 3, 3)" in message
    message = _error({**official, "first_conv.conv.weight": torch.zeros(16, 3, 3, 3, dtype=torch.long)})
    assert "'first_conv.conv.weight'" in message and "dtype torch.int64" in message


def test_duplicate_spelling_and_garbage():
    official = _official_state(build_supernet("ofa-mbv3-w1.0"))
    key = "blocks.2.conv.depth_conv.bn.bn.weight"
    message = _error({**official, key.replace(".bn.bn.", ".bn."): official[key]})
    assert "names the same entry" in message
    assert "empty" in _error({}) and "unexpected key 'fc.weight'" in _error({"fc.weight": torch.zeros(2)})
    with pytest.raises(ValueError):
        import_official_ofa([("first_conv.conv.weight", torch.zeros(1))])


# ---------------------------------------------------------------- official checkpoints as a package
@pytest.fixture(scope="module")
def official_package(tmp_path_factory):
    """An official-format w1.0 checkpoint and accuracy predictor with random weights (built with
    the `ofa` package), and a 1000-class ImageNet-style folder of tiny images, imported with
    `import-official`."""
    pytest.importorskip("ofa")
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    from ofa.nas.accuracy_predictor import AccuracyPredictor, MobileNetArchEncoder

    from ofa_engine.cli import main

    space = SearchSpace.preset("ofa-mbv3-w1.0")
    torch.manual_seed(10)
    net = OFAMobileNetV3(n_classes=1000, dropout_rate=0, width_mult=1.0, ks_list=[3, 5, 7],
                         expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    # The official initialisation, not _randomise: specialize recalibrates BN on the package's
    # images, and _randomise's network is chaotic enough that the export check's random batch
    # then gives logits of O(1000) (float32 rounding alone exceeds TOL); this one stays O(1).
    _calibrate_bn(net, _input(128), seed=10)
    encoder = MobileNetArchEncoder(image_size_list=list(space.resolutions), ks_list=[3, 5, 7],
                                   expand_list=[3, 4, 6], depth_list=[2, 3, 4])
    torch.manual_seed(5)
    predictor = AccuracyPredictor(encoder, device="cpu")
    with torch.no_grad():
        predictor.base_acc.fill_(0.75)
    root = tmp_path_factory.mktemp("official")
    torch.save({"state_dict": net.state_dict()}, root / "ofa_mbv3_d234_e346_k357_w1.0.pth")
    torch.save(predictor.state_dict(), root / "acc_predictor.pth")
    imagenet_folder(root, 128)   # noise like the export check's random batch, at the stored size
    pkg = root / "ofa-w1.0"
    assert main(["import-official", "--checkpoint", str(root / "ofa_mbv3_d234_e346_k357_w1.0.pth"),
                 "--accuracy-predictor", str(root / "acc_predictor.pth"), "--data", str(root / "imagenet"),
                 "--out", str(pkg), "--calibration-images", "8", "--evaluation-images", "4",
                 "--image-size", "128", "--no-accuracy-report"]) == 0
    return net, predictor, pkg, root


def test_official_package_and_its_predictor(official_package):
    from ofa_engine.packages import load_package
    net, predictor, pkg, _ = official_package
    package = load_package(pkg)
    assert package.space.name == "ofa-mbv3-w1.0" and package.num_classes == 1000 and package.channels == 3
    assert package.labels[:2] == ("n00000000", "n00000001") and len(package.calibration) == 8
    assert len(package.supernet.state_dict()) == len(net.state_dict()) == 475
    space = package.space
    configs = [space.largest(), space.smallest()] + [space.sample(seed) for seed in range(30)]
    with torch.no_grad():
        theirs = predictor.predict_acc([c.to_dict() for c in configs]).numpy()
    ours = package.accuracy_predictor.predict(configs)
    assert np.abs(ours - theirs).max() <= 1e-5
    assert theirs.std() > 1e-3   # the predictions differ between configs: the comparison means something


def test_official_package_specializes_and_matches_the_official_subnet(official_package, tmp_path, capsys):
    import json

    import onnx
    import onnxruntime as ort

    from ofa_engine.cli import main
    net, _, pkg, _ = official_package
    out = tmp_path / "m.onnx"
    assert main(["specialize", "--supernet", str(pkg), "--macs-m", "150", "--option", "generations=10",
                 "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["measured"]["macs"] <= 150e6 and report["predicted"]["accuracy_source"] == "predictor"
    model = onnx.load(out)
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim][1:] == [1000]
    assert json.loads({p.key: p.value for p in model.metadata_props}["labels"])[999] == "n00000999"

    # The same config at 128 px, where the random BN statistics were set (at other sizes this
    # random network's activations grow until float32 rounding alone exceeds TOL, see
    # _calibrate_bn), exported with the supernet's own statistics: equal to the official subnet.
    cfg = dict(report["config"], image_size=128)
    plain = tmp_path / "plain.onnx"
    assert main(["export", "--supernet", str(pkg), "--config", json.dumps(cfg), "--out", str(plain),
                 "--no-bn-recalibration"]) == 0
    x = _input(128, batch=2, seed=3)
    got = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        net.set_active_subnet(ks=cfg["ks"], e=cfg["e"], d=cfg["d"])
        expected = net(x).numpy()
        net.set_max_net()
        other = net(x).numpy()
    diff = np.abs(got - expected).max()
    assert diff <= TOL
    # Meaningful: the logits differ between the two inputs, and between this subnet and the
    # largest, by far more than between ours and the official (measured: 1.7e-4, 2.5 and 8e-8).
    assert np.abs(expected[0] - expected[1]).max() > 100 * diff
    assert np.abs(other - expected).max() > 100 * TOL


def test_official_package_searches_under_the_bundled_w10_cpu_latency_profile(official_package, capsys):
    """The bundled cpu-ort-1t-w1.0 profile (measured for the w1.0 space) has a latency model for
    an imported official package; tiny-fmnist's cpu-ort-1t does not."""
    import json

    from ofa_engine.cli import main
    from ofa_engine.devices.profiles import load_profile, profiles_for_space
    from ofa_engine.packages import load_package
    _, _, pkg, _ = official_package
    package = load_package(pkg)
    listed = dict(profiles_for_space(package))
    assert listed["cpu-ort-1t-w1.0"] and not listed["cpu-ort-1t"] and listed["stm32f746"]
    assert main(["search", "--supernet", str(pkg), "--profile", "cpu-ort-1t-w1.0", "--latency-ms", "12",
                 "--option", "generations=10"]) == 0
    found = json.loads(capsys.readouterr().out)
    from ofa_engine import SubnetConfig
    config = SubnetConfig.from_dict(found["config"])
    latency = load_profile("cpu-ort-1t-w1.0").for_space(package.space).predict_latency_ms([config])[0]
    assert latency <= 12
    assert load_profile("cpu-ort-1t-w1.0").predict_latency_ms([package.space.largest()], space=package.space)[0] > 12


def test_import_official_refuses_a_hostile_or_wrong_checkpoint(official_package, tmp_path, capsys):
    _, _, _, root = official_package
    check_import_refusals(root, "ofa_mbv3_d234_e346_k357_w1.0.pth", {"fc.weight": torch.zeros(2)},
                          "unexpected key 'fc.weight'", "(hidden, 145)", tmp_path, capsys)
