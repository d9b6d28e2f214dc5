"""The TF OD API's `ssd_mobilenet_v2_fpn_keras` + `weight_shared_convolutional_box_predictor`, in Keras 3.

    images [B, H, W, 3] float32 in [-1, 1]  (`preprocess_images`: (2/255)·x − 1)
      → MobileNetV2 as the OD API builds it (`build_backbone`): `min_depth` raises every
        convolution but the `*_expand` ones to at least `min_depth` filters, and `Conv_1` has
        `make_divisible(1280 · depth_multiplier, 8)` filters when `depth_multiplier < 1`;
        taps `block_5_add` (32 ch at 1.0), `block_12_add` (96 ch), `out_relu` for levels 3–5
        (`block_N_project_BN` where a block has no residual add)
      → FPN (`FeaturePyramid`, the OD API's KerasFpnTopDownFeatureMaps + coarse layers), all
        `max(int(additional_layer_depth · depth_multiplier), min_depth)` deep: a 1×1 projection
        (with bias) of every tap; the top projection is level 5; going down, the previous level's
        *output* is nearest-neighbour upsampled ×2, added to the projection, and smoothed by a 3×3
        separable conv + batch norm + ReLU6; levels 6–7 are stride-2 3×3 separable conv + batch
        norm + ReLU6 starting from the level-5 projection
      → the weight-shared predictor (`WeightSharedPredictor`): one tower of
        `num_layers_before_predictor` 3×3 separable convs shared by all levels and by the box and
        class heads (`share_prediction_tower`), a batch norm per layer *and level*, ReLU6; a box head
        (separable conv, `anchors_per_location · 4`) and a class head (separable conv,
        `anchors_per_location · (num_classes + 1)`, bias `class_prediction_bias_init`)

`SSDDetector.call(images)` → `{"box_deltas": [B, A, 4], "class_logits": [B, A, num_classes + 1]}`:
faster_rcnn box encodings and class logits with the background in column 0 (the OD API's
`box_encodings` and `class_predictions_with_background`). `A` is `anchors.generate_anchors`'s
length: level by level, row-major, `anchors_per_location` per cell, in the anchors' order.

Initializers are the OD API's: every convolution the config's `conv_hyperparams` apply to
(MobileNetV2's with `override_base_feature_extractor_hyperparams`, else truncated normal
σ 0.09; the depthwise kernels of the FPN's and tower's separable convolutions) uses the
config's initializer; the pointwise kernels of those separable convolutions and all kernels of
the two heads use Keras' default (Glorot uniform), as the OD API's Keras layers do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras
from keras import layers, ops

from backend.training.batch_norm import OdApiBatchNormalization
from backend.training.anchors import AnchorSpec, feature_sizes


@dataclass(frozen=True)
class ConvHyperparams:
    """A `conv_hyperparams` block: initializer and batch norm (the regularizer is the loss's)."""
    initializer: str = "random_normal"       # or "truncated_normal"
    mean: float = 0.0
    stddev: float = 0.01
    batch_norm: bool = True                  # the block has a `batch_norm` field
    batch_norm_decay: float = 0.997
    batch_norm_epsilon: float = 0.001
    batch_norm_scale: bool = True
    batch_norm_center: bool = True

    def kernel_initializer(self) -> keras.initializers.Initializer:
        if self.initializer == "truncated_normal":
            return keras.initializers.TruncatedNormal(mean=self.mean, stddev=self.stddev)
        return keras.initializers.RandomNormal(mean=self.mean, stddev=self.stddev)

    @property
    def use_bias(self) -> bool:
        """The OD API's `KerasLayerHyperparams.use_bias()`: no bias when a centred batch norm follows."""
        return not (self.batch_norm and self.batch_norm_center)


# MobileNetV2 without `conv_hyperparams` (override_base_feature_extractor_hyperparams false):
# the OD API's defaults for its Keras MobileNetV2.
DEFAULT_BACKBONE_HYPERPARAMS = ConvHyperparams(initializer="truncated_normal", stddev=0.09, batch_norm_decay=0.9997,
                                               batch_norm_epsilon=1e-3)

# (expansion, filters, stride) of MobileNetV2's inverted residual blocks 0..16.
INVERTED_RESIDUAL_BLOCKS = ((1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1),
                            (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1),
                            (6, 96, 1), (6, 160, 2), (6, 160, 1), (6, 160, 1), (6, 320, 1))

# The backbone layers the FPN taps for levels 2..5 (the OD API's layer_4, layer_7, layer_14, layer_19).
TAP_BLOCKS = (2, 5, 12)


@dataclass(frozen=True)
class ModelSpec:
    num_classes: int                      # without the background
    height: int = 320
    width: int = 320
    depth_multiplier: float = 1.0
    min_depth: int = 16
    additional_layer_depth: int = 256     # fpn.additional_layer_depth (OD API default 256)
    use_explicit_padding: bool = False
    override_base_feature_extractor_hyperparams: bool = False
    feature_hyperparams: ConvHyperparams = field(default_factory=ConvHyperparams)
    depth: int = 128                      # the predictor's tower depth
    num_layers_before_predictor: int = 4
    kernel_size: int = 3
    class_prediction_bias_init: float = -4.6
    predictor_hyperparams: ConvHyperparams = field(default_factory=ConvHyperparams)
    anchors: AnchorSpec = field(default_factory=AnchorSpec)
    freeze_batchnorm: bool = False
    # Inference-only structure (export): no batch-norm layers, every convolution that fed one
    # carries a bias instead, and the predictor's tower has one convolution per level (the
    # shared weights folded with each level's statistics). See `fold.fold_batch_norm`.
    fold_batch_norm: bool = False

    @property
    def num_anchors_per_location(self) -> int:
        return self.anchors.anchors_per_location

    @property
    def num_class_slots(self) -> int:
        return self.num_classes + 1

    @property
    def fpn_depth(self) -> int:
        return max(int(self.additional_layer_depth * self.depth_multiplier), self.min_depth)

    @property
    def backbone_hyperparams(self) -> ConvHyperparams:
        if self.override_base_feature_extractor_hyperparams:
            return self.feature_hyperparams
        return DEFAULT_BACKBONE_HYPERPARAMS


class FoldedBatchNorm(layers.Layer):
    """Where a batch norm was before it was folded into the convolution: passes values through."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def _batch_norm(spec: ModelSpec, hp: ConvHyperparams, name: str) -> layers.Layer:
    if spec.fold_batch_norm or not hp.batch_norm:
        return FoldedBatchNorm(name=name)
    return OdApiBatchNormalization(momentum=hp.batch_norm_decay, epsilon=hp.batch_norm_epsilon,
                                   center=hp.batch_norm_center, scale=hp.batch_norm_scale, name=name,
                                   frozen=spec.freeze_batchnorm)


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: to the nearest multiple of `divisor`, never 10 % below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _fixed_padding(kernel_size: int, name: str) -> layers.Layer:
    """The OD API's `ops.fixed_padding`: pad (k−1)//2 before and the rest after, in H and W."""
    total = kernel_size - 1
    return layers.ZeroPadding2D(((total // 2, total - total // 2),) * 2, name=name)


def backbone_layer_names(num_blocks: int = len(INVERTED_RESIDUAL_BLOCKS)) -> list[str]:
    """MobileNetV2's layers with weights, in the order Keras' application creates them (the order
    of the OD API checkpoint's `classification_backbone/layer_with_weights-N`)."""
    names = ["Conv1", "bn_Conv1", "expanded_conv_depthwise", "expanded_conv_depthwise_BN",
             "expanded_conv_project", "expanded_conv_project_BN"]
    for block in range(1, num_blocks):
        prefix = f"block_{block}_"
        names += [prefix + part for part in ("expand", "expand_BN", "depthwise", "depthwise_BN",
                                             "project", "project_BN")]
    return names + ["Conv_1", "Conv_1_bn"]


def build_backbone(spec: ModelSpec) -> keras.Model:
    """MobileNetV2 as the OD API's Keras feature extractor builds it, returning the taps of
    levels 2, 3, 4 and 5 (`block_2_add`, `block_5_add`, `block_12_add`, `out_relu`; a block
    without a residual add is tapped at its `block_N_project_BN`). Weights are random."""
    hp = spec.backbone_hyperparams
    alpha = spec.depth_multiplier
    explicit = spec.use_explicit_padding
    init = hp.kernel_initializer
    bias = spec.fold_batch_norm

    def conv(x, filters, kernel, stride, name):
        if name == "Conv_1":
            filters = make_divisible(1280 * alpha, 8) if alpha < 1.0 else 1280
        if spec.min_depth and filters < spec.min_depth and not name.endswith("expand"):
            filters = spec.min_depth
        padding = "same"
        if explicit and kernel > 1:
            x, padding = _fixed_padding(kernel, f"{name}_pad")(x), "valid"
        return layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=bias,
                             kernel_initializer=init(), name=name)(x)

    def depthwise(x, stride, name):
        padding = "same"
        if explicit:
            x, padding = _fixed_padding(3, f"{name}_pad")(x), "valid"
        return layers.DepthwiseConv2D(3, strides=stride, padding=padding, use_bias=bias,
                                      depthwise_initializer=init(), name=name)(x)

    def norm_relu(x, name, relu_name=None):
        x = _batch_norm(spec, hp, name)(x)
        return layers.ReLU(6.0, name=relu_name)(x) if relu_name else x

    inputs = keras.Input((spec.height, spec.width, 3), name="input_1")
    x = conv(inputs, make_divisible(32 * alpha, 8), 3, 2, "Conv1")
    x = norm_relu(x, "bn_Conv1", "Conv1_relu")
    taps = {}
    for block, (expansion, filters, stride) in enumerate(INVERTED_RESIDUAL_BLOCKS):
        block_input = x
        in_channels = x.shape[-1]
        prefix = f"block_{block}_" if block else "expanded_conv_"
        if block:
            x = conv(x, expansion * in_channels, 1, 1, prefix + "expand")
            x = norm_relu(x, prefix + "expand_BN", prefix + "expand_relu")
        x = depthwise(x, stride, prefix + "depthwise")
        x = norm_relu(x, prefix + "depthwise_BN", prefix + "depthwise_relu")
        x = conv(x, make_divisible(int(filters * alpha), 8), 1, 1, prefix + "project")
        x = norm_relu(x, prefix + "project_BN")
        if in_channels == x.shape[-1] and stride == 1:
            x = layers.Add(name=prefix + "add")([block_input, x])
        if block in TAP_BLOCKS:
            taps[block] = x
    x = conv(x, 1280, 1, 1, "Conv_1")
    x = norm_relu(x, "Conv_1_bn", "out_relu")
    outputs = [taps[block] for block in TAP_BLOCKS] + [x]
    return keras.Model(inputs, outputs, name="mobilenet_v2")


def _separable(hp: ConvHyperparams, filters: int, kernel_size: int, name: str, *, strides: int = 1,
               padding: str = "same", bias: bool, depthwise_from_config: bool = True,
               bias_init: float = 0.0) -> layers.SeparableConv2D:
    """A separable conv as the OD API's Keras layers build it: the config's initializer on the
    depthwise kernel (tower, FPN) or Glorot uniform (heads); the pointwise kernel always Glorot uniform."""
    return layers.SeparableConv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=bias,
        depthwise_initializer=hp.kernel_initializer() if depthwise_from_config else "glorot_uniform",
        pointwise_initializer="glorot_uniform",
        bias_initializer=keras.initializers.Constant(bias_init), name=name)


class FeaturePyramid(layers.Layer):
    """The OD API's FPN over the backbone's taps → levels `min_level`…`max_level`, all `fpn_depth` deep.

    Attribute names follow the OD API's objects: `top_layers` (the coarsest tap's projection),
    `residual_blocks[i]`, `conv_layers[i]` (+ `conv_norms[i]`) for the i-th level going down, and
    `coarse_layers[j]` (+ `coarse_norms[j]`) for levels 6, 7.
    """

    def __init__(self, spec: ModelSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        hp = spec.feature_hyperparams
        depth = spec.fpn_depth
        self.base_max_level = min(5, spec.anchors.max_level)
        self.num_base_levels = self.base_max_level + 1 - spec.anchors.min_level
        padding = "valid" if spec.use_explicit_padding else "same"
        bias = spec.fold_batch_norm or hp.use_bias
        n = self.num_base_levels

        def projection(name):
            return layers.Conv2D(depth, 1, padding=padding, use_bias=True,
                                 kernel_initializer=hp.kernel_initializer(), name=name)

        self.top_layers = projection(f"projection_{n}")
        levels_down = list(reversed(range(n - 1)))
        self.residual_blocks = [projection(f"projection_{level + 1}") for level in levels_down]
        self.conv_layers = [_separable(hp, depth, 3, f"smoothing_{level + 1}_depthwise_conv", padding=padding,
                                       bias=bias) for level in levels_down]
        self.conv_norms = [_batch_norm(spec, hp, f"smoothing_{level + 1}_batchnorm") for level in levels_down]
        first_coarse = 19 + 1  # the OD API's layer names continue MobileNetV2's 19 layers
        self.coarse_layers = [_separable(hp, depth, 3, f"bottom_up_Conv2d_{first_coarse + j}_depthwise_conv",
                                         strides=2, padding=padding, bias=bias)
                              for j in range(spec.anchors.max_level - self.base_max_level)]
        self.coarse_norms = [_batch_norm(spec, hp, f"bottom_up_Conv2d_{first_coarse + j}_batchnorm")
                             for j in range(len(self.coarse_layers))]
        self.pads = [_fixed_padding(3, f"fpn_pad_{i}") for i in range(len(self.conv_layers) + len(self.coarse_layers))] \
            if spec.use_explicit_padding else []

    def _pad(self, index, x):
        return self.pads[index](x) if self.pads else x

    def call(self, features, training=None):
        # features: the backbone's taps for levels 2..5; the FPN uses min_level..5.
        features = list(features)[-self.num_base_levels:]
        top_down = self.top_layers(features[-1])
        outputs = [top_down]
        for i, level in enumerate(reversed(range(self.num_base_levels - 1))):
            residual = self.residual_blocks[i](features[level])
            up = ops.repeat(ops.repeat(top_down, 2, axis=1), 2, axis=2)
            up = up[:, : residual.shape[1], : residual.shape[2], :]  # odd sizes (explicit padding's crop)
            top_down = self.conv_layers[i](self._pad(i, up + residual))
            top_down = ops.relu6(self.conv_norms[i](top_down, training=training))
            outputs.insert(0, top_down)
        last = outputs[-1]
        for j, (conv, norm) in enumerate(zip(self.coarse_layers, self.coarse_norms)):
            last = ops.relu6(norm(conv(self._pad(len(self.conv_layers) + j, last)), training=training))
            outputs.append(last)
        return outputs


class WeightSharedPredictor(layers.Layer):
    """The shared tower and heads, applied to every pyramid level.

    `tower[i]` is the i-th tower conv (with `fold_batch_norm`: `tower[i * num_levels + level]`),
    `tower_bn[i * num_levels + level]` its batch norm at a level. Returns
    `(box_deltas [B, A, 4], class_logits [B, A, num_classes + 1])`.
    """

    def __init__(self, spec: ModelSpec, num_levels: int, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.num_levels = num_levels
        hp = spec.predictor_hyperparams
        # The OD API's tower conv has a bias only without batch norm (`apply_batch_norm` is
        # whether conv_hyperparams has a batch_norm).
        tower_bias = spec.fold_batch_norm or not hp.batch_norm
        layer_count = spec.num_layers_before_predictor
        if spec.fold_batch_norm:
            self.tower = [_separable(hp, spec.depth, spec.kernel_size, f"tower_{i}_level_{lv}", bias=True)
                          for i in range(layer_count) for lv in range(num_levels)]
        else:
            self.tower = [_separable(hp, spec.depth, spec.kernel_size, f"tower_{i}", bias=tower_bias)
                          for i in range(layer_count)]
        self.tower_bn = [_batch_norm(spec, hp, f"tower_{i}_bn_level_{lv}")
                         for i in range(layer_count) for lv in range(num_levels)]
        k = spec.num_anchors_per_location
        self.box_head = _separable(hp, k * 4, spec.kernel_size, "box_head", bias=True, depthwise_from_config=False)
        self.class_head = _separable(hp, k * spec.num_class_slots, spec.kernel_size, "class_head", bias=True,
                                     depthwise_from_config=False, bias_init=spec.class_prediction_bias_init)

    def call(self, levels, training=None):
        box_outputs, class_outputs = [], []
        k = self.spec.num_anchors_per_location
        slots = self.spec.num_class_slots
        for level_index, x in enumerate(levels):
            for i in range(self.spec.num_layers_before_predictor):
                index = i * self.num_levels + level_index
                conv = self.tower[index if self.spec.fold_batch_norm else i]
                x = ops.relu6(self.tower_bn[index](conv(x), training=training))
            boxes = self.box_head(x)
            classes = self.class_head(x)
            cells = boxes.shape[1] * boxes.shape[2]
            box_outputs.append(ops.reshape(boxes, (-1, cells * k, 4)))
            class_outputs.append(ops.reshape(classes, (-1, cells * k, slots)))
        return (ops.concatenate(box_outputs, axis=1), ops.concatenate(class_outputs, axis=1))


class SSDDetector(keras.Model):
    """The detector. `call(images)` → `{"box_deltas": [B, A, 4], "class_logits": [B, A, num_classes + 1]}`
    (float32; class column 0 is the background).

    Parts: `backbone` (MobileNetV2), `fpn`, `predictor`. `restore.checkpoint_variables` names
    every variable by the TF OD API's checkpoint key.
    """

    def __init__(self, spec: ModelSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.backbone = build_backbone(spec)
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
    if not 2 <= spec.anchors.min_level <= 5 or not max(5, spec.anchors.min_level) <= spec.anchors.max_level <= 7:
        from backend.errors import Invalid
        raise Invalid("the FPN supports min_level 2 to 5 and max_level 5 to 7, "
                      f"not {spec.anchors.min_level}..{spec.anchors.max_level}")
    model = SSDDetector(spec)
    produced = model(ops.zeros((1, spec.height, spec.width, 3)), training=False)["box_deltas"].shape[1]
    expected = sum(h * w for h, w in feature_sizes(spec.height, spec.width, spec.anchors.min_level,
                                                   spec.anchors.max_level))
    if produced != expected * spec.num_anchors_per_location:
        raise AssertionError(f"predictor gives {produced} boxes, anchors {expected}: size mismatch")
    return model


def preprocess_images(images):
    """uint8 or float `[0, 255]` images → `(2/255)·x − 1` in `[-1, 1]`, the OD API's SSD MobileNet preprocessing."""
    return (2.0 / 255.0) * ops.cast(images, "float32") - 1.0


def count_parameters(model: keras.Model) -> int:
    return int(sum(math.prod(v.shape) for v in model.weights))
