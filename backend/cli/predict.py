"""Trying models: `predict`, `predict-project`, `models register|list|set-current`."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from backend import auth, images, inference, model_registry, predictions
from backend.db import connect
from backend.errors import Invalid
from backend.projects import get_project


def register(subparsers: argparse._SubParsersAction) -> None:
    predict = subparsers.add_parser(
        "predict", help="run an exported model on image files",
        description="Predict with a SavedModel (Boxwise or TF OD API export). With --json, one JSON "
                    "object per image and line: {image, width, height, detections: [{class_id, "
                    "class_name, score, box: [xmin, ymin, xmax, ymax] in pixels of the image as "
                    "oriented at ingest, box_normalized: [ymin, xmin, ymax, xmax]}]}, by score. "
                    "A bad image gets {image, error} and the exit code is 1; the others are still predicted.")
    predict.add_argument("--model", required=True, metavar="DIR",
                         help="export directory (holding saved_model/) or a SavedModel folder")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or .zip files")
    predict.add_argument("--min-score", type=float, default=0.5, help="lowest score shown (default 0.5)")
    predict.add_argument("--classes", default="", help="only these classes: comma-separated ids or names")
    predict.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    predict.set_defaults(func=predict_images)

    batch = subparsers.add_parser(
        "predict-project", help="store a model's detections as draft boxes on a project's unlabeled images",
        description="Runs the project's current model (or --model ID) over images with status new or "
                    "in_progress and no human box, stores drafts (source=model, score) and sets "
                    "images.uncertainty. Progress goes to a JSON file under data/predictions/.")
    batch.add_argument("project", help="project name or id")
    batch.add_argument("--model", type=int, help="registry model id (default: the current model)")
    batch.add_argument("--min-score", type=float, default=predictions.DEFAULT_MIN_SCORE,
                       help=f"lowest score kept as a draft (default {predictions.DEFAULT_MIN_SCORE})")
    batch.add_argument("--progress", help="progress file (default data/predictions/project-ID.json; with "
                       "--user it must lie in data/predictions/, a relative path read from the data folder)")
    batch.add_argument("--user", type=int, help="act as this user id (the app passes who started it)")
    batch.add_argument("--background", action="store_true", help="start in the background and return")
    batch.set_defaults(func=predict_project)

    registry = subparsers.add_parser("models", help="the model registry: register, list, set current")
    sub = registry.add_subparsers(dest="models_command", required=True)
    add = sub.add_parser("register", help="record an export (directory, run or zip) as a model of a project")
    add.add_argument("--project", required=True, help="project name or id")
    where = add.add_mutually_exclusive_group(required=True)
    where.add_argument("--dir", help="export directory or SavedModel folder, used in place")
    where.add_argument("--run", type=int, help="a training run id: its newest export")
    where.add_argument("--zip", help="a zip of an export, extracted under data/models/")
    add.add_argument("--name", help="a name to show (default: the folder, run or zip name)")
    add.add_argument("--json", action="store_true")
    add.set_defaults(func=models_register)
    listing = sub.add_parser("list", help="a project's models, newest first")
    listing.add_argument("--project", required=True, help="project name or id")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=models_list)
    current = sub.add_parser("set-current", help="the model batch prediction uses")
    current.add_argument("--project", required=True, help="project name or id")
    current.add_argument("model_id", type=int)
    current.set_defaults(func=models_set_current)


# ---------------------------------------------------------------- predict


def _class_filter(text: str, model: inference.DetectionModel) -> set[int] | None:
    if not text.strip():
        return None
    by_name = {name: class_id for class_id, name in model.label_map.items()}
    chosen = set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.isdigit():
            chosen.add(int(part))
        elif part in by_name:
            chosen.add(by_name[part])
        else:
            raise Invalid(f"unknown class {part!r} (known: {', '.join(sorted(by_name)) or 'none'})")
    return chosen


def predict_images(args) -> int:
    model = inference.load_model(args.model)
    for warning in model.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    class_ids = _class_filter(args.classes, model)
    failed = False
    for name, data in images.iter_paths(args.images):
        result = (name, str(data)) if isinstance(data, images.ImageRejected) else \
            next(iter(inference.predict_many(model, [(name, data)])))
        if isinstance(result, tuple):
            failed = True
            if args.json:
                print(inference.error_line(*result), flush=True)
            else:
                print(f"{result[0]}: error: {result[1]}", file=sys.stderr, flush=True)
            continue
        if args.json:
            print(inference.json_line(result, args.min_score, class_ids), flush=True)
        else:
            _print_table(result, args.min_score, class_ids)
    return 1 if failed else 0


def _print_table(prediction: inference.Prediction, min_score: float, class_ids) -> None:
    rows = inference.table_rows(prediction, min_score, class_ids)
    print(f"{prediction.image}  {prediction.width}×{prediction.height}  "
          f"{len(rows)} detection{'s' if len(rows) != 1 else ''} ≥ {min_score:g}  "
          f"{prediction.latency_ms:.1f} ms")
    if rows:
        width = max(5, *(len(r["class"]) for r in rows))
        print(f"  {'class':<{width}}  {'score':>5}  {'xmin':>7} {'ymin':>7} {'xmax':>7} {'ymax':>7}")
        for r in rows:
            print(f"  {r['class']:<{width}}  {r['score']:>5.3f}  {r['xmin']:>7.1f} {r['ymin']:>7.1f} "
                  f"{r['xmax']:>7.1f} {r['ymax']:>7.1f}")
    sys.stdout.flush()


# ---------------------------------------------------------------- predict-project


def predict_project(args) -> int:
    db = connect()
    project = get_project(db, args.project)
    actor = auth.get_user(db, args.user) if args.user else auth.CLI_ACTOR
    if args.background:
        progress = predictions.start(db, actor, project["id"], model_id=args.model, min_score=args.min_score)
        print(f"started batch prediction for {project['name']!r} (pid {progress['pid']}); "
              f"progress in {predictions.progress_path(project['id'])}")
        return 0
    stop = {"requested": False}

    def on_term(signum, frame):  # finish the current image, then stop cleanly
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_term)
    progress = predictions.predict_project(
        db, actor, project["id"], model_id=args.model, min_score=args.min_score,
        progress_file=args.progress, should_stop=lambda: stop["requested"])
    print(f"{progress['state']}: {progress['done']}/{progress['total']} images, {progress['drafts']} drafts, "
          f"{progress['skipped']} skipped, {progress['failed']} failed")
    for error in progress["errors"]:
        print(f"  {error['filename']}: {error['error']}", file=sys.stderr)
    return 0 if progress["state"] == "done" and not progress["failed"] else 1


# ---------------------------------------------------------------- models


def models_register(args) -> int:
    db = connect()
    project = get_project(db, args.project)
    actor = auth.CLI_ACTOR
    if args.run:
        model = model_registry.register_run(db, actor, args.run, name=args.name)
    elif args.zip:
        path = Path(args.zip)
        with open(path, "rb") as handle:
            model = model_registry.register_zip(db, actor, project["id"], handle, path.name, name=args.name)
    else:
        model = model_registry.register_directory(db, actor, project["id"], args.dir, name=args.name)
    if args.json:
        print(json.dumps(model, default=str))
    else:
        print(f"registered model #{model['id']} {model['name']!r} ({model['size_mb']} MB) at {model['path']}")
    for warning in model["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def models_list(args) -> int:
    db = connect()
    project = get_project(db, args.project)
    rows = model_registry.list_models(db, project["id"])
    if args.json:
        for row in rows:
            print(json.dumps(row, default=str))
        return 0
    for row in rows:
        mark = "*" if row["is_current"] else " "
        metrics = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in list(row["metrics"].items())[:3])
        print(f"{mark} #{row['id']:<4} {row['name']:<30} {row['source'] or '':<9} {row['size_mb']:>8.2f} MB  "
              f"{metrics}{'  (files missing)' if not row['available'] else ''}")
    return 0


def models_set_current(args) -> int:
    db = connect()
    project = get_project(db, args.project)
    model = model_registry.set_current(db, auth.CLI_ACTOR, project["id"], args.model_id)
    print(f"model #{model['id']} {model['name']!r} is now current for {project['name']!r}")
    return 0
