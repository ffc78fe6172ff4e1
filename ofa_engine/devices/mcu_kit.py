"""The microcontroller path of the profile kit: int8 files for the board's own toolchain, a
results template to fill in, and the fit back to a measured int8 profile.

A microcontroller runs no Python: the CPU kit's runner cannot time anything there. The MCU kit
holds what an MCU toolchain imports instead (STM32Cube.AI / X-CUBE-AI takes int8 QDQ ONNX; TFLite
Micro after a conversion the user makes):

1. `write_mcu_kit(space, device, out_dir, n)` (CLI `profile-kit --mcu DEVICE`) chooses `n`
   subnets spread over the space that FIT the device (`mcu_kit_configs`: the int8 file within
   its Flash, `int8_file_bytes_bound`; the int8 activations within its SRAM, `analyze`), writes
   them as int8 QDQ ONNX files with a static (1, C, S, S) input "input" and (1, classes) output
   "logits", `manifest.json`, the template `results.csv` (one row per file, `latency_ms`
   empty) and README.md (how to time the files on the board). `mcu_kit_zip_bytes(...)` is the
   same kit as a zip.
2. On the board: the user times each file with their toolchain and fills in `latency_ms`
   (optionally the toolchain's RAM and Flash report).
3. `fit_profile_from_csv(results.csv, name)` (CLI `fit-profile`) recognises the template
   (`is_mcu_results`), checks it (`read_mcu_results`) and fits a measured int8 profile of the
   device (`fit_mcu_profile`): the same latency model and held-out protocol as the CPU kit, the
   device's memory limits kept.

Latency on a microcontroller does not depend on weight values, so the files carry the seeded
untrained supernet's weights (non-zero, so that every quantization scale is a real one).
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..families import family_of
from ..files import atomic_write_text, loads_json
from ..progress import Progress, report
from .profile_kit import MAX_CSV_ROWS, MIN_ROWS, kit_candidates, profile_slug, zip_folder
from .profiles import DeviceProfile, config_json, load_profile, space_fingerprint, today, write_validation_csv

__all__ = ["McuTarget", "mcu_target", "mcu_kit_configs", "int8_file_bytes_bound", "write_mcu_kit",
           "mcu_kit_zip_bytes", "is_mcu_results", "read_mcu_results", "McuResults", "fit_mcu_profile",
           "MCU_KIT_FORMAT", "MCU_KIT_VERSION", "TEMPLATE_COLUMNS", "REQUIRED_TEMPLATE_COLUMNS",
           "DEFAULT_MCU_KIT_SUBNETS", "MCU_KIT_README", "MCU_RESULTS_FILE"]

MCU_KIT_FORMAT, MCU_KIT_VERSION = "ofa-engine/mcu-profile-kit", 1
MCU_RESULTS_FILE = "results.csv"
# MIN_ROWS fit a profile from scratch; 4 more leave room for a file the toolchain refuses.
DEFAULT_MCU_KIT_SUBNETS = MIN_ROWS + 4
# The template's columns: the kit fills the first six, the user `latency_ms` (required) and the
# toolchain's memory report (optional, KB = 1024 bytes, as X-CUBE-AI reports KiB).
TEMPLATE_COLUMNS = ("file", "device", "config", "macs", "onnx_file_bytes", "analytic_peak_activation_bytes",
                    "latency_ms", "measured_ram_kb", "measured_flash_kb")
REQUIRED_TEMPLATE_COLUMNS = ("file", "device", "config", "macs", "latency_ms")
OPTIONAL_MEMORY_COLUMNS = ("measured_ram_kb", "measured_flash_kb")


# ---------------------------------------------------------------------- the device
@dataclass(frozen=True)
class McuTarget:
    """What the kit needs of a microcontroller profile: its name and its limits (KB)."""

    name: str
    display_name: str
    sram_kb: float
    flash_kb: float
    core: str | None = None
    clock_mhz: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "display_name": self.display_name, "sram_kb": self.sram_kb,
                "flash_kb": self.flash_kb, "core": self.core, "clock_mhz": self.clock_mhz}


def mcu_target(device: str | os.PathLike | Mapping[str, Any] | DeviceProfile | McuTarget) -> McuTarget:
    """The microcontroller of a profile (a bundled name such as "stm32f746", a profile file or a
    `DeviceProfile`; an `McuTarget` is returned as it is): it must state an SRAM and a Flash
    limit; `ValueError` naming what is allowed otherwise."""
    from .profiles import list_profiles
    if isinstance(device, McuTarget):
        return device
    try:
        profile = load_profile(device)
    except ValueError as exc:
        raise ValueError(f"--mcu: {exc}") from None
    memory = profile.memory
    if memory.get("sram_kb") is None or memory.get("flash_kb") is None:
        mcus = [n for n in list_profiles() if load_profile(n).memory.get("sram_kb") is not None]
        raise ValueError(f"--mcu '{profile.name}' has memory {dict(memory)}; allowed: a microcontroller "
                         f"profile with both 'sram_kb' and 'flash_kb' limits, e.g. {mcus}")
    return McuTarget(profile.name, profile.display_name, float(memory["sram_kb"]), float(memory["flash_kb"]),
                     profile.runtime.get("core"), profile.runtime.get("clock_mhz"))


# ---------------------------------------------------------------------- choosing the subnets
def _analyze(space: Any, configs: Any) -> dict[str, Any]:
    """The closed-form metrics of the family of `space` (`NetworkFamily.analyze`)."""
    return family_of(space, fast=False).analyze(configs)


def int8_file_bytes_bound(space: Any, configs: Sequence[Any]) -> np.ndarray:
    """An upper bound on the bytes of each config's int8 QDQ file, vectorised over configs:
    `analyze`'s `flash_bytes` (int8 weights, int32 biases) plus what
    `runtime.quantize.estimate_overhead_bytes` bounds for the extracted net (a float32 scale
    per output channel of every conv / linear weight and per bias channel, the graph), counted
    by the family (`LatencyFeatures.int8_scale_counts`) instead of on a built network (tests
    check both agree)."""
    from ..predictors.latency import features_of
    from ..runtime.quantize import FIXED_GRAPH_BYTES, LAYER_GRAPH_BYTES

    scales, layers = features_of(space).int8_scale_counts(configs)
    overhead = FIXED_GRAPH_BYTES + 4 * scales + LAYER_GRAPH_BYTES * layers
    return np.asarray(_analyze(space, list(configs))["flash_bytes"], np.int64) + overhead


def mcu_kit_configs(space: Any, device: Any, n: int = DEFAULT_MCU_KIT_SUBNETS, seed: int = 0,
                    image_sizes: Sequence[int] | None = None) -> list[Any]:
    """`n` distinct subnets that fit `device` (an MCU profile, see `mcu_target`) as int8 files:
    from the seeded pool of `profile_kit.kit_candidates`, those whose int8 file
    (`int8_file_bytes_bound`) fits the Flash and whose int8 activations (`analyze`'s
    `peak_activation_bytes`) fit the SRAM; the fewest and the most MACs among them first, then
    the farthest-point choice in the latency features, as `kit_configs` does. Fewer than `n`
    when fewer fit; `ValueError` when none does, naming the smallest subnet's needs."""
    from ..predictors.latency import architecture_features
    from ..predictors.latency.fewshot import spread_indices

    target = mcu_target(device)
    pool = kit_candidates(space, n, seed, image_sizes)
    file_bytes = int8_file_bytes_bound(space, pool)
    metrics = _analyze(space, pool)
    fits = (file_bytes <= target.flash_kb * 1024) & (metrics["peak_activation_bytes"] <= target.sram_kb * 1024)
    if not fits.any():
        i = int(np.argmin(metrics["macs"]))
        raise ValueError(
            f"no subnet of space '{space.name}' fits {target.name} as an int8 file: the smallest "
            f"({config_json(pool[i])}) needs up to {file_bytes[i] / 1024:,.0f} KB of Flash (limit "
            f"{target.flash_kb:g} KB) and {metrics['peak_activation_bytes'][i] / 1024:,.1f} KB of SRAM (limit "
            f"{target.sram_kb:g} KB); allowed: a space whose subnets fit (e.g. tiny-fmnist) or a larger device")
    index = np.flatnonzero(fits)
    macs = metrics["macs"][index]
    if len(index) <= n:
        return [pool[i] for i in index]
    features, _ = architecture_features(space, [pool[i] for i in index])
    first = (int(np.argmin(macs)), int(np.argmax(macs)))
    return [pool[index[i]] for i in spread_indices(features, n, first=first)]


