"""SSD targets and losses as the TF OD API computes them, in Keras 3 ops.

Shapes: anchors `[A, 4]`, predictions `box_deltas [B, A, 4]` and `class_logits [B, A, C + 1]`
(column 0 is background, the OD API's `class_predictions_with_background`), ground truth
`gt_boxes [B, M, 4]` (yxyx, normalised) and `gt_classes [B, M]` int (label-map ids 1..C;
0 marks padding). Column k ≥ 1 of the logits is label-map id k.

What each piece does, after the OD API's `target_assigner`, `ssd_meta_arch.loss()` and
`model_lib_v2._compute_losses_and_predictions_dicts`:

- targets: every anchor is matched by `anchor_matching.match`. Class targets are the matched box's
  one-hot class with a background column in front (0 there); unmatched and ignored anchors get
  the "unmatched class label": background column 1 — or 0 with `encode_background_as_zeros` —
  and 0 elsewhere. Class weights are 1 for matched and unmatched anchors, 0 for ignored ones,
  repeated over all C + 1 columns. Box targets are the faster_rcnn encoding of the matched box
  (0 for unmatched/ignored anchors), box weights 1 on matched anchors only.
- classification: sigmoid focal loss over all C + 1 columns (background included), times the
  class weights, summed over anchors, columns and images.
- localization: smooth L1 (Huber, `delta`) per coordinate, times the box weights, summed.
- normalisation: both sums are divided by `max(1, Σ box weights)` over the whole batch (the
  number of matched anchors) when `normalize_loss_by_num_matches`; the localization loss also
  by the code size 4 when `normalize_loc_loss_by_codesize`; then multiplied by their weights.
- total: localization + classification + regularization (`regularization_loss`), the sum
  `model_lib_v2` differentiates.
"""
from __future__ import annotations

from dataclasses import dataclass

from keras import ops

from backend.training import anchor_matching as box_ops
CODE_SIZE = 4


@dataclass(frozen=True)
class LossSpec:
    """`model.ssd.loss` and the SSD normalisation flags, with the TF OD API's proto defaults.

    `focal_alpha` None means the config has no `alpha`: the OD API then applies no α factor.
    """
    focal_alpha: float | None = None
    focal_gamma: float = 2.0
    classification_weight: float = 1.0
    localization_weight: float = 1.0
    smooth_l1_delta: float = 1.0
    normalize_by_num_matches: bool = True
    normalize_loc_by_codesize: bool = False
    encode_background_as_zeros: bool = False


def sigmoid_focal_loss(labels, logits, alpha: float | None = 0.25, gamma: float = 2.0):
    """Element-wise focal loss (the OD API's `SigmoidFocalClassificationLoss`): `[..., C]` → `[..., C]`.

    `CE · (1 − p_t)^γ · α_t` with `p_t` the probability of the true label,
    `α_t = α` for positives and `1 − α` for negatives; no α factor when `alpha` is None and no
    modulating factor when `gamma` is 0.
    """
    logits = ops.cast(logits, "float32")
    labels = ops.cast(labels, "float32")
    ce = ops.maximum(logits, 0.0) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits)))
    prob = ops.sigmoid(logits)
    p_t = labels * prob + (1.0 - labels) * (1.0 - prob)
    loss = ce
    if gamma:
        loss = ops.power(1.0 - p_t, gamma) * loss
    if alpha is not None:
        loss = (labels * alpha + (1.0 - labels) * (1.0 - alpha)) * loss
    return loss


def smooth_l1(targets, predictions, delta: float = 1.0):
    """Huber loss (`0.5·x²` for `|x| ≤ δ`, else `0.5·δ² + δ·(|x| − δ)`) summed over the last
    axis: `[..., 4]` → `[...]`."""
    diff = ops.abs(ops.cast(predictions, "float32") - ops.cast(targets, "float32"))
    quadratic = ops.minimum(diff, delta)
    return ops.sum(0.5 * quadratic * quadratic + delta * (diff - quadratic), axis=-1)


