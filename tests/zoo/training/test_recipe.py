import functools
import json
import math
import os
import shutil
import types
import warnings

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import zoo
from safeio.checks import UserError
from zoo.optimizers import half_precision_of
from zoo.training import callbacks as zoo_callbacks
from tests.helpers import tiny_data, tiny_model


# --- the recipe ------------------------------------------------------------------------------


def test_paper_sgd_matches_the_papers_update_rule():
    kernel = keras.Variable(np.array([[1.0, -2.0]], "float32"))
    bias = keras.Variable(np.array([0.5], "float32"))
    opt = zoo.PaperSGD(learning_rate=0.1, momentum=0.9, l2=0.01)
    grads = [np.array([[0.3, 0.1]], "float32"), np.array([0.2], "float32")]
    v_kernel, w_kernel = np.zeros((1, 2)), np.array([[1.0, -2.0]])
    v_bias, w_bias = np.zeros(1), np.array([0.5])
    for _ in range(3):
        opt.apply_gradients(zip([tf.constant(g) for g in grads], [kernel, bias]))
        v_kernel = 0.9 * v_kernel - 0.1 * 0.01 * w_kernel - 0.1 * grads[0]  # paper, sec. 5
        w_kernel = w_kernel + v_kernel
        v_bias = 0.9 * v_bias - 0.1 * grads[1]  # biases are not decayed
        w_bias = w_bias + v_bias
    np.testing.assert_allclose(kernel.numpy(), w_kernel, rtol=1e-6)
    np.testing.assert_allclose(bias.numpy(), w_bias, rtol=1e-6)
    assert zoo.PaperSGD.from_config(opt.get_config()).l2 == 0.01
    # (NaN made every weight NaN, -1 made them grow, and "5e-4" and True were converted)
    for l2 in (float("nan"), -1.0, "5e-4", True, float("inf")):
        with pytest.raises(UserError, match=r"PaperSGD's `l2` \(the weight decay\) must be a "
                                            r"finite number >= 0 or None; received "):
            zoo.PaperSGD(l2=l2)
    assert zoo.PaperSGD(l2=None).l2 == 0.0 and zoo.PaperSGD(l2=0).l2 == 0.0


@pytest.mark.all_backends
def test_paper_sgd_spares_prelu_slopes_and_what_keras_is_told_to_exclude():
    """A ResNet's PReLU slopes (shape (1, 1, C): rank > 1) were decayed with the kernels,
    and exclude_from_weight_decay was ignored; Keras' own SGD(weight_decay=...) leaves
    both alone, and so do He et al. (2015)."""
    model = zoo.resnet20(width=0.25, activation="prelu")
    slopes = [v for v in model.trainable_variables if v.name == "alpha"]
    kernels = [v for v in model.trainable_variables if v.name == "kernel"]
    assert len(slopes) > 1 and any(len(v.shape) > 1 for v in slopes)
    opt = zoo.PaperSGD(0.1, momentum=0.0, l2=0.1)
    opt.exclude_from_weight_decay(var_list=kernels[:1])
    before = {id(v): np.array(v) for v in slopes + kernels}
    variables = slopes + kernels
    opt.apply_gradients([(np.zeros(v.shape, "float32"), v) for v in variables])
    for v in slopes + kernels[:1]:  # (as Keras' SGD(weight_decay=0.1) leaves them)
        np.testing.assert_array_equal(np.array(v), before[id(v)])
    for v in kernels[1:]:  # w <- w - lr * l2 * w
        np.testing.assert_allclose(np.array(v), before[id(v)] * (1 - 0.1 * 0.1), rtol=1e-6)


@pytest.mark.all_backends
@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_the_recipes_cross_entropy_is_the_logits_one_on_every_backend(loss):
    """Keras' JAX backend clips a softmax's probabilities at 1e-7: an example the model is
    sure is of another class cost 16.1 at most and gave no gradient (a run on 1,000 classes
    stalled, and its divergence went unseen). compile_model's loss is the cross-entropy of
    the logits behind the softmax (scipy's log_softmax, in float64) on every backend, and
    one SGD step moves the head by that loss's gradient, x^T (softmax - one-hot) / n."""
    from scipy.special import log_softmax, softmax

    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 3)).astype("float32")
    kernel = rng.normal(scale=8.0, size=(3, 5)).astype("float32")
    labels = np.arange(4)
    inputs = keras.Input((3,))
    head = keras.layers.Dense(5, activation="softmax", use_bias=False, name="predictions")
    model = keras.Model(inputs, head(inputs))
    head.set_weights([kernel])
    zoo.compile_model(model, learning_rate=0.1, momentum=0.0, weight_decay=0.0, loss=loss)
    logits = x.astype("float64") @ kernel
    expected = -log_softmax(logits, -1)[np.arange(4), labels]
    assert expected.max() > 30  # past the clipped loss's 16.1
    y = labels if loss.startswith("sparse") else np.eye(5, dtype="float32")[labels]
    scores = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    np.testing.assert_allclose(scores["loss"], expected.mean(), rtol=1e-4)
    model.train_on_batch(x, y)
    step = 0.1 * x.astype("float64").T @ (softmax(logits, -1) - np.eye(5)[labels]) / 4
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head.kernel), kernel - step,
                               rtol=1e-4, atol=1e-6)


def test_recipe_defaults_and_reduce_lr_divides_by_ten_on_a_plateau():
    model = tiny_model()
    model.trainable = False  # nothing can improve: a plateau from the first epoch
    result = zoo.train(model, tiny_data(), tiny_data(seed=1), epochs=4, lr_patience=1,
                       min_lr=0.0, verbose=0)
    optimizer = result.model.optimizer
    assert isinstance(optimizer, zoo.PaperSGD)
    assert (optimizer.momentum, optimizer.l2) == (0.9, 5e-4)
    lrs = result.history["learning_rate"].tolist()
    np.testing.assert_allclose(lrs, [0.01, 0.01, 0.001, 0.0001], rtol=1e-6)
    assert {"top1_accuracy", "top5_accuracy", "val_top1_accuracy", "val_top5_accuracy"} <= set(
        result.history.columns)


def test_a_nan_validation_epoch_is_no_plateau(tmp_path):
    """Keras' ReduceLROnPlateau took a first NaN for its best, which nothing improves on:
    one NaN validation epoch, then a falling loss, divided the rate every `patience`
    epochs. Skipped (as best.keras skips it), as it is when a resume replays the history."""
    from zoo.training.callbacks import ResumableReduceLROnPlateau

    model = tiny_model()
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    plateau = ResumableReduceLROnPlateau(str(tmp_path / "history.csv"), monitor="val_loss",
                                         mode="min", factor=0.1, patience=2, min_lr=0.0)
    plateau.set_model(model)
    plateau.on_train_begin()
    values = [float("nan"), 1.0, 0.8, 0.6, 0.4, 0.2, 0.1]
    for epoch, value in enumerate(values):
        logs = {"loss": 1.0, "val_loss": value}
        plateau.on_epoch_end(epoch, logs)
        assert logs["learning_rate"] == pytest.approx(0.05)
    assert plateau.best == pytest.approx(0.1) and plateau.wait == 0
    replayed = ResumableReduceLROnPlateau(str(tmp_path / "history.csv"), monitor="val_loss",
                                          mode="min", factor=0.1, patience=2, min_lr=0.0)
    replayed.set_model(model)
    replayed.on_train_begin()
    replayed._resume([{"val_loss": v, "learning_rate": 0.05} for v in values])
    assert replayed.best == pytest.approx(0.1) and replayed.wait == 0


def test_two_outputs_and_one_hot_labels_with_the_defaults_are_one_line_before_training(
        tmp_path):
    """Two outputs: Keras gave top-1 to the first and top-5 to the second, and the run
    stopped after its first epoch (val_top1_accuracy never logged). One-hot labels with
    the sparse loss: Keras' "Argument 'output' must have rank (ndim) 'target.ndim - 1'"."""
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    two = keras.Model(inputs, [keras.layers.Dense(4, activation="softmax", name="a")(pooled),
                               keras.layers.Dense(4, activation="softmax", name="b")(pooled)])
    with pytest.raises(UserError, match=r"has 2 outputs \(a, b\); zoo.train's default "
                                        r"metrics and monitor are one classifier's"):
        zoo.train(two, tiny_data(), tiny_data(seed=1), epochs=1, verbose=0,
                  run_dir=tmp_path / "two")
    one_hot = tiny_data().map(lambda x, y: (x, tf.one_hot(y, 4)))
    with pytest.raises(UserError, match=r"The labels are one-hot \(shape \(None, 4\) per "
                                        r"batch\), and loss='sparse_categorical_crossentropy' "
                                        r"takes class indices: pass "
                                        r"loss='categorical_crossentropy'"):
        zoo.train(tiny_model(), one_hot, epochs=1, verbose=0, run_dir=tmp_path / "hot")
    assert os.listdir(tmp_path) == []  # before anything was written
    result = zoo.train(tiny_model(), one_hot, epochs=1, verbose=0,
                       loss="categorical_crossentropy")
    assert "top1_accuracy" in result.history.columns


@pytest.mark.all_backends
def test_a_model_compiled_with_another_optimizer_is_told_the_recipe_replaces_it():
    """The user's compile(Adam) was replaced by PaperSGD at 0.01 without a word. Given an
    optimizer, or compiled with the recipe's (a checkpoint), nothing is said."""
    model = tiny_model()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match=r"tiny was compiled with Adam; zoo.train compiles "
                                         r"it with the recipe's PaperSGD, loss and metrics: "
                                         r"pass optimizer="):
        result = zoo.train(model, tiny_data(), epochs=1, verbose=0)
    assert type(result.model.optimizer).__name__ == "PaperSGD"
    for again in ({}, {"optimizer": "adam"}):  # (now compiled with PaperSGD; or told)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            zoo.train(result.model, tiny_data(), epochs=1, verbose=0, **again)
        assert not [w for w in caught if "was compiled with" in str(w.message)]


def test_training_data_of_no_batch_is_one_line_and_the_run_trains_after(tmp_path):
    """A filter that kept nothing trained "successfully": two epochs in history.csv without a
    loss, untrained checkpoints, and the same call with the right data trained nothing."""
    from tests.helpers import tiny_data, tiny_model

    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"The training data holds no batch \(its length is "
                                         r"0\): check what was filtered"):
        zoo.train(tiny_model, tiny_data().take(0), epochs=1, run_dir=str(run), verbose=0)
    assert not run.exists()
    nothing = tiny_data().filter(lambda x, y: tf.reduce_all(y > 100))  # (length unknown)
    with pytest.raises(ValueError, match=r"The training data gave no batch: check what"):
        zoo.train(tiny_model, nothing, epochs=2, run_dir=str(run), verbose=0)
    assert not (run / "history.csv").exists() and not (run / "checkpoints").exists()
    result = zoo.train(tiny_model, tiny_data(), epochs=2, run_dir=str(run), verbose=0)
    assert result.history["epoch"].tolist() == [1, 2]
    assert np.isfinite(result.history["loss"]).all()


