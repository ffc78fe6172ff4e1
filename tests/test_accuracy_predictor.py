"""Accuracy predictor (fit, predict, torch module, files) and the resumable dataset builder."""

from __future__ import annotations

import importlib.util
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_engine import SearchSpace, build_supernet
from ofa_engine.training.accuracy_dataset import (CSV_FIELDS, build_accuracy_dataset, dataset_configs,
                                         read_accuracy_csv)
from ofa_engine.predictors.accuracy import (AccuracyPredictor, AccuracyPredictorError, MLPEnsembleRegressor,
                                           evaluate_accuracy_predictor, fit_accuracy_predictor, kendall_tau,
                                           load_accuracy_predictor, train_test_split)
from ofa_engine.cli import main
from ofa_engine.datasets.images import ImageSet

SPACE = SearchSpace.preset("tiny-fmnist")
REPO = Path(__file__).resolve().parents[1]


def report_module():
    """benchmarks/accuracy_predictor_report.py, where the research baselines live."""
    spec = importlib.util.spec_from_file_location("accuracy_predictor_report",
                                                  REPO / "benchmarks" / "accuracy_predictor_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic(n: int, seed: int = 0):
    """A population with a known, mildly non-linear accuracy: larger and wider is better."""
    pop = SPACE.sample_population(n, np.random.default_rng(seed))
    x = SPACE.encode(pop).astype(np.float64)
    w = np.random.default_rng(100).normal(0.0, 1.0, x.shape[1])
    z = x @ w / np.sqrt(x.shape[1])
    return pop, 0.85 + 0.02 * z + 0.01 * np.tanh(2 * z) ** 2


@pytest.fixture(scope="module")
def fitted():
    pop, y = synthetic(400)
    train, test = train_test_split(len(y), 0.2, seed=0)
    configs = SPACE.from_arrays(pop)
    predictor = fit_accuracy_predictor(SPACE, [configs[i] for i in train], y[train],
                                       hidden=(64, 64), epochs=60, seed=0, weight_decay=1e-4, ensemble=1)
    return predictor, [configs[i] for i in test], y[test]


def test_training_recovers_synthetic_accuracy(fitted):
    predictor, configs, y = fitted
    quality = evaluate_accuracy_predictor(predictor, configs, y)
    assert quality["rmse_points"] < 0.4 * (y.std() * 100)   # explains > 84% of the variance
    assert quality["kendall_tau"] > 0.8
    assert quality["n_test"] == len(y)


def test_training_is_deterministic():
    pop, y = synthetic(60)
    a = fit_accuracy_predictor(SPACE, pop, y, hidden=(16,), epochs=5, seed=3)
    b = fit_accuracy_predictor(SPACE, pop, y, hidden=(16,), epochs=5, seed=3)
    np.testing.assert_array_equal(a.predict(pop), b.predict(pop))


def test_list_of_configs_equals_population(fitted):
    predictor, _, _ = fitted
    pop = SPACE.sample_population(50, np.random.default_rng(7))
    np.testing.assert_array_equal(predictor.predict(pop), predictor.predict(SPACE.from_arrays(pop)))
    single = predictor.predict(SPACE.largest())
    assert single.shape == (1,)


def test_torch_module_matches_numpy_and_is_differentiable(fitted):
    predictor, configs, _ = fitted
    x = torch.from_numpy(SPACE.encode(configs)).requires_grad_(True)
    out = predictor.torch_module()(x)
    assert out.shape == (len(configs),)
    np.testing.assert_allclose(out.detach().numpy(), predictor.predict(configs), atol=1e-5)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_save_load_round_trip(fitted, tmp_path):
    predictor, configs, y = fitted
    path = predictor.save(tmp_path / "p.npz", {"quality": evaluate_accuracy_predictor(predictor, configs, y)})
    for source in (path, tmp_path / "p.json", str(path)):
        loaded = load_accuracy_predictor(source)
        np.testing.assert_array_equal(loaded.predict(configs), predictor.predict(configs))
        assert loaded.quality["n_test"] == len(y)
        assert loaded.space is SPACE
    assert json.loads((tmp_path / "p.json").read_text())["space"] == "tiny-fmnist"


@pytest.mark.parametrize("field", ["ks", "e", "d", "image_size"])
def test_a_population_missing_a_field_is_refused_naming_it(fitted, field):
    pop = SPACE.sample_population(4, np.random.default_rng(0))
    del pop[field]
    with pytest.raises(ValueError, match=re.escape(f"missing ['{field}']")):
        fitted[0].predict(pop)


def test_kendall_tau_matches_definition():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)


