"""Under load (issue 12, item 7): a save returns the version it wrote, a busy database is the
retryable `Busy` error (in the backend, the CLI and the Label page), never a Traceback.

Real SQLite files, several connections; the interleavings are forced, not hoped for.
"""
from __future__ import annotations

import sqlite3

import pytest
import sqlite_utils

from backend import annotations, db as database, images, labeling
from backend.errors import Busy, Conflict
from tests.helpers import button, image_bytes, signed_in


class _AfterCommit(sqlite3.Connection):
    """A connection that runs `after_commit` once, right after its next COMMIT returns: the
    moment another writer can slip in before the committing caller reads anything again."""
    after_commit = None

    def execute(self, sql, *args):
        cursor = super().execute(sql, *args)
        if sql == "COMMIT" and self.after_commit is not None:
            hook, self.after_commit = self.after_commit, None
            hook()
        return cursor


def _hooked_connection(path) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), isolation_level=None, factory=_AfterCommit,
                           check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {database.BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    return sqlite_utils.Database(conn)


@pytest.fixture
def image_id(db, users, project):
    report = images.ingest(db, users["admin"], project["id"],
                           [("a.png", image_bytes((120, 90), fmt="PNG"))])
    return report.items[0].image_id


def _box(db, project, x):
    label = db.execute("select id from labels where project_id = ? order by id",
                       [project["id"]]).fetchone()[0]
    return [{"label_id": label, "xmin": x, "ymin": 5, "xmax": x + 20, "ymax": 40}]


def test_save_boxes_returns_the_version_this_save_wrote(db, users, project, image_id, data_dir):
    mine = _hooked_connection(data_dir / "boxwise.db")
    theirs = database.connect(data_dir / "boxwise.db")

    def someone_else_saves():
        annotations.save_boxes(theirs, users["reviewer"], image_id, _box(db, project, 50), 1)

    mine.conn.after_commit = someone_else_saves
    saved = annotations.save_boxes(mine, users["labeler"], image_id, _box(db, project, 10), 0)
    assert images.get_image(db, image_id)["version"] == 2  # the other save did land after mine
    assert saved["version"] == 1 and saved["updated_by"] == users["labeler"]["id"]
    # Saving again from the returned version is refused: it would overwrite the reviewer's
    # acknowledged save, which this client never saw.
    with pytest.raises(Conflict, match="changed by reviewer"):
        annotations.save_boxes(mine, users["labeler"], image_id, _box(db, project, 12),
                               saved["version"])
    assert [b["xmin"] for b in annotations.get_boxes(db, image_id)] == [50.0]
    theirs.conn.close()
    mine.conn.close()


def test_accepting_drafts_returns_the_version_it_wrote(db, users, project, image_id, data_dir):
    annotations.save_boxes(db, users["labeler"], image_id,
                           [{**_box(db, project, 10)[0], "source": "model", "score": 0.9}], 0)
    mine = _hooked_connection(data_dir / "boxwise.db")
    theirs = database.connect(data_dir / "boxwise.db")
    mine.conn.after_commit = lambda: annotations.save_boxes(
        theirs, users["reviewer"], image_id, _box(db, project, 50), 2)
    accepted = annotations.accept_drafts(mine, users["labeler"], image_id, None, 1)
    assert accepted["version"] == 2
    assert images.get_image(db, image_id)["version"] == 3
    theirs.conn.close()
    mine.conn.close()


@pytest.fixture
def short_busy_timeout(monkeypatch):
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 300)


def _hold_write_lock(data_dir):
    holder = sqlite3.connect(str(data_dir / "boxwise.db"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("update images set filename = filename")
    return holder


def test_a_busy_database_is_a_retryable_busy_error_and_nothing_changes(
        db, users, project, image_id, data_dir, short_busy_timeout):
    opened = labeling.open_image(db, users["labeler"], image_id)
    expires = images.get_image(db, image_id)["lease_expires_at"]
    holder = _hold_write_lock(data_dir)
    try:
        with pytest.raises(Busy) as busy:
            labeling.renew_lease(db, users["labeler"], image_id)
        assert str(busy.value) == ("the database was busy with other changes for 0.3 s; nothing "
                                   "was changed, try again")
        with pytest.raises(Busy):
            annotations.save_boxes(db, users["labeler"], image_id, _box(db, project, 10),
                                   opened["image"]["version"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not db.conn.in_transaction
    assert images.get_image(db, image_id)["lease_expires_at"] == expires
    assert annotations.get_boxes(db, image_id) == []
    # Once the lock is free the same calls succeed.
    assert labeling.renew_lease(db, users["labeler"], image_id)


def test_the_label_page_shows_busy_as_a_message(db, users, project, image_id, data_dir,
                                               short_busy_timeout):
    at = signed_in(db, "labeler", "pages/label.py")
    button(at, "Next image to label").click().run()
    assert not at.exception, at.exception
    holder = _hold_write_lock(data_dir)
    try:
        at.run()  # every rerun renews the lease first
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [
        "the database was busy with other changes for 0.3 s; nothing was changed, try again"]


def test_the_cli_reports_busy_in_one_line(db, users, project, image_id, data_dir, capsys,
                                          short_busy_timeout):
    from backend.__main__ import main

    holder = _hold_write_lock(data_dir)
    try:
        code = main(["assign", "pets", "--user", "labeler", "--images", str(image_id)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 7  # backend.errors.EXIT_BUSY
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: the database was busy with other changes for 0.3 s; nothing was changed, try again")
