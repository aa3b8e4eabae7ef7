"""Ensemble numbers held against references this project did not write: members whose
outputs are known in closed form (every table cell worked by hand), scikit-learn's metrics,
SciPy's entropy on what the exported SavedModel serves, and heterogeneous members whose
rows, probabilities and weights must stay with their names in any order."""

import math
import textwrap

import keras
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import tensorflow as tf
from sklearn.metrics import brier_score_loss, log_loss, top_k_accuracy_score

import ensembles
import zoo
from ensembles import metrics
from tests.helpers import tiny_model

SIZE = 8


def constant_model(p, name):
    """Predicts the probabilities ``p`` for every image: softmax(0 * x + log p) = p."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    out = keras.layers.Dense(len(p), activation="softmax", kernel_initializer="zeros",
                             bias_initializer=keras.initializers.Constant(np.log(p)))(x)
    return keras.Model(inputs, out, name=name)


def dataset(labels, seed=0, batch=3, scale=255.0):
    x = np.random.default_rng(seed).uniform(0, scale, (len(labels), SIZE, SIZE, 3))
    return tf.data.Dataset.from_tensor_slices(
        (x.astype("float32"), np.asarray(labels, "int32"))).batch(batch)


# --- members with known outputs: every number by hand ------------------------------------------

SURE, UNSURE = [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]  # weighted 3:1 -> mean [0.5, 0.35, 0.15]
LABELS = [0, 0, 1, 2]
COLUMNS = ["top1_error", "top5_error", "nll", "brier", "ece"]


def known_ensemble(combine="mean"):
    return ensembles.Ensemble([constant_model(SURE, "sure"), constant_model(UNSURE, "unsure")],
                              combine=combine, weights=[3, 1])


@pytest.mark.all_backends
def test_evaluation_table_of_constant_members_worked_by_hand():
    table = ensembles.evaluate(known_ensemble(), dataset(LABELS))
    ln = math.log
    expected = {
        # top-1 error, top-5 error (3 classes: always 0), NLL, Brier, ECE (one confidence)
        "sure": [2 / 4, 0, -(2 * ln(0.6) + ln(0.3) + ln(0.1)) / 4,
                 (2 * 0.26 + 0.86 + 1.26) / 4, abs(0.6 - 0.5)],
        "unsure": [3 / 4, 0, -(2 * ln(0.2) + ln(0.5) + ln(0.3)) / 4,
                   (2 * 0.98 + 0.38 + 0.78) / 4, abs(0.5 - 0.25)],
        "ensemble": [2 / 4, 0, -(2 * ln(0.5) + ln(0.35) + ln(0.15)) / 4,
                     (2 * 0.395 + 0.695 + 1.095) / 4, 0.0],
    }
    expected["best member"] = expected["sure"]
    expected["mean member"] = list(np.mean([expected["sure"], expected["unsure"]], axis=0))
    for row, values in expected.items():
        np.testing.assert_allclose(table.loc[row, COLUMNS].astype(float), values, rtol=1e-5,
                                   atol=1e-6, err_msg=row)
    assert table.loc["sure", "weight"] == 0.75 and table.loc["unsure", "weight"] == 0.25
    assert table.loc["ensemble", "disagreement"] == 1.0  # their top classes always differ
    kl_sure_unsure = 0.6 * ln(3) + 0.3 * ln(0.6) + 0.1 * ln(1 / 3)
    kl_unsure_sure = 0.2 * ln(1 / 3) + 0.5 * ln(5 / 3) + 0.3 * ln(3)
    assert table.loc["ensemble", "kl"] == pytest.approx(
        (kl_sure_unsure + kl_unsure_sure) / 2, rel=1e-5)
    curve = ensembles.size_curve(known_ensemble(), dataset(LABELS))
    assert curve.loc[1, "nll"] == pytest.approx(expected["sure"][2], rel=1e-5)
    assert curve.loc[2, "nll"] == pytest.approx(expected["ensemble"][2], rel=1e-5)


@pytest.mark.parametrize("combine, served", [
    ("mean", [0.5, 0.35, 0.15]),
    ("vote", [0.75, 0.25, 0.0]),  # sure's top class weighs 3, unsure's 1
])
@pytest.mark.all_backends
def test_uncertainty_of_constant_members_follows_the_combine_rule_and_weights(combine, served):
    table = ensembles.uncertainty(known_ensemble(combine), dataset(LABELS))
    h = scipy.stats.entropy
    np.testing.assert_allclose(table["predictive_entropy"], h(served), rtol=1e-5)
    np.testing.assert_allclose(table["expected_entropy"], 0.75 * h(SURE) + 0.25 * h(UNSURE),
                               rtol=1e-5)
    np.testing.assert_allclose(table["mutual_information"],
                               h(served) - 0.75 * h(SURE) - 0.25 * h(UNSURE), atol=1e-6)
    np.testing.assert_allclose(table["confidence"], max(served), rtol=1e-5)
    # The top class is 0; its probability is 0.6 and 0.2 around a weighted mean of 0.5.
    np.testing.assert_allclose(table["top_class_variance"], 0.75 * 0.1**2 + 0.25 * 0.3**2,
                               rtol=1e-4)


def test_uncertainty_of_a_model_that_outputs_float16_is_scipys():
    """A softmax left in float16 (a mixed-precision model whose last layer was not set to
    float32) outputs exact zeros; the entropy clipped them at 1e-12, which is 0 in float16,
    and 0 log 0 made the expected entropy and the mutual information NaN."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    out = keras.layers.Dense(3, activation="softmax", dtype="float16", kernel_initializer="zeros",
                             bias_initializer=keras.initializers.Constant(
                                 np.log([0.5, 0.5, 1e-9])))(x)
    half = keras.Model(inputs, out, name="half")
    assert half.predict_on_batch(np.zeros((1, SIZE, SIZE, 3)))[0, 2] == 0  # float16's zero
    table = ensembles.uncertainty(half, dataset(LABELS))
    for column in ("predictive_entropy", "expected_entropy"):
        np.testing.assert_allclose(table[column], scipy.stats.entropy([0.5, 0.5, 0]),
                                   rtol=1e-3)
    np.testing.assert_allclose(metrics.entropy(np.array([[0.5, 0.5, 0]], "float16")),
                               math.log(2), rtol=1e-3)


