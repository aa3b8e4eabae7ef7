"""What users hand to ensembles: members of every Keras kind, and labels of every shape.

The scores are held to scikit-learn's; a member's probabilities to its own ``predict``.
"""

import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from sklearn.metrics import accuracy_score, log_loss, top_k_accuracy_score

import data
import ensembles
import zoo

CLASSES = 6


def pooled_head(activation=None, seed=0, classes=CLASSES, size=16):
    """A small classifier: its last Dense layer's ``activation`` is what the test varies."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, name="conv")(inputs))
    return keras.Model(inputs, keras.layers.Dense(classes, activation=activation)(x))


def images(n=13, size=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype("float32")


def labels(n=13, seed=1):
    return np.random.default_rng(seed).integers(0, CLASSES - 1, n)  # the last class is missing


def batches(y, x=None, batch=4):  # 13 examples: the last batch holds 1
    x = images(len(y)) if x is None else x
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


# --- labels -----------------------------------------------------------------------------------


@pytest.mark.all_backends
def test_labels_shaped_n_by_1_score_as_keras_sparse_labels_do():
    """keras.datasets.cifar10 gives labels shaped (n, 1): the same scores as (n,), and both
    are scikit-learn's (top-k over every class, the missing one included)."""
    model = ensembles.Ensemble([pooled_head("softmax", 0), pooled_head(None, 1)])
    y = labels()
    flat = ensembles.evaluate(model, batches(y)).loc["ensemble"]
    column = ensembles.evaluate(model, batches(y[:, None])).loc["ensemble"]
    pd.testing.assert_series_equal(column, flat)
    probs = model.predict(images(), verbose=0).astype("float64")
    every = np.arange(CLASSES)
    assert flat["top1_error"] == pytest.approx(1 - accuracy_score(y, probs.argmax(1)))
    assert flat["top5_error"] == pytest.approx(
        1 - top_k_accuracy_score(y, probs, k=5, labels=every))
    assert flat["nll"] == pytest.approx(log_loss(y, probs, labels=every), rel=1e-5)
    temperature = ensembles.fit_temperature(probs, y[:, None])
    assert temperature == pytest.approx(ensembles.fit_temperature(probs, y))


@pytest.mark.all_backends
@pytest.mark.parametrize("given, message", [
    (np.eye(CLASSES)[labels()], r"shaped \(n,\) or \(n, 1\); received shape \(13, 6\) "
                                r"\(one-hot\? take np.argmax"),
    (labels() - 1, r"lie in \[0, 6\) for 6 classes; received -1\.\."),
    (labels() + 3, r"lie in \[0, 6\) for 6 classes; received \d\.\.7"),
    (labels() + 0.5, r"whole class indices; received values such as \d\.5\."),
])
def test_labels_that_are_not_class_indices_are_one_line(given, message):
    model = ensembles.Ensemble([pooled_head("softmax")])
    with pytest.raises(ValueError, match=message):
        ensembles.evaluate(model, batches(given))
    with pytest.raises(ValueError, match=message):
        ensembles.fit_weights([pooled_head("softmax"), pooled_head(None, 1)], batches(given))


def test_batches_that_are_not_image_label_pairs_are_one_line():
    model = ensembles.Ensemble([pooled_head("softmax")])
    x, y = images(), labels()
    weighted = tf.data.Dataset.from_tensor_slices((x, y, np.ones(13))).batch(4)
    with pytest.raises(ValueError, match=r"\(images, labels\); received 3 elements.*sample"):
        ensembles.evaluate(model, weighted)
    unbatched = tf.data.Dataset.from_tensor_slices((x, y))
    with pytest.raises(ValueError, match=r"received shape \(16, 16, 3\)\. Batch the dataset"):
        ensembles.evaluate(model, unbatched)
    with pytest.raises(ValueError, match="The dataset is empty"):
        ensembles.evaluate(model, batches(y).take(0))


# --- members ----------------------------------------------------------------------------------


@pytest.mark.all_backends
@pytest.mark.parametrize("head", ["ops_softmax", "tf_nn_softmax", "activation_layer",
                                  "float32_cast_after"])
