"""A `pipeline.config` tree → the trainer's typed settings.

Which fields are used, ignored or refused is decided in `backend.config_check` (`SUPPORTED`,
`IGNORED`), the one config check; `training_config(doc)` raises `Invalid` listing every problem
it finds (files aside), or returns the settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend import config_check, pipeline_schema
from backend.errors import Invalid
from backend.config_document import ConfigDocument
from backend.pipeline_schema import values
from backend.training.anchor_matching import MatcherSpec
from backend.training.anchors import AnchorSpec
from backend.training.losses import LossSpec, RegularizationSpec
from backend.training.network import ConvHyperparams, ModelSpec



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
    # The training stream's reading and shuffling (`data._records`), input_reader.proto's defaults.
    shuffle_buffer_size: int = 2048
    filenames_shuffle_buffer_size: int = 100
    num_readers: int = 64
    read_block_length: int = 32


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


def _reader(typed, present: bool) -> InputReader | None:
    """An `InputReader` message (typed: absent fields have the schema's defaults)."""
    if not present:
        return None
    v = values(typed)
    return InputReader(input_paths=tuple(typed.tf_record_input_reader.input_path),
                       label_map_path=v["label_map_path"] or None, shuffle=v["shuffle"],
                       num_epochs=v["num_epochs"], sample_1_of_n=v["sample_1_of_n_examples"],
                       shuffle_buffer_size=v["shuffle_buffer_size"],
                       filenames_shuffle_buffer_size=v["filenames_shuffle_buffer_size"],
                       num_readers=v["num_readers"], read_block_length=v["read_block_length"])


def _l2_weight(hyperparams) -> float:
    """A typed conv_hyperparams' l2 weight: 0 without a regularizer, the schema's default (1.0)
    for an `l2_regularizer` without `weight`."""
    regularizer = hyperparams.regularizer
    return values(regularizer.l2_regularizer)["weight"] if regularizer.HasField("l2_regularizer") else 0.0


def _matcher(argmax) -> MatcherSpec:
    """A typed `ArgMaxMatcher` (absent fields: the schema's defaults)."""
    v = values(argmax)
    return MatcherSpec(**{name: v[name] for name in (
        "matched_threshold", "unmatched_threshold", "force_match_for_each_row", "ignore_thresholds",
        "negatives_lower_than_unmatched")})


def conv_hyperparams(message) -> ConvHyperparams:
    """A typed `conv_hyperparams` with the schema's defaults (no batch norm when the field is absent)."""
    initializer = message.initializer
    kind, params = "random_normal", initializer.random_normal_initializer
    if initializer.HasField("truncated_normal_initializer") and not initializer.HasField("random_normal_initializer"):
        kind, params = "truncated_normal", initializer.truncated_normal_initializer
    init, norm = values(params), values(message.batch_norm)
    return ConvHyperparams(initializer=kind, mean=init["mean"], stddev=init["stddev"],
                           batch_norm=message.HasField("batch_norm"), batch_norm_decay=norm["decay"],
                           batch_norm_epsilon=norm["epsilon"], batch_norm_scale=norm["scale"],
                           batch_norm_center=norm["center"])


def training_config(doc: ConfigDocument) -> TrainingConfig:
    """Typed settings from a config, or `Invalid` listing every problem with its line. Values come
    from the config parsed into the schema (`backend.pipeline_schema`): a field the text leaves
    out has the schema's default, which is the TF OD API's."""
    problems = config_check.check(doc.text, files=False)
    if problems:
        source = f" in {doc.path}" if doc.path else ""
        raise Invalid(f"the config cannot be trained{source}:\n" + "\n".join(f"  {p}" for p in problems))
    typed, _ = pipeline_schema.parse(doc.text)
    ssd = typed.model.ssd

    anchor = values(ssd.anchor_generator.multiscale_anchor_generator)
    anchors = AnchorSpec(min_level=anchor["min_level"], max_level=anchor["max_level"],
                         anchor_scale=anchor["anchor_scale"],
                         # repeated, so no schema default: the OD API's zoo configs say 1.0, 2.0, 0.5
                         aspect_ratios=tuple(anchor["aspect_ratios"]) or AnchorSpec.aspect_ratios,
                         scales_per_octave=anchor["scales_per_octave"])
    if ssd.image_resizer.HasField("keep_aspect_ratio_resizer"):
        keep = values(ssd.image_resizer.keep_aspect_ratio_resizer)
        max_dim = keep["max_dimension"]
        resizer = Resizer("keep_aspect_ratio", max_dim, max_dim, keep["min_dimension"], max_dim)
    else:
        fixed = values(ssd.image_resizer.fixed_shape_resizer)
        resizer = Resizer("fixed_shape", fixed["height"], fixed["width"])
    predictor_msg = ssd.box_predictor.weight_shared_convolutional_box_predictor
    predictor, extractor = values(predictor_msg), values(ssd.feature_extractor)
    l2 = _l2_weight(predictor_msg.conv_hyperparams)
    train = values(typed.train_config)
    checkpoint = train["fine_tune_checkpoint"] or None
    checkpoint_type = train["fine_tune_checkpoint_type"] or ("detection" if checkpoint else "")
    if checkpoint_type == "fine_tune":
        checkpoint_type = "detection"
    model = ModelSpec(
        num_classes=ssd.num_classes, height=resizer.height, width=resizer.width,
        depth_multiplier=extractor["depth_multiplier"], min_depth=extractor["min_depth"],
        additional_layer_depth=values(ssd.feature_extractor.fpn)["additional_layer_depth"],
        use_explicit_padding=extractor["use_explicit_padding"],
        override_base_feature_extractor_hyperparams=extractor["override_base_feature_extractor_hyperparams"],
        feature_hyperparams=conv_hyperparams(ssd.feature_extractor.conv_hyperparams),
        depth=predictor["depth"], num_layers_before_predictor=predictor["num_layers_before_predictor"],
        kernel_size=predictor["kernel_size"], class_prediction_bias_init=predictor["class_prediction_bias_init"],
        predictor_hyperparams=conv_hyperparams(predictor_msg.conv_hyperparams),
        anchors=anchors, freeze_batchnorm=values(ssd)["freeze_batchnorm"])
    matcher = _matcher(ssd.matcher.argmax_matcher)
    extractor_l2 = _l2_weight(ssd.feature_extractor.conv_hyperparams)
    regularization = RegularizationSpec(
        backbone=extractor_l2 if extractor["override_base_feature_extractor_hyperparams"]
        else RegularizationSpec.backbone, fpn=extractor_l2, predictor=l2)
    coder = values(ssd.box_coder.faster_rcnn_box_coder)
    scales = (coder["y_scale"], coder["x_scale"], coder["height_scale"], coder["width_scale"])
    focal_msg = ssd.loss.classification_loss.weighted_sigmoid_focal
    focal, loss, flags = values(focal_msg), values(ssd.loss), values(ssd)
    loss_spec = LossSpec(
        focal_alpha=focal["alpha"] if focal_msg.HasField("alpha") else None,  # absent: no alpha weighting
        focal_gamma=focal["gamma"],
        classification_weight=loss["classification_weight"], localization_weight=loss["localization_weight"],
        smooth_l1_delta=values(ssd.loss.localization_loss.weighted_smooth_l1)["delta"],
        normalize_by_num_matches=flags["normalize_loss_by_num_matches"],
        normalize_loc_by_codesize=flags["normalize_loc_loss_by_codesize"],
        encode_background_as_zeros=flags["encode_background_as_zeros"])
    nms = values(ssd.post_processing.batch_non_max_suppression)
    post = PostProcessing(**{name: nms[name] for name in (
        "score_threshold", "iou_threshold", "max_detections_per_class", "max_total_detections")})
    optimizer_msg = typed.train_config.optimizer
    kind_name = optimizer_msg.WhichOneof("optimizer")
    opt_msg = getattr(optimizer_msg, kind_name)
    opt = values(opt_msg)
    rate_name = opt_msg.learning_rate.WhichOneof("learning_rate")
    if rate_name is None:
        learning_rate = LearningRate("constant", values(opt_msg.learning_rate.constant_learning_rate))
    else:
        rate_msg = getattr(opt_msg.learning_rate, rate_name)
        params = values(rate_msg)
        if rate_name == "manual_step_learning_rate":
            params["schedule"] = [values(s) for s in rate_msg.schedule]
        learning_rate = LearningRate(rate_name.replace("_decay_learning_rate", "").replace("_learning_rate", ""),
                                     params)
    kind = kind_name.replace("_optimizer", "")
    optimizer = Optimizer(
        kind=kind, learning_rate=learning_rate,
        momentum=opt["momentum_optimizer_value"] if kind != "adam" else 0.0,
        epsilon=opt["epsilon"] if kind != "momentum" else 0.0,
        decay=opt["decay"] if kind == "rms_prop" else 0.0,
        clipnorm=train["gradient_clipping_by_norm"] if train["gradient_clipping_by_norm"] > 0 else None)
    augmentations = []
    for option in typed.train_config.data_augmentation_options:
        kind = option.WhichOneof("preprocessing_step")
        prefix = f"train_config.data_augmentation_options.{kind}."
        # Every supported field of the option, as written or with the schema's default.
        params = {name: value for name, value in values(getattr(option, kind)).items()
                  if config_check._matches(prefix + name, config_check.SUPPORTED)}
        augmentations.append(Augmentation(kind, params))
    eval_config = values(typed.eval_config)
    train_input = _reader(typed.train_input_reader, typed.HasField("train_input_reader")) or InputReader((), None)
    eval_readers = list(typed.eval_input_reader)
    return TrainingConfig(
        model=model, resizer=resizer, matcher=matcher, box_scales=scales, loss=loss_spec, l2_weight=l2,
        regularization=regularization,
        post_processing=post, batch_size=train["batch_size"], num_steps=train["num_steps"],
        optimizer=optimizer, augmentations=tuple(augmentations), fine_tune_checkpoint=checkpoint,
        fine_tune_checkpoint_type=checkpoint_type,
        max_number_of_boxes=train["max_number_of_boxes"],
        train_input=train_input, eval_input=_reader(eval_readers[-1], True) if eval_readers else None,
        eval_metrics_set=(eval_config["metrics_set"] or ["coco_detection_metrics"])[-1],
        eval_batch_size=eval_config["batch_size"],
        eval_per_category=eval_config["include_metrics_per_category"],
        # absent: every eval example (the schema's 5000 is the TF 1 evaluator's count)
        eval_num_examples=eval_config["num_examples"] if typed.eval_config.HasField("num_examples") else 0,
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
