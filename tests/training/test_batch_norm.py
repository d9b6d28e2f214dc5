"""Batch norm in training as the TF OD API's Keras 2 layers do it, hand-computed."""
from __future__ import annotations

import numpy as np
import pytest

from backend.training.batch_norm import OdApiBatchNormalization


def _layer(momentum=0.9, epsilon=1e-3):
    layer = OdApiBatchNormalization(momentum=momentum, epsilon=epsilon)
    layer.build((None, 1, 1, 1))
    return layer


def test_training_normalizes_with_the_biased_variance_and_moves_towards_the_unbiased_one():
    layer = _layer()
    x = np.array([1.0, 3.0], np.float32).reshape(2, 1, 1, 1)  # mean 2, biased variance 1, unbiased 2
    out = np.asarray(layer(x, training=True)).ravel()
    np.testing.assert_allclose(out, [-1 / np.sqrt(1.001), 1 / np.sqrt(1.001)], rtol=1e-6)
    assert float(layer.moving_mean.numpy()[0]) == pytest.approx(0.9 * 0.0 + 0.1 * 2.0)
    assert float(layer.moving_variance.numpy()[0]) == pytest.approx(0.9 * 1.0 + 0.1 * 2.0)


def test_the_count_is_every_value_of_the_channel_in_the_batch():
    layer = _layer(momentum=0.5)
    x = np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1)  # 8 values: biased variance 5.25, unbiased 6
    layer(x, training=True)
    assert float(layer.moving_variance.numpy()[0]) == pytest.approx(0.5 * 1.0 + 0.5 * 6.0)


def test_inference_uses_the_moving_statistics_and_updates_nothing():
    layer = _layer()
    layer.moving_mean.assign([1.0])
    layer.moving_variance.assign([4.0])
    out = np.asarray(layer(np.full((1, 1, 1, 1), 3.0, np.float32), training=False)).ravel()
    np.testing.assert_allclose(out, [2.0 / np.sqrt(4.001)], rtol=1e-6)
    assert float(layer.moving_mean.numpy()[0]) == 1.0 and float(layer.moving_variance.numpy()[0]) == 4.0


def test_a_frozen_layer_runs_on_its_moving_statistics():
    layer = _layer()
    layer.trainable = False
    layer(np.array([1.0, 3.0], np.float32).reshape(2, 1, 1, 1), training=True)
    assert float(layer.moving_variance.numpy()[0]) == 1.0


def test_frozen_runs_on_moving_statistics_in_training_and_keeps_gamma_and_beta_trainable():
    layer = OdApiBatchNormalization(momentum=0.9, epsilon=1e-3, frozen=True)
    layer.build((None, 1, 1, 1))
    out = np.asarray(layer(np.array([1.0, 3.0], np.float32).reshape(2, 1, 1, 1), training=True)).ravel()
    np.testing.assert_allclose(out, [1 / np.sqrt(1.001), 3 / np.sqrt(1.001)], rtol=1e-6)  # moving 0 and 1
    assert float(layer.moving_variance.numpy()[0]) == 1.0
    assert {v.name for v in layer.trainable_weights} == {"gamma", "beta"}


def test_freeze_batchnorm_freezes_every_batch_norm_of_the_detector_but_trains_gamma_and_beta():
    """The OD API's freeze_batchnorm reaches the backbone, the FPN and the tower alike."""
    from dataclasses import replace

    from keras import layers

    from backend.config_document import ConfigDocument
    from backend.training.training_config import training_config
    from backend.training.network import build_detector
    from tests.training.odapi import FIXTURES

    spec = training_config(ConfigDocument.load(FIXTURES / "small128" / "pipeline.config")).model
    model = build_detector(replace(spec, freeze_batchnorm=True, height=64, width=64))
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, layers.BatchNormalization)]
    assert len(norms) == 76 and all(layer.frozen for layer in norms)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    trained = model(images, training=True)
    inferred = model(images, training=False)
    np.testing.assert_array_equal(np.asarray(trained["box_deltas"]), np.asarray(inferred["box_deltas"]))
    trainable = {id(v) for v in model.trainable_variables}
    assert all(id(layer.gamma) in trainable and id(layer.beta) in trainable for layer in norms)


def _unfused_reference(layer, x, weights):
    """The layer's training pass and moving statistics computed with Keras ops (no fused kernel)."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
        y = (x - mean) / tf.sqrt(variance + layer.epsilon) * layer.gamma + layer.beta
        loss = tf.reduce_sum(y * weights)
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    n = float(x.shape[0] * x.shape[1] * x.shape[2])
    moving_mean = layer.momentum * layer.moving_mean.numpy() + (1 - layer.momentum) * mean.numpy()
    moving_variance = layer.momentum * layer.moving_variance.numpy() \
        + (1 - layer.momentum) * variance.numpy() * n / max(n - 1, 1)
    return y.numpy(), [g.numpy() for g in grads], moving_mean, moving_variance


@pytest.mark.parametrize("shape", [(4, 5, 3, 6), (4, 1, 1, 2), (1, 1, 1, 3)])
def test_the_fused_training_pass_equals_the_unfused_math(shape):
    """Output, gradients (input, gamma, beta) and moving statistics of the fused kernel equal the
    hand-written batch norm, down to one value per channel (n = 1: the moving variance moves
    towards 0, as TF's `n / max(n − 1, 1)` gives)."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    layer = OdApiBatchNormalization(momentum=0.9, epsilon=1e-3)
    layer.build((None,) + shape[1:])
    layer.gamma.assign(rng.uniform(0.5, 2.0, shape[-1]).astype(np.float32))
    layer.beta.assign(rng.uniform(-1, 1, shape[-1]).astype(np.float32))
    layer.moving_variance.assign(rng.uniform(0.5, 2.0, shape[-1]).astype(np.float32))
    x = tf.constant(rng.normal(3.0, 2.0, shape).astype(np.float32))
    weights = tf.constant(rng.normal(0.0, 1.0, shape).astype(np.float32))  # a loss with every gradient non-zero
    y_ref, grads_ref, moving_mean, moving_variance = _unfused_reference(layer, x, weights)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * weights)
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=0, atol=2e-5)
    for found, expected in zip(grads, grads_ref):
        np.testing.assert_allclose(found.numpy(), expected, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), moving_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), moving_variance, rtol=1e-5)


def test_training_on_images_runs_the_fused_kernel_and_inference_does_not():
    import tensorflow as tf

    layer = OdApiBatchNormalization(momentum=0.9, epsilon=1e-3)
    layer.build((None, 4, 4, 2))
    spec = tf.TensorSpec((2, 4, 4, 2), tf.float32)
    train_ops = {op.type for op in tf.function(lambda x: layer(x, training=True)).get_concrete_function(spec).graph.get_operations()}
    infer_ops = {op.type for op in tf.function(lambda x: layer(x, training=False)).get_concrete_function(spec).graph.get_operations()}
    assert "FusedBatchNormV3" in train_ops and "Mean" not in train_ops
    assert "FusedBatchNormV3" not in infer_ops
