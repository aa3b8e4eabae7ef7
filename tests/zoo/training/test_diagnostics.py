"""The lecture notes' training diagnostics: initial loss, overfitting a tiny subset, update
ratios, dead ReLUs, and the random search."""

import io
import json
import math
import os
import re
import signal
import textwrap
import warnings

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import zoo
from tests.helpers import SMALL_VGG, last_json_line, run_python, tiny_data, tiny_model
from zoo import cli, diagnostics


def _small_resnet(classes=4, **kwargs):
    return zoo.resnet18(input_shape=(8, 8, 3), classes=classes, width=0.25, stem="cifar",
                        **kwargs)


def test_initial_loss_is_the_first_training_steps_with_batch_statistics():
    """A network with BatchNormalization was scored in inference mode, on moving statistics
    still 0 and 1 (a fresh ResNet-20's loss read 13.5 for the 3.3 its first step sees): the
    loss is Keras' cross-entropy of the model in training mode, and the model is left as
    it was (its moving statistics included)."""
    model = _small_resnet()
    images, labels = next(iter(tiny_data(n=64, batch=64)))
    before = [w.copy() for w in model.get_weights()]
    check = diagnostics.initial_loss(model, tiny_data(n=64, batch=64))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    first_step = keras.losses.SparseCategoricalCrossentropy()(labels, model(images,
                                                                            training=True))
    assert check.value == pytest.approx(float(first_step), rel=1e-5)


def test_initial_loss_of_a_subclassed_model_with_batch_normalization():
    """keras.models.clone_model takes no subclassed model: checked as it is, in inference
    mode, as before (a copy for the batch statistics was a raw Keras error)."""

    class Small(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv, self.norm = keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.head = keras.layers.Dense(4, activation="softmax")

        def call(self, x, training=False):
            return self.head(self.pool(self.norm(self.conv(x), training=training)))

    model = Small()
    images, labels = next(iter(tiny_data(n=32, batch=32)))
    check = diagnostics.initial_loss(model, tiny_data(n=32, batch=32))
    assert check.value == pytest.approx(float(keras.losses.SparseCategoricalCrossentropy()(
        labels, model(images, training=False))), rel=1e-5)


def test_initial_loss_is_ok_for_a_fresh_model_and_flags_a_misscaled_output_layer():
    model = _small_resnet(zero_init_residual=True)  # (Goyal et al.: ln(C) at the start)
    check = diagnostics.initial_loss(model, tiny_data(n=64), batches=4)
    assert check.ok and abs(check.value - math.log(4)) < 0.5, check
    layer = model.get_layer("predictions")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * 100.0, bias])  # the mis-scaled output layer
    check = diagnostics.initial_loss(model, tiny_data(n=64), batches=4)
    assert not check.ok and check.value > math.log(4) + 0.5
    assert "far above ln(4) = 1.386" in check.verdict and "mis-scaled" in check.verdict


def test_initial_loss_of_a_logits_model_uses_the_logits():
    model = _small_resnet(classifier_activation=None, zero_init_residual=True)
    check = diagnostics.initial_loss(model, tiny_data(n=32))
    assert check.ok and check.expected.startswith("ln(4)")


def test_overfit_tiny_subset_passes_for_a_working_model_and_fails_without_learning():
    model = tiny_model()
    before = [w.copy() for w in model.get_weights()]
    check = diagnostics.overfit_tiny_subset(model, tiny_data(n=64), examples=20, steps=150,
                                            learning_rate=0.1)
    assert check.ok and check.value >= 0.99, check
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    stuck = diagnostics.overfit_tiny_subset(model, tiny_data(n=64), examples=20, steps=5,
                                            learning_rate=1e-12)
    assert not stuck.ok and "cannot even memorise" in stuck.verdict
    with pytest.raises(ValueError, match="has 16 examples; the check needs 20"):
        diagnostics.overfit_tiny_subset(model, tiny_data(n=16), examples=20)


