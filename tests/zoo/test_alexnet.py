import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.models.alexnet import MIN_INPUT_SIZE, feature_map_size

# Backend-agnostic: `make test` runs these tests under JAX too, but for the three that read
# the paper's full-size networks: their counts, map sizes and initial draws are the
# builder's, whatever the backend, and JAX takes 14 s of CPU from an empty compilation cache
# to build them (its random draws compile once per weight shape). The small AlexNets below
# build, run, train and save under JAX.
ALL = pytest.mark.all_backends

TINY = dict(input_shape=(67, 67, 3), classes=5, width=16)


@pytest.fixture(scope="module")
def paper_alexnets():
    """The paper's one- and two-tower AlexNets (61-62M weights each), built once for the
    tests below that only read them: a build takes 1 s here, and 8 s under JAX from an empty
    compilation cache."""
    return {towers: zoo.alexnet(towers=towers) for towers in (1, 2)}


@pytest.mark.parametrize("towers, expected", [(1, 62_378_344), (2, 60_965_224)])
def test_paper_parameter_counts(towers, expected, paper_alexnets):
    model = paper_alexnets[towers]
    assert model.count_params() == expected
    assert model.input_shape == (None, 227, 227, 3)
    assert model.output_shape == (None, 1000)


def test_paper_feature_map_sizes(paper_alexnets):
    model = paper_alexnets[1]
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers}
    assert shapes["conv1"] == (55, 55, 96)
    assert shapes["pool1"] == (27, 27, 96)
    assert shapes["pool2"] == (13, 13, 256)
    assert shapes["conv3"] == (13, 13, 384)
    assert shapes["pool5"] == (6, 6, 256)
    assert isinstance(model.get_layer("norm1"), zoo.layers.LocalResponseNormalization)
    assert isinstance(model.get_layer("norm2"), zoo.layers.LocalResponseNormalization)
    assert model.get_layer("drop6").rate == 0.5 and model.get_layer("drop7").rate == 0.5
    assert model.get_layer("pool1").pool_size == (3, 3)  # overlapping pooling
    assert model.get_layer("pool1").strides == (2, 2)


def test_paper_initialisation(paper_alexnets):
    model = paper_alexnets[1]
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
    for layer in model.layers:
        if not layer.weights:
            continue
        kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
        assert abs(kernel.mean()) < 2e-3, layer.name
        assert kernel.std() == pytest.approx(0.01, rel=0.1), layer.name
        np.testing.assert_array_equal(bias, 1.0 if layer.name in ones else 0.0)


def _submodel(model, layer_name):
    return keras.Model(model.inputs, model.get_layer(layer_name).output)


@ALL
def test_two_towers_only_talk_at_conv3_and_fc6():
    model = zoo.alexnet(towers=2, **TINY)
    x = np.random.default_rng(0).normal(size=(2, 67, 67, 3)).astype("float32")
    probes = ["conv2_tower1", "conv3_tower1", "conv5_tower1", "fc6"]
    before = {p: _submodel(model, p).predict(x, verbose=0) for p in probes}

    # Perturb tower 2's conv1: tower 1 must not see it until conv3.
    layer = model.get_layer("conv1_tower2")
    layer.set_weights([w * 3.0 + 0.01 for w in layer.get_weights()])
    after = {p: _submodel(model, p).predict(x, verbose=0) for p in probes}
    np.testing.assert_array_equal(after["conv2_tower1"], before["conv2_tower1"])
    assert not np.allclose(after["conv3_tower1"], before["conv3_tower1"])

    # Perturb tower 2's conv4: tower 1's conv5 must not see it, fc6 must.
    before = after
    layer = model.get_layer("conv4_tower2")
    layer.set_weights([w * 3.0 + 0.01 for w in layer.get_weights()])
    after = {p: _submodel(model, p).predict(x, verbose=0) for p in probes}
    np.testing.assert_array_equal(after["conv5_tower1"], before["conv5_tower1"])
    assert not np.allclose(after["fc6"], before["fc6"])
    assert model.get_layer("conv2_tower1").kernel.shape == (5, 5, 48, 128)
    assert model.get_layer("conv3_tower1").kernel.shape == (3, 3, 256, 192)
    assert model.get_layer("conv4_tower1").kernel.shape == (3, 3, 192, 192)


@ALL
@pytest.mark.parametrize(
    "kwargs, shape",
    [
        (dict(include_top=False), (None, 1, 1, 256)),
        (dict(include_top=False, pooling="avg"), (None, 256)),
        (dict(include_top=False, pooling="max", towers=2), (None, 256)),
        (dict(include_top=False, input_shape=(227, 227, 3)), (None, 6, 6, 256)),
        (dict(include_top=False, input_shape=(None, None, 3), pooling="avg"), (None, 256)),
        (dict(classifier_activation=None), (None, 5)),
        (dict(towers=2, norm="batch"), (None, 5)),
    ],
)
def test_output_shapes(kwargs, shape):
    model = zoo.alexnet(**{**TINY, **kwargs})
    assert model.output_shape == shape
    x = np.zeros((2,) + tuple(s or 99 for s in model.input_shape[1:]), "float32")
    assert model.predict(x, verbose=0).shape == (2,) + shape[1:]


