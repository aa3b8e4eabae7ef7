"""Evaluate ensembles and their members: one table, size curves, per-example uncertainty."""

import warnings

import keras
import numpy as np
import pandas as pd

from data import tta as tta_lib
from ensembles import metrics
from ensembles.ensemble import (CombineMembers, _check_members, _softmax_output, combine_layer,
                                common_input_pixels, is_ensemble, member_weights, members_of,
                                unique_names, with_member_outputs)
from safeio.checks import UserError, check_bool
from safeio.outputs import softmax, warn_if_hidden_softmax

SCORE_COLUMNS = ["top1_error", "top5_error", "nll", "brier", "ece"]
# The rows evaluate adds after the members': a member of one of these names is numbered.
SUMMARY_ROWS = ("best member", "mean member", "ensemble", "ensemble of calibrated members")


def _undistributed(model):
    """``model``, or where it was built under a ``tf.distribute`` strategy (``zoo.train``
    with ``strategy="mirrored"``), a functional view of it built outside the strategy,
    sharing its layers and weights. Keras' ``predict_on_batch`` on a model of a
    MirroredStrategy hands every replica the whole batch and concatenates their answers:
    2n rows for n images under two replicas, read as garbage (a 93 % top-1 error for a
    model at 1.7 %)."""
    if getattr(model, "_distribute_strategy", None) is None:
        return model
    return keras.Model(model.inputs, model.outputs, name=model.name)


def _members_and_predictor(source):
    """Member names and ``predict(images) -> (members, batch, classes)`` probabilities."""
    if is_ensemble(source):
        model = _undistributed(with_member_outputs(source))
        return ([m.name for m in members_of(source)],
                lambda x: np.moveaxis(np.asarray(model.predict_on_batch(x)[1]), 1, 0))
    if not isinstance(source, keras.Model) and (isinstance(source, (str, bytes)) or not hasattr(
            source, "__iter__")):  # (None: "'NoneType' object is not iterable")
        raise UserError(f"Expected a model, an ensemble or a list of models; received "
                        f"{source!r:.80} ({type(source).__name__}).")
    members = [source] if isinstance(source, keras.Model) else list(source)
    if not members:
        raise UserError("Nothing to evaluate: received an empty list of members.")
    if len(members) > 1:  # scored together: the same images in, the same classes out, and
        _check_members(members)  # one kind of pixels, as Ensemble() checks (the view of the
        common_input_pixels(members)  # images is the data's: `zoo evaluate --resize`)
    predictors = {id(m): _undistributed(m) for m in members}
    warned = set()

    def probabilities(model, x):
        p = predictors[id(model)].predict_on_batch(x)
        if isinstance(p, (list, tuple, dict)) or np.ndim(p) != 2:
            shape = (f"{len(p)} outputs" if isinstance(p, (list, tuple, dict))
                     else f"shape {np.shape(p)[1:]} per example")
            raise UserError(f"{model.name} gives {shape}; evaluation takes classifiers with "
                            "one vector of class scores per example (not a feature map: "
                            "include_top=False?).")
        p = np.asarray(p)
        if _softmax_output(model):
            return p
        # (a Lambda's softmax: its softmax is still taken, as Ensemble, calibrate and the
        # export take it: one reading of the model everywhere)
        if id(model) not in warned and warn_if_hidden_softmax(
                p, f"{model.name}'s", "their softmax is taken: its NLL, Brier score and ECE "
                "are then meaningless"):
            warned.add(id(model))
        return softmax(p)

    return [m.name for m in members], lambda x: np.stack([probabilities(m, x) for m in members])


def _first_model(source):
    """The model whose input stands for every member's (members share one input shape)."""
    return source if isinstance(source, keras.Model) else list(source)[0]


def _input_size(source):
    return _first_model(source).input_shape[1]


