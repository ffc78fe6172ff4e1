"""The `vit` family: an elastic Vision Transformer for Fashion-MNIST.

- configs in HAT's JSON style, validated with errors that name the field, the value and what
  is allowed; config <-> genome round trips;
- the importance sort leaves the largest subnet's function unchanged and puts the most
  important embedding channels, heads and MLP units first;
- extraction equals the supernet's subnet on 60 seeded configs (largest and smallest among
  them), and the static module exports to ONNX (opset 17, dynamic batch) that ONNX Runtime
  runs to the same logits; the float file stores 4 bytes per parameter and the engine's int8
  quantizer's file stores what the closed-form int8 Flash says;
- the closed-form MACs and params equal what counting on the extracted module finds (MACs by
  torch's FlopCounterMode, which sees attention's matrix products), on 24 configs;
- the family is registered as "vit" and every search strategy runs on it unchanged, as on the
  toy family.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ofa_engine.families import FAMILIES, search_space
from ofa_engine.families.vit.analytics import analyze, deployment_bytes
from ofa_engine.families.vit.space import ViTConfig, ViTSpace
from ofa_engine.families.vit.static import count_macs
from ofa_engine.families.vit.supernet import ViTSupernet, extract
from ofa_engine.search import Constraints, Evaluator, budget_ranges, search
from ofa_engine.search.strategies import STRATEGY_REGISTRY
from ofa_engine.space.interface import ANALYTIC_METRICS, DEPLOYED_FLASH

SPACE = ViTSpace.preset("vit-fmnist")
# Through the registry, not by importing the module: a family module imported before the
# registry's loader runs registers first and changes the order of FAMILIES.
ViTFamily = FAMILIES.get("vit")


def _trained_like(seed: int = 0) -> ViTSupernet:
    """A supernet whose weights are not the initial ones (uneven norms make the sort matter)."""
    torch.manual_seed(seed)
    net = ViTSupernet(SPACE).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p) * torch.rand(p.shape[-1]))
    return net


@pytest.fixture(scope="module")
def supernet() -> ViTSupernet:
    return _trained_like()


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, SPACE.in_channels, SPACE.image_size, SPACE.image_size,
                       generator=torch.Generator().manual_seed(seed))


def _configs(n: int) -> list[ViTConfig]:
    return [SPACE.largest(), SPACE.smallest()] + [SPACE.sample(seed) for seed in range(n - 2)]


# ----------------------------------------------------------------- configs
def test_config_json_round_trip_and_parse():
    cfg = SPACE.sample(7)
    assert ViTConfig.from_json(cfg.to_json()) == cfg and SPACE.validate(cfg.to_dict()) == cfg
    assert json.loads(cfg.to_json())["num_heads"] == list(cfg.num_heads)
    assert SPACE.parse_config("largest") == SPACE.largest() and SPACE.parse_config("random:7") == cfg
    assert SPACE.parse_config(cfg.to_json()) == cfg
    big = SPACE.largest()
    assert (big.embed_dim, big.depth, set(big.num_heads), set(big.mlp_ratio)) == (80, 5, {4}, {2.0})
    # JSON integers and floats name the same ratio
    assert SPACE.validate({**big.to_dict(), "mlp_ratio": [2] * 5}) == big


@pytest.mark.parametrize("change,match", [
    ({"embed_dim": 72}, r"'embed_dim' = 72; allowed: \[48, 64, 80\]"),
    ({"depth": 6}, r"'depth' = 6; allowed: \[3, 4, 5\]"),
    ({"image_size": 32}, r"'image_size' = 32; allowed: \[28\]"),
    ({"num_heads": [4, 4, 4]}, r"'num_heads' has 3 entries; space 'vit-fmnist' needs 5"),
    ({"num_heads": [4, 4, 5, 4, 4]}, r"'num_heads' has value 5; allowed: \[2, 3, 4\]"),
    ({"mlp_ratio": [2.0, 2.0, 2.0, 2.0, 2.5]}, r"'mlp_ratio' has value 2.5; allowed: \[1.0, 1.5, 2.0\]"),
    ({"mlp_ratio": 2.0}, r"'mlp_ratio' must be a list"),
    ({"num_heads": "4"}, r"'num_heads' must be a list"),
    ({"num_heads": [4, 4, "4", 4, 4]}, r"'num_heads' must hold integers, got '4'"),
    ({"embed_dim": 80.5}, r"'embed_dim' must hold integers, got 80.5"),
    ({"depth": True}, r"'depth' must hold integers"),
    ({"mlp_ratio": [2.0, None, 2.0, 2.0, 2.0]}, r"'mlp_ratio' must hold numbers, got None"),
    ({"heads": [4] * 5}, r"exactly the fields .*unexpected \['heads'\]"),
])
def test_bad_configs_name_the_field_the_value_and_what_is_allowed(change, match):
    with pytest.raises(ValueError, match=match):
        SPACE.validate({**SPACE.largest().to_dict(), **change})


def test_bad_config_documents():
    with pytest.raises(ValueError, match=r"missing \['depth'\]"):
        SPACE.validate({k: v for k, v in SPACE.largest().to_dict().items() if k != "depth"})
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        ViTConfig.from_dict([80, 5])
    with pytest.raises(ValueError, match="ViT subnet config is not valid JSON"):
        ViTConfig.from_json('{"embed_dim": 80,')
    with pytest.raises(ValueError, match="neither largest, smallest, random:SEED"):
        SPACE.parse_config("no-such-file.json")
    with pytest.raises(ValueError, match="non-negative integer seed"):
        SPACE.parse_config("random:x")


def test_bad_spaces_are_refused():
    import dataclasses
    with pytest.raises(ValueError, match="'embed_dims' = \\[64, 48\\]; allowed: a non-empty ascending list"):
        dataclasses.replace(SPACE, embed_dims=(64, 48))
    with pytest.raises(ValueError, match="not a whole number of hidden units"):
        dataclasses.replace(SPACE, mlp_ratios=(1.0, 1.3))
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        dataclasses.replace(SPACE, patch_size=5)


def test_genome_round_trip_and_inactive_slots():
    family = ViTFamily(SPACE)
    g = family.genome
    genes = g.random(200, np.random.default_rng(0))
    assert np.array_equal(g.canonical(family.to_genes(family.to_configs(genes))), g.canonical(genes))
    assert family.to_configs(g.uniform("max"))[0] == SPACE.largest()
    assert family.to_configs(g.uniform("min"))[0] == SPACE.smallest()
    # depth 3 of 5: the last two slots' heads and ratios are inactive and change neither
    # the encoding nor the metrics
    shallow = family.to_genes({**SPACE.largest().to_dict(), "depth": 3})
    other = shallow.copy()
    other[0, [g.names.index("heads4"), g.names.index("mlp_ratio3")]] = 0
    assert np.array_equal(g.encode(shallow), g.encode(other))
    a, b = family.analytic_efficiency(shallow), family.analytic_efficiency(other)
    assert all(a[k] == b[k] for k in a)
    assert family.config_from_dict(family.config_to_dict(SPACE.sample(3))) == SPACE.sample(3)
    with pytest.raises(ValueError, match="'embed_dim' = 50"):
        family.to_genes({**SPACE.largest().to_dict(), "embed_dim": 50})


# ----------------------------------------------------------------- importance sort
def test_sort_keeps_the_function_and_puts_important_units_first():
    net = _trained_like(1)
    x = _images()
    before = {cfg: net(x, cfg) for cfg in (SPACE.largest(), SPACE.smallest())}
    importance = net.importance()
    net.sort_by_importance()
    assert torch.allclose(net(x), before[SPACE.largest()], atol=1e-5, rtol=0)
    # The smallest subnet changed: it now keeps the most important units.
    assert not torch.allclose(net(x, SPACE.smallest()), before[SPACE.smallest()], atol=1e-3)
    after = net.importance()
    c, h, m = min(SPACE.embed_dims), min(SPACE.num_heads), SPACE.mlp_hidden(min(SPACE.embed_dims), min(SPACE.mlp_ratios))
    for old, new, k in ([(importance["embed"], after["embed"], c)]
                        + [(o, n, h) for o, n in zip(importance["heads"], after["heads"])]
                        + [(o, n, m) for o, n in zip(importance["mlp"], after["mlp"])]):
        assert torch.all(new[:-1] >= new[1:])                            # descending
        assert torch.allclose(new[:k], torch.sort(old, descending=True).values[:k])
    # Sorting a sorted supernet changes nothing.
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net.sort_by_importance()
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


# ----------------------------------------------------------------- extraction
def test_extraction_equals_the_supernet_on_60_configs(supernet):
    x = _images()
    with torch.no_grad():
        for cfg in _configs(60):
            net = extract(supernet, cfg)
            assert not net.training and net.config == cfg
            assert torch.allclose(net(x), supernet(x, cfg), atol=1e-5, rtol=0), cfg
            # only standard layers
            assert {type(m).__module__.split(".")[0] for m in net.modules()} <= {"torch", "ofa_engine"}
            assert all(isinstance(m, (torch.nn.Linear, torch.nn.LayerNorm, torch.nn.Conv2d, torch.nn.GELU))
                       for m in net.modules() if not list(m.children()))


def test_extraction_does_not_share_weights(supernet):
    net = supernet.extract(SPACE.largest())
    with torch.no_grad():
        net.head.weight.add_(1.0)
    assert not torch.equal(net.head.weight, supernet.head.weight)


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.parametrize("which", ["largest", "smallest", "random"])
def test_onnx_export_runs_in_onnxruntime(which, supernet, tmp_path):
    import onnx
    import onnxruntime as ort

    from ofa_engine.runtime.quantize import weight_bytes
    cfg = {"largest": SPACE.largest, "smallest": SPACE.smallest, "random": lambda: SPACE.sample(5)}[which]()
    net = supernet.extract(cfg)
    path = tmp_path / "vit.onnx"
    torch.onnx.export(net, _images(1), str(path), opset_version=17, input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = {node.op_type for node in model.graph.node}
    assert {"MatMul", "Softmax", "LayerNormalization", "Conv"} <= ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _images(5, seed=1)   # another batch size than the export's
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(session.run(None, {"images": x.numpy()})[0], expected, atol=1e-4, rtol=0)
    # the float file stores 4 bytes per parameter, plus the exporter's few int64 shape constants
    floats = sum(int(np.prod(i.dims)) * 4 for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT)
    assert floats == deployment_bytes(SPACE, cfg, "fp32")["flash_bytes"] <= weight_bytes(model)["weight_bytes"]


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.parametrize("which", ["largest", "random"])
def test_int8_flash_equals_the_quantized_file(which, supernet, tmp_path):
    """The engine's quantizer (ONNX Runtime's QDQ path for these graphs) on the float file: the
    quantized parameters are `flash_bytes`; the whole stored size is the int8 Flash, less the
    zero points that are 0, which the file drops (at most 6 per block + 5)."""
    from ofa_engine.runtime.quantize import quantize_onnx, weight_bytes
    cfg = SPACE.largest() if which == "largest" else SPACE.sample(3)
    float_path, int8_path = tmp_path / "vit.onnx", tmp_path / "vit-int8.onnx"
    torch.onnx.export(supernet.extract(cfg), _images(1), str(float_path), opset_version=17, input_names=["images"],
                      output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False)
    x = _images(16).numpy()
    quantize_onnx(float_path, int8_path, x, x, floor=0.0)
    sizes = weight_bytes(int8_path)
    stored = sizes["weight_bytes"] + sizes["scale_bytes"] + sizes["zero_point_bytes"] + sizes["activation_qparam_bytes"]
    assert analyze(SPACE, cfg)["flash_bytes"] == sizes["weight_bytes"]
    assert 0 <= deployment_bytes(SPACE, cfg, "int8")["flash_bytes"] - stored <= 6 * cfg.depth + 5


# ----------------------------------------------------------------- analytics
def test_analytic_macs_and_params_equal_counting_on_24_configs(supernet):
    configs = _configs(24)
    analytic = analyze(SPACE, configs)
    x = _images(2)
    for i, cfg in enumerate(configs):
        net = supernet.extract(cfg)
        assert analytic["macs"][i] == count_macs(net, x), cfg
        assert analytic["params"][i] == sum(p.numel() for p in net.parameters()), cfg
    one = analyze(SPACE, configs[0])
    assert one == {k: int(v[0]) for k, v in analytic.items()}


def test_attention_quadratic_term_and_peak_by_hand():
    """The smallest subnet: 49 tokens, width 48, 3 blocks of 2 heads x 16 and 48 MLP units."""
    t, c, a, h, m = 49, 48, 32, 2, 48
    block = 3 * t * c * a + 2 * h * t * t * 16 + t * a * c + 2 * t * c * m
    assert analyze(SPACE, SPACE.smallest())["macs"] == t * c * 16 + 3 * block + c * 10
    # peak at q k^T: the block input, q, k, v and the 2 x 49 x 49 scores
    peak = t * c + 3 * t * a + h * t * t
    assert analyze(SPACE, SPACE.smallest())["peak_activation_bytes"] == peak
    assert deployment_bytes(SPACE, SPACE.smallest(), "fp32")["peak_activation_bytes"] == 4 * peak
    # one more head adds its share of the quadratic term
    more = SPACE.validate({**SPACE.smallest().to_dict(), "num_heads": [3, 2, 2, 2, 2]})
    assert analyze(SPACE, more)["macs"] - analyze(SPACE, SPACE.smallest())["macs"] == (
        3 * t * c * 16 + 2 * t * t * 16 + t * 16 * c)


def test_deployment_bytes():
    configs = _configs(10)
    a = analyze(SPACE, configs)
    fp32, int8 = (deployment_bytes(SPACE, configs, p) for p in ("fp32", "int8"))
    np.testing.assert_array_equal(fp32["flash_bytes"], 4 * a["params"])
    assert np.all(int8["flash_bytes"] > a["flash_bytes"]) and np.all(a["flash_bytes"] < fp32["flash_bytes"])
    np.testing.assert_array_equal(int8["peak_activation_bytes"], a["peak_activation_bytes"])
    with pytest.raises(ValueError, match="precision = 'fp16'; allowed: fp32, int8"):
        deployment_bytes(SPACE, configs, "fp16")


# ----------------------------------------------------------------- family and search
def test_family_is_registered_with_every_metric():
    assert FAMILIES.get("vit") is ViTFamily and "vit-fmnist" in ViTFamily.preset_names()
    family = search_space("vit-fmnist")
    assert isinstance(family, ViTFamily) and family.name == "vit-fmnist" and search_space(SPACE).space is SPACE
    assert not ViTFamily.accepts("tiny-fmnist") and not ViTFamily.accepts(3)
    genes = family.genome.random(50, np.random.default_rng(0))
    metrics = family.analytic_efficiency(genes)
    assert set(metrics) == set(ANALYTIC_METRICS) | set(DEPLOYED_FLASH.values())
    assert all(v.dtype == np.int64 and v.shape == (50,) for v in metrics.values())
    by_config = analyze(SPACE, family.to_configs(genes))
    assert all(np.array_equal(by_config[k], metrics[k]) for k in by_config)


def test_relaxation_is_exact_for_hard_choices():
    family = ViTFamily(SPACE)
    relax, g = family.relaxation(), family.genome
    genes = g.random(32, np.random.default_rng(1))
    samples = []
    for block in relax.blocks:
        cols = genes[:, np.asarray(block).reshape(-1)]
        card = int(g.cardinality[np.asarray(block).flat[0]])
        samples.append(torch.nn.functional.one_hot(torch.tensor(cols), card).float().reshape(
            (len(genes),) + np.asarray(block).shape + (card,)))
    enc, metrics = relax(samples)
    np.testing.assert_array_equal(enc.numpy(), g.encode(genes))
    exact = family.analytic_efficiency(genes)
    assert set(metrics) == set(exact)
    for name, value in metrics.items():
        np.testing.assert_allclose(value.numpy(), exact[name], rtol=1e-6)


class LogisticAccuracy:
    """sigmoid(w . encoding + b) with seeded weights: an accuracy predictor over the encoding."""

    def __init__(self, genome, seed: int = 0):
        self.genome = genome
        self.w = (np.random.default_rng(seed).random(genome.encoding_size) * 0.3).astype(np.float32)
        self.b = -1.0

    def predict_encoded(self, x):
        return 1.0 / (1.0 + np.exp(-(np.asarray(x, np.float64) @ self.w + self.b)))

    def predict(self, configs):
        return self.predict_encoded(self.genome.encode(self.genome.from_configs(configs)))

    def torch_module(self):
        lin = torch.nn.Linear(len(self.w), 1)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(self.w)[None])
            lin.bias.fill_(self.b)
        return torch.nn.Sequential(lin, torch.nn.Sigmoid(), torch.nn.Flatten(0))


class MacsLatency:
    name = "vit-stand-in"

    def predict_latency_ms(self, configs):
        return 0.1 + 1e-7 * analyze(SPACE, list(configs))["macs"]


QUICK = {"grid": {}, "random": {"samples": 60}, "evolution": {"generations": 10, "population": 24},
         "rl": {"iterations": 20, "batch": 16}, "gradient": {"steps": 15, "samples": 8},
         "nsga2": {"generations": 8, "population": 24}}


@pytest.fixture(scope="module")
def vit_eval():
    return Evaluator("vit-fmnist", MacsLatency(), LogisticAccuracy(SPACE.genome))


def test_quick_settings_cover_the_registry():
    assert set(QUICK) == set(STRATEGY_REGISTRY.names())


@pytest.mark.parametrize("strategy", STRATEGY_REGISTRY.names())
def test_every_strategy_runs_on_the_vit_family(vit_eval, strategy):
    ranges = budget_ranges(vit_eval)
    c = Constraints(macs_m=ranges["macs_m"]["min"] + 0.4 * (ranges["macs_m"]["max"] - ranges["macs_m"]["min"]),
                    latency_ms=0.1 + 1e-7 * 8e6)
    a = search(vit_eval, c, strategy, seed=1, **QUICK[strategy])
    b = search(vit_eval, c, strategy, seed=1, **QUICK[strategy])
    assert a.config == b.config and a.evaluations == b.evaluations > 0
    assert isinstance(a.config, ViTConfig) and SPACE.validate(a.config) == a.config
    assert a.predicted["macs"] / 1e6 <= c.macs_m and a.predicted["latency_ms"] <= c.latency_ms
    again = vit_eval.metrics(a.config)
    for key, value in a.predicted.items():
        assert value == pytest.approx(float(again[key][0])), key
