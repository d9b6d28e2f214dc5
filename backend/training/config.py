"""A `pipeline.config` tree → the trainer's typed settings.

Which fields are used, ignored or refused is decided in `backend.config_check` (`SUPPORTED`,
`IGNORED`), the one config check; `training_config(doc)` raises `Invalid` listing every problem
it finds (files aside), or returns the settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend import config_check
from backend.errors import Invalid
from backend.pipeline_config import ConfigDocument, Message
from backend.training.boxes import AnchorSpec, MatcherSpec
from backend.training.losses import LossSpec, RegularizationSpec
from backend.training.model import ConvHyperparams, ModelSpec



# --- typed settings --------------------------------------------------------------------------

@dataclass(frozen=True)
class Resizer:
    kind: str                   # "fixed_shape" | "keep_aspect_ratio"
    height: int                 # model input canvas
    width: int
    min_dimension: int = 0      # keep_aspect_ratio only
    max_dimension: int = 0


@dataclass(frozen=True)
class PostProcessing:
    score_threshold: float = 1e-8
    iou_threshold: float = 0.6
    max_detections_per_class: int = 100
    max_total_detections: int = 100


@dataclass(frozen=True)
class LearningRate:
    kind: str                   # constant | exponential | manual_step | cosine
    params: dict[str, Any]


@dataclass(frozen=True)
class Optimizer:
    """`train_config.optimizer` with `optimizer.proto`'s defaults (see `train.build_optimizer`)."""
    kind: str                   # momentum | adam | rms_prop
    learning_rate: LearningRate
    momentum: float = 0.9       # momentum_optimizer_value (momentum, rms_prop)
    epsilon: float = 1e-8       # adam 1e-8, rms_prop 1.0
    decay: float = 0.0          # rms_prop: the learning rate's inverse-time decay (see build_optimizer)
    clipnorm: float | None = None  # gradient_clipping_by_norm: a global-norm clip


@dataclass(frozen=True)
class Augmentation:
    kind: str                   # random_horizontal_flip | random_crop_image | random_adjust_brightness | random_adjust_contrast
    params: dict[str, Any]


@dataclass(frozen=True)
class InputReader:
    input_paths: tuple[str, ...]
    label_map_path: str | None
    shuffle: bool = True
    num_epochs: int = 0         # 0: repeat forever
    sample_1_of_n: int = 1


@dataclass(frozen=True)
class TrainingConfig:
    """Everything the trainer reads from a pipeline.config."""
    model: ModelSpec
    resizer: Resizer
    matcher: MatcherSpec
    box_scales: tuple[float, float, float, float]
    loss: LossSpec
    l2_weight: float            # the box predictor's conv_hyperparams l2 weight
    regularization: RegularizationSpec
    post_processing: PostProcessing
    batch_size: int
    num_steps: int
    optimizer: Optimizer
    augmentations: tuple[Augmentation, ...]
    fine_tune_checkpoint: str | None
    fine_tune_checkpoint_type: str
    max_number_of_boxes: int
    train_input: InputReader
    eval_input: InputReader | None
    eval_metrics_set: str = "coco_detection_metrics"
    eval_batch_size: int = 1
    eval_per_category: bool = False
    eval_num_examples: int = 0
    ignored: tuple[tuple[str, int, str], ...] = field(default_factory=tuple)  # (path, line, reason)


def _message_params(message: Message | None) -> dict[str, Any]:
    if not isinstance(message, Message):
        return {}
    return {f.name: (f.value.to_python() if isinstance(f.value, Message) else f.value) for f in message.fields}


def _reader(message: Message | None) -> InputReader | None:
    if not isinstance(message, Message):
        return None
    tf_record = message.one("tf_record_input_reader")
    paths = tuple(tf_record.all("input_path")) if isinstance(tf_record, Message) else ()
    return InputReader(input_paths=paths, label_map_path=message.one("label_map_path"),
                       shuffle=bool(message.one("shuffle", True)), num_epochs=int(message.one("num_epochs", 0)),
                       sample_1_of_n=int(message.one("sample_1_of_n_examples", 1)))


