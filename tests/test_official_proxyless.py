"""`import_official_proxyless`: the official OFA ProxylessNAS w1.3 state dict -> our `ProxylessSupernet`.

Checked against the official implementation (PyPI `ofa`, test-only; skipped where absent): the
network `OFAProxylessNASNets(width_mult=1.3, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6],
depth_list=[2, 3, 4])` with random weights (BN statistics set so that activations stay O(1),
as tests/test_official.py does), built once per module and compared at 128 px.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ofa_engine.families.proxyless.official import import_official_proxyless, key_map
from ofa_engine.families.proxyless.space import ProxylessSpace
from ofa_engine.families.proxyless.supernet import ProxylessSupernet
from tests.helpers_official import calibrate_bn as _calibrate_bn
from tests.helpers_official import check_import_refusals, imagenet_folder
from tests.helpers_official import official_input as _input
from tests.helpers_official import run_with_features as _run
from tests.test_official import _randomise

PRESET = "ofa-proxyless-w1.3"
TOL = 1e-4
SIZE = 128


def _official_net():
    from ofa.imagenet_classification.elastic_nn.networks import OFAProxylessNASNets
    return OFAProxylessNASNets(n_classes=1000, dropout_rate=0, width_mult=1.3, ks_list=[3, 5, 7],
                               expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])


def _configs(space: ProxylessSpace) -> list:
    """24 configs at 128 px: the largest, the smallest, 20 random, one of mixed kernels (3 right
    after 7: the two-step transform) and one at 132 px (odd maps after the strides: 66, 33, 17, 9, 5)."""
    configs = [space.largest(), space.smallest()] + [space.sample(seed) for seed in range(20)]
    mixed = dataclasses.replace(space.largest(), ks=tuple((7, 3, 5)[i % 3] for i in range(space.num_slots)),
                                e=tuple((6, 3, 4)[i % 3] for i in range(space.num_slots)), d=(4, 2, 3, 4, 2, 1))
    configs = [dataclasses.replace(c, image_size=SIZE) for c in configs + [mixed]]
    return configs + [dataclasses.replace(space.sample(40), image_size=SIZE + 4)]


@pytest.fixture(scope="module")
def official_pair():
    pytest.importorskip("ofa")
    net = _official_net()
    _randomise(net, seed=13)
    _calibrate_bn(net, _input(SIZE), seed=13)
    supernet = import_official_proxyless({"state_dict": net.state_dict()}).eval()
    return net, supernet


def test_every_official_tensor_is_loaded(official_pair):
    net, supernet = official_pair
    theirs, ours = net.state_dict(), supernet.state_dict()
    assert supernet.space.name == PRESET
    assert len(theirs) == len(ours) == len(key_map()) == 446
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in supernet.parameters()) == 7_956_882
    for official, key, _, _ in key_map():
        assert torch.equal(ours[key], theirs[official]), key


def test_matches_official_outputs_and_counts(official_pair):
    """Our supernet and our extracted net equal the official `set_active_subnet` forward and its
    `get_active_subnet()` (logits and the feature-mix map) within TOL; `analyze`'s MACs and
    params equal the official counters on the official subnet and `count_macs` on ours."""
    from ofa.utils.pytorch_utils import count_net_flops, count_parameters

    from ofa_engine.families import family_of
    net, supernet = official_pair
    family = family_of(PRESET)
    results, worst = [], 0.0
    configs = _configs(supernet.space)
    assert len(configs) >= 20
    with torch.no_grad():
        for cfg in configs:
            x = _input(cfg.image_size)
            net.set_active_subnet(**supernet.space.lab_config(cfg))
            expected = _run(net, net.feature_mix_layer, x)
            static = net.get_active_subnet(preserve_weight=True).eval()
            extracted = supernet.extract(cfg)
            for name, got in (("supernet", _run(lambda t: supernet(t, cfg), supernet.feature_mix, x)),
                              ("extract", _run(extracted, extracted.feature_mix, x)),
                              ("official get_active_subnet", _run(static, static.feature_mix_layer, x))):
                for what, a, b in zip(("logits", "features"), got, expected):
                    diff = (a - b).abs().max().item()
                    worst = max(worst, diff)
                    assert diff <= TOL, f"{name} {what} differ from official by {diff:.3g} at {cfg.to_json()}"
            analytic = family.analyze(cfg)
            shape = (1, 3, cfg.image_size, cfg.image_size)
            assert analytic["macs"] == family.count_macs(extracted, cfg), cfg
            # The official counter sums float32 tensors: exact at 128 px, where every layer's count
            # is a multiple of the float32 spacing; within that rounding at 132 px (measured: 8 MACs
            # in 206,689,032).
            official = count_net_flops(static, shape)
            assert abs(analytic["macs"] - official) <= (0 if cfg.image_size == SIZE else 64), cfg
            assert analytic["params"] == count_parameters(static) == sum(p.numel() for p in extracted.parameters())
            results.append(expected)
    # Meaningful: outputs O(1), input-dependent, and different between configs.
    for logits, features in results:
        assert 0.05 < features.std().item() < 100 and 0.05 < logits.std().item() < 100
        assert (features[0] - features[1]).abs().max() > 20 * TOL
    for i, (logits, _) in enumerate(results):
        for other, _ in results[i + 1:]:
            assert (logits - other).abs().max() > 100 * TOL
    print(f"max |ours - official| = {worst:.3g} over {len(results)} configs x 3 paths")


def test_kernel_transform_is_exercised(official_pair):
    # Ignoring the learned 7to5 / 5to3 transforms (plain centre crop) must break agreement.
    net, supernet = official_pair
    cfg = dataclasses.replace(supernet.space.smallest(), image_size=SIZE)
    x = _input(SIZE, seed=1)
    plain = import_official_proxyless({k: (torch.eye(v.shape[0]) if k.endswith("_matrix") else v)
                                       for k, v in net.state_dict().items()}).eval()
    with torch.no_grad():
        net.set_active_subnet(**supernet.space.lab_config(cfg))
        _, expected = _run(net, net.feature_mix_layer, x)
        _, ours = _run(lambda t: supernet(t, cfg), supernet.feature_mix, x)
        _, wrong = _run(lambda t: plain(t, cfg), plain.feature_mix, x)
    assert (ours - expected).abs().max() <= TOL
    assert (wrong - expected).abs().max() > 1000 * TOL


# ---------------------------------------------------------------- mapping and errors (torch only)
@pytest.fixture(scope="module")
def random_official():
    supernet = ProxylessSupernet(ProxylessSpace.preset(PRESET))
    _randomise(supernet, seed=3)
    ours = supernet.state_dict()
    return ours, {official: ours[key].clone() for official, key, _, _ in key_map()}


def _error(state) -> str:
    with pytest.raises(ValueError) as info:
        import_official_proxyless(state)
    return str(info.value)


def test_accepts_wrapper_module_prefix_and_legacy_names(random_official):
    ours, official = random_official
    legacy = {k.replace("blocks.5.conv.", "blocks.5.mobile_inverted_conv.")
              .replace("blocks.6.conv.inverted_bottleneck.bn.bn.", "blocks.6.conv.inverted_bottleneck.bn."): v
              for k, v in official.items()}
    assert "blocks.5.mobile_inverted_conv.depth_conv.conv.7to5_matrix" in legacy
    for variant in ({"state_dict": official, "epoch": 3}, {"module." + k: v for k, v in official.items()}, legacy):
        imported = import_official_proxyless(variant).state_dict()
        assert all(torch.equal(imported[k], v) for k, v in ours.items())


def test_wrong_checkpoints_name_the_key_and_the_shapes(random_official):
    _, official = random_official
    state = dict(official)
    del state["blocks.21.conv.point_linear.bn.bn.running_var"]
    message = _error(state)
    assert "missing key 'blocks.21.conv.point_linear.bn.bn.running_var'" in message and "(416,)" in message
    message = _error({**official, "blocks.22.conv.point_linear.conv.conv.weight": torch.zeros(3, 4, 1, 1)})
    assert "unexpected key 'blocks.22.conv.point_linear.conv.conv.weight'" in message and "(3, 4, 1, 1)" in message
    key = "blocks.3.conv.inverted_bottleneck.conv.conv.weight"
    message = _error({**official, key: torch.zeros(192, 32, 3, 3)})
    assert f"key '{key}' has shape (192, 32, 3, 3), expected shape (192, 32, 1, 1)" in message
    message = _error({**official, "first_conv.conv.weight": [[0.0]]})
    assert "'first_conv.conv.weight' holds a list" in message and "(40, 3, 3, 3)" in message
    message = _error({**official, "first_conv.conv.weight": torch.zeros(40, 3, 3, 3, dtype=torch.long)})
    assert "dtype torch.int64" in message
    key = "blocks.2.conv.depth_conv.bn.bn.weight"
    assert "names the same entry" in _error({**official, key.replace(".bn.bn.", ".bn."): official[key]})
    assert "empty" in _error({}) and "unexpected key 'fc.weight'" in _error({"fc.weight": torch.zeros(2)})
    with pytest.raises(ValueError):
        import_official_proxyless([("first_conv.conv.weight", torch.zeros(1))])


def test_dispatch_picks_the_family_of_the_checkpoint(random_official):
    """`packages.official.import_official` tries every family: a ProxylessNAS state dict comes
    back as our ProxylessNAS supernet, a MobileNetV3 one as MobileNetV3's, and neither family
    takes the other's (each says why)."""
    from ofa_engine.families.mbv3.supernet import build_supernet
    from ofa_engine.packages.official import import_official
    from tests.test_official import _official_state
    _, official = random_official
    assert import_official(official).space.name == PRESET
    mbv3 = _official_state(build_supernet("ofa-mbv3-w1.0"))
    assert import_official(mbv3).space.name == "ofa-mbv3-w1.0"
    assert "not an official OFA ProxylessNAS" in _error(mbv3) and "unexpected key 'blocks." in _error(mbv3)


