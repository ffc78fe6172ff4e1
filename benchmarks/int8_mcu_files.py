"""The int8 files `specialize` gives for the microcontroller profiles, against their Flash budgets.

    python benchmarks/int8_mcu_files.py [--out docs/int8.md]

For stm32f412, stm32f746 and stm32h743 (default budgets: the device's SRAM and Flash, evolution,
seed 0, the profile's precision: int8): file size, weight bytes, analytic flash, the Flash
budget, both measured accuracies on test2k. Replaces (or inserts before "## int8 latency model")
the section "## int8 files for the microcontroller profiles" of `--out`.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout, no install

from benchmarks.docsections import write_sections  # noqa: E402
from ofa_engine import specialize  # noqa: E402
from ofa_engine.devices.profile_kit import cpu_model  # noqa: E402
from ofa_engine.devices.profiles import load_profile  # noqa: E402

MARKER, NEXT = "## int8 files for the microcontroller profiles", "## int8 latency model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "int8.md"))
    args = parser.parse_args()
    lines = ["| profile | precision | int8 file bytes | Flash budget bytes | weight bytes | analytic flash bytes "
             "| searches | fp32 acc % | int8 acc % | agree % |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("stm32f412", "stm32f746", "stm32h743"):
        profile = load_profile(name)
        spec = specialize(name)
        m = spec.report["measured"]
        searched = spec.report["searched_constraints"].get("flash_kb")
        tightened = "1" if searched == profile.flash_kb else f">1 (Flash bound {searched:.1f} KB)"
        lines.append(f"| {name} | {spec.report['precision']} | {len(spec.onnx_bytes):,} | "
                     f"{int(profile.flash_kb * 1024):,} | {m['weight_bytes']:,} | {round(m['flash_kb'] * 1024):,} | "
                     f"{tightened} | {100 * m['accuracies']['fp32']:.2f} | {100 * m['accuracies']['int8']:.2f} | "
                     f"{100 * m['int8_agreement']:.1f} |")
        print(lines[-1], flush=True)
    command = "python benchmarks/int8_mcu_files.py " + " ".join(sys.argv[1:])
    section = "\n".join([
        MARKER.strip(), "",
        f"Written by `{command.strip()}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"({cpu_model()}, shared with another process). `specialize(profile)` with the device's own budgets "
        "(SRAM, Flash), evolution, seed 0, in the profile's precision (int8); accuracies on the bundled "
        "test2k images (tests/test_int8.py checks the file against the budget for the three profiles):",
        "", *lines, "", ""])
    out = Path(args.out)
    write_sections(out, section, before=NEXT)
    print(section)


if __name__ == "__main__":
    main()
