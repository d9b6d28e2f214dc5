"""A `pipeline.config` tree → the trainer's typed settings, or a list of problems.

Every field in the file falls in one of three sets, decided here and nowhere else:

- *used*: read into `TrainingConfig` (`SUPPORTED`);
- *ignored*: TPU/TF1 options with no effect on TF 2 / Keras 3 (`IGNORED`): accepted and listed
  in the log, never silently dropped;
- anything else, and used fields with a value this trainer does not implement (another
  meta-architecture, feature extractor, loss, resizer...): a `Problem` naming the field and its
  line, reported before any training starts.

`check_config(doc)` returns the problems (the `config check` command and the editor show them);
`training_config(doc)` raises `Invalid` listing them all, or returns the settings.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import Invalid
from backend.config_document import ConfigDocument, Message, Problem, walk
from backend.training.boxes import AnchorSpec, MatcherSpec
from backend.training.losses import LossSpec, RegularizationSpec
from backend.training.network import ConvHyperparams, ModelSpec



# Field paths without indices; `*` matches within one path segment (fnmatch).
_SSD = "model.ssd"
_CONV = ["activation", "regularizer", "regularizer.l2_regularizer", "regularizer.l2_regularizer.weight",
         "initializer", "initializer.random_normal_initializer", "initializer.random_normal_initializer.*",
         "initializer.truncated_normal_initializer", "initializer.truncated_normal_initializer.*",
         "batch_norm", "batch_norm.scale", "batch_norm.decay", "batch_norm.epsilon", "batch_norm.center",
         "batch_norm.train"]
_LR = ["constant_learning_rate", "constant_learning_rate.learning_rate",
       "exponential_decay_learning_rate", "exponential_decay_learning_rate.*",
       "manual_step_learning_rate", "manual_step_learning_rate.initial_learning_rate",
       "manual_step_learning_rate.schedule", "manual_step_learning_rate.schedule.*",
       "manual_step_learning_rate.warmup",
       "cosine_decay_learning_rate", "cosine_decay_learning_rate.*"]
_OPT = ["optimizer", "optimizer.use_moving_average", "optimizer.moving_average_decay"]
for _kind, _extra in (("momentum_optimizer", ["momentum_optimizer_value"]),
                      ("adam_optimizer", ["epsilon"]),
                      ("rms_prop_optimizer", ["momentum_optimizer_value", "decay", "epsilon"])):
    _OPT += [f"optimizer.{_kind}", f"optimizer.{_kind}.learning_rate"]
    _OPT += [f"optimizer.{_kind}.learning_rate.{p}" for p in _LR]
    _OPT += [f"optimizer.{_kind}.{p}" for p in _extra]
_READER = ["label_map_path", "shuffle", "num_epochs", "tf_record_input_reader",
           "tf_record_input_reader.input_path", "num_readers", "num_parallel_batches",
           "shuffle_buffer_size", "filenames_shuffle_buffer_size", "sample_1_of_n_examples",
           "max_number_of_boxes", "num_prefetch_batches", "read_block_length"]

SUPPORTED = [
    "model", _SSD, f"{_SSD}.num_classes",
    f"{_SSD}.box_coder", f"{_SSD}.box_coder.faster_rcnn_box_coder", f"{_SSD}.box_coder.faster_rcnn_box_coder.*",
    f"{_SSD}.matcher", f"{_SSD}.matcher.argmax_matcher", f"{_SSD}.matcher.argmax_matcher.matched_threshold",
    f"{_SSD}.matcher.argmax_matcher.unmatched_threshold", f"{_SSD}.matcher.argmax_matcher.ignore_thresholds",
    f"{_SSD}.matcher.argmax_matcher.negatives_lower_than_unmatched",
    f"{_SSD}.matcher.argmax_matcher.force_match_for_each_row",
    f"{_SSD}.similarity_calculator", f"{_SSD}.similarity_calculator.iou_similarity",
    f"{_SSD}.encode_background_as_zeros", f"{_SSD}.add_background_class",
    f"{_SSD}.anchor_generator", f"{_SSD}.anchor_generator.multiscale_anchor_generator",
    f"{_SSD}.anchor_generator.multiscale_anchor_generator.*",
    f"{_SSD}.image_resizer", f"{_SSD}.image_resizer.fixed_shape_resizer",
    f"{_SSD}.image_resizer.fixed_shape_resizer.height", f"{_SSD}.image_resizer.fixed_shape_resizer.width",
    f"{_SSD}.image_resizer.keep_aspect_ratio_resizer",
    f"{_SSD}.image_resizer.keep_aspect_ratio_resizer.min_dimension",
    f"{_SSD}.image_resizer.keep_aspect_ratio_resizer.max_dimension",
    f"{_SSD}.image_resizer.keep_aspect_ratio_resizer.pad_to_max_dimension",
    f"{_SSD}.box_predictor", f"{_SSD}.box_predictor.weight_shared_convolutional_box_predictor",
    *[f"{_SSD}.box_predictor.weight_shared_convolutional_box_predictor.{p}" for p in
      ["depth", "class_prediction_bias_init", "num_layers_before_predictor", "share_prediction_tower",
       "use_depthwise", "kernel_size", "conv_hyperparams"]],
    *[f"{_SSD}.box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams.{p}" for p in _CONV],
    f"{_SSD}.feature_extractor", f"{_SSD}.feature_extractor.type", f"{_SSD}.feature_extractor.use_depthwise",
    f"{_SSD}.feature_extractor.fpn", f"{_SSD}.feature_extractor.fpn.min_level",
    f"{_SSD}.feature_extractor.fpn.max_level", f"{_SSD}.feature_extractor.fpn.additional_layer_depth",
    f"{_SSD}.feature_extractor.min_depth", f"{_SSD}.feature_extractor.use_explicit_padding",
    f"{_SSD}.feature_extractor.depth_multiplier", f"{_SSD}.feature_extractor.conv_hyperparams",
    *[f"{_SSD}.feature_extractor.conv_hyperparams.{p}" for p in _CONV],
    f"{_SSD}.feature_extractor.override_base_feature_extractor_hyperparams",
    f"{_SSD}.loss", f"{_SSD}.loss.classification_loss", f"{_SSD}.loss.classification_loss.weighted_sigmoid_focal",
    f"{_SSD}.loss.classification_loss.weighted_sigmoid_focal.alpha",
    f"{_SSD}.loss.classification_loss.weighted_sigmoid_focal.gamma",
    f"{_SSD}.loss.localization_loss", f"{_SSD}.loss.localization_loss.weighted_smooth_l1",
    f"{_SSD}.loss.localization_loss.weighted_smooth_l1.delta",
    f"{_SSD}.loss.classification_weight", f"{_SSD}.loss.localization_weight",
    f"{_SSD}.normalize_loss_by_num_matches", f"{_SSD}.normalize_loc_loss_by_codesize",
    f"{_SSD}.freeze_batchnorm",
    f"{_SSD}.post_processing", f"{_SSD}.post_processing.batch_non_max_suppression",
    *[f"{_SSD}.post_processing.batch_non_max_suppression.{p}" for p in
      ["score_threshold", "iou_threshold", "max_detections_per_class", "max_total_detections"]],
    f"{_SSD}.post_processing.score_converter",
    "train_config", "train_config.batch_size", "train_config.num_steps",
    "train_config.fine_tune_checkpoint", "train_config.fine_tune_checkpoint_type",
    "train_config.max_number_of_boxes", "train_config.data_augmentation_options",
    "train_config.data_augmentation_options.random_horizontal_flip",
    "train_config.data_augmentation_options.random_horizontal_flip.probability",
    "train_config.data_augmentation_options.random_crop_image",
    *[f"train_config.data_augmentation_options.random_crop_image.{p}" for p in
      ["min_object_covered", "min_aspect_ratio", "max_aspect_ratio", "min_area", "max_area", "overlap_thresh",
       "clip_boxes", "random_coef"]],
    "train_config.data_augmentation_options.random_adjust_brightness",
    "train_config.data_augmentation_options.random_adjust_brightness.max_delta",
    "train_config.data_augmentation_options.random_adjust_contrast",
    "train_config.data_augmentation_options.random_adjust_contrast.min_delta",
    "train_config.data_augmentation_options.random_adjust_contrast.max_delta",
    "train_config.gradient_clipping_by_norm",
    *[f"train_config.{p}" for p in _OPT],
    "train_input_reader", *[f"train_input_reader.{p}" for p in _READER],
    "eval_config", "eval_config.metrics_set", "eval_config.batch_size", "eval_config.num_examples",
    "eval_config.include_metrics_per_category", "eval_config.max_evals", "eval_config.use_moving_averages",
    "eval_input_reader", *[f"eval_input_reader.{p}" for p in _READER],
]

# No effect on TF 2 with Keras 3 on CPU/GPU; listed in the log as ignored.
IGNORED = [
    f"{_SSD}.inplace_batchnorm_update",  # Keras batch norm updates in place already
    f"{_SSD}.matcher.argmax_matcher.use_matmul_gather",
    f"{_SSD}.feature_extractor.pad_to_multiple",
    f"{_SSD}.box_predictor.weight_shared_convolutional_box_predictor.apply_batch_norm",
    "train_config.sync_replicas", "train_config.replicas_to_aggregate", "train_config.startup_delay_steps",
    "train_config.use_bfloat16", "train_config.fine_tune_checkpoint_version",
    "train_config.unpad_groundtruth_tensors", "train_config.from_detection_checkpoint",
    "train_config.load_all_detection_checkpoint_vars", "train_config.keep_checkpoint_every_n_hours",
    "train_config.summarize_gradients", "train_config.batch_queue_capacity",
    "train_config.num_batch_queue_threads", "train_config.prefetch_queue_capacity",
    "train_config.retain_original_images", "train_config.use_multiclass_scores",
    "eval_config.num_visualizations", "eval_config.visualization_export_dir",
    "eval_config.max_num_boxes_to_visualize", "eval_config.min_score_threshold",
    "eval_config.visualize_groundtruth_boxes", "eval_config.retain_original_images",
    "eval_config.eval_interval_secs", "eval_config.keep_image_id_for_visualization_export",
    "eval_config.skip_scores", "eval_config.skip_labels",
    "train_input_reader.queue_capacity", "train_input_reader.min_after_dequeue",
    "eval_input_reader.queue_capacity", "eval_input_reader.min_after_dequeue",
    "train_input_reader.load_instance_masks", "eval_input_reader.load_instance_masks",
]

# Allowed values for fields that select an implementation.
_CHOICES = {
    f"{_SSD}.feature_extractor.type": {"ssd_mobilenet_v2_fpn_keras", "ssd_mobilenet_v2_fpn"},
    f"{_SSD}.post_processing.score_converter": {"SIGMOID"},
    f"{_SSD}.feature_extractor.conv_hyperparams.activation": {"RELU_6"},
    f"{_SSD}.box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams.activation": {"RELU_6"},
    "train_config.fine_tune_checkpoint_type": {"classification", "detection", "fine_tune", ""},
    f"{_SSD}.box_predictor.weight_shared_convolutional_box_predictor.share_prediction_tower": {True},
    f"{_SSD}.box_predictor.weight_shared_convolutional_box_predictor.use_depthwise": {True},
    f"{_SSD}.feature_extractor.use_depthwise": {True},
    f"{_SSD}.add_background_class": {True},  # the class head has a background slot
    "train_config.optimizer.use_moving_average": {False},
    "eval_config.use_moving_averages": {False},
}

_INDEX = re.compile(r"\[\d+\]")

# What a user sees for each problem kind.
_UNSUPPORTED_ARCH = ("this trainer implements the SSD meta-architecture only "
                     "(MobileNetV2 + FPN-lite); {name} is not supported")


def _matches(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) and p.count(".") == path.count(".") for p in patterns)


def check_config(doc: ConfigDocument) -> list[Problem]:
    """Everything in `doc` the trainer would refuse, each with the field's path and line.

    Field names, types and enum values are checked against the TF OD API's schema
    (`backend.pipeline_schema`), so a typo anywhere is named with its line; then what this trainer
    supports. Extend by appending to the returned list (dataset checks live with the dataset code).
    """
    from backend import pipeline_schema
    _, unknown = pipeline_schema.parse(doc.text)
    bad = [p.path for p in unknown]
    problems, _ = _classify(doc)
    return unknown + [p for p in problems
                      if not any(p.path == b or p.path.startswith((b + ".", b + "[")) for b in bad)]


def ignored_fields(doc: ConfigDocument) -> list[tuple[str, int]]:
    """`(path, line)` of every field accepted but without effect here."""
    return _classify(doc)[1]


def _classify(doc: ConfigDocument) -> tuple[list[Problem], list[tuple[str, int]]]:
    problems: list[Problem] = []
    ignored: list[tuple[str, int]] = []
    model = doc.tree.one("model")
    if not isinstance(model, Message):
        problems.append(Problem("model", 0, "the config has no model { ... } block"))
    else:
        for f in model.fields:
            if f.name != "ssd":
                problems.append(Problem(f"model.{f.name}", doc.line_of(f.start),
                                        _UNSUPPORTED_ARCH.format(name=f.name)))
    refused: list[str] = []
    for path, f in walk(doc.tree):
        if any(path.startswith(r + ".") or path.startswith(r + "[") for r in refused):
            continue  # the enclosing field is already reported
        plain = _INDEX.sub("", path)
        top = plain.split(".")[0]
        if plain.startswith("model.") and plain.split(".")[1] != "ssd":
            continue  # reported once above
        line = doc.line_of(f.start)
        if _matches(plain, IGNORED):
            ignored.append((path, line))
            continue
        if not _matches(plain, SUPPORTED):
            refused.append(path)
            if top in ("model", "train_config", "train_input_reader", "eval_config", "eval_input_reader"):
                problems.append(Problem(path, line, "not supported by the Boxwise trainer: remove it "
                                        "or use a TF OD API installation for this config"))
            else:
                problems.append(Problem(path, line, f"unknown top-level block {top!r}"))
            continue
        allowed = _CHOICES.get(plain)
        if allowed is not None and f.value not in allowed:
            shown = ", ".join(sorted(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed if a != ""))
            problems.append(Problem(path, line, f"{_shown(f.value)} is not supported here (supported: {shown})"))
    problems.extend(_value_problems(doc))
    return problems, ignored


def _schedule_problems(doc: ConfigDocument, prefix: str, get, line) -> list[Problem]:
    """What the TF OD API's learning-rate builders refuse (proto defaults where a field is absent)."""
    out = []
    cosine = get(f"{prefix}.cosine_decay_learning_rate")
    if isinstance(cosine, Message):
        path = f"{prefix}.cosine_decay_learning_rate"
        total, warm = cosine.one("total_steps", 4000000), cosine.one("warmup_steps", 10000)
        hold = cosine.one("hold_base_rate_steps", 0)
        if total < warm:
            out.append(Problem(f"{path}.total_steps", line(path),
                               f"total_steps ({total}) must be ≥ warmup_steps ({warm})"))
        elif total == warm + hold:
            out.append(Problem(f"{path}.total_steps", line(path), f"total_steps ({total}) must be more than "
                               f"warmup_steps + hold_base_rate_steps ({warm} + {hold})"))
        base, wlr = cosine.one("learning_rate_base", 0.002), cosine.one("warmup_learning_rate", 0.0002)
        if warm > 0 and base < wlr:
            out.append(Problem(f"{path}.learning_rate_base", line(path),
                               f"learning_rate_base ({base}) must be ≥ warmup_learning_rate ({wlr})"))
    exponential = get(f"{prefix}.exponential_decay_learning_rate")
    if isinstance(exponential, Message) and exponential.one("decay_steps", 4000000) <= 0:
        path = f"{prefix}.exponential_decay_learning_rate.decay_steps"
        out.append(Problem(path, line(path), "decay_steps must be ≥ 1"))
    manual = get(f"{prefix}.manual_step_learning_rate")
    if isinstance(manual, Message):
        path = f"{prefix}.manual_step_learning_rate"
        steps = [s.one("step", 0) if isinstance(s, Message) else 0 for s in manual.all("schedule")]
        if not steps:
            out.append(Problem(path, line(path), "needs at least one schedule { step: ... learning_rate: ... }"))
        elif steps[0] == 0:
            out.append(Problem(f"{path}.schedule", line(path), "the first schedule step cannot be 0"))
        elif any(b <= a for a, b in zip(steps, steps[1:])):
            out.append(Problem(f"{path}.schedule", line(path),
                               f"schedule steps must increase strictly (they are {steps})"))
    return out


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and type(value) is not str:
        return str(value)  # an enum: bare, as written
    return repr(value)


