"""ofa_engine.training.train (progressive shrinking, checkpoints, resume, DDP) and ofa_engine.runtime.evaluation.

Everything trains the tiny recipe of helpers_train.py on 128 random 28x28 images (batch 16,
one torch thread): a 'full' phase of 4 steps then an elastic-kernel phase of 6 steps that
distils. The two subprocess tests (SIGKILL + resume, 2-process DDP) are marked slow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import pickle
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ofa_engine.training.train as T
from ofa_engine.runtime.evaluation import accuracy, calibrate_bn
from ofa_engine.runtime.preprocess import preprocess
from ofa_engine.families.mbv3.space import SearchSpace, SubnetConfig
from ofa_engine.families.mbv3.supernet import Supernet
from ofa_engine.training.train import (Phase, Recipe, default_recipe, load_supernet_file, save_supernet, train,
                              twin_recipe)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers_train as H  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPACE = SearchSpace.preset("tiny-fmnist")
STOP_AT = 6   # optimizer steps before the interruption: 2 steps into the (distilling) kernel phase


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def run_tiny(out: Path, **kwargs) -> Path:
    train_set, val_set, calib = H.synthetic_sets()
    return train(SPACE, kwargs.pop("recipe", H.tiny_recipe()), train_set, val_set, calib, out,
                 progress=False, **kwargs)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"


def digest(state: dict[str, torch.Tensor]) -> str:
    """The digest ranks.json records (distributed.record_rank_weights)."""
    h = hashlib.sha256()
    for key, value in sorted(state.items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of the tiny recipe; its folder."""
    out = tmp_path_factory.mktemp("reference")
    final = run_tiny(out)
    assert final == out / "supernet.pt" and final.exists()
    return out


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """The same run stopped by max_steps after STOP_AT steps (mid kernel phase); its folder."""
    out = tmp_path_factory.mktemp("stopped")
    final = run_tiny(out, max_steps=STOP_AT)
    assert not final.exists()
    return out


# ---------------------------------------------------------------------- recipes
def test_recipe_round_trips_through_dict_and_json():
    recipes = [H.tiny_recipe(), default_recipe(SPACE), twin_recipe(SPACE, SPACE.smallest()),
               default_recipe(SPACE).scaled(0.25)]
    for recipe in recipes:
        assert Recipe.from_dict(recipe.to_dict()) == recipe
        assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    twin = Recipe.from_dict(json.loads(json.dumps(recipes[2].to_dict())))
    assert SPACE.validate(twin.phases[0].fixed_config) == SPACE.smallest()
    assert isinstance(twin.phases[0].fixed_config["ks"], list)


def test_recipe_unknown_fields_are_named():
    data = H.tiny_recipe().to_dict()
    with pytest.raises(ValueError, match="unknown recipe fields.*'batchsize'"):
        Recipe.from_dict({**data, "batchsize": 8})
    data["phases"][1]["kernel_size"] = [3]
    with pytest.raises(ValueError, match="unknown phase fields.*'kernel_size'"):
        Recipe.from_dict(data)
    with pytest.raises(ValueError, match="at least one phase"):
        Recipe.from_dict({"phases": []})


def test_default_recipe_of_tiny_fmnist():
    recipe = default_recipe(SPACE)
    names = [p.name for p in recipe.phases]
    assert names == ["full", "kernel", "depth", "expand-1", "expand-2", "width", "all", "all-2", "all-3",
                     "all-inplace", "all-inplace-2", "all-inplace-4sub"]
    full, kernel, depth, expand1, expand2, width, *everything = recipe.phases
    assert full.distill is False and full.kernel_sizes is full.depths is full.expand_ratios is None
    assert all(p.distill for p in recipe.phases[1:])
    assert kernel.kernel_sizes == SPACE.kernel_sizes and kernel.depths is None
    assert depth.depths == SPACE.depths and depth.kernel_sizes == SPACE.kernel_sizes
    assert depth.expand_ratios is None
    assert expand1.expand_ratios == (4, 6) and expand1.sort_channels == "middle:0"
    assert expand2.expand_ratios == (3, 4, 6) and expand2.sort_channels == "middle:1"
    assert width.widths == (0, 1, 2) and width.sort_channels == "stage"
    assert width.expand_ratios == SPACE.expand_ratios
    assert max(p.subnets_per_step for p in recipe.phases) > 1
    assert recipe.sandwich_largest and [p.subnets_per_step for p in recipe.phases[1:]] == [3] * 10 + [4]
    assert width.epochs == max(p.epochs for p in recipe.phases[1:6])
    # the last six phases train every dimension at once, the largest subnet's loss weighted
    # more (2x, 3x, 6x, 4x, 4x, 4x); all-3 at the lowest LR; the last three distil in place
    for phase in everything:
        assert (phase.kernel_sizes, phase.depths, phase.expand_ratios, phase.widths) == (
            SPACE.kernel_sizes, SPACE.depths, SPACE.expand_ratios, (0, 1, 2))
        assert phase.sort_channels is None
    assert [(p.epochs, p.lr, p.largest_weight, p.distill_from) for p in everything] == [
        (15, 0.01, 2.0, "teacher"), (20, 0.015, 3.0, "teacher"), (12, 0.005, 6.0, "teacher"),
        (12, 0.01, 4.0, "largest"), (10, 0.015, 4.0, "largest"), (10, 0.015, 4.0, "largest")]
    assert all(p.largest_weight == 1.0 for p in recipe.phases[:6])