def test_labels_outside_the_classes_stop_training_in_one_line(tmp_path):
    """Labels past the model's classes trained under JAX to a loss of 0.0 without a word
    (its gather reads them as classes of probability 0), negative and fractional ones
    trained too (cut to whole numbers), and TensorFlow's error named a graph node. In the
    validation data they scored without a word. Whole labels in range train as before."""
    shifted = tiny_data().map(lambda x, y: (x, y + 3))  # 3..6 for 4 classes
    halves = tiny_data().map(lambda x, y: (x, tf.cast(y, tf.float32) / 2))
    negative = tiny_data().map(lambda x, y: (x, y - 1))
    for data, seen in ((shifted, "from 3 to 6"), (halves, r"from 0 to 1\.5, not all whole"),
                       (negative, "from -1 to 2")):
        with pytest.raises(UserError, match=r"The labels must be class indices, whole numbers "
                                            r"in \[0, 4\) for tiny's 4 classes; a batch held "
                                            rf"labels {seen}\. Number the classes from 0"):
            zoo.train(tiny_model(), data, epochs=1, verbose=0, run_dir=tmp_path / "run")
        assert not (tmp_path / "run" / "backup").exists()  # no run to resume
    with pytest.raises(UserError, match=r"a batch held labels from 3 to 6"):
        zoo.train(tiny_model(), tiny_data(), shifted, epochs=1, verbose=0)
    # Validation data as (x, y) arrays passed unchecked (floats cut to whole numbers, and
    # JAX scored labels past the classes); one-hot ones were Keras' rank error.
    images, labels = (np.concatenate(a) for a in zip(*tiny_data().as_numpy_iterator()))
    for given, seen in ((labels + 0.5, r"the validation labels held labels from 0\.5 to "
                                       r"3\.5, not all whole"),
                        (labels + 5, "the validation labels held labels from 5 to 8"),
                        (np.eye(4)[labels], r"The validation labels are one-hot \(shape "
                                            r"\(64, 4\)\)")):
        with pytest.raises(UserError, match=seen):
            zoo.train(tiny_model(), tiny_data(), (images, given), epochs=1, verbose=0)
    ignoring = keras.losses.SparseCategoricalCrossentropy(ignore_class=255)
    with pytest.raises(UserError, match=r"in \[0, 4\) for tiny's 4 classes \(or 255, which "
                                        r"the loss ignores\); a batch held labels from 3"):
        zoo.train(tiny_model(), shifted, epochs=1, verbose=0, loss=ignoring,
                  metrics=["accuracy"])
    result = zoo.train(tiny_model(), tiny_data().map(lambda x, y: (x, tf.cast(y, "float32"))),
                       epochs=1, verbose=0)
    assert np.isfinite(result.history["loss"]).all()


def test_the_training_step_is_traced_once(tmp_path):
    """zoo.train creates the optimizer's variables before fit's first step: TensorFlow
    traces a step that creates variables twice (the first epoch of a small ResNet-18 took
    9.0 s instead of 4.8 s on 2 CPU cores). A resumed run traces once too."""
    traces = []

    def counting_model():
        model = tiny_model()
        step = model.train_step
        model.train_step = lambda data: traces.append(1) or step(data)
        return model

    for epochs in (1, 2):  # a run, then its resumption from the backup
        traces.clear()
        result = zoo.train(counting_model, tiny_data(), epochs=epochs, verbose=0,
                           run_dir=tmp_path / "run")
        assert len(traces) == 1 and result.history["epoch"].tolist()[-1] == epochs


def test_train_learns_and_seed_makes_runs_repeatable():
    def run():
        return zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=3, seed=7,
                         learning_rate=0.1, verbose=0)

    first, second = run(), run()
    pd.testing.assert_frame_equal(first.history, second.history)
    assert first.history["loss"].iloc[-1] < first.history["loss"].iloc[0]


@pytest.mark.all_backends
def test_a_stopped_run_resumes_to_the_uninterrupted_run(tmp_path):
    """On every backend: the run directory, backups, learning-rate drops and the
    (seed, epoch) data order; a run stopped after 2 epochs and resumed to 4 ends as the
    uninterrupted 4-epoch run (rtol 1e-5)."""
    import data

    def linear():  # softmax regression: learns the digits in a few epochs
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Flatten()(inputs)
        return keras.Model(inputs, keras.layers.Dense(10, activation="softmax",
                                                      name="predictions")(x), name="linear")

    def train(run_dir, epochs):
        scaled = lambda image: image / 255.0  # noqa: E731
        train_data = data.load("digits", "train", batch_size=64, image_size=8, seed=1,
                               preprocess=scaled, augment=data.augment.random_flip)
        val = data.load("digits", "validation", batch_size=128, image_size=8, preprocess=scaled)
        result = zoo.train(linear, train_data, val, epochs=epochs, run_dir=str(tmp_path / run_dir),
                           seed=0, learning_rate=0.1, lr_patience=1, verbose=0)
        return result.history, result.model.get_weights()

    whole, whole_weights = train("whole", 4)
    train("resumed", 2)
    resumed, resumed_weights = train("resumed", 4)
    assert resumed["epoch"].tolist() == [1, 2, 3, 4]
    for key in whole.columns:
        np.testing.assert_allclose(resumed[key], whole[key], rtol=1e-5, err_msg=key)
    for ours, theirs in zip(resumed_weights, whole_weights):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    assert whole["val_loss"].iloc[-1] < whole["val_loss"].iloc[0]  # it learns


def test_fit_reads_a_dataset_of_known_length_through_one_iterator():
    """A dataset of known length goes to fit repeated, with its length as steps_per_epoch
    (one iterator for the run, each epoch one pass); others go as they are."""
    from zoo.training.recipe import _one_stream

    batches = tf.data.Dataset.range(10).batch(4)  # 3 batches, the last of 2
    stream, steps = _one_stream(batches)
    assert steps == 3 and int(stream.cardinality()) == tf.data.INFINITE_CARDINALITY
    passes = [b.tolist() for b in stream.take(6).as_numpy_iterator()]
    assert passes[:3] == passes[3:] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    unknown = batches.filter(lambda b: True)
    assert _one_stream(unknown) == (unknown, None)
    stream, steps = _one_stream(unknown, steps_per_epoch=2)  # repeated: epochs of 2 batches
    assert steps == 2 and [b.tolist() for b in stream.take(4).as_numpy_iterator()] == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [0, 1, 2, 3]]
    endless = batches.repeat()
    assert _one_stream(endless, steps_per_epoch=5) == (endless, 5)
    arrays = (np.zeros((4, 2)), np.zeros(4))
    assert _one_stream(arrays) == (arrays, None)


def test_steps_per_epoch_sets_the_epochs_of_data_without_a_length(tmp_path):
    """Endless data needs steps_per_epoch (its first epoch would never end); data of
    unknown length is repeated across its passes; a known length cannot be overridden.
    The refusals come before the run directory exists."""
    endless = tiny_data().repeat()  # 4 batches a pass
    with pytest.raises(ValueError, match=r"repeats forever .* pass steps_per_epoch"):
        zoo.train(tiny_model, endless, epochs=1, run_dir=str(tmp_path / "a"), verbose=0)
    with pytest.raises(ValueError, match=r"steps_per_epoch=3 differs from the training "
                                         r"data's length, 4 batches.*'train\[:10%\]'"):
        zoo.train(tiny_model, tiny_data(), epochs=1, steps_per_epoch=3,
                  run_dir=str(tmp_path / "a"), verbose=0)
    assert not (tmp_path / "a").exists()
    for data, epochs in [(endless, 2), (tiny_data().filter(lambda x, y: True), 3)]:
        result = zoo.train(tiny_model, data, epochs=epochs, steps_per_epoch=3,
                           reduce_lr=False, verbose=0)
        assert int(keras.ops.convert_to_numpy(result.model.optimizer.iterations)) == 3 * epochs


@pytest.mark.all_backends
def test_data_of_unknown_length_trains_whole_passes_without_keras_false_alarm(tmp_path):
    """Each epoch one whole pass: all 3 epochs of 4 batches run, and Keras' "Your input ran
    out of data; interrupting training" (said when it learns the length) is not shown. The
    optimizer counts 12 steps, as a step-based schedule needs, in the model and in the
    checkpoint (Keras' TensorFlow trainer counted one more at each epoch's end: 15)."""
    batches = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(b))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = zoo.train(tiny_model, tiny_data().filter(lambda x, y: True), epochs=3,
                           reduce_lr=False, verbose=0, callbacks=[counter],
                           run_dir=str(tmp_path / "run"))
    assert batches == [0, 1, 2, 3] * 3
    assert not [w for w in caught if "ran out of data" in str(w.message)]
    assert int(keras.ops.convert_to_numpy(result.model.optimizer.iterations)) == len(batches)
    last = zoo.load_model(str(tmp_path / "run" / "checkpoints" / "last.keras"))
    assert int(keras.ops.convert_to_numpy(last.optimizer.iterations)) == len(batches)
    # Optimizers that do not count one step a batch keep Keras' count: gradient
    # accumulation (a count that is no variable: setting it raised AttributeError) and the
    # loss-scale optimizer (which skips the steps that overflow).
    def accumulating():
        return keras.optimizers.SGD(0.01, gradient_accumulation_steps=2)

    accumulated = zoo.train(tiny_model, tiny_data().filter(lambda x, y: True), epochs=2,
                            reduce_lr=False, verbose=0, optimizer=accumulating)
    plain = tiny_model()
    plain.compile(accumulating(), "sparse_categorical_crossentropy")
    plain.fit(tiny_data().filter(lambda x, y: True), epochs=2, verbose=0)
    assert int(keras.ops.convert_to_numpy(accumulated.model.optimizer.iterations)) == int(
        keras.ops.convert_to_numpy(plain.optimizer.iterations))  # Keras' own count
    from zoo.training.callbacks import ExactStepCount

    assert not ExactStepCount.applies(keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.01)))


def test_a_folder_of_someone_elses_files_is_never_overwritten_by_a_run(tmp_path):
    """A folder holding a config.json, checkpoints and a plot that no run wrote is refused in
    one line, before anything is written, and every file stays as it was; a folder of
    other names (notes.txt) takes a run beside them."""
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    files = {"config.json": '{"mine": 1}', "checkpoints/best.keras": "user model",
             "learning_curves.png": "my plot"}
    for name, text in files.items():
        (mine / name).write_text(text)
    with pytest.raises(ValueError) as error:
        zoo.train(tiny_model, tiny_data(), epochs=1, run_dir=str(mine), verbose=0)
    message = str(error.value)
    assert "\n" not in message and message.startswith(
        f"{mine} holds config.json, checkpoints, learning_curves.png, which no run of this "
        "project wrote")
    assert {name: (mine / name).read_text() for name in files} == files
    assert sorted(p.name for p in mine.iterdir()) == ["checkpoints", "config.json",
                                                       "learning_curves.png"]
    # A folder of the user's named backup/ is theirs, not a stopped run's backup (the
    # message said "config.json is missing, but ... holds a backup of a run").
    (tmp_path / "photos" / "backup").mkdir(parents=True)
    (tmp_path / "photos" / "backup" / "photos.tar").write_text("mine")
    with pytest.raises(ValueError, match=r"photos holds backup, which no run of this "
                                         r"project wrote"):
        zoo.train(tiny_model, tiny_data(), epochs=1, run_dir=str(tmp_path / "photos"),
                  verbose=0)
    assert os.listdir(tmp_path / "photos") == ["backup"]
    (tmp_path / "empty" / "backup").mkdir(parents=True)  # no run's: no config.json of ours
    with pytest.raises(ValueError, match=r"empty holds backup, which no run of this project"):
        zoo.train(tiny_model, tiny_data(), epochs=1, run_dir=str(tmp_path / "empty"),
                  verbose=0)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    zoo.train(tiny_model, tiny_data(), epochs=1, run_dir=str(notes), verbose=0)
    assert (notes / "notes.txt").read_text() == "mine"
    assert (notes / "checkpoints" / "last.keras").exists()
    zoo.train(tiny_model, tiny_data(), epochs=2, run_dir=str(notes), verbose=0)  # resumes


