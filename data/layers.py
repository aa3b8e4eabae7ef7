"""Keras layers that the data pipeline puts inside a model, so an exported model takes raw
pixels.

Example:

>>> import data
>>> model_input = data.MeanSubtraction([120.0, 115.0, 100.0])(keras.Input((227, 227, 3)))
"""

import math

import keras
import numpy as np

from safeio.checks import UserError


# Registered as "zoo>MeanSubtraction", the name saved models already carry.
@keras.saving.register_keras_serializable(package="zoo")
class MeanSubtraction(keras.layers.Layer):
    """Subtract a training-set mean (per channel, or a whole mean image) inside a model.

    So an exported model takes raw [0, 255] pixels. ``mean`` has shape ``(channels,)`` or
    ``(height, width, channels)`` matching the input (``ImageStatistics.center_mean(size)``
    crops the paper's 256x256 mean image to the 227 crops). The values live in the config,
    so ``clone_model`` and ``.keras`` files keep them.

    Example:

    >>> layer = MeanSubtraction([120.0, 115.0, 100.0])
    >>> out = layer(np.full((1, 2, 2, 3), 120.0, "float32"))
    >>> keras.ops.convert_to_numpy(out)[0, 0, 0].tolist()
    [0.0, 5.0, 20.0]
    """

    def __init__(self, mean, **kwargs):
        # In float32 under mixed precision too, as PixelNormalization (bfloat16 would round
        # 0-255 pixels minus a mean by half a level); integer images are cast, not wrapped.
        super().__init__(**{"dtype": "float32", **kwargs})
        mean = np.asarray(mean, dtype="float32")
        if mean.ndim not in (1, 3):
            raise UserError(
                "`mean` must have shape (channels,) or (height, width, channels); "
                f"received shape {mean.shape}."
            )
        self.mean = mean

    def build(self, input_shape):
        expected = tuple(input_shape[-self.mean.ndim:])
        if expected != self.mean.shape:
            raise UserError(
                f"MeanSubtraction's mean has shape {self.mean.shape} but its input has shape "
                f"{tuple(input_shape)}: the mean must match the trailing "
                f"{'channel' if self.mean.ndim == 1 else 'height, width and channel'} sizes."
            )
        super().build(input_shape)

    def call(self, inputs):
        return keras.ops.cast(inputs, "float32") - keras.ops.convert_to_tensor(self.mean,
                                                                               "float32")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean.tolist()}


@keras.saving.register_keras_serializable(package="zoo")
class PixelNormalization(keras.layers.Layer):
    """Pixels 0-255 as converted weights take them, inside a model: times ``scale``, the
    channels reversed for ``channel_order="BGR"`` (Caffe's), minus ``mean``, divided by
    ``std`` (torchvision's ``/ 255``, mean and std: ``scale=1 / 255``). The transform of
    ``zoo.preprocess_input`` after its resize and crop, for
    ``zoo.pretrained.with_preprocessing``.

    Example:

    >>> layer = PixelNormalization([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], scale=1 / 255)
    >>> out = layer(np.full((1, 1, 1, 3), 255.0, "float32"))
    >>> keras.ops.convert_to_numpy(out)[0, 0, 0].tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, mean, std=None, scale=1.0, channel_order="RGB", **kwargs):
        # In float32 under mixed precision too: bfloat16 would round 0-255 pixels minus a
        # mean by half a level. (Integer images are cast, not scaled to 0.)
        super().__init__(**{"dtype": "float32", **kwargs})
        try:
            self.mean = [float(m) for m in mean]
            self.std = None if std is None else [float(s) for s in std]
            self.scale = float(scale)
        except (TypeError, ValueError):
            self.mean = None
        if self.mean is None or len(self.mean) != 3 or (
                self.std is not None and len(self.std) != 3) or channel_order not in (
                    "RGB", "BGR") or not all(math.isfinite(v) for v in self.mean + [
                        self.scale]) or not all(math.isfinite(s) and s > 0
                                                for s in self.std or ()):
            raise UserError("PixelNormalization takes 3 finite means, 3 finite stds > 0 (or "
                            "none), a finite scale and channel_order 'RGB' or 'BGR'; received "
                            f"mean={mean!r}, std={std!r}, scale={scale!r}, "
                            f"channel_order={channel_order!r}.")
        self.channel_order = channel_order

    def call(self, inputs):
        x = keras.ops.cast(inputs, "float32") * self.scale
        if self.channel_order == "BGR":
            x = keras.ops.take(x, [2, 1, 0], axis=-1)
        x = x - keras.ops.convert_to_tensor(self.mean, "float32")
        if self.std is not None:
            x = x / keras.ops.convert_to_tensor(self.std, "float32")
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std,
                "scale": self.scale, "channel_order": self.channel_order}
