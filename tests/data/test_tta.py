import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import data
from data import tta

# Backend-agnostic: `make test` runs this file under JAX too.
pytestmark = pytest.mark.all_backends


def test_ten_crop_matches_numpy_slicing():
    image = np.random.default_rng(0).normal(size=(9, 11, 3)).astype("float32")
    crops = data.ten_crop(image, 6).numpy()
    # The centre as torchvision's CenterCrop places it: int(round((9 - 6) / 2)) = 2 and
    # int(round((11 - 6) / 2)) = 2 (Python rounds half to even), not the floors 1 and 2.
    expected = [image[0:6, 0:6], image[0:6, 5:11], image[3:9, 0:6], image[3:9, 5:11],
                image[2:8, 2:8]]
    expected += [e[:, ::-1] for e in expected]
    assert crops.shape == (10, 6, 6, 3)
    for got, want in zip(crops, expected):
        np.testing.assert_array_equal(got, want)
    batch = data.ten_crop(np.stack([image, image * 2]), 6).numpy()
    assert batch.shape == (2, 10, 6, 6, 3)
    np.testing.assert_array_equal(batch[1], crops * 2)


def test_ten_crop_inside_tf_data_of_images_of_any_size_is_the_eager_one():
    """A tf.data pipeline of decoded images knows no size when traced: comparing None with
    the crop size was a TypeError. The crops, and the refusals, come when it runs."""
    images = [np.random.default_rng(k).normal(size=shape).astype("float32")
              for k, shape in enumerate([(9, 11, 3), (8, 10, 3)])]
    spec = tf.TensorSpec((None, None, 3), tf.float32)
    traced = tf.data.Dataset.from_generator(lambda: iter(images), output_signature=spec)
    for mode in (data.ten_crop, data.five_crop):
        crops = traced.map(lambda x, mode=mode: mode(x, 6))
        assert crops.element_spec.shape == ((10 if mode is data.ten_crop else 5), 6, 6, 3)
        for got, image in zip(crops, images):
            np.testing.assert_array_equal(got.numpy(), mode(image, 6).numpy())
    small = tf.data.Dataset.from_generator(lambda: iter([np.zeros((5, 9, 3), "float32")]),
                                           output_signature=spec)
    with pytest.raises(tf.errors.InvalidArgumentError, match="ten_crop needs images of at "
                                                             "least 6x6"):
        list(small.map(lambda x: data.ten_crop(x, 6)))


def test_predict_crops_refuses_images_that_are_not_in_batches():
    """A dataset of single images (not batched) took each image for a batch of its rows,
    and Keras refused the shapes in its own words."""
    images = np.zeros((4, 9, 9, 3), "float32")
    for given in (tf.data.Dataset.from_tensor_slices(images), images[0]):
        with pytest.raises(ValueError, match=r"predict_crops takes batches of images \(n, "
                                             r"height, width, channels\); received a batch of "
                                             r"shape \(9, 9, 3\): batch the dataset"):
            data.predict_crops(_model(6), given, tta="10crop")


def test_five_crop_is_the_first_half_of_ten_crop():
    image = np.random.default_rng(3).normal(size=(9, 11, 3)).astype("float32")
    np.testing.assert_array_equal(data.five_crop(image, 6).numpy(),
                                  data.ten_crop(image, 6).numpy()[:5])
    crops = data.five_crop(image, 6).numpy()
    assert all(not np.array_equal(crops[i], crops[j]) for i in range(5) for j in range(i))


def test_ten_crop_errors():
    with pytest.raises(ValueError, match=r"at least 12x12; received 9x11"):
        data.ten_crop(np.zeros((9, 11, 3)), 12)
    with pytest.raises(ValueError, match=r"`tta` must be one of.*received '7crop'"):
        tta.crops(np.zeros((1, 9, 11, 3)), "7crop")
    # Crops of the image's own size would all be the same image.
    for mode in ("5crop", "10crop"):
        with pytest.raises(ValueError, match=r"larger than the 8x8 crops.*shorter side 9"):
            tta.crops(np.zeros((1, 8, 8, 3)), mode, 8)
    assert data.crop_scale(224) == data.crop_scale(227) == 256
    # Sizes that are no crop's (five_crop of 0 gave (5, 0, 0, 3); crop_scale(32.7) gave 37,
    # crop_scale(-5) -6) and an image without channels (TensorFlow's slicing error).
    for call, message in (
            (lambda: data.five_crop(np.zeros((10, 10, 3)), 0),
             r"`size` \(of five_crop's crops\) must be a positive integer; received 0"),
            (lambda: data.ten_crop(np.zeros((10, 10, 3)), "8"), r"received '8'"),
            (lambda: data.crop_scale(32.7), r"`size` \(of the crops\) must be a positive "
                                            r"integer; received 32.7"),
            (lambda: data.crop_scale(-5), r"received -5"),
            (lambda: data.ten_crop(np.zeros((10, 10)), 4), r"ten_crop takes an image "
                                                           r"\(height, width, channels\) or a "
                                                           r"batch .*received shape \(10, 10\)")):
        with pytest.raises(ValueError, match=message):
            call()
    assert data.five_crop(np.zeros((10, 10, 3)), np.int64(4)).shape == (5, 4, 4, 3)


