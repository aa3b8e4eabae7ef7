import json
import math
import os
import shutil
import re
import textwrap
import zipfile

import keras
import numpy as np
import pandas as pd
import PIL.Image
import pytest
import tensorflow as tf

import ensembles
import zoo
from ensembles import metrics
from tests.helpers import tiny_data, tiny_model


def small_members(count=3, classes=5, activation="softmax"):
    return [zoo.alexnet(input_shape=(67, 67, 3), classes=classes, width=16,
                        classifier_activation=activation) for _ in range(count)]


def images(n=6, size=67, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def as_dataset(x, labels=None, batch=4):
    labels = np.arange(len(x)) % 5 if labels is None else labels
    return tf.data.Dataset.from_tensor_slices((x, labels.astype("int32"))).batch(batch)


# --- combining --------------------------------------------------------------------------------


@pytest.mark.all_backends
def test_combine_rules_match_their_formulas():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=(2, 3)).astype("float32")  # (batch, members, classes)
    w = np.array([1.0, 2.0, 1.0])
    wn = w / w.sum()
    mean = keras.ops.convert_to_numpy(ensembles.CombineMembers("mean", weights=w)(p))
    np.testing.assert_allclose(mean, np.einsum("m,bmc->bc", wn, p), rtol=1e-6)
    geo = keras.ops.convert_to_numpy(ensembles.CombineMembers("geometric", weights=w)(p))
    ref = np.prod(p ** wn[None, :, None], axis=1)
    np.testing.assert_allclose(geo, ref / ref.sum(-1, keepdims=True), rtol=1e-5)
    vote = keras.ops.convert_to_numpy(ensembles.CombineMembers("vote")(p))
    ref = np.stack([np.bincount(p[b].argmax(-1), minlength=4) / 3 for b in range(2)])
    np.testing.assert_allclose(vote, ref, rtol=1e-6)


@pytest.mark.all_backends
def test_a_member_without_a_preference_shares_its_vote_and_a_nan_member_is_no_vote():
    """argmax gave a member whose classes all tie a whole vote for class 0 (two such
    members made the ensemble say class 0 at 2/3), and a diverged member (NaN) a vote too,
    so the combination looked finite; the log rules' NaN rows differed between backends."""
    flat, sure = [1 / 3, 1 / 3, 1 / 3], [0.1, 0.2, 0.7]
    p = np.array([[flat, flat, sure]], "float32")
    vote = keras.ops.convert_to_numpy(ensembles.CombineMembers("vote")(p))
    np.testing.assert_allclose(vote, [[2 / 9, 2 / 9, 5 / 9]], rtol=1e-6)
    assert vote.sum() == pytest.approx(1.0)
    broken = np.array([[[np.nan] * 3, sure, sure], [sure, sure, sure],
                       [[0.2, np.nan, 0.8], sure, sure]], "float32")
    for rule in ("mean", "geometric", "logit_mean", "vote"):
        out = keras.ops.convert_to_numpy(ensembles.CombineMembers(rule)(broken))
        assert np.isnan(out[0]).all() and np.isfinite(out[1]).all(), rule
        assert np.isnan(out[2]).all(), rule
        # A member of weight 0 (fit_weights drops some) counts for nothing, its NaN neither.
        dropped = ensembles.CombineMembers(rule, weights=[0, 1, 1])(broken)
        without = ensembles.CombineMembers(rule)(broken[:, 1:])
        np.testing.assert_allclose(keras.ops.convert_to_numpy(dropped),
                                   keras.ops.convert_to_numpy(without), rtol=1e-5)


@pytest.mark.all_backends
def test_logit_mean_of_logit_members_is_softmax_of_mean_logits():
    members = small_members(activation=None)
    model = ensembles.Ensemble(members, combine="logit_mean")
    x = images()
    logits = np.stack([m.predict(x, verbose=0) for m in members])
    expected = np.asarray(keras.ops.softmax(logits.mean(axis=0)))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-7)
    # For softmax members the same rule is the normalised geometric mean.
    soft = ensembles.Ensemble([keras.Model(m.input, keras.layers.Softmax()(m.output))
                               for m in members], combine="geometric")
    np.testing.assert_allclose(soft.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.all_backends
@pytest.mark.parametrize("combine", ["logit_mean", "geometric"])
def test_confident_members_who_disagree_combine_their_logits_exactly(combine):
    """Logit gaps of 30 and 10: each probability floored at 1e-7 before the log cut the
    gaps to 16 (0.032 for the middle class where softmax of the mean logits gives 2.3e-5;
    the ensemble's NLL of that class 3.44 for 10.69)."""
    inputs = keras.Input((2,))
    members = []
    for bias in ([0.0, -30.0, 0.0], [0.0, 10.0, 0.0]):
        dense = keras.layers.Dense(3, kernel_initializer="zeros",
                                   bias_initializer=keras.initializers.Constant(bias))
        members.append(keras.Model(inputs, keras.layers.Softmax()(dense(inputs))))
    model = ensembles.Ensemble(members, combine=combine)
    got = model.predict(np.zeros((1, 2), "float32"), verbose=0)[0]
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(np.array([0.0, -10.0, 0.0])))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Built under mixed precision, the stacking stays float32: float16 held 9.4e-14 (the
    # first member's middle class) as 0, whose log the floor then made -69.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = ensembles.Ensemble(members, combine=combine)
    finally:
        keras.config.set_dtype_policy(previous)
    got = mixed.predict(np.zeros((1, 2), "float32"), verbose=0)[0]
    np.testing.assert_allclose(np.asarray(got, "float32"), expected, rtol=1e-4)
    # Served under the policy (a notebook that set it, then exported or called zoo.predict):
    # the entropy and mutual information were float16, NaN for this input (0 log 0), and
    # `finite` True beside them.
    served = {}
    for policy in ("float32", "mixed_float16"):
        keras.config.set_dtype_policy(policy)
        try:
            for temperature in (1.0, 0.5):
                serving = ensembles.serving_model(ensembles.with_temperature(model, temperature))
                out = serving.predict(np.zeros((1, 2), "float32"), verbose=0)
                served[policy, temperature] = out
        finally:
            keras.config.set_dtype_policy(previous)
    for temperature in (1.0, 0.5):
        for key in ("predictive_entropy", "mutual_information"):
            mixed_out = served["mixed_float16", temperature][key]
            assert mixed_out.dtype == "float32" and np.isfinite(mixed_out).all()
            np.testing.assert_allclose(mixed_out, served["float32", temperature][key],
                                       rtol=1e-6)


@pytest.mark.all_backends
def test_ensemble_is_one_model_with_renamed_members_and_stacked_outputs():
    members = small_members()
    model = ensembles.Ensemble(members, return_members=True)
    assert [m.name for m in ensembles.members_of(model)] == ["alexnet_1", "alexnet_2",
                                                             "alexnet_3"]
    assert [m.name for m in members] == ["alexnet"] * 3  # the members are left as they were
    assert len(model.inputs) == 1
    combined, stacked = model.predict(images(), verbose=0)
    assert stacked.shape == (6, 3, 5) and combined.shape == (6, 5)
    for i, member in enumerate(members):
        np.testing.assert_allclose(stacked[:, i], member.predict(images(), verbose=0),
                                   rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(combined, stacked.mean(axis=1), rtol=1e-5, atol=1e-7)
    probs = ensembles.member_probabilities(model, as_dataset(images()))
    assert probs.shape == (3, 6, 5)  # (members, batch, classes)
    np.testing.assert_allclose(probs, np.moveaxis(stacked, 1, 0), rtol=1e-5, atol=1e-7)


@pytest.mark.all_backends
def test_members_named_as_the_ensembles_own_layers_are_renamed(tmp_path):
    """A member named "input" or "combine", or "a_softmax" beside a logits member "a",
    ended in Keras' "The name ... is used 2 times in the model"."""
    def named(name, activation="softmax"):
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(3, activation=activation)(inputs),
                           name=name)

    members = [named("input"), named("combine"), named("a", None), named("a_softmax"),
               named("member_probabilities")]
    model = ensembles.Ensemble(members)
    assert [m.name for m in ensembles.members_of(model)] == [
        "input_1", "combine_1", "a", "a_softmax_1", "member_probabilities_1"]
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    expected = np.mean([keras.ops.convert_to_numpy(keras.ops.softmax(m(x))) if i == 2 else
                        keras.ops.convert_to_numpy(m(x)) for i, m in enumerate(members)], axis=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-7)
    path = str(tmp_path / "e.keras")
    model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(x, verbose=0), expected,
                               rtol=1e-5, atol=1e-7)


