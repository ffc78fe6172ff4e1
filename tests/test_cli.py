"""`python -m ofa_engine`: analyze, export, and user errors as `error: ...` with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import save_file

from ofa_engine import SearchSpace, analyze, build_supernet
from ofa_engine.cli import main
from ofa_engine.cli.args import COMMANDS, register
from ofa_engine.runtime.export import read_metadata

REPO = Path(__file__).resolve().parents[1]



def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory):
    """A tiny-fmnist supernet whose weights differ from the CLI's seed-0 init, saved to disk."""
    torch.manual_seed(1234)
    supernet = build_supernet("tiny-fmnist")
    with torch.no_grad():
        supernet.classifier.bias.copy_(torch.linspace(-1.0, 1.0, supernet.space.num_classes))
    path = tmp_path_factory.mktemp("weights") / "supernet.pt"
    torch.save(supernet.state_dict(), path)
    return supernet, path


@pytest.mark.parametrize("config", ["largest", "smallest", "random:3"])
def test_analyze_matches_library(capsys, config):
    space = SearchSpace.preset("tiny-fmnist")
    code, out, err = run(capsys, "analyze", "--space", "tiny-fmnist", "--config", config)
    assert code == 0 and err == ""
    result = json.loads(out)
    cfg = space.parse_config(config)
    assert result["config"] == cfg.to_dict()
    assert result["space"] == "tiny-fmnist"
    assert result["metrics"] == analyze(space, cfg)


def test_analyze_accepts_json_text_and_file(capsys, tmp_path):
    space = SearchSpace.preset("ofa-mbv3-w1.0")
    cfg = space.sample(11)
    file = tmp_path / "cfg.json"
    file.write_text(cfg.to_json())
    for text in (cfg.to_json(), str(file)):
        code, out, _ = run(capsys, "analyze", "--space", space.name, "--config", text)
        assert code == 0
        assert json.loads(out)["metrics"] == analyze(space, cfg)


def test_export_writes_valid_file_with_loaded_weights(capsys, tmp_path, trained_like):
    supernet, weights = trained_like
    out_path = tmp_path / "subnet.onnx"
    code, out, err = run(capsys, "export", "--space", "tiny-fmnist", "--weights", str(weights),
                         "--config", "random:5", "--out", str(out_path))
    assert code == 0, err
    summary = json.loads(out)
    cfg = supernet.space.parse_config("random:5")
    assert summary["path"] == str(out_path)
    assert summary["config"] == cfg.to_dict()
    assert summary["metrics"] == analyze(supernet.space, cfg)
    assert summary["max_abs_diff"] <= 1e-4
    onnx.checker.check_model(onnx.load(str(out_path)), full_check=True)
    assert read_metadata(out_path)["config"] == cfg.to_dict()

    # The file holds the saved weights, not a fresh init.
    x = torch.randn(3, 1, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = supernet.extract(cfg)(x).numpy()
    session = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["logits"], {"input": x.numpy()})[0], expected, atol=1e-4)


def test_export_reads_safetensors_and_wrapped_state_dict(capsys, tmp_path, trained_like):
    supernet, _ = trained_like
    safetensors_file = tmp_path / "supernet.safetensors"
    save_file({k: v.contiguous() for k, v in supernet.state_dict().items()}, str(safetensors_file))
    wrapped = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": supernet.state_dict(), "epoch": 3}, wrapped)
    for weights in (safetensors_file, wrapped):
        out_path = tmp_path / f"{weights.stem}.onnx"
        code, _, err = run(capsys, "export", "--space", "tiny-fmnist", "--weights", str(weights),
                           "--config", "smallest", "--out", str(out_path))
        assert code == 0, err
        assert out_path.exists()


def test_export_without_weights_warns(capsys, tmp_path):
    code, out, err = run(capsys, "export", "--space", "tiny-fmnist", "--config", "smallest",
                         "--out", str(tmp_path / "m.onnx"))
    assert code == 0
    assert "warning: no --weights" in err
    assert json.loads(out)["max_abs_diff"] <= 1e-4


