"""What every command shares: registration, exit codes, common arguments and their loading.

A command is registered once with `register(name, help, add_arguments)` decorating its
`run(args) -> int` function. Commands raise `ValueError` / `OSError` for anything the user got
wrong; `ofa_engine.cli.main` prints `error: <message>` and returns 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any, Callable

from ..families import family_of, preset_names
from ..registry import Registry

__all__ = ["COMMANDS", "Command", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "UsageError", "config_argument",
           "load_config", "load_package_arg", "load_source", "load_space", "load_trained", "load_weights",
           "print_json", "register", "space_argument", "SUPERNET_HELP"]

SUPERNET_HELP = ("supernet package: a bundled name (tiny-fmnist), a package folder or .zip "
                 "(docs/packages.md); or a supernet file from training (supernet.pt)")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    """A mistake in the command line itself (missing or unknown argument)."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: Registry[Command] = Registry("command")


def register(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Decorator adding `run(args) -> exit code` as the subcommand `name`."""
    def decorate(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS.register(name, Command(name, help, add_arguments, run))
        return run
    return decorate


def space_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", required=True, metavar="NAME",
                        help=f"search space, one of {', '.join(preset_names())}")


def precision_argument(parser: argparse.ArgumentParser, default: str | None = "fp32") -> None:
    """`--precision fp32|int8` (argparse refuses anything else with exit 2)."""
    note = f"default {default}" if default else "default: the profile's deployment precision"
    parser.add_argument("--precision", choices=("fp32", "int8"), default=default,
                        help=f"precision of the exported ONNX file: fp32, or int8 QDQ ({note})")


def config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="C",
                        help="subnet: largest, smallest, random:SEED, a JSON object or a JSON file")


def load_space(name: str) -> Any:
    """The preset space `name` of whichever family has it; `ValueError` naming --space."""
    try:
        return family_of(name, fast=False).space
    except ValueError as exc:
        raise ValueError(f"--space: {exc}") from None


def load_config(space: Any, text: str) -> Any:
    try:
        return space.parse_config(text)
    except ValueError as exc:
        raise ValueError(f"--config: {exc}") from None


def load_weights(supernet: Any, path: str) -> None:
    """Load a supernet state dict saved by `torch.save` (optionally under "state_dict") or as
    safetensors; `ValueError` naming the file when it cannot be read or does not fit."""
    import torch

    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file
            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise ValueError(f"--weights: '{path}' cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:   # pickle, zip and safetensors each raise their own types
        # The exception's own text is long and about pickle internals; its type is enough.
        raise ValueError(f"--weights: '{path}' is not a torch state dict or safetensors file "
                         f"({type(exc).__name__}); save it with torch.save(supernet.state_dict(), "
                         f"path)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"--weights: '{path}' does not hold a state dict (name -> tensor)")
    with torch.device("meta"):   # shapes only: nothing allocated, no random draws
        problems = family_of(supernet.space, fast=False).supernet_problems(state)
    if problems:
        raise ValueError(f"--weights: '{path}' is not a supernet of space "
                         f"'{supernet.space.name}': {'; '.join(problems)}")
    supernet.load_state_dict(state)


def print_json(data: dict[str, Any]) -> None:
    # One top-level key per line, values compact: readable, and still one JSON object.
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in data.items()]
    print("{\n" + ",\n".join(lines) + "\n}")


def load_trained(name_or_path: str) -> Any:
    from ..training.bundled import load_supernet
    try:
        return load_supernet(name_or_path)
    except (ValueError, FileNotFoundError) as exc:
        raise ValueError(f"--supernet: {exc}") from None


def load_package_arg(text: str, flag: str = "--supernet"):
    """The package `text` names (bundled name, folder or .zip); `ValueError` naming `flag`."""
    from ..packages import load_package
    try:
        return load_package(text)
    except (ValueError, FileNotFoundError) as exc:
        raise ValueError(f"{flag}: {exc}") from None


def _is_supernet_file(text: str) -> bool:
    from pathlib import Path
    path = Path(text)
    return path.is_file() and path.suffix != ".zip"


def load_source(text: str, flag: str = "--supernet"):
    """(supernet, package or None): a package, or a plain supernet file from training (whose
    subnets are recalibrated on the bundled calibration images, as before packages)."""
    if _is_supernet_file(text):
        return load_trained(text), None
    package = load_package_arg(text, flag)
    return package.supernet, package
