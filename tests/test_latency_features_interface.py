"""The family-neutral `LatencyFeatures` (ofa_engine.space.latency), for every registered preset,
and the latency models reaching a family only through it."""

import numpy as np
import pytest

from ofa_engine.families import family_of, preset_names
from ofa_engine.families.mbv3 import latency_features as mbv3_features
from ofa_engine.predictors.latency import (BlockLinearModel, MacsLinearModel, architecture_features, features_of,
                                           total_macs)
from ofa_engine.space.latency import LatencyFeatures

MBV3 = ["tiny-fmnist", "ofa-mbv3-w1.0", "ofa-mbv3-w1.2"]


def _configs(fam, n=30, seed=0):
    rng = np.random.default_rng(seed)
    return [fam.space.sample(rng) for _ in range(n)]


@pytest.mark.parametrize("preset", preset_names())
def test_every_family_has_latency_features_or_says_which_models_apply(preset):
    """A family's features agree with its own analytics; a family without them still serves
    the MACs models (through `analyze`) and names them when asked for features."""
    fam = family_of(preset)
    configs = _configs(fam)
    macs = np.asarray(fam.analyze(configs)["macs"], np.float64)
    features = fam.latency_features()
    model = MacsLinearModel(0.5, 0.1)
    np.testing.assert_array_equal(model.predict_ms(preset, configs), model.predict(macs[:, None]))
    if features is None:
        with pytest.raises(ValueError, match="has no latency features.*'macs-linear'"):
            features_of(preset)
        return
    assert isinstance(features, LatencyFeatures) and features.space == fam.space
    np.testing.assert_array_equal(features.total_macs(configs), macs)
    x, names = features.features(configs)
    assert names == features.feature_names and x.shape == (len(configs), len(names))
    block, fixed = features.feature_tables()
    assert block.shape[-1] + fixed.shape[-1] == len(names)
    assert {f for group in features.feature_groups.values() for f in group} <= set(names)
    assert features.count(configs) == len(configs)
    np.testing.assert_array_equal(features.features(features.take(configs, np.array([3, 1])))[0], x[[3, 1]])
    lo, hi = features.table_range(*features.macs_tables())
    assert lo <= macs.min() and macs.max() <= hi


@pytest.mark.parametrize("preset", MBV3)
def test_mobilenetv3_features_are_the_module_functions(preset):
    """`MobileNetV3LatencyFeatures` gives the numbers the mbv3 functions give (the gather form
    the search's GenomeKernel consumes is unchanged)."""
    fam = family_of(preset)
    features = fam.latency_features()
    space = fam.space
    pop = space.sample_population(200, 1)
    x, names = features.features(pop)
    x0, names0 = mbv3_features.architecture_features(space, pop)
    assert names == names0 == mbv3_features.BLOCK_FEATURES + mbv3_features.FIXED_FEATURES
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(architecture_features(preset, pop)[0], x0)
    np.testing.assert_array_equal(total_macs(space, pop), mbv3_features.total_macs(space, pop))
    for ours, theirs in zip(features.macs_tables(), mbv3_features.macs_tables(space)):
        assert ours is theirs                       # the same cached tables, no copy
    assert np.array_equal(features.block_keys(), mbv3_features.block_keys(space))
    assert [e["key"] for e in features.unique_blocks()] == [e["key"] for e in mbv3_features.unique_blocks(space)]
    assert features.feature_groups == mbv3_features.FEATURE_GROUPS


def test_lookup_keys_cover_the_unique_blocks():
    features = features_of("tiny-fmnist")
    keys = {e["key"] for e in features.unique_blocks()}
    table_keys = set(features.block_keys().ravel())
    for table in features.fixed_keys():
        table_keys |= set(table.ravel())
    assert keys == table_keys
    assert {e["kind"] for e in features.unique_blocks()} == {"block", "stem", "head"}


def test_dataset_configs_start_with_the_extremes_and_are_seeded():
    features = features_of("tiny-fmnist")
    space = features.space
    configs = features.dataset_configs(12, seed=3)
    assert configs[:2] == [space.largest(), space.smallest()] and len(configs) == 12
    assert features.dataset_configs(12, seed=3) == configs
    assert features.count(configs) == 12


def test_count_names_a_bad_config():
    features = features_of("tiny-fmnist")
    bad = {**features.space.largest().to_dict(), "image_size": 31}
    with pytest.raises(ValueError, match="image_size"):
        features.count([bad])


def test_block_linear_model_takes_its_features_from_the_family():
    features = features_of("tiny-fmnist")
    assert BlockLinearModel("tiny-fmnist").features == features.feature_names
    with pytest.raises(ValueError, match="unknown feature 'nope'; allowed"):
        BlockLinearModel("tiny-fmnist", ["nope"])
    # A model of no known space (few-shot scoring on bare rows) learns its names when given one.
    x, _ = features.features(_configs(family_of("tiny-fmnist"), 40))
    y = x @ np.linspace(1e-7, 1e-6, x.shape[1]) + 0.2
    bare = BlockLinearModel("", ridge=0.0).fit(x, y)
    assert bare.features is None
    with pytest.raises(ValueError, match="no feature names"):
        bare.to_dict()
    bare.space = "tiny-fmnist"
    assert bare.to_dict()["features"] == list(features.feature_names)


def test_int8_scale_counts_match_the_extracted_network():
    """The per-channel scales and conv / linear layers the MCU kit's Flash bound counts equal
    those of the extracted network."""
    torch = pytest.importorskip("torch")
    fam = family_of("tiny-fmnist")
    features = fam.latency_features()
    configs = _configs(fam, 3, seed=5)
    scales, layers = features.int8_scale_counts(configs)
    supernet = fam.build_supernet()
    for i, cfg in enumerate(configs):
        net = fam.fold_bn(supernet.extract(cfg).eval())
        convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert layers[i] == len(convs)
        assert scales[i] == sum(m.weight.shape[0] * (2 if m.bias is not None else 1) for m in convs)
