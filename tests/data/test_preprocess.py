import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import data
from data.layers import MeanSubtraction


def test_resize_shorter_side_keeps_aspect_ratio():
    assert data.resize_shorter_side(tf.zeros((300, 600, 3)), 256).shape == (256, 512, 3)
    # size x the longer side past 2**31 wrapped around in int32 (to 25,600 here).
    from data.preprocess import _shorter_side_shape

    assert _shorter_side_shape(tf.constant([10, 2**24 + 100]), 256).numpy().tolist() == [
        256, (2**24 + 100) * 256 // 10]
    assert data.resize_shorter_side(tf.zeros((500, 375, 3)), 256).shape == (341, 256, 3)
    assert data.resize_shorter_side(tf.zeros((2, 100, 80, 3)), 64).shape == (2, 80, 64, 3)
    # torchvision's Resize truncates the longer side: int(256 * 499 / 375) = int(340.65)
    assert data.resize_shorter_side(tf.zeros((375, 499, 3)), 256).shape == (256, 340, 3)
    assert data.resize_shorter_side(tf.zeros((256, 256, 3)), 256).shape == (256, 256, 3)


@pytest.mark.parametrize("shape, size", [((375, 500), (341, 256)), ((8, 8), (76, 76)),
                                         ((97, 61), (64, 101))])
def test_resize_shorter_side_gives_pils_bilinear_pixels(shape, size):
    """torchvision resizes a PIL image with PIL's bilinear filter, which widens as it shrinks
    (antialiasing). Held against PIL to within its rounding to whole levels, on noise (where
    aliasing shows most: 119 levels apart without antialiasing), shrunk and enlarged.
    (``size`` is PIL's (width, height).)"""
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR), "float32")
    ours = data.resize_shorter_side(tf.cast(image, tf.float32), min(size)).numpy()
    assert ours.shape == pil.shape
    np.testing.assert_allclose(ours, pil, atol=1.0)


def test_center_crop_takes_the_middle():
    image = np.arange(6 * 8 * 1, dtype="float32").reshape(6, 8, 1)
    np.testing.assert_array_equal(data.center_crop(image, 4).numpy(), image[1:5, 2:6])
    # torchvision's CenterCrop: offsets int(round((side - size) / 2)), half to even
    np.testing.assert_array_equal(data.center_crop(image, 3).numpy(), image[2:5, 2:5])
    np.testing.assert_array_equal(data.center_crop(image, 5).numpy(), image[0:5, 2:7])
    # The centre crop is five_crop's centre (which held torchvision's offsets already).
    np.testing.assert_array_equal(data.center_crop(image, 3).numpy(),
                                  data.five_crop(image, 3)[4].numpy())
    with pytest.raises(ValueError, match=r"A central 10x10 crop needs images of at least that "
                                         r"size; received images of shape \(6, 8, 1\)"):
        data.center_crop(image, 10)


def test_crops_take_numpy_sizes_and_a_too_large_crop_is_one_line():
    """np.int64 sizes passed the checks and failed in TensorFlow (int32 beside int64); a
    crop larger than the image was TensorFlow's assert with no shape, and scale < size
    said "image smaller than" of any image."""
    image = np.zeros((20, 30, 3), "float32")
    assert data.center_crop(image, np.int64(12)).shape == (12, 12, 3)
    assert data.alexnet_preprocess(image, np.int64(16)).shape == (16, 16, 3)
    loaded = data.load("digits", "test", image_size=np.int64(20), center_crop=np.int64(16))
    assert loaded.element_spec[0].shape[1:] == (16, 16, 3)
    with pytest.raises(ValueError, match=r"A central 21x21 crop needs images of at least "
                                         r"that size; received images of shape \(20, 30, 3\)"):
        data.center_crop(image, 21)
    with pytest.raises(ValueError, match=r"shorter side of `scale`, which must be at least "
                                         r"32; received scale=20"):
        data.preprocess.resize_and_center_crop(np.zeros((37, 37, 3)), 20, 32)