def predict_members(source, dataset, tta=None, keep_views=False):
    """Predict every member on ``dataset`` (batches of ``(images, labels)``).

    Returns ``(names, probs, labels)`` with ``probs`` shaped ``(members, n, classes)``,
    averaged over the test-time views of ``tta`` (None, ``"flip"``, ``"5crop"`` or
    ``"10crop"``, whose crops have the models' input size: load the images larger, at
    ``data.crop_scale(size)``), or ``(members, views, n, classes)`` with
    ``keep_views=True``. ``source`` is an :func:`Ensemble`, a model, or a list of models.
    """
    keep_views = check_bool(keep_views, "keep_views")
    if tta is not None:
        _check_uncalibrated(source, tta)
    names, predict = _members_and_predictor(source)
    size = _input_size(source)
    chunks, labels, bad_pixels = [], [], []
    for images, y in _image_label_batches(dataset):
        bad_pixels.append(~np.isfinite(np.asarray(images)).reshape(len(images), -1).all(1))
        views = tta_lib.crops(images, tta, size)  # (batch, views, h, w, c)
        batch, k = views.shape[0], views.shape[1]
        flat = keras.ops.reshape(views, (batch * k,) + tuple(views.shape[2:]))
        if not chunks:  # (another channel count: Keras' shape error, in colour codes)
            _check_views_fit(source, tuple(flat.shape[1:]))
        # float16 held no probability below 6e-8, nor 0 log 0
        probs = predict(flat).reshape(len(names), batch, k, -1)
        probs = probs.astype(np.promote_types(probs.dtype, "float32"), copy=False)
        # The views averaged batch by batch unless kept: ten crops of ImageNet's validation
        # split for five members were 20 GB of chunks and their copy, not 2.
        chunks.append(probs if keep_views else probs.mean(axis=2, keepdims=True))
        labels.append(np.asarray(y))
    if not chunks:
        raise UserError("The dataset is empty: there is nothing to predict or score.")
    probs = np.concatenate(chunks, axis=1)  # (members, n, views or 1, classes)
    _check_finite(names, probs, np.concatenate(bad_pixels))
    probs = np.moveaxis(probs, 2, 1) if keep_views else probs[:, :, 0]
    return names, probs, metrics.class_labels(np.concatenate(labels), probs.shape[-1])


def check_held_out_classes(labels, classes, fitted):
    """One line where held-out ``labels`` hold one class of several: a temperature or
    member weights fitted there (all on one class's images) were served to every class
    without a word (a test NLL 3x worse on the digits)."""
    found = np.unique(labels)
    if classes > 1 and len(found) == 1:  # (no labels at all: the scores' own checks say so)
        raise UserError(f"{fitted} must be fitted on held-out data of every class; these "
                        f"{len(labels)} labels are all of class {found[0]} (of {classes}): "
                        "fit on held-out data holding every class.")


def _check_views_fit(source, shape):
    """The images (or their crops) of ``shape`` are what the models take: one line."""
    model = _first_model(source)
    takes = tta_lib.misfit(model, shape)
    if takes is not None:
        raise UserError(f"The images are shaped {shape} as the models see them, and "
                        f"{model.name} takes {takes}: load them at its size and channels "
                        "(data.load(..., image_size=...) gives RGB images).")


def _image_label_batches(dataset):
    """``(images, labels)`` from each batch, or a one-line error saying what the batch was."""
    for batch in dataset:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            size = (f"{len(batch)} elements" if isinstance(batch, (tuple, list))
                    else f"a {type(batch).__name__}")
            hint = (" (images, labels, sample weights? evaluation does not weight examples: "
                    "drop the weights)" if size == "3 elements" else "")
            raise UserError(f"Expected batches of (images, labels); received {size}{hint}.")
        images, y = batch
        if np.ndim(images) != 4:
            raise UserError(f"Expected batches of images shaped (batch, height, width, "
                            f"channels); received shape {tuple(np.shape(images))}. Batch the "
                            "dataset (dataset.batch(64)).")
        yield images, y


