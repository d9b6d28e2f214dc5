"""What a run's folder holds, read back: checkpoints, progress and its history (the trainer's
progress files, or TensorBoard events of an external runner), the log's tail, restore reports
and the evaluation metrics (`evaluation/metrics.json`). Files only: no database, no processes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from backend import config_document, events, saved_configs
from backend.errors import BoxwiseError
from backend.training import progress
LOG_FILE = "train.log"
CONFIG_FILE = "pipeline.config"


def checkpoints(model_dir: str | Path) -> list[tuple[int, str]]:
    """`(N, prefix)` of every `ckpt-N` in `model_dir`, oldest first."""
    found = []
    for index in Path(model_dir).glob("ckpt-*.index"):
        number = index.name[len("ckpt-"):-len(".index")]
        if number.isdigit():
            found.append((int(number), str(index.with_suffix(""))))
    return sorted(found)


def latest_checkpoint(model_dir: str | Path) -> str | None:
    """The prefix of the newest checkpoint (`.../ckpt-7`), or None."""
    found = checkpoints(model_dir)
    return found[-1][1] if found else None


def run_progress(run: dict) -> dict[str, Any] | None:
    """The latest progress snapshot: the trainer's progress file, or for other trainers the
    TensorBoard events in `model_dir/train`."""
    snapshot = progress.read_progress(run["model_dir"])
    if snapshot is None and (run.get("runner") or run.get("script")):
        history = events.training_history(Path(run["model_dir"]) / "train")
        snapshot = history[-1] if history else None
    return snapshot


def run_history(run: dict) -> list[dict[str, Any]]:
    history = progress.read_history(run["model_dir"])
    if not history and (run.get("runner") or run.get("script")):
        history = events.training_history(Path(run["model_dir"]) / "train")
    return history


def progress_summary(run: dict) -> dict[str, Any]:
    """What the live view shows: step, total, fraction, ETA seconds, rates, losses, device."""
    snapshot = run_progress(run) or {}
    step = snapshot.get("step") or 0
    total = snapshot.get("total_steps") or run["num_train_steps"] or _config_steps(run) or 0
    rate = snapshot.get("steps_per_sec") or 0
    return {
        "step": step, "total_steps": total,
        "fraction": min(1.0, step / total) if total else 0.0,
        "eta_seconds": (total - step) / rate if rate and total and run["status"] == "running" else None,
        "steps_per_sec": rate, "images_per_sec": snapshot.get("images_per_sec"),
        "learning_rate": snapshot.get("learning_rate"), "losses": snapshot.get("losses") or {},
        "devices": snapshot.get("devices") or [], "phase": snapshot.get("phase"),
        "elapsed_seconds": (snapshot.get("time") or 0) - (snapshot.get("started_at") or 0)
        if snapshot.get("started_at") else None,
    }


def _config_steps(run: dict) -> int | None:
    """train_config.num_steps of the run's config (for trainers without a progress file)."""
    path = Path(run["log_path"] or "").parent / CONFIG_FILE
    try:
        return int(config_document.ConfigDocument.load(path).get("train_config.num_steps"))
    except (BoxwiseError, TypeError, ValueError):
        return None


def loss_curves(run: dict) -> list[dict[str, Any]]:
    """Long-form rows `{step, curve, value}` for the loss and learning-rate charts."""
    rows = []
    for snapshot in run_history(run):
        for name, value in (snapshot.get("losses") or {}).items():
            if value is not None:
                rows.append({"step": snapshot["step"], "curve": name, "value": value})
        if snapshot.get("learning_rate") is not None:
            rows.append({"step": snapshot["step"], "curve": "learning_rate",
                         "value": snapshot["learning_rate"]})
    return rows


RESTORE_REPORT_FILE = "restore_report.json"  # written by backend/training/restore.py, one entry per start


def restore_reports(run: dict) -> list[dict[str, Any]]:
    """What each start of the run restored (`[{step, kind, source, restored, variables, parts,
    summary, ...}]`, oldest first); empty before the trainer wrote one."""
    if not run.get("model_dir"):
        return []
    try:
        value = json.loads((Path(run["model_dir"]) / RESTORE_REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def restore_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per part of the network (backbone, fpn, ...): variables and parameters restored."""
    return [{"part": name, "restored": f"{part.get('restored', 0)} of {part.get('variables', 0)}",
             "parameters restored": f"{part.get('restored_parameters', 0):,} of {part.get('parameters', 0):,}"}
            for name, part in (report.get("parts") or {}).items() if part.get("variables")]


def log_tail(run: dict, lines: int = 40) -> list[str]:
    """The last `lines` lines of the run's log."""
    path = Path(run["log_path"] or "")
    if not path.is_file():
        return []
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64_000))
        text = handle.read().decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()][-lines:]


EVALUATION_DIR = "evaluation"
MAP = "DetectionBoxes_Precision/mAP"
_PER_CLASS = "DetectionBoxes_Precision/mAP ByCategory/"


def evaluations(run: dict) -> list[dict[str, Any]]:
    """Metrics of each evaluated checkpoint of a training run, by step: `{step, checkpoint (prefix
    path), num_images, metrics: {tag: value}, per_class: {class: AP}, pr_curves: {class:
    [precision at evaluation.RECALL_POINTS]}}`, from the `metrics.json`
    the trainer's evaluation mode keeps in `model_dir/evaluation/`."""
    out = []
    for name, entry in progress.read_metrics(Path(run["model_dir"]) / EVALUATION_DIR).items():
        metrics = entry.get("metrics") or {}
        out.append({
            "step": int(entry.get("step") or 0), "num_images": entry.get("num_images"),
            "checkpoint": str(Path(run["model_dir"]) / (entry.get("checkpoint") or name)),
            "metrics": {k: v for k, v in metrics.items() if not k.startswith(_PER_CLASS)},
            "per_class": {k[len(_PER_CLASS):]: v for k, v in metrics.items() if k.startswith(_PER_CLASS)},
            "pr_curves": entry.get("pr_curves") or {}})
    return sorted(out, key=lambda e: e["step"])


def best_checkpoint(run: dict, metric: str = MAP) -> dict | None:
    """The evaluated checkpoint with the highest `metric` that still exists, or None."""
    scored = [e for e in evaluations(run) if e["metrics"].get(metric) is not None
              and e.get("checkpoint") and saved_configs.checkpoint_exists(e["checkpoint"])]
    return max(scored, key=lambda e: e["metrics"][metric]) if scored else None


def training_seconds(run: dict) -> float | None:
    """Wall time the run has trained so far (all attempts, from its progress history)."""
    history = run_history(run)
    if not history:
        return None
    total, start, previous = 0.0, history[0].get("time", 0), history[0].get("time", 0)
    for snapshot in history[1:]:
        now_ = snapshot.get("time", previous)
        if snapshot.get("step", 0) <= 1 or now_ - previous > 600:
            total += previous - start  # a new attempt (resume) or a long gap: count them apart
            start = now_
        previous = now_
    return total + previous - start
