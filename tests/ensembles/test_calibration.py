"""Temperature scaling: the fitted T against SciPy's minimiser and against the temperature
the data was made with, the served probabilities against Keras' own softmax of tempered
logits, and the temperature carried by ensembles, evaluation, .keras files and exports."""

import json
import os

import keras
import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats
import tensorflow as tf
from sklearn.metrics import log_loss

import ensembles
import zoo
from ensembles.calibration import temperature_nll

CLASSES = 4


def _logit_model(scale, name):
    """Images of 2x2 pixels whose 4 values are logits z; the model serves softmax(scale z)
    (a Dense layer with the kernel scale * I), so data labelled from softmax(z) is best
    served at temperature ``scale``."""
    inputs = keras.Input((2, 2, 1))
    x = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(CLASSES, activation="softmax", name="predictions")
    outputs = dense(x)
    dense.set_weights([scale * np.eye(CLASSES, dtype="float32"), np.zeros(CLASSES, "float32")])
    return keras.Model(inputs, outputs, name=name)


def _data(n, seed, batch_size=256):
    """Logits z ~ N(0, 2^2) as 2x2 images, labels drawn from softmax(z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, size=(n, CLASSES))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1).astype("int32")
    images = z.reshape(n, 2, 2, 1).astype("float32")
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size), labels


@pytest.fixture(scope="module")
def splits():
    return _data(4000, seed=0)[0], _data(4000, seed=1)[0]


def _probs_and_labels(model, dataset):
    _, probs, labels = ensembles.predict_members(model, dataset)
    return ensembles.calibration._served_probabilities(model, probs), labels


@pytest.mark.all_backends
@pytest.mark.parametrize("scale", [0.4, 2.5])
def test_the_fitted_temperature_is_scipys_and_the_one_the_data_was_made_with(splits, scale):
    """Over- (2.5) and under-confident (0.4) models: the bisection's T equals SciPy's
    bounded minimiser of the same NLL (relative 1e-3), and recovers ``scale`` (the truth:
    labels were drawn from softmax(z)) within sampling error."""
    validation, _ = splits
    probs, labels = _probs_and_labels(_logit_model(scale, "m"), validation)
    fitted = ensembles.fit_temperature(probs, labels)
    reference = scipy.optimize.minimize_scalar(
        lambda t: temperature_nll(probs, labels, t), bounds=(0.01, 100), method="bounded",
        options={"xatol": 1e-9}).x
    assert fitted == pytest.approx(reference, rel=1e-3)
    assert fitted == pytest.approx(scale, rel=0.08)
    assert temperature_nll(probs, labels, fitted) <= temperature_nll(probs, labels, 1.0)
    assert log_loss(labels, probs.astype("float64"), labels=range(CLASSES)) == pytest.approx(
        temperature_nll(probs, labels, 1.0), rel=1e-6)


@pytest.mark.all_backends
def test_the_calibrated_model_serves_kerass_softmax_of_tempered_logits(splits, tmp_path):
    """softmax(log p / T) of a softmax model equals Keras' softmax of its logits / T; the
    top class never changes; a second calibration multiplies (and finds ~1); the .keras
    round trip keeps T."""
    validation, test = splits
    model = _logit_model(2.5, "member")
    calibrated = ensembles.calibrate(model, validation)
    t = ensembles.temperature(calibrated)
    assert t == pytest.approx(2.5, rel=0.08) and ensembles.temperature(model) == 1.0
    images = np.concatenate([x for x, _ in test.take(1)])
    logits = images.reshape(len(images), CLASSES) * 2.5
    expected = keras.ops.convert_to_numpy(keras.activations.softmax(logits / t))
    served = calibrated.predict(images, verbose=0)
    np.testing.assert_allclose(served, expected, atol=1e-5)
    np.testing.assert_array_equal(served.argmax(1), model.predict(images, verbose=0).argmax(1))
    again = ensembles.calibrate(calibrated, validation)
    assert ensembles.temperature(again) == pytest.approx(t, rel=1e-3)
    assert len(again.layers) == len(calibrated.layers)  # replaced, not stacked
    path = str(tmp_path / "calibrated.keras")
    zoo.save_model(calibrated, path)
    loaded = ensembles.load(path)
    assert ensembles.temperature(loaded) == t
    np.testing.assert_allclose(loaded.predict(images, verbose=0), served, atol=1e-6)
    # Inside a wrapper (a preprocessing layer in front) it serves T, and says so (it read
    # 1.0: the check that refuses a calibrated model's test-time crops let it through);
    # calibrated again, the wrapper's own T multiplies the inner one, applied once (it was
    # applied twice: the served T was near t * 2.5).
    inputs = keras.Input(calibrated.input_shape[1:])
    wrapper = keras.Model(inputs, calibrated(keras.layers.Identity()(inputs)))
    assert ensembles.temperature(wrapper) == t
    with pytest.raises(ValueError, match="calibrated"):
        ensembles.evaluate(wrapper, test, tta="flip")
    recalibrated = ensembles.calibrate(wrapper, validation)
    assert ensembles.temperature(recalibrated) == pytest.approx(t, rel=1e-3)
    np.testing.assert_allclose(recalibrated.predict(images, verbose=0), served, atol=1e-3)


@pytest.mark.all_backends
def test_an_ensemble_is_calibrated_whole_or_member_by_member(splits):
    """Ensemble then calibrate: one T on the combination, scored by scikit-learn from what
    the model predicts; calibrate then ensemble: each member its own T (~its scale); the
    weights survive; evaluate(calibrate_on=) reports exactly these two models."""
    validation, test = splits
    members = [_logit_model(s, f"m{s}") for s in (0.5, 3.0)]
    ensemble = ensembles.Ensemble(members, weights=[1, 3])
    whole = ensembles.calibrate(ensemble, validation)
    each = ensembles.calibrate(ensemble, validation, per_member=True)
    t = ensembles.temperature(whole)
    assert ensembles.temperature(whole, per_member=True) == [1.0, 1.0]
    assert ensembles.temperature(each) == 1.0
    assert ensembles.temperature(each, per_member=True) == pytest.approx([0.5, 3.0], rel=0.1)
    for model in (whole, each):
        np.testing.assert_allclose(ensembles.member_weights(model), [0.25, 0.75])
    probs, labels = _probs_and_labels(ensemble, validation)
    assert t == pytest.approx(ensembles.fit_temperature(probs, labels), rel=1e-9)

    table = ensembles.evaluate(ensemble, test, calibrate_on=validation)
    images = np.concatenate([x for x, _ in test])
    truth = np.concatenate([y for _, y in test])
    for model, row, column in ((whole, "ensemble", "nll_calibrated"),
                               (each, "ensemble of calibrated members", "nll"),
                               (ensemble, "ensemble", "nll")):
        served = model.predict(images, verbose=0)
        assert table.loc[row, column] == pytest.approx(
            log_loss(truth, served, labels=range(CLASSES)), rel=1e-4)
        assert ensembles.evaluate(model, test).loc["ensemble", "nll"] == pytest.approx(
            table.loc[row, column], rel=1e-4)
    assert table.loc["ensemble", "temperature"] == pytest.approx(t)
    assert table.loc["m3.0", "temperature"] == pytest.approx(3.0, rel=0.1)
    assert table.loc["ensemble", "nll_calibrated"] < table.loc["ensemble", "nll"]
    # Calibrated before: the column is the T it would serve at (its own times the one
    # fitted on top), as calibrate gives it; it was the factor fitted on top alone.
    again = ensembles.evaluate(each, test, calibrate_on=validation)
    assert again.loc["m3.0", "temperature"] == pytest.approx(
        table.loc["m3.0", "temperature"], rel=1e-6)
    whole_again = ensembles.evaluate(whole, test, calibrate_on=validation)
    assert whole_again.loc["ensemble", "temperature"] == pytest.approx(t, rel=1e-6)
    assert whole_again.loc["ensemble", "temperature"] == pytest.approx(
        ensembles.temperature(ensembles.calibrate(whole, validation)), rel=1e-6)


def test_the_export_serves_and_describes_the_calibrated_probabilities(splits, tmp_path):
    """The served probabilities are the calibrated ones and the served entropy is
    SciPy's of them; zoo_model.json names the temperatures."""
    validation, test = splits
    ensemble = ensembles.Ensemble([_logit_model(s, f"m{s}") for s in (0.5, 3.0)])
    calibrated = ensembles.calibrate(ensemble, validation, per_member=True)
    calibrated = ensembles.with_temperature(calibrated, 1.25)
    images = np.concatenate([x for x, _ in test.take(1)])[:16]
    outputs = ensembles.serving_model(calibrated).predict(images, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"],
                               calibrated.predict(images, verbose=0), atol=1e-6)
    np.testing.assert_allclose(outputs["predictive_entropy"],
                               scipy.stats.entropy(outputs["probabilities"], axis=1),
                               atol=1e-5)
    # The mutual information is the members' disagreement, before the temperature: never
    # negative for the mean, whatever T sharpens.
    stacked = ensembles.with_member_outputs(calibrated).predict(images, verbose=0)[1]
    disagreement = (scipy.stats.entropy(stacked.mean(axis=1), axis=1)
                    - scipy.stats.entropy(stacked, axis=2).mean(axis=1))
    np.testing.assert_allclose(outputs["mutual_information"], disagreement, atol=1e-5)
    sharp = ensembles.serving_model(ensembles.with_temperature(calibrated, 0.3)).predict(
        images, verbose=0)
    np.testing.assert_allclose(sharp["mutual_information"], disagreement, atol=1e-5)
    assert (sharp["mutual_information"] >= -1e-6).all()
    # (2x2 inputs cannot be exported with the image signatures: the description is
    # checked on a model of the zoo's own.)
    member = zoo.set_class_names(
        ensembles.with_temperature(
            zoo.alexnet(input_shape=(67, 67, 3), classes=CLASSES, width=16), 0.8),
        list("abcd"))
    served_model = ensembles.with_temperature(ensembles.Ensemble([member]), 1.5)
    exported = ensembles.export(served_model, str(tmp_path / "export"))
    # In the runtime that deploys it: TensorFlow serves the calibrated probabilities.
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 67, 67, 3)).astype("float32")
    loaded = tf.saved_model.load(exported)  # kept: its variables die with it
    served = loaded.serve(tf.constant(pixels))
    np.testing.assert_allclose(served["probabilities"].numpy(),
                               served_model.predict(pixels, verbose=0), atol=1e-5)
    with open(os.path.join(exported, "assets", "zoo_model.json")) as f:
        description = json.load(f)
    assert description["temperature"] == 1.5
    assert description["member_temperatures"] == [0.8]


