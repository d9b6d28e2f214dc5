"""COCO detection JSON: read and write.

`images` (`id`, `file_name`, `width`, `height`), `annotations` (`image_id`, `category_id`,
`bbox` = pixel `[x, y, width, height]`), `categories` (`id`, `name`). Reading takes one
.json file or a folder of them; images listed without annotations are negatives. Writing makes
`annotations/instances_<split>.json` and `images/`, with category ids = label-map ids.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Callable

from backend import atomic
from backend.formats import boxes as box_convert
from backend.formats.records import (Allowed, AnnotatedImage, ExportImage, ImageFinder, ObjectBox,
                                     ReadResult, annotation_files)


def read(path: str | Path, images_dir: str | Path | None = None,
         allowed: Allowed | None = None) -> ReadResult:
    """COCO detection JSON (`path`: a file or a folder of them). `allowed` filters the image
    paths the importing user may read (see `ImageFinder`)."""
    path = Path(path)
    result = ReadResult()
    files, root = annotation_files(path, ".json", ".json files", result)
    if not files:
        return result
    roots = ([Path(images_dir)] if images_dir else []) + [root, root / "images", root.parent / "images",
                                                          root.parent]
    finder = ImageFinder(roots, allowed)
    for file in files:
        _read_file(file, finder, result, strict=not path.is_dir())
    if path.is_dir() and not result.images and not result.problems:
        result.problems.append(f"{path}: no COCO detection JSON found")
    return result


def _read_file(file: Path, finder: ImageFinder, result: ReadResult, strict: bool = True) -> None:
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        result.problems.append(f"{file}: not valid JSON: {exc}")
        return
    if not isinstance(document, dict) or not isinstance(document.get("images"), list) or \
            not isinstance(document.get("categories"), list):
        if not strict:  # a folder may hold other JSON (a Boxwise manifest.json, say)
            result.notes.append(f"{file}: not COCO detection JSON; ignored")
            return
        result.problems.append(f"{file}: not COCO detection JSON (needs 'images' and 'categories' lists)")
        return
    categories = {}
    for number, category in enumerate(document["categories"]):
        if not isinstance(category, dict) or "id" not in category or not category.get("name"):
            result.problems.append(f"{file}: categories[{number}] needs an id and a name")
            continue
        if not _is_id(category["id"]):
            result.problems.append(f"{file}: categories[{number}]: id must be a number or a "
                                   f"string, not {_short(category['id'])}")
            continue
        categories[category["id"]] = str(category["name"])
    images: dict = {}
    for number, entry in enumerate(document["images"]):
        if not isinstance(entry, dict) or "id" not in entry or not entry.get("file_name"):
            result.problems.append(f"{file}: images[{number}] needs an id and a file_name")
            continue
        if not _is_id(entry["id"]):
            result.problems.append(f"{file}: images[{number}]: id must be a number or a string, "
                                   f"not {_short(entry['id'])}")
            continue
        item = AnnotatedImage(name=str(entry["file_name"]), where=f"{file} images[{number}]")
        sizes = [entry.get("width"), entry.get("height")]
        bad = [v for v in sizes if v is not None and not _is_size(v)]
        if bad:
            item.problems.append(f"width/height must be positive whole numbers, not {_short(bad[0])}")
        else:
            item.width, item.height = (int(v) if v else None for v in sizes)
        item.image_path, why = finder.find(item.name, near=file.parent)
        if item.image_path is None:
            item.missing = why
        images[entry["id"]] = item
        result.images.append(item)
    for number, annotation in enumerate(document.get("annotations") or []):
        where = f"{file}: annotations[{number}]"
        if not isinstance(annotation, dict):
            result.problems.append(f"{where} is not an object")
            continue
        image_id = annotation.get("image_id")
        item = images.get(image_id) if _is_id(image_id) else None
        if item is None:
            result.problems.append(f"{where}: unknown image_id {_short(image_id)}")
            continue
        category = annotation.get("category_id")
        if not _is_id(category) or category not in categories:
            item.problems.append(f"annotations[{number}]: unknown category id {_short(category)}")
            continue
        bbox = annotation.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            item.problems.append(f"annotations[{number}]: bbox {_short(bbox)} is not "
                                 "[x, y, width, height]")
            continue
        if not all(_is_number(v) for v in bbox):
            item.problems.append(f"annotations[{number}]: bbox {_short(bbox)} is not 4 finite numbers")
            continue
        xmin, ymin, xmax, ymax = box_convert.from_coco(bbox)
        if bbox[2] < 0 or bbox[3] < 0:
            item.problems.append(f"annotations[{number}]: bbox {bbox!r} has a negative width or height")
            continue
        item.boxes.append(ObjectBox(categories[category], xmin, ymin, xmax, ymax,
                                    difficult=int(bool(annotation.get("difficult", 0))),
                                    truncated=int(bool(annotation.get("truncated", 0)))))


def _is_id(value) -> bool:
    """COCO ids are numbers (or, in some tools' files, strings); anything else cannot key a lookup."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_size(value) -> bool:
    return _is_number(value) and value > 0 and float(value).is_integer() and value < 2**31


def _short(value, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters so a hostile file cannot flood the report."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def document(images: list[ExportImage], labels: list[dict], file_prefix: str = "") -> dict:
    """The COCO JSON of `images` (ids = Boxwise image ids, category ids = label-map ids)."""
    out = {"info": {"description": "Exported by Boxwise"}, "licenses": [], "images": [],
           "annotations": [], "categories": [
               {"id": row["label_map_id"], "name": row["name"], "supercategory": "none"}
               for row in sorted(labels, key=lambda r: r["label_map_id"])]}
    next_id = 1
    for image in images:
        out["images"].append({"id": image.image_id, "file_name": file_prefix + image.file_name,
                              "width": image.width, "height": image.height})
        for box in image.boxes:
            x, y, w, h = box_convert.to_coco(box.coords)
            out["annotations"].append({
                "id": next_id, "image_id": image.image_id, "category_id": box.label_map_id,
                "bbox": [round(v, 3) for v in (x, y, w, h)], "area": round(w * h, 3), "iscrowd": 0,
                "difficult": int(box.difficult), "truncated": int(box.truncated)})
            next_id += 1
    return out


def write(out: Path, images: list[ExportImage], labels: list[dict],
          on_progress: Callable[[int, int, str], None] | None = None) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    by_split: dict[str, list[ExportImage]] = {}
    for done, image in enumerate(images, start=1):
        shutil.copyfile(image.source, out / "images" / image.file_name)
        by_split.setdefault(image.split, []).append(image)
        if on_progress:
            on_progress(done, len(images), image.file_name)
    for split, members in by_split.items():
        atomic.write_text(out / "annotations" / f"instances_{split}.json",
                          json.dumps(document(members, labels), indent=1))
