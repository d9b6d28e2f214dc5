"""The in-memory form of annotated images passed between the formats and the database.

Readers of every format produce `AnnotatedImage`s; writers consume `ExportImage`s. Boxes are
pixel `xmin, ymin, xmax, ymax` unless `AnnotatedImage.normalized` says they are normalised
(YOLO, TFRecord), in which case the importer scales them by the stored image's size.
"""
from __future__ import annotations

import glob

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class ObjectBox:
    """One box as written in an outside file: a class name and four coordinates."""
    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: int = 0
    truncated: int = 0

    @property
    def coords(self) -> tuple[float, float, float, float]:
        return self.xmin, self.ymin, self.xmax, self.ymax


@dataclass
class AnnotatedImage:
    """One image as an annotation file describes it.

    `where` names the file (and line or record) the entry came from, for messages.
    `width`/`height` are the size the file states (None when it states none).
    `problems` are reasons this entry cannot be imported; a reader never raises for one bad
    entry, it records the reason and goes on, so the report lists every problem at once.
    """
    name: str
    where: str
    boxes: list[ObjectBox] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    normalized: bool = False
    image_path: Path | None = None
    image_bytes: bytes | None = None
    problems: list[str] = field(default_factory=list)
    missing: str | None = None   # why the image file was not found (it may still be in the project)
    load: Callable[[], bytes | None] | None = None   # reads the image bytes on demand (TFRecord)
    by_stem: str | None = None   # how the image was found by its stem, when the name did not match


@dataclass
class ReadResult:
    """Everything a reader found: the images, the class names the files declare (in their
    order, or None when the format declares none), file-level problems and notes."""
    images: list[AnnotatedImage] = field(default_factory=list)
    classes: list[str] | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def annotation_files(path: Path, suffix: str, what: str, result: ReadResult) -> tuple[list[Path], Path]:
    """The annotation files a reader takes from `path`, and the folder to look for images from:
    every `*suffix` file below a folder (sorted), or the one file. When there are none, the
    list is empty and the reason (naming `what`, e.g. ".json files") is in `result.problems`."""
    if path.is_dir():
        files, root = sorted(path.rglob(f"*{suffix}")), path
    elif path.is_file():
        files, root = [path], path.parent
    else:
        result.problems.append(f"{path}: no such file or folder")
        return [], path
    if not files:
        result.problems.append(f"{path}: no {what} found")
    return files, root


@dataclass
class ExportBox(ObjectBox):
    """A box on its way out: an `ObjectBox` (pixel `xmin, ymin, xmax, ymax`) with its class's
    label-map id, given by keyword."""
    label_map_id: int = field(kw_only=True)


@dataclass
class ExportImage:
    """An image on its way out: the stored file, a unique file name inside the export, its
    size, split and boxes. `source` is the stored file (its bytes are copied unchanged)."""
    image_id: int
    file_name: str
    source: Path
    width: int
    height: int
    format: str           # "jpeg" | "png"
    sha256: str
    split: str
    boxes: list[ExportBox] = field(default_factory=list)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


Allowed = Callable[[Path], bool]  # whether the importing user may read a path (paths.allows)


class ImageFinder:
    """Finds the image file an annotation names: first as a path relative to the annotation
    file or the given images folder, then by file name anywhere under the search roots.

    With `allowed`, a path the importing user may not read is never looked at (not even
    checked for existence): a name that only leads there is refused by its text alone."""

    def __init__(self, roots: list[Path], allowed: Allowed | None = None):
        self.allowed = allowed or (lambda _path: True)
        self.roots = [Path(r) for r in roots if r is not None and self.allowed(Path(r))]
        self._by_name: dict[str, list[Path]] | None = None

    def usable(self, path: Path) -> bool:
        """An existing file the user may read."""
        return self.allowed(path) and path.is_file()

    def _index(self) -> dict[str, list[Path]]:
        if self._by_name is None:
            self._by_name = {}
            seen: set[Path] = set()
            for root in self.roots:
                if not root.is_dir():
                    continue
                for path in sorted(root.rglob("*")):
                    if path.suffix.lower() in IMAGE_SUFFIXES and self.usable(path):
                        resolved = path.resolve()
                        if resolved not in seen:
                            seen.add(resolved)
                            self._by_name.setdefault(path.name, []).append(path)
        return self._by_name

    def find(self, name: str, near: Path | None = None) -> tuple[Path | None, str | None]:
        """(path, None) when found, else (None, why)."""
        name = name.replace("\\", "/")
        refused = False
        for base in ([near] if near else []) + self.roots:
            candidate = Path(base) / name
            if not self.allowed(candidate):
                refused = True
            elif candidate.is_file():
                return candidate, None
        if refused and (Path(name).is_absolute() or ".." in Path(name).parts):
            return None, f"image {name!r} is outside the folders you may read from"
        matches = self._index().get(Path(name).name, [])
        if len(matches) == 1:
            return matches[0], None
        if len(matches) > 1:
            return None, (f"image {name!r} is ambiguous: {len(matches)} files have that name "
                          f"({', '.join(str(m) for m in matches[:3])})")
        return None, f"image {name!r} not found (looked in {', '.join(str(r) for r in self.roots)})"

    def find_by_stem(self, stems: list[str], near: Path | None = None) -> Path | None:
        """The one image file whose name without its suffix is one of `stems` (in order), next
        to the annotation or under the search roots; None when there is none or more than one
        (then the name lookup's reason stands)."""
        for stem in stems:
            if not stem:
                continue
            beside = [p for p in (sorted(near.glob(f"{glob.escape(stem)}.*")) if near and near.is_dir() else [])
                      if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
            if len(beside) == 1:
                return beside[0]
            if beside:
                return None
            anywhere = [p for name, paths in self._index().items() if Path(name).stem == stem
                        for p in paths]
            if len(anywhere) == 1:
                return anywhere[0]
            if anywhere:
                return None
        return None

    def all_images(self) -> list[Path]:
        return [p for paths in self._index().values() for p in paths]
