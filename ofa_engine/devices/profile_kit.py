"""Profile your own device: a kit of ONNX subnets to measure there, and the fit back here.

1. `write_profile_kit(space, out_dir, n)` (CLI `profile-kit`) writes `n` subnets as ONNX
   files, `manifest.json`, `runner.py` and `ort.py` (verbatim copies of
   `ofa_engine/runtime/measure.py` and `ofa_engine/runtime/ort.py`: they need only onnxruntime
   and numpy) and README.txt. `kit_zip_bytes(...)` is the same kit as a zip.
2. On the device: `python runner.py KIT_DIR [--threads T]` writes `KIT_DIR/results.csv`.
3. `fit_profile_from_csv(results.csv, name)` (CLI `fit-profile`) checks the CSV, fits a latency
   model on 80% of the subnets, scores it on the other 20% and returns a `DeviceProfile`.

Latency does not depend on weight values, so the kit's subnets carry all-zero conv and linear
weights: same graphs and shapes, and the files compress to almost nothing in the zip.

A microcontroller runs no Python: its kit (`devices.mcu_kit`, CLI `profile-kit --mcu DEVICE`)
holds int8 files for the board's own toolchain and a results template instead, and
`fit_profile_from_csv` recognises the filled template and fits a measured int8 profile.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..families import family_of, preset_names
from ..files import atomic_write_text, loads_json, read_json
from ..progress import Progress, report
from ..runtime import measure, ort
from .machine import cpu_model, this_machine  # noqa: F401 - re-exported (the benchmarks print them)
from .profiles import DeviceProfile, config_json, today, write_validation_csv

log = logging.getLogger(__name__)

__all__ = ["write_profile_kit", "kit_zip_bytes", "kit_configs", "kit_candidates", "read_latency_csv",
           "fit_profile_from_csv", "read_latency_runs", "MIN_ROWS", "MAX_CSV_BYTES", "MAX_CSV_ROWS",
           "MAX_KIT_MODELS", "KIT_README", "profile_slug", "latency_spread", "kit_machine_speed", "load_prior",
           "DEFAULT_KIT_SUBNETS", "check_out_dir", "replace_dir", "csv_text", "kit_manifest", "space_provenance", "zip_folder"]

MIN_ROWS = 20
# Kit subnets are chosen from a pool of this many random candidates per subnet (at least KIT_POOL_MIN).
KIT_POOL_FACTOR, KIT_POOL_MIN = 10, 500
# The kit's default size: with a bundled profile as prior (fit-profile --prior), few-shot fits
# reach their plateau by ~20-30 subnets (docs/latency-fewshot.md); from scratch needs ~50-100.
DEFAULT_KIT_SUBNETS = 30
# A latency CSV row is ~150 bytes; our datasets have 400 rows. The caps keep a hostile file's
# row-by-row validation within a second or two.
MAX_CSV_BYTES = 4 << 20
MAX_CSV_ROWS = 20_000
# Models in one kit (each is exported, ~0.4 s): 100 is the default, 2000 is over 10 minutes.
MAX_KIT_MODELS = 2000
REQUIRED_COLUMNS = ("config", "median_ms", "threads", "batch_size")

KIT_README = """\
ofa_engine profile kit: measure how fast subnets of the '{space}' space run on YOUR device.

Contents: {n} ONNX models (m000.onnx ...), manifest.json (their subnet configs), runner.py and
ort.py (the ONNX Runtime session and timing runner.py uses).
The models carry zero weights: latency does not depend on weight values.

On the device (Python 3.9+):

    pip install onnxruntime numpy
    python runner.py .                  # run inside this folder; 1 thread (default)
    python runner.py . --threads 4      # or the thread count you will deploy with

It measures every model ({warmup} warm-up runs, then {runs} timed runs, median kept) and writes
results.csv here. Close other programs first; it takes about a minute on a laptop. It also
times a fixed workload before and after (machine_speed.json) and prints how steady the machine
was: "UNSTEADY" means its speed moved by more than 10% within seconds (a shared or throttling
machine), and latencies measured there scatter by as much.

Back on the machine with ofa_engine:

    python -m ofa_engine fit-profile results.csv --name "my device" {fit_target}