# --- metrics against scikit-learn ---------------------------------------------------------------


@pytest.mark.all_backends
@pytest.mark.parametrize("classes, present", [(10, 10), (7, 5)])  # 7: two classes never occur
def test_metrics_agree_with_scikit_learn(classes, present):
    rng = np.random.default_rng(classes)
    probs = rng.dirichlet(np.full(classes, 0.5), size=300)
    labels = rng.integers(0, present, 300)
    every = list(range(classes))
    assert metrics.nll(probs, labels) == pytest.approx(log_loss(labels, probs, labels=every),
                                                       rel=1e-9)
    assert metrics.brier(probs, labels) == pytest.approx(
        brier_score_loss(labels, probs, labels=every, scale_by_half=False), rel=1e-9)
    for k in (1, 2, 5):
        assert metrics.top_k_error(probs, labels, k) == pytest.approx(
            1 - top_k_accuracy_score(labels, probs, k=k, labels=every), abs=1e-12)


# --- what an ensemble is ------------------------------------------------------------------------


def test_is_ensemble_is_decided_by_the_combine_layer_not_a_layer_name():
    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D(name="combine")(inputs)
    impostor = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(pooled),
                           name="impostor")
    assert not ensembles.is_ensemble(impostor)
    with pytest.raises(ValueError, match="Expected an ensemble.*'impostor'"):
        ensembles.members_of(impostor)
    table = ensembles.evaluate(impostor, dataset([0, 1, 2, 3]))  # one model, not an ensemble
    assert list(table.index) == ["impostor", "best member", "mean member", "ensemble"]

    a, b = tiny_model(), tiny_model()  # an ensemble built by hand, its layer named otherwise
    a.name, b.name = "a", "b"
    stack = keras.layers.Concatenate(axis=1)([keras.layers.Reshape((1, -1))(m(inputs))
                                              for m in (a, b)])
    blended = keras.Model(inputs, ensembles.CombineMembers("mean", name="blend")(stack))
    assert ensembles.is_ensemble(blended)
    members = ensembles.members_of(blended)
    assert members[0] is a and members[1] is b


