"""SSD targets and losses: sigmoid focal classification, smooth-L1 localisation, in Keras 3 ops.

Shapes: anchors `[A, 4]`, predictions `box_deltas [B, A, 4]` and `class_logits [B, A, C]`,
ground truth `gt_boxes [B, M, 4]` (yxyx, normalised) and `gt_classes [B, M]` int (label-map
ids ≥ 1; 0 marks padding). Class index k of the logits is label-map id k + 1; background is
all-zeros (`encode_background_as_zeros`).
"""
from __future__ import annotations

from dataclasses import dataclass

from keras import ops

from backend.training import boxes as box_ops


@dataclass(frozen=True)
class LossSpec:
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    classification_weight: float = 1.0
    localization_weight: float = 1.0
    smooth_l1_delta: float = 1.0
    normalize_by_num_matches: bool = True
    normalize_loc_by_codesize: bool = True


def sigmoid_focal_loss(labels, logits, alpha: float = 0.25, gamma: float = 2.0):
    """Element-wise focal loss (Lin et al. 2017): `labels`, `logits` `[..., C]` → `[..., C]`.

    `CE · (1 − p_t)^γ · α_t` with `p_t` the probability of the true label and
    `α_t = α` for positives, `1 − α` for negatives.
    """
    logits = ops.cast(logits, "float32")
    labels = ops.cast(labels, "float32")
    ce = ops.maximum(logits, 0.0) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits)))
    prob = ops.sigmoid(logits)
    p_t = labels * prob + (1.0 - labels) * (1.0 - prob)
    modulator = ops.power(1.0 - p_t, gamma)
    alpha_t = labels * alpha + (1.0 - labels) * (1.0 - alpha)
    return alpha_t * modulator * ce


def smooth_l1(targets, predictions, delta: float = 1.0):
    """Huber loss summed over the last axis: `[..., 4]` → `[...]`."""
    diff = ops.abs(ops.cast(predictions, "float32") - targets)
    quadratic = ops.minimum(diff, delta)
    return ops.sum(0.5 * quadratic * quadratic + delta * (diff - quadratic), axis=-1)


def assign_targets(anchors, gt_boxes, gt_classes, num_classes: int,
                   matcher=box_ops.MatcherSpec(), scales=box_ops.DEFAULT_SCALES):
    """Per-anchor training targets.

    Returns `(box_targets [B, A, 4], class_targets [B, A, C], box_weights [B, A],
    class_weights [B, A])`: box weights are 1 on matched anchors, class weights 0 on ignored.
    """
    valid = gt_classes > 0
    matched_gt, state = box_ops.match(anchors, gt_boxes, valid, matcher)
    matched_boxes = ops.take_along_axis(gt_boxes, ops.expand_dims(matched_gt, -1), axis=1)
    matched_classes = ops.take_along_axis(gt_classes, matched_gt, axis=1)
    positive = state == 1
    # Unmatched anchors get their own anchor as a dummy target (zero deltas, zero weight).
    safe_boxes = ops.where(ops.expand_dims(positive, -1), matched_boxes,
                           ops.broadcast_to(anchors, ops.shape(matched_boxes)))
    box_targets = box_ops.encode(safe_boxes, anchors, scales)
    class_ids = ops.where(positive, ops.cast(matched_classes, "int32") - 1, -1)
    class_targets = ops.one_hot(class_ids, num_classes)  # -1 → all zeros: background
    box_weights = ops.cast(positive, "float32")
    class_weights = ops.cast(state >= 0, "float32")
    return box_targets, class_targets, box_weights, class_weights


def ssd_losses(anchors, box_deltas, class_logits, gt_boxes, gt_classes, num_classes: int,
               spec: LossSpec = LossSpec(), matcher=box_ops.MatcherSpec(),
               scales=box_ops.DEFAULT_SCALES):
    """`{"localization": scalar, "classification": scalar, "num_matches": scalar}` for a batch.

    Both losses are summed over anchors and images, then divided by the number of matched
    anchors in the batch (at least 1), as the TF OD API does with `normalize_loss_by_num_matches`.
    """
    box_targets, class_targets, box_weights, class_weights = assign_targets(
        anchors, gt_boxes, gt_classes, num_classes, matcher, scales)
    num_matches = ops.sum(box_weights)
    normalizer = ops.maximum(num_matches, 1.0) if spec.normalize_by_num_matches else 1.0
    loc = ops.sum(smooth_l1(box_targets, box_deltas, spec.smooth_l1_delta) * box_weights)
    if spec.normalize_loc_by_codesize:
        loc = loc / 4.0
    cls = ops.sum(sigmoid_focal_loss(class_targets, class_logits, spec.focal_alpha, spec.focal_gamma)
                  * ops.expand_dims(class_weights, -1))
    return {
        "localization": spec.localization_weight * loc / normalizer,
        "classification": spec.classification_weight * cls / normalizer,
        "num_matches": num_matches,
    }
