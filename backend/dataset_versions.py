"""Dataset versions: choose images, assign sticky splits, write them out through `formats/`.

A dataset version is one finished export: a directory under `data/exports/` and a row in the
`exports` table. It is written into a hidden temporary directory beside its final place and
renamed at the end, so an interrupted export never leaves a directory that looks complete,
and the row is inserted only after the rename.

TFRecord versions hold `{split}.record-{i:05d}-of-{N:05d}` shards (example i in shard i mod N),
`label_map.pbtxt`, `manifest.json` (parameters, counts per split and class, every file with
its sha256) and `pipeline_snippet.config` (input readers with the shard globs and the label map
path filled in, absolute). The other formats hold the images and that format's annotation files.

Pages, commands, config checks and runs all see a version as one `DatasetVersion` (from
`get_version`, `list_versions`, `latest_version`): its folder, label map, shard glob per split,
class count, counts and parameters.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import secrets
import shutil
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import sqlite_utils

from backend import atomic, paths, settings
from backend.auth import require
from backend.db import now, one, transaction
from backend.errors import Invalid, NotFound
from backend.formats import label_map as label_map_format, tfrecord
from backend.formats.records import ExportBox, ExportImage
from backend.projects import get_project, list_labels

FORMATS = ("tfrecord", "voc", "coco", "csv", "yolo")
DEFAULT_STATUSES = ("labeled", "reviewed")
DEFAULT_SPLITS = {"train": 0.8, "val": 0.2}
MAX_SHARDS = 1024
Progress = Callable[[int, int, str], None]


# ---------------------------------------------------------------- parameters


def parse_splits(text: str | dict | None) -> dict[str, float]:
    """`"train=0.8,val=0.2,test=0"` → `{"train": 0.8, "val": 0.2, "test": 0.0}` (normalised to
    sum 1). Raises Invalid for bad names or numbers."""
    if text is None or text == "":
        return dict(DEFAULT_SPLITS)
    if isinstance(text, dict):
        pairs = list(text.items())
    else:
        pairs = []
        for part in str(text).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise Invalid(f"split {part.strip()!r} must look like name=ratio (train=0.8)")
            name, value = part.split("=", 1)
            pairs.append((name.strip(), value.strip()))
    ratios: dict[str, float] = {}
    for name, value in pairs:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise Invalid(f"split name {name!r} must be letters, digits, - or _")
        try:
            ratio = float(value)
        except (TypeError, ValueError):
            raise Invalid(f"split {name}: ratio {value!r} is not a number") from None
        if ratio < 0 or math.isnan(ratio) or math.isinf(ratio):
            raise Invalid(f"split {name}: ratio must be >= 0, not {value}")
        if name in ratios:
            raise Invalid(f"split {name!r} is given twice")
        ratios[name] = ratio
    total = sum(ratios.values())
    if total <= 0:
        raise Invalid("at least one split needs a ratio above 0")
    return {name: ratio / total for name, ratio in ratios.items()}


def parse_statuses(text: str | list | tuple | None) -> tuple[str, ...]:
    if not text:
        return DEFAULT_STATUSES
    items = text.split(",") if isinstance(text, str) else list(text)
    statuses = tuple(s.strip() for s in items if s.strip())
    if not statuses:
        raise Invalid("choose at least one image status to export")
    return statuses


# ---------------------------------------------------------------- splits


def assign_splits(images: list[dict], ratios: dict[str, float], seed: int,
                  reshuffle: bool = False) -> dict[int, str]:
    """Split for every image: `{image_id: split}`.

    `images` are dicts with `id`, `sha256`, `split` (the stored one or None) and `classes`
    (the set of class names on the image). Sticky: an image whose stored split still has a
    ratio above 0 keeps it unless `reshuffle`. The others are placed in an order fixed by
    `seed` and their content hashes, rarest class first: each goes to a split that has no
    image of its rarest class yet (so every class reaches every split when it has enough
    images), else to the split furthest below its share of that class, else of all images.
    """
    active = [name for name, ratio in ratios.items() if ratio > 0]
    result: dict[int, str] = {}
    per_class: dict[str, int] = {}
    for image in images:
        for name in image["classes"]:
            per_class[name] = per_class.get(name, 0) + 1
    totals = {s: 0 for s in active}
    class_totals: dict[str, dict[str, int]] = {c: {s: 0 for s in active} for c in per_class}
    todo = []
    for image in images:
        if not reshuffle and image.get("split") in totals:
            split = image["split"]
            result[image["id"]] = split
            totals[split] += 1
            for name in image["classes"]:
                class_totals[name][split] += 1
        else:
            todo.append(image)

    def order_key(image: dict):
        digest = hashlib.sha256(f"{seed}:{image['sha256']}:{image['id']}".encode()).hexdigest()
        rarest = min((per_class[c] for c in image["classes"]), default=math.inf)
        return rarest, digest

    total_images = len(images)
    for image in sorted(todo, key=order_key):
        overall = {s: ratios[s] * total_images - totals[s] for s in active}
        if image["classes"]:
            rarest = min(image["classes"], key=lambda c: (per_class[c], c))
            counts = class_totals[rarest]
            missing = [s for s in active if counts[s] == 0]
            if missing:
                score = {s: (1 if s in missing else 0, ratios[s], overall[s]) for s in active}
            else:
                score = {s: (0, ratios[s] * per_class[rarest] - counts[s], overall[s]) for s in active}
        else:
            score = {s: (0, overall[s], ratios[s]) for s in active}
        split = max(active, key=lambda s: (score[s], -active.index(s)))
        result[image["id"]] = split
        totals[split] += 1
        for name in image["classes"]:
            class_totals[name][split] += 1
    return result


# ---------------------------------------------------------------- choosing images


def _export_images(db, project_id: int, statuses: tuple[str, ...]) -> tuple[list[dict], dict[int, list[dict]]]:
    marks = ",".join("?" for _ in statuses)
    images = list(db.query(f"select * from images where project_id = ? and status in ({marks}) "
                           "order by id", [project_id, *statuses]))
    boxes: dict[int, list[dict]] = {image["id"]: [] for image in images}
    for row in db.query(f"""
            select annotations.*, labels.name as label_name, labels.label_map_id
            from annotations join labels on labels.id = annotations.label_id
            join images on images.id = annotations.image_id
            where images.project_id = ? and images.status in ({marks})
              and annotations.source = 'human'
            order by annotations.image_id, annotations.id""", [project_id, *statuses]):
        if row["image_id"] in boxes:
            boxes[row["image_id"]].append(row)
    return images, boxes


def _file_names(images: list[dict]) -> dict[int, str]:
    """A unique file name per image inside an export: its own name (with the extension of its
    stored format), or `name-<id>` when two images share a name."""
    names: dict[int, str] = {}
    stems: dict[str, int] = {}
    for image in images:
        stem = Path(image["filename"] or f"image-{image['id']}").stem or f"image-{image['id']}"
        stems[stem.lower()] = stems.get(stem.lower(), 0) + 1
    for image in images:
        stem = Path(image["filename"] or f"image-{image['id']}").stem or f"image-{image['id']}"
        suffix = ".png" if image["format"] == "png" else ".jpg"
        names[image["id"]] = (f"{stem}-{image['id']}" if stems[stem.lower()] > 1 else stem) + suffix
    return names


# ---------------------------------------------------------------- export


def create_export(db: sqlite_utils.Database, actor: dict, project_id: int, fmt: str = "tfrecord", *,
                  splits: str | dict | None = None, seed: int = 0, shards: int | None = None,
                  statuses: str | tuple | list | None = None, reshuffle: bool = False,
                  copy_to: str | Path | None = None, checksums: bool = True,
                  on_progress: Progress | None = None) -> DatasetVersion:
    """Write a dataset version of the project and return it.

    `splits` ratios (default train 0.8 / val 0.2), `seed` for new split assignments, `shards`
    per split for TFRecords (default: one per 500 examples, at most 10, never more than the
    split has examples), `statuses` of the images to include (default labeled + reviewed).
    `copy_to` also copies the finished version to that folder (the command line's OUT).
    `checksums=False` leaves the shards' sha256 out of the manifest (`"sha256": null`): it is
    taken in the same pass that writes each shard, yet remains the largest single cost of a big
    export (see BENCHMARKS.md).
    """
    require(actor, "export")
    if copy_to:
        copy_to = paths.confine(copy_to, actor, "export_target")  # before anything is written
    if fmt not in FORMATS:
        raise Invalid(f"export format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    project = get_project(db, project_id)
    ratios = parse_splits(splits)
    statuses = parse_statuses(statuses)
    if shards is not None and not 1 <= int(shards) <= MAX_SHARDS:
        raise Invalid(f"shards must be between 1 and {MAX_SHARDS}")
    labels = list_labels(db, project_id)
    images, boxes = _export_images(db, project_id, statuses)
    if not images:
        raise Invalid(f"project {project['name']!r} has no images with status "
                      f"{' or '.join(statuses)} to export")
    assigned = assign_splits(
        [{"id": i["id"], "sha256": i["sha256"], "split": i["split"],
          "classes": {b["label_name"] for b in boxes[i["id"]]}} for i in images],
        ratios, int(seed), reshuffle)
    names = _file_names(images)
    data_dir = settings.data_dir()
    items = [ExportImage(
        image_id=i["id"], file_name=names[i["id"]], source=data_dir / i["path"], width=i["width"],
        height=i["height"], format=i["format"], sha256=i["sha256"], split=assigned[i["id"]],
        boxes=[ExportBox(b["label_name"], b["xmin"], b["ymin"], b["xmax"], b["ymax"],
                         int(b["difficult"] or 0), int(b["truncated"] or 0), label_map_id=b["label_map_id"])
               for b in boxes[i["id"]]]) for i in images]
    # A deterministic shuffle inside each split, so shards mix classes and upload order.
    items.sort(key=lambda it: (it.split, hashlib.sha256(f"{seed}:{it.sha256}:{it.image_id}".encode()).hexdigest()))

    root = settings.subdir("exports")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    final = root / f"project-{project_id}" / f"{stamp}-{fmt}-{secrets.token_hex(3)}"
    tmp = root / f".tmp-{final.name}"
    tmp.mkdir(parents=True)
    try:
        label_items = label_map_format.from_labels(labels)
        label_map_format.write(tmp / "label_map.pbtxt", label_items)
        extra = _write_format(fmt, tmp, final, items, labels, ratios, shards, on_progress, checksums)
        known = extra.get("sha256", {})
        counts = _counts(items, ratios)
        parameters = {"format": fmt, "splits": ratios, "seed": int(seed), "statuses": list(statuses),
                      "reshuffle": bool(reshuffle), "shards": extra.get("shards"),
                      "requested_shards": shards, "checksums": bool(checksums)}
        files = {}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            relative = path.relative_to(tmp).as_posix()
            if relative != "pipeline_snippet.config":
                if relative in known:
                    digest = known[relative]
                else:
                    digest = sha256_file(path) if checksums or relative == "label_map.pbtxt" else None
                files[relative] = {"sha256": digest, "bytes": path.stat().st_size}
        manifest = {
            "boxwise_dataset_version": 1,
            "project": {"id": project["id"], "name": project["name"]},
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "created_by": actor.get("username"),
            "parameters": parameters, "counts": counts,
            "classes": [{"id": i.id, "name": i.name, "display_name": i.display_name} for i in label_items],
            "num_classes": max((i.id for i in label_items), default=0),
            "input_globs": extra.get("globs", {}),
            "files": files,
            "notes": ["pipeline_snippet.config is not listed: its paths are absolute to where the "
                      "dataset lives and are rewritten when the dataset is copied"],
        }
        atomic.write_json(tmp / "manifest.json", manifest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        with transaction(db):
            for image in images:
                if image["split"] != assigned[image["id"]]:
                    db.execute("update images set split = ? where id = ?",
                               [assigned[image["id"]], image["id"]])
            export_id = db["exports"].insert({
                "project_id": project_id, "format": fmt,
                "path": final.relative_to(settings.data_dir()).as_posix(),
                "params": json.dumps(parameters), "counts": json.dumps(counts),
                "created_at": now(), "created_by": actor.get("id")}).last_pk
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
    version = get_version(db, export_id)
    if copy_to:
        _copy_version(version, copy_to)
    return version


def _write_format(fmt: str, tmp: Path, final: Path, items: list[ExportImage], labels: list[dict],
                  ratios: dict[str, float], shards: int | None, on_progress: Progress | None,
                  checksums: bool = True) -> dict:
    if fmt == "tfrecord":
        return _write_tfrecords(tmp, final, items, ratios, shards, on_progress, checksums)
    from backend.formats import coco, csv_format, voc, yolo
    writer = {"voc": voc, "coco": coco, "csv": csv_format, "yolo": yolo}[fmt]
    writer.write(tmp, items, labels, on_progress=on_progress)
    return {}


def _write_tfrecords(tmp: Path, final: Path, items: list[ExportImage], ratios: dict[str, float],
                     shards: int | None, on_progress: Progress | None, checksums: bool = True) -> dict:
    by_split: dict[str, list[ExportImage]] = {}
    for item in items:
        by_split.setdefault(item.split, []).append(item)
    shard_counts: dict[str, int] = {}
    tasks = []
    for split, members in by_split.items():
        wanted = shards if shards is not None else min(10, max(1, math.ceil(len(members) / 500)))
        count = max(1, min(int(wanted), len(members)))
        shard_counts[split] = count
        for index in range(count):
            tasks.append((tmp / tfrecord.shard_name(split, index, count), members[index::count]))
    total = len(items)
    done_queue: queue.Queue = queue.Queue()
    workers = max(1, min(len(tasks), (os.cpu_count() or 2) * 2, 16))
    # Threads, not processes: the work is file reads, sha256 and writes, which release the GIL.
    # Progress is reported from this (the caller's) thread, so a Streamlit progress bar can be
    # updated from the callback.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export-shard") as pool:
        futures = {path.name: pool.submit(tfrecord.write_shard, path, members,
                                          lambda image: done_queue.put(image.file_name), checksums)
                   for path, members in tasks}
        done = 0
        while done < total and not all(f.done() for f in futures.values()):
            try:
                name = done_queue.get(timeout=0.2)
            except queue.Empty:
                continue
            done += 1
            if on_progress:
                on_progress(done, total, name)
        digests = {name: future.result() for name, future in futures.items()}  # re-raises errors
    while not done_queue.empty():
        done += 1
        name = done_queue.get()
        if on_progress:
            on_progress(done, total, name)
    globs = {split: str(final / tfrecord.shard_glob(split, count)) for split, count in shard_counts.items()}
    atomic.write_text(tmp / "pipeline_snippet.config", pipeline_snippet(final, globs))
    return {"shards": shard_counts, "globs": globs,
            "sha256": {name: digest for name, digest in digests.items() if digest}}


def pipeline_snippet(directory: Path, globs: dict[str, str]) -> str:
    """`train_input_reader` / `eval_input_reader` blocks for a pipeline.config (absolute paths).

    The eval reader reads `val` when there is one, else `test`."""
    label_map_path = directory / "label_map.pbtxt"
    blocks = ["# Paste over the input readers of a TF OD API pipeline.config.\n"]
    if "train" in globs:
        blocks.append(
            "train_input_reader {\n"
            f"  label_map_path: \"{label_map_path}\"\n"
            "  tf_record_input_reader {\n"
            f"    input_path: \"{globs['train']}\"\n"
            "  }\n}\n")
    eval_split = "val" if "val" in globs else "test" if "test" in globs else None
    if eval_split:
        blocks.append(
            "eval_input_reader {\n"
            f"  label_map_path: \"{label_map_path}\"\n"
            "  shuffle: false\n"
            "  num_epochs: 1\n"
            "  tf_record_input_reader {\n"
            f"    input_path: \"{globs[eval_split]}\"\n"
            "  }\n}\n")
    return "\n".join(blocks)


def _counts(items: list[ExportImage], ratios: dict[str, float]) -> dict:
    counts = {"images": {s: 0 for s in ratios if ratios[s] > 0},
              "negatives": {s: 0 for s in ratios if ratios[s] > 0},
              "boxes": {s: {} for s in ratios if ratios[s] > 0}, "total_images": len(items),
              "total_boxes": 0}
    for item in items:
        counts["images"][item.split] += 1
        if not item.boxes:
            counts["negatives"][item.split] += 1
        for box in item.boxes:
            per_class = counts["boxes"][item.split]
            per_class[box.name] = per_class.get(box.name, 0) + 1
            counts["total_boxes"] += 1
    return counts


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- dataset versions


_EVAL_SPLITS = ("val", "validation", "eval", "test")


@dataclass(frozen=True)
class DatasetVersion:
    """One dataset version, as every page, command, config check and run sees it.

    `number` is 1, 2, … within the project. `shard_globs` maps each split to its absolute shard
    glob (`<dir>/<split>.record-?????-of-000NN`; empty for formats other than TFRecord).
    `num_classes` is the label map's largest id, as the TF OD API counts classes (ids are
    stable, so a deleted class leaves a gap). `counts` holds `images` / `negatives` / `boxes`
    per split and `total_images` / `total_boxes`; `params` the export's parameters; `classes`
    the label map items (`id`, `name`, `display_name`) from the manifest."""
    id: int
    project_id: int
    number: int
    format: str
    path: Path
    label_map_path: Path
    manifest_path: Path
    shard_globs: dict[str, str]
    num_classes: int
    classes: tuple[dict, ...]
    counts: dict
    params: dict
    created_at: float | None
    created_by: int | None

    @property
    def exists(self) -> bool:
        return self.path.is_dir()

    @property
    def pipeline_snippet_path(self) -> Path | None:
        return self.path / "pipeline_snippet.config" if self.format == "tfrecord" else None

    @property
    def train_glob(self) -> str | None:
        return self.shard_globs.get("train")

    @property
    def eval_glob(self) -> str | None:
        return next((self.shard_globs[s] for s in _EVAL_SPLITS if s in self.shard_globs), None)

    def title(self) -> str:
        splits = ", ".join(sorted(self.shard_globs))
        return f"v{self.number} (#{self.id}; {self.num_classes} classes; {splits or 'no shards'})"

    def class_balance(self) -> list[dict]:
        """`[{"split", "class", "boxes"}]` rows, for a class-balance chart."""
        return [{"split": split, "class": name, "boxes": n}
                for split, per_class in self.counts.get("boxes", {}).items()
                for name, n in sorted(per_class.items())]

    def snippet_text(self) -> str | None:
        """The pipeline.config input-reader snippet (TFRecord versions on disk), else None."""
        path = self.pipeline_snippet_path
        if path is None or not path.is_file():
            return None
        return path.read_text(encoding="utf-8")


def _version(row: dict, number: int) -> DatasetVersion:
    folder = settings.data_dir() / row["path"]
    fmt = row["format"] or "tfrecord"
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    globs = dict(manifest.get("input_globs") or {})
    if not globs and fmt == "tfrecord":
        # Versions without a manifest: find the shards on disk.
        for shard in sorted(folder.glob("*.record-?????-of-?????")):
            split, _, rest = shard.name.partition(".record-")
            globs.setdefault(split, str(folder / f"{split}.record-?????-of-{rest[-5:]}"))
    label_map_path = folder / "label_map.pbtxt"
    num_classes = manifest.get("num_classes")
    if not num_classes:
        try:
            num_classes = label_map_format.read(label_map_path).num_classes
        except (NotFound, Invalid):
            num_classes = 0
    return DatasetVersion(
        id=row["id"], project_id=row["project_id"], number=number, format=fmt, path=folder,
        label_map_path=label_map_path, manifest_path=manifest_path, shard_globs=globs,
        num_classes=int(num_classes), classes=tuple(manifest.get("classes", [])),
        counts=json.loads(row["counts"] or "{}"), params=json.loads(row["params"] or "{}"),
        created_at=row["created_at"], created_by=row["created_by"])


def list_versions(db: sqlite_utils.Database, project_id: int, fmt: str | None = None) -> list[DatasetVersion]:
    """The project's dataset versions (of format `fmt`, or all), newest first."""
    rows = list(db.query("select * from exports where project_id = ? order by id", [project_id]))
    numbered = [(number, row) for number, row in enumerate(rows, start=1)
                if fmt is None or (row["format"] or "tfrecord") == fmt]
    return [_version(row, number) for number, row in reversed(numbered)]


