"""`config get|set|check`: read and edit pipeline.config files from the command line.

    python -m backend config get pipeline.config model.ssd.num_classes
    python -m backend config set pipeline.config model.ssd.num_classes=3 train_config.batch_size=8
    python -m backend config check pipeline.config          # exit 1 when the trainer would refuse it
    python -m backend config check pipeline.config --dataset-version 3   # ...or it does not fit version 3
                                                   # (and the config doctor's findings on its boxes)
    python -m backend config check pipeline.config --dataset-version 3 --json
"""
from __future__ import annotations

import argparse
import json

from backend.errors import Invalid


def register(subparsers: argparse._SubParsersAction) -> None:
    config = subparsers.add_parser("config", help="read, edit and check pipeline.config files")
    sub = config.add_subparsers(dest="config_command", required=True)
    get = sub.add_parser("get", help="print the value at a path (e.g. model.ssd.num_classes)")
    get.add_argument("file")
    get.add_argument("path")
    get.set_defaults(func=config_get)
    set_ = sub.add_parser("set", help="set values in place: PATH=VALUE [PATH=VALUE ...]",
                          description="Edits only the characters of each value; comments and formatting "
                                      "stay. Missing fields are created. The file is replaced atomically.")
    set_.add_argument("file")
    set_.add_argument("assignments", nargs="+", metavar="PATH=VALUE")
    set_.set_defaults(func=config_set)
    check = sub.add_parser("check", help="syntax and trainer-support problems; exit 1 when there are any")
    check.add_argument("file")
    check.add_argument("--dataset-version", type=int, default=None, metavar="ID",
                       help="also check against this dataset version: num_classes, shards, label map, "
                            "and the config doctor's findings on its boxes (anchors, schedule, epochs, classes)")
    check.add_argument("--json", action="store_true",
                       help="print problems, ignored fields and findings as one JSON object")
    check.set_defaults(func=config_check)


def config_get(args) -> int:
    from backend import config_document
    doc = config_document.ConfigDocument.load(args.file)
    value = doc.get(args.path)
    if isinstance(value, config_document.Message):
        f = doc._locate(args.path).field
        print(doc.text[f.start:f.end])
    elif isinstance(value, str) and not isinstance(value, config_document.Enum):
        print(value)
    else:
        print(config_document.format_scalar(value))
    return 0


def config_set(args) -> int:
    from backend import config_document
    doc = config_document.ConfigDocument.load(args.file)
    for assignment in args.assignments:
        path, sep, value = assignment.partition("=")
        if not sep:
            raise Invalid(f"{assignment!r} is not PATH=VALUE")
        doc.set_literal(path.strip(), value)
    doc.save()
    return 0


def config_check(args) -> int:
    from backend import config_check, config_document
    from backend.auth import CLI_ACTOR
    try:
        doc = config_document.ConfigDocument.load(args.file)
    except Invalid as exc:  # a syntax error (with its line), or not a text file at all
        if args.json:
            line = getattr(exc, "line", 0)
            print(json.dumps({"file": args.file, "problems": [
                {"path": "(syntax)", "line": line, "message": str(exc)}], "ignored": [], "findings": None}))
        else:
            print(exc)
        return 1
    report = None
    if args.dataset_version is not None:
        from backend import config_doctor, dataset_versions
        from backend.db import connect
        version = dataset_versions.get_version(connect(), args.dataset_version)
        problems = config_check.check(doc.text, version, actor=CLI_ACTOR)
        report = config_doctor.examine(doc.text, version)
    else:
        problems = config_check.check(doc.text, actor=CLI_ACTOR)
    ignored = config_check.ignored(doc.text)
    failed = bool(problems) or bool(report and report.errors)
    if args.json:
        print(json.dumps({
            "file": args.file,
            "problems": [{"path": p.path, "line": p.line, "message": p.message} for p in problems],
            "ignored": [{"path": path, "line": line, "reason": reason} for path, line, reason in ignored],
            "findings": report.to_json() if report is not None else None}, indent=2, ensure_ascii=False))
        return 1 if failed else 0
    for problem in problems:
        print(f"{args.file}: {problem}")
    for path, line, reason in ignored:
        print(f"{args.file}: line {line}: {path}: ignored ({reason})")
    for finding in (report.findings if report is not None else []):
        print(f"{args.file}: {finding}")
    if not failed:
        print(f"{args.file}: ok")
    return 1 if failed else 0
