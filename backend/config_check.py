"""The config check: the one function that says what is wrong with a `pipeline.config`.

The Configs page, `python -m backend config check FILE [--dataset-version N]`, launching a run
and the trainer (`python -m backend train`) all call `check()`, so they give the same problems
for the same text. Each problem is a `Problem(path, line, message)`:

1. a syntax error (one problem at its line);
2. every field the TF OD API's schema does not know, every wrong-typed value and unknown enum
   value (`backend.pipeline_schema`), for the Boxwise trainer and external runners alike;
3. for the Boxwise trainer, what it does not implement (another meta-architecture, feature
   extractor, loss...), values it refuses, and learning-rate schedules the OD API's builders
   refuse; for an external runner only the schedules;
4. with `files=True`, the files it names: label maps (read by `backend.formats.label_map`, the
   one label-map reader) against `num_classes`, input globs against the shards on disk, the
   fine-tune checkpoint, each local path confined for `actor` (`paths.confine`) before it is
   read; with a dataset version, `num_classes` and the inputs against it.

Every field is *supported* (`SUPPORTED`: read into the trainer's settings), *ignored*
(`IGNORED`, with reasons in `backend/pipeline_schema/ignored.py`: accepted, listed with `ignored()`), or refused here. Nothing in this module imports
TensorFlow or Keras.
"""
from __future__ import annotations

import fnmatch
import glob
import re
from pathlib import Path
from typing import Any

from backend import paths
from backend.formats import label_map as label_map_format
from backend.errors import Invalid, NotFound
from backend.config_document import ConfigDocument, ConfigSyntaxError, Message, Problem, walk
from backend.pipeline_schema.ignored import IGNORED as IGNORED_REASONS


def check(text: str, version=None, *, actor: dict | None = None, external: bool = False,
          files: bool = True, base: str | Path | None = None) -> list[Problem]:
    """Every problem in a config's text, each with its path and line; empty when it can train.

    `version` (a `dataset_versions.DatasetVersion`) adds the checks against a dataset version; `external`
    checks for an external runner (the OD API's own trainer) instead of Boxwise's; `files=False`
    leaves the file system alone (the trainer's typed settings, the zoo's configs). `base`: the
    folder relative paths are read from (`paths.absolute`; a saved config's: the data folder).
    """
    from backend import pipeline_schema

    try:
        doc = ConfigDocument(text)
    except ConfigSyntaxError as exc:
        return [Problem("(syntax)", exc.line, str(exc))]
    typed, unknown = pipeline_schema.parse(text)
    bad = [p.path for p in unknown]
    if external:
        found = [p for kind in _OPTIMIZERS
                 for p in _schedule_problems(doc, f"train_config.optimizer.{kind}.learning_rate",
                                             _getter(doc), _liner(doc))]
    else:
        found = _classify(doc, typed)[0]
    problems = unknown + [p for p in found
                          if not any(p.path == b or p.path.startswith((b + ".", b + "[")) for b in bad)]
    if files:
        problems += _file_problems(doc, version, actor, base)
    return problems


def ignored(text: str) -> list[tuple[str, int, str]]:
    """`(path, line, reason)` of every field the Boxwise trainer accepts but that has no effect
    (`backend/pipeline_schema/ignored.py`)."""
    from backend import pipeline_schema

    return _classify(ConfigDocument(text), pipeline_schema.parse(text)[0])[1]


def matcher_problems(argmax) -> list[str]:
    """What the TF OD API's ArgMaxMatcher refuses to build with these settings (a typed
    `ArgMaxMatcher` message: absent fields have the schema's defaults)."""
    if argmax.ignore_thresholds:
        return []
    matched, unmatched = argmax.matched_threshold, argmax.unmatched_threshold
    if unmatched > matched:
        return [f"unmatched_threshold ({_short(unmatched)}) must be ≤ matched_threshold ({_short(matched)})"]
    if not argmax.negatives_lower_than_unmatched and unmatched == matched:
        return ["negatives_lower_than_unmatched: false needs unmatched_threshold < matched_threshold "
                f"(both are {_short(matched)})"]
    return []


