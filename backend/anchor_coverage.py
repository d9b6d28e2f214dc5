"""How well a config's anchors can match a dataset's boxes: numpy only (no TensorFlow, no Keras).

Boxes here are pixels of the model's input canvas, `[N, 4]` as `(ymin, xmin, ymax, xmax)`.

The anchors are those of the TF OD API's `multiscale_anchor_generator` as the trainer builds
them (`backend.training.anchors.generate_anchors`): at level l a feature map of
`ceil(size / 2**l)` cells per side (stride-2 'same' convolutions), one anchor per
(octave, aspect ratio) centred on each cell, of side `anchor_scale * 2**l * 2**(octave /
scales_per_octave)` for aspect ratio 1 and `height = side / sqrt(ratio)`, `width = side *
sqrt(ratio)` otherwise. The doctor never builds that `[A, 4]` array: for one anchor shape, the
overlap with a box along each axis depends only on the distance between the centres and
shrinks with it, so the anchor of that shape centred on the cell nearest to the box's centre
(per axis) has the best IoU. `best_iou` therefore takes `levels × shapes` evaluations per box
instead of `A`, gives exactly the maximum over all anchors, and does not depend on the order
in which the trainer lists them (tests/test_config_doctor.py compares it with a brute-force
maximum over `generate_anchors`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from backend.training.anchors import AnchorSpec, feature_sizes


@dataclass(frozen=True)
class AnchorGrid(AnchorSpec):
    """The trainer's `multiscale_anchor_generator` settings (`AnchorSpec`, keyword arguments)
    on a `height × width` input canvas."""
    height: int
    width: int

    def cells(self, level: int) -> tuple[int, int]:
        """Feature-map rows and columns at `level`, as the trainer's network has them."""
        return feature_sizes(self.height, self.width, level, level)[0]

    def shapes(self, level: int) -> np.ndarray:
        """`[K, 2]` anchor `(height, width)` in pixels at `level`, K = octaves × aspect ratios."""
        base = self.anchor_scale * 2.0 ** level
        out = []
        for octave in range(self.scales_per_octave):
            side = base * 2.0 ** (octave / self.scales_per_octave)
            for ratio in self.aspect_ratios:
                out.append((side / math.sqrt(ratio), side * math.sqrt(ratio)))
        return np.asarray(out, dtype=np.float64)

    def anchor_sizes(self) -> list[dict]:
        """One row per anchor shape: level, octave scale, aspect ratio, height, width and
        `size` (the square root of the area, as object sizes are measured), in pixels."""
        rows = []
        for level in range(self.min_level, self.max_level + 1):
            shapes = self.shapes(level)
            k = 0
            for octave in range(self.scales_per_octave):
                for ratio in self.aspect_ratios:
                    h, w = shapes[k]
                    rows.append({"level": level, "octave": octave, "aspect_ratio": ratio,
                                 "height": float(h), "width": float(w), "size": float(math.sqrt(h * w))})
                    k += 1
        return rows


def _overlap(lo: np.ndarray, hi: np.ndarray, centre: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """1-D overlap of `[lo, hi]` `[N, 1]` with intervals `centre ± extent / 2` `[N, K]`."""
    return np.clip(np.minimum(hi, centre + extent / 2) - np.maximum(lo, centre - extent / 2), 0.0, None)


def best_iou(boxes: np.ndarray, grid: AnchorGrid) -> np.ndarray:
    """`[N]` float64: each box's highest IoU with any anchor of `grid` (boxes `[N, 4]` yxyx px)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros(0)
    y0, x0, y1, x1 = (boxes[:, i:i + 1] for i in range(4))
    area = (y1 - y0) * (x1 - x0)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    best = np.zeros(len(boxes))
    for level in range(grid.min_level, grid.max_level + 1):
        rows, cols = grid.cells(level)
        stride = 2.0 ** level
        # The nearest anchor centre along each axis. As the OD API's multiscale generator places
        # them: i · stride + offset, the offset half a stride when the side is a multiple of
        # the stride and 0 otherwise (backend/training/anchors.generate_anchors).
        offset_y = stride / 2 if grid.height % stride == 0 else 0.0
        offset_x = stride / 2 if grid.width % stride == 0 else 0.0
        ay = np.clip(np.floor((cy - offset_y) / stride + 0.5), 0, rows - 1) * stride + offset_y
        ax = np.clip(np.floor((cx - offset_x) / stride + 0.5), 0, cols - 1) * stride + offset_x
        shapes = grid.shapes(level)
        ah, aw = shapes[None, :, 0], shapes[None, :, 1]
        inter = _overlap(y0, y1, ay, ah) * _overlap(x0, x1, ax, aw)
        iou = inter / np.maximum(area + ah * aw - inter, 1e-12)
        best = np.maximum(best, iou.max(axis=1))
    return best


def ratio_tolerance(matched_threshold: float) -> float:
    """How far (as a factor) a box's width/height ratio may be from an anchor's for the pair
    to reach `matched_threshold` at all: a box of ratio `k·r` against an anchor of ratio r with
    the same area and centre has IoU `1 / (2·sqrt(k) − 1)`, its best, which reaches t while
    `k ≤ ((1 + t) / (2t))²` (2.25 at t = 0.5)."""
    return ((1.0 + matched_threshold) / (2.0 * matched_threshold)) ** 2


def shape_unmatchable(ratios: np.ndarray, aspect_ratios: tuple[float, ...], matched_threshold: float) -> np.ndarray:
    """`[N]` bool: box width/height `ratios` farther than `ratio_tolerance` from every anchor
    aspect ratio, so that no anchor, whatever its size and position, reaches the threshold."""
    ratios = np.asarray(ratios, dtype=np.float64).reshape(-1, 1)
    anchor = np.asarray(aspect_ratios, dtype=np.float64).reshape(1, -1)
    apart = np.maximum(ratios / anchor, anchor / np.maximum(ratios, 1e-12))
    return np.all(apart > ratio_tolerance(matched_threshold), axis=1)


def to_canvas(boxes: np.ndarray, image_hw: np.ndarray, resizer: dict) -> np.ndarray:
    """Normalised yxyx boxes `[N, 4]` of images `[N, 2]` (height, width) → pixels of the model
    input canvas, as the trainer resizes: `fixed_shape` stretches the image to the canvas;
    `keep_aspect_ratio` scales so the short side is `min_dimension` unless the long side would
    pass `max_dimension`, and pads bottom/right to the `max_dimension` square."""
    boxes = np.clip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), 0.0, 1.0)
    if resizer["kind"] == "fixed_shape":
        scale = np.array([[resizer["height"], resizer["width"]]], dtype=np.float64)
        scale = np.repeat(scale, len(boxes), axis=0)
    else:
        hw = np.asarray(image_hw, dtype=np.float64).reshape(-1, 2)
        factor = np.minimum(resizer["min_dimension"] / hw.min(axis=1), resizer["max_dimension"] / hw.max(axis=1))
        scale = np.minimum(np.round(hw * factor[:, None]), resizer["max_dimension"])
    return boxes * np.concatenate([scale, scale], axis=1)