def test_the_monitor_goes_the_way_keras_callbacks_take_it(tmp_path):
    """Keras' own rule (the metric's direction), not the letters "acc": a top-1 named
    "top1" rises, a cross-entropy named "acc_gap" falls; best.keras holds the best epoch by it.
    A name Keras knows nothing of is refused, naming the metrics."""
    from zoo.training.callbacks import monitor_mode

    metrics = [keras.metrics.SparseTopKCategoricalAccuracy(k=1, name="top1"),
               keras.metrics.SparseCategoricalCrossentropy(name="acc_gap")]
    result = zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=4, seed=0,
                       metrics=metrics, monitor="val_top1", run_dir=str(tmp_path / "a"),
                       learning_rate=0.1, verbose=0)
    model = result.model
    assert [monitor_mode(model, name) for name in ("val_top1", "val_acc_gap", "loss")] == [
        "max", "min", "min"]
    assert monitor_mode(model, "val_auc", "max") == "max"
    with pytest.raises(ValueError, match=r"monitor='val_auc' should rise or fall: the "
                                         r"model's metrics are loss, top1, acc_gap"):
        monitor_mode(model, "val_auc")
    history = result.history["val_top1"]
    assert history.nunique() > 1  # (else any epoch would be the best)
    best = keras.models.load_model(tmp_path / "a" / "checkpoints" / "best.keras")
    best.compile(metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=1, name="top1")])
    assert best.evaluate(tiny_data(seed=1), return_dict=True, verbose=0)["top1"] == (
        pytest.approx(history.max()))
    # Own metrics without top-1 accuracy: validation loss by default, so best.keras exists.
    result = zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=1, verbose=0,
                       metrics=[keras.metrics.SparseCategoricalCrossentropy(name="xent")],
                       run_dir=str(tmp_path / "b"))
    assert os.path.exists(result.best_path)
    with pytest.raises(ValueError, match=r"monitor='val_top_1' should rise or fall"):
        zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=1, verbose=0,
                  monitor="val_top_1")


def test_settings_that_change_nothing_resume_a_run(tmp_path):
    """A run resumes when given its data's own length as steps_per_epoch, and with a
    monitor_mode it was started without (runs made before the setting existed resume so,
    whatever their monitor)."""
    run_dir = str(tmp_path / "run")
    zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=1, run_dir=run_dir,
              verbose=0)
    result = zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=2, run_dir=run_dir,
                       steps_per_epoch=4, monitor_mode="max", verbose=0)
    assert list(result.history["epoch"]) == [1, 2]
    # Named once, it stays: turned the other way, best.keras and the plateaus would flip.
    # Left out on a resume, it is kept: a later "min" is still the other way.
    zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=3, run_dir=run_dir,
              verbose=0)
    with pytest.raises(ValueError, match=r"holds a run with other settings \(monitor_mode "
                                         r"'max' -> 'min'\)"):
        zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=4, run_dir=run_dir,
                  monitor_mode="min", verbose=0)


def test_settings_that_would_replace_the_recipes_or_are_not_json_are_one_line(tmp_path):
    """settings={"epochs": 50, "model": "vgg"} replaced the recipe's entries in config.json
    (50 epochs of "vgg" for a 2-epoch run); a function was written as its repr, which the
    next process's resume called another run; a list failed after the lock was taken."""
    run_dir = tmp_path / "run"
    for settings, message in (
            ({"epochs": 50, "model": "vgg"}, r"may not replace the recipe's own entries in "
                                             r"config.json \(epochs, model\)"),
            ({"augment": lambda image: image}, r"`settings\['augment'\]` must be a JSON value"),
            (["a"], r"`settings` must be a dict of named JSON values for config.json; "
                    r"received \['a'\]")):
        with pytest.raises(ValueError, match=message):
            zoo.train(tiny_model, tiny_data(), epochs=1, run_dir=str(run_dir), verbose=0,
                      settings=settings)
        assert not run_dir.exists()  # (no lock left behind)
    result = zoo.train(tiny_model, tiny_data(), epochs=1, run_dir=str(run_dir), verbose=0,
                       settings={"note": {"rate": np.float32(0.5), "tag": "a"}})
    config = json.loads((run_dir / "config.json").read_text())
    assert config["note"] == {"rate": 0.5, "tag": "a"}
    recipe = set(config) - {"note"}
    assert recipe == set(zoo.training.recipe.RECIPE_ENTRIES)  # (the list is the recipe's)
    assert len(result.history) == 1


def test_arguments_of_the_wrong_kind_are_one_line_before_anything_is_built(tmp_path):
    """Keras' habits and slips: arrays as (x, y), an unbatched dataset, an array for
    val_data, a callback's name, a number for the run directory, a seed NumPy refuses, a
    list of model arguments, a mistyped optimizer (Keras', Python's or NumPy's errors)."""
    images, labels = next(iter(tiny_data(n=16, batch=16)))
    unbatched = tiny_data().unbatch()
    for kwargs, message in (
            (dict(train_data=(images, labels)), r"`train_data` must be batches of \(images, "
                                                r"labels\): a tf.data.Dataset .*received tuple "
                                                r"\(arrays: batch them as above\)"),
            (dict(val_data=np.zeros((4, 8, 8, 3))), r"`val_data` must be .*received ndarray"),
            (dict(callbacks=["csv"]), r"`callbacks` must be keras.callbacks.Callback objects; "
                                      r"received 'csv' \(str\)"),
            (dict(callbacks=keras.callbacks.History()), r"`callbacks` must be a list of "
                                                        r".*received one, History: put it in"),
            (dict(run_dir=5), r"`run_dir` must be a folder name or None; received 5"),
            (dict(seed=-1), r"`seed` must be None or an integer in \[0, 2\*\*32 - 1\]; "
                            r"received -1"),
            (dict(model="resnet18", model_kwargs=[1]), r"`model_kwargs` must be a dict"),
            (dict(train_data=unbatched), r"The training data is not batched: its images are "
                                         r"shaped \(8, 8, 3\), and tiny takes batches "
                                         r"\(None, 8, 8, 3\)"),
            (dict(optimizer="adamw2"), r"Unknown optimizer 'adamw2' \(did you mean 'adamw'\?\)"),
            (dict(train_data=tiny_data(size=6).unbatch()), r"not batched: its images are "
                                                           r"shaped \(6, 6, 3\)"),
            (dict(train_data="digits"), r"`train_data` must be .*received str\."),
            # A Sequential model trained on another size without a word (functional ones
            # got Keras' input_spec error), and its file recorded the size it was built for.
            (dict(model=lambda: keras.Sequential([keras.Input((6, 6, 3)), *tiny_model(
                6).layers[1:]]), train_data=tiny_data()),
             r"The training images are 8x8; sequential\w* takes 6x6 \(its input shape "
             r"\(6, 6, 3\)\): load them at its size"),
            (dict(val_data=tiny_data(size=6)), r"The validation images are 6x6; tiny takes "
                                               r"8x8"),
            (dict(val_data={"x": 1}), r"`val_data` must be .*received dict")):
        arguments = dict(model=tiny_model, train_data=tiny_data(), epochs=1, verbose=0,
                         run_dir=str(tmp_path / "run"))
        arguments.update(kwargs)
        with pytest.raises(ValueError, match=message):
            zoo.train(arguments.pop("model"), arguments.pop("train_data"), **arguments)
        assert not (tmp_path / "run").exists()
    # PaperSGD's own: Keras said "`momentum` must be a float between [0, 1]" (not what it
    # received) and took a learning rate of -1 as "should be float".
    with pytest.raises(ValueError, match=r"The momentum must be a number in \[0, 1\); "
                                         r"received 2"):
        zoo.PaperSGD(momentum=2)
    with pytest.raises(ValueError, match=r"The learning rate must be a finite number above 0 "
                                         r".*received -1"):
        zoo.PaperSGD(learning_rate=-1)
    assert zoo.PaperSGD(momentum=np.float32(0.5)).momentum == 0.5
    result = zoo.train(tiny_model, tiny_data(), epochs=1, verbose=0, optimizer="nadam",
                       seed=np.int64(3))
    assert type(result.model.optimizer).__name__ == "Nadam"
    # What Keras takes still trains: grey batches without their channel axis (Keras adds
    # it), the label a loss ignores (ignore_class), a generator of batches.
    inputs = keras.Input((8, 8, 1))
    grey = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(
        keras.layers.Flatten()(inputs)))
    no_channel = tiny_data().map(lambda x, y: (x[..., 0], y))
    assert len(zoo.train(grey, no_channel, epochs=1, verbose=0).history) == 1
    ignoring = keras.losses.SparseCategoricalCrossentropy(ignore_class=255)
    marked = tiny_data().map(lambda x, y: (x, tf.where(y == 0, 255, y)))
    result = zoo.train(tiny_model(), marked, epochs=1, verbose=0, loss=ignoring,
                       metrics=["accuracy"])
    assert np.isfinite(result.history["loss"]).all()
    batches = list(tiny_data().as_numpy_iterator())
    result = zoo.train(tiny_model(), (b for b in batches * 2), epochs=1, verbose=0,
                       steps_per_epoch=len(batches))
    assert len(result.history) == 1


def test_a_run_stopped_on_an_infinite_loss_diverged():
    """TerminateOnNaN stops on inf as on NaN: the run says it diverged."""
    def infinite(labels, probabilities):
        return keras.ops.mean(probabilities, axis=-1) * 0.0 + np.inf

    with pytest.warns(UserWarning, match=r"diverged \(NaN or infinite loss\) in epoch 1"):
        result = zoo.train(tiny_model, tiny_data(), epochs=3, loss=infinite, reduce_lr=False,
                           verbose=0)
    assert result.diverged and len(result.history) == 1


def test_an_ema_run_extended_ends_where_one_longer_run_does(tmp_path):
    """The backup of an EMA run's last epoch holds the raw training weights (the averages
    stay the optimizer's), so raising `epochs` continues the run that was."""
    kwargs = dict(seed=0, reduce_lr=False, verbose=0,
                  optimizer=lambda: zoo.make_optimizer("adam", 0.01, ema=True))
    zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=2,
              run_dir=str(tmp_path / "a"), **kwargs)
    extended = zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=3,
                         run_dir=str(tmp_path / "a"), **kwargs)
    whole = zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=3,
                      run_dir=str(tmp_path / "b"), **kwargs)
    for ours, reference in zip(extended.model.get_weights(), whole.model.get_weights()):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7)


def test_schedule_and_reduce_lr_is_a_clear_error():
    schedule = keras.optimizers.schedules.CosineDecay(0.1, 100)
    with pytest.raises(ValueError, match="LearningRateSchedule.*reduce_lr=False"):
        zoo.train(tiny_model(), tiny_data(), epochs=1, verbose=0,
                  optimizer=keras.optimizers.SGD(schedule))
    result = zoo.train(tiny_model(), tiny_data(), epochs=1, verbose=0, reduce_lr=False,
                       optimizer=keras.optimizers.SGD(schedule))
    assert len(result.history) == 1
    # Under mixed_float16 the schedule sits inside Keras' LossScaleOptimizer.
    with pytest.warns(UserWarning, match="mixed_float16"), \
            pytest.raises(ValueError, match="LearningRateSchedule.*reduce_lr=False"):
        zoo.train(lambda: zoo.resnet20(input_shape=(8, 8, 3), classes=4, width=0.25),
                  tiny_data(), epochs=1, verbose=0, precision="mixed_float16",
                  optimizer=lambda: keras.optimizers.SGD(schedule))
    # A plain function of no arguments is a schedule too: Keras' plateau could not set it
    # (an AttributeError once patience ran out, mid-training).
    with pytest.raises(ValueError, match=r"LearningRateSchedule \(or a function\)"):
        zoo.train(tiny_model(), tiny_data(), epochs=1, verbose=0,
                  optimizer=keras.optimizers.SGD(lambda: 0.05))
    followed = zoo.train(tiny_model(), tiny_data(), epochs=1, verbose=0, reduce_lr=False,
                         optimizer=keras.optimizers.SGD(lambda: 0.05))  # Keras calls it bare
    assert followed.history["learning_rate"].tolist() == pytest.approx([0.05])