def test_initial_loss_reads_any_label_layout_and_a_softmax_op_output():
    """Unbatched data and (batch, 1) labels give the batched value; a keras.ops.softmax
    output is probabilities (Keras' own loss on the outputs is the reference); one-hot
    labels, labels past the classes and bad arguments are one line."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.ops.softmax(keras.layers.Dense(4)(x)))
    images, labels = next(iter(tiny_data(n=16)))
    expected = float(keras.losses.SparseCategoricalCrossentropy()(labels, model(images)))
    batched = diagnostics.initial_loss(model, tiny_data(n=16))
    assert batched.value == pytest.approx(expected, rel=1e-5)
    unbatched = diagnostics.initial_loss(model, tiny_data(n=16).unbatch(), batches=16)
    column = tiny_data(n=16).map(lambda x, y: (x, y[:, None]))
    assert unbatched.value == pytest.approx(expected, rel=1e-5)
    assert diagnostics.initial_loss(model, column).value == pytest.approx(expected, rel=1e-5)
    one_hot = tiny_data(n=16).map(lambda x, y: (x, tf.one_hot(y, 4)))
    with pytest.raises(ValueError, match=r"integer class labels of shape \(batch,\); "
                                         r"received shape \(16, 4\) of float32"):
        diagnostics.initial_loss(model, one_hot)
    with pytest.raises(ValueError, match=r"Labels must lie in \[0, 3\) .* from 0 to 3"):
        diagnostics.initial_loss(_small_resnet(classes=3), tiny_data(n=64))
    for kwargs, message in (({"batches": 0}, "`batches` must be a positive integer"),
                            ({"tolerance": -1}, "`tolerance` \\(in nats\\) must be a finite positive")):
        with pytest.raises(ValueError, match=message):
            diagnostics.initial_loss(model, tiny_data(n=16), **kwargs)


def test_overfit_tiny_subset_checks_its_arguments_and_fits_quietly():
    model = tiny_model()
    for kwargs, message in (({"examples": 0}, "`examples` must be a positive integer"),
                            ({"steps": 0}, "`steps` must be a positive integer"),
                            ({"target": 1.5}, r"`target` must be an accuracy in \(0, 1\]")):
        with pytest.raises(ValueError, match=message):
            diagnostics.overfit_tiny_subset(model, tiny_data(n=32), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warned that shuffle=True was ignored
        diagnostics.overfit_tiny_subset(model, tiny_data(n=32).unbatch(), examples=8, steps=2)


def test_without_regularisation_zeroes_dropout_and_drops_regularizers():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, kernel_regularizer="l2", name="dense")(inputs)
    x = keras.layers.Dropout(0.7, name="drop")(x)
    model = keras.Model(inputs, x)
    clean = diagnostics.without_regularisation(model)
    assert clean.get_layer("drop").rate == 0.0
    assert clean.get_layer("dense").kernel_regularizer is None
    assert model.get_layer("drop").rate == 0.7  # the original is untouched


def test_without_regularisation_reaches_dropconnect_noise_and_nested_models():
    """The overfit check trained with DropConnect (rate 0.5 by default) and with the
    Dropout of a nested model still on, and failed for the wrong reason."""
    from zoo.layers import DropConnectDense

    inner_in = keras.Input((3,))
    inner = keras.Model(inner_in, keras.layers.Dropout(0.5, name="inner_drop")(inner_in),
                        name="inner")
    inputs = keras.Input((4,))
    x = DropConnectDense(3, rate=0.5, name="dropconnect")(inputs)
    x = keras.layers.GaussianNoise(0.3, name="noise")(x)
    x = keras.layers.GaussianDropout(0.2, name="gaussian_drop")(x)
    model = keras.Model(inputs, inner(x))
    clean = diagnostics.without_regularisation(model)
    assert clean.get_layer("dropconnect").rate == 0.0
    assert clean.get_layer("noise").stddev == 0.0
    assert clean.get_layer("gaussian_drop").rate == 0.0
    assert clean.get_layer("inner").get_layer("inner_drop").rate == 0.0
    assert model.get_layer("inner").get_layer("inner_drop").rate == 0.5
    batch = np.ones((2, 4), "float32")
    np.testing.assert_allclose(clean(batch, training=True), clean(batch, training=False),
                               rtol=1e-6)


def test_overfit_check_reads_training_accuracy_beside_lagging_batch_statistics():
    """`Check.value` is the training accuracy, as documented: it was evaluate's, in
    inference mode, where batch normalisation's moving averages (momentum 0.999 here,
    0.99 in AlexNet's norm="batch") had not caught up, and a model that memorised the
    subset failed the check."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(50.0, offset=100.0)(inputs)  # far from the averages' start
    x = keras.layers.Conv2D(16, 3, name="conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.999, name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    check = diagnostics.overfit_tiny_subset(model, tiny_data(n=64), examples=20, steps=150,
                                            learning_rate=0.1)
    assert check.ok and check.value >= 0.99, check


def test_update_ratio_logger_matches_one_sgd_step():
    model = tiny_model()
    dataset = tiny_data(n=16, batch=16)  # one step per epoch
    images, labels = next(iter(dataset))
    kernel = model.get_layer("conv").kernel
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels,
                                                                          model(images)))
    gradient = tape.gradient(loss, kernel)
    expected = 0.1 * np.linalg.norm(gradient) / np.linalg.norm(kernel.numpy())
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    logger = diagnostics.UpdateRatioLogger(every=1)
    model.fit(dataset, epochs=1, verbose=0, callbacks=[logger])
    history = logger.history
    assert list(history["layer"]) == ["conv", "predictions"]
    ratio = history.set_index("layer").loc["conv", "ratio"]
    np.testing.assert_allclose(ratio, expected, rtol=1e-4)