def test_recipe_files_in_docs_load_and_the_newest_one_is_the_default():
    """docs/recipes holds the recipe of every bundled run; the newest one is the default. Each
    long recipe appends phases to the one before it (each bundled run resumed the previous
    finished run with it), so a resume accepts it."""
    docs = Path(__file__).resolve().parent.parent / "docs" / "recipes"
    chain = []
    for name in ("2026-11-28-long.json", "2026-11-28-long-all.json", "2026-11-28-long-all-2.json",
                 "2026-11-28-long-all-3.json", "2026-11-30-long-inplace.json",
                 "2026-11-30-long-inplace-2.json", "2026-11-30-long-inplace-4sub.json"):
        with open(docs / name, encoding="utf-8") as fh:
            chain.append(Recipe.from_dict(json.load(fh)))
    assert chain[-1] == default_recipe(SPACE)
    for before, after in zip(chain, chain[1:]):
        assert T.extends(before, after) and not T.extends(after, before)
    assert [len(r.phases) for r in chain] == [6, 7, 8, 9, 10, 11, 12]
    with open(docs / "2026-11-27-short.json", encoding="utf-8") as fh:
        short = Recipe.from_dict(json.load(fh))
    assert [p.epochs for p in short.phases] == [10, 3, 3, 2, 3, 3] and not short.sandwich_largest
    # The last three phases were trained with --init-from the file bundled before them and the
    # first of these recipes, then --resume with the second and the third (each appends one
    # phase): their first phase stands for that run, the phases they trained are the default's
    # last three.
    inplace = []
    for name in ("2026-11-30-inplace.json", "2026-11-30-inplace-2.json", "2026-11-30-inplace-4sub.json"):
        with open(docs / name, encoding="utf-8") as fh:
            inplace.append(Recipe.from_dict(json.load(fh)))
    assert T.extends(inplace[0], inplace[1]) and T.extends(inplace[1], inplace[2])
    for recipe, trained in zip(inplace, (1, 2, 3)):
        assert recipe.phases[0] == chain[-1].phases[0] and recipe.sandwich_largest
        assert recipe.phases[1:] == chain[-1].phases[-3:][:trained]
    assert [(p.name, p.epochs, p.lr, p.subnets_per_step) for p in inplace[2].phases[1:]] == [
        ("all-inplace", 12, 0.01, 3), ("all-inplace-2", 10, 0.015, 3), ("all-inplace-4sub", 10, 0.015, 4)]


def test_lr_schedule_warms_up_then_decays():
    phase = Phase("full", epochs=2, lr=0.1, distill=False, warmup_epochs=0.5)
    lrs = [T.lr_at(phase, s, total=20, steps_per_epoch=10) for s in range(20)]
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:])) and 0 < lrs[-1] < 0.01


# ---------------------------------------------------------------------- sampling and augmentation
def test_sample_respects_the_kernel_phase():
    choices = T.phase_choices(SPACE, Phase("kernel", 1, 0.1, kernel_sizes=SPACE.kernel_sizes))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        cfg = SPACE.validate(T.sample_config(SPACE, choices, rng, 24))
        assert cfg.image_size == 24
        assert set(cfg.e) == {max(SPACE.expand_ratios)}
        assert set(cfg.d) == {max(SPACE.depths)}
        assert cfg.wid == len(SPACE.width_mults) - 1
        seen.update(cfg.ks)
    assert seen == set(SPACE.kernel_sizes)


def test_sample_respects_depth_expand_and_width_phases():
    rng = np.random.default_rng(1)
    depth = T.phase_choices(SPACE, Phase("depth", 1, 0.1, kernel_sizes=(3, 5, 7), depths=(2, 3)))
    expand = T.phase_choices(SPACE, Phase("expand-1", 1, 0.1, expand_ratios=(4, 6)))
    width = T.phase_choices(SPACE, Phase("width", 1, 0.1, widths=(0, 1)))
    d_seen, e_seen, w_seen = set(), set(), set()
    for _ in range(50):
        cfg = T.sample_config(SPACE, depth, rng, 20)
        d_seen.update(cfg.d)
        assert set(cfg.e) == {6}
        cfg = T.sample_config(SPACE, expand, rng, 20)
        e_seen.update(cfg.e)
        assert set(cfg.d) == {3} and set(cfg.ks) == {7}
        w_seen.add(T.sample_config(SPACE, width, rng, 20).wid)
    assert d_seen == {2, 3} and e_seen == {4, 6} and w_seen == {0, 1}


def test_sample_smallest_is_the_phase_minimum():
    choices = T.phase_choices(SPACE, Phase("depth", 1, 0.1, kernel_sizes=(3, 5, 7), depths=(2, 3)))
    state = np.random.default_rng(0).bit_generator.state
    rng = np.random.default_rng(0)
    cfg = T.sample_config(SPACE, choices, rng, 28, smallest=True)
    assert cfg == SubnetConfig(2, [3] * SPACE.num_slots, [6] * SPACE.num_slots, [2] * SPACE.num_stages, 28)
    assert rng.bit_generator.state == state  # draws nothing


class _Recorded(list):
    """(resolution, configs) of every step; `.weights`: each step's loss weights (None: plain sum);
    `.teacher_index`: the position of the in-place teacher among the configs (None: none)."""

    def __init__(self):
        super().__init__()
        self.weights: list[list[float] | None] = []
        self.teacher_index: list[int | None] = []


@pytest.fixture
def recorded_configs(monkeypatch):
    """Replace the subnets' forward by a cheap loss and record the configs of every step."""
    steps = _Recorded()

    def forward(self, x, y, configs, soft_targets, weights=None, teacher_index=None):
        steps.append((x.shape[-1], list(configs)))
        steps.weights.append(weights)
        steps.teacher_index.append(teacher_index)
        return self.supernet.classifier.bias.sum() * 0.0

    monkeypatch.setattr(T.SubnetsLoss, "forward", forward)
    return steps


