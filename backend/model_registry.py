"""The model registry: exported detectors a project can predict with, and which one is current.

A model is a row in `models` pointing at an export directory (`saved_model/` plus, for
Boxwise exports, `label_map.pbtxt`, `pipeline.config`, `checkpoint/`). It comes from a
training run, from a directory on the server a user names, or from a zip a user uploads
(extracted under `data/models/`). Each is checked before it is recorded: a SavedModel whose
`serving_default` takes `input_tensor` uint8 `[1, H, W, 3]` and returns the TF OD API's
`detection_*` outputs. The row keeps the run, the dataset version (export) it was trained
on, the label map text, metrics when an evaluation left them, and the SavedModel's size.
One model per project is current (`projects.current_model_id`): batch prediction uses it.
"""
from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import stat
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import sqlite_utils

from backend import paths, settings
from backend.auth import require
from backend.db import now, one, transaction
from backend.errors import Invalid, NotFound
from backend.inference import ModelInvalid, check_saved_model, parse_label_map
from backend.projects import get_project
from backend.training import progress

# Limits for uploaded model zips: total bytes once extracted, and the number of files.
MAX_MODEL_ZIP_BYTES = int(os.environ.get("BOXWISE_MAX_MODEL_ZIP_BYTES", 2 * 1024**3))
MAX_MODEL_ZIP_FILES = 10_000
METRICS_FOLDERS = (".", "eval", "evaluation")  # where a `metrics.json` may lie in an export or a model_dir


# ---------------------------------------------------------------- checking a SavedModel


def inspect_export(path: str | Path) -> dict:
    """Check that `path` holds a detection SavedModel (`inference.check_saved_model`) and
    describe it, without loading weights.

    Returns `{"root", "saved_model", "input_shape": [1, H|None, W|None, 3], "label_map": text,
    "warnings": [...], "size_bytes"}`. Raises ModelInvalid (or NotFound) saying what is wrong.
    """
    contract = check_saved_model(path)
    return {"root": contract.root, "saved_model": contract.folder, "input_shape": contract.input_shape,
            "label_map": contract.label_map_text, "warnings": contract.warnings,
            "size_bytes": _tree_size(contract.folder)}


def _tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _read_metrics(*folders: Path, checkpoint: str | None = None) -> dict:
    """Metrics left beside a model: a flat `metrics.json` in the export, or the trainer's
    `evaluation/metrics.json` (`{name: {step, checkpoint, metrics}}`) in the run's model_dir,
    from which the exported checkpoint's entry is taken (else the latest step's)."""
    for folder in folders:
        for name in METRICS_FOLDERS:
            value = progress.read_metrics(folder / name)
            if not value:
                continue
            entries = [e for e in value.values() if isinstance(e, dict) and isinstance(e.get("metrics"), dict)]
            if not entries:
                return value
            wanted = Path(checkpoint).name if checkpoint else None
            matching = [e for e in entries if wanted and Path(str(e.get("checkpoint") or "")).name == wanted]
            entry = max(matching or entries, key=lambda e: int(e.get("step") or 0))
            metrics = {k: v for k, v in entry["metrics"].items() if "ByCategory" not in k}
            return {**metrics, "step": int(entry.get("step") or 0)}
    return {}


# ---------------------------------------------------------------- registering


def register_directory(db: sqlite_utils.Database, actor: dict, project_id: int, path: str | Path,
                       *, name: str | None = None, run_id: int | None = None,
                       export_id: int | None = None, source: str = "directory",
                       origin: str | None = None, class_map: dict[int, int] | None = None) -> dict:
    """Record the export in `path` (used in place) as a model of the project. Returns the row.

    `class_map` (`{model label-map id: project label-map id}`) is for a model whose classes are
    not the project's (a zoo detector's COCO classes): predictions go through it, and model
    classes it leaves out are dropped."""
    require(actor, "train")
    get_project(db, project_id)
    path = paths.confine(path, actor, "model")
    paths.confine_matches(glob.escape(str(path)), actor, "model")  # no file in it may lead outside
    info = inspect_export(path)
    root = info["root"].resolve()
    existing = one(db, "select id from models where project_id = ? and path = ?",
                   [project_id, str(root)])
    if existing:
        raise Invalid(f"{root} is already registered in this project as model #{existing['id']}")
    warnings = info["warnings"] + ([] if class_map else class_mismatches(db, project_id, info["label_map"]))
    run = _run(db, run_id)
    # An export job of the run (run_lifecycle.export_model) names the checkpoint it exported.
    job = one(db, "select fine_tune_checkpoint from runs where kind = 'export' and model_dir = ?",
              [str(root.parent)]) if run else None
    metrics = _read_metrics(root, *([Path(run["model_dir"])] if run and run.get("model_dir") else []),
                            checkpoint=job["fine_tune_checkpoint"] if job else None)
    with transaction(db):
        model_id = db["models"].insert({
            "project_id": project_id, "run_id": run_id, "export_id": export_id,
            "name": (name or "").strip() or root.name, "path": str(root),
            "label_map": info["label_map"], "metrics": json.dumps(metrics),
            "size_bytes": info["size_bytes"], "source": source, "origin": origin or str(path),
            "warnings": json.dumps(warnings), "created_at": now(),
            "class_map": json.dumps({str(k): v for k, v in class_map.items()}) if class_map else None,
            "created_by": actor.get("id")}).last_pk
    return get_model(db, model_id)


