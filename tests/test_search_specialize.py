"""specialize() end to end on the bundled supernet, concurrently, and the search / specialize CLI.

Runs on the bundled accuracy predictor and the cpu-ort-1t profile (both in assets/)."""

from __future__ import annotations

import json
import threading

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ofa_engine.cli import main
from ofa_engine.runtime.export import read_metadata

PROFILE = "cpu-ort-1t"


@pytest.fixture(scope="module")
def ranges():
    from ofa_engine.devices.profiles import load_profile
    from ofa_engine.search import budget_ranges
    from ofa_engine.pipeline.specialize import load_resources
    return budget_ranges(load_resources("tiny-fmnist").evaluator(load_profile(PROFILE)))


def ort_logits(onnx_bytes: bytes, x: torch.Tensor) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def check_own_model(spec) -> None:
    cfg = spec.report["config"]
    assert spec.model.config.to_dict() == cfg
    x = torch.randn(3, 1, cfg["image_size"], cfg["image_size"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = spec.model(x).numpy()
    np.testing.assert_allclose(ort_logits(spec.onnx_bytes, x), expected, atol=1e-4)


def test_specialize_end_to_end(tmp_path, ranges):
    from ofa_engine.search import Constraints
    from ofa_engine import specialize
    stages = []
    budget = Constraints(latency_ms=(ranges["latency_ms"]["min"] + ranges["latency_ms"]["max"]) / 2)
    spec = specialize(PROFILE, budget, "evolution", seed=0, out=tmp_path / "model.onnx",
                      progress=lambda done, total, stage: stages.append((stage, done / total)),
                      strategy_options={"generations": 50})
    r = spec.report
    for section in ("predicted", "measured"):
        assert {"accuracy", "latency_ms", "peak_memory_kb", "flash_kb", "macs"} <= set(r[section])
    assert r["search"]["strategy"] == "evolution" and r["search"]["evaluations"] == 100 + 50 * 100
    assert r["predicted"]["latency_ms"] <= budget.latency_ms
    # Counted on the extracted network = predicted from the config alone.
    for key in ("macs", "params", "flash_kb", "peak_memory_kb"):
        assert r["measured"][key] == pytest.approx(r["predicted"][key]), key
    assert 0.5 < r["measured"]["accuracy"] <= 1.0 and r["measured"]["latency_ms"] > 0
    assert read_metadata(spec.onnx_path)["config"] == r["config"]
    assert json.loads((tmp_path / "model.json").read_text()) == r
    assert spec.onnx_bytes == (tmp_path / "model.onnx").read_bytes()
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and stages[-1] == ("done", 1.0)
    check_own_model(spec)


def test_an_fp32_specialization_opens_its_file_in_one_session(ranges, monkeypatch):
    """The export check, the accuracy pass and the one-thread latency measurement of an fp32
    specialization run the same file in one ONNX Runtime session (`shared_sessions`)."""
    from ofa_engine import specialize
    from ofa_engine.runtime import ort as runtime_ort
    opened = []
    real = runtime_ort._new_session
    monkeypatch.setattr(runtime_ort, "_new_session", lambda model, *a: opened.append(model) or real(model, *a))
    spec = specialize(PROFILE, {"macs_m": ranges["macs_m"]["max"] / 3}, "random", seed=1,
                      strategy_options={"samples": 50})
    assert spec.report["measured"]["latency_ms"] > 0 and 0.5 < spec.report["measured"]["accuracy"] <= 1.0
    assert len(opened) == 1


def test_specialize_in_memory_and_infeasible(ranges):
    from ofa_engine.search import Constraints, InfeasibleBudgetError
    from ofa_engine import specialize
    spec = specialize(PROFILE, {"macs_m": ranges["macs_m"]["max"] / 3}, "random", seed=1,
                      strategy_options={"samples": 50})
    assert spec.onnx_path is None and len(spec.onnx_bytes) == spec.report["onnx"]["bytes"] > 0
    smallest = ranges["latency_ms"]["min"]
    with pytest.raises(InfeasibleBudgetError, match="latency_ms") as info:
        specialize(PROFILE, Constraints(latency_ms=smallest / 10))
    assert info.value.smallest["latency_ms"] == pytest.approx(smallest, rel=0.5)


@pytest.mark.slow   # several whole specializations at once
def test_concurrent_specialize_each_gets_its_own_result(ranges):
    from ofa_engine.search import Constraints
    from ofa_engine import specialize
    lo, hi = ranges["latency_ms"]["min"], ranges["latency_ms"]["max"]
    budgets = [Constraints(latency_ms=lo + (hi - lo) * f) for f in np.linspace(0.05, 0.9, 8)]
    results, errors = [None] * 8, []

    def work(i: int) -> None:
        try:
            results[i] = specialize(PROFILE, budgets[i], "random", seed=i, strategy_options={"samples": 200})
        except Exception as exc:   # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({json.dumps(s.report["config"]) for s in results}) > 1
    for spec, budget in zip(results, budgets):
        assert spec.report["predicted"]["latency_ms"] <= budget.latency_ms
        assert spec.report["effective_constraints"]["latency_ms"] == budget.latency_ms
        # The ONNX file carries the config of its own report and computes its own model.
        import onnx
        meta = {p.key: p.value for p in onnx.load_from_string(spec.onnx_bytes).metadata_props}
        assert json.loads(meta["config"]) == spec.report["config"]
        check_own_model(spec)


# ------------------------------------------------------------------ CLI
def test_cli_search_prints_json(capsys, ranges):
    code = main(["search", "--profile", PROFILE, "--macs-m", f"{ranges['macs_m']['max'] / 2:.3f}",
                 "--strategy", "random", "--option", "samples=30", "--seed", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["strategy"] == "random" and data["evaluations"] == 30
    assert data["predicted"]["macs"] / 1e6 <= ranges["macs_m"]["max"] / 2


def test_cli_specialize_writes_onnx_and_report(tmp_path, capsys, ranges):
    out = tmp_path / "model.onnx"
    code = main(["specialize", "--profile", PROFILE, "--latency-ms", f"{ranges['latency_ms']['max']:.4f}",
                 "--strategy", "evolution", "--option", "generations=20", "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads((tmp_path / "model.json").read_text())
    assert json.loads(stdout)["config"] == report["config"] == read_metadata(out)["config"]


@pytest.mark.parametrize("argv,message", [
    (["--profile", "no-such-device", "--latency-ms", "1"], "--profile"),
    (["--profile", PROFILE, "--macs-m", "0.0001"], "smallest achievable"),
    (["--profile", PROFILE, "--strategy", "annealing"], "unknown strategy"),
    (["--profile", PROFILE, "--latency-ms", "-3"], "latency_ms"),
])
def test_cli_errors(capsys, argv, message):
    code = main(["search", *argv])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: ") and message in err