def _value_problems(doc: ConfigDocument) -> list[Problem]:
    out = []

    def get(path, default=None):
        try:
            return doc.get(path)
        except Exception:  # noqa: BLE001 - absent or repeated: the walk reports structure
            return default

    def line(path):
        try:
            return doc.line(path)
        except Exception:  # noqa: BLE001
            return 0

    n = get(f"{_SSD}.num_classes")
    if isinstance(doc.tree.one("model"), Message) and doc.tree.one("model").has("ssd"):
        if not isinstance(n, int) or n < 1:
            out.append(Problem(f"{_SSD}.num_classes", line(f"{_SSD}.num_classes"),
                               "must be a whole number ≥ 1 (the label map's class count)"))
        for level in ("min_level", "max_level"):
            a = get(f"{_SSD}.anchor_generator.multiscale_anchor_generator.{level}")
            b = get(f"{_SSD}.feature_extractor.fpn.{level}")
            if a is not None and b is not None and a != b:
                out.append(Problem(f"{_SSD}.feature_extractor.fpn.{level}", line(f"{_SSD}.feature_extractor.fpn.{level}"),
                                   f"must equal the anchor generator's {level} ({a})"))
        min_level = get(f"{_SSD}.anchor_generator.multiscale_anchor_generator.min_level", 3)
        max_level = get(f"{_SSD}.anchor_generator.multiscale_anchor_generator.max_level", 7)
        if not (isinstance(min_level, int) and 2 <= min_level <= 5) or not (
                isinstance(max_level, int) and max(5, min_level) <= max_level <= 7):
            out.append(Problem(f"{_SSD}.anchor_generator.multiscale_anchor_generator",
                               line(f"{_SSD}.anchor_generator"),
                               f"levels {min_level}..{max_level}: the MobileNetV2 FPN supports min_level 2 to 5 "
                               "and max_level 5 to 7"))
        resizer = get(f"{_SSD}.image_resizer")
        if isinstance(resizer, Message) and not resizer.fields:
            out.append(Problem(f"{_SSD}.image_resizer", line(f"{_SSD}.image_resizer"),
                               "needs fixed_shape_resizer or keep_aspect_ratio_resizer"))
        h = get(f"{_SSD}.image_resizer.fixed_shape_resizer.height")
        w = get(f"{_SSD}.image_resizer.fixed_shape_resizer.width")
        for name, v in (("height", h), ("width", w)):
            if v is not None and (not isinstance(v, int) or v < 32):
                out.append(Problem(f"{_SSD}.image_resizer.fixed_shape_resizer.{name}",
                                   line(f"{_SSD}.image_resizer.fixed_shape_resizer.{name}"),
                                   "must be a whole number of pixels ≥ 32"))
    ssd = doc.tree.one("model").one("ssd") if isinstance(doc.tree.one("model"), Message) else None
    if isinstance(ssd, Message) and isinstance(get(f"{_SSD}.matcher.argmax_matcher"), Message):
        path = f"{_SSD}.matcher.argmax_matcher"
        out.extend(Problem(path, line(path), text) for text in _matcher(ssd).problems())
    for kind in ("momentum_optimizer", "adam_optimizer", "rms_prop_optimizer"):
        optimizer = get(f"train_config.optimizer.{kind}")
        rate = optimizer.one("learning_rate") if isinstance(optimizer, Message) else None
        if isinstance(optimizer, Message) and not (isinstance(rate, Message) and rate.fields):
            path = f"train_config.optimizer.{kind}"
            out.append(Problem(path, line(path), "needs a learning_rate { ... } (constant_learning_rate, "
                               "exponential_decay_learning_rate, manual_step_learning_rate or "
                               "cosine_decay_learning_rate)"))
        out.extend(_schedule_problems(doc, f"train_config.optimizer.{kind}.learning_rate", get, line))
    opt = get("train_config.optimizer")
    if isinstance(opt, Message):
        kinds = [f.name for f in opt.fields if f.name.endswith("_optimizer")]
        if len(kinds) != 1:
            out.append(Problem("train_config.optimizer", line("train_config.optimizer"),
                               "needs exactly one of momentum_optimizer, adam_optimizer, rms_prop_optimizer"))
        if not opt.has("use_moving_average"):
            out.append(Problem("train_config.optimizer", line("train_config.optimizer"),
                               "use_moving_average is true by default in the TF OD API and this trainer keeps "
                               "no moving average: add use_moving_average: false"))
    return out


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
    ignored: tuple[tuple[str, int], ...] = field(default_factory=tuple)


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
                       sample_1_of_n=int(message.one("sample_1_of_n_examples", 1)),
                       shuffle_buffer_size=int(message.one("shuffle_buffer_size", 2048)),
                       filenames_shuffle_buffer_size=int(message.one("filenames_shuffle_buffer_size", 100)),
                       num_readers=int(message.one("num_readers", 64)),
                       read_block_length=int(message.one("read_block_length", 32)))


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
    problems = check_config(doc)
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
        ignored=tuple(ignored_fields(doc)))


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


