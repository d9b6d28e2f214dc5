"""SSD with a MobileNetV2 backbone and an FPN-lite head (`ssd_mobilenet_v2_fpnlite_320x320`), in Keras 3.

    images [B, H, W, 3] float32 in [-1, 1]
      → MobileNetV2 (keras.applications) taps at strides 8, 16, 32
      → FPN-lite: 1×1 projections to `depth`, top-down nearest upsampling + add, 3×3
        depthwise-separable smoothing; levels 6–7 by stride-2 separable convs
      → one shared tower of `num_layers_before_predictor` separable convs (weights shared
        across levels, batch norm per level, as the TF OD API's weight-shared predictor)
      → box head `[B, A, 4]` (faster_rcnn deltas) and class head `[B, A, C]` (logits, bias −4.6)

`A` is `boxes.generate_anchors(H, W, spec.anchors)`'s length: outputs are flattened level by
level, row-major, `anchors_per_location` per cell, the anchors' order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import keras
from keras import layers, ops

from backend.training.boxes import AnchorSpec, feature_sizes

# MobileNetV2 layers the TF OD API's FPN feature extractor taps for levels 3, 4, 5.
BACKBONE_TAPS = ("block_6_expand_relu", "block_13_expand_relu", "out_relu")


@dataclass(frozen=True)
class ModelSpec:
    num_classes: int
    height: int = 320
    width: int = 320
    depth_multiplier: float = 1.0
    depth: int = 128                      # FPN and predictor depth
    num_layers_before_predictor: int = 4
    kernel_size: int = 3
    class_prediction_bias_init: float = -4.6
    anchors: AnchorSpec = field(default_factory=AnchorSpec)
    batch_norm_decay: float = 0.997
    batch_norm_epsilon: float = 0.001
    init_stddev: float = 0.01
    freeze_batchnorm: bool = False
    backbone_weights: str | None = None   # a local Keras weights file (fine_tune_checkpoint_type: classification)
    # Inference-only structure (export): no batch-norm layers, every convolution that fed one
    # carries a bias instead, and the predictor's tower has one convolution per level (the
    # shared weights folded with each level's statistics). See `fold.fold_batch_norm`.
    fold_batch_norm: bool = False

    @property
    def num_anchors_per_location(self) -> int:
        return self.anchors.anchors_per_location


def _separable(spec: ModelSpec, filters: int, strides: int = 1, name: str = "", bias: bool = False,
               bias_init: float = 0.0) -> layers.SeparableConv2D:
    init = keras.initializers.RandomNormal(stddev=spec.init_stddev)
    return layers.SeparableConv2D(
        filters, spec.kernel_size, strides=strides, padding="same", use_bias=bias,
        depthwise_initializer=init, pointwise_initializer=init,
        bias_initializer=keras.initializers.Constant(bias_init), name=name)


class FoldedBatchNorm(layers.Layer):
    """Where a batch norm was before it was folded into the convolution: passes values through."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def _batch_norm(spec: ModelSpec, name: str) -> layers.Layer:
    if spec.fold_batch_norm:
        return FoldedBatchNorm(name=name)
    return layers.BatchNormalization(momentum=spec.batch_norm_decay, epsilon=spec.batch_norm_epsilon,
                                     name=name)


def build_backbone(spec: ModelSpec) -> keras.Model:
    """MobileNetV2 without its classifier, returning the three FPN taps.

    Weights are random unless `spec.backbone_weights` names a local Keras weights file
    (nothing is ever downloaded).
    """
    weights = None
    if spec.backbone_weights:
        if not Path(spec.backbone_weights).is_file():
            from backend.errors import NotFound
            raise NotFound(f"backbone weights file {spec.backbone_weights!r} does not exist")
        weights = spec.backbone_weights
    base = keras.applications.MobileNetV2(
        input_shape=(spec.height, spec.width, 3), alpha=spec.depth_multiplier,
        include_top=False, weights=weights)
    # override_base_feature_extractor_hyperparams: the backbone's batch norm follows the config
    # (keras.applications builds it with momentum 0.999, too slow for short runs).
    for layer in base.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = spec.batch_norm_decay
            layer.epsilon = spec.batch_norm_epsilon
    if spec.fold_batch_norm:
        base = _without_batch_norm(base)
    outputs = [base.get_layer(name).output for name in BACKBONE_TAPS]
    return keras.Model(base.input, outputs, name="mobilenet_v2")


