"""Image ingest: validate, orient, normalise, dedupe, store — the one way images enter Boxwise.

The stored image is exactly what labelers see and what exports contain: EXIF orientation
is applied once here, and CMYK, 16-bit, palette and alpha images become 8-bit RGB. When
nothing had to change, the original bytes are stored unchanged (no re-encoding). Files are
content-addressed: `data/images/<sha[:2]>/<sha256>.<jpg|png>`, where sha256 is of the
stored bytes (the `image/key/sha256` of exported TFRecords).
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

import numpy as np
import sqlite_utils
from PIL import Image, ImageFile, ImageOps

from backend import atomic, settings
from backend.auth import require
from backend.db import now, one, transaction
from backend.errors import Invalid, NotFound
from backend.projects import get_project

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a grey half-image

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
ACCEPTED_FORMATS = {"JPEG", "MPO", "PNG", "BMP", "WEBP", "TIFF", "GIF"}
# Limits for .zip uploads: total uncompressed bytes and the compression ratio of any entry.
MAX_ZIP_TOTAL_BYTES = int(os.environ.get("BOXWISE_MAX_ZIP_BYTES", 4 * 1024**3))
MAX_ZIP_RATIO = 100
MAX_FILE_BYTES = int(os.environ.get("BOXWISE_MAX_FILE_BYTES", 512 * 1024**2))


class ImageRejected(Invalid):
    """One input file is not an acceptable image; the message says why."""


@dataclass
class PreparedImage:
    """A validated image ready to store: the exact bytes, their format and pixel size."""
    data: bytes
    format: str          # "jpeg" | "png", as in the TFRecord's image/format
    width: int
    height: int
    changed: list[str]   # what was done to the original ("rotated by EXIF", "CMYK → RGB"); empty when kept

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class IngestItem:
    name: str
    outcome: str                 # "accepted" | "duplicate" | "rejected" | "skipped"
    message: str = ""
    image_id: int | None = None


@dataclass
class IngestReport:
    items: list[IngestItem] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for item in self.items if item.outcome == outcome)

    @property
    def accepted(self) -> int:
        return self.count("accepted")

    @property
    def rejected(self) -> int:
        return self.count("rejected")

    @property
    def ok(self) -> bool:
        return self.rejected == 0

    def rows(self) -> list[dict]:
        return [{"file": i.name, "outcome": i.outcome, "message": i.message, "image_id": i.image_id}
                for i in self.items]


# ---------------------------------------------------------------- decoding and normalising


def prepare_image(data: bytes, max_pixels: int | None = None) -> PreparedImage:
    """Decode `data` fully and return the bytes to store. Raises ImageRejected with the reason."""
    if not data:
        raise ImageRejected("empty file")
    if len(data) > MAX_FILE_BYTES:
        raise ImageRejected(f"file is larger than {MAX_FILE_BYTES // 1024**2} MB")
    max_pixels = max_pixels or settings.max_image_pixels()
    image = open_image(data, max_pixels)
    changed: list[str] = []
    if getattr(image, "n_frames", 1) > 1 and image.format in ("GIF", "TIFF", "WEBP"):
        image.seek(0)
        changed.append("first frame of an animated or multi-page file")
    original_format = image.format
    oriented = ImageOps.exif_transpose(image)
    if oriented is not image:
        orientation = image.getexif().get(0x0112, 1)
        if orientation != 1:
            changed.append(f"rotated by EXIF orientation {orientation}")
        image = oriented
    rgb, note = to_rgb(image)
    if note:
        changed.append(note)
    if original_format in ("JPEG", "MPO", "PNG") and not changed:
        fmt = "jpeg" if original_format in ("JPEG", "MPO") else "png"
        return PreparedImage(data, fmt, image.width, image.height, [])
    if original_format not in ("JPEG", "MPO", "PNG"):
        changed.append(f"{original_format} stored as PNG")
    # Lossy sources stay JPEG (quality 95); everything else is stored losslessly as PNG.
    out = io.BytesIO()
    if original_format in ("JPEG", "MPO"):
        rgb.save(out, format="JPEG", quality=95, subsampling=0)
        fmt = "jpeg"
    else:
        rgb.save(out, format="PNG", compress_level=6)
        fmt = "png"
    return PreparedImage(out.getvalue(), fmt, rgb.width, rgb.height, changed)


def open_image(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode an image, with Boxwise's checks. Raises ImageRejected."""
    max_pixels = max_pixels or settings.max_image_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise ImageRejected(f"unsupported image format {image.format}")
            if image.width * image.height > max_pixels:
                raise ImageRejected(
                    f"image is {image.width}×{image.height} = {image.width * image.height / 1e6:g} "
                    f"megapixels, over the limit of {max_pixels / 1e6:g} megapixels "
                    "(a decompression bomb, or set BOXWISE_MAX_PIXELS)")
            if image.width < 1 or image.height < 1:
                raise ImageRejected("image has no pixels")
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"decompression bomb: {exc}") from None
    except Image.UnidentifiedImageError:
        kind = _signature(data)
        if kind:
            raise ImageRejected(f"corrupt or truncated image: starts like a {kind} file but "
                                "cannot be decoded") from None
        raise ImageRejected("not an image (the content is not a format Pillow can read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(f"corrupt or truncated image: {exc}") from None
    return image


_SIGNATURES = [(b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"),
               (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")]


def _signature(data: bytes) -> str | None:
    """The image format a file claims by its first bytes, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)


def to_rgb(image: Image.Image) -> tuple[Image.Image, str | None]:
    """8-bit RGB (or 8-bit grayscale, which every decoder reads as RGB) and a note of the change."""
    mode = image.mode
    if mode in ("RGB", "L"):
        return image, None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit and 32-bit grayscale: scale the full range into 8 bits rather than clipping.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        scaled = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, "L").convert("RGB"), f"{mode} 16-bit → 8-bit RGB"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), \
            f"{mode} with transparency → RGB on white"
    if mode == "CMYK":
        return image.convert("RGB"), "CMYK → RGB"
    if mode == "RGBX" or mode.startswith("RGB"):
        return image.convert("RGB"), f"{mode} → RGB"
    return image.convert("RGB"), f"{mode} → RGB"


# ---------------------------------------------------------------- reading inputs


def iter_zip(data_or_path, name: str) -> Iterator[tuple[str, bytes | ImageRejected]]:
    """Yield (entry name, bytes) for each file in a zip, or (entry name, ImageRejected).

    Refuses absolute paths and `..`, symlinks, and zip bombs: total uncompressed size over
    MAX_ZIP_TOTAL_BYTES refuses the whole archive, an entry with a ratio over MAX_ZIP_RATIO
    is refused, and no entry is trusted to be as small as its header says.
    """
    source = io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray)) else data_or_path
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        yield name, ImageRejected(f"not a valid zip file: {exc}")
        return
    with archive:
        entries = [e for e in archive.infolist() if not e.is_dir()]
        total = sum(e.file_size for e in entries)
        if total > MAX_ZIP_TOTAL_BYTES:
            yield name, ImageRejected(
                f"zip would expand to {total / 1024**2:.0f} MB, over the limit of "
                f"{MAX_ZIP_TOTAL_BYTES / 1024**2:.0f} MB (zip bomb?)")
            return
        for entry in entries:
            label = f"{name}/{entry.filename}"
            path = PurePosixPath(entry.filename.replace("\\", "/"))
            if path.is_absolute() or entry.filename.startswith(("/", "\\")) or \
                    (len(entry.filename) > 1 and entry.filename[1] == ":"):
                yield label, ImageRejected("zip entry has an absolute path")
                continue
            if ".." in path.parts:
                yield label, ImageRejected("zip entry path contains '..'")
                continue
            if stat.S_ISLNK(entry.external_attr >> 16):
                yield label, ImageRejected("zip entry is a symbolic link")
                continue
            if path.parts and (path.parts[0] == "__MACOSX" or path.name.startswith("._")):
                continue  # macOS resource forks: metadata, not images
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                yield label, ImageRejected(f"not an image file type ({path.suffix or 'no extension'})")
                continue
            if entry.compress_size and entry.file_size / entry.compress_size > MAX_ZIP_RATIO:
                yield label, ImageRejected(
                    f"compression ratio {entry.file_size / entry.compress_size:.0f}:1 is over "
                    f"{MAX_ZIP_RATIO}:1 (zip bomb?)")
                continue
            try:
                with archive.open(entry) as handle:
                    data = handle.read(min(entry.file_size, MAX_FILE_BYTES) + 1)
            except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as exc:
                yield label, ImageRejected(f"cannot read zip entry: {exc}")
                continue
            if len(data) > entry.file_size or len(data) > MAX_FILE_BYTES:
                yield label, ImageRejected("zip entry is larger than its header says (zip bomb?)")
                continue
            yield label, data


def iter_paths(paths: Iterable[str | Path]) -> Iterator[tuple[str, bytes | ImageRejected]]:
    """Yield (name, bytes) for image files, folders (recursively) and zips given on a command line."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if child.suffix.lower() in IMAGE_EXTENSIONS or child.suffix.lower() == ".zip":
                    yield from iter_paths([child])
        elif not path.exists():
            yield str(path), ImageRejected("no such file or folder")
        elif path.suffix.lower() == ".zip":
            with open(path, "rb") as handle:
                yield from iter_zip(handle, str(path))
        else:
            yield str(path), path.read_bytes()


def iter_uploads(uploads: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, bytes | ImageRejected]]:
    """Yield (name, bytes) for uploaded files, expanding .zip uploads."""
    for name, data in uploads:
        if name.lower().endswith(".zip"):
            yield from iter_zip(data, name)
        else:
            yield name, data


# ---------------------------------------------------------------- storing


def stored_path(sha256: str, fmt: str) -> Path:
    """Absolute path of a content-addressed image file."""
    return settings.subdir("images") / sha256[:2] / f"{sha256}.{'jpg' if fmt == 'jpeg' else 'png'}"


def image_file(image: dict) -> Path:
    """Absolute path of a stored image row's file."""
    return settings.data_dir() / image["path"]


def read_image_bytes(image: dict) -> bytes:
    return image_file(image).read_bytes()


def ingest(db: sqlite_utils.Database, actor: dict, project_id: int,
           files: Iterable[tuple[str, bytes | ImageRejected]], *, total: int | None = None,
           on_progress: Callable[[int, int | None, str], None] | None = None,
           max_pixels: int | None = None) -> IngestReport:
    """Validate and store each file; one report line per file. Accepted files stay stored even
    when others are rejected; a rejected file leaves nothing behind."""
    require(actor, "ingest")
    get_project(db, project_id)
    report = IngestReport()
    for done, (name, data) in enumerate(files, start=1):
        report.items.append(_ingest_one(db, actor, project_id, name, data, max_pixels))
        if on_progress:
            on_progress(done, total, name)
    return report


def _ingest_one(db, actor, project_id, name, data, max_pixels) -> IngestItem:
    if isinstance(data, ImageRejected):
        return IngestItem(name, "rejected", str(data))
    try:
        prepared = prepare_image(data, max_pixels)
    except ImageRejected as exc:
        return IngestItem(name, "rejected", str(exc))
    sha = prepared.sha256
    existing = one(db, "select id, filename from images where project_id = ? and sha256 = ?",
                   [project_id, sha])
    if existing:
        return IngestItem(name, "duplicate",
                          f"same content as image #{existing['id']} ({existing['filename']})",
                          existing["id"])
    target = stored_path(sha, prepared.format)
    created_file = not target.exists()
    if created_file:
        atomic.write_bytes(target, prepared.data)
    try:
        with transaction(db):
            image_id = db["images"].insert({
                "project_id": project_id, "sha256": sha,
                "path": str(target.relative_to(settings.data_dir())),
                "filename": PurePosixPath(name.replace("\\", "/")).name, "width": prepared.width,
                "height": prepared.height, "format": prepared.format,
                "size_bytes": len(prepared.data), "status": "new", "version": 0,
                "created_at": now(), "created_by": actor.get("id"), "updated_at": now(),
            }).last_pk
    except Exception:
        if created_file and not one(db, "select id from images where sha256 = ?", [sha]):
            target.unlink(missing_ok=True)
        raise
    message = "; ".join(prepared.changed) if prepared.changed else "stored unchanged"
    return IngestItem(name, "accepted", message, image_id)


# ---------------------------------------------------------------- queries


def get_image(db: sqlite_utils.Database, image_id: int) -> dict:
    row = one(db, "select * from images where id = ?", [image_id])
    if row is None:
        raise NotFound(f"no image with id {image_id}")
    return row


def list_images(db: sqlite_utils.Database, project_id: int, *, status: str | None = None,
                limit: int = 100, offset: int = 0) -> list[dict]:
    where, params = "project_id = ?", [project_id]
    if status:
        where += " and status = ?"
        params.append(status)
    return list(db.query(f"select * from images where {where} order by id limit ? offset ?",
                         params + [limit, offset]))


def stats(db: sqlite_utils.Database, project_id: int) -> dict:
    """`{"images": n, "by_status": {...}, "boxes": n, "boxes_per_class": {...}}` (human boxes)."""
    get_project(db, project_id)
    by_status = {r["status"]: r["n"] for r in db.query(
        "select status, count(*) as n from images where project_id = ? group by status order by status",
        [project_id])}
    per_class = {r["name"]: r["n"] for r in db.query("""
        select labels.name, count(annotations.id) as n from labels
        left join annotations on annotations.label_id = labels.id and annotations.source = 'human'
        where labels.project_id = ? group by labels.id order by labels.position, labels.label_map_id""",
        [project_id])}
    return {"images": sum(by_status.values()), "by_status": by_status,
            "boxes": sum(per_class.values()), "boxes_per_class": per_class}
