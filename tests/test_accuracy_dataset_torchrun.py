"""`accuracy-dataset` under torchrun: each rank labels its shard into a part file, the last rank
to finish merges them, and the CSV has the rows (in the order) one process writes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ofa_engine.cli.main import main
from ofa_engine.training.accuracy_dataset import torchrun_shard

ROOT = Path(__file__).resolve().parents[1]


def _command(package: Path) -> list[str]:
    return ["-m", "ofa_engine", "accuracy-dataset", "--supernet", str(package), "--subnets", "4", "--seed", "3"]


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """The bundled ViT's supernet with 200 calibration and 200 evaluation images of its own (the
    rows take seconds, not the 2,000 images' minute)."""
    import numpy as np

    from ofa_engine.packages import load_package
    from ofa_engine.packages.build import write_package
    bundled = load_package("vit-fmnist")
    keep = np.arange(200)
    return write_package(tmp_path_factory.mktemp("pkg") / "vit-small", bundled.supernet, bundled.calibration.subset(keep),
                         bundled.evaluation.subset(keep), name="vit-small", space=bundled.space.name,
                         provenance={"dataset": "the bundled vit-fmnist's first 200 + 200 images"})


def _without_seconds(path: Path) -> list[list[str]]:
    """The CSV's records as written, the wall-time `seconds` column dropped."""
    with open(path, newline="", encoding="utf-8") as fh:
        records = list(csv.reader(fh))
    assert records[0][-1] == "seconds"
    return [record[:-1] for record in records]


def _run(args: list[str], **env: str) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **env)
    subprocess.run([sys.executable, *args], cwd=ROOT, env=environ, check=True, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def one_process(package, tmp_path_factory) -> list[list[str]]:
    """What one process writes for `_command(package)`."""
    out = tmp_path_factory.mktemp("one") / "one.csv"
    _run([*_command(package), "--out", str(out)])
    records = _without_seconds(out)
    assert len(records) == 1 + 6   # header, largest, smallest, 4 random
    return records


@pytest.mark.slow
def test_torchrun_gives_the_rows_of_one_process(package, one_process, tmp_path):
    two = tmp_path / "two.csv"
    _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *_command(package), "--out", str(two)])
    assert _without_seconds(two) == one_process
    assert [p.name for p in tmp_path.iterdir()] == ["two.csv"]   # the parts are removed


def test_ranks_resume_and_the_last_one_merges(package, one_process, tmp_path, monkeypatch):
    """The ranks as torchrun's environment names them (RANK, WORLD_SIZE), run one after the other
    in this process: the part files, not a process group, carry the work between them."""
    two = tmp_path / "two.csv"

    def rank(number: int | None, *extra: str) -> None:
        for name, value in (("RANK", number), ("WORLD_SIZE", None if number is None else 2)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, str(value))
        assert main([*_command(package)[2:], "--out", str(two), *extra]) == 0

    rank(None, "--max-new", "2")    # one process began the CSV (rows 0, 1)
    rank(1, "--max-new", "1")       # rank 1 alone, stopped after one row (3): its part stays, nothing is merged
    assert (tmp_path / "two.csv.part1of2").is_file() and len(_without_seconds(two)) == 1 + 2
    rank(0)                         # rows 2, 4 (0 is in the CSV)
    assert len(_without_seconds(two)) == 1 + 2
    rank(1)                         # rank 1 resumes, then merges
    assert _without_seconds(two) == one_process
    assert [p.name for p in tmp_path.iterdir()] == ["two.csv"]


def test_parts_of_another_world_size_are_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "a.csv.part0of3").write_text("")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["accuracy-dataset", "--supernet", "vit-fmnist", "--n", "1", "--out", str(tmp_path / "a.csv")]) == 2
    assert "a.csv.part0of3 are parts of a run with another number of processes" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv.part0of3"]


def test_explicit_shard_under_torchrun_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = main(["accuracy-dataset", "--supernet", "vit-fmnist", "--n", "1", "--shard", "0/2",
                 "--out", str(tmp_path / "a.csv")])
    assert code == 2
    assert "--shard 0/2 with torchrun" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_torchrun_shard_reads_the_environment():
    assert torchrun_shard({}) is None
    assert torchrun_shard({"RANK": "1", "WORLD_SIZE": "2"}) == (1, 2)
    with pytest.raises(ValueError, match="RANK=2, WORLD_SIZE=2"):
        torchrun_shard({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="must both be integers"):
        torchrun_shard({"RANK": "0"})
