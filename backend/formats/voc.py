"""Pascal VOC XML (as LabelImg writes it): read and write.

One XML file per image: `<filename>`, `<size><width>/<height>`, and per object `<name>`,
`<difficult>`, `<truncated>` and `<bndbox>` with pixel `xmin, ymin, xmax, ymax`.
Reading takes one .xml file or a folder (searched recursively); images are looked up beside
the XML, in the given images folder, in a sibling `JPEGImages/`, then by name anywhere below.
Writing makes the VOC layout: `Annotations/`, `JPEGImages/`, `ImageSets/Main/<split>.txt`.
"""
from __future__ import annotations

import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Callable

from backend import atomic
from backend.formats.records import (Allowed, AnnotatedImage, ExportImage, ImageFinder, ObjectBox,
                                     ReadResult, annotation_files)


def _number(text: str | None, what: str) -> float:
    if text is None or not text.strip():
        raise ValueError(f"missing {what}")
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{what} {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text.strip()!r} is not a finite number")
    return value


def read(path: str | Path, images_dir: str | Path | None = None,
         allowed: Allowed | None = None) -> ReadResult:
    path = Path(path)
    result = ReadResult()
    files, root = annotation_files(path, ".xml", ".xml annotation files", result)
    if not files:
        return result
    roots = [Path(images_dir)] if images_dir else []
    roots += [root, root / "JPEGImages", root.parent / "JPEGImages"]
    finder = ImageFinder(roots, allowed)
    for file in files:
        item = _read_one(file, finder)
        result.images.append(item)
        if item.by_stem:
            result.notes.append(item.by_stem)
    return result


def _read_one(file: Path, finder: ImageFinder) -> AnnotatedImage:
    where = str(file)
    try:
        tree = ET.parse(file)
    except (ET.ParseError, OSError) as exc:
        item = AnnotatedImage(name=file.name, where=where)
        item.problems.append(f"not valid VOC XML: {exc}")
        return item
    top = tree.getroot()
    filename = (top.findtext("filename") or "").strip()
    item = AnnotatedImage(name=filename or file.with_suffix(".jpg").name, where=where)
    if top.tag != "annotation":
        item.problems.append(f"not a VOC annotation (root element <{top.tag}>)")
        return item
    size = top.find("size")
    if size is not None:
        try:
            item.width = int(_number(size.findtext("width"), "size/width"))
            item.height = int(_number(size.findtext("height"), "size/height"))
        except ValueError as exc:
            item.problems.append(str(exc))
        if item.width == 0 or item.height == 0:  # some tools write 0 when they did not know
            item.width = item.height = None
    for number, obj in enumerate(top.findall("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name:
            item.problems.append(f"object {number}: no <name>")
            continue
        if box is None:
            item.problems.append(f"object {number} ({name}): no <bndbox>")
            continue
        try:
            coords = [_number(box.findtext(k), f"object {number} ({name}) {k}")
                      for k in ("xmin", "ymin", "xmax", "ymax")]
            difficult = int(_number(obj.findtext("difficult") or "0", "difficult"))
            truncated = int(_number(obj.findtext("truncated") or "0", "truncated"))
        except ValueError as exc:
            item.problems.append(str(exc))
            continue
        item.boxes.append(ObjectBox(name, *coords, difficult=difficult, truncated=truncated))
    found, why = finder.find(filename or item.name, near=file.parent)
    if found is None:
        stated = (top.findtext("path") or "").strip()
        if stated and finder.usable(Path(stated)):
            found = Path(stated)
    if found is None:
        # Tools write the name of the file they were given (`OSBS_029.tif`) beside a converted
        # copy (`OSBS_029.png`): one image with the same stem is that image.
        found = finder.find_by_stem([PurePosixPath(item.name.replace("\\", "/")).stem, file.stem],
                                    near=file.parent)
        if found is not None:
            item.name = found.name
            item.by_stem = f"{file.name}: <filename> {filename!r} not found; using {found.name}, the one image of that stem"
    if found is None:
        item.missing = why or f"image {item.name!r} not found"
    item.image_path = found
    return item


def _fmt(value: float) -> str:
    return f"{round(value, 3):g}" if abs(value) < 1e15 else str(value)


def to_xml(image: ExportImage, folder: str = "JPEGImages") -> str:
    top = ET.Element("annotation")
    ET.SubElement(top, "folder").text = folder
    ET.SubElement(top, "filename").text = image.file_name
    ET.SubElement(top, "path").text = f"{folder}/{image.file_name}"
    source = ET.SubElement(top, "source")
    ET.SubElement(source, "database").text = "Boxwise"
    size = ET.SubElement(top, "size")
    ET.SubElement(size, "width").text = str(image.width)
    ET.SubElement(size, "height").text = str(image.height)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(top, "segmented").text = "0"
    for box in image.boxes:
        obj = ET.SubElement(top, "object")
        ET.SubElement(obj, "name").text = box.name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = str(int(box.truncated))
        ET.SubElement(obj, "difficult").text = str(int(box.difficult))
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box.coords):
            ET.SubElement(bndbox, key).text = _fmt(value)
    ET.indent(top)
    return ET.tostring(top, encoding="unicode") + "\n"


def write(out: Path, images: list[ExportImage], labels: list[dict],
          on_progress: Callable[[int, int, str], None] | None = None) -> None:
    """VOC layout under `out`; image bytes are copied unchanged."""
    splits: dict[str, list[str]] = {}
    for done, image in enumerate(images, start=1):
        (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image.source, out / "JPEGImages" / image.file_name)
        atomic.write_text(out / "Annotations" / (Path(image.file_name).stem + ".xml"), to_xml(image))
        splits.setdefault(image.split, []).append(Path(image.file_name).stem)
        if on_progress:
            on_progress(done, len(images), image.file_name)
    for split, stems in splits.items():
        atomic.write_text(out / "ImageSets" / "Main" / f"{split}.txt", "\n".join(stems) + "\n")
