"""YOLO txt labels: read and write.

One `.txt` per image, one line per box: `class_index x_center y_center width height`,
normalised to [0, 1], class indexes 0-based into the names of `data.yaml` (`names:` as a list
or an `index: name` map) or `classes.txt` (one name a line). Label files sit beside their
images or in the parallel `labels/` folder of an `images/` folder. An image without a label
file is a negative, as YOLO trainers treat it. Writing makes `images/<split>/`,
`labels/<split>/`, `data.yaml` and `classes.txt`, indexes following label-map id order.
"""
from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path
from typing import Callable

from backend import atomic
from backend.formats import boxes as box_convert
from backend.formats.records import (Allowed, IMAGE_SUFFIXES, AnnotatedImage, ExportImage, ObjectBox,
                                     ReadResult)


def parse_names(text: str) -> list[str]:
    """The `names:` of a data.yaml (flow list, block list or `index: name` map), without a YAML
    library: only this key is needed."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^names\s*:\s*(.*)$", line)
        if not match:
            continue
        rest = match.group(1).split(" #")[0].strip()
        if rest.startswith("["):
            flow = rest
            extra = number + 1
            while flow.count("[") > flow.count("]") and extra < len(lines):
                flow += " " + lines[extra].strip()
                extra += 1
            items = [i.strip().strip("'\"") for i in flow.strip("[] ").split(",")]
            return [i for i in items if i]
        if rest.startswith("{"):
            mapping = ast.literal_eval(rest)
            return [str(mapping[k]) for k in sorted(mapping)]
        names: dict[int, str] = {}
        listed: list[str] = []
        for child in lines[number + 1:]:
            if child.strip() and not child.startswith((" ", "\t", "-")):
                break
            item = child.strip()
            if not item or item.startswith("#"):
                continue
            if item.startswith("- "):
                listed.append(item[2:].strip().strip("'\""))
            elif ":" in item:
                key, value = item.split(":", 1)
                names[int(key.strip())] = value.strip().strip("'\"")
        if names:
            return [names[k] for k in sorted(names)]
        return listed
    raise ValueError("no names: entry")


def _classes(root: Path, result: ReadResult, allowed: Allowed) -> list[str] | None:
    for folder in (f for f in (root, root.parent) if allowed(f)):
        yaml_files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
        for candidate in yaml_files:
            try:
                return parse_names(candidate.read_text(encoding="utf-8"))
            except (ValueError, SyntaxError, OSError) as exc:
                result.notes.append(f"{candidate}: no usable names ({exc})")
        classes_txt = folder / "classes.txt"
        if classes_txt.is_file():
            return [line.strip() for line in classes_txt.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
    return None


def _label_file(image: Path, root: Path) -> Path | None:
    beside = image.with_suffix(".txt")
    if beside.is_file():
        return beside
    parts = list(image.relative_to(root).parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            swapped = root.joinpath(*parts[:i], "labels", *parts[i + 1:]).with_suffix(".txt")
            if swapped.is_file():
                return swapped
    return None


def read(path: str | Path, images_dir: str | Path | None = None,
         allowed: Allowed | None = None) -> ReadResult:
    path = Path(path)
    result = ReadResult()
    root = path.parent if path.is_file() else path
    if not root.is_dir():
        result.problems.append(f"{path}: no such folder")
        return result
    allowed = allowed or (lambda _path: True)
    classes = _classes(root, result, allowed)
    if classes is None:
        result.problems.append(f"{root}: no data.yaml or classes.txt naming the classes")
        return result
    result.classes = classes
    image_root = Path(images_dir) if images_dir else root
    found = sorted(p for p in image_root.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and allowed(p) and p.is_file())
    if not found:
        result.problems.append(f"{image_root}: no images found")
        return result
    negatives = 0
    for image in found:
        labels = _label_file(image, image_root) or (_label_file(image, root) if image_root != root else None)
        labels = labels if labels is None or allowed(labels) else None
        item = AnnotatedImage(name=image.name, where=str(labels or image), image_path=image,
                              normalized=True)
        result.images.append(item)
        if labels is None:
            negatives += 1
            continue
        for line, text in enumerate(labels.read_text(encoding="utf-8").splitlines(), start=1):
            fields = text.split()
            if not fields:
                continue
            if len(fields) != 5:
                item.problems.append(f"line {line}: {len(fields)} values; YOLO boxes have 5 "
                                     "(class x_center y_center width height)")
                continue
            try:
                index = int(fields[0])
                cx, cy, w, h = (float(v) for v in fields[1:])
            except ValueError:
                item.problems.append(f"line {line}: {text.strip()!r} is not numbers")
                continue
            if not 0 <= index < len(classes):
                item.problems.append(f"line {line}: unknown class id {index} "
                                     f"(the names list has {len(classes)})")
                continue
            if w < 0 or h < 0:
                item.problems.append(f"line {line}: negative width or height")
                continue
            xmin, ymin, xmax, ymax = box_convert.from_yolo((cx, cy, w, h), 1, 1)
            item.boxes.append(ObjectBox(classes[index], xmin, ymin, xmax, ymax))
    if negatives:
        result.notes.append(f"{negatives} images have no label file: imported as images with no objects")
    return result


def write(out: Path, images: list[ExportImage], labels: list[dict],
          on_progress: Callable[[int, int, str], None] | None = None) -> None:
    ordered = sorted(labels, key=lambda r: r["label_map_id"])
    index = {row["label_map_id"]: number for number, row in enumerate(ordered)}
    splits: list[str] = []
    for done, image in enumerate(images, start=1):
        if image.split not in splits:
            splits.append(image.split)
        (out / "images" / image.split).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image.source, out / "images" / image.split / image.file_name)
        lines = []
        for box in image.boxes:
            cx, cy, w, h = box_convert.to_yolo(box.coords, image.width, image.height)
            lines.append(f"{index[box.label_map_id]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        atomic.write_text(out / "labels" / image.split / (Path(image.file_name).stem + ".txt"),
                          "".join(line + "\n" for line in lines))
        if on_progress:
            on_progress(done, len(images), image.file_name)
    names = "\n".join(f"  {number}: {_quote(row['name'])}" for number, row in enumerate(ordered))
    yaml = "path: .\n" + "".join(f"{s}: images/{s}\n" for s in splits) + \
        f"nc: {len(ordered)}\nnames:\n{names}\n"
    atomic.write_text(out / "data.yaml", yaml)
    atomic.write_text(out / "classes.txt", "".join(row["name"] + "\n" for row in ordered))


def _quote(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"