# ---------------------------------------------------------------------- writing the kit
MCU_KIT_README = """\
# ofa_engine microcontroller profile kit: {device_display}

Measure how fast subnets of the '{space}' space run on YOUR board, with YOUR toolchain, and
turn the numbers into a device profile that the engine's search uses instead of its
analytical guess.

## What is here

- {n} int8 ONNX files (m000.onnx ...), each a subnet that fits the {device} ({sram_kb:g} KB SRAM,
  {flash_kb:g} KB Flash): int8 QDQ (QuantizeLinear / DequantizeLinear around Conv, Gemm, ...;
  int8 weights per channel, int8 activations, int32 biases), ONNX opset {opset}, batch 1.
  Input `input`: float32 (1, {channels}, S, S), S per file below; output `logits`: float32
  (1, {classes}). The weights are untrained: latency does not depend on their values.
- `results.csv`: the template to fill in, one row per file.
- `manifest.json`: the subnet configs, the device and the space (fit-profile checks against it).

| file | input | MACs | file KB | int8 activations KB (analytic) |
|---|---|---:|---:|---:|
{table}

## 1. Import a file into STM32Cube.AI (X-CUBE-AI / ST Edge AI)

X-CUBE-AI imports quantized ONNX in this QDQ form directly.

- STM32CubeMX: enable the X-CUBE-AI software pack for your board, add a network, choose
  "ONNX" and m000.onnx, then "Analyze": the report gives the RAM and Flash the network needs
  (put them in `measured_ram_kb` / `measured_flash_kb` if you like).
- "Validate on target" flashes the aiValidation firmware and runs the network on the board
  over the serial link; its report gives the inference time measured on the board (ms; the
  serial transfers are not counted). That number is `latency_ms`.
- The same from the command line (`stedgeai` of ST Edge AI Core, `stm32ai` in older X-CUBE-AI;
  check `--help` of your version for the exact flags):

      stedgeai analyze  --model m000.onnx --target stm32
      stedgeai validate --model m000.onnx --target stm32 --mode target --desc serial:115200

  A loop over m*.onnx times the whole kit unattended.

## 1b. Or time it in your own firmware (any toolchain)

Around the call that runs one inference (X-CUBE-AI: `ai_network_run(...)`; TFLite Micro:
`interpreter.Invoke()`), read the Cortex-M cycle counter:

    CoreDebug->DEMCR |= CoreDebug_DEMCR_TRCENA_Msk;   /* enable the DWT */
    DWT->CYCCNT = 0;
    DWT->CTRL |= DWT_CTRL_CYCCNT_ENA_Msk;            /* (Cortex-M7: some parts need DWT->LAR = 0xC5ACCE55 first) */
    ...
    uint32_t start = DWT->CYCCNT;
    ai_network_run(network, ai_input, ai_output);    /* one inference */
    uint32_t cycles = DWT->CYCCNT - start;
    /* latency_ms = cycles / (SystemCoreClock / 1000.0) */

Run a few warm-up inferences, then time N >= 20 and keep the median; with a 1 ms tick,
`HAL_GetTick()` around a loop of N inferences divided by N works too. Measure at the clock
you deploy with (the {device} profile assumes {clock}), caches enabled as in your product,
weights in internal Flash.

TFLite Micro takes .tflite files, not ONNX: converting each file is your step (for instance
with onnx2tf, which can write a full-integer int8 .tflite; see its documentation for the flags
of your version). The kit does not depend on any converter. The latency of a subnet does not
depend on its weight values, so a file re-quantized by the converter times like this one, as
long as it stays int8 with batch 1 and the same input size.

## 2. Fill in results.csv

One row per file, in the kit's order: the first files already span the range (the fewest and
the most MACs come first), so time them first. Put the measured latency in milliseconds in `latency_ms` (a positive
number, dot as the decimal mark). `measured_ram_kb` and `measured_flash_kb` are optional (the
toolchain's report, in KB = 1024 bytes). Leave every other column as it is: `config`
identifies the subnet and `macs` is checked against it (a spreadsheet may save the file with
semicolons; that is read too). A file your toolchain refuses: delete
its row (at least {min_rows} rows are needed to fit and score a latency model).

## 3. Bring the numbers back

    python -m ofa_engine fit-profile results.csv --name "my {device}" {fit_target}

or upload results.csv on the app's Device profiles page ("Upload measured latencies"). It
fits a latency model on 80% of the subnets, reports its error on the other 20%, and writes a
measured int8 profile of the board with the {device}'s memory limits (SRAM {sram_kb:g} KB,
Flash {flash_kb:g} KB; --ram-kb / --flash-kb override them).
"""