# --- heterogeneous members: rows, probabilities and weights stay with their names ---------------

WEIGHTS = {"resnet18": 5.0, "resnet50": 3.0, "tiny": 2.0}


@pytest.fixture(scope="module")
def heterogeneous():
    keras.utils.set_random_seed(0)
    return {
        "resnet18": zoo.resnet18(input_shape=(SIZE, SIZE, 3), classes=4, width=0.25,
                                 stem="cifar"),
        "resnet50": zoo.resnet50(input_shape=(SIZE, SIZE, 3), classes=4, width=0.25,
                                 stem="cifar"),
        "tiny": tiny_model(SIZE, 4),
    }


@pytest.mark.parametrize("order", [
    ("resnet18", "resnet50", "tiny"),
    pytest.param(("tiny", "resnet50", "resnet18"), marks=pytest.mark.slow)])  # fast: one order
def test_heterogeneous_members_keep_their_rows_probabilities_and_weights(
        order, heterogeneous, tmp_path):
    labels = np.arange(12) % 4
    data = dataset(labels, batch=12, scale=1.0)  # probabilities away from 0 and 1
    x = np.concatenate([images for images, _ in data])
    own = {name: np.asarray(heterogeneous[name](x, training=False)) for name in order}
    assert min(np.abs(own["resnet18"] - own[n]).max() for n in ("resnet50", "tiny")) > 1e-3
    weights = np.array([WEIGHTS[n] for n in order]) / sum(WEIGHTS.values())
    built = ensembles.Ensemble([heterogeneous[n] for n in order], weights=list(weights * 10))
    built.save(tmp_path / "ensemble.keras")
    loaded = keras.models.load_model(tmp_path / "ensemble.keras")
    for model in (built, loaded):
        assert [m.name for m in ensembles.members_of(model)] == list(order)
        for member in ensembles.members_of(model):
            np.testing.assert_allclose(member(x, training=False), own[member.name],
                                       rtol=1e-5, atol=1e-6)
        predictions = ensembles.predict_members(model, data)  # one pass, shared below
        probs = predictions[1]
        for i, name in enumerate(order):
            np.testing.assert_allclose(probs[i], own[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ensembles.member_weights(model), weights, rtol=1e-6)
        table = ensembles.evaluate(model, data, predictions=predictions)
        for name in order:
            assert table.loc[name, "nll"] == pytest.approx(
                log_loss(labels, own[name], labels=range(4)), rel=1e-4)
            assert table.loc[name, "weight"] == pytest.approx(WEIGHTS[name] / 10)
        combined = sum(WEIGHTS[n] / 10 * own[n] for n in order)
        assert table.loc["ensemble", "nll"] == pytest.approx(
            log_loss(labels, combined, labels=range(4)), rel=1e-4)
        uncertainty = ensembles.uncertainty(model, data, predictions=predictions)
        np.testing.assert_allclose(
            uncertainty["expected_entropy"],
            sum(WEIGHTS[n] / 10 * scipy.stats.entropy(own[n], axis=1) for n in order),
            rtol=1e-4)


# --- the served model describes the distribution it serves ------------------------------------


def _two_members():
    keras.utils.set_random_seed(3)
    conv = tiny_model(SIZE, 5)
    inputs = keras.Input((SIZE, SIZE, 3))
    flat = keras.layers.Flatten()(keras.layers.Rescaling(1 / 64)(inputs))
    dense = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(flat),
                        name="dense")
    return conv, dense


FAST_RULES, SLOW_RULES = ("mean", "geometric"), ("logit_mean", "vote")
assert set(FAST_RULES + SLOW_RULES) == set(ensembles.COMBINE_CHOICES)  # a new rule: add it


