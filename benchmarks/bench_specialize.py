"""`specialize` wall time by stage, this tree against another git ref, side by side in one run.

    python benchmarks/bench_specialize.py [--baseline-ref 048d96a] [--runs 3] [--fp32-runs 5] [--deploy-runs 2]
                                          [--cases fp32-cpu,int8-mcu,int8-cpu,deploy] [--out docs/specialize-speed.md]

Cases (the bundled tiny-fmnist package, evolution, seed 0):

- fp32-cpu: fp32 on cpu-ort-1t, latency <= 0.35 ms;
- int8-mcu: int8 on stm32f746, latency <= 40 % of its predicted range (the app's default budget);
- int8-cpu: int8 on cpu-ort-1t, latency <= 40 % of its int8 range;
- deploy: the five bundled tiny-fmnist profiles one after the other, each in its own precision
  and at 40 % of its latency range (the app's "Deploy everywhere" defaults): one run is the sum.

Each tree runs in its own warm worker process (`--worker`, the ref checked out as a git worktree
under /tmp, the package and the inputs loaded and every case run once before timing); the runs of
the two trees alternate, case by case, so that both see the same machine. A run's wall is the
time of the `specialize(...)` call; its stages are the report's `timings_s`. The table gives the
medians, the ratio before / after, and whether both trees chose the same subnets (the same seed
must give the same subnet unless a change says why), and the median and range of the paired
ratios (each run before is followed by one after: a ratio that holds on a drifting machine, as
farm-bench pairs its commands). Workers: 1 torch / BLAS thread (specialize
spreads BN recalibration and the accuracy pass over its own 2 worker threads).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CASES = ("fp32-cpu", "int8-mcu", "int8-cpu", "deploy")
DEPLOY_PROFILES = ("cpu-ort-1t", "cpu-ort-2t", "stm32f412", "stm32f746", "stm32h743")
MARK = "@@bench "   # the worker's result lines (anything else it prints is passed through to stderr)


# ---------------------------------------------------------------- worker (runs inside one tree)

def budget(profile: str, precision: str | None = None, fraction: float = 0.4) -> dict:
    """latency_ms <= min + fraction x (max - min) of the profile's predicted range in `precision`
    (None: its own), as specialize's evaluator sees it; {} for a profile without latency."""
    from ofa_engine.devices.profiles import load_profile
    from ofa_engine.pipeline.specialize import load_resources
    from ofa_engine.search import budget_ranges
    res = load_resources("tiny-fmnist")
    prof = load_profile(profile)
    prof = prof.for_precision(precision or prof.precision)
    if hasattr(prof, "for_space"):
        prof = prof.for_space(res.space)
    lat = budget_ranges(res.evaluator(prof)).get("latency_ms")
    return {} if lat is None else {"latency_ms": round(lat["min"] + fraction * (lat["max"] - lat["min"]), 6)}


def _one(profile: str, constraints: dict, precision: str | None) -> dict:
    from ofa_engine import specialize
    t = time.perf_counter()
    spec = specialize(profile, constraints, "evolution", seed=0, precision=precision, supernet="tiny-fmnist")
    wall = time.perf_counter() - t
    measured = spec.report["measured"]
    return {"wall": wall, "stages": dict(spec.report["timings_s"]), "config": spec.report["config"],
            "accuracy": measured["accuracy"], "bytes": measured["onnx_file_bytes"]}


def run_case(case: str) -> dict:
    if case == "fp32-cpu":
        return _one("cpu-ort-1t", {"latency_ms": 0.35}, "fp32")
    if case == "int8-mcu":
        return _one("stm32f746", budget("stm32f746"), "int8")
    if case == "int8-cpu":
        return _one("cpu-ort-1t", budget("cpu-ort-1t", "int8"), "int8")
    if case == "deploy":
        total = {"wall": 0.0, "stages": {}, "config": [], "accuracy": [], "bytes": []}
        for name in DEPLOY_PROFILES:
            one = _one(name, budget(name), None)
            total["wall"] += one["wall"]
            for key, value in one["stages"].items():
                total["stages"][key] = total["stages"].get(key, 0.0) + value
            for key in ("config", "accuracy", "bytes"):
                total[key].append(one[key])
        return total
    raise ValueError(f"unknown case {case!r}; allowed: {', '.join(CASES)}")


def worker() -> int:
    import torch
    torch.set_num_threads(1)
    out = sys.stdout
    sys.stdout = sys.stderr   # whatever the engine prints stays off the result channel
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = run_case(request["case"])
        except Exception as exc:   # reported to the parent, which stops
            result = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(MARK + json.dumps(result) + "\n")
        out.flush()
    return 0


# ---------------------------------------------------------------- parent