def write_mcu_kit(space: Any, device: Any, out_dir: str | os.PathLike,
                  n: int = DEFAULT_MCU_KIT_SUBNETS, seed: int = 0, image_sizes: Sequence[int] | None = None,
                  overwrite: bool = False, progress: Progress | None = None, supernet: str | None = None,
                  calibration_images: int | None = None) -> Path:
    """Write the MCU profile kit of `device` (an MCU profile: bundled name, file or
    `DeviceProfile`) for `space` into `out_dir` (created; must be empty unless `overwrite`): the
    `mcu_kit_configs` subnets as int8 QDQ ONNX files with static batch 1, manifest.json,
    results.csv (the template) and README.md. Returns the folder. `progress(done, total,
    message)` after each file (an int8 export takes ~1-3 s). `calibration_images`: seeded random
    inputs that set the activations' scales (default `LATENCY_CALIBRATION_IMAGES`; the values do
    not change what the kernels do). `supernet`: the package the kit is for, as the README's
    fit-profile command names it."""
    from ..runtime.export import LATENCY_CALIBRATION_IMAGES
    from .profile_kit import check_out_dir, replace_dir

    space = family_of(space, fast=False).space
    target = mcu_target(device)
    images = LATENCY_CALIBRATION_IMAGES if calibration_images is None else calibration_images
    if isinstance(images, bool) or not isinstance(images, (int, np.integer)) or not 1 <= images <= 1000:
        raise ValueError(f"calibration_images = {images!r}; allowed: an integer 1..1000")
    out = check_out_dir(out_dir, overwrite)
    configs = mcu_kit_configs(space, target, n, seed, image_sizes)
    with replace_dir(out) as partial:
        _write_mcu_files(space, target, partial, configs, seed, int(images), progress, supernet)
    return out


