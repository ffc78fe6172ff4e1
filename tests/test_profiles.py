"""Device profiles: the bundled nine, the schema's errors, the MCU formula and memory figures."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from ofa_engine import SearchSpace, analyze
from ofa_engine.devices.mcu import MCU_PARTS, mcu_profile
from ofa_engine.devices.profiles import (BUNDLED_PROFILES, MAX_BATCH_SIZE, MAX_PROFILE_BYTES, MAX_THREADS,
                                         PROFILES_DIR, DeviceProfile, ProfileError, fit_profile, list_profiles,
                                         load_profile, load_validation, validation_path)

BUNDLED = ["cpu-ort-1t", "cpu-ort-1t-proxyless-w1.3", "cpu-ort-1t-resnet50d", "cpu-ort-1t-vit-fmnist", "cpu-ort-1t-w1.0",
           "cpu-ort-2t", "stm32f412", "stm32f746", "stm32h743"]
SPACE = SearchSpace.preset("tiny-fmnist")
# The space each measured profile was fitted to (analytical ones apply to every space).
SPACE_OF = {"cpu-ort-1t-w1.0": "ofa-mbv3-w1.0", "cpu-ort-1t-vit-fmnist": "vit-fmnist",
            "cpu-ort-1t-proxyless-w1.3": "ofa-proxyless-w1.3", "cpu-ort-1t-resnet50d": "ofa-resnet50d"}
# Those of a MobileNetV3 space or of any space (the ViT's: tests/test_vit_profiles.py; ProxylessNAS's
# and ResNet50D's: tests/test_zoo_profiles.py).
MBV3_BUNDLED = [name for name in BUNDLED if SPACE_OF.get(name, "tiny-fmnist") in ("tiny-fmnist", "ofa-mbv3-w1.0")]


def test_list_profiles_names_exactly_the_bundled_nine():
    assert list_profiles() == BUNDLED


@pytest.mark.parametrize("name", MBV3_BUNDLED)
def test_every_bundled_profile_loads_and_predicts(name):
    space = SearchSpace.preset(SPACE_OF.get(name, "tiny-fmnist"))
    profile = load_profile(name).for_space(space)
    assert profile.name == name and profile.space == ("*" if profile.kind == "analytical" else space.name)
    # The file states batch size and threads explicitly (threads null on microcontrollers).
    raw = json.loads((validation_path(name).parent / f"{name}.json").read_text())
    assert raw["format"] == "ofa-engine/device-profile" and raw["version"] == 1
    assert "batch_size" in raw and "threads" in raw and raw["batch_size"] == profile.batch_size
    # Round trip: the dict written is the dict read.
    assert DeviceProfile.from_dict(profile.to_dict()).to_dict() == profile.to_dict()
    pop = space.sample_population(500, np.random.default_rng(0))
    latency = profile.predict_latency_ms(pop)
    assert latency.shape == (500,) and np.all(np.isfinite(latency)) and np.all(latency > 0)
    # Lists of configs and populations agree; bigger nets are slower.
    configs = space.from_arrays(pop)[:20]
    np.testing.assert_allclose(profile.predict_latency_ms(configs), latency[:20])
    small, large = profile.predict_latency_ms([space.smallest(), space.largest()])
    assert large > 2 * small


@pytest.mark.parametrize("name", BUNDLED)
def test_measured_profiles_carry_quality_and_validation_data(name):
    profile = load_profile(name)
    validation = load_validation(name)
    if profile.kind == "measured":
        assert profile.threads == int(name.split("-")[2][:-1]) and profile.measures_locally
        assert profile.memory == {"ram_kb": None, "flash_kb": None}
        assert set(profile.quality) >= {"rmse_ms", "mape", "kendall_tau", "within_10pct", "n_test"}
        assert validation is not None and len(validation["configs"]) == profile.quality["n_test"]
        assert np.all(validation["measured_ms"] > 0) and np.all(validation["predicted_ms"] > 0)
    else:
        assert profile.threads is None and not profile.measures_locally
        assert profile.quality is None and validation is None


def test_mcu_formula_matches_a_hand_computation():
    # STM32F746: 216 MHz, 0.5 MACs/cycle -> MACs / (0.5 * 216e6) seconds.
    f746, f412 = load_profile("stm32f746", space=SPACE), load_profile("stm32f412").for_space(SPACE)
    cfg = SPACE.smallest()
    macs = analyze(SPACE, cfg)["macs"]
    assert macs == 482_752
    assert f746.predict_latency_ms(cfg)[0] == pytest.approx(macs / (0.5 * 216e6) * 1e3)
    assert f412.predict_latency_ms(cfg)[0] == pytest.approx(macs / (0.25 * 100e6) * 1e3)
    # Same formula over a population, every part.
    pop = SPACE.sample_population(200, np.random.default_rng(1))
    for name, part in MCU_PARTS.items():
        expected = analyze(SPACE, pop)["macs"] / (part.macs_per_cycle * part.clock_mhz * 1e6) * 1e3
        np.testing.assert_allclose(load_profile(name).predict_latency_ms(pop, space=SPACE), expected, rtol=1e-12)
        model = load_profile(name).to_dict()["latency_model"]
        assert model["type"] == "analytical-mcu" and model["source"]
        assert "MACs / (macs_per_cycle * clock_mhz" in load_profile(name).provenance["formula"]


def test_mcu_memory_limits_and_figures_in_kb_from_analyze():
    limits = {name: (load_profile(name).memory["sram_kb"], load_profile(name).memory["flash_kb"])
              for name in MCU_PARTS}
    assert limits == {"stm32f412": (256, 1024), "stm32f746": (320, 1024), "stm32h743": (512, 2048)}
    profile = load_profile("stm32f746").for_space(SPACE)
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
    assert not profile.fits_memory(largest)[0] and load_profile("stm32h743").fits_memory(largest, SPACE)[0]
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
    with pytest.raises(ProfileError, match=r"field 'space' = '\*'; '\*' \(any space\) is for analytical profiles only"):
        load_profile(data)
    data["space"] = "tiny-fmnist"
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


@pytest.mark.parametrize("field, value, limit", [("threads", MAX_THREADS + 1, "MAX_THREADS"),
                                                 ("threads", 1_000_000, "MAX_THREADS"),
                                                 ("batch_size", MAX_BATCH_SIZE + 1, "MAX_BATCH_SIZE"),
                                                 ("batch_size", 10 ** 9, "MAX_BATCH_SIZE")])
def test_thread_and_batch_caps_name_the_limit(field, value, limit):
    data = load_profile("cpu-ort-1t").to_dict()
    cap = MAX_THREADS if field == "threads" else MAX_BATCH_SIZE
    with pytest.raises(ProfileError, match=rf"field '{field}' = {value}; allowed: .*at most {cap} \({limit}\)"):
        load_profile(_set(data, field, value))
    assert load_profile(_set(data, field, cap)).to_dict()[field] == cap   # the cap itself is allowed


@pytest.mark.parametrize("field, value", [("threads", "two"), ("batch_size", 1.5), ("runtime", ["x"]),
                                          ("memory.sram_kb", float("nan")), ("quality", {"rmse_ms": "x"}),
                                          ("runtime.core", [1]), ("name", 5), ("kind", None)])
def test_pydantic_text_never_reaches_the_user(field, value):
    with pytest.raises(ProfileError) as info:
        load_profile(_set(_valid(), field, value))
    message = str(info.value)
    assert re.match(r"profile: field '[\w.]+' (= .*; allowed: |must be an object|lacks \[)", message), message
    assert not any(text in message for text in ("Input should", "pydantic", "validation error", "type="))


def test_deep_or_huge_profile_json_is_refused_clearly(tmp_path):
    deep = tmp_path / "deep.json"
    data = _valid()
    data["provenance"]["notes"] = "PLACEHOLDER"
    deep.write_text(json.dumps(data).replace('"PLACEHOLDER"', "[" * 10_000 + "]" * 10_000), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"deep.json' nests deeper than \d+ levels"):
        load_profile(deep)
    huge = tmp_path / "huge.json"
    huge.write_text(" " * (MAX_PROFILE_BYTES + 1) + json.dumps(_valid()), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"huge.json' is [\d,]+ bytes; allowed: at most 1,048,576"):
        load_profile(huge)
    # A dict nested as deep (no file) is refused by the schema, not with a RecursionError.
    nested: list = []
    for _ in range(10_000):
        nested = [nested]
    with pytest.raises(ProfileError, match=r"field 'provenance' must hold only JSON values"):
        load_profile(_set(_valid(), "provenance.notes", nested))


def test_write_mcu_profiles_reproduces_the_bundled_files(tmp_path, capsys):
    from ofa_engine.cli import main
    assert main(["write-mcu-profiles", "--out", str(tmp_path), "--date", "2026-11-28"]) == 0
    written = json.loads(capsys.readouterr().out)["written"]
    assert sorted(Path(p).name for p in written) == [f"{name}.json" for name in sorted(MCU_PARTS)]
    for name in MCU_PARTS:
        assert (tmp_path / f"{name}.json").read_bytes() == (PROFILES_DIR / f"{name}.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.json" for name in MCU_PARTS)


def test_bundled_profiles_come_from_the_registry():
    assert sorted(BUNDLED_PROFILES.names()) == BUNDLED
    assert BUNDLED_PROFILES.get("stm32f746") == PROFILES_DIR / "stm32f746.json"
    with pytest.raises(ValueError, match="unknown bundled device profile 'nope'; known: cpu-ort-1t"):
        BUNDLED_PROFILES.get("nope")


# ---------------------------------------------------------------------- spaces
W10 = SearchSpace.preset("ofa-mbv3-w1.0")


def test_analytical_profiles_apply_to_any_space_with_that_spaces_analytics():
    for name, part in MCU_PARTS.items():
        profile = load_profile(name)
        assert profile.space == "*" and profile.any_space and profile.bound_space is None
        assert profile.applies_to(W10) and profile.applies_to("tiny-fmnist")
        for space in (SPACE, W10):
            bound = profile.for_space(space)
            assert bound.search_space is space and bound.to_json() == profile.to_json()
            pop = space.sample_population(50, np.random.default_rng(3))
            metrics = analyze(space, pop)
            np.testing.assert_allclose(bound.predict_latency_ms(pop),
                                       metrics["macs"] / (part.macs_per_cycle * part.clock_mhz * 1e6) * 1e3, rtol=1e-12)
            np.testing.assert_array_equal(bound.memory_usage_kb(pop)["flash_kb"], metrics["flash_bytes"] / 1024)
    # Unbound, it cannot guess the space of a config.
    with pytest.raises(ProfileError, match=r"applies to any space \('\*'\) and is not bound to one; say which"):
        load_profile("stm32f746").predict_latency_ms(SPACE.smallest())


def test_measured_profiles_stay_bound_to_their_space():
    cpu = load_profile("cpu-ort-1t")
    assert cpu.applies_to(SPACE) and not cpu.applies_to(W10) and cpu.for_space(SPACE) is cpu
    with pytest.raises(ProfileError, match=r"profile 'cpu-ort-1t' is for space 'tiny-fmnist', not 'ofa-mbv3-w1.0': "
                                           r"its 'block-linear' latency model was fitted .*allowed: an analytical"):
        cpu.for_space(W10)
    with pytest.raises(ProfileError, match=r"profile file '.*cpu-ort-1t.json': profile 'cpu-ort-1t' is for space"):
        load_profile(str(PROFILES_DIR / "cpu-ort-1t.json"), space=W10)


def test_a_profile_may_name_the_space_it_is_loaded_for(tmp_path):
    import dataclasses as dc
    custom = dc.replace(SPACE, name="tiny-fmnist-custom", num_classes=3, labels=("a", "b", "c"))
    data = load_profile("cpu-ort-1t").to_dict()
    data["space"] = data["latency_model"]["space"] = "tiny-fmnist-custom"
    with pytest.raises(ProfileError, match=r"field 'space' = 'tiny-fmnist-custom'; allowed: \['ofa-mbv3-w1.0'"):
        load_profile(data)   # without the space it is for, only presets are known
    profile = load_profile(data, space=custom)
    assert profile.search_space is custom and profile.predict_latency_ms(custom.smallest())[0] > 0
    # A space of the same name but another architecture is refused when the fit recorded it.
    from ofa_engine.devices.profiles import space_fingerprint
    data["provenance"]["space_fingerprint"] = space_fingerprint(custom)
    assert load_profile(data, space=custom).applies_to(custom)
    other = dc.replace(custom, num_classes=5, labels=tuple("abcde"))
    with pytest.raises(ProfileError, match="of another architecture"):
        load_profile(data, space=other)
    # Labels, mean and std do not change a latency model.
    assert load_profile(data, space=dc.replace(custom, labels=("x", "y", "z"))).applies_to(custom)


def test_profiles_for_space_lists_which_have_a_latency_model():
    from ofa_engine.devices.profiles import profiles_for_space
    assert profiles_for_space("tiny-fmnist") == [(name, name not in SPACE_OF) for name in BUNDLED]
    rows = profiles_for_space(W10)
    assert rows == [(name, SPACE_OF.get(name, "*" if name.startswith("stm32") else "tiny-fmnist") in ("*", W10.name))
                    for name in BUNDLED]
    assert [r.name for r in rows if r.has_latency_model] == ["cpu-ort-1t-w1.0", "stm32f412", "stm32f746", "stm32h743"]


@pytest.mark.parametrize("name", ["cpu-ort-1t", "stm32f746"])
@pytest.mark.parametrize("field", ["ks", "e", "d", "image_size"])
def test_a_population_missing_a_field_is_refused_naming_it(name, field):
    """A user's population (a dict of arrays) without one of its fields: a ValueError naming the
    field and the fields a population has, not a bare KeyError."""
    pop = SPACE.sample_population(4, np.random.default_rng(0))
    del pop[field]
    with pytest.raises(ValueError, match=re.escape(f"a population needs the fields ['wid', 'ks', 'e', 'd', "
                                                   f"'image_size']; missing ['{field}']")):
        load_profile(name).for_space(SPACE).predict_latency_ms(pop)