@pytest.mark.parametrize("sandwich", [True, False])
def test_sandwich_puts_the_smallest_subnet_first(tmp_path, recorded_configs, sandwich):
    phase = Phase("full", epochs=1, lr=0.05, distill=False, kernel_sizes=(3, 5, 7), depths=(2, 3),
                  subnets_per_step=3)
    run_tiny(tmp_path, recipe=H.tiny_recipe(phases=(phase,), sandwich=sandwich), max_steps=4)
    smallest = SubnetConfig(2, [3] * SPACE.num_slots, [6] * SPACE.num_slots, [2] * SPACE.num_stages, 20)
    assert len(recorded_configs) == 4
    for size, configs in recorded_configs:
        assert len(configs) == 3
        assert all(c.image_size == size for c in configs)   # one resolution per batch
        assert size in SPACE.resolutions
    firsts = [dataclasses.replace(c[0], image_size=20) for _, c in recorded_configs]
    if sandwich:
        assert all(f == smallest for f in firsts)
    else:
        assert any(f != smallest for f in firsts)


def test_largest_weight_weighs_the_phases_largest_subnet(tmp_path, recorded_configs):
    full, kernel = H.tiny_recipe().phases
    recipe = H.tiny_recipe(sandwich_largest=True, phases=(
        full, dataclasses.replace(kernel, subnets_per_step=3, largest_weight=3.0)))
    run_tiny(tmp_path, recipe=recipe, max_steps=8)
    weights_of_steps = recorded_configs.weights
    assert weights_of_steps[:4] == [None] * 4     # the full phase: plain sum
    for (size, configs), w in zip(recorded_configs[4:], weights_of_steps[4:]):
        assert configs[1] == dataclasses.replace(SPACE.largest(), image_size=size)
        assert w == [1.0, 3.0, 1.0]


def test_training_samples_only_each_phases_choices(tmp_path, recorded_configs):
    run_tiny(tmp_path, max_steps=8)
    full, kernel = recorded_configs[:4], recorded_configs[4:]
    assert len(full) == 4 and len(kernel) == 4
    largest = dataclasses.replace(SPACE.largest(), image_size=20)
    for _, configs in full:
        assert [dataclasses.replace(c, image_size=20) for c in configs] == [largest]
    kernel_sizes = set()
    for _, configs in kernel:
        assert len(configs) == 2
        assert configs[0].ks == (3,) * SPACE.num_slots   # sandwich: smallest kernel first
        for c in configs:
            assert set(c.e) == {6} and set(c.d) == {3} and c.wid == 2
            kernel_sizes.update(c.ks)
    assert kernel_sizes == {3, 5, 7}


def test_augment_keeps_shape_dtype_and_is_seeded():
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (64, 1, 28, 28), dtype=np.uint8))
    a = T.augment(images, torch.Generator().manual_seed(5))
    b = T.augment(images, torch.Generator().manual_seed(5))
    c = T.augment(images, torch.Generator().manual_seed(6))
    assert a.shape == images.shape and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    rgb = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    assert T.augment(rgb, torch.Generator().manual_seed(0)).shape == rgb.shape


def test_augment_is_a_shift_with_zero_padding_and_maybe_a_flip():
    images = torch.from_numpy(np.random.default_rng(1).integers(1, 256, (64, 1, 12, 12), dtype=np.uint8))
    out = T.augment(images, torch.Generator().manual_seed(0), pad=2)
    padded = F.pad(images, (2, 2, 2, 2))
    kinds = set()
    for i in range(len(images)):
        matches = [(oy, ox, flip) for oy in range(5) for ox in range(5) for flip in (False, True)
                   if torch.equal(out[i], (lambda c: c.flip(-1) if flip else c)(
                       padded[i, :, oy:oy + 12, ox:ox + 12]))]
        assert matches, f"image {i} is not a shifted/flipped copy"
        kinds.update(matches)
    assert {k[2] for k in kinds} == {False, True}
    assert len({k[:2] for k in kinds}) > 5