def _check_uncalibrated(source, tta):
    """Test-time augmentation averages a model's views; a calibrated model applies its
    temperature to each view before, where it was fitted on single views: refused, as
    ``calibrate`` and ``evaluate(calibrate_on=)`` refuse tta."""
    from ensembles.calibration import temperature

    for model in [source] if isinstance(source, keras.Model) else list(source):
        temperatures = [temperature(model)]
        if is_ensemble(model):
            temperatures += temperature(model, per_member=True)
        if any(t != 1.0 for t in temperatures):
            raise UserError(
                f"tta={tta!r} is refused for {model.name}, a calibrated model (temperatures "
                f"{', '.join(f'{t:.3g}' for t in temperatures)}): it would apply T to each "
                "view before the views are averaged, and T was fitted on single views. "
                "Evaluate it without tta, or its members before calibration.")


def _positions(rows):
    return f"inputs {rows[:10].tolist()}" + (", ..." if len(rows) > 10 else "")


def _check_finite(names, probs, bad_pixels):
    """Non-finite pixels or probabilities make every metric meaningless: name the inputs
    (their positions in the dataset), and the members, instead of returning NaN, or the
    finite but meaningless numbers that a network's ReLUs and poolings make of NaN pixels."""
    rows = np.flatnonzero(bad_pixels)
    if len(rows):
        raise UserError(f"{len(rows)} of {len(bad_pixels)} inputs hold NaN or infinite "
                        f"pixels ({_positions(rows)}): no prediction on them means anything.")
    bad = ~np.isfinite(probs).reshape(probs.shape[0], probs.shape[1], -1).all(axis=-1)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=0))
        members = [n for n, b in zip(names, bad.any(axis=1)) if b]
        raise UserError(
            f"{len(rows)} of {probs.shape[1]} inputs get NaN or infinite probabilities from "
            f"{', '.join(members)} ({_positions(rows)}): the model diverged (NaN or "
            f"infinite weights) or overflows on them.")


def combine(source, member_probs):
    """The ensemble's combined probabilities from ``(members, n, classes)``."""
    return _combine_first(source, member_probs, len(member_probs))


def evaluate(source, dataset, tta=None, predictions=None, calibrate_on=None):
    """One table: a row per member, then ``best member``, ``mean member`` and ``ensemble``.

    A single model (not an ensemble) is one member: its row, and the three summary rows,
    which equal it, so that ``table.loc["ensemble"]`` reads the same for every source
    (``table.iloc[:1]`` is its row alone, as ``zoo evaluate`` shows it).

    Columns: top-1 and top-5 error, NLL, Brier score and ECE (15 bins); the ensemble row
    also has the members' pairwise ``disagreement`` and average ``kl`` (of every member,
    whatever its weight: the members' diversity, not the combination's), and each member row
    its normalised ``weight`` in the combination. ``predictions``:
    the ``(names, probs, labels)`` of :func:`predict_members` when already made (then
    ``dataset`` and ``tta`` are not used).

    ``calibrate_on``: held-out batches (e.g. the validation split) to fit temperatures on
    (:func:`ensembles.calibrate`), or their ``predict_members`` triple. Then every row
    gets its ``temperature`` and its ``nll_calibrated`` and ``ece_calibrated`` on
    ``dataset`` (a member: its own temperature; the ensemble: one for its combination,
    ensemble then calibrate; a model calibrated before: the temperature it would serve at,
    its own times the one fitted on top), and one more row, ``ensemble of calibrated members``
    (calibrate each member, then combine), scored in the usual columns.

    Example:

    >>> table = evaluate(Ensemble(members), data.load("digits", "test"))  # doctest: +SKIP
    """
    if calibrate_on is not None and tta is not None:
        raise UserError(f"calibrate_on with tta={tta!r} is refused: a calibrated model "
                        "applies T to each view before the views are averaged, so the "
                        "columns would not describe it. Evaluate the calibration without tta.")
    names, member_probs, labels = _given_or_made(source, dataset, tta, predictions)
    table = _scores_table(source, names, member_probs, labels)
    table.attrs["tta"] = tta
    if calibrate_on is not None and calibrate_on is dataset:
        warnings.warn("calibrate_on is the dataset evaluated: the calibrated scores are "
                      "fitted on the examples they score (optimistic). Fit on a held-out "
                      "split (validation).", stacklevel=2)
    if calibrate_on is not None:
        held_out = (_checked(source, calibrate_on) if isinstance(calibrate_on, tuple) else
                    predict_members(source, calibrate_on))
        check_held_out_classes(held_out[2], member_probs.shape[-1], "calibrate_on's temperature")
        table = _with_calibration(table, source, member_probs, labels, held_out)
    return table