def test_calibration_refuses_what_it_cannot_do(splits):
    validation, _ = splits
    model = _logit_model(1.0, "m")
    with pytest.warns(UserWarning, match=r"calibrate_on is the dataset evaluated: the "
                                         r"calibrated scores are fitted on the examples they "
                                         r"score"):  # (it said nothing)
        ensembles.evaluate(model, validation, calibrate_on=validation)
    with pytest.raises(ValueError, match="per_member=True calibrates an ensemble's members; "
                                         "'m' is not an ensemble"):
        ensembles.calibrate(model, validation, per_member=True)
    for bad in (0, -1.0, float("nan"), "hot"):
        with pytest.raises(ValueError, match="A temperature must be a finite number above 0; "
                                             f"received {bad!r}"):
            ensembles.with_temperature(model, bad)
    with pytest.raises(ValueError, match=r"A temperature must be at least 1e-06: below, the "
                                         r"tempered logits overflow; received 1e-40"):
        ensembles.with_temperature(model, 1e-40)  # (it served NaN)
    inputs = keras.Input((2, 2, 1))
    x = keras.layers.Dropout(0.5)(keras.layers.Flatten()(inputs))
    dropout = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))
    with pytest.raises(ValueError, match="Temperature scaling with tta='flip' is refused"):
        ensembles.calibrate(model, validation, tta="flip")
    with pytest.raises(ValueError, match="calibrate_on with tta='flip' is refused"):
        ensembles.evaluate(model, validation, tta="flip", calibrate_on=validation)
    # A model calibrated before: its T was fitted on single views, as the README says.
    per_member = ensembles.Ensemble([ensembles.with_temperature(_logit_model(1.0, "a"), 0.8),
                                     _logit_model(1.0, "b")])
    for calibrated, temperatures in ((ensembles.with_temperature(model, 1.5), "1.5"),
                                     (per_member, "1, 0.8, 1")):
        for call in (ensembles.evaluate, ensembles.size_curve, ensembles.uncertainty):
            with pytest.raises(ValueError, match=r"tta='flip' is refused for .*, a calibrated "
                                                 rf"model \(temperatures {temperatures}\)"):
                call(calibrated, validation, tta="flip")
    ensembles.evaluate(ensembles.Ensemble([model, _logit_model(1.0, "b")]), validation,
                       tta="flip")  # no temperature anywhere: tta as usual
    with pytest.raises(ValueError, match="calls one model several times"):
        ensembles.calibrate(ensembles.mc_dropout(dropout, samples=2), validation,
                            per_member=True)
    right = tf.data.Dataset.from_tensor_slices(
        (np.eye(CLASSES, dtype="float32").reshape(CLASSES, 2, 2, 1) * 5,
         np.arange(CLASSES, dtype="int32"))).batch(4)
    with pytest.warns(UserWarning, match="The NLL keeps falling up to temperature 0.01"):
        assert ensembles.fit_temperature(*_probs_and_labels(model, right)) == 0.01
    # calibrate() served that T (every later mistake then cost ~28 nats): now refused.
    for per_member in (False, True):
        with pytest.raises(ValueError, match=r"Not calibrated: for .*, the NLL keeps falling "
                                             r"up to temperature 0.01, the end of the range "
                                             r"searched .*; it would be served at T = 0.01: "
                                             r"calibrate on held-out data with its mistakes"):
            ensembles.calibrate(ensembles.Ensemble([model]) if per_member else model, right,
                                per_member=per_member)
    # Held-out labels of one class (a folder's validation split of one class): a T fitted
    # there was served to every class without a word, as were member weights.
    one_class = right.unbatch().filter(lambda x, y: y == 2).batch(4)
    for fit, what in ((lambda d: ensembles.calibrate(model, d), "A temperature"),
                      (lambda d: ensembles.fit_weights([model, model], d), "Member weights"),
                      (lambda d: ensembles.evaluate(model, validation, calibrate_on=d),
                       "calibrate_on's temperature")):
        with pytest.raises(ValueError, match=rf"^{what} must be fitted on held-out data of "
                                             r"every class; these 1 labels are all of class 2 "
                                             rf"\(of {CLASSES}\): fit on held-out data holding "
                                             r"every class\.$"):
            fit(one_class)