def test_a_member_that_outputs_probabilities_is_not_softmaxed_again(head):
    """However the member takes its softmax, a one-member ensemble predicts what it does
    (a second softmax would flatten the probabilities towards uniform)."""
    logits = pooled_head(None)
    x = logits.output
    if head == "ops_softmax":
        out = keras.ops.softmax(x)
    elif head == "tf_nn_softmax":
        if keras.backend.backend() != "tensorflow":
            pytest.skip("tf.nn.softmax runs on TensorFlow tensors only")
        out = keras.layers.Activation(tf.nn.softmax)(x)
    elif head == "float32_cast_after":  # mixed precision's cast: it was taken as logits
        out = keras.layers.Dropout(0.5)(keras.layers.Activation(
            "linear", dtype="float32")(keras.layers.Activation("softmax")(x)))
    else:
        out = keras.layers.Activation("softmax")(x)
    member = keras.Model(logits.input, out)
    alone = member.predict(images(), verbose=0)
    np.testing.assert_allclose(ensembles.Ensemble([member]).predict(images(), verbose=0),
                               alone, rtol=1e-5, atol=1e-7)
    table = ensembles.evaluate([member], batches(labels()))
    assert table.loc["ensemble", "nll"] == pytest.approx(
        log_loss(labels(), alone.astype("float64"), labels=np.arange(CLASSES)), rel=1e-5)


def test_float16_logits_are_scored_from_a_float32_softmax():
    """A float16 member giving logits: evaluate's list path took their softmax in float16,
    whose tail (below 6e-8) was 0: an NLL of 20.7 where the ensemble path gave 15.0."""
    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    logits = keras.layers.Dense(2, dtype="float16", kernel_initializer="zeros",
                                bias_initializer=keras.initializers.Constant([0.0, -20.0]))(pooled)
    member = keras.Model(inputs, logits)
    y = np.array([0, 1, 1, 1])
    expected = log_loss(y, np.tile([1.0, np.exp(-20.0)], (4, 1)) / (1 + np.exp(-20.0)),
                        labels=[0, 1])
    for source in ([member], ensembles.Ensemble([member])):
        table = ensembles.evaluate(source, batches(y, images(4)))
        assert table.loc["ensemble", "nll"] == pytest.approx(expected, rel=1e-3)


@pytest.mark.all_backends
def test_a_wrapped_subclassed_classifier_is_read_as_probabilities():
    """A functional model around a subclassed classifier (no graph of its own) whose last
    layer is a softmax was read as giving logits: an ensemble took the softmax again."""
    from safeio.outputs import outputs_probabilities

    class Classifier(keras.Model):
        def __init__(self):
            super().__init__()
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.head = keras.layers.Dense(CLASSES, activation="softmax")

        def call(self, x):
            return self.head(self.pool(x))

    inputs = keras.Input((16, 16, 3))
    wrapped = keras.Model(inputs, Classifier()(keras.layers.Rescaling(1 / 255)(inputs)))
    assert outputs_probabilities(wrapped)
    alone = wrapped.predict(images(), verbose=0)
    np.testing.assert_allclose(ensembles.Ensemble([wrapped]).predict(images(), verbose=0),
                               alone, rtol=1e-5, atol=1e-7)


def test_probabilities_the_graph_does_not_show_are_said_to_be_softmaxed_again():
    """A member ending in keras.layers.Lambda(softmax) gives probabilities no graph check
    sees: evaluate took their softmax again without a word (10 classes: no probability
    above 0.23, the NLL and ECE meaningless, top-1 unchanged). The numbers tell: it warns,
    and reads the model as Ensemble, calibrate and the export read it."""
    logits = pooled_head(None)
    member = keras.Model(logits.input, keras.layers.Lambda(
        lambda x: keras.activations.softmax(x))(logits.output), name="lambda_head")
    with pytest.warns(UserWarning, match=r"lambda_head's outputs look like probabilities .* "
                                         r"their softmax is taken: .* meaningless"):
        table = ensembles.evaluate([member, member], batches(labels()))
    alone = ensembles.Ensemble([member]).predict(images(), verbose=0)  # the same reading
    assert table.loc["ensemble", "nll"] == pytest.approx(
        log_loss(labels(), alone.astype("float64"), labels=np.arange(CLASSES)), rel=1e-5)