which fits a latency predictor, reports its accuracy on held-out subnets and writes a device
profile you can load with ofa_engine.devices.profiles.load_profile("my-device.json") or upload in the app.
On a shared or noisy machine, run runner.py again later (rename results.csv first) and pass every
run: `fit-profile results-1.csv results.csv ...` averages each subnet over the runs.
Batch size: {batch_size} (change with --batch-size; the profile records what you measured).
"""


# ---------------------------------------------------------------------- writing a kit
def kit_configs(space: Any, n: int, seed: int = 0,
                image_sizes: Sequence[int] | None = None) -> list[Any]:
    """`n` distinct subnets to measure, spread over the space: the smallest and the largest
    first (so the fit spans the whole range), then, from a seeded pool of `KIT_POOL_FACTOR` x n
    uniform random candidates (at least `KIT_POOL_MIN`, `kit_candidates`), the farthest-point
    choice in the latency features (`predictors.latency.fewshot.spread_indices`: each next
    subnet is the one least like those chosen), not plain random draws, which bunch up in the
    middle of the MACs range. `image_sizes` restricts the resolutions (e.g. for a quick test)."""
    from ..predictors.latency import architecture_features
    from ..predictors.latency.fewshot import spread_indices

    configs = kit_candidates(space, n, seed, image_sizes)
    if len(configs) <= n:
        return configs
    features, _ = architecture_features(space, configs)
    return [configs[i] for i in spread_indices(features, n, first=(0, 1))]


def kit_candidates(space: Any, n: int, seed: int = 0,
                   image_sizes: Sequence[int] | None = None) -> list[Any]:
    """The seeded pool `kit_configs` chooses `n` subnets from: the smallest subnet (at the
    smallest of `image_sizes`), the largest (at the largest), then up to max(`KIT_POOL_MIN`,
    `KIT_POOL_FACTOR` x n) distinct uniform random subnets. `ValueError` for a bad `n` or
    `image_sizes`."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= MAX_KIT_MODELS:
        raise ValueError(f"n = {n!r}; allowed: an integer 2..{MAX_KIT_MODELS} (MAX_KIT_MODELS; >= "
                         f"{MIN_ROWS} to fit a profile from scratch, >= 5 with a --prior)")
    sizes = tuple(space.resolutions) if image_sizes is None else tuple(int(s) for s in image_sizes)
    bad = [s for s in sizes if s not in space.resolutions]
    if not sizes or bad:
        raise ValueError(f"image_sizes {list(sizes)}; allowed: a non-empty subset of {list(space.resolutions)}")
    rng = np.random.default_rng(seed)
    at_size = family_of(space, fast=False).config_from_dict
    configs = [at_size({**space.smallest().to_dict(), "image_size": min(sizes)}),
               at_size({**space.largest().to_dict(), "image_size": max(sizes)})]
    seen = set(configs)
    pool_size = max(KIT_POOL_MIN, KIT_POOL_FACTOR * n)
    for _ in range(100 * pool_size):
        if len(configs) >= pool_size + 2:
            break
        cfg = space.sample(rng)
        cfg = at_size({**cfg.to_dict(), "image_size": int(rng.choice(sizes))})
        if cfg not in seen:
            seen.add(cfg)
            configs.append(cfg)
    return configs


def write_profile_kit(space: Any, out_dir: str | os.PathLike, n: int = 100, seed: int = 0,
                      batch_size: int = 1, image_sizes: Sequence[int] | None = None,
                      overwrite: bool = False, progress: Progress | None = None,
                      supernet: str | None = None) -> Path:
    """Write a profile kit for `space` into `out_dir` (created; must be empty unless
    `overwrite`): `n` ONNX subnets, manifest.json, runner.py, ort.py, README.txt. Returns the
    folder. `progress(done, total, message)` is called after each model (the export takes
    ~0.4 s per model). `supernet`: the package the kit is for (a package's space), as the
    README's fit-profile command names it.
    """
    from .profile_schema import MAX_BATCH_SIZE

    space = family_of(space, fast=False).space
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size = {batch_size!r}; allowed: an integer 1..{MAX_BATCH_SIZE} (MAX_BATCH_SIZE)")
    out = check_out_dir(out_dir, overwrite)
    configs = kit_configs(space, n, seed, image_sizes)
    with replace_dir(out) as partial:
        _write_kit_files(space, partial, configs, seed, batch_size, progress, package=supernet)
    return out