@pytest.mark.all_backends
def test_keras_round_trip_keeps_combination_and_weights(tmp_path):
    model = ensembles.Ensemble(small_members(), combine="geometric", weights=[1, 2, 3])
    path = tmp_path / "ensemble.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(images(), verbose=0),
                               model.predict(images(), verbose=0), rtol=1e-6)
    assert loaded.get_layer("combine").member_weights == [1.0, 2.0, 3.0]


def test_bad_members_and_weights_name_what_is_wrong():
    a = zoo.alexnet(input_shape=(67, 67, 3), classes=5, width=16, name="first")
    b = zoo.alexnet(input_shape=(80, 80, 3), classes=5, width=16, name="wide_input")
    c = zoo.alexnet(input_shape=(67, 67, 3), classes=7, width=16, name="seven")
    second = zoo.alexnet(input_shape=(67, 67, 3), classes=5, width=16, name="second")
    with pytest.raises(ValueError, match=r"Member 1 \('wide_input'\) takes input shape"):
        ensembles.Ensemble([a, b])
    with pytest.raises(ValueError, match=r"Member 1 \('seven'\) predicts 7 classes.*5"):
        ensembles.Ensemble([a, c])
    with pytest.raises(ValueError, match=r"`weights` must be 2 finite non-negative.*\[1.0\]"):
        ensembles.Ensemble([a, second], weights=[1])
    # One model twice (snapshots kept by appending `model` to a list), or members sharing
    # a layer: they vote alike and the saved ensemble could not be loaded ("Layer 'conv1'
    # expected 2 variables, but received 0").
    with pytest.raises(ValueError, match=r"^Members 0 and 2 are the same model \('first'\): "
                                         r"an ensemble of one model twice votes as"):
        ensembles.Ensemble([a, second, a])
    view = keras.Model(a.inputs, a.outputs, name="view")
    with pytest.raises(ValueError, match=r"^Members 1 and 2 \('first', 'view'\) share the "
                                         r"weights 'conv1/kernel'"):
        ensembles.Ensemble([second, a, view])
    with pytest.raises(ValueError, match=r"`combine` must be one of.*'median'"):
        ensembles.Ensemble([a], combine="median")
    with pytest.raises(ValueError, match="at least one member"):
        ensembles.Ensemble([])
    # The public layer given (examples, classes): its rows were read as members.
    with pytest.raises(ValueError, match=r"stacked as \(batch, members, classes\); received "
                                         r"shape \(3, 3\)"):
        ensembles.CombineMembers("mean")(np.full((3, 3), 1 / 3, "float32"))
    # Keras' validation_data pair for calibrate_on: an unpacking error ("expected 3").
    x = np.zeros((2, 67, 67, 3), "float32")
    with pytest.raises(ValueError, match=r"Expected predictions as predict_members' \(names, "
                                         r"probs, labels\); received 2 elements"):
        ensembles.evaluate(a, None, predictions=(x, np.array([0, 1])))


# --- metrics ----------------------------------------------------------------------------------


@pytest.mark.all_backends
def test_metrics_on_a_hand_computed_example():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    labels = np.array([0, 1, 1, 2])
    assert metrics.top_k_error(probs, labels, 1) == pytest.approx(0.5)
    assert metrics.top_k_error(probs, labels, 2) == pytest.approx(0.0)
    assert metrics.nll(probs, labels) == pytest.approx(
        -np.mean(np.log([0.7, 0.3, 0.4, 0.6])))
    assert metrics.brier(probs, labels) == pytest.approx(np.mean(
        [0.09 + 0.04 + 0.01, 0.01 + 0.49 + 0.36, 0.25 + 0.36 + 0.01, 0.04 + 0.04 + 0.16]))
    # Confidences 0.7, 0.6, 0.5, 0.6 -> bins of width 1/15; correct: yes, no, no, yes.
    expected = (1 / 4) * abs(0.7 - 1) + (2 / 4) * abs(0.6 - 0.5) + (1 / 4) * abs(0.5 - 0)
    assert metrics.ece(probs, labels, bins=15) == pytest.approx(expected)
    assert metrics.disagreement(np.stack([probs, probs[:, ::-1]])) == pytest.approx(1.0)
    other = probs.copy()
    other[0] = [0.1, 0.8, 0.1]  # changes the top class of one example in four
    assert metrics.disagreement(np.stack([probs, other, probs])) == pytest.approx(
        (0.25 + 0.0 + 0.25) / 3)
    assert metrics.average_kl(np.stack([probs, probs])) == pytest.approx(0.0, abs=1e-12)


# --- evaluation -------------------------------------------------------------------------------


@pytest.mark.all_backends
def test_evaluate_table():
    members = small_members()
    model = ensembles.Ensemble(members)
    x = images(10)
    labels = np.arange(10) % 5
    table = ensembles.evaluate(model, as_dataset(x, labels))
    assert list(table.index) == ["alexnet_1", "alexnet_2", "alexnet_3", "best member",
                                 "mean member", "ensemble"]
    assert list(table.columns) == ["top1_error", "top5_error", "nll", "brier", "ece",
                                   "disagreement", "kl", "weight"]
    np.testing.assert_allclose(table["weight"].iloc[:3], 1 / 3)
    assert table["weight"].iloc[3:].isna().all()
    combined = model.predict(x, verbose=0)
    assert table.loc["ensemble", "nll"] == pytest.approx(metrics.nll(combined, labels), rel=1e-5)
    member_rows = table.iloc[:3]
    np.testing.assert_allclose(table.loc["mean member", "nll"], member_rows["nll"].mean())
    assert table.loc["best member", "top1_error"] == member_rows["top1_error"].min()
    assert not math.isnan(table.loc["ensemble", "disagreement"])
    # A list of members is evaluated the same way (combined by their mean).
    listed = ensembles.evaluate(members, as_dataset(x, labels))
    np.testing.assert_allclose(listed["nll"].values, table["nll"].values, rtol=1e-5)


def test_evaluate_with_flip_and_ten_crop_tta():
    members = small_members(2)
    model = ensembles.Ensemble(members)
    x = images(4)
    flipped = ensembles.predict_members(model, as_dataset(x), tta="flip")[1]
    manual = (np.stack([m.predict(x, verbose=0) for m in members]) +
              np.stack([m.predict(x[:, :, ::-1], verbose=0) for m in members])) / 2
    np.testing.assert_allclose(flipped, manual, rtol=1e-5, atol=1e-7)
    big = images(4, size=75)
    table = ensembles.evaluate(model, as_dataset(big), tta="10crop")
    assert table.attrs["tta"] == "10crop" and len(table) == 5


@pytest.mark.all_backends
def test_size_curve_ends_at_the_full_ensemble():
    model = ensembles.Ensemble(small_members())
    ds = as_dataset(images(8), np.arange(8) % 5)
    curve = ensembles.size_curve(model, ds)
    table = ensembles.evaluate(model, ds)
    assert list(curve.index) == [1, 2, 3]
    assert curve.loc[3, "nll"] == pytest.approx(table.loc["ensemble", "nll"], rel=1e-5)
    assert curve.loc[1, "nll"] == pytest.approx(table.iloc[0]["nll"], rel=1e-5)


def test_size_curve_of_members_weighted_zero_starts_where_an_ensemble_exists():
    """fit_weights(method="greedy") gives members weight 0; the first k of [0, 3, 2] were
    0 / 0, NaN, and scores refused them as "NaN or infinite values". The curve starts at
    k = 2, where member b alone carries the weight: its scores (sklearn's log loss)."""
    from sklearn.metrics import log_loss

    members = small_members()
    model = ensembles.Ensemble(members, weights=[0, 3, 2])
    x, y = images(8), np.arange(8) % 5
    curve = ensembles.size_curve(model, as_dataset(x, y))
    assert list(curve.index) == [2, 3]
    alone = members[1].predict(x, verbose=0)
    assert curve.loc[2, "nll"] == pytest.approx(log_loss(y, alone, labels=range(5)), rel=1e-5)
    assert curve.loc[3, "nll"] == pytest.approx(
        ensembles.evaluate(model, as_dataset(x, y)).loc["ensemble", "nll"], rel=1e-5)


