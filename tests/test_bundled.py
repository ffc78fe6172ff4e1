"""Trained supernets: files, load_supernet, BN-recalibrated extraction, evaluate / export --supernet."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ofa_engine import SearchSpace, build_supernet, extract_calibrated, load_supernet
from ofa_engine.training.bundled import BUNDLED_SUPERNETS
from ofa_engine.cli import main
from ofa_engine.datasets.images import load_split
from ofa_engine.runtime.evaluation import accuracy
from ofa_engine.runtime.export import read_metadata
from ofa_engine.runtime.preprocess import preprocess, preprocessing_spec
from ofa_engine.training.checkpoint import save_supernet


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(7)
    net = build_supernet("tiny-fmnist")
    path = save_supernet(net, tmp_path_factory.mktemp("sn") / "supernet.pt", half=True)
    return net, path


def test_save_and_load_roundtrip_half_precision(saved):
    net, path = saved
    loaded = load_supernet(path)
    assert loaded.space == net.space and not loaded.training
    for key, value in net.state_dict().items():
        other = loaded.state_dict()[key]
        assert other.dtype == value.dtype
        assert torch.allclose(other.float(), value.float(), rtol=1e-3, atol=1e-4)


def test_load_supernet_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a bundled name"):
        load_supernet(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"something": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="not an ofa_engine supernet file"):
        load_supernet(bad)


def test_extract_calibrated_recalibrates_bn(saved):
    net, _ = saved
    space = net.space
    cfg = space.sample(3)
    plain = net.extract(cfg)
    calibrated = extract_calibrated(net, cfg)
    bn_plain = plain.first_conv.bn
    bn_cal = calibrated.first_conv.bn
    assert not torch.allclose(bn_plain.running_mean, bn_cal.running_mean)
    x = preprocess(load_split("calib").images, space, cfg.image_size)
    with torch.no_grad():
        first = calibrated.first_conv.conv(x)
    assert torch.allclose(bn_cal.running_mean, first.mean((0, 2, 3)), atol=1e-4)


def test_cli_export_from_trained_file_carries_metadata(saved, tmp_path, capsys):
    net, path = saved
    out = tmp_path / "m.onnx"
    code = main(["export", "--supernet", str(path), "--config", "random:4", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    meta = read_metadata(out)
    space = net.space
    cfg = space.sample(4)
    assert meta["config"] == cfg.to_dict()
    assert meta["preprocessing"] == json.loads(json.dumps(preprocessing_spec(space, cfg.image_size)))
    assert meta["labels"] == list(space.labels)
    # A third party following the metadata gets the same logits as our own pipeline.
    images = load_split("test2k").images[:8]
    x = preprocess(images, space, meta["preprocessing"]["resize"][0]).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": x})[0]
    ours = extract_calibrated(load_supernet(path), cfg)  # the file holds fp16 weights
    with torch.no_grad():
        assert np.allclose(logits, ours(torch.from_numpy(x)).numpy(), atol=1e-4)


def test_cli_evaluate_bundled_split(saved, capsys):
    _, path = saved
    code = main(["evaluate", "--supernet", str(path), "--config", "smallest", "--split", "test2k"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["images"] == 2000 and 0.0 <= result["accuracy"] <= 1.0
    assert result["macs"] == 482752


def test_cli_errors_name_the_problem(saved, capsys, tmp_path):
    _, path = saved
    assert main(["evaluate", "--supernet", str(tmp_path / "x.pt"), "--config", "largest"]) == 2
    assert "--supernet" in capsys.readouterr().err
    assert main(["export", "--supernet", str(path), "--weights", str(path), "--config", "largest",
                 "--out", str(tmp_path / "a.onnx")]) == 2
    assert "--weights goes with --space" in capsys.readouterr().err
    assert not (tmp_path / "a.onnx").exists()


# Floors well above chance (10%) and a little under the measured accuracy on the bundled 2k test
# images (10k test set: 93.20% / 89.18%, docs/supernet-report.md; these 2k images: 93.20% /
# 89.40%; the previous bundled weights, 93.10% / 89.20%, would fail the second floor, the ones
# before them, 93.25% / 88.45%, too, and those before them, 92.05% / 88.2%, both).
def test_trained_supernet_is_accurate():
    """The shipped weights really are trained: subnets are accurate on the bundled test images.
    The weights are committed (assets/supernets/tiny-fmnist/): a missing file fails here."""
    assert BUNDLED_SUPERNETS["tiny-fmnist"].is_file(), f"{BUNDLED_SUPERNETS['tiny-fmnist']} is missing (committed)"
    supernet = load_supernet("tiny-fmnist")
    space = supernet.space
    assert space == SearchSpace.preset("tiny-fmnist")
    test = load_split("test2k")
    for cfg, floor in zip((space.largest(), space.smallest()), (0.928, 0.890)):
        acc = accuracy(extract_calibrated(supernet, cfg), test.images, test.labels, space)
        assert acc >= floor, f"{cfg} reaches only {acc:.3f}"


def test_calibrate_bn_with_two_workers_equals_one_pass():
    import copy
    from ofa_engine.runtime.evaluation import calibrate_bn
    from ofa_engine.datasets.images import load_split
    supernet = load_supernet("tiny-fmnist")
    cfg = supernet.space.sample(7)
    images = load_split("calib").images[:700]          # 4 batches of 200, the last one short
    one = calibrate_bn(supernet.extract(cfg), images, supernet.space)
    two = calibrate_bn(supernet.extract(cfg), images, supernet.space, workers=2)
    for (name, a), (_, b) in zip(one.state_dict().items(), two.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    with pytest.raises(ValueError, match="workers"):
        calibrate_bn(copy.deepcopy(one), images, supernet.space, workers=0)


def test_calibrate_bn_equals_a_plain_pass_bit_for_bit_and_restores_the_activations():
    """calibrate_bn runs without autograd and with in-place activations: the same statistics as
    the plain pass (autograd on, activations out of place), and the modules as they were."""
    from ofa_engine.datasets.images import load_split
    from ofa_engine.runtime.evaluation import calibrate_bn
    from ofa_engine.runtime.preprocess import preprocess
    supernet = load_supernet("tiny-fmnist")
    cfg = supernet.space.sample(11)
    x = preprocess(load_split("calib").images[:500], supernet.space, cfg.image_size)
    plain = supernet.extract(cfg).to(memory_format=torch.channels_last)
    for bn in (m for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    xc = x.contiguous(memory_format=torch.channels_last)
    for start in range(0, len(x), 200):
        plain(xc[start:start + 200])
    ours = calibrate_bn(supernet.extract(cfg), x)
    for (name, a), (_, b) in zip(plain.state_dict().items(), ours.state_dict().items()):
        assert torch.equal(a, b), name
    acts = [m for m in ours.modules() if isinstance(m, (torch.nn.ReLU, torch.nn.Hardswish))]
    assert acts and not any(m.inplace for m in acts)
    assert all(bn.momentum == 0.1 for bn in ours.modules() if isinstance(bn, torch.nn.BatchNorm2d))


def test_module_copy_shares_parameters_and_owns_buffers_and_modules():
    """The copy a calibration worker and the int8 export's BN folding work on: rewriting its BN
    statistics, folding its BNs or switching its mode leaves the original as it was."""
    from ofa_engine.families import family_of
    from ofa_engine.runtime.evaluation import module_copy
    supernet = load_supernet("tiny-fmnist")
    net = supernet.extract(supernet.space.sample(3)).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    clone = module_copy(net)
    assert [p is q for p, q in zip(net.parameters(), clone.parameters())] == [True] * len(list(net.parameters()))
    x = torch.randn(4, *family_of(supernet.space).input_shape(net.config), generator=torch.Generator().manual_seed(0))
    clone.train()
    clone(x)                                       # BN statistics of the copy move
    assert net.training is False and all(not m.training for m in net.modules())
    family_of(supernet.space).fold_bn(clone.eval())
    for name, value in net.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in clone.modules())


def test_bundled_predictor_was_fitted_on_the_bundled_supernet_and_dataset():
    """Retraining the supernet invalidates the accuracy data and predictor (assets/supernets/tiny-fmnist/
    PREDICTOR.md): the shipped predictor must name the shipped supernet's digest and the CSV's rows."""
    from ofa_engine.training.accuracy_dataset import read_accuracy_csv
    from ofa_engine.predictors.accuracy import BUNDLED_PREDICTORS, file_digest
    meta = json.loads(BUNDLED_PREDICTORS["tiny-fmnist"].with_suffix(".json").read_text())
    assert meta["supernet_digest"] == file_digest(BUNDLED_SUPERNETS["tiny-fmnist"])
    rows = read_accuracy_csv(BUNDLED_PREDICTORS["tiny-fmnist"].with_name("accuracy-dataset.csv"))
    assert meta["dataset"]["rows"] == len(rows) >= 1000
