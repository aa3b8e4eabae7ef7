import re

import numpy as np
import pytest
import keras

from safeio.checks import UserError
from zoo.layers import (DropConnectDense, FractionalMaxPooling2D, LocalResponseNormalization,
                        fractional_max_pool, pooling_sequence)

# Backend-agnostic: `make test` runs this file under JAX too.
pytestmark = pytest.mark.all_backends


def lrn_reference(a, n=5, k=2.0, alpha=1e-4, beta=0.75):
    """The paper formula, one channel at a time, with the window clipped at the edges."""
    channels = a.shape[-1]
    out = np.empty_like(a, dtype=np.float64)
    for c in range(channels):
        lo, hi = max(0, c - n // 2), min(channels - 1, c + n // 2)
        squares = np.sum(a[..., lo : hi + 1].astype(np.float64) ** 2, axis=-1)
        out[..., c] = a[..., c] / (k + alpha * squares) ** beta
    return out


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # the paper: n=5, k=2, alpha=1e-4, beta=0.75
        {"depth_radius": 1, "bias": 1.0, "alpha": 1e-3, "beta": 0.5},
        {"depth_radius": 3, "bias": 0.5, "alpha": 0.05, "beta": 0.9},
    ],
)
def test_lrn_matches_paper_formula_including_channel_edges(kwargs):
    rng = np.random.default_rng(0)
    # Large activations so the alpha term matters; 7 channels so both edges are clipped.
    a = (rng.normal(size=(2, 3, 4, 7)) * 30).astype("float32")
    ref_kwargs = {
        "n": 2 * kwargs.get("depth_radius", 2) + 1,
        "k": kwargs.get("bias", 2.0),
        "alpha": kwargs.get("alpha", 1e-4),
        "beta": kwargs.get("beta", 0.75),
    }
    expected = lrn_reference(a, **ref_kwargs)
    got = keras.ops.convert_to_numpy(LocalResponseNormalization(**kwargs)(a))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # The edge channels really are normalised differently from a wrap-around window.
    assert not np.allclose(expected[..., 0], a[..., 0] / ref_kwargs["k"] ** ref_kwargs["beta"])


def test_lrn_agrees_with_tensorflows_op_and_keeps_bfloat16():
    """TensorFlow's own tf.nn.local_response_normalization as an outside reference for the
    keras.ops formula (what JAX and PyTorch run); under mixed bfloat16 the output is
    bfloat16, computed in float32."""
    import tensorflow as tf

    a = (np.random.default_rng(1).normal(size=(2, 5, 5, 16)) * 20).astype("float32")
    expected = tf.nn.local_response_normalization(a, depth_radius=2, bias=2.0, alpha=1e-4,
                                                  beta=0.75).numpy()
    layer = LocalResponseNormalization()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.formula(a)), expected,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(a)), expected, rtol=1e-5,
                               atol=1e-6)
    half = LocalResponseNormalization(dtype="mixed_bfloat16")(a)
    assert keras.backend.standardize_dtype(half.dtype) == "bfloat16"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.cast(half, "float32")),
                               expected, rtol=2e-2, atol=1e-2)