def _write_mcu_files(space: Any, target: McuTarget, out: Path, configs: Sequence[Any],
                     seed: int, images: int, progress: Progress | None, package: str | None) -> None:
    import torch

    from ..runtime.common import MIN_OPSET
    from ..runtime.export import export_onnx, torch_threads, untrained_supernet

    os.chmod(out, 0o755)   # mkdtemp makes it 0700; a kit is meant to be copied and shared
    metrics = _analyze(space, list(configs))
    limit = int(target.flash_kb * 1024)
    models = []
    with torch_threads(1):
        supernet = untrained_supernet(space, seed)
        for i, cfg in enumerate(configs):
            file = f"m{i:03d}.onnx"
            x = np.random.default_rng(seed).standard_normal(
                (images, space.in_channels, cfg.image_size, cfg.image_size)).astype(np.float32)
            with torch.no_grad():
                export_onnx(supernet.extract(cfg), cfg, out / file, space=space, precision="int8",
                            calibration=x, evaluation=x[:1], calibration_method="minmax", agreement_floor=0.0)
            _static_batch_one(out / file)
            size = (out / file).stat().st_size
            if size > limit:   # int8_file_bytes_bound is an upper bound: this does not happen
                raise RuntimeError(f"{file} is {size:,} bytes, over {target.name}'s Flash of {limit:,} bytes")
            models.append({"file": file, "config": cfg.to_dict(),
                           "input_shape": [1, space.in_channels, cfg.image_size, cfg.image_size],
                           "macs": int(metrics["macs"][i]), "onnx_file_bytes": size,
                           "analytic_peak_activation_bytes": int(metrics["peak_activation_bytes"][i]),
                           "analytic_flash_bytes": int(metrics["flash_bytes"][i])})
            report(progress, i + 1, len(configs), f"exported {file}")
    manifest = {"format": MCU_KIT_FORMAT, "version": MCU_KIT_VERSION, "space": space.name,
                "space_fingerprint": space_fingerprint(space), "device": target.to_dict(), "precision": "int8",
                "batch_size": 1, "opset": MIN_OPSET, "input": "input", "output": "logits",
                "seed": int(seed), "calibration_images": images, "created": today(), "models": models}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TEMPLATE_COLUMNS)
    for m in models:
        writer.writerow([m["file"], target.name, json.dumps(m["config"], separators=(",", ":")), m["macs"],
                         m["onnx_file_bytes"], m["analytic_peak_activation_bytes"], "", "", ""])
    atomic_write_text(out / MCU_RESULTS_FILE, buffer.getvalue())
    table = "\n".join(f"| {m['file']} | 1x{'x'.join(map(str, m['input_shape'][1:]))} | {m['macs']:,} | "
                      f"{m['onnx_file_bytes'] / 1024:,.0f} | {m['analytic_peak_activation_bytes'] / 1024:,.1f} |"
                      for m in models)
    clock = f"{target.clock_mhz:g} MHz" if target.clock_mhz else "the clock its profile states"
    atomic_write_text(out / "README.md", MCU_KIT_README.format(
        device=target.name, device_display=target.display_name, space=space.name, n=len(models),
        sram_kb=target.sram_kb, flash_kb=target.flash_kb, opset=MIN_OPSET, channels=space.in_channels,
        classes=space.num_classes, table=table, clock=clock, min_rows=MIN_ROWS,
        fit_target=f"--supernet {package}" if package else f"--out my-{target.name}.json"))


