"""Commands on device profiles and latency: calibrate-profile, latency-dataset, latency-blocks,
profile-kit, fit-profile, profile-this-machine, write-mcu-profiles."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..devices.mcu import MCU_PARTS, write_mcu_profiles
from ..devices.mcu_kit import DEFAULT_MCU_KIT_SUBNETS
from ..devices.profile_kit import DEFAULT_KIT_SUBNETS
from ..devices.profiles import PROFILES_DIR
from ..families import preset_names
from ..predictors.latency.fewshot import DEFAULT_FEWSHOT_METHOD, FEWSHOT_METHODS
from ..runtime.measure import MANY_ROUNDS, MANY_RUNS, MANY_WARMUP
from .args import (EXIT_OK, UsageError, load_package_arg, load_space, precision_argument, print_json, register,
                   space_argument)


def _calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    from ..devices.calibration import DEFAULT_SUBNETS, MAX_SUBNETS
    parser.add_argument("profile", help="a bundled profile name (e.g. cpu-ort-2t) or a profile JSON path")
    parser.add_argument("--out", required=True, help="where to write the calibrated profile JSON")
    parser.add_argument("--subnets", type=int, default=DEFAULT_SUBNETS,
                        help=f"reference subnets to measure (2-{MAX_SUBNETS}, default {DEFAULT_SUBNETS})")
    parser.add_argument("--rounds", type=int, default=MANY_ROUNDS,
                        help=f"interleaved measuring rounds per subnet (default {MANY_ROUNDS})")
    parser.add_argument("--name", help="name of the calibrated profile (default <name>-calibrated)")


@register("calibrate-profile", "rescale a profile of this machine to its speed now (measures a few subnets)",
          _calibrate_arguments)
def run_calibrate_profile(args: argparse.Namespace) -> int:
    from ..devices.calibration import calibrate_profile
    out = Path(args.out)
    if not out.parent.is_dir():
        raise FileNotFoundError(2, "Output directory does not exist", str(out.parent))
    result = calibrate_profile(args.profile, args.subnets, rounds=args.rounds, name=args.name)
    result.profile.save(out)
    print(json.dumps({"out": str(out), **result.summary()}, indent=2))
    return 0


def _measure_arguments(parser: argparse.ArgumentParser) -> None:
    space_argument(parser)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--rounds", type=int, default=MANY_ROUNDS,
                        help=f"bursts per model, interleaved across models (default {MANY_ROUNDS})")
    parser.add_argument("--runs", type=int, default=MANY_RUNS, help=f"timed runs per burst (default {MANY_RUNS})")
    parser.add_argument("--warmup", type=int, default=MANY_WARMUP,
                        help=f"untimed runs before each burst (default {MANY_WARMUP})")
    parser.add_argument("--out", required=True, metavar="CSV", help="CSV to write (appended to; resumable)")


def _dataset_arguments(parser: argparse.ArgumentParser) -> None:
    _measure_arguments(parser)
    parser.add_argument("--n", type=int, required=True, help="number of subnets (largest and smallest included)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--first", type=int, default=None, metavar="K",
                        help="measure only the first K configs of the sample (a repeat for the noise floor)")
    parser.add_argument("--onnx-cache", metavar="DIR", default=None,
                        help="keep the exported ONNX files here, to reuse them for another thread count")
    precision_argument(parser)


def _progress(done: int, total: int, message: str) -> None:
    print(message, file=sys.stderr)


@register("latency-dataset", "sample, export and measure N subnets in ONNX Runtime; write a latency CSV",
          _dataset_arguments)
def run_latency_dataset(args: argparse.Namespace) -> int:
    from ..devices.latency_dataset import build_latency_dataset
    space = load_space(args.space)
    start = time.time()
    out = build_latency_dataset(space, args.n, args.out, threads=args.threads, batch_size=args.batch_size,
                                seed=args.seed, runs=args.runs, rounds=args.rounds, warmup=args.warmup,
                                onnx_cache=args.onnx_cache, first=args.first, progress=_progress,
                                precision=args.precision)
    print(json.dumps({"out": str(out), "n": args.n, "threads": args.threads, "batch_size": args.batch_size,
                      "precision": args.precision, "seconds": round(time.time() - start, 1)}))
    return EXIT_OK


@register("latency-blocks", "measure every block of a space in isolation (the 'lut' model's table)",
          _measure_arguments)
def run_latency_blocks(args: argparse.Namespace) -> int:
    from ..devices.latency_dataset import measure_block_table
    from ..predictors.latency import unique_blocks
    space = load_space(args.space)
    start = time.time()
    out = measure_block_table(space, args.out, threads=args.threads, batch_size=args.batch_size,
                              runs=args.runs, rounds=args.rounds, warmup=args.warmup, progress=_progress)
    print(json.dumps({"out": str(out), "blocks": len(unique_blocks(space)), "threads": args.threads,
                      "seconds": round(time.time() - start, 1)}))
    return EXIT_OK


def _space_or_package_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--space", metavar="NAME", default=None,
                       help=f"search space, one of {', '.join(preset_names())}"
                            + ("" if required else " (default: from the kit's manifest.json)"))
    group.add_argument("--supernet", metavar="PKG", default=None,
                       help="a supernet package (bundled name, folder or .zip; docs/packages.md): its space")


def _kit_arguments(parser: argparse.ArgumentParser) -> None:
    _space_or_package_arguments(parser, required=True)
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to create (must be empty)")
    parser.add_argument("--n", type=int, default=None,
                        help=f"number of subnets, spread over the space (default {DEFAULT_KIT_SUBNETS}: enough for "
                             f"fit-profile --prior, docs/latency-fewshot.md; from scratch measure 100; with --mcu "
                             f"{DEFAULT_MCU_KIT_SUBNETS})")
    parser.add_argument("--mcu", metavar="DEVICE", default=None,
                        help=f"a microcontroller kit instead (docs/mcu-kit.md): int8 ONNX files that fit this "
                             f"device's SRAM and Flash, for its own toolchain (STM32Cube.AI / X-CUBE-AI, TFLite "
                             f"Micro after a conversion), a results.csv template and a README; DEVICE: a "
                             f"microcontroller profile ({', '.join(MCU_PARTS)}) or a profile JSON")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size to measure (default 1)")
    parser.add_argument("--image-sizes", metavar="S,S", default=None,
                        help="only these resolutions (comma-separated; default: all of the space)")
    parser.add_argument("--zip", action="store_true", help="also write DIR.zip")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out")


@register("profile-kit", "write a kit of ONNX subnets + runner to measure latency on your own device "
                        "(--mcu: int8 files + a template for a microcontroller's toolchain)",
          _kit_arguments)
def run_profile_kit(args: argparse.Namespace) -> int:
    from ..devices.profile_kit import write_profile_kit
    space = load_package_arg(args.supernet).space if args.supernet else load_space(args.space)
    sizes = None
    if args.image_sizes:
        try:
            sizes = [int(s) for s in args.image_sizes.split(",")]
        except ValueError:
            raise ValueError(f"--image-sizes {args.image_sizes!r}; allowed: comma-separated integers "
                             f"from {list(space.resolutions)}") from None
    if args.mcu is not None:
        from ..devices.mcu_kit import write_mcu_kit
        if args.batch_size != 1:
            raise ValueError(f"--batch-size {args.batch_size} with --mcu; allowed: 1 (a microcontroller "
                             f"runs one input at a time; the files have a static batch of 1)")
        out = write_mcu_kit(space, args.mcu, args.out, n=DEFAULT_MCU_KIT_SUBNETS if args.n is None else args.n,
                            seed=args.seed, image_sizes=sizes, overwrite=args.force, progress=_progress,
                            supernet=args.supernet)
        next_step = (f"time each m*.onnx on the board and fill in latency_ms of {out / 'results.csv'} "
                     f"({out / 'README.md'}); then fit-profile {out / 'results.csv'} --name ...")
    else:
        out = write_profile_kit(space, args.out, n=DEFAULT_KIT_SUBNETS if args.n is None else args.n,
                                seed=args.seed, batch_size=args.batch_size, image_sizes=sizes, overwrite=args.force,
                                supernet=args.supernet)
        next_step = f"python {out / 'runner.py'} {out}"
    result: dict[str, Any] = {"kit": str(out), "space": space.name,
                              "models": len(list(out.glob("m*.onnx"))), "next": next_step}
    if args.mcu is not None:
        from ..devices.mcu_kit import mcu_target
        result["device"] = mcu_target(args.mcu).name
    if args.zip:
        archive = shutil.make_archive(str(out), "zip", root_dir=out.parent, base_dir=out.name)
        result["zip"] = archive
    print_json(result)
    return 0


def _fit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("csv", metavar="RESULTS_CSV", nargs="+",
                        help="results.csv written by the kit's runner.py; several runs of the same kit "
                             "(e.g. at different times) are averaged per subnet (geometric mean); or the filled "
                             "results.csv template of a microcontroller kit (profile-kit --mcu)")
    parser.add_argument("--name", required=True, help="device name, e.g. \"my device\"")
    parser.add_argument("--out", default=None, metavar="JSON",
                        help="profile to write (the held-out predictions go next to it, .validation.csv); "
                             "needed without --supernet; with it, the profile goes into the package")
    _space_or_package_arguments(parser, required=False)
    parser.add_argument("--display-name", default=None, help="label shown in the app (default: --name)")
    parser.add_argument("--model", default="learned", choices=["learned", "macs-linear"],
                        help="latency model to fit (default learned)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="held-out share (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument("--ram-kb", type=float, default=None,
                        help="RAM limit for activations in KB (a microcontroller kit: its SRAM, default the device's)")
    parser.add_argument("--flash-kb", type=float, default=None,
                        help="storage limit for weights in KB (a microcontroller kit: default the device's Flash)")
    parser.add_argument("--runtime-version", default=None, help="onnxruntime version on the device")
    parser.add_argument("--machine", default=None, help="description of the device (provenance)")
    parser.add_argument("--local", action="store_true",
                        help="the CSV was measured on the machine that runs the engine (its app may "
                             "then measure real latency too); used for the bundled cpu-ort profiles")
    parser.add_argument("--prior", default=None, metavar="PROFILE",
                        help="few-shot: fit on top of this profile's learned model (a bundled name such as "
                             "cpu-ort-1t, or a profile JSON); then 5 measured subnets are enough")
    parser.add_argument("--method", default=None, choices=FEWSHOT_METHODS,
                        help=f"few-shot method with --prior (default {DEFAULT_FEWSHOT_METHOD})")


@register("fit-profile", "fit a device profile (latency model + limits) to a profile kit's results.csv",
          _fit_arguments)
def run_fit_profile(args: argparse.Namespace) -> int:
    from ..devices.profile_kit import fit_profile_from_csv, latency_spread, load_prior, profile_slug
    if args.out is None and args.supernet is None:
        raise UsageError("fit-profile needs --out JSON, or --supernet PKG to write the profile into a package")
    if args.supernet and args.out is None and Path(args.supernet).is_file():
        # Refused before the package (and torch) is loaded: a .zip package is read-only.
        raise ValueError(f"--supernet '{args.supernet}' is a zip, which is read-only; unzip it and pass the "
                         f"folder to write into the package (or give --out)")
    package = load_package_arg(args.supernet) if args.supernet else None
    into_package = package is not None and args.out is None
    if into_package:   # refused before anything is fitted
        from ..devices.profiles import list_profiles
        from ..packages.build import latency_profile_file, writable_folder
        folder = writable_folder(package)
        slug = profile_slug(args.name)
        if slug in list_profiles():
            raise ValueError(f"--name {args.name!r}: '{slug}' is a bundled profile's name; allowed: another name")
        if slug in {p.name for p in package.latency_profiles}:
            raise ValueError(f"--supernet '{package.path}' already has a latency profile '{slug}'; allowed: "
                             f"another --name")
        out = folder / latency_profile_file(slug)
    else:
        out = Path(args.out)
    prior = load_prior(args.prior) if args.prior is not None else None   # refused before any CSV is read
    command = "python -m ofa_engine fit-profile " + " ".join(
        _quote(a) for a in _argv_of(args))
    with tempfile.TemporaryDirectory(prefix="ofa-fit-profile-") as tmp:
        # Into a package, the held-out predictions go in with the profile, after the fit.
        validation = Path(tmp) / "validation.csv" if into_package else out.with_name(f"{out.stem}.validation.csv")
        profile = fit_profile_from_csv(
            args.csv, args.name, display_name=args.display_name,
            space=package.space if package is not None else load_space(args.space) if args.space else None,
            model=args.model, test_fraction=args.test_fraction, seed=args.seed, ram_kb=args.ram_kb,
            flash_kb=args.flash_kb, runtime_version=args.runtime_version, measure_locally=args.local,
            machine=args.machine, command=command, validation_out=validation, prior=prior, method=args.method)
        listed = None
        if into_package:
            from ..packages import load_package
            from ..packages.build import add_latency_profile
            add_latency_profile(package, profile, command=command, validation_csv=validation)
            validation = out.with_name(f"{profile.name}.validation.csv")
            listed = [p.name for p in load_package(folder).latency_profiles]
        else:
            profile.save(out)
    result = {"profile": str(out), "name": profile.name, "validation": str(validation),
              "threads": profile.threads, "batch_size": profile.batch_size,
              "latency_model": profile.latency_model.to_dict().get("type"),
              "quality": dict(profile.quality),
              "spread": [latency_spread(path) for path in args.csv]}
    if listed is not None:
        result["package"] = str(folder)
        result["package_latency_profiles"] = listed
    print_json(result)
    return 0


def _argv_of(args: argparse.Namespace) -> list[str]:
    argv = [*args.csv, "--name", args.name] + (["--out", args.out] if args.out is not None else [])
    for flag, value in (("--space", args.space), ("--supernet", args.supernet), ("--display-name", args.display_name),
                        ("--runtime-version", args.runtime_version), ("--machine", args.machine),
                        ("--ram-kb", args.ram_kb), ("--flash-kb", args.flash_kb)):
        if value is not None:
            argv += [flag, str(value)]
    if args.model != "learned":
        argv += ["--model", args.model]
    if args.test_fraction != 0.2:
        argv += ["--test-fraction", str(args.test_fraction)]
    if args.seed != 0:
        argv += ["--seed", str(args.seed)]
    if args.local:
        argv.append("--local")
    for flag, value in (("--prior", args.prior), ("--method", args.method)):
        if value is not None:
            argv += [flag, value]
    return argv


def _quote(text: str) -> str:
    return shlex.quote(text)


def _this_machine_arguments(parser: argparse.ArgumentParser) -> None:
    from ..devices.this_machine import STARTUP_ROUNDS, STARTUP_RUNS, STARTUP_SUBNETS, STARTUP_THREADS
    parser.add_argument("--space", default="tiny-fmnist", metavar="SPACE[,SPACE]",
                        help="search space(s), comma-separated, measured one after the other (default "
                             "tiny-fmnist; each needs a bundled cpu-ort profile of it as prior, e.g. vit-fmnist)")
    parser.add_argument("--threads", default=",".join(map(str, STARTUP_THREADS)), metavar="N[,N]",
                        help="ONNX Runtime thread counts to profile, comma-separated (default "
                             f"{','.join(map(str, STARTUP_THREADS))}: the bundled cpu-ort profiles)")
    precision_argument(parser)
    parser.add_argument("--out", default=None, metavar="FILE.json",
                        help="also write the profile here (several --threads: FILE-<N>t.json)")
    parser.add_argument("--refresh", action="store_true", help="measure again even if cached")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="cache folder (default $OFA_CACHE_DIR, else $XDG_CACHE_HOME/ofa_engine or "
                             "~/.cache/ofa_engine)")
    parser.add_argument("--n", type=int, default=STARTUP_SUBNETS,
                        help=f"subnets to measure, spread over the space (default {STARTUP_SUBNETS})")
    parser.add_argument("--rounds", type=int, default=STARTUP_ROUNDS,
                        help=f"interleaved bursts per subnet (default {STARTUP_ROUNDS})")
    parser.add_argument("--runs", type=int, default=STARTUP_RUNS, help=f"timed runs per burst (default {STARTUP_RUNS})")
    parser.add_argument("--status", action="store_true",
                        help="only print where the cached profiles stand (measures nothing)")


def _thread_list(text: str) -> list[int]:
    try:
        threads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        threads = []
    if not threads or any(t < 1 for t in threads):
        raise ValueError(f"--threads {text!r}; allowed: integers >= 1, comma-separated (e.g. 1,2)")
    return threads


@register("profile-this-machine", "measure a few subnets here and fit this machine's CPU profiles (cached)",
          _this_machine_arguments)
def run_profile_this_machine(args: argparse.Namespace) -> int:
    from ..devices import this_machine as tm
    threads = _thread_list(args.threads)
    spaces = _space_list(args.space)
    for space in spaces:   # every space and its prior are checked before anything is measured
        for t in threads:
            tm.reference_profile_name(t, args.precision, space)
    if args.out is not None and len(spaces) > 1:
        raise UsageError(f"--out takes the profile of one space; got --space {args.space!r} (several)")
    if args.out is not None and not Path(args.out).parent.is_dir():
        raise FileNotFoundError(2, "Output directory does not exist", str(Path(args.out).parent))
    if not args.status:
        argv = ["--space", args.space, "--threads", args.threads, "--precision", args.precision, "--n", str(args.n),
                "--rounds", str(args.rounds), "--runs", str(args.runs)]
        argv += (["--out", args.out] if args.out else []) + (["--refresh"] if args.refresh else [])
        command = "python -m ofa_engine profile-this-machine " + " ".join(_quote(a) for a in argv)
        start = time.time()
        for space in spaces:   # one after the other: two measurements at once would slow each other
            tm.profile_this_machine(space, threads, args.precision, n=args.n, rounds=args.rounds, runs=args.runs,
                                    refresh=args.refresh, directory=args.cache_dir, out=args.out,
                                    progress=_progress, command=command)
        seconds = round(time.time() - start, 1)
    results = {space: _this_machine_result(tm, args, space, threads) for space in spaces}
    # One space: its thread counts at the top (the output before several spaces were allowed).
    result: dict[str, Any] = results[spaces[0]] if len(spaces) == 1 else results
    if not args.status:
        result["seconds"] = seconds
    print_json(result)
    return EXIT_OK


def _space_list(text: str) -> list[str]:
    """The preset spaces of a comma-separated --space (names as `load_space` gives them)."""
    spaces = [load_space(s.strip()).name for s in text.split(",") if s.strip()]
    if not spaces:
        raise UsageError(f"--space {text!r}; allowed: one or more of {', '.join(preset_names())}, comma-separated")
    return list(dict.fromkeys(spaces))


def _this_machine_result(tm: Any, args: argparse.Namespace, space: str, threads: list[int]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for t in threads:
        status = tm.this_machine_status(t, args.precision, space, args.cache_dir)
        result[f"{t}t"] = {"ready": status.ready, "profile": str(status.profile_path) if status.profile_path else None,
                           "message": status.message,
                           "label": tm.latency_label(t, args.precision, space, args.cache_dir)}
        profile = tm.load_this_machine_profile(t, args.precision, space, args.cache_dir) if status.ready else None
        speed = profile.provenance.get("machine_speed") if profile is not None else None
        if speed is not None:   # how steady the machine was while measured (runtime.measure.machine_speed)
            result[f"{t}t"]["machine_speed"] = {"spread": speed.get("spread"), "steady": speed.get("steady")}
    return result


def _mcu_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(PROFILES_DIR), metavar="DIR",
                        help="folder to write <part>.json into (default: the bundled assets/profiles)")
    parser.add_argument("--space", default="*",
                        help="search space the profiles are for (default '*': any space; they count MACs, "
                             "memory and Flash from the config)")
    parser.add_argument("--date", default=None, help="provenance date, YYYY-MM-DD (default today; the "
                                                     "bundled files are dated 2026-11-28)")


@register("write-mcu-profiles", f"write the analytical microcontroller profiles ({', '.join(MCU_PARTS)})",
          _mcu_arguments)
def run_write_mcu_profiles(args: argparse.Namespace) -> int:
    from ..devices.profiles import ANY_SPACE
    space = args.space if args.space == ANY_SPACE else load_space(args.space).name
    print_json({"written": [str(p) for p in write_mcu_profiles(args.out, space, args.date)]})
    return EXIT_OK