def test_member_weights_that_are_not_numbers_are_one_line():
    """Ensemble read weights="31" as [3, 1]; 3 and ["a", 1] were Python's own errors;
    CombineMembers took negative weights (negative "probabilities") and a wrong count."""
    members = small_members(2)
    for weights, shown in (("31", "'31'"), (3, "3"), (["a", 1], r"\['a', 1\]"),
                           ([1, -1], r"\[1.0, -1.0\]"), ([1, 2, 3], r"\[1.0, 2.0, 3.0\]"),
                           ([np.inf, 1], r"\[inf, 1.0\]")):  # (inf is non-negative)
        with pytest.raises(ValueError, match=r"`weights` must be 2 finite non-negative "
                                             rf"numbers, not all zero; received {shown}\."):
            ensembles.Ensemble(members, weights=weights)
    with pytest.raises(ValueError, match=r"must be one per member: finite non-negative "
                                         r"numbers, not all zero; received \[2.0, -1.0\]"):
        ensembles.CombineMembers("mean", weights=[2, -1])
    # Weights whose sum overflows (zoo ensemble --weights 1e308 1e308): an ensemble that
    # could not work was saved.
    with pytest.raises(ValueError, match=r"`weights` sum to more than a float holds; "
                                         r"received \[1e\+308, 1e\+308\]. Only their ratios"):
        ensembles.CombineMembers("mean", weights=[1e308, 1e308])
    # A dict's keys were read as its weights (member 0 got none).
    with pytest.raises(ValueError, match=r"`weights` must be .*received \{0: 3, 1: 1\}"):
        ensembles.Ensemble(members, weights={0: 3, 1: 1})
    p = np.full((1, 3, 4), 0.25, "float32")
    with pytest.raises(ValueError, match=r"has 2 member weights \(\[1.0, 1.0\]\) for 3 members"):
        ensembles.CombineMembers("mean", weights=[1, 1])(p)


@pytest.mark.all_backends
def test_uncertainty_decomposition():
    members = small_members()
    table = ensembles.uncertainty(ensembles.Ensemble(members), as_dataset(images()))
    np.testing.assert_allclose(table["mutual_information"],
                               table["predictive_entropy"] - table["expected_entropy"])
    assert (table["mutual_information"] > -1e-6).all()
    assert (table["top_class_variance"] > 0).all()
    same = ensembles.uncertainty([members[0]] * 2, as_dataset(images()))
    np.testing.assert_allclose(same["mutual_information"], 0, atol=1e-6)
    larger = as_dataset(images(size=75))
    crops = ensembles.uncertainty(members[0], larger, tta="10crop")
    assert (crops["top_class_variance"] > 0).all()  # spread across the 10 crops
    # One pass serves evaluate and uncertainty: the same table from the crops' predictions,
    # and a clear error for the crops averaged, which hold no spread.
    views = ensembles.predict_members(members[0], larger, "10crop", keep_views=True)
    pd.testing.assert_frame_equal(
        ensembles.uncertainty(members[0], None, "10crop", predictions=views), crops)
    # Without naming the tta again: the kept views are still the distribution (they were
    # averaged into one sample, every mutual information 0).
    pd.testing.assert_frame_equal(ensembles.uncertainty(members[0], None, predictions=views),
                                  crops)
    averaged = ensembles.predict_members(members[0], larger, "10crop")
    with pytest.raises(ValueError, match=r"tta='10crop' crops needs each crop's.*"
                                         r"keep_views=True\); received probabilities shaped "
                                         r"\(1, 6, 5\)"):
        ensembles.uncertainty(members[0], None, "10crop", predictions=averaged)
    # An ensemble with tta: its members' views averaged as they are predicted (every view
    # of every member was kept until the end), the same table as from the kept views.
    ensemble, same_size = ensembles.Ensemble(members), as_dataset(images())
    from ensembles import evaluation

    asked, predict = [], evaluation.predict_members
    evaluation.predict_members = lambda *a, **k: asked.append(k.get("keep_views")) or predict(
        *a, **k)
    try:
        ensembles.uncertainty(ensemble, same_size, "flip")
        ensembles.uncertainty(members[0], larger, "10crop")
    finally:
        evaluation.predict_members = predict
    assert asked == [False, True]  # the views kept only where they are the distribution
    kept = ensembles.predict_members(ensemble, same_size, "flip", keep_views=True)
    pd.testing.assert_frame_equal(ensembles.uncertainty(ensemble, same_size, "flip"),
                                  ensembles.uncertainty(ensemble, None, predictions=kept))
    np.testing.assert_allclose(ensembles.predict_members(ensemble, same_size, "flip")[1],
                               kept[1].mean(axis=1), rtol=1e-6)


def test_plots_return_figures_draw_into_given_axes_and_never_switch_the_backend(tmp_path):
    """As a notebook uses them: a Figure back (shown inline), drawing into the user's axes,
    a PNG only when given a path, and the user's matplotlib backend left as it was (a
    plot that called matplotlib.use("Agg") made every later inline plot vanish)."""
    import matplotlib
    from matplotlib.figure import Figure

    model = ensembles.Ensemble(small_members())
    ds = as_dataset(images(8), np.arange(8) % 5)
    curve = ensembles.size_curve(model, ds)
    _, probs, labels = ensembles.predict_members(model, ds)
    backend = matplotlib.get_backend()
    matplotlib.use("svg")  # stands for the notebook's inline backend
    try:
        size = ensembles.plot_size_curve(curve, tmp_path / "size.png")
        reliability = ensembles.plot_reliability(probs.mean(axis=0), labels, tmp_path / "rel.png")
        assert matplotlib.get_backend() == "svg"
        mine = Figure()
        left, right = mine.subplots(1, 2)
        assert ensembles.plot_size_curve(curve, ax=left) is mine
        assert ensembles.plot_reliability(probs.mean(axis=0), labels, ax=right) is mine
        assert left.lines and right.patches
    finally:
        matplotlib.use(backend)
    assert isinstance(size, Figure) and isinstance(reliability, Figure)
    assert sorted(os.listdir(tmp_path)) == ["rel.png", "size.png"]  # only when asked
    for name in ("size.png", "rel.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The file name's extension chooses the format (a .pdf held PNG bytes), and one that
    # matplotlib does not write is one line.
    ensembles.plot_size_curve(curve, tmp_path / "size.pdf")
    assert (tmp_path / "size.pdf").read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match=r"Cannot save a figure as .*size.docx: matplotlib "
                                         r"writes .*pdf.*png.*; received .docx"):
        ensembles.plot_size_curve(curve, tmp_path / "size.docx")
    ensembles.plot_size_curve(curve, tmp_path / "size_v1.2")  # no format named: a PNG
    assert (tmp_path / "size_v1.2").read_bytes()[:4] == b"\x89PNG"


# --- snapshots --------------------------------------------------------------------------------


