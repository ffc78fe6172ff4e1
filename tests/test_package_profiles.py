"""Device profiles and supernet packages (issue 22): the analytical MCU profiles specialize a package
of another space than tiny-fmnist, a learned profile is refused there, and fit-profile --supernet
writes a profile fitted for the package's space into the package (never into a zip)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_engine import SearchSpace, analyze
from ofa_engine.cli import main
from ofa_engine.devices.profile_kit import kit_configs
from ofa_engine.devices.profiles import ProfileError, load_profile, profiles_for_space
from ofa_engine.families.mbv3.supernet import Supernet
from ofa_engine.packages import PackageError, clear_package_cache, load_package
from ofa_engine.packages.build import write_package
from tests.helpers_packages import SPACE, random_images
from ofa_engine.search.evaluator import Evaluator



@pytest.fixture(scope="module")
def package_dir(tmp_path_factory) -> Path:
    """A package of an untrained 3-channel, 3-class supernet with 12 + 12 random images."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("pkg") / "shapes"
    write_package(out, Supernet(SPACE).eval(), random_images(12, 1), random_images(12, 2), name="shapes",
                  provenance={"dataset": "random test images", "commands": ["made by a test"]})
    return out


@pytest.fixture()
def package_copy(package_dir, tmp_path) -> Path:
    copy = tmp_path / "shapes"
    shutil.copytree(package_dir, copy)
    return copy


def test_mcu_profile_predicts_and_specializes_a_package_of_another_space(package_dir, tmp_path):
    from ofa_engine.pipeline.specialize import specialize
    package = load_package(package_dir)
    assert package.space.name == "tiny-fmnist-custom" and package.space.in_channels == 3
    mcu = load_profile("stm32f746")
    evaluator = Evaluator(package.space, mcu, package.predictor_or_proxy())
    pop = package.space.sample_population(40, np.random.default_rng(0))
    genes = evaluator.space.to_genes(pop)
    # Latency, memory and Flash are this space's analytics (3 input channels, 3 classes).
    metrics = analyze(package.space, pop)
    np.testing.assert_allclose(evaluator.latency_of(genes), metrics["macs"] / (0.5 * 216e6) * 1e3, rtol=1e-12)
    assert not np.allclose(metrics["macs"], analyze(SearchSpace.preset("tiny-fmnist"), pop)["macs"])
    # The search under the device's memory (an int8 file of this package's random weights would
    # not pass the agreement floor, and the MCU profiles model int8 files only).
    from ofa_engine.search import Constraints, search
    result = search(evaluator, Constraints(macs_m=2.0).with_device_memory(mcu.for_space(package.space)),
                    "evolution", 0, population=20, generations=5)
    predicted = result.predicted
    assert predicted["macs"] <= 2e6
    assert predicted["latency_ms"] == pytest.approx(predicted["macs"] / (0.5 * 216e6) * 1e3)
    assert predicted["peak_memory_kb"] <= 320 and predicted["flash_kb"] <= 1024
    with pytest.raises(ValueError, match="allowed precision: int8"):
        specialize("stm32f746", {"macs_m": 2.0}, supernet=package_dir, precision="fp32", out=tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_learned_profile_is_refused_for_another_space_with_a_clear_message(package_dir):
    from ofa_engine.pipeline.specialize import specialize
    package = load_package(package_dir)
    pattern = (r"profile 'cpu-ort-1t' is for space 'tiny-fmnist', not 'tiny-fmnist-custom': its 'block-linear' "
               r"latency model was fitted .*allowed: an analytical profile .*fit-profile --supernet PKG")
    with pytest.raises(ProfileError, match=pattern):
        Evaluator(package.space, "cpu-ort-1t", package.predictor_or_proxy())
    with pytest.raises(ValueError, match=pattern):
        specialize("cpu-ort-1t", {"macs_m": 2.0}, supernet=package_dir)
    assert profiles_for_space(package) == [("cpu-ort-1t", False), ("cpu-ort-1t-proxyless-w1.3", False),
                                           ("cpu-ort-1t-resnet50d", False), ("cpu-ort-1t-vit-fmnist", False),
                                           ("cpu-ort-1t-w1.0", False), ("cpu-ort-2t", False), ("stm32f412", True),
                                           ("stm32f746", True), ("stm32h743", True)]


def _results_csv(path: Path, space: SearchSpace, n: int = 24) -> Path:
    """A results.csv as the kit's runner writes it; latencies from MACs with seeded noise (what a
    real device measures does not matter here, only that fit-profile fits and files it)."""
    configs = kit_configs(space, n, seed=0, image_sizes=(20, 24))
    macs = analyze(space, configs)["macs"]
    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "config", "median_ms", "q1_ms", "q3_ms", "runs", "threads", "batch_size"])
        for i, (cfg, m) in enumerate(zip(configs, macs)):
            ms = 0.05 + m / 4e7 * float(rng.uniform(0.95, 1.05))
            writer.writerow([f"m{i:03d}.onnx", cfg.to_json(), f"{ms:.6f}", f"{ms * 0.98:.6f}", f"{ms * 1.02:.6f}",
                             30, 1, 1])
    return path


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_fit_profile_into_the_package_and_load_package_lists_it(package_copy, tmp_path, capsys):
    package = load_package(package_copy)
    kit = tmp_path / "kit"
    code, out, err = _run(capsys, "profile-kit", "--supernet", package_copy, "--out", kit, "--n", 2,
                          "--image-sizes", "20")
    assert code == 0, err
    assert json.loads(out)["space"] == "tiny-fmnist-custom"
    results = _results_csv(kit / "results.csv", package.space)
    manifest_before = json.loads((package_copy / "manifest.json").read_text())

    code, out, err = _run(capsys, "fit-profile", results, "--name", "my board", "--supernet", package_copy)
    assert code == 0, err
    printed = json.loads(out)
    assert printed["package_latency_profiles"] == ["my-board"]
    assert Path(printed["profile"]) == package_copy / "profiles" / "my-board.json"
    assert (package_copy / "profiles" / "my-board.validation.csv").is_file()

    clear_package_cache()
    reloaded = load_package(package_copy)
    [profile] = reloaded.latency_profiles
    assert profile.name == "my-board" and profile.space == "tiny-fmnist-custom"
    assert profile.search_space == reloaded.space and "space_fingerprint" in profile.provenance
    manifest = json.loads((package_copy / "manifest.json").read_text())
    [ref] = manifest["latency_profiles"]
    assert ref["file"] == "profiles/my-board.json" and ref["sha256"].startswith("sha256:")
    assert any("fit-profile" in c and "--supernet" in c for c in manifest["provenance"]["commands"])
    assert {k: v for k, v in manifest.items() if k not in ("latency_profiles", "provenance")} == \
        {k: v for k, v in manifest_before.items() if k not in ("latency_profiles", "provenance")}
    # It predicts this space's subnets, and the package now has a latency model of its own.
    predicted = profile.predict_latency_ms([reloaded.space.smallest(), reloaded.space.largest()])
    assert 0 < predicted[0] < predicted[1]
    assert ("my-board", True) in profiles_for_space(reloaded)
    evaluator = Evaluator(reloaded.space, profile, reloaded.predictor_or_proxy())
    assert evaluator.has_latency
    # The same name again is refused before anything is fitted; so is a bundled profile's name.
    code, _, err = _run(capsys, "fit-profile", results, "--name", "my board", "--supernet", package_copy)
    assert code == 2 and "already has a latency profile 'my-board'" in err
    code, _, err = _run(capsys, "fit-profile", results, "--name", "cpu-ort-1t", "--supernet", package_copy)
    assert code == 2 and "bundled profile's name" in err
    assert sorted(p.name for p in (package_copy / "profiles").iterdir()) == ["my-board.json",
                                                                            "my-board.validation.csv"]
    # The kit's space is checked against the one given.
    code, _, err = _run(capsys, "fit-profile", results, "--name", "x", "--space", "tiny-fmnist",
                        "--out", tmp_path / "x.json")
    assert code == 2 and "was written for space 'tiny-fmnist-custom', not 'tiny-fmnist'" in err
    code, _, err = _run(capsys, "fit-profile", results, "--name", "x", "--out", tmp_path / "x.json")
    assert code == 2 and "pass --supernet PKG" in err
    assert not (tmp_path / "x.json").exists()


