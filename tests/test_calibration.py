"""ofa_engine.devices.calibration: rescaling a measured profile to this machine's speed now."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ofa_engine.devices.calibration import (MAX_SUBNETS, calibrate_profile, calibration_scale, reference_configs)
from ofa_engine.cli import main
from ofa_engine.predictors.latency import (AnalyticalMCUModel, LookupTableModel, MacsLinearModel,
                                       latency_model_from_dict)
from ofa_engine.devices.profiles import ProfileError, load_profile
from ofa_engine.families.mbv3.space import SearchSpace

SPACE = SearchSpace.preset("tiny-fmnist")


def population(n: int = 50):
    return SPACE.sample_population(n, np.random.default_rng(3))


@pytest.mark.parametrize("profile", ["cpu-ort-1t", "cpu-ort-2t"])
def test_scaled_model_predicts_factor_times_and_round_trips(profile):
    model = load_profile(profile).latency_model
    scaled = model.scaled(0.7)
    assert type(scaled) is type(model)
    np.testing.assert_allclose(scaled.predict_ms(SPACE, population()), 0.7 * model.predict_ms(SPACE, population()),
                               rtol=1e-12)
    assert latency_model_from_dict(json.loads(json.dumps(scaled.to_dict()))) == scaled


def test_scaled_macs_and_lut_models():
    macs = MacsLinearModel(0.05, 0.02)
    np.testing.assert_allclose(macs.scaled(2.0).predict_ms(SPACE, population()),
                               2.0 * macs.predict_ms(SPACE, population()))
    blocks = {"a": 1.0}
    lut = LookupTableModel(SPACE.name, blocks, scale=1.5, offset_ms=0.1)
    assert lut.scaled(2.0).to_dict()["scale"] == 3.0 and lut.scaled(2.0).to_dict()["offset_ms"] == 0.2


@pytest.mark.parametrize("factor", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_scaled_refuses_bad_factors(factor):
    with pytest.raises(ValueError, match="scale factor"):
        MacsLinearModel(0.05, 0.02).scaled(factor)


def test_analytical_models_are_not_rescaled():
    with pytest.raises(ValueError, match="cannot be rescaled"):
        AnalyticalMCUModel(216, 0.5).scaled(0.5)


def test_calibration_scale_is_the_geometric_mean():
    assert calibration_scale([2.0, 8.0], [1.0, 1.0]) == pytest.approx(4.0)
    assert calibration_scale([1.0, 1.0], [2.0, 0.5]) == pytest.approx(1.0)
    for measured, predicted in (([], []), ([1.0], [1.0, 2.0]), ([0.0], [1.0]), ([1.0], [float("nan")])):
        with pytest.raises(ValueError):
            calibration_scale(measured, predicted)


def test_reference_configs_span_the_space_and_refuse_bad_counts():
    profile = load_profile("cpu-ort-1t")
    configs = reference_configs(profile, 8)
    assert configs[0] == SPACE.largest() and configs[1] == SPACE.smallest() and len(set(configs)) == 8
    assert reference_configs(profile, 8) == configs   # seeded
    for bad in (1, MAX_SUBNETS + 1, 2.5, True):
        with pytest.raises(ValueError, match="subnets"):
            reference_configs(profile, bad)


def test_calibrate_profile_rescales_with_the_measured_factor(tmp_path):
    """A machine running at 0.6x the profile's speed (with +-3% per-subnet scatter): the
    calibrated copy predicts 0.6x, keeps the rankings, records how it was made, saves and reloads."""
    base = load_profile("cpu-ort-2t")
    scatter = np.array([1.03, 0.97, 1.0, 1.02, 0.98, 1.01, 0.99, 1.0])

    def fake_measure(paths, threads, batch_size):
        assert threads == 2 and batch_size == 1 and all(p.stat().st_size > 1000 for p in paths)
        return list(0.6 * base.predict_latency_ms(reference_configs(base, len(paths))) * scatter[:len(paths)])

    result = calibrate_profile(base, 8, measure=fake_measure)
    assert result.scale == pytest.approx(0.6 * np.exp(np.mean(np.log(scatter))), rel=1e-9)
    assert result.profile.name == "cpu-ort-2t-calibrated" and "calibrated x0.60" in result.profile.display_name
    pop = population()
    np.testing.assert_allclose(result.profile.predict_latency_ms(pop), result.scale * base.predict_latency_ms(pop))
    record = result.profile.provenance["calibration"]
    assert record["scale"] == result.scale and record["base_profile"] == "cpu-ort-2t" and record["subnets"] == 8
    assert result.profile.quality == base.quality and result.profile.threads == base.threads
    summary = result.summary()
    assert summary["mape_before"] == pytest.approx(0.4, abs=0.02) and summary["mape_after"] < 0.03
    reloaded = load_profile(result.profile.save(tmp_path / "now.json"))
    np.testing.assert_allclose(reloaded.predict_latency_ms(pop), result.profile.predict_latency_ms(pop))
    assert calibrate_profile(base, 2, measure=lambda p, t, b: [1.0, 1.0], name="mine").profile.name == "mine"


def test_calibrate_refuses_a_profile_this_machine_cannot_measure():
    with pytest.raises(ProfileError, match="not measured on this machine"):
        calibrate_profile("stm32f746", measure=lambda p, t, b: [1.0] * len(p))


def test_calibrate_profile_cli_measures_the_exported_subnets_and_writes_the_rescaled_profile(tmp_path, capsys,
                                                                                               monkeypatch):
    """The CLI exports the reference subnets, measures them with the profile's threads and batch
    size, and writes the profile rescaled by measured / predicted. The measurement is a fake
    that answers 2.5 x the prediction (a real one is a different number on every machine; it is
    run for real in test_calibrate_profile_reports_progress_per_round)."""
    import onnx

    from ofa_engine.devices import calibration
    from ofa_engine.runtime.measure import LatencyStats
    base = load_profile("cpu-ort-1t")
    predicted = base.predict_latency_ms(reference_configs(base, 2))
    calls = []

    def fake_measure_many(paths, threads, batch_size, rounds, **kwargs):
        calls.append({"threads": threads, "batch_size": batch_size, "rounds": rounds,
                      "inputs": [onnx.load(p).graph.input[0].type.tensor_type.shape.dim[-1].dim_value for p in paths]})
        return [LatencyStats(2.5 * ms, 2.4 * ms, 2.6 * ms, 0.2 * ms, 10, threads, batch_size) for ms in predicted]

    monkeypatch.setattr(calibration, "measure_many", fake_measure_many)
    out = tmp_path / "now.json"
    assert main(["calibrate-profile", "cpu-ort-1t", "--out", str(out), "--subnets", "2", "--rounds", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # Measured the two reference subnets' ONNX files (their input sizes), once, as the profile runs.
    sizes = [c.image_size for c in reference_configs(base, 2)]
    assert calls == [{"threads": 1, "batch_size": 1, "rounds": 1, "inputs": sizes}]
    assert summary["subnets"] == 2 and summary["scale"] == 2.5 and summary["out"] == str(out)
    assert summary["mape_before"] == 1.5 and summary["mape_after"] == 0.0
    calibrated = load_profile(out)
    assert calibrated.name == "cpu-ort-1t-calibrated"
    assert calibrated.provenance["calibration"]["scale"] == pytest.approx(2.5, rel=1e-12)
    np.testing.assert_allclose(calibrated.predict_latency_ms(population()), 2.5 * base.predict_latency_ms(population()),
                               rtol=1e-12)
    assert main(["calibrate-profile", "cpu-ort-1t", "--out", str(tmp_path / "no" / "x.json")]) == 2
    assert main(["calibrate-profile", "stm32f412", "--out", str(tmp_path / "y.json")]) == 2
    assert not (tmp_path / "y.json").exists()


def test_calibrate_profile_reports_progress_per_round():
    seen = []
    result = calibrate_profile("cpu-ort-1t", 2, rounds=2, runs=2, warmup=0,
                               progress=lambda *args: seen.append(args))
    assert result.scale > 0
    assert seen == [(1, 2, "measured round 1/2"), (2, 2, "measured round 2/2")]
