"""The labeling workflow: queues, leases, assignment, statuses and review.

Statuses: `new` → `in_progress` (first change) → `labeled` (submitted) → `reviewed` (approved)
or `rejected` (with a comment; back in the queue of whoever labeled it). `skipped` (with a
reason) leaves the queue; "no objects" marks a negative image, `labeled` with zero boxes.

Leases: opening an image for labeling takes a lease (`images.lease_user_id`,
`lease_expires_at`) for `LEASE_SECONDS`, renewed while the user works. "Next image" never
hands out an image whose lease another user holds; a lease nobody renews simply expires.

Every query that picks or lists images walks an index in order and stops at `limit`
(see `db.m010_labeling_indexes`), so opening the next image costs the same at 1k or 100k
images.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterable

import sqlite_utils

from backend import annotations
from backend.auth import can, require
from backend.db import now, one, transaction
from backend.errors import Invalid, NotFound
from backend.images import get_image

LEASE_SECONDS = 10 * 60
STATUSES = ("new", "in_progress", "labeled", "reviewed", "rejected", "skipped")
ORDERS = ("id", "uncertain")
# Queue statuses in the order they are served: work sent back first, then work begun, then new.
_QUEUE_STATUSES = ("rejected", "in_progress", "new")
_SUBMITTABLE = {"new", "in_progress", "rejected", "skipped", "labeled"}
_SKIPPABLE = {"new", "in_progress", "rejected"}
_REVIEWABLE = {"labeled", "reviewed"}


# ---------------------------------------------------------------- leases


def lease_holder(db: sqlite_utils.Database, image: dict, at: float | None = None) -> dict | None:
    """`{"user_id", "username", "expires_at"}` of the image's live lease, or None."""
    at = now() if at is None else at
    if not image.get("lease_user_id") or (image.get("lease_expires_at") or 0) <= at:
        return None
    user = one(db, "select username from users where id = ?", [image["lease_user_id"]])
    return {"user_id": image["lease_user_id"], "username": user["username"] if user else "?",
            "expires_at": image["lease_expires_at"]}


def describe_lease(lease: dict | None) -> str:
    """"leased by bob until 14:03:12" (local time of the server), or ""."""
    if not lease:
        return ""
    until = dt.datetime.fromtimestamp(lease["expires_at"]).strftime("%H:%M:%S")
    return f"leased by {lease['username']} until {until}"


def open_image(db: sqlite_utils.Database, actor: dict, image_id: int, *,
               seconds: float = LEASE_SECONDS) -> dict:
    """Open an image for labeling: take (or renew) the lease unless another user holds it.

    Returns `{"image": row, "lease": holder or None, "mine": bool}`; `mine` is False when
    someone else holds the lease (the image can be looked at; saves stay version-checked).
    Viewers open images without a lease.
    """
    with transaction(db):
        image = get_image(db, image_id)
        holder = lease_holder(db, image)
        if can(actor, "label") and (holder is None or holder["user_id"] == actor.get("id")):
            _set_lease(db, image_id, actor.get("id"), now() + seconds)
            image = get_image(db, image_id)
            holder = lease_holder(db, image)
    return {"image": image, "lease": holder,
            "mine": bool(holder) and holder["user_id"] == actor.get("id")}


def renew_lease(db: sqlite_utils.Database, actor: dict, image_id: int, *,
                seconds: float = LEASE_SECONDS) -> bool:
    """Extend the actor's lease on an image; False when the actor no longer holds it (it
    expired and someone else took it) — then the caller should say so."""
    require(actor, "label")
    # Through transaction(): the write lock is waited for fairly, and a timeout is `Busy`.
    with transaction(db):
        stamp = now()
        cursor = db.execute("""update images set lease_user_id = ?, lease_expires_at = ?
                               where id = ? and (lease_user_id = ? or lease_user_id is null
                                                 or lease_expires_at <= ?)""",
                            [actor.get("id"), stamp + seconds, image_id, actor.get("id"), stamp])
    return bool(cursor.rowcount)


def release_lease(db: sqlite_utils.Database, actor: dict, image_id: int) -> bool:
    """Give up a lease: one's own, or anyone's for an admin. True when a lease was released."""
    require(actor, "label")
    with transaction(db):
        image = get_image(db, image_id)
        holder = lease_holder(db, image)
        if holder is None:
            return False
        if holder["user_id"] != actor.get("id"):
            require(actor, "assign")
        _set_lease(db, image_id, None, None)
    return True