def _short(value: float) -> str:
    """A float field as the config writes it (0.5, not 0.5000000001 from float32)."""
    return f"{value:.7g}"


_OPTIMIZERS = ("momentum_optimizer", "adam_optimizer", "rms_prop_optimizer")


def _getter(doc: ConfigDocument):
    def get(path, default=None):
        try:
            return doc.get(path)
        except Exception:  # noqa: BLE001 - absent or repeated: the walk reports structure
            return default
    return get


def _liner(doc: ConfigDocument):
    def line(path):
        return _line(doc, path)
    return line


def _line(doc: ConfigDocument, path: str) -> int:
    try:
        return doc.line(path)
    except Exception:  # noqa: BLE001 - absent or repeated: 0, the walk reports structure
        return 0


# Field paths without indices; `*` matches within one path segment (fnmatch).
_SSD = "model.ssd"
_CONV = ["activation", "regularizer", "regularizer.l2_regularizer", "regularizer.l2_regularizer.weight",
         "initializer", "initializer.random_normal_initializer", "initializer.random_normal_initializer.*",
         "initializer.truncated_normal_initializer", "initializer.truncated_normal_initializer.*",
         "batch_norm", "batch_norm.scale", "batch_norm.decay", "batch_norm.epsilon", "batch_norm.center"]
_LR = ["constant_learning_rate", "constant_learning_rate.learning_rate",
       "exponential_decay_learning_rate", "exponential_decay_learning_rate.*",
       "manual_step_learning_rate", "manual_step_learning_rate.initial_learning_rate",
       "manual_step_learning_rate.schedule", "manual_step_learning_rate.schedule.*",
       "manual_step_learning_rate.warmup",
       "cosine_decay_learning_rate", "cosine_decay_learning_rate.*"]
_OPT = ["optimizer", "optimizer.use_moving_average"]
for _kind, _extra in (("momentum_optimizer", ["momentum_optimizer_value"]),
                      ("adam_optimizer", ["epsilon"]),
                      ("rms_prop_optimizer", ["momentum_optimizer_value", "decay", "epsilon"])):
    _OPT += [f"optimizer.{_kind}", f"optimizer.{_kind}.learning_rate"]
    _OPT += [f"optimizer.{_kind}.learning_rate.{p}" for p in _LR]
    _OPT += [f"optimizer.{_kind}.{p}" for p in _extra]
_READER = ["label_map_path", "shuffle", "num_epochs", "tf_record_input_reader",
           "tf_record_input_reader.input_path", "sample_1_of_n_examples", "shuffle_buffer_size",
           "filenames_shuffle_buffer_size", "num_readers", "read_block_length"]

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
    "eval_config.include_metrics_per_category", "eval_config.use_moving_averages",
    "eval_input_reader", *[f"eval_input_reader.{p}" for p in _READER],
]

# Accepted without effect, each with its reason: the table beside the schema.
IGNORED = list(IGNORED_REASONS)

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
    f"{_SSD}.anchor_generator.multiscale_anchor_generator.normalize_coordinates": {True},  # anchors in [0, 1]
    "train_config.optimizer.use_moving_average": {False},
    "eval_config.use_moving_averages": {False},
}

_INDEX = re.compile(r"\[\d+\]")

# What a user sees for each problem kind.
_UNSUPPORTED_ARCH = ("this trainer implements the SSD meta-architecture only "
                     "(MobileNetV2 + FPN-lite); {name} is not supported")


def _matches(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) and p.count(".") == path.count(".") for p in patterns)


def _classify(doc: ConfigDocument, typed) -> tuple[list[Problem], list[tuple[str, int, str]]]:
    problems: list[Problem] = []
    ignored: list[tuple[str, int, str]] = []
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
            ignored.append((path, line, next(r for p, r in IGNORED_REASONS.items() if _matches(plain, [p]))))
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
    problems.extend(_value_problems(doc, typed))
    return problems, ignored