def check_out_dir(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """`out_dir` as a kit's folder: a path that is not a file, empty unless `overwrite`."""
    if not os.fspath(out_dir).strip():
        raise ValueError("--out '' names no folder; allowed: a folder path such as kit/")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out '{out}' exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out '{out}' is not empty; choose a new folder (or pass --force to "
                         f"overwrite the kit in it)")
    return out


@contextlib.contextmanager
def replace_dir(out: Path) -> Iterator[Path]:
    """A private folder beside `out` to write a kit into, renamed into place when the block
    ends without error: a full disk or a kill midway leaves no partial kit, and a rerun starts
    clean. An existing `out` (empty, or overwritten) goes only once the new kit is complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield partial
        if out.is_dir():
            old = out.with_name(f".{out.name}.{os.getpid()}.old")
            out.rename(old)
            partial.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            partial.rename(out)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)


def _write_kit_files(space: Any, out: Path, configs: Sequence[Any], seed: int,
                     batch_size: int, progress: Progress | None, package: str | None = None) -> None:
    import torch

    from ..runtime.export import export_onnx, untrained_supernet

    os.chmod(out, 0o755)   # mkdtemp makes it 0700; a kit is meant to be copied and shared
    supernet = untrained_supernet(space, seed)
    models = []
    for i, cfg in enumerate(configs):
        file = f"m{i:03d}.onnx"
        net = supernet.extract(cfg)
        with torch.no_grad():
            for module in net.modules():
                # Zero weights: identical graphs and timings, and the files compress to nothing.
                if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                    module.weight.zero_()
                    if module.bias is not None:
                        module.bias.zero_()
        export_onnx(net, cfg, out / file, space=space)
        models.append({"file": file, "config": cfg.to_dict()})
        report(progress, i + 1, len(configs), f"exported {file}")
    from .profiles import space_fingerprint
    manifest = {"format": measure.KIT_FORMAT, "version": measure.KIT_VERSION, "space": space.name,
                "space_fingerprint": space_fingerprint(space), "batch_size": int(batch_size), "seed": int(seed),
                "created": today(), "models": models}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    shutil.copyfile(measure.__file__, out / "runner.py")
    shutil.copyfile(ort.__file__, out / "ort.py")
    atomic_write_text(out / "README.txt", KIT_README.format(
        space=space.name, n=len(models), batch_size=batch_size, warmup=measure.DEFAULT_WARMUP,
        runs=measure.DEFAULT_RUNS,
        fit_target=f"--supernet {package}   # into the package" if package else "--out my-device.json"))


def kit_zip_bytes(space: Any, n: int = 100, seed: int = 0, batch_size: int = 1,
                  image_sizes: Sequence[int] | None = None, progress: Progress | None = None,
                  folder: str = "ofa-profile-kit") -> bytes:
    """The profile kit as a zip (everything under `folder/`), e.g. for a download button."""
    with tempfile.TemporaryDirectory(prefix="ofa-kit-") as tmp:
        kit = write_profile_kit(space, Path(tmp) / "kit", n=n, seed=seed, batch_size=batch_size,
                                image_sizes=image_sizes, progress=progress)
        return zip_folder(kit, folder)


def zip_folder(kit: Path, folder: str) -> bytes:
    """The files of the kit folder `kit` as a zip, each under `folder/`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(kit.iterdir()):
            zf.write(path, f"{folder}/{path.name}")
    return buffer.getvalue()


# ---------------------------------------------------------------------- reading results
def read_latency_csv(csv_path: str | os.PathLike, space: Any, min_rows: int = MIN_ROWS
                     ) -> tuple[list[Any], np.ndarray, int, int, int | None]:
    """(configs, median_ms, threads, batch_size, runs) from a profile-kit results.csv (or a
    latency dataset with the same columns), checked row by row: `ValueError` naming the row
    (1 = first data row) and column."""
    path = Path(csv_path)
    text = csv_text(path)
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        from .mcu_kit import REQUIRED_TEMPLATE_COLUMNS
        raise ValueError(f"'{path}': missing column(s) {missing}; a latency CSV has the columns "
                         f"{list(measure.RESULT_COLUMNS)} (the profile kit's results.csv), or, filled in from a "
                         f"microcontroller kit (profile-kit --mcu), {list(REQUIRED_TEMPLATE_COLUMNS)} and more")
    configs, latencies, threads, batches, runs = [], [], set(), set(), set()
    for row_number, row in enumerate(reader, start=1):
        if row_number > MAX_CSV_ROWS:
            raise ValueError(f"'{path}' has more than {MAX_CSV_ROWS:,} rows; allowed: at most "
                             f"{MAX_CSV_ROWS:,} (MAX_CSV_ROWS)")

        def bad(column: str, allowed: str) -> ValueError:
            return ValueError(f"'{path}' row {row_number}, column '{column}' = {row.get(column)!r}; "
                              f"allowed: {allowed}")
        if None in row or any(row.get(c) is None for c in REQUIRED_COLUMNS):
            raise ValueError(f"'{path}' row {row_number}: has {len(row) - (None in row)} fields where "
                             f"the header has {len(columns)}")
        try:
            cfg = family_of(space, fast=False).config_from_dict(loads_json(row["config"], "subnet config"))
        except ValueError as exc:
            raise ValueError(f"'{path}' row {row_number}, column 'config': {exc} (space "
                             f"'{space.name}')") from None
        try:
            latency = float(row["median_ms"])
        except ValueError:
            raise bad("median_ms", "a positive number of milliseconds") from None
        if not np.isfinite(latency) or latency <= 0:
            raise bad("median_ms", "a positive number of milliseconds")
        for column, seen in (("threads", threads), ("batch_size", batches)):
            value = row[column].strip()
            if not value.isdigit() or int(value) < 1:
                raise bad(column, "an integer >= 1")
            seen.add(int(value))
        if row.get("runs", "").strip().isdigit():
            runs.add(int(row["runs"]))
        configs.append(cfg)
        latencies.append(latency)
    for column, seen in (("threads", threads), ("batch_size", batches)):
        if len(seen) > 1:
            raise ValueError(f"'{path}': column '{column}' mixes values {sorted(seen)}; one profile "
                             f"is one setting: measure each setting into its own CSV")
    if len(configs) < min_rows:
        hint = ("with --prior" if min_rows < MIN_ROWS else
                "to fit and validate a latency model from scratch; with --prior cpu-ort-1t, at least 5")
        raise ValueError(f"'{path}' has {len(configs)} measured subnets; allowed: at least {min_rows} "
                         f"{hint} (write the kit with a larger --n)")
    return configs, np.array(latencies), threads.pop(), batches.pop(), (min(runs) if runs else None)


def csv_text(path: Path) -> str:
    """The text of a latency CSV: an existing UTF-8 file of at most `MAX_CSV_BYTES`."""
    if not path.is_file():
        raise FileNotFoundError(2, "No such latency CSV", str(path))
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise ValueError(f"'{path}' is {size:,} bytes; allowed: at most {MAX_CSV_BYTES:,} "
                         f"(MAX_CSV_BYTES)")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"'{path}' is not a UTF-8 CSV file") from None


