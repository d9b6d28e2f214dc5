"""The Runs page's views of runs: titles, durations, tables of runs and their jobs, metric rows
for the charts, side-by-side comparison and config diff. Read only.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import sqlite_utils

from backend import run_artefacts, run_lifecycle, saved_configs
def doctor_warnings(run: dict) -> list[dict]:
    """The config doctor's warnings stored when the run was launched (`Finding` dicts)."""
    return json.loads(run.get("doctor_warnings") or "[]")


def run_title(run: dict) -> str:
    """A label that stays the same while the run's state changes (for pickers)."""
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run["created_at"])) if run["created_at"] else ""
    return f"#{run['id']} {run['kind']} · dataset version {run['export_id']} · {started}"


def format_duration(seconds: float | None) -> str:
    """`1 h 02 min`, `3 min 05 s`, `42 s`; `—` when unknown."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def evaluation_rows(run: dict) -> list[dict[str, Any]]:
    """`{step, metric, value}` for every evaluated checkpoint's COCO metrics (table and chart)."""
    return [{"step": e["step"], "metric": name, "value": value}
            for e in run_artefacts.evaluations(run) for name, value in sorted(e["metrics"].items())]


def per_class_rows(run: dict) -> list[dict[str, Any]]:
    """`{class, AP}` of the newest evaluated checkpoint that has per-class AP."""
    latest = next((e for e in reversed(run_artefacts.evaluations(run)) if e["per_class"]), None)
    return [{"class": name, "AP": value} for name, value in (latest or {"per_class": {}})["per_class"].items()]


def pr_curve_rows(run: dict) -> tuple[int | None, list[dict[str, Any]]]:
    """`(step, [{class, recall, precision}])`: the precision-recall curves (IoU 0.5) of the
    newest evaluated checkpoint that has them, for a line chart; `(None, [])` before any."""
    from backend.evaluation import RECALL_POINTS
    latest = next((e for e in reversed(run_artefacts.evaluations(run)) if e["pr_curves"]), None)
    if latest is None:
        return None, []
    return latest["step"], [{"class": name, "recall": recall, "precision": precision}
                            for name, curve in sorted(latest["pr_curves"].items())
                            for recall, precision in zip(RECALL_POINTS, curve)]


def run_table(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    """One row per training run for the run list: status, progress, config, dataset, best mAP."""
    rows = []
    queue = [r["id"] for r in db.query("select id from runs where status = 'queued' order by queued_at, id")]
    for run in run_lifecycle.list_runs(db, project_id):
        summary = run_artefacts.progress_summary(run)
        best = run_artefacts.best_checkpoint(run)
        rows.append({
            "run": run["id"],
            "status": f"queued ({queue.index(run['id']) + 1} in line)" if run["id"] in queue else run["status"],
            "step": f"{summary['step']}/{summary['total_steps']}" if summary["total_steps"] else "",
            "config": f"{run['config_name']} v{run['config_version']}" if run["config_name"] else "",
            "dataset version": run["export_id"], "from run": run["parent_run_id"],
            "best mAP": best["metrics"][run_artefacts.MAP] if best else None,
            "by": run["created_by_name"] or "command line", "error": run["error"] or ""})
    return rows


def compare_runs(db: sqlite_utils.Database, run_ids: list[int]) -> list[dict[str, Any]]:
    """Side-by-side facts of runs: dataset version, config, steps, training time, best mAP."""
    out = []
    for run_id in run_ids:
        run = run_lifecycle.get_run(db, run_id)
        summary = run_artefacts.progress_summary(run)
        best = run_artefacts.best_checkpoint(run)
        config = saved_configs.get_config(db, run["config_id"]) if run["config_id"] else None
        out.append({
            "run": run_id, "status": run["status"], "dataset version": run["export_id"],
            "config": saved_configs.config_title(config) if config else "",
            "steps": summary["step"], "training time": format_duration(run_artefacts.training_seconds(run)),
            "final loss": summary["losses"].get("total"),
            "best mAP": best["metrics"].get(run_artefacts.MAP) if best else None,
            "best mAP@.50IOU": best["metrics"].get("DetectionBoxes_Precision/mAP@.50IOU") if best else None,
            "best checkpoint": Path(best["checkpoint"]).name if best else "",
            "from checkpoint": run["fine_tune_checkpoint"] or ""})
    return out


def config_diff(db: sqlite_utils.Database, run_a: int, run_b: int) -> str:
    """The unified diff between the `pipeline.config`s two runs trained with."""
    texts = []
    for run_id in (run_a, run_b):
        path = Path(run_lifecycle.get_run(db, run_id)["model_dir"]) / run_artefacts.CONFIG_FILE
        texts.append(path.read_text(encoding="utf-8") if path.is_file() else "")
    return saved_configs.diff(texts[0], texts[1], f"run {run_a}", f"run {run_b}")


def jobs_of(db: sqlite_utils.Database, run_id: int) -> list[dict]:
    """The evaluation and export jobs started for a training run, newest first, for a table."""
    rows = db.query("select id, kind, status, error, started_at, finished_at from runs "
                    "where parent_run_id = ? and kind != 'train' order by id desc", [run_id])
    return [{"job": r["id"], "kind": r["kind"], "status": r["status"],
             "started": _clock(r["started_at"]),
             "took": format_duration(r["finished_at"] - r["started_at"])
             if r["finished_at"] and r["started_at"] else "—",
             "error": r["error"] or ""} for r in rows]


def _clock(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "—"