@pytest.mark.parametrize("total, cycles", [(12, 3), (40, 8), (90, 1)])
def test_cyclic_cosine_is_keras_cosine_decay_restarts_when_cycles_divide(total, cycles):
    ours = ensembles.CyclicCosine(0.2, total_steps=total, cycles=cycles)
    keras_schedule = keras.optimizers.schedules.CosineDecayRestarts(
        0.2, first_decay_steps=total // cycles, t_mul=1.0, m_mul=1.0)
    for step in range(total):
        assert float(ours(step)) == pytest.approx(float(keras_schedule(step)), abs=1e-7)
    assert ours.boundaries == [k * total // cycles for k in range(1, cycles + 1)]


def test_cyclic_cosine_ends_its_last_cycle_on_the_last_step_when_cycles_do_not_divide():
    schedule = ensembles.CyclicCosine(0.2, total_steps=50, cycles=3)
    assert schedule.boundaries == [16, 33, 50]
    rates = np.array([float(schedule(step)) for step in range(50)])
    starts = [0, 16, 33]
    np.testing.assert_allclose(rates[starts], 0.2)  # warm restarts
    for start, end in zip(starts, schedule.boundaries):
        cycle = rates[start:end]
        assert np.all(np.diff(cycle) < 0)  # annealed within each cycle
        assert cycle[-1] < 0.01  # each cycle ends near zero, the last one included
        # each cycle is Keras' cosine over its own length (cycles of total // cycles or
        # ceil(total / cycles) steps passed the checks above)
        keras_cycle = keras.optimizers.schedules.CosineDecay(0.2, decay_steps=end - start)
        np.testing.assert_allclose(cycle, [float(keras_cycle(t)) for t in range(end - start)],
                                   atol=1e-7)
    with pytest.raises(ValueError, match="`cycles` must be between 1 and total_steps"):
        ensembles.CyclicCosine(0.1, total_steps=3, cycles=5)
    with pytest.raises(ValueError, match="`cycles` must be a positive integer; received 2.5"):
        ensembles.CyclicCosine(0.1, total_steps=30, cycles=2.5)
    # A rate that is no positive number, and cycle arithmetic past int32 (which wrapped
    # around and put steps in the wrong cycle), are one line.
    for rate in (-0.1, float("nan"), "0.1"):
        with pytest.raises(ValueError, match="`initial_learning_rate` must be a finite "
                                             f"positive number; received {re.escape(repr(rate))}"):
            ensembles.CyclicCosine(rate, total_steps=30, cycles=2)
    with pytest.raises(ValueError, match=r"total_steps x \(cycles \+ 1\) must stay below "
                                         r"2\*\*31; received 21400000 x 101"):
        ensembles.CyclicCosine(0.1, total_steps=21_400_000, cycles=100)


def test_cyclic_cosine_takes_numpy_integers_as_ints():
    """NumPy's int64 passed the checks and was kept: the schedule's int32 arithmetic failed
    in the middle of fit ('Sub' of int64 and int32), and its config was no JSON."""
    import json

    schedule = ensembles.CyclicCosine(0.2, total_steps=np.int64(12), cycles=np.int64(3))
    reference = ensembles.CyclicCosine(0.2, total_steps=12, cycles=3)
    assert [float(schedule(t)) for t in range(12)] == [float(reference(t)) for t in range(12)]
    assert json.loads(json.dumps(schedule.get_config())) == reference.get_config()


@pytest.mark.all_backends
def test_train_snapshots_saves_one_snapshot_per_cycle(tmp_path):
    """(In a run folder named like a glob pattern, runs/exp[1]: its snapshots were not
    found, and a new run's guard against an earlier run's snapshots was skipped.)"""
    run_dir = str(tmp_path / "exp[1]")
    result, paths = ensembles.train_snapshots(tiny_model, tiny_data(), epochs=4, cycles=4,
                                              run_dir=run_dir, learning_rate=0.1, seed=0,
                                              verbose=0)
    assert [os.path.basename(p) for p in paths] == [
        f"snapshot-{k}.weights.h5" for k in range(1, 5)]
    assert not [n for n in os.listdir(os.path.dirname(paths[0])) if n.startswith(".tmp")]
    # 4 updates per epoch and per cycle: each epoch ends on the cycle's last, lowest rate.
    np.testing.assert_allclose(result.history["learning_rate"],
                               0.1 / 2 * (math.cos(math.pi * 3 / 4) + 1), rtol=1e-5)
    ensemble = ensembles.from_snapshots(tiny_model, paths, last=2)
    members = ensembles.members_of(ensemble)
    assert [m.name for m in members] == ["snapshot_3", "snapshot_4"]
    np.testing.assert_allclose(members[1].get_weights()[0], result.model.get_weights()[0])
    from_dir = ensembles.from_snapshots(tiny_model(), os.path.dirname(paths[0]))
    assert len(ensembles.members_of(from_dir)) == 4
    # The snapshots leave the weights alone: the backup copied the checkpoint's.
    with zipfile.ZipFile(os.path.join(run_dir, "checkpoints", "last.keras")) as archive:
        with open(os.path.join(run_dir, "backup", "latest.weights.h5"), "rb") as backup:
            assert archive.read("model.weights.h5") == backup.read()


@pytest.mark.parametrize("epochs, cycles", [(5, 3), (3, 4), (1, 10)])
def test_every_cyclic_run_ends_with_one_snapshot_per_cycle(epochs, cycles, tmp_path):
    """10 updates an epoch: 50 updates in 3 cycles, 30 in 4 and 10 in 10 (the cycles do not
    divide the first two). The last snapshot is the trained model itself."""
    result, paths = ensembles.train_snapshots(
        tiny_model, tiny_data(n=160), epochs=epochs, cycles=cycles, run_dir=str(tmp_path),
        learning_rate=0.1, seed=0, verbose=0)
    assert [os.path.basename(p) for p in paths] == [
        f"snapshot-{k}.weights.h5" for k in range(1, cycles + 1)]
    last = tiny_model()
    last.load_weights(paths[-1])
    for saved, trained in zip(last.get_weights(), result.model.get_weights()):
        np.testing.assert_array_equal(saved, trained)


def test_train_snapshots_counts_the_given_epoch_length_of_endless_data(tmp_path):
    """Data repeated forever takes steps_per_epoch, which fit then runs (6 updates in 2
    cycles of 3); a length other than known data's is refused before any training."""
    result, paths = ensembles.train_snapshots(
        tiny_model, tiny_data().repeat(), epochs=2, cycles=2, steps_per_epoch=3,
        run_dir=str(tmp_path / "endless"), seed=0, verbose=0)
    assert int(keras.ops.convert_to_numpy(result.model.optimizer.iterations)) == 6
    assert [os.path.basename(p) for p in paths] == ["snapshot-1.weights.h5",
                                                    "snapshot-2.weights.h5"]
    with pytest.raises(ValueError, match=r"steps_per_epoch=3 differs from the training "
                                         r"data's length, 4 batches"):
        ensembles.train_snapshots(tiny_model, tiny_data(), epochs=2, cycles=2,
                                  steps_per_epoch=3, run_dir=str(tmp_path / "known"))
    assert not (tmp_path / "known").exists()


def test_cycle_snapshots_are_taken_when_the_loss_scale_skips_updates(tmp_path):
    """Under mixed_float16, Keras' LossScaleOptimizer skips the update of a step whose
    gradients overflow, and does not count it: the schedule runs behind the batches. The
    snapshots follow the schedule (snapshot-1 after its 4th update, at the 5th batch: by
    the batches it was taken at the 4th, before the cycle had annealed), and the run's last
    weights are its last snapshot, the last boundary never reached."""
    x, y = next(iter(tiny_data(n=64, batch=64)))
    x = x.numpy()
    x[16:32] *= 1e36  # the second batch of each epoch: its scaled gradients overflow
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # 4 batches
    schedule = ensembles.CyclicCosine(0.01, total_steps=8, cycles=2)
    model = tiny_model()
    model.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(schedule)),
                  "sparse_categorical_crossentropy")
    snapshots = ensembles.CycleSnapshots(str(tmp_path), schedule.boundaries)
    after = []  # (updates, weights) after each batch
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: after.append(
        (int(keras.ops.convert_to_numpy(model.optimizer.iterations)), model.get_weights())))
    model.fit(data.repeat(), epochs=2, steps_per_epoch=4, shuffle=False, verbose=0,
              callbacks=[record, snapshots])
    assert [updates for updates, _ in after] == [1, 1, 2, 3, 4, 4, 5, 6]  # 2 skipped
    paths = ensembles.snapshot_paths(str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["snapshot-1.weights.h5",
                                                    "snapshot-2.weights.h5"]
    for path, weights in zip(paths, (after[4][1], after[7][1])):
        loaded = tiny_model()
        loaded.load_weights(path)
        for ours, expected in zip(loaded.get_weights(), weights):
            np.testing.assert_array_equal(ours, expected)


def test_cycle_snapshots_owed_at_the_end_are_not_taken_of_a_run_stopped_mid_epoch(tmp_path):
    """The snapshots skipped updates leave owed are taken at the last epoch's end; a last
    epoch stopped in mid-epoch (TerminateOnNaN on a NaN loss) saved them of those weights."""
    class StopMidEpoch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.params["steps"] and batch == 1 and self._epoch == 1:
                self.model.stop_training = True

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

    schedule = ensembles.CyclicCosine(0.01, total_steps=8, cycles=2)
    model = tiny_model()
    model.compile(keras.optimizers.SGD(schedule), "sparse_categorical_crossentropy")
    model.fit(tiny_data().repeat(), epochs=2, steps_per_epoch=4, verbose=0,
              callbacks=[StopMidEpoch(),
                         ensembles.CycleSnapshots(str(tmp_path), schedule.boundaries)])
    assert [os.path.basename(p) for p in ensembles.snapshot_paths(str(tmp_path))] == [
        "snapshot-1.weights.h5"]


def test_from_snapshots_takes_numpy_counts_and_names_a_foreign_file(tmp_path):
    for k in (1, 2):
        tiny_model().save_weights(tmp_path / f"snapshot-{k}.weights.h5")
    ensemble = ensembles.from_snapshots(tiny_model, str(tmp_path), last=np.int64(1))
    assert [m.name for m in ensembles.members_of(ensemble)] == ["snapshot_2"]
    with pytest.raises(ValueError, match="`last` must be a positive integer; received True"):
        ensembles.from_snapshots(tiny_model, str(tmp_path), last=True)
    with pytest.raises(ValueError, match=r"snapshot-1.weights.h5 does not hold the weights "
                                         r"of this tiny"):
        ensembles.from_snapshots(lambda: tiny_model(classes=3), str(tmp_path))
    # A deeper network's snapshot (one more convolution): Keras loaded it into the tiny
    # model without a word, its first layers' weights matched by kind and order.
    deeper_dir = tmp_path / "deeper"
    deeper_dir.mkdir()
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 1, activation="relu")(x)
    deeper = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(x)))
    deeper.save_weights(deeper_dir / "snapshot-1.weights.h5")
    with pytest.raises(ValueError, match=r"does not hold the weights of this tiny \(built "
                                         r"with other arguments\?\): it holds 6 weight arrays, "
                                         r"and the model has 4"):
        ensembles.from_snapshots(tiny_model, str(deeper_dir))
    # A file or a missing folder says so (it said "an empty list or directory").
    file = str(tmp_path / "snapshot-1.weights.h5")
    with pytest.raises(ValueError, match=rf"^{re.escape(file)} is a file: snapshots are read "
                                         r"from the run's snapshots/ directory"):
        ensembles.from_snapshots(tiny_model, file)
    with pytest.raises(ValueError, match=r"nowhere is not there: snapshots are read"):
        ensembles.from_snapshots(tiny_model, str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"No snapshot files to load in .*empty: received an "
                                         r"empty list, or a directory without snapshot-\*"):
        ensembles.from_snapshots(tiny_model, str(tmp_path / "empty"))