def test_a_test_crop_is_torchvisions_one_centre_crop(tmp_path):
    """Resize(256) then CenterCrop(227) of a 256x341 image (the resize is then the identity)
    is image[14:241, 57:284]: torchvision's offsets round(29 / 2) = 14 and round(114 / 2) =
    57. Cropping to the 256 square first, then to 227, put it at 56. The same crop comes
    from data.load(scale=, center_crop=) on a folder and from zoo predict's loading."""
    from PIL import Image

    from zoo.prediction import _view

    image = np.random.default_rng(0).integers(0, 256, (256, 341, 3), dtype=np.uint8)
    expected = image[14:241, 57:284].astype("float32")
    np.testing.assert_array_equal(data.resize_and_center_crop(image, 256, 227).numpy(),
                                  expected)
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(image).save(tmp_path / split / "a" / "x.png")
    loaded = data.load(str(tmp_path), "test", scale=256, center_crop=227, batch_size=None)
    np.testing.assert_array_equal(next(iter(loaded))[0].numpy(), expected)
    encoded = (tmp_path / "test" / "a" / "x.png").read_bytes()
    np.testing.assert_array_equal(_view(encoded, 227), expected)  # crop_scale(227) = 256


@pytest.mark.parametrize("shape, scale, size", [((375, 500, 3), 256, 224),
                                                ((2, 61, 97, 3), 64, 56),  # a batch
                                                ((9, 300, 3), 40, 32),  # elongated
                                                ((20, 30, 3), 77, 67)])  # enlarged
def test_the_test_crop_is_tensorflows_resize_then_the_crop(shape, scale, size):
    """resize_and_center_crop computes only the crop (the resize op's scale, the crop's
    offset as its translation): tf.image.resize to the shorter side, then the central
    window, within 0.01 of a grey level (the filter weights' float32 rounding); eagerly
    and inside tf.data."""
    image = np.random.default_rng(2).uniform(0, 255, shape).astype("float32")
    resized = tf.image.resize(image, data.preprocess._shorter_side_shape(
        tf.shape(image)[-3:-1], scale), method="bilinear", antialias=True)
    expected = data.center_crop(resized, size).numpy()
    np.testing.assert_allclose(data.resize_and_center_crop(image, scale, size).numpy(),
                               expected, atol=1e-2)
    mapped = tf.data.Dataset.from_tensors(image).map(
        lambda x: data.resize_and_center_crop(x, scale, size))
    np.testing.assert_allclose(next(iter(mapped)).numpy(), expected, atol=1e-2)


def test_an_image_of_unknown_rank_is_resized_and_other_ranks_are_one_line():
    """Traced without a known rank (a tf.function of TensorSpec(None)), the test view's
    fallback failed in tf.image.resize ("'images' contains no shape"): it is one image, as
    data.load maps them; a rank-2 or rank-5 input was TensorFlow's words, not its shape."""
    from safeio.checks import UserError

    image = tf.random.stateless_uniform((30, 41, 3), seed=(0, 1), maxval=255.0)
    views = {"crop": lambda x: data.resize_and_center_crop(x, 20, 16),
             "squash": lambda x: data.eval_view(x, 16, "squash"),
             "shorter side": lambda x: data.resize_shorter_side(x, 20)}
    for name, view in views.items():
        traced = tf.function(view, input_signature=[tf.TensorSpec(None)], autograph=False)
        np.testing.assert_array_equal(traced(image).numpy(), view(image).numpy(), name)
    for shape in ((4, 5), (1, 2, 3, 4, 3)):
        with pytest.raises(UserError, match=rf"takes an image .* received shape "
                                            rf"{re.escape(str(shape))}"):
            data.resize_and_center_crop(tf.zeros(shape), 3, 2)
    # A channels-first image (a torchvision tensor's layout) was resized as if its 3 channels
    # were rows: a (16, 16, 41) "image" came back without a word.
    for view in views.values():
        with pytest.raises(UserError, match=r"takes images channels-last, \(height, width, "
                                            r"channels\); received shape \(3, 30, 41\), "
                                            r"channels-first: transpose it"):
            view(tf.transpose(image, (2, 0, 1)))
    with pytest.raises(UserError, match=r"received shape \(2, 1, 30, 41\), channels-first"):
        data.ten_crop(tf.zeros((2, 1, 30, 41)), 16)
    assert data.eval_view(tf.zeros((3, 4, 3)), 2, "squash").shape == (2, 2, 3)  # (a tiny one)
    for size in (0, -1, 16.5):  # (TensorFlow's errors in the squash view; crop's checked)
        with pytest.raises(UserError, match=rf"`size` \(of the view\) must be a positive "
                                            rf"integer; received {size}"):
            data.eval_view(image, size, "squash")
    with pytest.raises(UserError, match=r"scale=300 is the shorter side the centre crop is "
                                        r"taken from; the squash view .* leave it out"):
        data.eval_view(image, 16, "squash", scale=300)  # (ignored without a word)