def _model(size=6, classes=4):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


@pytest.mark.parametrize("mode, views", [("10crop", 10), ("5crop", 5), ("flip", 2),
                                         (None, 1)])
def test_predict_crops_mean_and_variance_across_crops(mode, views):
    images = np.random.default_rng(1).normal(size=(5, 9, 9, 3)).astype("float32")
    size = 6 if mode in ("5crop", "10crop") else 9
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


def test_predict_crops_reads_logits_from_the_graph_not_from_the_numbers():
    """An untrained logits model whose outputs all lay in [0, 1] was averaged as
    probabilities (the numbers were all predict_crops read); the graph says logits, as the
    ensembles and evaluation read it, so their softmax (here 1/3 each) is averaged. A
    softmax the graph does not show (a Lambda's) is softmaxed too, with a warning."""
    inputs = keras.Input((6, 6, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    head = keras.layers.Dense(3, kernel_initializer="zeros", bias_initializer="zeros")
    logits = np.array([0.5, 0.25, 0.75], "float32")
    images = np.random.default_rng(3).uniform(size=(4, 9, 9, 3)).astype("float32")
    untrained = keras.Model(inputs, head(pooled))
    head.bias.assign(logits)  # logits within [0, 1], rows summing to 1.5
    mean, var = data.predict_crops(untrained, images, tta="5crop")
    np.testing.assert_allclose(mean, np.tile(keras.ops.softmax(logits), (4, 1)),
                               rtol=1e-6)
    np.testing.assert_allclose(var, 0.0, atol=1e-12)
    hidden = keras.Model(inputs, keras.layers.Lambda(keras.ops.softmax)(head(pooled)))
    with pytest.warns(UserWarning, match=r"look like probabilities .* no softmax that can be "
                                         r"seen, so they are read as logits"):
        mean, _ = data.predict_crops(hidden, images, tta="5crop")
    np.testing.assert_allclose(
        mean, np.tile(keras.ops.softmax(keras.ops.softmax(logits)), (4, 1)),
        rtol=1e-6)


def test_predict_crops_on_a_dataset_of_batches():
    images = np.random.default_rng(2).normal(size=(7, 9, 9, 3)).astype("float32")
    model = _model(6)
    ds = tf.data.Dataset.from_tensor_slices((images, np.zeros(7, "int32"))).batch(3)
    mean, var = data.predict_crops(model, ds, tta="10crop")
    ref_mean, ref_var = data.predict_crops(model, images, tta="10crop")
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-5)
    np.testing.assert_allclose(var, ref_var, rtol=1e-4, atol=1e-8)


def test_cli_ten_crop_loads_larger_images_and_agrees_with_predict_crops(tmp_path, capsys):
    """`zoo evaluate --tta 10crop` on 8x8 inputs loads the digits at 9x9, so its crops
    differ: its table is not flip testing's, and it matches data.predict_crops."""
    from sklearn.metrics import log_loss

    import zoo
    from zoo import cli

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x), name="m")
    path = str(tmp_path / "m.keras")
    model.save(path)
    tables = {}
    for mode in ("flip", "5crop", "10crop"):
        csv = str(tmp_path / f"{mode}.csv")
        assert cli.main(["evaluate", path, "--tta", mode, "--output", csv]) == 0
        tables[mode] = pd.read_csv(csv, index_col=0)
    out = capsys.readouterr().out
    assert "shorter side 9" in out and "Note:" not in out  # the model records no view
    assert tables["10crop"].loc["m", "nll"] != pytest.approx(tables["flip"].loc["m", "nll"])
    assert tables["10crop"].loc["m", "nll"] != pytest.approx(tables["5crop"].loc["m", "nll"])
    images = data.load("digits", "test", image_size=9, batch_size=None)
    x, y = map(np.stack, zip(*[(a.numpy(), b.numpy()) for a, b in images]))
    mean, variance = data.predict_crops(model, x, tta="10crop")
    assert variance.max() > 0  # the ten crops see different pixels
    assert tables["10crop"].loc["m", "nll"] == pytest.approx(
        log_loss(y, mean, labels=range(10)), rel=1e-4)
    zoo.save_model(zoo.set_resize_mode(model, "squash"), path)  # whole images: a note
    assert cli.main(["evaluate", path, "--tta", "5crop", "--output", csv]) == 0
    assert ("Note: m was trained on whole images (resize squash); --tta 5crop scores crops "
            "of them." in capsys.readouterr().out)
    assert pd.read_csv(csv, index_col=0).loc["m", "nll"] == pytest.approx(
        tables["5crop"].loc["m", "nll"])  # the same crops as before