@pytest.mark.xdist_group("cold_python")
@pytest.mark.parametrize("rules", [FAST_RULES, pytest.param(SLOW_RULES, marks=pytest.mark.slow)])
def test_served_entropy_is_the_entropy_of_the_served_probabilities(tmp_path, cold_python,
                                                                   rules):
    """For every combine rule (two in the fast tier, the others in the slow one: an
    export takes 3 s), with weights 3:1, in a process that never imports the project:
    H(served probabilities) is the served entropy, and the mutual information
    subtracts the members' entropies weighted the same way."""
    conv, dense = _two_members()
    x = np.random.default_rng(1).uniform(0, 255, (16, SIZE, SIZE, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected_entropy = (0.75 * scipy.stats.entropy(conv.predict(x, verbose=0), axis=1)
                        + 0.25 * scipy.stats.entropy(dense.predict(x, verbose=0), axis=1))
    combined = {}
    for rule in rules:
        model = ensembles.Ensemble([conv, dense], combine=rule, weights=[3, 1])
        combined[rule] = model.predict(x, verbose=0)
        ensembles.export(model, str(tmp_path / rule))
        in_process = ensembles.uncertainty(model, tf.data.Dataset.from_tensor_slices(
            (x, np.zeros(16, "int32"))).batch(8))
        np.testing.assert_allclose(in_process["predictive_entropy"],
                                   scipy.stats.entropy(combined[rule], axis=1), atol=1e-5)
    code = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        x = tf.constant(np.load({str(tmp_path / 'x.npy')!r}))
        out = {{}}
        for rule in {list(rules)!r}:
            loaded = tf.saved_model.load({str(tmp_path)!r} + "/" + rule)  # owns the variables
            served = loaded.serve(x)
            out.update({{f"{{rule}}.{{k}}": v.numpy() for k, v in served.items()}})
        np.savez({str(tmp_path / 'out.npz')!r}, **out)
        assert not any(m.split('.')[0] in ("zoo", "ensembles", "data") for m in sys.modules)
    """)
    cold_python.run(code)
    served = np.load(tmp_path / "out.npz")
    for rule in rules:
        probs = served[f"{rule}.probabilities"]
        np.testing.assert_allclose(probs, combined[rule], atol=1e-5, err_msg=rule)
        own_entropy = scipy.stats.entropy(probs, axis=1)
        np.testing.assert_allclose(served[f"{rule}.predictive_entropy"], own_entropy,
                                   atol=1e-5, err_msg=rule)
        np.testing.assert_allclose(served[f"{rule}.mutual_information"],
                                   own_entropy - expected_entropy, atol=1e-5, err_msg=rule)


def test_a_wrapped_softmax_classifier_is_not_softmaxed_twice():
    """``Model(x, classifier(Rescaling(x)))`` outputs the classifier's probabilities: the
    ensemble must take them as they are (it once applied a second softmax)."""
    inner = constant_model(SURE, "inner")
    inputs = keras.Input((SIZE, SIZE, 3))
    wrapped = keras.Model(inputs, inner(keras.layers.Rescaling(1 / 255)(inputs)), name="wrapped")
    data = dataset(LABELS)
    probs = ensembles.member_probabilities(ensembles.Ensemble([wrapped]), data)
    np.testing.assert_allclose(probs[0], np.tile(SURE, (4, 1)), rtol=1e-5)
    table = ensembles.evaluate([wrapped], data)
    assert table.loc["wrapped", "nll"] == pytest.approx(
        -(2 * math.log(0.6) + math.log(0.3) + math.log(0.1)) / 4, rel=1e-5)


@pytest.mark.parametrize("classes", [10, 1000])
def test_tied_top_classes_are_broken_as_numpys_argmax_breaks_them(classes):
    """Two members that vote apart tie at 0.5 each. The top-1 error is that of np.argmax,
    which documents that ties go to the first index, as the ECE's "correct" and the
    uncertainty table's "prediction" read them; NumPy's default sort once put either class
    first (a top-1 error of 0.17 where argmax gives 0 on 10 classes)."""
    rng = np.random.default_rng(classes)
    n = 2000
    pairs = np.sort([rng.choice(classes, 2, replace=False) for _ in range(n)], axis=1)
    probs = np.zeros((n, classes), "float32")
    probs[np.arange(n)[:, None], pairs] = 0.5
    first = pairs[:, 0]
    assert metrics.top_k_error(probs, first, 1) == 0.0
    assert metrics.top_k_error(probs, pairs[:, 1], 1) == 1.0
    assert metrics.top_k_error(probs, pairs[:, 1], 2) == 0.0
    labels = pairs[np.arange(n), rng.integers(0, 2, n)]
    assert metrics.scores(probs, labels)["top1_error"] == np.mean(probs.argmax(-1) != labels)


def test_every_member_keeps_its_row_whatever_its_name():
    """A member named like a numbered copy (a_1 beside two a's) or like a summary row (an
    ensemble, named "ensemble" by default, scored beside other models) keeps its row: they
    once shared rows, and the summary rows were taken over those left."""
    probs = [SURE, UNSURE, [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]]
    source = [constant_model(p, name) for p, name in zip(probs, ("a_1", "a", "a", "ensemble"))]
    table = ensembles.evaluate(source, dataset(LABELS))
    assert list(table.index) == ["a_1", "a_2", "a_3", "ensemble_1", "best member",
                                 "mean member", "ensemble"]
    for row, p in zip(table.index, probs):
        assert table.loc[row, "nll"] == pytest.approx(
            log_loss(LABELS, [p] * len(LABELS), labels=range(3)), rel=1e-5)
        assert table.loc[row, "weight"] == 0.25
    assert table.loc["ensemble", "nll"] == pytest.approx(
        log_loss(LABELS, [np.mean(probs, axis=0)] * len(LABELS), labels=range(3)), rel=1e-5)
    assert table.loc["mean member", "nll"] == pytest.approx(table["nll"].iloc[:4].mean())
    assert np.isnan(table.loc[["best member", "mean member", "ensemble"], "weight"]).all()


def test_predictions_handed_in_are_checked_against_the_source():
    """The one pass of predict_members that evaluate, size_curve and uncertainty share:
    another member count, another example count, or logits are one line, where they
    scored a different ensemble or failed in NumPy's broadcasting."""
    source = [constant_model(SURE, "sure"), constant_model(UNSURE, "unsure")]
    names, probs, labels = ensembles.predict_members(source, dataset(LABELS))
    cases = [
        ((names[:1], probs[:1], labels), r"Expected predictions of 2 members for 4 labels, "
                                         r"shaped \(2, 4, classes\).*\(predict_members' "
                                         r"output\); received shape \(1, 4, 3\)"),
        ((names, probs[:, :3], labels), r"received shape \(2, 3, 3\)"),
        ((names, np.log(probs), labels), r"received values in \[-2.3, -0.511\], rows summing "
                                         r"to .*logits\? apply a softmax first"),
        # Another class count (scored without a word), the probabilities alone (NumPy's
        # "truth value of an array is ambiguous") and nothing ("NoneType is not iterable").
        ((names, np.concatenate([probs, 0 * probs], -1), labels),
         r"The predictions hold 6 classes; the model predicts 3"),
        (probs, r"Expected predictions as predict_members' \(names, probs, labels\); "
                r"received a ndarray"),
        ((), r"received 0 elements"),
    ]
    for call in (ensembles.evaluate, ensembles.size_curve, ensembles.uncertainty):
        for predictions, message in cases:
            with pytest.raises(ValueError, match=message):
                call(source, None, predictions=predictions)
    # Keras' sparse labels, shaped (n, 1), are read as predict_members reads them.
    given = ensembles.uncertainty(source, None, predictions=(names, probs, labels[:, None]))
    made = ensembles.uncertainty(source, dataset(LABELS))
    pd.testing.assert_frame_equal(given, made)