def test_snapshot_paths_are_in_cycle_order_whatever_their_times(tmp_path):
    for k in (10, 2, 1, 9):
        (tmp_path / f"snapshot-{k}.weights.h5").write_bytes(b"")
    os.utime(tmp_path / "snapshot-10.weights.h5", (0, 0))  # oldest, as after a copy
    assert [os.path.basename(p) for p in ensembles.snapshot_paths(str(tmp_path))] == [
        "snapshot-1.weights.h5", "snapshot-2.weights.h5", "snapshot-9.weights.h5",
        "snapshot-10.weights.h5"]


def test_snapshot_schedule_refuses_reduce_lr_on_plateau(tmp_path):
    with pytest.raises(ValueError, match="do not compose"):
        ensembles.train_snapshots(tiny_model, tiny_data(), epochs=2, cycles=2,
                                  run_dir=str(tmp_path), reduce_lr=True)
    # The user's own (Keras raised its TypeError after epoch 2, 2 of 3 snapshots written).
    for callback in (keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=1),
                     keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate)):
        with pytest.raises(ValueError, match=rf"LearningRateSchedule.*which "
                                             rf"{type(callback).__name__} cannot change.*"
                                             rf"received callbacks with"):
            ensembles.train_snapshots(tiny_model, tiny_data(), epochs=3, cycles=3,
                                      run_dir=str(tmp_path / "own"), callbacks=[callback])
    assert not (tmp_path / "own").exists()


class _Batches(keras.utils.PyDataset):
    """tiny_data's 4 batches as a PyDataset (len 4)."""

    def __init__(self):
        super().__init__()
        self.batches = [(x.numpy(), y.numpy()) for x, y in tiny_data()]

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


def test_snapshot_runs_take_a_pydatasets_length_and_check_epochs_first(tmp_path):
    """A PyDataset of 4 batches with steps_per_epoch=6 trained 8 updates of the schedule's
    12 and returned no snapshot; without it, "the training data's length is unknown".
    A bad `epochs` was reported as the schedule's total_steps (received '3333' for "3")."""
    result, paths = ensembles.train_snapshots(tiny_model, _Batches(), epochs=2, cycles=2,
                                              run_dir=str(tmp_path / "run"), seed=0,
                                              verbose=0)
    assert int(keras.ops.convert_to_numpy(result.model.optimizer.iterations)) == 8
    assert len(paths) == 2
    with pytest.raises(ValueError, match=r"steps_per_epoch=6 differs from the training "
                                         r"data's length, 4 batches"):
        ensembles.train_snapshots(tiny_model, _Batches(), epochs=2, cycles=2,
                                  steps_per_epoch=6, run_dir=str(tmp_path / "long"))
    for epochs in (0, 2.5, "3", None):
        with pytest.raises(ValueError, match=rf"`epochs` must be a positive integer; "
                                             rf"received {re.escape(repr(epochs))}"):
            ensembles.train_snapshots(tiny_model, tiny_data(), epochs=epochs, cycles=2,
                                      run_dir=str(tmp_path / "bad"))
    with pytest.raises(ValueError, match=r"`cycles` must be at most the run's updates, "
                                         r"epochs x steps per epoch = 2 x 4 = 8; received 9"):
        ensembles.train_snapshots(tiny_model, tiny_data(), epochs=2, cycles=9,
                                  run_dir=str(tmp_path / "bad"))
    assert not (tmp_path / "long").exists() and not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="No snapshot files"):
        ensembles.from_snapshots(tiny_model, [])


def test_checkpoint_snapshots_every_k_epochs_and_at_lr_drops(tmp_path):
    model = tiny_model()
    model.trainable = False  # a plateau from the first epoch: the LR drops after epoch 2
    every = ensembles.CheckpointSnapshots(str(tmp_path / "every"), every=2, at_lr_drop=False)
    drops = ensembles.CheckpointSnapshots(str(tmp_path / "drops"))
    zoo.train(model, tiny_data(), tiny_data(seed=1), epochs=4, lr_patience=1, min_lr=0.0,
              callbacks=[every, drops], verbose=0)
    assert sorted(os.listdir(tmp_path / "every")) == ["snapshot-epoch002.weights.h5",
                                                      "snapshot-epoch004.weights.h5"]
    # Plateau with patience 1: reductions after epochs 2, 3 and 4.
    assert sorted(os.listdir(tmp_path / "drops")) == [
        "snapshot-epoch002.weights.h5", "snapshot-epoch003.weights.h5",
        "snapshot-epoch004.weights.h5"]


def test_checkpoint_snapshots_refuse_what_would_take_none_or_fail_in_training(tmp_path):
    """every=None with at_lr_drop=False took no snapshot without a word; every=True was
    every epoch and NumPy's 2 was refused; at_lr_drop="no" was on; a folder given as a
    number failed inside training (TypeError)."""
    folder = str(tmp_path / "snaps")
    for kwargs, message in (
            (dict(every=None, at_lr_drop=False), r"every=None and at_lr_drop=False would "
                                                 r"take no snapshot"),
            (dict(every=True), r"`every` must be None or a positive integer; received True"),
            (dict(every=0), r"received 0"),
            (dict(at_lr_drop="no"), r"`at_lr_drop` must be True or False")):
        with pytest.raises(ValueError, match=message):
            ensembles.CheckpointSnapshots(folder, **kwargs)
    with pytest.raises(ValueError, match=r"`directory` must be a folder name; received 5"):
        ensembles.CheckpointSnapshots(5)
    assert ensembles.CheckpointSnapshots(tmp_path, every=np.int64(2)).every == 2


# --- variants ---------------------------------------------------------------------------------


def test_variants_are_named_builders():
    dropout = ensembles.variants("alexnet", dropout=[0.5, 0.7], width=32,
                                 input_shape=(67, 67, 3), classes=4)
    assert list(dropout) == ["alexnet_dropout0p5", "alexnet_dropout0p7"]
    model = dropout["alexnet_dropout0p7"]()
    assert model.name == "alexnet_dropout0p7" and model.get_layer("drop6").rate == 0.7
    assert model.get_layer("fc6").units == 32
    both = ensembles.variants(zoo.resnet18, dropout=[0.1, 0.2], width=[0.25, 0.5])
    assert list(both) == ["resnet18_dropout0p1_width0p25", "resnet18_dropout0p1_width0p5",
                          "resnet18_dropout0p2_width0p25", "resnet18_dropout0p2_width0p5"]
    with pytest.raises(ValueError, match="needs a list of `dropout` and/or `width`"):
        ensembles.variants("alexnet", dropout=0.5)


def test_variants_train_through_zoo_train():
    def tiny(width=8, dropout=0.0, name="tiny"):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(width, 3, activation="relu")(inputs)
        x = keras.layers.Dropout(dropout)(keras.layers.GlobalAveragePooling2D()(x))
        return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x), name=name)

    members = ensembles.variants(tiny, width=[4, 8])
    trained = [zoo.train(build, tiny_data(), epochs=1, verbose=0).model
               for build in members.values()]
    table = ensembles.evaluate(ensembles.Ensemble(trained), tiny_data())
    assert list(table.index[:2]) == ["tiny_width4", "tiny_width8"]


# --- export -----------------------------------------------------------------------------------


