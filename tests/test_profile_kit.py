"""Profile your own device: kit -> runner.py on the "device" -> fit-profile -> load_profile."""

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ofa_engine import SearchSpace, analyze
from ofa_engine.runtime import measure, ort
from ofa_engine.cli import main
from ofa_engine.predictors.latency import kendall_tau
from ofa_engine.devices.profile_kit import (MIN_ROWS, fit_profile_from_csv, kit_configs, kit_machine_speed,
                                    kit_zip_bytes, read_latency_csv, read_latency_runs, write_profile_kit)
from ofa_engine.devices.profiles import load_profile, load_validation

SPACE = SearchSpace.preset("tiny-fmnist")
N = 24
SIZES = (20, 24)   # the two smallest resolutions keep the kit fast


@pytest.fixture(scope="module")
def measured_kit(tmp_path_factory):
    """A kit of N subnets measured by its own runner.py in a bare subprocess: run from inside
    the kit folder with no PYTHONPATH, so only onnxruntime + numpy are importable from us."""
    kit = write_profile_kit(SPACE, tmp_path_factory.mktemp("kit") / "kit", n=N, seed=0, image_sizes=SIZES)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "runner.py", ".", "--rounds", "3", "--runs", "10", "--warmup", "5", "--quiet"],
                          cwd=kit, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return kit


@pytest.mark.slow   # the measured_kit fixture exports a kit and times every subnet in ONNX Runtime
def test_kit_contents(measured_kit):
    files = sorted(p.name for p in measured_kit.iterdir())
    assert files == sorted([f"m{i:03d}.onnx" for i in range(N)]
                           + ["manifest.json", "runner.py", "ort.py", "README.txt", "results.csv",
                              "machine_speed.json"])
    manifest = json.loads((measured_kit / "manifest.json").read_text())
    assert manifest["format"] == "ofa-engine/profile-kit" and manifest["version"] == 1
    assert manifest["space"] == "tiny-fmnist" and manifest["batch_size"] == 1
    configs = [SPACE.validate(m["config"]) for m in manifest["models"]]
    assert len(set(configs)) == N and {c.image_size for c in configs} <= set(SIZES)
    assert configs[0] == SPACE.validate({**SPACE.smallest().to_dict(), "image_size": 20})
    assert configs[1] == SPACE.validate({**SPACE.largest().to_dict(), "image_size": 24})
    assert (measured_kit / "runner.py").read_bytes() == Path(measure.__file__).read_bytes()
    assert (measured_kit / "ort.py").read_bytes() == Path(ort.__file__).read_bytes()
    assert "python runner.py" in (measured_kit / "README.txt").read_text()


