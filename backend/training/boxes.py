"""Anchors, the faster_rcnn box coder and the argmax matcher, in Keras 3 ops.

Inside the model every box is `yxyx` normalised to the model's input canvas:
`[ymin, xmin, ymax, xmax]` in [0, 1]. Format conversion, IoU and the delta encoding come from
`keras.utils.bounding_boxes`; this module only adds what the TF OD API does on top of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from keras import ops
from keras.utils import bounding_boxes

# The TF OD API's faster_rcnn_box_coder scales (y, x, height, width) = (10, 10, 5, 5) are
# Keras' `variance` inverted: deltas are divided by the variance.
DEFAULT_SCALES = (10.0, 10.0, 5.0, 5.0)


@dataclass(frozen=True)
class AnchorSpec:
    """`multiscale_anchor_generator` settings."""
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


def _variance(scales) -> list[float]:
    return [1.0 / float(s) for s in scales]


def encode(boxes, anchors, scales=DEFAULT_SCALES):
    """faster_rcnn coder: `boxes` `[..., A, 4]` yxyx against `anchors` `[A, 4]` yxyx → deltas
    `[..., A, 4]` as `(ty, tx, th, tw) = (10·dy/ha, 10·dx/wa, 5·log(h/ha), 5·log(w/wa))`."""
    return bounding_boxes.encode_box_to_deltas(
        anchors=anchors, boxes=boxes, anchor_format="yxyx", box_format="yxyx",
        encoding_format="center_yxhw", variance=_variance(scales))


def decode(deltas, anchors, scales=DEFAULT_SCALES):
    """Inverse of `encode`: deltas `[..., A, 4]` → boxes `[..., A, 4]` yxyx."""
    return bounding_boxes.decode_deltas_to_boxes(
        anchors=anchors, boxes_delta=deltas, anchor_format="yxyx", box_format="yxyx",
        encoded_format="center_yxhw", variance=_variance(scales))


def iou(boxes1, boxes2):
    """Pairwise IoU of yxyx boxes: `[B, N, 4]` × `[B, M, 4]` (or unbatched `[N, 4]`) → `[B, N, M]`."""
    return bounding_boxes.compute_iou(boxes1, boxes2, bounding_box_format="yxyx")


@dataclass(frozen=True)
class MatcherSpec:
    """`argmax_matcher` settings."""
    matched_threshold: float = 0.5
    unmatched_threshold: float = 0.5
    force_match_for_each_row: bool = True


def match(anchors, gt_boxes, gt_valid, spec: MatcherSpec = MatcherSpec()):
    """Argmax matching of anchors to ground truth, per image.

    anchors `[A, 4]`, gt_boxes `[B, M, 4]` (yxyx), gt_valid `[B, M]` bool (False for padding).
    Returns `(matched_gt [B, A] int32, state [B, A] int32)` where state is 1 matched,
    0 unmatched (background) and -1 ignored (IoU between the two thresholds).
    With `force_match_for_each_row`, every real box also claims its best anchor.
    """
    similarity = iou(gt_boxes, anchors)  # [B, M, A]
    valid = ops.expand_dims(gt_valid, -1)
    similarity = ops.where(valid, similarity, -1.0)
    best_gt = ops.cast(ops.argmax(similarity, axis=1), "int32")  # [B, A]
    best_iou = ops.max(similarity, axis=1)
    state = ops.where(best_iou >= spec.matched_threshold, 1,
                      ops.where(best_iou < spec.unmatched_threshold, 0, -1))
    state = ops.cast(state, "int32")
    if spec.force_match_for_each_row:
        num_anchors = ops.shape(similarity)[2]
        best_anchor = ops.argmax(similarity, axis=2)  # [B, M]
        claims = ops.one_hot(best_anchor, num_anchors) * ops.cast(valid, "float32")  # [B, M, A]
        forced = ops.max(claims, axis=1) > 0  # [B, A]
        forced_gt = ops.cast(ops.argmax(claims, axis=1), "int32")
        best_gt = ops.where(forced, forced_gt, best_gt)
        state = ops.where(forced, 1, state)
    return best_gt, ops.cast(state, "int32")