def test_a_very_elongated_image_is_cropped_without_its_whole_resize():
    """A 2x4000 image resized to a shorter side of 256 is 256x512000 floats (1.5 GB) before
    the crop: a server's serve_bytes ran out of memory on one such GIF. The crop alone."""
    image = tf.fill((2, 4000, 3), 90.0)
    crop = data.resize_and_center_crop(image, 256, 224)
    assert crop.shape == (224, 224, 3)
    np.testing.assert_allclose(crop.numpy(), 90.0, rtol=1e-5)
    assert data.alexnet_preprocess(image).shape == (256, 256, 3)
    with pytest.raises(ValueError, match="which must be at least 300; received scale=256"):
        data.resize_and_center_crop(image, 256, 300)


@pytest.mark.slow
def test_the_crop_of_a_very_elongated_image_takes_no_memory_of_its_whole_resize():
    """In a fresh process, the peak memory the 2x4000 image's crop adds: the whole resize
    would be 1,500 MiB (256 x 512,000 x 3 floats); the crop alone holds 0.6 MiB."""
    from tests.helpers import run_python

    code = ("import resource, tensorflow as tf, data\n"
            "data.resize_and_center_crop(tf.zeros((300, 400, 3)), 256, 224)  # kernels loaded\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "data.resize_and_center_crop(tf.fill((2, 4000, 3), 90.0), 256, 224)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    added_mib = int(run_python(code).stdout.split()[-1])
    assert added_mib < 300, added_mib


def test_a_folder_loaded_at_image_size_is_shrunk_as_pil_shrinks_it(tmp_path):
    """data.load(folder, image_size=16) of a 60x90 noise photo: PIL's bilinear resize to
    within one grey level (torchvision's Resize((16, 16))); without antialiasing it was
    tens of levels off."""
    from PIL import Image

    image = np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(image).save(tmp_path / split / "a" / "x.png")
    loaded = data.load(str(tmp_path), "test", image_size=16, batch_size=None)
    pil = np.asarray(Image.fromarray(image).resize((16, 16), Image.BILINEAR), "float32")
    np.testing.assert_allclose(next(iter(loaded))[0].numpy(), pil, atol=1.0)


def test_alexnet_preprocess_in_a_pipeline():
    ds = tf.data.Dataset.from_tensors(tf.ones((375, 500, 3), tf.uint8) * 7)
    out = next(iter(ds.map(data.alexnet_preprocess)))
    assert out.shape == (256, 256, 3) and out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), 7.0, rtol=1e-6)


def _pixels(seed=0):
    rng = np.random.default_rng(seed)
    mix = np.array([[1.0, 0.2, 0.0], [0.5, 1.0, 0.3], [0.1, 0.4, 1.0]])
    images = rng.normal(size=(37, 6, 5, 3)) @ mix * 30 + [120, 110, 90]
    return images.astype("float32")


def test_statistics_match_numpy_on_the_same_pixels():
    images = _pixels()
    # Batched (with labels) and streamed in uneven chunks: the result must not depend on it.
    ds = tf.data.Dataset.from_tensor_slices((images, np.zeros(37, "int32"))).batch(10)
    stats = data.compute_statistics(ds)
    pixels = images.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(stats.mean_image, images.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats.channel_mean, pixels.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats.channel_std, pixels.std(axis=0), rtol=1e-5)
    covariance = np.cov(pixels, rowvar=False, bias=True)
    np.testing.assert_allclose(stats.covariance, covariance, rtol=1e-6)
    values, vectors = np.linalg.eigh(covariance)
    np.testing.assert_allclose(stats.eigenvalues, values[::-1], rtol=1e-6)
    # Eigenvectors agree up to sign, and decompose the covariance.
    for i in range(3):
        assert abs(stats.eigenvectors[:, i] @ vectors[:, 2 - i]) == pytest.approx(1, abs=1e-6)
    rebuilt = stats.eigenvectors @ np.diag(stats.eigenvalues) @ stats.eigenvectors.T
    np.testing.assert_allclose(rebuilt, covariance, rtol=1e-6)
    assert stats.num_images == 37