def test_predict_crops_of_an_array_crops_a_batch_at_a_time(monkeypatch):
    """An array's crops were all made at once: ten times the array (5,000 images of
    256x256 need 31 GB); now batch_size images at a time, as a dataset's batches."""
    images = np.random.default_rng(3).normal(size=(7, 9, 9, 3)).astype("float32")
    model = _model(6)
    whole = data.predict_crops(model, images, tta="10crop", batch_size=64)
    sizes = []
    crops = tta.crops
    monkeypatch.setattr(tta, "crops", lambda batch, *args: sizes.append(len(batch)) or
                        crops(batch, *args))
    chunked = data.predict_crops(model, images, tta="10crop", batch_size=3)
    assert sizes == [3, 3, 1]
    for a, b in zip(chunked, whole):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match=r"predict_crops received no images"):
        data.predict_crops(model, images[:0], tta="10crop")
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer; received "
                                         r"None"):
        data.predict_crops(model, images, tta="10crop", batch_size=None)


def test_predict_crops_of_a_list_of_images_is_the_stacked_arrays():
    """Each slice of a list was taken for an (images, labels) pair, its first image for the
    batch: 'batch the dataset', of a list."""
    images = [np.random.default_rng(i).normal(size=(9, 9, 3)).astype("float32")
              for i in range(3)]
    model = _model(6)
    listed = data.predict_crops(model, images, tta="10crop", batch_size=2)
    stacked = data.predict_crops(model, np.stack(images), tta="10crop", batch_size=2)
    np.testing.assert_array_equal(listed[0], stacked[0])
    with pytest.raises(ValueError, match=r"^predict_crops takes images of one size as an array "
                                         r"\(n, height, width, channels\); received a list "
                                         r"of 2 images of shapes \[\(9, 9, 3\), \(10, 9, 3\)\]"):
        data.predict_crops(model, [images[0], np.zeros((10, 9, 3))], tta="10crop")
    with pytest.raises(ValueError, match=r"received no images"):
        data.predict_crops(model, [], tta="10crop")


def test_predict_crops_of_whole_images_of_another_size_and_of_a_pair_of_arrays():
    """Images loaded larger (for crops) given with tta='flip' were Keras' 'Matrix
    size-incompatible' traceback; Keras' (images, labels) pair reads its images (as its
    one batch did before a list of images was stacked)."""
    model = _model(6)
    larger = np.random.default_rng(2).normal(size=(3, 9, 9, 3)).astype("float32")
    for tta in ("flip", None):
        with pytest.raises(ValueError, match=rf"^predict_crops with tta={tta!r} gives .* the "
                                             r"whole images, shaped 9x9; it takes 6x6: load "
                                             r"them at its size \(data.load\(\.\.\., "
                                             r"image_size=6\)\)"):
            data.predict_crops(model, larger, tta=tta)
    pair = data.predict_crops(model, (larger, np.zeros(3, "int32")), tta="10crop")
    np.testing.assert_array_equal(pair[0], data.predict_crops(model, larger, tta="10crop")[0])


def test_predict_crops_of_grey_images_for_an_rgb_model_is_one_line():
    """Grey images (one channel) for an RGB model were Keras' shape traceback from inside
    predict; ensembles.evaluate said so in one line by the same rule (tta.misfit)."""
    model = _model(6)
    grey = np.zeros((2, 6, 6, 1), "float32")
    for mode in ("flip", None):
        with pytest.raises(ValueError, match=r"^predict_crops gives .* images shaped \(6, 6, "
                                             r"1\) \(height, width, channels\); it takes "
                                             r"\(6, 6, 3\): load them with its channels"):
            data.predict_crops(model, grey, tta=mode)
