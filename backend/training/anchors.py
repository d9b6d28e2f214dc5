"""The TF OD API's `multiscale_anchor_generator`: its settings (`AnchorSpec`), the feature-map
size at each level and every anchor of an input canvas. numpy only, so the config doctor
(`backend/anchor_coverage.py`) reads the same settings without Keras or TensorFlow.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, kw_only=True)
class AnchorSpec:
    """`multiscale_anchor_generator` settings, with `anchor_generator.proto`'s defaults (and the
    zoo configs' aspect ratios: the field is repeated, so the proto has none)."""
    min_level: int = 3
    max_level: int = 7
    anchor_scale: float = 4.0
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5)
    scales_per_octave: int = 2

    @property
    def anchors_per_location(self) -> int:
        return len(self.aspect_ratios) * self.scales_per_octave


def feature_sizes(height: int, width: int, min_level: int, max_level: int) -> list[tuple[int, int]]:
    """Feature-map size at each level, as stride-2 'same' convolutions produce them: `ceil(size / 2)`
    per octave, so level l has `ceil(size / 2**l)` cells."""
    sizes = []
    h, w = height, width
    for level in range(1, max_level + 1):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        if level >= min_level:
            sizes.append((h, w))
    return sizes


def generate_anchors(height: int, width: int, spec: AnchorSpec) -> np.ndarray:
    """All anchors for an input of `height × width` pixels: `[A, 4]` float32 `yxyx`, normalised by
    `height` and `width` — the TF OD API's `multiscale_anchor_generator`.

    Order: level, then row, then column, then aspect ratio, then scale — inside a cell
    `(scale 0, ratio 0), (scale 1, ratio 0), (scale 0, ratio 1), ...`, the order the box
    predictor's outputs are flattened in. An anchor at level l with scale `2**(i / scales_per_octave)`
    and aspect ratio r is `anchor_scale · 2**l · scale` pixels times `(1/√r, √r)` (height, width).
    Centres sit on a grid of stride `2**l` pixels, offset by half a stride along an axis when the
    image size along it is a multiple of `2**l` (and by nothing otherwise, as the OD API does).
    Anchors are not clipped to the image.
    """
    # float32 arithmetic in the OD API's order, so the anchors equal its anchors bit for bit.
    f32 = np.float32
    out = []
    scales = np.asarray([2.0 ** (i / spec.scales_per_octave) for i in range(spec.scales_per_octave)], f32)
    ratios = np.asarray(spec.aspect_ratios, f32)
    scale_grid = np.tile(scales, len(ratios))           # ratio-major, scale-minor
    ratio_grid = np.repeat(ratios, len(scales))
    for level, (fh, fw) in zip(range(spec.min_level, spec.max_level + 1),
                                feature_sizes(height, width, spec.min_level, spec.max_level)):
        stride = 2 ** level
        base = f32(spec.anchor_scale * stride)
        ratio_sqrt = np.sqrt(ratio_grid)
        heights = scale_grid / ratio_sqrt * base
        widths = scale_grid * ratio_sqrt * base
        offset_y = f32(stride / 2 if height % stride == 0 else 0.0)
        offset_x = f32(stride / 2 if width % stride == 0 else 0.0)
        cy = np.arange(fh, dtype=f32) * f32(stride) + offset_y
        cx = np.arange(fw, dtype=f32) * f32(stride) + offset_x
        cy, cx = np.meshgrid(cy, cx, indexing="ij")  # [fh, fw]
        cy = np.broadcast_to(cy[:, :, None], (fh, fw, len(heights)))
        cx = np.broadcast_to(cx[:, :, None], (fh, fw, len(heights)))
        h = np.broadcast_to(heights, cy.shape)
        w = np.broadcast_to(widths, cx.shape)
        level_boxes = np.stack([cy - f32(0.5) * h, cx - f32(0.5) * w, cy + f32(0.5) * h, cx + f32(0.5) * w], axis=-1)
        level_boxes = level_boxes * np.asarray([f32(1) / f32(height), f32(1) / f32(width)] * 2, f32)
        out.append(level_boxes.reshape(-1, 4).astype(f32))
    return np.concatenate(out, axis=0).astype(np.float32)