def _schedule_problems(doc: ConfigDocument, prefix: str, get, line) -> list[Problem]:
    """What the TF OD API's learning-rate builders refuse (proto defaults where a field is absent), and a
    cosine schedule that ends before training does."""
    from backend import pipeline_schema
    out = []

    def field(message: Message, path: str, name: str):
        return message.one(name, pipeline_schema.default(f"{path}.{name}"))

    cosine = get(f"{prefix}.cosine_decay_learning_rate")
    if isinstance(cosine, Message):
        path = f"{prefix}.cosine_decay_learning_rate"
        total, warm = field(cosine, path, "total_steps"), field(cosine, path, "warmup_steps")
        hold = field(cosine, path, "hold_base_rate_steps")
        num_steps = get("train_config.num_steps", 0)
        if total < warm:
            out.append(Problem(f"{path}.total_steps", line(f"{path}.total_steps") or line(path),
                               f"total_steps ({total}) must be ≥ warmup_steps ({warm})"))
        elif total == warm + hold:
            out.append(Problem(f"{path}.total_steps", line(f"{path}.total_steps") or line(path),
                               f"total_steps ({total}) must be more than "
                               f"warmup_steps + hold_base_rate_steps ({warm} + {hold})"))
        elif isinstance(num_steps, int) and isinstance(total, int) and 0 < total < num_steps:
            out.append(Problem(f"{path}.total_steps", line(f"{path}.total_steps") or line(path),
                               f"total_steps ({total}) < train_config.num_steps ({num_steps}): the cosine "
                               f"schedule's learning rate is 0 after step {total}, so the last "
                               f"{num_steps - total} steps do not train; set total_steps to {num_steps}"))
        base, wlr = field(cosine, path, "learning_rate_base"), field(cosine, path, "warmup_learning_rate")
        if warm > 0 and base < wlr:
            out.append(Problem(f"{path}.learning_rate_base", line(f"{path}.learning_rate_base") or line(path),
                               f"learning_rate_base ({base}) must be ≥ warmup_learning_rate ({wlr})"))
    exponential = get(f"{prefix}.exponential_decay_learning_rate")
    if isinstance(exponential, Message) and \
            field(exponential, f"{prefix}.exponential_decay_learning_rate", "decay_steps") <= 0:
        path = f"{prefix}.exponential_decay_learning_rate.decay_steps"
        out.append(Problem(path, line(path), "decay_steps must be ≥ 1"))
    manual = get(f"{prefix}.manual_step_learning_rate")
    if isinstance(manual, Message):
        path = f"{prefix}.manual_step_learning_rate"
        steps = [field(s, f"{path}.schedule", "step") if isinstance(s, Message) else 0
                 for s in manual.all("schedule")]
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


def _value_problems(doc: ConfigDocument, typed) -> list[Problem]:
    out = []
    get, line = _getter(doc), _liner(doc)
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
    if isinstance(get(f"{_SSD}.matcher.argmax_matcher"), Message):
        path = f"{_SSD}.matcher.argmax_matcher"
        out.extend(Problem(path, line(path), text) for text in matcher_problems(typed.model.ssd.matcher.argmax_matcher))
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


# ---------------------------------------------------------------- the files a config names


def _reader_paths(doc: ConfigDocument, reader: str) -> list[tuple[str, str]]:
    """`(path in the config, input glob)` for every input_path of `reader` (repeated readers too)."""
    out = []
    readers = doc.tree.all(reader)
    for r, message in enumerate(readers):
        if not isinstance(message, Message):
            continue
        prefix = reader if len(readers) == 1 else f"{reader}[{r}]"
        tf_record = message.one("tf_record_input_reader")
        values = tf_record.all("input_path") if isinstance(tf_record, Message) else []
        for i, value in enumerate(values):
            suffix = "" if len(values) == 1 else f"[{i}]"
            out.append((f"{prefix}.tf_record_input_reader.input_path{suffix}", str(value)))
    return out