# ---------------------------------------------------------------------- runs, logs, files
def test_log_records_per_epoch(reference):
    records = [json.loads(line) for line in (reference / "log.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["epoch"], r["epochs"]) for r in records] == [("full", 1, 1), ("kernel", 1, 1)]
    for r in records:
        for key in ("loss", "lr", "acc_largest", "acc_smallest", "images_per_s", "elapsed_s"):
            assert isinstance(r[key], float | int), key
        assert math.isfinite(r["loss"]) and r["loss"] > 0
        assert 0 < r["lr"] <= 0.05
        assert 0.0 <= r["acc_largest"] <= 1.0 and 0.0 <= r["acc_smallest"] <= 1.0
        assert r["images_per_s"] > 0


def test_run_writes_loadable_files_and_no_temp_files(reference):
    names = sorted(p.name for p in reference.iterdir())
    assert names == ["checkpoint.pt", "log.jsonl", "phase-00-full.pt", "phase-01-kernel.pt", "ranks.json",
                     "supernet.pt"]
    assert not list(reference.glob(".*.tmp*")) and not list(reference.glob("*.tmp*"))
    payload = torch.load(reference / "supernet.pt", map_location="cpu", weights_only=True)
    assert payload["format"] == "ofa_engine.families.mbv3.supernet"
    assert payload["extra"]["recipe"] == H.tiny_recipe().to_dict()
    net = load_supernet_file(reference / "supernet.pt")
    assert isinstance(net, Supernet) and not net.training and net.space == SPACE
    ranks = json.loads((reference / "ranks.json").read_text())
    assert ranks == {"world_size": 1, "sha256": [digest(net.state_dict())]}
    # the last phase's file is the final network
    assert_same_weights(weights(reference / "phase-01-kernel.pt"), payload["state_dict"])
    final_ckpt = torch.load(reference / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert final_ckpt["state"]["phase"] == 2 and final_ckpt["optimizer"] is None


def test_checkpoint_is_weights_only_and_complete(stopped):
    ckpt = torch.load(stopped / "checkpoint.pt", map_location="cpu", weights_only=True)
    for key in ("model", "optimizer", "state", "arch_rng", "aug_rng", "torch_rng", "recipe", "teacher"):
        assert key in ckpt, key
    assert {k: ckpt["state"][k] for k in ("phase", "epoch", "step")} == {"phase": 1, "epoch": 0,
                                                                         "step": STOP_AT - 4}
    assert Recipe.from_dict(ckpt["recipe"]) == H.tiny_recipe()
    assert ckpt["optimizer"]["state"], "the kernel phase's momentum buffers are saved"
    assert ckpt["arch_rng"]["bit_generator"] == "PCG64"
    assert len(ckpt["aug_rng"]) == 1 and ckpt["aug_rng"][0].dtype == torch.uint8
    assert ckpt["torch_rng"].dtype == torch.uint8
    assert ckpt["teacher"] is not None and ckpt["teacher"].keys() == ckpt["model"].keys()
    assert SearchSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["space"].items()}) == SPACE
    assert not list(stopped.glob(".*.tmp*"))


def test_resume_after_max_steps_is_exact(stopped, reference, tmp_path):
    """Stopped 2 steps into the distilling kernel phase, then resumed: bit-identical weights."""
    shutil.copy(stopped / "checkpoint.pt", tmp_path / "checkpoint.pt")
    final = run_tiny(tmp_path, resume=True)
    assert_same_weights(weights(final), weights(reference / "supernet.pt"))
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["kernel"]   # the full phase's record was not copied


def test_resume_of_a_finished_run_rewrites_the_same_network(reference, tmp_path):
    shutil.copy(reference / "checkpoint.pt", tmp_path / "checkpoint.pt")
    final = run_tiny(tmp_path, resume=True)
    assert_same_weights(weights(final), weights(reference / "supernet.pt"))


def test_resume_with_a_different_recipe_is_refused(stopped, tmp_path):
    shutil.copy(stopped / "checkpoint.pt", tmp_path / "checkpoint.pt")
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match="different recipe"):
        run_tiny(tmp_path, recipe=H.tiny_recipe(seed=1), resume=True)
    with pytest.raises(ValueError, match="different recipe"):
        run_tiny(tmp_path, recipe=H.tiny_recipe().scaled(2.0), resume=True)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_resume_with_appended_phases_equals_the_longer_run(reference, tmp_path):
    """A finished run continued with a recipe that appends a phase ends with the same weights as
    running the longer recipe at once; a recipe that drops or edits a finished phase is refused."""
    extra = Phase("more", epochs=0.5, lr=0.01, kernel_sizes=(3, 5, 7), subnets_per_step=2)
    longer = H.tiny_recipe(phases=H.tiny_recipe().phases + (extra,))
    straight = run_tiny(tmp_path / "straight", recipe=longer)
    (tmp_path / "continued").mkdir()
    for name in ("checkpoint.pt", "log.jsonl"):
        shutil.copy(reference / name, tmp_path / "continued" / name)
    continued = run_tiny(tmp_path / "continued", recipe=longer, resume=True)
    assert_same_weights(weights(continued), weights(straight))
    records = [json.loads(line) for line in (tmp_path / "continued" / "log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["full", "kernel", "more"]
    for bad in (H.tiny_recipe(phases=H.tiny_recipe().phases[:1]),
                H.tiny_recipe(phases=(H.tiny_recipe().phases[0], dataclasses.replace(extra, name="kernel"), extra))):
        with pytest.raises(ValueError, match="only appends phases"):
            run_tiny(tmp_path / "continued", recipe=bad, resume=True)


def test_init_from_skips_the_first_phase(reference, tmp_path):
    """--init-from a full-network phase file: the run starts at the second phase with those
    weights as network and teacher, logs only the later phases, resumes like any run, and refuses
    a recipe whose first phase is not the full network's, another space, or an existing run."""
    full = reference / "phase-00-full.pt"
    out = tmp_path / "init"
    final = run_tiny(out, init_from=full)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["kernel"]
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["state"]["init_from"] == str(full) and ckpt["state"]["phase"] == 2
    assert_same_weights(ckpt["teacher"], weights(full))   # the file is the teacher
    assert not all(torch.equal(a, b) for a, b in zip(weights(final).values(), weights(full).values()))
    # stopped after 2 steps and resumed: the same weights as without the stop
    stopped = tmp_path / "init-stopped"
    run_tiny(stopped, init_from=full, max_steps=2)
    assert_same_weights(weights(run_tiny(stopped, resume=True)), weights(final))
    with pytest.raises(ValueError, match="leave --init-from out"):
        run_tiny(stopped, resume=True, init_from=full)
    kernel_only = H.tiny_recipe(phases=H.tiny_recipe().phases[1:] + H.tiny_recipe().phases[:1])
    with pytest.raises(ValueError, match="must train the full network"):
        run_tiny(tmp_path / "bad", recipe=kernel_only, init_from=full)
    other = SearchSpace.preset("tiny-fmnist")
    other = dataclasses.replace(other, width_mults=other.width_mults[:2])
    save_supernet(Supernet(other), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other dimensions"):
        run_tiny(tmp_path / "bad2", init_from=tmp_path / "other.pt")


@pytest.mark.parametrize("weight", [0, -1.0, float("nan"), "2", True])
def test_recipe_refuses_a_bad_largest_weight(weight):
    data = H.tiny_recipe().to_dict()
    data["phases"][1]["largest_weight"] = weight
    with pytest.raises(ValueError, match="phase 'kernel': largest_weight"):
        Recipe.from_dict(data)


def _subnets_loss_on_four_images():
    """A seeded untrained supernet, its summed-loss module (label smoothing 0.1, KD ratio 1), and a batch."""
    torch.manual_seed(0)
    net = Supernet(SPACE).eval()
    return net, T.SubnetsLoss(net, label_smoothing=0.1, kd_ratio=1.0), torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])


def test_subnets_loss_weights_each_subnet():
    net, loss, x, y = _subnets_loss_on_four_images()
    soft = F.softmax(torch.randn(4, 10), 1)
    big, small = SPACE.largest(), SPACE.smallest()
    with torch.no_grad():
        one = [loss(x, y, [c], soft) for c in (big, small)]
        assert torch.allclose(loss(x, y, [big, small], soft, [2.0, 1.0]), 2 * one[0] + one[1])
        assert torch.allclose(loss(x, y, [big, small], soft), one[0] + one[1])


def test_largest_weight_changes_training_only_through_the_largest_subnet(tmp_path):
    """With the full sandwich rule each step holds the largest subnet: weighting it changes the
    trained weights."""
    def recipe(w: float) -> Recipe:
        full, kernel = H.tiny_recipe().phases
        return H.tiny_recipe(sandwich_largest=True, phases=(
            full, dataclasses.replace(kernel, subnets_per_step=3, largest_weight=w)))
    plain = weights(run_tiny(tmp_path / "plain", recipe=recipe(1.0)))
    heavy = weights(run_tiny(tmp_path / "heavy", recipe=recipe(3.0)))
    assert any(not torch.equal(plain[k], heavy[k]) for k in plain)


def test_in_place_distillation_loss_learns_from_the_largest_subnets_detached_output():
    net, loss, x, y = _subnets_loss_on_four_images()
    small, big = SPACE.smallest(), SPACE.largest()
    total = loss(x, y, [small, big], None, [1.0, 3.0], teacher_index=1)
    big_logits, small_logits = net(x, big), net(x, small)
    soft = F.softmax(big_logits, 1)
    expected = (3.0 * F.cross_entropy(big_logits, y, label_smoothing=0.1)
                + F.cross_entropy(small_logits, y, label_smoothing=0.1)
                + torch.sum(-soft * F.log_softmax(small_logits, 1), 1).mean())
    assert torch.allclose(total, expected)
    # The soft target is detached: the distillation term sends no gradient into the teacher's
    # logits, so the largest subnet's gradient is that of its own label loss only.
    net.zero_grad()
    loss(x, y, [small, big], None, teacher_index=1).backward()
    with_kd = net.classifier.weight.grad.clone()
    net.zero_grad()
    logits = net(x, big)
    kd_target = F.softmax(logits.detach(), 1)
    (F.cross_entropy(logits, y, label_smoothing=0.1) + F.cross_entropy(net(x, small), y, label_smoothing=0.1)
     + torch.sum(-kd_target * F.log_softmax(net(x, small), 1), 1).mean()).backward()
    assert torch.allclose(with_kd, net.classifier.weight.grad, atol=1e-6)


def test_in_place_phase_names_the_largest_subnet_as_teacher_and_needs_no_full_network(tmp_path, recorded_configs):
    # No full-network phase first: in-place distillation needs no frozen teacher.
    kernel = Phase("kernel", epochs=1, lr=0.05, kernel_sizes=(3, 5, 7), subnets_per_step=3,
                   distill_from="largest")
    run_tiny(tmp_path, recipe=H.tiny_recipe(phases=(kernel,), sandwich_largest=True), max_steps=3)
    assert len(recorded_configs) == 3
    for (size, configs), index in zip(recorded_configs, recorded_configs.teacher_index):
        assert configs[index] == dataclasses.replace(SPACE.largest(), image_size=size)


def test_in_place_distillation_trains_other_weights_than_the_frozen_teacher(tmp_path):
    full, kernel = H.tiny_recipe().phases
    def recipe(source: str) -> Recipe:
        return H.tiny_recipe(sandwich_largest=True, phases=(
            full, dataclasses.replace(kernel, subnets_per_step=3, distill_from=source)))
    frozen = weights(run_tiny(tmp_path / "frozen", recipe=recipe("teacher")))
    in_place = weights(run_tiny(tmp_path / "in-place", recipe=recipe("largest")))
    assert any(not torch.equal(frozen[k], in_place[k]) for k in frozen)


@pytest.mark.parametrize("sandwich_largest,n", [(False, 3), (True, 2)])
def test_in_place_distillation_without_the_largest_in_each_step_is_refused(tmp_path, sandwich_largest, n):
    kernel = Phase("kernel", epochs=1, lr=0.05, kernel_sizes=(3, 5, 7), subnets_per_step=n,
                   distill_from="largest")
    with pytest.raises(ValueError, match="phase 'kernel': distill_from 'largest' needs the largest subnet"):
        run_tiny(tmp_path, recipe=H.tiny_recipe(phases=(kernel,), sandwich_largest=sandwich_largest))


def test_recipe_refuses_an_unknown_distillation_source():
    data = H.tiny_recipe().to_dict()
    data["phases"][1]["distill_from"] = "oracle"
    with pytest.raises(ValueError, match="phase 'kernel': distill_from = 'oracle'; allowed: 'teacher', 'largest'"):
        Recipe.from_dict(data)


def test_too_few_images_for_the_batch_size(tmp_path):
    with pytest.raises(ValueError, match="too few"):
        run_tiny(tmp_path, recipe=H.tiny_recipe(batch_size=256))


def test_distilling_first_phase_is_refused(tmp_path):
    with pytest.raises(ValueError, match="distils from the full network"):
        run_tiny(tmp_path, recipe=H.tiny_recipe(phases=(Phase("kernel", 1, 0.1, kernel_sizes=(3, 5, 7)),)))


@pytest.mark.slow   # two training processes (killed, then resumed)
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(reference, tmp_path):
    """SIGKILL a training process mid-way through the kernel phase, resume: same final weights.

    The process pauses at a known point (helpers_train.py --pause-at: before the kernel phase's
    4th step; the checkpoint after its 2nd step written, the 3rd step done and not saved) and
    says so on stdout; the kill follows that line, not a poll of the checkpoint file."""
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "helpers_train.py"), str(out), "--pause-at", "1:3"],
                            env=subprocess_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    lines: list[str] = []
    paused = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("PAUSED"):
                paused.set()
        paused.set()     # end of output: the process ended without pausing

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        paused.wait(600)   # a hang guard only: the pause is an event, whenever it comes
        assert any(line.startswith("PAUSED phase 1 step 3") for line in lines), \
            f"never paused (rc {proc.poll()}):\n{''.join(lines)[-3000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)
        reader.join(60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "supernet.pt").exists()
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)["state"]
    assert (state["phase"], state["epoch"], state["step"]) == (1, 0, 2)   # the last checkpoint, step 3 lost
    final = run_tiny(out, resume=True)
    assert_same_weights(weights(final), weights(reference / "supernet.pt"))


