"""Latency features of the ViT family (`families/vit/latency_features.py`) and the latency
models reaching a ViT through them."""

import numpy as np
import pytest

from ofa_engine.families import family_of
from ofa_engine.families.vit.latency_features import BLOCK_FEATURES, FIXED_FEATURES, ViTLatencyFeatures
from ofa_engine.predictors.latency import (BlockLinearModel, LookupTableModel, MacsLinearModel, features_of,
                                           total_macs)
from ofa_engine.predictors.latency.fit import fit_latency_model, profile_fit
from ofa_engine.space.latency import LatencyFeatures

SPACE = "vit-fmnist"


@pytest.fixture(scope="module")
def fam():
    return family_of(SPACE)


@pytest.fixture(scope="module")
def features(fam):
    return fam.latency_features()


@pytest.fixture(scope="module")
def configs(fam):
    rng = np.random.default_rng(0)
    return [fam.space.sample(rng) for _ in range(200)]


def _reference_rows(space, cfg):
    """Feature row of one config from its fields, block by block (no tables)."""
    t, d = space.num_patches, space.head_dim
    c = cfg.embed_dim
    row = dict.fromkeys(BLOCK_FEATURES + FIXED_FEATURES, 0)
    for h, ratio in zip(cfg.num_heads[:cfg.depth], cfg.mlp_ratio[:cfg.depth]):
        m = round(ratio * c)
        row["blocks"] += 1
        row["layernorm_elements"] += 2 * t * c
        row["attention_linear_macs"] += 3 * t * c * h * d + t * h * d * c
        row["attention_matmul_macs"] += 2 * h * t * t * d
        row["mlp_macs"] += 2 * t * c * m
        row["gelu_elements"] += t * m
    row["embed_head_macs"] = t * c * space.in_channels * space.patch_size ** 2 + c * space.num_classes
    return [row[name] for name in BLOCK_FEATURES + FIXED_FEATURES]


def test_the_family_serves_its_features(fam, features):
    assert isinstance(features, ViTLatencyFeatures) and isinstance(features, LatencyFeatures)
    assert features.space == fam.space
    assert features_of(SPACE).feature_names == BLOCK_FEATURES + FIXED_FEATURES
    assert ViTLatencyFeatures(SPACE).space == fam.space


def test_features_are_the_gather_and_the_closed_forms(fam, features, configs):
    """200 seeded configs: `features` equals a per-config sum over the kept blocks of the
    tables and the block-by-block closed forms; MACs add up to `analyze`."""
    x, names = features.features(configs)
    block, fixed = features.feature_tables()
    assert names == features.feature_names and x.shape == (200, len(names))
    assert block.shape == (3, 3, 3, len(BLOCK_FEATURES)) and fixed.shape == (3, len(FIXED_FEATURES))
    space = fam.space
    for i, cfg in enumerate(configs):
        e = space.embed_dims.index(cfg.embed_dim)
        kept = [block[e, space.num_heads.index(h), space.mlp_ratios.index(r)]
                for h, r in zip(cfg.num_heads[:cfg.depth], cfg.mlp_ratio[:cfg.depth])]
        np.testing.assert_array_equal(x[i], np.concatenate([np.sum(kept, 0), fixed[e]]))
        np.testing.assert_array_equal(x[i], _reference_rows(space, cfg))
    macs = np.asarray(fam.analyze(configs)["macs"], np.float64)
    np.testing.assert_array_equal(features.total_macs(configs), macs)
    np.testing.assert_array_equal(total_macs(SPACE, configs), macs)
    macs_columns = [names.index(n) for n in ("attention_linear_macs", "attention_matmul_macs", "mlp_macs",
                                             "embed_head_macs")]
    np.testing.assert_array_equal(x[:, macs_columns].sum(1), macs)


def test_gather_takes_any_trailing_axes_and_config_forms(features, configs):
    block, fixed = features.feature_tables()
    x, _ = features.features(configs)
    one = features.gather(configs[7], block[..., 2], fixed[..., 0])       # scalar tables, one config
    assert one.shape == (1,) and one[0] == x[7, 2] + x[7, len(BLOCK_FEATURES)]
    stacked = features.gather(configs[:5], np.stack([block, 2 * block], -1), np.stack([fixed, 2 * fixed], -1))
    assert stacked.shape == (5, block.shape[-1], 2)
    np.testing.assert_array_equal(stacked[..., 1], 2 * stacked[..., 0])
    dicts = [c.to_dict() for c in configs[:5]]
    np.testing.assert_array_equal(features.features(dicts)[0], features.features(configs[:5])[0])


