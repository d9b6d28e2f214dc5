"""The TFRecord browser's backend: which record sets a user may open, uploads, and zips of images.

Reading and validating records is `backend.formats` (`tfrecord`, `tfrecord_checks`, `tfrecord_preview`); this module adds the rules the
browser page needs. Every pattern, every file it matches and every label map goes through
`paths.confine`: non-admins open only files inside the data folder (uploaded sets, dataset
versions) or a folder the server's owner allowed, and URLs need the `read_urls` right
(reviewers, admins). Uploading record files needs `ingest`; an upload folder and an extracted
zip belong to the user who made them (`paths.mark_owner`): `paths.confine` opens them for that
user only, `zip_download` hands a zip to its owner only. Both are removed after
`UPLOAD_TTL_SECONDS` (at the next upload and at start-up).
"""
from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Callable

from backend import atomic, paths, settings
from backend.auth import require
from backend.errors import Invalid
from backend.formats import label_map as label_map_format, remote, tf_example, tfrecord, tfrecord_checks, tfrecord_framing, tfrecord_preview

UPLOAD_TTL_SECONDS = 24 * 3600


def max_upload_bytes() -> int:
    """Largest total of one TFRecord upload (`BOXWISE_MAX_RECORD_UPLOAD_BYTES`, default 1 GiB)."""
    return int(os.environ.get("BOXWISE_MAX_RECORD_UPLOAD_BYTES", 1024**3))


def confined_set(actor: dict, pattern: str, label_map_path: str | None = None) -> tuple[str, str | None]:
    """`(pattern, label map path or None)` as `actor` may open them, each part, each matched
    file (symlinks followed) and the label map confined; PermissionError otherwise."""
    pattern = paths.confine_pattern(pattern, actor, "records")
    for file in tfrecord_framing.resolve(pattern):
        if not remote.is_url(file):
            paths.confine(file, actor, "records")
    found = label_map_path or tfrecord.find_label_map(pattern)
    return pattern, str(paths.confine(found, actor, "label_map")) if found else None


def upload_folders() -> list[Path]:
    """The folders uploads and extracted zips are kept in (under `data/uploads/`)."""
    return [settings.subdir("uploads") / "tfrecords", settings.subdir("uploads") / "extracted"]


def remove_old_uploads(max_age: float = UPLOAD_TTL_SECONDS) -> list[Path]:
    """Remove uploaded record sets and extracted zips older than `max_age` seconds; returns them."""
    removed = []
    cutoff = time.time() - max_age
    for folder in upload_folders():
        for entry in folder.iterdir() if folder.is_dir() else []:
            try:
                if entry.lstat().st_mtime >= cutoff:
                    continue
            except FileNotFoundError:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def save_uploads(actor: dict, uploads: list[tuple[str, bytes]]) -> str:
    """Store uploaded record files (and an optional label_map.pbtxt) in a new folder under
    `data/uploads/tfrecords/`; returns the folder's path to open as a record set (by `actor`
    only). Needs `ingest`; at most `max_upload_bytes()` in all; nothing is kept when any file
    is refused."""
    require(actor, "ingest")
    if not uploads:
        raise Invalid("choose at least one TFRecord file")
    limit = max_upload_bytes()
    if sum(len(data) for _, data in uploads) > limit:
        raise Invalid(f"record uploads are limited to {limit:,} bytes in all")
    remove_old_uploads()
    folder = settings.subdir("uploads") / "tfrecords" / secrets.token_hex(8)
    try:
        paths.mark_owner(folder, actor)
        for name, data in uploads:
            clean = Path(name.replace("\\", "/")).name
            if not clean or clean.startswith("."):
                raise Invalid(f"bad file name {name!r}")
            if clean != "label_map.pbtxt" and ".record" not in clean and ".tfrecord" not in clean:
                clean += ".tfrecord"  # the folder is opened by these name parts
            atomic.write_bytes(folder / clean, data)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return str(folder)


