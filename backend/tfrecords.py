"""The TFRecord browser's backend: which record sets a user may open, uploads, and zips of images.

Reading and validating records is `backend.formats.tfrecord`; this module adds the rules the
browser page needs. Anyone may open uploaded sets and the dataset versions under the data
folder; typing a path elsewhere on the server needs the `export` right (reviewers, admins),
so a viewer cannot read arbitrary server files through the browser.
"""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Callable

from backend import atomic, settings
from backend.auth import can
from backend.errors import Invalid
from backend.formats import label_map as label_map_format, remote, tfrecord

MAX_UPLOAD_BYTES = 4 * 1024**3


def check_allowed(actor: dict, pattern: str) -> None:
    """Raise PermissionError unless `actor` may open `pattern`."""
    if can(actor, "export"):
        return
    data = settings.data_dir().resolve()
    for part in str(pattern).split(","):
        if part.strip() and (remote.is_url(part.strip()) or
                             not Path(part.strip()).expanduser().resolve().is_relative_to(data)):
            raise PermissionError(f"{actor.get('username')} ({actor.get('role')}) may only open "
                                  "uploaded record files and dataset versions")


def save_uploads(actor: dict, uploads: list[tuple[str, bytes]]) -> str:
    """Store uploaded record files (and an optional label_map.pbtxt) in a new folder under
    `data/uploads/tfrecords/`; returns the folder's path to open as a record set."""
    if not can(actor, "view"):
        raise PermissionError("sign in to upload records")
    if not uploads:
        raise Invalid("choose at least one TFRecord file")
    if sum(len(data) for _, data in uploads) > MAX_UPLOAD_BYTES:
        raise Invalid(f"uploads are limited to {MAX_UPLOAD_BYTES // 1024**3} GB")
    folder = settings.subdir("uploads") / "tfrecords" / secrets.token_hex(8)
    for name, data in uploads:
        clean = Path(name.replace("\\", "/")).name
        if not clean or clean.startswith("."):
            raise Invalid(f"bad file name {name!r}")
        if clean != "label_map.pbtxt" and ".record" not in clean and ".tfrecord" not in clean:
            clean += ".tfrecord"  # the folder is opened by these name parts
        atomic.write_bytes(folder / clean, data)
    return str(folder)


def label_map_for(pattern: str, path: str | None = None) -> tuple[label_map_format.LabelMap | None, str | None]:
    """The label map to check a set against: `path` when given, else one beside the records."""
    found = path or tfrecord.find_label_map(pattern)
    if not found:
        return None, None
    return label_map_format.read(found), str(found)


_INSPECTIONS: dict[tuple, tfrecord.Inspection] = {}


def inspect(actor: dict, pattern: str, label_map_path: str | None = None,
            on_progress: Callable[[int, int | None, str], None] | None = None) -> tfrecord.Inspection:
    """Validate a set, remembering the result until a file of the set (or the label map)
    changes, so paging through the browser does not re-read every record."""
    check_allowed(actor, pattern)
    parsed, source = label_map_for(pattern, label_map_path)
    files = tfrecord.resolve(pattern)
    stats = [(str(f), f.stat()) for f in files]  # one stat per file: for URLs each is a request
    key = (pattern, source, tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats),
           remote.as_path(source).stat().st_mtime_ns if source else None)
    if key not in _INSPECTIONS:
        if len(_INSPECTIONS) > 16:
            _INSPECTIONS.clear()
        _INSPECTIONS[key] = tfrecord.inspect(pattern, parsed, source, on_progress=on_progress)
    return _INSPECTIONS[key]


def page(actor: dict, pattern: str, start: int, count: int, label_map_path: str | None = None) -> list[dict]:
    """Examples `start .. start+count-1` for display: `{"where", "image" (PIL, boxes drawn) or
    None, "error", "features" (rows), "boxes" (rows)}`."""
    check_allowed(actor, pattern)
    parsed, _ = label_map_for(pattern, label_map_path)
    out = []
    for item in tfrecord.read_page(pattern, start, count):
        if not isinstance(item, tfrecord.DecodedExample):
            file, index, error = item
            out.append({"where": f"{Path(file).name} #{index}", "image": None, "error": str(error),
                        "features": [], "boxes": []})
            continue
        entry = {"where": f"{Path(item.file).name} #{item.index}", "image": None, "error": None,
                 "features": item.feature_rows(),
                 "boxes": [{"class": item.caption(b, parsed), **b} for b in item.boxes()]}
        try:
            entry["image"] = tfrecord.preview(item, parsed)
        except Invalid as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return out


def extract_zip(actor: dict, pattern: str, draw: bool, label_map_path: str | None = None,
                on_progress: Callable[[int, int | None, str], None] | None = None) -> tuple[Path, tfrecord.Extraction]:
    """Extract every image of a set into a new zip under `data/uploads/extracted/`."""
    check_allowed(actor, pattern)
    parsed, _ = label_map_for(pattern, label_map_path)
    target = settings.subdir("uploads") / "extracted" / f"images-{secrets.token_hex(6)}.zip"
    result = tfrecord.extract(pattern, target, draw=draw, label_map=parsed, on_progress=on_progress)
    return target, result


def zip_download(path: Path) -> tuple[str, bytes]:
    """(file name, bytes) of an extracted zip, for a download button."""
    return path.name, Path(path).read_bytes()