def test_zoo_evaluate_and_zoo_ensemble_calibrate_from_the_shell(tmp_path, capsys):
    """On the digits: `zoo evaluate --calibrate-on validation` reports the temperature that
    ensembles.fit_temperature fits on the same split, and `zoo ensemble --calibrate-on
    validation --per-member` saves the members' temperatures that ensembles.calibrate fits;
    mistakes are one line."""
    import data
    from zoo import cli

    train = data.load("digits", image_size=8, batch_size=64, seed=0)
    validation = data.load("digits", "validation", image_size=8, batch_size=128)
    paths = []
    for seed in range(2):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x),
                            name="linear")  # logistic regression: ~90 % right after 3 epochs
        model = zoo.set_class_names(model, data.info("digits").class_names)
        model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
        model.fit(train, epochs=3, verbose=0)
        paths.append(str(tmp_path / f"m{seed}.keras"))
        zoo.save_model(model, paths[-1])
    csv = str(tmp_path / "table.csv")
    assert cli.main(["evaluate", paths[0], "--calibrate-on", "validation", "--output",
                     csv]) == 0
    out = capsys.readouterr().out
    assert "Temperatures fitted on the validation split" in out and "nll_calibrated" in out
    import pandas as pd

    table = pd.read_csv(csv, index_col=0)
    expected = ensembles.fit_temperature(*_probs_and_labels(ensembles.load(paths[0]),
                                                            validation))
    assert table.loc["linear", "temperature"] == pytest.approx(expected, rel=1e-6)
    assert 0.2 < expected < 5 and table.loc["linear", "top1_error"] < 0.2

    out_path = str(tmp_path / "calibrated.keras")
    assert cli.main(["ensemble", *paths, "--calibrate-on", "validation", "--per-member",
                     "--output", out_path]) == 0
    assert "Member temperatures fitted on the validation split: linear_1 " in (
        capsys.readouterr().out)
    saved = ensembles.load(out_path)
    direct = ensembles.calibrate(ensembles.Ensemble([ensembles.load(p) for p in paths]),
                                 validation, per_member=True)
    np.testing.assert_allclose(ensembles.temperature(saved, per_member=True),
                               ensembles.temperature(direct, per_member=True), rtol=1e-6)
    assert zoo.class_names(saved) == list(data.info("digits").class_names)
    # With --fit-weights, the weights are fitted on the calibrated members.
    assert cli.main(["ensemble", *paths, "--calibrate-on", "validation", "--per-member",
                     "--fit-weights", "validation", "--output", out_path]) == 0
    both = ensembles.load(out_path)
    np.testing.assert_allclose(ensembles.member_weights(both),
                               ensembles.fit_weights(direct, validation), rtol=1e-5)
    np.testing.assert_allclose(ensembles.temperature(both, per_member=True),
                               ensembles.temperature(direct, per_member=True), rtol=1e-6)
    assert cli.main(["ensemble", *paths, "--per-member", "--output", out_path]) == 2
    assert "--per-member fits one temperature per member: give --calibrate-on" in (
        capsys.readouterr().err)
    for calibrate_on in ("validation", "validation[:50%]", "train+validation", "all"):
        assert cli.main(["evaluate", paths[0], "--split", "validation", "--calibrate-on",
                         calibrate_on]) == 2  # (each reads the images scored)
        assert (f"--calibrate-on {calibrate_on} reads the split evaluated (validation of "
                "--split validation)") in capsys.readouterr().err
    assert cli.main(["ensemble", *paths, "--calibrate-on", "test", "--output",
                     out_path]) == 0
    assert "Note: --calibrate-on test fits to the test split: a score of the saved model" in (
        capsys.readouterr().out)
    # Test-time augmentation of a calibrated file: one line in the flag's words, before the
    # split is read (it came after, as tta='10crop').
    assert cli.main(["evaluate", out_path, "--tta", "10crop"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("zoo evaluate: error: --tta 10crop is refused for ")
    assert len(captured.err.splitlines()) == 1 and "Images of" not in captured.out


def test_the_fit_and_the_nll_refuse_what_has_no_answer(splits):
    """tolerance=0 bisected for ever; temperature_nll at T = -1 returned a number (an
    inverted distribution's), at 0 NaN."""
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    for tolerance in (0, -1e-3, float("nan"), "tight"):
        with pytest.raises(ValueError, match=r"`tolerance` is the fit's relative precision: "
                                             rf"a number in \(0, 1\); received {tolerance!r}"):
            ensembles.fit_temperature(probs, [0, 0, 1, 1], tolerance=tolerance)
    for bad in (-1.0, 0, "2"):
        with pytest.raises(ValueError, match="A temperature must be a finite number above 0"):
            temperature_nll(probs, [0, 0, 1, 1], bad)


def test_under_a_mixed_float16_policy_the_calibrated_model_serves_float32(splits, tmp_path):
    """keras' global mixed_float16 policy made the temperature layer compute, serve and save
    float16 (no probability below 6e-8: zeros, and a worse NLL), also after a reload in a
    float32 process. It is float32, as an ensemble's combination is."""
    model = _logit_model(3.0, "m")  # (built under float32: its logits are exact)
    images = np.concatenate([x for x, _ in splits[1]])
    probs = model.predict_on_batch(images).astype("float64")
    expected = scipy.special.softmax(np.log(probs) / 0.5, axis=-1)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        calibrated = ensembles.with_temperature(model, 0.5)
    finally:
        keras.config.set_dtype_policy(previous)
    served = calibrated.predict_on_batch(images)
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-12)
    calibrated.save(tmp_path / "calibrated.keras")
    again = zoo.load_model(str(tmp_path / "calibrated.keras")).predict_on_batch(images)
    assert again.dtype == np.float32
