"""IoU, the faster_rcnn box coder and the argmax matcher, in Keras 3 ops (the anchors they
match are `backend.training.anchors`).

Inside the model every box is `yxyx` normalised to the model's input canvas:
`[ymin, xmin, ymax, xmax]` in [0, 1]. IoU, the faster_rcnn coder and the argmax matcher
compute what the TF OD API's `iou_similarity`, `faster_rcnn_box_coder` and `argmax_matcher` do,
operation for operation, so targets equal the OD API's to float rounding.
"""
from __future__ import annotations

from dataclasses import dataclass

from keras import ops

# The faster_rcnn_box_coder proto's default scales (y, x, height, width).
DEFAULT_SCALES = (10.0, 10.0, 5.0, 5.0)


# The faster_rcnn coder adds this to every height and width before dividing or taking a log
# (the TF OD API's `faster_rcnn_box_coder.EPSILON`).
CODER_EPSILON = 1e-8


def _centers_and_sizes(boxes):
    ymin, xmin, ymax, xmax = (boxes[..., i] for i in range(4))
    height = ymax - ymin
    width = xmax - xmin
    return ymin + height / 2.0, xmin + width / 2.0, height, width


def encode(boxes, anchors, scales=DEFAULT_SCALES):
    """faster_rcnn coder, as the TF OD API computes it: `boxes` `[..., A, 4]` yxyx against
    `anchors` `[A, 4]` yxyx → `[..., A, 4]` `(ty, tx, th, tw)` with
    `ty = y_scale·(yc − yc_a)/(h_a + ε)`, `tx = x_scale·(xc − xc_a)/(w_a + ε)`,
    `th = height_scale·log((h + ε)/(h_a + ε))`, `tw = width_scale·log((w + ε)/(w_a + ε))`,
    ε = `CODER_EPSILON`. `scales` is `(y_scale, x_scale, height_scale, width_scale)`."""
    boxes = ops.cast(boxes, "float32")
    anchors = ops.cast(anchors, "float32")
    yc_a, xc_a, h_a, w_a = _centers_and_sizes(anchors)
    yc, xc, h, w = _centers_and_sizes(boxes)
    h_a, w_a = h_a + CODER_EPSILON, w_a + CODER_EPSILON
    h, w = h + CODER_EPSILON, w + CODER_EPSILON
    sy, sx, sh, sw = (float(s) for s in scales)
    return ops.stack([sy * ((yc - yc_a) / h_a), sx * ((xc - xc_a) / w_a),
                      sh * ops.log(h / h_a), sw * ops.log(w / w_a)], axis=-1)


def decode(deltas, anchors, scales=DEFAULT_SCALES):
    """Inverse of `encode` (no ε, as the TF OD API decodes): deltas `[..., A, 4]` → boxes
    `[..., A, 4]` yxyx."""
    deltas = ops.cast(deltas, "float32")
    yc_a, xc_a, h_a, w_a = _centers_and_sizes(ops.cast(anchors, "float32"))
    sy, sx, sh, sw = (float(s) for s in scales)
    ty, tx, th, tw = (deltas[..., i] for i in range(4))
    w = ops.exp(tw / sw) * w_a
    h = ops.exp(th / sh) * h_a
    yc = (ty / sy) * h_a + yc_a
    xc = (tx / sx) * w_a + xc_a
    return ops.stack([yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0], axis=-1)


def iou(boxes1, boxes2):
    """Pairwise IoU of yxyx boxes as the TF OD API's `iou_similarity` computes it (0 where the
    intersection is 0, else intersection / union, no epsilon): `[..., N, 4]` × `[..., M, 4]` or
    `[M, 4]` → `[..., N, M]`."""
    boxes1 = ops.cast(boxes1, "float32")
    boxes2 = ops.cast(boxes2, "float32")
    a = ops.expand_dims(boxes1, -2)  # [..., N, 1, 4]
    b = ops.expand_dims(boxes2, -3)  # [..., 1, M, 4]
    heights = ops.maximum(0.0, ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0]))
    widths = ops.maximum(0.0, ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1]))
    intersections = heights * widths
    area1 = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area2 = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    unions = area1 + area2 - intersections
    safe = ops.where(intersections == 0.0, 1.0, unions)
    return ops.where(intersections == 0.0, 0.0, intersections / safe)


# Values of `match`'s result besides a ground-truth index (the TF OD API's Match encoding).
UNMATCHED = -1
IGNORED = -2


@dataclass(frozen=True)
class MatcherSpec:
    """`argmax_matcher` settings, with the TF OD API's proto defaults.

    `ignore_thresholds` builds the matcher without thresholds: every anchor matches its best
    box. `negatives_lower_than_unmatched` (default) makes anchors below `unmatched_threshold`
    background and those in `[unmatched, matched)` ignored; False swaps the two roles.
    """
    matched_threshold: float = 0.5
    unmatched_threshold: float = 0.5
    force_match_for_each_row: bool = False
    ignore_thresholds: bool = False
    negatives_lower_than_unmatched: bool = True


def match(anchors, gt_boxes, gt_valid, spec: MatcherSpec = MatcherSpec()):
    """The TF OD API's argmax matcher, per image: anchors `[A, 4]`, gt_boxes `[B, M, 4]` (yxyx),
    gt_valid `[B, M]` bool (False for padding) → `[B, A]` int32 holding, for each anchor, the
    index of its ground-truth box, `UNMATCHED` (-1, background) or `IGNORED` (-2).

    Each anchor takes its highest-IoU valid box (first on ties); its best IoU against the
    thresholds decides matched / unmatched / ignored. With `force_match_for_each_row` every
    valid box then claims its own best anchor (first anchor on ties), whatever its IoU; an
    anchor claimed by several boxes goes to the first of them. An image without valid boxes
    matches nothing.
    """
    similarity = iou(gt_boxes, anchors)  # [B, M, A]
    valid = ops.expand_dims(ops.cast(gt_valid, "bool"), -1)  # [B, M, 1]
    # Padding rows never win an anchor from a real box (IoUs are ≥ 0).
    masked = ops.where(valid, similarity, -1.0)
    matches = ops.cast(ops.argmax(masked, axis=1), "int32")  # [B, A]
    best = ops.max(masked, axis=1)
    if not spec.ignore_thresholds:
        below = best < spec.unmatched_threshold
        between = ops.logical_and(best >= spec.unmatched_threshold, best < spec.matched_threshold)
        low, mid = (UNMATCHED, IGNORED) if spec.negatives_lower_than_unmatched else (IGNORED, UNMATCHED)
        matches = ops.where(below, low, ops.where(between, mid, matches))
    if spec.force_match_for_each_row:
        num_anchors = ops.shape(similarity)[2]
        best_anchor = ops.argmax(similarity, axis=2)  # [B, M]
        claims = ops.one_hot(best_anchor, num_anchors) * ops.cast(valid, "float32")  # [B, M, A]
        forced = ops.max(claims, axis=1) > 0  # [B, A]
        forced_gt = ops.cast(ops.argmax(claims, axis=1), "int32")
        matches = ops.where(forced, forced_gt, matches)
    any_valid = ops.any(ops.cast(gt_valid, "bool"), axis=1, keepdims=True)  # [B, 1]
    return ops.cast(ops.where(any_valid, matches, UNMATCHED), "int32")
