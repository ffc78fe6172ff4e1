"""ofa_engine.predictors.latency: the latency predictors, their fitting and evaluation."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ofa_engine import SearchSpace, analyze
from ofa_engine.predictors.latency import (LATENCY_MODELS, MODEL_TYPES, AnalyticalMCUModel, BlockLinearModel,
                                       LookupTableModel, MacsLinearModel,
                                       architecture_features, evaluate_latency_model, fit_latency_model,
                                       fit_profile_latency, profile_fit, select_ridge, kendall_tau, latency_metrics, latency_model_from_dict,
                                       split_indices, total_macs, unique_blocks)
from tests.helpers_numbers import assert_close_tree

SPACE = SearchSpace.preset("tiny-fmnist")


def _lut(space=SPACE, seed=0):
    rng = np.random.default_rng(seed)
    return LookupTableModel(space.name, {e["key"]: float(rng.uniform(0.01, 0.1)) for e in unique_blocks(space)},
                            scale=1.1, offset_ms=0.05, source="synthetic")


def _models():
    names = architecture_features(SPACE, SPACE.sample_population(1, 0))[1]
    return [MacsLinearModel(0.12, 0.05),
            AnalyticalMCUModel(216.0, 0.5, 1.5, "datasheet"),
            _lut(),
            BlockLinearModel(SPACE.name, names, np.linspace(1e-7, 1e-6, len(names)), 0.03)]


@pytest.mark.parametrize("preset", ["tiny-fmnist", "ofa-mbv3-w1.0", "ofa-mbv3-w1.2"])
def test_table_macs_equal_analytics(preset):
    space = SearchSpace.preset(preset)
    pop = space.sample_population(200, 1)
    assert np.array_equal(total_macs(space, pop), analyze(space, pop)["macs"])


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.type)
def test_round_trip_through_json(model):
    data = json.loads(json.dumps(model.to_dict()))
    assert data["type"] == model.type
    again = latency_model_from_dict(data)
    assert again == model
    pop = SPACE.sample_population(50, 3)
    np.testing.assert_array_equal(again.predict_ms(SPACE, pop), model.predict_ms(SPACE, pop))


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.type)
def test_vectorised_equals_per_config(model):
    pop = SPACE.sample_population(40, 4)
    configs = SPACE.from_arrays(pop)
    batch = model.predict_ms(SPACE, pop)
    assert batch.shape == (40,) and np.all(batch > 0)
    np.testing.assert_allclose(model.predict_ms(SPACE, configs), batch, rtol=1e-12)
    one_by_one = np.array([model.predict_ms(SPACE, c)[0] for c in configs])
    np.testing.assert_allclose(one_by_one, batch, rtol=1e-12)


def test_lut_is_the_sum_of_its_blocks():
    lut = LookupTableModel(SPACE.name, _lut().blocks)            # scale 1, offset 0
    cfg = SPACE.sample(5)
    from ofa_engine.families.mbv3.layout import walk_configs
    from ofa_engine.families.mbv3.latency_features import block_key, head_key, stem_key
    expected = lut.blocks[stem_key(SPACE, cfg.wid, cfg.image_size)] + lut.blocks[head_key(SPACE, cfg.wid, 2)]
    blocks = [b.row(0) for b in walk_configs(SPACE, cfg) if b.kind == "block"]
    assert [b["slot"] for b in blocks if b["active"]] == SPACE.active_slots(cfg)
    for b in blocks:
        if b["active"]:
            expected += lut.blocks[block_key(b["in_size"], b["in_channels"], b["out_size"], b["out_channels"],
                                             cfg.e[b["slot"]], cfg.ks[b["slot"]], b["stride"], b["residual"],
                                             b["se"], b["activation"])]
    assert lut.predict_ms(SPACE, cfg)[0] == pytest.approx(expected)


def test_analytical_formula():
    model = AnalyticalMCUModel(clock_mhz=100.0, macs_per_cycle=0.5, overhead_ms=2.0)
    cfg = SPACE.largest()
    macs = analyze(SPACE, cfg)["macs"]
    assert model.predict_ms(SPACE, [cfg])[0] == pytest.approx(macs / (0.5 * 100e3) + 2.0)


@pytest.mark.parametrize("kind", ["learned", "macs-linear"])
def test_fit_recovers_a_linear_relation(kind):
    pop = SPACE.sample_population(300, 7)
    if kind == "macs-linear":
        y = 0.2 * analyze(SPACE, pop)["macs"] / 1e6 + 0.1
    else:
        x, names = architecture_features(SPACE, pop)
        true = {"blocks": 0.02, "expand_macs": 2e-7, "dw_macs_k7": 5e-7, "se_blocks": 0.01, "stem_macs": 1e-7}
        y = 0.05 + sum(c * x[:, names.index(n)] for n, c in true.items())
    model = fit_latency_model(SPACE, pop, y, kind=kind, ridge=0.0) if kind == "learned" else \
        fit_latency_model(SPACE, pop, y, kind=kind)
    np.testing.assert_allclose(model.predict_ms(SPACE, pop), y, rtol=1e-6)
    if kind == "macs-linear":
        assert model.ms_per_mmac == pytest.approx(0.2) and model.intercept_ms == pytest.approx(0.1)
    scores = evaluate_latency_model(model, SPACE, pop, y)
    assert scores["within_10pct"] == 1.0 and scores["kendall_tau"] > 0.999 and scores["n_test"] == 300


def test_fit_lut_calibrates_scale_and_offset():
    raw = LookupTableModel(SPACE.name, _lut().blocks)
    pop = SPACE.sample_population(100, 8)
    y = 0.8 * raw.predict_ms(SPACE, pop) + 0.02
    model = fit_latency_model(SPACE, pop, y, kind="lut", block_table=raw.blocks)
    assert (model.scale, model.offset_ms) == (pytest.approx(0.8), pytest.approx(0.02))
    with pytest.raises(ValueError, match="block_table"):
        fit_latency_model(SPACE, pop, y, kind="lut")


def test_fit_rejects_bad_inputs():
    pop = SPACE.sample_population(10, 0)
    with pytest.raises(ValueError, match="10 configs but 9"):
        fit_latency_model(SPACE, pop, np.ones(9))
    with pytest.raises(ValueError, match="> 0"):
        fit_latency_model(SPACE, pop, -np.ones(10))
    with pytest.raises(ValueError, match="kind"):
        fit_latency_model(SPACE, pop, np.ones(10), kind="gbt")


def test_fit_profile_latency_protocol():
    pop = SPACE.sample_population(50, 9)
    y = 0.3 * analyze(SPACE, pop)["macs"] / 1e6 + 0.2
    model, quality = fit_profile_latency(SPACE, pop, y, seed=0)
    train, test = split_indices(50, 0.2, seed=0)
    assert quality["n_test"] == 10 and quality["within_10pct"] == 1.0
    assert quality["ridge"] == select_ridge(SPACE, {k: v[train] for k, v in pop.items()}, y[train])[0]
    np.testing.assert_allclose(model.predict_ms(SPACE, pop), y, rtol=0.03)   # ridge: slightly biased
    assert len(train) == 40 and not set(train) & set(test)
    assert np.array_equal(split_indices(50, 0.2, seed=0)[1], test)


def test_profile_fit_scores_a_model_fitted_on_the_training_part_only():
    pop = SPACE.sample_population(40, 4)
    y = 0.3 * analyze(SPACE, pop)["macs"] / 1e6 + 0.2
    y[:8] *= 3.0     # subnets the held-out model never sees unless they are in its training part
    fit = profile_fit(SPACE, pop, y, kind="macs-linear", seed=1, test_fraction=0.25)
    assert len(fit.test) == 10 and fit.quality["n_test"] == 10 and fit.quality["n_train"] == 30
    assert "ridge" not in fit.quality
    sub = lambda idx: {k: v[idx] for k, v in pop.items()}
    alone = fit_latency_model(SPACE, sub(fit.train), y[fit.train], kind="macs-linear")
    np.testing.assert_allclose(fit.held_out.predict_ms(SPACE, pop), alone.predict_ms(SPACE, pop))
    everything = fit_latency_model(SPACE, pop, y, kind="macs-linear")
    np.testing.assert_allclose(fit.model.predict_ms(SPACE, pop), everything.predict_ms(SPACE, pop))
    with pytest.raises(ValueError, match="test_fraction"):
        profile_fit(SPACE, pop, y, test_fraction=0.9)


@pytest.mark.parametrize("data, message", [
    ([], "JSON object"),
    ({"type": "gbt"}, "'type'"),
    ({"type": "macs-linear", "ms_per_mmac": 1.0}, "intercept_ms"),
    ({"type": "macs-linear", "ms_per_mmac": "fast", "intercept_ms": 0}, "ms_per_mmac"),
    ({"type": "macs-linear", "ms_per_mmac": 1.0, "intercept_ms": 0, "extra": 1}, "extra"),
    ({"type": "analytical-mcu", "clock_mhz": 0, "macs_per_cycle": 1}, "clock_mhz"),
    ({"type": "analytical-mcu", "clock_mhz": 100, "macs_per_cycle": float("nan")}, "macs_per_cycle"),
    ({"type": "lut", "space": "tiny-fmnist", "blocks": {}}, "blocks"),
    ({"type": "lut", "space": "tiny-fmnist", "blocks": {"k": -1}}, "blocks['k']"),
    ({"type": "block-linear", "space": "tiny-fmnist", "features": ["blocks"], "coef": [1, 2],
      "intercept_ms": 0}, "2 coefficients for 1 features"),
    ({"type": "block-linear", "space": "tiny-fmnist", "features": ["flops"], "coef": [1],
      "intercept_ms": 0}, "unknown feature 'flops'"),
])
def test_bad_dicts_give_clear_errors(data, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        latency_model_from_dict(data)


def test_lut_missing_key_and_wrong_space():
    blocks = dict(_lut().blocks)
    blocks.pop(next(iter(blocks)))
    with pytest.raises(ValueError, match="lacks 1 block key"):
        LookupTableModel(SPACE.name, blocks).predict_ms(SPACE, SPACE.sample_population(2, 0))
    other = SearchSpace.preset("ofa-mbv3-w1.0")
    with pytest.raises(ValueError, match="fitted for space 'tiny-fmnist'"):
        _lut().predict_ms(other, other.sample_population(2, 0))


def test_invalid_configs_raise_the_space_message():
    pop = SPACE.sample_population(3, 0)
    pop["ks"][1, 2] = 4
    with pytest.raises(ValueError, match="'ks' has value 4"):
        MacsLinearModel(1, 0).predict_ms(SPACE, pop)


def test_metrics_on_hand_examples():
    scores = latency_metrics([1.0, 2.2, 2.5, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert scores["rmse_ms"] == pytest.approx(math.sqrt((0.04 + 0.25) / 4))
    assert scores["mape"] == pytest.approx((0 + 0.1 + 0.5 / 3 + 0) / 4)
    assert scores["within_10pct"] == pytest.approx(0.75)    # 2.2 vs 2.0 is exactly 10%: counts
    assert scores["kendall_tau"] == pytest.approx(1.0)
    assert scores["n_test"] == 4
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # One discordant pair of 6: (5 - 1) / 6; with a tie, tau-b.
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(2 * 3))


def test_kendall_tau_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 20, 700), rng.integers(0, 20, 700)   # > one 512-row block, with ties
    assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-12)


# ---------------------------------------------------------------------- datasets (latency_data)
def test_sample_configs_cover_widths_and_resolutions():
    from ofa_engine.devices.latency_dataset import sample_configs
    configs = sample_configs(SPACE, 26, seed=0)
    assert configs[:2] == [SPACE.largest(), SPACE.smallest()]
    pairs = {(c.wid, c.image_size) for c in configs[2:]}
    assert len(pairs) == len(SPACE.width_mults) * len(SPACE.resolutions)
    assert sample_configs(SPACE, 26, seed=0) == configs


def test_latency_dataset_command_is_resumable(tmp_path, capsys):
    import csv
    from ofa_engine.cli import main
    from ofa_engine.devices.latency_dataset import DATASET_COLUMNS, read_latency_dataset
    out = tmp_path / "lat.csv"
    argv = ["latency-dataset", "--space", "tiny-fmnist", "--n", "2", "--runs", "3", "--rounds", "2",
            "--warmup", "1", "--out", str(out), "--onnx-cache", str(tmp_path / "onnx")]
    assert main(argv) == 0
    configs, median, rows = read_latency_dataset(out)
    assert configs == [SPACE.largest(), SPACE.smallest()]
    assert np.all(median > 0) and tuple(rows[0]) == DATASET_COLUMNS
    assert int(rows[0]["macs"]) == analyze(SPACE, SPACE.largest())["macs"]
    before = out.read_text()
    assert main(argv) == 0                       # nothing left to do: file unchanged
    assert out.read_text() == before
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2
    with open(out, newline="") as fh:
        assert len(list(csv.reader(fh))) == 3


def test_block_table_measures_isolated_blocks(tmp_path):
    from ofa_engine.devices.latency_dataset import measure_block_table, read_block_table
    entries = unique_blocks(SPACE)
    keys = [entries[0]["key"]] + [next(e["key"] for e in entries if e["kind"] == kind) for kind in ("stem", "head")]
    out = measure_block_table(SPACE, tmp_path / "blocks.csv", runs=3, rounds=2, warmup=1, keys=keys)
    table = read_block_table(out)
    assert sorted(table) == sorted(keys) and all(v > 0 for v in table.values())
    with pytest.raises(ValueError, match="not a block"):
        measure_block_table(SPACE, tmp_path / "blocks.csv", keys=["nope"])


def test_select_ridge_picks_the_best_cross_validated_penalty():
    pop = SPACE.sample_population(60, 4)
    rng = np.random.default_rng(0)
    y = (0.3 * analyze(SPACE, pop)["macs"] / 1e6 + 0.2) * np.exp(rng.normal(0, 0.05, 60))
    ridge, rows = select_ridge(SPACE, pop, y, ridges=(0.0, 1e-2, 10.0), folds=5, seed=1)
    assert [r[0] for r in rows] == [0.0, 1e-2, 10.0]
    assert ridge == max(rows, key=lambda r: (r[1], -r[2]))[0]
    assert all(0 <= within <= 1 and mape > 0 for _, within, mape in rows)
    assert rows[2][2] > rows[0][2]          # a huge penalty flattens the model: larger errors
    assert select_ridge(SPACE, pop, y, ridges=(0.0, 1e-2, 10.0), folds=5, seed=1) == (ridge, rows)
    few = {k: v[:9] for k, v in pop.items()}
    assert select_ridge(SPACE, few, y[:9]) == (1e-3, [])    # too few to cross-validate: the default


# ---------------------------------------------------------------------- estimators and the registry
def _unfitted(kind):
    return {"macs-linear": lambda: MacsLinearModel(),
            "lut": lambda: LookupTableModel(SPACE.name, _lut().blocks, source="synthetic"),
            "block-linear": lambda: BlockLinearModel(SPACE.name, ridge=0.0),
            "analytical-mcu": lambda: AnalyticalMCUModel(216.0, source="datasheet")}[kind]()


def test_every_model_type_is_registered():
    assert tuple(LATENCY_MODELS.names()) == MODEL_TYPES == ("macs-linear", "lut", "block-linear", "analytical-mcu")
    assert {m.type for m in _models()} == set(MODEL_TYPES)


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_estimators_fit_and_predict_feature_rows(kind):
    model = _unfitted(kind)
    assert isinstance(model, LATENCY_MODELS.get(kind))
    pop = SPACE.sample_population(80, 11)
    x = model.feature_rows(SPACE, pop)
    assert x.ndim == 2 and x.shape[0] == 80
    truth = next(m for m in _models() if m.type == kind)
    y = truth.predict_ms(SPACE, pop)
    assert model.fit(x, y) is model
    np.testing.assert_allclose(model.predict(x), y, rtol=1e-6)
    np.testing.assert_allclose(model.predict_ms(SPACE, pop), model.predict(x), rtol=1e-9)
    again = latency_model_from_dict(json.loads(json.dumps(model.to_dict())))
    assert again == model
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    low, high = model.prediction_range(SPACE)
    predicted = model.predict_ms(SPACE, pop)
    assert 0 < low <= predicted.min() and predicted.max() <= high


def test_prediction_range_is_exact():
    model = _models()[3]
    low, high = model.prediction_range(SPACE)
    assert low == pytest.approx(float(model.predict_ms(SPACE, SPACE.smallest())[0]))   # positive coefficients
    assert high == pytest.approx(float(model.predict_ms(SPACE, SPACE.largest())[0]))
    flipped = BlockLinearModel(SPACE.name, model.features, -model.coef, 10.0)
    assert flipped.prediction_range(SPACE) == (pytest.approx(10.0 - (high - 0.03)), pytest.approx(10.0 - (low - 0.03)))


@pytest.mark.parametrize("data, message", [
    ({"type": "block-linear", "space": "tiny-fmnist", "features": ["blocks", "stem_macs"], "coef": [-0.01, 1e-8],
      "intercept_ms": 0.05}, r"block-linear latency model: fields \['coef', 'intercept_ms'\] .* predict .* for some "
                             r"subnet of space 'tiny-fmnist'; allowed: .* > 0"),
    ({"type": "macs-linear", "ms_per_mmac": -0.1, "intercept_ms": 1.0}, r"macs-linear latency model: .*ms_per_mmac"),
    ({"type": "macs-linear", "ms_per_mmac": 0.1, "intercept_ms": -1.0}, r"subnet of space"),
    ({"type": "analytical-mcu", "clock_mhz": 100, "macs_per_cycle": 1, "overhead_ms": -100}, r"overhead_ms"),
    ({"type": "macs-linear", "ms_per_mmac": float("inf"), "intercept_ms": 1.0}, r"'ms_per_mmac' = inf; allowed"),
])
def test_models_predicting_non_positive_latency_are_refused(data, message):
    with pytest.raises(ValueError, match=message):
        latency_model_from_dict(data)


def test_bundled_profiles_models_pass_the_positivity_check():
    from ofa_engine.devices.profiles import list_profiles, load_profile
    from ofa_engine.families import family_of
    for name in list_profiles():
        profile = load_profile(name)
        space = SPACE if profile.space in ("*", SPACE.name) else family_of(profile.space, fast=False).space
        model = profile.latency_model
        assert latency_model_from_dict(model.to_dict(), space=space) == model
        assert model.prediction_range(space)[0] > 0


@pytest.mark.parametrize("seed", [0, 4, 6])
def test_a_profile_fit_of_few_noisy_subnets_still_predicts_positive_latency_everywhere(seed):
    """12 noisy subnets fit per-block coefficients that go negative far from them (no penalty:
    some subnet of the space gets a negative latency); the profile fit raises the penalty until
    every subnet of the space is predicted > 0 ms, so the profile it writes also loads."""
    from ofa_engine import analyze
    from ofa_engine.predictors.latency import fit_latency_model, latency_model_from_dict, profile_fit
    space = SearchSpace.preset("tiny-fmnist")
    rng = np.random.default_rng(seed)
    configs = [space.sample(int(i)) for i in rng.integers(0, 10**6, 12)]
    y = analyze(space, configs)["macs"] / 1e7 * np.exp(rng.normal(0, 0.4, len(configs))) + 0.05
    # (ridge 0 itself is singular with 12 subnets and 15 coefficients; a vanishing penalty is not)
    assert fit_latency_model(space, configs, y, kind="learned", ridge=1e-9).prediction_range(space)[0] < 0
    fit = profile_fit(space, configs, y)
    assert fit.quality["ridge"] >= 1e-2 and fit.model.prediction_range(space)[0] > 0
    assert latency_model_from_dict(fit.model.to_dict(), space).prediction_range(space)[0] > 0


def test_the_bundled_w10_profile_refits_from_its_two_runs():
    """The ImageNet w1.0 CPU profile is fitted to two runs of the same 80 subnets (geometric mean
    per subnet). On those, no penalty is numerically singular in some cross-validation fold;
    `select_ridge` used to raise numpy's "Singular matrix" there instead of skipping it."""
    from ofa_engine.devices.profile_kit import fit_profile_from_csv
    from ofa_engine.devices.profiles import load_profile
    latency = Path(__file__).resolve().parents[1] / "assets" / "latency"
    refit = fit_profile_from_csv([latency / "w1.0-1t.csv", latency / "w1.0-1t-repeat.csv"], "cpu-ort-1t-w1.0",
                                 space="ofa-mbv3-w1.0")
    bundled = load_profile("cpu-ort-1t-w1.0")
    # The bundled file was fitted on another processor: BLAS differs there in the 14th digit
    # (issue 32), so floats agree to REFIT_REL (1e-9 relative); names, counts and the selected
    # penalty exactly.
    assert_close_tree(refit.latency_model.to_dict(), bundled.latency_model.to_dict())
    assert_close_tree(dict(refit.quality), dict(bundled.quality))
    assert refit.quality["ridge"] == bundled.quality["ridge"] > 0
