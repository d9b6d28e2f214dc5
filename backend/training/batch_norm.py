"""Batch normalization as the TF OD API's Keras 2 models train it.

Keras 2's BatchNormalization (TensorFlow's fused kernel), which the OD API builds, moves the
moving variance towards the batch variance *with* Bessel's correction, `n / (n − 1)` for `n`
values per channel in the batch, while it normalizes with the biased batch variance. Keras 3's
layer uses the biased variance for both. The difference is largest where a batch has few values
per channel: the FPN's 1×1 level 7 of a batch of 4 images moves towards 4/3 of the batch
variance in the OD API (measured on the oracle: bottom_up_Conv2d_21's moving variance changes
by 34.5 over one step against Keras 3's 26.0).

Training runs on TensorFlow's fused kernel (`FusedBatchNormV3`, as Keras 2 did): one op forward
and one backward per layer instead of Keras 3's moments + normalization and their gradients op
by op (12–18 % of a parity training step, BENCHMARKS.md). The kernel normalizes with the biased
batch variance and returns the Bessel-corrected one, `n / max(n − 1, 1)`, which is what the
moving variance moves towards.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

# cuDNN's fused batch norm refuses a smaller epsilon (tf.nn.fused_batch_norm raises it to this).
_FUSED_MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="boxwise")
class OdApiBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training-time update of `moving_variance` uses the
    unbiased batch variance, as in the TF OD API (see the module docstring), and whose training
    pass on NHWC float32 images runs TF's fused kernel. Everything else — the normalization's
    math, `momentum` (the config's `decay`), `epsilon`, inference — is Keras'.

    `frozen` is the OD API's `freeze_batchnorm` (its FreezableBatchNorm built with
    `training=False`): the layer always normalizes with its moving statistics and never updates
    them, while gamma and beta stay trainable (Keras' `trainable = False` would freeze those too).
    """

    def __init__(self, *args, frozen: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.frozen = bool(frozen)
        self.fused = True  # False: the training pass in Keras ops (bench/step_profile.py compares)

    def call(self, inputs, training=None, mask=None):
        if self.frozen:
            training = False
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        if self._fusable(x):
            return self._fused_training_call(x)
        mean, variance = self._moments(x, None)
        channels = x.shape[self.axis]
        count = ops.cast(ops.size(x), x.dtype) / float(channels)
        unbiased = variance * count / ops.maximum(count - 1.0, 1.0)
        self._update_moving_statistics(mean, unbiased, x.dtype)
        outputs = ops.batch_normalization(
            x=x, mean=mean, variance=variance, axis=self.axis,
            offset=ops.cast(self.beta, x.dtype) if self.center else None,
            scale=ops.cast(self.gamma, x.dtype) if self.scale else None, epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)

    def _fusable(self, x) -> bool:
        """NHWC float32 images over the last axis, an epsilon the GPU kernel takes, no
        cross-replica statistics: what `FusedBatchNormV3` computes exactly as the unfused path."""
        return (self.fused and len(x.shape) == 4 and self.axis in (-1, 3) and x.dtype == tf.float32
                and not self.synchronized and self.epsilon >= _FUSED_MIN_EPSILON)

    def _fused_training_call(self, x):
        channels = x.shape[-1]
        gamma = ops.cast(self.gamma, x.dtype) if self.scale else tf.ones([channels], x.dtype)
        beta = ops.cast(self.beta, x.dtype) if self.center else tf.zeros([channels], x.dtype)
        empty = tf.constant([], x.dtype)
        outputs, mean, unbiased, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        self._update_moving_statistics(mean, unbiased, x.dtype)
        return ops.cast(outputs, self.compute_dtype)

    def _update_moving_statistics(self, mean, unbiased_variance, dtype):
        momentum = self.momentum
        self.moving_mean.assign(ops.cast(self.moving_mean, dtype) * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(ops.cast(self.moving_variance, dtype) * momentum
                                    + unbiased_variance * (1.0 - momentum))

    def get_config(self):
        return {**super().get_config(), "frozen": self.frozen}
