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