def test_the_logged_rate_is_the_one_keras_applied_under_gradient_accumulation():
    """With gradient accumulation Keras reads a schedule at the batch count, and
    optimizer.iterations counts the updates: the learning_rate column (and its plot) was
    the schedule at a quarter of the steps."""
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.9)
    optimizer = keras.optimizers.SGD(schedule, gradient_accumulation_steps=4)
    result = zoo.train(tiny_model(), tiny_data(), epochs=2, verbose=0, reduce_lr=False,
                       optimizer=optimizer)  # 4 batches an epoch: 8 batches, 2 updates
    assert result.history["learning_rate"].tolist() == pytest.approx(
        [float(schedule(3)), float(schedule(7))], rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(strategy="tpu"), r"`strategy` must be one of.*received 'tpu'"),
        (dict(strategy="multi_worker"), r"TF_CONFIG"),
        (dict(precision="float16"), r"`precision` must be one of.*received 'float16'"),
        (dict(precision="mixed_float16"), r"must be set before the model is built"),
        (dict(epochs=0), r"`epochs` must be a positive integer; received 0"),
        (dict(strategy="one_device"), r"built outside the OneDeviceStrategy's scope"),
        # The plateau's settings, before anything runs (Keras refused a factor of 10 only
        # once training began; a factor of 0 or a float patience went through).
        (dict(lr_factor=10), r"`lr_factor` multiplies the learning rate at a plateau: a "
                             r"number in \(0, 1\), the paper's 0.1 .*received 10"),
        (dict(lr_factor=0), r"`lr_factor` .*received 0"),
        (dict(lr_patience=2.5), r"`lr_patience` must be a positive integer; received 2.5"),
        (dict(min_lr=-1), r"`min_lr` must be a finite number >= 0; received -1"),
        # A validation value with no validation data is never logged: nothing follows it.
        (dict(monitor="val_loss"), r"monitor='val_loss' is a validation value, and no "
                                   r"val_data was given"),
    ],
)
def test_bad_train_arguments(kwargs, message, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match=message):
        zoo.train(tiny_model(), tiny_data(), **{"epochs": 1, "verbose": 0, **kwargs})


@pytest.mark.all_backends
def test_a_mixed_precision_builder_of_a_low_precision_output_is_one_line(tmp_path):
    """A builder whose softmax computes in the policy's bfloat16 (any Keras model not built
    as the mixed-precision guide says) stopped at the first step under TensorFlow, with the
    top-k metric's traceback ("Input 'predictions' of 'InTopKV2' Op has type bfloat16")."""
    def build():
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
        return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x), name="mine")

    with pytest.raises(ValueError, match=r"^Under precision='mixed_bfloat16' the model's "
                                         r"output must be float32.*received 'mine' with a "
                                         r"bfloat16 output: build its last layer with "
                                         r"dtype='float32'"):
        zoo.train(build, tiny_data(), epochs=1, verbose=0, precision="mixed_bfloat16",
                  run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_learning_rate_scheduler_beside_the_plateau_is_one_line(tmp_path):
    """A warm-up by LearningRateScheduler set the rate every epoch: ReduceLROnPlateau's
    drops never took effect (the rates used, from the weights: 0.05, then 0.1 throughout)
    while it printed "reducing learning rate to 0.01", and result.history said 0.01. With
    reduce_lr=False the scheduler alone sets the rate, as asked."""
    warmup = keras.callbacks.LearningRateScheduler(lambda epoch: 0.1 * min(1, (epoch + 1) / 2))
    with pytest.raises(ValueError, match=r"^callbacks hold a LearningRateScheduler, which sets "
                                         r"the learning rate every epoch and so undoes "
                                         r"ReduceLROnPlateau's drops \(reduce_lr=True\): pass "
                                         r"reduce_lr=False"):
        zoo.train(tiny_model, tiny_data(), epochs=3, verbose=0, callbacks=[warmup],
                  run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    result = zoo.train(tiny_model, tiny_data(), epochs=3, verbose=0, callbacks=[warmup],
                       reduce_lr=False)
    assert result.history["learning_rate"].tolist() == pytest.approx([0.05, 0.1, 0.1])
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=1)  # (the user's)
    with pytest.raises(ValueError, match=r"undoes ReduceLROnPlateau's drops \(yours, in "
                                         r"callbacks\): keep one of the two"):
        zoo.train(tiny_model, tiny_data(), epochs=3, verbose=0, callbacks=[warmup, plateau],
                  reduce_lr=False)


@pytest.mark.all_backends
def test_a_keras_distribution_given_as_the_strategy_is_one_line():
    """It was told "must be one of (...) or a tf.distribute.Strategy", which the JAX
    backend refuses in turn."""
    parallel = keras.distribution.DataParallel(devices=keras.distribution.list_devices()[:1])
    with pytest.raises(ValueError, match=r"^strategy takes a name \('auto', 'one_device', "
                                         r"'mirrored', 'multi_worker'\) or a tf.distribute."
                                         r"Strategy; received a keras.distribution."
                                         r"DataParallel: on JAX, 'mirrored' is DataParallel"):
        zoo.train(tiny_model, tiny_data(), epochs=1, verbose=0, strategy=parallel)


def test_a_monitor_the_run_does_not_log_is_one_line(tmp_path):
    """monitor="val_acuracy" (a typo): best.keras was never written, yet named in the
    result, and the plateau's drops never came, with a warning an epoch at most."""
    with pytest.raises(ValueError, match=r"monitor='val_acuracy' is none of the values this "
                                         r"run logs \(.*val_top1_accuracy.*\): best\.keras"):
        zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=2, verbose=0,
                  run_dir=str(tmp_path / "run"), monitor="val_acuracy", monitor_mode="max")


def test_unknown_model_argument_type():
    with pytest.raises(ValueError, match="received int"):
        zoo.train(3, tiny_data(), epochs=1, verbose=0)


@pytest.mark.parametrize("precision", [
    "mixed_float16", pytest.param("mixed_bfloat16", marks=pytest.mark.slow)])  # fast: one
def test_mixed_precision_trains_and_keeps_the_global_policy(precision):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = zoo.train("resnet18", tiny_data(size=16), epochs=1, precision=precision,
                           verbose=0, model_kwargs=dict(input_shape=(16, 16, 3), classes=4,
                                                        width=0.125, stem="cifar"))
    on_a_cpu = [str(w.message) for w in caught if "on a CPU" in str(w.message)]
    from zoo.training.recipe import _cpu_only

    assert len(on_a_cpu) == (precision == "mixed_float16" and _cpu_only()), on_a_cpu
    assert result.model.dtype_policy.name == precision
    assert result.model.get_layer("conv1_conv").compute_dtype == precision.split("_")[1]
    assert result.model.get_layer("predictions").compute_dtype == "float32"
    assert math.isfinite(result.history["loss"].iloc[0])
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.all_backends
def test_steps_are_jitted_on_jax_and_not_on_tensorflow_by_default(tmp_path):
    """compile_model's default: no XLA on TensorFlow, Keras' jitted step on JAX (without
    it, JAX runs each step op by op). A file saved from a model compiled without XLA (as
    zoo.train's on TensorFlow) loads jitted under JAX."""
    jax = keras.backend.backend() == "jax"
    model = zoo.compile_model(tiny_model())
    assert model.jit_compile is jax
    model = zoo.compile_model(tiny_model(), jit_compile=False)
    model.save(tmp_path / "tiny.keras")
    assert zoo.load_model(tmp_path / "tiny.keras").jit_compile is jax
    assert zoo.load_model(tmp_path / "tiny.keras", compile=False).compiled is False


def test_xla_jit_compile():
    result = zoo.train(tiny_model, tiny_data(), epochs=1, jit_compile=True, verbose=0)
    assert result.model.jit_compile is True
    assert math.isfinite(result.history["loss"].iloc[0])


def test_googlenet_with_aux_heads_trains_through_the_same_call():
    def build():
        return zoo.googlenet(aux_logits=True, input_shape=(79, 79, 3), width=0.125, classes=4)

    rng = np.random.default_rng(0)
    ds = tf.data.Dataset.from_tensor_slices(
        (rng.normal(size=(8, 79, 79, 3)).astype("float32"), np.arange(8) % 4)).batch(4)
    result = zoo.train(build, ds, ds, epochs=1, verbose=0)
    # One output to the recipe: the plain column names; validation sees the main head.
    assert set(result.history.columns) == {
        "epoch", "loss", "top1_accuracy", "top5_accuracy", "val_loss", "val_top1_accuracy",
        "val_top5_accuracy", "learning_rate"}
    model = result.model
    x = np.concatenate([x for x, _ in ds])
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               zoo.without_aux(model).predict(x, verbose=0), rtol=1e-6)


# --- the run directory ----------------------------------------------------------------------


def test_the_plots_are_drawn_every_plot_every_seconds_and_when_training_ends(
        tmp_path, monkeypatch):
    """Drawing costs about 0.5 s, more than an epoch of a small model: a run shorter than
    ``plot_every`` draws once, at the end; a longer one also at the first epoch end at least
    ``plot_every`` seconds after the previous drawing (or the start)."""
    clock, drawn = [0.0], []
    fake_time = types.SimpleNamespace(monotonic=lambda: clock[0])
    monkeypatch.setattr(zoo_callbacks, "time", fake_time)  # the callbacks' clock alone
    monkeypatch.setattr(zoo_callbacks, "plot_history",
                        lambda rows, run_dir: drawn.append([r["epoch"] for r in rows]))
    for seconds, expected in (([1, 1, 1], [[1, 2, 3]]),
                              ([10, 10, 15, 10, 40], [[1, 2, 3], [1, 2, 3, 4, 5]]),
                              ([10, 25, 10], [[1, 2], [1, 2, 3]])):
        drawn.clear()
        writer = zoo_callbacks.HistoryWriter(str(tmp_path / str(len(seconds))), plot_every=30)
        os.makedirs(writer.run_dir, exist_ok=True)
        writer.on_train_begin()
        for epoch, duration in enumerate(seconds):
            clock[0] += duration
            writer.on_epoch_end(epoch, {"loss": 1.0})
        writer.on_train_end()
        assert drawn == expected, seconds


