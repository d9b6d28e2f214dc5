"""Boxes on images: validation, saves with version checks, and the history of every change.

Boxes in this layer are dicts in pixels of the stored image:
`{"label_id": int, "xmin": float, "ymin": float, "xmax": float, "ymax": float,
  "source": "human" | "model", "score": float | None, "difficult": 0|1, "truncated": 0|1}`.
Every save carries the image version it started from; a save from a stale version is
refused with who changed the image and when (`Conflict`), unless the caller explicitly
overwrites. Every change is one `annotation_events` row with the boxes before and after.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from typing import Iterable

import sqlite_utils

from backend.auth import require
from backend.db import now, one, transaction
from backend.errors import Conflict, Invalid
from backend.images import get_image

MIN_BOX_SIDE = 2.0  # pixels; smaller boxes are almost always slips of the mouse
BOX_FIELDS = ("label_id", "xmin", "ymin", "xmax", "ymax", "source", "score", "difficult", "truncated")


def get_boxes(db: sqlite_utils.Database, image_id: int, *, source: str | None = None) -> list[dict]:
    where, params = "image_id = ?", [image_id]
    if source:
        where += " and source = ?"
        params.append(source)
    return list(db.query(f"select * from annotations where {where} order by id", params))


def clean_boxes(boxes: Iterable[dict], width: int, height: int,
                label_ids: set[int]) -> tuple[list[dict], list[str]]:
    """Clip boxes to the image and drop invalid ones.

    Returns (kept boxes, one message per dropped box). A box is dropped when its class is not
    one of `label_ids`, or when after clipping a side is under MIN_BOX_SIDE pixels.
    """
    kept, problems = [], []
    for number, box in enumerate(boxes, start=1):
        label_id = box.get("label_id")
        if isinstance(label_id, bool) or not isinstance(label_id, int) or label_id not in label_ids:
            problems.append(f"box {number}: class id {str(label_id)[:40]!r} is not a class of this project")
            continue
        try:
            coords = [float(box[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (KeyError, TypeError, ValueError, OverflowError):
            coords = [math.nan]
        if not all(math.isfinite(c) for c in coords):
            problems.append(f"box {number}: xmin, ymin, xmax and ymax must be finite numbers")
            continue
        x0, x1 = sorted(coords[0::2])
        y0, y1 = sorted(coords[1::2])
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
            problems.append(f"box {number}: {x1 - x0:.1f}×{y1 - y0:.1f} px inside the image; "
                            f"boxes need at least {MIN_BOX_SIDE:.0f} px on each side")
            continue
        kept.append({
            "label_id": int(box["label_id"]), "xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1,
            "source": box.get("source") or "human", "score": box.get("score"),
            "difficult": int(box.get("difficult") or 0), "truncated": int(box.get("truncated") or 0)})
    return kept, problems


def save_boxes(db: sqlite_utils.Database, actor: dict, image_id: int, boxes: list[dict],
               base_version: int, *, status: str | None = None, force: bool = False,
               strict: bool = True) -> dict:
    """Replace an image's boxes (all sources) with `boxes`, as of `base_version`.

    Raises Conflict when the image changed since `base_version` (unless `force`), Invalid when
    `strict` and any box is invalid (nothing is saved). `status`, when given, is set in the
    same transaction. Returns the updated image row.
    """
    require(actor, "label")
    with transaction(db):
        image = get_image(db, image_id)
        check_version(db, image, base_version, force)
        label_ids = {r["id"] for r in db.query("select id from labels where project_id = ?",
                                                [image["project_id"]])}
        kept, problems = clean_boxes(boxes, image["width"], image["height"], label_ids)
        if problems and strict:
            raise Invalid("; ".join(problems))
        before = box_state(get_boxes(db, image_id))
        db.execute("delete from annotations where image_id = ?", [image_id])
        stamp = now()
        if kept:
            db["annotations"].insert_all([{**box, "image_id": image_id, "created_at": stamp,
                                           "created_by": actor.get("id")} for box in kept])
        after = box_state(kept)
        changes = {}
        if kept and image.get("no_objects"):
            changes["no_objects"] = 0  # boxes drawn on a "no objects" image: it has objects after all
        if status and status != image["status"]:
            changes["status"] = status
        elif image["status"] == "new" and after != before:
            changes["status"] = "in_progress"
        return _changed(db, actor, image, stamp, changes, ("boxes", before, after) if after != before else None)


def drafts(db: sqlite_utils.Database, image_id: int) -> list[dict]:
    """The model's boxes on an image (`source='model'`, with `score`), not yet accepted."""
    return get_boxes(db, image_id, source="model")


def accept_drafts(db: sqlite_utils.Database, actor: dict, image_id: int,
                  annotation_ids: Iterable[int] | None, base_version: int, *,
                  force: bool = False) -> dict:
    """Make model drafts human boxes (`source='human'`, score cleared, created by `actor`).

    `annotation_ids=None` accepts every draft of the image. Raises Conflict on a stale
    `base_version`, Invalid when an id is not a draft of this image. Returns the image row.
    """
    return _change_drafts(db, actor, image_id, annotation_ids, base_version, force, accept=True)


