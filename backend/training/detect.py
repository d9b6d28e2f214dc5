"""Inference-time post-processing (TensorFlow only), as the TF OD API's SSD `postprocess` does it.

`postprocess` decodes the box encodings (faster_rcnn coder), turns the class logits into
sigmoid scores, drops the background column and runs the OD API's
`batch_multiclass_non_max_suppression` (its default settings: not class-agnostic, hard NMS,
`change_coordinate_frame`): per class, NMS on the unclipped decoded boxes keeps up to
`max_detections_per_class` boxes scoring above `score_threshold`; all classes' survivors are
sorted by score, clipped to the image window, boxes left with no area dropped, and the best
`max_total_detections` kept. Output boxes are `yxyx` normalised to the *image* (canvas padding
removed); classes are label-map ids ≥ 1 as float32 — the OD API's detection output contract.
Runs outside any XLA-compiled step: NMS has dynamic shapes.
"""
from __future__ import annotations

import tensorflow as tf

from backend.training import anchor_matching as box_ops
from backend.training.training_config import PostProcessing


def decode_boxes(box_encodings: tf.Tensor, anchors: tf.Tensor, scales=box_ops.DEFAULT_SCALES) -> tf.Tensor:
    """faster_rcnn decoding, in the OD API's arithmetic order: `[..., A, 4]` encodings
    `(ty, tx, th, tw)` against `[A, 4]` yxyx anchors → `[..., A, 4]` yxyx boxes."""
    anchors = tf.cast(anchors, tf.float32)
    ha = anchors[:, 2] - anchors[:, 0]
    wa = anchors[:, 3] - anchors[:, 1]
    yc_a = anchors[:, 0] + ha / 2.0
    xc_a = anchors[:, 1] + wa / 2.0
    ty, tx, th, tw = tf.unstack(box_encodings, axis=-1)
    ty, tx, th, tw = ty / scales[0], tx / scales[1], th / scales[2], tw / scales[3]
    w = tf.exp(tw) * wa
    h = tf.exp(th) * ha
    yc = ty * ha + yc_a
    xc = tx * wa + xc_a
    return tf.stack([yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0], axis=-1)