def test_run_directory_contents(tmp_path):
    run_dir = str(tmp_path / "run")
    result = zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=3, run_dir=run_dir,
                       learning_rate=0.1, seed=0, verbose=0)
    names = set(os.listdir(run_dir))
    assert {"config.json", "history.csv", "checkpoints", "logs", "learning_curves.png",
            "learning_rate.png", "backup"} <= names
    assert not [n for n in names if n.startswith(".tmp")]
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["model"] == "tiny" and config["epochs"] == 3 and config["seed"] == 0
    assert config["optimizer"]["config"]["l2"] == 5e-4
    history = pd.read_csv(os.path.join(run_dir, "history.csv"))
    assert history["epoch"].tolist() == [1, 2, 3]
    assert {"loss", "top1_accuracy", "top5_accuracy", "val_loss", "val_top1_accuracy",
            "learning_rate"} <= set(history.columns)
    for png in ("learning_curves.png", "learning_rate.png"):
        assert open(os.path.join(run_dir, png), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert any(f.startswith("events.out") for f in os.listdir(os.path.join(run_dir, "logs",
                                                                              "train")))
    x = next(iter(tiny_data()))[0]
    last = keras.models.load_model(result.last_path)
    np.testing.assert_allclose(last.predict(x, verbose=0), result.model.predict(x, verbose=0),
                               rtol=1e-6)
    best_epoch = int(history["val_top1_accuracy"].idxmax())  # first epoch reaching the best
    best = keras.models.load_model(result.best_path)
    assert best.evaluate(tiny_data(seed=1), return_dict=True, verbose=0)[
        "top1_accuracy"] == pytest.approx(history["val_top1_accuracy"][best_epoch], abs=1e-6)


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    class Diverge(keras.callbacks.Callback):
        """Two good epochs, then the weights blow up at the start of epoch 3."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                kernel = self.model.get_layer("predictions").kernel
                kernel.assign(kernel * np.float32("nan"))

    run_dir = str(tmp_path / "run")
    with pytest.warns(UserWarning, match=r"diverged.*epoch 3.*the last good checkpoint is "
                                         r".*checkpoints/last\.keras.*lower the learning "
                                         r"rate in a new run directory"):  # (a resume can't)
        result = zoo.train(tiny_model, tiny_data(), epochs=6, run_dir=run_dir,
                           reduce_lr=False, callbacks=[Diverge()], verbose=0)
    assert result.diverged
    assert result.history["epoch"].tolist() == [1, 2, 3]
    assert math.isnan(result.history["loss"].iloc[-1])
    last = keras.models.load_model(result.last_path)
    assert all(np.isfinite(w).all() for w in last.get_weights())
    meta = json.load(open(os.path.join(run_dir, "backup", "training_metadata.json")))
    assert meta["epoch"] == 2  # the backup holds the last good epoch too


@pytest.mark.all_backends
def test_an_epoch_of_finite_loss_and_nan_weights_stops_as_a_nan_loss(tmp_path):
    """A last step's update of NaN (here set by hand after the epoch's last batch) left the
    loss finite: the NaN weights were checkpointed, backed up and returned, and the run
    "converged"."""
    class LastStepNaN(keras.callbacks.Callback):
        steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if self.steps == 8:  # epoch 2's last of 4
                kernel = self.model.get_layer("predictions").kernel
                kernel.assign(kernel * np.float32("nan"))

    run_dir = str(tmp_path / "run")
    with pytest.warns(UserWarning, match=r"The training loss of epoch 2 is finite, but 1 "
                                         r"weight\(s\) are not \(predictions/kernel\)"):
        result = zoo.train(tiny_model, tiny_data(), epochs=4, run_dir=run_dir,
                           reduce_lr=False, callbacks=[LastStepNaN()], verbose=0)
    assert result.diverged
    assert result.history["epoch"].tolist() == [1, 2]
    assert math.isnan(result.history["loss"].iloc[-1])
    last = keras.models.load_model(result.last_path)
    assert all(np.isfinite(w).all() for w in last.get_weights())
    meta = json.load(open(os.path.join(run_dir, "backup", "training_metadata.json")))
    assert meta["epoch"] == 1  # the backup holds the last good epoch


def test_a_nan_validation_value_with_a_finite_training_loss_is_no_divergence(tmp_path):
    """A NaN validation image made val_loss NaN: every epoch skipped last.keras, best.keras
    and the backup (the backup folder was then removed as empty), and the run ended saying
    it diverged and kept nothing. The weights are good: they are kept, and it is said."""
    images, labels = next(iter(tiny_data(n=16, seed=1, batch=16)))
    images = images.numpy()
    images[0, 0, 0, 0] = np.nan
    val = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    run_dir = str(tmp_path / "run")

    def linear():  # (a ReLU may turn the NaN into 0)
        inputs = keras.Input((8, 8, 3))
        return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="predictions")(
            keras.layers.Flatten()(inputs)))

    class KilledAtTheEnd(keras.callbacks.Callback):  # the backup, as a kill would leave it
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True
                raise KeyboardInterrupt

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(KeyboardInterrupt):
            zoo.train(linear, tiny_data(), val, epochs=3, run_dir=run_dir, verbose=0,
                      callbacks=[KilledAtTheEnd()])
    said = [str(w.message) for w in caught]
    assert not any("diverged" in m for m in said)
    assert [m for m in said if "not finite" in m] == [
        "val_loss not finite in epoch 1, the training loss finite: checkpoints are kept, and "
        "best.keras is an epoch of a finite val_top1_accuracy. Check the validation data (a "
        "NaN image? labels out of range?)."]
    assert os.path.exists(os.path.join(run_dir, "checkpoints", "last.keras"))
    meta = json.load(open(os.path.join(run_dir, "backup", "training_metadata.json")))
    assert meta["epoch"] in (1, 2)  # backed up: resumable


def test_a_monitor_nan_from_the_first_epoch_on_is_backed_up_and_resumed(tmp_path):
    """With monitor="val_loss" NaN in every epoch, the plateau callback had no best value
    yet, and its backup stopped the run: float(None)."""
    images, labels = next(iter(tiny_data(n=16, seed=1, batch=16)))
    images = images.numpy()
    images[0, 0, 0, 0] = np.nan
    val = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    run_dir = str(tmp_path / "run")

    def linear():
        inputs = keras.Input((8, 8, 3))
        return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="predictions")(
            keras.layers.Flatten()(inputs)), name="linear")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo.train(linear, tiny_data(), val, epochs=2, run_dir=run_dir, monitor="val_loss",
                  verbose=0)
        result = zoo.train(linear, tiny_data(), val, epochs=3, run_dir=run_dir,
                           monitor="val_loss", verbose=0)  # extended: resumes from epoch 2
    assert len(result.history) == 3 and result.history["val_loss"].isna().all()
    assert np.isfinite(result.history["loss"]).all()


def test_divergence_in_the_first_epoch_says_nothing_was_kept(tmp_path):
    class Diverge(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            kernel = self.model.get_layer("predictions").kernel
            kernel.assign(kernel * np.float32("inf"))

    with pytest.warns(UserWarning, match=r"epoch 1.*no checkpoint was written"):
        result = zoo.train(tiny_model, tiny_data(), epochs=3, run_dir=str(tmp_path),
                           callbacks=[Diverge()], verbose=0)
    assert result.diverged and not os.path.exists(tmp_path / "checkpoints" / "last.keras")


def test_a_finite_loss_far_above_chance_is_flagged():
    """Logits fixed at 30 for a wrong class: a finite loss of about 30, far above
    ln(4) = 1.39, that never turns into NaN."""
    def confidently_wrong():
        model = tiny_model()
        head = model.get_layer("predictions")
        head.kernel.assign(np.zeros_like(head.kernel.numpy()))
        head.bias.assign(np.array([30.0, 0, 0, 0], "float32"))
        model.trainable = False
        return model

    data = tiny_data().map(lambda x, y: (x, tf.ones_like(y)))  # every label is class 1
    with pytest.warns(UserWarning, match=r"training loss reached 30 in epoch 1, more than 3 "
                                         r"times chance's ln\(4\) = 1\.39"):
        result = zoo.train(confidently_wrong, data, epochs=1, reduce_lr=False, verbose=0)
    assert not result.diverged


# --- fine-tuning -----------------------------------------------------------------------------


@pytest.mark.parametrize("freeze, frozen, train_batch_norm", [
    ("all", 15, False), ("none", 0, False), ("none", 0, True), (5, 5, False)])
def test_fine_tune_freezes_what_it_says(freeze, frozen, train_batch_norm):
    """BatchNorm stays frozen (inference mode) unless train_batch_norm, as Keras'
    transfer-learning guide keeps it: it updated its statistics on the small new batches."""
    base = zoo.alexnet(input_shape=(67, 67, 3), width=16, classes=10, norm="batch")
    tuned = zoo.fine_tune(base, classes=3, freeze=freeze, train_batch_norm=train_batch_norm)
    body = [l for l in tuned.layers
            if not isinstance(l, keras.layers.InputLayer) and l.name != "predictions"]
    assert len(body) == 15  # conv1, norm1, pool1, ..., fc7, drop7
    expected = [i >= frozen and (train_batch_norm or not l.name.startswith("norm"))
                for i, l in enumerate(body)]
    assert [l.trainable for l in body] == expected
    assert tuned.output_shape == (None, 3) and tuned.get_layer("predictions").trainable
    before = {w.path: w.numpy().copy() for w in tuned.weights}
    rng = np.random.default_rng(0)
    ds = tf.data.Dataset.from_tensor_slices(
        (rng.uniform(0, 1, (8, 67, 67, 3)).astype("float32"), np.arange(8) % 3)).batch(8)
    zoo.train(tuned, ds, epochs=1, reduce_lr=False, learning_rate=0.05, verbose=0)
    frozen_layers = {l.name for l, trainable in zip(body, expected) if not trainable}
    for w in tuned.weights:
        changed = not np.array_equal(w.numpy(), before[w.path])
        layer = w.path.split("/")[0]
        if layer in frozen_layers:
            assert not changed, f"{w.path} is frozen but changed"
    kernels = [w for w in tuned.trainable_weights if w.name == "kernel"]
    assert all(not np.array_equal(w.numpy(), before[w.path]) for w in kernels)


def test_fine_tune_keeps_the_batch_norm_of_a_nested_block_frozen():
    """Unfreezing a nested block made its BatchNorm trainable again."""
    inputs = keras.Input((8, 8, 3))
    block = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.BatchNormalization(name="bn")], name="block")
    pooled = keras.layers.GlobalAveragePooling2D()(block(inputs))
    base = keras.Model(inputs, keras.layers.Dense(5, activation="softmax",
                                                  name="predictions")(pooled))
    zoo.fine_tune(base, classes=3, freeze="none")
    assert block.trainable and not block.get_layer("bn").trainable
    zoo.fine_tune(base, classes=3, freeze="none", train_batch_norm=True)
    assert block.get_layer("bn").trainable
    with pytest.raises(UserError, match=r"`train_batch_norm` must be True or False"):
        zoo.fine_tune(base, classes=3, train_batch_norm="yes")


@pytest.mark.all_backends
def test_fine_tune_keeps_the_new_head_in_float32_under_mixed_precision():
    """Every builder's classifier runs in float32 under mixed precision (a safe softmax);
    fine_tune's new head ran in bfloat16, as its probabilities were."""
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        base = zoo.resnet18(input_shape=(32, 32, 3), width=0.125, stem="cifar", classes=7)
        tuned = zoo.fine_tune(base, classes=3)
    finally:
        keras.config.set_dtype_policy("float32")
    assert base.get_layer("predictions").dtype_policy.name == "float32"
    assert tuned.get_layer("predictions").dtype_policy.name == "float32"
    assert tuned.output.dtype == "float32"