def register_run(db: sqlite_utils.Database, actor: dict, run_id: int,
                 export_dir: str | Path | None = None, *, name: str | None = None) -> dict:
    """Record a training run's export (`export_dir`, else the newest export inside the run's
    model_dir) with the run and its dataset version."""
    require(actor, "train")
    run = _run(db, run_id)
    if run is None:
        raise NotFound(f"no run with id {run_id}")
    if export_dir is None:
        folders = [run["model_dir"]] + [r["model_dir"] for r in db.query(
            "select model_dir from runs where parent_run_id = ? and kind = 'export'", [run_id])]
        exports = sorted((found for folder in folders if folder for found in find_exports(Path(folder))),
                         key=lambda p: (p / "saved_model" / "saved_model.pb").stat().st_mtime, reverse=True)
        if not exports:
            raise NotFound(f"run {run_id} has no exported model yet: export it first "
                           "(python -m backend export-model)")
        export_dir = exports[0]
    return register_directory(db, actor, run["project_id"], export_dir,
                              name=name or f"run {run_id} · {Path(export_dir).name}", run_id=run_id,
                              export_id=run.get("export_id"), source="run")


def find_exports(folder: Path) -> list[Path]:
    """Export directories (holding `saved_model/saved_model.pb`) at most two levels under
    `folder`, newest first."""
    if not folder.is_dir():
        return []
    found = {pb.parent.parent for pattern in ("saved_model/saved_model.pb", "*/saved_model/saved_model.pb",
                                              "*/*/saved_model/saved_model.pb")
             for pb in folder.glob(pattern)}
    return sorted(found, key=lambda p: (p / "saved_model" / "saved_model.pb").stat().st_mtime, reverse=True)


def runs_with_exports(db: sqlite_utils.Database, project_id: int) -> list[dict]:
    """Exports on disk from the project's runs, newest first: `{run_id (the training run),
    export_dir, name, registered}`. Export jobs count for the run they exported."""
    registered = {r["path"] for r in db.query("select path from models where project_id = ?", [project_id])}
    found, seen = [], set()
    for run in db.query("select * from runs where project_id = ? order by id desc", [project_id]):
        train_run_id = run["parent_run_id"] if run.get("kind") == "export" and run.get("parent_run_id") \
            else run["id"]
        for export_dir in find_exports(Path(run["model_dir"])) if run.get("model_dir") else []:
            key = str(export_dir.resolve())
            if key not in seen:
                seen.add(key)
                found.append({"run_id": train_run_id, "export_dir": export_dir, "registered": key in registered,
                              "name": f"run {train_run_id} · {export_dir.parent.name}/{export_dir.name}"})
    return found