def read_latency_runs(csv_paths: Sequence[str | os.PathLike], space: Any, min_rows: int = MIN_ROWS
                      ) -> tuple[list[Any], np.ndarray, int, int, int | None]:
    """`read_latency_csv` of one or more runs over the same subnets (the kit run again, at another
    time). A subnet's latency is the geometric mean of its medians over the runs: averaging
    independent runs damps the run-to-run drift of a shared machine. The runs must hold the same
    subnets with the same threads and batch size; `runs` is the smallest count of timed runs."""
    paths = [Path(p) for p in csv_paths]
    if not paths:
        raise ValueError("no latency CSV given; allowed: one or more results.csv files")
    configs, first, threads, batch_size, runs = read_latency_csv(paths[0], space, min_rows)
    keys = [config_json(cfg) for cfg in configs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"'{paths[0]}' measures {len(keys) - len(set(keys))} subnet(s) twice; one row "
                         f"per subnet")
    logs = [np.log(first)]
    for path in paths[1:]:
        other, latency, t, b, r = read_latency_csv(path, space, min_rows)
        if (t, b) != (threads, batch_size):
            raise ValueError(f"'{path}' was measured with threads={t}, batch_size={b}, '{paths[0]}' with "
                             f"threads={threads}, batch_size={batch_size}; runs of one profile share "
                             f"one setting")
        by_key = dict(zip((config_json(cfg) for cfg in other), latency))
        missing = [k for k in keys if k not in by_key]
        if missing or len(other) != len(keys):
            raise ValueError(f"'{path}' does not measure the same subnets as '{paths[0]}' ({len(missing)} of "
                             f"its {len(keys)} missing, {len(other)} rows); runs of one profile "
                             f"measure one kit, one row per subnet")
        logs.append(np.log([by_key[k] for k in keys]))
        runs = None if runs is None or r is None else min(runs, r)
    return configs, np.exp(np.mean(logs, 0)), threads, batch_size, runs


