"""Distillation: the loss against Keras' own KLDivergence and SparseCategoricalCrossentropy,
its T^2 factor against Hinton et al.'s high-temperature limit, the loss the trained model
computes, exact resume, a frozen teacher, checkpoints of the student alone, and the shell."""

import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import ensembles
import zoo
from ensembles.distillation import HardTargetLoss, soft_target_loss
from tests.helpers import tiny_model

LABELS = np.array([0, 2, 1], "int32")
LOGITS = np.array([[2.0, 0.5, -1.0, 0.1], [0.3, -0.2, 1.5, 0.0], [-1.0, 2.5, 0.4, 0.2]],
                  "float32")
TEACHER = np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.05, 0.6, 0.15], [0.05, 0.5, 0.4, 0.05]],
                   "float32")


def _reference(labels, logits, teacher, temperature, alpha):
    """alpha T^2 KL(q_T || p_T) + (1 - alpha) CE, from Keras' own losses and softmax."""
    q = keras.activations.softmax(keras.ops.log(teacher) / temperature)
    p = keras.activations.softmax(logits / temperature)
    soft = keras.losses.KLDivergence()(q, p)
    hard = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    return float(alpha * temperature ** 2 * soft + (1 - alpha) * hard)


@pytest.mark.all_backends
@pytest.mark.parametrize("temperature,alpha", [(1.0, 0.5), (4.0, 0.9), (10.0, 0.3),
                                               (2.0, 1.0), (3.0, 0.0)])
def test_the_loss_is_kerass_kl_divergence_and_crossentropy(temperature, alpha):
    got = float(ensembles.distillation_loss(LABELS, LOGITS, TEACHER, temperature, alpha))
    assert got == pytest.approx(_reference(LABELS, LOGITS, TEACHER, temperature, alpha),
                                rel=1e-5)


def test_the_t_squared_factor_keeps_the_soft_gradient_at_hintons_high_temperature_limit():
    """Hinton et al. (2015), eq. 4: at high T, with zero-mean logits z (student) and v
    (teacher), dC/dz_i ~ (z_i - v_i) / (N T^2) for the soft cross-entropy C; multiplied by
    T^2, the gradient is (z_i - v_i) / N whatever T, for N classes."""
    z = LOGITS - LOGITS.mean(axis=1, keepdims=True)
    v = np.log(TEACHER)
    v = (v - v.mean(axis=1, keepdims=True)).astype("float32")
    teacher = tf.nn.softmax(v).numpy()
    classes = z.shape[1]
    for temperature in (50.0, 200.0):
        logits = tf.Variable(z)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(soft_target_loss(teacher, logits, temperature))
        gradient = tape.gradient(loss, logits).numpy()
        np.testing.assert_allclose(gradient, (z - v) / classes, atol=0.02 * np.abs(z - v).max())


def test_the_training_model_computes_the_distillation_loss_through_keras(tmp_path):
    """The model distill trains: Keras' evaluate (compiled hard term plus the added soft
    term) equals the reference on the student's own log-probabilities (a path that does
    not read the logits the way distillation does); the teacher stays frozen."""
    keras.utils.set_random_seed(0)
    teacher = ensembles.Ensemble([tiny_model(8, 4), tiny_model(8, 4)])
    student = tiny_model(8, 4)
    model = ensembles.distillation_model(teacher, student, temperature=3.0, alpha=0.7)
    model.compile(loss=HardTargetLoss(0.7))
    x = np.random.default_rng(0).normal(size=(6, 8, 8, 3)).astype("float32")
    y = np.array([0, 1, 2, 3, 0, 1], "int32")
    loss = model.evaluate(x, y, batch_size=6, verbose=0)
    student_logits = np.log(student.predict(x, verbose=0))  # softmax is shift-invariant
    expected = _reference(y, student_logits, teacher.predict(x, verbose=0), 3.0, 0.7)
    assert loss == pytest.approx(expected, rel=1e-4)
    assert teacher.trainable_weights == [] and model.trainable_weights
    assert {id(w) for w in model.trainable_weights} == {id(w) for w in student.trainable_weights}


