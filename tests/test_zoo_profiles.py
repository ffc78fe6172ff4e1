"""The measured CPU latency profiles of the official zoo's ProxylessNAS and ResNet50D spaces
(issue 36; assets/profiles/README.md): each refits from its bundled latency CSV, its repeat run
agrees with it, it predicts for its own space only, and the analytical MCU profiles apply to
both spaces unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ofa_engine.devices.latency_dataset import read_latency_dataset
from ofa_engine.devices.profile_kit import fit_profile_from_csv
from ofa_engine.devices.profiles import list_profiles, load_profile
from ofa_engine.families import family_of
from tests.test_latency_models import assert_close_tree

LATENCY = Path(__file__).resolve().parents[1] / "assets" / "latency"
# profile -> (space, latency CSV stem)
PROFILES = {"cpu-ort-1t-proxyless-w1.3": ("ofa-proxyless-w1.3", "proxyless-w1.3-1t"),
            "cpu-ort-1t-resnet50d": ("ofa-resnet50d", "resnet50d-1t")}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_the_bundled_profile_refits_from_its_csv(name):
    space, stem = PROFILES[name]
    refit = fit_profile_from_csv(LATENCY / f"{stem}.csv", name, space=space)
    bundled = load_profile(name)
    assert bundled.space == space and bundled.kind == "measured" and bundled.threads == 1
    assert_close_tree(refit.latency_model.to_dict(), bundled.latency_model.to_dict())
    assert_close_tree(dict(refit.quality), dict(bundled.quality))
    # What README.md states: every held-out subnet within +-10 %, rank order kept.
    assert bundled.quality["within_10pct"] == 1.0 and bundled.quality["kendall_tau"] > 0.95


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_the_repeat_run_agrees_with_the_first(name):
    """The noise floor: the first 40 of the 80 subnets measured again agree within +-10 %."""
    _, stem = PROFILES[name]
    configs, first, _ = read_latency_dataset(LATENCY / f"{stem}.csv")
    again, repeat, _ = read_latency_dataset(LATENCY / f"{stem}-repeat.csv")
    assert len(configs) == 80 and configs[:len(again)] == again and len(again) == 40
    ratio = repeat / first[:len(repeat)]
    assert np.all(np.abs(ratio - 1) <= 0.1), ratio


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_each_profile_predicts_its_own_space_only(name):
    space, _ = PROFILES[name]
    fam = family_of(space)
    profile = load_profile(name)
    largest, smallest = fam.space.largest(), fam.space.smallest()
    big, small = profile.predict_latency_ms([largest, smallest])
    assert big > 5 * small > 0
    for other, (other_space, _) in PROFILES.items():
        if other != name:
            with pytest.raises(ValueError, match=f"is for space '{other_space}'"):
                load_profile(other).for_space(fam.space)


@pytest.mark.parametrize("space", sorted(s for s, _ in PROFILES.values()))
def test_the_microcontroller_profiles_apply_unchanged(space):
    """Analytical: MACs / (MACs per cycle x clock) from the family's own count."""
    fam = family_of(space)
    mcus = [p for p in list_profiles() if p.startswith("stm32")]
    assert mcus
    for name in mcus:
        profile = load_profile(name).for_space(fam.space)
        smallest = fam.space.smallest()
        macs = int(fam.analyze([smallest])["macs"][0])
        assert profile.predict_latency_ms([smallest])[0] == pytest.approx(
            macs / (profile.latency_model.macs_per_cycle * profile.latency_model.clock_mhz * 1e3))
