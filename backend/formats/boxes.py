"""Box conversions between the database and the outside formats — the only place they live.

The database (and every `backend/` layer above the formats) keeps boxes in pixels of the
stored image as `xmin, ymin, xmax, ymax` (float, x right, y down, origin at the top-left
corner of the top-left pixel, so a full-image box is `0, 0, width, height`).

Outside conventions:
  * TFRecord (TF OD API): normalised `xmin, ymin, xmax, ymax` in [0, 1].
  * YOLO: normalised `x_center, y_center, width, height`.
  * COCO: pixel `[x, y, width, height]`.
  * VOC and CSV: pixel `xmin, ymin, xmax, ymax` (the same as the database).
"""
from __future__ import annotations

import math

Box = tuple[float, float, float, float]


def to_normalized(box: Box, width: int, height: int) -> Box:
    """Pixel `(xmin, ymin, xmax, ymax)` → normalised `(xmin, ymin, xmax, ymax)` in [0, 1]."""
    xmin, ymin, xmax, ymax = box
    return xmin / width, ymin / height, xmax / width, ymax / height


def from_normalized(box: Box, width: int, height: int) -> Box:
    """Normalised `(xmin, ymin, xmax, ymax)` → pixel `(xmin, ymin, xmax, ymax)`."""
    xmin, ymin, xmax, ymax = box
    return xmin * width, ymin * height, xmax * width, ymax * height


def to_yolo(box: Box, width: int, height: int) -> Box:
    """Pixel `(xmin, ymin, xmax, ymax)` → YOLO normalised `(x_center, y_center, w, h)`."""
    xmin, ymin, xmax, ymax = box
    return ((xmin + xmax) / 2 / width, (ymin + ymax) / 2 / height,
            (xmax - xmin) / width, (ymax - ymin) / height)


def from_yolo(box: Box, width: int, height: int) -> Box:
    """YOLO normalised `(x_center, y_center, w, h)` → pixel `(xmin, ymin, xmax, ymax)`."""
    cx, cy, w, h = box
    return ((cx - w / 2) * width, (cy - h / 2) * height,
            (cx + w / 2) * width, (cy + h / 2) * height)


def to_coco(box: Box) -> list[float]:
    """Pixel `(xmin, ymin, xmax, ymax)` → COCO `[x, y, width, height]` (pixels)."""
    xmin, ymin, xmax, ymax = box
    return [xmin, ymin, xmax - xmin, ymax - ymin]


def from_coco(bbox) -> Box:
    """COCO `[x, y, width, height]` (pixels) → pixel `(xmin, ymin, xmax, ymax)`."""
    x, y, w, h = (float(v) for v in bbox)
    return x, y, x + w, y + h


def check_pixel_box(box: Box, width: int, height: int, tolerance: float = 1.0) -> str | None:
    """Why a pixel box cannot be imported as is, or None when it is fine.

    `tolerance` pixels of overshoot are accepted (VOC's 1-based `xmax = width` habit) and
    clipped by `clip`.
    """
    xmin, ymin, xmax, ymax = box
    if not all(math.isfinite(c) for c in box):
        return f"box ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) has coordinates that are not finite numbers"
    if xmax < xmin or ymax < ymin:
        return (f"box ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) has a negative size "
                "(max is smaller than min)")
    if xmin < -tolerance or ymin < -tolerance or xmax > width + tolerance or ymax > height + tolerance:
        return (f"box ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) lies outside its image "
                f"of {width}×{height} px")
    return None


def clip(box: Box, width: int, height: int) -> Box:
    """Clip a pixel box to `0..width`, `0..height`."""
    xmin, ymin, xmax, ymax = box
    return (min(max(xmin, 0.0), width), min(max(ymin, 0.0), height),
            min(max(xmax, 0.0), width), min(max(ymax, 0.0), height))


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two `xmin, ymin, xmax, ymax` boxes (0 when they do not meet)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union