# ---------------------------------------------------------------- as a package: import, specialize, export
@pytest.fixture(scope="module")
def official_package(tmp_path_factory):
    """An official-format checkpoint (the official initialisation, BN statistics set at 128 px)
    and an accuracy predictor on `MobileNetArchEncoder(n_stage=6)` features, both written by the
    `ofa` package, and a 1000-class folder of tiny images, imported with `import-official`."""
    pytest.importorskip("ofa")
    from ofa.nas.accuracy_predictor import AccuracyPredictor, MobileNetArchEncoder

    from ofa_engine.cli import main
    space = ProxylessSpace.preset(PRESET)
    torch.manual_seed(11)
    net = _official_net()
    _calibrate_bn(net, _input(SIZE), seed=11)
    encoder = MobileNetArchEncoder(image_size_list=list(space.resolutions), ks_list=[3, 5, 7], expand_list=[3, 4, 6],
                                   depth_list=[2, 3, 4], n_stage=6)
    torch.manual_seed(6)
    predictor = AccuracyPredictor(encoder, device="cpu")
    with torch.no_grad():
        predictor.base_acc.fill_(0.75)
    root = tmp_path_factory.mktemp("official_proxyless")
    torch.save({"state_dict": net.state_dict()}, root / "ofa_proxyless_d234_e346_k357_w1.3.pth")
    torch.save(predictor.state_dict(), root / "acc_predictor.pth")
    imagenet_folder(root, SIZE)
    pkg = root / "ofa-proxyless"
    assert main(["import-official", "--checkpoint", str(root / "ofa_proxyless_d234_e346_k357_w1.3.pth"),
                 "--accuracy-predictor", str(root / "acc_predictor.pth"), "--data", str(root / "imagenet"),
                 "--out", str(pkg), "--calibration-images", "8", "--evaluation-images", "4",
                 "--image-size", str(SIZE), "--no-accuracy-report"]) == 0
    return net, predictor, pkg, root


