"""Distillation from another trained supernet (`Phase.distill_from == "file"`): a CNN supernet
file teaching a Vision Transformer, as DeiT distils through a convnet teacher."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

import tests.helpers_train as H
from ofa_engine.families import family_of
from ofa_engine.runtime.evaluation import calibrate_bn
from ofa_engine.runtime.preprocess import preprocess
from ofa_engine.training import loop
from ofa_engine.training.checkpoint import load_supernet_file, save_supernet
from ofa_engine.training.loop import train
from ofa_engine.training.recipe import Phase, Recipe

CNN, VIT = family_of("tiny-fmnist"), family_of("vit-fmnist")


@pytest.fixture(scope="module")
def cnn_file(tmp_path_factory):
    """An (untrained, seeded) tiny-fmnist supernet file: the teacher."""
    torch.manual_seed(0)
    return save_supernet(CNN.build_supernet(), tmp_path_factory.mktemp("teacher") / "cnn.pt")


def vit_recipe(teacher_file, **phase) -> Recipe:
    """The ViT's elastic phase alone (3 subnets a step), distilling from `teacher_file`."""
    return Recipe(phases=(Phase("elastic-kd", epochs=0.25, lr=1e-3, subnets_per_step=3,
                                choices={"depth": (3, 4, 5), "embed_dim": (48, 64, 80)},
                                distill_from="file", teacher_file=str(teacher_file), **phase),),
                  batch_size=H.BATCH, optimizer="adamw", eval_images=16, checkpoint_every=2, seed=0)


def run_vit(out, recipe, **kwargs):
    train_set, val_set, calib = H.synthetic_sets()
    return train(VIT.space, recipe, train_set, val_set, calib, out, progress=False, **kwargs)


def test_a_cnn_file_teaches_a_vit_through_its_own_preprocessing(tmp_path, cnn_file, monkeypatch):
    """Every step's soft targets are the softmax of the CNN's largest subnet (BN recalibrated on
    the run's calibration images) on the step's raw images, preprocessed for the CNN at its own
    largest resolution (32), not the ViT's 28; every subnet of the step learns from them."""
    teacher_calls, losses = [], []
    real_call = loop._FileTeacher.__call__

    def record_call(self, raw):
        out = real_call(self, raw)
        teacher_calls.append((raw.clone(), out.detach().clone()))
        return out

    def record_loss(self, x, y, configs, soft_targets, weights=None, teacher_index=None):
        losses.append((soft_targets, teacher_index, len(configs)))
        return self.supernet(x, configs[0]).sum() * 0.0

    monkeypatch.setattr(loop._FileTeacher, "__call__", record_call)
    monkeypatch.setattr(loop.SubnetsLoss, "forward", record_loss)
    run_vit(tmp_path / "run", vit_recipe(cnn_file), max_steps=2)

    assert len(teacher_calls) == len(losses) == 2
    _, _, calib = H.synthetic_sets()
    cnn = load_supernet_file(cnn_file)
    expected_net = calibrate_bn(cnn.extract(cnn.space.largest()), calib.images, cnn.space)
    for (raw, logits), (soft, teacher_index, n) in zip(teacher_calls, losses):
        assert raw.dtype == torch.uint8 and raw.shape[-2:] == (28, 28)
        with torch.no_grad():
            expected = expected_net(preprocess(raw, cnn.space, 32))
        assert torch.allclose(logits, expected, atol=1e-5)
        assert torch.allclose(soft, F.softmax(logits, 1))
        assert teacher_index is None and n == 3      # no in-place teacher: all learn from the file


def test_the_file_teacher_changes_training_and_the_run_resumes_exactly(tmp_path, cnn_file):
    recipe = vit_recipe(cnn_file)
    full = run_vit(tmp_path / "full", recipe)
    stopped = tmp_path / "stopped"
    run_vit(stopped, recipe, max_steps=1)
    resumed = run_vit(stopped, recipe, resume=True)
    a, b = (torch.load(p, weights_only=True)["state_dict"] for p in (full, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    no_kd = run_vit(tmp_path / "labels-only", dataclasses.replace(recipe, phases=(dataclasses.replace(
        recipe.phases[0], distill=False, distill_from="teacher", teacher_file=None),)))
    c = torch.load(no_kd, weights_only=True)["state_dict"]
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_the_recipe_file_form_keeps_teacher_file_and_old_recipes_unchanged(cnn_file):
    recipe = vit_recipe(cnn_file)
    data = recipe.to_dict()
    assert data["phases"][0]["teacher_file"] == str(cnn_file)
    assert Recipe.from_dict(data, VIT.space) == recipe
    assert "teacher_file" not in H.tiny_recipe().to_dict()["phases"][0]


@pytest.mark.parametrize("fields,message", [
    ({"distill_from": "file"}, "distill_from 'file' and teacher_file go together"),
    ({"teacher_file": "x.pt"}, "distill_from 'file' and teacher_file go together"),
    ({"distill_from": "file", "teacher_file": "x.pt", "distill": False}, "with distill false; allowed: distill true"),
    ({"distill_from": "file", "teacher_file": ""}, "teacher_file = ''; allowed: null or the path of a supernet file"),
])
def test_a_phase_refuses_half_a_file_teacher(fields, message):
    with pytest.raises(ValueError, match=message):
        Phase("kd", epochs=1, lr=0.1, **fields)


def test_a_missing_or_mismatched_teacher_file_is_refused_before_anything_is_written(tmp_path, cnn_file):
    with pytest.raises(ValueError, match=r"phase 'elastic-kd': teacher_file .*nope.pt does not exist; allowed: "
                                         r"a supernet file"):
        run_vit(tmp_path / "a", vit_recipe(tmp_path / "nope.pt"))
    assert not (tmp_path / "a").exists()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a supernet")
    with pytest.raises(ValueError, match="phase 'elastic-kd': teacher_file: "):
        run_vit(tmp_path / "b", vit_recipe(bad))
    assert not (tmp_path / "b").exists()
    torch.manual_seed(0)
    other = family_of(CNN.space_from_dict({**CNN.space.to_dict(), "name": "five", "num_classes": 5,
                                           "labels": tuple("abcde")}, "test"))
    five = save_supernet(other.build_supernet(), tmp_path / "five.pt")
    with pytest.raises(ValueError, match="has num_classes 5, the run's space 'vit-fmnist' 10; allowed: a supernet "
                                         "of the same num_classes"):
        run_vit(tmp_path / "c", vit_recipe(five))
    assert not (tmp_path / "c").exists()


def test_the_bundled_vits_recipe_appends_a_cnn_teacher_phase_to_the_default():
    """docs/recipes/2026-12-05-vit-cnn-teacher.json trained the bundled ViT: the family's default
    recipe with one phase appended (a resume of the finished default run accepts it) that
    distils from the bundled CNN's weights, a file of this repository."""
    from pathlib import Path

    from ofa_engine.training.recipe import default_recipe, extends
    root = Path(__file__).resolve().parents[1]
    recipe = Recipe.from_dict(json.loads((root / "docs/recipes/2026-12-05-vit-cnn-teacher.json").read_text()),
                              VIT.space)
    assert extends(default_recipe(VIT.space), recipe) and len(recipe.phases) == 3
    last = recipe.phases[-1]
    assert (last.distill_from, last.teacher_file) == ("file", "assets/supernets/tiny-fmnist/supernet.pt")
    assert (root / last.teacher_file).is_file()
