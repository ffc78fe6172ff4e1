"""The ProxylessNAS family (`ofa_engine.families.proxyless`): space and config in the lab's form,
genome and encoding, analytics against the extracted nets and the exported files, `describe`,
latency features. Its equivalence with the official network is tests/test_official_proxyless.py."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ofa_engine.families import family_of, family_named
from ofa_engine.families.proxyless.genome import ProxylessPopulation
from ofa_engine.families.proxyless.space import ProxylessConfig, space_from_dict
from ofa_engine.space.family import DESCRIBE_FIELDS

PRESET = "ofa-proxyless-w1.3"


@pytest.fixture(scope="module")
def family():
    return family_of(PRESET)


@pytest.fixture(scope="module")
def supernet(family):
    torch.manual_seed(0)
    net = family.build_supernet().eval()
    with torch.no_grad():   # distinct BN statistics, so that no two folded biases are equal
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.bias.normal_(0, 0.1)
    return net


def _configs(space, n=12, seed=0):
    rng = np.random.default_rng(seed)
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n)]


# ---------------------------------------------------------------- space and config
def test_preset_is_the_official_network(family):
    space = family.space
    assert family.family == "proxyless" and family_named("proxyless") is type(family)
    assert space.num_classes == 1000 and space.in_channels == 3
    assert space.mean == (0.485, 0.456, 0.406) and space.std == (0.229, 0.224, 0.225)
    assert space.resolutions == tuple(range(128, 225, 4))
    assert space.widths == (40, 24, 32, 56, 104, 128, 248, 416, 1664)
    assert space.num_slots == 21 and space.stage_strides == (2, 2, 2, 1, 2, 1) and space.bn_eps == 1e-3
    largest = space.largest()
    assert len(largest.ks) == len(largest.e) == 21 and largest.d == (4, 4, 4, 4, 4, 1)
    assert space.smallest().d == (2, 2, 2, 2, 2, 1)


def test_config_round_trips_in_the_lab_form(family):
    space = family.space
    for cfg in _configs(space):
        data = cfg.to_dict()
        assert sorted(data) == ["d", "e", "image_size", "ks"]
        assert ProxylessConfig.from_json(json.dumps(data)) == cfg == family.config_from_dict(data)
        assert space.lab_config(cfg) == {"ks": data["ks"], "e": data["e"], "d": data["d"]}
    assert space.parse_config("largest") == space.largest() and space.parse_config("random:3") == space.sample(3)
    assert space.parse_config(space.smallest().to_json()) == space.smallest()


@pytest.mark.parametrize("change, message", [
    ({"ks": [7] * 20}, "'ks' has 20 entries; space 'ofa-proxyless-w1.3' needs 21"),
    ({"e": [6] * 20 + [5]}, "'e' has value 5; allowed: [3, 4, 6]"),
    ({"d": [4, 4, 4, 4, 4, 2]}, "'d' has last entry 2; allowed: 1"),
    ({"d": [4, 4, 4, 4, 1]}, "'d' has 5 entries; space 'ofa-proxyless-w1.3' needs 6"),
    ({"d": [4, 4, 1, 4, 4, 1]}, "'d' has value 1; allowed: [2, 3, 4]"),
    ({"image_size": 130}, "'image_size' = 130; allowed: 128..224 step 4"),
    ({"ks": "777"}, "'ks' must be a list of integers"),
    ({"wid": 0}, "unexpected ['wid']"),
])
def test_bad_configs_name_the_field_the_value_and_what_is_allowed(family, change, message):
    data = {**family.space.largest().to_dict(), **change}
    with pytest.raises(ValueError) as info:
        family.validate(data)
    assert message in str(info.value)


def test_space_from_dict_round_trips_and_bounds_a_hostile_manifest(family):
    data = family.space.to_dict()
    assert space_from_dict(json.loads(json.dumps(data))) == family.space
    for change, message in (({"base_widths": [32, 16, 24, 40, 80, 96, 192, 320, 10 ** 6]}, "'base_widths'"),
                            ({"base_widths": [2000] * 9}, "MAX_SPACE_CHANNELS"),
                            ({"base_widths": [1000] * 9, "depths": [16]}, "MAX_SUPERNET_PARAMS"),
                            ({"stage_strides": [2]}, "'stage_strides'"),
                            ({"kernel_sizes": [4]}, "odd kernel sizes"),
                            ({"mean": [0.5]}, "'mean'"),
                            ({"wid": 1}, "unknown fields ['wid']")):
        with pytest.raises(ValueError, match="manifest") as info:
            space_from_dict({**data, **change}, "manifest")
        assert message in str(info.value)


# ---------------------------------------------------------------- genome and encoding
def test_genome_population_and_encoding(family):
    space, genome = family.space, family.genome
    configs = _configs(space, 40)
    genes = family.to_genes(configs)
    assert genes.shape == (len(configs), 1 + 5 + 2 * 21)
    assert family.to_configs(genes) == configs
    population = family.decode(genes)
    assert isinstance(population, ProxylessPopulation) and list(population) == configs
    assert family.to_genes(population) is population.genes
    for key in ("macs", "params", "peak_activation_bytes", "flash_bytes"):
        np.testing.assert_array_equal(family.analyze(population)[key], family.analyze(configs)[key])
        np.testing.assert_array_equal(family.analytic_efficiency(genes)[key], family.analyze(configs)[key])
    rows = family.encode(configs)
    assert rows.shape == (len(configs), family.encoding_size) and family.encoding_size == 25 + 21 * 6
    # one resolution column, and a kernel and an expand column per active slot (inactive: zeros)
    active = genome.active_slots(genes)
    np.testing.assert_array_equal(rows.sum(1), 1 + 2 * active.sum(1))
    smallest = family.encode([space.smallest()])[0]
    assert smallest[:25].argmax() == 0 and smallest[25 + 2 * 6:25 + 4 * 6].sum() == 0   # slots 2, 3 of stage 1 out
    with pytest.raises(ValueError, match="gene 'resolution' of row 0 = 25; allowed: 0 to 24"):
        family.decode(np.full((1, genome.num_genes), 25))


# ---------------------------------------------------------------- analytics and networks
def test_analytics_equal_the_extracted_nets(family, supernet):
    space = family.space
    for cfg in _configs(space, 4, seed=1):
        cfg = dataclasses.replace(cfg, image_size=128)
        net = supernet.extract(cfg)
        analytic = family.analyze(cfg)
        assert analytic["macs"] == family.count_macs(net, cfg)
        assert analytic["params"] == sum(p.numel() for p in net.parameters())
        x = torch.randn(2, 3, 128, 128)
        with torch.no_grad():
            expected = supernet(x, cfg)
            assert (net(x) - expected).abs().max() <= 1e-4
            folded = family.fold_bn(supernet.extract(cfg))
            assert (folded(x) - expected).abs().max() <= 1e-3 * max(1.0, expected.abs().max().item())
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert {type(m).__name__ for m in net.modules()} <= {
            "StaticProxyless", "ConvBNAct", "MBConv", "Sequential", "Conv2d", "BatchNorm2d", "ReLU6", "Identity",
            "Dropout", "Linear"}
        assert net.config == cfg and net.space_name == PRESET


def test_deployment_bytes_equal_the_exported_files(family, supernet, tmp_path):
    from ofa_engine.runtime.export import export_onnx, export_subnets
    from ofa_engine.runtime.quantize import weight_bytes
    space = family.space
    cfg = space.smallest()
    fp32 = export_onnx(supernet.extract(cfg), cfg, tmp_path / "fp32.onnx", space=space)
    assert family.deployment_bytes(cfg, "fp32")["flash_bytes"] == weight_bytes(fp32)["weight_bytes"]
    (int8,) = export_subnets(space, [cfg], [tmp_path / "int8.onnx"], precision="int8")
    sizes = weight_bytes(int8)
    stored = (sizes["weight_bytes"] + sizes["scale_bytes"] + sizes["zero_point_bytes"]
              + sizes["activation_qparam_bytes"])
    assert family.deployment_bytes(cfg, "int8")["flash_bytes"] == stored
    assert family.analyze(cfg)["flash_bytes"] == sizes["weight_bytes"]
    peaks = [family.deployment_bytes(cfg, p)["peak_activation_bytes"] for p in ("fp32", "int8")]
    assert peaks == [4 * family.analyze(cfg)["peak_activation_bytes"], family.analyze(cfg)["peak_activation_bytes"]]
    with pytest.raises(ValueError, match="precision = 'int4'; allowed: fp32, int8"):
        family.deployment_bytes(cfg, "int4")


def test_describe_lists_every_slot(family):
    space = family.space
    for cfg in (space.largest(), space.smallest(), space.sample(5)):
        rows = family.describe(cfg)
        assert len(rows) == 1 + 1 + 21 + 1 and all(tuple(r) == DESCRIBE_FIELDS for r in rows)
        assert [r["layer"] for r in rows[:4]] == ["stem", "B0", "S1.B1", "S1.B2"] and rows[-2]["layer"] == "S6.B1"
        active = [r for r in rows if r["active"]]
        assert len(active) == 3 + sum(cfg.d)
        assert sum(r["macs"] for r in active) == family.analyze(cfg)["macs"]
        assert sum(r["params"] for r in active) == family.analyze(cfg)["params"]
        assert rows[-1]["out_shape"] == (1000,) and rows[0]["in_shape"] == (3, cfg.image_size, cfg.image_size)
    smallest = family.describe(space.smallest())
    assert [r["active"] for r in smallest[2:6]] == [True, True, False, False]
    assert smallest[2]["choices"] == {"kernel": 3, "expand": 3} and smallest[2]["width"] == 72


# ---------------------------------------------------------------- latency features
def test_latency_features_gather_and_ranges(family, supernet):
    features = family.latency_features()
    space = family.space
    configs = _configs(space, 30, seed=2)
    macs = np.asarray(family.analyze(configs)["macs"], np.float64)
    np.testing.assert_array_equal(features.total_macs(configs), macs)
    np.testing.assert_array_equal(features.total_macs(family.decode(family.to_genes(configs))), macs)
    x, names = features.features(configs)
    assert x.shape == (len(configs), len(names)) and "dw_macs_k7" in names
    # exact range: every MACs choice is monotone here, so the extremes are the smallest and largest subnets
    smallest = dataclasses.replace(space.smallest(), image_size=128)
    assert features.table_range(*features.macs_tables()) == (family.analyze(smallest)["macs"],
                                                             family.analyze(space.largest())["macs"])
    block, fixed = features.feature_tables()
    assert block.shape[:4] == (21, 25, 3, 3) and fixed.shape[0] == 25
    assert features.block_keys().shape == (21, 25, 3, 3) and len(features.fixed_keys()) == 2
    configs = features.dataset_configs(27, seed=1)
    assert configs[:2] == [space.largest(), space.smallest()]
    assert sorted({c.image_size for c in configs[2:]}) == list(space.resolutions)
    scales, layers = features.int8_scale_counts(configs[:6])
    for i, cfg in enumerate(configs[:6]):
        net = family.fold_bn(supernet.extract(cfg))
        convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert layers[i] == len(convs)
        assert scales[i] == sum(m.weight.shape[0] * (2 if m.bias is not None else 1) for m in convs)


def test_lookup_table_pieces_run(family, supernet):
    features = family.latency_features()
    entries = features.unique_blocks()
    assert len({e["key"] for e in entries}) == len(entries)
    kinds = {e["kind"] for e in entries}
    assert kinds == {"block", "stem", "head"}
    for kind in ("block", "stem", "head"):
        entry = next(e for e in entries if e["kind"] == kind)
        module, shape = features.block_module(entry, supernet)
        with torch.no_grad():
            out = module(torch.zeros(shape))
        assert out.shape[0] == 1


# ---------------------------------------------------------------- exact efficiency tables and the search
def _small_space():
    pytest.importorskip("streamlit")   # tests/test_app_official_zoo.py imports it
    from tests.test_app_official_zoo import SPACES
    return SPACES["proxyless"]


@pytest.mark.parametrize("which", ["preset", "small"])
def test_tables_equal_the_block_by_block_analytics(family, which):
    from ofa_engine.families.proxyless.analytics import analyze_values, deployment_bytes
    from ofa_engine.families.proxyless.tables import efficiency_tables
    fam = family if which == "preset" else family_of(_small_space())
    space, genome = fam.space, fam.genome
    genes = np.concatenate([genome.random(2000, np.random.default_rng(0)), genome.uniform("min"),
                            genome.uniform("max")])
    expected = analyze_values(space, genome.values(genes))
    got = efficiency_tables(space).compute(genes)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == np.int64 and np.array_equal(got[key], value), key
    population = fam.decode(genes)
    for key, value in fam.analytic_efficiency(genes).items():
        np.testing.assert_array_equal(value, expected[key])
        np.testing.assert_array_equal(fam.analyze(population)[key], expected[key])
    configs = population[:50]
    assert list(fam.analyze(list(configs))) == list(fam.analytic_efficiency(genes))
    for precision in ("fp32", "int8"):
        walked = deployment_bytes(space, configs, precision)
        tabled = fam.deployment_bytes(configs, precision)
        assert all(np.array_equal(tabled[k], walked[k]) for k in walked) and sorted(tabled) == sorted(walked)
    one = fam.analyze(population[3])       # one config: ints, walked
    assert one == {key: int(value[3]) for key, value in expected.items()}


def test_tables_refuse_bad_input_as_before(family):
    with pytest.raises(ValueError, match="'e' has value 5; allowed: \\[3, 4, 6\\]"):
        family.analyze([family.space.largest(), {**family.space.largest().to_dict(), "e": [5] * 21}])
    with pytest.raises(ValueError, match="precision = 'int4'; allowed: fp32, int8"):
        family.deployment_bytes([family.space.largest()] * 2, "int4")


def test_search_result_is_unchanged_by_the_tables(family):
    """The default evolution search (seed 0) under a MACs budget returns what the block-by-block
    analytics gave (recorded before the tables, 2026-12-05)."""
    from ofa_engine.devices.profiles import load_profile
    from ofa_engine.predictors.accuracy import MacsProxy
    from ofa_engine.search.constraints import Constraints
    from ofa_engine.search.core import search
    from ofa_engine.search.evaluator import Evaluator
    space = family.space
    result = search(Evaluator(space, load_profile("stm32f746"), MacsProxy(space)), Constraints(macs_m=300.0),
                    "evolution", seed=0)
    assert result.config.to_dict() == {
        "ks": [5, 3, 7, 3, 5, 7, 7, 7, 3, 7, 7, 7, 7, 5, 5, 5, 3, 5, 7, 5, 3],
        "e": [3, 3, 4, 4, 4, 4, 3, 4, 6, 6, 4, 4, 6, 3, 6, 4, 4, 6, 6, 4, 3],
        "d": [4, 3, 4, 4, 3, 1], "image_size": 152}
    assert result.evaluations == 50100 and result.predictor_calls == 20170
    predicted = result.predicted
    assert (predicted["macs"], predicted["params"], predicted["peak_memory_kb"]) == (299995888, 5877120, 541.5)
    assert predicted["flash_kb"] == 5971.8212890625
    assert predicted["accuracy"] == pytest.approx(0.2985306898213746, rel=1e-12)
    assert predicted["latency_ms"] == pytest.approx(2777.7397037037035, rel=1e-12)
