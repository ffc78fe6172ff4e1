"""Microcontroller parts and their analytical device profiles.

`MCU_PARTS` lists the microcontroller classes (datasheet clock, SRAM and Flash, and the MACs
per cycle of int8 kernels); `mcu_profile(name)` is the analytical `DeviceProfile` of one and
`write_mcu_profiles(dir)` writes them all, as bundled in assets/profiles (command
`python -m ofa_engine write-mcu-profiles`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .profiles import ANALYTICAL_MODEL_TYPE, ANY_SPACE, PROFILES_DIR, DeviceProfile, today

__all__ = ["McuPart", "MCU_PARTS", "MCU_FORMULA", "mcu_profile", "write_mcu_profiles", "WRITE_COMMAND"]

# The command that writes the bundled files (recorded in their provenance).
WRITE_COMMAND = "python -m ofa_engine write-mcu-profiles --out assets/profiles"


@dataclass(frozen=True)
class McuPart:
    """A microcontroller class for an analytical profile (datasheet figures)."""

    display_name: str
    core: str
    clock_mhz: float
    sram_kb: int
    flash_kb: int
    macs_per_cycle: float
    macs_per_cycle_source: str


# Cortex-M7: TinyEngine's published latencies on an STM32H743 at 480 MHz (github.com/mit-han-lab/
# tinyengine README, "Measured Results"): mcunet-in3, 81.8M MACs, 336 ms -> 81.8e6 / (0.336 s *
# 480e6 Hz) = 0.507 MACs/cycle; mcunet-vww0, 6.0M MACs, 27 ms -> 0.463. We use 0.5 for both M7
# parts. Cortex-M4 has no dual issue (the M7 pairs the operand load with the SIMD MAC in the
# inner loop), so we take half: 0.25, an assumption until measured on a real F412.
_M7_SOURCE = ("TinyEngine measured on STM32H743 @ 480 MHz (mit-han-lab/tinyengine README, 'Measured "
              "Results'): mcunet-in3 81.8M MACs in 336 ms = 0.507 MACs/cycle, mcunet-vww0 6.0M MACs "
              "in 27 ms = 0.463 MACs/cycle; rounded to 0.5 for the Cortex-M7")
_M4_SOURCE = ("half the Cortex-M7 figure (0.5, TinyEngine on STM32H743, see stm32h743.json): the "
              "Cortex-M4 is single-issue where the M7 dual-issues the operand load with the SIMD MAC "
              "(SMLAD) of the int8 inner loop; an assumption, not a measurement on an F412")

MCU_PARTS: dict[str, McuPart] = {
    "stm32f412": McuPart("STM32F412 (Cortex-M4, 100 MHz, 256 KB SRAM, 1 MB Flash)", "Cortex-M4",
                         100.0, 256, 1024, 0.25, _M4_SOURCE),
    "stm32f746": McuPart("STM32F746 (Cortex-M7, 216 MHz, 320 KB SRAM, 1 MB Flash)", "Cortex-M7",
                         216.0, 320, 1024, 0.5, _M7_SOURCE),
    "stm32h743": McuPart("STM32H743 (Cortex-M7, 480 MHz, 512 KB SRAM, 2 MB Flash)", "Cortex-M7",
                         480.0, 512, 2048, 0.5, _M7_SOURCE),
}
MCU_FORMULA = "latency_ms = MACs / (macs_per_cycle * clock_mhz * 1e3) + overhead_ms"


def mcu_profile(name: str, space: str = ANY_SPACE, date: str | None = None) -> DeviceProfile:
    """The analytical profile of a microcontroller class in `MCU_PARTS` (int8 deployment with
    CMSIS-NN / TinyEngine-style kernels): SRAM holds the peak int8 activations, Flash the int8
    weights, latency = MACs at the part's clock and `macs_per_cycle` (see `MCU_FORMULA`).
    `space` "*" (default): it applies to every space, counting from the config it is given."""
    if name not in MCU_PARTS:
        raise ValueError(f"unknown microcontroller '{name}'; known: {sorted(MCU_PARTS)}")
    part = MCU_PARTS[name]
    model = {"type": ANALYTICAL_MODEL_TYPE, "clock_mhz": part.clock_mhz,
             "macs_per_cycle": part.macs_per_cycle, "overhead_ms": 0.0,
             "source": part.macs_per_cycle_source}
    return DeviceProfile(
        name=name, display_name=part.display_name, kind="analytical", space=space, batch_size=1,
        threads=None,
        runtime={"engine": "int8 MCU kernels (CMSIS-NN / TinyEngine class)", "version": None,
                 "provider": None, "graph_optimization": None, "core": part.core,
                 "clock_mhz": part.clock_mhz, "precision": "int8", "measure_locally": False},
        memory={"sram_kb": part.sram_kb, "flash_kb": part.flash_kb},
        latency_model=model, quality=None,
        provenance={
            "machine": "analytical (no device measured)",
            "date": date or today(),
            "command": WRITE_COMMAND,
            "formula": MCU_FORMULA,
            "macs_per_cycle_source": part.macs_per_cycle_source,
            "memory": "SRAM limit vs analyze() peak_activation_bytes (int8 activations, MCUNet "
                      "method); Flash limit vs analyze() flash_bytes (int8 weights + int32 biases); "
                      "runtime code and buffers not counted",
            "budgets_source": "MCUNet / TinyNAS microcontroller budgets (F412 256 KB / 1 MB, F746 "
                              "320 KB / 1 MB, H743 512 KB / 2 MB); clocks from the ST datasheets "
                              "(F412 100 MHz, F746 216 MHz, H743 480 MHz)",
        })


def write_mcu_profiles(out_dir: str | os.PathLike = PROFILES_DIR, space: str = ANY_SPACE,
                       date: str | None = None) -> list[Path]:
    """Write the analytical microcontroller profiles (one JSON each, `<name>.json`) to `out_dir`,
    dated `date` (default today); the bundled ones are `write_mcu_profiles(date="2026-11-28")`."""
    out_dir = Path(out_dir)
    return [mcu_profile(name, space, date).save(out_dir / f"{name}.json") for name in MCU_PARTS]
