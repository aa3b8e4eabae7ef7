"""Layers the classic papers used that Keras does not ship."""

import keras
import numpy as np

from safeio.checks import UserError


# The two LRN settings in use: the paper's (AlexNet, sec. 3.3) and Caffe's (the reference
# bvlc_alexnet and bvlc_googlenet models: k=1, and alpha=1e-4 divided by n=5).
LRN_PRESETS = {
    "paper": {"depth_radius": 2, "bias": 2.0, "alpha": 1e-4, "beta": 0.75},
    "caffe": {"depth_radius": 2, "bias": 1.0, "alpha": 1e-4 / 5, "beta": 0.75},
}


@keras.saving.register_keras_serializable(package="zoo")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels (Krizhevsky et al. 2012, sec. 3.3).

    For the activity ``a[c]`` of channel ``c`` at one position, with ``N`` channels::

        b[c] = a[c] / (k + alpha * sum(a[j]**2 for j in
                                       range(max(0, c - r), min(N - 1, c + r) + 1))) ** beta

    where ``r = depth_radius``, so the window covers ``n = 2r + 1`` adjacent channels
    and is clipped at the channel edges. The defaults are the paper's: ``n = 5``
    (``depth_radius=2``), ``k = 2``, ``alpha = 1e-4``, ``beta = 0.75``. ``alpha`` is *not*
    divided by ``n`` (Caffe and PyTorch's ``LocalResponseNorm`` divide it; the paper and
    ``tf.nn.local_response_normalization`` do not). Inputs are channels-last.

    Example:

    >>> import numpy as np
    >>> lrn = LocalResponseNormalization()
    >>> tuple(lrn(np.ones((1, 2, 2, 8), "float32")).shape)
    (1, 2, 2, 8)
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if int(depth_radius) != depth_radius or depth_radius < 0:
            raise UserError(
                f"depth_radius must be a non-negative integer, received {depth_radius!r}."
            )
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise UserError(
                "LocalResponseNormalization expects 4D channels-last input "
                f"(batch, height, width, channels), received shape {tuple(input_shape)}."
            )
        super().build(input_shape)

    def call(self, inputs):
        # In float32 under mixed precision (the squares and the power are the sensitive
        # part). On TensorFlow, its fused op: the same formula (alpha not divided by n) with
        # a fused gradient, which halved the demo AlexNet's training step on a CPU (4.7 to
        # 2.3 s an epoch). Elsewhere (JAX, PyTorch), the formula in keras.ops.
        x = keras.ops.cast(inputs, "float32")
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            out = tf.nn.local_response_normalization(
                x, depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha,
                beta=self.beta)
        else:
            out = self.formula(x)
        return keras.ops.cast(out, inputs.dtype)

    def formula(self, x):
        """The formula in keras.ops, on every backend: the window sum is ``2r + 1`` shifted
        slices of the zero-padded squares."""
        r, channels = self.depth_radius, x.shape[-1]
        padded = keras.ops.pad(keras.ops.square(x), [(0, 0), (0, 0), (0, 0), (r, r)])
        window = sum(padded[..., i:i + channels] for i in range(2 * r + 1))
        return x / keras.ops.power(self.bias + self.alpha * window, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta
        )
        return config


@keras.saving.register_keras_serializable(package="zoo")
class ChannelSlice(keras.layers.Layer):
    """Channels ``start`` to ``stop`` (exclusive) of a channels-last tensor: how one
    normalised map is handed to two towers (Caffe's grouped convolution input).

    Example:

    >>> tuple(ChannelSlice(2, 5)(np.ones((1, 3, 3, 8), "float32")).shape)
    (1, 3, 3, 3)
    """

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= int(start) < int(stop):
            raise UserError(f"ChannelSlice needs 0 <= start < stop; received start={start!r}, "
                            f"stop={stop!r}.")
        self.start, self.stop = int(start), int(stop)

    def call(self, inputs):
        return inputs[..., self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.stop - self.start)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}