def _given_or_made(source, dataset, tta, predictions, views=False, keep_views=False):
    """``predict_members``' triple: ``predictions`` checked against ``source`` where given
    (``()`` and a bare array included: each is one line), else predicted on ``dataset``."""
    if predictions is not None:
        return _checked(source, predictions, views)
    return predict_members(source, dataset, tta, keep_views=keep_views)


def _checked(source, predictions, views=False):
    """``predict_members``' triple given by the caller, checked against ``source``: one
    probability array per member (per member and view with ``views``) for each label."""
    if not isinstance(predictions, (tuple, list)) or len(predictions) != 3:
        size = (f"{len(predictions)} elements" if isinstance(predictions, (tuple, list))
                else f"a {type(predictions).__name__}")
        raise UserError(f"Expected predictions as predict_members' (names, probs, labels); "
                        f"received {size}. (Held-out images and labels are a dataset of "
                        "(images, labels) batches: pass it instead.)")
    names, probs, labels = predictions
    probs = metrics.float_array(metrics.stacked_members(probs, names, "predictions"),
                                "predictions")
    members = len(member_weights(source))
    count = len(np.asarray(labels))  # ((n,) or Keras' (n, 1))
    shapes = [3, 4] if views else [3]
    if probs.ndim not in shapes or probs.shape[0] != members or probs.shape[-2] != count:
        expected = " or ".join(
            f"({members}, {'views, ' * (ndim == 4)}{count}, classes)" for ndim in shapes)
        raise UserError(f"Expected predictions of {members} member{'s' * (members > 1)} for "
                        f"{count} labels, shaped {expected} (predict_members' "
                        f"output); received shape {probs.shape}.")
    classes = _class_count(source)
    if classes is not None and probs.shape[-1] != classes:  # (scored without a word)
        raise UserError(f"The predictions hold {probs.shape[-1]} classes; the model predicts "
                        f"{classes}: pass predict_members' output for this model.")
    labels = metrics.class_labels(labels, probs.shape[-1])
    if len(names) != members:
        raise UserError(f"Expected {members} member names; received {len(names)}.")
    # The member and the example named (check_probabilities counts the rows of all members).
    by_example = np.moveaxis(probs, -2, 1) if probs.ndim == 4 else probs  # (members, n, ...)
    _check_finite(names, by_example, np.zeros(count, bool))
    return names, metrics.check_probabilities(probs), labels


def _class_count(source):
    """The classes ``source`` (a model, or a list of members) predicts, or None."""
    first = source[0] if isinstance(source, (list, tuple)) and source else source
    shape = getattr(first, "output_shape", None)
    return shape[-1] if isinstance(shape, tuple) and shape and isinstance(shape[-1], int) \
        else None


