"""The trainer's optimizers on TF's fused `ResourceApply*` kernels (as tf.keras 2, so the TF OD API,
ran them) against Keras 3's element-wise updates of the same slots: equal steps, and checkpoints
that resume identically (also those written by the element-wise path)."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from backend.config_document import ConfigDocument
from backend.training.training_config import training_config
from backend.training.train import build_optimizer
from tests.helpers import small128_with_optimizer

STEPS = 6

# Every optimizer the trainer accepts, with the schedule and clipping fields that reach the update.
OPTIMIZERS = {
    "adam": ("""  optimizer { adam_optimizer { learning_rate { cosine_decay_learning_rate {
      learning_rate_base: 0.01 total_steps: 10 warmup_learning_rate: 0.001 warmup_steps: 2 } }
      epsilon: 1e-7 } use_moving_average: false }
  gradient_clipping_by_norm: 0.5
""", "ResourceApplyAdam"),
    "momentum": ("""  optimizer { momentum_optimizer { learning_rate { exponential_decay_learning_rate {
      initial_learning_rate: 0.05 decay_steps: 2 decay_factor: 0.5 } }
      momentum_optimizer_value: 0.9 } use_moving_average: false }
""", "ResourceApplyKerasMomentum"),
    "sgd": ("""  optimizer { momentum_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.05 } }
      momentum_optimizer_value: 0.0 } use_moving_average: false }
""", "ResourceApplyGradientDescent"),
    "rms_prop": ("""  optimizer { rms_prop_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.01 } }
      momentum_optimizer_value: 0.9 decay: 0.9 epsilon: 1.0 } use_moving_average: false }
""", "ResourceApplyRMSProp"),
}


def _model_and_data():
    """A small conv net with fixed weights and a fixed batch: real gradients of every shape kind
    (conv kernels, biases, dense)."""
    import keras

    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.DepthwiseConv2D(3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2)])
    rng = np.random.default_rng(3)
    return model, rng.normal(size=(4, 8, 8, 3)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)


def _train(kind: str, fused: bool, steps: int, start=None):
    """`(model, optimizer, ops in the step's graph)` after `steps` steps of a tf.function train
    step, optionally starting from a checkpoint path written by `_save`."""
    import tensorflow as tf

    model, x, y = _model_and_data()
    optimizer = build_optimizer(training_config(ConfigDocument(small128_with_optimizer(OPTIMIZERS[kind][0], num_steps=10))), fused=fused)
    optimizer.build(model.trainable_variables)
    if start is not None:
        _checkpoint(model, optimizer).restore(start).assert_consumed()

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - y))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    for _ in range(steps):
        step()
    ops = collections.Counter(op.type for op in step.get_concrete_function().graph.get_operations())
    return model, optimizer, ops


def _checkpoint(model, optimizer):
    """The trainer's checkpoint layout for the optimizer (`optimizer/_iterations`, `_variables/N`)."""
    import tensorflow as tf

    from backend.training import restore
    return tf.train.Checkpoint(model=tf.train.Checkpoint(weights=list(model.weights)),
                               optimizer=restore._tree(restore.optimizer_variables(optimizer)))


def _state(model, optimizer):
    return [np.asarray(v) for v in model.weights] + [np.asarray(v) for v in optimizer.variables]


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_fused_steps_equal_keras_steps(kind):
    fused_model, fused_opt, fused_ops = _train(kind, fused=True, steps=STEPS)
    keras_model, keras_opt, keras_ops = _train(kind, fused=False, steps=STEPS)
    kernel = OPTIMIZERS[kind][1]
    assert kernel in fused_ops and kernel not in keras_ops
    assert int(fused_opt.iterations.numpy()) == int(keras_opt.iterations.numpy()) == STEPS
    # The same slots in the same order (names differ only by the models' Keras-made prefixes).
    assert [(v.name.rsplit("_", 1)[-1], v.shape) for v in fused_opt.variables] == \
        [(v.name.rsplit("_", 1)[-1], v.shape) for v in keras_opt.variables]
    initial = np.asarray(_model_and_data()[0].weights[0])
    assert not np.allclose(np.asarray(fused_model.weights[0]), initial)  # the weights moved
    for found, expected in zip(_state(fused_model, fused_opt), _state(keras_model, keras_opt)):
        np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-6)


def test_adam_computes_the_step_scalars_once_for_all_variables():
    """One `ResourceApplyAdam` per variable (6 here), but the beta powers once per step (2 `Pow`),
    not once per variable."""
    model, _, ops = _train("adam", fused=True, steps=1)
    assert ops["ResourceApplyAdam"] == len(model.trainable_variables) == 6
    assert ops["Pow"] == 2


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_resume_continues_identically(kind, tmp_path):
    """3 steps, a checkpoint, 3 more steps in a fresh model and optimizer: exactly the 6 uninterrupted
    steps. A checkpoint of the element-wise path (Boxwise's before the fused kernels) resumes the
    same way (within float tolerance of that path going on)."""
    straight_model, straight_opt, _ = _train(kind, fused=True, steps=STEPS)
    for fused in (True, False):
        model, optimizer, _ = _train(kind, fused=fused, steps=STEPS // 2)
        path = _checkpoint(model, optimizer).save(str(tmp_path / f"fused-{fused}" / "ckpt"))
        resumed_model, resumed_opt, _ = _train(kind, fused=True, steps=STEPS - STEPS // 2, start=path)
        assert int(resumed_opt.iterations.numpy()) == STEPS
        for found, expected in zip(_state(resumed_model, resumed_opt), _state(straight_model, straight_opt)):
            if fused:
                np.testing.assert_array_equal(found, expected)
            else:
                np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-6)
