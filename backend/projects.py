"""Projects and their classes (labels).

Every class gets a label-map id >= 1 from its project's counter; the id never changes and is
never handed out again, so TFRecords and models made earlier keep meaning the same thing.
"""
from __future__ import annotations

import re

import sqlite_utils

from backend.auth import require
from backend.db import now, one, transaction
from backend.errors import Invalid, NotFound

# Distinct, colour-blind-friendly defaults (Okabe-Ito, then Tableau) for new classes.
PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
           "#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948", "#B07AA1"]


def class_color(label_map_id: int) -> str:
    """The default colour of the class with this label-map id (id k gets colour k-1); also
    what a model's detections and a TFRecord's boxes are drawn in when no colour is chosen."""
    return PALETTE[(max(label_map_id, 1) - 1) % len(PALETTE)]


_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")


def _check_name(name: str, what: str) -> str:
    name = (name or "").strip()
    if not name:
        raise Invalid(f"{what} name must not be empty")
    if len(name) > 100:
        raise Invalid(f"{what} name must have at most 100 characters")
    return name


# ---------------------------------------------------------------- projects


def create_project(db: sqlite_utils.Database, actor: dict, name: str, classes: list[str] = (),
                   description: str = "") -> dict:
    require(actor, "manage_projects")
    name = _check_name(name, "project")
    with transaction(db):
        if one(db, "select id from projects where name = ?", [name]):
            raise Invalid(f"a project named {name!r} already exists")
        project_id = db["projects"].insert({
            "name": name, "description": description, "archived": 0, "next_label_map_id": 1,
            "created_at": now(), "created_by": actor.get("id")}).last_pk
        for class_name in classes:
            add_label(db, actor, project_id, class_name)
    return get_project(db, project_id)


def get_project(db: sqlite_utils.Database, project: int | str) -> dict:
    """A project by id or by name."""
    column = "id" if isinstance(project, int) else "name"
    row = one(db, f"select * from projects where {column} = ?", [project])
    if row is None and isinstance(project, str) and project.isdigit():
        row = one(db, "select * from projects where id = ?", [int(project)])
    if row is None:
        raise NotFound(f"no project {project!r}")
    return row


def list_projects(db: sqlite_utils.Database, include_archived: bool = False) -> list[dict]:
    where = "" if include_archived else "where archived = 0"
    return list(db.query(f"""
        select projects.*,
          (select count(*) from images where images.project_id = projects.id) as image_count,
          (select count(*) from labels where labels.project_id = projects.id) as class_count
        from projects {where} order by name"""))


def rename_project(db: sqlite_utils.Database, actor: dict, project_id: int, new_name: str) -> dict:
    require(actor, "manage_projects")
    new_name = _check_name(new_name, "project")
    with transaction(db):
        get_project(db, project_id)
        clash = one(db, "select id from projects where name = ? and id != ?", [new_name, project_id])
        if clash:
            raise Invalid(f"a project named {new_name!r} already exists")
        db["projects"].update(project_id, {"name": new_name})
    return get_project(db, project_id)


def set_archived(db: sqlite_utils.Database, actor: dict, project_id: int, archived: bool) -> dict:
    """Archived projects leave the project picker; nothing in them is deleted."""
    require(actor, "manage_projects")
    get_project(db, project_id)
    db["projects"].update(project_id, {"archived": int(archived)})
    return get_project(db, project_id)


# ---------------------------------------------------------------- classes


def list_labels(db: sqlite_utils.Database, project_id: int) -> list[dict]:
    """The project's classes in display order, each with its box count."""
    return list(db.query("""
        select labels.*, (select count(*) from annotations where annotations.label_id = labels.id)
          as box_count
        from labels where project_id = ? order by position, label_map_id""", [project_id]))


def get_label(db: sqlite_utils.Database, label_id: int) -> dict:
    row = one(db, "select * from labels where id = ?", [label_id])
    if row is None:
        raise NotFound(f"no class with id {label_id}")
    return row


