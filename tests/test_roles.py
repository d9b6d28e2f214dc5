"""Every public backend function that writes checks its role (issue 12, item 3), and README's
Roles table says exactly what `backend.auth` grants.

`WRITES` lists each such function with the action it needs (`a+b`: both, checked in that order). Each is called as a viewer, a
labeler and a reviewer with arguments that would otherwise fail later (unknown ids, empty
input): a role without the action must get PermissionError before anything else happens, and
a role with it must get past the check. `test_every_public_function_taking_an_actor_is_listed`
keeps the list complete: a new function with an `actor` parameter fails it until it is added
here (or to `READS`, the ones that only read).

Writes without an actor, on purpose: `auth.create_first_admin` (refused once any user exists),
`auth.login`/`logout` (sessions), `run_lifecycle.pump_queue`/`settle_runs`/`start_queue_watcher`/
`wait_for_run` (settle and start what was queued by checked calls), `record_browser.remove_old_uploads`
and `cleanup.at_start` (housekeeping of the data folder), `atomic.*` (file writing primitives).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sqlite3
from pathlib import Path

import pytest

import backend
from backend import auth, inference
from backend.errors import BoxwiseError

PROJECT = 1  # the `project` fixture's id
NOWHERE = 999_999  # an id nothing has

PREDICTION = inference.Prediction("x.jpg", 10, 10, [])


class Kw(dict):
    """Keyword arguments, as the last item of a WRITES entry's arguments."""

# (module.function, action it needs, arguments after the actor / before it for db functions)
WRITES = [
    ("auth.add_user", "manage_users", lambda: ("someone", "long-password-1", "viewer")),
    ("auth.set_disabled", "manage_users", lambda: (NOWHERE, True)),
    ("auth.set_role", "manage_users", lambda: (NOWHERE, "admin")),
    ("auth.reset_password", "manage_users", lambda: (NOWHERE, "long-password-2")),
    ("annotations.save_boxes", "label", lambda: (NOWHERE, [], 0)),
    ("annotations.accept_drafts", "label", lambda: (NOWHERE, None, 0)),
    ("annotations.reject_drafts", "label", lambda: (NOWHERE, None, 0)),
    ("annotations.record_event", "label", lambda: (NOWHERE, "boxes", [], [])),
    ("saved_configs.save_config", "train", lambda: (PROJECT, "", "")),
    ("demo.create_demo_project", "manage_projects", lambda: ("",)),
    ("dataset_versions.create_export", "export", lambda: (NOWHERE,)),
    ("dataset_versions.export_zip", "export", lambda: (NOWHERE,)),
    ("dataset_versions.zip_download", "export", lambda: (NOWHERE,)),
    ("images.ingest", "ingest", lambda: (NOWHERE, [])),
    ("importers.import_annotations", "ingest", lambda: (NOWHERE, "", "coco")),
    ("importers.import_label_map", "manage_projects", lambda: (NOWHERE, "")),
    ("importers.import_upload", "ingest", lambda: (NOWHERE, [], "coco")),
    ("run_lifecycle.start_run", "train", lambda: (NOWHERE, Kw(export_id=NOWHERE, config_id=NOWHERE))),
    ("run_lifecycle.start_run", "train+external_runner", lambda: (NOWHERE, Kw(export_id=NOWHERE, config_id=NOWHERE,
                                                                            runner="none"))),
    ("run_lifecycle.retrain_run", "train", lambda: (NOWHERE,)),
    ("run_lifecycle.resume_run", "train", lambda: (NOWHERE,)),
    ("run_lifecycle.start_evaluation", "train", lambda: (NOWHERE,)),
    ("run_lifecycle.export_model", "train", lambda: (NOWHERE,)),
    ("run_lifecycle.cancel_run", "train", lambda: (NOWHERE,)),
    ("labeling.renew_lease", "label", lambda: (NOWHERE,)),
    ("labeling.release_lease", "label", lambda: (NOWHERE,)),
    ("labeling.release_leases", "assign", lambda: (NOWHERE,)),
    ("labeling.next_image", "label", lambda: (NOWHERE,)),
    ("labeling.peek_next_image", "label", lambda: (NOWHERE,)),  # reads, but only for labelers
    ("labeling.next_for_review", "review", lambda: (NOWHERE,)),
    ("labeling.submit", "label", lambda: (NOWHERE, None, 0)),
    ("labeling.mark_no_objects", "label", lambda: (NOWHERE, 0)),
    ("labeling.skip", "label", lambda: (NOWHERE, 0, "")),
    ("labeling.approve", "review", lambda: (NOWHERE, 0)),
    ("labeling.reject", "review", lambda: (NOWHERE, 0, "")),
    ("labeling.assign", "assign", lambda: (NOWHERE, [], None)),
    ("labeling.assign_next", "assign", lambda: (NOWHERE, NOWHERE, 1)),
    ("model_registry.register_directory", "train", lambda: (NOWHERE, "")),
    ("model_registry.register_run", "train", lambda: (NOWHERE,)),
    ("model_registry.register_zip", "train", lambda: (NOWHERE, b"", "x.zip")),
    ("model_registry.set_current", "train", lambda: (NOWHERE, NOWHERE)),
    ("predictions.store_drafts", "train", lambda: (NOWHERE, PREDICTION, {})),
    ("predictions.predict_project", "train", lambda: (NOWHERE,)),
    ("predictions.start", "train", lambda: (NOWHERE,)),
    ("predictions.cancel", "train", lambda: (NOWHERE,)),
    ("projects.create_project", "manage_projects", lambda: ("",)),
    ("projects.rename_project", "manage_projects", lambda: (NOWHERE, "")),
    ("projects.set_archived", "manage_projects", lambda: (NOWHERE, True)),
    ("projects.add_label", "manage_projects", lambda: (NOWHERE, "")),
    ("projects.rename_label", "manage_projects", lambda: (NOWHERE, "")),
    ("projects.recolor_label", "manage_projects", lambda: (NOWHERE, "")),
    ("projects.reorder_labels", "manage_projects", lambda: (NOWHERE, [])),
    ("projects.delete_label", "manage_projects", lambda: (NOWHERE,)),
    ("server_settings.set_runner", "configure_server", lambda: ("", "", "")),
    ("server_settings.remove_runner", "configure_server", lambda: ("",)),
    ("server_settings.allow_path", "configure_server", lambda: ("",)),
    ("server_settings.disallow_path", "configure_server", lambda: ("",)),
    ("record_browser.save_uploads", "ingest", lambda: ([],)),
    ("record_browser.extract_zip", "export", lambda: ("", False)),
    ("record_browser.zip_download", "export", lambda: ("",)),
    ("tflite.export_registered", "train", lambda: (NOWHERE,)),
    ("zoo.import_tarball", "train", lambda: (b"", "x.tar.gz")),
    ("zoo.download", "train", lambda: ("x",)),
    ("zoo.register_for_prelabel", "train", lambda: (NOWHERE, NOWHERE)),
    ("zoo.remove_starting_point", "train", lambda: (NOWHERE,)),
]