def test_lrn_gradient_of_the_fused_op_equals_the_formulas():
    """On TensorFlow the layer runs the fused op and its fused gradient; that gradient
    equals the gradient of the keras.ops formula (TensorFlow's autodiff)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the fused op is TensorFlow's")
    import tensorflow as tf

    a = tf.constant((np.random.default_rng(2).normal(size=(2, 4, 4, 9)) * 25).astype("float32"))
    weights = tf.constant(np.random.default_rng(3).normal(size=(2, 4, 4, 9)).astype("float32"))
    layer = LocalResponseNormalization(depth_radius=3, bias=1.0, alpha=1e-3, beta=0.75)
    grads = []
    for function in (layer, layer.formula):
        with tf.GradientTape() as tape:
            tape.watch(a)
            loss = tf.reduce_sum(function(a) * weights)
        grads.append(tape.gradient(loss, a).numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_lrn_paper_defaults_and_config_round_trip():
    layer = LocalResponseNormalization(name="lrn")
    config = layer.get_config()
    assert (config["depth_radius"], config["bias"], config["alpha"], config["beta"]) == (
        2, 2.0, 1e-4, 0.75
    )
    clone = LocalResponseNormalization.from_config(config)
    x = np.random.default_rng(1).normal(size=(1, 2, 2, 6)).astype("float32") * 50
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)),
                                  keras.ops.convert_to_numpy(clone(x)))


def test_lrn_is_registered_for_keras_files(tmp_path):
    inputs = keras.Input((4, 4, 6))
    model = keras.Model(inputs, LocalResponseNormalization(alpha=0.01)(inputs))
    path = tmp_path / "lrn.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects needed
    assert isinstance(loaded.layers[-1], LocalResponseNormalization)
    assert loaded.layers[-1].alpha == 0.01


@pytest.mark.parametrize("bad", [-1, 1.5, "a", None, True, float("inf"), float("nan")])
def test_lrn_rejects_bad_radius(bad):
    """(An infinite or NaN radius was int()'s OverflowError or ValueError.)"""
    with pytest.raises(UserError, match=re.escape(
            f"`depth_radius` must be a non-negative integer; received {bad!r}.")):
        LocalResponseNormalization(depth_radius=bad)


@pytest.mark.parametrize("layer, kwargs, message", [
    ("ChannelSlice", dict(start="a", stop=4), "ChannelSlice needs 0 <= start < stop; "
                                              "received start='a', stop=4."),
    ("ChannelSlice", dict(start=0, stop=float("inf")), "received start=0, stop=inf."),
    ("ChannelSlice", dict(start=2, stop=2), "received start=2, stop=2."),
    ("ZeroPadChannels", dict(before="1", after=1), "`before` must be a non-negative "
                                                   "integer; received '1'."),
    ("ZeroPadChannels", dict(before=1, after=float("nan")), "received nan."),
])
def test_channel_layers_refuse_bad_arguments_in_one_line(layer, kwargs, message):
    """A string or an infinity was int()'s own error, which named no layer."""
    import zoo.layers

    with pytest.raises(UserError, match=re.escape(message)):
        getattr(zoo.layers, layer)(**kwargs)


@pytest.mark.parametrize("setting, allowed", [
    ({"bias": -5.0}, "above 0"), ({"bias": 0}, "above 0"), ({"alpha": "x"}, ">= 0"),
    ({"alpha": -1e-4}, ">= 0"), ({"beta": float("nan")}, ">= 0"), ({"beta": None}, ">= 0")])
def test_lrn_settings_that_give_nan_or_fail_later_are_one_line(setting, allowed):
    """bias -5, beta -1 built and gave NaN; alpha "x" was float()'s own error."""
    (what, value), = setting.items()
    message = rf"`{what}` must be a finite number {allowed}.*received {value!r}"
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        LocalResponseNormalization(**setting)
    import zoo

    with pytest.raises(ValueError, match=rf"`{what}` must be"):  # AlexNet's lrn_params
        zoo.alexnet(input_shape=(67, 67, 3), include_top=False, lrn_params=setting)


def test_lrn_rejects_non_image_input():
    with pytest.raises(ValueError, match=r"received shape \(None, 8\)"):
        LocalResponseNormalization()(keras.Input((8,)))


# --- DropConnect (Wan et al. 2013) ---------------------------------------------------------


def _dense_pair(rate, units=5, features=7, seed=0):
    """A DropConnectDense and a keras.layers.Dense holding the same weights."""
    connect = DropConnectDense(units, rate=rate, seed=seed, activation="relu")
    plain = keras.layers.Dense(units, activation="relu")
    connect.build((None, features))
    plain.build((None, features))
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(features, units)).astype("float32"),
               rng.normal(size=units).astype("float32")]
    connect.set_weights(weights)
    plain.set_weights(weights)
    return connect, plain, weights


def test_dropconnect_at_rate_0_and_in_inference_is_keras_dense():
    x = np.random.default_rng(1).normal(size=(6, 7)).astype("float32")
    connect, plain, _ = _dense_pair(0.0)
    np.testing.assert_allclose(connect(x, training=True), plain(x), rtol=1e-6)
    connect, plain, _ = _dense_pair(0.5)
    np.testing.assert_allclose(connect(x, training=False), plain(x), rtol=1e-6)


