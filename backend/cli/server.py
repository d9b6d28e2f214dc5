"""`settings ...`: the server settings only the server's owner changes (external runners, extra
allowed folders), in `data/settings.json`. No page writes them; the command line acts as a
local admin (whoever can run it owns the data folder)."""
from __future__ import annotations

import argparse
import json

from backend import server_settings
from backend.auth import CLI_ACTOR


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser("settings", help="external runners and allowed folders (data/settings.json)")
    sub = cmd.add_subparsers(dest="settings_command", required=True)
    show = sub.add_parser("show", help="print the settings in effect (file and environment)")
    show.set_defaults(func=settings_show)
    add = sub.add_parser("runner-add", help="add or replace an external TF OD API runner")
    add.add_argument("name")
    add.add_argument("--python", required=True, help="absolute path of the runner's interpreter")
    add.add_argument("--script", required=True, help="absolute path of its model_main_tf2.py")
    add.set_defaults(func=runner_add)
    remove = sub.add_parser("runner-remove", help="remove an external runner")
    remove.add_argument("name")
    remove.set_defaults(func=runner_remove)
    allow = sub.add_parser("allow", help="let every user's paths point into FOLDER too")
    allow.add_argument("folder")
    allow.set_defaults(func=allow_folder)
    disallow = sub.add_parser("disallow", help="take FOLDER off the allowed folders")
    disallow.add_argument("folder")
    disallow.set_defaults(func=disallow_folder)


def settings_show(args) -> int:
    print(json.dumps({"file": str(server_settings.settings_path()),
                      "runners": server_settings.runners(),
                      "allowed_paths": [str(p) for p in server_settings.allowed_paths()]}, indent=2))
    return 0


def runner_add(args) -> int:
    server_settings.set_runner(CLI_ACTOR, args.name, args.python, args.script)
    print(f"runner {args.name!r} saved in {server_settings.settings_path()}")
    return 0


def runner_remove(args) -> int:
    server_settings.remove_runner(CLI_ACTOR, args.name)
    print(f"runner {args.name!r} removed")
    return 0


def allow_folder(args) -> int:
    server_settings.allow_path(CLI_ACTOR, args.folder)
    print(f"allowed: {', '.join(str(p) for p in server_settings.allowed_paths())}")
    return 0


def disallow_folder(args) -> int:
    server_settings.disallow_path(CLI_ACTOR, args.folder)
    print(f"allowed: {', '.join(str(p) for p in server_settings.allowed_paths()) or 'only the data folder'}")
    return 0