def test_the_features_are_identifiable(features, configs):
    """No column is a linear combination of the others (with the intercept): an unpenalised
    fit is not singular and each coefficient means one thing."""
    x, _ = features.features(configs)
    design = np.concatenate([x / x.max(0), np.ones((len(x), 1))], 1)
    assert np.linalg.matrix_rank(design) == design.shape[1]
    groups = [f for group in features.feature_groups.values() for f in group]
    assert sorted(groups) == sorted(features.feature_names)       # every feature in exactly one group


def test_count_take_and_bad_configs(fam, features, configs):
    assert features.count(configs) == 200 and features.count(configs[0]) == 1
    assert features.count(configs[0].to_dict()) == 1
    assert features.take(configs, np.array([3, 1])) == [configs[3], configs[1]]
    np.testing.assert_array_equal(features.features(features.take(configs, np.array([3, 1])))[0],
                                  features.features(configs)[0][[3, 1]])
    bad = {**configs[0].to_dict(), "embed_dim": 50}
    with pytest.raises(ValueError, match="embed_dim.*allowed"):
        features.count([bad])
    with pytest.raises(ValueError, match="num_heads"):
        features.features([{**configs[0].to_dict(), "num_heads": [2, 2]}])


def test_dataset_configs_start_with_the_extremes_cover_widths_and_depths_and_are_seeded(fam, features):
    space = fam.space
    configs = features.dataset_configs(20, seed=3)
    assert configs[:2] == [space.largest(), space.smallest()] and len(configs) == 20
    assert features.dataset_configs(20, seed=3) == configs
    assert features.dataset_configs(20, seed=4) != configs
    assert features.dataset_configs(2) == [space.largest(), space.smallest()]
    pairs = [(c.embed_dim, c.depth) for c in configs[2:]]
    counts = [pairs.count((e, d)) for e in space.embed_dims for d in space.depths]
    assert min(counts) == 2 and max(counts) == 2         # 18 = 2 cycles over the 9 pairs
    for c in configs:
        space.validate(c)
    with pytest.raises(ValueError, match="n = 1; allowed: an integer >= 2"):
        features.dataset_configs(1)


def test_table_range_is_exact(fam, features, configs):
    """Extremes of signed random tables: every slot has the same choices, so the extremes are
    attained by configs whose kept blocks all take one (heads, ratio); none of 200 random
    configs lies outside."""
    space = fam.space
    lo, hi = features.table_range(*features.macs_tables())
    assert (lo, hi) == (fam.analyze(space.smallest())["macs"], fam.analyze(space.largest())["macs"])
    rng = np.random.default_rng(1)
    block, fixed = rng.normal(size=(3, 3, 3)), rng.normal(size=3)
    uniform = [{"embed_dim": e, "depth": d, "num_heads": [h] * 5, "mlp_ratio": [r] * 5, "image_size": 28}
               for e in space.embed_dims for d in space.depths for h in space.num_heads for r in space.mlp_ratios]
    values = features.gather(uniform, block, fixed)
    assert features.table_range(block, fixed) == pytest.approx((values.min(), values.max()), abs=1e-12)
    sampled = features.gather(configs, block, fixed)
    assert values.min() - 1e-12 <= sampled.min() and sampled.max() <= values.max() + 1e-12


def test_lookup_keys_cover_the_unique_blocks(features):
    entries = features.unique_blocks()
    keys = {e["key"] for e in entries}
    table_keys = set(features.block_keys().ravel())
    assert features.block_keys().shape == (3, 3, 3) and len(table_keys) == 27
    for table in features.fixed_keys():
        assert table.shape == (3,)
        table_keys |= set(table.ravel())
    assert keys == table_keys and len(entries) == len(keys) == 33
    assert {e["kind"] for e in entries} == {"block", "patch_embed", "head"}


def test_lookup_table_model_sums_its_keys(fam, features, configs):
    """A "lut" model of made-up block times predicts each config's sum of its pieces' times."""
    times = {e["key"]: 0.01 * (i + 1) for i, e in enumerate(features.unique_blocks())}
    lut = LookupTableModel(SPACE, times)
    patch, head = features.fixed_keys()
    keys = features.block_keys()
    space = fam.space
    for cfg, predicted in zip(configs[:20], lut.predict_ms(SPACE, configs[:20])):
        e = space.embed_dims.index(cfg.embed_dim)
        expected = times[patch[e]] + times[head[e]] + sum(
            times[keys[e, space.num_heads.index(h), space.mlp_ratios.index(r)]]
            for h, r in zip(cfg.num_heads[:cfg.depth], cfg.mlp_ratio[:cfg.depth]))
        assert predicted == pytest.approx(expected, rel=1e-12)
    lo, hi = lut.prediction_range(SPACE)
    assert lo <= lut.predict_ms(SPACE, configs).min() and lut.predict_ms(SPACE, configs).max() <= hi