def test_dropconnect_draws_a_mask_per_example_whose_mean_is_the_inference_output():
    """A batch of one input repeated: the rows differ (one mask each) and, over 20 batches
    of 500 examples, their mean pre-activation is the inference one within 4 standard errors
    of the Bernoulli masks' variance, sum_i x_i^2 W_ij^2 rate / (1 - rate)."""
    rate, samples = 0.4, 500
    connect, _, (kernel, bias) = _dense_pair(rate)
    connect.activation = keras.activations.linear  # the mean of the pre-activations
    x = np.random.default_rng(2).normal(size=(1, 7)).astype("float32")
    batch = np.repeat(x, samples, axis=0)
    draws = np.concatenate([keras.ops.convert_to_numpy(connect(batch, training=True))
                            for _ in range(20)])
    assert len({tuple(row) for row in draws[:samples].round(5)}) > samples * 0.9
    expected = x @ kernel + bias
    variance = (x.T ** 2 * kernel ** 2).sum(axis=0) * rate / (1 - rate)
    error = np.abs(draws.mean(axis=0) - expected[0])
    assert (error <= 4 * np.sqrt(variance / len(draws))).all(), (error, variance)
    # Each kept weight is scaled by 1 / (1 - rate): a lone input gives W/(1-rate) or 0.
    one_hot = np.eye(7, dtype="float32")[:1].repeat(200, axis=0)
    out = keras.ops.convert_to_numpy(connect(one_hot, training=True)) - bias
    kept = np.isclose(out, kernel[0] / (1 - rate), rtol=1e-5)
    assert (np.isclose(out, 0, atol=1e-6) | kept).all()
    assert 0.3 < np.isclose(out, 0, atol=1e-6).mean() < 0.5  # about `rate` of them dropped


def test_dropconnect_alexnet_keeps_the_layer_names_and_round_trips(tmp_path):
    import zoo

    model = zoo.alexnet(input_shape=(67, 67, 3), width=16, classes=3, dropout=0.3,
                        regularizer="dropconnect")
    assert isinstance(model.get_layer("fc6"), DropConnectDense)
    assert model.get_layer("fc7").rate == 0.3
    names = [layer.name for layer in model.layers]
    assert "drop6" not in names and "drop7" not in names
    plain = zoo.alexnet(input_shape=(67, 67, 3), width=16, classes=3)
    assert model.count_params() == plain.count_params()
    model.save(tmp_path / "m.keras")
    loaded = zoo.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).normal(size=(2, 67, 67, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), rtol=1e-5)
    with pytest.raises(ValueError, match=r"`regularizer` must be one of \('dropout', "
                                         r"'dropconnect'\); received 'dropblock'"):
        zoo.alexnet(regularizer="dropblock")
    with pytest.raises(ValueError, match=r"`rate` must be a number in \[0, 1\); received 1"):
        DropConnectDense(3, rate=1)


# --- fractional max pooling (Graham 2014) ----------------------------------------------------


@pytest.mark.parametrize("pseudo_random", [True, False])
@pytest.mark.parametrize("overlapping", [True, False])
@pytest.mark.parametrize("size, ratio", [(10, 1.44), (17, 1.7), (9, 1.0)])
def test_fractional_max_pool_equals_tensorflows_given_its_sequences(
        pseudo_random, overlapping, size, ratio):
    """TensorFlow's op draws its sequences; pooled over the same ones, the outputs are equal,
    and so are the output sizes (floor(input / ratio))."""
    import tensorflow as tf

    x = np.random.default_rng(3).normal(size=(2, size, size + 3, 4)).astype("float32")
    out, rows, cols = tf.nn.fractional_max_pool(
        x, [1.0, ratio, ratio, 1.0], pseudo_random=pseudo_random, overlapping=overlapping,
        seed=7)
    ours = fractional_max_pool(x, rows.numpy(), cols.numpy(), overlapping=overlapping)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), out.numpy())
    layer = FractionalMaxPooling2D(ratio, pseudo_random, overlapping, seed=1)
    assert tuple(layer(x).shape) == tuple(out.shape)


@pytest.mark.parametrize("pseudo_random", [True, False])
@pytest.mark.parametrize("size, out", [(10, 7), (32, 22), (13, 12), (25, 13)])
def test_pooling_sequences_follow_the_ops_rules(pseudo_random, size, out):
    """From 0 to the input size, out + 1 boundaries, steps floor(alpha) or ceil(alpha);
    the random draws vary, the inference sequence does not."""
    alpha = size / out
    seen = set()
    for seed in range(12):
        sequence = keras.ops.convert_to_numpy(pooling_sequence(
            size, out, pseudo_random, seed=keras.random.SeedGenerator(seed)))
        steps = np.diff(sequence)
        assert sequence[0] == 0 and sequence[-1] == size and len(sequence) == out + 1
        assert set(steps) <= {int(np.floor(alpha)), int(np.ceil(alpha))}, sequence
        seen.add(tuple(sequence))
    if size - out > 1:  # (13, 12): the pseudo-random u can only be 0
        assert len(seen) > 1

    layer = FractionalMaxPooling2D(1.5, pseudo_random, seed=0)
    x = np.random.default_rng(0).normal(size=(1, size, size, 2)).astype("float32")
    np.testing.assert_array_equal(layer(x, training=False), layer(x, training=False))
    trained = {keras.ops.convert_to_numpy(layer(x, training=True)).tobytes() for _ in range(8)}
    assert len(trained) > 1


