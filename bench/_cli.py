"""What the bench/ commands share, spelled once: the `--keep` option and the work directory it
keeps, the trainer benches' `--config`, `--batch-size`, `--intra` and `--inter`, and writing a
JSON report. Each command keeps its own options, defaults and help; a bench imports this as
`_cli` (its own folder is first on `sys.path` when it runs as `python bench/<name>.py`).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"  # where the reports go unless a bench's `--out` says otherwise
CONFIGS = ["parity", "small128"]  # the configs `parity_bench.write_config` writes


def add_keep(parser: argparse.ArgumentParser, help: str | None = "keep the work directory") -> None:
    parser.add_argument("--keep", action="store_true", help=help)


def work_directory(prefix: str) -> Path:
    """A new temporary folder for one bench run (`remove_work_directory` takes it away)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def remove_work_directory(work: Path, keep: bool, kept: str = "work directory kept: {work}") -> None:
    """Remove `work`, or with `--keep` leave it and print where it is."""
    if keep:
        print(kept.format(work=work))
    else:
        shutil.rmtree(work, ignore_errors=True)


def add_training_config(parser: argparse.ArgumentParser, batch_help: str | None = None) -> None:
    """`--config parity|small128` and `--batch-size` (None: the config's own)."""
    parser.add_argument("--config", default="parity", choices=CONFIGS)
    parser.add_argument("--batch-size", type=int, default=None, help=batch_help)


def add_threads(parser: argparse.ArgumentParser) -> None:
    """`--intra` and `--inter`, TensorFlow's op thread pools (0: TensorFlow's default)."""
    parser.add_argument("--intra", type=int, default=0, help="tf.config.threading intra-op threads (0: TF's default)")
    parser.add_argument("--inter", type=int, default=0, help="tf.config.threading inter-op threads (0: TF's default)")


def set_threads(args: argparse.Namespace) -> None:
    """Apply `--intra` / `--inter` (before TensorFlow runs its first op)."""
    import tensorflow as tf
    if args.intra:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    if args.inter:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter)


def write_report(path: Path, report: dict, indent: int = 2, default=None) -> Path:
    """Write `report` as JSON (its folder made first) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=indent, default=default) + "\n")
    print(f"written to {path}")
    return path