@pytest.mark.all_backends
@pytest.mark.xdist_group("cold_python")
def test_export_one_saved_model_served_without_this_project(tmp_path, cold_python):
    """The served outputs equal Keras' predict (inference mode), also for a member that
    resizes its input first: Keras' Resizing layer defaults to training=True, which
    without care would make BatchNormalization serve the batch's statistics. Loading it says
    nothing (a JAX export warned once per function of "unsaved custom gradients")."""
    inputs = keras.Input((67, 67, 3))
    x = keras.layers.Resizing(16, 16)(inputs)
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    resized = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x),
                          name="resized")
    # Named as an op of the serving graph (keras.ops.all): names must not clash.
    model = ensembles.Ensemble(small_members(2) + [resized], name="all")
    x = images(5)
    x[3] = np.nan  # a bad input is flagged, per input, not hidden
    reference = ensembles.serving_model(model).predict(x, verbose=0)
    path = str(tmp_path / "served")
    ensembles.export(model, path)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]
    np.save(tmp_path / "x.npy", x)
    code = textwrap.dedent(f"""
        import logging, sys, numpy as np, tensorflow as tf
        logged = []  # what loading says: under JAX, once a warning per custom gradient
        handler = logging.Handler()
        handler.emit = lambda record: logged.append(record.getMessage())
        logging.getLogger().addHandler(handler)
        try:
            served = tf.saved_model.load({path!r})
        finally:
            logging.getLogger().removeHandler(handler)
        assert not [m for m in logged if "gradient" in m], logged
        out = served.serve(tf.constant(np.load({str(tmp_path / 'x.npy')!r})))
        np.savez({str(tmp_path / 'out.npz')!r}, **{{k: v.numpy() for k, v in out.items()}})
        assert not any(m.split('.')[0] in ("zoo", "ensembles", "data") for m in sys.modules)
    """)
    cold_python.run(code)
    served = np.load(tmp_path / "out.npz")
    assert set(served.files) == {"probabilities", "predictive_entropy", "mutual_information",
                                 "finite"}
    assert served["finite"].tolist() == [True, True, True, False, True]
    for key in served.files:
        np.testing.assert_allclose(served[key], reference[key], atol=1e-5)
    np.testing.assert_allclose(served["probabilities"], model.predict(x, verbose=0), atol=1e-5)


def test_an_export_serves_an_empty_batch_and_serving_model_any_input_size(tmp_path):
    """serve_images and serve_bytes failed on a batch of no image for a member with
    BatchNormalization (TensorFlow's oneDNN: 'Incompatible shapes: [4] vs. [0,...]'; a
    JAX export on every model); serving_model of a model of any input size was a
    TypeError of None * None."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(inputs))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="bn")
    ensembles.export(model, str(tmp_path / "served"))
    loaded = tf.saved_model.load(str(tmp_path / "served"))
    for name, given in (("serve_images", tf.zeros((0, 12, 10, 3), tf.uint8)),
                        ("serve_bytes", tf.zeros((0,), tf.string))):
        out = loaded.signatures[name](images=given)
        assert out["probabilities"].shape == (0, 3) and out["top_classes"].shape == (0, 3)
    one = loaded.signatures["serve_images"](images=tf.fill((1, 12, 10, 3), tf.constant(
        90, tf.uint8)))
    assert one["probabilities"].shape == (1, 3)
    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    anysize = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    served = ensembles.serving_model(anysize)
    for size in (8, 12):
        x = images(2, size=size)
        x[1, 0, 0, 0] = np.nan
        out = served.predict(x, verbose=0)
        np.testing.assert_allclose(out["probabilities"][0], anysize.predict(x, verbose=0)[0],
                                   rtol=1e-5)
        assert out["finite"].tolist() == [True, False]


def test_a_snapshot_taken_at_an_epochs_end_survives_a_kill_before_the_next(tmp_path):
    """The user's callbacks ran after the epoch's backup: killed between the two, the run
    resumed after that epoch and its snapshot was never taken. They now run before it."""
    class KilledOnce(ensembles.CheckpointSnapshots):
        killed = False

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1 and not KilledOnce.killed:
                KilledOnce.killed = True
                raise KeyboardInterrupt  # as Ctrl-C there
            super().on_epoch_end(epoch, logs)

    run_dir, folder = str(tmp_path / "run"), str(tmp_path / "snaps")
    kwargs = dict(epochs=3, run_dir=run_dir, verbose=0, seed=0)
    with pytest.raises(KeyboardInterrupt):
        zoo.train(tiny_model, tiny_data(), tiny_data(seed=1),
                  callbacks=[KilledOnce(folder, every=1, at_lr_drop=False)], **kwargs)
    zoo.train(tiny_model, tiny_data(), tiny_data(seed=1),
              callbacks=[KilledOnce(folder, every=1, at_lr_drop=False)], **kwargs)
    assert sorted(os.listdir(folder)) == [f"snapshot-epoch00{k}.weights.h5" for k in (1, 2, 3)]
    # A new run (its backup moved aside, as the README says to start again) beside them:
    # from_snapshots took the earlier run's epochs 2 and 3 as this run's.
    shutil.move(os.path.join(run_dir, "backup"), str(tmp_path / "old_backup"))
    with pytest.raises(ValueError, match=r"snaps holds 2 snapshot\(s\) this run did not take "
                                         r"\(snapshot-epoch002.weights.h5, "
                                         r"snapshot-epoch003.weights.h5; it starts at epoch "
                                         r"1\): an earlier run's"):
        zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=3, verbose=0,
                  callbacks=[ensembles.CheckpointSnapshots(folder, every=2)])


class _InterruptAt(keras.callbacks.Callback):
    """Ctrl-C at the beginning of epoch ``epoch`` (0-based), the first time it comes."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.fired = epoch, False

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch and not self.fired:
            self.fired = True
            raise KeyboardInterrupt


class _BatchCount(keras.callbacks.Callback):
    """Counts the batches trained (a refusal must come before the first)."""
    count = 0

    def on_train_batch_begin(self, batch, logs=None):
        _BatchCount.count += 1


def test_checkpoint_snapshots_resume_under_a_backup_of_the_users_own(tmp_path):
    """zoo.train puts a BackupAndRestore of the user's after their other callbacks, so
    CheckpointSnapshots read the start epoch before the restore (0) and refused the resumed
    run's own snapshots as 'an earlier run's'. It reads it at the first epoch's beginning."""
    folder, backup = str(tmp_path / "snaps"), str(tmp_path / "backup")
    interrupt = _InterruptAt(2)  # (once: the run below goes on)

    def run():
        return zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=4, verbose=0,
                         seed=0, callbacks=[keras.callbacks.BackupAndRestore(backup), interrupt,
                                            ensembles.CheckpointSnapshots(folder, every=1)])

    with pytest.raises(KeyboardInterrupt):
        run()
    assert sorted(os.listdir(folder)) == [f"snapshot-epoch00{k}.weights.h5" for k in (1, 2)]
    assert len(run().history["loss"]) == 2  # epochs 3 and 4, resumed
    assert sorted(os.listdir(folder)) == [f"snapshot-epoch00{k}.weights.h5" for k in range(1, 5)]


def test_checkpoint_snapshots_refuse_snapshots_this_run_will_not_take(tmp_path):
    """A run with every=2 beside an earlier run's snapshot-epoch001 (every=1) took it as its
    own: the check let the epoch it starts at through (a resumed run takes that one again),
    and a cycle's snapshot-K through whatever its number. Refused before the first batch
    where the run takes none at that epoch (under a schedule too, where no drop takes one),
    and said at that epoch's end where only a drop of the learning rate could have taken it
    (a killed attempt's drop may not repeat: a warning); a file where the folder should be
    is refused first."""
    folder = tmp_path / "snaps"
    folder.mkdir()
    (folder / "snapshot-epoch001.weights.h5").write_bytes(b"an earlier run's")

    def train(optimizer=None, **kwargs):
        _BatchCount.count = 0
        zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=2, verbose=0,
                  callbacks=[_BatchCount(), ensembles.CheckpointSnapshots(str(folder), **kwargs)],
                  **({} if optimizer is None else dict(optimizer=optimizer, reduce_lr=False)))

    def scheduled():
        return keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 30))

    for kwargs in (dict(every=2, at_lr_drop=False), dict(every=2, optimizer=scheduled)):
        with pytest.raises(ValueError, match=r"snaps holds 1 snapshot\(s\) this run did not "
                                             r"take \(snapshot-epoch001.weights.h5; it starts "
                                             r"at epoch 1\): an earlier run's"):
            train(**kwargs)
        assert _BatchCount.count == 0
    with pytest.warns(UserWarning, match=r"snapshot-epoch001.weights.h5 was not taken by this "
                                         r"run, whose learning rate did not drop at epoch 1: "
                                         r"it is an earlier run's"):
        train(every=2)
    assert (folder / "snapshot-epoch001.weights.h5").read_bytes() == b"an earlier run's"
    (folder / "snapshot-epoch001.weights.h5").unlink()
    (folder / "snapshot-epoch002.weights.h5").unlink()  # (the warned run's own)
    (folder / "snapshot-3.weights.h5").write_bytes(b"a cycle's")
    with pytest.raises(ValueError, match=r"holds 1 snapshot\(s\) this run did not take "
                                         r"\(snapshot-3.weights.h5;"):
        train(every=1)
    assert _BatchCount.count == 0
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(ValueError, match=r"a_file is a file \(or a link to nothing\), not a "
                                         r"folder: CheckpointSnapshots saves"):
        zoo.train(tiny_model, tiny_data(), epochs=1, verbose=0, callbacks=[
            _BatchCount(), ensembles.CheckpointSnapshots(str(tmp_path / "a_file"), every=1)])
    assert _BatchCount.count == 0


