"""Does the measured latency meet the budget on Specialize's defaults? (issue 33)

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/app_default_budgets.py [--runs 5]

For each measured CPU profile: Specialize's default latency budget (app.budgets.default_budget of
the profile's achievable range), searched as the app searches it, with its safety margin
(app.budgets.latency_margin: the profile's held-out error spread) and without (interleaved, the
same seed), `--runs` times in a row; each run exports the subnet and measures it with ONNX
Runtime here (the engine's `specialize`). Prints, per profile and way, how many runs' measured
median met the user's budget, and every run's numbers. Also, with Deploy everywhere's default
budgets (app.deployment.default_budgets), which subnet each bundled profile gets (search only).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.budgets import default_budget, latency_margin, searched_limits  # noqa: E402
from app.deployment import default_budgets  # noqa: E402
from ofa_engine import specialize  # noqa: E402
from ofa_engine.devices.machine import cpu_model  # noqa: E402
from ofa_engine.devices.profiles import load_profile, load_validation, profiles_for_space  # noqa: E402
from ofa_engine.packages import load_package  # noqa: E402
from ofa_engine.packages.package import bundled_packages  # noqa: E402
from ofa_engine.pipeline.resources import load_resources  # noqa: E402
from ofa_engine.search import Constraints, budget_ranges, search  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profiles", nargs="*", default=["cpu-ort-1t", "cpu-ort-2t"])
    args = parser.parse_args()
    package = load_package(str(bundled_packages()["tiny-fmnist"]), weights=False)
    resources = load_resources(package)
    print(f"`python benchmarks/app_default_budgets.py --runs {args.runs}`, {cpu_model()}, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")

    profiles = {row.name: load_profile(row.name).for_space(package.space)     # those the app offers
                for row in profiles_for_space(package) if row.has_latency_model}
    profiles = {n: p.for_precision(p.precision) for n, p in profiles.items()}
    ranges = {n: budget_ranges(resources.evaluator(p)) for n, p in profiles.items()}
    print("| profile | Deploy everywhere default budget | subnet (search only, seed 0) |\n|---|---|---|")
    for name, budget in default_budgets(ranges).items():
        constraints = Constraints(**({} if budget is None else {"latency_ms": budget})).with_device_memory(profiles[name])
        cfg = search(resources.evaluator(profiles[name]), constraints, "evolution", seed=0).config.to_dict()
        print(f"| {name} | {budget} ms | {cfg} |")

    print("\n| profile | way | budget (ms) | searched (ms) | measured medians (ms) | met |\n|---|---|---|---|---|---|")
    for name in args.profiles:
        profile = profiles[name]
        lat = ranges[name]["latency_ms"]
        budget = default_budget(float(lat["min"]), float(lat["max"]))
        margin = latency_margin(profile.quality, load_validation(profile))
        medians: dict[str, list[float]] = {"no margin": [], f"margin {margin:.1%}": []}
        for _ in range(args.runs):
            for way, m in zip(medians, (0.0, margin)):
                limits = searched_limits({"latency_ms": budget}, m)
                spec = specialize(profile, Constraints(**limits), "evolution", seed=0, supernet=package,
                                  precision="fp32")
                medians[way].append(spec.report["measured"]["latency_ms"])
        for way, values in medians.items():
            searched = searched_limits({"latency_ms": budget}, 0.0 if way == "no margin" else margin)["latency_ms"]
            met = sum(v <= budget for v in values)
            print(f"| {name} | {way} | {budget:g} | {searched:.4g} | {', '.join(f'{v:.4f}' for v in values)} | "
                  f"{met} of {len(values)} |")


if __name__ == "__main__":
    main()
