"""Command line: `python -m ofa_engine COMMAND ...`.

A command is registered once with `register(name, help, add_arguments)` decorating its
`run(args) -> int` function; `main` builds one subparser per registered command. Commands
raise `ValueError` / `OSError` for anything the user got wrong: `main` prints
`error: <message>` to stderr and returns 2, never a traceback. An export that fails its
verification returns 1 with its message; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .analytics import analyze
from .bundled import extract_calibrated, load_supernet
from .export import ExportVerificationError, export_onnx, verify_onnx
from .space import SearchSpace, SubnetConfig, list_presets
from .supernet import Supernet, build_supernet

__all__ = ["main", "register", "Command", "COMMANDS", "UsageError", "space_argument",
           "config_argument", "load_space", "load_config", "load_weights"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    """A mistake in the command line itself (missing or unknown argument)."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def register(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Decorator adding `run(args) -> exit code` as the subcommand `name`."""
    def decorate(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        if name in COMMANDS:
            raise ValueError(f"command '{name}' is already registered")
        COMMANDS[name] = Command(name, help, add_arguments, run)
        return run
    return decorate


class _Parser(argparse.ArgumentParser):
    # argparse would print usage and call sys.exit; raising lets `main` report it like any
    # other user error and return the code (tests call `main` in-process).
    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m ofa_engine",
                     description="Once-for-All supernet engine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command in COMMANDS.values():
        command.add_arguments(sub.add_parser(command.name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failure, 2 user error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return COMMANDS[args.command].run(args)
    except SystemExit as exc:   # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except (ValueError, OSError) as exc:
        print(f"error: {_describe(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except ExportVerificationError as exc:   # not the user's fault, but not a crash either
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: '{exc.filename}'"
    return str(exc)


# ---------------------------------------------------------------------- shared arguments
def space_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", required=True, metavar="NAME",
                        help=f"search space, one of {', '.join(list_presets())}")


def config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="C",
                        help="subnet: largest, smallest, random:SEED, a JSON object or a JSON file")


def load_space(name: str) -> SearchSpace:
    try:
        return SearchSpace.preset(name)
    except ValueError as exc:
        raise ValueError(f"--space: {exc}") from None


def load_config(space: SearchSpace, text: str) -> SubnetConfig:
    try:
        return space.parse_config(text)
    except ValueError as exc:
        raise ValueError(f"--config: {exc}") from None


def load_weights(supernet: Supernet, path: str) -> None:
    """Load a supernet state dict saved by `torch.save` (optionally under "state_dict") or as
    safetensors; `ValueError` naming the file when it cannot be read or does not fit."""
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
    expected = supernet.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or mismatched:
        def some(items: list[str]) -> str:
            return ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
        problems = [f"{len(items)} {what} ({some(items)})" for what, items in
                    (("missing keys", missing), ("unexpected keys", unexpected),
                     ("shape mismatches", mismatched)) if items]
        raise ValueError(f"--weights: '{path}' is not a supernet of space "
                         f"'{supernet.space.name}': {'; '.join(problems)}")
    supernet.load_state_dict(state)


def _print_json(data: dict[str, Any]) -> None:
    # One top-level key per line, values compact: readable, and still one JSON object.
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in data.items()]
    print("{\n" + ",\n".join(lines) + "\n}")


# ---------------------------------------------------------------------- analyze
def _analyze_arguments(parser: argparse.ArgumentParser) -> None:
    space_argument(parser)
    config_argument(parser)


@register("analyze", "print MACs, params, peak activation and flash bytes of a subnet (JSON)",
          _analyze_arguments)
def run_analyze(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    cfg = load_config(space, args.config)
    _print_json({"space": space.name, "config": cfg.to_dict(), "metrics": analyze(space, cfg)})
    return EXIT_OK


# ---------------------------------------------------------------------- export
def _export_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--space", metavar="NAME",
                        help=f"search space (fresh or --weights), one of {', '.join(list_presets())}")
    source.add_argument("--supernet", metavar="NAME|FILE",
                        help="trained supernet ('tiny-fmnist' = bundled, or a file from training); "
                             "the subnet's BN statistics are recalibrated")
    parser.add_argument("--weights", metavar="FILE",
                        help="with --space: supernet state dict (torch.save or .safetensors); "
                             "without it the weights are freshly initialised (seed 0)")
    config_argument(parser)
    parser.add_argument("--out", required=True, metavar="PATH", help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default 17)")


@register("export", "extract a subnet and write it as a verified ONNX file", _export_arguments)
def run_export(args: argparse.Namespace) -> int:
    if args.supernet is not None:
        if args.weights is not None:
            raise UsageError("--weights goes with --space, not with --supernet")
        supernet = load_trained(args.supernet)
        space = supernet.space
        cfg = load_config(space, args.config)
        net = extract_calibrated(supernet, cfg)
    else:
        space = load_space(args.space)
        cfg = load_config(space, args.config)
        # A fixed seed makes an export without --weights reproducible, without touching the
        # caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            supernet = build_supernet(space)
        if args.weights is not None:
            load_weights(supernet, args.weights)
        else:
            print("warning: no --weights given; exporting freshly initialised weights", file=sys.stderr)
        net = supernet.extract(cfg)
    path = export_onnx(net, cfg, args.out, space=space, opset=args.opset)
    _print_json({
        "path": str(path),
        "bytes": Path(path).stat().st_size,
        "space": space.name,
        "config": cfg.to_dict(),
        "metrics": analyze(space, cfg),
        "opset": args.opset,
        # Re-measured on the file at its final path (export_onnx already checked it).
        "max_abs_diff": verify_onnx(path, net),
    })
    return EXIT_OK


def load_trained(name_or_path: str) -> Supernet:
    try:
        return load_supernet(name_or_path)
    except (ValueError, FileNotFoundError) as exc:
        raise ValueError(f"--supernet: {exc}") from None


# ---------------------------------------------------------------------- evaluate
def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--supernet", required=True, metavar="NAME|FILE",
                        help="'tiny-fmnist' (bundled) or a supernet file from training")
    config_argument(parser)
    parser.add_argument("--split", default="test", choices=["test", "holdout", "test2k"],
                        help="test: 10k official test set; holdout: the 5k held out of training; "
                             "test2k: the bundled 2k test images (no download)")


