import numpy as np
import pytest
import keras

from zoo.layers import LocalResponseNormalization

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


@pytest.mark.parametrize("bad", [-1, 1.5])
def test_lrn_rejects_bad_radius(bad):
    with pytest.raises(ValueError, match="depth_radius"):
        LocalResponseNormalization(depth_radius=bad)


def test_lrn_rejects_non_image_input():
    with pytest.raises(ValueError, match=r"received shape \(None, 8\)"):
        LocalResponseNormalization()(keras.Input((8,)))
