"""Keras layers that the data pipeline puts inside a model, so an exported model takes raw
pixels.

Example:

>>> import data
>>> model_input = data.MeanSubtraction([120.0, 115.0, 100.0])(keras.Input((227, 227, 3)))
"""

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
    >>> layer(np.full((1, 2, 2, 3), 120.0, "float32"))[0, 0, 0].numpy().tolist()
    [0.0, 5.0, 20.0]
    """

    def __init__(self, mean, **kwargs):
        super().__init__(**kwargs)
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
        return inputs - keras.ops.cast(self.mean, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean.tolist()}
