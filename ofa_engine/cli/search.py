"""`python -m ofa_engine search ...` and `python -m ofa_engine specialize ...`."""

from __future__ import annotations

import argparse
from typing import Any

from ..files import FileLimitError, loads_json

from ..search.constraints import CONSTRAINT_FIELDS, UNITS, Constraints
from ..search.core import STRATEGIES
from ..search.strategies import make_strategy
from .args import EXIT_OK, precision_argument, print_json, register

_FLAG_HELP = {"latency_ms": "latency bound (ms, from the profile's latency model)",
              "peak_memory_kb": "peak activation memory bound (KB, int8)",
              "flash_kb": "Flash / weights bound (KB, int8)",
              "macs_m": "MACs bound (millions)", "params_m": "parameter bound (millions)"}


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", metavar="NAME|FILE",
                        help="device profile (see list in docs); without one: no latency, bounds on MACs, "
                             "params, memory and Flash only")
    for name in CONSTRAINT_FIELDS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=float, metavar=UNITS[name].split()[0],
                            help=_FLAG_HELP[name])
    parser.add_argument("--strategy", default="evolution", metavar="S",
                        help=f"one of {', '.join(STRATEGIES)} (default evolution)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="strategy option, e.g. generations=100 (repeatable; VALUE is JSON)")
    parser.add_argument("--supernet", default="tiny-fmnist", metavar="PKG",
                        help="supernet package: a bundled name (default tiny-fmnist), a package folder or .zip")


def _options(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option '{item}': expected KEY=VALUE")
        try:
            out[key] = loads_json(value, f"--option {key}")
        except FileLimitError:
            raise
        except ValueError:   # not JSON: the plain string
            out[key] = value
    return out


def _inputs(args: argparse.Namespace):
    from ..devices.profiles import load_profile
    if args.strategy not in STRATEGIES:
        raise ValueError(f"--strategy: unknown strategy '{args.strategy}'; allowed: {', '.join(STRATEGIES)}")
    profile = None
    if args.profile is not None:
        try:
            profile = load_profile(args.profile)
        except (ValueError, FileNotFoundError) as exc:
            raise ValueError(f"--profile: {exc}") from None
    constraints = Constraints(**{name: getattr(args, name) for name in CONSTRAINT_FIELDS})
    options = _options(args.option)
    make_strategy(args.strategy, **options)   # its options are checked before the engine loads
    return profile, constraints, options


def _search_arguments(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)


@register("search", "find the most accurate subnet (predicted) under a budget on a device; JSON",
          _search_arguments)
def run_search(args: argparse.Namespace) -> int:
    profile, constraints, options = _inputs(args)   # checked before the engine loads
    from ..pipeline.specialize import load_resources
    from ..search.core import search
    try:
        res = load_resources(args.supernet)
    except ValueError as exc:
        raise ValueError(f"--supernet: {exc}") from None
    if profile is not None:
        # Binds an analytical profile (space "*") to the supernet's space; refuses, naming both
        # spaces, a measured profile fitted to another space.
        profile = profile.for_space(res.space)
    effective = constraints.with_device_memory(profile)
    result = search(res.evaluator(profile), effective, args.strategy, args.seed, **options)
    print_json({"profile": "none" if profile is None else profile.name, "supernet": res.name,
                "accuracy_source": res.accuracy_source, "constraints": constraints.to_dict(),
                "effective_constraints": effective.to_dict(), **result.summary()})
    return EXIT_OK


def _specialize_arguments(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)
    parser.add_argument("--out", required=True, metavar="PATH",
                        help="ONNX file to write; the JSON report goes next to it (.json)")
    precision_argument(parser, default=None)


@register("specialize", "search, extract, calibrate, export ONNX and measure a subnet for a device",
          _specialize_arguments)
def run_specialize(args: argparse.Namespace) -> int:
    from ..pipeline.outputs import output_paths
    output_paths(args.out)                  # refused at once, before torch and the engine load
    profile, constraints, options = _inputs(args)
    from ..pipeline.specialize import specialize
    spec = specialize(profile, constraints, args.strategy, args.seed, out=args.out,
                      supernet=args.supernet, strategy_options=options, precision=args.precision)
    print_json(spec.report)
    return EXIT_OK