def trim_padding(gt_boxes, gt_classes):
    """`gt_boxes [B, M, 4]`, `gt_classes [B, M]` without the padding columns after the batch's
    last real box (class > 0), keeping at least one column: `[B, M', 4]`, `[B, M']`.

    The targets do not change (padding never wins an anchor, see `anchor_matching.match`, and the real
    boxes keep their indices), but the matcher's `[B, M, A]` IoU work shrinks from the padded
    `max_number_of_boxes` (100 by default) to the most boxes any image of the batch has, as the
    OD API's `unpad_groundtruth_tensors` does per image. `M'` depends on the data: a step compiled
    with XLA (`jit_compile`), which needs static shapes, calls `assign_targets(..., trim=False)`.
    """
    gt_boxes = ops.convert_to_tensor(gt_boxes)
    gt_classes = ops.convert_to_tensor(gt_classes)
    width = gt_classes.shape[1]
    if not width:  # no columns, or a width only known when run: leave as is
        return gt_boxes, gt_classes
    positions = ops.expand_dims(ops.arange(1, width + 1, dtype="int32"), 0)  # [1, M]: 1-based column
    last = ops.max(ops.where(ops.cast(gt_classes, "int32") > 0, positions, 0))
    keep = ops.maximum(last, 1)
    return gt_boxes[:, :keep], gt_classes[:, :keep]


def assign_targets(anchors, gt_boxes, gt_classes, num_classes: int,
                   matcher: box_ops.MatcherSpec = box_ops.MatcherSpec(), scales=box_ops.DEFAULT_SCALES,
                   background_as_zeros: bool = False, trim: bool = True) -> dict:
    """Per-anchor training targets, as the OD API's `batch_assign_targets` gives them.

    Returns `{"cls_targets" [B, A, C + 1], "cls_weights" [B, A, C + 1], "reg_targets" [B, A, 4],
    "reg_weights" [B, A], "match" [B, A] int32}` (see the module docstring; `match` holds the
    box index, -1 unmatched, -2 ignored). `trim` first drops the batch's trailing padding
    (`trim_padding`; the same targets, less work).
    """
    if trim:
        gt_boxes, gt_classes = trim_padding(gt_boxes, gt_classes)
    gt_classes = ops.cast(gt_classes, "int32")
    valid = gt_classes > 0
    match = box_ops.match(anchors, gt_boxes, valid, matcher)
    matched = match >= 0
    index = ops.maximum(match, 0)
    gt_boxes = ops.cast(gt_boxes, "float32")
    matched_boxes = ops.take_along_axis(gt_boxes, ops.expand_dims(index, -1), axis=1)
    matched_classes = ops.take_along_axis(gt_classes, index, axis=1)
    reg_targets = ops.where(ops.expand_dims(matched, -1), box_ops.encode(matched_boxes, anchors, scales), 0.0)
    # Column 0 background, column k label-map id k; one_hot of -1 is all zeros.
    foreground = ops.one_hot(ops.where(matched, matched_classes, -1), num_classes + 1)
    background = 0.0 if background_as_zeros else 1.0
    unmatched_label = ops.one_hot(ops.zeros_like(match), num_classes + 1) * background
    cls_targets = ops.where(ops.expand_dims(matched, -1), foreground, unmatched_label)
    cls_weights = ops.cast(match != box_ops.IGNORED, "float32")
    cls_weights = ops.repeat(ops.expand_dims(cls_weights, -1), num_classes + 1, axis=-1)
    return {"cls_targets": cls_targets, "cls_weights": cls_weights, "reg_targets": reg_targets,
            "reg_weights": ops.cast(matched, "float32"), "match": match}


def ssd_losses(anchors, box_deltas, class_logits, gt_boxes, gt_classes, num_classes: int,
               spec: LossSpec = LossSpec(), matcher: box_ops.MatcherSpec = box_ops.MatcherSpec(),
               scales=box_ops.DEFAULT_SCALES, trim: bool = True) -> dict:
    """`{"localization", "classification", "num_matches"}` scalars for a batch, the OD API's
    `Loss/localization_loss` and `Loss/classification_loss` (see the module docstring); `trim`
    as in `assign_targets`."""
    targets = assign_targets(anchors, gt_boxes, gt_classes, num_classes, matcher, scales,
                             spec.encode_background_as_zeros, trim)
    return losses_from_targets(box_deltas, class_logits, targets, spec)


