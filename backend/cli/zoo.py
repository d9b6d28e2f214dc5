"""`zoo import|list|download|remove|register`: starting points from the TF2 model zoo, through
the same functions the Starting points page calls (acting as a local admin)."""
from __future__ import annotations

import argparse
import json
import sys

from backend import auth, zoo
from backend.db import connect
from backend.projects import get_project


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("zoo", help="starting points: TF2 model-zoo detectors to pre-label and fine-tune with")
    sub = group.add_subparsers(dest="zoo_command", required=True)
    imported = sub.add_parser("import", help="check and store a zoo tarball (<name>.tar.gz)")
    imported.add_argument("tarball", help="the .tar.gz on this machine")
    imported.add_argument("--name", help="a name to show (default: the folder inside the tarball)")
    imported.add_argument("--json", action="store_true")
    imported.set_defaults(func=zoo_import)
    listing = sub.add_parser("list", help="the stored starting points")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=zoo_list)
    fetched = sub.add_parser("download", help="fetch a zoo tarball (resumable), check and store it",
                             description=f"Fetches <URL><name>.tar.gz; the URL is {zoo.DEFAULT_ZOO_URL} "
                                         f"unless {zoo.ZOO_URL_ENV} names another.")
    fetched.add_argument("name", choices=zoo.ZOO_NAMES)
    fetched.add_argument("--json", action="store_true")
    fetched.set_defaults(func=zoo_download)
    removed = sub.add_parser("remove", help="delete a starting point (refused while a model uses it)")
    removed.add_argument("id", type=int)
    removed.set_defaults(func=zoo_remove)
    registered = sub.add_parser("register", help="put a starting point into a project's model registry "
                                                 "to pre-label with (classes mapped by name)")
    registered.add_argument("id", type=int)
    registered.add_argument("--project", required=True, help="project name or id")
    registered.add_argument("--map", action="append", default=[], metavar="MODEL=PROJECT",
                            help="map a model class to a project class (repeat; with any --map, only the "
                                 "mapped classes are kept)")
    registered.add_argument("--json", action="store_true")
    registered.set_defaults(func=zoo_register)
    check = sub.add_parser("check-checkpoint", help=argparse.SUPPRESS)
    check.add_argument("config")
    check.add_argument("checkpoint")
    check.set_defaults(func=zoo_check_checkpoint)


def _summary(point: dict) -> str:
    return (f"#{point['id']} {point['name']}: {point['architecture']}, {point['width']}×{point['height']}, "
            f"{len(point['classes'])} classes, {point['size_mb']} MB")


def zoo_import(args) -> int:
    db = connect()
    point = zoo.import_tarball(db, auth.CLI_ACTOR, args.tarball, name=args.name)
    if args.json:
        print(json.dumps(point, default=str))
    else:
        print(("already stored: " if point["already_imported"] else "imported ") + _summary(point))
        report = point["restore"]
        if report.get("summary"):
            print(f"checkpoint: {report['summary']}")
    return 0


def zoo_list(args) -> int:
    points = zoo.list_starting_points(connect())
    if args.json:
        print(json.dumps(points, default=str))
    else:
        for point in points:
            print(_summary(point))
        if not points:
            print("no starting points yet: python -m backend zoo import FILE (or zoo download NAME)")
    return 0


def zoo_download(args) -> int:
    db = connect()
    shown = [-1]

    def progress(done: int, total: int | None) -> None:
        percent = int(100 * done / total) if total else -1
        if percent != shown[0] and (percent % 10 == 0 or percent < 0):
            shown[0] = percent
            print(f"  {done / 1024**2:.1f} MB" + (f" of {total / 1024**2:.1f} MB ({percent} %)" if total else ""),
                  file=sys.stderr)

    point = zoo.download(db, auth.CLI_ACTOR, args.name, progress=progress)
    print(json.dumps(point, default=str) if args.json else "stored " + _summary(point))
    return 0


def zoo_remove(args) -> int:
    zoo.remove_starting_point(connect(), auth.CLI_ACTOR, args.id)
    print(f"removed starting point #{args.id}")
    return 0


def zoo_register(args) -> int:
    db = connect()
    project = get_project(db, args.project)
    mapping = None
    if args.map:
        mapping = {}
        for pair in args.map:
            model_class, _, project_class = pair.partition("=")
            mapping[model_class.strip()] = project_class.strip() or None
    model = zoo.register_for_prelabel(db, auth.CLI_ACTOR, project["id"], args.id, mapping)
    if args.json:
        print(json.dumps(model, default=str))
    else:
        print(f"registered model #{model['id']} {model['name']!r} in {project['name']!r}: "
              f"{len(model['class_map'])} classes mapped")
    return 0


def zoo_check_checkpoint(args) -> int:
    print(json.dumps(zoo.restore_report(args.config, args.checkpoint)))
    return 0