def test_fine_tune_errors():
    base = zoo.alexnet(input_shape=(67, 67, 3), width=16, classes=10)
    with pytest.raises(ValueError, match=r"`freeze` must be 'all', 'none' or a number.*99"):
        zoo.fine_tune(base, classes=3, freeze=99)
    with pytest.raises(ValueError, match=r"or pooled features \(include_top=False, "
                                         r"pooling='avg' or 'max'\); 'alexnet' has neither "
                                         r"\(its output: shape \(None, 1, 1, 256\)\)\.$"):
        zoo.fine_tune(zoo.alexnet(input_shape=(67, 67, 3), include_top=False), classes=3)
    # A classifier of another name is not taken for features (a head on its probabilities).
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    mine = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(pooled), name="mine")
    with pytest.raises(ValueError, match="'mine' has neither"):
        zoo.fine_tune(mine, classes=3)
    # A pooling that keeps its map's axes gives no vector for a head; nor does a subclassed
    # model inside a functional one give a graph to read (an AttributeError).
    inputs = keras.Input((8, 8, 3))
    kept = keras.layers.GlobalAveragePooling2D(keepdims=True)(keras.layers.Conv2D(4, 3)(inputs))
    with pytest.raises(ValueError, match=r"'kept' has neither \(its output: shape "
                                         r"\(None, 1, 1, 4\)\)"):
        zoo.fine_tune(keras.Model(inputs, kept, name="kept"), classes=3)

    class Pooled(keras.Model):
        def call(self, x):
            return keras.ops.mean(x, axis=(1, 2))

    with pytest.raises(ValueError, match="'wraps' has neither"):
        zoo.fine_tune(keras.Model(inputs, Pooled()(inputs), name="wraps"), classes=3)
    # Pooled features take the head, max-pooled ones too (the head reads the pooling).
    pooled = zoo.alexnet(input_shape=(67, 67, 3), width=16, include_top=False, pooling="max")
    tuned = zoo.fine_tune(pooled, classes=3)
    assert tuned.get_layer("predictions").input is pooled.output
    assert tuned.output_shape == (None, 3) and len(tuned.trainable_weights) == 2

    class Subclassed(keras.Model):  # no graph to look into (it was an AttributeError)
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="'subclassed' has neither."):
        zoo.fine_tune(Subclassed(name="subclassed"), classes=3)
    # One class under a softmax is refused as the builders refuse it (it predicted 1.0).
    with pytest.raises(ValueError, match=r"classes=1 with classifier_activation='softmax' "
                                         r"predicts 1\.0 for every input"):
        zoo.fine_tune(base, classes=1)
    assert zoo.fine_tune(base, classes=1, classifier_activation="sigmoid").output_shape == (
        None, 1)


def test_fine_tune_takes_numpy_integers_as_the_builders_do():
    """``classes=labels.max() + 1`` is a NumPy integer: Keras' Dense refused it ("expected a
    positive integer. Received: units=3"), and ``freeze`` refused one too."""
    base = zoo.alexnet(input_shape=(67, 67, 3), width=16, classes=np.int64(10))
    tuned = zoo.fine_tune(base, classes=np.int64(3), freeze=np.int64(4))
    assert tuned.output_shape == (None, 3)
    body = [l for l in tuned.layers
            if not isinstance(l, keras.layers.InputLayer) and l.name != "predictions"]
    assert [l.trainable for l in body[:5]] == [False] * 4 + [True]


# --- optimizers and weight averaging ---------------------------------------------------------


@pytest.mark.parametrize("name, cls, nesterov", [
    ("sgd", zoo.PaperSGD, False), ("nesterov", zoo.PaperSGD, True),
    ("adam", keras.optimizers.Adam, None), ("rmsprop", keras.optimizers.RMSprop, None),
    ("adagrad", keras.optimizers.Adagrad, None)])
def test_make_optimizer_by_name(name, cls, nesterov):
    optimizer = zoo.make_optimizer(name, learning_rate=0.05, weight_decay=1e-4, ema=True)
    assert type(optimizer) is cls and optimizer.use_ema
    assert float(optimizer.learning_rate) == pytest.approx(0.05)
    if nesterov is not None:
        assert optimizer.nesterov is nesterov and optimizer.l2 == 1e-4
    else:
        assert optimizer.weight_decay == 1e-4
    with pytest.raises(ValueError, match=r"`optimizer` must be one of.*received 'lbfgs'"):
        zoo.make_optimizer("lbfgs")
    # weight_decay=None is no decay, as the checks allow (PaperSGD's float(None) failed).
    plain = zoo.make_optimizer(name, weight_decay=None)
    assert (plain.l2 == 0.0) if nesterov is not None else plain.weight_decay is None


@pytest.mark.all_backends
@pytest.mark.parametrize("name", ["adam", "rmsprop", "adagrad"])
def test_decoupled_decay_spares_biases_and_normalisation_as_paper_sgd_does(name):
    """make_optimizer's Adam, RMSprop and Adagrad decayed every variable (Keras' default):
    biases, BatchNorm's gamma and beta, PReLU's slopes. They decay the kernels alone now,
    by Keras' own rule (the kernels match Keras' optimizer, which decays the rest too)."""
    def model():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6, 6, 2))
        x = keras.layers.Conv2D(3, 3, name="conv")(inputs)
        x = keras.layers.BatchNormalization(name="bn")(x)
        x = keras.layers.PReLU(name="prelu")(x)
        x = keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(x))
        return keras.Model(inputs, x)

    def step(optimizer):
        net = model()
        before = {v.path: np.array(v.numpy()) for v in net.trainable_variables}
        optimizer.apply_gradients([(keras.ops.zeros(v.shape), v) for v in net.trainable_variables])
        return before, {v.path: np.array(v.numpy()) for v in net.trainable_variables}

    before, ours = step(zoo.make_optimizer(name, learning_rate=0.5, weight_decay=0.1))
    _, keras_own = step(getattr(keras.optimizers, {"adam": "Adam", "rmsprop": "RMSprop",
                                                    "adagrad": "Adagrad"}[name])(
        learning_rate=0.5, weight_decay=0.1))
    for path, value in ours.items():
        if path.endswith("kernel"):
            np.testing.assert_allclose(value, keras_own[path], rtol=1e-6)
            np.testing.assert_allclose(value, before[path] * (1 - 0.5 * 0.1), rtol=1e-6)
        else:  # conv/bias, bn/gamma, bn/beta, prelu/alpha, fc/bias
            np.testing.assert_array_equal(value, before[path])
    np.testing.assert_allclose(keras_own["bn/gamma"], 0.95, rtol=1e-6)  # (the others are 0)
    assert {p.split("/")[-1] for p in ours} == {"kernel", "bias", "gamma", "beta", "alpha"}


def test_a_loss_name_keras_does_not_know_is_one_line_at_compile():
    """Keras took 'sparse_categoricl_crossentropy' at compile and failed at the first step;
    the closest of Keras' names is given now, for a name in a dict of losses too."""
    from zoo.optimizers import compile_model

    for loss in ("sparse_categoricl_crossentropy", {"predictions": "categorical_crossentrpy"}):
        with pytest.raises(ValueError, match=r"^Unknown loss '\w+' \(did you mean '(sparse_)?"
                                             r"categorical_crossentropy'\?\): one of Keras' "):
            compile_model(tiny_model(), loss=loss)
    compiled = compile_model(tiny_model(), loss="categorical_focal_crossentropy")
    assert compiled.loss == "categorical_focal_crossentropy"


def test_optimizer_names_momentum_types_and_a_second_decay():
    """compile_model("sgd") handed the name to Keras: plain SGD at its own 0.01, without
    momentum or decay, the learning rate given dropped; an int or NumPy momentum failed
    in Keras as "must be a float between [0, 1]"; PaperSGD(weight_decay=) added Keras'
    decoupled decay (biases too) on top of l2 without a word."""
    import numpy as np

    from zoo.optimizers import compile_model

    model = compile_model(tiny_model(), "sgd", learning_rate=0.05, momentum=0.5,
                          weight_decay=1e-3)
    assert type(model.optimizer) is zoo.PaperSGD and model.optimizer.l2 == 1e-3
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    assert model.optimizer.momentum == 0.5
    assert type(compile_model(tiny_model(), "SGD").optimizer) is zoo.PaperSGD
    assert type(compile_model(tiny_model(), "nadam").optimizer) is keras.optimizers.Nadam
    for momentum in (0, np.float32(0.9)):
        assert zoo.PaperSGD(momentum=momentum).momentum == pytest.approx(float(momentum))
        assert zoo.make_optimizer("sgd", momentum=momentum).momentum == pytest.approx(
            float(momentum))
    with pytest.raises(ValueError, match=r"PaperSGD decays the weights through `l2` .*"
                                         r"received weight_decay=0.0005, Keras' decoupled"):
        zoo.PaperSGD(0.01, weight_decay=5e-4)


