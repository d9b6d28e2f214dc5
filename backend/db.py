"""The SQLite database: connect (WAL, foreign keys, busy timeout), schema through migrations.

Every schema change is a named function registered on `MIGRATIONS` (sqlite-utils'
`Migrations`), appended at the end and never edited once released: an older database
upgrades in place at start-up and keeps its rows.
"""
from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

import sqlite_utils
from sqlite_utils.migrations import Migrations

from backend import settings
from backend.errors import Busy

BUSY_TIMEOUT_MS = 10_000
MIGRATIONS = Migrations("boxwise")

_local = threading.local()


def now() -> float:
    """Timestamps are unix seconds (float, UTC) everywhere in the database."""
    return time.time()


def connect(path: str | Path | None = None, *, migrate: bool = True) -> sqlite_utils.Database:
    """Open a new connection to `path` (default `data/boxwise.db`) and bring its schema up to date.

    The connection runs in autocommit mode; writes that belong together go through
    `transaction(db)`.
    """
    path = Path(path) if path else settings.db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    db = sqlite_utils.Database(conn)
    if migrate:
        MIGRATIONS.apply(db)
    return db


def thread_db(path: str | Path | None = None) -> sqlite_utils.Database:
    """One connection per thread and database path (Streamlit runs each session in threads)."""
    key = str(Path(path).resolve() if path else settings.db_path())
    cache = getattr(_local, "connections", None)
    if cache is None:
        cache = _local.connections = {}
    if key not in cache:
        cache[key] = connect(key)
    return cache[key]


@contextlib.contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction that takes the write lock up front (`BEGIN IMMEDIATE`).

    Read-check-write sequences (version checks, leases) inside it cannot interleave with
    another writer. Nested use becomes a savepoint.
    """
    conn = db.conn
    if conn.in_transaction:
        with db.atomic():
            yield db
        return
    _begin_immediate(conn)
    try:
        yield db
    except BaseException as exc:
        conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
            raise busy_error() from exc
        raise
    else:
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            conn.execute("ROLLBACK")
            raise busy_error() from exc


def is_busy(exc: BaseException) -> bool:
    """Whether an sqlite3 error is SQLite's "database is locked" / "busy"."""
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc))


def busy_error() -> Busy:
    return Busy(f"the database was busy with other changes for {BUSY_TIMEOUT_MS / 1000:g} s; "
                "nothing was changed, try again")