def _l2_weight(hyperparams: Message) -> float:
    """A conv_hyperparams' l2 weight: 0 without a regularizer, 1.0 (the proto default) for an
    `l2_regularizer` without `weight`."""
    regularizer = hyperparams.one("regularizer") if isinstance(hyperparams, Message) else None
    l2 = regularizer.one("l2_regularizer") if isinstance(regularizer, Message) else None
    return float(l2.one("weight", 1.0)) if isinstance(l2, Message) else 0.0


def _matcher(ssd: Message | None) -> MatcherSpec:
    """`model.ssd.matcher.argmax_matcher` with `argmax_matcher.proto`'s defaults."""
    matcher = ssd.one("matcher") if isinstance(ssd, Message) else None
    argmax = matcher.one("argmax_matcher") if isinstance(matcher, Message) else None
    argmax = argmax if isinstance(argmax, Message) else Message()
    return MatcherSpec(matched_threshold=float(argmax.one("matched_threshold", 0.5)),
                       unmatched_threshold=float(argmax.one("unmatched_threshold", 0.5)),
                       force_match_for_each_row=bool(argmax.one("force_match_for_each_row", False)),
                       ignore_thresholds=bool(argmax.one("ignore_thresholds", False)),
                       negatives_lower_than_unmatched=bool(argmax.one("negatives_lower_than_unmatched", True)))


def conv_hyperparams(message: Message) -> ConvHyperparams:
    """A `conv_hyperparams` block with the proto's defaults (batch_norm: decay 0.999, center true,
    scale false, epsilon 0.001; no batch norm when the field is absent)."""
    def sub(parent, name):
        child = parent.one(name) if isinstance(parent, Message) else None
        return child if isinstance(child, Message) else Message()

    initializer = sub(message, "initializer")
    kind, params = "random_normal", sub(initializer, "random_normal_initializer")
    if not params.fields and sub(initializer, "truncated_normal_initializer").fields:
        kind, params = "truncated_normal", sub(initializer, "truncated_normal_initializer")
    has_batch_norm = isinstance(message.one("batch_norm") if isinstance(message, Message) else None, Message)
    norm = sub(message, "batch_norm")
    return ConvHyperparams(initializer=kind, mean=float(params.one("mean", 0.0)), stddev=float(params.one("stddev", 1.0)),
                           batch_norm=has_batch_norm, batch_norm_decay=float(norm.one("decay", 0.999)),
                           batch_norm_epsilon=float(norm.one("epsilon", 0.001)),
                           batch_norm_scale=bool(norm.one("scale", False)),
                           batch_norm_center=bool(norm.one("center", True)))


