"""The images of a record set: one example drawn with its boxes and class names (`preview`),
and every example's image written out raw or drawn, to a folder or a zip (`extract`).
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from backend import atomic
from backend.errors import Invalid
from backend.formats import boxes as box_convert, drawing, tf_example, tfrecord, tfrecord_checks, tfrecord_framing
from backend.formats.label_map import LabelMap
from backend.projects import class_color


def preview(example: tf_example.DecodedExample, label_map: LabelMap | None = None) -> Image.Image:
    """The example's image with its boxes and class names drawn. Raises Invalid if undecodable."""
    try:
        image = Image.open(io.BytesIO(example.encoded or b""))
        image.load()
    except Exception as exc:  # noqa: BLE001
        raise Invalid(f"{example.file} record {example.index}: image does not decode: {exc}") from None
    width, height = image.size
    drawn = [(example.caption(b, label_map),
              box_convert.from_normalized((b["xmin"], b["ymin"], b["xmax"], b["ymax"]), width, height),
              class_color(b["label"] if isinstance(b["label"], int) else 1))
             for b in example.boxes()]
    return drawing.draw_boxes(image, drawn)


@dataclass
class Extraction:
    written: list[str] = field(default_factory=list)
    problems: list[tfrecord_checks.Problem] = field(default_factory=list)


def extract(pattern: str | Path, out: str | Path, draw: bool = False,
            label_map: LabelMap | None = None,
            on_progress: Callable[[int, int | None, str], None] | None = None) -> Extraction:
    """Write every example's image to folder `out` (or into zip `out` when it ends in .zip):
    the raw encoded bytes, or with boxes and class names drawn. Names come from
    image/filename, made unique with the record index when needed."""
    out = Path(out)
    result = Extraction()
    used: set[str] = set()
    to_zip = out.suffix.lower() == ".zip"
    archive = None
    tmp_zip = out.with_name(f".{out.name}.partial")
    if to_zip:
        out.parent.mkdir(parents=True, exist_ok=True)
        archive = zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_STORED)
    else:
        out.mkdir(parents=True, exist_ok=True)
    try:
        for number, (file, index, item) in enumerate(tfrecord.iter_examples(pattern), start=1):
            if isinstance(item, tfrecord_framing.RecordError):
                result.problems.append(tfrecord_checks.Problem(file, index, str(item)))
                continue
            suffix = ".png" if item.format == "png" else ".jpg"
            stem = Path(item.filename).stem if item.filename else f"{Path(file).name}-{index:06d}"
            name = stem + suffix
            if name in used:
                name = f"{stem}-{Path(file).name}-{index:06d}{suffix}"
            try:
                if draw:
                    data = drawing.encode(preview(item, label_map), "png" if suffix == ".png" else "jpeg")
                else:
                    data = item.encoded or b""
                    if not data:
                        raise Invalid("no image/encoded")  # (the problem names the file and record)
            except Invalid as exc:
                result.problems.append(tfrecord_checks.Problem(file, index, str(exc)))
                continue
            used.add(name)
            if archive is not None:
                archive.writestr(name, data)
            else:
                atomic.write_bytes(out / name, data)
            result.written.append(name)
            if on_progress:
                on_progress(number, None, name)
        if archive is not None:
            archive.close()
            archive = None
            tmp_zip.replace(out)
    finally:
        if archive is not None:
            archive.close()
            tmp_zip.unlink(missing_ok=True)
    return result
