"""How long each hostile input takes to be refused (the battery of tests/test_hostile_inputs.py).

    python benchmarks/bench_refusals.py [--repeats 3] [--slowest 15]

The tests assert that every case is refused before any expensive step (counted, not timed:
issue 32); this times the same cases, CLI in-process and Python API, each in a fresh temporary
folder, and prints markdown: the machine, then the slowest cases (median of `--repeats` runs
after one warm-up run of the whole battery) against the target of 15 s per refusal (a hostile
input used to hang or allocate gigabytes before it was refused; issue 26). An API case's time
includes writing its input (image-folder-bomb: drawing a 20000 x 20000 image).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout, no install
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

TARGET_S = 15.0


def _cases():
    """(kind, id, run(folder) -> None) for every case of the battery."""
    import tests.test_hostile_inputs as H
    from ofa_engine.cli import main
    from ofa_engine.training.bundled import load_supernet

    net = load_supernet("tiny-fmnist")
    payload = {"format": "ofa_engine.families.mbv3.supernet", "version": 1, "space": H.SPACE.to_dict(),
               "state_dict": {k: v.clone() for k, v in list(net.state_dict().items())[:4]}, "extra": {}}

    def cli(argv, files):
        def run(folder: Path) -> None:
            H.write_files(folder, files, payload)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                code = main(argv)
            if code != 2:
                raise RuntimeError(f"exit code {code}, expected 2 (refused)")
        return run

    def api(call):
        def run(folder: Path) -> None:
            try:
                call(folder)
            except ValueError:
                return
            raise RuntimeError("not refused")
        return run

    return ([("CLI", case, cli(argv, files)) for case, argv, files, _ in H.CLI_CASES]
            + [("API", case, api(call)) for case, call, _ in H.API_CASES])


def time_case(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="ofa-bench-refusal-") as tmp:
            old = os.getcwd()
            os.chdir(tmp)
            try:
                start = time.perf_counter()
                run(Path(tmp))
                times.append(time.perf_counter() - start)
            finally:
                os.chdir(old)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (median)")
    parser.add_argument("--slowest", type=int, default=15, help="rows of the table (the slowest cases)")
    args = parser.parse_args()

    import torch
    torch.set_num_threads(1)
    from ofa_engine.devices.profile_kit import cpu_model

    cases = _cases()
    for _, _, run in cases:   # warm-up: imports, the bundled resources, first-call caches
        time_case(run, 1)
    rows = sorted(((time_case(run, args.repeats), kind, case) for kind, case, run in cases), reverse=True)

    command = ("python benchmarks/bench_refusals.py " + " ".join(sys.argv[1:])).strip()
    print(f"- command: `{command}`")
    print(f"- machine: {cpu_model()}, {os.cpu_count()} logical cores (shared), torch and BLAS 1 thread")
    print(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    over = [r for r in rows if r[0] > TARGET_S]
    print(f"- {len(rows)} cases, median of {args.repeats} runs each; slowest {rows[0][0]:.3f} s "
          f"({rows[0][2]}); over the {TARGET_S:.0f} s target: {len(over)}\n")
    print("| case | entry | refused in (s) |")
    print("|---|---|---:|")
    for seconds, kind, case in rows[:args.slowest]:
        print(f"| {case} | {kind} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