def training_config(doc: ConfigDocument) -> TrainingConfig:
    """Typed settings from a config, or `Invalid` listing every problem with its line."""
    problems = config_check.check(doc.text, files=False)
    if problems:
        source = f" in {doc.path}" if doc.path else ""
        raise Invalid(f"the config cannot be trained{source}:\n" + "\n".join(f"  {p}" for p in problems))
    ssd = doc.tree.one("model").one("ssd")

    def sub(message: Message | None, *names: str) -> Message:
        for name in names:
            message = message.one(name) if isinstance(message, Message) else None
        return message if isinstance(message, Message) else Message()

    anchor = sub(ssd, "anchor_generator", "multiscale_anchor_generator")
    anchors = AnchorSpec(min_level=anchor.one("min_level", 3), max_level=anchor.one("max_level", 7),
                         anchor_scale=float(anchor.one("anchor_scale", 4.0)),
                         aspect_ratios=tuple(float(a) for a in (anchor.all("aspect_ratios") or [1.0, 2.0, 0.5])),
                         scales_per_octave=anchor.one("scales_per_octave", 2))
    fixed = sub(ssd, "image_resizer", "fixed_shape_resizer")
    keep = sub(ssd, "image_resizer", "keep_aspect_ratio_resizer")
    if keep.fields:
        max_dim = keep.one("max_dimension", 1024)
        resizer = Resizer("keep_aspect_ratio", max_dim, max_dim, keep.one("min_dimension", 600), max_dim)
    else:
        resizer = Resizer("fixed_shape", fixed.one("height", 300), fixed.one("width", 300))
    predictor = sub(ssd, "box_predictor", "weight_shared_convolutional_box_predictor")
    extractor = sub(ssd, "feature_extractor")
    hyper = sub(predictor, "conv_hyperparams")
    l2 = _l2_weight(hyper)
    train = sub(doc.tree, "train_config")
    checkpoint = train.one("fine_tune_checkpoint") or None
    checkpoint_type = train.one("fine_tune_checkpoint_type") or ("detection" if checkpoint else "")
    if checkpoint_type == "fine_tune":
        checkpoint_type = "detection"
    fpn = sub(extractor, "fpn")
    model = ModelSpec(
        num_classes=ssd.one("num_classes"), height=resizer.height, width=resizer.width,
        depth_multiplier=float(extractor.one("depth_multiplier", 1.0)),
        min_depth=int(extractor.one("min_depth", 16)),
        additional_layer_depth=int(fpn.one("additional_layer_depth", 256)),
        use_explicit_padding=bool(extractor.one("use_explicit_padding", False)),
        override_base_feature_extractor_hyperparams=bool(
            extractor.one("override_base_feature_extractor_hyperparams", False)),
        feature_hyperparams=conv_hyperparams(sub(extractor, "conv_hyperparams")),
        depth=int(predictor.one("depth", 0)),
        num_layers_before_predictor=int(predictor.one("num_layers_before_predictor", 0)),
        kernel_size=int(predictor.one("kernel_size", 3)),
        class_prediction_bias_init=float(predictor.one("class_prediction_bias_init", 0.0)),
        predictor_hyperparams=conv_hyperparams(hyper),
        anchors=anchors, freeze_batchnorm=bool(ssd.one("freeze_batchnorm", False)))
    matcher = _matcher(ssd)
    extractor_l2 = _l2_weight(sub(extractor, "conv_hyperparams"))
    regularization = RegularizationSpec(
        backbone=extractor_l2 if extractor.one("override_base_feature_extractor_hyperparams", False)
        else RegularizationSpec.backbone, fpn=extractor_l2, predictor=l2)
    coder = sub(ssd, "box_coder", "faster_rcnn_box_coder")
    scales = tuple(float(coder.one(k, d)) for k, d in
                   (("y_scale", 10.0), ("x_scale", 10.0), ("height_scale", 5.0), ("width_scale", 5.0)))
    loss = sub(ssd, "loss")
    focal = sub(loss, "classification_loss", "weighted_sigmoid_focal")
    loss_spec = LossSpec(
        focal_alpha=float(focal.one("alpha")) if focal.has("alpha") else None,
        focal_gamma=float(focal.one("gamma", 2.0)),
        classification_weight=float(loss.one("classification_weight", 1.0)),
        localization_weight=float(loss.one("localization_weight", 1.0)),
        smooth_l1_delta=float(sub(loss, "localization_loss", "weighted_smooth_l1").one("delta", 1.0)),
        normalize_by_num_matches=bool(ssd.one("normalize_loss_by_num_matches", True)),
        normalize_loc_by_codesize=bool(ssd.one("normalize_loc_loss_by_codesize", False)),
        encode_background_as_zeros=bool(ssd.one("encode_background_as_zeros", False)))
    nms = sub(ssd, "post_processing", "batch_non_max_suppression")
    post = PostProcessing(score_threshold=float(nms.one("score_threshold", 1e-8)),
                          iou_threshold=float(nms.one("iou_threshold", 0.6)),
                          max_detections_per_class=int(nms.one("max_detections_per_class", 100)),
                          max_total_detections=int(nms.one("max_total_detections", 100)))
    optimizer_msg = sub(train, "optimizer")
    kind_field = next(f for f in optimizer_msg.fields if f.name.endswith("_optimizer"))
    opt = kind_field.value
    lr_msg = sub(opt, "learning_rate")
    lr_field = lr_msg.fields[0] if lr_msg.fields else None
    if lr_field is None:
        learning_rate = LearningRate("constant", {"learning_rate": 0.002})
    else:
        params = _message_params(lr_field.value)
        if lr_field.name == "manual_step_learning_rate":
            params["schedule"] = [s.to_python() for s in lr_field.value.all("schedule")]
        learning_rate = LearningRate(lr_field.name.replace("_decay_learning_rate", "").replace(
            "_learning_rate", ""), params)
    kind = kind_field.name.replace("_optimizer", "")
    optimizer = Optimizer(
        kind=kind, learning_rate=learning_rate,
        momentum=float(opt.one("momentum_optimizer_value", 0.9)) if kind != "adam" else 0.0,
        epsilon=float(opt.one("epsilon", 1e-8 if kind == "adam" else 1.0)) if kind != "momentum" else 0.0,
        decay=float(opt.one("decay", 0.9)) if kind == "rms_prop" else 0.0,
        clipnorm=float(train.one("gradient_clipping_by_norm")) if train.one("gradient_clipping_by_norm", 0) > 0 else None)
    augmentations = []
    for option in train.all("data_augmentation_options"):
        for f in option.fields:
            augmentations.append(Augmentation(f.name, _message_params(f.value)))
    eval_config = sub(doc.tree, "eval_config")
    train_input = _reader(doc.tree.one("train_input_reader")) or InputReader((), None)
    return TrainingConfig(
        model=model, resizer=resizer, matcher=matcher, box_scales=scales, loss=loss_spec, l2_weight=l2,
        regularization=regularization,
        post_processing=post, batch_size=int(train.one("batch_size", 32)), num_steps=int(train.one("num_steps", 0)),
        optimizer=optimizer, augmentations=tuple(augmentations), fine_tune_checkpoint=checkpoint,
        fine_tune_checkpoint_type=checkpoint_type,
        max_number_of_boxes=int(train.one("max_number_of_boxes", 100)),
        train_input=train_input, eval_input=_reader(doc.tree.one("eval_input_reader")),
        eval_metrics_set=str(eval_config.one("metrics_set", "coco_detection_metrics")),
        eval_batch_size=int(eval_config.one("batch_size", 1)),
        eval_per_category=bool(eval_config.one("include_metrics_per_category", False)),
        eval_num_examples=int(eval_config.one("num_examples", 0)),
        ignored=tuple(config_check.ignored(doc.text)))


