"""Layers the classic papers used that Keras does not ship."""

import keras
import numpy as np


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
            raise ValueError(
                f"depth_radius must be a non-negative integer, received {depth_radius!r}."
            )
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "LocalResponseNormalization expects 4D channels-last input "
                f"(batch, height, width, channels), received shape {tuple(input_shape)}."
            )
        super().build(input_shape)

    def call(self, inputs):
        # Written in keras.ops, so it runs on every backend (TensorFlow, JAX, PyTorch): the
        # window sum is 2r + 1 shifted slices of the zero-padded squares. In float32 under
        # mixed precision (the squares and the power are the sensitive part).
        x = keras.ops.cast(inputs, "float32")
        r, channels = self.depth_radius, inputs.shape[-1]
        padded = keras.ops.pad(keras.ops.square(x), [(0, 0), (0, 0), (0, 0), (r, r)])
        window = sum(padded[..., i:i + channels] for i in range(2 * r + 1))
        out = x / keras.ops.power(self.bias + self.alpha * window, self.beta)
        return keras.ops.cast(out, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta
        )
        return config


@keras.saving.register_keras_serializable(package="zoo")
class MeanSubtraction(keras.layers.Layer):
    """Subtract a training-set mean (per channel, or a whole mean image) inside a model.

    So an exported model takes raw [0, 255] pixels. ``mean`` has shape ``(channels,)`` or
    ``(height, width, channels)`` matching the input (``ImageStatistics.center_mean(size)``
    crops the paper's 256x256 mean image to the 227 crops). The values live in the config,
    so ``clone_model`` and ``.keras`` files keep them.

    Example:

    >>> layer = MeanSubtraction([120.0, 115.0, 100.0])
    >>> layer(np.full((1, 2, 2, 3), 120.0, "float32"))[0, 0, 0].numpy().tolist()
    [0.0, 5.0, 20.0]
    """

    def __init__(self, mean, **kwargs):
        super().__init__(**kwargs)
        mean = np.asarray(mean, dtype="float32")
        if mean.ndim not in (1, 3):
            raise ValueError(
                "`mean` must have shape (channels,) or (height, width, channels); "
                f"received shape {mean.shape}."
            )
        self.mean = mean

    def build(self, input_shape):
        expected = tuple(input_shape[-self.mean.ndim:])
        if expected != self.mean.shape:
            raise ValueError(
                f"MeanSubtraction's mean has shape {self.mean.shape} but its input has shape "
                f"{tuple(input_shape)}: the mean must match the trailing "
                f"{'channel' if self.mean.ndim == 1 else 'height, width and channel'} sizes."
            )
        super().build(input_shape)

    def call(self, inputs):
        return inputs - keras.ops.cast(self.mean, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean.tolist()}