def test_fractional_max_pooling_trains_round_trips_and_refuses_bad_ratios(tmp_path):
    inputs = keras.Input((12, 12, 3))
    x = FractionalMaxPooling2D(1.5, seed=0, name="fmp")(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    assert model.get_layer("fmp").output.shape == (None, 6, 6, 4)
    images = np.random.default_rng(0).normal(size=(8, 12, 12, 3)).astype("float32")
    model.compile("sgd", "mse")
    assert np.isfinite(model.train_on_batch(images, np.zeros((8, 2))))
    model.save(tmp_path / "fmp.keras")
    loaded = keras.saving.load_model(tmp_path / "fmp.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0),
                               model.predict(images, verbose=0), rtol=1e-5)
    with pytest.raises(ValueError, match=r"`ratio` must be a number in \[1, 2\).*received 2"):
        FractionalMaxPooling2D(2)
    # NumPy's numbers were refused with "must be a number ...; received np.float32(1.5)".
    assert FractionalMaxPooling2D(np.float32(1.5)).ratio == 1.5
    assert DropConnectDense(3, rate=np.float32(0.25)).rate == 0.25


# --- Max-pools padded with -inf: torchvision's padding, Caffe's ceil mode ------------------


@pytest.mark.parametrize("side, size, strides, ceil_mode, padding", [
    (7, 3, 2, True, 0), (8, 3, 2, True, 0), (7, 2, 2, True, 0), (8, 2, 2, True, 0),
    (7, 3, 2, False, 1)])
def test_max_pool_is_caffes_and_torchvisions_pooling_of_negative_maps(side, size, strides,
                                                                      ceil_mode, padding):
    """Caffe's pooling (the NumPy reference its tests hold against OpenCV's Caffe runtime):
    the windows the edge cuts count, and the padding never wins, though every value is
    below 0 (zeros would: the padded max-pool of an ELU ResNet took 0.207 where -inf gives
    the map's own). Floor mode with padding on odd sides, where Caffe's rounding agrees."""
    from tests.zoo.test_caffe import pool
    from zoo.layers import max_pool

    x = -np.random.default_rng(side).uniform(0.1, 3, (2, side, side + 2, 3)).astype("float32")
    want = pool(x.transpose(0, 3, 1, 2), size, strides, pad=padding).transpose(0, 2, 3, 1)
    assert np.isfinite(want).all() and want.max() < 0
    # Sizes unknown when built (padded with -inf), and known (Keras' "valid" or "same"
    # where they pool alike, as at 7x9 and 8x10: no padding layer).
    for shape in ((None, None, 3), x.shape[1:]):
        inputs = keras.Input(shape)
        model = keras.Model(inputs, max_pool(inputs, size, strides, "pool", padding,
                                             ceil_mode))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), want, rtol=1e-6)
        padded = any(layer.name == "pool_pad" for layer in model.layers)
        assert padded == (padding > 0 or None in shape), shape