def label_by_name(db: sqlite_utils.Database, project_id: int, name: str) -> dict | None:
    return one(db, "select * from labels where project_id = ? and name = ?", [project_id, name])


def add_label(db: sqlite_utils.Database, actor: dict, project_id: int, name: str,
              color: str | None = None, display_name: str | None = None) -> dict:
    require(actor, "manage_projects")
    name = _check_name(name, "class")
    with transaction(db):
        project = get_project(db, project_id)
        if label_by_name(db, project_id, name):
            raise Invalid(f"project {project['name']!r} already has a class {name!r}")
        count = one(db, "select count(*) as n, coalesce(max(position), -1) as last from labels "
                        "where project_id = ?", [project_id])
        label_map_id = project["next_label_map_id"]
        label_id = db["labels"].insert({
            "project_id": project_id, "label_map_id": label_map_id, "name": name,
            "display_name": display_name or name,
            "color": _check_color(color or class_color(label_map_id)),
            "position": count["last"] + 1, "created_at": now()}).last_pk
        db["projects"].update(project_id, {"next_label_map_id": label_map_id + 1})
    return get_label(db, label_id)


def rename_label(db: sqlite_utils.Database, actor: dict, label_id: int, new_name: str,
                 display_name: str | None = None) -> dict:
    """Renaming keeps the label-map id (and every box) of the class."""
    require(actor, "manage_projects")
    new_name = _check_name(new_name, "class")
    with transaction(db):
        label = get_label(db, label_id)
        clash = label_by_name(db, label["project_id"], new_name)
        if clash and clash["id"] != label_id:
            raise Invalid(f"this project already has a class {new_name!r}")
        db["labels"].update(label_id, {"name": new_name, "display_name": display_name or new_name})
    return get_label(db, label_id)


def recolor_label(db: sqlite_utils.Database, actor: dict, label_id: int, color: str) -> dict:
    require(actor, "manage_projects")
    get_label(db, label_id)
    db["labels"].update(label_id, {"color": _check_color(color)})
    return get_label(db, label_id)


def reorder_labels(db: sqlite_utils.Database, actor: dict, project_id: int,
                   label_ids: list[int]) -> list[dict]:
    """Set the display order (and so the number keys); label-map ids are untouched."""
    require(actor, "manage_projects")
    with transaction(db):
        current = {row["id"] for row in db.query("select id from labels where project_id = ?",
                                                 [project_id])}
        if set(label_ids) != current or len(label_ids) != len(current):
            raise Invalid("the new order must list every class of the project exactly once")
        for position, label_id in enumerate(label_ids):
            db["labels"].update(label_id, {"position": position})
    return list_labels(db, project_id)


def delete_label(db: sqlite_utils.Database, actor: dict, label_id: int,
                 merge_into: int | None = None) -> int:
    """Delete a class. If it still has boxes they must be merged into another class of the
    same project first (`merge_into`); returns the number of boxes moved."""
    require(actor, "manage_projects")
    with transaction(db):
        label = get_label(db, label_id)
        boxes = one(db, "select count(*) as n from annotations where label_id = ?", [label_id])["n"]
        if boxes and merge_into is None:
            raise Invalid(f"class {label['name']!r} still has {boxes} boxes: merge them into "
                          "another class before deleting it")
        if merge_into is not None:
            target = get_label(db, merge_into)
            if target["project_id"] != label["project_id"] or target["id"] == label_id:
                raise Invalid("merge into another class of the same project")
            db.execute("update annotations set label_id = ? where label_id = ?", [merge_into, label_id])
        db.execute("delete from labels where id = ?", [label_id])
    return boxes


def _check_color(color: str) -> str:
    if not _COLOR.match(color or ""):
        raise Invalid(f"colour must look like #RRGGBB, not {color!r}")
    return color.upper()