def test_update_ratio_logger_logs_every_epoch_and_warns_when_far_off(tmp_path):
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(5.0), loss="sparse_categorical_crossentropy")
    path = os.path.join(tmp_path, "ratios.csv")
    logger = diagnostics.UpdateRatioLogger(every=2, path=path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(tiny_data(n=64), epochs=2, verbose=0, callbacks=[logger])
    history = logger.history
    assert list(history["epoch"]) == [1, 1, 2, 2]
    assert (history["ratio"] > 0).all() and np.isfinite(history["ratio"]).all()
    said = [w for w in caught if "update/weight ratio outside" in str(w.message)]
    # Named at its own line: with stacklevel=2 it named Keras' line that called the
    # callback, and zoo diagnose showed it in Python's two lines, not as its own warning.
    assert said and all(w.filename == diagnostics.__file__ for w in said), said
    assert len(open(path).read().splitlines()) == 5
    check = diagnostics.update_ratio_check(history)
    assert not check.ok and "lower the learning rate" in check.verdict
    with pytest.raises(ValueError, match="`every` must be a positive integer; received 0"):
        diagnostics.UpdateRatioLogger(every=0)


def test_activation_report_counts_dead_units_exactly():
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(4, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, outputs)
    model.get_layer("hidden").set_weights([np.zeros((3, 4)), np.array([-1.0, -1.0, 1.0, 2.0])])
    report = diagnostics.activation_report(model, np.ones((5, 3), "float32"))
    row = report.loc["hidden"]
    assert row["relu"] and row["units"] == 4
    assert row["dead_fraction"] == 0.5 and row["zero_fraction"] == 0.5
    assert row["mean"] == pytest.approx(0.75) and row["std"] == pytest.approx(np.std([0, 0, 1, 2]))
    # Weights turned NaN (a diverged run): NaN is never <= 0, and every unit was counted
    # alive, "[ok] 0.0 % of ReLU units dead"; so was a NaN update ratio left without advice.
    model.get_layer("hidden").set_weights([np.full((3, 4), np.nan), np.zeros(4)])
    check = diagnostics.dead_relu_check(diagnostics.activation_report(
        model, np.ones((5, 3), "float32")))
    assert not check.ok and check.verdict.startswith(
        "the activations are not finite (NaN or inf) in 1 of 1 ReLU layers (hidden)")
    for ratios in ([np.nan, np.nan], [1e-3, 1e-3, np.nan]):  # (pandas' median skips NaN)
        history = pd.DataFrame({"epoch": 1, "layer": list("abc"[:len(ratios)]),
                                "ratio": ratios})
        check = diagnostics.update_ratio_check(history)
        assert not check.ok and "not finite (the run diverged); lower the learning rate" in (
            check.verdict), ratios


def test_the_checks_reach_into_a_wrapped_network():
    """A functional model around a network (as with_preprocessing and fine_tune make):
    the activation report said it had no activation layers, and the update ratios were
    one row, the nested network's first kernel."""
    inner = tiny_model()
    inputs = keras.Input((8, 8, 3))
    wrapped = keras.Model(inputs, inner(keras.layers.Rescaling(2.0)(inputs)), name="wrapped")
    images, labels = next(iter(tiny_data(n=16, batch=16)))
    report = diagnostics.activation_report(wrapped, images)
    alone = diagnostics.activation_report(inner, images.numpy() * 2.0)
    assert list(report.index) == ["tiny/conv"] and report.loc["tiny/conv", "relu"]
    np.testing.assert_allclose(report.loc["tiny/conv", ["mean", "std", "zero_fraction"]],
                               alone.loc["conv", ["mean", "std", "zero_fraction"]], rtol=1e-5)
    wrapped.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    logger = diagnostics.UpdateRatioLogger(every=1)
    wrapped.fit(images, labels, epochs=1, verbose=0, callbacks=[logger])
    assert list(logger.history["layer"]) == ["tiny/conv", "tiny/predictions"]
    # A Sequential, alone and nested (it has no `operations` of its own).
    block = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c"),
                              keras.layers.ReLU(name="r")], name="block")
    assert list(diagnostics.activation_report(block, images).index) == ["r"]
    outer = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(block(inputs)))
    assert list(diagnostics.activation_report(outer, images).index) == ["block/r"]


def test_dead_relu_report_on_a_network_initialised_to_kill_its_units():
    images = next(iter(tiny_data(n=16, size=67)))[0]
    healthy = zoo.alexnet(input_shape=(67, 67, 3), classes=4, width=32, kernel_initializer="he")
    check = diagnostics.dead_relu_check(diagnostics.activation_report(healthy, images))
    assert check.ok, check
    dead = zoo.alexnet(input_shape=(67, 67, 3), classes=4, width=32, kernel_initializer="he")
    for layer in dead.layers:
        if layer.name.startswith(("conv", "fc")):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, np.full_like(bias, -50.0)])  # every pre-activation < 0
    report = diagnostics.activation_report(dead, images)
    relus = report[report["relu"]]
    assert len(relus) == 7 and (relus["dead_fraction"] == 1.0).all()
    check = diagnostics.dead_relu_check(report)
    assert not check.ok and "100.0 % of ReLU units dead" in check.verdict
    assert "in 7 of 7 layers" in check.verdict and "lower the learning rate" in check.verdict
    # At initialisation no learning rate has acted: its advice is the initialisation's
    at_init = diagnostics.dead_relu_check(report, trained=False)
    assert at_init.verdict.endswith("change the initialisation/biases (the learning rate "
                                    "has not acted yet)"), at_init.verdict


def test_activation_report_covers_the_other_activations():
    model = _small_resnet(activation="elu")
    with warnings.catch_warnings(record=True) as caught:  # (Keras' "structure of inputs
        warnings.simplefilter("always")                   # doesn't match", twice: noise)
        report = diagnostics.activation_report(model, np.zeros((2, 8, 8, 3), "float32"))
    assert not [w for w in caught if "structure" in str(w.message)]
    assert not report["relu"].any() and report["dead_fraction"].isna().all()
    assert "conv1_elu" in report.index
    assert diagnostics.dead_relu_check(report).ok
    for threshold in (2.0, float("nan"), "0.5"):  # (each was always "ok")
        with pytest.raises(ValueError, match=r"`threshold` must be a fraction of the units "
                                             r"in \[0, 1\)"):
            diagnostics.dead_relu_check(report, threshold=threshold)


