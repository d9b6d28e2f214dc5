"""`runs ...` and `configs ...`: saved configs and training runs from the command line, through
the same functions the Configs and Runs pages call (acting as an admin, like every command)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from backend import projects, run_artefacts, run_lifecycle, saved_configs
from backend.auth import CLI_ACTOR
from backend.db import connect


def register(subparsers: argparse._SubParsersAction) -> None:
    runs = subparsers.add_parser("runs", help="start, list, cancel, resume and retrain training runs")
    sub = runs.add_subparsers(dest="runs_command", required=True)

    start = sub.add_parser("start", help="queue a training run (starts at once when a slot is free)")
    start.add_argument("project", help="project name or id")
    start.add_argument("--dataset-version", type=int, required=True, help="dataset version (export) id")
    start.add_argument("--config", type=int, required=True, help="saved config id")
    start.add_argument("--num-train-steps", type=int)
    start.add_argument("--runner", help="an external TF OD API runner by name, as configured "
                                        "with `settings runner-add` or BOXWISE_RUNNERS")
    start.add_argument("--wait", action="store_true", help="wait until the run ends")
    start.set_defaults(func=runs_start)

    listing = sub.add_parser("list", help="list runs, newest first")
    listing.add_argument("project", nargs="?", help="project name or id (default: all)")
    listing.add_argument("--kind", choices=run_lifecycle.KINDS + ("all",), default="train")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=runs_list)

    show = sub.add_parser("show", help="a run's row, progress and log tail")
    show.add_argument("run", type=int)
    show.set_defaults(func=runs_show)

    for name, func, text in (("cancel", runs_cancel, "cancel a queued or running run"),
                             ("resume", runs_resume, "resume a cancelled or failed run from its latest checkpoint"),
                             ("retrain", runs_retrain, "new run on the newest dataset version from this run's checkpoint"),
                             ("evaluate", runs_evaluate, "evaluate a run's checkpoints (COCO metrics)"),
                             ("export", runs_export, "export a run's checkpoint as a model")):
        command = sub.add_parser(name, help=text)
        command.add_argument("run", type=int)
        command.add_argument("--wait", action="store_true", help="wait until it ends")
        if name in ("resume", "retrain"):
            command.add_argument("--num-train-steps", type=int)
        if name == "retrain":
            command.add_argument("--dataset-version", type=int, help="default: the newest")
            command.add_argument("--config", type=int, help="default: the run's config")
        if name == "export":
            command.add_argument("--best", action="store_true", help="the checkpoint with the best mAP")
            command.add_argument("--name")
        command.set_defaults(func=func)

    cfg = subparsers.add_parser("configs", help="saved pipeline.config versions of a project")
    cfg_sub = cfg.add_subparsers(dest="configs_command", required=True)
    save = cfg_sub.add_parser("save", help="save FILE as the next version of config NAME")
    save.add_argument("project")
    save.add_argument("name")
    save.add_argument("file")
    save.set_defaults(func=configs_save)
    clist = cfg_sub.add_parser("list", help="the newest version of each saved config")
    clist.add_argument("project")
    clist.set_defaults(func=configs_list)
    cshow = cfg_sub.add_parser("show", help="print a saved config's text")
    cshow.add_argument("config", type=int)
    cshow.set_defaults(func=configs_show)


def _project_id(db, name_or_id: str) -> int:
    return projects.get_project(db, int(name_or_id) if name_or_id.isdigit() else name_or_id)["id"]


def _line(run: dict) -> str:
    summary = run_artefacts.progress_summary(run)
    steps = f"step {summary['step']}/{summary['total_steps']}" if summary["total_steps"] and run["kind"] == "train" else ""
    error = f"  {run['error']}" if run["error"] else ""
    return f"{run['id']:>5}  {run['kind']:<6} {run['status']:<10} {steps:<18} {run['model_dir']}{error}"


def _finish(db, run: dict, wait: bool) -> int:
    if wait:
        run = run_lifecycle.wait_for_run(db, run["id"], timeout=10**9)
    print(_line(run))
    return 0 if run["status"] in ("queued", "running", "succeeded", "cancelled") else 1


def runs_start(args) -> int:
    db = connect()
    run = run_lifecycle.start_run(db, CLI_ACTOR, _project_id(db, args.project), export_id=args.dataset_version,
                         config_id=args.config, num_train_steps=args.num_train_steps,
                         runner=args.runner)
    return _finish(db, run, args.wait)


def runs_list(args) -> int:
    db = connect()
    run_lifecycle.pump_queue(db)
    rows = run_lifecycle.list_runs(db, _project_id(db, args.project) if args.project else None,
                          None if args.kind == "all" else args.kind)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for run in rows:
            print(_line(run))
    return 0


def runs_show(args) -> int:
    db = connect()
    run_lifecycle.pump_queue(db)
    run = run_lifecycle.get_run(db, args.run)
    print(json.dumps({"run": run, "progress": run_artefacts.progress_summary(run)}, indent=2))
    print("\n".join(run_artefacts.log_tail(run, 20)))
    return 0


def runs_cancel(args) -> int:
    db = connect()
    return _finish(db, run_lifecycle.cancel_run(db, CLI_ACTOR, args.run), args.wait)


def runs_resume(args) -> int:
    db = connect()
    return _finish(db, run_lifecycle.resume_run(db, CLI_ACTOR, args.run, args.num_train_steps), args.wait)


def runs_retrain(args) -> int:
    db = connect()
    run = run_lifecycle.retrain_run(db, CLI_ACTOR, args.run, export_id=args.dataset_version,
                           config_id=args.config, num_train_steps=args.num_train_steps)
    return _finish(db, run, args.wait)


def runs_evaluate(args) -> int:
    db = connect()
    return _finish(db, run_lifecycle.start_evaluation(db, CLI_ACTOR, args.run), args.wait)


def runs_export(args) -> int:
    db = connect()
    run = run_lifecycle.export_model(db, CLI_ACTOR, args.run, "best" if args.best else "latest", args.name)
    return _finish(db, run, args.wait)


def configs_save(args) -> int:
    db = connect()
    row = saved_configs.save_config(db, CLI_ACTOR, _project_id(db, args.project), args.name,
                              Path(args.file).read_text(encoding="utf-8"))
    print(f"saved config {row['id']}: {saved_configs.config_title(row)}")
    return 0


def configs_list(args) -> int:
    db = connect()
    for row in saved_configs.list_configs(db, _project_id(db, args.project)):
        print(f"{row['id']:>5}  {saved_configs.config_title(row)}")
    return 0


def configs_show(args) -> int:
    print(saved_configs.get_config(connect(), args.config)["text"], end="")
    return 0