def _static_batch_one(path: Path) -> None:
    """Make an exported int8 file what an MCU toolchain takes: batch 1 on the input and the
    output (the export leaves the batch dynamic), and only the operator sets its nodes use
    (ONNX Runtime's quantizer declares a dozen of its own). Checked, then run once in ONNX Runtime."""
    import onnx

    from ..files import atomic_path
    from ..runtime.ort import make_session

    proto = onnx.load(os.fspath(path))
    for value in (*proto.graph.input, *proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = 1
    used = {node.domain or "" for node in proto.graph.node} | {""}
    kept = [o for o in proto.opset_import if (o.domain or "") in used]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    onnx.checker.check_model(proto, full_check=True)
    with atomic_path(path) as tmp:
        onnx.save(proto, os.fspath(tmp))
        shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
        make_session(os.fspath(tmp), threads=1).run(None, {"input": np.zeros(shape, np.float32)})


def mcu_kit_zip_bytes(space: Any, device: Any, n: int = DEFAULT_MCU_KIT_SUBNETS, seed: int = 0,
                      image_sizes: Sequence[int] | None = None, progress: Progress | None = None,
                      folder: str | None = None, calibration_images: int | None = None) -> bytes:
    """The MCU profile kit of `device` as a zip (everything under `folder/`, default
    `ofa-mcu-kit-<device>`), e.g. for a download button."""
    target = mcu_target(device)
    folder = folder or f"ofa-mcu-kit-{target.name}"
    with tempfile.TemporaryDirectory(prefix="ofa-mcu-kit-") as tmp:
        kit = write_mcu_kit(space, device, Path(tmp) / "kit", n=n, seed=seed, image_sizes=image_sizes,
                            progress=progress, calibration_images=calibration_images)
        return zip_folder(kit, folder)


# ---------------------------------------------------------------------- reading the template
def is_mcu_results(csv_path: str | os.PathLike) -> bool:
    """Is `csv_path` an MCU kit's results template (its header has `device` and `latency_ms`,
    not the CPU runner's `median_ms`)? False for anything unreadable (the CPU reader then says why)."""
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as fh:
            line = fh.readline()
    except (OSError, UnicodeDecodeError):
        return False
    columns = {c.strip() for c in next(csv.reader([line], delimiter=_delimiter(line)), [])}
    return {"device", "latency_ms"} <= columns and "median_ms" not in columns


def _delimiter(header: str) -> str:
    """"," or, for a template a spreadsheet saved with semicolons (decimal-comma locales), ";"."""
    return ";" if header.count(";") > header.count(",") else ","


@dataclass(frozen=True)
class McuResults:
    """A filled MCU results template, checked: one entry per row (row order)."""

    device: str
    files: list[str]
    configs: list[Any]
    latency_ms: np.ndarray
    measured_ram_kb: np.ndarray      # NaN where not filled in
    measured_flash_kb: np.ndarray
    manifest: dict[str, Any] | None


def read_mcu_results(csv_path: str | os.PathLike, space: Any, min_rows: int = MIN_ROWS) -> McuResults:
    """The filled template at `csv_path`, checked row by row: a `ValueError` names the row (1 =
    first data row), the file, the column, the value and what is allowed. A manifest.json beside
    it must be the MCU kit's, and then every row's file and config must be one of its models."""
    from .profile_kit import csv_text, kit_manifest

    path = Path(csv_path)
    text = csv_text(path).lstrip("\ufeff")   # a spreadsheet may save a byte-order mark first
    reader = csv.DictReader(io.StringIO(text), delimiter=_delimiter(text.split("\n", 1)[0]))
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    missing = [c for c in REQUIRED_TEMPLATE_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"'{path}': missing column(s) {missing}; the MCU kit's results.csv has the columns "
                         f"{list(TEMPLATE_COLUMNS)}")
    manifest = kit_manifest(path)
    models: dict[str, dict[str, Any]] | None = None
    if manifest is not None:
        if manifest.get("format") != MCU_KIT_FORMAT:
            raise ValueError(f"'{path}': the manifest.json beside it is not an MCU kit's (format "
                             f"{manifest.get('format')!r}, expected '{MCU_KIT_FORMAT}'); allowed: the results.csv "
                             f"of the kit written by profile-kit --mcu, in its own folder")
        models = {m.get("file"): m for m in manifest.get("models", []) if isinstance(m, dict)}
    devices, files, configs, macs_text, latency, ram, flash = set(), [], [], [], [], [], []
    seen: set[str] = set()
    for row_number, row in enumerate(reader, start=1):
        if row_number > MAX_CSV_ROWS:
            raise ValueError(f"'{path}' has more than {MAX_CSV_ROWS:,} rows; allowed: at most {MAX_CSV_ROWS:,}")
        if None in row or any(row.get(c) is None for c in REQUIRED_TEMPLATE_COLUMNS):
            raise ValueError(f"'{path}' row {row_number}: has {len(row) - (None in row)} fields where the "
                             f"header has {len(columns)}")
        file = row["file"].strip()
        where = f"'{path}' row {row_number} ({file or 'no file'})"
        if not file:
            raise ValueError(f"{where}, column 'file' is empty; allowed: the kit's file name (m000.onnx ...)")
        if file in seen:
            raise ValueError(f"{where}: file '{file}' is listed twice; one row per file")
        if models is not None and file not in models:
            raise ValueError(f"{where}: file '{file}' is not in this kit (manifest.json lists "
                             f"{len(models)} files, m000.onnx ...); allowed: the rows of the kit's template")
        devices.add(row["device"].strip())
        try:
            cfg = family_of(space, fast=False).config_from_dict(loads_json(row["config"], "subnet config"))
        except ValueError as exc:
            raise ValueError(f"{where}, column 'config': {exc} (space '{space.name}')") from None
        if models is not None and models[file].get("config") != cfg.to_dict():
            raise ValueError(f"{where}, column 'config' is not the config of {file} in the kit's manifest.json; "
                             f"allowed: the template's config, unchanged")
        latency.append(_positive(row, "latency_ms", where, "the latency measured on the board, in milliseconds",
                                 required=True))
        ram.append(_positive(row, "measured_ram_kb", where, "the toolchain's RAM report in KB, or empty"))
        flash.append(_positive(row, "measured_flash_kb", where, "the toolchain's Flash report in KB, or empty"))
        seen.add(file)
        files.append(file)
        configs.append(cfg)
        macs_text.append(row["macs"].strip())
    if configs:   # counted once for all rows; the first row that disagrees is named
        macs = _analyze(space, configs)["macs"]
        for i, (text, count) in enumerate(zip(macs_text, macs)):
            if text != str(int(count)):
                raise ValueError(f"'{path}' row {i + 1} ({files[i]}), column 'macs' = {text!r}, but the config has "
                                 f"{int(count)} MACs in space '{space.name}'; the row was edited or comes from a "
                                 f"kit of another space")
    if len(devices) > 1:
        raise ValueError(f"'{path}': column 'device' mixes {sorted(devices)}; one profile is one device: "
                         f"measure each device's kit into its own results.csv")
    device = devices.pop() if devices else ""
    kit_device = (manifest or {}).get("device")
    recorded = kit_device.get("name") if isinstance(kit_device, dict) else None
    if recorded is not None and device != recorded:
        raise ValueError(f"'{path}': column 'device' = {device!r}, but the kit was written for '{recorded}'")
    if len(set(config_json(c) for c in configs)) != len(configs):
        raise ValueError(f"'{path}' lists a subnet twice (two rows with the same config); one row per subnet")
    if len(configs) < min_rows:
        raise ValueError(f"'{path}' has {len(configs)} measured files; allowed: at least {min_rows} to fit and "
                         f"score a latency model (write the kit with a larger --n)")
    return McuResults(device, files, configs, np.array(latency), np.array(ram), np.array(flash), manifest)


def _positive(row: Mapping[str, Any], column: str, where: str, allowed: str, required: bool = False) -> float:
    text = (row.get(column) or "").strip()
    if not text:
        if required:
            raise ValueError(f"{where}, column '{column}' is empty; allowed: {allowed} (fill it in, or delete "
                             f"the row of a file you could not run)")
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{where}, column '{column}' = {text!r}; allowed: {allowed}, a positive number "
                         f"with a dot as the decimal mark")
    return value


