"""The app as a user meets it: cold start to an interactive home page, and a specialization.

    python benchmarks/bench_app.py [--runs 3] [--screenshots docs/img]

Each run starts a fresh `streamlit run` process (nothing cached in memory) and a headless
chromium (Debian's, via Playwright), and times
- cold start: `python -m app.serve` (streamlit run + the engine warm-up) process start -> the
  "Specialize" button is visible and the first
  script run is over, in a browser that is already open;
- specialization in the browser: click "Specialize" -> the "Download ONNX" button is visible and
  the script run is over (home page defaults: cpu-ort-1t, its default budget, evolution, seed 0).
It also times `specialize()` in-process (warm: resources loaded once) with the same settings.
Prints markdown (median and all runs) with the command, machine and date. `--screenshots DIR`
then saves docs-sized screenshots of every page as DIR/app-<page>.png.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout, no install
# No start-up latency profile in the measured servers: its background run would share the CPUs
# with the cold start being timed, and the screenshots would depend on this machine's cache.
os.environ.setdefault("OFA_APP_PROFILE_AT_START", "0")

from ofa_engine.devices.profile_kit import cpu_model  # noqa: E402
from tests.helpers_browser import chromium, serve_app, wait_idle  # noqa: E402

PAGES = [("specialize", ""), ("deploy", "deploy"), ("compare", "compare"), ("profiles", "profiles"),
         ("how-ofa-works", "how_ofa_works"), ("building-blocks", "building_blocks")]


def browser_run(log_path: Path) -> tuple[float, float, float]:
    """(cold start s, specialization s, server answering s) of one fresh server, seen from an
    already open browser."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        started = time.perf_counter()
        with serve_app(log_path=log_path) as url:
            healthy = time.perf_counter() - started
            page.goto(url)
            button = page.get_by_role("button", name="Specialize")
            button.wait_for(timeout=180_000)
            wait_idle(page, 180_000)
            cold = time.perf_counter() - started
            clicked = time.perf_counter()
            button.click()
            page.get_by_role("button", name="Download ONNX").wait_for(timeout=600_000)
            wait_idle(page, 600_000)
            specialization = time.perf_counter() - clicked
    return cold, specialization, healthy


def in_process_runs(runs: int) -> list[dict[str, float]]:
    """`specialize()` with the home page's defaults, resources loaded before timing."""
    import torch
    torch.set_num_threads(1)
    from ofa_engine.devices.profiles import list_profiles
    from ofa_engine.search import Constraints, budget_ranges
    from ofa_engine import specialize
    from ofa_engine.pipeline.specialize import load_resources

    names = list_profiles()
    name = "cpu-ort-1t" if "cpu-ort-1t" in names else names[0]
    resources = load_resources("tiny-fmnist")
    from ofa_engine.devices.profiles import load_profile
    profile = load_profile(name)
    ranges = budget_ranges(resources.evaluator(profile))
    field = "latency_ms" if "latency_ms" in ranges else "macs_m"
    limit = ranges[field]["min"] + 0.4 * (ranges[field]["max"] - ranges[field]["min"])
    out = []
    for seed in range(runs):
        start = time.perf_counter()
        spec = specialize(profile, Constraints(**{field: limit}), "evolution", seed=seed)
        out.append({"total": time.perf_counter() - start, **spec.report["timings_s"],
                    "profile": name, "budget": f"{field} <= {limit:.4g}"})
    return out


def screenshots(out_dir: Path, log_path: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with serve_app(log_path=log_path) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for name, path in PAGES:
            page.set_viewport_size({"width": 1400, "height": 1000})
            page.goto(f"{url}/{path}")
            page.get_by_role("heading").first.wait_for(timeout=180_000)
            wait_idle(page, 300_000)
            if name == "specialize":
                page.get_by_role("button", name="Specialize").click()
                page.get_by_role("button", name="Download ONNX").wait_for(timeout=600_000)
            elif name == "deploy":
                page.get_by_role("button", name="Specialize for every device").click()
                page.get_by_role("button", name=re.compile(r"^Download all")).wait_for(timeout=600_000)
            elif name == "compare":
                page.get_by_role("button", name="Run all strategies").click()
                page.get_by_test_id("stDataFrame").first.wait_for(timeout=600_000)
            wait_idle(page, 300_000)
            time.sleep(2)  # charts draw after the script run ends
            # Streamlit scrolls inside its main container: grow the viewport to the content.
            height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight || 1000")
            page.set_viewport_size({"width": 1400, "height": int(min(max(height, 1000), 6000))})
            time.sleep(2)
            target = out_dir / f"app-{name}.png"
            page.screenshot(path=str(target), full_page=True)
            written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="0: only the screenshots")
    parser.add_argument("--screenshots", type=Path, default=None, help="write app-<page>.png here")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()

    command = "python benchmarks/bench_app.py " + " ".join(sys.argv[1:])
    print(f"- command: `{command.strip()}`")
    print(f"- machine: {cpu_model()}, {os.cpu_count()} logical cores (shared), "
          f"headless chromium via Playwright, OFA_APP_TORCH_THREADS=1")
    print(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")

    if args.runs == 0:  # screenshots only
        for path in screenshots(args.screenshots, args.log_dir / "bench_app_shots.log") if args.screenshots else []:
            print(f"screenshot: {path}")
        return
    load_before = os.getloadavg()[0]
    cold, spec_browser, healthy = [], [], []
    for run in range(args.runs):
        c, s, h = browser_run(args.log_dir / f"bench_app_{run}.log")
        cold.append(c)
        spec_browser.append(s)
        healthy.append(h)
    inproc = in_process_runs(args.runs)
    load_after = os.getloadavg()[0]

    def row(label: str, values: list[float]) -> str:
        return (f"| {label} | {statistics.median(values):.2f} | "
                f"{', '.join(f'{v:.2f}' for v in values)} |")

    print("| measurement (s) | median | runs |")
    print("|---|---:|---|")
    print(row("cold start -> Specialize button interactive (browser)", cold))
    print(row("  of which: process start -> server answers /_stcore/health", healthy))
    print(row("click Specialize -> result and Download ONNX shown, run over (browser)", spec_browser))
    print(row("specialize() in-process, warm", [r["total"] for r in inproc]))
    for stage in ("search", "extract_calibrate", "export", "accuracy", "latency"):
        values = [r[stage] for r in inproc if stage in r]
        if values:
            print(row(f"  of which {stage}", values))
    target, median = 5.0, statistics.median(cold)
    print(f"\nCold-start target (issue 25): {target:.0f} s; median {median:.2f} s: "
          + ("met." if median <= target else f"missed by {median - target:.2f} s (where the time goes: the "
             "server's health row above, then the browser loading the page, the first script run and "
             "drawing it; docs/app.md)."))
    warm = [line.split("engine warm: ", 1)[1].strip() for run in range(args.runs)
            for line in (args.log_dir / f"bench_app_{run}.log").read_text().splitlines() if "engine warm: " in line]
    if warm:
        print("\nThe server's background warm-up (app/resources.py start_warmup), per run: " + "; ".join(warm) + ".")
    print(f"\nSettings: profile {inproc[0]['profile']}, {inproc[0]['budget']}, strategy evolution, "
          f"seeds 0..{args.runs - 1}. The browser and the server share the machine's cores; 1-minute "
          f"load average {load_before:.1f} before, {load_after:.1f} after (other jobs included).")
    if args.screenshots is not None:
        for path in screenshots(args.screenshots, args.log_dir / "bench_app_shots.log"):
            print(f"screenshot: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
