"""`import_official_resnet`: the official OFA ResNet50D (`ofa_resnet50`) -> our `ResNetSupernet`.

The equivalence tests run the official implementation (PyPI package `ofa`, test-only, see
tests/test_official.py) with random weights; the official network is built once per module.
The key-mapping and error tests need only torch.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from ofa_engine.families import family_of
from ofa_engine.families.resnet.official import _key_map, import_official_resnet, official_key
from ofa_engine.families.resnet.space import ResNetSpace
from tests.helpers_official import calibrate_bn as _calibrate_bn
from tests.helpers_official import check_import_refusals, imagenet_folder
from tests.helpers_official import official_input as _input

TOL = 1e-4
PRESET = "ofa-resnet50d"
SIZE = 128          # where the random BN statistics are set (see _calibrate_bn)


def _official_net():
    from ofa.imagenet_classification.elastic_nn.networks import OFAResNets
    return OFAResNets(n_classes=1000, dropout_rate=0, depth_list=[0, 1, 2], expand_ratio_list=[0.2, 0.25, 0.35],
                      width_mult_list=[0.65, 0.8, 1.0])


@torch.no_grad()
def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Random weights that keep activations O(1) through 18 blocks: small BN scales at the end
    of residual branches (conv3, the stem's residual conv), so that sums of branches stay O(1)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if p.dim() >= 2:
            p.copy_(torch.randn(*p.shape, generator=gen) / math.sqrt(p[0].numel()))
        elif ".bn." in name and leaf == "weight":
            low, span = (0.05, 0.25) if (".conv3." in name or "input_stem.1." in name) else (0.5, 0.5)
            p.copy_(low + span * torch.rand(*p.shape, generator=gen))
        else:
            p.copy_(0.2 * torch.randn(*p.shape, generator=gen))


def _configs(space: ResNetSpace) -> list:
    configs = [space.largest(), space.smallest()] + [space.sample(seed) for seed in range(16)]
    # Mixed widths and depths around the extremes: a skipped stem with full stages, and back.
    configs.append(dataclasses.replace(space.largest(), d=(0, 2, 0, 2, 0), w=(0, 2, 1, 0, 2, 1)))
    configs.append(dataclasses.replace(space.smallest(), d=(2, 0, 2, 0, 2), w=(2, 0, 0, 2, 1, 0)))
    return [dataclasses.replace(c, image_size=SIZE) for c in configs]


def _lab(cfg) -> dict:
    return {"d": list(cfg.d), "e": list(cfg.e), "w": list(cfg.w)}


@pytest.fixture(scope="module")
def official_pair():
    pytest.importorskip("ofa")
    net = _official_net()
    _randomise(net, seed=7)
    _calibrate_bn(net, _input(SIZE), seed=7)
    supernet = import_official_resnet({"state_dict": net.state_dict()}).eval()
    return net, supernet


def test_loads_every_tensor(official_pair):
    net, supernet = official_pair
    theirs, ours = net.state_dict(), supernet.state_dict()
    assert len(theirs) == len(ours) == 368
    assert sum(p.numel() for p in supernet.parameters()) == sum(p.numel() for p in net.parameters()) == 48_105_992
    for official, key, _, _ in _key_map(PRESET):
        assert torch.equal(ours[key], theirs[official]), key


def test_matches_official_outputs_and_counts(official_pair):
    from ofa.utils.flops_counter import profile   # count_net_flops without its defensive deepcopy
    from ofa.utils.pytorch_utils import count_parameters
    net, supernet = official_pair
    family = family_of(PRESET)
    results, worst = [], 0.0
    with torch.no_grad():
        for cfg in _configs(supernet.space):
            x = _input(cfg.image_size)
            net.set_active_subnet(**_lab(cfg))
            expected = net(x)
            static = net.get_active_subnet(preserve_weight=True).eval()
            extracted = supernet.extract(cfg)
            for name, got in (("supernet", supernet(x, cfg)), ("extract", extracted(x))):
                diff = (got - expected).abs().max().item()
                worst = max(worst, diff)
                assert diff <= TOL, f"{name} differs from official by {diff:.3g} at {cfg.to_json()}"
            analytic = family.analyze(cfg)
            assert analytic["params"] == count_parameters(static) == sum(p.numel() for p in extracted.parameters())
            # The official counter sums in float32 (a 1.2e9 count may be off by ~64): equal up
            # to that rounding; torch's integer count of our extracted net equals it exactly.
            assert math.isclose(analytic["macs"], profile(static, (1, 3, SIZE, SIZE))[0], rel_tol=1e-6), cfg
            assert family.count_macs(extracted, cfg) == analytic["macs"]
            results.append(expected)
    # Meaningful: outputs are O(1), depend on the input and on the config.
    for logits in results:
        assert 0.05 < logits.std().item() < 100 and (logits[0] - logits[1]).abs().max() > 100 * TOL
    for i, logits in enumerate(results):
        for other in results[i + 1:]:
            assert (logits - other).abs().max() > 100 * TOL
    print(f"max |ours - official| = {worst:.3g} over {len(results)} configs x 2 paths")


def test_odd_feature_maps_match(official_pair):
    # 144 px: the last stage's input is 9 x 9, where the average pool's ceil mode has partial
    # windows; a padding or pooling that differed from the official one would show.
    net, supernet = official_pair
    cfg = dataclasses.replace(supernet.space.sample(40), image_size=144)
    x = _input(144, seed=2)
    with torch.no_grad():
        net.set_active_subnet(**_lab(cfg))
        expected = net(x)
        for got in (supernet(x, cfg), supernet.extract(cfg)(x)):
            assert (got - expected).abs().max().item() <= 10 * TOL * max(1.0, expected.abs().max().item())


def test_official_counter_at_224():
    pytest.importorskip("ofa")
    from ofa.utils.pytorch_utils import count_net_flops
    space = ResNetSpace.preset(PRESET)
    family = family_of(PRESET)
    net = _official_net()
    for cfg, macs_m in ((space.largest(), 7491.6), (dataclasses.replace(space.smallest(), image_size=224), 962.2)):
        net.set_active_subnet(**_lab(cfg))
        counted = count_net_flops(net.get_active_subnet(), (1, 3, 224, 224))
        assert round(counted / 1e6, 1) == macs_m
        assert math.isclose(family.analyze(cfg)["macs"], counted, rel_tol=1e-6)


# ---------------------------------------------------------------- mapping and errors (torch only)
@pytest.fixture(scope="module")
def official_state():
    supernet = family_of(PRESET).build_supernet()
    _randomise(supernet, seed=3)
    ours = supernet.state_dict()
    return ours, {official_key(k): v for k, v in ours.items()}


def _error(state) -> str:
    with pytest.raises(ValueError) as info:
        import_official_resnet(state)
    return str(info.value)


def test_round_trip_wrapper_prefix_and_static_spellings(official_state):
    ours, official = official_state
    assert "blocks.17.conv3.bn.bn.running_var" in official and "classifier.linear.linear.bias" in official
    for variant in ({"state_dict": official, "epoch": 3}, {"module." + k: v for k, v in official.items()},
                    ours):   # our names are the static spellings the official loader accepts
        imported = import_official_resnet(variant).state_dict()
        assert all(torch.equal(imported[k], v) for k, v in ours.items())


def test_missing_unexpected_and_wrong_shape(official_state):
    _, official = official_state
    state = dict(official)
    del state["blocks.7.conv2.bn.bn.running_var"]
    message = _error(state)
    assert "missing key 'blocks.7.conv2.bn.bn.running_var'" in message and "(176,)" in message
    message = _error({**official, "blocks.18.conv1.conv.conv.weight": torch.zeros(3, 4, 1, 1)})
    assert "unexpected key 'blocks.18.conv1.conv.conv.weight'" in message and "(3, 4, 1, 1)" in message
    key = "blocks.4.downsample.conv.conv.weight"
    message = _error({**official, key: torch.zeros(512, 256, 3, 3)})
    assert f"key '{key}' has shape (512, 256, 3, 3), expected shape (512, 256, 1, 1)" in message


def test_non_tensor_bad_dtype_duplicate_and_garbage(official_state):
    ours, official = official_state
    key = "input_stem.0.conv.conv.weight"
    assert "holds a list" in _error({**official, key: [[0.0]]}) and "(32, 3, 3, 3)" in _error({**official, key: [0]})
    assert "dtype torch.int64" in _error({**official, key: torch.zeros(32, 3, 3, 3, dtype=torch.long)})
    assert "names the same entry" in _error({**official, "input_stem.0.conv.weight": ours["input_stem.0.conv.weight"]})
    assert "empty" in _error({}) and "unexpected key 'fc.weight'" in _error({"fc.weight": torch.zeros(2)})
    with pytest.raises(ValueError):
        import_official_resnet([("x", torch.zeros(1))])


def test_an_mbv3_checkpoint_is_not_taken_for_a_resnet():
    from ofa_engine.families.mbv3.supernet import build_supernet
    message = _error(build_supernet("ofa-mbv3-w1.0").state_dict())
    assert message.startswith("not an official OFA ResNet50D state dict: unexpected key")


# ---------------------------------------------------------------- the official checkpoint as a package
@pytest.fixture(scope="module")
def official_package(tmp_path_factory):
    """An official-format checkpoint and ResNet accuracy predictor with random weights (saved by
    the `ofa` package) and a 1000-class ImageNet-style folder of tiny images, imported with
    `import-official`."""
    pytest.importorskip("ofa")
    from ofa.nas.accuracy_predictor import AccuracyPredictor, ResNetArchEncoder

    from ofa_engine.cli import main

    torch.manual_seed(10)
    net = _official_net()
    # The official initialisation (as tests/test_official.py's package): specialize recalibrates
    # BN on the package's images, and the export check compares at 128 px, where these
    # statistics were set.
    _calibrate_bn(net, _input(SIZE), seed=10)
    encoder = ResNetArchEncoder(image_size_list=[128, 144, 160, 176, 192, 224, 240, 256], depth_list=[0, 1, 2],
                                expand_list=[0.2, 0.25, 0.35], width_mult_list=[0.65, 0.8, 1.0])
    assert encoder.n_dim == 82
    torch.manual_seed(5)
    predictor = AccuracyPredictor(encoder, device="cpu")
    with torch.no_grad():
        predictor.base_acc.fill_(0.78)
    root = tmp_path_factory.mktemp("official-resnet")
    torch.save({"state_dict": net.state_dict()}, root / "ofa_resnet50.pth")
    torch.save(predictor.state_dict(), root / "acc_predictor.pth")
    imagenet_folder(root, 32)
    pkg = root / "ofa-resnet50d"
    assert main(["import-official", "--checkpoint", str(root / "ofa_resnet50.pth"),
                 "--accuracy-predictor", str(root / "acc_predictor.pth"), "--data", str(root / "imagenet"),
                 "--out", str(pkg), "--calibration-images", "8", "--evaluation-images", "4",
                 "--image-size", "128", "--no-accuracy-report"]) == 0
    return net, predictor, pkg, root


def test_official_package_and_its_predictor(official_package):
    from ofa_engine.packages import load_package
    net, predictor, pkg, _ = official_package
    package = load_package(pkg)
    assert package.space.name == PRESET and package.num_classes == 1000 and package.channels == 3
    assert len(package.supernet.state_dict()) == len(net.state_dict()) == 368
    space = package.space
    configs = [space.largest(), space.smallest()] + [space.sample(seed) for seed in range(28)]
    with torch.no_grad():
        theirs = predictor.predict_acc([c.to_dict() for c in configs]).numpy()
    ours = package.accuracy_predictor.predict(configs)
    assert np.abs(ours - theirs).max() <= 1e-5
    assert theirs.std() > 1e-3   # the predictions differ between configs: the comparison means something


# Under a MACs budget (no device), and under a latency budget of the measured CPU profile of this
# space (bundled: assets/profiles/cpu-ort-1t-resnet50d.json; its subnets take 9-177 ms).
BUDGETS = {"macs": ["--macs-m", "1200"], "latency": ["--profile", "cpu-ort-1t-resnet50d", "--latency-ms", "30"]}


@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_official_package_specializes_and_matches_the_official_subnet(official_package, budget, tmp_path, capsys):
    import json

    import onnx
    import onnxruntime as ort

    from ofa_engine.cli import main
    from ofa_engine.devices.profiles import load_profile
    net, _, pkg, _ = official_package
    out = tmp_path / "m.onnx"
    assert main(["specialize", "--supernet", str(pkg), *BUDGETS[budget], "--option", "generations=5",
                 "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["predicted"]["accuracy_source"] == "predictor"
    if budget == "macs":
        assert report["measured"]["macs"] <= 1200e6
    else:
        profile = load_profile("cpu-ort-1t-resnet50d")
        assert report["predicted"]["latency_ms"] <= 30 and report["measured"]["latency_ms"] > 0
        assert profile.predict_latency_ms([report["config"]])[0] == pytest.approx(report["predicted"]["latency_ms"])
    assert set(report["config"]) == {"d", "e", "w", "image_size"}     # the lab's form
    model = onnx.load(out)
    assert json.loads({p.key: p.value for p in model.metadata_props}["config"]) == report["config"]

    # The same config at 128 px, exported with the supernet's own statistics: the official subnet.
    cfg = dict(report["config"], image_size=SIZE)
    plain = tmp_path / "plain.onnx"
    assert main(["export", "--supernet", str(pkg), "--config", json.dumps(cfg), "--out", str(plain),
                 "--no-bn-recalibration"]) == 0
    x = _input(SIZE, batch=2, seed=3)
    got = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        net.set_active_subnet(d=cfg["d"], e=cfg["e"], w=cfg["w"])
        expected = net(x).numpy()
        net.set_max_net()
        other = net(x).numpy()
    diff = np.abs(got - expected).max()
    assert diff <= TOL
    assert np.abs(expected[0] - expected[1]).max() > 100 * max(diff, 1e-7)
    assert np.abs(other - expected).max() > 100 * TOL


def test_import_official_refuses_a_hostile_or_wrong_checkpoint(official_package, tmp_path, capsys):
    _, _, _, root = official_package
    state = torch.load(root / "ofa_resnet50.pth", weights_only=True)["state_dict"]
    key = "blocks.3.conv2.conv.conv.weight"
    check_import_refusals(root, "ofa_resnet50.pth", {**state, key: torch.zeros(88, 88, 1, 1)},
                          f"key '{key}' has shape (88, 88, 1, 1), expected shape (88, 88, 3, 3)", "(hidden, 82)",
                          tmp_path, capsys)
