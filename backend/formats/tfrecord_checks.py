"""Validating a record set as the TF OD API will read it: every problem (missing features,
per-box lists of different lengths, boxes outside [0, 1] or inverted, label ids against the
label map, sha256, undecodable images, duplicate source ids) with its file and record index.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from backend.formats.label_map import LabelMap
from backend.formats import tf_example, tfrecord, tfrecord_framing


@dataclass
class Problem:
    file: str
    index: int
    message: str

    def __str__(self) -> str:
        return f"{self.file} record {self.index}: {self.message}"


@dataclass
class Inspection:
    """What `inspect` found: files and their record counts, boxes per class, problems."""
    files: dict[str, int] = field(default_factory=dict)
    examples: int = 0
    boxes: int = 0
    negatives: int = 0
    classes: dict[str, int] = field(default_factory=dict)   # "id name" or name → box count
    problems: list[Problem] = field(default_factory=list)
    label_map: str | None = None
    compressed: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"files": self.files, "compressed": self.compressed, "examples": self.examples,
                "boxes": self.boxes, "negatives": self.negatives, "classes": self.classes,
                "label_map": self.label_map,
                "problems": [{"file": p.file, "index": p.index, "message": p.message}
                             for p in self.problems]}


def check_example(example: tf_example.DecodedExample, label_map: LabelMap | None,
                  decode_image: bool = True) -> list[str]:
    """Everything wrong with one example, each as a sentence (no file/index: the caller adds them)."""
    problems = []
    f = example.features
    for key in ("image/encoded", "image/height", "image/width"):
        if not f.get(key):
            problems.append(f"missing {key}")
    lengths = {k: len(f[k]) for k in tf_example.PER_BOX_KEYS if k in f}
    if len(set(lengths.values())) > 1:
        problems.append("per-box lists have different lengths: " +
                        ", ".join(f"{k.rsplit('/', 2)[-2] + '/' + k.rsplit('/', 1)[-1]}={n}"
                                  for k, n in lengths.items()))
    by_id = label_map.by_id() if label_map else {}
    for number, box in enumerate(example.boxes()):
        coords = (box["xmin"], box["ymin"], box["xmax"], box["ymax"])
        if any(c < 0.0 or c > 1.0 for c in coords):
            problems.append(f"box {number}: coordinates ({', '.join(f'{c:.4g}' for c in coords)}) "
                            "outside [0, 1] (pixel boxes instead of normalised?)")
        if box["xmax"] < box["xmin"] or box["ymax"] < box["ymin"]:
            problems.append(f"box {number}: inverted (xmin {box['xmin']:.4g}, xmax {box['xmax']:.4g}, "
                            f"ymin {box['ymin']:.4g}, ymax {box['ymax']:.4g})")
        label = box["label"]
        if label is not None and label < 1:
            problems.append(f"box {number}: class label {label} (label-map ids start at 1; "
                            "0 is the background)")
        elif label is not None and label_map and label not in by_id:
            problems.append(f"box {number}: class label {label} is not in the label map")
        if label is not None and box["text"] and label_map and label in by_id:
            expected = label_map.id_for_text(box["text"])
            if expected != label:
                problems.append(f"box {number}: class text {box['text']!r} and label {label} "
                                f"disagree (the label map says {label} is "
                                f"{label_map.class_name(by_id[label])!r})")
    data = example.encoded
    if data is not None:
        digest = example.text("image/key/sha256")
        if digest and digest != hashlib.sha256(data).hexdigest():
            problems.append("image/key/sha256 is not the sha256 of image/encoded")
        if decode_image:
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
                    size = image.size
            except Exception as exc:  # noqa: BLE001 - any decoder failure is the finding
                problems.append(f"image/encoded does not decode: {exc}")
            else:
                if example.width and example.height and size != (example.width, example.height):
                    problems.append(f"image is {size[0]}×{size[1]} but image/width×height say "
                                    f"{example.width}×{example.height}")
    return problems


def inspect(pattern: str | Path, label_map: LabelMap | None = None, label_map_source: str | None = None,
            decode_images: bool = True,
            on_progress: Callable[[int, int | None, str], None] | None = None) -> Inspection:
    """Count and validate a record set; every problem names its file and record index."""
    result = Inspection(label_map=label_map_source)
    seen_ids: dict[str, tuple[str, int]] = {}
    # Without a label map, a set must still agree with itself: one id per class text.
    id_of_text: dict[str, tuple[int, str, int]] = {}
    for path in tfrecord_framing.resolve(pattern):
        result.files[str(path)] = 0
        result.compressed[str(path)] = tfrecord_framing.is_gzip(path)
    for file, index, item in tfrecord.iter_examples(pattern):
        if isinstance(item, tfrecord_framing.RecordError):
            result.problems.append(Problem(file, index, str(item)))
            continue
        result.files[file] += 1
        result.examples += 1
        for message in check_example(item, label_map, decode_images):
            result.problems.append(Problem(file, index, message))
        source_id = item.source_id
        if source_id:
            if source_id in seen_ids:
                first = seen_ids[source_id]
                result.problems.append(Problem(file, index, f"duplicate source_id {source_id!r} "
                                                            f"(first in {first[0]} record {first[1]})"))
            else:
                seen_ids[source_id] = (file, index)
        boxes = item.boxes()
        if not boxes:
            result.negatives += 1
        for number, box in enumerate(boxes):
            if label_map is None and box["text"] and box["label"] is not None:
                first = id_of_text.setdefault(box["text"], (box["label"], file, index))
                if first[0] != box["label"]:
                    result.problems.append(Problem(file, index, (
                        f"box {number}: class text {box['text']!r} has label {box['label']} here but "
                        f"{first[0]} in {first[1]} record {first[2]}")))
            result.boxes += 1
            name = item.caption(box, label_map)
            key = f"{box['label']} {name}" if box["label"] is not None and name != str(box["label"]) else name
            result.classes[key] = result.classes.get(key, 0) + 1
        if on_progress:
            on_progress(result.examples, None, f"{Path(file).name} #{index}")
    result.classes = dict(sorted(result.classes.items()))
    return result