def label_map_for(pattern: str, path: str | None = None) -> tuple[label_map_format.LabelMap | None, str | None]:
    """The label map to check a set against: `path` when given, else one beside the records.
    The browser's functions confine both first (`confined_set`); `tfrecord inspect|extract` on
    the command line (a local admin) call it as they are."""
    found = path or tfrecord.find_label_map(pattern)
    if not found:
        return None, None
    return label_map_format.read(found), str(found)


_INSPECTIONS: dict[tuple, tfrecord_checks.Inspection] = {}


def inspect(actor: dict, pattern: str, label_map_path: str | None = None,
            on_progress: Callable[[int, int | None, str], None] | None = None) -> tfrecord_checks.Inspection:
    """Validate a set, remembering the result until a file of the set (or the label map)
    changes, so paging through the browser does not re-read every record."""
    pattern, label_map_path = confined_set(actor, pattern, label_map_path)
    parsed, source = label_map_for(pattern, label_map_path)
    files = tfrecord_framing.resolve(pattern)
    stats = [(str(f), f.stat()) for f in files]  # one stat per file: for URLs each is a request
    key = (pattern, source, tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats),
           remote.as_path(source).stat().st_mtime_ns if source else None)
    if key not in _INSPECTIONS:
        if len(_INSPECTIONS) > 16:
            _INSPECTIONS.clear()
        _INSPECTIONS[key] = tfrecord_checks.inspect(pattern, parsed, source, on_progress=on_progress)
    return _INSPECTIONS[key]


def page(actor: dict, pattern: str, start: int, count: int, label_map_path: str | None = None) -> list[dict]:
    """Examples `start .. start+count-1` for display: `{"where", "image" (PIL, boxes drawn) or
    None, "error", "features" (rows), "boxes" (rows)}`."""
    pattern, label_map_path = confined_set(actor, pattern, label_map_path)
    parsed, _ = label_map_for(pattern, label_map_path)
    out = []
    for item in tfrecord.read_page(pattern, start, count):
        if not isinstance(item, tf_example.DecodedExample):
            file, index, error = item
            out.append({"where": f"{Path(file).name} #{index}", "image": None, "error": str(error),
                        "features": [], "boxes": []})
            continue
        entry = {"where": f"{Path(item.file).name} #{item.index}", "image": None, "error": None,
                 "features": item.feature_rows(),
                 "boxes": [{"class": item.caption(b, parsed), **b} for b in item.boxes()]}
        try:
            entry["image"] = tfrecord_preview.preview(item, parsed)
        except Invalid as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return out


def extract_zip(actor: dict, pattern: str, draw: bool, label_map_path: str | None = None,
                on_progress: Callable[[int, int | None, str], None] | None = None) -> tuple[Path, tfrecord_preview.Extraction]:
    """Extract every image of a set into a new zip under `data/uploads/extracted/<token>/` (a
    copy of the images: needs `export`; only `actor` may download it)."""
    require(actor, "export")
    pattern, label_map_path = confined_set(actor, pattern, label_map_path)
    remove_old_uploads()
    parsed, _ = label_map_for(pattern, label_map_path)
    token = secrets.token_hex(6)
    folder = settings.subdir("uploads") / "extracted" / token
    paths.mark_owner(folder, actor)
    try:
        result = tfrecord_preview.extract(pattern, folder / f"images-{token}.zip", draw=draw,
                                          label_map=parsed, on_progress=on_progress)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder / f"images-{token}.zip", result


def zip_download(actor: dict, path: Path) -> tuple[str, bytes]:
    """(file name, bytes) of a zip `extract_zip` made for `actor`, for a download button
    (nothing else, and nobody else's)."""
    require(actor, "export")
    extracted = (settings.subdir("uploads") / "extracted").resolve()
    path = Path(path).resolve()
    entry = path.parent
    if entry.parent != extracted or path.suffix != ".zip" or not path.is_file():
        raise Invalid("only zips extracted by the TFRecord browser can be downloaded here")
    if actor.get("id") is None or paths.upload_owner(entry) != actor["id"]:
        raise PermissionError(f"{actor.get('username')} ({actor.get('role')}) may not download "
                              "this zip: it belongs to the user who extracted it")
    return path.name, path.read_bytes()
