"""Batch normalization as the TF OD API's Keras 2 models train it.

Keras 2's BatchNormalization (TensorFlow's fused kernel), which the OD API builds, moves the
moving variance towards the batch variance *with* Bessel's correction, `n / (n − 1)` for `n`
values per channel in the batch, while it normalizes with the biased batch variance. Keras 3's
layer uses the biased variance for both. The difference is largest where a batch has few values
per channel: the FPN's 1×1 level 7 of a batch of 4 images moves towards 4/3 of the batch
variance in the OD API (measured on the oracle: bottom_up_Conv2d_21's moving variance changes
by 34.5 over one step against Keras 3's 26.0).
"""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="boxwise")
class OdApiBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training-time update of `moving_variance` uses the
    unbiased batch variance, as in the TF OD API (see the module docstring). Everything else —
    normalization, `momentum` (the config's `decay`), `epsilon`, inference — is Keras'.

    `frozen` is the OD API's `freeze_batchnorm` (its FreezableBatchNorm built with
    `training=False`): the layer always normalizes with its moving statistics and never updates
    them, while gamma and beta stay trainable (Keras' `trainable = False` would freeze those too).
    """

    def __init__(self, *args, frozen: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.frozen = bool(frozen)

    def call(self, inputs, training=None, mask=None):
        if self.frozen:
            training = False
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = self._moments(x, None)
        channels = x.shape[self.axis]
        count = ops.cast(ops.size(x), x.dtype) / float(channels)
        unbiased = variance * count / ops.maximum(count - 1.0, 1.0)
        momentum = self.momentum
        self.moving_mean.assign(ops.cast(self.moving_mean, x.dtype) * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(ops.cast(self.moving_variance, x.dtype) * momentum
                                    + unbiased * (1.0 - momentum))
        outputs = ops.batch_normalization(
            x=x, mean=mean, variance=variance, axis=self.axis,
            offset=ops.cast(self.beta, x.dtype) if self.center else None,
            scale=ops.cast(self.gamma, x.dtype) if self.scale else None, epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "frozen": self.frozen}