def _scores_table(source, names, member_probs, labels):
    rows = {name: metrics.scores(p, labels)
            for name, p in zip(unique_names(names, SUMMARY_ROWS), member_probs)}
    table = pd.DataFrame.from_dict(rows, orient="index")[SCORE_COLUMNS]
    members = table.copy()
    best = members.sort_values(["top1_error", "nll"]).iloc[0]
    table.loc["best member"] = best
    table.loc["mean member"] = members.mean()
    table.loc["ensemble"] = pd.Series(metrics.scores(combine(source, member_probs), labels))
    table["disagreement"] = np.nan
    table["kl"] = np.nan
    table["weight"] = np.nan
    table.iloc[:len(names), table.columns.get_loc("weight")] = member_weights(source)
    table.loc["ensemble", "disagreement"] = metrics.disagreement(member_probs)
    table.loc["ensemble", "kl"] = metrics.average_kl(member_probs)
    table.attrs.update(best_member=best.name, examples=len(labels))
    return table


def _scaled(probs, temperature):
    """NumPy probabilities served at ``temperature``, as the calibrated model serves them."""
    from ensembles.calibration import scaled

    return keras.ops.convert_to_numpy(scaled(np.asarray(probs, "float32"), temperature))


def _with_calibration(table, source, member_probs, labels, held_out):
    """``table`` with the temperature-scaling columns and row of :func:`evaluate`."""
    from ensembles.calibration import fit_temperature, temperature

    _, held_probs, held_labels = held_out
    if held_probs.shape[0] != member_probs.shape[0]:
        raise UserError(f"The calibration predictions hold {held_probs.shape[0]} members; the "
                        f"evaluated ones {member_probs.shape[0]}.")

    def calibrated_scores(probs, held):
        t = fit_temperature(held, held_labels)
        return t, metrics.scores(_scaled(probs, t), labels)

    count = len(member_probs)
    fitted = [calibrated_scores(p, h) for p, h in zip(member_probs, held_probs)]
    fitted.append(calibrated_scores(combine(source, member_probs), combine(source, held_probs)))
    rows = list(table.index[:count]) + ["ensemble"]
    # A model calibrated before serves at its own T: the column is the T it would serve at.
    models = (members_of(source) if is_ensemble(source) else
              [source] if isinstance(source, keras.Model) else list(source))
    served = [temperature(m) for m in models] + [
        temperature(source) if isinstance(source, keras.Model) else 1.0]
    for row, (t, scores), before in zip(rows, fitted, served):
        table.loc[row, ["temperature", "nll_calibrated", "ece_calibrated"]] = (
            before * t, scores["nll"], scores["ece"])
    columns = ["temperature", "nll_calibrated", "ece_calibrated"]
    members = table.iloc[:count]
    table.loc["best member", columns] = table.loc[table.attrs["best_member"], columns]
    table.loc["mean member", columns] = members[columns].mean()
    each = np.stack([_scaled(p, t) for p, (t, _) in zip(member_probs, fitted)])
    table.loc["ensemble of calibrated members"] = pd.Series(
        metrics.scores(combine(source, each), labels))
    return table


def size_curve(source, dataset, tta=None, predictions=None):
    """Error and NLL of the ensemble of the first k members, for k = 1 .. members, each
    with the source's combination rule, its members' weights and its temperature. Where the
    first k members' weights are all 0 (``fit_weights(method="greedy")`` gives zeros), no
    ensemble of them exists and the curve has no row for k.

    ``predictions`` as in :func:`evaluate`."""
    _, member_probs, labels = _given_or_made(source, dataset, tta, predictions)
    weights = member_weights(source)
    rows = []
    for k in range(1, len(member_probs) + 1):
        if not np.sum(weights[:k]) > 0:
            continue
        probs = _combine_first(source, member_probs, k)
        rows.append({"members": k, **metrics.scores(probs, labels)})
    return pd.DataFrame(rows).set_index("members")


