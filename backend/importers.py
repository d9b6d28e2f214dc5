"""Import images and boxes from VOC, COCO, CSV, YOLO or TFRecord into a project, all or nothing.

An import reads the files (`backend/formats/`), checks everything first — every image found
and decodable, every box inside its image with a positive size, every class known (or
created on request) — and only then writes, in one transaction. When anything is wrong the
project is left unchanged and the report lists every problem with the file (and line or
record) it came from.

Images go through `images.prepare_image`, the same validation, EXIF orientation and
normalisation as uploads, and are stored content-addressed. An image already in the project
(same content) gets the imported boxes when it has none yet; otherwise it is skipped.
Imported images get status `labeled`; images listed with no boxes become "no objects" negatives.
"""
from __future__ import annotations

import glob
import io
import secrets
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

import sqlite_utils

from backend import annotations, atomic, paths, projects, settings
from backend.auth import can, require
from backend.db import now, one, transaction
from backend.errors import Invalid, NotFound
from backend.formats import boxes as box_convert, label_map as label_map_format, remote, tfrecord_framing
from backend.formats.records import Allowed, AnnotatedImage, ReadResult
from backend.images import (MAX_ZIP_RATIO, MAX_ZIP_TOTAL_BYTES, ImageRejected, prepare_image,
                            stored_path)

FORMATS = ("voc", "coco", "csv", "yolo", "tfrecord")
IMPORTED_STATUS = "labeled"


@dataclass
class ImportItem:
    item: str                  # file name and where it was described
    outcome: str               # "imported" | "skipped" | "error"
    message: str = ""
    image_id: int | None = None
    boxes: int = 0


@dataclass
class ImportReport:
    items: list[ImportItem] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)      # problems not tied to one image
    notes: list[str] = field(default_factory=list)
    classes_created: list[str] = field(default_factory=list)
    committed: bool = False

    @property
    def errors(self) -> list[str]:
        return self.problems + [f"{i.item}: {i.message}" for i in self.items if i.outcome == "error"]

    @property
    def ok(self) -> bool:
        return self.committed and not self.errors

    def count(self, outcome: str) -> int:
        return sum(1 for i in self.items if i.outcome == outcome)

    @property
    def boxes(self) -> int:
        return sum(i.boxes for i in self.items if i.outcome == "imported")

    def summary(self) -> str:
        if not self.committed:
            return (f"import failed, nothing changed: {len(self.errors)} problem(s)"
                    + "".join(f"\n  {e}" for e in self.problems))
        created = f", created classes {', '.join(self.classes_created)}" if self.classes_created else ""
        return (f"imported {self.count('imported')} images with {self.boxes} boxes, "
                f"skipped {self.count('skipped')}{created}")

    def rows(self) -> list[dict]:
        return [{"item": i.item, "outcome": i.outcome, "message": i.message, "image_id": i.image_id,
                 "boxes": i.boxes} for i in self.items]


