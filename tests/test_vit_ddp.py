"""The ViT family trains under torchrun (DDP, gloo on CPU) like the CNN: two replicas end equal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ofa_engine.training.checkpoint import load_supernet_file

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow   # two training processes under torchrun
def test_vit_ddp_two_processes_end_with_equal_replicas(tmp_path):
    from test_train import digest, subprocess_env
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "tests" / "helpers_ddp_vit.py"), str(out)]
    result = subprocess.run(cmd, env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("DONE") == 2
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["world_size"] == 2 and ranks["sha256"][0] == ranks["sha256"][1]
    net = load_supernet_file(out / "supernet.pt")
    assert digest(net.state_dict()) == ranks["sha256"][0]
    assert [json.loads(line)["phase"] for line in (out / "log.jsonl").read_text().splitlines()] == ["full", "elastic"]