def latency_spread(csv_path: str | os.PathLike) -> dict[str, Any]:
    """How noisy a results.csv is: each subnet's relative spread, (q3_ms - q1_ms) / median_ms
    (the quartiles of all its timed runs, which the runner writes beside the median). Returns
    the median spread, and the rows (1 = first data row) whose spread is more than twice that
    and above 0.3: measured while the machine's speed moved, so their medians are the least
    trustworthy. Differences between subnets smaller than their spreads are noise."""
    path = Path(csv_path)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    spread = []
    for row in rows:
        try:
            spread.append((float(row["q3_ms"]) - float(row["q1_ms"])) / float(row["median_ms"]))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            spread.append(float("nan"))
    values = np.array(spread, np.float64)
    if not np.isfinite(values).any():
        return {"csv": path.name, "median_relative_spread": None, "noisy_rows": []}
    median = float(np.nanmedian(values))
    noisy = [i + 1 for i, v in enumerate(values) if np.isfinite(v) and v > max(0.3, 2 * median)]
    return {"csv": path.name, "median_relative_spread": round(median, 3), "noisy_rows": noisy,
            "machine_speed": kit_machine_speed(path)}


def kit_machine_speed(csv_path: str | os.PathLike) -> dict[str, Any] | None:
    """How steady the machine was while the runner measured `csv_path` (the runner's
    `machine_speed.json` beside it: spread, steady and what that means), or None when there is
    no such file or it is not one the runner writes (it is advice, never required)."""
    from ..runtime.measure import SPEED_FILE, MachineSpeed
    speed_file = Path(csv_path).parent / SPEED_FILE
    if not speed_file.is_file():
        return None
    try:
        data = read_json(speed_file)
        speed = MachineSpeed(**{k: data[k] for k in ("median_ms", "p10_ms", "p90_ms", "samples", "seconds")})
        if not all(isinstance(getattr(speed, k), (int, float)) and not isinstance(getattr(speed, k), bool)
                   and np.isfinite(getattr(speed, k)) and getattr(speed, k) > 0
                   for k in ("median_ms", "p10_ms", "p90_ms", "samples", "seconds")):
            raise ValueError("not positive numbers")
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("ignored '%s': not a machine_speed.json of the kit runner (%s)", speed_file, exc)
        return None
    return {"spread": round(speed.spread, 4), "steady": speed.steady, "summary": speed.describe()}