def _is_remote(path: str) -> bool:
    return "://" in path


def _inside(pattern: str, folder: Path) -> bool:
    try:
        Path(pattern).resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _named_files(doc: ConfigDocument) -> list[tuple[str, str]]:
    """`(path in the config, value)` of every file a config names: the readers' label maps and
    input globs, and the fine-tune checkpoint."""
    named = []
    for reader in ("train_input_reader", "eval_input_reader"):
        readers = doc.tree.all(reader)
        for r, message in enumerate(readers):
            if isinstance(message, Message) and message.has("label_map_path"):
                prefix = reader if len(readers) == 1 else f"{reader}[{r}]"
                named.append((f"{prefix}.label_map_path", str(message.one("label_map_path"))))
        named += _reader_paths(doc, reader)
    checkpoint = doc.get_or("train_config.fine_tune_checkpoint")
    if checkpoint:
        named.append(("train_config.fine_tune_checkpoint", str(checkpoint)))
    return named


def absolute_paths(text: str, actor: dict | None, base: str | Path | None = None) -> str:
    """The config with every relative local file it names made absolute as `paths.absolute`
    reads it for `actor` (from the data folder for signed-in users, from `base` when given), so
    the trainer, whatever its working folder, reads the files the check confined. Other bytes
    are kept."""
    doc = ConfigDocument(text)
    for path, value in _named_files(doc):
        if value and not _is_remote(value) and not Path(value).is_absolute():
            doc.set(path, paths.absolute(value, actor, pattern=path.split(".")[-1].startswith("input_path"),
                                         base=base))
    return doc.text


