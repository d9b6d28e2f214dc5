"""`python -m backend ...`: the command line. A thin face over the same functions the pages call.

Each command group lives in `backend/cli/<group>.py` and exposes `register(subparsers)`;
every subcommand sets `func(args) -> int` (the exit code). Exit codes: 0 done, 1 the command
found problems (rejected files, config problems), 2 usage error (argparse), 3 invalid input,
4 not found, 5 conflict, 6 permission denied (`backend.errors.exit_code`).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from backend.errors import BoxwiseError, exit_code

COMMAND_MODULES = [
    "backend.cli.labeling",
    "backend.cli.runs",
    "backend.cli.admin",
    "backend.cli.formats",
    "backend.cli.predict",
    "backend.cli.training",
    "backend.cli.tflite",
    "backend.cli.config",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend",
                                     description="Boxwise: label, export, train and try object detectors.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (BoxwiseError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