def release_leases(db: sqlite_utils.Database, actor: dict, project_id: int,
                   user_id: int | None = None) -> int:
    """Admins: release every live lease in a project (or only `user_id`'s). Returns the count."""
    require(actor, "assign")
    where, params = "project_id = ? and lease_user_id is not null", [project_id]
    if user_id is not None:
        where, params = "project_id = ? and lease_user_id = ?", [project_id, user_id]
    with transaction(db):
        cursor = db.execute(f"update images set lease_user_id = null, lease_expires_at = null "
                            f"where {where} and lease_expires_at > ?", [*params, now()])
        db.execute(f"update images set lease_user_id = null, lease_expires_at = null where {where}",
                   params)
    return cursor.rowcount


def leases(db: sqlite_utils.Database, project_id: int) -> list[dict]:
    """Live leases of a project: image, filename, user name, expiry (unix seconds and the
    server's local time of day), soonest expiry first."""
    rows = list(db.query("""
        select images.id as image_id, images.filename, users.username, images.lease_expires_at
        from images join users on users.id = images.lease_user_id
        where images.project_id = ? and images.lease_user_id is not null
          and images.lease_expires_at > ? order by images.lease_expires_at""",
                         [project_id, now()]))
    return [{**row, "until": dt.datetime.fromtimestamp(row["lease_expires_at"]).strftime("%H:%M:%S")}
            for row in rows]


def _set_lease(db, image_id: int, user_id: int | None, expires_at: float | None) -> None:
    db.execute("update images set lease_user_id = ?, lease_expires_at = ? where id = ?",
               [user_id, expires_at, image_id])


# ---------------------------------------------------------------- the queue


def next_image(db: sqlite_utils.Database, actor: dict, project_id: int, *, order: str = "id",
               exclude: Iterable[int] = (), seconds: float = LEASE_SECONDS,
               resume_own: bool = False) -> dict | None:
    """The next image for `actor` to label, leased to them; None when their queue is empty
    (`why_queue_is_empty` says why).

    Served in this order: images they labeled that a reviewer rejected; images assigned to
    them; unassigned images (first rejected ones nobody labeled: imported or demo images) — within
    each, `in_progress` before `new`, and by id (`order="id"`)
    or most uncertain model prediction first (`order="uncertain"`, `images.uncertainty`).
    An `in_progress` image the actor changed last (their own work saved without submitting)
    comes only after all of that, unless `resume_own` puts it first, so "next" moves on to new
    work instead of bouncing between one's own half-done images.
    Never an image leased by someone else, never one assigned to someone else. `exclude`
    skips images (the one the user is leaving).
    """
    require(actor, "label")
    with transaction(db):
        stamp = now()
        image_id = _next_id(db, actor, project_id, order, exclude, resume_own, stamp)
        if image_id is None:
            return None
        _set_lease(db, image_id, actor.get("id"), stamp + seconds)
        return get_image(db, image_id)


def peek_next_image(db: sqlite_utils.Database, actor: dict, project_id: int, *, order: str = "id",
                    exclude: Iterable[int] = (), resume_own: bool = False) -> dict | None:
    """The image `next_image` would serve now with these arguments, without leasing it (the
    Label page prepares its picture ahead of N); None when it would serve none."""
    require(actor, "label")
    image_id = _next_id(db, actor, project_id, order, exclude, resume_own, now())
    return None if image_id is None else get_image(db, image_id)


def _next_id(db, actor: dict, project_id: int, order: str, exclude: Iterable[int], resume_own: bool,
             stamp: float) -> int | None:
    if order not in ORDERS:
        raise Invalid(f"queue order must be one of {', '.join(ORDERS)}, not {order!r}")
    me, exclude = actor.get("id"), [int(i) for i in exclude]
    tiers = _queue_tiers(project_id, me)
    own = [(where, params) for where, params in tiers if "in_progress" in params]
    others = [(f"{where} and updated_by is not ?", [*params, me]) if "in_progress" in params
              else (where, params) for where, params in tiers]
    own = [(f"{where} and updated_by is ?", [*params, me]) for where, params in own]
    ordered = [*own, *others] if resume_own else [*others, *own]
    for where, params in ordered:
        # Rejected work goes back in the order it was sent back, whatever the queue order.
        image_id = _first(db, where, params, me, stamp, exclude,
                          "id" if "rejected" in where and "labeled_by = ?" in where else order)
        if image_id is not None:
            return image_id
    return None