def test_a_zip_package_is_read_only(package_dir, tmp_path, capsys):
    archive = Path(shutil.make_archive(str(tmp_path / "shapes"), "zip", package_dir.parent, package_dir.name))
    before = archive.read_bytes()
    results = _results_csv(tmp_path / "results.csv", SPACE)
    code, _, err = _run(capsys, "fit-profile", results, "--name", "my board", "--supernet", archive)
    assert code == 2 and "is a zip, which is read-only" in err and "Traceback" not in err
    assert archive.read_bytes() == before
    # With --out the profile, fitted for the zip's space, goes there instead.
    code, out, err = _run(capsys, "fit-profile", results, "--name", "my board", "--supernet", archive,
                          "--out", tmp_path / "board.json")
    assert code == 0, err
    assert load_profile(tmp_path / "board.json", space=load_package(archive).space).name == "my-board"
    assert archive.read_bytes() == before
    # The writer itself refuses too.
    from ofa_engine.packages.build import add_latency_profile
    with pytest.raises(PackageError, match="is a zip, which is read-only"):
        add_latency_profile(load_package(archive), load_profile(tmp_path / "board.json", space=SPACE))


def test_fit_profile_needs_out_or_a_package(tmp_path, capsys):
    results = _results_csv(tmp_path / "results.csv", SearchSpace.preset("tiny-fmnist"))
    code, _, err = _run(capsys, "fit-profile", results, "--name", "x")
    assert code == 2 and "needs --out JSON, or --supernet PKG" in err
    code, _, err = _run(capsys, "fit-profile", results, "--name", "x", "--space", "tiny-fmnist",
                        "--supernet", "tiny-fmnist", "--out", tmp_path / "x.json")
    assert code == 2 and "not allowed with argument" in err


def test_zip_refusal_loads_no_torch(package_dir, tmp_path):
    import subprocess
    import sys
    archive = shutil.make_archive(str(tmp_path / "shapes"), "zip", package_dir.parent, package_dir.name)
    code = ("import sys; from ofa_engine.cli import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch was loaded'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "fit-profile", str(tmp_path / "r.csv"), "--name", "x",
                           "--supernet", archive], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert proc.returncode == 2 and "is a zip, which is read-only" in proc.stderr, proc.stderr