def test_a_temperature_whose_square_overflows_is_one_line():
    """zoo distill --temperature 1e300: T**2's OverflowError, an internal error, after the
    run's config was written."""
    for too_hot in (1e300, 1e4):  # (1e4: float32's soft loss was half its value)
        with pytest.raises(ValueError, match=r"A distillation temperature must be at most 100 "
                                             r"\(Hinton et al. used 1 to 20; .*received "):
            ensembles.distillation_model(tiny_model(8, 4), tiny_model(8, 4),
                                         temperature=too_hot)


def test_a_teacher_that_outputs_logits_teaches_its_softmax():
    """A teacher built with classifier_activation=None: its soft targets are the softmax of
    its logits, not its logits taken as probabilities."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(inputs))
    teacher = keras.Model(inputs, keras.layers.Dense(4)(x), name="logits_teacher")
    student = tiny_model(8, 4)
    model = ensembles.distillation_model(teacher, student, temperature=2.0, alpha=0.6)
    model.compile(loss=HardTargetLoss(0.6))
    x = np.random.default_rng(1).normal(size=(5, 8, 8, 3)).astype("float32")
    y = np.array([0, 1, 2, 3, 0], "int32")
    probabilities = keras.ops.convert_to_numpy(
        keras.activations.softmax(teacher.predict(x, verbose=0)))
    expected = _reference(y, np.log(student.predict(x, verbose=0)), probabilities, 2.0, 0.6)
    assert model.evaluate(x, y, batch_size=5, verbose=0) == pytest.approx(expected, rel=1e-4)


def test_a_logits_teacher_built_under_mixed_precision_teaches_float32_probabilities():
    """The softmax taken of a teacher's logits followed the global policy: float16 under
    mixed_float16, whose probabilities below 6e-8 were 0 before the temperature softened
    them (the tail a student is to learn from)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        inputs = keras.Input((8, 8, 3))
        pooled = keras.layers.GlobalAveragePooling2D()(inputs)
        teacher = keras.Model(inputs, keras.layers.Dense(
            4, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(
                [0.0, -18.0, -20.0, -22.0]))(pooled), name="logits_teacher")
        model = ensembles.distillation_model(teacher, tiny_model(8, 4), temperature=4.0)
    finally:
        keras.config.set_dtype_policy(previous)
    layer = model.get_layer("soft_targets")  # the frozen teacher, as it teaches: its logits
    assert layer.teacher_logits
    logits = layer.teacher(np.zeros((1, 8, 8, 3), "float32"))
    soft = keras.ops.convert_to_numpy(ensembles.distillation.soft_target_loss(
        logits, np.zeros((1, 4), "float32"), 4.0, teacher_logits=True))
    q = np.exp(np.array([0.0, -18.0, -20.0, -22.0]) / 4)
    q /= q.sum()
    expected = 16 * np.sum(q * np.log(q / 0.25))  # against a uniform student, in float64
    np.testing.assert_allclose(soft[0], expected, rtol=1e-3)  # (float16 softmax: 0, 0, 0)


def test_a_teachers_wide_gaps_soften_as_hintons_formula():
    """A teacher's logits went through a float32 softmax and the logs of its probabilities,
    floored at 1e-30: gaps above 69 collapsed ([0, -80, -100, -120] at T=20 taught
    [0.913, 0.029, 0.029, 0.029], not softmax(v / T) = [0.973, 0.018, 0.0066, 0.0024])."""
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    student = tiny_model(8, 4)
    x = np.zeros((2, 8, 8, 3), "float32")
    z = np.log(student.predict(x, verbose=0)).astype("float64")[0]
    v = np.array([0.0, -80.0, -100.0, -120.0])
    q, p = np.exp(v / 20) / np.exp(v / 20).sum(), np.exp(z / 20) / np.exp(z / 20).sum()
    expected = 400 * np.sum(q * np.log(q / p))  # Hinton et al.'s T^2 KL, in float64
    # The same with a softmax head (every zoo model's, every zoo train checkpoint's): its
    # logits are read behind it, as the student's are (403.39 for 501.60: still floored).
    for activation in (None, "softmax"):
        teacher = keras.Model(inputs, keras.layers.Dense(
            4, kernel_initializer="zeros", activation=activation,
            bias_initializer=keras.initializers.Constant(v))(pooled), name="teacher")
        model = ensembles.distillation_model(teacher, student, temperature=20.0, alpha=1.0)
        model.compile(loss=HardTargetLoss(1.0))
        assert model.evaluate(x, np.zeros(2, "int32"), verbose=0) == pytest.approx(
            expected, rel=1e-4), activation