@pytest.mark.slow   # the measured_kit fixture (real timings)
def test_round_trip_fit_profile_via_cli(measured_kit, tmp_path, capsys):
    out = tmp_path / "my.json"
    code = main(["fit-profile", str(measured_kit / "results.csv"), "--name", "my device", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)
    assert printed["name"] == "my-device" and printed["threads"] == 1
    speed = printed["spread"][0]["machine_speed"]   # the runner's machine_speed.json, read back
    assert set(speed) == {"spread", "steady", "summary"} and speed["summary"].startswith("machine speed:")
    assert speed["steady"] == (speed["spread"] <= measure.STEADY_SPREAD)
    profile = load_profile(str(out))
    assert profile.name == "my-device" and profile.display_name == "my device"
    assert profile.kind == "measured" and profile.threads == 1 and profile.batch_size == 1
    assert not profile.measures_locally   # measured on "the device", not where the engine runs
    assert profile.quality["n_test"] + profile.quality["n_train"] == N
    configs, measured, threads, batch, runs = read_latency_csv(measured_kit / "results.csv", SPACE)
    assert (threads, batch, runs) == (1, 1, 30)   # 3 rounds x 10 runs
    predicted = profile.predict_latency_ms(configs)
    assert np.all(predicted > 0) and len(measured) == N and np.all(measured > 0)
    # How well the fit ranks real measurements depends on how quiet this machine is: the fit's
    # quality is tested on seeded latencies (test_fit_profile_ranks_a_noisy_device_like_its_truth).
    validation = load_validation(tmp_path / "my.validation.csv")
    assert len(validation["configs"]) == profile.quality["n_test"]


def test_fit_profile_ranks_a_noisy_device_like_its_truth(tmp_path, capsys):
    """fit-profile on a kit's subnets measured on a seeded synthetic device: the bundled
    cpu-ort-1t model x 1.7 with 10% log-normal noise (a noisy machine). The fitted profile ranks
    them like the measurements and like the noise-free truth (0.88 and 0.91 when written)."""
    configs = kit_configs(SPACE, N, seed=0, image_sizes=SIZES)
    truth = 1.7 * load_profile("cpu-ort-1t").predict_latency_ms(configs)
    measured = truth * np.exp(np.random.default_rng(0).normal(0, 0.1, len(configs)))
    run = _synthetic_run(tmp_path / "results.csv", configs, measured, threads=1)
    out = tmp_path / "noisy.json"
    assert main(["fit-profile", str(run), "--space", "tiny-fmnist", "--name", "noisy", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    predicted = load_profile(str(out)).predict_latency_ms(configs)
    assert kendall_tau(predicted, measured) > 0.8
    assert kendall_tau(predicted, truth) > 0.85
    assert np.corrcoef(np.log(predicted), np.log(measured))[0, 1] > 0.95


def _rewrite(src: Path, dst: Path, edit) -> Path:
    rows = list(csv.DictReader(io.StringIO(src.read_text())))
    columns = list(rows[0])
    rows, columns = edit(rows, columns)
    with open(dst, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return dst


def _set_cell(index, column, value):
    def edit(rows, columns):
        rows[index][column] = value
        return rows, columns
    return edit


@pytest.mark.slow   # the measured_kit fixture (real timings)
@pytest.mark.parametrize("edit, message", [
    (lambda rows, cols: (rows, [c for c in cols if c != "median_ms"]),
     r"missing column\(s\) \['median_ms'\]"),
    (_set_cell(2, "median_ms", "-0.5"), r"row 3, column 'median_ms' = '-0.5'; allowed: a positive number"),
    (_set_cell(0, "median_ms", "fast"), r"row 1, column 'median_ms' = 'fast'"),
    (_set_cell(1, "config", '{"wid": 0}'), r"row 2, column 'config': subnet config must have exactly"),
    (_set_cell(4, "config", json.dumps({**SPACE.smallest().to_dict(), "ks": [9] * 15})),
     r"row 5, column 'config': config field 'ks' has value 9; allowed: \[3, 5, 7\]"),
    (_set_cell(3, "threads", "2"), r"column 'threads' mixes values \[1, 2\]"),
    (_set_cell(3, "batch_size", "0"), r"row 4, column 'batch_size' = '0'; allowed: an integer >= 1"),
    (lambda rows, cols: (rows[:MIN_ROWS - 1], cols), rf"has {MIN_ROWS - 1} measured subnets; allowed: at least {MIN_ROWS}"),
])
def test_csv_errors_name_row_and_column(measured_kit, tmp_path, edit, message):
    bad = _rewrite(measured_kit / "results.csv", tmp_path / "results.csv", edit)
    with pytest.raises(ValueError, match=message):
        fit_profile_from_csv(bad, "x", space=SPACE)


def test_csv_without_manifest_needs_the_space(tmp_path, capsys):
    lonely = tmp_path / "results.csv"
    lonely.write_text("file,config,median_ms,q1_ms,q3_ms,runs,threads,batch_size\n")
    assert main(["fit-profile", str(lonely), "--name", "x", "--out", str(tmp_path / "x.json")]) == 2
    assert "pass --space" in capsys.readouterr().err
    assert main(["fit-profile", str(tmp_path / "nope.csv"), "--name", "x", "--out", "x.json"]) == 2
    assert "No such latency CSV" in capsys.readouterr().err


def test_kit_configs_are_seeded_distinct_and_span_the_range():
    a, b = kit_configs(SPACE, 50, seed=3), kit_configs(SPACE, 50, seed=3)
    assert a == b and len(set(a)) == 50
    assert a[0] == SPACE.smallest() and a[1] == SPACE.largest()
    macs = analyze(SPACE, a)["macs"]
    assert macs.min() == macs[0] and macs.max() == macs[1]
    with pytest.raises(ValueError, match=r"image_sizes \[21\]; allowed: a non-empty subset"):
        kit_configs(SPACE, 5, image_sizes=[21])
    with pytest.raises(ValueError, match="n = 1; allowed: an integer 2..2000"):
        kit_configs(SPACE, 1)


def test_kit_zip_and_refusing_a_non_empty_folder(tmp_path, capsys):
    seen = []
    data = kit_zip_bytes(SPACE, n=2, image_sizes=(20,), progress=lambda *args: seen.append(args))
    assert seen == [(1, 2, "exported m000.onnx"), (2, 2, "exported m001.onnx")]
    names = sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert names == [f"ofa-profile-kit/{n}" for n in
                     ("README.txt", "m000.onnx", "m001.onnx", "manifest.json", "ort.py", "runner.py")]
    # Zero weights compress: the zip is a small fraction of the ONNX files' size.
    sizes = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    assert len(data) < 0.2 * sizes
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["profile-kit", "--space", "tiny-fmnist", "--out", str(tmp_path), "--n", "2"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def _synthetic_run(path: Path, configs, latencies, threads=2) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["config", "median_ms", "q1_ms", "q3_ms", "runs", "threads", "batch_size"])
        for cfg, ms in zip(configs, latencies):
            writer.writerow([cfg.to_json(), f"{ms:.6f}", f"{0.9 * ms:.6f}", f"{1.1 * ms:.6f}", 30, threads, 1])
    return path


def test_several_runs_average_per_subnet_by_geometric_mean(tmp_path, capsys):
    configs = kit_configs(SPACE, 30, seed=3)
    base = 0.2 + analyze(SPACE, configs)["macs"] / 5e6
    drift = np.random.default_rng(0).uniform(0.8, 1.25, size=(2, len(configs)))
    a = _synthetic_run(tmp_path / "a.csv", configs, base * drift[0])
    # The second run lists the subnets in another order: rows are matched by config.
    order = np.arange(len(configs))[::-1]
    b = _synthetic_run(tmp_path / "b.csv", [configs[i] for i in order], (base * drift[1])[order])
    got, latency, threads, batch, runs = read_latency_runs([a, b], SPACE)
    assert got == [SPACE.validate(c) for c in configs] and (threads, batch, runs) == (2, 1, 30)
    np.testing.assert_allclose(latency, base * np.sqrt(drift[0] * drift[1]), rtol=1e-5)

    out = tmp_path / "two-runs.json"
    assert main(["fit-profile", str(a), str(b), "--space", "tiny-fmnist", "--name", "two runs",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    profile = load_profile(str(out))
    assert profile.provenance["latency_data"] == "a.csv, b.csv"
    assert "geometric mean of its 2 medians" in profile.provenance["method"]
    assert f"{a} {b}" in profile.provenance["command"]
    single = fit_profile_from_csv(a, "one run", space=SPACE)
    assert single.provenance["latency_data"] == "a.csv" and "geometric" not in single.provenance["method"]


def test_runs_of_one_profile_must_match(tmp_path):
    configs = kit_configs(SPACE, 25, seed=4)
    ms = np.linspace(0.2, 1.0, len(configs))
    a = _synthetic_run(tmp_path / "a.csv", configs, ms)
    fewer = _synthetic_run(tmp_path / "fewer.csv", configs[:-1], ms[:-1])
    other_threads = _synthetic_run(tmp_path / "t1.csv", configs, ms, threads=1)
    twice = _synthetic_run(tmp_path / "twice.csv", configs + configs[:1], np.r_[ms, ms[:1]])
    with pytest.raises(ValueError, match=r"does not measure the same subnets as .*1 of its 25 missing"):
        read_latency_runs([a, fewer], SPACE)
    with pytest.raises(ValueError, match=r"threads=1, batch_size=1, .* threads=2"):
        read_latency_runs([a, other_threads], SPACE)
    with pytest.raises(ValueError, match=r"measures 1 subnet\(s\) twice"):
        read_latency_runs([twice, a], SPACE)
    with pytest.raises(ValueError, match=r"does not measure the same subnets as .*0 of its 25 missing, 26 rows"):
        read_latency_runs([a, twice], SPACE)
    with pytest.raises(ValueError, match="no latency CSV given"):
        fit_profile_from_csv([], "x", space=SPACE)
    with pytest.raises(FileNotFoundError):
        fit_profile_from_csv([a, tmp_path / "missing.csv"], "x", space=SPACE)


def test_kit_for_a_packages_own_space(tmp_path, capsys):
    """A kit for a space that is not a preset (a package's; `profile-kit --supernet PKG`): its
    models take that space's input, and its manifest and README say which space and package."""
    import dataclasses
    import onnx
    from ofa_engine.devices.profiles import space_fingerprint
    custom = dataclasses.replace(SPACE, name="tiny-fmnist-custom", in_channels=3, num_classes=3,
                                 labels=("a", "b", "c"), mean=(0.5,) * 3, std=(0.25,) * 3)
    kit = write_profile_kit(custom, tmp_path / "kit", n=2, image_sizes=(20,), supernet="my-pkg")
    manifest = json.loads((kit / "manifest.json").read_text())
    assert manifest["space"] == "tiny-fmnist-custom"
    assert manifest["space_fingerprint"] == space_fingerprint(custom) != space_fingerprint(SPACE)
    graph = onnx.load(kit / "m000.onnx").graph
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, 20, 20] and graph.output[0].type.tensor_type.shape.dim[1].dim_value == 3
    assert "fit-profile results.csv --name \"my device\" --supernet my-pkg" in (kit / "README.txt").read_text()
    # profile-kit takes --space or --supernet, not both.
    assert main(["profile-kit", "--space", "tiny-fmnist", "--supernet", "tiny-fmnist",
                 "--out", str(tmp_path / "k")]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("content", [
    "[1, 2]", '{"median_ms": 1.0}', '{"median_ms": -1, "p10_ms": 1, "p90_ms": 1, "samples": 3, "seconds": 1}',
    '{"median_ms": "1", "p10_ms": 1, "p90_ms": 1, "samples": 3, "seconds": 1}', "{not json", "",
])
def test_a_malformed_machine_speed_file_is_ignored_with_a_warning(tmp_path, caplog, content):
    (tmp_path / measure.SPEED_FILE).write_text(content)
    with caplog.at_level("WARNING", logger="ofa_engine.devices.profile_kit"):
        assert kit_machine_speed(tmp_path / "results.csv") is None
    assert any(measure.SPEED_FILE in r.getMessage() for r in caplog.records)


def test_machine_speed_file_read_back(tmp_path):
    assert kit_machine_speed(tmp_path / "results.csv") is None   # none written: nothing to say
    speed = measure.MachineSpeed.from_times([0.6] * 5 + [1.2] * 5, 1.0)
    (tmp_path / measure.SPEED_FILE).write_text(json.dumps(speed.to_dict()))
    read = kit_machine_speed(tmp_path / "results.csv")
    assert read == {"spread": round(speed.spread, 4), "steady": False, "summary": speed.describe()}