def test_statistics_save_load_round_trip(tmp_path):
    stats = data.compute_statistics(tf.data.Dataset.from_tensor_slices(_pixels()))
    path = tmp_path / "stats.npz"
    stats.save(path)
    loaded = data.ImageStatistics.load(path)
    for field in ("mean_image", "channel_mean", "channel_std", "eigenvalues", "eigenvectors"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(stats, field))
    assert loaded.num_images == 37
    assert [p.name for p in tmp_path.iterdir()] == ["stats.npz"]  # no temporary left behind
    assert loaded.center_mean(4).shape == (4, 4, 3)
    # 6x5 -> 2x2: offsets round(2) and round(1.5) = 2, half to even, as torchvision's
    np.testing.assert_array_equal(loaded.center_mean(2), stats.mean_image[2:4, 2:4])
    with pytest.raises(ValueError, match=r"center_mean\(6\): these statistics are of 6x5 "
                                         r"images; a crop of them is 1 to 5 pixels"):
        loaded.center_mean(6)


def test_statistics_errors():
    with pytest.raises(ValueError, match="empty dataset"):
        data.compute_statistics(tf.data.Dataset.from_tensor_slices(np.zeros((0, 4, 4, 3))))
    mixed = [np.zeros((4, 4, 3)), np.zeros((5, 5, 3))]
    with pytest.raises(ValueError, match=r"share one size.*\(5, 5, 3\) after \(4, 4, 3\)"):
        data.compute_statistics(mixed)


def test_mean_subtraction_layer_lives_inside_an_exported_model(tmp_path):
    stats = data.compute_statistics(tf.data.Dataset.from_tensor_slices(_pixels()))
    inputs = keras.Input((6, 5, 3))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(MeanSubtraction(stats.mean_image)(inputs)))
    model = keras.Model(inputs, outputs)
    x = _pixels(1)[:4]
    centred = keras.Model(inputs, model.layers[1].output).predict(x, verbose=0)
    np.testing.assert_allclose(centred, x - stats.mean_image, rtol=1e-5, atol=1e-4)
    path = tmp_path / "m.keras"
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-6)
    clone = keras.models.clone_model(model)  # from config alone: the mean must survive
    np.testing.assert_array_equal(clone.layers[1].mean, stats.mean_image)
    with pytest.raises(ValueError, match=r"mean has shape \(3,\).*input has shape"):
        MeanSubtraction([1.0, 2.0, 3.0])(keras.Input((4, 4, 1)))


def test_statistics_of_images_without_channels_last_are_one_line():
    """A batch of grey 28x28 digits without a channel axis was one image of 28 channels
    (or, batched in twos, three images of 28x28x28: num_images 3, no error), and
    channels-first images gave 'channels' of their width: the mistake surfaced later, as
    normalized_input's '8 channels'. TFDS' dicts were float()'s TypeError."""
    grey = np.random.default_rng(0).integers(0, 256, (6, 28, 28)).astype("uint8")
    for given, hint in ((grey, r"grey images without a channel axis\? add one: "
                               r"images\[\.\.\., None\]"),
                        ([grey[:2], grey[2:4]], r"grey images without a channel axis"),
                        ([np.zeros((6, 3, 8, 8))], r"channels first\? "
                                                    r"np\.moveaxis\(images, 1, -1\)")):
        with pytest.raises(ValueError, match=r"^compute_statistics takes images \(height, "
                                             r"width, channels\) or batches of them .*channels "
                                             r"last \(1 to 4, or fewer than a side's "
                                             rf"pixels\); received shape .*{hint}.*\)\.$"):
            data.compute_statistics(given)
    pairs = tf.data.Dataset.from_tensor_slices({"image": grey[..., None], "label": [0] * 6})
    with pytest.raises(ValueError, match=r"received a dict of \['image', 'label'\] "
                                         r"\(tfds\.load\(\.\.\., as_supervised=True\)"):
        data.compute_statistics(pairs.batch(2))
    assert data.compute_statistics([grey[..., None]]).num_images == 6
    bands = np.random.default_rng(1).uniform(0, 255, (2, 16, 16, 6))  # multispectral: taken
    assert data.compute_statistics([bands]).channel_mean.shape == (6,)