def _header(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return next(csv.reader([fh.readline()]), [])
    except (OSError, UnicodeDecodeError):
        return []


def kit_manifest(csv_path: Path) -> dict[str, Any] | None:
    manifest = csv_path.parent / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        data = read_json(manifest)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _space_of(csv_path: Path, space: Any) -> Any:
    from .profiles import space_fingerprint
    manifest = kit_manifest(csv_path)
    name = manifest.get("space") if manifest is not None else None
    if space is not None:
        space = family_of(space, fast=False).space
        # A kit written for another space (or another architecture of the same name) is refused.
        recorded = manifest.get("space_fingerprint") if manifest is not None else None
        if isinstance(name, str) and (name != space.name or (isinstance(recorded, str)
                                                             and recorded != space_fingerprint(space))):
            raise ValueError(f"'{csv_path}': its kit (manifest.json) was written for space '{name}'"
                             + (" of another architecture" if name == space.name else "")
                             + f", not '{space.name}'; allowed: the kit's own space (profile-kit --supernet PKG "
                               f"writes a kit for a package's space)")
        return space
    if isinstance(name, str):
        if name not in preset_names():
            raise ValueError(f"'{csv_path}': the kit is for space '{name}', a supernet package's own space; "
                             f"pass --supernet PKG (that package)")
        return _preset(name)
    raise ValueError(f"cannot tell the search space of '{csv_path}': no kit manifest.json next to "
                     f"it; pass --space")


def space_provenance(space: Any) -> dict[str, str]:
    """`space_fingerprint` for a space that is not the preset of its name (a package's own)."""
    from .profiles import space_fingerprint
    fingerprint = space_fingerprint(space)
    if space.name in preset_names() and fingerprint == space_fingerprint(_preset(space.name)):
        return {}
    return {"space_fingerprint": fingerprint}


def _preset(name: str) -> Any:
    """The space object of the preset `name`."""
    return family_of(name, fast=False).space


def profile_slug(name: str) -> str:
    """The profile name of free text ("my device" -> "my-device"); `ValueError` without a letter or digit."""
    import re
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.strip().lower()).strip("-._")[:64]
    if not slug:
        raise ValueError(f"--name {name!r}: needs at least one letter or digit")
    return slug