# ---------------------------------------------------------------------- fitting
def fit_mcu_profile(csv_path: str | os.PathLike, name: str, space: Any, *, display_name: str | None = None,
                    model: str = "learned", test_fraction: float = 0.2, seed: int = 0,
                    ram_kb: float | None = None, flash_kb: float | None = None,
                    runtime_version: str | None = None, machine: str | None = None, command: str | None = None,
                    validation_out: str | os.PathLike | None = None) -> DeviceProfile:
    """A measured int8 profile of the microcontroller from its filled template (the protocol of
    `profile_kit.fit_profile_from_csv`: fit on 1 - `test_fraction` of the subnets, score on the
    rest, ship the model refitted on all). Memory: the device's SRAM and Flash limits (the
    manifest's, else the bundled profile's), or `ram_kb` / `flash_kb` where given. The
    toolchain's memory reports, where filled in, are summarised in the provenance."""
    from ..predictors.latency import profile_fit
    from .profile_kit import space_provenance

    results = read_mcu_results(csv_path, space)
    target = _target_of(results, csv_path, ram_kb, flash_kb)
    fit = profile_fit(space, results.configs, results.latency_ms, kind=model, seed=seed,
                      test_fraction=test_fraction)
    train, test = fit.train, fit.test
    path = Path(csv_path)
    provenance: dict[str, Any] = {
        "machine": machine or f"{target.display_name}, timed on the board with the MCU profile kit",
        "date": today(), **space_provenance(space),
        "command": command or f"python -m ofa_engine fit-profile {path} --name {name!r}",
        "latency_data": path.name, "device": target.name,
        "method": (f"{len(results.configs)} int8 subnets of the MCU profile kit, each timed on the device with "
                   f"the user's toolchain (latency_ms of results.csv); quality: a model fitted on {len(train)} "
                   f"scored on the {len(test)} held out (seed {seed})"
                   + (f", ridge {fit.quality['ridge']:g} chosen by 5-fold cross-validation on the {len(train)}"
                      if "ridge" in fit.quality else "")
                   + f"; the shipped model is refitted on all {len(results.configs)}"),
        "memory": (f"limits of {target.name}" + (" (overridden: --ram-kb / --flash-kb)"
                                                  if ram_kb is not None or flash_kb is not None else "")
                   + "; SRAM vs analyze() peak_activation_bytes, Flash vs the int8 file")}
    toolchain = _toolchain_memory(space, results)
    if toolchain:
        provenance["toolchain_memory"] = toolchain
    profile = DeviceProfile(
        name=profile_slug(name), display_name=display_name or name.strip(), kind="measured", space=space.name,
        batch_size=1, threads=1,   # a microcontroller runs one inference on one core
        runtime={"engine": "int8 MCU toolchain (STM32Cube.AI / X-CUBE-AI, TFLite Micro, ...)",
                 "version": runtime_version, "provider": None, "graph_optimization": None,
                 "core": target.core, "clock_mhz": target.clock_mhz, "precision": "int8",
                 "measure_locally": False},
        memory={"sram_kb": target.sram_kb, "flash_kb": target.flash_kb}, latency_model=fit.model,
        quality=fit.quality, bound_space=space, provenance=provenance)
    if validation_out is not None:
        test_configs = [results.configs[i] for i in test]
        write_validation_csv(validation_out, test_configs, results.latency_ms[test],
                             fit.held_out.predict_ms(space, test_configs))
    return profile


