"""The ViT's latency on this machine: the bundled cpu-ort-1t-vit-fmnist profile (fp32 and its
int8 model), and this machine's start-up profile of the vit-fmnist space (few-shot on top of it)."""

import json
from pathlib import Path

import numpy as np
import pytest

from ofa_engine.cli.main import main
from ofa_engine.devices import this_machine as tm
from ofa_engine.devices.profile_kit import fit_profile_from_csv, kit_configs
from ofa_engine.devices.profiles import PRECISION_LATENCY_MODELS, load_profile
from ofa_engine.families import family_of
from ofa_engine.predictors.latency import architecture_features, profile_fit
from ofa_engine.predictors.latency.fewshot import fewshot_fit, fewshot_fit_rows
from tests.helpers_numbers import assert_close_tree

NAME, SPACE_NAME = "cpu-ort-1t-vit-fmnist", "vit-fmnist"
LATENCY = Path(__file__).resolve().parents[1] / "assets" / "latency"
TINY = {"n": 5, "rounds": 1, "runs": 2, "warmup": 0, "speed_seconds": 0.05}   # seconds, not a measurement to trust


@pytest.fixture(scope="module")
def vit():
    return family_of(SPACE_NAME, fast=False).space


@pytest.fixture(scope="module")
def tiny():
    return family_of("tiny-fmnist", fast=False).space


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(tm.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _synthetic_latencies(space, configs, seed=1):
    """Seeded latencies that grow with the blocks: what a device measures does not matter here."""
    x, _ = architecture_features(space, configs)
    return np.random.default_rng(seed).uniform(0.8, 1.2, len(configs)) * (0.1 + 0.05 * x[:, 0])


# ---------------------------------------------------------------------- the bundled profile
def test_the_bundled_vit_profile_is_bound_to_its_space_and_predicts_positive_latency(vit, tiny):
    profile = load_profile(NAME)
    assert profile.kind == "measured" and profile.space == SPACE_NAME and profile.threads == 1
    assert profile.measures_locally and profile.applies_to(vit) and not profile.applies_to(tiny)
    low, high = profile.latency_model.prediction_range(vit)
    assert 0 < low < high
    small, large = profile.predict_latency_ms([vit.smallest(), vit.largest()])
    assert large > 2 * small


def test_the_bundled_vit_profile_refits_from_its_dataset():
    """Fitted on vit-1t.csv alone (assets/profiles/README.md): the 40-subnet repeat measures
    other subnets than the 120, which fit-profile refuses to average."""
    refit = fit_profile_from_csv(LATENCY / "vit-1t.csv", NAME, space=SPACE_NAME)
    bundled = load_profile(NAME)
    assert_close_tree(refit.latency_model.to_dict(), bundled.latency_model.to_dict())
    quality, expected = dict(refit.quality), dict(bundled.quality)
    # Kendall's tau counts the test subnets' pairs; two whose predictions agree to ~1e-12 can
    # order either way with the CPU's float code path (AVX2 or AVX-512 BLAS: 0.9837 on an Intel
    # VM against 0.9783 where the profile was fitted): within two of its pairs.
    pairs = expected["n_test"] * (expected["n_test"] - 1) / 2
    assert abs(quality.pop("kendall_tau") - expected.pop("kendall_tau")) <= 2 / pairs
    assert_close_tree(quality, expected)
    assert bundled.quality["n_train"] + bundled.quality["n_test"] == 120
    with pytest.raises(ValueError, match="does not measure the same subnets"):
        fit_profile_from_csv([LATENCY / "vit-1t.csv", LATENCY / "vit-1t-repeat.csv"], NAME, space=SPACE_NAME)


def test_the_vit_profile_has_an_int8_latency_model_fitted_on_its_int8_dataset(vit):
    profile = load_profile(NAME)
    assert profile.precisions == ("fp32", "int8") and profile.check_precision("int8") == "int8"
    int8 = profile.for_precision("int8")
    assert int8.precision == "int8" and int8.latency_model.space == SPACE_NAME
    shipped = json.loads(PRECISION_LATENCY_MODELS[NAME]["int8"].read_text())
    assert shipped["dataset"] == "vit-1t-int8.csv" and dict(int8.quality) == shipped["quality"]
    # benchmarks/int8_latency_model.py --space vit-fmnist: the profile protocol on the int8 dataset.
    from ofa_engine.devices.latency_dataset import read_latency_dataset
    configs, ms, _ = read_latency_dataset(LATENCY / "vit-1t-int8.csv", SPACE_NAME)
    fit = profile_fit(SPACE_NAME, configs, ms, "learned")
    assert_close_tree(fit.model.to_dict(), shipped["latency_model"])
    # int8 files are slower than fp32 ones here (ORT's QDQ kernels on this small ViT).
    pop = [vit.sample(np.random.default_rng(i)) for i in range(50)]
    assert np.all(int8.predict_latency_ms(pop) > profile.predict_latency_ms(pop))


# ---------------------------------------------------------------------- this machine
def test_the_prior_of_each_space_is_its_own_bundled_profile():
    assert [tm.reference_profile_name(t, "fp32", "tiny-fmnist") for t in (1, 2, 3)] == \
        ["cpu-ort-1t", "cpu-ort-2t", "cpu-ort-1t"]
    assert [tm.reference_profile_name(t, p, SPACE_NAME) for t in (1, 2) for p in ("fp32", "int8")] == [NAME] * 4
    assert tm.reference_profile_name(1, "fp32", "ofa-mbv3-w1.0") == "cpu-ort-1t-w1.0"
    with pytest.raises(ValueError, match="space 'ofa-mbv3-w1.2' has no bundled ONNX Runtime CPU profile.*"
                                         "allowed spaces: ofa-mbv3-w1.0, ofa-proxyless-w1.3, ofa-resnet50d, tiny-fmnist, vit-fmnist"):
        tm.reference_profile_name(1, "fp32", "ofa-mbv3-w1.2")


def test_a_prior_or_configs_of_another_space_are_refused_by_name(vit, tiny):
    configs = kit_configs(vit, 6)
    latencies = _synthetic_latencies(vit, configs)
    tiny_prior = load_profile("cpu-ort-1t").latency_model
    with pytest.raises(ValueError, match="prior was fitted for space 'tiny-fmnist', the measured subnets are of "
                                         "space 'vit-fmnist'"):
        fewshot_fit(vit, tiny_prior, configs, latencies)
    x, _ = architecture_features(vit, configs)
    with pytest.raises(ValueError, match=r"x has shape \(6, 7\); allowed: \(K, 14\), the latency features of space "
                                         "'tiny-fmnist'"):
        fewshot_fit_rows(tiny_prior, x, latencies)
    with pytest.raises(ValueError, match="the measured subnets must be configs of space 'tiny-fmnist' "
                                         r"\(family 'mbv3'\)"):
        tm.fit_this_machine_profile(tiny, 1, "fp32", configs, latencies)


def test_the_tiny_fmnist_fit_is_the_one_of_before(tiny):
    """Same subnets, same latencies: the same model as the call before spaces had their own prior
    (fewshot_fit_rows on cpu-ort-<T>t's model, the prior's space implied), and the same names."""
    configs = kit_configs(tiny, 12)
    latencies = _synthetic_latencies(tiny, configs)
    x, _ = architecture_features(tiny, configs)
    for threads in (1, 2):
        profile = tm.fit_this_machine_profile(tiny, threads, "fp32", configs, latencies)
        before = fewshot_fit_rows(load_profile(f"cpu-ort-{threads}t").latency_model, x, latencies, "ridge-prior")
        assert profile.latency_model.to_dict() == before.to_dict()
        assert profile.name == f"this-machine-{threads}t" and profile.provenance["prior"] == f"cpu-ort-{threads}t"
        assert not profile.display_name.endswith("tiny-fmnist")


def test_the_vit_fit_starts_from_the_vit_profile(vit):
    configs = kit_configs(vit, 12)
    latencies = _synthetic_latencies(vit, configs)
    for precision in ("fp32", "int8"):
        profile = tm.fit_this_machine_profile(vit, 1, precision, configs, latencies)
        suffix = "" if precision == "fp32" else "-int8"
        assert profile.name == f"this-machine-1t-vit-fmnist{suffix}" and profile.space == SPACE_NAME
        assert profile.provenance["prior"] == NAME and profile.runtime["precision"] == precision
        assert profile.display_name.endswith(", vit-fmnist" + (", int8" if suffix else ""))
        assert profile.latency_model.prediction_range(vit)[0] > 0
        assert profile.quality["n_test"] == 12   # leave-one-out over the 12


def test_this_machine_measures_the_vit_space(cache, tmp_path):
    label = tm.latency_label(1, "fp32", SPACE_NAME)
    assert label.startswith("reference machine (AMD EPYC VM") and "2026-12-05" in label
    paths = tm.profile_this_machine(SPACE_NAME, threads=(1,), out=tmp_path / "vit.json", **TINY)
    assert paths[1] == tm.cache_path(1, "fp32", SPACE_NAME) and "vit-fmnist" in paths[1].name
    profile = load_profile(tmp_path / "vit.json")
    assert profile.name == "this-machine-1t-vit-fmnist" and profile.space == SPACE_NAME
    assert profile.provenance["prior"] == NAME and profile.provenance["subnets"] == 5
    assert tm.this_machine_status(1, "fp32", SPACE_NAME).ready
    assert tm.latency_label(1, "fp32", SPACE_NAME).startswith("this machine (")
    # The tiny-fmnist setting is another cache entry: still not measured.
    assert not tm.this_machine_status(1).ready and tm.latency_label(1).endswith("not this one")
    # Cached: starting the background run for it starts nothing.
    assert tm.start_profile_this_machine(SPACE_NAME, threads=(1,)) is None


def test_the_background_start_refuses_a_space_without_a_prior_before_starting(cache):
    with pytest.raises(ValueError, match="space 'ofa-mbv3-w1.2' has no bundled ONNX Runtime CPU profile"):
        tm.start_profile_this_machine(("tiny-fmnist", "ofa-mbv3-w1.2"), threads=(1,))
    assert not cache.exists()


def test_cli_takes_several_spaces(cache, capsys):
    assert main(["profile-this-machine", "--status", "--space", "tiny-fmnist,vit-fmnist", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"tiny-fmnist", "vit-fmnist"}
    assert out["vit-fmnist"]["1t"]["ready"] is False and "AMD EPYC VM" in out["vit-fmnist"]["1t"]["label"]
    assert "Intel" in out["tiny-fmnist"]["1t"]["label"]
    assert main(["profile-this-machine", "--space", "tiny-fmnist,vit-fmnist", "--out", str(cache.parent / "x.json")]) == 2
    assert "--out takes the profile of one space" in capsys.readouterr().err
    assert main(["profile-this-machine", "--space", "vit-fmnist,nope"]) == 2
    assert main(["profile-this-machine", "--space", "ofa-mbv3-w1.2"]) == 2
    assert "no bundled ONNX Runtime CPU profile" in capsys.readouterr().err
    assert not cache.exists()   # nothing measured or written