def test_a_list_of_members_scored_together_is_checked_as_an_ensemble_is():
    """evaluate([...]) of a member of converted weights (which takes preprocessed pixels)
    beside one that takes images scored one of them on the wrong pixels without a word,
    where Ensemble([...]) refuses them; identical members' mutual information is never
    below 0 (float32 rounding made it -2e-7)."""
    from zoo.pretrained import TORCHVISION

    converted = zoo.saving.set_input_pixels(pooled_head("softmax"), TORCHVISION)
    plain = pooled_head("softmax")
    for call in (ensembles.Ensemble, lambda m: ensembles.evaluate(m, batches(labels()))):
        with pytest.raises(ValueError, match=r"an ensemble's one input cannot be both"):
            call([converted, plain])
    same = [pooled_head("softmax") for _ in range(3)]  # (one seed: equal weights)
    table = ensembles.uncertainty(ensembles.Ensemble(same), batches(labels()))
    assert (table["mutual_information"] >= 0).all()


@pytest.mark.all_backends
def test_sequential_members_and_googlenet_with_aux_heads_are_members():
    """A Sequential classifier, and a GoogLeNet trained with its auxiliary heads (the main
    head alone, as it predicts), join an ensemble and a snapshot ensemble."""
    sequential = keras.Sequential([keras.Input((79, 79, 3)), keras.layers.Flatten(),
                                   keras.layers.Dense(CLASSES, activation="softmax")])
    aux = zoo.googlenet(aux_logits=True, input_shape=(79, 79, 3), classes=CLASSES, width=0.125)
    x = images(3, size=79)
    model = ensembles.Ensemble([sequential, aux])
    expected = (sequential.predict(x, verbose=0) + aux.predict(x, verbose=0)) / 2
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-7)


def test_snapshots_of_a_googlenet_with_aux_heads(tmp_path):
    def build():
        return zoo.googlenet(aux_logits=True, input_shape=(79, 79, 3), classes=CLASSES,
                             width=0.125)

    trained = build()
    trained.save_weights(tmp_path / "snapshot-1.weights.h5")
    snapshot = ensembles.from_snapshots(build, tmp_path)
    x = images(2, size=79)
    np.testing.assert_allclose(snapshot.predict(x, verbose=0), trained.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-7)


def test_members_that_are_not_classifiers_and_bad_weights_are_refused():
    inputs = keras.Input((16, 16, 3))
    feature_map = keras.Model(inputs, keras.layers.Conv2D(CLASSES, 1)(inputs), name="fmap")
    with pytest.raises(ValueError, match=r"Member 1 \('fmap'\) outputs shape \(16, 16, 6\).*"
                                         r"include_top=False"):
        ensembles.Ensemble([pooled_head(), feature_map])
    unbuilt = keras.Sequential([keras.layers.Dense(CLASSES)], name="unbuilt")
    with pytest.raises(ValueError, match=r"Member 0 \('unbuilt'\) has no graph.*keras.Input"):
        ensembles.Ensemble([unbuilt])
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"`weights` must be 2 finite non-negative numbers"):
            ensembles.Ensemble([pooled_head(), pooled_head()], weights=[1, bad])


