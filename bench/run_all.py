"""Run every Boxwise benchmark, one after another: `make bench` (or `python bench/run_all.py`).

Each benchmark compares against its own baseline in the same run and prints ratios; paste
their tables into BENCHMARKS.md. `--quick` runs smaller sizes for a smoke test of the benches.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BENCHES = {
    "labeling": (["labeling_bench.py"], ["--sizes", "1000", "10000", "--calls", "100"]),
    "export": (["export_bench.py"], ["--n", "200", "--repeat", "1"]),
    "train": (["train_bench.py"], ["--train-images", "64", "--steps-per-round", "20"]),
    "predict": (["predict_bench.py"], ["--images", "10", "--batch-images", "10"]),
    "doctor": (["doctor_bench.py"], ["--sizes", "1000", "--brute-max", "1000"]),
    "label-browser": (["label_browser_bench.py"], ["--repeats", "2", "--conditions", "idle",
                                                   "--dense-images", "2"]),
    "label-trace": (["label_trace.py"], ["--repeats", "2"]),
    "tflite": (["tflite_bench.py"], ["--steps", "20", "--images", "10"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the benches run")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark {', '.join(sorted(unknown))}; choose from {', '.join(BENCHES)}")
    failed = []
    for name in args.names or list(BENCHES):
        script, quick_args = BENCHES[name]
        command = [sys.executable, str(HERE / script[0]), *(quick_args if args.quick else [])]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        result = subprocess.run(command, cwd=ROOT)
        print(f"=== {name}: exit {result.returncode} after {time.monotonic() - started:.0f} s", flush=True)
        if result.returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