def _sort_by_score(tensors: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    order = tf.nn.top_k(tensors["scores"], k=tf.shape(tensors["scores"])[0], sorted=True).indices
    return {k: tf.gather(v, order) for k, v in tensors.items()}


def _nms_one_image(boxes, scores, multiclass, window, post: PostProcessing):
    """One image: boxes `[A, 4]`, scores `[A, C]` (no background), multiclass `[A, C + 1]`,
    window `[4]` (the image inside the canvas). Returns padded `[N, ...]` tensors and the count."""
    num_boxes = tf.shape(boxes)[0]
    max_selection = tf.minimum(post.max_detections_per_class, num_boxes)
    picked = {"indices": [], "scores": [], "classes": []}
    for class_index in range(scores.shape[1]):
        indices, selected = tf.image.non_max_suppression_with_scores(
            boxes, scores[:, class_index], max_selection, iou_threshold=post.iou_threshold,
            score_threshold=post.score_threshold, soft_nms_sigma=0.0)
        missing = max_selection - tf.shape(indices)[0]
        picked["indices"].append(tf.concat([indices, tf.zeros([missing], tf.int32)], 0))
        picked["scores"].append(tf.concat([selected, -tf.ones([missing], tf.float32)], 0))
        picked["classes"].append(tf.fill([max_selection], float(class_index)))
    found = {k: tf.concat(v, 0) for k, v in picked.items()}
    found = _sort_by_score(found)
    # Clip to the window; boxes left without area are dropped.
    chosen = tf.gather(boxes, found["indices"])
    ymin, xmin, ymax, xmax = tf.unstack(chosen, axis=1)
    ymin = tf.maximum(tf.minimum(ymin, window[2]), window[0])
    ymax = tf.maximum(tf.minimum(ymax, window[2]), window[0])
    xmin = tf.maximum(tf.minimum(xmin, window[3]), window[1])
    xmax = tf.maximum(tf.minimum(xmax, window[3]), window[1])
    clipped = tf.stack([ymin, xmin, ymax, xmax], axis=1)
    keep = tf.reshape(tf.where((ymax - ymin) * (xmax - xmin) > 0.0), [-1])
    found = {k: tf.gather(v, keep) for k, v in found.items()}
    found["boxes"] = tf.gather(clipped, keep)
    num_valid = tf.reduce_sum(tf.cast(found["scores"] >= 0, tf.int32))
    found = _sort_by_score(found)
    # Normalised to the window (the image without canvas padding).
    height, width = window[2] - window[0], window[3] - window[1]
    found["boxes"] = (found["boxes"] - tf.stack([window[0], window[1], window[0], window[1]])) * \
        tf.stack([1.0 / height, 1.0 / width, 1.0 / height, 1.0 / width])
    total = post.max_total_detections
    num_valid = tf.minimum(num_valid, total)
    found = {k: v[:num_valid] for k, v in found.items()}
    pad = total - num_valid
    out = {
        "detection_boxes": tf.pad(found["boxes"], [[0, pad], [0, 0]]),
        "detection_scores": tf.pad(found["scores"], [[0, pad]]),
        "detection_classes": tf.pad(found["classes"] + 1.0, [[0, pad]]),
        "detection_multiclass_scores": tf.pad(tf.gather(multiclass, found["indices"]), [[0, pad], [0, 0]]),
        "detection_anchor_indices": tf.pad(tf.cast(found["indices"], tf.float32), [[0, pad]]),
    }
    return out, num_valid


def postprocess(outputs: dict[str, tf.Tensor], anchors: tf.Tensor, post: PostProcessing,
                valid: tf.Tensor | None = None, scales=box_ops.DEFAULT_SCALES) -> dict[str, tf.Tensor]:
    """Model outputs `{"box_deltas" [B, A, 4], "class_logits" [B, A, C + 1]}` (column 0 the
    background) → detections.

    `valid` `[B, 2]` is the fraction of the canvas the image covers (keep_aspect_ratio padding):
    the clip window. Returns `detection_boxes [B, N, 4]`, `detection_scores [B, N]`,
    `detection_classes [B, N]` (label-map ids, float32), `detection_multiclass_scores [B, N, C + 1]`,
    `detection_anchor_indices [B, N]` (float32, as the OD API exports them), `num_detections [B]`
    (float32) with `N = max_total_detections`, zero-padded; and `raw_detection_boxes [B, A, 4]`
    (decoded, normalised to the canvas, unclipped) and `raw_detection_scores [B, A, C + 1]`.
    """
    decoded = decode_boxes(outputs["box_deltas"], anchors, scales)
    with_background = tf.sigmoid(outputs["class_logits"])
    batch = tf.shape(decoded)[0]
    if valid is None:
        windows = tf.tile(tf.constant([[0.0, 0.0, 1.0, 1.0]]), [batch, 1])
    else:
        valid = tf.cast(valid, tf.float32)
        windows = tf.concat([tf.zeros_like(valid), valid], axis=-1)

    def one(args):
        boxes, scores, window = args
        found, count = _nms_one_image(boxes, scores[:, 1:], scores, window, post)
        return {**found, "num_detections": tf.cast(count, tf.float32)}

    signature = {
        "detection_boxes": tf.TensorSpec([post.max_total_detections, 4], tf.float32),
        "detection_scores": tf.TensorSpec([post.max_total_detections], tf.float32),
        "detection_classes": tf.TensorSpec([post.max_total_detections], tf.float32),
        "detection_multiclass_scores": tf.TensorSpec([post.max_total_detections, with_background.shape[-1]],
                                                     tf.float32),
        "detection_anchor_indices": tf.TensorSpec([post.max_total_detections], tf.float32),
        "num_detections": tf.TensorSpec([], tf.float32),
    }
    detections = tf.map_fn(one, (decoded, with_background, windows), fn_output_signature=signature)
    detections["raw_detection_boxes"] = decoded
    detections["raw_detection_scores"] = with_background
    return detections
