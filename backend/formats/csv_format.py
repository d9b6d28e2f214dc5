"""CSV box lists in the two common layouts: read and write.

Layout "tfod" (the TF OD API tutorials' `generate_tfrecord.py` input):
    filename,width,height,class,xmin,ymin,xmax,ymax
Layout "path" (AutoML / Keras-style lists):
    image_path,xmin,ymin,xmax,ymax,label
One row per box, pixel coordinates. A row whose class and coordinates are empty lists an
image with no objects. Reading takes a .csv file or a folder of them (the layout is told
by the header); writing makes `<split>_labels.csv` in the "tfod" layout and `images/`.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Callable

from backend.formats.records import (Allowed, AnnotatedImage, ExportImage, ImageFinder, ObjectBox,
                                     ReadResult, annotation_files)

TFOD_COLUMNS = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
PATH_COLUMNS = ["image_path", "xmin", "ymin", "xmax", "ymax", "label"]


def read(path: str | Path, images_dir: str | Path | None = None,
         allowed: Allowed | None = None) -> ReadResult:
    path = Path(path)
    result = ReadResult()
    files, root = annotation_files(path, ".csv", ".csv files", result)
    if not files:
        return result
    finder = ImageFinder(([Path(images_dir)] if images_dir else []) + [root, root / "images"], allowed)
    for file in files:
        _read_file(file, finder, result)
    return result


def _read_file(file: Path, finder: ImageFinder, result: ReadResult) -> None:
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        result.problems.append(f"{file}: cannot read CSV: {exc}")
        return
    if not rows:
        result.problems.append(f"{file}: empty file")
        return
    header = [h.strip().lower() for h in rows[0]]
    if set(TFOD_COLUMNS) <= set(header):
        name_key, class_key, sized = "filename", "class", True
    elif set(PATH_COLUMNS) <= set(header):
        name_key, class_key, sized = "image_path", "label", False
    else:
        result.problems.append(f"{file}: header {','.join(rows[0])!r} is neither "
                               f"{','.join(TFOD_COLUMNS)} nor {','.join(PATH_COLUMNS)}")
        return
    by_name: dict[str, AnnotatedImage] = {}
    for line, values in enumerate(rows[1:], start=2):
        if not any(v.strip() for v in values):
            continue
        where = f"{file} line {line}"
        if len(values) != len(header):
            result.problems.append(f"{where}: {len(values)} values for {len(header)} columns")
            continue
        row = {k: v.strip() for k, v in zip(header, values)}
        name = row[name_key]
        if not name:
            result.problems.append(f"{where}: no {name_key}")
            continue
        item = by_name.get(name)
        if item is None:
            item = AnnotatedImage(name=name, where=where)
            item.image_path, why = finder.find(name, near=file.parent)
            if item.image_path is None:
                item.missing = f"line {line}: {why}"
            by_name[name] = item
            result.images.append(item)
        if sized:
            try:
                width, height = int(float(row["width"])), int(float(row["height"]))
                if item.width is None:
                    item.width, item.height = width, height
                elif (item.width, item.height) != (width, height):
                    item.problems.append(f"line {line}: size {width}×{height} differs from "
                                         f"{item.width}×{item.height} on an earlier line")
            except (ValueError, OverflowError):  # OverflowError: "inf"
                item.problems.append(f"line {line}: width/height {row['width']!r}, {row['height']!r} "
                                     "are not whole numbers")
        coords = [row[k] for k in ("xmin", "ymin", "xmax", "ymax")]
        if not row[class_key] and not any(coords):
            continue  # an image with no objects
        if not row[class_key]:
            item.problems.append(f"line {line}: box without a {class_key}")
            continue
        try:
            values4 = [float(v) for v in coords]
        except ValueError:
            item.problems.append(f"line {line}: coordinates {', '.join(coords)} are not numbers")
            continue
        item.boxes.append(ObjectBox(row[class_key], *values4))


def _fmt(value: float) -> str:
    return f"{round(value, 3):g}"


def write(out: Path, images: list[ExportImage], labels: list[dict],
          on_progress: Callable[[int, int, str], None] | None = None) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[list[str]]] = {}
    for done, image in enumerate(images, start=1):
        shutil.copyfile(image.source, out / "images" / image.file_name)
        split_rows = rows.setdefault(image.split, [])
        if not image.boxes:
            split_rows.append([image.file_name, str(image.width), str(image.height), "", "", "", "", ""])
        for box in image.boxes:
            split_rows.append([image.file_name, str(image.width), str(image.height), box.name,
                               *(_fmt(v) for v in box.coords)])
        if on_progress:
            on_progress(done, len(images), image.file_name)
    for split, split_rows in rows.items():
        with open(out / f"{split}_labels.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(TFOD_COLUMNS)
            writer.writerows(split_rows)
