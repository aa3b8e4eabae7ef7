"""Dropout as an ensemble inside one model (Monte Carlo dropout; Gal and Ghahramani 2016,
"Dropout as a Bayesian approximation").

A network trained with dropout is, at test time, one of many thinned networks; running it
N times with dropout left on and averaging the N predictions is an ensemble of N of them,
for the price of one set of weights. :func:`mc_dropout` builds that ensemble as one Keras
model with the same graph as :func:`ensembles.Ensemble` (the N samples stacked, then
combined), so ``ensembles.evaluate`` reports each sample and the combination, the
uncertainty signals (entropy, mutual information) follow, and ``ensembles.export`` serves
it as one SavedModel.
"""

import keras

from ensembles.ensemble import COMBINE_CHOICES, _check_members, combined_model
from safeio.checks import UserError, check_choice, check_positive_int
from zoo.saving import copy_metadata, resize_mode


def _always_dropping(base):
    """A subclass of the dropout layer ``base`` that drops in inference too (its rate,
    noise shape and seed are ``base``'s), registered as ``ensembles>MC{base}``."""
    def call(self, inputs, training=None):
        return base.call(self, inputs, training=True)

    cls = type(f"MC{base.__name__}", (base,), {
        "call": call, "__doc__": f"``keras.layers.{base.__name__}`` that drops in inference "
                                 "too: what :func:`mc_dropout` puts in its place."})
    cls.__module__ = __name__
    return keras.saving.register_keras_serializable(package="ensembles")(cls)


# Each dropout layer MC dropout switches on, and what takes its place. SpatialDropout2D
# (a Dropout subclass) was refused as "no Dropout layer", or left off beside a Dropout.
_ACTIVE = {base: _always_dropping(base) for base in (
    keras.layers.Dropout, keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D, keras.layers.GaussianDropout, keras.layers.AlphaDropout)}
MCDropout = _ACTIVE[keras.layers.Dropout]
MCDropout.__doc__ = """``keras.layers.Dropout`` that drops in inference too (its rate, noise
shape and seed are Dropout's): what :func:`mc_dropout` puts in place of a model's Dropout
layers.

Example:

>>> import numpy as np
>>> layer = MCDropout(0.5, seed=0)
>>> float(np.mean(keras.ops.convert_to_numpy(layer(np.ones((1, 1000)))) == 0)) > 0.4
True
"""


def leaf_layers(model):
    """Every layer of ``model``, those of its nested models included."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        else:
            yield layer


def draws_at_inference(model):
    """Whether ``model`` holds an :class:`MCDropout` layer, or another of
    :func:`mc_dropout`'s (it predicts at random)."""
    active = tuple(_ACTIVE.values())
    return any(isinstance(layer, active) for layer in leaf_layers(model))


def _with_active_dropout(model, name):
    """A model that shares every layer and weight of ``model`` but whose Keras dropout
    layers (:data:`_ACTIVE`'s; nested models included) drop in inference too."""
    def clone(layer):
        if type(layer) in _ACTIVE:
            return _ACTIVE[type(layer)].from_config(layer.get_config())
        return layer  # shared, weights and all

    layers = list(leaf_layers(model))
    if draws_at_inference(model):  # (its MC layers were named as a user's own)
        raise UserError(f"{model.name!r} is MC dropout already (its dropout layers drop in "
                        "inference): pass the model it was made from.")
    # A subclass of a dropout layer, of the user's own: its call is not ours to force
    # (left off, it would pass for part of the samples' randomness).
    theirs = [f"{layer.name} ({type(layer).__name__})" for layer in layers
              if isinstance(layer, tuple(_ACTIVE)) and type(layer) not in _ACTIVE]
    if theirs:
        raise UserError(
            "MC dropout switches on Keras' dropout layers (Dropout, SpatialDropout, "
            f"GaussianDropout, AlphaDropout); {model.name!r} has {', '.join(theirs)}, "
            "which would stay in inference mode. Use Keras' layers.")
    if not any(type(layer) in _ACTIVE and layer.rate > 0 for layer in layers):
        raise UserError(
            f"{model.name!r} has no dropout layer (Dropout, SpatialDropout, GaussianDropout, "
            "AlphaDropout) with a rate above 0, so MC dropout would repeat one prediction. "
            "Build it with dropout (e.g. zoo.resnet18(dropout=0.2)), or ensemble several "
            "models instead.")
    sampler = keras.models.clone_model(model, clone_function=clone, recursive=True)
    if isinstance(sampler, keras.Sequential):  # (never called: no input to build on)
        inputs = keras.Input(batch_shape=model.input_shape, dtype=model.inputs[0].dtype)
        return copy_metadata(model, keras.Model(inputs, sampler(inputs), name=name))
    return copy_metadata(model, keras.Model(sampler.input, sampler.output, name=name))


MAX_SAMPLES = 1_000  # mc_dropout's samples (and zoo ensemble --mc-dropout's)


def mc_dropout(model, samples=10, combine="mean", name=None):
    """ONE Keras model that runs ``model`` ``samples`` times with its dropout layers active
    and combines the samples as an ensemble combines its members.

    Only Keras' dropout layers are switched on (``Dropout``, ``SpatialDropout1D/2D/3D``,
    ``GaussianDropout``, ``AlphaDropout``; a subclass of one of them, of another's, is one
    line, and the zoo's ``DropConnectDense`` stays in inference mode; in
    the zoo's models: the
    classifier's dropout, AlexNet's drop6/drop7 and ResNet's stochastic-depth branches);
    everything else runs in inference mode: BatchNormalization uses, and never updates, its
    moving statistics. The samples share the model's weights (nothing is copied), and each
    call of the returned model draws new masks.

    Args:
        model: a trained classifier with at least one Dropout layer.
        samples: N, the number of stochastic forward passes (Gal and Ghahramani used 10 to
            100).
        combine: how the samples combine, as for :func:`ensembles.Ensemble`.
        name: the model's name, default ``f"{model.name}_mc_dropout"``.

    Example:

    >>> import ensembles, zoo
    >>> model = zoo.resnet18(input_shape=(32, 32, 3), classes=10, width=0.25, dropout=0.3)
    >>> mc = mc_dropout(model, samples=4)
    >>> [m.name for m in ensembles.members_of(mc)]
    ['resnet18_sample', 'resnet18_sample', 'resnet18_sample', 'resnet18_sample']
    """
    check_positive_int(samples, "samples")
    if samples > MAX_SAMPLES:  # (2**31 ran out of memory building the list of calls)
        raise UserError(f"`samples` must be at most {MAX_SAMPLES:,}: each is one call of the "
                        "model in the one graph (1,000 take 10 s to build on a CPU, and predict "
                        "1,000 times slower; Gal and Ghahramani used 10 to 100); received "
                        f"{samples:,}.")
    check_choice(combine, COMBINE_CHOICES, "combine")
    names = _check_members([model])  # the model's class names, or None
    sampler = _with_active_dropout(model, f"{model.name}_sample")
    calls = [(sampler, f"{sampler.name}_{k + 1}") for k in range(samples)]
    return combined_model(calls, combine, name=name or f"{model.name}_mc_dropout",
                          class_names=names, resize=resize_mode(model))