def test_unique_blocks_build_isolated_modules_of_the_right_sizes(fam, features):
    """Every lookup-table entry becomes a static module that runs on its input shape; its
    MACs (torch's FLOP counter) equal the MACs tables' entry."""
    torch = pytest.importorskip("torch")
    from ofa_engine.families.vit.static import EncoderBlock, count_macs

    torch.manual_seed(0)
    supernet = fam.build_supernet()
    space = fam.space
    block_macs, fixed_macs = features.macs_tables()
    pieces = {"patch_embed": np.zeros(3), "head": np.zeros(3)}
    for entry in features.unique_blocks():
        module, shape = features.block_module(entry, supernet)
        assert shape[0] == 1 and not module.training
        with torch.no_grad():
            out = module(torch.zeros(shape))
        e = space.embed_dims.index(entry["embed_dim"])
        macs = count_macs(module, torch.zeros(shape))
        if entry["kind"] == "block":
            assert isinstance(module, EncoderBlock)
            assert module.attn.heads == entry["heads"]
            assert module.mlp.fc1.out_features == space.mlp_hidden(entry["embed_dim"], entry["mlp_ratio"])
            assert out.shape == shape == (1, space.num_patches, entry["embed_dim"])
            assert macs == block_macs[e, space.num_heads.index(entry["heads"]),
                                      space.mlp_ratios.index(entry["mlp_ratio"])]
        else:
            expected = (1, space.num_patches, entry["embed_dim"]) if entry["kind"] == "patch_embed" \
                else (1, space.num_classes)
            assert out.shape == expected
            pieces[entry["kind"]][e] = macs
    np.testing.assert_array_equal(pieces["patch_embed"] + pieces["head"], fixed_macs)
    with pytest.raises(ValueError, match="kind = 'stem'; allowed"):
        features.block_module({"kind": "stem", "embed_dim": 48}, supernet)


def test_int8_scale_counts_match_the_extracted_network(fam, features):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    configs = [fam.space.largest(), fam.space.smallest(), fam.space.sample(rng)]
    scales, layers = features.int8_scale_counts(configs)
    supernet = fam.build_supernet()
    for i, cfg in enumerate(configs):
        net = supernet.extract(cfg)
        linear = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert layers[i] == len(linear)
        assert scales[i] == sum(m.weight.shape[0] * (2 if m.bias is not None else 1) for m in linear)


def test_block_linear_model_recovers_a_known_linear_latency(features):
    """Synthetic latencies, a known linear function of the features (seeded), fitted through the
    engine's own fit code for space "vit-fmnist": the coefficients come back."""
    configs = features.dataset_configs(120, seed=0)
    x, names = features.features(configs)
    rng = np.random.default_rng(7)
    coef = rng.uniform(0.5, 2.0, len(names)) * 0.1 / x.mean(0)      # each feature ~0.1 ms
    y = x @ coef + 0.05
    model = fit_latency_model(SPACE, configs, y, ridge=0.0)
    assert isinstance(model, BlockLinearModel) and model.features == names
    np.testing.assert_allclose(model.coef, coef, rtol=1e-6)
    assert model.intercept_ms == pytest.approx(0.05, rel=1e-6)
    others = features.dataset_configs(30, seed=9)
    np.testing.assert_allclose(model.predict_ms(SPACE, others), features.features(others)[0] @ coef + 0.05,
                               rtol=1e-6)
    fit = profile_fit(SPACE, configs, y)
    assert fit.quality["within_10pct"] == 1.0 and fit.quality["mape"] < 1e-6
    assert fit.model.prediction_range(SPACE)[0] > 0
    assert BlockLinearModel.from_schema(BlockLinearModel.Schema(**{
        k: v for k, v in fit.model.to_dict().items() if k != "type"})) == fit.model


def test_macs_linear_model_predicts_for_vit_configs(fam, configs):
    macs = np.asarray(fam.analyze(configs)["macs"], np.float64)
    model = MacsLinearModel(0.05, 0.2)
    np.testing.assert_allclose(model.predict_ms(SPACE, configs), macs / 1e6 * 0.05 + 0.2, rtol=1e-12)
    assert model.gather_form(SPACE) is not None
    lo, hi = model.prediction_range(SPACE)
    smallest, largest = (fam.analyze(c)["macs"] for c in (fam.space.smallest(), fam.space.largest()))
    assert (lo, hi) == pytest.approx((smallest / 1e6 * 0.05 + 0.2, largest / 1e6 * 0.05 + 0.2))
    fitted = fit_latency_model(SPACE, configs, macs / 1e6 * 0.05 + 0.2, kind="macs-linear")
    assert fitted.ms_per_mmac == pytest.approx(0.05) and fitted.intercept_ms == pytest.approx(0.2)