# ---------------------------------------------------------------------- bad files
def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del arrays[key]
    np.savez(path, **arrays)


@pytest.mark.parametrize("change, message", [
    ({"format": np.array("something-else")}, "format"),
    ({"version": np.array(99)}, "version 99"),
    ({"space": np.array("imagenet-huge")}, "unknown search space"),
    ({"weight_0": np.zeros((5, 64), np.float32)}, "weight_0 has shape"),
    ({"bias_1": None}, "missing arrays"),
    ({"weight_2": np.full((64, 1), np.nan, np.float32)}, "NaN"),
    ({"target_scale": np.array("big")}, "target_scale"),
    ({"weight_1": np.array([[object()]], dtype=object)}, "plain arrays"),
])
def test_bad_npz_is_rejected_with_a_clear_error(fitted, tmp_path, change, message):
    path = fitted[0].save(tmp_path / "p.npz")
    if any(v is not None and v.dtype == object for v in change.values()):
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        arrays.update(change)
        np.savez(path, **arrays)   # pickles the object array: loading must refuse it
    else:
        _rewrite(path, **change)
    with pytest.raises(AccuracyPredictorError, match=message):
        load_accuracy_predictor(path)


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable .npz"),
    (b"not a zip at all", "not a readable .npz"),
])
def test_garbage_files_are_rejected(tmp_path, content, message):
    path = tmp_path / "p.npz"
    path.write_bytes(content)
    with pytest.raises(AccuracyPredictorError, match=message):
        load_accuracy_predictor(path)


def test_zip_bomb_and_bad_metadata_are_rejected(fitted, tmp_path):
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("weight_0.npy", b"\0" * (300 << 20))
    with pytest.raises(AccuracyPredictorError, match="too large"):
        load_accuracy_predictor(bomb)
    path = fitted[0].save(tmp_path / "p.npz")
    (tmp_path / "p.json").write_text("[1, 2]")
    with pytest.raises(AccuracyPredictorError, match="JSON object"):
        load_accuracy_predictor(path)
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(AccuracyPredictorError, match="not valid JSON"):
        load_accuracy_predictor(path)


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(AccuracyPredictorError, match="neither a bundled name"):
        load_accuracy_predictor(tmp_path / "nope.npz")
    (tmp_path / "p.pt").write_bytes(b"x")
    with pytest.raises(AccuracyPredictorError, match=r"\.npz"):
        load_accuracy_predictor(tmp_path / "p.pt")


# ---------------------------------------------------------------------- dataset builder
def test_dataset_configs_are_seeded_and_deduplicated():
    a = dataset_configs(SPACE, 20)
    assert a[0] == SPACE.largest() and a[1] == SPACE.smallest()
    assert a == dataset_configs(SPACE, 20)
    assert len(a) == 22 and a != dataset_configs(SPACE, 20, seed=1)
    assert len({SPACE.encode([c]).tobytes() for c in a}) == len(a)


@pytest.fixture(scope="module")
def tiny_setup():
    torch.manual_seed(0)
    supernet = build_supernet(SPACE).eval()
    rng = np.random.default_rng(0)
    images = ImageSet(rng.integers(0, 256, (8, 28, 28), dtype=np.uint8), rng.integers(0, 10, 8), ())
    return supernet, images


def test_builder_resumes_without_duplicates(tiny_setup, tmp_path):
    supernet, images = tiny_setup
    configs = [SPACE.smallest(), *SPACE.from_arrays(SPACE.sample_population(2, np.random.default_rng(1)))]
    out = tmp_path / "acc.csv"
    assert build_accuracy_dataset(supernet, configs, out, images, images, max_new=2) == 2
    first = read_accuracy_csv(out, SPACE)
    assert [r["config"] for r in first] == configs[:2]
    # An interrupted write leaves half a row: resuming drops it and completes the list.
    with open(out, "a", encoding="utf-8") as fh:
        fh.write('"{""wid"":0,""ks"":[3')
    assert build_accuracy_dataset(supernet, configs, out, images, images) == 1
    rows = read_accuracy_csv(out, SPACE)
    assert [r["config"] for r in rows] == configs
    assert rows[:2] == first
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["macs"] > 0 for r in rows)
    assert build_accuracy_dataset(supernet, configs, out, images, images) == 0
    assert out.read_text().splitlines()[0] == ",".join(CSV_FIELDS)