def check_fine_tune_checkpoint(config: TrainingConfig, doc: ConfigDocument) -> None:
    """Stop at once when `fine_tune_checkpoint` names nothing on disk."""
    path = config.fine_tune_checkpoint
    if not path:
        return
    line = doc.line("train_config.fine_tune_checkpoint")
    if config.fine_tune_checkpoint_type == "classification" and str(path).endswith(".h5"):
        if not Path(path).is_file():
            raise Invalid(f"line {line}: train_config.fine_tune_checkpoint {path!r} does not exist (a Keras "
                          "MobileNetV2 weights file without its top; nothing is downloaded). Remove the field to "
                          "train from scratch.")
        return
    from backend.errors import NotFound
    from backend.training.restore import resolve_checkpoint
    try:
        resolve_checkpoint(path)
    except NotFound:
        kind = ("a TF OD API classification checkpoint prefix such as .../mobilenet_v2.ckpt-1, or a Keras .h5 file"
                if config.fine_tune_checkpoint_type == "classification" else
                "a detection checkpoint prefix such as .../ckpt-0, a model_dir holding one, or a zoo model's folder "
                "holding checkpoint/ckpt-0")
        raise Invalid(f"line {line}: train_config.fine_tune_checkpoint {path!r} does not exist ({kind})") from None