@register("evaluate", "accuracy of a subnet (BN recalibrated) and its MACs, as JSON", _evaluate_arguments)
def run_evaluate(args: argparse.Namespace) -> int:
    from .data import load_split
    from .evaluation import accuracy

    supernet = load_trained(args.supernet)
    space = supernet.space
    cfg = load_config(space, args.config)
    data = load_split(args.split)
    net = extract_calibrated(supernet, cfg)
    _print_json({"supernet": str(args.supernet), "config": cfg.to_dict(), "split": args.split,
                 "images": len(data), "accuracy": accuracy(net, data.images, data.labels, space),
                 "macs": analyze(space, cfg)["macs"]})
    return EXIT_OK


# ---------------------------------------------------------------------- train
def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from . import train
    train.add_arguments(parser)


@register("train", "progressive-shrinking training (resumable; runs under torchrun too)", _train_arguments)
def run_train(args: argparse.Namespace) -> int:
    from . import train
    return train.run(args)


# ---------------------------------------------------------------------- bundled data
@register("make-subsets", "write the bundled 2k calibration / 2k test subsets from the Debian package",
          lambda parser: None)
def run_make_subsets(args: argparse.Namespace) -> int:
    from .data import make_bundled_subsets
    _print_json({name: str(path) for name, path in make_bundled_subsets().items()})
    return EXIT_OK


# ---------------------------------------------------------------------- commands in other modules
from . import accuracy_dataset, accuracy_predictor  # noqa: E402,F401  (they register themselves)
from . import profile_kit  # noqa: E402,F401  (profile-kit, fit-profile)
from . import latency_data  # noqa: E402,F401  (latency-dataset, latency-blocks)
from . import calibration  # noqa: E402,F401  (calibrate-profile)
from .search import cli as _search_cli  # noqa: E402,F401  (search, specialize)