# ---------------------------------------------------------------------- fitting
def fit_profile_from_csv(csv_path: str | os.PathLike | Sequence[str | os.PathLike], name: str, *, display_name: str | None = None,
                         space: Any = None, model: str = "learned",
                         test_fraction: float = 0.2, seed: int = 0, ram_kb: float | None = None,
                         flash_kb: float | None = None, runtime_version: str | None = None,
                         measure_locally: bool = False, machine: str | None = None,
                         command: str | None = None, validation_out: str | os.PathLike | None = None,
                         prior: str | os.PathLike | DeviceProfile | None = None, method: str | None = None
                         ) -> DeviceProfile:
    """Fit a measured `DeviceProfile` to a latency CSV (the profile kit's results.csv).

    Protocol (`latency_models.profile_fit`): the subnets are split (seeded), a model
    (`model`: "learned" or "macs-linear") fitted on the training part is scored on the
    `test_fraction` held out (the profile's `quality`; with `validation_out` its held-out
    config, measured_ms, predicted_ms go to that CSV), then the shipped model is refitted on all.
    `csv_path` may be a list of runs over the same subnets (`read_latency_runs`: each subnet's
    latency is then the geometric mean of its medians).
    `name` may be free text ("my device"): the profile name is its slug, the text its display name.
    `measure_locally` marks a profile of the machine running the engine (the bundled cpu-ort-*).
    `prior` (a bundled profile name such as "cpu-ort-1t", or a profile file with a learned
    model): few-shot fitting from K >= 5 subnets on top of the prior's model
    (`predictors.latency.fewshot`, `method` default `DEFAULT_FEWSHOT_METHOD`); quality is then
    leave-one-out over the K (there are too few to hold out a fifth).
    """
    from ..predictors.latency import profile_fit

    csv_paths = [Path(csv_path)] if isinstance(csv_path, (str, os.PathLike)) else [Path(p) for p in csv_path]
    if not csv_paths:
        raise ValueError("no latency CSV given; allowed: one or more results.csv files")
    for path in csv_paths:
        if not path.is_file():
            raise FileNotFoundError(2, "No such latency CSV", str(path))
    space = _space_of(csv_paths[0], space)
    from .mcu_kit import MCU_KIT_FORMAT, fit_mcu_profile, is_mcu_results
    if any(is_mcu_results(p) for p in csv_paths):
        for option, value in (("--prior", prior), ("--method", method), ("--local", measure_locally or None)):
            if value is not None:
                raise ValueError(f"{option} does not apply to a microcontroller kit's results.csv (it is fitted "
                                 f"from scratch, from at least {MIN_ROWS} timed files); leave it out")
        if len(csv_paths) > 1:
            raise ValueError(f"{len(csv_paths)} CSVs given; allowed: one filled results.csv of a microcontroller "
                             f"kit (average repeated timings into its latency_ms column)")
        return fit_mcu_profile(csv_paths[0], name, space, display_name=display_name, model=model,
                               test_fraction=test_fraction, seed=seed, ram_kb=ram_kb, flash_kb=flash_kb,
                               runtime_version=runtime_version, machine=machine, command=command,
                               validation_out=validation_out)
    for path in csv_paths:
        manifest = kit_manifest(path)
        if manifest is not None and manifest.get("format") == MCU_KIT_FORMAT:
            raise ValueError(f"'{path}' is in a microcontroller kit's folder but is not its filled results.csv "
                             f"template (columns {_header(path)}); allowed: that template with latency_ms "
                             f"filled in (README.md of the kit)")
    if prior is not None:
        return _fit_with_prior(csv_paths, space, name, prior, method, display_name=display_name,
                               ram_kb=ram_kb, flash_kb=flash_kb, runtime_version=runtime_version,
                               measure_locally=measure_locally, machine=machine, command=command,
                               validation_out=validation_out)
    if method is not None:
        raise ValueError(f"--method {method!r} needs --prior (a few-shot method fits on top of a prior profile)")
    configs, latencies, threads, batch_size, runs = read_latency_runs(csv_paths, space)
    fit = profile_fit(space, configs, latencies, kind=model, seed=seed, test_fraction=test_fraction)
    train, test = fit.train, fit.test
    profile = _measured_profile(
        name, display_name, space, batch_size, threads, ram_kb, flash_kb, runtime_version, measure_locally,
        latency_model=fit.model, quality=fit.quality,
        provenance={"machine": _machine(machine, measure_locally), "date": today(), **space_provenance(space),
                    "command": command or ("python -m ofa_engine fit-profile "
                                           + " ".join(str(p) for p in csv_paths) + f" --name {name!r}"),
                    "latency_data": ", ".join(p.name for p in csv_paths),
                    "method": (f"{len(configs)} subnets measured with ofa_engine.runtime.measure ("
                               f"{runs if runs else '?'} timed runs each, in interleaved bursts; the "
                               f"latency is the median of the burst medians"
                               + (f"; measured in {len(csv_paths)} separate runs, a subnet's latency is "
                                  f"the geometric mean of its {len(csv_paths)} medians" if len(csv_paths) > 1 else "")
                               + f"); quality: a model fitted on "
                               f"{len(train)} scored on the {len(test)} held out (seed {seed})"
                               + (f", ridge {fit.quality['ridge']:g} chosen by 5-fold cross-validation on the "
                                  f"{len(train)}" if "ridge" in fit.quality else "")
                               + f"; the shipped model is refitted on all {len(configs)}")})
    if validation_out is not None:
        test_configs = [configs[i] for i in test]
        write_validation_csv(validation_out, test_configs, latencies[test],
                             fit.held_out.predict_ms(space, test_configs))
    return profile



def load_prior(prior: str | os.PathLike | DeviceProfile) -> DeviceProfile:
    """The profile a few-shot fit starts from: a bundled name or a profile file whose latency
    model is learned (block-linear); `ValueError` naming what is allowed otherwise."""
    from ..predictors.latency import BlockLinearModel
    from .profiles import list_profiles, load_profile

    try:
        profile = load_profile(prior)
    except ValueError as exc:
        raise ValueError(f"--prior: {exc}") from None
    if not isinstance(profile.latency_model, BlockLinearModel):
        learned = [n for n in list_profiles() if isinstance(load_profile(n).latency_model, BlockLinearModel)]
        raise ValueError(f"--prior {profile.name!r} has a '{profile.latency_model.to_dict().get('type')}' latency "
                         f"model; allowed: a profile with a learned (block-linear) model, e.g. {learned}")
    return profile


def _machine(machine: str | None, measure_locally: bool) -> str:
    if machine is not None:
        return machine
    return this_machine() if measure_locally else "the device that ran the profile kit"