def _tiny_builder(dropout=0.0, width=8):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(width, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))


def test_a_tiny_search_runs_coarse_then_fine(tmp_path):
    def run():
        return zoo.search(_tiny_builder, tiny_data(n=32), tiny_data(n=32, seed=1), trials=2,
                          fine_trials=2, epochs=1, learning_rate=(1e-3, 1.0),
                          weight_decay=(1e-6, 1e-3), dropout=(0.0, 0.5), width=[4, 8], top=1,
                          run_dir=str(tmp_path))

    result = run()
    table = result.table
    # Run again, its trials done: the same table, in the trials' order (a resume listed the
    # oracle's reloaded trials in another order).
    pd.testing.assert_frame_equal(run().table, table)
    # The oracle may reload them in any order (it did, resumed): the rows keep the trials'.
    from types import SimpleNamespace

    from zoo.training.search import _trials_table

    def trial(trial_id):
        return SimpleNamespace(trial_id=trial_id, score=0.5, hyperparameters=SimpleNamespace(
            values={"learning_rate": 0.1}), metrics=SimpleNamespace(
            exists=lambda name: False))

    reloaded = SimpleNamespace(oracle=SimpleNamespace(trials={
        k: trial(k) for k in ("10", "02", "00", "01")}))
    assert list(_trials_table(reloaded, "coarse")["trial"]) == ["00", "01", "02", "10"]
    assert list(table["stage"]) == ["coarse", "coarse", "fine", "fine"]
    assert table["learning_rate"].between(1e-3, 1.0).all()
    assert table["weight_decay"].between(1e-6, 1e-3).all()
    assert set(table["width"]) <= {4, 8} and table["dropout"].between(0, 0.5).all()
    assert table["val_top1_error"].between(0, 1).all()
    # The fine stage searches within half a decade of the best coarse trial.
    best = table[table["stage"] == "coarse"].nsmallest(1, "val_top1_error").iloc[0]
    fine = table[table["stage"] == "fine"]
    assert (np.abs(np.log10(fine["learning_rate"] / best["learning_rate"])) <= 0.5 + 1e-9).all()
    assert (fine["width"] == best["width"]).all()
    assert result.best["val_top1_error"] == table["val_top1_error"].min()
    figure = zoo.plot_search(table, os.path.join(tmp_path, "search.png"))
    assert open(os.path.join(tmp_path, "search.png"), "rb").read(4) == b"\x89PNG"
    assert len(figure.axes[0].collections) == table["stage"].nunique()  # a scatter per stage
    # Every trial at one error (a tiny search at chance): one colour for both stages (the
    # coarse trials took the colour bar's best end, the fine ones another).
    tied = zoo.plot_search(table.assign(val_top1_error=0.9)).axes[0].collections
    colours = np.concatenate([points.to_rgba(points.get_array()) for points in tied])
    assert len(np.unique(colours.round(6), axis=0)) == 1, colours
    with pytest.raises(ValueError, match=r"a row per trial .*; received 0 row\(s\)\.$"):
        zoo.plot_search(table.iloc[:0])
    with pytest.raises(ValueError, match=r"received 4 row\(s\) without \['weight_decay'\]"):
        zoo.plot_search(table.drop(columns="weight_decay"))
    with pytest.raises(ValueError, match=r"SearchResult.table\); received a SearchResult"):
        zoo.plot_search(result)
    with pytest.raises(ValueError, match=r"`learning_rate`.*log scale.*received \(0, 1\)"):
        zoo.search(_tiny_builder, None, None, learning_rate=(0, 1))


def test_search_refuses_what_it_cannot_rank_or_would_mix(tmp_path):
    """A built model (every trial would train the same one), no validation data, a bad
    fine_trials, and a second search with other settings in a run_dir: keras-tuner would
    take the trials there as its own."""
    train, val = tiny_data(n=16), tiny_data(n=16, seed=1)
    with pytest.raises(ValueError, match=r"function building the model \(every trial "
                                         r"builds a fresh one\); received Functional"):
        zoo.search(_tiny_builder(), train, val)
    with pytest.raises(ValueError, match="ranks its trials on validation data: pass val_data"):
        zoo.search(_tiny_builder, train, None)
    with pytest.raises(ValueError, match=r"`fine_trials` must be a non-negative integer; "
                                         r"received 1.5"):
        zoo.search(_tiny_builder, train, val, fine_trials=1.5)
    run_dir = str(tmp_path / "search")
    kwargs = dict(trials=1, fine_trials=0, epochs=1, run_dir=run_dir)
    first = zoo.search(_tiny_builder, train, val, **kwargs)
    again = zoo.search(_tiny_builder, train, val, **kwargs)  # the same: resumed, as it was
    pd.testing.assert_frame_equal(again.table, first.table)
    with pytest.raises(ValueError, match=r"holds a search with other settings "
                                         r"\(space\.learning_rate\)"):
        zoo.search(_tiny_builder, train, val, learning_rate=(0.5, 0.9), **kwargs)