@ALL
def test_classifier_outputs_probabilities_or_logits():
    x = np.random.default_rng(0).normal(size=(3, 67, 67, 3)).astype("float32")
    probs = zoo.alexnet(**TINY).predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    logits = zoo.alexnet(**TINY, classifier_activation=None).predict(x, verbose=0)
    assert not np.allclose(logits.sum(axis=1), 1.0)


@ALL
def test_norm_options():
    assert not any(
        isinstance(layer, (zoo.layers.LocalResponseNormalization, keras.layers.BatchNormalization))
        for layer in zoo.alexnet(norm=None, **TINY).layers
    )
    batch = zoo.alexnet(norm="batch", **TINY)
    assert isinstance(batch.get_layer("norm1"), keras.layers.BatchNormalization)


@ALL
def test_dropout_and_width_knobs():
    model = zoo.alexnet(dropout=0.7, width=1024)
    assert model.get_layer("drop6").rate == 0.7
    assert model.get_layer("fc7").kernel.shape == (1024, 1024)


@ALL
def test_input_tensor():
    inputs = keras.Input((80, 80, 3))
    model = zoo.alexnet(input_tensor=inputs, classes=5, width=16)
    assert model.input_shape == (None, 80, 80, 3)
    assert model.inputs[0] is inputs
    # A layer's output works too: the model's input is the graph's source.
    features = zoo.alexnet(input_tensor=keras.layers.Rescaling(1 / 255)(inputs),
                           include_top=False, pooling="avg")
    assert features.inputs[0] is inputs and features.output_shape == (None, 256)
    with pytest.raises(ValueError, match="must be a Keras tensor.*received EagerTensor"):
        zoo.alexnet(input_tensor=tf.zeros((1, 67, 67, 3)))


@ALL
def test_smallest_input():
    assert MIN_INPUT_SIZE == 67
    assert feature_map_size(67) == 1 and feature_map_size(66) == 0
    assert feature_map_size(227) == 6
    zoo.alexnet(input_shape=(67, 67, 3), include_top=False)
    with pytest.raises(ValueError, match=r"at least 67x67.*received input shape \(66, 100, 3\)"):
        zoo.alexnet(input_shape=(66, 100, 3))
    # Pools rounding up (ceil_mode, Caffe's) keep a 1x1 map from 39 pixels: 39 to 66 were
    # refused with the floor's reason. The built model's own pool5 is the reference.
    small = zoo.alexnet(input_shape=(39, 39, 3), include_top=False, ceil_mode=True, width=8)
    assert small.output_shape == (None, 1, 1, 256)
    assert zoo.alexnet(input_shape=(227, 227, 3), include_top=False,
                       ceil_mode=True).output_shape == (None, 6, 6, 256)  # (6 by the floor too)
    with pytest.raises(ValueError, match=r"at least 39x39.*received input shape \(38, 38, 3\)"):
        zoo.alexnet(input_shape=(38, 38, 3), ceil_mode=True)


@ALL
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pooling="mean", include_top=False), r"`pooling` must be one of.*received 'mean'"),
        (dict(towers=3), r"`towers` must be 1.*or 2.*received 3"),
        (dict(weights="instagram"), r"alexnet has no weights named 'instagram'; known: "
                                    r"\['imagenet', 'bvlc'\]"),
        (dict(norm="layer"), r"`norm` must be one of.*received 'layer'"),
        (dict(dropout=1.0), r"`dropout`.*received 1.0"),
        (dict(width=0), r"`width`.*received 0"),
        (dict(classes=0), r"`classes`.*received 0"),
        (dict(input_shape=(67, 67)), r"channels-last.*received input shape \(67, 67\)"),
        (dict(input_shape=(None, None, 3)), r"fixed height and width"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.alexnet(**kwargs)


@ALL
def test_weights_file_must_be_keras_weights(tmp_path):
    bad = tmp_path / "model.ckpt"
    bad.write_text("not weights")
    with pytest.raises(ValueError, match=r"must end in .weights.h5, .caffemodel; received "
                                         r"'.*model.ckpt'"):
        zoo.alexnet(weights=str(bad))


@ALL
def test_weights_from_local_file(tmp_path):
    path = str(tmp_path / "alexnet.weights.h5")
    source = zoo.alexnet(towers=2, **TINY)
    source.save_weights(path)
    loaded = zoo.alexnet(towers=2, weights=path, **TINY)
    for a, b in zip(source.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


@ALL
@pytest.mark.xdist_group("cold_python")
def test_saved_model_export_serves_same_outputs(tmp_path, cold_python):
    model = zoo.alexnet(towers=2, **TINY)
    x = np.random.default_rng(0).normal(size=(4, 67, 67, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    export_dir = str(tmp_path / "export")
    model.export(export_dir, verbose=False)
    np.save(tmp_path / "x.npy", x)
    # Serve it from a process that never imports this project.
    cold_python.run(textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        served = tf.saved_model.load({export_dir!r})
        out = served.serve(tf.constant(np.load({str(tmp_path / 'x.npy')!r})))
        np.save({str(tmp_path / 'out.npy')!r}, out.numpy())
        assert not any(m.split('.')[0] in ("zoo", "ensembles", "data") for m in sys.modules)
    """))
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)