def why_queue_is_empty(db: sqlite_utils.Database, actor: dict, project_id: int, *,
                       review: bool = False, exclude: Iterable[int] = ()) -> str:
    """Why "next" found nothing for `actor`: images of their queue (or, `review=True`, the
    review queue) that wait under someone else's lease, with who and until when — "1 image
    waits, leased by ann until 10:42" — or that nothing is left at all."""
    me, stamp, exclude = actor.get("id"), now(), {int(i) for i in exclude}
    tiers = [("project_id = ? and status = 'labeled'", [project_id])] if review \
        else _queue_tiers(project_id, me)
    held: dict[int, dict] = {}
    for where, params in tiers:
        for row in db.query(f"select id, lease_user_id, lease_expires_at from images where {where} "
                            "and lease_user_id is not null and lease_user_id is not ? "
                            "and lease_expires_at > ? order by lease_expires_at limit 50",
                            [*params, me, stamp]):
            held[row["id"]] = row
    held = {i: row for i, row in held.items() if i not in exclude}
    if not held:
        what = "to review" if review else "in your queue"
        if exclude:
            return f"No other image is left {what}."
        return f"No image is left {what}."
    by_user: dict[int, list[dict]] = {}
    for row in held.values():
        by_user.setdefault(row["lease_user_id"], []).append(row)
    parts = []
    for user_id, rows in by_user.items():
        user = one(db, "select username from users where id = ?", [user_id])
        until = dt.datetime.fromtimestamp(max(r["lease_expires_at"] for r in rows)).strftime("%H:%M")
        parts.append(f"leased by {user['username'] if user else '?'} until {until}")
    count = len(held)
    return (f"{count} image{'s' if count != 1 else ''} wait{'s' if count == 1 else ''}, "
            f"{'; '.join(parts)}.")


def _queue_tiers(project_id: int, me: int | None) -> list[tuple[str, list]]:
    tiers = [("project_id = ? and status = 'rejected' and labeled_by = ?", [project_id, me])]
    for status in _QUEUE_STATUSES:
        tiers.append(("project_id = ? and assignee_id = ? and status = ?", [project_id, me, status]))
    # Rejected images nobody labeled (imported, or the demo's) have no labeler to go back to:
    # they are everyone's, ahead of the other unassigned work.
    tiers.append(("project_id = ? and assignee_id is null and status = 'rejected' and labeled_by is null",
                  [project_id]))
    for status in _QUEUE_STATUSES[1:]:
        tiers.append(("project_id = ? and assignee_id is null and status = ?", [project_id, status]))
    return tiers


def _first(db, where: str, params: list, me, stamp: float, exclude: list[int],
           order: str) -> int | None:
    # The lease test is checked row by row while walking the index in queue order: it skips
    # at most the handful of images that are leased right now.
    sql = (f"select id from images where {where} and (lease_user_id is null or lease_user_id = ? "
           f"or lease_expires_at <= ?)")
    args = [*params, me, stamp]
    if exclude:
        sql += f" and id not in ({','.join('?' * len(exclude))})"
        args += exclude
    sql += " order by uncertainty desc, id limit 1" if order == "uncertain" else " order by id limit 1"
    row = one(db, sql, args)
    return row["id"] if row else None


def queue_size(db: sqlite_utils.Database, actor: dict, project_id: int) -> int:
    """How many images are in `actor`'s queue (counted through the same indexes)."""
    me, total = actor.get("id"), 0
    for where, params in _queue_tiers(project_id, me):
        total += one(db, f"select count(*) as n from images where {where}", params)["n"]
    return total


def next_for_review(db: sqlite_utils.Database, actor: dict, project_id: int, *,
                    exclude: Iterable[int] = ()) -> dict | None:
    """The oldest submitted (`labeled`) image not leased by someone else, leased to the reviewer."""
    require(actor, "review")
    me, exclude = actor.get("id"), [int(i) for i in exclude]
    with transaction(db):
        stamp = now()
        image_id = _first(db, "project_id = ? and status = 'labeled'", [project_id], me, stamp,
                          exclude, "id")
        if image_id is None:
            return None
        _set_lease(db, image_id, me, stamp + LEASE_SECONDS)
        return get_image(db, image_id)


# ---------------------------------------------------------------- browsing with filters