def _onnx_runtime_pool(op, x, size, strides, **attributes):
    """ONNX Runtime's ``op`` (MaxPool, AveragePool) in ceil mode (PyTorch's rule) of a
    channels-last batch, with the node's other ``attributes`` (pads, count_include_pad)."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    node = helper.make_node(op, ["x"], ["y"], kernel_shape=[size, size],
                            strides=[strides, strides], ceil_mode=1, **attributes)
    graph = helper.make_graph(
        [node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x.transpose(0, 3, 1, 2)})
    return y.transpose(0, 2, 3, 1)


@pytest.mark.parametrize("size, strides, padding", [(2, 2, 1), (3, 2, 1), (3, 3, 1),
                                                    (1, 2, 0), (2, 3, 1), (2, 4, 1)])
def test_max_pool_ceil_mode_with_padding_drops_a_last_window_in_the_padding(size, strides,
                                                                           padding):
    """PyTorch's (and ONNX Runtime's) ceil mode drops a last window that would start in
    the bottom or right padding: a 2x2/2 pool of 3 rows with padding 1 gave 3 rows, the
    last all -3.4e38, where PyTorch gives 2. Sides known when built and unknown alike; a
    padding over half the window (PyTorch refuses it) is one line."""
    from zoo.layers import max_pool

    x = np.random.default_rng(size).normal(size=(2, 7, 8, 3)).astype("float32")
    unknown = keras.Input((None, None, 3))
    any_size = keras.Model(unknown, max_pool(unknown, size, strides, "pool", padding, True))
    for side in (3, 4, 7, 8):
        part = x[:, :side, :8]
        want = _onnx_runtime_pool("MaxPool", part, size, strides, pads=[padding] * 4)
        inputs = keras.Input(part.shape[1:])
        model = keras.Model(inputs, max_pool(inputs, size, strides, "pool", padding, True))
        for built in (model, any_size):
            got = keras.ops.convert_to_numpy(built(part))
            assert got.shape == want.shape, (side, got.shape, want.shape)
            np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(ValueError, match=rf"max_pool 'pool': `padding` must be an integer "
                                         rf"from 0 to half the window, {size // 2} for size "
                                         rf"{size}.*received {size // 2 + 1}"):
        max_pool(unknown, size, strides, "pool", size // 2 + 1, True)


def test_max_padding_round_trips_and_refuses_bad_padding(tmp_path):
    from zoo.layers import MaxPadding2D

    model = keras.Sequential([keras.Input((4, 5, 2)), MaxPadding2D(((0, 1), (2, 0)))])
    assert model.output_shape == (None, 5, 7, 2)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.layers[-1].padding == ((0, 1), (2, 0))
    for bad in (-1, (1, 2, 3), "same", 1.5):
        with pytest.raises(ValueError, match=rf"`padding` must be .*received "
                                             rf"{re.escape(repr(bad))}"):
            MaxPadding2D(bad)


@pytest.mark.parametrize("height, width", [(13, 14), (4, 7), (16, 15), (14, 11)])
def test_average_pool_rounds_up_as_caffe_and_onnx_runtime_do(tmp_path, height, width):
    """GoogLeNet's aux heads pool 5x5/3 in Caffe's ceil mode: 13 -> 4 where Keras' "valid"
    gives 3 (bvlc_googlenet's loss1/fc then did not fit at inputs from 191 to 222). Known
    sides that divide (14, 11) keep Keras' own layer; the others, and sizes unknown when
    built, CeilAveragePooling2D, which saves and loads."""
    from zoo.layers import CeilAveragePooling2D, average_pool

    x = np.random.default_rng(height).normal(size=(2, height, width, 3)).astype("float32")
    # (a window the edge cuts averages what lies inside: Caffe's rule too)
    want = _onnx_runtime_pool("AveragePool", x, 5, 3, count_include_pad=0)
    for shape in ((None, None, 3), x.shape[1:]):
        inputs = keras.Input(shape)
        model = keras.Model(inputs, average_pool(inputs, 5, 3, "pool"))
        got = keras.ops.convert_to_numpy(model(x))
        assert got.shape == want.shape and model.output_shape[1:3] in (want.shape[1:3],
                                                                       (None, None))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        keras_own = type(model.get_layer("pool")) is keras.layers.AveragePooling2D
        assert keras_own == (None not in shape and (height - 5) % 3 == (width - 5) % 3 == 0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), want, rtol=1e-5,
                               atol=1e-6)
    for bad in (0, 2.5, "3"):
        with pytest.raises(ValueError, match=rf"`pool_size` must be a positive int; "
                                             rf"received {re.escape(repr(bad))}"):
            CeilAveragePooling2D(bad, 3)
    with pytest.raises(ValueError, match=r"`pool_size` must be at least its `strides`, 3; "
                                         r"received 2\."):  # (windows of padding: NaN)
        CeilAveragePooling2D(2, 3)


def test_an_elu_resnet_pads_its_stem_pool_with_minus_infinity():
    import zoo

    model = zoo.resnet18(input_shape=(65, 65, 3), activation="elu", classes=3)
    stem = keras.Model(model.inputs, [model.get_layer("conv1_elu").output,
                                      model.get_layer("pool1_pool").output])
    from tests.zoo.test_caffe import pool

    x = np.random.default_rng(0).uniform(0, 255, (1, 65, 65, 3)).astype("float32")
    before, after = (keras.ops.convert_to_numpy(t) for t in stem(x))
    want = pool(before.transpose(0, 3, 1, 2), 3, 2, pad=1).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(after, want, rtol=1e-6)


def test_a_channel_slice_past_the_channels_is_one_line():
    """It declared 64 channels and gave 48: the next layer failed at its first call."""
    from zoo.layers import ChannelSlice

    with pytest.raises(ValueError, match=r"ChannelSlice\(0, 64\) of a tensor of 48 channels: "
                                         r"stop must be at most 48"):
        ChannelSlice(0, 64)(keras.Input((8, 8, 48)))
    assert ChannelSlice(0, 48)(keras.Input((8, 8, 48))).shape == (None, 8, 8, 48)