def reject_drafts(db: sqlite_utils.Database, actor: dict, image_id: int,
                  annotation_ids: Iterable[int] | None, base_version: int, *,
                  force: bool = False) -> dict:
    """Delete model drafts (`None`: all of the image's drafts); same checks as `accept_drafts`."""
    return _change_drafts(db, actor, image_id, annotation_ids, base_version, force, accept=False)


def _change_drafts(db, actor, image_id, annotation_ids, base_version, force, accept: bool) -> dict:
    require(actor, "label")
    with transaction(db):
        image = get_image(db, image_id)
        check_version(db, image, base_version, force)
        current = drafts(db, image_id)
        by_id = {box["id"]: box for box in current}
        wanted = list(by_id) if annotation_ids is None else [int(i) for i in annotation_ids]
        unknown = [i for i in wanted if i not in by_id]
        if unknown:
            raise Invalid(f"boxes {', '.join(map(str, unknown))} are not model drafts of image "
                          f"{image['filename']} (reload it: it may have changed)")
        if not wanted:
            return image
        before = box_state(get_boxes(db, image_id))
        marks = ",".join("?" * len(wanted))
        stamp = now()
        if accept:
            db.execute(f"update annotations set source = 'human', score = null, created_by = ?, "
                       f"created_at = ? where id in ({marks})", [actor.get("id"), stamp, *wanted])
        else:
            db.execute(f"delete from annotations where id in ({marks})", wanted)
        return _changed(db, actor, image, stamp, {"status": "in_progress"} if image["status"] == "new" else {},
                        ("accept_drafts" if accept else "reject_drafts", before, box_state(get_boxes(db, image_id))))


def _changed(db, actor: dict, image: dict, stamp: float, changes: dict, boxes_event: tuple | None) -> dict:
    """Inside the caller's transaction, after a change of `image`'s boxes: its version bumped
    with `changes`, the `(kind, before, after)` boxes event and any status change recorded.
    Returns the image row as it now is."""
    changes = {"version": image["version"] + 1, "updated_at": stamp, "updated_by": actor.get("id"), **changes}
    db["images"].update(image["id"], changes)
    if boxes_event:
        record_event(db, actor, image["id"], *boxes_event)
    if "status" in changes:
        record_event(db, actor, image["id"], "status", {"status": image["status"]}, {"status": changes["status"]})
    # Read inside the transaction: after COMMIT another writer may already have moved the
    # version on, and a client saving again from that version would overwrite their save.
    return get_image(db, image["id"])


def scaled_copy(boxes: Iterable[dict], source: dict, target: dict) -> list[dict]:
    """Boxes of image `source` as human boxes for image `target` ("copy boxes from the previous
    image"), scaled by the two images' sizes so they cover the same part of the picture."""
    sx, sy = target["width"] / source["width"], target["height"] / source["height"]
    return [{"label_id": b["label_id"], "xmin": b["xmin"] * sx, "ymin": b["ymin"] * sy,
             "xmax": b["xmax"] * sx, "ymax": b["ymax"] * sy, "source": "human", "score": None,
             "difficult": b.get("difficult") or 0, "truncated": b.get("truncated") or 0}
            for b in boxes]


def edit_box(boxes: list[dict], index: int, *, label_id: int | None = None,
             accept: bool = False, delete: bool = False, difficult: bool | None = None,
             truncated: bool | None = None) -> list[dict]:
    """A copy of an edited (not yet saved) box list with box `index` (0-based) relabeled,
    accepted as a human box, flagged difficult / truncated (Pascal VOC's flags), or deleted.
    A relabeled draft becomes a human box."""
    if not 0 <= index < len(boxes):
        raise Invalid(f"there is no box {index + 1}")
    if delete:
        return boxes[:index] + boxes[index + 1:]
    box = dict(boxes[index])
    if label_id is not None:
        box["label_id"] = label_id
    if accept or label_id is not None:
        box.update(source="human", score=None)
    for flag, value in (("difficult", difficult), ("truncated", truncated)):
        if value is not None:
            box[flag] = int(bool(value))
    return boxes[:index] + [box] + boxes[index + 1:]


def draft_count(boxes: Iterable[dict]) -> int:
    """How many of the boxes are model drafts."""
    return sum(1 for box in boxes if box.get("source") == "model")


def same_boxes(a: Iterable[dict], b: Iterable[dict]) -> bool:
    """Whether two box lists are the same boxes (to 1/100 px, in any order)."""
    return box_state(list(a)) == box_state(list(b))


