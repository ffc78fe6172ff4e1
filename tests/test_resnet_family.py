"""The ResNet50D family (`ofa_engine.families.resnet`): space, config, genome, analytics,
describe, encoding and latency features. The supernet (48M parameters) is built once."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ofa_engine.families import family_named, family_of
from ofa_engine.families.resnet.space import ResNetConfig, space_from_dict
from ofa_engine.runtime.quantize import weight_bytes

PRESET = "ofa-resnet50d"


@pytest.fixture(scope="module")
def family():
    return family_of(PRESET)


@pytest.fixture(scope="module")
def supernet(family):
    from test_official_resnet import _randomise   # BN statistics away from their initial 0 / 1
    net = family.build_supernet()
    _randomise(net, seed=11)
    return net.eval()


def _configs(space, n=6, seed=0):
    rng = np.random.default_rng(seed)
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n)]


# ---------------------------------------------------------------- space and config
def test_preset_is_the_official_space(family):
    space = family.space
    assert (space.num_classes, space.in_channels, space.resolutions) == (1000, 3, (128, 144, 160, 176, 192, 224))
    assert space.mean == (0.485, 0.456, 0.406) and space.std == (0.229, 0.224, 0.225)
    assert (space.num_slots, space.num_widths, space.stem_skip_choices) == (18, 6, (0, 2))
    assert space.stem_mid_channels == (24, 24, 32) and space.stem_out_channels == (40, 48, 64)
    assert space.stage_out_channels[3] == (1328, 1640, 2048)
    assert family_named("resnet").space_from_dict(space.to_dict()) == space


def test_config_is_the_labs_form_and_round_trips(family):
    space = family.space
    cfg = space.sample(4)
    data = cfg.to_dict()
    assert set(data) == {"d", "e", "w", "image_size"} and len(data["e"]) == 18 and len(data["w"]) == 6
    assert ResNetConfig.from_json(json.dumps(data)) == cfg == space.parse_config(json.dumps(data))
    assert family.config_from_dict(json.loads(cfg.to_json())) == cfg
    assert space.parse_config("largest") == space.largest() and space.parse_config("random:4") == cfg
    assert space.largest().d == (2, 2, 2, 2, 2) and space.smallest().e == (0.2,) * 18


@pytest.mark.parametrize("change,message", [
    ({"d": [1, 0, 0, 0, 0]}, r"d\[0\] = 1; allowed: \[0, 2\]"),
    ({"d": [0, 3, 0, 0, 0]}, r"'d' has value 3; allowed: \[0, 1, 2\]"),
    ({"e": [0.3] * 18}, r"'e' has value 0.3; allowed: \[0.2, 0.25, 0.35\]"),
    ({"e": [0.2] * 17}, r"'e' has 17 entries; space 'ofa-resnet50d' needs 18"),
    ({"w": [0, 0, 0, 0, 0, 3]}, r"'w' has value 3; allowed: \[0, 1, 2\]"),
    ({"image_size": 150}, r"'image_size' = 150; allowed: \[128, 144"),
    ({"ks": [3]}, r"unexpected \['ks'\]"),
    ({"w": "012"}, r"'w' must be a list"),
])
def test_validate_names_field_value_and_allowed(family, change, message):
    data = {**family.space.smallest().to_dict(), **change}
    with pytest.raises(ValueError, match=message):
        family.validate(data)


@pytest.mark.parametrize("change,message", [
    ({"stage_widths": [10 ** 6] * 4}, "stage_widths"),
    ({"stage_widths": [8192] * 4, "base_depths": [16] * 4}, "MAX_SUPERNET_PARAMS"),
    ({"num_classes": 10 ** 9}, "num_classes"),
    ({"resolutions": [128, 10 ** 5]}, "resolutions"),
    ({"mean": [0.5]}, "mean"),
    ({"depth_list": [2, 1]}, "ascending"),
    ({"extra": 1}, "unknown fields"),
])
def test_a_hostile_manifest_space_is_refused_before_allocating(family, change, message):
    data = {**family.space.to_dict(), **change}
    with pytest.raises(ValueError, match=message):
        space_from_dict(data, where="manifest space")


# ---------------------------------------------------------------- genome and encoding
def test_genome_round_trip_active_mask_and_encoding(family):
    space, genome = family.space, family.genome
    configs = _configs(space, 20)
    genes = family.to_genes(configs)
    assert family.to_configs(genes) == configs
    active = genome.active(genes)
    # The expand ratios past a stage's depth are inactive: smallest keeps 2, 2, 4, 2 of 4, 4, 6, 4.
    slots = active[1, genome.expand_genes]
    assert slots.sum() == 10 and active[0, genome.expand_genes].all()
    x = family.encode(configs)
    assert x.shape == (len(configs), family.encoding_size) == (len(configs), 2 + 4 * 3 + 18 * 3 + 6 * 3 + 6)
    assert (x.sum(1) == 1 + 4 + active[:, genome.expand_genes].sum(1) + 6 + 1).all()
    # Configs that differ only in an inactive expand ratio are the same subnet and encode alike.
    other = dataclasses.replace(space.smallest(), e=(0.2,) * 2 + (0.35,) * 2 + (0.2,) * 14)
    assert np.array_equal(family.encode([other]), family.encode([space.smallest()]))
    assert genome.groups["resolution"].tolist() == [genome.num_genes - 1]


# ---------------------------------------------------------------- analytics against the network
def test_analytics_equal_the_extracted_network(family, supernet):
    configs = _configs(family.space, 4, seed=1)
    configs = [dataclasses.replace(c, image_size=128) for c in configs]
    batch = family.analyze(configs)
    for i, cfg in enumerate(configs):
        net = supernet.extract(cfg)
        assert net.config == cfg and net.space_name == PRESET
        assert family.count_macs(net, cfg) == batch["macs"][i] == family.analyze(cfg)["macs"]
        assert sum(p.numel() for p in net.parameters()) == batch["params"][i]
        rows = family.describe(cfg)
        assert sum(r["macs"] for r in rows if r["active"]) == batch["macs"][i]
        assert sum(r["params"] for r in rows if r["active"]) == batch["params"][i]
    efficiency = family.analytic_efficiency(family.to_genes(configs))
    assert np.array_equal(efficiency["macs"], batch["macs"])


def test_deployment_bytes_equal_the_files(family, supernet, tmp_path):
    from ofa_engine.runtime.export import export_onnx
    cfg = dataclasses.replace(family.space.smallest(), d=(2, 1, 0, 0, 0), w=(1, 0, 2, 0, 1, 0))
    net = supernet.extract(cfg)
    x = np.random.default_rng(0).standard_normal((4, 3, 128, 128)).astype(np.float32)
    fp32 = export_onnx(net, cfg, tmp_path / "fp32.onnx", space=family.space)
    int8 = export_onnx(net, cfg, tmp_path / "int8.onnx", space=family.space, precision="int8", calibration=x,
                       evaluation=x, calibration_method="minmax", agreement_floor=0.0)
    stored = weight_bytes(int8)
    assert family.deployment_bytes(cfg, "fp32")["flash_bytes"] == weight_bytes(fp32)["weight_bytes"]
    assert family.deployment_bytes(cfg, "int8")["flash_bytes"] == (
        stored["weight_bytes"] + stored["scale_bytes"] + stored["zero_point_bytes"] + stored["activation_qparam_bytes"])
    assert family.analyze(cfg)["flash_bytes"] == stored["weight_bytes"]


def test_describe_lists_inactive_slots(family):
    from ofa_engine.space.family import DESCRIBE_FIELDS
    rows = family.describe(family.space.smallest())
    assert all(tuple(r) == DESCRIBE_FIELDS for r in rows)
    assert len(rows) == 2 + 18 + 1 and rows[1]["layer"] == "stem.res" and not rows[1]["active"]
    assert [r["active"] for r in rows[2:6]] == [True, True, False, False]
    assert rows[2]["kind"] == "bottleneck e0.2 + downsample" and rows[-1]["out_shape"] == (1000,)


# ---------------------------------------------------------------- latency features
def test_latency_features_gather_and_exact_range(family):
    features = family.latency_features()
    space = family.space
    configs = _configs(space, 60, seed=2)
    macs = np.asarray(family.analyze(configs)["macs"], np.float64)
    np.testing.assert_array_equal(features.total_macs(configs), macs)
    x, names = features.features(configs)
    macs_columns = [names.index(n) for n in ("conv1x1_macs", "conv3x3_macs", "stem_head_macs")]
    np.testing.assert_array_equal(x[:, macs_columns].sum(1), macs)
    assert x[:, names.index("blocks")].tolist() == [18.0, 10.0] + x[2:, names.index("blocks")].tolist()
    assert features.table_range(*features.macs_tables()) == (macs[1], macs[0])
    # On arbitrary tables (no monotonicity to lean on) no sampled subnet passes the range.
    rng = np.random.default_rng(0)
    block, fixed = (rng.standard_normal(t.shape) for t in features.macs_tables())
    lo, hi = features.table_range(block, fixed)
    values = features.gather(features.space.genome.to_configs(features.space.genome.random(3000, rng)), block, fixed)
    assert lo <= values.min() and values.max() <= hi and lo < hi


def test_latency_keys_modules_dataset_and_int8_scales(family, supernet):
    features = family.latency_features()
    entries = features.unique_blocks()
    keys = set(features.block_keys().ravel())
    for table in features.fixed_keys():
        keys |= set(table.ravel())
    assert {e["key"] for e in entries} == keys and {e["kind"] for e in entries} == {"block", "stem", "head"}
    for kind in ("block", "stem", "head"):
        entry = next(e for e in entries if e["kind"] == kind)
        module, shape = features.block_module(entry, supernet)
        with torch.no_grad():
            assert module(torch.zeros(shape)).shape[0] == 1
    configs = features.dataset_configs(12, seed=3)
    assert configs[:2] == [family.space.largest(), family.space.smallest()]
    assert configs == features.dataset_configs(12, 3)
    scales, layers = features.int8_scale_counts(configs[1:4])
    for i, cfg in enumerate(configs[1:4]):
        net = family.fold_bn(supernet.extract(cfg))
        convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert layers[i] == len(convs)
        assert scales[i] == sum(m.weight.shape[0] * (2 if m.bias is not None else 1) for m in convs)


# ---------------------------------------------------------------- exact tables and the search's batches
def _small_space():
    from test_app_official_zoo import SPACES   # the zoo's small ResNet space (imports streamlit)
    return SPACES["resnet"]


@pytest.mark.parametrize("which", ["preset", "small"])
def test_tables_equal_the_block_by_block_walk(family, which):
    from ofa_engine.families.resnet.analytics import analyze, analyze_values, deployment_bytes
    from ofa_engine.families.resnet.tables import TABLE_METRICS, efficiency_tables
    space = family.space if which == "preset" else _small_space()
    genome = space.genome
    genes = np.concatenate([genome.random(2000, np.random.default_rng(5)),
                            genome.from_configs([space.largest(), space.smallest()])])
    walk = analyze_values(space, genome.values(genes))
    tables = efficiency_tables(space).compute(genes)
    for name in TABLE_METRICS:
        assert tables[name].dtype == np.int64
        np.testing.assert_array_equal(tables[name], walk[name], err_msg=name)
    fast, slow = family_of(space).analytic_efficiency(genes), family_of(space, fast=False).analytic_efficiency(genes)
    assert fast.keys() == slow.keys() and all(np.array_equal(fast[k], slow[k]) for k in fast)
    # A list of configs and a population (the tables) equal one config at a time (the walk).
    configs = genome.to_configs(genes[-12:])
    batch, population = analyze(space, configs), analyze(space, genome.to_population(genes[-12:]))
    for i, cfg in enumerate(configs):
        one = analyze(space, cfg)
        assert {k: int(v[i]) for k, v in batch.items()} == one == {k: int(v[i]) for k, v in population.items()}
    for precision in ("fp32", "int8"):
        np.testing.assert_array_equal(deployment_bytes(space, configs, precision)["flash_bytes"],
                                      walk[f"flash_bytes_{precision}"][-12:])


def test_decode_is_a_population_of_the_genes(family):
    from ofa_engine.families.resnet.genome import ResNetPopulation
    genome = family.genome
    genes = genome.random(7, np.random.default_rng(1))
    population = family.decode(genes)
    assert isinstance(population, ResNetPopulation) and len(population) == 7
    assert family.to_genes(population) is population.genes and not population.genes.flags.writeable
    assert list(population) == family.to_configs(genes) and population[2] == family.to_configs(genes)[2]
    np.testing.assert_array_equal(family.to_genes(population[1:3]), genes[1:3])
    features = family.latency_features()
    np.testing.assert_array_equal(features.total_macs(population), features.total_macs(list(population)))
    bad = genes.copy()
    bad[3, genome.res_gene] = 99
    with pytest.raises(ValueError, match=r"gene 'image_size' of row 3 = 99; allowed: 0 to 5"):
        family.decode(bad)


def _random_predictor(space, seed=0):
    from ofa_engine.predictors.accuracy import AccuracyPredictor
    rng = np.random.default_rng(seed)
    sizes = [family_of(space).encoding_size, 32, 1]
    return AccuracyPredictor(space, weights=[rng.standard_normal((a, b)) * 0.3 for a, b in zip(sizes, sizes[1:])],
                             biases=[rng.standard_normal(b) * 0.1 for b in sizes[1:]], baseline_bias=0.7,
                             target_scale=0.05)


# Recorded with the block-by-block walk and configs as the search's batches (before the tables
# and `ResNetPopulation`): the same seed must still give these subnets and numbers.
RECORDED_SEARCHES = {
    "preset": (1500.0, {"d": [2, 0, 1, 2, 2], "e": [0.35, 0.35, 0.35, 0.2, 0.2, 0.35, 0.35, 0.2, 0.2, 0.2, 0.2, 0.25,
                                                     0.2, 0.25, 0.25, 0.35, 0.25, 0.25],
                        "w": [2, 1, 2, 0, 2, 1], "image_size": 128},
               {"accuracy": 1.0739951133728027, "latency_ms": 10411.648592592592, "peak_memory_kb": 600.0,
                "flash_kb": 22736.5654296875, "macs": 1124458048, "params": 23022488}),
    "small": (1.467, {"d": [2, 1, 2, 1, 2], "e": [0.2, 0.35, 0.25, 0.2, 0.2, 0.35, 0.2, 0.35, 0.25, 0.35, 0.2, 0.25,
                                                  0.25, 0.25, 0.25, 0.35, 0.2, 0.2],
                      "w": [0, 0, 0, 2, 2, 1], "image_size": 32},
              {"accuracy": 0.5815668290455168, "latency_ms": 13.583333333333334, "peak_memory_kb": 6.0,
               "flash_kb": 177.4482421875, "macs": 1467000, "params": 158979}),
}


@pytest.mark.parametrize("which", ["preset", "small"])
def test_search_finds_the_recorded_subnet(family, which):
    """Evolution, seed 0, default options, under a MACs budget on the stm32f746 profile: the
    preset with a seeded random MLP predictor, the small space with the MACs proxy (a package
    without a predictor, as the zoo's)."""
    from ofa_engine.devices.profiles import load_profile
    from ofa_engine.predictors.accuracy import MacsProxy
    from ofa_engine.search.constraints import Constraints
    from ofa_engine.search.core import search
    from ofa_engine.search.evaluator import Evaluator
    space = family.space if which == "preset" else _small_space()
    predictor = _random_predictor(space) if which == "preset" else MacsProxy(space)
    evaluator = Evaluator(space, load_profile("stm32f746").for_space(space), predictor)
    macs_m, config, predicted = RECORDED_SEARCHES[which]
    result = search(evaluator, Constraints(macs_m=macs_m), "evolution", seed=0)
    assert result.config.to_dict() == config
    assert {k: result.predicted[k] for k in ("macs", "params")} == {k: predicted[k] for k in ("macs", "params")}
    assert result.predicted == pytest.approx(predicted, rel=1e-12)