def test_a_searched_value_fixed_too_is_refused_and_ties_go_to_the_lower_loss(capsys):
    """--width with --model-arg width trained every trial at the searched widths without a
    word; of trials with equal errors the best was whichever came first, another trial in
    a rerun (keras-tuner's order)."""
    import pandas as pd

    from tests.helpers import SMALL_VGG
    from zoo import cli
    from zoo.training.search import _ranked

    with pytest.raises(ValueError, match=r"width is searched and also fixed in model_kwargs "
                                         r"\(width=8\): give one of them"):
        zoo.search("alexnet", None, None, model_kwargs={"width": 8}, width=[4, 8])
    assert cli.main(["search", *SMALL_VGG, "--width", "0.125", "--dropout", "0.1", "0.5",
                     "--model-arg", "dropout=0.2"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--width with --model-arg width=0.0625; --dropout with --model-arg dropout=0.2: a "
        "value is searched or fixed, not both; give one of them.")
    trials = pd.DataFrame({"trial": [0, 1, 2], "val_top1_error": [0.2, 0.1, 0.1],
                           "val_loss": [0.5, 0.9, 0.4]})
    assert _ranked(trials)["trial"].tolist() == [2, 1, 0]


def test_search_widths_builders_failures_and_seed(tmp_path):
    """Widths of mixed types (`--width 0.5 1`) were keras-tuner's TypeError; a partial or a
    lambda was recorded as '?' or '<lambda>', so another model's trials were taken as its
    own; a trial's UserError was a failed trial, failed trials vanished from the table, and
    none finishing was a KeyError; trials started from unseeded weights."""
    import functools

    from safeio.checks import UserError
    from zoo.training.search import search_space

    assert search_space((0.1, 1), (0.1, 1), None, [0.5, 1])["width"] == [0.5, 1.0]
    assert search_space((0.1, 1), (0.1, 1), None, [384, 512])["width"] == [384, 512]
    # NumPy's numbers are numbers (they were refused), and a bool is none (True was 1.0).
    space = search_space((np.float32(0.5), np.float32(1)), np.array([1e-6, 1e-2]), None, None)
    assert space["learning_rate"] == (0.5, 1.0) and space["weight_decay"] == (1e-6, 1e-2)
    with pytest.raises(UserError, match=r"pair of finite numbers .*; received \(True, 2\)"):
        search_space((True, 2), (0.1, 1), None, None)
    with pytest.raises(UserError, match=r"`width` must be a non-empty list of positive "
                                        r"numbers .*; received \['wide'\]"):
        search_space((0.1, 1), (0.1, 1), None, ["wide"])
    train, val = tiny_data(n=16), tiny_data(n=16, seed=1)
    kwargs = dict(trials=1, fine_trials=0, epochs=1)
    run_dir = str(tmp_path / "partials")
    zoo.search(functools.partial(_tiny_builder, dropout=0.1), train, val, run_dir=run_dir,
               **kwargs)
    with pytest.raises(UserError, match=r"holds a search with other settings \(model\).*"
                                        r"\(model: \"partial\(.*dropout=0.1\)\" there, "
                                        r"\"partial\(.*dropout=0.2\)\" now\)\.$"):
        zoo.search(functools.partial(_tiny_builder, dropout=0.2), train, val,
                   run_dir=run_dir, **kwargs)
    # A search recorded by an earlier version, which kept the bare __qualname__, resumes.
    import json

    named = str(tmp_path / "named")
    zoo.search(_tiny_builder, train, val, run_dir=named, **kwargs)
    path = os.path.join(named, "zoo_search.json")
    with open(path) as f:
        recorded = json.load(f)
    assert recorded["model"].endswith("test_diagnostics._tiny_builder")
    with open(path, "w") as f:
        json.dump({**recorded, "model": "_tiny_builder"}, f)
    zoo.search(_tiny_builder, train, val, run_dir=named, **kwargs)
    with pytest.raises(UserError, match=r"has no name to record .*settings=\{'model'"):
        zoo.search(lambda **kw: _tiny_builder(**kw), train, val, **kwargs)

    def refuses_width_5(width=8, **kw):
        if width == 5:
            raise UserError("width 5 is refused")
        return _tiny_builder(width=width, **kw)

    with pytest.raises(UserError, match=r"^width 5 is refused$"):
        zoo.search(refuses_width_5, train, val, width=[8, 5], run_dir=str(tmp_path / "u"),
                   **kwargs)
    # Before anything was written: the corrected search runs there (it was refused as a
    # search with other settings, whose first trial had failed).
    assert not (tmp_path / "u").exists()
    zoo.search(refuses_width_5, train, val, width=[8], run_dir=str(tmp_path / "u"), **kwargs)
    # "fail" or "build" for each model built (zoo.search builds one before it records its
    # settings, then keras-tuner one to learn the space)
    plan = []

    def fails_as_planned(**kw):
        if plan and plan.pop(0) == "fail":
            raise RuntimeError("out of memory, say")
        return _tiny_builder(**kw)

    plan[:] = ["build", "build", "fail", "build"]
    with pytest.warns(UserWarning, match=r"1 trial\(s\) of the coarse search failed and are "
                                         r"left out of its table; the first with: "
                                         r"RuntimeError: out of memory, say"):
        table = zoo.search(fails_as_planned, train, val, trials=2, fine_trials=0, epochs=1,
                           run_dir=str(tmp_path / "f")).table
    assert len(table) == 1
    plan[:] = ["build", "build", "fail", "fail", "fail"]
    with pytest.raises(UserError, match=r"The coarse search stopped: 3 trials in a row "
                                        r"failed, the last with: RuntimeError: out of memory"):
        zoo.search(fails_as_planned, train, val, trials=4, fine_trials=0, epochs=1,
                   run_dir=str(tmp_path / "g"))
    plan[:] = ["build", "build", "fail"]
    with pytest.raises(UserError, match=r"No trial of the coarse search finished: 1 failed, "
                                        r"the first with: RuntimeError: out of memory"):
        zoo.search(fails_as_planned, train, val, run_dir=str(tmp_path / "h"), **kwargs)
    # Two searches in one run_dir at once would mix their trials: the second is refused.
    from safeio import directory_lock

    with directory_lock(str(tmp_path / "busy")):
        with pytest.raises(UserError, match=r"The run directory .*busy is in use by another "
                                            r"run"):
            zoo.search(_tiny_builder, train, val, run_dir=str(tmp_path / "busy"), **kwargs)
    # The same seed: the same trials, from the same weights, to the same losses; the
    # default seed 0 too (keras-tuner took it for none: other trials at every run). The
    # next seed draws other trials: keras-tuner's state moves one a value, and seed 1
    # started where seed 0's second trial did (the same learning rate and decay).
    drawn = {}
    for seed in (0, 1):
        tables = [zoo.search(_tiny_builder, train, val, trials=2, fine_trials=0, epochs=1,
                             seed=seed, run_dir=str(tmp_path / f"seeded{seed}_{i}")).table
                  for i in range(2)]
        pd.testing.assert_frame_equal(tables[0], tables[1])
        drawn[seed] = set(tables[0]["learning_rate"]) | set(tables[0]["weight_decay"])
    assert not drawn[0] & drawn[1], drawn
    # A damaged settings file, or a trial's file of keras-tuner's: one line naming it (they
    # were JSONDecodeError tracebacks).
    import glob

    settings = tmp_path / "seeded0_0" / "zoo_search.json"
    settings.write_text("{")
    trial = sorted(glob.glob(str(tmp_path / "seeded1_0" / "coarse" / "trial_*" /
                                 "trial.json")))[-1]
    with open(trial, "w") as f:
        f.write("")
    for run_dir, message in ((settings.parent, f"{settings} is damaged (Expecting"),
                             (tmp_path / "seeded1_0", "A file of keras-tuner's in "
                              f"{tmp_path / 'seeded1_0' / 'coarse'} is damaged (Expecting")):
        with pytest.raises(UserError, match="^" + re.escape(message)):
            zoo.search(_tiny_builder, train, val, trials=2, fine_trials=0, epochs=1,
                       seed=int(run_dir.name[6]), run_dir=str(run_dir))


SEARCH = textwrap.dedent(
    """
    import json, os, sys
    import zoo
    from tests.helpers import tiny_data
    from tests.zoo.training.test_diagnostics import _tiny_builder

    # KILL=N: kill -9 just before keras-tuner's Nth trial.json lands (its rename onto it).
    renamed, rename = [0], os.replace

    def replace(source, destination, *args, **kwargs):
        if os.fspath(destination).endswith("trial.json") and os.environ.get("KILL"):
            renamed[0] += 1
            if renamed[0] == int(os.environ["KILL"]):
                os.kill(os.getpid(), 9)
        return rename(source, destination, *args, **kwargs)

    os.replace = replace
    search = lambda run_dir: zoo.search(_tiny_builder, tiny_data(n=32), tiny_data(n=32, seed=1),
                                        trials=3, fine_trials=0, epochs=1, run_dir=run_dir)
    out = {"table": search(sys.argv[1]).table.to_json()}
    if len(sys.argv) > 2:  # the uninterrupted search, in the same process
        out["reference"] = search(sys.argv[2]).table.to_json()
    print(json.dumps(out))
    """)


def test_a_search_writes_its_own_tuner_files_atomically_and_no_one_elses(tmp_path,
                                                                        monkeypatch):
    """Within a search, keras-tuner's JSON files under its run directory go through safeio's
    atomic write; another tuner's (a user's, elsewhere) as keras-tuner writes them; and
    keras-tuner's own function is back once no search runs, nested or not."""
    from keras_tuner.src import utils as tuner_utils

    from zoo.training import search

    original, atomic = tuner_utils.save_json, []
    monkeypatch.setattr(search, "write_text", lambda path, text: atomic.append(path))
    with search._atomic_tuner_files(tmp_path / "a"):
        with search._atomic_tuner_files(tmp_path / "b"):
            for name in ("a/trial_0/trial.json", "b/oracle.json", "user/oracle.json"):
                os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
                tuner_utils.save_json(str(tmp_path / name), {"k": 1})
        assert tuner_utils.save_json is not original
    assert tuner_utils.save_json is original
    assert atomic == [str(tmp_path / "a/trial_0/trial.json"), str(tmp_path / "b/oracle.json")]
    assert json.loads((tmp_path / "user/oracle.json").read_text()) == {"k": 1}


@pytest.mark.slow  # two processes
def test_a_search_killed_as_keras_tuner_writes_a_trial_resumes(tmp_path):
    """keras-tuner wrote its trial.json in place: a search killed while it wrote one left it
    empty, and every rerun then failed in keras-tuner's reload (JSONDecodeError). Killed just
    before a trial's file lands, the rerun finishes with the uninterrupted search's table."""
    run_dir = str(tmp_path / "search")
    killed = run_python(SEARCH, env={"KILL": "4"}, check=False, args=[run_dir])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    for folder, _, files in os.walk(run_dir):
        for name in files:
            if name.endswith(".json"):
                with open(os.path.join(folder, name)) as f:
                    json.load(f)  # whole, or not there
    out = last_json_line(run_python(SEARCH, args=[run_dir, str(tmp_path / "reference")]).stdout)
    resumed, reference = (pd.read_json(io.StringIO(out[key])) for key in ("table", "reference"))
    pd.testing.assert_frame_equal(resumed, reference)


SMALL_RESNET = ["--model", "resnet18", "--image-size", "8", "--model-arg", "width=0.25",
                "--model-arg", "stem='cifar'", "--model-arg", "zero_init_residual=True"]


@pytest.mark.parametrize("model, lr, steps, expected", [
    pytest.param(SMALL_RESNET, 0.005, 60, 0, id="healthy"),
    pytest.param(SMALL_VGG, 1e-12, 15, 1, id="broken")])
def test_diagnose_command_exits_0_for_a_healthy_model_and_1_for_a_broken_one(
        model, lr, steps, expected, capsys, tmp_path):
    """A small ResNet (its residual branches zero-initialised, so that its first loss is
    ln(10)) at a working learning rate passes every check (exit 0: its median
    update/weight ratio, about 5e-3 here, is inside the healthy 1e-4 .. 1e-2; it memorises
    the tiny subset in 60 steps); at a rate of 1e-12 (0 is refused) nothing moves: a small
    VGG (a third of the ResNet's cost here) cannot memorise the tiny subset (15 steps are
    as good as 60 for that) and its update ratio is far below the healthy range (exit 1)."""
    code = cli.main(["diagnose", *model, "--batch-size", "32", "--overfit-steps", str(steps),
                     "--lr", str(lr), "--run-dir", str(tmp_path / "diagnose")])
    out = capsys.readouterr().out
    assert code == expected, out
    for name in ("initial loss", "dead ReLUs at initialisation", "overfit a tiny subset",
                 "update/weight ratio", "dead ReLUs after 1 epoch(s)"):
        assert name in out, out
    ratios = pd.read_csv(tmp_path / "diagnose" / "update_ratios.csv")
    if expected == 1:
        assert "cannot even memorise" in out
        assert (ratios["ratio"] < 1e-8).all()
    else:
        assert "cannot even memorise" not in out
        assert (ratios["ratio"] > 0).all()
        last = ratios[ratios["epoch"] == ratios["epoch"].max()]
        assert 1e-4 <= last["ratio"].median() <= 1e-2


def test_diagnose_refuses_augmentation_it_would_not_apply(capsys, tmp_path):
    """`--augment flip+jitter+erasing` was accepted and changed nothing: the checks read the
    training images as evaluated (two reports equal to every digit). Crop is its view."""
    code = cli.main(["diagnose", "--model", "resnet18", "--augment", "crop+flip+jitter",
                     "--run-dir", str(tmp_path / "d")])
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--augment crop+flip+jitter would change nothing but the view; leave out " \
           "flip+jitter" in line, line
    assert not (tmp_path / "d").exists()


def test_diagnose_refuses_more_examples_than_the_training_split_before_its_statistics(
        capsys, tmp_path):
    """--examples 5000 of the 1,257 digits was refused after the statistics pass (a whole
    pass over ImageNet's training set), which left statistics.npz behind."""
    from tests.helpers import SMALL_VGG

    assert cli.main(["diagnose", *SMALL_VGG, "--examples", "5000",
                     "--run-dir", str(tmp_path / "d")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().endswith("--examples 5000 is more than the training split of "
                                         "digits holds (1257); give at most 1257.")
    assert "statistics" not in captured.out and not (tmp_path / "d").exists()


def test_a_search_stopped_by_a_full_disk_runs_its_trial_again_when_resumed(tmp_path,
                                                                           monkeypatch):
    """keras-tuner saves each trial's best weights itself: on a full disk h5py's error
    became a failed trial, never run again (the resumed search's table lacked it), and
    the process then died of a segmentation fault. Now the OS fault stops the search,
    naming the file, and the resumed search runs the trial: the uninterrupted table. So
    for the trial's build_config.json, which keras-tuner writes after it trained. The
    room for the file is checked before the trial trains."""
    from keras_tuner.src.engine import tuner_utils

    train, val = tiny_data(n=16), tiny_data(n=16, seed=1)
    kwargs = dict(trials=2, fine_trials=0, epochs=1)
    reference = zoo.search(_tiny_builder, train, val, run_dir=str(tmp_path / "ref"), **kwargs)
    run_dir = str(tmp_path / "search")
    save = tuner_utils.SaveBestEpoch._save_model
    calls = []

    def full_disk(callback):
        calls.append(callback.filepath)
        if len(calls) == 2:  # the second trial's
            raise OSError(28, "No space left on device", callback.filepath)
        return save(callback)

    monkeypatch.setattr(tuner_utils.SaveBestEpoch, "_save_model", full_disk)
    with pytest.raises(OSError, match="No space left on device") as raised:
        zoo.search(_tiny_builder, train, val, run_dir=run_dir, **kwargs)
    assert raised.value.filename.endswith("checkpoint.weights.h5")
    monkeypatch.setattr(tuner_utils.SaveBestEpoch, "_save_model", save)
    resumed = zoo.search(_tiny_builder, train, val, run_dir=run_dir, **kwargs)
    pd.testing.assert_frame_equal(resumed.table, reference.table)

    from zoo.training import search as search_module

    write = search_module.write_text

    def full_disk_at_build_config(path, text):
        if str(path).endswith("build_config.json") and "trial_1" in str(path):
            raise OSError(28, "No space left on device", path)
        return write(path, text)

    monkeypatch.setattr(search_module, "write_text", full_disk_at_build_config)
    run_dir = str(tmp_path / "build_config")
    with pytest.raises(OSError, match="No space left on device") as raised:
        zoo.search(_tiny_builder, train, val, run_dir=run_dir, **kwargs)
    assert raised.value.filename.endswith("build_config.json")
    monkeypatch.setattr(search_module, "write_text", write)
    resumed = zoo.search(_tiny_builder, train, val, run_dir=run_dir, **kwargs)
    pd.testing.assert_frame_equal(resumed.table, reference.table)

    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=0))
    with pytest.raises(OSError, match=r"No space left on device: about .* are needed to "
                                      r"write it") as raised:
        zoo.search(_tiny_builder, train, val, run_dir=str(tmp_path / "full"), **kwargs)
    assert raised.value.filename.endswith("checkpoint.weights.h5")


def test_a_search_refused_by_its_builder_or_its_files_is_one_line_and_keeps_nothing(
        tmp_path):
    """A builder argument the model refuses was recorded as the search's settings before
    the first trial refused it, and the corrected search was then refused as another; a
    settings file of valid JSON that is no object, and a folder name that is not UTF-8
    (keras-tuner's tf.io.gfile), were tracebacks."""
    train, val = tiny_data(n=16), tiny_data(n=16, seed=1)
    run_dir = str(tmp_path / "search")
    small = dict(input_shape=(8, 8, 3), classes=4, width=0.25, stem="cifar")
    kwargs = dict(trials=1, fine_trials=0, epochs=1, run_dir=run_dir)
    with pytest.raises(ValueError, match="bogus"):
        zoo.search("resnet18", train, val, model_kwargs={**small, "bogus": 1}, **kwargs)
    assert not os.path.exists(os.path.join(run_dir, "zoo_search.json"))
    assert len(zoo.search("resnet18", train, val, model_kwargs=small, **kwargs).table) == 1
    settings = os.path.join(run_dir, "zoo_search.json")
    for text in ("null", "[1, 2]"):
        with open(settings, "w") as f:
            f.write(text)
        with pytest.raises(ValueError, match=rf"^{re.escape(settings)} is damaged \(it holds "
                                             rf"{re.escape(text)}, not the settings\)"):
            zoo.search("resnet18", train, val, model_kwargs=small, **kwargs)
    with pytest.raises(ValueError, match=r"has a name that is not UTF-8 text, which "
                                         r"keras-tuner \(tf.io.gfile\) cannot open"):
        zoo.search("resnet18", train, val, model_kwargs=small,
                   **{**kwargs, "run_dir": str(tmp_path / "bad\udcffname")})


def test_the_diagnostics_name_kernels_that_stay_zero_and_check_their_numbers():
    """Kernels that start at zero and get no gradient gave no ratio at all, and the check
    said the run diverged ('lower the learning rate'); a NaN learning rate trained the
    tiny subset and blamed the initialisation; UpdateRatioLogger(low='a') was a
    TypeError."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer="zeros")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, activation="softmax", kernel_initializer="zeros")(x)
    model = keras.Model(inputs, outputs)
    logger = diagnostics.UpdateRatioLogger(every=1)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(tiny_data(n=16), epochs=1, callbacks=[logger], verbose=0, shuffle=False)
    check = diagnostics.update_ratio_check(logger.history)
    assert not check.ok and "diverged" not in check.verdict
    assert "no ratio could be measured: no layer had a kernel" in check.verdict
    for bad in (math.nan, 0.0, -1):
        with pytest.raises(ValueError, match=r"The learning rate must be a finite number "
                                             r"above 0"):
            diagnostics.overfit_tiny_subset(tiny_model(), tiny_data(n=32), learning_rate=bad)
    with pytest.raises(ValueError, match=r"Need 0 < low < high; received low='a'"):
        diagnostics.UpdateRatioLogger(low="a")


@pytest.mark.parametrize("command, name", [("diagnose", "update_ratios.csv"),
                                           ("search", "search.png")])
def test_a_commands_output_that_is_a_link_is_one_line_and_the_link_stays(command, name,
                                                                          tmp_path, capsys):
    """zoo diagnose's tables and zoo search's table and plot replaced a symbolic link the
    user had put there with a file, without a word (zoo train refuses its own), in a run
    directory of the command's own (its statistics.npz)."""
    import data

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    data.compute_statistics(images).save(str(run_dir / "statistics.npz"))
    target = tmp_path / "mine.csv"
    target.write_text("the user's")
    (run_dir / name).symlink_to(target)
    assert cli.main([command, *SMALL_VGG, "--run-dir", str(run_dir)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"zoo {command}: error: {run_dir / name} is a symbolic link (to {target}): "
                    f"zoo {command} replaces its files, and would replace the link. Put the "
                    "file itself there, or give another run directory.")
    assert (run_dir / name).is_symlink() and target.read_text() == "the user's"
    assert sorted(os.listdir(run_dir)) == sorted([name, "statistics.npz"])
