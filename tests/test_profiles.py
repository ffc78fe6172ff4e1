"""Device profiles: the bundled five, the schema's errors, the MCU formula and memory figures."""

import dataclasses
import json

import numpy as np
import pytest

from ofa_engine import SearchSpace, analyze
from ofa_engine.devices.profiles import (MAX_PROFILE_BYTES, MCU_PARTS, DeviceProfile, ProfileError, fit_profile,
                                 list_profiles, load_profile, load_validation, mcu_profile, validation_path)

BUNDLED = ["cpu-ort-1t", "cpu-ort-2t", "stm32f412", "stm32f746", "stm32h743"]
SPACE = SearchSpace.preset("tiny-fmnist")


def test_list_profiles_names_exactly_the_bundled_five():
    assert list_profiles() == BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_profile_loads_and_predicts(name):
    profile = load_profile(name)
    assert profile.name == name and profile.space == "tiny-fmnist"
    # The file states batch size and threads explicitly (threads null on microcontrollers).
    raw = json.loads((validation_path(name).parent / f"{name}.json").read_text())
    assert raw["format"] == "ofa-engine/device-profile" and raw["version"] == 1
    assert "batch_size" in raw and "threads" in raw and raw["batch_size"] == profile.batch_size
    # Round trip: the dict written is the dict read.
    assert DeviceProfile.from_dict(profile.to_dict()).to_dict() == profile.to_dict()
    pop = SPACE.sample_population(500, np.random.default_rng(0))
    latency = profile.predict_latency_ms(pop)
    assert latency.shape == (500,) and np.all(np.isfinite(latency)) and np.all(latency > 0)
    # Lists of configs and populations agree; bigger nets are slower.
    configs = SPACE.from_arrays(pop)[:20]
    np.testing.assert_allclose(profile.predict_latency_ms(configs), latency[:20])
    small, large = profile.predict_latency_ms([SPACE.smallest(), SPACE.largest()])
    assert large > 2 * small


@pytest.mark.parametrize("name", BUNDLED)
def test_measured_profiles_carry_quality_and_validation_data(name):
    profile = load_profile(name)
    validation = load_validation(name)
    if profile.kind == "measured":
        assert profile.threads == int(name[-2]) and profile.measures_locally
        assert profile.memory == {"ram_kb": None, "flash_kb": None}
        assert set(profile.quality) >= {"rmse_ms", "mape", "kendall_tau", "within_10pct", "n_test"}
        assert validation is not None and len(validation["configs"]) == profile.quality["n_test"]
        assert np.all(validation["measured_ms"] > 0) and np.all(validation["predicted_ms"] > 0)
    else:
        assert profile.threads is None and not profile.measures_locally
        assert profile.quality is None and validation is None


def test_mcu_formula_matches_a_hand_computation():
    # STM32F746: 216 MHz, 0.5 MACs/cycle -> MACs / (0.5 * 216e6) seconds.
    f746, f412 = load_profile("stm32f746"), load_profile("stm32f412")
    cfg = SPACE.smallest()
    macs = analyze(SPACE, cfg)["macs"]
    assert macs == 482_752
    assert f746.predict_latency_ms(cfg)[0] == pytest.approx(macs / (0.5 * 216e6) * 1e3)
    assert f412.predict_latency_ms(cfg)[0] == pytest.approx(macs / (0.25 * 100e6) * 1e3)
    # Same formula over a population, every part.
    pop = SPACE.sample_population(200, np.random.default_rng(1))
    for name, part in MCU_PARTS.items():
        expected = analyze(SPACE, pop)["macs"] / (part.macs_per_cycle * part.clock_mhz * 1e6) * 1e3
        np.testing.assert_allclose(load_profile(name).predict_latency_ms(pop), expected, rtol=1e-12)
        model = load_profile(name).to_dict()["latency_model"]
        assert model["type"] == "analytical-mcu" and model["source"]
        assert "MACs / (macs_per_cycle * clock_mhz" in load_profile(name).provenance["formula"]


def test_mcu_memory_limits_and_figures_in_kb_from_analyze():
    limits = {name: (load_profile(name).memory["sram_kb"], load_profile(name).memory["flash_kb"])
              for name in MCU_PARTS}
    assert limits == {"stm32f412": (256, 1024), "stm32f746": (320, 1024), "stm32h743": (512, 2048)}
    profile = load_profile("stm32f746")
    pop = SPACE.sample_population(300, np.random.default_rng(2))
    usage = profile.memory_usage_kb(pop)
    metrics = analyze(SPACE, pop)
    np.testing.assert_array_equal(usage["peak_memory_kb"], metrics["peak_activation_bytes"] / 1024)
    np.testing.assert_array_equal(usage["flash_kb"], metrics["flash_bytes"] / 1024)
    fits = profile.fits_memory(pop)
    np.testing.assert_array_equal(fits, (usage["peak_memory_kb"] <= 320) & (usage["flash_kb"] <= 1024))
    # The largest tiny-fmnist net needs ~1.6 MB of int8 weights: too big for the F746, fine for the H743.
    largest = SPACE.largest()
    assert analyze(SPACE, largest)["flash_bytes"] / 1024 > 1024
    assert not profile.fits_memory(largest)[0] and load_profile("stm32h743").fits_memory(largest)[0]
    assert load_profile("cpu-ort-1t").fits_memory(pop).all()   # unlimited


