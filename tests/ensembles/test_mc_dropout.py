"""MC dropout: one model sampled N times with dropout on, held to Keras' own training-mode
calls with the same seeds."""

import textwrap

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

import ensembles
import zoo

SIZE, CLASSES, SAMPLES = 12, 4, 5


def _classifier(batchnorm=False, seed=7):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    if batchnorm:
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    x = keras.layers.Dropout(0.5, seed=seed, name="drop")(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="small")
    if batchnorm:  # moving statistics away from the initial 0 and 1
        bn = next(layer for layer in model.layers
                  if isinstance(layer, keras.layers.BatchNormalization))
        bn.moving_mean.assign(np.full(6, 0.3, "float32"))
        bn.moving_variance.assign(np.full(6, 2.0, "float32"))
    return model


def _images(n=8, seed=1):
    return np.random.default_rng(seed).normal(size=(n, SIZE, SIZE, 3)).astype("float32")


@pytest.mark.all_backends
@pytest.mark.parametrize("batchnorm", [False, True])
def test_mc_dropout_is_the_mean_of_kerass_training_mode_calls_with_the_same_seeds(batchnorm):
    """Without BatchNorm: the mean of N calls of Keras' model(x, training=True) from the same
    dropout seed. With it: the same, where the reference's BatchNorm is frozen
    (trainable=False runs it in inference mode, as Keras documents), and the moving
    statistics are neither bypassed nor updated."""
    model = _classifier(batchnorm)
    x = _images()
    mc = ensembles.mc_dropout(model, samples=SAMPLES, name="mc")
    served = keras.ops.convert_to_numpy(mc(x))
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    for layer in reference.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    calls = np.stack([keras.ops.convert_to_numpy(reference(x, training=True))
                      for _ in range(SAMPLES)])
    np.testing.assert_allclose(served, calls.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert np.abs(calls[0] - calls[1]).max() > 1e-3  # the samples differ
    weights_before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    mc.predict(x, verbose=0)
    for before, after in zip(weights_before, model.weights):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(after))
    assert mc.count_params() == model.count_params()  # the samples share the weights


@pytest.mark.all_backends
def test_mc_dropout_is_an_ensemble_of_its_samples(tmp_path):
    """Members are the N samples (one model), weights equal; the stacked outputs combine by
    the rule; a .keras round trip keeps the weights and the sampling; bad input is one line."""
    model = zoo.set_class_names(_classifier(), ["a", "b", "c", "d"])
    mc = ensembles.mc_dropout(model, samples=3, combine="geometric")
    assert [m.name for m in ensembles.members_of(mc)] == ["small_sample"] * 3
    assert ensembles.member_weights(mc).tolist() == pytest.approx([1 / 3] * 3)
    assert zoo.class_names(mc) == ["a", "b", "c", "d"]
    assert mc.name == "small_mc_dropout"
    combined, stacked = ensembles.with_member_outputs(mc)(_images())
    np.testing.assert_allclose(
        combined, ensembles.CombineMembers("geometric")(stacked), rtol=1e-5, atol=1e-7)
    mc.save(tmp_path / "mc.keras")
    loaded = ensembles.load(tmp_path / "mc.keras")
    for a, b in zip(loaded.get_weights(), mc.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert isinstance(ensembles.members_of(loaded)[0].get_layer("drop"), ensembles.MCDropout)
    first, second = loaded.predict(_images(), verbose=0), loaded.predict(_images(), verbose=0)
    assert np.abs(first - second).max() > 1e-4  # new masks every call
    with pytest.raises(ValueError, match=r"'tiny' has no dropout layer \(Dropout, "
                                         "SpatialDropout, GaussianDropout, AlphaDropout\)"):
        ensembles.mc_dropout(_no_dropout())
    with pytest.raises(ValueError, match=r"`samples` must be a positive integer.*received 0"):
        ensembles.mc_dropout(model, samples=0)
    # 2**31 - 1 (the command's cap for counts) ran out of memory listing the calls.
    with pytest.raises(ValueError, match=r"`samples` must be at most 1,000: each is one call "
                                         r".*received 1,001\."):
        ensembles.mc_dropout(model, samples=1001)


def test_spatial_gaussian_and_alpha_dropout_are_sampled_too(tmp_path):
    """SpatialDropout2D (a Dropout subclass) was refused as "no Dropout layer", or left in
    inference mode beside a Dropout; GaussianDropout likewise. They are sampled as Keras'
    training mode draws them, and saved and loaded; a Dropout subclass of another's is one
    line, since its call is not ours to force."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    x = keras.layers.SpatialDropout2D(0.5, seed=3, name="spatial")(x)
    x = keras.layers.Dense(16, activation="relu")(keras.layers.GlobalAveragePooling2D()(x))
    x = keras.layers.GaussianDropout(0.3, seed=4, name="gaussian")(x)
    x = keras.layers.AlphaDropout(0.2, seed=5, name="alpha")(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))
    x = _images()
    mc = ensembles.mc_dropout(model, samples=SAMPLES)
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    calls = np.stack([keras.ops.convert_to_numpy(reference(x, training=True))
                      for _ in range(SAMPLES)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mc(x)), calls.mean(axis=0),
                               rtol=1e-5, atol=1e-6)
    mc.save(tmp_path / "mc.keras")
    loaded = ensembles.members_of(ensembles.load(tmp_path / "mc.keras"))[0]
    assert [type(loaded.get_layer(n)).__name__ for n in ("spatial", "gaussian", "alpha")] == [
        "MCSpatialDropout2D", "MCGaussianDropout", "MCAlphaDropout"]

    class MyDropout(keras.layers.Dropout):
        pass

    outputs = keras.layers.Dense(CLASSES, activation="softmax")(
        MyDropout(0.5, name="mine")(keras.layers.GlobalAveragePooling2D()(inputs)))
    with pytest.raises(ValueError, match=r"has mine \(MyDropout\), which would stay in "
                                         "inference mode"):
        ensembles.mc_dropout(keras.Model(inputs, outputs))
    # A GaussianDropout subclass beside a Dropout stayed in inference mode without a word;
    # an MC model given again was said to hold a user's layer.

    class MyNoise(keras.layers.GaussianDropout):
        pass

    pooled = keras.layers.Dropout(0.5)(keras.layers.GlobalAveragePooling2D()(inputs))
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(MyNoise(0.3, name="noise")(
        pooled))
    with pytest.raises(ValueError, match=r"has noise \(MyNoise\), which would stay in"):
        ensembles.mc_dropout(keras.Model(inputs, outputs))
    sampler = ensembles.members_of(mc)[0]
    with pytest.raises(ValueError, match=r"is MC dropout already .*pass the model it was "
                                         r"made from"):
        ensembles.mc_dropout(sampler)
    # Weights fitted to its samples fit noise (two fits differed): refused.
    labels = np.arange(len(x)) % CLASSES
    with pytest.raises(ValueError, match=r"is MC dropout: its members are random draws"):
        ensembles.fit_weights(mc, tf.data.Dataset.from_tensor_slices((x, labels)).batch(4))


def test_mc_dropout_of_a_sequential_model():
    """A Sequential's clone has never been called: the sampler's input was an
    AttributeError ("has never been called and thus has no defined input")."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dropout(0.5, seed=2),
                              keras.layers.Dense(CLASSES, activation="softmax")])
    mc = ensembles.mc_dropout(model, samples=SAMPLES)
    x = _images()
    first, second = (keras.ops.convert_to_numpy(mc(x)) for _ in range(2))
    assert first.shape == (len(x), CLASSES) and not np.allclose(first, second)  # new masks


