"""Progressive shrinking with knowledge distillation: resumable, and DDP under torchrun.

Phases run in order, each starting from the previous one's weights: the full network (which
then becomes the frozen teacher), then phases that make more of the network elastic (for
MobileNetV3: kernel, depth, expand ratio and width). What a phase's lists mean, how subnets
are drawn from them and how channels are sorted is the family's (its `TrainingHooks`).
Every step draws one resolution for the batch and several subnets from the phase's choices;
their losses are summed into one backward pass (`SubnetsLoss`).

Checkpoints hold weights, optimizer, phase, epoch, step and every RNG state, so `resume=True`
continues exactly where the last checkpoint left off (`checkpoint.py`).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..datasets.images import ImageSet
from ..families import family_of
from ..runtime.evaluation import accuracy, calibrate_bn
from ..runtime.preprocess import preprocess
from .checkpoint import load_checkpoint, load_supernet_file, save_checkpoint, save_supernet, trim_log
from .distributed import (DistributedEnv, barrier, gather_rng_states, init_distributed, record_rank_weights,
                          sync_buffers)
from .loss import SubnetsLoss
from .optim import augment, lr_at, param_groups
from .recipe import Phase, Recipe, check_recipe, extends
from .sampling import step_configs

__all__ = ["train"]


@dataclass
class _Run:
    """What a run carries from step to step (and what its checkpoint holds)."""

    space: Any                          # the family's space object
    recipe: Recipe
    env: DistributedEnv
    out_dir: Path
    model: nn.Module                    # the family's supernet
    teacher_state: dict[str, torch.Tensor] | None
    state: dict[str, Any]               # phase, epoch, step, elapsed_s (and init_from)
    arch_rng: np.random.Generator       # resolutions and subnets: the same on every rank
    aug_gen: torch.Generator            # augmentation: one stream per rank
    optimizer_state: dict | None = None  # of a resumed mid-phase checkpoint, until it is used
    steps_per_epoch: int = 0
    t_start: float = 0.0
    fresh: bool = True                  # a new run (not resumed from a checkpoint)
    family: Any = None                  # the space's NetworkFamily
    hooks: Any = None                   # ... and its TrainingHooks
    max_steps: int | None = None         # optimizer steps this call may run
    steps_done: int = 0

    @property
    def ckpt_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    @property
    def log_path(self) -> Path:
        return self.out_dir / "log.jsonl"


def train(space: Any, recipe: Recipe, train_set: ImageSet, val_set: ImageSet, calib_set: ImageSet,
          out_dir: str | Path, resume: bool = False, max_steps: int | None = None,
          progress: bool = True, init_from: str | Path | None = None) -> Path:
    """Run (or resume) the recipe; returns the path of the final supernet file.

    `max_steps` stops after that many optimizer steps in this call (for tests and time-boxed runs)
    after writing a checkpoint. `init_from`: a supernet file holding the recipe's first phase
    (the full network, e.g. another run's `phase-00-full.pt`): the run starts at the second phase
    with those weights as the network and the teacher, so a new elastic schedule does not train
    the teacher again. Its random streams then differ from a run that trained the first phase.
    """
    run = _start(space, recipe, Path(out_dir), resume, init_from)
    n = len(train_set)
    run.steps_per_epoch = n // run.env.world // recipe.batch_size
    if run.steps_per_epoch < 1:
        raise ValueError(f"{n} training images are too few for batch size {recipe.batch_size} "
                         f"on {run.env.world} process(es)")
    _check_phases(run)
    _make_folder(run)   # only now: a run refused at its start leaves no folder behind
    images = torch.from_numpy(train_set.images)
    if images.dim() == 3:
        images = images.unsqueeze(1)
    labels = torch.from_numpy(train_set.labels)
    val_eval = val_set.subset(np.arange(min(len(val_set), recipe.eval_images)))
    run.t_start = time.time() - run.state["elapsed_s"]
    run.max_steps = max_steps

    while run.state["phase"] < len(recipe.phases):
        phase = recipe.phases[run.state["phase"]]
        if _train_phase(run, phase, images, labels, calib_set, val_eval, progress):
            return run.out_dir / "supernet.pt"    # stopped by max_steps, after a checkpoint
        _finish_phase(run, phase)

    final = run.out_dir / "supernet.pt"
    record_rank_weights(run.model, run.env, run.out_dir)
    if run.env.main:
        save_supernet(run.model, final, extra={"recipe": recipe.to_dict(),
                                               "train_seconds": round(time.time() - run.t_start, 1)})
    barrier(run.env)
    return final


# ---------------------------------------------------------------------- start and checkpoints
def _start(space: Any, recipe: Recipe, out_dir: Path, resume: bool,
           init_from: str | Path | None) -> _Run:
    """A fresh run, or the state of the checkpoint in `out_dir` when resuming."""
    family = family_of(space, fast=False)
    check_recipe(space, recipe)
    env = init_distributed()
    torch.manual_seed(recipe.seed)
    model = family.build_supernet()
    model.to(env.device, memory_format=torch.channels_last)
    run = _Run(space, recipe, env, out_dir, model, teacher_state=None,
               state={"phase": 0, "epoch": 0, "step": 0, "elapsed_s": 0.0},
               arch_rng=np.random.default_rng(recipe.seed),
               aug_gen=torch.Generator().manual_seed(recipe.seed * 1009 + env.rank),
               family=family, hooks=family.training())
    if resume and run.ckpt_path.exists():
        if init_from is not None:
            raise ValueError(f"{run.ckpt_path} exists: --resume continues that run (started with or without "
                             f"--init-from); leave --init-from out, or start a new --out folder")
        _restore(run, load_checkpoint(run.ckpt_path))
        run.fresh = False
    elif init_from is not None:
        run.teacher_state = _initial_teacher(space, recipe, init_from)
        model.load_state_dict(run.teacher_state)
        run.state["phase"], run.state["init_from"] = 1, str(init_from)
    return run


def _check_phases(run: _Run) -> None:
    """The checks each phase makes when it starts, made before the run writes anything."""
    phases = run.recipe.phases[run.state["phase"]:]
    for phase in phases:
        _in_place(run.recipe, phase)
        if phase.distill_from == "file":
            _load_teacher_file(run, phase)
    first = phases[0] if phases else None
    if (first is not None and first.distill and first.distill_from == "teacher"
            and not _in_place(run.recipe, first) and run.teacher_state is None):
        raise _no_teacher_error(first)


def _make_folder(run: _Run) -> None:
    """The run folder of a fresh run (an old log in it removed); a resumed run trims its log."""
    if not run.env.main:
        return
    if run.fresh:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        if run.log_path.exists():
            run.log_path.unlink()
    else:
        trim_log(run.log_path, run.recipe, run.state)


def _restore(run: _Run, ckpt: dict[str, Any]) -> None:
    if not extends(ckpt["recipe"], run.recipe):
        raise ValueError(f"{run.ckpt_path} was written by a different recipe; resume with the same one "
                         f"(or one that only appends phases to it), or start a new --out folder")
    env = run.env
    run.model.load_state_dict(ckpt["model"])
    run.teacher_state = ckpt["teacher"]
    run.state = ckpt["state"]
    run.arch_rng.bit_generator.state = ckpt["arch_rng"]
    run.aug_gen.set_state(ckpt["aug_rng"][env.rank] if env.rank < len(ckpt["aug_rng"]) else ckpt["aug_rng"][0])
    torch.set_rng_state(ckpt["torch_rng"])
    if ckpt.get("cuda_rng") is not None and env.device.type == "cuda":
        torch.cuda.set_rng_state(ckpt["cuda_rng"], env.device)
    run.optimizer_state = ckpt["optimizer"]


def _initial_teacher(space: Any, recipe: Recipe, path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of `path` (a supernet file) standing for the recipe's first phase."""
    first = recipe.phases[0]
    if first.distill or first.fixed_config is not None or len(recipe.phases) < 2:
        raise ValueError(f"--init-from replaces the recipe's first phase, which must train the full network "
                         f"(distill false, no fixed_config) and be followed by other phases; this recipe's "
                         f"first phase is '{first.name}' of {len(recipe.phases)}")
    net = load_supernet_file(path)
    if net.space != space:
        raise ValueError(f"--init-from {path} holds a supernet of space '{net.space.name}' with other "
                         f"dimensions than the run's space '{space.name}'; allowed: a supernet of the same space")
    return copy.deepcopy(net.state_dict())


def _checkpoint(run: _Run, optimizer: torch.optim.Optimizer | None) -> None:
    """Every rank's augmentation RNG gathered, then rank 0 writes the checkpoint."""
    rng_states = gather_rng_states(run.env, run.aug_gen.get_state())
    if not run.env.main:
        return
    state = run.state
    state["elapsed_s"] = time.time() - run.t_start
    device = run.env.device
    save_checkpoint({"recipe": run.recipe.to_dict(), "family": run.family.family, "space": run.space.to_dict(),
                     "model": run.model.state_dict(), "teacher": run.teacher_state,
                     "optimizer": optimizer.state_dict() if optimizer is not None else None,
                     "state": dict(state),
                     "scheduler": {"step": state["epoch"] * run.steps_per_epoch + state["step"]},
                     "arch_rng": run.arch_rng.bit_generator.state, "aug_rng": rng_states,
                     "torch_rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                    run.ckpt_path)


# ---------------------------------------------------------------------- one phase
def _in_place(recipe: Recipe, phase: Phase) -> bool:
    """Whether the phase distils from its largest subnet (checked to be in every step)."""
    in_place = phase.distill and phase.distill_from == "largest" and not phase.fixed_config
    if in_place and not (recipe.sandwich_largest and phase.subnets_per_step >= 3):
        raise ValueError(f"phase '{phase.name}': distill_from 'largest' needs the largest subnet in "
                         f"every step: set the recipe's sandwich_largest to true and subnets_per_step "
                         f">= 3 (it is {phase.subnets_per_step})")
    return in_place


def _no_teacher_error(phase: Phase) -> ValueError:
    return ValueError(f"phase '{phase.name}' distils from the full network, but no earlier "
                      f"phase trained it; put a phase with distill=false first")


def _frozen_teacher(run: _Run, phase: Phase) -> nn.Module:
    """The full network of the first phase, extracted and frozen."""
    if run.teacher_state is None:
        raise _no_teacher_error(phase)
    # Building modules draws initial weights from the global RNG, which also drives dropout:
    # fork it so that a resumed phase sees the same random stream.
    with torch.random.fork_rng(devices=[]):
        t_net = run.family.build_supernet()
        t_net.load_state_dict(run.teacher_state)
        return t_net.extract(run.space.largest()).to(run.env.device, memory_format=torch.channels_last).eval()


class _FileTeacher:
    """The largest subnet of another trained supernet (`Phase.teacher_file`), frozen: it sees
    the step's raw images through its own space's preprocessing and resolution, so a CNN can
    teach a Transformer (DeiT's distillation through a convnet teacher)."""

    def __init__(self, module: nn.Module, space: Any, image_size: int, device: torch.device):
        self.module, self.space, self.image_size, self.device = module, space, image_size, device

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        x = preprocess(raw, self.space, self.image_size).to(self.device, memory_format=torch.channels_last)
        return self.module(x)


def _load_teacher_file(run: _Run, phase: Phase) -> nn.Module:
    """The supernet of the phase's `teacher_file`, checked: it exists and has the run's classes
    and input channels (`ValueError` naming the phase, the file and what is allowed)."""
    where = f"phase {phase.name!r}: teacher_file {phase.teacher_file}"
    if not Path(phase.teacher_file).is_file():
        raise ValueError(f"{where} does not exist; allowed: a supernet file (e.g. a package's supernet.pt)")
    with torch.random.fork_rng(devices=[]):   # building modules draws from the global RNG
        try:
            net = load_supernet_file(phase.teacher_file)
        except ValueError as exc:
            raise ValueError(f"phase {phase.name!r}: teacher_file: {exc}") from None
    for attr in ("num_classes", "in_channels"):
        if getattr(net.space, attr) != getattr(run.space, attr):
            raise ValueError(f"{where} has {attr} {getattr(net.space, attr)}, the run's space "
                             f"'{run.space.name}' {getattr(run.space, attr)}; allowed: a supernet of the same "
                             f"{attr}")
    return net


def _file_teacher(run: _Run, phase: Phase, calib_set: ImageSet) -> _FileTeacher:
    """The largest subnet of the phase's `teacher_file`, BN-recalibrated on `calib_set`, frozen."""
    net = _load_teacher_file(run, phase)
    cfg = net.space.largest()
    with torch.random.fork_rng(devices=[]):   # extracting and calibrating draw too (dropout)
        sub = calibrate_bn(net.extract(cfg), calib_set.images, net.space)
    for p in sub.parameters():
        p.requires_grad_(False)
    return _FileTeacher(sub.to(run.env.device, memory_format=torch.channels_last).eval(), net.space,
                        cfg.image_size, run.env.device)


def _train_phase(run: _Run, phase: Phase, images: torch.Tensor, labels: torch.Tensor, calib_set: ImageSet,
                 val_eval: ImageSet, progress: bool) -> bool:
    """Train (the rest of) `phase`; True when `max_steps` stopped the run."""
    recipe, env, state = run.recipe, run.env, run.state
    total_steps = max(1, round(phase.epochs * run.steps_per_epoch))
    n_epochs = math.ceil(total_steps / run.steps_per_epoch)
    if state["epoch"] == 0 and state["step"] == 0 and phase.sort_channels:
        # Reorder channels by importance before a phase that starts to shrink them.
        run.hooks.reorganize(run.model, phase.sort_channels)
    in_place = _in_place(recipe, phase)
    if phase.distill and phase.distill_from == "file":
        teacher = _file_teacher(run, phase, calib_set)
    else:
        teacher = _frozen_teacher(run, phase) if phase.distill and not in_place else None

    loss_module = SubnetsLoss(run.model, recipe.label_smoothing, recipe.kd_ratio)
    runner = loss_module
    if env.world > 1:
        runner = nn.parallel.DistributedDataParallel(loss_module, find_unused_parameters=True)
    optimizer = _optimizer(recipe, param_groups(run.model, recipe.weight_decay), phase.lr)
    if run.optimizer_state is not None:
        optimizer.load_state_dict(run.optimizer_state)
        run.optimizer_state = None
    run.model.train()
    steps = _PhaseSteps(run, phase, runner, optimizer, teacher, in_place, total_steps)

    while state["epoch"] < n_epochs:
        epoch = state["epoch"]
        perm = torch.from_numpy(np.random.default_rng([recipe.seed, state["phase"], epoch]).permutation(len(images)))
        shard = perm[env.rank::env.world]
        last_step = min(run.steps_per_epoch, total_steps - epoch * run.steps_per_epoch)
        losses, seen, t_epoch = [], 0, time.time()
        bar = tqdm(total=last_step, initial=state["step"], desc=f"{phase.name} {epoch + 1}/{n_epochs}",
                   disable=not (progress and env.main), mininterval=5, leave=False)
        while state["step"] < last_step:
            idx = shard[state["step"] * recipe.batch_size:(state["step"] + 1) * recipe.batch_size]
            losses.append(steps.step(images[idx], labels[idx]))
            seen += len(idx)
            state["step"] += 1
            bar.update(1)
            run.steps_done += 1
            stop = run.max_steps is not None and run.steps_done >= run.max_steps
            if stop or state["step"] % recipe.checkpoint_every == 0:
                _checkpoint(run, optimizer)
            if stop:
                bar.close()
                return True
        bar.close()
        images_per_s = seen * env.world / max(1e-9, time.time() - t_epoch)
        state["epoch"] += 1
        state["step"] = 0
        if env.main:
            _log_epoch(run, phase, epoch, n_epochs, losses, steps.lr, images_per_s, calib_set, val_eval, progress)
        _checkpoint(run, optimizer)
    return False


def _optimizer(recipe: Recipe, groups: list[dict], lr: float) -> torch.optim.Optimizer:
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    return torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum, nesterov=True)


class _PhaseSteps:
    """The optimizer steps of one phase: draw the resolution and subnets, augment, step."""

    def __init__(self, run: _Run, phase: Phase, runner: nn.Module, optimizer: torch.optim.Optimizer,
                 teacher: nn.Module | _FileTeacher | None, in_place: bool, total_steps: int):
        self.run, self.phase, self.runner, self.optimizer = run, phase, runner, optimizer
        self.teacher, self.in_place, self.total_steps = teacher, in_place, total_steps
        self.choices = run.hooks.phase_choices(phase.elastic_choices(), f"phase {phase.name!r}")
        self.fixed = run.space.validate(phase.fixed_config) if phase.fixed_config else None
        self.lr = phase.lr

    def _configs(self, image_size: int) -> tuple[list[Any], list[float] | None, int | None]:
        """The step's subnets, their loss weights and the in-place teacher's index."""
        run, phase = self.run, self.phase
        if self.fixed is not None:
            configs = [run.family.config_from_dict({**self.fixed.to_dict(), "image_size": image_size})]
        else:
            configs = step_configs(run.space, run.recipe, phase, self.choices, run.arch_rng, image_size, run.hooks)
        weights, teacher_index = None, None
        if phase.largest_weight != 1.0 or self.in_place:
            largest = run.hooks.sample(self.choices, run.arch_rng, image_size, largest=True)  # draws nothing
            if phase.largest_weight != 1.0:
                weights = [phase.largest_weight if c == largest else 1.0 for c in configs]
            if self.in_place:
                teacher_index = configs.index(largest)
        return configs, weights, teacher_index

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer step on the raw uint8 batch `x`; returns its mean loss per subnet."""
        run, phase = self.run, self.phase
        space, env, state = run.space, run.env, run.state
        if run.recipe.augment:
            x = augment(x, run.aug_gen)
        raw = x
        image_size = int(run.arch_rng.choice(space.resolutions))
        x = preprocess(x, space, image_size).to(env.device, memory_format=torch.channels_last)
        y = y.to(env.device)
        configs, weights, teacher_index = self._configs(image_size)
        soft = None
        if self.teacher is not None:
            with torch.no_grad():
                soft = F.softmax(self.teacher(raw if isinstance(self.teacher, _FileTeacher) else x), 1)
        self.lr = lr_at(phase, state["epoch"] * run.steps_per_epoch + state["step"], self.total_steps,
                        run.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        loss = self.runner(x, y, configs, soft, weights, teacher_index)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()) / (sum(weights) if weights else len(configs))


def _evaluate(model: nn.Module, space: Any, cfg: Any, calib: ImageSet, val: ImageSet) -> float:
    with torch.random.fork_rng(devices=[]):  # only rank 0 evaluates: keep every rank's RNG in step
        sub = model.extract(cfg)
    calibrate_bn(sub, calib.images, space)
    return accuracy(sub, val.images, val.labels, space)


def _log_epoch(run: _Run, phase: Phase, epoch: int, n_epochs: int, losses: list[float], lr: float,
               images_per_s: float, calib_set: ImageSet, val_eval: ImageSet, progress: bool) -> None:
    """Append the epoch's record (loss, LR, accuracy of the phase's subnets) to log.jsonl."""
    model, space = run.model, run.space
    model.eval()
    if phase.fixed_config:
        accuracies = {"acc_config": _evaluate(model, space, space.validate(phase.fixed_config), calib_set, val_eval)}
    else:
        accuracies = {"acc_largest": _evaluate(model, space, space.largest(), calib_set, val_eval),
                      "acc_smallest": _evaluate(model, space, space.smallest(), calib_set, val_eval)}
    record = {"phase": phase.name, "epoch": epoch + 1, "epochs": n_epochs,
              "loss": float(np.mean(losses)) if losses else None, "lr": lr, **accuracies,
              "images_per_s": round(images_per_s, 1),
              "elapsed_s": round(time.time() - run.t_start, 1)}
    model.train()
    with open(run.log_path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    if progress:
        tqdm.write(json.dumps(record))


def _finish_phase(run: _Run, phase: Phase) -> None:
    """Sync the replicas, keep the teacher, write the phase's file and a between-phase checkpoint."""
    sync_buffers(run.model, run.env)
    if phase.name == "full" or run.teacher_state is None:
        run.teacher_state = copy.deepcopy(run.model.state_dict())
    if run.env.main:
        save_supernet(run.model, run.out_dir / f"phase-{run.state['phase']:02d}-{phase.name}.pt")
    run.state["phase"] += 1
    run.state["epoch"] = 0
    run.state["step"] = 0
    _checkpoint(run, None)  # the next phase starts with a fresh optimizer