def test_profiles_are_immutable_and_load_accepts_every_form(tmp_path):
    profile = load_profile("stm32h743")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.name = "x"
    with pytest.raises(TypeError):
        profile.memory["sram_kb"] = 1
    assert load_profile(profile) is profile
    assert load_profile(profile.to_dict()).to_dict() == profile.to_dict()
    path = profile.save(tmp_path / "h7.json")
    assert load_profile(str(path)).to_dict() == profile.to_dict()
    assert load_profile(path).to_json() == profile.to_json()
    assert [p.name for p in tmp_path.iterdir()] == ["h7.json"]   # no temporary file left
    assert mcu_profile("stm32h743").to_dict()["latency_model"] == profile.to_dict()["latency_model"]


def _valid() -> dict:
    return load_profile("stm32f746").to_dict()


def _set(data: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    target = data
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize("field, value, message", [
    ("colour", "blue", r"unknown field\(s\) \['colour'\]; allowed: \['format'"),
    ("threads", "two", r"field 'threads' = 'two'; allowed: an integer >= 1, or null"),
    ("threads", 0, r"field 'threads' = 0; allowed"),
    ("batch_size", 1.5, r"field 'batch_size' = 1.5; allowed: an integer >= 1"),
    ("memory.sram_kb", -1, r"field 'memory.sram_kb' = -1; allowed: a positive number of KB"),
    ("memory.flash_kb", "1MB", r"field 'memory.flash_kb' = '1MB'"),
    ("memory.ram_kb", 100, r"field 'memory' has keys .*exactly one of 'sram_kb'"),
    ("memory.eeprom_kb", 4, r"field 'memory' has unknown key\(s\) \['eeprom_kb'\]"),
    ("latency_model.type", "magic", r"field 'latency_model.type' = 'magic'"),
    ("latency_model.clock_mhz", -5, r"field 'latency_model' is invalid: .*'clock_mhz'"),
    ("space", "imagenet", r"field 'space' = 'imagenet'; allowed: \['ofa-mbv3-w1.0'"),
    ("kind", "guessed", r"field 'kind' = 'guessed'; allowed: \['measured', 'analytical'\]"),
    ("version", 2, r"field 'version' = 2: written by a newer ofa_engine"),
    ("format", "something", r"field 'format' = 'something'; allowed: 'ofa-engine/device-profile'"),
    ("name", "My Device", r"field 'name' = 'My Device'; allowed: 1-64 characters"),
    ("runtime.engine", "", r"field 'runtime.engine' = ''"),
    ("runtime", ["onnxruntime"], r"field 'runtime' must be an object"),
    ("quality", {"rmse_ms": 1.0}, r"field 'quality' lacks \['mape'"),
    ("provenance.command", _DELETE, r"field 'provenance.command' = None; required: a non-empty string"),
    ("display_name", _DELETE, r"missing field\(s\) \['display_name'\]"),
])
def test_schema_errors_name_the_field_and_what_is_allowed(field, value, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(_set(_valid(), field, value))


def test_kind_and_model_must_agree():
    data = _set(_valid(), "kind", "measured")
    data["threads"] = 1
    with pytest.raises(ProfileError, match="a measured profile holds a model fitted"):
        load_profile(data)
    measured = load_profile("cpu-ort-1t").to_dict()
    with pytest.raises(ProfileError, match="threads' = null; a measured profile states"):
        load_profile(_set(measured, "threads", None))


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "ofa-engine/device-profile",', encoding="utf-8")
    with pytest.raises(ProfileError, match=r"bad.json' is not valid JSON: .* line 1"):
        load_profile(bad)
    big = tmp_path / "big.json"
    data = _valid()
    data["provenance"]["notes"] = "x" * MAX_PROFILE_BYTES
    big.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"big.json' is [\d,]+ bytes; allowed: at most 1,048,576"):
        load_profile(big)
    with pytest.raises(ProfileError, match=r"unknown profile 'no-such-device': neither a bundled "
                                           r"profile \(cpu-ort-1t, .*\) nor an existing JSON file"):
        load_profile("no-such-device")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ProfileError, match="a profile must be a JSON object, got list"):
        load_profile(listed)
    assert isinstance(ProfileError("x"), ValueError)


def test_fit_profile_is_the_kit_fit():
    from ofa_engine.devices.profile_kit import fit_profile_from_csv
    assert fit_profile.__module__ == "ofa_engine.devices.profiles" and callable(fit_profile_from_csv)