def test_ema_run_validates_checkpoints_and_returns_the_averaged_weights(tmp_path):
    """The same run through plain Keras (`use_ema` and its `finalize_variable_values`)
    ends on the same weights; the validation metrics and best/last checkpoints are those
    of the averaged weights."""
    val = tiny_data(seed=1)
    result = zoo.train(tiny_model, tiny_data(), val, epochs=3, seed=0, reduce_lr=False,
                       optimizer=lambda: zoo.make_optimizer("adam", 0.01, ema=True),
                       run_dir=str(tmp_path), verbose=0)
    keras.utils.set_random_seed(0)
    plain = tiny_model()
    plain.compile(optimizer=zoo.make_optimizer("adam", 0.01, ema=True),
                  loss="sparse_categorical_crossentropy")
    plain.fit(tiny_data(), epochs=3, shuffle=False, verbose=0)
    for ours, reference in zip(result.model.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
    final = result.model.evaluate(val, return_dict=True, verbose=0)
    assert result.history["val_loss"].iloc[-1] == pytest.approx(final["loss"], rel=1e-5)
    last = keras.models.load_model(tmp_path / "checkpoints" / "last.keras")
    for saved, averaged in zip(last.get_weights(), result.model.get_weights()):
        np.testing.assert_allclose(saved, averaged, rtol=1e-6)


def test_ema_with_batchnorm_that_trains_is_one_line(tmp_path, capsys):
    """Keras' use_ema leaves BatchNorm's moving statistics raw: the averaged ResNet ran
    with the raw weights' statistics (validation at chance for six epochs). Frozen
    BatchNorm (inference mode, fixed statistics) is no such mismatch."""
    build = functools.partial(zoo.resnet20, input_shape=(8, 8, 3), classes=4, width=0.25)
    ema = dict(optimizer=lambda: zoo.make_optimizer("adam", 0.01, ema=True), verbose=0)
    with pytest.raises(ValueError, match=r"^ema=True \(--ema\) averages the trainable "
                                         r"weights only \(Keras' use_ema\), and 'resnet20' "
                                         r"has BatchNormalization layers that train "
                                         r"\('.*' and 18 more\)"):
        zoo.train(build, tiny_data(), epochs=1, run_dir=str(tmp_path / "run"), **ema)
    assert not (tmp_path / "run").exists()

    def frozen():
        model = build()
        for layer in model.layers:
            layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
        return model

    assert len(zoo.train(frozen, tiny_data(), epochs=1, **ema).history) == 1
    # From the shell: before the statistics pass (a full pass over the training set), with
    # nothing written; it came after it, and left the run's lock and statistics.
    from zoo import cli

    run_dir = tmp_path / "shell"
    assert cli.main(["train", "--model", "resnet20", "--image-size", "8", "--model-arg",
                     "width=0.25", "--ema", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr()
    assert len(err.err.strip().splitlines()) == 1 and "--ema" in err.err
    assert "statistics" not in err.out and not run_dir.exists()


@pytest.mark.slow  # float16 on a CPU: 8 s
def test_a_mixed_float16_ema_run_validates_and_checkpoints_the_averaged_weights(tmp_path):
    """Under mixed_float16 the optimizer is a LossScaleOptimizer, whose own use_ema is
    False: the run validated and checkpointed its raw weights (last.keras differed from
    the averaged model fit returned)."""
    val = tiny_data(size=32, seed=1)
    result = zoo.train("vgg11", tiny_data(size=32), val, epochs=2, seed=0, reduce_lr=False,
                       precision="mixed_float16", run_dir=str(tmp_path), verbose=0,
                       optimizer=lambda: zoo.make_optimizer("adam", 0.01, ema=True),
                       model_kwargs=dict(input_shape=(32, 32, 3), classes=4, width=0.0625))
    assert isinstance(result.model.optimizer, keras.optimizers.LossScaleOptimizer)
    last = keras.models.load_model(tmp_path / "checkpoints" / "last.keras")
    for saved, averaged in zip(last.get_weights(), result.model.get_weights()):
        np.testing.assert_array_equal(saved, averaged)
    final = result.model.evaluate(val, return_dict=True, verbose=0)
    assert result.history["val_loss"].iloc[-1] == pytest.approx(final["loss"], rel=1e-3)


@pytest.mark.parametrize("with_run_dir", [True, False])
def test_with_ema_the_users_callbacks_see_the_validated_averaged_weights(tmp_path,
                                                                        with_run_dir):
    """A user's callback at an epoch's end holds the averaged weights that were validated,
    as the checkpoints do: a snapshot callback saved the raw weights (0.24 from last.keras),
    and EarlyStopping(restore_best_weights=True) returned raw epoch-1 weights."""
    val = tiny_data(seed=1)
    seen = []
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(recorder.model.get_weights()))
    result = zoo.train(tiny_model, tiny_data(), val, epochs=3, seed=0, reduce_lr=False,
                       optimizer=lambda: zoo.make_optimizer("adam", 0.01, ema=True),
                       run_dir=str(tmp_path) if with_run_dir else None, verbose=0,
                       callbacks=[recorder])
    keras.utils.set_random_seed(0)
    plain = tiny_model()  # training itself is plain Keras': the same weights
    plain.compile(optimizer=zoo.make_optimizer("adam", 0.01, ema=True),
                  loss="sparse_categorical_crossentropy")
    plain.fit(tiny_data(), epochs=3, shuffle=False, verbose=0)
    for ours, reference in zip(result.model.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
    for saw, averaged in zip(seen[-1], result.model.get_weights()):
        np.testing.assert_allclose(saw, averaged, rtol=1e-6)
    probe = tiny_model()
    probe.compile(loss="sparse_categorical_crossentropy")
    for epoch in range(3):
        probe.set_weights(seen[epoch])
        assert probe.evaluate(val, verbose=0) == pytest.approx(
            result.history["val_loss"].iloc[epoch], rel=1e-5)


def test_with_ema_a_users_own_backup_saves_the_raw_training_state(tmp_path):
    """Keras' BackupAndRestore among the user's callbacks saves the training state, so it
    runs after the raw weights are back: placed with the others, it saved the averages as
    the weights (and the raw ones as the averages), and a resumed run went on from them."""
    from zoo.training import recipe

    raw_back = [c for c in recipe._run_callbacks(None, "loss", False, 0.1, 5, 0, 0, ema=True)
                if isinstance(c, recipe.zoo_callbacks.RawWeightsBack)]
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "own"))
    logger = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    for run_dir in (None, str(tmp_path / "run")):
        run = recipe._run_callbacks(run_dir, "loss", False, 0.1, 5, 0, 0, ema=True)
        order = recipe._with_user_callbacks(run, [backup, logger])
        back = next(i for i, c in enumerate(order)
                    if isinstance(c, recipe.zoo_callbacks.RawWeightsBack))
        assert order.index(logger) < back < order.index(backup), run_dir
    assert raw_back  # (without a run directory too)


def _h5_arrays(path):
    """Every dataset of the HDF5 file ``path`` by its name: what a weights file holds."""
    import h5py

    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: found.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return found


def _same_arrays(first, second):
    return first.keys() == second.keys() and all(
        np.array_equal(first[k], second[k]) for k in first)


class _HalveWeights(keras.callbacks.Callback):
    """A user's callback that changes the weights at an epoch's end (as EarlyStopping's
    restore_best_weights does)."""

    def on_epoch_end(self, epoch, logs=None):
        for variable in self.model.trainable_variables:
            variable.assign(variable * 0.5)


def test_the_backup_copies_the_checkpoints_weights_unless_a_callback_changed_them(
        tmp_path, monkeypatch):
    """The backup's weights file is a copy of the weights inside last.keras, saved at the
    same epoch's end (one save an epoch, not two): it holds what Keras' own save_weights
    writes for the trained model and optimizer, array for array. A user's callback between
    the two that changes the weights makes the backup save its own: it then holds the
    changed weights, which a resume must start from, and last.keras the ones before."""
    import zipfile

    saves = []
    original = keras.Model.save_weights
    monkeypatch.setattr(keras.Model, "save_weights",
                        lambda self, path, **kw: (saves.append(path), original(self, path, **kw)))
    for name, callbacks in (("copied", []), ("changed", [_HalveWeights()])):
        run_dir = tmp_path / name
        saves.clear()
        model = zoo.train(tiny_model, tiny_data(), epochs=2, run_dir=str(run_dir), seed=0,
                          verbose=0, callbacks=callbacks).model
        backup = _h5_arrays(run_dir / "backup" / "latest.weights.h5")
        model.save_weights(str(tmp_path / f"{name}.weights.h5"))  # Keras' own, after
        assert _same_arrays(backup, _h5_arrays(tmp_path / f"{name}.weights.h5")), name
        assert any(k.startswith("optimizer/") for k in backup)  # the momentum too
        with zipfile.ZipFile(run_dir / "checkpoints" / "last.keras") as archive:
            archive.extract("model.weights.h5", tmp_path / name)
        checkpoint = _h5_arrays(tmp_path / name / "model.weights.h5")
        assert _same_arrays(backup, checkpoint) == (name == "copied"), name
        assert len(saves) == (0 if name == "copied" else 2) + 1, (name, saves)


def test_copy_weights_out_refuses_an_archive_without_keras_weights_file(tmp_path):
    import zipfile

    from zoo.saving import copy_weights_out

    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    assert copy_weights_out(str(path), str(tmp_path / "w.weights.h5")) is False
    assert not (tmp_path / "w.weights.h5").exists()


def test_the_private_keras_names_the_callbacks_rely_on_are_there(monkeypatch):
    """The crash-safe callbacks use private Keras names, all in zoo.training.keras_internals;
    an upgrade that moves one fails here, naming it (not deep inside a resumed run)."""
    from zoo.training import keras_internals

    assert keras_internals.missing() == []
    moved = (keras.callbacks.ReduceLROnPlateau, "_is_improvement_in_keras_4")  # the check
    monkeypatch.setattr(keras_internals, "USED", keras_internals.USED + [moved])
    assert keras_internals.missing() == ["ReduceLROnPlateau._is_improvement_in_keras_4"]


def test_a_model_resumed_once_trains_again_from_its_first_epoch(tmp_path):
    """Keras keeps the epoch a backup restored on the model: trained again (no backup),
    fit started there, and 2 epochs asked after a run resumed at epoch 2 trained none."""
    from tests.helpers import tiny_data, tiny_model

    run_dir = str(tmp_path / "run")
    zoo.train(tiny_model, tiny_data(), epochs=2, run_dir=run_dir, verbose=0, seed=0)
    resumed = zoo.train(tiny_model, tiny_data(), epochs=3, run_dir=run_dir, verbose=0, seed=0)
    assert resumed.history["epoch"].tolist() == [1, 2, 3]
    again = zoo.train(resumed.model, tiny_data(), epochs=2, verbose=0, seed=0)
    assert again.history["epoch"].tolist() == [1, 2]
    before = [w.copy() for w in resumed.model.get_weights()]
    resumed.model.fit(tiny_data(), epochs=1, verbose=0)  # Keras' own fit: from epoch 0 too
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, resumed.model.get_weights()))


