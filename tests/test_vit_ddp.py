"""The ViT family trains under torchrun (DDP, gloo on CPU) like the CNN: two replicas end equal."""

from __future__ import annotations

import json

import pytest

from ofa_engine.training.checkpoint import load_supernet_file


@pytest.mark.slow   # two training processes under torchrun
def test_vit_ddp_two_processes_end_with_equal_replicas(tmp_path):
    from test_train import digest, run_two_process_training
    out = tmp_path / "ddp"
    run_two_process_training("helpers_ddp_vit.py", out)
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["world_size"] == 2 and ranks["sha256"][0] == ranks["sha256"][1]
    net = load_supernet_file(out / "supernet.pt")
    assert digest(net.state_dict()) == ranks["sha256"][0]
    assert [json.loads(line)["phase"] for line in (out / "log.jsonl").read_text().splitlines()] == ["full", "elastic"]
