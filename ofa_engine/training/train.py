"""Progressive shrinking with knowledge distillation: resumable, and DDP under torchrun.

Phases run in order, each starting from the previous one's weights: the full network (which
then becomes the frozen teacher), then elastic kernel, depth, expand ratio and width.
Every step draws one resolution for the batch and several subnets from the phase's choices;
their losses are summed into one backward pass, which equals accumulating their gradients.

Checkpoints (atomic: temp file + rename) hold weights, optimizer, phase, epoch, step and every
RNG state, so `resume=True` continues exactly where the last checkpoint left off; they hold only
tensors and plain values and load with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..datasets.images import ImageSet
from ..runtime.evaluation import accuracy, calibrate_bn
from ..runtime.preprocess import preprocess
from ..families.mbv3.space import SearchSpace, SubnetConfig
from ..families.mbv3.supernet import Supernet

__all__ = ["Phase", "Recipe", "default_recipe", "twin_recipe", "train", "save_supernet", "load_supernet_file",
           "space_from_dict"]

CHECKPOINT_VERSION = 1


DISTILL_SOURCES = ("teacher", "largest")


@dataclass(frozen=True)
class Phase:
    """One progressive-shrinking phase. A choice list left as None means 'largest only'."""

    name: str
    epochs: float
    lr: float
    kernel_sizes: tuple[int, ...] | None = None
    depths: tuple[int, ...] | None = None
    expand_ratios: tuple[int, ...] | None = None
    widths: tuple[int, ...] | None = None       # indices into the space's width multipliers
    subnets_per_step: int = 1
    distill: bool = True
    sort_channels: str | None = None            # None, "middle:<expand_stage>" or "stage"
    warmup_epochs: float = 0.0
    # Train only this architecture (a config dict; the resolution is still drawn per batch, as
    # in the full phase): the from-scratch twin of an extracted subnet.
    fixed_config: dict | None = None
    # Loss weight of the phase's largest subnet in each step (the others weigh 1): above 1, the
    # shared weights lean towards the largest subnet, which weight sharing otherwise pulls down.
    largest_weight: float = 1.0
    # Whom the subnets distil from: "teacher", the frozen full network of the first phase (OFA),
    # or "largest", the phase's largest subnet in the same step, its logits detached (BigNAS's
    # in-place distillation: the teacher moves with the shared weights; the largest subnet
    # itself learns from the labels only). "largest" needs the largest subnet in every step:
    # the recipe's sandwich_largest and at least 3 subnets per step.
    distill_from: str = "teacher"

    def __post_init__(self) -> None:
        if self.distill_from not in DISTILL_SOURCES:
            raise ValueError(f"phase '{self.name}': distill_from = {self.distill_from!r}; allowed: "
                             f"{', '.join(repr(s) for s in DISTILL_SOURCES)}")
        w = self.largest_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise ValueError(f"phase '{self.name}': largest_weight = {w!r}; allowed: a finite number > 0 "
                             f"(1 = the largest subnet weighs as much as the others)")


@dataclass(frozen=True)
class Recipe:
    phases: tuple[Phase, ...]
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 3e-5
    label_smoothing: float = 0.1
    kd_ratio: float = 1.0
    sandwich: bool = True          # the smallest subnet of the phase is one of each step's subnets
    sandwich_largest: bool = False  # ... and the largest too (BigNAS's full sandwich rule)
    augment: bool = True           # random 2-pixel shifts and horizontal flips
    seed: int = 0
    eval_images: int = 2000        # validation images for the per-epoch log
    checkpoint_every: int = 50     # steps between mid-epoch checkpoints

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown recipe fields {unknown}; allowed: {sorted(known)}")
        phase_fields = {f.name for f in dataclasses.fields(Phase)}
        phases = []
        for p in data.get("phases", []):
            bad = sorted(set(p) - phase_fields)
            if bad:
                raise ValueError(f"unknown phase fields {bad}; allowed: {sorted(phase_fields)}")
            p = {k: tuple(v) if isinstance(v, list) else v for k, v in p.items()}
            if p.get("fixed_config") is not None:
                p["fixed_config"] = SubnetConfig.from_dict(p["fixed_config"]).to_dict()
            try:
                phases.append(Phase(**p))
            except TypeError as exc:  # a required field (name, epochs, lr) is missing
                raise ValueError(f"phase {p.get('name', len(phases))!r}: {exc}; required: name, epochs, lr") from None
        if not phases:
            raise ValueError("a recipe needs at least one phase")
        return cls(**{**data, "phases": tuple(phases)})

    def scaled(self, epoch_scale: float) -> "Recipe":
        return dataclasses.replace(self, phases=tuple(
            dataclasses.replace(p, epochs=p.epochs * epoch_scale) for p in self.phases))


def twin_recipe(space: SearchSpace, cfg: SubnetConfig, base: Recipe | None = None) -> Recipe:
    """The from-scratch baseline for `cfg`: the full-network phase of `base` (same epochs, LR,
    schedule, augmentation, resolution drawn per batch) training only `cfg`'s architecture."""
    base = base or default_recipe(space)
    full = base.phases[0]
    return dataclasses.replace(base, phases=(dataclasses.replace(
        full, name="scratch", distill=False, fixed_config=space.validate(cfg).to_dict()),))