def test_official_package_and_its_predictor(official_package):
    from ofa_engine.packages import load_package
    net, predictor, pkg, _ = official_package
    package = load_package(pkg)
    assert package.space.name == PRESET and package.num_classes == 1000
    assert len(package.supernet.state_dict()) == len(net.state_dict()) == 446
    space = package.space
    configs = [space.largest(), space.smallest()] + [space.sample(seed) for seed in range(30)]
    with torch.no_grad():
        theirs = predictor.predict_acc([c.to_dict() for c in configs]).numpy()
    ours = package.accuracy_predictor.predict(configs)
    assert np.abs(ours - theirs).max() <= 1e-5
    assert theirs.std() > 1e-3


# Under a MACs budget (no device), and under a latency budget of the measured CPU profile of this
# space (bundled: assets/profiles/cpu-ort-1t-proxyless-w1.3.json; its subnets take 3-33 ms).
BUDGETS = {"macs": ["--macs-m", "200"], "latency": ["--profile", "cpu-ort-1t-proxyless-w1.3", "--latency-ms", "8"]}


@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_official_package_specializes_and_matches_the_official_subnet(official_package, budget, tmp_path, capsys):
    import onnx
    import onnxruntime as ort

    from ofa_engine.cli import main
    from ofa_engine.devices.profiles import load_profile
    net, _, pkg, _ = official_package
    out = tmp_path / "m.onnx"
    assert main(["specialize", "--supernet", str(pkg), *BUDGETS[budget], "--option", "generations=5",
                 "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    if budget == "macs":
        assert report["measured"]["macs"] <= 200e6
    else:
        profile = load_profile("cpu-ort-1t-proxyless-w1.3")
        assert report["predicted"]["latency_ms"] <= 8 and report["measured"]["latency_ms"] > 0
        assert profile.predict_latency_ms([report["config"]])[0] == pytest.approx(report["predicted"]["latency_ms"])
    assert sorted(report["config"]) == ["d", "e", "image_size", "ks"]          # the lab's form
    assert len(report["config"]["ks"]) == 21 and report["config"]["d"][-1] == 1
    model = onnx.load(out)
    assert json.loads({p.key: p.value for p in model.metadata_props}["config"]) == report["config"]

    # That config at 128 px (where the BN statistics were set), exported with the supernet's
    # own statistics: equal to the official subnet in ONNX Runtime.
    cfg = dict(report["config"], image_size=SIZE)
    plain = tmp_path / "plain.onnx"
    assert main(["export", "--supernet", str(pkg), "--config", json.dumps(cfg), "--out", str(plain),
                 "--no-bn-recalibration"]) == 0
    meta = {p.key: p.value for p in onnx.load(plain).metadata_props}
    assert json.loads(meta["config"]) == cfg
    x = _input(SIZE, batch=2, seed=3)
    got = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        net.set_active_subnet(ks=cfg["ks"], e=cfg["e"], d=cfg["d"])
        expected = net(x).numpy()
        net.set_max_net()
        other = net(x).numpy()
    diff = np.abs(got - expected).max()
    assert diff <= TOL
    assert np.abs(expected[0] - expected[1]).max() > 100 * diff
    assert np.abs(other - expected).max() > 100 * TOL


def test_import_official_refuses_a_hostile_or_wrong_checkpoint(official_package, tmp_path, capsys):
    net, _, _, root = official_package
    state = {**net.state_dict(), "feature_mix_layer.conv.weight": torch.zeros(1664, 400, 1, 1)}
    check_import_refusals(root, "ofa_proxyless_d234_e346_k357_w1.3.pth", state,
                          "key 'feature_mix_layer.conv.weight' has shape (1664, 400, 1, 1), expected shape "
                          "(1664, 416, 1, 1)", "(hidden, 169 or 151)", tmp_path, capsys)



def test_a_predictor_on_21_block_features_is_read_too():
    """The official encoder with SPACE_TYPE "mbv2" (5 x 4 + 1 blocks) gives 151 inputs: read
    and re-indexed the same way."""
    pytest.importorskip("ofa")
    from ofa.nas.accuracy_predictor import AccuracyPredictor, MobileNetArchEncoder

    from ofa_engine.families import family_of
    from ofa_engine.predictors.accuracy import AccuracyPredictor as OurPredictor

    class Encoder(MobileNetArchEncoder):
        SPACE_TYPE = "mbv2"

    family = family_of(PRESET)
    space = family.space
    encoder = Encoder(image_size_list=list(space.resolutions), ks_list=[3, 5, 7], expand_list=[3, 4, 6],
                      depth_list=[2, 3, 4], n_stage=6)
    assert encoder.n_dim == 151
    torch.manual_seed(7)
    theirs = AccuracyPredictor(encoder, device="cpu")
    ours = OurPredictor(space, *family.official_predictor(theirs.state_dict(), space), 1.0)
    configs = [space.largest(), space.smallest()] + [space.sample(seed) for seed in range(20)]
    with torch.no_grad():
        expected = theirs.predict_acc([c.to_dict() for c in configs]).numpy()
    assert np.abs(ours.predict(configs) - expected).max() <= 1e-5 and expected.std() > 1e-4
