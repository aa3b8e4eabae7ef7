"""Export a whole ensemble as ONE SavedModel that serves probabilities and uncertainty."""

import keras

from ensembles.ensemble import with_member_outputs
from zoo._io import atomic_path


@keras.saving.register_keras_serializable(package="ensembles")
class EnsembleUncertainty(keras.layers.Layer):
    """From stacked member probabilities ``(batch, members, classes)``: the predictive entropy
    H[mean p] and the mutual information H[mean p] - mean H[p_i] (the members' disagreement)."""

    def call(self, stacked):
        p = keras.ops.clip(stacked, 1e-12, 1.0)
        mean = keras.ops.mean(p, axis=1)
        predictive = -keras.ops.sum(mean * keras.ops.log(mean), axis=-1)
        expected = keras.ops.mean(-keras.ops.sum(p * keras.ops.log(p), axis=-1), axis=1)
        return predictive, predictive - expected

    def compute_output_shape(self, input_shape):
        return (input_shape[0],), (input_shape[0],)


def serving_model(ensemble):
    """The ensemble with outputs ``{"probabilities", "predictive_entropy",
    "mutual_information"}``, sharing its weights."""
    model = with_member_outputs(ensemble)
    combined, stacked = model.outputs
    entropy, information = EnsembleUncertainty(name="uncertainty")(stacked)
    return keras.Model(model.input, {"probabilities": combined, "predictive_entropy": entropy,
                                      "mutual_information": information},
                       name=f"{ensemble.name}_serving")


def export(ensemble, path):
    """Write ONE SavedModel for ``ensemble`` at ``path``, atomically.

    Its ``serve`` signature takes a float32 batch of images and returns a dict with
    ``probabilities`` (the combined prediction), ``predictive_entropy`` and
    ``mutual_information`` per example. Load it with plain TensorFlow, no project code:

    >>> served = tf.saved_model.load(path)                      # doctest: +SKIP
    >>> served.serve(images)["probabilities"]                   # doctest: +SKIP
    """
    serving = serving_model(ensemble)
    with atomic_path(path) as tmp:
        serving.export(tmp, format="tf_saved_model", verbose=False)
    return path
