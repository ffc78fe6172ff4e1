"""`package --data fashion-mnist`: a run trained on Fashion-MNIST becomes a package holding the
bundled 2k calibration and test images (the bundled tiny-fmnist package's, byte for byte), whose
accuracy predictor learns from the 5k holdout; any family (the bundled ViT package is one)."""

from __future__ import annotations

import json

import pytest
import torch

from ofa_engine.cli import main
from ofa_engine.families import family_of
from ofa_engine.packages import PackageError, load_package
from ofa_engine.packages.build import package_from_run
from ofa_engine.training.checkpoint import save_supernet


def _run(tmp_path, space_name: str, **space_changes):
    """A finished run folder of `space_name` (untrained, seeded weights)."""
    fam = family_of(space_name)
    if space_changes:
        fam = family_of(fam.space_from_dict({**fam.space.to_dict(), **space_changes}, "test"))
    torch.manual_seed(0)
    run = tmp_path / f"run-{space_name}"
    run.mkdir()
    save_supernet(fam.build_supernet(), run / "supernet.pt")
    return run


@pytest.mark.parametrize("space_name", ["tiny-fmnist", "vit-fmnist"])
def test_a_fashion_mnist_run_packages_with_the_bundled_images(tmp_path, space_name, capsys):
    out = tmp_path / "pkg"
    assert main(["package", "--run", str(_run(tmp_path, space_name)), "--data", "fashion-mnist",
                 "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    bundled = json.loads((load_package("tiny-fmnist", weights=False).path / "manifest.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    # A preset's own space is recorded by its name, as the bundled packages record theirs.
    assert manifest["space"] == space_name and printed["space"] == space_name
    assert manifest["family"] == family_of(space_name).family
    assert manifest["predictor_images"] == "fashion-mnist-holdout"
    for key in ("calibration", "evaluation"):
        assert manifest[key] == bundled[key]      # same files (sha256), counts and sources
    assert manifest["labels"] == bundled["labels"]
    report = manifest["provenance"]["accuracy_report"]
    assert report["images"] == 2000 and 0.0 <= report["smallest"] <= 1.0
    package = load_package(out)
    assert package.space == family_of(space_name).space


def test_a_run_of_other_data_is_refused(tmp_path):
    run = _run(tmp_path, "tiny-fmnist", name="rgb", in_channels=3, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    with pytest.raises(PackageError, match=r"--data fashion-mnist: the run's space 'rgb' has 3 input channel\(s\)"
                                           r".*allowed: a run trained with --data fashion-mnist"):
        package_from_run(run, "fashion-mnist", tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_a_run_of_a_changed_space_records_its_fields(tmp_path):
    """A space that only shares a preset's name is written out in full, never named as the preset."""
    run = _run(tmp_path, "vit-fmnist", depths=(3, 4))
    package_from_run(run, "fashion-mnist", tmp_path / "pkg")
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert isinstance(manifest["space"], dict) and manifest["space"]["depths"] == [3, 4]


@pytest.mark.slow   # ~20 s on the loaded 2-core VM (training, packaging, a search, an export)
def test_a_vit_trains_on_your_own_image_folder_and_packages_and_specializes(tmp_path, capsys):
    """`train --space vit-fmnist --data folder:DATA --channels 3` (the ViT's own data path, as the
    CNN's in test_packages.py), then package -> specialize -> an ONNX file of 3 channels, 3 classes."""
    import numpy as np
    import onnx

    from ofa_engine.training.recipe import Phase, Recipe
    from tests.test_packages import _shapes_folder, run_cli
    data = _shapes_folder(tmp_path / "shapes", per_class=24)
    recipe = Recipe(phases=(Phase("full", epochs=1, lr=1e-3, distill=False),
                            Phase("elastic", epochs=1, lr=5e-4, subnets_per_step=3, distill_from="largest",
                                  choices={"embed_dim": (48, 64, 80), "depth": (3, 4, 5)})),
                    batch_size=16, optimizer="adamw", sandwich_largest=True, eval_images=8, seed=0)
    (tmp_path / "recipe.json").write_text(json.dumps(recipe.to_dict()))

    def run(*argv) -> dict:
        return run_cli(capsys, *argv)

    run("train", "--space", "vit-fmnist", "--data", f"folder:{data}", "--image-size", 28, "--channels", 3,
        "--recipe", tmp_path / "recipe.json", "--out", tmp_path / "run", "--threads", 1, "--no-progress")
    made = run("package", "--run", tmp_path / "run", "--data", data, "--out", tmp_path / "pkg", "--image-size", 28,
               "--calibration-images", 12, "--evaluation-images", 12)
    assert (made["channels"], made["classes"], made["labels"]) == (3, 3, ["circle", "square", "triangle"])
    package = load_package(tmp_path / "pkg")
    assert package.manifest.family == "vit" and package.calibration.images.shape == (12, 3, 28, 28)
    assert np.bincount(package.calibration.labels).tolist() == [4, 4, 4]
    report = run("specialize", "--supernet", tmp_path / "pkg", "--macs-m", 6, "--option", "generations=10",
                 "--out", tmp_path / "model.onnx")
    assert report["measured"]["macs"] <= 6e6
    model = onnx.load(tmp_path / "model.onnx")
    dims = lambda value: [d.dim_value for d in value.type.tensor_type.shape.dim][1:]  # noqa: E731
    assert dims(model.graph.input[0]) == [3, 28, 28] and dims(model.graph.output[0]) == [3]