def _begin_immediate(conn: sqlite3.Connection) -> None:
    """Take the write lock, waiting up to the busy timeout.

    SQLite's own busy handler sleeps ever longer (up to 100 ms) between tries, so under many
    short writers one waiter can miss every free moment until its timeout. Here the waits
    stay short (at most 5 ms, randomised), so a waiter gets its turn within a few other
    writers' transactions.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        pause = 0.0005
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise busy_error() from exc
            time.sleep(random.uniform(0, pause))
            pause = min(pause * 2, 0.005)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def one(db: sqlite_utils.Database, sql: str, params=()) -> dict | None:
    """The first row of a query as a dict, or None."""
    for row in db.query(sql, params):
        return row
    return None


# ---------------------------------------------------------------- migrations (append only)


@MIGRATIONS()
def m001_core_tables(db: sqlite_utils.Database) -> None:
    db["users"].create({
        "id": int, "username": str, "password_hash": str, "role": str,
        "disabled": int, "created_at": float,
    }, pk="id", not_null={"username", "password_hash", "role"}, defaults={"disabled": 0})
    db["users"].create_index(["username"], unique=True)

    db["projects"].create({
        "id": int, "name": str, "description": str, "archived": int,
        "next_label_map_id": int, "created_at": float, "created_by": int,
    }, pk="id", not_null={"name"}, defaults={"archived": 0, "next_label_map_id": 1, "description": ""},
        foreign_keys=[("created_by", "users", "id")])
    db["projects"].create_index(["name"], unique=True)

    db["labels"].create({
        "id": int, "project_id": int, "label_map_id": int, "name": str, "display_name": str,
        "color": str, "position": int, "created_at": float,
    }, pk="id", not_null={"project_id", "label_map_id", "name"},
        foreign_keys=[("project_id", "projects", "id")])
    db["labels"].create_index(["project_id", "label_map_id"], unique=True)
    db["labels"].create_index(["project_id", "name"], unique=True)

    db["images"].create({
        "id": int, "project_id": int, "sha256": str, "path": str, "filename": str,
        "width": int, "height": int, "format": str, "size_bytes": int,
        "status": str, "split": str, "version": int,
        "lease_user_id": int, "lease_expires_at": float, "assignee_id": int,
        "created_at": float, "created_by": int, "updated_at": float, "updated_by": int,
    }, pk="id", not_null={"project_id", "sha256", "path", "width", "height", "status", "version"},
        defaults={"status": "new", "version": 0},
        foreign_keys=[("project_id", "projects", "id"), ("lease_user_id", "users", "id"),
                      ("assignee_id", "users", "id"), ("created_by", "users", "id"),
                      ("updated_by", "users", "id")])
    db["images"].create_index(["project_id", "sha256"], unique=True)
    db["images"].create_index(["project_id", "status", "id"])
    db["images"].create_index(["project_id", "assignee_id", "status", "id"])

    db["annotations"].create({
        "id": int, "image_id": int, "label_id": int,
        "xmin": float, "ymin": float, "xmax": float, "ymax": float,
        "source": str, "score": float, "difficult": int, "truncated": int,
        "created_at": float, "created_by": int,
    }, pk="id", not_null={"image_id", "label_id", "xmin", "ymin", "xmax", "ymax", "source"},
        defaults={"source": "human", "difficult": 0, "truncated": 0},
        foreign_keys=[("image_id", "images", "id"), ("label_id", "labels", "id"),
                      ("created_by", "users", "id")])
    db["annotations"].create_index(["image_id"])
    db["annotations"].create_index(["label_id"])

    db["annotation_events"].create({
        "id": int, "image_id": int, "user_id": int, "at": float, "kind": str,
        "before": str, "after": str,
    }, pk="id", not_null={"image_id", "at", "kind"},
        foreign_keys=[("image_id", "images", "id"), ("user_id", "users", "id")])
    db["annotation_events"].create_index(["image_id", "at"])
    db["annotation_events"].create_index(["user_id", "at"])

    db["exports"].create({
        "id": int, "project_id": int, "format": str, "path": str, "params": str,
        "counts": str, "created_at": float, "created_by": int,
    }, pk="id", foreign_keys=[("project_id", "projects", "id"), ("created_by", "users", "id")])

    db["configs"].create({
        "id": int, "project_id": int, "name": str, "version": int, "text": str,
        "created_at": float, "created_by": int,
    }, pk="id", foreign_keys=[("project_id", "projects", "id"), ("created_by", "users", "id")])

    db["runs"].create({
        "id": int, "project_id": int, "export_id": int, "config_id": int, "status": str,
        "pid": int, "pid_start_time": float, "command": str, "log_path": str, "model_dir": str,
        "error": str, "created_at": float, "started_at": float, "finished_at": float,
        "created_by": int,
    }, pk="id", foreign_keys=[("project_id", "projects", "id"), ("export_id", "exports", "id"),
                              ("config_id", "configs", "id"), ("created_by", "users", "id")])

    db["models"].create({
        "id": int, "project_id": int, "run_id": int, "name": str, "path": str,
        "label_map": str, "metrics": str, "size_bytes": int, "created_at": float,
        "created_by": int,
    }, pk="id", foreign_keys=[("project_id", "projects", "id"), ("run_id", "runs", "id"),
                              ("created_by", "users", "id")])


@MIGRATIONS()
def m002_sessions_and_login_attempts(db: sqlite_utils.Database) -> None:
    """Server-side sessions (so logout and disabling a user end a login) and failed-login log."""
    db["sessions"].create({
        "id": int, "token_hash": str, "user_id": int, "created_at": float, "expires_at": float,
    }, pk="id", not_null={"token_hash", "user_id", "expires_at"},
        foreign_keys=[("user_id", "users", "id")])
    db["sessions"].create_index(["token_hash"], unique=True)
    db["login_attempts"].create({"id": int, "username": str, "at": float, "ok": int}, pk="id")
    db["login_attempts"].create_index(["username", "at"])


@MIGRATIONS()
def m003_review_fields(db: sqlite_utils.Database) -> None:
    """Status workflow details: negatives, skip reasons, review comments, model uncertainty."""
    images = db["images"]
    images.add_column("no_objects", int, not_null_default=0)
    images.add_column("skip_reason", str)
    images.add_column("review_comment", str)
    images.add_column("labeled_by", int)
    images.add_column("reviewed_by", int)
    images.add_column("uncertainty", float)
    images.create_index(["lease_expires_at"])
    db["projects"].add_column("current_model_id", int)


@MIGRATIONS()
def m030_runs_queue_resume_eval(db: sqlite_utils.Database) -> None:
    """Runs: kind (train|eval), queue order, cancel requests, resume attempts, retrain source,
    external runner (interpreter + script), exit code; one row per config name and version."""
    runs = db["runs"]
    runs.add_column("kind", str, not_null_default="train")
    runs.add_column("parent_run_id", int)
    runs.add_column("fine_tune_checkpoint", str)
    runs.add_column("num_train_steps", int)
    runs.add_column("python", str)
    runs.add_column("script", str)
    runs.add_column("queued_at", float)
    runs.add_column("cancel_requested_at", float)
    runs.add_column("attempts", int, not_null_default=0)
    runs.add_column("returncode", int)
    runs.create_index(["status", "queued_at"])
    runs.create_index(["project_id", "kind"])
    db["configs"].create_index(["project_id", "name", "version"], unique=True)


@MIGRATIONS()
def m010_labeling_indexes(db: sqlite_utils.Database) -> None:
    """Indexes for the labeling queue ("next image", most uncertain first), rejected images
    going back to their labeler, the class filter and per-labeler review counts."""
    db.execute("create index if not exists idx_images_queue_uncertain on images "
               "(project_id, assignee_id, status, uncertainty desc, id)")
    db["images"].create_index(["project_id", "status", "labeled_by", "id"], if_not_exists=True)
    db["images"].create_index(["project_id", "lease_user_id"], if_not_exists=True)
    db["annotations"].create_index(["label_id", "image_id"], if_not_exists=True)
    db["annotations"].create_index(["image_id", "source"], if_not_exists=True)
    db["annotation_events"].create_index(["kind", "at"], if_not_exists=True)


@MIGRATIONS()
def m040_models_registry(db: sqlite_utils.Database) -> None:
    """Model registry: where a model came from (run | directory | upload), the dataset version
    (export) it was trained on, what the user pointed at, warnings (e.g. no label map)."""
    models = db["models"]
    models.add_column("export_id", int)
    models.add_column("source", str)
    models.add_column("origin", str)
    models.add_column("warnings", str)
    models.create_index(["project_id", "created_at"], if_not_exists=True)


@MIGRATIONS()
def m050_runs_runner(db: sqlite_utils.Database) -> None:
    """Runs: the external runner by name (its interpreter and script come from the server
    settings at each launch; `python`/`script` of older rows are never run again)."""
    db["runs"].add_column("runner", str)


@MIGRATIONS()
def m060_starting_points(db: sqlite_utils.Database) -> None:
    """Starting points (TF2 model-zoo detectors, `backend/zoo.py`), and the class map a model
    registered from one predicts through (`{model label-map id: project label-map id}`)."""
    db["starting_points"].create({
        "id": int, "name": str, "sha256": str, "path": str, "filename": str, "architecture": str,
        "height": int, "width": int, "num_classes": int, "classes": str, "size_bytes": int,
        "restore": str, "created_at": float, "created_by": int,
    }, pk="id", foreign_keys=[("created_by", "users", "id")], if_not_exists=True)
    db["starting_points"].create_index(["sha256"], unique=True, if_not_exists=True)
    db["models"].add_column("class_map", str)


@MIGRATIONS()
def m070_login_attempts_address(db: sqlite_utils.Database) -> None:
    """Failed logins count per (user name, client address): a stranger's guesses no longer
    lock the account out for everyone."""
    db["login_attempts"].add_column("address", str, not_null_default="local")
    db["login_attempts"].create_index(["username", "address", "at"], if_not_exists=True)


@MIGRATIONS()
def m080_run_doctor_warnings(db: sqlite_utils.Database) -> None:
    """Runs: the config doctor's warnings at launch (a JSON list of findings, `config_doctor`)."""
    db["runs"].add_column("doctor_warnings", str)