def check_version(db: sqlite_utils.Database, image: dict, base_version: int, force: bool) -> None:
    """Refuse a write based on an older version of the image, naming who changed it and when."""
    if force or image["version"] == base_version:
        return
    who = one(db, "select username from users where id = ?", [image["updated_by"]]) \
        if image["updated_by"] else None
    when = dt.datetime.fromtimestamp(image["updated_at"] or 0).strftime("%Y-%m-%d %H:%M:%S")
    raise Conflict(f"image {image['filename']} was changed by {who['username'] if who else 'someone'} "
                   f"at {when} (version {image['version']}, you started from {base_version}): "
                   "reload it, or overwrite explicitly")


def record_event(db: sqlite_utils.Database, actor: dict, image_id: int, kind: str,
                 before, after) -> None:
    """One `annotation_events` row (every change of boxes or status writes one)."""
    require(actor, "label")
    db["annotation_events"].insert({"image_id": image_id, "user_id": actor.get("id"), "at": now(),
                                    "kind": kind, "before": json.dumps(before),
                                    "after": json.dumps(after)})


def history(db: sqlite_utils.Database, image_id: int) -> list[dict]:
    """Every change to an image, newest first, with the user name."""
    rows = db.query("""select annotation_events.*, users.username from annotation_events
                       left join users on users.id = annotation_events.user_id
                       where image_id = ? order by at desc, annotation_events.id desc""", [image_id])
    return [{**row, "before": json.loads(row["before"] or "null"),
             "after": json.loads(row["after"] or "null")} for row in rows]


def box_state(boxes: list[dict]) -> list[dict]:
    """The comparable, JSON-ready form of a box list (rounded to 1/100 px)."""
    state = [{"label_id": b["label_id"], "xmin": round(b["xmin"], 2), "ymin": round(b["ymin"], 2),
              "xmax": round(b["xmax"], 2), "ymax": round(b["ymax"], 2), "source": b["source"],
              "score": b.get("score"),
              # Flags only when set, so states (and history rows) of plain boxes stay as they were.
              **{flag: 1 for flag in ("difficult", "truncated") if b.get(flag)}} for b in boxes]
    return sorted(state, key=lambda b: (b["label_id"], b["xmin"], b["ymin"], b["xmax"], b["ymax"]))


BOX_SORTS = ("number", "class", "smallest first", "largest first", "left to right", "top to bottom")


def box_table(boxes: Iterable[dict], labels: Iterable[dict], *, classes: Iterable[str] = (),
              sort: str = "number") -> list[dict]:
    """Rows for the label page's box list: number (the box's place in the list, 1-based),
    class, corners and size in image pixels; only boxes of `classes` (class names; empty:
    all), ordered by `sort` (one of `BOX_SORTS`)."""
    if sort not in BOX_SORTS:
        raise Invalid(f"sort the boxes by one of {', '.join(BOX_SORTS)}, not {sort!r}")
    names = {label["id"]: label["name"] for label in labels}
    wanted = set(classes)
    rows = [{"#": number, "class": names.get(b["label_id"], "?"),
             "xmin": round(b["xmin"], 1), "ymin": round(b["ymin"], 1),
             "xmax": round(b["xmax"], 1), "ymax": round(b["ymax"], 1),
             "width": round(b["xmax"] - b["xmin"], 1), "height": round(b["ymax"] - b["ymin"], 1),
             "source": "draft" if b.get("source") == "model" else "human",
             "score": b.get("score"), "difficult": bool(b.get("difficult")),
             "truncated": bool(b.get("truncated"))} for number, b in enumerate(boxes, start=1)]
    rows = [row for row in rows if not wanted or row["class"] in wanted]
    order = {"number": lambda r: r["#"], "class": lambda r: (r["class"], r["#"]),
             "smallest first": lambda r: (r["width"] * r["height"], r["#"]),
             "largest first": lambda r: (-r["width"] * r["height"], r["#"]),
             "left to right": lambda r: (r["xmin"], r["#"]),
             "top to bottom": lambda r: (r["ymin"], r["#"])}[sort]
    return sorted(rows, key=order)


def history_table(db: sqlite_utils.Database, image_id: int) -> list[dict]:
    """An image's history as rows a person reads: when, who, what changed."""
    rows = []
    names = {r["id"]: r["username"] for r in db.query("select id, username from users")}
    for event in history(db, image_id):
        before, after = event["before"], event["after"]
        if event["kind"] == "status":
            what = f"{(before or {}).get('status')} → {(after or {}).get('status')}"
            extra = (after or {}).get("review_comment") or (after or {}).get("skip_reason")
            if extra and extra != (before or {}).get("review_comment"):
                what += f" ({extra})"
        elif event["kind"] == "assign":
            assignee = (after or {}).get("assignee_id")
            what = f"assigned to {names.get(assignee, assignee)}" if assignee else "unassigned"
        else:
            what = f"{len(before or [])} → {len(after or [])} boxes"
        rows.append({"when": dt.datetime.fromtimestamp(event["at"]).strftime("%Y-%m-%d %H:%M:%S"),
                     "who": event["username"] or "cli", "change": event["kind"], "details": what})
    return rows