def _target_of(results: McuResults, csv_path: str | os.PathLike, ram_kb: float | None,
               flash_kb: float | None) -> McuTarget:
    """The device of the template: the manifest's record, else the bundled profile of its name;
    `ram_kb` / `flash_kb` replace its limits."""
    from .profiles import list_profiles
    recorded = (results.manifest or {}).get("device")
    if isinstance(recorded, dict):
        try:
            target = McuTarget(str(recorded["name"]), str(recorded.get("display_name") or recorded["name"]),
                               float(recorded["sram_kb"]), float(recorded["flash_kb"]), recorded.get("core"),
                               recorded.get("clock_mhz"))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"'{csv_path}': the kit's manifest.json has an unreadable 'device' entry") from None
    elif results.device in list_profiles():
        target = mcu_target(results.device)
    elif ram_kb is not None and flash_kb is not None:
        target = McuTarget(results.device or "mcu", results.device or "microcontroller", ram_kb, flash_kb)
    else:
        raise ValueError(f"'{csv_path}': device {results.device!r} is not a bundled profile and there is no kit "
                         f"manifest.json beside the CSV; allowed: a bundled microcontroller, or give its limits "
                         f"(--ram-kb and --flash-kb)")
    for flag, value in (("--ram-kb", ram_kb), ("--flash-kb", flash_kb)):
        if value is not None and (isinstance(value, bool) or not np.isfinite(value) or value <= 0):
            raise ValueError(f"{flag} {value!r}; allowed: a positive number of KB")
    return McuTarget(target.name, target.display_name, float(ram_kb if ram_kb is not None else target.sram_kb),
                     float(flash_kb if flash_kb is not None else target.flash_kb), target.core, target.clock_mhz)