def _no_dropout():
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x),
                       name="tiny")


@pytest.mark.xdist_group("cold_python")
def test_mc_dropout_evaluates_serves_its_uncertainty_and_refuses_onnx(tmp_path, cold_python):
    """ensembles.evaluate has a row per sample and the combination; the SavedModel draws new
    masks per call, and its entropy and mutual information describe what it serves."""
    model = _classifier()
    mc = ensembles.mc_dropout(model, samples=4)
    x = _images(16)
    labels = np.arange(16) % CLASSES
    data = tf.data.Dataset.from_tensor_slices((x, labels.astype("int32"))).batch(8)
    table = ensembles.evaluate(mc, data)
    assert list(table.index[:4]) == [f"small_sample_{k}" for k in range(1, 5)]
    assert table.loc["ensemble", "nll"] < table["nll"].iloc[:4].mean()  # Jensen: strictly
    path = str(tmp_path / "served")
    ensembles.export(mc, path)
    np.save(tmp_path / "x.npy", x)
    cold_python.run(textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        served = tf.saved_model.load({path!r})
        x = tf.constant(np.load({str(tmp_path / 'x.npy')!r}))
        out = [{{k: v.numpy() for k, v in served.serve(x).items()}} for _ in range(2)]
        np.savez({str(tmp_path / 'out.npz')!r}, **{{f"{{k}}{{i}}": v for i, o in enumerate(out)
                                                    for k, v in o.items()}})
    """))
    served = np.load(tmp_path / "out.npz")
    assert np.abs(served["probabilities0"] - served["probabilities1"]).max() > 1e-4
    np.testing.assert_allclose(served["probabilities0"].sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(served["predictive_entropy0"],
                               scipy.stats.entropy(served["probabilities0"], axis=1), atol=1e-5)
    assert (served["mutual_information0"] > 0).all()
    with pytest.raises(ValueError, match=r"draws random dropout masks at inference.*"
                                         r"format='saved_model'"):
        ensembles.export(mc, str(tmp_path / "mc.onnx"), format="onnx")


def test_zoo_ensemble_mc_dropout_from_the_shell(tmp_path, capsys):
    from zoo import cli

    path = str(tmp_path / "small.keras")
    zoo.save_model(_classifier(), path)
    out = str(tmp_path / "mc.keras")
    assert cli.main(["ensemble", path, "--mc-dropout", "6", "--output", out]) == 0
    assert "Saved MC dropout over small: 6 samples with dropout on, combined by mean" in (
        capsys.readouterr().out)
    assert len(ensembles.members_of(ensembles.load(out))) == 6
    assert cli.main(["ensemble", path, path, "--mc-dropout", "6", "--output", out]) == 2
    assert "--mc-dropout N samples one model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:  # (the flag named, not mc_dropout's `samples`)
        cli.main(["ensemble", path, "--mc-dropout", "0", "--output", out])
    assert exit.value.code == 2
    assert "--mc-dropout must be at least 1; received 0" in capsys.readouterr().err
    from ensembles.mc_dropout import MAX_SAMPLES
    from zoo.cli.common import MAX_MC_DROPOUT

    assert MAX_MC_DROPOUT == MAX_SAMPLES  # (the command's copy, read without Keras)
    with pytest.raises(SystemExit) as exit:
        cli.main(["ensemble", path, "--mc-dropout", str(2**31 - 1), "--output", out])
    assert exit.value.code == 2
    assert f"--mc-dropout must be at most 1000; received {2**31 - 1}" in capsys.readouterr().err