@pytest.mark.all_backends
def test_a_resumed_run_draws_the_dropout_masks_the_uninterrupted_run_draws(tmp_path):
    """Keras' save_weights leaves out the random generators' states: a resumed run drew the
    first epoch's dropout masks again, and ended elsewhere than the uninterrupted run."""
    from tests.helpers import tiny_data

    def dropped():
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Dropout(0.5, seed=3)(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x), name="d")

    def train(run_dir, epochs):
        return zoo.train(dropped, tiny_data(), epochs=epochs, run_dir=str(tmp_path / run_dir),
                         seed=0, reduce_lr=False, verbose=0).model.get_weights()

    whole = train("whole", 3)
    train("resumed", 1)
    resumed = train("resumed", 3)
    for ours, theirs in zip(resumed, whole):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_resuming_on_a_derived_random_dataset_says_the_epochs_start_over(tmp_path):
    """A .map() of data.load's dataset keeps no epochs: resumed, it replayed the first
    epoch's order and augmentation without a word. A deterministic dataset is quiet."""
    import data

    from tests.helpers import tiny_data

    shuffled = data.load("digits", "train[:64]", batch_size=16, image_size=8, seed=0).map(
        lambda x, y: (x / 255.0, y % 4))
    run_dir = str(tmp_path / "run")
    for epochs, dataset, says in ((1, shuffled, False), (2, shuffled, True),
                                  (3, tiny_data(), False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            zoo.train(tiny_model, dataset, epochs=epochs, run_dir=run_dir, verbose=0,
                      reduce_lr=False)
        said = [w for w in caught if "starts again from the first epoch" in str(w.message)]
        assert bool(said) == says, (epochs, [str(w.message) for w in caught])
    # An endless stream counted in steps: resumed, it restarted at its first batch, not
    # where the first epoch's ended (the epoch-2 loss 1.3595 for 1.3367), without a word.
    endless = str(tmp_path / "endless")
    for epochs, says in ((1, False), (2, True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            zoo.train(tiny_model, tiny_data().repeat(), epochs=epochs, steps_per_epoch=3,
                      run_dir=endless, verbose=0, reduce_lr=False)
        said = [w for w in caught if "counted in steps of an endless stream "
                "(steps_per_epoch=3, .repeat()): it starts again from its first batch, not "
                "where epoch 1's batches ended" in str(w.message)]
        assert bool(said) == says, (epochs, [str(w.message) for w in caught])
    from zoo.training.callbacks import _random

    plain = tf.data.Dataset.from_tensor_slices(np.zeros((8, 2), "float32")).batch(2)
    assert not _random(plain) and _random(plain.shuffle(4))
    assert _random(plain.map(lambda x: x + tf.random.stateless_uniform((2,), seed=[1, 2])))
    assert not _random(plain.map(lambda x: x * 2).prefetch(1))


def test_fewer_epochs_than_a_run_has_trained_is_one_line(tmp_path, capsys):
    """It trained nothing and returned the longer run's model and history, as if done."""
    run_dir = str(tmp_path / "run")
    zoo.train(tiny_model, tiny_data(), epochs=3, run_dir=run_dir, verbose=0)
    config = open(os.path.join(run_dir, "config.json")).read()
    with pytest.raises(ValueError, match=r"The run in .*run has trained 3 epochs; epochs=2 "
                                         r"would train none of them again: give epochs=3"):
        zoo.train(tiny_model, tiny_data(), epochs=2, run_dir=run_dir, verbose=0)
    assert open(os.path.join(run_dir, "config.json")).read() == config  # nothing written
    assert zoo.train(tiny_model, tiny_data(), epochs=3, run_dir=run_dir,
                     verbose=0).history["epoch"].tolist() == [1, 2, 3]  # done: as before
    # From the shell: in the flags' words, before the statistics pass (a pass over the
    # training set), nothing written.
    from zoo import cli

    capsys.readouterr()
    config = open(os.path.join(run_dir, "config.json")).read()
    assert cli.main(["train", "--model", "resnet20", "--epochs", "2", "--image-size", "8",
                     "--run-dir", run_dir]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"zoo train: error: The run in {run_dir} has trained 3 epochs; "
                            "--epochs 2 would train none of them again: give --epochs 3 or "
                            "more to go on, or another --run-dir.\n")
    assert "statistics" not in captured.out
    assert open(os.path.join(run_dir, "config.json")).read() == config


def test_a_run_that_trained_and_lost_its_backup_is_never_trained_over(tmp_path):
    """A finished run's backup/ deleted to save room: a second run there, at another rate,
    replaced its checkpoints, history and config.json without a word. A backup/ that links
    to nothing (a disk not mounted) was taken for none: the config was rewritten, then
    the run failed on "File exists"."""
    run_dir = tmp_path / "run"

    def train():
        return zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=1, verbose=0,
                         run_dir=str(run_dir), learning_rate=0.05)

    zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=1, verbose=0,
              run_dir=str(run_dir))
    shutil.rmtree(run_dir / "backup")
    names = ("config.json", "history.csv", "checkpoints/best.keras", "checkpoints/last.keras")
    kept = {name: (run_dir / name).read_bytes() for name in names}
    with pytest.raises(UserError, match=r"holds a run that trained \(.*best\.keras\) and no "
                                        r"backup/ to resume it from"):
        train()
    (run_dir / "checkpoints" / "best.keras").rename(tmp_path / "best.keras")  # history alone
    with pytest.raises(UserError, match=r"trained \(.*history\.csv, epoch 1\)"):
        train()
    (run_dir / "backup").symlink_to(tmp_path / "unmounted")
    with pytest.raises(UserError, match=r"backup is a link to .*unmounted, which is not there"):
        train()
    assert {name: (run_dir / name).read_bytes() for name in names if "best" not in name} == {
        name: kept[name] for name in names if "best" not in name}


def test_a_run_that_diverged_in_its_first_epoch_runs_again_with_another_rate(tmp_path):
    """The backup folder is made when training starts (a run killed before its first
    backup is a stopped run); one that ended, diverged, before any backup is not, and the
    advice it prints (lower the learning rate) is followed in the same run directory."""
    class Diverge(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            kernel = self.model.get_layer("predictions").kernel
            kernel.assign(kernel * np.float32("nan"))

    run_dir = str(tmp_path / "run")
    with pytest.warns(UserWarning, match=r"diverged.*epoch 1.*no checkpoint was written"):
        result = zoo.train(tiny_model, tiny_data(), epochs=2, run_dir=run_dir, verbose=0,
                           learning_rate=0.5, reduce_lr=False, callbacks=[Diverge()])
    assert result.diverged and not os.path.exists(os.path.join(run_dir, "backup"))
    again = zoo.train(tiny_model, tiny_data(), epochs=2, run_dir=run_dir, verbose=0,
                      learning_rate=0.05, reduce_lr=False)
    assert again.history["epoch"].tolist() == [1, 2] and not again.diverged

    class Fails(keras.callbacks.Callback):  # an error in the first epoch (out of memory, say)
        def on_train_batch_end(self, batch, logs=None):
            raise RuntimeError("out of memory")

    other = str(tmp_path / "other")
    with pytest.raises(RuntimeError, match="out of memory"):
        zoo.train(tiny_model, tiny_data(), epochs=2, run_dir=other, verbose=0,
                  learning_rate=0.5, reduce_lr=False, callbacks=[Fails()])
    assert not os.path.exists(os.path.join(other, "backup"))
    assert zoo.train(tiny_model, tiny_data(), epochs=1, run_dir=other, verbose=0,
                     learning_rate=0.05, reduce_lr=False).history["epoch"].tolist() == [1]

    class FailsAtItsEnd(keras.callbacks.Callback):  # after the history's row and checkpoints
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("my callback's disk is full")

    ended = str(tmp_path / "ended")
    with pytest.raises(RuntimeError, match="disk is full"):
        zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=2, run_dir=ended,
                  verbose=0, callbacks=[FailsAtItsEnd()])
    assert os.path.exists(os.path.join(ended, "checkpoints", "best.keras"))  # what it left
    assert not os.path.exists(os.path.join(ended, "backup"))  # is no run that trained
    assert zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=1, run_dir=ended,
                     verbose=0, learning_rate=0.05).history["epoch"].tolist() == [1]


@pytest.mark.parametrize("policy", [
    "mixed_bfloat16", pytest.param("mixed_float16", marks=pytest.mark.slow)])  # fast: one
def test_a_global_mixed_policy_is_the_precision_zoo_train_builds_and_records(policy, tmp_path):
    """Keras' guide sets the policy globally: zoo.train built its registry models in float32
    whatever it said, recorded precision null for a model built under it, and a user model
    of a half-precision output was TensorFlow's traceback from the first step (one line
    only where precision= was given)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        result = zoo.train("resnet18", tiny_data(), epochs=1, verbose=0, reduce_lr=False,
                           model_kwargs=dict(input_shape=(8, 8, 3), classes=4, width=0.125,
                                             stem="cifar"), run_dir=str(tmp_path / "r"))
        built = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                                  keras.layers.Dense(4, activation="softmax")], name="half")
        with pytest.raises(UserError, match=r"^The model's output must be float32 under "
                                            r"mixed precision.*received 'half' with a "
                                            rf"{policy[6:]} output"):
            zoo.train(built, tiny_data(), epochs=1, verbose=0)
    finally:
        keras.config.set_dtype_policy(previous)
    assert half_precision_of(result.model) == policy[6:]
    with open(tmp_path / "r" / "config.json", encoding="utf-8") as f:
        recorded = json.load(f)
    assert (recorded["precision"], recorded["computes_in"]) == (policy, policy[6:])
    keras.config.set_dtype_policy(policy)
    try:
        model = zoo.get_model("resnet18", input_shape=(8, 8, 3), classes=4, width=0.125,
                              stem="cifar")
    finally:
        keras.config.set_dtype_policy(previous)
    zoo.train(model, tiny_data(), epochs=1, verbose=0, reduce_lr=False,
              run_dir=str(tmp_path / "built"))
    with open(tmp_path / "built" / "config.json", encoding="utf-8") as f:
        recorded = json.load(f)  # (a built model's precision= is None, as runs recorded it)
    assert (recorded["precision"], recorded["computes_in"]) == (None, policy[6:])


def test_a_float16_model_loaded_in_float32_trains_with_loss_scaling(tmp_path):
    """Keras scales the loss where the model's own policy is mixed_float16; a float16 model
    loaded (or given a new head by fine_tune) under the default policy has float32's, and
    zoo.train trained its float16 layers without loss scaling (small gradients underflow)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:  # (small: float16 kernels are slow on a CPU)
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
        model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax",
                                                       dtype="float32", name="predictions")(x))
    finally:
        keras.config.set_dtype_policy(previous)
    path = zoo.save_model(model, str(tmp_path / "half.keras"))
    loaded = zoo.load_model(path, compile=False)
    assert loaded.dtype_policy.name == "float32" and half_precision_of(loaded) == "float16"
    for given in (loaded, zoo.fine_tune(zoo.load_model(path, compile=False), classes=3)):
        data = tiny_data() if given is loaded else tiny_data().map(lambda x, y: (x, y % 3))
        result = zoo.train(given, data, epochs=1, verbose=0, reduce_lr=False)
        assert isinstance(result.model.optimizer, keras.optimizers.LossScaleOptimizer)
    # A run of such a model recorded before: its optimizer as it was (PaperSGD), and no
    # computes_in; it resumes (the wrapper and a derived precision refused it). A second
    # zoo.train of the trained model does not call the recipe's optimizer the user's.
    run_dir = tmp_path / "run"
    zoo.train(zoo.load_model(path, compile=False), tiny_data(), epochs=1, verbose=0,
              reduce_lr=False, run_dir=str(run_dir))
    with open(run_dir / "config.json", encoding="utf-8") as f:
        recorded = json.load(f)
    assert recorded["optimizer"]["class_name"] == "PaperSGD" and recorded["precision"] is None
    assert recorded.pop("computes_in") == "float16"
    with open(run_dir / "config.json", "w", encoding="utf-8") as f:
        json.dump(recorded, f)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        again = zoo.train(zoo.load_model(path, compile=False), tiny_data(), epochs=2,
                          verbose=0, reduce_lr=False, run_dir=str(run_dir))
        assert again.history["epoch"].tolist() == [1, 2]
        zoo.train(again.model, tiny_data(), epochs=1, verbose=0, reduce_lr=False)
    result = zoo.train(tiny_model(8, 4), tiny_data(), epochs=1, verbose=0, reduce_lr=False)
    assert not isinstance(result.model.optimizer, keras.optimizers.LossScaleOptimizer)


@pytest.mark.all_backends
def test_a_loaded_file_compiled_under_tensorflow_scores_the_exact_loss_on_every_backend(
        tmp_path):
    """A file compiled with the cross-entropy by name (as zoo.train's are under
    TensorFlow) loaded under JAX was scored by Keras' own, which clips probabilities at
    1e-7: a probability of 1e-13 lost 14 nats of its loss, and trained on no gradient. Its
    loss is now the negative log-likelihood of its predictions on both backends, and its
    optimizer keeps the state it was saved with."""
    model = tiny_model()
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 0, np.array([30.0, 0, 0, 0], "float32")])  # p(1) = 1e-13
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),  # (as zoo.train's
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],  # under TF)
                  jit_compile=False)
    images = np.zeros((4, 8, 8, 3), "float32")
    labels = np.array([1, 0, 2, 0])
    model.fit(images, labels, epochs=1, verbose=0)
    model.save(tmp_path / "tf.keras")
    loaded = zoo.load_model(tmp_path / "tf.keras")
    assert loaded.jit_compile is (keras.backend.backend() == "jax")  # (jitted under JAX)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 1
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    probabilities = np.asarray(loaded.predict(images, verbose=0), "float64")
    nll = -np.log(probabilities[np.arange(4), labels]).mean()
    assert nll > 10
    scored = loaded.evaluate(images, labels, verbose=0, return_dict=True)
    np.testing.assert_allclose(scored["loss"], nll, rtol=1e-4)
    assert "accuracy" in scored, scored  # (its metrics kept)


def test_a_run_resumed_under_another_backend_says_it_is_not_the_same_run(tmp_path):
    """A run resumed under another Keras backend continues from its backup without a word,
    where the backends' rounding parts the numbers within steps (an exact resume is within
    one backend): a warning says so; within one backend, none."""
    run_dir = str(tmp_path / "run")
    zoo.train(tiny_model, tiny_data(n=16), epochs=1, run_dir=run_dir, verbose=0)
    path = os.path.join(run_dir, "config.json")
    with open(path) as f:
        config = json.load(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")
        zoo.train(tiny_model, tiny_data(n=16), epochs=2, run_dir=run_dir, verbose=0)
    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    with open(path, "w") as f:
        json.dump({**config, "backend": other}, f)
    with pytest.warns(UserWarning, match=rf"trained under {other} until now and resumes "
                                         rf"under {keras.backend.backend()}: from its backup"):
        result = zoo.train(tiny_model, tiny_data(n=16), epochs=3, run_dir=run_dir, verbose=0)
    assert list(result.history["epoch"]) == [1, 2, 3]
