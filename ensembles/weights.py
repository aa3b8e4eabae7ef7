"""Member weights fitted on held-out data: on the simplex by NLL, or by Caruana et al.'s
greedy ensemble selection (2004).

Both fit the ``"mean"`` rule (the weighted average of the members' probabilities, which
``ensembles.Ensemble`` uses by default): its NLL depends only on each member's probability
of the true class. Fit on a validation split and report on the test split; weights fitted
and scored on the same data flatter the ensemble.
"""

import keras
import numpy as np
import scipy.optimize

from ensembles.metrics import check_probabilities, class_labels
from safeio.checks import UserError, check_choice, check_positive_int

METHOD_CHOICES = ("nll", "greedy")
_EPS = 1e-12


def true_class_probabilities(member_probs, labels):
    """``(members, n)``: each member's probability of each example's label, from
    ``member_probs`` shaped ``(members, n, classes)``."""
    member_probs = np.asarray(member_probs, "float64")
    labels = class_labels(labels, member_probs.shape[-1])
    if len(labels) == 0:  # (weights fitted on nothing: NaN's argmin chose member 0)
        raise UserError("Fitting member weights needs held-out examples: at least one; "
                        "received none.")
    if member_probs.ndim != 3 or member_probs.shape[1] != len(labels) or not len(member_probs):
        raise UserError(f"Expected member probabilities shaped (members, {len(labels)}, "
                        f"classes), of one member at least; received {member_probs.shape}.")
    member_probs = check_probabilities(member_probs, what="member probabilities")
    return member_probs[:, np.arange(len(labels)), labels]


def _nll(true_class_probs):
    """The mean negative log of each example's probability of its label."""
    return float(-np.mean(np.log(np.maximum(true_class_probs, _EPS))))


def nll_weights(member_probs, labels):
    """Weights on the simplex that minimise the held-out NLL of the weighted average.

    The weights are the softmax of free parameters, fitted by SciPy's L-BFGS-B with the
    analytic gradient; the NLL of a mixture is convex in the weights, so the optimum is the
    global one (up to the optimiser's tolerance; a weight the data gives no use for tends to
    0 without reaching it).
    """
    picked = true_class_probabilities(member_probs, labels)
    count = len(picked)

    def loss_and_gradient(theta):
        w = np.exp(theta - theta.max())
        w /= w.sum()
        mix = np.maximum(w @ picked, _EPS)
        d_w = -np.mean(picked / mix, axis=1)  # dNLL/dw_k
        return _nll(mix), w * (d_w - w @ d_w)  # through the softmax

    result = scipy.optimize.minimize(loss_and_gradient, np.zeros(count), jac=True,
                                     method="L-BFGS-B", options={"gtol": 1e-10})
    w = np.exp(result.x - result.x.max())
    return w / w.sum()


def greedy_counts(member_probs, labels, rounds=None):
    """Caruana et al.'s ensemble selection with replacement: ``rounds`` times, add the member
    whose addition gives the lowest NLL of the average of those chosen (ties: the first
    member). Returns how often each member was chosen (integers; weights up to scale).
    ``rounds`` defaults to five per member."""
    picked = true_class_probabilities(member_probs, labels)
    rounds = 5 * len(picked) if rounds is None else check_positive_int(rounds, "rounds")
    counts = np.zeros(len(picked), "int64")
    total = np.zeros(picked.shape[1])
    for step in range(1, rounds + 1):
        scores = [_nll((total + row) / step) for row in picked]
        best = int(np.argmin(scores))
        counts[best] += 1
        total += picked[best]
    return counts


def fit_weights(members, data, method="nll", rounds=None, tta=None):
    """Member weights fitted on held-out ``data`` for ``Ensemble(members, weights=...)`` (and
    ``zoo ensemble --weights``).

    Args:
        members: an :func:`ensembles.Ensemble` or a list of models (in the order the weights
            will follow: :func:`ensembles.members_of`'s for an ensemble).
        data: held-out batches of ``(images, labels)``, e.g. the validation split.
        method: ``"nll"`` (weights on the simplex minimising the NLL of the weighted
            average) or ``"greedy"`` (Caruana et al. 2004: integer counts, selection with
            replacement over ``rounds`` rounds).
        rounds: greedy's rounds (five per member when None); only for ``"greedy"``.
        tta: test-time augmentation for the predictions, as ``ensembles.evaluate``'s.

    Returns a NumPy array, one weight per member.

    Example:

    >>> weights = fit_weights([a, b, c], data.load("digits", "validation"))  # doctest: +SKIP
    >>> model = Ensemble([a, b, c], weights=weights)                        # doctest: +SKIP
    """
    from ensembles.ensemble import combine_layer
    from ensembles.evaluation import check_held_out_classes, predict_members

    from ensembles.mc_dropout import draws_at_inference

    check_choice(method, METHOD_CHOICES, "method")
    if rounds is not None and method != "greedy":  # (it was ignored without a word)
        raise UserError(f"rounds={rounds!r} counts the rounds of method='greedy'; "
                        f"method={method!r} fits weights with no rounds: leave rounds out.")
    if isinstance(members, keras.Model) and draws_at_inference(members):
        raise UserError(f"{members.name} is MC dropout: its members are random draws of one "
                        "model, alike by design, and weights fitted to them fit noise (two "
                        "fits differ). Combine the samples with equal weights.")
    rule = combine_layer(members)
    if rule is not None and rule.combine != "mean":  # (its members' weighted mean is fitted)
        raise UserError(f"fit_weights fits the weights of the mean rule; {members.name} "
                        f"combines by {rule.combine!r}: rebuild it with "
                        "ensembles.Ensemble(ensembles.members_of(model), combine='mean').")
    _, member_probs, labels = predict_members(members, data, tta)
    check_held_out_classes(labels, member_probs.shape[-1], "Member weights")
    if method == "nll":
        return nll_weights(member_probs, labels)
    return greedy_counts(member_probs, labels, rounds)