def read(path: str | Path, fmt: str, images_dir: str | Path | None = None,
         allowed: Allowed | None = None) -> ReadResult:
    """Read annotations of format `fmt` without touching the database. `allowed` says which
    image paths the files may lead to (`paths.allows` for the importing user)."""
    if fmt not in FORMATS:
        raise Invalid(f"import format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    from backend.formats import coco, csv_format, tfrecord, voc, yolo
    reader = {"voc": voc, "coco": coco, "csv": csv_format, "yolo": yolo, "tfrecord": tfrecord}[fmt]
    if fmt == "tfrecord":  # a record set may be a URL (gs://...) or a glob: no Path() around it
        return reader.read(str(path), Path(images_dir) if images_dir else None)
    return reader.read(Path(path), Path(images_dir) if images_dir else None, allowed)


@dataclass
class _Planned:
    source: AnnotatedImage
    label: str
    size: int = 0                       # bytes of the stored file (new images)
    format: str = ""
    width: int = 0
    height: int = 0
    sha256: str = ""
    existing_id: int | None = None      # an image already in the project
    boxes: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


CLI_CREATE_HINT = "import with --create-classes"
# The files an import of a folder may read as annotations (checked by `paths.confine_matches`).
ANNOTATION_SUFFIXES = (".xml", ".json", ".csv", ".txt", ".yaml", ".yml")


def import_annotations(db: sqlite_utils.Database, actor: dict, project_id: int, path: str | Path,
                       fmt: str, images_dir: str | Path | None = None, create_classes: bool = False,
                       on_progress: Callable[[int, int | None, str], None] | None = None,
                       create_hint: str = CLI_CREATE_HINT) -> ImportReport:
    """Import `path` (format `fmt`) into the project in one transaction; see the module doc.

    `path`, `images_dir` and every image the annotation files name go through `paths.confine`
    for `actor`: an image outside what they may read is refused by name, never opened.
    Class names match the project's names (or display names) ignoring case (`Tree` is the
    class `tree`); `create_hint` is how the report tells the user to create missing classes
    where they are (the command line's flag, or the page's checkbox)."""
    require(actor, "ingest")
    project = projects.get_project(db, project_id)
    path = paths.confine_pattern(str(path), actor, "import") if fmt == "tfrecord" else \
        paths.confine(path, actor, "import")
    # Everything the source reaches: each record file of a set, the annotation files below a
    # folder (symlinks followed).
    if fmt == "tfrecord":
        try:
            for file in tfrecord_framing.resolve(str(path)):
                if not remote.is_url(file):
                    paths.confine(file, actor, "import")
        except NotFound:
            pass  # the reader says what matched nothing
    else:
        paths.confine_matches(glob.escape(str(path)), actor, "import", ANNOTATION_SUFFIXES)
    images_dir = paths.confine(images_dir, actor, "import") if images_dir else None
    result = read(path, fmt, images_dir, allowed=paths.rule(actor, "image"))
    # New images are stored (content-addressed) while planning, so only one image is in
    # memory at a time; files this import created are removed again if it does not commit.
    created_files: list[tuple[Path, str]] = []
    try:
        report = _plan_and_commit(db, actor, project, result, create_classes, created_files, on_progress,
                                  create_hint)
    except BaseException:
        _remove_unreferenced(db, created_files)
        raise
    if not report.committed:
        _remove_unreferenced(db, created_files)
    return report


def _remove_unreferenced(db, created_files: list[tuple[Path, str]]) -> None:
    for path, sha in created_files:
        if not one(db, "select id from images where sha256 = ?", [sha]):
            path.unlink(missing_ok=True)


def _plan_and_commit(db, actor: dict, project: dict, result: ReadResult, create_classes: bool,
                     created_files: list[tuple[Path, str]], on_progress,
                     create_hint: str = CLI_CREATE_HINT) -> ImportReport:
    project_id = project["id"]
    report = ImportReport(problems=list(result.problems), notes=list(result.notes))
    labels = {row["name"]: row for row in projects.list_labels(db, project_id)}
    by_display = {row["display_name"]: row for row in labels.values() if row.get("display_name")}
    # Exact names first; then ignoring case (a class whose folded name two classes share is
    # only matched exactly).
    folded: dict[str, list[dict]] = {}
    for row in labels.values():
        for name in {row["name"], row.get("display_name") or row["name"]}:
            folded.setdefault(name.casefold(), []).append(row)
    by_folded = {key: rows[0] for key, rows in folded.items() if len({r["id"] for r in rows}) == 1}
    missing_by_folded: dict[str, str] = {}
    spellings: dict[str, set[str]] = {}
    missing_classes: list[str] = []
    planned: list[_Planned] = []
    seen: dict[str, str] = {}
    total = len(result.images)
    for done, source in enumerate(result.images, start=1):
        plan = _plan(db, project_id, source, seen, created_files)
        source.image_bytes = None  # TFRecord entries carry their bytes; they are stored now
        if plan is not None:
            for box in plan.boxes:
                name = box.pop("name")
                row = labels.get(name) or by_display.get(name) or by_folded.get(name.casefold())
                if row is None:
                    # `Tree` and `tree` missing alike are one new class, spelt as first seen.
                    first = missing_by_folded.setdefault(name.casefold(), name)
                    if first not in missing_classes:
                        missing_classes.append(first)
                    box["class_name"] = first
                else:
                    if name != row["name"]:
                        spellings.setdefault(row["name"], set()).add(name)
                    box["label_id"] = row["id"]
            planned.append(plan)
        if on_progress:
            on_progress(done, total, source.name)
        if plan is None or source.problems:
            report.items.append(ImportItem(_label(source), "error", "; ".join(source.problems)))
    for name, seen in sorted(spellings.items()):
        report.notes.append(f"{', '.join(sorted(seen))} imported as the class {name}")
    if missing_classes and not create_classes:
        report.problems.append(
            f"classes not in project {project['name']!r}: {', '.join(missing_classes)} "
            f"(create them first, or {create_hint})")
    if missing_classes and create_classes and not can(actor, "manage_projects"):
        report.problems.append(f"creating classes ({', '.join(missing_classes)}) needs an admin")
    if not result.images and not report.problems:
        report.problems.append("no images described")
    if report.errors:
        return report
    return _commit(db, actor, project_id, planned, missing_classes, report)


def _label(source: AnnotatedImage) -> str:
    return f"{source.name} ({source.where})" if source.where and source.where != source.name else source.name


def _plan(db, project_id: int, source: AnnotatedImage, seen: dict[str, str],
          created_files: list[tuple[Path, str]]) -> _Planned | None:
    """Load and check one image and its boxes; None (with `source.problems`) when it cannot go in."""
    if source.problems:
        return None
    plan = _Planned(source, _label(source))
    data = source.image_bytes
    if data is None and source.load is not None:
        data = source.load()
    if data is None and source.image_path is not None:
        try:
            data = Path(source.image_path).read_bytes()
        except OSError as exc:
            source.problems.append(f"cannot read image {source.image_path}: {exc}")
            return None
    if data is None:
        existing = list(db.query("select * from images where project_id = ? and filename = ?",
                                 [project_id, PurePosixPath(source.name.replace("\\", "/")).name]))
        if len(existing) != 1:
            source.problems.append(source.missing or f"image {source.name!r} not found")
            return None
        image = existing[0]
        plan.existing_id, plan.width, plan.height = image["id"], image["width"], image["height"]
        plan.sha256 = image["sha256"]
    else:
        try:
            prepared = prepare_image(data)
        except ImageRejected as exc:
            source.problems.append(f"image {source.name!r}: {exc}")
            return None
        plan.format, plan.size = prepared.format, len(prepared.data)
        plan.width, plan.height, plan.sha256 = prepared.width, prepared.height, prepared.sha256
        if prepared.changed:
            plan.notes.append("; ".join(prepared.changed))
        row = one(db, "select id from images where project_id = ? and sha256 = ?", [project_id, plan.sha256])
        if row:
            plan.existing_id = row["id"]
        else:
            target = stored_path(plan.sha256, plan.format)
            if not target.exists():
                atomic.write_bytes(target, prepared.data)
                created_files.append((target, plan.sha256))
    if plan.sha256 in seen:
        plan.notes.append(f"same image as {seen[plan.sha256]}")
    seen.setdefault(plan.sha256, plan.label)
    if not source.normalized and source.width and source.height and \
            (source.width, source.height) != (plan.width, plan.height):
        source.problems.append(f"the annotation says the image is {source.width}×{source.height} px "
                               f"but it is {plan.width}×{plan.height} px")
        return None
    for number, box in enumerate(source.boxes, start=1):
        coords = box.coords
        if source.normalized:
            if box.xmax < box.xmin or box.ymax < box.ymin:
                source.problems.append(f"box {number} ({box.name}): negative size "
                                       f"(normalised {', '.join(f'{c:g}' for c in coords)})")
                continue
            if min(coords) < -0.01 or max(coords) > 1.01:
                source.problems.append(f"box {number} ({box.name}): normalised coordinates "
                                       f"{', '.join(f'{c:g}' for c in coords)} outside [0, 1]")
                continue
            # float32 in, so 1/1000 px is all the precision there is (18.0, not 17.9999995).
            coords = tuple(round(c, 3) for c in box_convert.from_normalized(coords, plan.width, plan.height))
        why = box_convert.check_pixel_box(coords, plan.width, plan.height)
        if why:
            source.problems.append(f"box {number} ({box.name}): {why}")
            continue
        xmin, ymin, xmax, ymax = box_convert.clip(coords, plan.width, plan.height)
        if xmax - xmin < annotations.MIN_BOX_SIDE or ymax - ymin < annotations.MIN_BOX_SIDE:
            plan.notes.append(f"box {number} ({box.name}) skipped: {xmax - xmin:.1f}×{ymax - ymin:.1f} px "
                              f"is under {annotations.MIN_BOX_SIDE:g} px a side")
            continue
        plan.boxes.append({"name": box.name, "xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax,
                           "difficult": box.difficult, "truncated": box.truncated, "source": "human"})
    return None if source.problems else plan


def _commit(db, actor, project_id: int, planned: list[_Planned], missing_classes: list[str],
            report: ImportReport) -> ImportReport:
    stamp = now()
    try:
        with transaction(db):
            class_ids = {}
            for name in missing_classes:
                class_ids[name] = projects.add_label(db, actor, project_id, name)["id"]
                report.classes_created.append(name)
            done_images: set[int] = set()
            stored: dict[str, tuple[int, str]] = {}
            for plan in planned:
                for box in plan.boxes:
                    if "class_name" in box:
                        box["label_id"] = class_ids[box.pop("class_name")]
                if plan.existing_id is not None:
                    image = one(db, "select * from images where id = ?", [plan.existing_id])
                    has_boxes = one(db, "select count(*) as n from annotations where image_id = ?",
                                    [image["id"]])["n"]
                    if image["id"] in done_images or has_boxes or image["no_objects"] or \
                            image["status"] not in ("new", "in_progress"):
                        report.items.append(ImportItem(
                            plan.label, "skipped", f"already in the project as image #{image['id']} "
                            f"({image['filename']}, {has_boxes} boxes, {image['status']}); not changed",
                            image["id"]))
                        continue
                    image_id = image["id"]
                elif plan.sha256 in stored:
                    report.items.append(ImportItem(
                        plan.label, "skipped", f"same image as {stored[plan.sha256][1]}; imported once",
                        stored[plan.sha256][0]))
                    continue
                else:
                    image_id = _insert_image(db, actor, project_id, plan, stamp)
                    stored[plan.sha256] = (image_id, plan.label)
                image = one(db, "select * from images where id = ?", [image_id])
                annotations.save_boxes(db, actor, image_id, plan.boxes, image["version"],
                                       status=IMPORTED_STATUS)
                if not plan.boxes:
                    db.execute("update images set no_objects = 1 where id = ?", [image_id])
                done_images.add(image_id)
                message = "; ".join(["imported"] + plan.notes)
                report.items.append(ImportItem(plan.label, "imported", message, image_id, len(plan.boxes)))
    except BaseException:
        report.items = [i for i in report.items if i.outcome == "error"]
        report.classes_created = []
        raise
    report.committed = True
    return report


def _insert_image(db, actor, project_id: int, plan: _Planned, stamp: float) -> int:
    """The row of an image stored while planning (the fields `images.ingest` writes)."""
    target = stored_path(plan.sha256, plan.format)
    return db["images"].insert({
        "project_id": project_id, "sha256": plan.sha256,
        "path": str(target.relative_to(settings.data_dir())),
        "filename": PurePosixPath(plan.source.name.replace("\\", "/")).name,
        "width": plan.width, "height": plan.height, "format": plan.format,
        "size_bytes": plan.size, "status": "new", "version": 0,
        "created_at": stamp, "created_by": actor.get("id"), "updated_at": stamp}).last_pk


# ---------------------------------------------------------------- label maps as classes


def import_label_map(db: sqlite_utils.Database, actor: dict, project_id: int,
                     path: str | Path) -> dict:
    """Create the project's classes from a `label_map.pbtxt`, keeping the file's ids where the
    project's id counter allows (ids only ever move forward, so none is reused).

    Class names are the items' display names when they have one (the mscoco map's names are
    `/m/…` codes), else their names. Returns `{"created": [...], "existing": [...], "notes": [...]}`;
    id 0 (background) items are skipped with a note.
    """
    require(actor, "manage_projects")
    parsed = label_map_format.read(paths.confine(path, actor, "label_map"))
    created, existing = [], []
    notes = list(parsed.notes)
    with transaction(db):
        for item in parsed.items:
            name = parsed.class_name(item)
            if projects.label_by_name(db, project_id, name):
                existing.append(name)
                continue
            project = projects.get_project(db, project_id)
            if item.id >= project["next_label_map_id"]:
                db["projects"].update(project_id, {"next_label_map_id": item.id})
            label = projects.add_label(db, actor, project_id, name,
                                       display_name=item.display_name or name)
            if label["label_map_id"] != item.id:
                notes.append(f"{name!r} got id {label['label_map_id']} (id {item.id} was taken earlier)")
            created.append(name)
    return {"created": created, "existing": existing, "notes": notes}


# ---------------------------------------------------------------- uploads (the Upload page)


def import_upload(db: sqlite_utils.Database, actor: dict, project_id: int,
                  uploads: list[tuple[str, bytes]], fmt: str, create_classes: bool = False,
                  create_hint: str = CLI_CREATE_HINT,
                  on_progress: Callable[[int, int | None, str], None] | None = None) -> ImportReport:
    """Import uploaded files: annotation files, images, and .zip archives of a dataset folder
    (unpacked with the same path and size checks as image uploads). The upload is unpacked
    into a temporary folder under `data/uploads/`, imported, and removed."""
    require(actor, "ingest")
    if not uploads:
        raise Invalid("choose the annotation files (or a .zip of the dataset folder) to import")
    folder = settings.subdir("uploads") / f".import-{secrets.token_hex(8)}"
    try:
        paths.mark_owner(folder, actor)  # the import below opens it as `actor` (paths.confine)
        for name, data in uploads:
            if name.lower().endswith(".zip"):
                _unpack_zip(data, name, folder)
            else:
                clean = PurePosixPath(name.replace("\\", "/")).name
                if not clean or clean.startswith("."):
                    raise Invalid(f"bad file name {name!r}")
                if fmt == "tfrecord" and ".record" not in clean and ".tfrecord" not in clean:
                    clean += ".tfrecord"
                atomic.write_bytes(folder / clean, data)
        return import_annotations(db, actor, project_id, folder, fmt, create_classes=create_classes,
                                  create_hint=create_hint,
                                  on_progress=on_progress)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _unpack_zip(data: bytes, name: str, folder: Path) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise Invalid(f"{name}: not a valid zip file: {exc}") from None
    with archive:
        entries = [e for e in archive.infolist() if not e.is_dir()]
        if sum(e.file_size for e in entries) > MAX_ZIP_TOTAL_BYTES:
            raise Invalid(f"{name} would expand beyond {MAX_ZIP_TOTAL_BYTES // 1024**2} MB (zip bomb?)")
        for entry in entries:
            path = PurePosixPath(entry.filename.replace("\\", "/"))
            if path.is_absolute() or ".." in path.parts or (len(entry.filename) > 1 and entry.filename[1] == ":"):
                raise Invalid(f"{name}: entry {entry.filename!r} has an unsafe path")
            if stat.S_ISLNK(entry.external_attr >> 16):
                raise Invalid(f"{name}: entry {entry.filename!r} is a symbolic link")
            if path.parts[0] == "__MACOSX" or path.name.startswith("._"):
                continue
            if entry.compress_size and entry.file_size / entry.compress_size > MAX_ZIP_RATIO:
                raise Invalid(f"{name}: entry {entry.filename!r} compresses {entry.file_size / entry.compress_size:.0f}:1 "
                              "(zip bomb?)")
            with archive.open(entry) as handle:
                content = handle.read(entry.file_size + 1)
            if len(content) > entry.file_size:
                raise Invalid(f"{name}: entry {entry.filename!r} is larger than its header says")
            atomic.write_bytes(folder.joinpath(*path.parts), content)