def test_snapshot_runs_refuse_an_earlier_runs_snapshots_and_schedules_take_none_at_drops(
        tmp_path):
    """A new snapshot run beside an earlier one's snapshots (its backup moved aside, as the
    README says to start again) left them to be taken as its last cycles; under a schedule,
    at_lr_drop took a snapshot at every epoch (the rate falls at every step)."""
    run_dir = tmp_path / "run"
    (run_dir / "snapshots").mkdir(parents=True)
    (run_dir / "snapshots" / "snapshot-7.weights.h5").write_bytes(b"an earlier run's")
    with pytest.raises(ValueError, match=r"snapshots holds 1 snapshot\(s\) of an earlier run "
                                         r"\(snapshot-7.weights.h5\) and .* no run to resume"):
        ensembles.train_snapshots(tiny_model, tiny_data(), epochs=2, cycles=2,
                                  run_dir=str(run_dir))
    assert (run_dir / "snapshots" / "snapshot-7.weights.h5").read_bytes() == b"an earlier run's"
    with pytest.raises(ValueError, match=r"`run_dir` must be a folder .* received None"):
        ensembles.train_snapshots(tiny_model, tiny_data(), epochs=2, cycles=2, run_dir=None)
    with pytest.raises(ValueError, match=r"from_snapshots needs the run's architecture: .*"
                                         r"received str 'resnet18' \(a name alone"):
        ensembles.from_snapshots("resnet18", str(run_dir / "snapshots"))
    drops = ensembles.CheckpointSnapshots(str(tmp_path / "drops"))
    model = tiny_model()
    zoo.train(model, tiny_data(), epochs=3, verbose=0, reduce_lr=False, callbacks=[drops],
              optimizer=lambda: keras.optimizers.SGD(
                  keras.optimizers.schedules.CosineDecay(0.1, 30)))
    assert not os.path.exists(tmp_path / "drops")


def test_variants_refuse_what_would_lose_or_misname_a_member():
    """Values that print alike made one dict key (a member lost without a word); a built
    model or a partial gave AttributeError tracebacks."""
    import functools

    with pytest.raises(ValueError, match=r"two members named 'alexnet_dropout0p5': give "
                                         r"distinct values"):
        ensembles.variants("alexnet", dropout=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"two members named 'alexnet_dropout0p123457'"):
        ensembles.variants("alexnet", dropout=[0.1234567, 0.1234568])
    with pytest.raises(ValueError, match=r"needs a model name or a builder function \(each "
                                         r"variant is built anew\); received Functional"):
        ensembles.variants(tiny_model(), width=[4, 8])
    partial = ensembles.variants(functools.partial(zoo.resnet18, classes=3), width=[0.25, 0.5])
    assert list(partial) == ["resnet18_width0p25", "resnet18_width0p5"]
    # Values that are no numbers were a format error ("Unknown format code 'g'"); an array
    # of values was one fixed value, then refused as "needs a list".
    with pytest.raises(ValueError, match=r"`width` must be a number or a list of numbers to "
                                         r"vary; received \['wide'\]"):
        ensembles.variants("alexnet", width=["wide"])
    assert list(ensembles.variants("alexnet", dropout=np.array([0.5, 0.6]))) == [
        "alexnet_dropout0p5", "alexnet_dropout0p6"]
    # A mistyped name or argument and values no member takes were refused only when that
    # member was built: after the members before it had trained.
    for kwargs, message in (
            (dict(builder="alexnt", width=[8, 16]), r"Unknown model 'alexnt'.*alexnet"),
            (dict(builder="alexnet", width=[8, 16], widht=2), r"alexnet has no argument "
                                                              r"'widht'. Did you mean 'width'"),
            (dict(builder="alexnet", dropout=[0.1, 1.5]), r"`dropout` must be a rate in "
                                                          r"\[0, 1\); received 1.5"),
            (dict(builder="resnet18", width=[-1, 2]), r"`width` must be a finite positive "
                                                      r"number; received -1"),
            # AlexNet's width counts fc units; a name would be every member's; a builder
            # function's typo (a registry name's was caught already).
            (dict(builder="alexnet", width=[16, 0.5]), r"alexnet's `width` counts units "
                                                       r"\(default 4096\).*received 0.5"),
            (dict(builder=zoo.alexnet, width=[16, 0.5]), r"alexnet's `width` counts units"),
            (dict(builder="alexnet", dropout=[0.5, 0.6], name="mine"),
             r"variants names each member after its values.*received name='mine'"),
            (dict(builder=zoo.alexnet, dropout=[0.5, 0.6], withd=3),
             r"alexnet takes no 'withd'; it takes \['include_top'")):
        with pytest.raises(ValueError, match=message):
            ensembles.variants(**kwargs)
    assert list(ensembles.variants("resnet18", width=[0.5, 0.25])) == [
        "resnet18_width0p5", "resnet18_width0p25"]  # a multiplier: any positive number


def test_a_snapshot_run_killed_before_its_first_backup_runs_again(tmp_path):
    """Two cycles in two epochs of one batch... here cycles end inside the first epoch: a
    kill before that epoch's backup left snapshot-1 and no backup, and the same command
    was refused as holding an earlier run's snapshots."""
    class KilledOnce(keras.callbacks.Callback):
        killed = False

        def on_epoch_end(self, epoch, logs=None):
            if not KilledOnce.killed:
                KilledOnce.killed = True
                raise KeyboardInterrupt

    run_dir = str(tmp_path / "run")
    kwargs = dict(epochs=2, cycles=4, run_dir=run_dir, verbose=0, seed=0)
    with pytest.raises(KeyboardInterrupt):
        ensembles.train_snapshots(tiny_model, tiny_data(), callbacks=[KilledOnce()], **kwargs)
    assert os.listdir(os.path.join(run_dir, "snapshots"))  # a cycle ended in epoch 1
    _, paths = ensembles.train_snapshots(tiny_model, tiny_data(), **kwargs)
    assert [os.path.basename(p) for p in paths] == [f"snapshot-{k}.weights.h5"
                                                    for k in (1, 2, 3, 4)]