def _synthetic(seed=0, n=96):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    y = (x[:, :4, :4, 0].mean(axis=(1, 2)) > 0).astype("int32") + 2 * (
        x[:, 4:, 4:, 1].mean(axis=(1, 2)) > 0).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(32)


def _teacher():
    keras.utils.set_random_seed(7)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dropout(0.5)(keras.layers.GlobalAveragePooling2D()(x))
    teacher = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x), name="t")
    return zoo.set_class_names(teacher, ["a", "b", "c", "d"])


def _student(seed=3):
    keras.utils.set_random_seed(seed)
    return tiny_model(8, 4)


def test_a_run_begun_before_softmax_teachers_logits_were_read_resumes_from_its_backup(
        tmp_path, monkeypatch):
    """Its backup holds the teacher's layers where the model of then had them (without the
    logits read behind the head): it failed to restore ("expected 2 variables, but received
    0"), and the run had to start over. It resumes as it began; a new run reads them."""
    import json

    from ensembles import distillation

    data = _synthetic()
    run_dir = str(tmp_path / "run")
    kwargs = dict(temperature=2.0, alpha=0.8, seed=0, verbose=0, learning_rate=0.05,
                  reduce_lr=False, run_dir=run_dir)
    monkeypatch.setattr(distillation, "_reads_teacher_logits", lambda run_dir: False)
    ensembles.distill(_teacher(), _student(), data, data, epochs=1, **kwargs)
    monkeypatch.undo()
    path = os.path.join(run_dir, "config.json")
    with open(path) as f:
        config = json.load(f)
    assert config.pop("teacher_logits") is False
    with open(path, "w") as f:  # as the runs of then recorded it: no such entry
        json.dump(config, f)
    resumed = ensembles.distill(_teacher(), _student(), data, data, epochs=2, **kwargs)
    assert resumed.history["epoch"].tolist() == [1, 2]
    with open(path) as f:
        assert json.load(f)["teacher_logits"] is False  # and so it goes on
    fresh = str(tmp_path / "fresh")
    ensembles.distill(_teacher(), _student(), data, data, epochs=1,
                      **{**kwargs, "run_dir": fresh})
    with open(os.path.join(fresh, "config.json")) as f:
        assert json.load(f)["teacher_logits"] is True