# Functions with an actor that only read (or decide what the actor may see).
READS = {
    "auth.can", "auth.require", "auth.is_local", "paths.mark_owner", "paths.confine_matches", "paths.shown",
    "paths.shown_in", "labeling.open_image",  # viewers open images without a lease
    "labeling.queue_size", "config_check.check", "paths.confine", "paths.allows",
    "paths.confine_pattern", "paths.rule", "record_browser.confined_set", "record_browser.inspect", "record_browser.page",
    "labeling.why_queue_is_empty", "tflite.download",
    "paths.absolute", "config_check.absolute_paths",  # where a relative path is read from
    # Every signed-in user changes their own password (with the current one): no role lacks it.
    "auth.change_password",
}

NO_DB = {"predictions.cancel"} | {name for name, _, _ in WRITES
                                   if name.split(".")[0] in ("server_settings", "record_browser")}


def _function(name: str):
    module, function = name.split(".")
    return getattr(importlib.import_module(f"backend.{module}"), function)


def _call(db, name: str, actor: dict, arguments):
    args = list(arguments())
    kwargs = args.pop() if args and isinstance(args[-1], Kw) else {}
    head = [] if name in NO_DB else [db]
    if name == "predictions.cancel":
        return _function(name)(actor, *args, **kwargs)
    return _function(name)(*head, actor, *args, **kwargs)


@pytest.mark.parametrize("role", ["viewer", "labeler", "reviewer"])
@pytest.mark.parametrize("name, action, arguments", WRITES, ids=[f"{n}:{a}" for n, a, _ in WRITES])
def test_each_write_refuses_roles_without_its_action(db, users, project, data_dir, name, action,
                                                     arguments, role):
    actor = users[role]
    missing = [a for a in action.split("+") if not auth.can(actor, a)]
    if missing:
        with pytest.raises(PermissionError, match=re.escape(f"{role} ({role}) may not {missing[0].replace('_', ' ')}")):
            _call(db, name, actor, arguments)
        return
    try:  # the role may: whatever fails now is the bogus input, not the role check
        _call(db, name, actor, arguments)
    except PermissionError as exc:
        raise AssertionError(f"{name} refused {role}, who has {action!r}: {exc}") from None
    except (BoxwiseError, TypeError, ValueError, KeyError, OSError, sqlite3.Error):
        pass


def test_every_public_function_taking_an_actor_is_listed():
    listed = {name for name, _, _ in WRITES} | READS
    found = set()
    for info in pkgutil.iter_modules(backend.__path__):
        if info.ispkg or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"backend.{info.name}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ == module.__name__ and not name.startswith("_") \
                    and "actor" in inspect.signature(function).parameters:
                found.add(f"{info.name}.{name}")
    assert found - listed == set(), "add these to WRITES (with their action) or READS"
    assert listed - found == set()


def roles_table() -> str:
    """README's Roles table as `backend.auth` defines the roles."""
    roles = list(auth.ROLES)
    lines = ["| may … | " + " | ".join(roles) + " |", "| --- |" + " :-: |" * len(roles)]
    for action, words in auth.ACTION_WORDS.items():
        marks = ["✓" if action in auth._ROLE_ACTIONS[role] else "" for role in roles]
        lines.append(f"| {words} (`{action}`) | " + " | ".join(marks) + " |")
    return "\n".join(lines)


def test_readme_roles_table_is_what_the_backend_grants():
    assert set(auth.ACTION_WORDS) == set().union(*auth._ROLE_ACTIONS.values())
    checked = {part for _, action, _ in WRITES for part in action.split("+")}
    assert checked | {"view", "read_urls"} == set(auth.ACTION_WORDS)  # those: test_paths.py
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert roles_table() in readme, "README's Roles table differs; paste:\n" + roles_table()
