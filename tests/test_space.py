import dataclasses
import json

import numpy as np
import pytest

from ofa_engine import SearchSpace, SubnetConfig
from ofa_engine.families.mbv3.space import list_presets
from conftest import PRESETS


def test_presets_listed():
    assert set(PRESETS) <= set(list_presets())
    with pytest.raises(ValueError, match="unknown search space 'nope'.*tiny-fmnist"):
        SearchSpace.preset("nope")


@pytest.mark.parametrize("name,res", [("ofa-mbv3-w1.0", (128, 224)), ("ofa-mbv3-w1.2", (160, 224))])
def test_official_layouts(name, res):
    s = SearchSpace.preset(name)
    assert (s.in_channels, s.num_classes) == (3, 1000)
    assert s.kernel_sizes == (3, 5, 7) and s.expand_ratios == (3, 4, 6) and s.depths == (2, 3, 4)
    assert s.resolutions == tuple(range(res[0], res[1] + 1, 4))
    assert s.num_slots == 20 and s.num_stages == 5
    assert s.channels(0).stages == ((24, 40, 80, 112, 160) if name.endswith("1.0") else (32, 48, 96, 136, 192))


def test_tiny_fmnist_space():
    s = SearchSpace.preset("tiny-fmnist")
    assert (s.in_channels, s.num_classes) == (1, 10)
    assert len(s.width_mults) >= 3 and s.kernel_sizes == (3, 5, 7) and s.expand_ratios == (3, 4, 6)
    assert 2 <= len(s.depths) <= 3 and len(s.resolutions) >= 4
    assert len(s.labels) == 10


@pytest.mark.parametrize("name", PRESETS)
def test_sample_is_valid_and_seeded(name):
    s = SearchSpace.preset(name)
    a = [s.sample(np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1]
    for seed in range(20):
        assert s.validate(s.sample(seed)) == s.sample(seed)
    assert s.largest().ks == (7,) * s.num_slots and s.smallest().d == (min(s.depths),) * s.num_stages


def test_config_roundtrip_and_immutable():
    s = SearchSpace.preset("tiny-fmnist")
    cfg = s.sample(1)
    assert SubnetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert SubnetConfig.from_json(cfg.to_json()) == cfg
    assert hash(cfg) == hash(SubnetConfig.from_dict(cfg.to_dict()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.wid = 0
    assert isinstance(cfg.ks, tuple)


@pytest.mark.parametrize("change,pattern", [
    ({"wid": 7}, r"'wid' = 7.*allowed: 0..2"),
    ({"ks": [4] + [3] * 14}, r"'ks' has value 4; allowed: \[3, 5, 7\]"),
    ({"e": [3] * 3}, r"'e' has 3 entries.*needs 15"),
    ({"d": [1, 2, 2, 2, 2]}, r"'d' has value 1; allowed: \[2, 3\]"),
    ({"image_size": 30}, r"'image_size' = 30; allowed: \[20, 24, 28, 32\]"),
    ({"ks": "777"}, r"'ks' must be a list of integers"),
    ({"wid": "0"}, r"'wid' must hold integers"),
    ({"e": [3.5] * 15}, r"'e' must hold integers"),
])
def test_validate_names_field_value_and_allowed(change, pattern):
    s = SearchSpace.preset("tiny-fmnist")
    with pytest.raises(ValueError, match=pattern):
        s.validate({**s.largest().to_dict(), **change})


def test_from_dict_rejects_missing_and_extra_fields():
    with pytest.raises(ValueError, match=r"missing \['image_size'\], unexpected \['x'\]"):
        SubnetConfig.from_dict({"wid": 0, "ks": [], "e": [], "d": [], "x": 1})
    with pytest.raises(ValueError, match="not valid JSON"):
        SubnetConfig.from_json("{bad")


def test_parse_config_forms(tmp_path):
    s = SearchSpace.preset("tiny-fmnist")
    assert s.parse_config("largest") == s.largest()
    assert s.parse_config("smallest") == s.smallest()
    assert s.parse_config("random:5") == s.sample(5)
    path = tmp_path / "c.json"
    path.write_text(s.sample(2).to_json())
    assert s.parse_config(str(path)) == s.sample(2)
    assert s.parse_config(s.sample(3).to_json()) == s.sample(3)
    with pytest.raises(ValueError, match="random:SEED"):
        s.parse_config("random:x")
    with pytest.raises(ValueError, match="neither largest"):
        s.parse_config(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("name", PRESETS)
def test_encode_one_hot(name):
    s = SearchSpace.preset(name)
    configs = [s.sample(i) for i in range(50)] + [s.largest(), s.smallest()]
    x = s.encode(configs)
    assert x.shape == (len(configs), s.encoding_size) and x.dtype == np.float32
    n_res, n_wid, n_k, n_e = len(s.resolutions), len(s.width_mults), len(s.kernel_sizes), len(s.expand_ratios)
    for row, cfg in zip(x, configs):
        assert row[:n_res].argmax() == s.resolutions.index(cfg.image_size) and row[:n_res].sum() == 1
        assert row[n_res + cfg.wid] == 1 and row[n_res:n_res + n_wid].sum() == 1
        blocks = row[n_res + n_wid:].reshape(s.num_slots, n_k + n_e)
        active = set(s.active_slots(cfg))
        for slot in range(s.num_slots):
            if slot in active:
                assert blocks[slot, s.kernel_sizes.index(cfg.ks[slot])] == 1
                assert blocks[slot, n_k + s.expand_ratios.index(cfg.e[slot])] == 1
                assert blocks[slot].sum() == 2
            else:
                assert blocks[slot].sum() == 0  # skipped blocks are all zeros
    # The encoding ignores choices in skipped slots: equal subnets, equal features.
    cfg = s.smallest()
    other = dataclasses.replace(cfg, ks=(cfg.ks[0],) * (s.max_depth - 1) + (7,) + cfg.ks[s.max_depth:])
    assert np.array_equal(s.encode(cfg), s.encode(other))


def test_population_round_trip_and_vectorised_paths_agree():
    space = SearchSpace.preset("tiny-fmnist")
    pop = space.sample_population(64, rng=3)
    configs = space.from_arrays(pop)
    assert len(configs) == 64 and all(space.validate(c) is c for c in configs)
    np.testing.assert_array_equal(space.encode(pop), space.encode(configs))
    from ofa_engine.families.mbv3.analytics import analyze
    by_pop, by_list = analyze(space, pop), analyze(space, configs)
    for key in by_pop:
        np.testing.assert_array_equal(by_pop[key], by_list[key])
    assert analyze(space, configs[0])["macs"] == by_pop["macs"][0]


def test_population_with_a_bad_value_or_shape_names_the_field():
    space = SearchSpace.preset("tiny-fmnist")
    pop = space.sample_population(4, rng=0)
    bad = dict(pop, e=pop["e"].copy())
    bad["e"][2, 5] = 5
    with pytest.raises(ValueError, match=r"field 'e' has value 5; allowed: \[3, 4, 6\]"):
        space.to_arrays(bad)
    with pytest.raises(ValueError, match=r"field 'd' has shape"):
        space.to_arrays(dict(pop, d=pop["d"][:, :2]))
    with pytest.raises(ValueError, match="wid"):
        space.from_arrays(dict(pop, wid=pop["wid"] + 3))