def _file_problems(doc: ConfigDocument, version, actor: dict | None, base=None) -> list[Problem]:
    from backend.saved_configs import checkpoint_problem, input_problem, unusable_path

    problems: list[Problem] = []
    num_classes = doc.get_or("model.ssd.num_classes")
    num_classes_path = "model.ssd.num_classes"
    if num_classes is None:
        model = doc.tree.one("model")
        for f in (model.fields if isinstance(model, Message) else []):
            if isinstance(f.value, Message) and f.value.has("num_classes"):
                num_classes_path = f"model.{f.name}.num_classes"
                num_classes = f.value.one("num_classes")

    label_maps = []
    for reader in ("train_input_reader", "eval_input_reader"):
        for r, message in enumerate(doc.tree.all(reader)):
            if isinstance(message, Message) and message.has("label_map_path"):
                prefix = reader if len(doc.tree.all(reader)) == 1 else f"{reader}[{r}]"
                label_maps.append((f"{prefix}.label_map_path", str(message.one("label_map_path"))))
    if not label_maps:
        problems.append(Problem("train_input_reader.label_map_path", 0, "no label map is set"))
    checked = set()
    for path, value in label_maps:
        if _is_remote(value) or value in checked:
            continue
        checked.add(value)
        why = unusable_path(value)
        if why:
            problems.append(Problem(path, _line(doc, path), f"label map {paths.quoted(value)} {why}"))
            continue
        try:
            items = label_map_format.read(paths.confine(value, actor, "config", base=base)).items
        except PermissionError as exc:
            problems.append(Problem(path, _line(doc, path), str(exc)))
            continue
        except NotFound:
            problems.append(Problem(path, _line(doc, path), f"label map {paths.quoted(value)} does not exist"))
            continue
        except ConfigSyntaxError as exc:
            problems.append(Problem(path, _line(doc, path), f"label map {value!r} does not parse "
                                                            f"(line {exc.line}, column {exc.column})"))
            continue
        except Invalid as exc:
            problems.append(Problem(path, _line(doc, path), str(exc)))
            continue
        largest = max((item.id for item in items), default=0)
        # Ids above num_classes have no class output: the OD API one-hot encodes them as all
        # zeros, so those boxes would silently train as background. num_classes above the largest
        # id trains (unused outputs): the config doctor warns about that one.
        if isinstance(num_classes, int) and num_classes < largest:
            problems.append(Problem(num_classes_path, _line(doc, num_classes_path),
                                    f"num_classes is {num_classes} but the label map {value!r} "
                                    f"has {len(items)} classes with ids up to {largest}: boxes of the ids "
                                    f"above {num_classes} would train as background; set num_classes "
                                    f"to {largest}"))
    if version is not None and isinstance(num_classes, int) and num_classes < version.num_classes:
        message = (f"num_classes is {num_classes} but dataset version {version.id} has "
                   f"{version.num_classes} classes; set num_classes to {version.num_classes}")
        if not any(p.path == num_classes_path and "label map" in p.message for p in problems):
            problems.append(Problem(num_classes_path, _line(doc, num_classes_path), message))

    for reader in ("train_input_reader", "eval_input_reader"):
        reader_paths = _reader_paths(doc, reader)
        if not reader_paths and reader == "train_input_reader":
            problems.append(Problem(f"{reader}.tf_record_input_reader.input_path", 0,
                                    "no training input is set"))
        for path, value in reader_paths:
            why = None if _is_remote(value) else unusable_path(value)
            if why:
                problems.append(Problem(path, _line(doc, path), f"{paths.quoted(value)} {why}"))
                continue
            try:
                paths.confine_matches(value, actor, "config")  # the pattern and each file it matches
                if _is_remote(value):
                    continue
            except PermissionError as exc:
                problems.append(Problem(path, _line(doc, path), str(exc)))
                continue
            local = paths.absolute(value, actor, pattern=True, base=base)  # a relative one: from the data folder
            why = input_problem(local, value)
            if why:
                problems.append(Problem(path, _line(doc, path), why))
            elif version is not None and not _inside(local, version.path):
                problems.append(Problem(path, _line(doc, path),
                                        f"{value!r} is not a shard of dataset version {version.id} "
                                        f"({version.path})"))

    checkpoint = doc.get_or("train_config.fine_tune_checkpoint")
    if checkpoint:
        path = "train_config.fine_tune_checkpoint"
        remote_checkpoint = _is_remote(str(checkpoint))
        why = None if remote_checkpoint else unusable_path(str(checkpoint))
        if why:
            problems.append(Problem(path, _line(doc, path), f"fine-tune checkpoint {paths.quoted(str(checkpoint))} {why}"))
        else:
            try:
                paths.confine(str(checkpoint), actor, "checkpoint")
                if not remote_checkpoint:  # `.index`, `.data-*` beside a prefix; a folder's files
                    paths.confine_matches(glob.escape(str(checkpoint)) + "*", actor, "checkpoint")
            except PermissionError as exc:
                problems.append(Problem(path, _line(doc, path), str(exc)))
            else:
                if remote_checkpoint:
                    return problems
                why = checkpoint_problem(paths.absolute(str(checkpoint), actor, base=base))
                if why:
                    problems.append(Problem(path, _line(doc, path), why + _checkpoint_hint(doc, str(checkpoint))))
    return problems


def _checkpoint_hint(doc: ConfigDocument, checkpoint: str) -> str:
    """What a missing fine-tune checkpoint should have been, by its type."""
    if doc.get_or("train_config.fine_tune_checkpoint_type") == "classification":
        if checkpoint.endswith(".h5"):
            return (" (a Keras MobileNetV2 weights file without its top; nothing is downloaded). "
                    "Remove the field to train from scratch.")
        return " (a TF OD API classification checkpoint prefix such as .../mobilenet_v2.ckpt-1, or a Keras .h5 file)"
    return (" (a detection checkpoint prefix such as .../ckpt-0, a model_dir holding one, or a zoo model's "
            "folder holding checkpoint/ckpt-0)")
