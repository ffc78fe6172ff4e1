"""The files of a training run: supernet files, the resumable checkpoint and the epoch log.

All are written atomically (`ofa_engine.files`): a kill at any moment leaves the previous file
intact and no temporary file. Supernet files and checkpoints hold only tensors and plain
values and load with `torch.load(..., weights_only=True)`, which never runs code.

A supernet file names its network family ("family"; a file without one is MobileNetV3's, as
every file was before there were others) and holds its space's dict; it loads through that
family (`ofa_engine.families.family_named`).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from ..families import FAMILIES, family_named, family_of
from ..files import atomic_path, atomic_write_text, exception_reason
from .recipe import Recipe

__all__ = ["CHECKPOINT_VERSION", "SUPERNET_FORMAT", "space_from_dict", "save_supernet", "load_supernet_file",
           "save_checkpoint", "load_checkpoint", "trim_log"]

CHECKPOINT_VERSION = 1
# The "format" tag of every supernet file, whatever its family: the name of the module that
# first wrote them, kept so that existing files (assets/, packages) stay what they were.
SUPERNET_FORMAT = "ofa_engine.families.mbv3.supernet"
# The family of a supernet file or checkpoint that names none (written before families).
DEFAULT_FAMILY = "mbv3"


def space_from_dict(data: Any, where: str = "space", family: str = DEFAULT_FAMILY) -> Any:
    """The space of `family` (a registered family name) described by `data`; `ValueError`
    naming `where` and the field otherwise."""
    return _family(family, where).space_from_dict(data, where)


def _family(name: Any, where: str) -> type:
    if not isinstance(name, str) or name not in FAMILIES.names():
        raise ValueError(f"{where}: family = {name!r}; allowed: {', '.join(FAMILIES.names())}")
    return family_named(name)


def _torch_save(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def _load_supernet_payload(path: Path) -> Any:
    """`torch.load(weights_only=True)`, or `ValueError` naming the file and why it cannot be read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"supernet file {path} does not exist") from None
    except Exception as exc:  # corrupt or hostile files never execute: weights_only refuses code
        if isinstance(exc, pickle.UnpicklingError) and "weights_only" in str(exc).lower():
            reason = "it holds objects other than tensors and plain values, which are never loaded"
        else:
            reason = exception_reason(exc)   # EOFError of an empty file says nothing
        raise ValueError(f"{path} is not a readable supernet file ({type(exc).__name__}: {reason})") from None


# ---------------------------------------------------------------------- supernet files
def save_supernet(supernet: Any, path: str | Path, half: bool = False,
                  extra: dict[str, Any] | None = None) -> Path:
    """Weights + the space definition, atomically; loads with weights_only=True."""
    state = {k: (v.half() if half and v.is_floating_point() else v).clone()
             for k, v in supernet.state_dict().items()}
    payload = {"format": SUPERNET_FORMAT, "version": 1, "family": family_of(supernet.space, fast=False).family,
               "space": supernet.space.to_dict(), "state_dict": state, "extra": extra or {}}
    return _torch_save(payload, Path(path))


def load_supernet_file(path: str | Path) -> Any:
    """A supernet written by `save_supernet`, in eval mode; `ValueError` naming the file and the
    field for anything else."""
    path = Path(path)
    payload = _load_supernet_payload(path)
    if not isinstance(payload, dict) or "state_dict" not in payload or "space" not in payload:
        raise ValueError(f"{path} is not an ofa_engine supernet file (expected keys 'space' and 'state_dict')")
    family = payload.get("family", DEFAULT_FAMILY)
    space = space_from_dict(payload["space"], f"{path}: field 'space'",
                            _family(family, f"{path}: field 'family'").family)
    state = payload["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: field 'state_dict' must map names to tensors, got {type(state).__name__}")
    bad = [str(k) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise ValueError(f"{path}: field 'state_dict' holds entries that are not named tensors: {bad[:3]}")
    net = family_of(space, fast=False).build_supernet()
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit space '{net.space.name}': "
                         f"{exception_reason(exc)}") from None
    return net.eval()


# ---------------------------------------------------------------------- checkpoints
def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write a training checkpoint atomically (`payload` holds tensors and plain values)."""
    return _torch_save({"version": CHECKPOINT_VERSION, **payload}, Path(path))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by `save_checkpoint`, with its recipe as a `Recipe` under
    "recipe"; `ValueError` naming the file when it cannot be resumed from."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt or not ours; weights_only never runs code
        raise ValueError(f"{path} cannot be resumed from ({type(exc).__name__}); delete it to "
                         f"restart the run, or train into a new --out folder") from None
    if not isinstance(ckpt, dict) or "recipe" not in ckpt or "state" not in ckpt:
        raise ValueError(f"{path} is not a training checkpoint of ofa_engine")
    try:
        recipe = Recipe.from_dict(ckpt["recipe"])
    except ValueError as exc:
        raise ValueError(f"{path}: field 'recipe': {exc}") from None
    return {**ckpt, "recipe": recipe}


def trim_log(log_path: Path, recipe: Recipe, state: dict[str, Any]) -> None:
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
    atomic_write_text(log_path, "".join(k + "\n" for k in kept))