def _toolchain_memory(space: Any, results: McuResults) -> dict[str, Any]:
    """The toolchain's RAM and Flash reports, where filled in, beside the engine's figures: how
    many, their range, and their median ratio to the analytic int8 peak activations (RAM) and to
    the int8 file (Flash; the manifest's file bytes, else the bound)."""
    out: dict[str, Any] = {}
    metrics = _analyze(space, results.configs)
    file_bytes = int8_file_bytes_bound(space, results.configs).astype(np.float64)
    models = {m.get("file"): m for m in (results.manifest or {}).get("models", []) if isinstance(m, dict)}
    for i, file in enumerate(results.files):
        if isinstance(models.get(file, {}).get("onnx_file_bytes"), int):
            file_bytes[i] = models[file]["onnx_file_bytes"]
    for column, reference, what in (
            ("measured_ram_kb", metrics["peak_activation_bytes"] / 1024, "analytic int8 peak activations"),
            ("measured_flash_kb", file_bytes / 1024, "int8 ONNX file")):
        values = getattr(results, column)
        filled = np.isfinite(values)
        if filled.any():
            ratio = values[filled] / np.asarray(reference, np.float64)[filled]
            out[column] = {"subnets": int(filled.sum()), "min_kb": float(values[filled].min()),
                           "max_kb": float(values[filled].max()),
                           f"median_ratio_to_{'peak' if 'ram' in column else 'file'}": round(
                               float(statistics.median(ratio.tolist())), 4),
                           "compared_with": what}
    return out
