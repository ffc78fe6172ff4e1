"""Does calibrating a profile to the machine's current speed help? Prints markdown tables.

    python benchmarks/bench_calibration.py [--profile cpu-ort-2t] [--repeats 5] [--check 40] [--subnets 8]

Each repeat calibrates the profile (`calibrate_profile`: the reference subnets measured now)
and right after measures `--check` other subnets (fresh ones, not in the profile's dataset nor
among the references), interleaved, with the profile's threads and batch size. It scores the
bundled profile and its calibrated copy on those check subnets: share within +-10% of measured,
MAPE, median measured / predicted. The check subnets are exported once, before the first repeat.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ofa_engine.devices.calibration import DEFAULT_SUBNETS, calibrate_profile  # noqa: E402
from ofa_engine.devices.latency_dataset import sample_configs  # noqa: E402
from ofa_engine.runtime.export import export_subnets  # noqa: E402
from ofa_engine.runtime.measure import measure_many  # noqa: E402
from ofa_engine.devices.profile_kit import this_machine  # noqa: E402
from ofa_engine.devices.profiles import load_profile  # noqa: E402

CHECK_SEED = 4242


def score(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    rel = predicted / measured - 1
    return {"within": float(np.mean(np.abs(rel) <= 0.10)), "mape": float(np.mean(np.abs(rel))),
            "ratio": float(np.median(measured / predicted))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu-ort-2t")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--check", type=int, default=40)
    parser.add_argument("--subnets", type=int, default=DEFAULT_SUBNETS)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds to wait between repeats")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    space = profile.search_space
    configs = sample_configs(space, args.check + 2, CHECK_SEED)[2:]
    predicted = profile.predict_latency_ms(configs)
    print(f"# Calibration benchmark: `{profile.name}` ({profile.threads} thread(s), batch {profile.batch_size})\n")
    print("Command: `python benchmarks/bench_calibration.py " + " ".join(sys.argv[1:] if argv is None else argv)
          + "`\n")
    print(__doc__.split("\n\n", 2)[2].strip() + "\n")
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {this_machine()}; "
          f"{args.repeats} repeats, {args.subnets} reference subnets, {args.check} check subnets.\n")
    print("| repeat | calibration s | scale | within +-10% raw | within +-10% calibrated | MAPE raw | "
          "MAPE calibrated | measured / predicted (median) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ofa-bench-cal-") as tmp:
        paths = export_subnets(space, configs, [Path(tmp) / f"check-{i:03d}.onnx" for i in range(len(configs))])
        for r in range(args.repeats):
            if r and args.pause:
                time.sleep(args.pause)
            cal = calibrate_profile(profile, args.subnets)
            measured = np.array([s.median_ms for s in measure_many(
                paths, threads=profile.threads, batch_size=profile.batch_size, seed=r)])
            raw, fixed = score(measured, predicted), score(measured, predicted * cal.scale)
            rows.append((cal.seconds, cal.scale, raw, fixed))
            print(f"| {r + 1} | {cal.seconds:.1f} | {cal.scale:.3f} | {raw['within']:.0%} | {fixed['within']:.0%} | "
                  f"{raw['mape']:.1%} | {fixed['mape']:.1%} | {raw['ratio']:.3f} |", flush=True)
    med = statistics.median
    print(f"| **median** | {med(r[0] for r in rows):.1f} | {med(r[1] for r in rows):.3f} | "
          f"{med(r[2]['within'] for r in rows):.0%} | {med(r[3]['within'] for r in rows):.0%} | "
          f"{med(r[2]['mape'] for r in rows):.1%} | {med(r[3]['mape'] for r in rows):.1%} | "
          f"{med(r[2]['ratio'] for r in rows):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
