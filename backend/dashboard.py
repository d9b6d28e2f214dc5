"""Progress figures for a project, each one SQL aggregate (never all rows into Python).

Throughput and review figures come from `annotation_events` (who did what when); counts and
class balance from the current `images` and `annotations`. Days are UTC dates.
"""
from __future__ import annotations

import sqlite_utils

from backend.db import now, one
from backend.labeling import STATUSES
from backend.projects import get_project

_DAY = 24 * 3600


def counts_by_status(db: sqlite_utils.Database, project_id: int) -> dict[str, int]:
    """`{status: images}` for every status, zeros included, in workflow order."""
    get_project(db, project_id)
    found = {r["status"]: r["n"] for r in db.query(
        "select status, count(*) as n from images where project_id = ? group by status", [project_id])}
    return {status: found.get(status, 0) for status in STATUSES}


def throughput(db: sqlite_utils.Database, project_id: int, days: int = 30,
               until: float | None = None) -> list[dict]:
    """Per labeler and day: images submitted (`labeled`) and boxes added (net, human saves).

    Rows `{"day": "YYYY-MM-DD", "username", "images", "boxes"}` for the last `days` days,
    ordered by day then user name.
    """
    since = (until if until is not None else now()) - days * _DAY
    rows = db.query("""
        select date(e.at, 'unixepoch') as day, coalesce(u.username, 'cli') as username,
          count(distinct case when e.kind = 'status' and json_extract(e.after, '$.status') = 'labeled'
                then e.image_id end) as images,
          coalesce(sum(case when e.kind in ('boxes', 'accept_drafts')
                then max(0, (select count(*) from json_each(e.after) where json_extract(value, '$.source') = 'human')
                          - (select count(*) from json_each(e.before) where json_extract(value, '$.source') = 'human'))
                end), 0) as boxes
        from annotation_events e
        join images i on i.id = e.image_id and i.project_id = ?
        left join users u on u.id = e.user_id
        where e.kind in ('status', 'boxes', 'accept_drafts') and e.at >= ?
        group by day, username order by day, username""", [project_id, since])
    return [dict(r) for r in rows]


def class_balance(db: sqlite_utils.Database, project_id: int) -> list[dict]:
    """Per class, in picker order: human boxes and images with at least one such box."""
    return [dict(r) for r in db.query("""
        select labels.name as class, labels.color, labels.label_map_id,
          count(annotations.id) as boxes, count(distinct annotations.image_id) as images
        from labels left join annotations
          on annotations.label_id = labels.id and annotations.source = 'human'
        where labels.project_id = ?
        group by labels.id order by labels.position, labels.label_map_id""", [project_id])]


def boxes_per_image(db: sqlite_utils.Database, project_id: int,
                    statuses: tuple[str, ...] = ("labeled", "reviewed")) -> list[dict]:
    """Histogram of human boxes per image over images in `statuses`: `[{"boxes": k, "images": n}]`
    (negatives count as 0 boxes)."""
    marks = ",".join("?" * len(statuses))
    return [dict(r) for r in db.query(f"""
        select boxes, count(*) as images from (
          select (select count(*) from annotations
                  where annotations.image_id = images.id and annotations.source = 'human') as boxes
          from images where project_id = ? and status in ({marks}))
        group by boxes order by boxes""", [project_id, *statuses])]


def review_summary(db: sqlite_utils.Database, project_id: int) -> dict:
    """Review decisions from history: `{"approved", "rejected", "rejection_rate", "per_labeler"}`;
    `per_labeler` rows `{"username", "approved", "rejected", "rejection_rate"}` by the image's
    labeler. Rates are None when nothing was reviewed."""
    rows = [dict(r) for r in db.query("""
        select coalesce(u.username, '(unknown)') as username,
          sum(json_extract(e.after, '$.status') = 'reviewed') as approved,
          sum(json_extract(e.after, '$.status') = 'rejected') as rejected
        from annotation_events e
        join images i on i.id = e.image_id and i.project_id = ?
        left join users u on u.id = i.labeled_by
        where e.kind = 'status' and json_extract(e.after, '$.status') in ('reviewed', 'rejected')
        group by username order by username""", [project_id])]
    for row in rows:
        row["rejection_rate"] = _rate(row["rejected"], row["approved"])
    approved = sum(r["approved"] for r in rows)
    rejected = sum(r["rejected"] for r in rows)
    return {"approved": approved, "rejected": rejected,
            "rejection_rate": _rate(rejected, approved), "per_labeler": rows}


def summary(db: sqlite_utils.Database, project_id: int) -> dict:
    """Headline numbers: images, done (labeled + reviewed), human boxes, open model drafts."""
    counts = counts_by_status(db, project_id)
    boxes = one(db, """select coalesce(sum(a.source = 'human'), 0) as human,
                              coalesce(sum(a.source = 'model'), 0) as drafts
                       from annotations a join images i on i.id = a.image_id
                       where i.project_id = ?""", [project_id])
    total = sum(counts.values())
    done = counts["labeled"] + counts["reviewed"]
    return {"images": total, "done": done, "done_share": done / total if total else None,
            "boxes": boxes["human"], "drafts": boxes["drafts"]}


def _rate(rejected: int, approved: int) -> float | None:
    decided = rejected + approved
    return rejected / decided if decided else None