def find_images(db: sqlite_utils.Database, project_id: int, *, status: str | None = None,
                label_id: int | None = None, labeler_id: int | None = None,
                assignee_id: int | None = None, after_id: int | None = None,
                before_id: int | None = None, limit: int = 50) -> list[dict]:
    """Images of a project matching the filters, by id (descending when `before_id` is given):
    `status`, `label_id` (has a box of that class), `labeler_id` (labeled by), `assignee_id`."""
    where, params = ["images.project_id = ?"], [project_id]
    if status:
        _check_status(status)
        where.append("images.status = ?")
        params.append(status)
    if label_id is not None:
        where.append("exists (select 1 from annotations where annotations.image_id = images.id "
                     "and annotations.label_id = ?)")
        params.append(label_id)
    if labeler_id is not None:
        where.append("images.labeled_by = ?")
        params.append(labeler_id)
    if assignee_id is not None:
        where.append("images.assignee_id = ?")
        params.append(assignee_id)
    direction = "asc"
    if after_id is not None:
        where.append("images.id > ?")
        params.append(after_id)
    if before_id is not None:
        where.append("images.id < ?")
        params.append(before_id)
        direction = "desc"
    return list(db.query(
        f"select images.* from images where {' and '.join(where)} order by images.id {direction} "
        "limit ?", [*params, limit]))


def neighbour(db: sqlite_utils.Database, project_id: int, image_id: int, step: int,
              **filters) -> dict | None:
    """The image after (`step=1`) or before (`step=-1`) `image_id` that matches `filters`."""
    found = find_images(db, project_id, limit=1, **filters,
                        **({"after_id": image_id} if step > 0 else {"before_id": image_id}))
    return found[0] if found else None


def project_image(db: sqlite_utils.Database, project_id: int, image_id: int) -> dict:
    """An image of this project (NotFound for another project's image)."""
    image = one(db, "select * from images where id = ? and project_id = ?", [image_id, project_id])
    if image is None:
        raise NotFound(f"no image #{image_id} in this project")
    return image


# ---------------------------------------------------------------- statuses


def submit(db: sqlite_utils.Database, actor: dict, image_id: int, boxes: list[dict] | None,
           base_version: int, *, force: bool = False) -> dict:
    """Save `boxes` (None: keep the stored ones) and mark the image `labeled` by `actor`.

    Refused while model drafts remain (accept or delete them first) and when the image has no
    boxes and is not marked "no objects".
    """
    require(actor, "label")
    with transaction(db):
        image = get_image(db, image_id)
        if boxes is not None:
            image = annotations.save_boxes(db, actor, image_id, boxes, base_version, force=force)
            base_version, force = image["version"], False
        image = _current(db, image_id, base_version, force, _SUBMITTABLE, "submit")
        counts = _box_counts(db, image_id)
        if counts["model"]:
            raise Invalid(f"{counts['model']} model drafts are still open: accept or delete them "
                          "before submitting")
        if not counts["human"] and not image["no_objects"]:
            raise Invalid("draw at least one box, or mark the image as having no objects")
        return _set_status(db, actor, image, "labeled", labeled_by=actor.get("id"),
                           skip_reason=None)


def mark_no_objects(db: sqlite_utils.Database, actor: dict, image_id: int, base_version: int, *,
                    force: bool = False) -> dict:
    """Submit a negative image: no objects of any class, exported with zero boxes. Open model
    drafts are deleted; human boxes must be deleted first."""
    require(actor, "label")
    with transaction(db):
        image = _current(db, image_id, base_version, force, _SUBMITTABLE, "mark as having no objects")
        if _box_counts(db, image_id)["human"]:
            raise Invalid("this image has boxes: delete them before marking it as having no objects")
        if _box_counts(db, image_id)["model"]:
            image = annotations.reject_drafts(db, actor, image_id, None, image["version"])
        return _set_status(db, actor, image, "labeled", labeled_by=actor.get("id"),
                           no_objects=1, skip_reason=None)


def skip(db: sqlite_utils.Database, actor: dict, image_id: int, base_version: int, reason: str,
         *, force: bool = False) -> dict:
    """Take an image out of the queue with a reason ("blurred", "not our domain")."""
    require(actor, "label")
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("say why the image is skipped")
    with transaction(db):
        image = _current(db, image_id, base_version, force, _SKIPPABLE, "skip")
        return _set_status(db, actor, image, "skipped", skip_reason=reason)


def approve(db: sqlite_utils.Database, actor: dict, image_id: int, base_version: int) -> dict:
    """A reviewer accepts a submitted image: `reviewed`."""
    require(actor, "review")
    with transaction(db):
        image = _current(db, image_id, base_version, False, _REVIEWABLE, "approve")
        return _set_status(db, actor, image, "reviewed", reviewed_by=actor.get("id"),
                           review_comment=None, lease_user_id=None, lease_expires_at=None)


