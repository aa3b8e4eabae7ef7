import keras
import numpy as np
import pytest
import tensorflow as tf

import data
from data import tta


def test_ten_crop_matches_numpy_slicing():
    image = np.random.default_rng(0).normal(size=(9, 11, 3)).astype("float32")
    crops = data.ten_crop(image, 6).numpy()
    expected = [image[0:6, 0:6], image[0:6, 5:11], image[3:9, 0:6], image[3:9, 5:11],
                image[1:7, 2:8]]
    expected += [e[:, ::-1] for e in expected]
    assert crops.shape == (10, 6, 6, 3)
    for got, want in zip(crops, expected):
        np.testing.assert_array_equal(got, want)
    batch = data.ten_crop(np.stack([image, image * 2]), 6).numpy()
    assert batch.shape == (2, 10, 6, 6, 3)
    np.testing.assert_array_equal(batch[1], crops * 2)


def test_ten_crop_errors():
    with pytest.raises(ValueError, match=r"at least 12x12; received 9x11"):
        data.ten_crop(np.zeros((9, 11, 3)), 12)
    with pytest.raises(ValueError, match=r"`tta` must be one of.*received '5crop'"):
        tta.crops(np.zeros((1, 9, 11, 3)), "5crop")


def _model(size=6, classes=4):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


@pytest.mark.parametrize("mode, views", [("10crop", 10), ("flip", 2), (None, 1)])
def test_predict_crops_mean_and_variance_across_crops(mode, views):
    images = np.random.default_rng(1).normal(size=(5, 9, 9, 3)).astype("float32")
    size = 6 if mode == "10crop" else 9
    model = _model(size)
    mean, var = data.predict_crops(model, images, tta=mode)
    per_view = tta.crops(images, mode, size).numpy()
    assert per_view.shape[:2] == (5, views)
    probs = model.predict(per_view.reshape((-1, size, size, 3)), verbose=0).reshape(5, views, 4)
    np.testing.assert_allclose(mean, probs.mean(axis=1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(var, probs.var(axis=1), rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, rtol=1e-5)
    if views == 1:
        assert not var.any()


def test_predict_crops_on_a_dataset_of_batches():
    images = np.random.default_rng(2).normal(size=(7, 9, 9, 3)).astype("float32")
    model = _model(6)
    ds = tf.data.Dataset.from_tensor_slices((images, np.zeros(7, "int32"))).batch(3)
    mean, var = data.predict_crops(model, ds, tta="10crop")
    ref_mean, ref_var = data.predict_crops(model, images, tta="10crop")
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-5)
    np.testing.assert_allclose(var, ref_var, rtol=1e-4, atol=1e-8)
