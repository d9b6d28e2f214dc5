"""`python -m backend export | import | tfrecord inspect | tfrecord extract`: dataset formats.

Each command is one call of a backend function (`dataset_versions.create_export`,
`importers.import_annotations`, `formats.tfrecord_checks.inspect` / `tfrecord_preview.extract`), acting as CLI_ACTOR.
"""
from __future__ import annotations

import json
import os
import sys

from backend.auth import CLI_ACTOR

FORMATS = ("tfrecord", "voc", "coco", "csv", "yolo")


def register(subparsers) -> None:
    export = subparsers.add_parser("export", help="write a dataset version (TFRecord, VOC, COCO, CSV, YOLO)")
    export.add_argument("project", help="project name or id")
    export.add_argument("out", help="folder to copy the finished dataset version to (new or empty)")
    export.add_argument("--format", default="tfrecord", choices=FORMATS)
    export.add_argument("--shards", type=int, default=None, help="TFRecord shards per split")
    export.add_argument("--split", default=None, help="ratios, e.g. train=0.8,val=0.2,test=0")
    export.add_argument("--seed", type=int, default=0, help="seed for new split assignments")
    export.add_argument("--status", default=None, help="image statuses, default labeled,reviewed")
    export.add_argument("--reshuffle", action="store_true", help="re-assign every image's split")
    export.set_defaults(func=_export)

    imp = subparsers.add_parser("import", help="import images and boxes from VOC, COCO, CSV, YOLO or "
                                               "TFRecord, or classes from a label_map.pbtxt")
    imp.add_argument("project", help="project name or id")
    imp.add_argument("path", help="annotation file or folder (TFRecord: file, glob or folder)")
    imp.add_argument("--format", required=True,
                     choices=("voc", "coco", "csv", "yolo", "tfrecord", "label_map"),
                     help="label_map: create the project's classes from a label_map.pbtxt")
    imp.add_argument("--images", default=None, help="folder holding the images the annotations name")
    imp.add_argument("--create-classes", action="store_true", help="create classes the project lacks")
    imp.set_defaults(func=_import)

    records = subparsers.add_parser("tfrecord", help="inspect or extract TF OD API TFRecords")
    tf_sub = records.add_subparsers(dest="tfrecord_command", metavar="ACTION", required=True)
    inspect = tf_sub.add_parser("inspect", help="count and validate a record set (exit 1 on problems)")
    inspect.add_argument("pattern", help="file, glob (quote it), folder, or comma-separated list")
    inspect.add_argument("--label-map", default=None, help="label_map.pbtxt to check ids against")
    inspect.add_argument("--json", action="store_true", help="print the result as JSON")
    inspect.set_defaults(func=_inspect)
    extract = tf_sub.add_parser("extract", help="write every example's image to a folder or .zip")
    extract.add_argument("pattern")
    extract.add_argument("out", help="folder, or a path ending in .zip")
    extract.add_argument("--draw", action="store_true", help="draw boxes and class names")
    extract.add_argument("--label-map", default=None)
    extract.set_defaults(func=_extract)


def _db():
    from backend import db as database
    return database.connect()


def _progress(done: int, total: int | None, message: str) -> None:
    if sys.stderr.isatty():
        print(f"\r{done}/{total or '?'} {message[:60]:<60}", end="", file=sys.stderr, flush=True)


def _quiet_tensorflow() -> None:
    # Writing records imports TensorFlow, whose C++ start-up chatter would bury the summary.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _export(args) -> int:
    from backend import dataset_versions, projects
    _quiet_tensorflow()
    db = _db()
    project = projects.get_project(db, args.project)
    version = dataset_versions.create_export(db, CLI_ACTOR, project["id"], args.format, splits=args.split,
                                    seed=args.seed, shards=args.shards, statuses=args.status,
                                    reshuffle=args.reshuffle, copy_to=args.out, on_progress=_progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    counts = version.counts
    print(f"dataset version {version.number} (export id {version.id}) of {project['name']!r}: "
          f"{counts['total_images']} images, {counts['total_boxes']} boxes")
    for split, n in counts["images"].items():
        print(f"  {split}: {n} images ({counts['negatives'][split]} negatives), "
              f"{sum(counts['boxes'][split].values())} boxes")
    print(f"written to {args.out} (kept as {version.path})")
    return 0


def _import(args) -> int:
    from backend import importers, projects
    db = _db()
    project = projects.get_project(db, args.project)
    if args.format == "label_map":
        result = importers.import_label_map(db, CLI_ACTOR, project["id"], args.path)
        print(f"created {len(result['created'])} classes, {len(result['existing'])} already existed")
        for note in result["notes"]:
            print(f"  note: {note}")
        return 0
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], args.path, args.format,
                                          images_dir=args.images, create_classes=args.create_classes,
                                          on_progress=_progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(report.summary())
    for row in report.rows():
        if row["outcome"] != "imported":
            print(f"  {row['outcome']}: {row['item']}: {row['message']}")
    for note in report.notes:
        print(f"  note: {note}")
    return 0 if report.ok else 1


def _inspect(args) -> int:
    from backend import record_browser
    from backend.formats import tfrecord_checks
    label_map, source = record_browser.label_map_for(args.pattern, args.label_map)
    result = tfrecord_checks.inspect(args.pattern, label_map, source)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        for file, count in result.files.items():
            print(f"{file}: {count} examples{' (GZIP)' if result.compressed[file] else ''}")
        print(f"{result.examples} examples, {result.boxes} boxes, {result.negatives} without boxes")
        if source:
            print(f"label map: {source}")
        for name, count in result.classes.items():
            print(f"  {name}: {count}")
        print(f"{len(result.problems)} problems")
        for problem in result.problems:
            print(f"  {problem}")
    return 0 if result.ok else 1


def _extract(args) -> int:
    from backend import record_browser
    from backend.formats import tfrecord_preview
    label_map, _ = record_browser.label_map_for(args.pattern, args.label_map)
    result = tfrecord_preview.extract(args.pattern, args.out, draw=args.draw, label_map=label_map)
    print(f"{len(result.written)} images written to {args.out}")
    for problem in result.problems:
        print(f"  {problem}")
    return 0 if not result.problems else 1