def test_builder_start_keeps_rows_another_shard_appends_meanwhile(tiny_setup, tmp_path, monkeypatch):
    """Shards share one CSV. A builder that starts while another appends must drop only a row cut
    off by a killed write, never a row the other shard wrote after the start-up check began."""
    import ofa_engine.training.accuracy_dataset as AD
    supernet, images = tiny_setup
    mine, theirs = SPACE.smallest(), SPACE.largest()
    out = tmp_path / "acc.csv"
    build_accuracy_dataset(supernet, [SPACE.sample(3)], out, images, images)
    with open(out, "a", encoding="utf-8") as fh:     # a killed builder's half row
        fh.write('"{""wid"":0,""ks"":[3')
    real_read = AD.read_accuracy_csv

    def read_while_the_other_shard_appends(path, space=None):
        with open(out, "a", encoding="utf-8") as fh:
            AD._append_row(fh, [theirs.to_json(), theirs.image_size, theirs.wid, 1, "0.5", "1.0"])
        return real_read(path, space)

    monkeypatch.setattr(AD, "read_accuracy_csv", read_while_the_other_shard_appends)
    assert build_accuracy_dataset(supernet, [mine], out, images, images) == 1
    monkeypatch.undo()
    rows = read_accuracy_csv(out, SPACE)
    assert [r["config"] for r in rows][1:] == [theirs, mine]


def test_builder_accuracy_matches_evaluation(tiny_setup, tmp_path):
    from ofa_engine.training.bundled import extract_calibrated
    from ofa_engine.runtime.evaluation import accuracy
    supernet, images = tiny_setup
    cfg = SPACE.sample(4)
    build_accuracy_dataset(supernet, [cfg], tmp_path / "a.csv", images, images, channels_last=False)
    row, = read_accuracy_csv(tmp_path / "a.csv", SPACE)
    net = extract_calibrated(supernet, cfg, images)
    assert row["accuracy"] == pytest.approx(accuracy(net, images.images, images.labels, SPACE), abs=1e-6)


def test_bad_csv_rows_name_the_line(tmp_path):
    path = tmp_path / "acc.csv"
    path.write_text(",".join(CSV_FIELDS) + "\n" + '"{""wid"":9}",28,0,1,0.5,1.0\n')
    with pytest.raises(ValueError, match="line 2"):
        read_accuracy_csv(path, SPACE)


def test_fit_command_writes_predictor_from_csv(tmp_path, capsys):
    pop, y = synthetic(60)
    path = tmp_path / "acc.csv"
    lines = [",".join(CSV_FIELDS)]
    for cfg, acc in zip(SPACE.from_arrays(pop), y):
        lines.append('"' + cfg.to_json().replace('"', '""') + f'",{cfg.image_size},{cfg.wid},1,{acc:.6f},1.0')
    path.write_text("\n".join(lines) + "\n")
    code = main(["fit-accuracy-predictor", "--csv", str(path), "--out", str(tmp_path / "p.npz"), "--epochs", "3"])
    assert code == 0, capsys.readouterr().err
    predictor = load_accuracy_predictor(tmp_path / "p.npz")
    assert predictor.quality["n_test"] == 12 and predictor.quality["n_train"] == 48
    meta = json.loads((tmp_path / "p.json").read_text())
    assert meta["supernet_digest"].startswith("sha256:") and "fit-accuracy-predictor" in meta["command"]
    # Neither the arrays nor the metadata carry the removed research terms and options.
    with np.load(tmp_path / "p.npz") as arrays:
        assert not set(arrays.files) & {"baseline_weight", "quadratic_weight"} and int(arrays["version"]) == 3
    assert not set(meta["training"]) & {"baseline", "ridge_alpha", "mlp_inputs"}
    assert not any(option in meta["command"] for option in ("--baseline", "--ridge-alpha", "--mlp-inputs"))
    assert main(["fit-accuracy-predictor", "--csv", str(tmp_path / "none.csv"), "--out",
                 str(tmp_path / "q.npz")]) == 2
    assert main(["fit-accuracy-predictor", "--csv", str(path), "--out", str(tmp_path / "e.npz"),
                 "--epochs", "2", "--hidden", "4,8", "--ensemble", "2"]) == 0
    ensemble = load_accuracy_predictor(tmp_path / "e.npz")
    assert [w.shape[1] for w in ensemble.weights] == [8, 16, 1]
    assert "--ensemble 2" in json.loads((tmp_path / "e.json").read_text())["command"]
    assert main(["fit-accuracy-predictor", "--csv", str(path), "--out", str(tmp_path / "f.npz"),
                 "--ensemble", "0"]) == 2
    assert not (tmp_path / "f.npz").exists()