@pytest.mark.all_backends
def test_distill_resumes_exactly_and_checkpoints_the_student_alone(tmp_path):
    """1 epoch, then resumed to 2, ends with the weights of 2 uninterrupted epochs; the
    checkpoints are the student (with the teacher's class names), the teacher never moves
    (its BatchNorm statistics and weights are the same after training)."""
    data = _synthetic()
    teacher = _teacher()
    before = [w.copy() for w in teacher.get_weights()]
    kwargs = dict(temperature=2.0, alpha=0.8, seed=0, verbose=0, learning_rate=0.05,
                  reduce_lr=False)
    straight = ensembles.distill(teacher, _student(), data, data, epochs=2,
                                 run_dir=str(tmp_path / "straight"), **kwargs)
    run_dir = str(tmp_path / "resumed")
    ensembles.distill(teacher, _student(), data, data, epochs=1, run_dir=run_dir, **kwargs)
    resumed = ensembles.distill(teacher, _student(), data, data, epochs=2, run_dir=run_dir,
                                **kwargs)
    assert resumed.history["epoch"].tolist() == [1, 2]
    for a, b in zip(straight.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(layer.trainable for layer in teacher.layers)  # the caller's, as it was
    with pytest.raises(ValueError, match=r"holds a run with other settings \(distillation\."
                                         r"temperature 2.0 -> 3.0\)"):
        ensembles.distill(teacher, _student(), data, data, epochs=3, run_dir=run_dir,
                          **{**kwargs, "temperature": 3.0})
    other = _teacher()  # the same architecture and name, other weights
    other.set_weights([w + 0.5 for w in teacher.get_weights()])
    with pytest.raises(ValueError, match=r"holds a run with other settings \(teacher_weights "
                                         r"'[0-9a-f]{64}' -> '[0-9a-f]{64}'\)"):
        ensembles.distill(other, _student(), data, data, epochs=3, run_dir=run_dir, **kwargs)
    # The same weights served otherwise (calibrated, as zoo ensemble --calibrate-on saves
    # it): another teacher, which its weights' fingerprint alone did not tell.
    with pytest.raises(ValueError, match=r"holds a run with other settings \(teacher_serving"
                                         r"\.temperature 1.0 -> 1.5\)"):
        ensembles.distill(ensembles.with_temperature(teacher, 1.5), _student(), data, data,
                          epochs=3, run_dir=run_dir, **kwargs)
    saved = ensembles.load(os.path.join(run_dir, "checkpoints", "last.keras"))
    assert saved.name == "tiny" and zoo.class_names(saved) == ["a", "b", "c", "d"]
    assert len(saved.weights) == len(resumed.model.weights)
    assert straight.history["loss"].iloc[-1] < straight.history["loss"].iloc[0]


def test_a_compiled_teacher_distills_as_an_uncompiled_one(tmp_path):
    """A teacher loaded from a checkpoint (compiled, metrics not built) or trained
    (compiled, metrics built): its own loss and metrics never reach the distillation's
    logs, which equal those of the same teacher uncompiled."""
    data = _synthetic()
    kwargs = dict(epochs=1, seed=0, verbose=0, learning_rate=0.05, reduce_lr=False)
    plain = ensembles.distill(_teacher(), _student(), data, data, **kwargs).history
    path = str(tmp_path / "teacher.keras")
    zoo.save_model(zoo.compile_model(_teacher()), path)
    loaded = ensembles.load(path)
    evaluated = zoo.compile_model(_teacher())
    evaluated.evaluate(data, verbose=0)
    for teacher in (loaded, evaluated):
        history = ensembles.distill(teacher, _student(), data, data, **kwargs).history
        pd.testing.assert_frame_equal(history, plain, rtol=1e-5)
    assert plain["val_top1_accuracy"].iloc[0] > 0


def test_distill_refuses_what_it_cannot_train(tmp_path):
    data = _synthetic(n=8)
    teacher = _teacher()
    with pytest.raises(ValueError, match=r"`alpha`, the soft targets' weight, must lie in "
                                         r"\[0, 1\]; received 1.5"):
        ensembles.distill(teacher, _student(), data, alpha=1.5)
    with pytest.raises(ValueError, match="A temperature must be a finite number above 0; "
                                         "received 0"):
        ensembles.distill(teacher, _student(), data, temperature=0)
    with pytest.raises(ValueError, match=r"The teacher takes inputs shaped \(8, 8, 3\) and "
                                         r"the student \(16, 16, 3\)"):
        ensembles.distill(teacher, tiny_model(16, 4), data)
    for kwargs, message in (({"alpha": "0.5"}, r"lie in \[0, 1\]; received '0.5'"),
                            ({"alpha": True}, r"lie in \[0, 1\]; received True"),
                            ({"temperature": "4"}, r"above 0; received '4'")):
        with pytest.raises(ValueError, match=message):
            ensembles.distill(teacher, _student(), data, **kwargs)
    assert ensembles.distillation_loss(np.array([0]), np.zeros((1, 4), "float32"),
                                       np.full((1, 4), 0.25, "float32"), np.float32(2.0),
                                       np.float64(0.5)) > 0  # NumPy scalars are numbers
    with pytest.raises(ValueError, match=r"The teacher must be a built functional "
                                         r"keras.Model .*zoo.load_model.*received 'x.keras' \(str\)"):
        ensembles.distill("x.keras", _student(), data)
    with pytest.raises(ValueError, match=r"The student must be .*received 'resnet18' \(str\)"):
        ensembles.distill(teacher, "resnet18", data)
    with pytest.raises(ValueError, match="distill sets `loss` itself"):
        ensembles.distill(teacher, _student(), data, loss="mse")
    with pytest.raises(ValueError, match="shares 2 weights with the teacher"):
        shared = teacher.layers[1]  # the conv
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.GlobalAveragePooling2D()(shared(inputs))
        ensembles.distill(teacher, keras.Model(inputs, keras.layers.Dense(
            4, activation="softmax")(x)), data)
    with pytest.raises(ValueError, match="The teacher 'ensemble' has 2 outputs"):
        ensembles.distill(ensembles.Ensemble([_teacher(), _teacher()], return_members=True),
                          _student(), data)
    inputs = keras.Input((8, 8, 3))
    probs = keras.layers.EinsumDense("ab,bc->ac", output_shape=4, activation="softmax")(
        keras.layers.Flatten()(inputs))
    with pytest.raises(ValueError, match="ends in a EinsumDense with a softmax"):
        ensembles.distill(teacher, keras.Model(inputs, probs, name="odd"), data)
    # Labels past the student's classes: one line (JAX trained on them without a word).
    with pytest.raises(ValueError, match=r"The labels must be class indices, whole numbers "
                                         r"in \[0, 4\) .* from 4 to"):
        ensembles.distill(teacher, _student(), data.map(lambda x, y: (x, y + 4)), epochs=1,
                          verbose=0)


def test_zoo_distill_from_the_shell(tmp_path, capsys):
    """`zoo distill TEACHER.keras --model ...` on a slice of the digits: the student's
    checkpoint in the run directory, the held-out scores of both printed. The teacher was
    trained on crops (its file says so): the student learns on crops too, both are scored
    on the centre crop, and the student's checkpoint records it."""
    import data
    from zoo import cli

    keras.utils.set_random_seed(0)
    teacher = zoo.set_class_names(ensembles.Ensemble([tiny_model(32, 10), tiny_model(32, 10)]),
                                  data.info("digits").class_names)
    zoo.set_resize_mode(teacher, "crop")
    path = str(tmp_path / "teacher.keras")
    zoo.save_model(teacher, path)
    run_dir = str(tmp_path / "run")
    # The student: tests.helpers.SMALL_VGG's model, its image size the teacher's.
    assert cli.main(["distill", path, "--model", "vgg11", "--model-arg", "width=0.0625",
                     "--epochs", "1", "--run-dir", run_dir,
                     "--temperature", "3", "--alpha", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "Distilling ensemble (" in out and "at temperature 3, soft-target weight 0.5" in out
    assert "Augmentation: crop, as the teacher was trained on crops" in out
    assert "Trained on whole images" not in out  # (said of students trained without crops)
    assert "test student: top-1 error" in out
    combined = ensembles.evaluate(ensembles.load(path), data.load(
        "digits", "test", scale=data.crop_scale(32), center_crop=32,
        batch_size=64)).loc["ensemble"]  # not a member's row; as zoo evaluate scores it
    assert (f"test teacher: top-1 error {100 * combined['top1_error']:.2f} %, NLL "
            f"{combined['nll']:.4f}") in out
    student = ensembles.load(os.path.join(run_dir, "checkpoints", "best.keras"))
    assert student.name == "vgg11" and student.input_shape[1:] == (32, 32, 3)
    # The frozen teacher is counted, and not as trainable (Keras' summary's count).
    assert (f"Training vgg11_distillation ({student.count_params() + teacher.count_params():,} "
            f"parameters, {student.count_params():,} trainable)") in out
    assert zoo.class_names(student) == list(data.info("digits").class_names)
    assert zoo.resize_mode(student) == "crop"
    assert cli.main(["distill", path, "--model", "vgg11", "--image-size", "16", "--augment",
                     "none", "--run-dir", str(tmp_path / "other")]) == 2
    out, err = capsys.readouterr()
    assert "--image-size 16: the teacher takes 32x32 images" in err
    assert ("Note: the teacher was trained on crops (resize crop); with --augment none the "
            "student learns from it on whole images.") in out
    # A teacher of other classes than the data's: one line (it said "resnet18 has 3 outputs,
    # but 10 class names were given", the student's and the dataset's words crossed).
    three = str(tmp_path / "three.keras")
    zoo.save_model(zoo.set_class_names(tiny_model(32, 3), ["a", "b", "c"]), three)
    assert cli.main(["distill", three, "--model", "vgg11", "--run-dir",
                     str(tmp_path / "third")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tiny predicts 3 classes (a, b, c); digits has 10 (0, 1, 2, 3, 4, " \
        "...)" in err[0], err
    # The run resumed with other builder arguments trained a changed student without a word
    # (zoo.train recorded none: the student is built by the command); teachers of several
    # outputs or of one score were refused after the statistics pass; another temperature
    # after the student was built and "Distilling ..." said. Each is one line before the
    # statistics pass now, nothing written.
    config = open(os.path.join(run_dir, "config.json")).read()
    for given, changed in ((["--model-arg", "width=0.0625", "--model-arg", "dropout=0.3"],
                            "student.model_kwargs.dropout None -> 0.3"),
                           ([], "student.model_kwargs.width 0.0625 -> None"),  # (left out)
                           (["--model-arg", "width=0.0625", "--temperature", "2"],
                            "distillation.temperature 3.0 -> 2.0")):
        assert cli.main(["distill", path, "--model", "vgg11", "--epochs", "2",
                         "--run-dir", run_dir, "--temperature", "3", "--alpha", "0.5",
                         *given]) == 2
        out, err = capsys.readouterr()
        assert err == (f"zoo distill: error: {run_dir} holds a run with other settings "
                       f"({changed}); resume it with its own settings, or give another run "
                       "directory.\n") and "statistics" not in out, err
        assert "Distilling" not in out
    assert open(os.path.join(run_dir, "config.json")).read() == config
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    aux = str(tmp_path / "aux.keras")  # (as GoogLeNet with aux_logits: its heads too)
    zoo.save_model(keras.Model(inputs, [keras.layers.Dense(10, activation="softmax")(pooled)
                                        for _ in range(3)], name="googlenet"), aux)
    sigmoid = str(tmp_path / "sigmoid.keras")
    zoo.save_model(keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.GlobalAveragePooling2D()(inputs)), name="sig"), sigmoid)
    for teacher_file, message in ((aux, "The teacher 'googlenet' has 3 outputs"),
                                  (sigmoid, "The teacher 'sig' outputs one score per example")):
        folder = tmp_path / f"run_of_{os.path.basename(teacher_file)}"
        assert cli.main(["distill", teacher_file, "--model", "vgg11", "--run-dir",
                         str(folder)]) == 2
        out, err = capsys.readouterr()
        assert err.startswith(f"zoo distill: error: {message}") and "statistics" not in out
        assert not folder.exists()
    # A teacher with no class names: the student takes the dataset's (it recorded none).
    nameless = str(tmp_path / "nameless.keras")
    zoo.save_model(tiny_model(32, 10), nameless)
    assert cli.main(["distill", nameless, "--model", "vgg11", "--model-arg", "width=0.0625",
                     "--epochs", "1", "--run-dir", str(tmp_path / "named")]) == 0
    student = ensembles.load(str(tmp_path / "named" / "checkpoints" / "best.keras"))
    assert zoo.class_names(student) == list(data.info("digits").class_names)


def test_the_loss_refuses_teacher_logits_given_as_probabilities():
    """log(max(z, 1e-30)) of logits made a finite, wrong loss (3.596 for [3, 1, -2])."""
    with pytest.raises(ValueError, match="teacher probabilities"):
        ensembles.distillation_loss(LABELS[:1], LOGITS[:1], np.array([[3.0, 1.0, -2.0, 0.0]],
                                                                     "float32"))


def test_a_teacher_of_other_class_order_is_refused_and_a_hidden_softmax_is_said():
    """A student naming its classes in another order trained silently (the teacher's class
    0 taught the student's '9'); a teacher whose softmax the graph hides (an export's
    TFSMLayer, a Lambda) had its probabilities softmaxed again without a word."""
    teacher, student = tiny_model(8, 4), tiny_model(8, 4)
    zoo.set_class_names(teacher, ["a", "b", "c", "d"])
    zoo.set_class_names(student, ["d", "c", "b", "a"])
    with pytest.raises(ValueError, match=r"The student 'tiny' names its classes differently "
                                         r"from the teacher 'tiny' \(\['d', 'c', 'b', 'a'\]\.\.\. "
                                         r"against \['a', 'b', 'c', 'd'\]\.\.\.\)"):
        ensembles.distill(teacher, student, _synthetic(), epochs=1, verbose=0)
    import data

    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    hidden = keras.Model(inputs, keras.layers.Lambda(keras.ops.softmax)(
        keras.layers.Dense(10)(pooled)), name="hidden")
    digits = data.load("digits", "train[:64]", image_size=8, batch_size=32)
    with pytest.warns(UserWarning, match=r"The teacher 'hidden''s outputs look like "
                                         r"probabilities .* softmax is taken again: the soft "
                                         r"targets are flattened"):
        ensembles.distill(hidden, tiny_model(8, 10), digits, epochs=1, verbose=0)


def test_the_public_loss_says_what_it_takes():
    """distillation_loss of a 3-class teacher and a 4-class student was TensorFlow's
    'Incompatible shapes: [3,3] vs. [3,4]'; a label of 7, Keras' 'outside the valid range'."""
    with pytest.raises(ValueError, match=r"The teacher's probabilities are shaped \(3, 3\) "
                                         r"and the student's logits \(3, 4\)"):
        ensembles.distillation_loss(LABELS, LOGITS, TEACHER[:, :3] / TEACHER[:, :3].sum(
            1, keepdims=True))
    with pytest.raises(ValueError, match=r"The labels must be class indices in \[0, 4\); "
                                         r"received labels from 0 to 7"):
        ensembles.distillation_loss(np.array([0, 1, 7]), LOGITS, TEACHER)
    with pytest.raises(ValueError, match=r"The labels are one-hot \(shape \(3, 4\)\); "
                                         r"distillation_loss takes class indices"):
        ensembles.distillation_loss(np.eye(4, dtype="float32")[LABELS], LOGITS, TEACHER)


@pytest.mark.all_backends
def test_the_public_loss_checks_a_models_outputs_as_it_checks_arrays():
    """``teacher(x)`` is a backend tensor, not a NumPy array: its logits made a finite, wrong
    loss, and a teacher of other classes TensorFlow's 'Incompatible shapes'. Within a
    compiled step (symbolic values) the loss is computed unchecked, as it was."""
    inputs = keras.Input((4,))
    logits = keras.Model(inputs, keras.layers.Dense(4, kernel_initializer="ones")(inputs))
    three = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    x = np.ones((3, 4), "float32")
    with pytest.raises(ValueError, match="teacher probabilities"):
        ensembles.distillation_loss(LABELS, LOGITS, logits(x))
    with pytest.raises(ValueError, match=r"The teacher's probabilities are shaped \(3, 3\) "
                                         r"and the student's logits \(3, 4\)"):
        ensembles.distillation_loss(LABELS, keras.ops.convert_to_tensor(LOGITS), three(x))
    expected = ensembles.distillation_loss(LABELS, LOGITS, TEACHER)
    given = ensembles.distillation_loss(keras.ops.convert_to_tensor(LABELS), LOGITS,
                                        keras.ops.convert_to_tensor(TEACHER))
    assert float(given) == pytest.approx(float(expected), rel=1e-6)
    if keras.backend.backend() == "jax":  # traced, as within a jitted step
        import jax

        traced = jax.jit(ensembles.distillation_loss)(LABELS, LOGITS, TEACHER)
    else:
        traced = tf.function(ensembles.distillation_loss)(LABELS, LOGITS, TEACHER)
    assert float(traced) == pytest.approx(float(expected), rel=1e-6)


def test_distill_with_one_hot_labels_is_one_line():
    """The distillation loss takes class indices: one-hot labels were Keras' "Argument
    `output` must have rank (ndim) `target.ndim - 1`", which blamed the output."""
    one_hot = _synthetic().map(lambda x, y: (x, tf.one_hot(y, 4)))
    with pytest.raises(ValueError, match=r"The labels are one-hot \(shape \(None, 4\) per "
                                         r"batch\), and the loss \(hard_targets\) takes class "
                                         r"indices: give the labels as indices"):
        ensembles.distill(tiny_model(8, 4), tiny_model(8, 4), one_hot, epochs=1, verbose=0)


@pytest.mark.parametrize("policy", [
    "mixed_bfloat16", pytest.param("mixed_float16", marks=pytest.mark.slow)])  # fast: one
def test_a_global_mixed_policy_distills_float32_models_as_float32(policy):
    """distillation_model built its logits, its soft-target layer and its model under the
    global policy: under Keras' guide's set_dtype_policy('mixed_bfloat16') the first step
    was TensorFlow's traceback ('InTopKV2 ... type bfloat16'), and the teacher saw rounded
    images. Float32 teacher and student now train as in float32, to the weight."""
    data = _synthetic()
    kwargs = dict(temperature=2.0, alpha=0.8, seed=0, verbose=0, learning_rate=0.05,
                  reduce_lr=False, epochs=1)
    expected = ensembles.distill(_teacher(), _student(), data, data, **kwargs)
    teacher, student = _teacher(), _student()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        result = ensembles.distill(teacher, student, data, data, **kwargs)
    finally:
        keras.config.set_dtype_policy(previous)
    for a, b in zip(expected.model.get_weights(), result.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(expected.history, result.history)