class Tree:
    """A worker process running this script's worker inside the checkout at `root`."""

    def __init__(self, label: str, root: Path) -> None:
        self.label, self.root = label, root
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"], cwd=root, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, case: str) -> dict:
        self.proc.stdin.write(json.dumps({"case": case}) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(MARK):
                result = json.loads(line[len(MARK):])
                if "error" in result:
                    raise RuntimeError(f"{self.label} ({self.root}), case {case}: {result['error']}")
                return result
            sys.stderr.write(line)
        raise RuntimeError(f"the {self.label} worker ({self.root}) exited with {self.proc.wait()}")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _stages(results: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in results for k in r["stages"]))
    return ", ".join(f"{k} {statistics.median(r['stages'].get(k, 0.0) for r in results):.2f}" for k in keys)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-ref", default=None, help="git ref to compare against (default: none, this tree only)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per case and tree")
    parser.add_argument("--fp32-runs", type=int, default=5, help="timed runs of the fp32-cpu case")
    parser.add_argument("--deploy-runs", type=int, default=2, help="timed runs of the deploy case")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out", default=None, help="markdown doc to write the section into (docs/specialize-speed.md)")
    args = parser.parse_args(argv)
    if args.worker:
        return worker()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for case in cases:
        if case not in CASES:
            parser.error(f"unknown case {case!r}; allowed: {', '.join(CASES)}")

    sys.path.insert(0, str(ROOT))
    from ofa_engine.devices.machine import cpu_model
    started = datetime.datetime.now(datetime.timezone.utc)
    head = _git("rev-parse", "--short", "HEAD")
    dirty = " + uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no") else ""
    trees: list[Tree] = []
    worktree = None
    try:
        if args.baseline_ref:
            sha = _git("rev-parse", "--short", args.baseline_ref + "^{commit}")
            worktree = Path("/tmp") / f"ofa-bench-specialize-{sha}"
            if worktree.exists():
                _git("worktree", "remove", "--force", str(worktree))
                shutil.rmtree(worktree, ignore_errors=True)
            _git("worktree", "add", "--detach", str(worktree), sha)
            trees.append(Tree(f"before ({sha})", worktree))
        trees.append(Tree(f"after ({head}{dirty})", ROOT))
        for case in cases:                       # warm: resources, inputs, ranges, caches
            for tree in trees:
                tree.run(case)
        results = {case: {t.label: [] for t in trees} for case in cases}
        for case in cases:
            runs = {"fp32-cpu": args.fp32_runs, "deploy": args.deploy_runs}.get(case, args.runs)
            for _ in range(runs):
                for tree in trees:
                    r = tree.run(case)
                    results[case][tree.label].append(r)
                    print(f"{case} {tree.label}: {r['wall']:.3f} s", file=sys.stderr, flush=True)
    finally:
        for tree in trees:
            tree.close()
        if worktree is not None:
            _git("worktree", "remove", "--force", str(worktree))

    command = "python benchmarks/bench_specialize.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    lines = ["## specialize wall time, before and after", "",
             f"Written by `{command.strip()}` on {started:%Y-%m-%d %H:%M} UTC; machine: {cpu_model()}, "
             f"{os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}, Python "
             f"{platform.python_version()}; each tree in its own warm process, 1 torch / BLAS thread, "
             "the runs of the two trees alternating.", ""]
    labels = [t.label for t in trees]
    if len(labels) == 2:
        lines += [f"| case | runs | {labels[0]} s (median) | {labels[1]} s (median) | speedup | paired speedup "
                  f"(median; range) | same subnets | stages before (median s) | stages after (median s) |",
                  "|---|---:|---:|---:|---:|---:|---|---|---|"]
    else:
        lines += [f"| case | runs | {labels[0]} s (median) | stages (median s) |", "|---|---:|---:|---|"]
    for case in cases:
        per = [results[case][label] for label in labels]
        walls = [statistics.median(r["wall"] for r in rs) for rs in per]
        if len(labels) == 2:
            same = "yes" if per[0][0]["config"] == per[1][0]["config"] else "**no**"
            # Each run before is followed by one after: their ratio holds while the machine drifts.
            paired = [b["wall"] / a["wall"] for b, a in zip(*per)]
            lines.append(f"| {case} | {len(per[0])} | {walls[0]:.2f} | {walls[1]:.2f} | {walls[0] / walls[1]:.2f}x | "
                         f"{statistics.median(paired):.2f}x; {min(paired):.2f}-{max(paired):.2f}x | "
                         f"{same} | {_stages(per[0])} | {_stages(per[1])} |")
        else:
            lines.append(f"| {case} | {len(per[0])} | {walls[0]:.2f} | {_stages(per[0])} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        from benchmarks.docsections import write_sections
        write_sections(args.out, text, title="# How fast `specialize` is")
    return 0


if __name__ == "__main__":
    sys.exit(main())
