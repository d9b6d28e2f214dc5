"""The trainer's progress and status files: the one contract between a training process and
whoever watches it (the Runs page, `run_lifecycle.py`, scripts).

Files in a run's `model_dir`:

- `progress.json`  the latest snapshot, replaced atomically on every log step:
  `{"step": int, "total_steps": int, "losses": {"classification": f, "localization": f,
  "regularization": f, "total": f}, "learning_rate": f, "steps_per_sec": f,
  "images_per_sec": f, "time": unix_seconds, "started_at": unix_seconds,
  "devices": ["CPU"] | ["NVIDIA A100", ...], "phase": "train" | "eval" | "export"}`
- `progress.jsonl` one such snapshot per line, appended (the curves).
- `status.json`    written once when the process ends:
  `{"state": "succeeded" | "failed" | "cancelled", "error": str | None, "step": int,
  "checkpoint": str | None, "finished_at": unix_seconds}`
- `metrics.json`   in an evaluation's `model_dir`, every checkpoint scored so far (written by
  `evaluate.record_metrics`): `{checkpoint name: {"checkpoint", "step", "num_images",
  "metrics": {tag: value}, "pr_curves": {class: [precision, ...]}}}`
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from backend import atomic

PROGRESS_FILE = "progress.json"
HISTORY_FILE = "progress.jsonl"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
FINAL_STATES = ("succeeded", "failed", "cancelled")


def write_progress(model_dir: str | Path, snapshot: dict[str, Any]) -> None:
    """Record one snapshot: replace `progress.json` and append it to `progress.jsonl`."""
    model_dir = Path(model_dir)
    snapshot = {"time": time.time(), **snapshot}
    atomic.write_json(model_dir / PROGRESS_FILE, snapshot)
    with open(model_dir / HISTORY_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(snapshot, sort_keys=True) + "\n")


def write_status(model_dir: str | Path, state: str, *, error: str | None = None,
                 step: int | None = None, checkpoint: str | None = None) -> None:
    if state not in FINAL_STATES:
        raise ValueError(f"status state must be one of {FINAL_STATES}, not {state!r}")
    atomic.write_json(Path(model_dir) / STATUS_FILE, {
        "state": state, "error": error, "step": step, "checkpoint": checkpoint,
        "finished_at": time.time()})


def read_progress(model_dir: str | Path) -> dict[str, Any] | None:
    """The latest snapshot, or None before the first one."""
    return _read_json(Path(model_dir) / PROGRESS_FILE)


def read_history(model_dir: str | Path) -> list[dict[str, Any]]:
    """Every snapshot so far, oldest first; a torn last line (writer mid-append) is skipped."""
    path = Path(model_dir) / HISTORY_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def read_status(model_dir: str | Path) -> dict[str, Any] | None:
    """The final status, or None while the run has not ended (or died without writing it)."""
    return _read_json(Path(model_dir) / STATUS_FILE)


def read_metrics(model_dir: str | Path) -> dict[str, dict[str, Any]]:
    """An evaluation's `metrics.json`, or {} before its first checkpoint is scored."""
    found = _read_json(Path(model_dir) / METRICS_FILE)
    return found if isinstance(found, dict) else {}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