@pytest.mark.slow   # torchrun with two training processes
def run_two_process_training(helper: str, out: Path) -> None:
    """`tests/<helper>` under torchrun with 2 processes writing into `out`; both must finish."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "tests" / helper), str(out)]
    result = subprocess.run(cmd, env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("DONE") == 2


def test_ddp_two_processes(reference, tmp_path):
    out = tmp_path / "ddp"
    run_two_process_training("helpers_ddp.py", out)
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["world_size"] == 2 and len(ranks["sha256"]) == 2
    assert ranks["sha256"][0] == ranks["sha256"][1], "the replicas differ at the end of training"
    net = load_supernet_file(out / "supernet.pt")
    assert digest(net.state_dict()) == ranks["sha256"][0]
    # 128 images / 2 ranks / batch 16 = 4 steps per epoch and rank: 2 (full) + 3 (kernel)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["full", "kernel"]
    batches = [json.loads((out / f"batches-rank{r}.json").read_text()) for r in (0, 1)]
    assert [len(b) for b in batches] == [5, 5]
    for step0, step1 in zip(*batches):
        assert len(step0) == len(step1) == 16 and not set(step0) & set(step1)
    epoch0 = set().union(*batches[0][:2], *batches[1][:2])
    assert len(epoch0) == 64   # one epoch's shards: 2 steps x 2 ranks x 16 distinct images
    # and the result is not what one process makes of the same recipe
    single = weights(reference / "supernet.pt")
    ddp = weights(out / "supernet.pt")
    assert any(not torch.equal(single[k], ddp[k]) for k in single if k.endswith("weight"))


# ---------------------------------------------------------------------- supernet files
class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))   # creates the marker file when unpickled


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_load_supernet_file_refuses_pickled_code(tmp_path):
    marker = tmp_path / "executed"
    hostile = [tmp_path / "zip.pt", tmp_path / "legacy.pt", tmp_path / "plain.pkl"]
    torch.save({"space": {}, "state_dict": {}, "evil": _Payload(marker)}, hostile[0])
    torch.save({"state_dict": _Payload(marker)}, hostile[1], _use_new_zipfile_serialization=False)
    hostile[2].write_bytes(pickle.dumps({"state_dict": _Payload(marker), "space": {}}))
    for path in hostile:
        with pytest.raises(ValueError, match=str(path.name)):
            load_supernet_file(path)
        assert not marker.exists(), f"{path.name} executed code"
    # sanity: the payload does execute when unpickled without restrictions
    pickle.loads(hostile[2].read_bytes())
    assert marker.exists()


def test_load_supernet_file_rejects_corrupt_files(tmp_path):
    torch.manual_seed(0)
    good = save_supernet(Supernet(SPACE), tmp_path / "good.pt")
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(os.urandom(4096))
    (tmp_path / "empty.pt").write_bytes(b"")
    for name in ("truncated.pt", "garbage.pt", "empty.pt"):
        with pytest.raises(ValueError, match=f"{name}.* not a readable supernet file"):
            load_supernet_file(tmp_path / name)
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt is not an ofa_engine supernet file"):
        load_supernet_file(tmp_path / "other.pt")
    payload = torch.load(good, weights_only=True)
    payload["state_dict"]["classifier.weight"] = torch.zeros(3, 3)
    torch.save(payload, tmp_path / "misfit.pt")
    with pytest.raises(ValueError, match="misfit.pt: weights do not fit space 'tiny-fmnist'"):
        load_supernet_file(tmp_path / "misfit.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        load_supernet_file(tmp_path / "missing.pt")
    assert not list(tmp_path.glob(".*.tmp*"))


def test_save_supernet_half_round_trip(tmp_path):
    torch.manual_seed(0)
    net = Supernet(SPACE)
    path = save_supernet(net, tmp_path / "half.pt", half=True, extra={"note": "x"})
    payload = torch.load(path, weights_only=True)
    assert payload["state_dict"]["classifier.weight"].dtype == torch.float16
    assert payload["extra"] == {"note": "x"}
    loaded = load_supernet_file(path)
    for key, value in net.state_dict().items():
        other = loaded.state_dict()[key]
        assert other.dtype == value.dtype
        assert torch.allclose(other, value, rtol=1e-3, atol=1e-4), key


# ---------------------------------------------------------------------- evaluation
@pytest.fixture
def subnet(tiny_net):
    """The smallest subnet (cheapest) of the calibrated conftest supernet, at 28x28."""
    return tiny_net.extract(dataclasses.replace(SPACE.smallest(), image_size=28))


def test_calibrate_bn_uses_the_statistics_of_all_images(subnet):
    images = np.random.default_rng(0).integers(0, 256, (400, 28, 28), dtype=np.uint8)
    bn = subnet.first_conv.bn
    bn.momentum = 0.37
    seen_dropout_training = []
    handle = subnet.dropout.register_forward_pre_hook(
        lambda module, args: seen_dropout_training.append(module.training))
    try:
        subnet.train()
        assert calibrate_bn(subnet, images, SPACE, batch_size=200) is subnet
    finally:
        handle.remove()
    assert seen_dropout_training == [False, False]   # two batches of 200, dropout off
    assert not subnet.training and not any(m.training for m in subnet.modules())
    assert bn.momentum == 0.37
    assert all(m.momentum == 0.1 for m in subnet.modules()
               if isinstance(m, torch.nn.BatchNorm2d) and m is not bn)
    with torch.no_grad():
        x = preprocess(images, SPACE, 28)
        y = subnet.first_conv.conv(x).double()
    mean = y.mean((0, 2, 3))
    var = torch.stack([y[s:s + 200].var((0, 2, 3), unbiased=True) for s in (0, 200)]).mean(0)
    assert torch.allclose(bn.running_mean.double(), mean, rtol=1e-5, atol=1e-6)
    assert torch.allclose(bn.running_var.double(), var, rtol=1e-5, atol=1e-6)
    assert int(bn.num_batches_tracked) == 2


def test_calibrate_bn_accepts_preprocessed_input_and_needs_space_for_uint8(subnet):
    images = np.random.default_rng(1).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    calibrate_bn(subnet, images, SPACE)
    expected = subnet.first_conv.bn.running_mean.clone()
    calibrate_bn(subnet, preprocess(images, SPACE, 28))
    assert torch.allclose(subnet.first_conv.bn.running_mean, expected, atol=1e-6)
    with pytest.raises(ValueError, match="need the search space"):
        calibrate_bn(subnet, images)


def test_accuracy_equals_hand_computation(subnet):
    images = np.random.default_rng(2).integers(0, 256, (120, 28, 28), dtype=np.uint8)
    calibrate_bn(subnet, images, SPACE)
    with torch.no_grad():
        predicted = subnet(preprocess(images, SPACE, 28)).argmax(1).numpy()
    labels = predicted.copy()
    labels[::2] = (labels[::2] + 1) % 10   # every other one wrong
    assert accuracy(subnet, images, labels, SPACE) == pytest.approx(0.5)
    assert accuracy(subnet, images, predicted, SPACE) == 1.0
    assert accuracy(subnet, images, (predicted + 1) % 10, SPACE) == 0.0
    random_labels = np.random.default_rng(3).integers(0, 10, 120)
    acc = accuracy(subnet, preprocess(images, SPACE, 28), random_labels)
    assert 0.0 <= acc <= 1.0 and acc == pytest.approx(float((predicted == random_labels).mean()))


def test_resume_trims_log_records_written_after_the_checkpoint(tmp_path):
    from ofa_engine.training.checkpoint import trim_log

    recipe = Recipe(phases=(Phase("full", 2, 0.1, distill=False), Phase("kernel", 2, 0.03)))
    log = tmp_path / "log.jsonl"
    records = [{"phase": "full", "epoch": 1}, {"phase": "full", "epoch": 2},
               {"phase": "kernel", "epoch": 1}, {"phase": "kernel", "epoch": 2}]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    # Checkpoint taken mid-way through kernel epoch 2: its record was written after it.
    trim_log(log, recipe, {"phase": 1, "epoch": 1, "step": 3})
    assert [json.loads(line) for line in log.read_text().splitlines()] == records[:3]
    trim_log(log, recipe, {"phase": 1, "epoch": 0, "step": 0})
    assert [json.loads(line) for line in log.read_text().splitlines()] == records[:2]


def test_resume_from_corrupt_checkpoint_names_the_file(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    space = SearchSpace.preset("tiny-fmnist")
    with pytest.raises(ValueError, match="checkpoint.pt cannot be resumed from"):
        train(space, default_recipe(space), None, None, None, tmp_path, resume=True)


@pytest.mark.parametrize("n,largest,expected", [
    (1, True, ["random"]),
    (2, False, ["smallest", "random"]),
    (2, True, ["smallest", "largest"]),
    (3, True, ["smallest", "largest", "random"]),
    (3, False, ["smallest", "random", "random"]),
])
def test_step_configs_sandwich(n, largest, expected):
    choices = T.phase_choices(SPACE, Phase("x", 1, 0.1, kernel_sizes=(3, 5, 7), expand_ratios=(3, 4, 6),
                                             depths=(2, 3)))
    recipe = dataclasses.replace(default_recipe(SPACE), sandwich_largest=largest)
    phase = Phase("x", 1, 0.1, subnets_per_step=n)
    configs = T.step_configs(SPACE, recipe, phase, choices, np.random.default_rng(0), 24)
    smallest = T.sample_config(SPACE, choices, None, 24, smallest=True)
    biggest = T.sample_config(SPACE, choices, None, 24, largest=True)
    kinds = ["smallest" if c == smallest else "largest" if c == biggest else "random" for c in configs]
    assert kinds == expected
    assert biggest.ks == (7,) * SPACE.num_slots and biggest.d == (3,) * SPACE.num_stages


# ---------------------------------------------------------------------- refusals (issue 26)
def _with(path: tuple, value):
    data = json.loads(json.dumps(H.tiny_recipe().to_dict()))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize("data, message", [
    (_with(("batch_size",), 0), r"recipe: batch_size = 0; allowed: an integer >= 1"),
    (_with(("batch_size",), 2.5), r"recipe: batch_size = 2.5; allowed: an integer >= 1"),
    (_with(("checkpoint_every",), 0), r"recipe: checkpoint_every = 0; allowed: an integer >= 1"),
    (_with(("label_smoothing",), 1.5), r"recipe: label_smoothing = 1.5; allowed: a number in 0..1"),
    (_with(("sandwich",), "yes"), r"recipe: sandwich = 'yes'; allowed: true or false"),
    (_with(("phases", 1, "epochs"), "ten"), r"phase 'kernel': epochs = 'ten'; allowed: a finite number > 0"),
    (_with(("phases", 1, "lr"), float("nan")), r"phase 'kernel': lr = nan; allowed: a finite number > 0"),
    (_with(("phases", 1, "lr"), float("inf")), r"phase 'kernel': lr = inf; allowed: a finite number > 0"),
    (_with(("phases", 1, "subnets_per_step"), 0), r"phase 'kernel': subnets_per_step = 0; allowed: an integer >= 1"),
    (_with(("phases", 1, "kernel_sizes"), [3, "5"]), r"phase 'kernel': kernel_sizes = '5'; allowed: null or a list"),
    (_with(("phases", 1, "sort_channels"), "middle:x"), r"phase 'kernel': sort_channels = 'middle:x'; allowed: "),
    (_with(("phases", 1), [1, 2]), r"phase 1 = \[1, 2\]; allowed: a JSON object of phase fields"),
    (_with(("phases",), {"name": "full"}), r"phases = .*allowed: a list of at least one phase"),
    ([1, 2, 3], r"a recipe must be a JSON object of recipe fields, got list"),
    ("recipe", r"a recipe must be a JSON object of recipe fields, got str"),
])
def test_recipe_refuses_bad_values_naming_field_value_and_allowed(data, message):
    with pytest.raises(ValueError, match=message):
        Recipe.from_dict(data)


def test_recipe_read_for_a_space_checks_its_fixed_config():
    # A recipe names no family: its fixed_config is checked against the space it trains.
    data = _with(("phases", 1, "fixed_config"), {"wid": 0})
    Recipe.from_dict(data)
    with pytest.raises(ValueError, match=r"phase 'kernel': fixed_config: .*missing"):
        Recipe.from_dict(data, SPACE)


def test_recipe_missing_phase_field_is_named():
    data = H.tiny_recipe().to_dict()
    del data["phases"][1]["lr"]
    with pytest.raises(ValueError, match="phase 'kernel': field 'lr' is missing; required: name, epochs, lr"):
        Recipe.from_dict(data)


def test_phases_and_recipes_built_in_python_are_validated_too():
    with pytest.raises(ValueError, match="phase 'x': epochs = -1"):
        Phase("x", epochs=-1, lr=0.1)
    with pytest.raises(ValueError, match="recipe: batch_size = 0"):
        H.tiny_recipe(batch_size=0)


@pytest.mark.parametrize("argv, message", [
    (["--max-train-images", "0"], r"--max-train-images must be >= 1, got 0"),
    (["--recipe", "deep.json"], r"nests deeper than"),
    (["--recipe", "list.json"], r"a recipe must be a JSON object"),
    (["--recipe", "bad.json"], r"recipe: batch_size = 0"),
])
def test_train_command_refuses_bad_input(tmp_path, capsys, monkeypatch, argv, message):
    from ofa_engine.cli import main
    import ofa_engine.datasets.images as D
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep.json").write_text("[" * 100 + "]" * 100)
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    (tmp_path / "bad.json").write_text(json.dumps({**H.tiny_recipe().to_dict(), "batch_size": 0}))
    train_set, val_set, _ = H.synthetic_sets(2048)   # the command draws 2,000 calibration images
    monkeypatch.setattr(D, "load_split", lambda name: train_set if name == "train" else val_set)
    monkeypatch.setattr(T, "train", lambda *a, **k: pytest.fail("training started"))
    assert main(["train", "--out", str(tmp_path / "run"), "--no-progress", *argv]) == 2
    assert re.search(message, capsys.readouterr().err)


def _saved_payload(tmp_path) -> dict:
    torch.manual_seed(0)
    return torch.load(save_supernet(Supernet(SPACE), tmp_path / "good.pt"), weights_only=True)


@pytest.mark.parametrize("change, message", [
    (lambda p: p["space"].update(colour="red"), r"bad.pt: field 'space': unknown fields \['colour'\]"),
    (lambda p: p.update(space=[1, 2]), r"bad.pt: field 'space' must be an object of search-space fields, got list"),
    (lambda p: p["space"].pop("depths"), r"bad.pt: field 'space': missing fields \['depths'\]"),
    (lambda p: p["state_dict"].update({"classifier.weight": 3}),
     r"bad.pt: field 'state_dict' holds entries that are not named tensors: \['classifier.weight'\]"),
    (lambda p: p.update(state_dict=[1]), r"bad.pt: field 'state_dict' must map names to tensors, got list"),
])
def test_load_supernet_file_names_the_file_and_the_bad_field(tmp_path, change, message):
    payload = _saved_payload(tmp_path)
    change(payload)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=message):
        load_supernet_file(tmp_path / "bad.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_refusing_pickled_code_never_suggests_weights_only_false(tmp_path):
    torch.save({"space": {}, "state_dict": {}, "evil": _Payload(tmp_path / "executed")}, tmp_path / "zip.pt")
    with pytest.raises(ValueError) as info:
        load_supernet_file(tmp_path / "zip.pt")
    assert "weights_only" not in str(info.value) and "zip.pt" in str(info.value)


class _Killed(BaseException):
    """Stands for a kill in the middle of a write (not an Exception: nothing may catch it)."""


def test_a_killed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from ofa_engine.training import checkpoint as C
    path = C.save_checkpoint({"state": {"phase": 0}, "recipe": H.tiny_recipe().to_dict()}, tmp_path / "checkpoint.pt")
    before = path.read_bytes()
    real_save = torch.save

    def save_then_die(obj, f, *args, **kwargs):
        real_save({"half": "written"}, f)
        raise _Killed

    monkeypatch.setattr(torch, "save", save_then_die)
    with pytest.raises(_Killed):
        C.save_checkpoint({"state": {"phase": 1}, "recipe": H.tiny_recipe().to_dict()}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    assert C.load_checkpoint(path)["state"] == {"phase": 0}
