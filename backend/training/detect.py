"""Inference-time post-processing (TensorFlow only): decode, sigmoid, batch NMS.

Runs outside any XLA-compiled step: `combined_non_max_suppression` has dynamic shapes.
Output boxes are `yxyx` normalised to the *image* (canvas padding removed), classes are
label-map ids ≥ 1 as float32 — the TF OD API's detection output contract.
"""
from __future__ import annotations

import tensorflow as tf

from backend.training import boxes as box_ops
from backend.training.config import PostProcessing


def postprocess(outputs: dict[str, tf.Tensor], anchors: tf.Tensor, post: PostProcessing,
                valid: tf.Tensor | None = None, scales=box_ops.DEFAULT_SCALES) -> dict[str, tf.Tensor]:
    """Model outputs `{"box_deltas" [B, A, 4], "class_logits" [B, A, C]}` → detections.

    `valid` `[B, 2]` is the fraction of the canvas the image covers (keep_aspect_ratio padding).
    Returns `detection_boxes [B, N, 4]`, `detection_scores [B, N]`, `detection_classes [B, N]`,
    `num_detections [B]` with `N = max_total_detections`.
    """
    decoded = box_ops.decode(outputs["box_deltas"], anchors, scales)
    scores = tf.sigmoid(outputs["class_logits"])
    if valid is not None:
        decoded = decoded / tf.expand_dims(tf.concat([valid, valid], axis=-1), 1)
    decoded = tf.clip_by_value(decoded, 0.0, 1.0)
    nms = tf.image.combined_non_max_suppression(
        tf.expand_dims(decoded, 2), scores,
        max_output_size_per_class=post.max_detections_per_class,
        max_total_size=post.max_total_detections, iou_threshold=post.iou_threshold,
        score_threshold=post.score_threshold, clip_boxes=False)
    return {
        "detection_boxes": nms.nmsed_boxes,
        "detection_scores": nms.nmsed_scores,
        "detection_classes": nms.nmsed_classes + 1.0,
        "num_detections": tf.cast(nms.valid_detections, tf.float32),
    }
