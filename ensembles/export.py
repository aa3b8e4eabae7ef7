"""Export a whole ensemble as ONE SavedModel that serves probabilities and uncertainty."""

import keras
import numpy as np

from ensembles.ensemble import combine_layer, with_member_outputs
from safeio import atomic_directory


@keras.saving.register_keras_serializable(package="ensembles")
class EnsembleUncertainty(keras.layers.Layer):
    """The uncertainty of the distribution the ensemble serves, from ``[combined, stacked]``:
    ``combined`` its probabilities ``(batch, classes)`` (from its own combine rule and
    weights), ``stacked`` the member probabilities ``(batch, members, classes)``.

    - predictive entropy: ``H[combined]``, the entropy of the served probabilities;
    - mutual information: ``H[combined] - sum_i w_i H[p_i]`` with the ensemble's normalised
      member ``weights`` (equal when None). For ``mean`` this is the mutual information
      between the prediction and the member (never negative); for the other rules it is the
      same difference, which can fall below 0 when the rule is sharper than the members.

    Example:

    >>> stacked = np.array([[[0.9, 0.1], [0.5, 0.5]]], "float32")  # 1 input, 2 members
    >>> combined = 0.75 * stacked[:, 0] + 0.25 * stacked[:, 1]    # their weighted mean
    >>> entropy, information = EnsembleUncertainty(weights=[0.75, 0.25])([combined, stacked])
    >>> round(float(entropy[0]), 4), round(float(information[0]), 4)
    (0.5004, 0.0833)
    """

    def __init__(self, weights=None, **kwargs):
        super().__init__(**kwargs)
        self.member_weights = None if weights is None else [float(w) for w in weights]

    def call(self, inputs):
        combined, stacked = inputs
        members = stacked.shape[1]
        w = (np.full(members, 1.0 / members) if self.member_weights is None else
             np.asarray(self.member_weights) / np.sum(self.member_weights))
        w = keras.ops.convert_to_tensor(w.reshape(1, members), dtype=stacked.dtype)
        predictive = _entropy(combined)
        expected = keras.ops.sum(w * _entropy(stacked), axis=1)
        return predictive, predictive - expected

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0],), (input_shape[0][0],)

    def get_config(self):
        return {**super().get_config(), "weights": self.member_weights}


def _entropy(p):
    p = keras.ops.clip(p, 1e-12, 1.0)
    return -keras.ops.sum(p * keras.ops.log(p), axis=-1)


def serving_model(ensemble):
    """The ensemble with outputs ``{"probabilities", "predictive_entropy",
    "mutual_information", "finite"}``, sharing its weights. The uncertainty describes the
    served probabilities: the same combine rule and member weights. ``finite`` is False for
    an input that holds a NaN or inf pixel (whose probabilities a network's ReLUs and
    poolings can turn into finite nonsense) or whose probabilities are not finite, so a
    client can tell, per input, which answers not to use."""
    members = with_member_outputs(ensemble)
    # Nested under a name of its own: the ensemble's (the demo's is "all") may be an op's.
    model = keras.Model(members.input, members.outputs, name="ensemble_and_members")
    # Called with training=False: without it, a Keras image preprocessing layer in a member
    # (Resizing, whose call defaults to training=True) puts the whole call in training
    # mode, and BatchNormalization then serves batch statistics, not its moving averages.
    images = keras.Input(model.input.shape[1:], dtype=model.input.dtype,
                         name=model.layers[0].name)  # the signature's input name, as before
    combined, stacked = model(images, training=False)
    weights = combine_layer(ensemble).member_weights
    entropy, information = EnsembleUncertainty(weights, name="uncertainty")(
        [combined, stacked])
    pixels = keras.ops.reshape(images, (-1, int(np.prod(images.shape[1:]))))
    finite = keras.ops.logical_and(keras.ops.all(keras.ops.isfinite(pixels), axis=-1),
                                   keras.ops.all(keras.ops.isfinite(combined), axis=-1))
    return keras.Model(images, {"probabilities": combined, "predictive_entropy": entropy,
                                "mutual_information": information, "finite": finite},
                       name=f"{ensemble.name}_serving")


def export(ensemble, path, overwrite=False):
    """Write ONE SavedModel for ``ensemble`` at ``path``, atomically.

    ``path`` must be new, an empty directory, or (with ``overwrite=True``) a previous
    export of this project, which is replaced in one atomic step; nothing else is ever
    deleted: a file or a directory of other files at ``path`` is a ``ValueError``.

    Its ``serve`` signature takes a float32 batch of images and returns a dict with
    ``probabilities`` (the combined prediction), ``predictive_entropy`` and
    ``mutual_information`` per example, and ``finite``: False where an input holds a NaN or
    inf pixel or gets NaN or inf probabilities. Load it with plain TensorFlow, no project code:

    >>> served = tf.saved_model.load(path)                      # doctest: +SKIP
    >>> served.serve(images)["probabilities"]                   # doctest: +SKIP
    """
    serving = serving_model(ensemble)
    with atomic_directory(path, overwrite=overwrite) as tmp:
        serving.export(tmp, format="tf_saved_model", verbose=False)
    return path