def _measured_profile(name: str, display_name: str | None, space: Any, batch_size: int, threads: int,
                      ram_kb: float | None, flash_kb: float | None, runtime_version: str | None,
                      measure_locally: bool, *, latency_model: Any, quality: Any,
                      provenance: dict[str, Any]) -> DeviceProfile:
    """A measured ONNX Runtime CPU profile (both fits build theirs here)."""
    if runtime_version is None and measure_locally:
        import onnxruntime
        runtime_version = onnxruntime.__version__
    return DeviceProfile(
        name=profile_slug(name), display_name=display_name or name.strip(), kind="measured",
        space=space.name, batch_size=batch_size, threads=threads,
        runtime={"engine": "onnxruntime", "version": runtime_version,
                 "provider": "CPUExecutionProvider", "graph_optimization": "ORT_ENABLE_ALL",
                 "execution_mode": "sequential", "measure_locally": bool(measure_locally)},
        memory={"ram_kb": ram_kb, "flash_kb": flash_kb}, latency_model=latency_model, quality=quality,
        bound_space=space, provenance=provenance)


def _fit_with_prior(csv_paths: Sequence[Path], space: Any, name: str,
                    prior: str | os.PathLike | DeviceProfile, method: str | None, *, display_name: str | None,
                    ram_kb: float | None, flash_kb: float | None, runtime_version: str | None,
                    measure_locally: bool, machine: str | None, command: str | None,
                    validation_out: str | os.PathLike | None) -> DeviceProfile:
    from ..predictors.latency import architecture_features, latency_metrics
    from ..predictors.latency.fewshot import (DEFAULT_FEWSHOT_METHOD, FEWSHOT_METHODS, MIN_FEWSHOT_SUBNETS,
                                              fewshot_fit_rows)

    method = DEFAULT_FEWSHOT_METHOD if method is None else method
    if method not in FEWSHOT_METHODS:
        raise ValueError(f"--method {method!r}; allowed: {list(FEWSHOT_METHODS)}")
    reference = load_prior(prior)
    if reference.space != space.name:
        raise ValueError(f"--prior {reference.name!r} describes space '{reference.space}', the CSV space "
                         f"'{space.name}'; allowed: a prior of the same space")
    configs, latencies, threads, batch_size, runs = read_latency_runs(csv_paths, space, MIN_FEWSHOT_SUBNETS)
    x, _ = architecture_features(space, configs)
    base = None if method == "scratch" else reference.latency_model
    fitted = fewshot_fit_rows(base, x, latencies, method, space=space)
    if not fitted.prediction_range(space)[0] > 0:
        raise ValueError(f"the {len(configs)} measured subnets fit a '{method}' model that predicts <= 0 ms for "
                         f"some subnet of space '{space.name}'; measure more subnets or use --method scale-offset")
    predicted = np.empty_like(latencies)
    for i in range(len(latencies)):
        keep = np.arange(len(latencies)) != i
        predicted[i] = fewshot_fit_rows(base, x[keep], latencies[keep], method,
                                        min_subnets=len(latencies) - 1).predict(x[i:i + 1])[0]
    quality = {k: int(v) if k == "n_test" else float(v) for k, v in latency_metrics(predicted, latencies).items()}
    quality["n_train"] = len(latencies) - 1
    profile = _measured_profile(
        name, display_name, space, batch_size, threads, ram_kb, flash_kb, runtime_version, measure_locally,
        latency_model=fitted.to_dict(), quality=quality,
        provenance={"machine": _machine(machine, measure_locally), "date": today(), **space_provenance(space),
                    "command": command or ("python -m ofa_engine fit-profile "
                                           + " ".join(str(p) for p in csv_paths) + f" --name {name!r} "
                                           f"--prior {reference.name}"),
                    "latency_data": ", ".join(p.name for p in csv_paths), "subnets": len(configs),
                    "fit": method, "prior": reference.name,
                    "prior_machine": reference.provenance.get("machine"),
                    "method": (f"{len(configs)} subnets measured with ofa_engine.runtime.measure ("
                               f"{runs if runs else '?'} timed runs each); few-shot fit '{method}' on top of the "
                               f"'{reference.name}' profile's model; quality: leave-one-out over the "
                               f"{len(configs)}")})
    if validation_out is not None:
        write_validation_csv(validation_out, configs, latencies, predicted)
    return profile
