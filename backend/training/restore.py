"""Checkpoints in the TF OD API's object-graph layout: writing, restoring, and a report of what was restored.

Boxwise writes the detector's variables under the keys the TF OD API's Keras SSD uses
(`tf.train.Checkpoint(model=...)`), e.g.

    model/_feature_extractor/classification_backbone/layer_with_weights-0/kernel
    model/_feature_extractor/_fpn_features_generator/top_layers/0/kernel
    model/_box_predictor/_head_scope_conv_layers/PredictionTower/0/depthwise_kernel
    model/_box_predictor/_base_tower_layers_for_heads/box_encodings/<level>/<1 + 3·layer>/gamma
    model/_box_predictor/_prediction_heads/class_predictions_with_background/_class_predictor_layers/0/bias

(each followed by `/.ATTRIBUTES/VARIABLE_VALUE`), so one loader reads a zoo tarball's
`checkpoint/ckpt-0`, a `model_main_tf2.py` `model_dir/ckpt-N` and Boxwise's own checkpoints, and
the OD API can read Boxwise's. `checkpoint_variables` builds that key → variable map from the
model's structure (MobileNetV2's `layer_with_weights-N` is its N-th layer with weights in
`model.backbone_layer_names()` order), never from variable creation order.

Restoring reads each key with `tf.train.load_checkpoint` and assigns it after a shape check;
`RestoreReport` lists every variable restored or left fresh (with the reason) and every
checkpoint value not used (with the reason).
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend import atomic
from backend.errors import Invalid, NotFound
from backend.training.network import SSDDetector, backbone_layer_names

log = logging.getLogger(__name__)

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
BACKBONE = "model/_feature_extractor/classification_backbone"
FPN = "model/_feature_extractor/_fpn_features_generator"
COARSE = "model/_feature_extractor/_coarse_feature_layers"
PREDICTOR = "model/_box_predictor"
CLASS_HEAD = f"{PREDICTOR}/_prediction_heads/class_predictions_with_background/_class_predictor_layers/0"
BOX_HEAD = f"{PREDICTOR}/_box_prediction_head/_box_encoder_layers/0"
# A classification checkpoint: tf.train.Checkpoint(feature_extractor=<MobileNetV2>).
CLASSIFICATION_BACKBONE = "feature_extractor"
REPORT_FILE = "restore_report.json"
PARTS = ("backbone", "fpn", "tower", "tower_batch_norm", "box_head", "class_head")


def _variables_of(layer) -> dict[str, Any]:
    """`{OD API attribute name: variable}` of a Keras 3 layer (Keras 3 names a depthwise conv's
    kernel `kernel`; Keras 2, and so the OD API's checkpoints, `depthwise_kernel`)."""
    import keras
    out = {}
    for variable in layer.weights:
        name = variable.name.rsplit("/", 1)[-1]
        if isinstance(layer, keras.layers.DepthwiseConv2D) and name == "kernel":
            name = "depthwise_kernel"
        out[name] = variable
    return out


def checkpoint_variables(model: SSDDetector) -> dict[str, tuple[str, Any]]:
    """`{OD API checkpoint key (without /.ATTRIBUTES/VARIABLE_VALUE): (part, variable)}` for every
    variable of `model` (a training-structure detector, not a folded one)."""
    spec = model.spec
    if spec.fold_batch_norm:
        raise ValueError("a folded detector has no checkpoint layout; checkpoint the training detector")
    keys: dict[str, tuple[str, Any]] = {}

    def put(prefix: str, part: str, layer) -> None:
        for name, variable in _variables_of(layer).items():
            keys[f"{prefix}/{name}"] = (part, variable)

    for index, name in enumerate(backbone_layer_names()):
        put(f"{BACKBONE}/layer_with_weights-{index}", "backbone", model.backbone.get_layer(name))
    fpn = model.fpn
    offset = 1 if spec.use_explicit_padding else 0  # the OD API puts a padding layer first
    put(f"{FPN}/top_layers/0", "fpn", fpn.top_layers)
    for i, (projection, conv, norm) in enumerate(zip(fpn.residual_blocks, fpn.conv_layers, fpn.conv_norms)):
        put(f"{FPN}/residual_blocks/{i}/0", "fpn", projection)
        put(f"{FPN}/conv_layers/{i}/{offset}", "fpn", conv)
        put(f"{FPN}/conv_layers/{i}/{offset + 1}", "fpn", norm)
    for j, (conv, norm) in enumerate(zip(fpn.coarse_layers, fpn.coarse_norms)):
        put(f"{COARSE}/{j}/{offset}", "fpn", conv)
        put(f"{COARSE}/{j}/{offset + 1}", "fpn", norm)
    predictor = model.predictor
    for i, conv in enumerate(predictor.tower):
        put(f"{PREDICTOR}/_head_scope_conv_layers/PredictionTower/{i}", "tower", conv)
    for index, norm in enumerate(predictor.tower_bn):
        layer, level = divmod(index, predictor.num_levels)
        put(f"{PREDICTOR}/_base_tower_layers_for_heads/box_encodings/{level}/{3 * layer + 1}",
            "tower_batch_norm", norm)
    put(BOX_HEAD, "box_head", predictor.box_head)
    put(CLASS_HEAD, "class_head", predictor.class_head)
    count = len({id(v) for v in model.weights})
    if len(keys) != count:
        raise AssertionError(f"checkpoint keys name {len(keys)} of the detector's {count} variables")
    return keys


def _tree(items: dict[str, Any]):
    """Nested `tf.train.Checkpoint`s whose object graph spells each key of `items`."""
    import tensorflow as tf
    nested: dict[str, Any] = {}
    for key, value in items.items():
        node = nested
        *path, leaf = key.split("/")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value

    def build(node):
        return tf.train.Checkpoint(**{k: build(v) if isinstance(v, dict) else v for k, v in node.items()})

    return build(nested)


def checkpoint_for(model: SSDDetector, optimizer=None):
    """A `tf.train.Checkpoint` writing `model` in the OD API's layout (and, for training,
    `optimizer`: its iteration count and slots, under `optimizer/`)."""
    import tensorflow as tf
    tree = _tree({key[len("model/"):]: variable for key, (_, variable) in checkpoint_variables(model).items()})
    if optimizer is None:
        return tf.train.Checkpoint(model=tree)
    # The optimizer's own variables only, by position: tracking the Keras optimizer object itself
    # would save the model's variables under its (shallower) paths instead of the keys above.
    return tf.train.Checkpoint(model=tree, optimizer=_tree(optimizer_variables(optimizer)))


def optimizer_variables(optimizer) -> dict[str, Any]:
    """`{"_iterations": the step count, "_variables/N": every other optimizer variable}` (learning
    rate, slots, loss scale) in the order Keras creates them, which the model's trainable
    variables' order fixes. `optimizer/_iterations` is where the OD API's checkpoints keep the step too."""
    iterations = optimizer.iterations
    others = [v for v in optimizer.variables if id(v) != id(iterations)]
    return {"_iterations": iterations, **{f"_variables/{index}": v for index, v in enumerate(others)}}


# --- finding and describing checkpoints ------------------------------------------------------

def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix from `path`: a prefix (`.../ckpt-0`), a directory with a `checkpoint`
    index file, or a directory holding `checkpoint/` (a zoo model's extracted tarball)."""
    import tensorflow as tf
    path = str(path)
    if tf.io.gfile.isdir(path):
        for folder in (path, os.path.join(path, "checkpoint")):
            if tf.io.gfile.isdir(folder):
                index_file = os.path.join(folder, "checkpoint")
                latest = tf.train.latest_checkpoint(folder) if not tf.io.gfile.isdir(index_file) else None
                if latest and tf.io.gfile.exists(latest + ".index"):
                    return latest
                indexes = sorted(tf.io.gfile.glob(os.path.join(folder, "*.index")))
                if len(indexes) == 1:
                    return indexes[0][: -len(".index")]
        raise NotFound(f"no checkpoint (ckpt-N.index) in {path!r} or its checkpoint/ folder")
    if tf.io.gfile.exists(path + ".index"):
        return path
    raise NotFound(f"no checkpoint {path!r} (expected {path}.index)")


def _checkpoint_shapes(prefix: str):
    import tensorflow as tf
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: say so in one line
        raise Invalid(f"{prefix!r} is not a readable TensorFlow checkpoint ({type(exc).__name__})") from None
    shapes = {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    return reader, shapes


OLD_BOXWISE = "Boxwise checkpoint of the layout before 2026-12 (keys like model/backbone..Conv1..kernel)"


def describe_checkpoint(keys) -> str:
    """What a checkpoint looks like, from its keys: the OD API detection layout (and which
    meta-architecture), the OD API classification layout, Boxwise's old layout, or other."""
    keys = [k for k in keys if k != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    values = [k for k in keys if k.endswith(SUFFIX)]
    has_optimizer = any(k.startswith("optimizer/") or ".OPTIMIZER_SLOT" in k for k in keys)
    extra = ", with optimizer state" if has_optimizer else ""
    model_keys = [k for k in values if k.startswith("model/") and ".OPTIMIZER_SLOT" not in k]
    if any(k.startswith(("model/backbone..", "model/predictor..")) for k in keys):
        return OLD_BOXWISE
    if any(k.startswith("model/_feature_extractor/") for k in keys):
        if any(k.startswith("model/_box_predictor/") for k in keys):
            meta = "ssd"
        elif any(k.startswith(("model/_first_stage", "model/_mask_rcnn_box_predictor")) for k in keys):
            meta = "faster_rcnn"
        else:
            meta = "detection"
        return f"TF OD API {meta} checkpoint ({len(model_keys)} model variables{extra})"
    if any(k.startswith(f"{CLASSIFICATION_BACKBONE}/") for k in keys):
        count = sum(k.startswith(f"{CLASSIFICATION_BACKBONE}/") for k in values)
        return f"TF OD API classification checkpoint (feature_extractor/..., {count} variables)"
    first = min(keys) if keys else "none"
    return f"TF checkpoint with {len(values)} variables, not in the TF OD API layout (first key {first})"


# --- the report ------------------------------------------------------------------------------

@dataclass
class RestoreReport:
    """What a start restored. `variables`: every model variable's key → `"restored"` or the
    reason it starts fresh; `unused`: checkpoint values not restored → reason."""
    kind: str                      # scratch | detection | classification | resume
    source: str = ""
    layout: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    parts: dict[str, dict[str, int]] = field(default_factory=dict)
    unused: dict[str, str] = field(default_factory=dict)

    @property
    def restored(self) -> list[str]:
        return [k for k, v in self.variables.items() if v == "restored"]

    @property
    def fresh(self) -> dict[str, str]:
        return {k: v for k, v in self.variables.items() if v != "restored"}

    def unused_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for reason in self.unused.values():
            counts[reason] = counts.get(reason, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        total = sum(p["variables"] for p in self.parts.values())
        params = sum(p["parameters"] for p in self.parts.values())
        return {
            "kind": self.kind, "source": self.source, "layout": self.layout,
            "restored": len(self.restored), "variables": total,
            "restored_parameters": sum(p["restored_parameters"] for p in self.parts.values()),
            "parameters": params, "parts": self.parts,
            "fresh": self.fresh, "unused": self.unused, "unused_counts": self.unused_counts(),
        }

    def summary(self) -> str:
        d = self.to_dict()
        if self.kind == "scratch":
            return f"no checkpoint restored: all {d['variables']} variables ({d['parameters']:,} parameters) start fresh"
        parts = ", ".join(f"{name} {p['restored']}/{p['variables']}" for name, p in self.parts.items() if p["variables"])
        line = (f"{self.kind} restore from {self.source} ({self.layout}): {d['restored']} of {d['variables']} variables "
                f"({d['restored_parameters']:,} of {d['parameters']:,} parameters) restored [{parts}]")
        if self.fresh:
            reasons: dict[str, int] = {}
            for reason in self.fresh.values():
                reasons[reason] = reasons.get(reason, 0) + 1
            line += "; fresh: " + "; ".join(f"{n} ({reason})" for reason, n in reasons.items())
        if self.unused:
            line += "; checkpoint values not used: " + "; ".join(f"{n} ({reason})" for reason, n in
                                                              self.unused_counts().items())
        return line


def _parts(mapping: dict[str, tuple[str, Any]], variables: dict[str, str]) -> dict[str, dict[str, int]]:
    parts = {name: {"variables": 0, "restored": 0, "parameters": 0, "restored_parameters": 0} for name in PARTS}
    for key, (part, variable) in mapping.items():
        size = int(math.prod(variable.shape))
        entry = parts[part]
        entry["variables"] += 1
        entry["parameters"] += size
        if variables.get(key) == "restored":
            entry["restored"] += 1
            entry["restored_parameters"] += size
    return parts


def scratch_report(model: SSDDetector) -> RestoreReport:
    mapping = checkpoint_variables(model)
    variables = {key: "no checkpoint: initializer" for key in mapping}
    return RestoreReport("scratch", variables=variables, parts=_parts(mapping, variables))


def _unused_reason(key: str) -> str:
    if key.startswith("optimizer/") or ".OPTIMIZER_SLOT" in key:
        return "optimizer state (not used by fine-tuning)"
    if key in ("save_counter" + SUFFIX, "step" + SUFFIX, "global_step" + SUFFIX):
        return "counter"
    return "no such variable in this model"


def _plan(reader, shapes, mapping, key_for, report: RestoreReport, allowed_parts=None,
          class_head_optional: bool = False):
    """Fill `report` for restoring every mapped variable whose key (via `key_for`) is in the
    checkpoint with equal shape; returns the assignment to make (`_apply`), nothing assigned yet."""
    pending = []
    for key, (part, variable) in mapping.items():
        source = key_for(key)
        if allowed_parts is not None and part not in allowed_parts:
            report.variables[key] = f"{part} is not restored by {report.kind} fine-tuning"
            continue
        if source is None or source + SUFFIX not in shapes:
            report.variables[key] = "not in the checkpoint"
            continue
        saved = shapes[source + SUFFIX]
        if saved != tuple(variable.shape):
            report.variables[key] = f"shape {list(saved)} in the checkpoint, {list(variable.shape)} here"
            report.unused[source + SUFFIX] = "shape differs from this model's"
            continue
        pending.append((key, source, variable))
    head = [k for k, (part, _) in mapping.items() if part == "class_head"]
    if class_head_optional and any(report.variables.get(k, "").startswith("shape ") for k in head):
        # Another number of classes: the class head starts fresh whole (bias and kernels go together).
        bias = next((k for k in head if k.endswith("/bias")), head[0])
        saved_bias = shapes.get((key_for(bias) or "") + SUFFIX)
        reason = (f"class head for other classes (outputs {list(saved_bias or [])} in the checkpoint, "
                  f"{list(mapping[bias][1].shape)} here): starts fresh")
        for key, source, variable in list(pending):
            if key in head:
                pending.remove((key, source, variable))
                report.unused[source + SUFFIX] = "shape differs from this model's"
        for key in head:
            report.variables[key] = reason
    for key, _, _ in pending:
        report.variables[key] = "restored"
    used = {key_for(k) + SUFFIX for k, v in report.variables.items() if v == "restored"}
    for key in shapes:
        if key not in used and key not in report.unused and key.endswith(SUFFIX):
            report.unused[key] = _unused_reason(key)
    report.parts = _parts(mapping, report.variables)
    return reader, pending


def _apply(plan) -> None:
    reader, pending = plan
    for _, source, variable in pending:
        variable.assign(np.asarray(reader.get_tensor(source + SUFFIX), dtype=variable.dtype))


def _require_backbone(report: RestoreReport, path: str, extra: str = "") -> None:
    backbone = report.parts["backbone"]
    if backbone["restored"] < backbone["variables"]:
        examples = [f"{k.rsplit('/', 2)[-2]}/{k.rsplit('/', 1)[-1]}: {v}" for k, v in report.fresh.items()
                    if k.startswith(BACKBONE)][:3]
        raise Invalid(f"train_config.fine_tune_checkpoint {path!r}: {report.layout}: {backbone['restored']} of "
                      f"{backbone['variables']} backbone variables match this model, so it cannot start the run"
                      + (f" (e.g. {'; '.join(examples)})" if examples else "") + extra)


def _refuse_old_layout(layout: str, path: str) -> None:
    if layout == OLD_BOXWISE:
        raise Invalid(f"{path!r} is a {OLD_BOXWISE}: its network differs from the TF OD API's (other FPN taps, "
                      "no background class), so it is refused rather than converted. Train again, starting "
                      "from a TF OD API checkpoint or from scratch.")


def restore_detection(model: SSDDetector, path: str) -> RestoreReport:
    """`fine_tune_checkpoint_type: detection`: backbone, FPN, tower, per-level batch norms and box
    head from an OD API (or Boxwise) detection checkpoint; the class head too when its shape
    matches (the same number of classes), else it starts fresh. Optimizer state is not used.
    Raises `Invalid` unless the whole backbone matches."""
    prefix = resolve_checkpoint(path)
    reader, shapes = _checkpoint_shapes(prefix)
    report = RestoreReport("detection", source=prefix, layout=describe_checkpoint(shapes))
    _refuse_old_layout(report.layout, prefix)
    plan = _plan(reader, shapes, checkpoint_variables(model), lambda k: k, report, class_head_optional=True)
    hint = ("; for a classification checkpoint set fine_tune_checkpoint_type: \"classification\""
            if "classification checkpoint" in report.layout else "")
    _require_backbone(report, path, hint)
    _apply(plan)
    return report


def restore_classification(model: SSDDetector, path: str) -> RestoreReport:
    """`fine_tune_checkpoint_type: classification`: the backbone from the OD API's classification
    checkpoint (`feature_extractor/layer_with_weights-N/...`) or from a Keras MobileNetV2 weights
    file (`.h5`, without its top). Everything after the backbone starts fresh."""
    if str(path).endswith((".h5", ".keras", ".weights.h5")) and Path(path).is_file():
        return _restore_keras_weights(model, str(path))
    prefix = resolve_checkpoint(path)
    reader, shapes = _checkpoint_shapes(prefix)
    report = RestoreReport("classification", source=prefix, layout=describe_checkpoint(shapes))
    _refuse_old_layout(report.layout, prefix)
    mapping = checkpoint_variables(model)

    # The backbone under feature_extractor/, or (a detection checkpoint) under the detector's key.
    source_root = CLASSIFICATION_BACKBONE if any(k.startswith(CLASSIFICATION_BACKBONE + "/") for k in shapes) \
        else BACKBONE

    def key_for(key):
        return source_root + key[len(BACKBONE):] if key.startswith(BACKBONE + "/") else None
    plan = _plan(reader, shapes, mapping, key_for, report, allowed_parts={"backbone"})
    _require_backbone(report, path)
    _apply(plan)
    return report


def _restore_keras_weights(model: SSDDetector, path: str) -> RestoreReport:
    import keras
    spec = model.spec
    try:
        source = keras.applications.MobileNetV2(input_shape=(spec.height, spec.width, 3), alpha=spec.depth_multiplier,
                                                include_top=False, weights=path)
    except Exception as exc:  # noqa: BLE001 - not a MobileNetV2 weights file: one line, not a traceback
        raise Invalid(f"train_config.fine_tune_checkpoint {path!r} is not a Keras MobileNetV2 weights file without "
                      f"its top for depth_multiplier {spec.depth_multiplier} ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    report = RestoreReport("classification", source=path, layout="Keras MobileNetV2 weights (.h5)")
    mapping = checkpoint_variables(model)
    by_key, pending = {}, []
    for index, name in enumerate(backbone_layer_names()):
        for attr, variable in _variables_of(source.get_layer(name)).items():
            by_key[f"{BACKBONE}/layer_with_weights-{index}/{attr}"] = (name, variable)
    for key, (part, variable) in mapping.items():
        if part != "backbone":
            report.variables[key] = f"{part} is not restored by classification fine-tuning"
            continue
        name, saved = by_key.get(key, (None, None))
        if saved is None:
            report.variables[key] = "not in the weights file"
        elif tuple(saved.shape) != tuple(variable.shape):
            report.variables[key] = f"shape {list(saved.shape)} in the weights file ({name}), {list(variable.shape)} here"
        else:
            pending.append((variable, saved))
            report.variables[key] = "restored"
    report.parts = _parts(mapping, report.variables)
    _require_backbone(report, path, " (the OD API's MobileNetV2 differs from Keras' below depth_multiplier 1: "
                      "min_depth and Conv_1)" if spec.depth_multiplier < 1 else "")
    for variable, saved in pending:
        variable.assign(np.asarray(saved))
    return report


def restore_weights(model: SSDDetector, path: str, kind: str = "resume") -> RestoreReport:
    """Every variable of `model` from a detection checkpoint (Boxwise's or the OD API's, any
    number of classes equal to the model's): for inference, export, and resuming. Raises
    `Invalid` unless all of them match."""
    prefix = resolve_checkpoint(path)
    reader, shapes = _checkpoint_shapes(prefix)
    report = RestoreReport(kind, source=prefix, layout=describe_checkpoint(shapes))
    _refuse_old_layout(report.layout, prefix)
    mapping = checkpoint_variables(model)
    plan = _plan(reader, shapes, mapping, lambda k: k, report)
    if report.fresh:
        first = next(iter(report.fresh.items()))
        raise Invalid(f"{prefix!r} ({report.layout}) does not fit this config's model: {len(report.restored)} of "
                      f"{len(mapping)} variables match (e.g. {first[0]}: {first[1]})")
    _apply(plan)
    return report


def resume(model: SSDDetector, optimizer, path: str, root=None) -> RestoreReport:
    """Resume a Boxwise run: every model variable and every optimizer variable (`optimizer/_variables/N`),
    all required to match in key and shape, else `Invalid` before anything is assigned. `root`, the
    run's `checkpoint_for(model, optimizer)`, gets the saved `save_counter` back, so the
    CheckpointManager numbers the next checkpoint after the last one."""
    prefix = resolve_checkpoint(path)
    reader, shapes = _checkpoint_shapes(prefix)
    report = RestoreReport("resume", source=prefix, layout=describe_checkpoint(shapes))
    _refuse_old_layout(report.layout, prefix)
    mapping = checkpoint_variables(model)
    plan = _plan(reader, shapes, mapping, lambda k: k, report)
    wanted = {f"optimizer/{k}{SUFFIX}": v for k, v in (optimizer_variables(optimizer) if optimizer else {}).items()}
    saved = {k for k in shapes if k.startswith("optimizer/")}
    wrong = sorted(k for k, v in wanted.items() if shapes.get(k) != tuple(v.shape))
    if report.fresh or wrong or (optimizer is not None and saved != set(wanted)):
        detail = (f"{len(report.restored)} of {len(mapping)} model variables match" if report.fresh else
                  f"the optimizer state differs ({len(saved)} values saved, {len(wanted)} expected"
                  + (f", e.g. {wrong[0]}" if wrong else "") + ")")
        raise Invalid(f"cannot resume from {prefix!r} ({report.layout}): {detail}. It was not written by this "
                      "config's training run; start a new model_dir, or set it as fine_tune_checkpoint.")
    _apply(plan)
    for key, variable in wanted.items():
        variable.assign(np.asarray(reader.get_tensor(key), dtype=variable.dtype))
        report.unused.pop(key, None)
    counter = "save_counter" + SUFFIX
    if root is not None and counter in shapes:
        root.save_counter.assign(int(reader.get_tensor(counter)))
        report.unused.pop(counter, None)
    return report


def fine_tune(model: SSDDetector, path: str | None, kind: str) -> RestoreReport:
    """The start of a run without a checkpoint of its own."""
    if not path:
        return scratch_report(model)
    if kind == "classification":
        return restore_classification(model, path)
    return restore_detection(model, path)


def write_report(model_dir: str | os.PathLike, report: RestoreReport, step: int = 0) -> Path:
    """Append this start's report to `model_dir/restore_report.json` (a list, one entry per start)."""
    path = Path(model_dir) / REPORT_FILE
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(history, list):
            history = []
    except (FileNotFoundError, ValueError):
        history = []
    history.append({"step": int(step), **report.to_dict(), "summary": report.summary()})
    atomic.write_json(path, history)
    return path