def get_version(db: sqlite_utils.Database, export_id: int) -> DatasetVersion:
    """The dataset version with export id `export_id`."""
    row = one(db, "select * from exports where id = ?", [export_id])
    if row is None:
        raise NotFound(f"no dataset version with id {export_id}")
    number = one(db, "select count(*) as n from exports where project_id = ? and id <= ?",
                 [row["project_id"], export_id])["n"]
    return _version(row, number)


def latest_version(db: sqlite_utils.Database, project_id: int) -> DatasetVersion:
    """The project's newest TFRecord dataset version."""
    row = one(db, "select max(id) as id from exports where project_id = ? and "
                  "coalesce(format, 'tfrecord') = 'tfrecord'", [project_id])
    if row is None or row["id"] is None:
        raise NotFound("the project has no TFRecord dataset version yet: export one first")
    return get_version(db, row["id"])


def export_zip(db: sqlite_utils.Database, actor: dict, export_id: int) -> Path:
    """A zip of a dataset version (made once, beside it; needs `export`). JPEG/PNG and
    TFRecords hardly compress, so entries are stored, which keeps zipping as fast as copying."""
    require(actor, "export")
    version = get_version(db, export_id)
    directory = version.path
    if not directory.is_dir():
        raise NotFound(f"dataset version {version.number} is gone from {directory}")
    target = directory.with_name(directory.name + ".zip")
    if target.is_file():
        return target
    partial = directory.with_name(f".{directory.name}.zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            archive.write(path, f"{directory.name}/{path.relative_to(directory).as_posix()}")
    os.replace(partial, target)
    return target


def _copy_version(version: DatasetVersion, out: Path) -> Path:
    """Copy a finished dataset version to folder `out` (created; must be empty or absent) and
    point the copy's pipeline snippet at the copy."""
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        raise Invalid(f"{out} is not empty; choose a new or empty folder")
    source = version.path
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    if version.format == "tfrecord":
        globs = {split: str(out / Path(glob).name) for split, glob in version.shard_globs.items()}
        atomic.write_text(tmp / "pipeline_snippet.config", pipeline_snippet(out, globs))
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return out


def zip_download(db: sqlite_utils.Database, actor: dict, export_id: int) -> tuple[str, bytes]:
    """(file name, bytes) of a version's zip, for a download button."""
    path = export_zip(db, actor, export_id)
    return path.name, path.read_bytes()