def test_builder_shards_fill_one_csv_together(tiny_setup, tmp_path):
    supernet, images = tiny_setup
    configs = [SPACE.smallest(), *SPACE.from_arrays(SPACE.sample_population(3, np.random.default_rng(2)))]
    out = tmp_path / "acc.csv"
    assert build_accuracy_dataset(supernet, configs, out, images, images, shard=(1, 2)) == 2
    assert [r["config"] for r in read_accuracy_csv(out, SPACE)] == configs[1::2]
    assert build_accuracy_dataset(supernet, configs, out, images, images, shard=(0, 2)) == 2
    assert sorted(r["config"].to_json() for r in read_accuracy_csv(out, SPACE)) == sorted(
        c.to_json() for c in configs)
    with pytest.raises(ValueError, match="shard 2/2"):
        build_accuracy_dataset(supernet, configs, out, images, images, shard=(2, 2))


# ---------------------------------------------------------------------- interaction baseline
def synthetic_interaction(n: int, seed: int = 0):
    """Accuracy with a resolution x width and a resolution x stage-depth effect, which no line
    on the encoding can fit."""
    pop = SPACE.sample_population(n, np.random.default_rng(seed))
    res = np.searchsorted(SPACE.resolutions, pop["image_size"])
    depth_last = pop["d"][:, -1] - min(SPACE.depths)
    return pop, 0.85 + 0.004 * res + 0.006 * pop["wid"] + 0.003 * res * pop["wid"] - 0.002 * res * depth_last


def test_interaction_features_map_back_to_a_line_plus_quadratic_form_exactly():
    pop = SPACE.sample_population(100, np.random.default_rng(2))
    x = SPACE.encode(pop).astype(np.float64)
    features, to_weights = report_module().interaction_features(SPACE, x)
    theta = np.random.default_rng(3).normal(size=features.shape[1])
    linear, quadratic = to_weights(theta)
    np.testing.assert_allclose(features @ theta, x @ linear + np.einsum("ij,ij->i", x @ quadratic, x),
                               atol=1e-9)
    assert np.flatnonzero(np.abs(quadratic).sum(1)).max() < len(SPACE.resolutions)  # resolution rows only


def test_interaction_baseline_fits_what_a_line_cannot():
    pop, y = synthetic_interaction(300)
    test_pop, test_y = synthetic_interaction(100, seed=1)
    research_fit = report_module().research_fit
    line = research_fit(SPACE, pop, y, hidden=(1,), baseline="stage-ridge", epochs=0)
    both = research_fit(SPACE, pop, y, hidden=(1,), baseline="interaction-ridge", epochs=0, ridge_alpha=1e-3)
    assert evaluate_accuracy_predictor(both, test_pop, test_y)["rmse_points"] < 0.01
    assert evaluate_accuracy_predictor(line, test_pop, test_y)["rmse_points"] > 0.1


# ---------------------------------------------------------------------- files of earlier versions
ZERO_LINE = np.zeros(SPACE.encoding_size, np.float32)
ZERO_Q = np.zeros((SPACE.encoding_size,) * 2, np.float32)


@pytest.mark.parametrize("version, retired", [
    (1, {"baseline_weight": ZERO_LINE}),
    (2, {"baseline_weight": ZERO_LINE, "quadratic_weight": ZERO_Q}),
])
def test_earlier_files_with_all_zero_research_terms_load_and_predict_the_same(fitted, tmp_path, version, retired):
    """Versions 1 and 2 stored a line (and a quadratic form) under the MLP, all zero in every
    file the engine fitted: they still load, and predict what the same MLP predicts now."""
    predictor, configs, _ = fitted
    path = predictor.save(tmp_path / f"v{version}.npz")
    _rewrite(path, version=np.array(version), **retired)
    loaded = load_accuracy_predictor(path)
    np.testing.assert_array_equal(loaded.predict(configs), predictor.predict(configs))
    x = torch.from_numpy(SPACE.encode(configs))
    np.testing.assert_array_equal(loaded.torch_module()(x).numpy(), predictor.torch_module()(x).numpy())