@pytest.mark.all_backends
def test_a_single_classifier_is_served_as_a_one_member_ensemble():
    member = pooled_head(None)
    served = ensembles.serving_model(member).predict(images(), verbose=0)
    np.testing.assert_allclose(served["probabilities"],
                               keras.ops.softmax(member.predict(images(), verbose=0)),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(served["mutual_information"], 0.0, atol=1e-6)


def test_crops_of_a_logits_model_average_probabilities():
    """data.predict_crops averages the probabilities of each crop, also for a model that
    outputs logits (zoo's builders with classifier_activation=None)."""
    model = pooled_head(None, size=12)
    x = images(3, size=16)
    mean, variance = data.predict_crops(model, x, tta="5crop")
    views = data.five_crop(x, 12)  # (n, 5, 12, 12, 3)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(
        model.predict(np.reshape(views, (-1, 12, 12, 3)), verbose=0))).reshape(3, 5, -1)
    np.testing.assert_allclose(mean, probs.mean(1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(variance, probs.var(1), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(mean.sum(1), 1.0, rtol=1e-5)


def test_crops_of_a_sigmoid_model_are_averaged_as_they_are():
    """Outputs within [0, 1] are probabilities (a sigmoid's too), never softmaxed."""
    model = pooled_head("sigmoid", classes=1, size=12)
    x = images(2, size=16)
    mean, _ = data.predict_crops(model, x, tta="5crop")
    views = np.reshape(data.five_crop(x, 12), (-1, 12, 12, 3))
    expected = model.predict(views, verbose=0).reshape(2, 5, 1).mean(1)
    np.testing.assert_allclose(mean, expected, rtol=1e-5)


@pytest.mark.parametrize("head", ["sigmoid", "tanh", "keras.ops.sigmoid"])
def test_a_sigmoid_head_is_one_line_where_the_classes_are_one_softmax(head, tmp_path):
    """A sigmoid's (or tanh's) outputs are neither a softmax's probabilities nor logits:
    read as logits, an ensemble, evaluate and zoo.predict gave all but uniform
    probabilities (1/3 each) and an NLL of ln 3 without a word. A ReLU's stay logits."""
    if head == "keras.ops.sigmoid":
        inputs = keras.Input((16, 16, 3))
        pooled = keras.layers.GlobalAveragePooling2D()(inputs)
        model = keras.Model(inputs, keras.ops.sigmoid(keras.layers.Dense(CLASSES)(pooled)))
        head = "sigmoid"
    else:
        model = pooled_head(head)
    data_ = tf.data.Dataset.from_tensor_slices((images(4), labels(4))).batch(2)
    for call in (lambda: ensembles.Ensemble([model, pooled_head("softmax")]),
                 lambda: ensembles.evaluate(model, data_),
                 lambda: ensembles.export(model, str(tmp_path / "never_written"))):
        with pytest.raises(ValueError, match=rf"ends in a {head} \('.*'\): a classifier here "
                                             r"outputs a softmax's probabilities, or logits"):
            call()
    assert not os.path.exists(tmp_path / "never_written")
    relu = pooled_head("relu")
    np.testing.assert_allclose(ensembles.Ensemble([relu]).predict(images(2), verbose=0),
                               keras.ops.softmax(relu.predict(images(2), verbose=0)),
                               rtol=1e-5, atol=1e-7)


def test_crops_of_a_first_batch_with_a_nan_image_still_read_probabilities():
    """predict_crops tells logits from probabilities by the first batch's numbers: one NaN
    image there made them "not all within [0, 1]", and every later batch's probabilities
    were softmaxed again. Non-finite outputs say nothing now."""
    model = pooled_head("softmax", size=12)
    x = images(4, size=16)
    x[0, 3, 3, 0] = np.nan  # the first batch holds a NaN image
    mean, _ = data.predict_crops(model, tf.data.Dataset.from_tensor_slices(x).batch(2),
                                 tta="5crop")
    views = np.reshape(data.five_crop(x[2:], 12), (-1, 12, 12, 3))
    expected = model.predict(views, verbose=0).reshape(2, 5, -1).mean(1)
    np.testing.assert_allclose(mean[2:], expected, rtol=1e-5)
    assert np.isnan(mean[0]).all() and np.isfinite(mean[1]).all()


def test_the_public_metrics_check_what_they_are_given():
    """metrics.nll of logits gave -0.0 (clipped to 1), disagreement of one model's (n,
    classes) array compared every example with every other (a hang at ImageNet's n), and
    the ECE of no examples was 0.0, perfect calibration: each is one line."""
    m = ensembles.metrics
    logits, y = np.array([[3.0, -1.0], [2.0, 0.5]]), np.array([0, 0])
    for metric in (m.nll, m.brier, m.top_k_error, m.ece):
        with pytest.raises(ValueError, match=r"logits\? apply a softmax first"):
            metric(logits, y)
    one_model = np.full((300, 3), 1 / 3)
    for diversity in (m.disagreement, m.average_kl):
        with pytest.raises(ValueError, match=r"member probabilities shaped \(members, n, "
                                             r"classes\), of one member at least; received "
                                             r"shape \(300, 3\)"):
            diversity(one_model)
        with pytest.raises(ValueError, match=r"received shape \(0, 300, 3\)"):
            diversity(np.zeros((0, 300, 3)))  # (no member: it was 0.0)
    with pytest.raises(ValueError, match="at least one example; received none"):
        m.ece(np.zeros((0, 3)), [])
    with pytest.raises(ValueError, match="at least one example; received none"):
        m.scores(np.zeros((0, 3)), [])
    # entropy checked nothing (logits gave 2.8e-11, a row summing to 0.2 gave 0.46);
    # 10**9 bins looped for 10 minutes; an infinite label was "received -9223372036854775808";
    # complex probabilities lost their imaginary part without a word.
    for call, message in (
            (lambda: m.entropy(logits), r"logits\? apply a softmax first"),
            (lambda: m.entropy([[0.1, 0.1]]), r"rows summing to 0.2"),
            (lambda: m.ece(np.full((2, 2), 0.5), [0, 1], bins=10**9),
             r"`bins` must be at most 10,000; received 1,000,000,000"),
            (lambda: m.nll(np.full((2, 2), 0.5), [0, np.inf]), r"Labels must be finite "
                                                                r"class indices; received inf"),
            (lambda: m.nll(np.full((2, 2), 0.5 + 0j), [0, 1]), r"real numbers; received "
                                                               r"complex128 values")):
        with pytest.raises(ValueError, match=message):
            call()
    np.testing.assert_allclose(m.entropy([[0.5, 0.5], [1.0, 0.0]]), [np.log(2), 0.0],
                               atol=1e-9)
    for fit in (ensembles.nll_weights, ensembles.greedy_counts):  # (NumPy's zero-size error)
        with pytest.raises(ValueError, match=r"of one member at least; received \(0, 2, 2\)"):
            fit(np.zeros((0, 2, 2)), [0, 1])


def test_labels_that_are_names_are_one_line():
    with pytest.raises(ValueError, match=r"class indices \(integers\); received <U3 values"):
        ensembles.metrics.class_labels(np.array(["cat", "dog"]), classes=2)


@pytest.mark.all_backends
@pytest.mark.parametrize("head", ["ops_softmax", "activation_layer"])
def test_distillation_reads_the_logits_under_any_softmax(head):
    from ensembles.distillation import logits_of

    logits = pooled_head(None)
    softmax = (keras.ops.softmax if head == "ops_softmax"
               else keras.layers.Activation("softmax"))
    member = keras.Model(logits.input, softmax(logits.output))
    read = keras.Model(member.input, logits_of(member))
    np.testing.assert_allclose(read.predict(images(), verbose=0),
                               logits.predict(images(), verbose=0), rtol=1e-5, atol=1e-6)


# --- arrays handed to the metrics, weights and temperatures -------------------------------------


def test_arrays_that_are_not_probabilities_are_one_line():
    """fit_temperature once fitted T = 36 to logits, and greedy_counts chose a member with
    one NaN probability every round: NaN, logits and rows that are not distributions are
    refused, naming what was received."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(2, 50))
    y = rng.integers(0, 3, 50)
    with pytest.raises(ValueError, match=r"values in \[-\d.*, rows summing to .*logits\? "
                                         r"apply a softmax first"):
        ensembles.fit_temperature(np.log(probs[0]), y)
    with_nan = probs.copy()
    with_nan[1, 7, 0] = np.nan
    for call in (ensembles.nll_weights, ensembles.greedy_counts):
        with pytest.raises(ValueError, match=r"Expected member probabilities; received NaN or "
                                             r"infinite values in 1 of 100 rows \(the first: "
                                             r"row 57\)"):
            call(with_nan, y)
    with pytest.raises(ValueError, match=r"rows summing to 0.5..0.5\."):
        ensembles.fit_temperature(probs[0] / 2, y)
    assert ensembles.fit_temperature(probs[0].astype("float16"), y) > 0  # rounded: accepted


def test_reliability_reads_keras_sparse_labels_and_refuses_a_stack_of_members(tmp_path):
    """plot_reliability took labels shaped (n, 1) for an (n, n) comparison (about 10 %
    accuracy in every bin for a model always right), and members' probabilities stacked
    (members, n, classes) for an ECE as many times too large."""
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(CLASSES, 0.3), size=40)
    right = probs.argmax(axis=1)
    assert ensembles.metrics.ece(probs, right[:, None]) == pytest.approx(
        1 - probs.max(axis=1).mean())  # always right: the ECE is the mean under-confidence
    figure = ensembles.plot_reliability(probs, right[:, None], tmp_path / "r.png")
    same = ensembles.plot_reliability(probs, right)
    assert figure.axes[0].get_title() == same.axes[0].get_title()
    with pytest.raises(ValueError, match=r"Expected probabilities shaped \(40, classes\) for "
                                         r"40 labels; received shape \(2, 40, 6\)"):
        ensembles.plot_reliability(np.stack([probs, probs]), right)
    with pytest.raises(ValueError, match=r"`bins` must be a positive integer; received 0"):
        ensembles.metrics.ece(probs, right, bins=0)


def test_one_model_that_is_no_classifier_is_one_line():
    """A feature map (include_top=False) evaluated alone was flattened into h*w*c
    "classes" and scored."""
    inputs = keras.Input((16, 16, 3))
    feature_map = keras.Model(inputs, keras.layers.Conv2D(CLASSES, 1)(inputs), name="fmap")
    with pytest.raises(ValueError, match=r"fmap gives shape \(16, 16, 6\) per example; "
                                         r"evaluation takes classifiers"):
        ensembles.evaluate(feature_map, batches(labels()))


def test_float16_probabilities_with_zeros_give_finite_numbers():
    """float16 floors of 1e-12 round to 0: a zero probability gave log 0 = -inf, a NaN
    slope, and a temperature bisected on NaN. They are read as float32."""
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.full(CLASSES, 0.2), size=60)
    probs[probs < 0.01] = 0.0
    probs /= probs.sum(axis=1, keepdims=True)
    y = rng.integers(0, CLASSES, 60)
    half = probs.astype("float16")
    assert ensembles.fit_temperature(half, y) == pytest.approx(
        ensembles.fit_temperature(half.astype("float32"), y), rel=1e-6)
    scores = ensembles.metrics.scores(half, y)
    assert np.isfinite(list(scores.values())).all()
    assert scores["nll"] == pytest.approx(  # as the same numbers in float64
        ensembles.metrics.nll(half.astype("float64"), y), rel=1e-3)


def test_uniform_predictions_fit_the_temperature_one_without_a_warning():
    """Equal probabilities are the same at every T: their slope is 0 but for rounding
    (2e-16), which once read as "keeps falling" and returned 100 with a warning."""
    import warnings

    probs = np.full((30, 3), 1 / 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ensembles.fit_temperature(probs, np.arange(30) % 3) == 1.0


def test_images_of_another_shape_than_the_models_take_are_one_line():
    """Grey images for an RGB model (or images of another size) were Keras' shape error,
    printed with its terminal colour codes, from inside predict."""
    model = pooled_head("softmax")
    for shape in ((4, 16, 16, 1), (4, 12, 12, 3)):
        ds = tf.data.Dataset.from_tensors((np.zeros(shape, "float32"), labels(4)))
        with pytest.raises(ValueError, match=rf"The images are shaped "
                                             rf"\({shape[1]}, {shape[2]}, {shape[3]}\) as the "
                                             r"models see them, and .* takes \(16, 16, 3\)"):
            ensembles.evaluate(model, ds)


def test_public_helpers_given_something_else_say_what_they_take():
    """metrics.nll(None, y) was an IndexError ('tuple index out of range'),
    plot_size_curve('x') 'string indices must be integers', with_member_outputs('x')
    "'str' object has no attribute 'outputs'"."""
    y = np.array([0, 1])
    for given in (None, "x", [[0.5, 0.5], [1.0]]):
        with pytest.raises(ValueError, match=r"^Expected probabilities shaped \(examples, "
                                             r"classes\); received \w+ of shape "):
            ensembles.metrics.nll(given, y)
    assert ensembles.metrics.nll([[0.5, 0.5], [0.25, 0.75]], y) == pytest.approx(
        log_loss(y, [[0.5, 0.5], [0.25, 0.75]]))
    # (an empty DataFrame or a Series had their printed form, three lines, in the message)
    for given in ("x", pd.DataFrame({"top1_error": [0.1]}), pd.DataFrame(), pd.Series([1.0])):
        with pytest.raises(ValueError, match=r"^plot_size_curve takes size_curve's table \(a "
                                             r"DataFrame with top1_error and nll per member "
                                             r"count\); received (str 'x'|DataFrame with "
                                             r"columns \['top1_error'\]|DataFrame|Series)\.$"):
            ensembles.plots.plot_size_curve(given)
    # A table of no rows drew a blank figure and saved it.
    with pytest.raises(ValueError, match=r"^plot_size_curve received a table of no rows"):
        ensembles.plots.plot_size_curve(pd.DataFrame(columns=["top1_error", "nll"]))
    with pytest.raises(ValueError, match=r"^with_member_outputs takes an ensemble "
                                         r"\(ensembles.Ensemble, or one loaded with "
                                         r"zoo.load_model\); received 'x' \(str\)\.$"):
        ensembles.ensemble.with_member_outputs("x")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_a_global_mixed_precision_policy_leaves_the_tables_alone(policy):
    """The tables combined the members' probabilities in the global policy's dtype: under
    mixed_float16 the ensemble's NLL moved (11.62 -> 12.19 on saturated members), and under
    mixed_bfloat16 every table was 'received bfloat16 values'. They combine in float32, as
    the ensemble's own layer does; bfloat16 probabilities (such models' predict) are read."""
    import ml_dtypes

    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(CLASSES, 0.05), size=(2, 40)).astype("float32")
    y = rng.integers(0, CLASSES, 40)
    once = (["a", "b"], probs, y)
    members = [pooled_head("softmax", seed) for seed in (0, 1)]
    expected = ensembles.evaluate(members, None, predictions=once)
    curve = ensembles.size_curve(members, None, predictions=once)
    spread = ensembles.uncertainty(members, None, predictions=once)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        pd.testing.assert_frame_equal(ensembles.evaluate(members, None, predictions=once),
                                      expected)
        pd.testing.assert_frame_equal(ensembles.size_curve(members, None, predictions=once),
                                      curve)
        pd.testing.assert_frame_equal(ensembles.uncertainty(members, None, predictions=once),
                                      spread)
    finally:
        keras.config.set_dtype_policy(previous)
    assert curve.loc[1, "nll"] == pytest.approx(expected.loc["a", "nll"])
    rounded = probs[0].astype(ml_dtypes.bfloat16)
    assert ensembles.metrics.scores(rounded, y) == pytest.approx(
        ensembles.metrics.scores(rounded.astype("float32"), y))


def test_given_predictions_of_members_that_differ_or_hold_nan_name_the_member():
    """Members of 6 and 3 classes given as arrays were NumPy's 'inhomogeneous shape'; a NaN
    in member b's third example was 'row 14', a row of members and examples flattened."""
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(CLASSES), size=(3, 12))
    y = rng.integers(0, CLASSES, 12)
    members = [pooled_head("softmax", seed) for seed in (0, 1, 2)]
    ragged = [probs[0], probs[1][:, :3], probs[2]]
    with pytest.raises(ValueError, match=r"^Expected predictions of one shape \(the same "
                                         r"examples and classes\); received a: \(12, 6\), "
                                         r"b: \(12, 3\), c: \(12, 6\)\.$"):
        ensembles.evaluate(members, None, predictions=(["a", "b", "c"], ragged, y))
    for diversity in (ensembles.metrics.disagreement, ensembles.metrics.average_kl):
        with pytest.raises(ValueError, match=r"received 0: \(12, 6\), 1: \(12, 3\)"):
            diversity(ragged)
    probs[1, 2, 0] = np.nan
    for table in (ensembles.evaluate, ensembles.uncertainty):
        with pytest.raises(ValueError, match=r"^1 of 12 inputs get NaN or infinite "
                                             r"probabilities from b \(inputs \[2\]\)"):
            table(members, None, predictions=(["a", "b", "c"], probs, y))


def test_labels_too_large_for_an_integer_name_themselves_and_a_perfect_nll_is_zero():
    """1e20 and uint64's 2**63 + 5 were cast to int first: 'received -9223372036854775808..0'
    with NumPy's RuntimeWarning. A perfect model's NLL was -0.0, printed as such."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"lie in \[0, 3\) for 3 classes; received "
                                             r"0\.\.100000000000000000000\.$"):
            ensembles.metrics.class_labels(np.array([0.0, 1e20]), 3)
        with pytest.raises(ValueError, match=r"received 0\.\.9223372036854775813\.$"):
            ensembles.metrics.class_labels(np.array([0, 2**63 + 5], np.uint64), 3)
    perfect = ensembles.metrics.nll(np.eye(3), [0, 1, 2])
    assert perfect == 0.0 and str(perfect) == "0.0"
    # Below the 1e-12 floor the NLL parts from scikit-learn's (float64's epsilon), as said.
    saturated, y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), np.array([0, 1, 1])
    assert ensembles.metrics.nll(saturated, y) == pytest.approx(-np.log(1e-12) / 3)
    assert log_loss(y, saturated) == pytest.approx(-np.log(np.finfo(float).eps) / 3)
