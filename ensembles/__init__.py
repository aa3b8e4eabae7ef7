"""Ensembles of zoo models: members averaged in one graph, snapshot ensembles, dropout and
width variants, evaluation with calibration, diversity and uncertainty, one-SavedModel export.

Example:

>>> import ensembles
>>> model = ensembles.Ensemble(members)                         # doctest: +SKIP
>>> ensembles.evaluate(model, data.load("digits", "test"))      # doctest: +SKIP
"""

from ensembles import metrics
from ensembles.ensemble import (COMBINE_CHOICES, CombineMembers, Ensemble, combine_layer,
                                is_ensemble, member_weights, members_of, with_member_outputs)
from ensembles.evaluate import evaluate, predict_members, size_curve, uncertainty
from ensembles.export import EnsembleUncertainty, export, serving_model
from ensembles.plots import plot_reliability, plot_size_curve
from ensembles.snapshots import (CheckpointSnapshots, CycleSnapshots, CyclicCosine,
                                 from_snapshots, snapshot_paths, train_snapshots)
from ensembles.variants import variants


def member_probabilities(ensemble, dataset, tta=None):
    """The stacked member probabilities, shaped ``(members, batch, classes)``."""
    return predict_members(ensemble, dataset, tta)[1]


__all__ = [
    "COMBINE_CHOICES", "CheckpointSnapshots", "CombineMembers", "CycleSnapshots",
    "CyclicCosine", "Ensemble", "EnsembleUncertainty", "combine_layer", "evaluate", "export",
    "from_snapshots", "is_ensemble", "member_probabilities", "member_weights", "members_of", "metrics", "plot_reliability", "plot_size_curve",
    "predict_members", "serving_model", "size_curve", "snapshot_paths", "train_snapshots",
    "uncertainty", "variants", "with_member_outputs",
]