def default_recipe(space: SearchSpace) -> Recipe:
    """Our recipe (ANCHORS.md's schedule, shortened to fit 2 CPU cores; docs/training.md).

    Version 2 (2026-11-28), after the first bundled run (docs/recipes/2026-11-27-short.json)
    missed its targets: the full network trains 3x longer (it was still improving), every
    elastic phase gets more epochs at about a third of the LR (OFA's elastic phases also run at
    a fraction of the teacher's LR), each step trains the phase's smallest and largest subnets
    plus one at random (BigNAS's sandwich rule, so the largest keeps the teacher's accuracy), and
    the width phase, the only one that trains the narrowest subnets, is the longest."""
    ks, ds, es = space.kernel_sizes, space.depths, space.expand_ratios
    es_desc = sorted(es, reverse=True)
    all_w = tuple(range(len(space.width_mults)))
    full = dict(kernel_sizes=ks, depths=ds)
    phases = [
        Phase("full", epochs=30, lr=0.1, distill=False, warmup_epochs=0.5),
        Phase("kernel", epochs=4, lr=0.01, kernel_sizes=ks, subnets_per_step=3),
        Phase("depth", epochs=4, lr=0.008, subnets_per_step=3, **full),
    ]
    for stage in range(1, len(es)):
        phases.append(Phase(f"expand-{stage}", epochs=3 if stage < len(es) - 1 else 4, lr=0.008,
                            expand_ratios=tuple(sorted(es_desc[:stage + 1])), subnets_per_step=3,
                            sort_channels=f"middle:{stage - 1}", **full))
    if len(all_w) > 1:
        phases.append(Phase("width", epochs=10, lr=0.01, expand_ratios=es, widths=all_w,
                            subnets_per_step=3, sort_channels="stage", **full))
    # Version 3: everything elastic for 15 more epochs, the largest subnet's loss weighted 2x
    # (the narrowest subnets were still rising at the end of the width phase, and the largest
    # had lost 1.2 points to weight sharing).
    widths = all_w if len(all_w) > 1 else None
    phases.append(Phase("all", epochs=15, lr=0.01, expand_ratios=es, widths=widths,
                        subnets_per_step=3, largest_weight=2.0, **full))
    # Version 4: two more phases of everything elastic. A higher LR (all-2, largest 3x) lifted
    # the small subnets; a low LR with the largest weighted 6x (all-3) then lifted the largest
    # without costing the rest (docs/training.md, "The bundled run").
    phases.append(Phase("all-2", epochs=20, lr=0.015, expand_ratios=es, widths=widths,
                        subnets_per_step=3, largest_weight=3.0, **full))
    phases.append(Phase("all-3", epochs=12, lr=0.005, expand_ratios=es, widths=widths,
                        subnets_per_step=3, largest_weight=6.0, **full))
    # Version 5: one more phase with in-place distillation (BigNAS): the step's largest subnet
    # learns from the labels and teaches the others, instead of the frozen full network (it
    # lifted the largest by 1.2 points, the smallest by 0.7 and every random subnet measured;
    # docs/training.md, "The bundled run").
    phases.append(Phase("all-inplace", epochs=12, lr=0.01, expand_ratios=es, widths=widths,
                        subnets_per_step=3, largest_weight=4.0, distill_from="largest", **full))
    # Version 6: a second in-place phase at all-2's higher LR (it lifted the smallest by 0.3
    # points, the medium twin's architecture by 0.3 and every random subnet measured, without
    # costing the largest; docs/training.md, "The bundled run").
    phases.append(Phase("all-inplace-2", epochs=10, lr=0.015, expand_ratios=es, widths=widths,
                        subnets_per_step=3, largest_weight=4.0, distill_from="largest", **full))
    # Version 7: a third in-place phase, as all-inplace-2 but with two random subnets per step
    # (four in all): the mid-sized subnets are trained only by the random draw, and a third
    # phase with one draw had stopped lifting them. It lifted the medium twin's architecture by
    # 0.35 points (closing its gap), every random subnet measured (+0.11 to +0.86) and the
    # largest and smallest a little (docs/training.md, "The bundled run").
    phases.append(Phase("all-inplace-4sub", epochs=10, lr=0.015, expand_ratios=es, widths=widths,
                        subnets_per_step=4, largest_weight=4.0, distill_from="largest", **full))
    return Recipe(phases=tuple(phases), sandwich_largest=True)