def check_inputs(doc: ConfigDocument) -> list[Problem]:
    """Problems with the files a config names: input globs matching nothing, label maps that do not
    exist or parse, a label map with ids above `num_classes`, a missing fine-tune checkpoint."""
    from backend import saved_configs  # the input and checkpoint rules shared with the Configs page
    from backend.formats import label_map as label_maps

    problems: list[Problem] = []
    num_classes = None
    try:
        num_classes = doc.get("model.ssd.num_classes")
    except Exception:  # noqa: BLE001 - reported by check_config
        pass
    for reader in ("train_input_reader", "eval_input_reader"):
        for pattern in doc.get_all(f"{reader}.tf_record_input_reader.input_path"):
            path = f"{reader}.tf_record_input_reader.input_path"
            why = saved_configs.input_problem(str(pattern)) if "://" not in str(pattern) else None
            if why:
                problems.append(Problem(path, _line(doc, path), why))
        path = f"{reader}.label_map_path"
        label_map_path = doc.get_all(path)
        if not label_map_path:
            continue
        label_map_path = str(label_map_path[-1])
        if "://" in label_map_path:
            continue
        why = saved_configs.unusable_path(label_map_path)
        if why:
            problems.append(Problem(path, _line(doc, path), f"{saved_configs.shown(label_map_path)} {why}"))
            continue
        if not Path(label_map_path).is_file():
            problems.append(Problem(path, _line(doc, path), f"{label_map_path!r} does not exist"))
            continue
        try:
            label_map = label_maps.read(label_map_path)
        except Invalid as exc:
            problems.append(Problem(path, _line(doc, path), str(exc)))
            continue
        if isinstance(num_classes, int) and label_map.num_classes > num_classes:
            problems.append(Problem("model.ssd.num_classes", _line(doc, "model.ssd.num_classes"),
                                    f"{num_classes} is less than the label map's largest id "
                                    f"{label_map.num_classes} ({label_map_path})"))
    try:
        checkpoint = doc.get("train_config.fine_tune_checkpoint")
    except Exception:  # noqa: BLE001 - absent
        checkpoint = None
    if checkpoint and "://" not in str(checkpoint):
        why = saved_configs.checkpoint_problem(str(checkpoint))
        if why:
            path = "train_config.fine_tune_checkpoint"
            problems.append(Problem(path, _line(doc, path), why))
    return problems


def _line(doc: ConfigDocument, path: str) -> int:
    try:
        return doc.line(path)
    except Exception:  # noqa: BLE001
        return 0