def reject(db: sqlite_utils.Database, actor: dict, image_id: int, base_version: int,
           comment: str) -> dict:
    """A reviewer sends a submitted image back to its labeler with a comment: `rejected`."""
    require(actor, "review")
    comment = (comment or "").strip()
    if not comment:
        raise Invalid("say what is wrong: a rejection needs a comment for the labeler")
    with transaction(db):
        image = _current(db, image_id, base_version, False, _REVIEWABLE, "reject")
        return _set_status(db, actor, image, "rejected", reviewed_by=actor.get("id"),
                           review_comment=comment, lease_user_id=None, lease_expires_at=None)


def _set_status(db, actor: dict, image: dict, status: str, **fields) -> dict:
    changes = {"status": status, "version": image["version"] + 1, "updated_at": now(),
               "updated_by": actor.get("id"), **fields}
    db["images"].update(image["id"], changes)
    keys = ("status", "no_objects", "skip_reason", "review_comment")
    before = {k: image.get(k) for k in keys}
    after = {k: changes.get(k, image.get(k)) for k in keys}
    annotations.record_event(db, actor, image["id"], "status", before, after)
    return get_image(db, image["id"])


def _current(db, image_id: int, base_version: int, force: bool, allowed: set[str], verb: str) -> dict:
    """The image, when it is still at `base_version` (or `force`) and in a status `verb` applies to."""
    image = get_image(db, image_id)
    annotations.check_version(db, image, base_version, force)
    _check_from(image, allowed, verb)
    return image


def _check_from(image: dict, allowed: set[str], verb: str) -> None:
    if image["status"] not in allowed:
        raise Invalid(f"cannot {verb} image {image['filename']}: it is {image['status']}")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}, not {status!r}")


def _box_counts(db, image_id: int) -> dict:
    row = one(db, """select coalesce(sum(source = 'human'), 0) as human,
                            coalesce(sum(source = 'model'), 0) as model
                     from annotations where image_id = ?""", [image_id])
    return {"human": row["human"], "model": row["model"]}


# ---------------------------------------------------------------- assignment


def labelers(db: sqlite_utils.Database) -> list[dict]:
    """Active users who may label (the people images can be assigned to), by name."""
    return [user for user in db.query(
        "select id, username, role from users where disabled = 0 order by username")
        if can(user, "label")]


def assign(db: sqlite_utils.Database, actor: dict, project_id: int, image_ids: Iterable[int],
           user_id: int | None) -> int:
    """Admins: assign images of a project to a labeler (`None` unassigns). Returns the count;
    ids that are not images of the project are refused (nothing is assigned)."""
    require(actor, "assign")
    ids = sorted({int(i) for i in image_ids})
    with transaction(db):
        if user_id is not None:
            user = one(db, "select id, role, disabled from users where id = ?", [user_id])
            if user is None:
                raise NotFound(f"no user with id {user_id}")
            if not can(user, "label") or user["disabled"]:
                raise Invalid("images can only be assigned to active users who may label")
        found = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            found |= {r["id"] for r in db.query(
                f"select id from images where project_id = ? and id in ({','.join('?' * len(chunk))})",
                [project_id, *chunk])}
        missing = [i for i in ids if i not in found]
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
            raise NotFound(f"not images of this project: {shown}")
        stamp = now()
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            db.execute(f"update images set assignee_id = ?, updated_at = ?, updated_by = ? "
                       f"where id in ({','.join('?' * len(chunk))})",
                       [user_id, stamp, actor.get("id"), *chunk])
        db["annotation_events"].insert_all([
            {"image_id": i, "user_id": actor.get("id"), "at": stamp, "kind": "assign",
             "before": "null", "after": f'{{"assignee_id": {"null" if user_id is None else user_id}}}'}
            for i in ids])
    return len(ids)


def assign_next(db: sqlite_utils.Database, actor: dict, project_id: int, user_id: int,
                count: int) -> list[int]:
    """Admins: assign the next `count` unassigned `new` images (by id) to a labeler."""
    require(actor, "assign")
    ids = [r["id"] for r in db.query(
        "select id from images where project_id = ? and assignee_id is null and status = 'new' "
        "order by id limit ?", [project_id, int(count)])]
    assign(db, actor, project_id, ids, user_id)
    return ids


def parse_id_ranges(text: str) -> list[int]:
    """"1-50,60,70-72" → [1, …, 50, 60, 70, 71, 72]."""
    ids: list[int] = []
    for part in (text or "").replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                if high < low:
                    raise ValueError
                ids.extend(range(low, high + 1))
            else:
                ids.append(int(part))
        except ValueError:
            raise Invalid(f"not an image id or range: {part!r} (write e.g. 1-50,60)") from None
    return ids