# ---------------------------------------------------------------------- supernet files
def space_from_dict(data: dict[str, Any]) -> SearchSpace:
    return SearchSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def save_supernet(supernet: Supernet, path: str | Path, half: bool = False,
                  extra: dict[str, Any] | None = None) -> Path:
    """Weights + the space definition, atomically; loads with weights_only=True."""
    state = {k: (v.half() if half and v.is_floating_point() else v).clone()
             for k, v in supernet.state_dict().items()}
    payload = {"format": "ofa_engine.families.mbv3.supernet", "version": 1, "space": supernet.space.to_dict(),
               "state_dict": state, "extra": extra or {}}
    return _atomic_save(payload, Path(path))


def load_supernet_file(path: str | Path) -> Supernet:
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"supernet file {path} does not exist") from None
    except Exception as exc:  # corrupt or hostile files never execute: weights_only refuses code
        first_line = (str(exc).splitlines() or ["(no message)"])[0][:200]  # EOFError of an empty file has none
        raise ValueError(f"{path} is not a readable supernet file ({type(exc).__name__}: {first_line})") from None
    if not isinstance(payload, dict) or "state_dict" not in payload or "space" not in payload:
        raise ValueError(f"{path} is not an ofa_engine supernet file (expected keys 'space' and 'state_dict')")
    net = Supernet(space_from_dict(payload["space"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit space '{net.space.name}': "
                         f"{str(exc).splitlines()[0][:300]}") from None
    return net.eval()


def _atomic_save(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------- distributed
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed() -> _Dist:
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return _Dist(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    use_cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cpu")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return _Dist(rank, world, device)


class _SubnetsLoss(nn.Module):
    """Summed loss of several subnets on one batch: a single forward for DDP."""

    def __init__(self, supernet: Supernet, label_smoothing: float, kd_ratio: float):
        super().__init__()
        self.supernet = supernet
        self.label_smoothing, self.kd_ratio = label_smoothing, kd_ratio

    def forward(self, x, y, configs: list[SubnetConfig], soft_targets: torch.Tensor | None,
                weights: list[float] | None = None, teacher_index: int | None = None):
        """`teacher_index`: in-place distillation; configs[teacher_index] runs first, learns from
        the labels only, and its detached softmax is the soft target of the others."""
        total = x.new_zeros(())
        order = list(range(len(configs)))
        if teacher_index is not None:
            order.insert(0, order.pop(teacher_index))
        for i in order:
            logits = self.supernet(x, configs[i])
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
            if i == teacher_index:
                soft_targets = F.softmax(logits.detach(), 1)
            elif soft_targets is not None:
                loss = loss + self.kd_ratio * torch.sum(-soft_targets * F.log_softmax(logits, 1), 1).mean()
            total = total + (loss if weights is None else weights[i] * loss)
        return total


# ---------------------------------------------------------------------- training
def _phase_choices(space: SearchSpace, phase: Phase) -> dict[str, tuple[int, ...]]:
    return {"ks": phase.kernel_sizes or (max(space.kernel_sizes),),
            "e": phase.expand_ratios or (max(space.expand_ratios),),
            "d": phase.depths or (max(space.depths),),
            "wid": phase.widths or (len(space.width_mults) - 1,)}


def _sample(space: SearchSpace, choices, rng: np.random.Generator, image_size: int,
            smallest: bool = False, largest: bool = False) -> SubnetConfig:
    if smallest or largest:
        pick = {k: (min if smallest else max)(v) for k, v in choices.items()}
        return SubnetConfig(pick["wid"], [pick["ks"]] * space.num_slots, [pick["e"]] * space.num_slots,
                            [pick["d"]] * space.num_stages, image_size)
    return SubnetConfig(int(rng.choice(choices["wid"])), rng.choice(choices["ks"], space.num_slots).tolist(),
                        rng.choice(choices["e"], space.num_slots).tolist(),
                        rng.choice(choices["d"], space.num_stages).tolist(), image_size)


def _step_configs(space: SearchSpace, recipe: Recipe, phase: Phase, choices,
                  rng: np.random.Generator, image_size: int) -> list[SubnetConfig]:
    """The subnets of one step: the phase's smallest (and largest) first when the recipe's
    sandwich rule asks for them and the step has room, the rest drawn at random."""
    n = phase.subnets_per_step
    fixed = []
    if recipe.sandwich and n > 1:
        fixed.append(_sample(space, choices, rng, image_size, smallest=True))
    if recipe.sandwich_largest and n > 1 and n > len(fixed) + (1 if n > 2 else 0):
        fixed.append(_sample(space, choices, rng, image_size, largest=True))
    return fixed + [_sample(space, choices, rng, image_size) for _ in range(n - len(fixed))]


def _augment(images: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random shifts up to `pad` pixels (zero padding) and horizontal flips, uint8 (N,C,H,W)."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (oy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, None, :]
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None],
                 rows, cols]
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def _param_groups(model: nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.dim() == 1 else decay).append(p)  # no decay on BN and biases, as OFA
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr(phase: Phase, step: int, total: int, steps_per_epoch: int) -> float:
    warm = int(phase.warmup_epochs * steps_per_epoch)
    if step < warm:
        return phase.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return 0.5 * phase.lr * (1 + math.cos(math.pi * t))


def _evaluate(model: Supernet, space: SearchSpace, cfg: SubnetConfig, calib: ImageSet, val: ImageSet) -> float:
    with torch.random.fork_rng(devices=[]):  # only rank 0 evaluates: keep every rank's RNG in step
        sub = model.extract(cfg)
    calibrate_bn(sub, calib.images, space)
    return accuracy(sub, val.images, val.labels, space)


def train(space: SearchSpace, recipe: Recipe, train_set: ImageSet, val_set: ImageSet, calib_set: ImageSet,
          out_dir: str | Path, resume: bool = False, max_steps: int | None = None,
          progress: bool = True, init_from: str | Path | None = None) -> Path:
    """Run (or resume) the recipe; returns the path of the final supernet file.

    `max_steps` stops after that many optimizer steps in this call (for tests and time-boxed runs)
    after writing a checkpoint. `init_from`: a supernet file holding the recipe's first phase
    (the full network, e.g. another run's `phase-00-full.pt`): the run starts at the second phase
    with those weights as the network and the teacher, so a new elastic schedule does not train
    the teacher again. Its random streams then differ from a run that trained the first phase.
    """
    out_dir = Path(out_dir)
    env = _init_distributed()
    ckpt_path = out_dir / "checkpoint.pt"
    log_path = out_dir / "log.jsonl"
    torch.manual_seed(recipe.seed)

    model = Supernet(space)
    model.to(env.device, memory_format=torch.channels_last)
    teacher_state = None
    state: dict[str, Any] = {"phase": 0, "epoch": 0, "step": 0, "elapsed_s": 0.0}
    arch_rng = np.random.default_rng(recipe.seed)
    aug_gen = torch.Generator().manual_seed(recipe.seed * 1009 + env.rank)
    optimizer_state = None

    if resume and ckpt_path.exists():
        if init_from is not None:
            raise ValueError(f"{ckpt_path} exists: --resume continues that run (started with or without "
                             f"--init-from); leave --init-from out, or start a new --out folder")
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, corrupt or not ours; weights_only never runs code
            raise ValueError(f"{ckpt_path} cannot be resumed from ({type(exc).__name__}); delete it to "
                             f"restart the run, or train into a new --out folder") from None
        if not isinstance(ckpt, dict) or "recipe" not in ckpt or "state" not in ckpt:
            raise ValueError(f"{ckpt_path} is not a training checkpoint of ofa_engine")
        if not _extends(Recipe.from_dict(ckpt["recipe"]), recipe):
            raise ValueError(f"{ckpt_path} was written by a different recipe; resume with the same one "
                             f"(or one that only appends phases to it), or start a new --out folder")
        model.load_state_dict(ckpt["model"])
        teacher_state = ckpt["teacher"]
        state = ckpt["state"]
        arch_rng.bit_generator.state = ckpt["arch_rng"]
        aug_gen.set_state(ckpt["aug_rng"][env.rank] if env.rank < len(ckpt["aug_rng"]) else ckpt["aug_rng"][0])
        torch.set_rng_state(ckpt["torch_rng"])
        if ckpt.get("cuda_rng") is not None and env.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["cuda_rng"], env.device)
        optimizer_state = ckpt["optimizer"]
        if env.main:
            _trim_log(log_path, recipe, state)
    else:
        if init_from is not None:
            teacher_state = _initial_teacher(space, recipe, init_from)
            model.load_state_dict(teacher_state)
            state["phase"], state["init_from"] = 1, str(init_from)
        if env.main:
            out_dir.mkdir(parents=True, exist_ok=True)
            if log_path.exists():
                log_path.unlink()

    n = len(train_set)
    steps_per_epoch = n // env.world // recipe.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{n} training images are too few for batch size {recipe.batch_size} "
                         f"on {env.world} process(es)")
    images_all = torch.from_numpy(train_set.images)
    if images_all.dim() == 3:
        images_all = images_all.unsqueeze(1)
    labels_all = torch.from_numpy(train_set.labels)
    val_eval = val_set.subset(np.arange(min(len(val_set), recipe.eval_images)))
    steps_done = 0
    t_start = time.time() - state["elapsed_s"]

    def checkpoint(optimizer: torch.optim.Optimizer | None) -> None:
        rng_states = [aug_gen.get_state()]
        if env.world > 1:
            gathered = [torch.zeros_like(rng_states[0]) for _ in range(env.world)]
            dist.all_gather(gathered, rng_states[0])
            rng_states = gathered
        if env.main:
            state["elapsed_s"] = time.time() - t_start
            _atomic_save({"version": CHECKPOINT_VERSION, "recipe": recipe.to_dict(), "space": space.to_dict(),
                          "model": model.state_dict(), "teacher": teacher_state,
                          "optimizer": optimizer.state_dict() if optimizer is not None else None,
                          "state": dict(state),
                          "scheduler": {"step": state["epoch"] * steps_per_epoch + state["step"]},
                          "arch_rng": arch_rng.bit_generator.state, "aug_rng": rng_states,
                          "torch_rng": torch.get_rng_state(),
                          "cuda_rng": (torch.cuda.get_rng_state(env.device)
                                       if env.device.type == "cuda" else None)}, ckpt_path)

    while state["phase"] < len(recipe.phases):
        phase = recipe.phases[state["phase"]]
        choices = _phase_choices(space, phase)
        total_steps = max(1, round(phase.epochs * steps_per_epoch))
        n_epochs = math.ceil(total_steps / steps_per_epoch)
        fresh_phase = state["epoch"] == 0 and state["step"] == 0
        if fresh_phase and phase.sort_channels:
            kind, _, arg = phase.sort_channels.partition(":")
            if kind == "middle":
                model.reorganize_channels(expand_stage=int(arg or 0), middle=True, stage=False)
            elif kind == "stage":
                model.reorganize_channels(middle=False, stage=True)
            else:
                raise ValueError(f"phase '{phase.name}': sort_channels must be 'middle:<stage>' or "
                                 f"'stage', got '{phase.sort_channels}'")
        teacher = None
        in_place = phase.distill and phase.distill_from == "largest" and not phase.fixed_config
        if in_place and not (recipe.sandwich_largest and phase.subnets_per_step >= 3):
            raise ValueError(f"phase '{phase.name}': distill_from 'largest' needs the largest subnet in "
                             f"every step: set the recipe's sandwich_largest to true and subnets_per_step "
                             f">= 3 (it is {phase.subnets_per_step})")
        if phase.distill and not in_place:
            if teacher_state is None:
                raise ValueError(f"phase '{phase.name}' distils from the full network, but no earlier "
                                 f"phase trained it; put a phase with distill=false first")
            # Building modules draws initial weights from the global RNG, which also drives
            # dropout: fork it so that a resumed phase sees the same random stream.
            with torch.random.fork_rng(devices=[]):
                t_net = Supernet(space)
                t_net.load_state_dict(teacher_state)
                teacher = t_net.extract(space.largest()).to(env.device, memory_format=torch.channels_last).eval()

        loss_module = _SubnetsLoss(model, recipe.label_smoothing, recipe.kd_ratio)
        runner = loss_module
        if env.world > 1:
            runner = nn.parallel.DistributedDataParallel(loss_module, find_unused_parameters=True)
        optimizer = torch.optim.SGD(_param_groups(model, recipe.weight_decay), lr=phase.lr,
                                    momentum=recipe.momentum, nesterov=True)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
            optimizer_state = None
        model.train()
        lr = phase.lr

        while state["epoch"] < n_epochs:
            epoch = state["epoch"]
            perm = torch.from_numpy(np.random.default_rng([recipe.seed, state["phase"], epoch]).permutation(n))
            shard = perm[env.rank::env.world]
            last_step = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
            losses, seen, t_epoch = [], 0, time.time()
            bar = tqdm(total=last_step, initial=state["step"], desc=f"{phase.name} {epoch + 1}/{n_epochs}",
                       disable=not (progress and env.main), mininterval=5, leave=False)
            while state["step"] < last_step:
                step = state["step"]
                idx = shard[step * recipe.batch_size:(step + 1) * recipe.batch_size]
                x = images_all[idx]
                if recipe.augment:
                    x = _augment(x, aug_gen)
                fixed = space.validate(phase.fixed_config) if phase.fixed_config else None
                image_size = int(arch_rng.choice(space.resolutions))
                x = preprocess(x, space, image_size).to(env.device, memory_format=torch.channels_last)
                y = labels_all[idx].to(env.device)
                configs = ([dataclasses.replace(fixed, image_size=image_size)] if fixed else
                           _step_configs(space, recipe, phase, choices, arch_rng, image_size))
                weights, teacher_index = None, None
                if phase.largest_weight != 1.0 or in_place:
                    largest = _sample(space, choices, arch_rng, image_size, largest=True)  # draws nothing
                    if phase.largest_weight != 1.0:
                        weights = [phase.largest_weight if c == largest else 1.0 for c in configs]
                    if in_place:
                        teacher_index = configs.index(largest)
                soft = None
                if teacher is not None:
                    with torch.no_grad():
                        soft = F.softmax(teacher(x), 1)
                lr = _lr(phase, epoch * steps_per_epoch + step, total_steps, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = runner(x, y, configs, soft, weights, teacher_index)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()) / (sum(weights) if weights else len(configs)))
                seen += len(idx)
                state["step"] += 1
                steps_done += 1
                bar.update(1)
                stop = max_steps is not None and steps_done >= max_steps
                if stop or state["step"] % recipe.checkpoint_every == 0:
                    checkpoint(optimizer)
                if stop:
                    bar.close()
                    return out_dir / "supernet.pt"
            bar.close()
            images_per_s = seen * env.world / max(1e-9, time.time() - t_epoch)
            state["epoch"] += 1
            state["step"] = 0
            if env.main:
                model.eval()
                record = {"phase": phase.name, "epoch": epoch + 1, "epochs": n_epochs,
                          "loss": float(np.mean(losses)) if losses else None, "lr": lr,
                          **({"acc_config": _evaluate(model, space, space.validate(phase.fixed_config),
                                                      calib_set, val_eval)} if phase.fixed_config else
                             {"acc_largest": _evaluate(model, space, space.largest(), calib_set, val_eval),
                              "acc_smallest": _evaluate(model, space, space.smallest(), calib_set, val_eval)}),
                          "images_per_s": round(images_per_s, 1),
                          "elapsed_s": round(time.time() - t_start, 1)}
                model.train()
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
                if progress:
                    tqdm.write(json.dumps(record))
            checkpoint(optimizer)

        # phase done
        if env.world > 1:
            # DDP keeps the parameters in sync, but each rank's BN running statistics follow its
            # own batches: take rank 0's (what gets saved), so that the teacher and the replicas agree.
            for buf in model.buffers():
                dist.broadcast(buf, 0)
        if phase.name == "full" or teacher_state is None:
            teacher_state = copy.deepcopy(model.state_dict())
        if env.main:
            save_supernet(model, out_dir / f"phase-{state['phase']:02d}-{phase.name}.pt")
        state["phase"] += 1
        state["epoch"] = 0
        state["step"] = 0
        checkpoint(None)  # the next phase starts with a fresh optimizer

    final = out_dir / "supernet.pt"
    _record_rank_weights(model, env, out_dir)
    if env.main:
        save_supernet(model, final, extra={"recipe": recipe.to_dict(),
                                           "train_seconds": round(time.time() - t_start, 1)})
    if env.world > 1:
        dist.barrier()
    return final