def register_zip(db: sqlite_utils.Database, actor: dict, project_id: int, upload: bytes | BinaryIO,
                 filename: str, *, name: str | None = None) -> dict:
    """Extract an uploaded zip of an export (or of a bare SavedModel) under `data/models/` and
    record it. Nothing is left behind when the zip or the model is refused."""
    require(actor, "train")
    get_project(db, project_id)
    target = settings.subdir("models") / f"upload-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
    try:
        _extract_zip(upload, target)
        exports = [pb.parent for pb in target.rglob("saved_model.pb")]
        if len(exports) != 1:
            raise ModelInvalid(f"{filename} holds {len(exports)} SavedModels (saved_model.pb files); "
                               "upload a zip of exactly one export")
        stem = PurePosixPath(filename).stem
        return register_directory(db, actor, project_id, exports[0], name=name or stem,
                                  source="upload", origin=filename)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _extract_zip(upload: bytes | BinaryIO, target: Path) -> None:
    """Extract safely: no absolute paths, `..`, drive letters or links; at most
    MAX_MODEL_ZIP_BYTES and MAX_MODEL_ZIP_FILES, counted as bytes are written (headers lie)."""
    import io

    source = io.BytesIO(upload) if isinstance(upload, (bytes, bytearray)) else upload
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise Invalid(f"not a valid zip file: {exc}") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_MODEL_ZIP_FILES:
            raise Invalid(f"zip has {len(entries)} entries, over the limit of {MAX_MODEL_ZIP_FILES}")
        declared = sum(e.file_size for e in entries)
        if declared > MAX_MODEL_ZIP_BYTES:
            raise Invalid(f"zip would expand to {declared / 1024**2:.0f} MB, over the limit of "
                          f"{MAX_MODEL_ZIP_BYTES / 1024**2:.0f} MB")
        for entry in entries:
            raw = entry.filename.replace("\\", "/")
            parts = PurePosixPath(raw).parts
            if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
                raise Invalid(f"zip entry {entry.filename!r} has an absolute path")
            if ".." in parts:
                raise Invalid(f"zip entry {entry.filename!r} reaches outside the folder ('..')")
            if stat.S_ISLNK(entry.external_attr >> 16):
                raise Invalid(f"zip entry {entry.filename!r} is a symbolic link")
        target.mkdir(parents=True, exist_ok=False)
        written = 0
        for entry in entries:
            parts = [p for p in PurePosixPath(entry.filename.replace("\\", "/")).parts if p not in ("", ".")]
            if not parts or parts[0] == "__MACOSX":
                continue
            destination = target.joinpath(*parts)
            if entry.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(entry) as reader, open(destination, "wb") as writer:
                while chunk := reader.read(1 << 20):
                    written += len(chunk)
                    if written > MAX_MODEL_ZIP_BYTES:
                        raise Invalid(f"zip expands past {MAX_MODEL_ZIP_BYTES / 1024**2:.0f} MB "
                                      "(more than its headers say)")
                    writer.write(chunk)


# ---------------------------------------------------------------- reading and choosing


def get_model(db: sqlite_utils.Database, model_id: int) -> dict:
    row = one(db, "select * from models where id = ?", [model_id])
    if row is None:
        raise NotFound(f"no model with id {model_id}")
    return _decorate(db, row)


def list_models(db: sqlite_utils.Database, project_id: int) -> list[dict]:
    """The project's models, newest first, each with `is_current`, `metrics` and `warnings`
    parsed, `size_mb` and whether its files are still on disk (`available`)."""
    project = get_project(db, project_id)
    rows = db.query("select * from models where project_id = ? order by created_at desc, id desc",
                    [project_id])
    return [_decorate(db, row, project) for row in rows]


def current_model(db: sqlite_utils.Database, project_id: int) -> dict | None:
    project = get_project(db, project_id)
    return get_model(db, project["current_model_id"]) if project["current_model_id"] else None


def set_current(db: sqlite_utils.Database, actor: dict, project_id: int, model_id: int) -> dict:
    """Make `model_id` the project's current model (what batch prediction uses)."""
    require(actor, "train")
    with transaction(db):
        model = get_model(db, model_id)
        if model["project_id"] != project_id:
            raise Invalid(f"model #{model_id} belongs to another project")
        db["projects"].update(project_id, {"current_model_id": model_id})
    return get_model(db, model_id)


def class_mismatches(db: sqlite_utils.Database, project_id: int, label_map_text: str) -> list[str]:
    """Where the model's label map and the project's classes disagree: drafts are stored by
    label-map id, so a different name under the same id would put boxes in the wrong class."""
    if not label_map_text:
        return []
    try:
        model_names = parse_label_map(label_map_text)
    except Invalid:
        return []
    project_names = {r["label_map_id"]: r["name"] for r in db.query(
        "select label_map_id, name from labels where project_id = ?", [project_id])}
    problems = [f"{model_names[i]!r} is id {i} in the model's label map but "
                + (f"{project_names[i]!r} in this project" if i in project_names else "not a class of this project")
                for i in sorted(model_names) if project_names.get(i) != model_names[i]]
    if len(problems) > 3:
        problems = problems[:3] + [f"and {len(problems) - 3} more label-map differences"]
    return problems


def label_map_names(model: dict) -> dict[int, str]:
    """`{label-map id: class name}` of a registry row (empty without a label map)."""
    try:
        return parse_label_map(model["label_map"]) if model.get("label_map") else {}
    except Invalid:
        return {}


def _decorate(db, row: dict, project: dict | None = None) -> dict:
    project = project or get_project(db, row["project_id"])
    return {**row, "is_current": project["current_model_id"] == row["id"],
            "class_map": {int(k): v for k, v in json.loads(row.get("class_map") or "{}").items()},
            "metrics": json.loads(row["metrics"] or "{}"),
            "warnings": json.loads(row.get("warnings") or "[]"),
            "size_mb": round((row["size_bytes"] or 0) / 1024**2, 2),
            "available": (Path(row["path"]) / "saved_model" / "saved_model.pb").is_file()
            or (Path(row["path"]) / "saved_model.pb").is_file()}


def _run(db, run_id: int | None) -> dict | None:
    return one(db, "select * from runs where id = ?", [run_id]) if run_id else None