def losses_from_targets(box_deltas, class_logits, targets: dict, spec: LossSpec = LossSpec()) -> dict:
    """The two losses from predictions and `assign_targets`' output."""
    reg_targets = ops.stop_gradient(targets["reg_targets"])
    box_deltas = ops.cast(box_deltas, "float32")
    # The OD API ignores NaN box targets (a degenerate box): the prediction stands in.
    reg_targets = ops.where(ops.isnan(reg_targets), box_deltas, reg_targets)
    reg_weights = targets["reg_weights"]
    loc = ops.sum(smooth_l1(reg_targets, box_deltas, spec.smooth_l1_delta) * reg_weights)
    cls = ops.sum(sigmoid_focal_loss(ops.stop_gradient(targets["cls_targets"]), class_logits,
                                     spec.focal_alpha, spec.focal_gamma) * targets["cls_weights"])
    num_matches = ops.sum(reg_weights)
    normalizer = ops.maximum(num_matches, 1.0) if spec.normalize_by_num_matches else 1.0
    loc_normalizer = normalizer * CODE_SIZE if spec.normalize_loc_by_codesize else normalizer
    return {
        "localization": spec.localization_weight / loc_normalizer * loc,
        "classification": spec.classification_weight / normalizer * cls,
        "num_matches": num_matches,
    }


# --- regularization --------------------------------------------------------------------------

@dataclass(frozen=True)
class RegularizationSpec:
    """Which weights the TF OD API's Keras SSD regularizes, and with which l2 weight.

    Each conv_hyperparams' `l2_regularizer.weight` w becomes Keras' `l2(w / 2)`: a kernel K adds
    `w/2 · Σ K²` to `Loss/regularization_loss`. Per part:

    - backbone (MobileNetV2): every convolution kernel and depthwise kernel, with the feature
      extractor's weight when `override_base_feature_extractor_hyperparams`, else the OD API's
      fixed 4e-5;
    - FPN (top-down and the extra stride-2 levels), feature extractor's weight: the 1×1 projection
      kernels and the depthwise kernels of the separable convolutions, not their pointwise kernels;
    - box predictor, its own weight: the tower's depthwise kernels (the pointwise ones only with
      `apply_conv_hyperparams_pointwise`); the box and class heads only with
      `apply_conv_hyperparams_to_heads`.

    Biases and batch-norm parameters are never regularized.
    """
    backbone: float = 4e-5
    fpn: float = 0.0
    predictor: float = 0.0
    tower_pointwise: bool = False
    heads: bool = False


def regularized_weights(model, spec: RegularizationSpec) -> list[tuple[object, float]]:
    """`(variable, l2 weight)` for every kernel the TF OD API regularizes in `model` (an
    `SSDDetector`: parts `backbone`, `fpn`, `predictor`), per `RegularizationSpec`."""
    from keras import layers

    out: list[tuple[object, float]] = []

    def add(variable, weight):
        if weight and variable is not None and variable.trainable:
            out.append((variable, float(weight)))

    for layer in model.backbone.layers:
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)) and not isinstance(layer, layers.SeparableConv2D):
            add(layer.kernel, spec.backbone)
    fpn = model.fpn
    for layer in [fpn.top_layers, *fpn.residual_blocks]:
        add(layer.kernel, spec.fpn)
    for layer in [*fpn.conv_layers, *fpn.coarse_layers]:
        add(layer.depthwise_kernel, spec.fpn)
    predictor = model.predictor
    for layer in predictor.tower:
        add(layer.depthwise_kernel, spec.predictor)
        if spec.tower_pointwise:
            add(layer.pointwise_kernel, spec.predictor)
    if spec.heads:
        for layer in (predictor.box_head, predictor.class_head):
            add(layer.depthwise_kernel, spec.predictor)
            add(layer.pointwise_kernel, spec.predictor)
    return out


def regularization_loss(model, spec: RegularizationSpec):
    """`Loss/regularization_loss`: `Σ weight/2 · Σ K²` over `regularized_weights` (Keras'
    `l2(weight / 2)`, what the OD API's `hyperparams_builder` makes of an l2 weight). On the
    TensorFlow backend each `Σ K² / 2` is TF's one `L2Loss` kernel (and its gradient one
    multiply), as tf.keras 2's `L2` regularizer and so the OD API compute it."""
    import keras
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        half_sum_of_squares = tf.nn.l2_loss
    else:
        def half_sum_of_squares(x):
            return 0.5 * ops.sum(ops.square(x))
    terms = [weight * half_sum_of_squares(ops.cast(variable, "float32"))
             for variable, weight in regularized_weights(model, spec)]
    return ops.sum(ops.stack(terms)) if terms else ops.convert_to_tensor(0.0)