def _bad_file(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"{kind}.pt"
    if kind == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif kind == "wrong-keys":
        state = build_supernet("tiny-fmnist").state_dict()
        state["classifier.weight"] = torch.zeros(3, 3)
        state["extra.weight"] = state.pop("classifier.bias")
        torch.save(state, path)
    elif kind == "not-a-dict":
        torch.save([torch.zeros(1)], path)
    return str(path)


@pytest.mark.parametrize("argv, needle", [
    (["analyze", "--space", "nope", "--config", "largest"], "--space: unknown search space 'nope'"),
    (["analyze", "--space", "tiny-fmnist", "--config", "medium"], "--config"),
    (["analyze", "--space", "tiny-fmnist", "--config", "random:x"], "random:SEED"),
    (["analyze", "--space", "tiny-fmnist", "--config", '{"wid": 0}'],
     "missing ['ks', 'e', 'd', 'image_size']"),
    (["analyze", "--space", "tiny-fmnist", "--config",
      json.dumps({"wid": 0, "ks": [4] * 15, "e": [3] * 15, "d": [2] * 5, "image_size": 28})],
     "config field 'ks' has value 4; allowed: [3, 5, 7]"),
    (["analyze", "--space", "tiny-fmnist", "--config",
      json.dumps({"wid": 0, "ks": [3] * 15, "e": [3] * 15, "d": [2] * 5, "image_size": 224})],
     "config field 'image_size' = 224"),
    (["analyze", "--space", "tiny-fmnist", "--config", "{broken"], "not valid JSON"),
    (["analyze", "--space", "tiny-fmnist"], "required: --config"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "required: COMMAND"),
    (["export", "--space", "tiny-fmnist", "--config", "largest", "--out", "x.onnx", "--opset", "11"],
     "--opset 11"),
])
def test_user_errors_exit_2_with_message(capsys, tmp_path, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") or "\nerror: " in err
    assert needle in err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("kind, needle", [
    ("missing", "cannot be read"), ("garbage", "is not a torch state dict"),
    ("wrong-keys", "is not a supernet of space 'tiny-fmnist': 1 missing keys (classifier.bias); "
                   "1 unexpected keys (extra.weight); "
                   "1 shape mismatches (classifier.weight (3, 3) != (10, 512))"),
    ("not-a-dict", "does not hold a state dict"),
])
def test_bad_weights_file_exit_2(capsys, tmp_path, kind, needle):
    weights = _bad_file(tmp_path, kind)
    out_path = tmp_path / "m.onnx"
    code, _, err = run(capsys, "export", "--space", "tiny-fmnist", "--weights", weights,
                       "--config", "largest", "--out", str(out_path))
    assert code == 2
    assert err.startswith(f"error: --weights: '{weights}'")
    assert needle in err and "Traceback" not in err
    assert not out_path.exists()


def test_unwritable_output_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "export", "--space", "tiny-fmnist", "--config", "largest",
                       "--out", str(tmp_path / "no-such-dir" / "m.onnx"))
    assert code == 2 and "does not exist" in err


def test_search_takes_an_analytical_profile_and_refuses_one_of_another_space(capsys):
    """The README's `search --profile stm32f746 ...` (an analytical profile, space "*"): found
    within the device's memory; a profile measured for another space: exit 2 naming both."""
    code, out, err = run(capsys, "search", "--profile", "stm32f746", "--peak-memory-kb", "64", "--flash-kb", "512",
                         "--strategy", "nsga2", "--seed", "1")
    assert code == 0, err
    found = json.loads(out)
    assert found["profile"] == "stm32f746" and found["predicted"]["peak_memory_kb"] <= 64
    assert found["predicted"]["flash_kb"] <= 512
    code, out, err = run(capsys, "search", "--profile", "cpu-ort-1t-w1.0", "--latency-ms", "5")
    assert code == 2 and "'ofa-mbv3-w1.0', not 'tiny-fmnist'" in err


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "analyze" in capsys.readouterr().out


def test_register_adds_a_subcommand(capsys):
    def arguments(parser):
        parser.add_argument("--name", required=True)

    @register("hello", "say hello", arguments)
    def hello(args):
        print(f"hello {args.name}")
        return 0

    try:
        assert run(capsys, "hello", "--name", "ofa")[:2] == (0, "hello ofa\n")
        with pytest.raises(ValueError, match="already registered"):
            register("hello", "again", arguments)(hello)
    finally:
        COMMANDS.unregister("hello")
    assert "hello" not in COMMANDS


def test_a_bug_in_a_command_is_not_reported_as_the_users_mistake(capsys):
    """User mistakes are ValueError / OSError ('error: ...', exit 2). A KeyError is a bug: it
    propagates (a traceback, exit 1 under python -m) instead of blaming the user's input."""
    @register("buggy", "raise a KeyError", lambda parser: None)
    def buggy(args):
        return {}["missing"]

    try:
        with pytest.raises(KeyError, match="missing"):
            main(["buggy"])
        assert "error:" not in capsys.readouterr().err
    finally:
        COMMANDS.unregister("buggy")


def test_python_dash_m_entry_point(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "ofa_engine", "analyze", "--space", "tiny-fmnist",
                           "--config", "random:x"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --config:") and "Traceback" not in proc.stderr


def test_failed_verification_exit_1(capsys, tmp_path, monkeypatch):
    from ofa_engine.runtime.export import Verification
    monkeypatch.setattr("ofa_engine.runtime.export.verification", lambda path, model: Verification(1.0, 3.0))
    out_path = tmp_path / "m.onnx"
    code, out, err = run(capsys, "export", "--space", "tiny-fmnist", "--config", "smallest",
                         "--out", str(out_path))
    assert code == 1 and out == ""
    assert "error: ONNX output differs from PyTorch" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
