"""Batch norm folded into the convolutions for export: same outputs, no batch-norm ops left."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def trained_like():
    """A small detector whose batch norms have statistics far from the identity (as after training)."""
    from backend.training.network import ModelSpec, build_detector

    model = build_detector(ModelSpec(num_classes=3, height=96, width=128, depth_multiplier=0.35, depth=16,
                                     num_layers_before_predictor=2))
    rng = np.random.default_rng(0)
    changed = 0
    for variable in model.weights:
        name = variable.path.rsplit("/", 1)[-1]
        shape = tuple(variable.shape)
        values = {"moving_variance": lambda shape=shape: rng.uniform(0.3, 3.0, shape),
                  "moving_mean": lambda shape=shape: rng.normal(0.0, 0.5, shape),
                  "gamma": lambda shape=shape: rng.uniform(0.5, 1.5, shape),
                  "beta": lambda shape=shape: rng.normal(0.0, 0.3, shape)}.get(name)
        if values is not None:
            variable.assign(values().astype("float32"))
            changed += 1
    assert changed == 66 * 4  # every batch norm's four vectors
    return model


def test_folded_detector_computes_the_same_outputs_without_batch_norm(trained_like):
    import keras
    import tensorflow as tf

    from backend.training.fold import fold_batch_norm
    from backend.training.network import FoldedBatchNorm, preprocess_images

    folded = fold_batch_norm(trained_like)
    layers = list(folded.backbone.layers) + [layer for part in (folded.fpn, folded.predictor)
                                             for layer in part._flatten_layers(include_self=False)]
    assert not [layer.name for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    # 52 in MobileNetV2, 2 FPN smoothing, 2 extra levels, 2 tower layers × 5 levels.
    assert sum(isinstance(layer, FoldedBatchNorm) for layer in layers) == 52 + 2 + 2 + 10
    assert len(folded.predictor.tower) == 2 * 5 and folded.predictor.tower[0].use_bias
    assert folded.backbone.get_layer("Conv1").use_bias and folded.backbone.get_layer("expanded_conv_depthwise").use_bias

    images = preprocess_images(tf.random.stateless_uniform((2, 96, 128, 3), (1, 2), 0, 255))
    expected = trained_like(images, training=False)
    got = folded(images, training=False)
    for key in ("box_deltas", "class_logits"):
        reference = expected[key].numpy()
        np.testing.assert_allclose(got[key].numpy(), reference, rtol=1e-3, atol=1e-4 * np.abs(reference).max())
    # The training detector is untouched: its variables still hold the statistics.
    assert any("moving_variance" in v.path for v in trained_like.weights)


def test_folding_leaves_the_graph_without_batch_norm_arithmetic(trained_like):
    import tensorflow as tf

    from backend.training.fold import fold_batch_norm

    def op_counts(model) -> dict[str, int]:
        graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(
            tf.TensorSpec([1, 96, 128, 3], tf.float32)).graph
        counts: dict[str, int] = {}
        for op in graph.get_operations():
            counts[op.type] = counts.get(op.type, 0) + 1
        return counts

    before, after = op_counts(trained_like), op_counts(fold_batch_norm(trained_like))
    assert before.get("Rsqrt", 0) == 66 and after.get("Rsqrt", 0) == 0
    # The same convolutions, now without the multiply/add pair of each batch norm.
    for conv in ("Conv2D", "DepthwiseConv2dNative"):
        assert after[conv] == before[conv]
    assert before["Mul"] - after.get("Mul", 0) >= 2 * 66