def batch_norm_inputs(model: keras.Model) -> dict[str, str]:
    """`{batch-norm layer name: name of the convolution it normalises}` for every batch norm of a
    functional model that directly follows a convolution feeding nothing else (foldable pairs)."""
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, layers.BatchNormalization):
            continue
        producer = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
        if isinstance(producer, (layers.Conv2D, layers.DepthwiseConv2D)) and len(producer._outbound_nodes) == 1:
            pairs[layer.name] = producer.name
    return pairs


def _without_batch_norm(base: keras.Model) -> keras.Model:
    """`base`'s structure with each foldable batch norm an identity and its convolution biased."""
    pairs = batch_norm_inputs(base)
    biased = set(pairs.values())

    def clone(layer):
        if layer.name in pairs:
            return FoldedBatchNorm(name=layer.name)
        config = layer.get_config()
        if layer.name in biased:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    return keras.models.clone_model(base, clone_function=clone)


class FeaturePyramid(layers.Layer):
    """FPN-lite over backbone features C3–C5 → P`min_level`…P`max_level`, all `depth` deep."""

    def __init__(self, spec: ModelSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        top = min(5, spec.anchors.max_level)
        self.base_levels = list(range(spec.anchors.min_level, top + 1))
        init = keras.initializers.RandomNormal(stddev=spec.init_stddev)
        self.projections = [layers.Conv2D(spec.depth, 1, padding="same", kernel_initializer=init,
                                          name=f"projection_{lv}") for lv in self.base_levels]
        folded = spec.fold_batch_norm
        self.smoothing = [_separable(spec, spec.depth, name=f"smoothing_{lv}", bias=folded)
                          for lv in self.base_levels[:-1]]
        self.smoothing_bn = [_batch_norm(spec, f"smoothing_{lv}_bn") for lv in self.base_levels[:-1]]
        self.extra_levels = list(range(top + 1, spec.anchors.max_level + 1))
        self.downsample = [_separable(spec, spec.depth, strides=2, name=f"downsample_{lv}", bias=folded)
                           for lv in self.extra_levels]
        self.downsample_bn = [_batch_norm(spec, f"downsample_{lv}_bn") for lv in self.extra_levels]

    def call(self, features, training=None):
        # features: C3, C4, C5 from the backbone; use only the levels we need.
        features = list(features)[: len(self.base_levels)]
        projected = [proj(f) for proj, f in zip(self.projections, features)]
        outputs = [projected[-1]]
        top_down = projected[-1]
        for i in range(len(projected) - 2, -1, -1):
            lateral = projected[i]
            up = ops.repeat(ops.repeat(top_down, 2, axis=1), 2, axis=2)
            up = up[:, : lateral.shape[1], : lateral.shape[2], :]
            top_down = lateral + up
            smoothed = self.smoothing[i](top_down)
            smoothed = ops.relu6(self.smoothing_bn[i](smoothed, training=training))
            outputs.insert(0, smoothed)
        last = outputs[-1]
        for conv, bn in zip(self.downsample, self.downsample_bn):
            last = ops.relu6(bn(conv(last), training=training))
            outputs.append(last)
        return outputs


class WeightSharedPredictor(layers.Layer):
    """The shared box/class tower and heads, applied to every pyramid level.

    Returns `(box_deltas [B, A, 4], class_logits [B, A, C])`.
    """

    def __init__(self, spec: ModelSpec, num_levels: int, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.num_levels = num_levels
        if spec.fold_batch_norm:  # one convolution per layer and level (i * num_levels + level)
            self.tower = [_separable(spec, spec.depth, name=f"tower_{i}_level_{lv}", bias=True)
                          for i in range(spec.num_layers_before_predictor) for lv in range(num_levels)]
        else:
            self.tower = [_separable(spec, spec.depth, name=f"tower_{i}")
                          for i in range(spec.num_layers_before_predictor)]
        # Convolution weights are shared across levels; batch-norm statistics are not.
        # A flat list (layer i, level l at i * num_levels + l): nested lists are not tracked.
        self.tower_bn = [_batch_norm(spec, f"tower_{i}_bn_level_{lv}")
                         for i in range(spec.num_layers_before_predictor) for lv in range(num_levels)]
        k = spec.num_anchors_per_location
        self.box_head = _separable(spec, k * 4, name="box_head", bias=True)
        self.class_head = _separable(spec, k * spec.num_classes, name="class_head", bias=True,
                                     bias_init=spec.class_prediction_bias_init)

    def call(self, levels, training=None):
        box_outputs, class_outputs = [], []
        k = self.spec.num_anchors_per_location
        for level_index, x in enumerate(levels):
            for i in range(self.spec.num_layers_before_predictor):
                index = i * self.num_levels + level_index
                conv = self.tower[index if self.spec.fold_batch_norm else i]
                x = ops.relu6(self.tower_bn[index](conv(x), training=training))
            boxes = self.box_head(x)
            classes = self.class_head(x)
            cells = boxes.shape[1] * boxes.shape[2]
            box_outputs.append(ops.reshape(boxes, (-1, cells * k, 4)))
            class_outputs.append(ops.reshape(classes, (-1, cells * k, self.spec.num_classes)))
        return (ops.concatenate(box_outputs, axis=1), ops.concatenate(class_outputs, axis=1))


class SSDDetector(keras.Model):
    """The detector. `call(images)` → `{"box_deltas": [B, A, 4], "class_logits": [B, A, C]}`, float32.

    Attribute names (`backbone`, `fpn`, `predictor`) are the checkpoint's object names;
    `detection` fine-tuning relies on them.
    """

    def __init__(self, spec: ModelSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.backbone = build_backbone(spec)
        if spec.freeze_batchnorm:
            for layer in self.backbone.layers:
                if isinstance(layer, layers.BatchNormalization):
                    layer.trainable = False
        self.fpn = FeaturePyramid(spec, name="fpn")
        levels = spec.anchors.max_level - spec.anchors.min_level + 1
        self.predictor = WeightSharedPredictor(spec, levels, name="predictor")

    def call(self, images, training=None):
        features = self.backbone(images, training=training)
        levels = self.fpn(features, training=training)
        box_deltas, class_logits = self.predictor(levels, training=training)
        return {"box_deltas": ops.cast(box_deltas, "float32"),
                "class_logits": ops.cast(class_logits, "float32")}


def build_detector(spec: ModelSpec) -> SSDDetector:
    """A built detector (variables created) for `spec`."""
    if spec.anchors.min_level != 3 or not 5 <= spec.anchors.max_level <= 7:
        from backend.errors import Invalid
        raise Invalid("the FPN-lite head supports min_level 3 and max_level 5 to 7, "
                      f"not {spec.anchors.min_level}..{spec.anchors.max_level}")
    model = SSDDetector(spec)
    model(ops.zeros((1, spec.height, spec.width, 3)), training=False)
    expected = sum(h * w for h, w in feature_sizes(spec.height, spec.width, spec.anchors.min_level,
                                                   spec.anchors.max_level))
    produced = model(ops.zeros((1, spec.height, spec.width, 3)))["box_deltas"].shape[1]
    if produced != expected * spec.num_anchors_per_location:
        raise AssertionError(f"predictor gives {produced} boxes, anchors {expected}: size mismatch")
    return model


def regularization_loss(model: keras.Model, l2_weight: float):
    """`l2_weight / 2 · Σ w²` over convolution kernels (TF OD API's Keras l2 convention)."""
    if not l2_weight:
        return ops.convert_to_tensor(0.0)
    terms = [ops.sum(ops.square(ops.cast(v, "float32"))) for v in model.trainable_weights
             if "kernel" in v.path]
    return 0.5 * l2_weight * ops.sum(ops.stack(terms)) if terms else ops.convert_to_tensor(0.0)


def preprocess_images(images):
    """uint8 or float `[0, 255]` images → `[-1, 1]`, what MobileNetV2 expects."""
    return ops.cast(images, "float32") / 127.5 - 1.0


def count_parameters(model: keras.Model) -> int:
    return int(sum(math.prod(v.shape) for v in model.weights))


def named_variables(model: SSDDetector) -> dict[str, keras.Variable]:
    """Every variable of the detector under a stable name (`backbone.Conv1.kernel`,
    `predictor.class_head.bias`, ...): the checkpoint's keys.

    Keras 3 layers kept in Python lists, and a functional model's layers, are not tracked by
    `tf.train.Checkpoint`, so checkpoints name the variables explicitly instead of relying on
    object-graph tracking. Names come from the layers' explicit names, never from Keras'
    per-process unique suffixes, so a checkpoint loads into any process.
    """
    named: dict[str, keras.Variable] = {}
    for layer in model.backbone.layers:
        for variable in layer.weights:
            named[f"backbone.{layer.name}.{variable.name}"] = variable
    for part_name in ("fpn", "predictor"):
        part = getattr(model, part_name)
        for layer in part._flatten_layers(include_self=False):
            for variable in layer.weights:
                named[f"{part_name}.{layer.name}.{variable.name}"] = variable
    count = len({id(v) for v in model.weights})
    if len(named) != count:
        raise AssertionError(f"named {len(named)} of the detector's {count} variables")
    return named