def test_a_snapshot_run_interrupted_mid_run_resumes_to_the_same_snapshots(tmp_path):
    """Interrupted at the start of its third epoch, resumed: the snapshots still come at the
    schedule's boundaries (the callback finds where the resumed run stands from its update
    count), each the uninterrupted run's."""
    kwargs = dict(epochs=4, cycles=3, verbose=0, seed=0)  # boundaries 5, 10, 16 of 16
    _, reference = ensembles.train_snapshots(tiny_model, tiny_data(),
                                             run_dir=str(tmp_path / "whole"), **kwargs)
    with pytest.raises(KeyboardInterrupt):
        ensembles.train_snapshots(tiny_model, tiny_data(), run_dir=str(tmp_path / "run"),
                                  callbacks=[_InterruptAt(2)], **kwargs)
    assert len(os.listdir(tmp_path / "run" / "snapshots")) == 1
    _, paths = ensembles.train_snapshots(tiny_model, tiny_data(), run_dir=str(tmp_path / "run"),
                                         **kwargs)
    assert [os.path.basename(p) for p in paths] == [os.path.basename(p) for p in reference] \
        == ["snapshot-1.weights.h5", "snapshot-2.weights.h5", "snapshot-3.weights.h5"]
    for ours, theirs in zip(paths, reference):
        a, b = tiny_model(), tiny_model()
        a.load_weights(ours)
        b.load_weights(theirs)
        for x, y in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_a_snapshot_run_resumed_with_another_length_or_no_schedule_says_so(tmp_path):
    """Resumed with more epochs, a snapshot run was refused as 'optimizer.learning_rate.
    total_steps 8 -> 12', and resumed without its schedule with eight of the schedule's
    keys ('optimizer.learning_rate None -> 0.1; ...class_name ...'): one entry each now,
    saying what it is."""
    run_dir = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        ensembles.train_snapshots(tiny_model, tiny_data(), epochs=2, cycles=2, run_dir=run_dir,
                                  callbacks=[_InterruptAt(1)], verbose=0)
    with pytest.raises(ValueError, match=r"holds a run with other settings \(optimizer."
                                         r"learning_rate.total_steps 8 -> 12 \(the schedule's "
                                         r"updates, epochs x steps per epoch: a scheduled run's "
                                         r"length is fixed when it starts\)\); resume it"):
        ensembles.train_snapshots(tiny_model, tiny_data(), epochs=3, cycles=2, run_dir=run_dir,
                                  verbose=0)
    with pytest.raises(ValueError) as error:
        zoo.train(tiny_model, tiny_data(), epochs=2, run_dir=run_dir, verbose=0)
    message = str(error.value)
    assert ("(learning rate a CyclicCosine schedule -> 0.01 (the run was started with a "
            "schedule: zoo train --snapshots, or train_snapshots); ") in message, message
    assert "class_name" not in message and "total_steps" not in message
    # zoo train compares the data's settings alone first: the schedule is no change there
    # (the same command, resuming an interrupted zoo train --snapshots, was refused).
    from zoo.training import run_config

    run_config.check_resume(run_dir, {"data": {"dataset": "digits", "image_size": 8}})
    _, paths = ensembles.train_snapshots(tiny_model, tiny_data(), epochs=2, cycles=2,
                                         run_dir=run_dir, verbose=0)
    assert len(paths) == 2


def test_snapshots_of_a_run_refuse_an_architecture_of_another_input_size(tmp_path):
    """A global-pooling network's snapshots load into the same network at any input size:
    zoo ensemble last.keras --snapshots of a run at another image size saved an ensemble of
    weights trained on other inputs without a word. The run's config.json records its
    input shape now."""
    run_dir = tmp_path / "run"
    ensembles.train_snapshots(tiny_model, tiny_data(), epochs=1, cycles=2, run_dir=str(run_dir),
                              verbose=0)
    assert json.loads((run_dir / "config.json").read_text())["input_shape"] == [8, 8, 3]
    with pytest.raises(ValueError, match=r"snapshots holds snapshots of a run on inputs of "
                                         r"shape \(8, 8, 3\) \(its config.json\); the "
                                         r"architecture given takes \(16, 16, 3\)\."):
        ensembles.from_snapshots(lambda: tiny_model(16), str(run_dir / "snapshots"))
    ensemble = ensembles.from_snapshots(tiny_model, str(run_dir / "snapshots"))
    assert len(ensembles.members_of(ensemble)) == 2


def test_switches_given_as_strings_and_paths_that_are_not_paths_are_one_line(tmp_path):
    """"no" is a true string: export(..., overwrite="no") replaced the export,
    make_optimizer(ema="no") and PaperSGD(nesterov="no") switched them on, and
    Ensemble(return_members="no") gave two outputs. A path that is not one (None, a
    number) was Python's TypeError from os.fspath."""
    members = [tiny_model(), tiny_model()]
    export = tmp_path / "served"
    export.mkdir()
    (export / "saved_model.pb").write_bytes(b"a previous export")
    cases = [
        (lambda: ensembles.export(members[0], str(export), overwrite="no"),
         r"`overwrite` must be True or False; received 'no'"),
        (lambda: zoo.make_optimizer("adam", ema="no"), r"`ema` must be True or False"),
        (lambda: zoo.PaperSGD(nesterov="no"), r"`nesterov` must be True or False"),
        (lambda: ensembles.Ensemble(members, return_members="no"),
         r"`return_members` must be True or False"),
        (lambda: ensembles.predict_members(members, tiny_data(n=4), keep_views="yes"),
         r"`keep_views` must be True or False"),
        (lambda: ensembles.temperature(members[0], per_member="no"),
         r"`per_member` must be True or False"),
        (lambda: ensembles.calibrate(members[0], tiny_data(n=4), per_member=1),
         r"`per_member` must be True or False; received 1"),
        (lambda: zoo.load_model(str(tmp_path / "m.keras"), compile="no"),
         r"`compile` must be True or False"),
        (lambda: zoo.load_model(None), r"load_model takes the path of a .keras file; "
                                       r"received None"),
        (lambda: zoo.save_model(members[0], 5), r"save_model takes the path of a .keras "
                                                r"file; received 5"),
        (lambda: zoo.save_model("resnet18", str(tmp_path / "m.keras")),
         r"save_model saves a keras.Model; received 'resnet18' \(str\)"),
        (lambda: ensembles.export(members[0], None), r"The export's `path` must be a folder "
                                                     r"or file name; received None"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert (export / "saved_model.pb").read_bytes() == b"a previous export"
    assert zoo.PaperSGD(nesterov=np.bool_(True)).nesterov is True
    assert len(ensembles.Ensemble(members, return_members=np.bool_(True)).outputs) == 2


def test_a_model_where_a_list_is_taken_and_the_reverse_are_one_line(tmp_path):
    """Ensemble(model) was "'Functional' object is not iterable"; calibrate([a, b]) an
    AttributeError after predicting the whole dataset; evaluate(None, ...) a TypeError;
    zoo.predict of an array os.fspath's TypeError."""
    model = tiny_model()
    for call, message in (
            (lambda: ensembles.Ensemble(model), r"Ensemble takes a list of member models; "
                                                r"received Functional \(one model: "
                                                r"Ensemble\(\[model\]\)"),
            (lambda: ensembles.calibrate([model, model], tiny_data(n=4)),
             r"calibrate takes one model or ensemble .*received list"),
            (lambda: ensembles.evaluate(None, tiny_data(n=4)), r"Expected a model, an ensemble "
                                                               r"or a list of models; received "
                                                               r"None"),
            (lambda: zoo.predict(model, np.zeros((2, 8, 8, 3))),
             r"zoo.predict classifies image files and folders \(their paths\); received "
             r"ndarray of shape \(2, 8, 8, 3\): for images in memory, use model.predict"),
            (lambda: zoo.predict(model, [5, str(tmp_path)]), r"takes image file and folder "
                                                            r"paths; received 5 \(int\)"),
            # (a PIL image, a number: "'Image' object is not iterable")
            (lambda: zoo.predict(model, PIL.Image.new("RGB", (8, 8))),
             r"paths \(one, or a list of them\); received <PIL.Image.Image .*\(Image\): "
             r"for images in memory, use model.predict"),
            (lambda: zoo.predict(model, 3), r"received 3 \(int\)")):
        with pytest.raises(ValueError, match=message):
            call()
    assert len(ensembles.Ensemble(m for m in [model, tiny_model()]).outputs) == 1
    for call, message in (
            (lambda: ensembles.member_weights(5), r"member_weights reads a model, an ensemble "
                                                  r"or a non-empty list of models; received 5"),
            (lambda: ensembles.member_weights([]), r"received \[\]"),
            (lambda: zoo.fine_tune("resnet20", 2), r"fine_tune takes a built keras.Model .*"
                                                   r"received 'resnet20' \(str\)")):
        with pytest.raises(ValueError, match=message):
            call()
    assert ensembles.member_weights([model, model]).tolist() == [0.5, 0.5]
    # Paths in an array or a pandas column are paths (a table of files, say).
    photo = tmp_path / "a.png"
    photo.write_bytes(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    for paths in (np.array([str(photo)]), pd.Series([str(photo)])):
        assert len(zoo.predict(model, paths, top=1)) == 1
    with pytest.raises(ValueError, match=r"`train_data` must be batches .*received ndarray"):
        ensembles.distill(None, None, np.zeros((4, 8, 8, 3)))  # (before the teacher is read)
    with pytest.raises(ValueError, match=r"`train_data` must be batches .*received ndarray"):
        ensembles.train_snapshots(tiny_model, np.zeros((4, 8, 8, 3)), epochs=2, cycles=2,
                                  run_dir=str(tmp_path / "snap"))  # (it said "length unknown")
    with pytest.raises(ValueError, match=r"`settings` must be a dict"):
        ensembles.distill(model, tiny_model(), tiny_data(n=4), settings=["a"])