def _initial_teacher(space: SearchSpace, recipe: Recipe, path: str | Path) -> dict[str, torch.Tensor]:
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


def _extends(done: Recipe, recipe: Recipe) -> bool:
    """True if `recipe` is `done` itself or `done` with phases appended: a run may be resumed
    with it, and continuing a finished run gives the same weights as running `recipe` at once
    (the checkpoint between two phases holds the whole state)."""
    n = len(done.phases)
    return (dataclasses.replace(recipe, phases=recipe.phases[:n]) == done
            and len(recipe.phases) >= n)


def _trim_log(log_path: Path, recipe: Recipe, state: dict[str, Any]) -> None:
    """Drop log records of epochs the checkpoint does not include (written after it, before a
    kill): the resumed run writes them again."""
    if not log_path.exists():
        return
    order = {p.name: i for i, p in enumerate(recipe.phases)}
    kept = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        position = (order.get(record.get("phase"), len(order)), record.get("epoch", 0))
        if position <= (state["phase"], state["epoch"]):
            kept.append(line)
    tmp = log_path.with_name(f".{log_path.name}.tmp{os.getpid()}")
    tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
    os.replace(tmp, log_path)


def _record_rank_weights(model: nn.Module, env: _Dist, out_dir: Path) -> None:
    """Write every rank's weight digest to ranks.json (DDP keeps the replicas identical)."""
    import hashlib
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    mine = torch.tensor(list(digest.digest()), dtype=torch.int64)
    digests = [mine]
    if env.world > 1:
        digests = [torch.zeros_like(mine) for _ in range(env.world)]
        dist.all_gather(digests, mine)
    if env.main:
        hexes = [bytes(d.tolist()).hex() for d in digests]
        (out_dir / "ranks.json").write_text(json.dumps({"world_size": env.world, "sha256": hexes}))


# ---------------------------------------------------------------------- command line