def test_the_bundled_predictor_is_a_version_2_file_and_loads():
    path = REPO / "assets" / "supernets" / "tiny-fmnist" / "accuracy-predictor.npz"
    with np.load(path) as arrays:
        assert int(arrays["version"]) == 2 and {"baseline_weight", "quadratic_weight"} <= set(arrays.files)
    assert load_accuracy_predictor("tiny-fmnist").predict(SPACE.largest()).shape == (1,)


@pytest.mark.parametrize("version, retired, message", [
    (1, {"baseline_weight": ZERO_LINE + np.eye(1, SPACE.encoding_size, 3, np.float32)[0] * 0.25},
     r"'baseline_weight' has 1 non-zero entries \(the first: 0\.25 at index \[3\]\); allowed: all zeros"),
    (2, {"baseline_weight": ZERO_LINE, "quadratic_weight": np.where(np.eye(SPACE.encoding_size) > 0, -0.5, 0)},
     r"'quadratic_weight' has \d+ non-zero entries \(the first: -0\.5 at index \[0, 0\]\); allowed: all zeros"),
    (2, {"baseline_weight": np.full(SPACE.encoding_size, np.nan), "quadratic_weight": ZERO_Q},
     r"'baseline_weight' has \d+ non-zero entries \(the first: nan"),
    (1, {}, "a version 1 file needs 'baseline_weight'"),
    (2, {"baseline_weight": ZERO_LINE}, "a version 2 file needs 'quadratic_weight'"),
    (1, {"baseline_weight": np.zeros(SPACE.encoding_size, np.int64)}, "'baseline_weight' has dtype int64; expected float"),
])
def test_earlier_files_with_a_research_term_are_refused(fitted, tmp_path, version, retired, message):
    """A non-zero line or quadratic form (a research baseline of benchmarks/) would be dropped
    silently: the file is refused, naming the array, the value and what is allowed."""
    path = fitted[0].save(tmp_path / "p.npz")
    _rewrite(path, version=np.array(version), **retired)
    with pytest.raises(AccuracyPredictorError, match=message):
        load_accuracy_predictor(path)


@pytest.mark.parametrize("hidden", [(4, 16), (8,)])
def test_ensemble_is_one_mlp_that_averages_its_members(hidden, tmp_path):
    pop, y = synthetic(120)
    members = [fit_accuracy_predictor(SPACE, pop, y, hidden=hidden, epochs=40, seed=5 + k, ensemble=1)
               for k in range(3)]
    merged = fit_accuracy_predictor(SPACE, pop, y, hidden=hidden, epochs=40, seed=5, ensemble=3)
    assert [w.shape[1] for w in merged.weights[:-1]] == [3 * width for width in hidden]
    test = SPACE.sample_population(200, np.random.default_rng(9))
    mean = np.mean([m.predict(test) for m in members], axis=0)
    np.testing.assert_allclose(merged.predict(test), mean, rtol=0, atol=1e-6)
    assert np.abs(members[0].predict(test) - mean).max() > 1e-4     # the members do differ
    loaded = load_accuracy_predictor(merged.save(tmp_path / "e.npz"))
    np.testing.assert_array_equal(loaded.predict(test), merged.predict(test))
    x = torch.from_numpy(SPACE.encode(test))
    np.testing.assert_allclose(merged.torch_module()(x).detach().numpy(), mean, atol=1e-5)
    assert merged.metadata["training"]["ensemble"] == 3


def test_ensemble_blocks_are_the_members_and_the_default_is_three():
    pop, y = synthetic(60)
    single = fit_accuracy_predictor(SPACE, pop, y, hidden=(4, 16), epochs=3, seed=2, ensemble=1)
    assert [w.shape[1] for w in single.weights] == [4, 16, 1]
    default = fit_accuracy_predictor(SPACE, pop, y, hidden=(4, 16), epochs=3, seed=2)
    assert [w.shape[1] for w in default.weights] == [12, 48, 1]
    # The first member (seed 2) sits in the top-left blocks, unchanged; the output is divided by 3.
    np.testing.assert_array_equal(default.weights[0][:, :4], single.weights[0])
    np.testing.assert_array_equal(default.weights[1][:4, :16], single.weights[1])
    assert not default.weights[1][:4, 16:].any() and not default.weights[1][4:, :16].any()
    np.testing.assert_allclose(default.weights[2][:16], single.weights[2] / 3, rtol=1e-6)


