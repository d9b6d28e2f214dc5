"""Batch prediction: run a project's current model over its unlabeled images, in the background,
and store the detections as draft boxes for labelers (model-assisted labeling).

- Unlabeled means status `new` or `in_progress` with no human box. Images leased by someone
  right now are left alone (a write would turn their save into a conflict); so are human boxes.
- Drafts are `annotations` rows with `source='model'` and the detection's `score`, in pixels
  of the stored image. A new run replaces an image's earlier drafts. Each changed image gets
  its version bumped and one `annotation_events` row (kind `predictions`, boxes before/after).
- Each predicted image gets `images.uncertainty` (see `inference.uncertainty`): the labeling
  queue's "most uncertain first" order reads it.
- The work runs in its own process (`python -m backend predict-project PROJECT`), started by
  `start()` with `start_new_session=True`; it writes its progress atomically to
  `data/predictions/project-<id>.json`, which `read_progress()` reads for the page.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import sqlite_utils

from backend import atomic, inference, model_registry, paths, run_processes, settings
from backend.annotations import box_state, clean_boxes, get_boxes, record_event
from backend.auth import require
from backend.db import now, one, transaction
from backend.errors import Conflict, Invalid, NotFound
from backend.images import ImageRejected, image_file
from backend.projects import get_project

DEFAULT_MIN_SCORE = 0.3        # drafts below this score would mostly be noise to delete
PROGRESS_EVERY_SECONDS = 0.5   # how often the progress file is rewritten while running
MAX_LISTED_ERRORS = 50
ACTIVE_STATES = ("starting", "running")
EVENT_KIND = "predictions"

_children: dict[int, subprocess.Popen] = {}  # processes this app started, reaped on read


# ---------------------------------------------------------------- what gets predicted


def unlabeled_images(db: sqlite_utils.Database, project_id: int) -> list[dict]:
    """Images with status new/in_progress and no human box, in id order."""
    return list(db.query("""
        select * from images where project_id = ? and status in ('new', 'in_progress')
          and not exists (select 1 from annotations where annotations.image_id = images.id
                          and annotations.source = 'human')
        order by id""", [project_id]))


def _leased_by_someone(image: dict) -> bool:
    return bool(image.get("lease_user_id")) and (image.get("lease_expires_at") or 0) > now()


def store_drafts(db: sqlite_utils.Database, actor: dict, image_id: int,
                 prediction: inference.Prediction, label_ids: dict[int, int],
                 min_score: float = DEFAULT_MIN_SCORE) -> int | None:
    """Replace image `image_id`'s model drafts with `prediction`'s detections (score ≥ `min_score`,
    class in the project: `label_ids` maps label-map id → labels.id) and set its uncertainty.

    Returns the number of drafts stored, or None when the image is no longer eligible (a human
    box appeared, it was submitted, or someone holds its lease). Human boxes are never touched.
    Needs `train`, as batch prediction does.
    """
    require(actor, "train")
    with transaction(db):
        image = one(db, "select * from images where id = ?", [image_id])
        if image is None:
            raise NotFound(f"no image with id {image_id}")
        human = one(db, "select count(*) as n from annotations where image_id = ? and source = 'human'",
                    [image_id])["n"]
        if human or image["status"] not in ("new", "in_progress") or _leased_by_someone(image):
            return None
        candidates = [{"label_id": label_ids[d.class_id], "xmin": d.box[0], "ymin": d.box[1],
                       "xmax": d.box[2], "ymax": d.box[3], "source": "model", "score": d.score}
                      for d in prediction.filtered(min_score) if d.class_id in label_ids]
        # Detections are in pixels of the image as decoded like ingest, i.e. of the stored file.
        drafts, _ = clean_boxes(candidates, image["width"], image["height"], set(label_ids.values()))
        before = get_boxes(db, image_id)
        db.execute("delete from annotations where image_id = ? and source = 'model'", [image_id])
        stamp = now()
        if drafts:
            db["annotations"].insert_all([{**box, "image_id": image_id, "created_at": stamp,
                                           "created_by": actor.get("id")} for box in drafts])
        db["images"].update(image_id, {
            "version": image["version"] + 1, "uncertainty": inference.uncertainty(prediction.detections),
            "updated_at": stamp, "updated_by": actor.get("id")})
        record_event(db, actor, image_id, EVENT_KIND, box_state(before), box_state(get_boxes(db, image_id)))
    return len(drafts)


def image_sources(db: sqlite_utils.Database, project_id: int, image_ids: list[int]) -> list[tuple[str, Path]]:
    """`(file name, stored file)` for images of the project, in the order given (for the predict page)."""
    rows = {r["id"]: r for r in db.query(
        f"select * from images where project_id = ? and id in ({', '.join('?' * len(image_ids))})",
        [project_id, *image_ids])} if image_ids else {}
    return [(rows[i]["filename"], image_file(rows[i])) for i in image_ids if i in rows]


# ---------------------------------------------------------------- the batch


def predict_project(db: sqlite_utils.Database, actor: dict, project_id: int, *,
                    model_id: int | None = None, min_score: float = DEFAULT_MIN_SCORE,
                    progress_file: str | Path | None = None,
                    should_stop: Callable[[], bool] = lambda: False,
                    loaded: inference.DetectionModel | None = None) -> dict:
    """Predict every unlabeled image of the project with `model_id` (default: the current model)
    and store drafts. Writes progress to `progress_file` (default `progress_path(project_id)`;
    for a signed-in user it must lie in `data/predictions/`, `paths.confine`).
    `loaded` is that model already loaded (else it is loaded here). Returns the final progress."""
    require(actor, "train")
    path = progress_path(project_id) if not progress_file else \
        paths.confine(progress_file, actor, "progress", roots=[progress_path(project_id).parent])
    if not isinstance(path, Path):
        raise Invalid(f"the progress file must be a local path, not {paths.quoted(str(progress_file))}")
    project = get_project(db, project_id)
    model_row = model_registry.get_model(db, model_id) if model_id else model_registry.current_model(db, project_id)
    if model_row is None:
        raise Invalid(f"project {project['name']!r} has no current model: mark one current on the "
                      "Models page (or pass --model)")
    if model_row["project_id"] != project_id:
        raise Invalid(f"model #{model_row['id']} belongs to another project")
    progress = {"state": "running", "project_id": project_id, "model_id": model_row["id"],
                "model_name": model_row["name"], "pid": os.getpid(), "min_score": min_score,
                "total": 0, "done": 0, "drafts": 0, "skipped": 0, "failed": 0, "errors": [], "warnings": [],
                "started_at": now(), "updated_at": now(), "finished_at": None, "message": "loading model"}
    atomic.write_json(path, progress)
    try:
        model = loaded or inference.load_model(model_row["path"])
        label_ids = {r["label_map_id"]: r["id"] for r in db.query(
            "select id, label_map_id from labels where project_id = ?", [project_id])}
        if model_row["class_map"]:
            # A model with other classes (a zoo detector): only the mapped classes become drafts.
            label_ids = {model_id: label_ids[target] for model_id, target in model_row["class_map"].items()
                         if target in label_ids}
        else:
            # Drafts go to the project class with the detection's label-map id; say so when names differ.
            progress["warnings"] = model_registry.class_mismatches(db, project_id, model.label_map_text)
        todo = unlabeled_images(db, project_id)
        progress.update(total=len(todo), message="predicting")
        atomic.write_json(path, progress)
        last_write = time.monotonic()
        for image in todo:
            if should_stop():
                progress.update(state="cancelled", message="cancelled")
                break
            _predict_one(db, actor, model, image, label_ids, min_score, progress)
            progress["done"] += 1
            if time.monotonic() - last_write >= PROGRESS_EVERY_SECONDS:
                progress["updated_at"] = now()
                atomic.write_json(path, progress)
                last_write = time.monotonic()
        else:
            progress.update(state="done", message=f"{progress['drafts']} draft boxes on "
                            f"{progress['done'] - progress['skipped'] - progress['failed']} images")
    except BaseException as exc:
        progress.update(state="failed", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        progress.update(updated_at=now(), finished_at=now())
        atomic.write_json(path, progress)
    return progress


def _predict_one(db, actor, model, image, label_ids, min_score, progress) -> None:
    if _leased_by_someone(image):
        progress["skipped"] += 1
        return
    try:
        prediction = model.predict(image_file(image), image["filename"])
    except (ImageRejected, OSError) as exc:
        progress["failed"] += 1
        if len(progress["errors"]) < MAX_LISTED_ERRORS:
            progress["errors"].append({"image_id": image["id"], "filename": image["filename"],
                                       "error": str(exc)})
        return
    stored = store_drafts(db, actor, image["id"], prediction, label_ids, min_score)
    if stored is None:
        progress["skipped"] += 1
    else:
        progress["drafts"] += stored


# ---------------------------------------------------------------- the background process


def progress_path(project_id: int) -> Path:
    return settings.subdir("predictions") / f"project-{project_id}.json"


def log_path(project_id: int) -> Path:
    return settings.subdir("predictions") / f"project-{project_id}.log"


def start(db: sqlite_utils.Database, actor: dict, project_id: int, *, model_id: int | None = None,
          min_score: float = DEFAULT_MIN_SCORE) -> dict:
    """Start batch prediction for the project in its own process; returns the first progress."""
    require(actor, "train")
    get_project(db, project_id)
    if model_id is None and model_registry.current_model(db, project_id) is None:
        raise Invalid("this project has no current model: mark one current first")
    running = read_progress(project_id)
    if running and running["state"] in ACTIVE_STATES:
        raise Conflict(f"batch prediction is already running for this project (pid {running['pid']})")
    command = [sys.executable, "-m", "backend", "predict-project", str(project_id),
               "--min-score", str(min_score), "--progress", str(progress_path(project_id))]
    if model_id is not None:
        command += ["--model", str(model_id)]
    if actor.get("id") is not None:
        command += ["--user", str(actor["id"])]
    # Niced, with TensorFlow's threads limited, exactly as a training run is launched.
    with open(log_path(project_id), "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=Path(__file__).resolve().parent.parent,
                                   env=run_processes.child_environment(), start_new_session=True)
    _children[process.pid] = process
    run_processes.lower_priority(process.pid)
    progress = {"state": "starting", "project_id": project_id, "model_id": model_id, "pid": process.pid,
                "min_score": min_score, "total": 0, "done": 0, "drafts": 0, "skipped": 0, "failed": 0,
                "errors": [], "started_at": now(), "updated_at": now(), "finished_at": None,
                "message": "starting"}
    # The child rewrites the file once it runs; never clobber a state it already wrote.
    current = read_progress(project_id)
    if not current or current.get("pid") != process.pid:
        atomic.write_json(progress_path(project_id), progress)
    return read_progress(project_id) or progress


def read_progress(project_id: int) -> dict | None:
    """The last progress written for the project, or None. A run whose process is gone without
    finishing is reported as failed (with the log's last line)."""
    path = progress_path(project_id)
    try:
        progress = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if progress.get("state") in ACTIVE_STATES and not _alive(progress.get("pid")):
        # Read again: the process may have finished between the two reads.
        try:
            progress = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if progress.get("state") in ACTIVE_STATES:
            progress.update(state="failed", message="the prediction process ended without finishing: "
                            + (_last_log_line(project_id) or "no log"))
    total = progress.get("total") or 0
    progress["fraction"] = min(1.0, progress.get("done", 0) / total) if total else \
        (1.0 if progress.get("state") == "done" else 0.0)
    return progress


def cancel(actor: dict, project_id: int) -> bool:
    """Ask a running batch to stop (SIGTERM to its process group; it stops after the current image)."""
    require(actor, "train")
    progress = read_progress(project_id)
    if not progress or progress["state"] not in ACTIVE_STATES:
        return False
    try:
        os.killpg(progress["pid"], signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (finished, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _last_log_line(project_id: int) -> str:
    try:
        lines = [line for line in log_path(project_id).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][-300:] if lines else ""
