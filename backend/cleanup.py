"""Leftovers of interrupted work, removed when the dashboard starts (`at_start`).

A process killed in the middle of its work can leave behind what it had staged: an export's
`exports/.tmp-*` folder, a half-written `.*.zip.partial`, an import's unpacked upload
(`uploads/.import-*`), the image files an import or ingest stored before its rows were
committed (files under `images/` no row points to), a model zip extracted under
`models/upload-*` that never became a model row, and atomic writes' `.*.tmp` files. None of
them is reachable from the database, so removing them loses nothing.

Only leftovers untouched for `LEFTOVER_SECONDS` go: work still running in another process (a
command-line import while the dashboard restarts) keeps its files, since it writes them as it
goes.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import sqlite_utils

from backend import settings
log = logging.getLogger(__name__)
LEFTOVER_SECONDS = 6 * 3600


def _newest_change(path: Path) -> float:
    """The latest mtime of `path` and, for a folder, of everything inside it."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for inside in path.rglob("*"):
            try:
                newest = max(newest, inside.lstat().st_mtime)
            except FileNotFoundError:
                continue
    return newest


def leftovers(db: sqlite_utils.Database, older_than: float = LEFTOVER_SECONDS) -> list[Path]:
    """What interrupted work left in the data folder, untouched for `older_than` seconds."""
    data = settings.data_dir()
    found: list[Path] = []
    exports = data / "exports"
    if exports.is_dir():
        found += sorted(exports.glob(".tmp-*")) + sorted(exports.rglob(".*.zip.partial")) + \
            sorted(exports.rglob(".*.partial"))
    uploads = data / "uploads"
    if uploads.is_dir():
        found += sorted(uploads.glob(".import-*"))
    stored = {row["path"] for row in db.query("select distinct path from images")}
    images = data / "images"
    if images.is_dir():
        found += [p for p in sorted(images.glob("*/*"))
                  if p.relative_to(data).as_posix() not in stored]
    models = data / "models"
    if models.is_dir():
        registered = [Path(row["path"]) for row in db.query("select path from models")]
        found += [p for p in sorted(models.glob("upload-*"))
                  if not any(r == p.resolve() or r.is_relative_to(p.resolve()) for r in registered)]
    cutoff = time.time() - older_than
    unique = list(dict.fromkeys(found))
    return [p for p in unique if p.exists() and _newest_change(p) < cutoff]


def remove_leftovers(db: sqlite_utils.Database, older_than: float = LEFTOVER_SECONDS) -> list[Path]:
    """Remove `leftovers(db, older_than)`; returns what was removed."""
    removed = []
    for path in leftovers(db, older_than):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("removed %d leftovers of interrupted work: %s", len(removed),
                 ", ".join(str(p.relative_to(settings.data_dir())) for p in removed))
    return removed


def at_start(db: sqlite_utils.Database) -> list[Path]:
    """Start-up housekeeping: leftovers of interrupted work and expired TFRecord browser uploads."""
    from backend import record_browser
    return remove_leftovers(db) + record_browser.remove_old_uploads()