@pytest.mark.parametrize("ensemble, message", [(0, "ensemble must be an integer 1..64"),
                                               (2.5, "ensemble must be an integer 1..64"),
                                               (40, "wider than 4096 units")])
def test_bad_ensemble_is_refused(ensemble, message):
    pop, y = synthetic(20)
    with pytest.raises(ValueError, match=message):
        fit_accuracy_predictor(SPACE, pop, y, hidden=(4, 128), epochs=1, ensemble=ensemble)


# ---------------------------------------------------------------------- the estimator
def test_estimator_on_encoded_rows_equals_the_config_level_api():
    pop, y = synthetic(80)
    x = SPACE.encode(pop)
    estimator = MLPEnsembleRegressor(hidden=(4, 16), epochs=5, seed=2, ensemble=2)
    assert estimator.fit(x, y) is estimator
    predictor = fit_accuracy_predictor(SPACE, SPACE.from_arrays(pop), y, hidden=(4, 16), epochs=5, seed=2,
                                       ensemble=2)
    test = SPACE.sample_population(100, np.random.default_rng(3))
    np.testing.assert_array_equal(estimator.predict(SPACE.encode(test)), predictor.predict(test))
    np.testing.assert_array_equal(estimator.predict(SPACE.encode(test)), predictor.predict_encoded(SPACE.encode(test)))
    for a, b in zip(estimator.weights_, predictor.weights):
        np.testing.assert_array_equal(a, b)
    bound = AccuracyPredictor.from_estimator(SPACE, estimator)
    np.testing.assert_array_equal(bound.predict(test), predictor.predict(test))


def test_estimator_is_generic_over_any_encoding():
    """No search space needed: any (N, features) rows, e.g. another family's encoding."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (50, 7)).astype(np.float32)
    y = 0.5 + 0.1 * x[:, 0] - 0.05 * x[:, 3]
    estimator = MLPEnsembleRegressor(hidden=(8,), epochs=30, ensemble=1).fit(x, y)
    assert estimator.predict(x).shape == (50,) and estimator.predict(x).dtype == np.float64
    assert np.sqrt(np.mean((estimator.predict(x) - y) ** 2)) < y.std()
    with pytest.raises(ValueError, match=r"shape \(N, 7\)"):
        estimator.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="not fitted"):
        MLPEnsembleRegressor().predict(x)
    assert MLPEnsembleRegressor(hidden=(8,), ensemble=1).get_params()["hidden"] == [8]


@pytest.mark.parametrize("metadata, message", [
    ({"quality": [1, 2]}, "metadata field 'quality'"),
    ({"quality": {"rmse_points": "low"}}, "metadata field 'quality.rmse_points' = 'low'"),
    ({"format": "something-else"}, "metadata field 'format'"),
    ({"training": 3}, "metadata field 'training'"),
    ({"space": "imagenet-huge"}, "metadata is for space 'imagenet-huge'"),
])
def test_bad_metadata_fields_are_named(fitted, tmp_path, metadata, message):
    path = fitted[0].save(tmp_path / "p.npz")
    meta = json.loads((tmp_path / "p.json").read_text())
    (tmp_path / "p.json").write_text(json.dumps({**meta, **metadata}))
    with pytest.raises(AccuracyPredictorError, match=message):
        load_accuracy_predictor(path)


@pytest.mark.parametrize("option", [["--baseline", "mean"], ["--mlp-inputs", "encoding"], ["--ridge-alpha", "0.3"]])
def test_fit_command_has_no_research_options(tmp_path, option, capsys):
    """The research baselines live in benchmarks/accuracy_predictor_report.py; the options that
    allowed only the shipped model's values (or were unused) are gone."""
    assert main(["fit-accuracy-predictor", "--csv", str(tmp_path / "a.csv"), "--out", str(tmp_path / "p.npz"),
                 *option]) == 2
    assert f"unrecognized arguments: {' '.join(option)}" in capsys.readouterr().err


def test_builder_reports_progress_as_done_total_message(tiny_setup, tmp_path):
    supernet, images = tiny_setup
    calls = []
    configs = [SPACE.smallest(), SPACE.largest()]
    build_accuracy_dataset(supernet, configs, tmp_path / "a.csv", images, images,
                           progress=lambda done, total, message: calls.append((done, total, message)))
    assert [c[:2] for c in calls] == [(1, 2), (2, 2)]
    assert all(c[2].startswith("acc=") and "wid=" in c[2] for c in calls)