def _combine_first(source, member_probs, k):
    """The source's own combination rule (mean for a list) over its first ``k`` members."""
    layer = combine_layer(source) if is_ensemble(source) else CombineMembers("mean")
    weights = None if layer.member_weights is None else layer.member_weights[:k]
    # In float32 under a mixed-precision policy too, as the ensemble's own layer.
    return np.asarray(CombineMembers(layer.combine, weights, layer.temperature, dtype="float32")(
        np.moveaxis(member_probs[:k], 0, 1).astype("float32")))


def uncertainty(source, dataset, tta=None, predictions=None):
    """Per example: label, prediction, confidence, predictive entropy, expected entropy,
    mutual information and the variance across members of the top class's probability.

    Every column describes the distribution the ensemble predicts, with its own combine
    rule and member weights (what :func:`ensembles.export` serves): the predictive entropy
    is H[combined p], the expected entropy ``sum_i w_i H[p_i]`` and the mutual information
    their difference (the members' disagreement; see :class:`EnsembleUncertainty` for rules
    other than ``mean``, and for a calibrated ensemble, whose mutual information is taken
    before its temperature). The variance is weighted the same way.

    With one model and ``tta``, the distribution is over the test-time crops instead of the
    members, equally weighted (the paper notes' per-image uncertainty from the 10 crops).

    ``predictions`` as in :func:`evaluate`: the pass over ``dataset`` already made, so that
    one pass serves both tables (with one model and ``tta``, made with
    ``predict_members(..., keep_views=True)``: the crops are the distribution).

    Example:

    >>> table = uncertainty(Ensemble(members, weights=[3, 1]), test)   # doctest: +SKIP
    """
    # The views kept only where they are the distribution: one model's crops.
    keep_views = tta is not None and len(member_weights(source)) == 1
    names, probs, labels = _given_or_made(source, dataset, tta, predictions, views=True,
                                          keep_views=keep_views)
    # One model's crops are the distribution: with tta, or where its views were kept.
    over_crops = len(names) == 1 and (tta is not None or (probs.ndim == 4 and probs.shape[1] > 1))
    if probs.ndim == 3:  # predict_members' default: the views averaged, one per member
        if over_crops:
            raise UserError(
                f"uncertainty of one model over its tta={tta!r} crops needs each crop's "
                "probabilities: pass predictions=predict_members(model, dataset, tta, "
                f"keep_views=True); received probabilities shaped {probs.shape}, the crops "
                "averaged.")
        probs = probs[:, None]
    if over_crops:
        samples = probs[0]  # (views, n, classes)
        weights = np.full(len(samples), 1.0 / len(samples))
        combined = samples.mean(axis=0)
    else:
        samples = probs.mean(axis=1)  # (members, n, classes)
        weights = member_weights(source)
        combined = combine(source, samples)
    top = combined.argmax(axis=-1)
    predictive = metrics._entropy(combined)
    expected = np.tensordot(weights, metrics._entropy(samples), axes=1)
    # The disagreement from the members' own combination: a temperature leaves it alone.
    untempered = combined
    if is_ensemble(source) and combine_layer(source).temperature != 1.0:
        layer = combine_layer(source)
        untempered = np.asarray(CombineMembers(layer.combine, layer.member_weights,
                                               dtype="float32")(
            np.moveaxis(samples, 0, 1).astype("float32")))
    information = metrics._entropy(untempered) - expected
    mean = over_crops or not is_ensemble(source) or combine_layer(source).combine == "mean"
    top_probs = samples[:, np.arange(len(top)), top]  # (members, n)
    spread = np.tensordot(weights, (top_probs - np.tensordot(weights, top_probs, axes=1)) ** 2,
                          axes=1)
    return pd.DataFrame({
        "label": labels, "prediction": top, "correct": top == labels,
        "confidence": combined.max(axis=-1), "predictive_entropy": predictive,
        "expected_entropy": expected,
        # (>= 0 for the mean: its float32 rounding made identical members -2e-7)
        "mutual_information": np.maximum(information, 0) if mean else information,
        "top_class_variance": spread,
    })
