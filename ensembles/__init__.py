"""Ensembles of zoo models: members averaged in one graph, snapshot ensembles, dropout and
width variants, MC dropout, fitted member weights, temperature scaling, distillation into
one network, evaluation with calibration, diversity and uncertainty, one-SavedModel export.

Example:

>>> import ensembles
>>> model = ensembles.Ensemble(members)                         # doctest: +SKIP
>>> ensembles.evaluate(model, data.load("digits", "test"))      # doctest: +SKIP
"""

import importlib

from ensembles import metrics
from ensembles.calibration import (TemperatureScaling, calibrate, fit_temperature, temperature,
                                   with_temperature)
from ensembles.ensemble import (COMBINE_CHOICES, CombineMembers, Ensemble, as_ensemble,
                                combine_layer, is_ensemble, member_weights, members_of,
                                with_member_outputs)
from ensembles.export import EnsembleUncertainty, export, serving_model
from ensembles.mc_dropout import MCDropout, mc_dropout
from ensembles.plots import plot_reliability, plot_size_curve
from ensembles.schedules import CyclicCosine
from ensembles.variants import variants
from zoo import load_core as _load_core

# The zoo's layers and models are registered with Keras too (0.02 s): after `import
# ensembles`, Keras' own load_model reads any member (a GoogLeNet with its auxiliary
# heads); data's preprocessing layers come with `import data`.
_load_core()

# Evaluation reads tf.data pipelines and snapshot training runs zoo.train: imported on
# first use, so `import ensembles` builds and combines models on any Keras backend.
_LAZY = {name: "ensembles.evaluation"
         for name in ("evaluate", "predict_members", "size_curve", "uncertainty")}
_LAZY.update({name: "ensembles.weights" for name in (
    "fit_weights", "greedy_counts", "nll_weights")})
_LAZY.update({name: "ensembles.distillation" for name in (
    "distill", "distillation_loss", "distillation_model")})
_LAZY.update({name: "ensembles.snapshots" for name in (
    "CheckpointSnapshots", "CycleSnapshots", "from_snapshots", "snapshot_paths",
    "train_snapshots")})


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'ensembles' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def load(path, compile=True):
    """Load a ``.keras`` file holding an ensemble, snapshot checkpoints or zoo models, in
    any process: :func:`zoo.load_model` with the ensembles' objects (``CombineMembers``,
    ``CyclicCosine``, ``EnsembleUncertainty``,
    ``TemperatureScaling``) registered, and its one-line errors.

    Example:

    >>> model = ensembles.load("runs/ensemble.keras")               # doctest: +SKIP

    An ensemble's members (``members_of``) carry the class names and resize mode the file
    records for it, which they share, so that an ensemble rebuilt from them keeps them.
    """
    from ensembles.ensemble import member_models
    from zoo.saving import copy_metadata, load_model

    model = load_model(path, compile=compile)
    for member in member_models(model):  # (graphs the file made: no user's model)
        copy_metadata(model, member)
    return model


def member_probabilities(ensemble, dataset, tta=None):
    """The stacked member probabilities, shaped ``(members, batch, classes)``."""
    from ensembles.evaluation import predict_members

    return predict_members(ensemble, dataset, tta)[1]


__all__ = [
    "COMBINE_CHOICES", "CheckpointSnapshots", "CombineMembers", "CycleSnapshots",
    "CyclicCosine", "Ensemble", "EnsembleUncertainty", "MCDropout", "TemperatureScaling",
    "as_ensemble", "calibrate", "combine_layer", "distill", "distillation_loss",
    "distillation_model", "evaluate", "export", "fit_temperature", "fit_weights",
    "from_snapshots", "greedy_counts", "is_ensemble", "load", "mc_dropout",
    "member_probabilities", "member_weights", "members_of", "metrics", "nll_weights",
    "plot_reliability", "plot_size_curve", "predict_members", "serving_model", "size_curve",
    "snapshot_paths", "temperature", "train_snapshots", "uncertainty", "variants",
    "with_member_outputs", "with_temperature",
]
