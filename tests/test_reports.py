"""Twin records of benchmarks/supernet_report.py: what lets the report compare with from-scratch
twins whose weights are gone (run folders are not kept)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ofa_engine.families.mbv3.space import SearchSpace

REPO = Path(__file__).resolve().parents[1]
SPACE = SearchSpace.preset("tiny-fmnist")


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("supernet_report", REPO / "benchmarks" / "supernet_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_twin_records_round_trip_and_keep_other_labels(report, tmp_path):
    path = tmp_path / "twins.json"
    small = report.twin_record("small", "smallest", SPACE.smallest(), 0.8914, 10000, "test", "runs/s.pt")
    medium = report.twin_record("medium", "random:278", SPACE.parse_config("random:278"), 0.9, 10000, "test", "m.pt")
    report.write_twin_records(path, [small, medium])
    again = report.twin_record("small", "smallest", SPACE.smallest(), 0.9, 10000, "test", "runs/s2.pt")
    report.write_twin_records(path, [again])
    records = report.read_twin_records(str(path), SPACE, "test", 10000)
    assert {r["label"]: r["correct"] for r in records} == {"medium": 9000, "small": 9000}
    assert {r["label"]: r["weights"] for r in records}["small"] == "runs/s2.pt"
    assert not list(tmp_path.glob(".*tmp*"))


def test_twin_records_that_do_not_fit_the_report_are_refused(report, tmp_path):
    path = tmp_path / "twins.json"
    report.write_twin_records(path, [report.twin_record("small", "smallest", SPACE.smallest(), 0.89, 2000,
                                                        "test", "s.pt")])
    with pytest.raises(SystemExit, match="measured on 2000 images of 'test', this report uses 10000"):
        report.read_twin_records(str(path), SPACE, "test", 10000)
    data = json.loads(path.read_text())
    del data["twins"][0]["correct"]
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit, match=r"lacks \['correct'\]"):
        report.read_twin_records(str(path), SPACE, "test", 2000)
    data["twins"][0].update(correct=1780, resolved_config=SPACE.largest().to_dict())
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="resolves to another architecture"):
        report.read_twin_records(str(path), SPACE, "test", 2000)
    path.write_text("{not json")
    with pytest.raises(SystemExit, match="not a twin-record file"):
        report.read_twin_records(str(path), SPACE, "test", 2000)


def test_bundled_twin_records_fit_the_space_and_the_test_set(report):
    records = report.read_twin_records(str(REPO / "assets" / "supernets" / "tiny-fmnist" / "twins.json"), SPACE, "test", 10000)
    assert [r["label"] for r in records] == ["large", "small", "medium"]
    assert all(0 < r["correct"] <= r["images"] for r in records)


def test_benchmark_doc_sections_are_replaced_inserted_or_appended_and_the_rest_kept(tmp_path):
    from benchmarks.docsections import write_sections
    doc = tmp_path / "d.md"
    write_sections(doc, "## B\nb1", title="# Title")
    assert doc.read_text() == "# Title\n\n## B\nb1\n"
    write_sections(doc, "## C\nc1")                           # appended
    write_sections(doc, "## A\na1\n\nmore", before="## B")    # inserted before B
    write_sections(doc, "## B\nb2\n\n")                       # replaced in place
    write_sections(doc, "# New title\nintro\n\n## C\nc2")     # a preamble and a section
    assert doc.read_text() == "# New title\nintro\n\n## A\na1\n\nmore\n\n## B\nb2\n\n## C\nc2\n"
