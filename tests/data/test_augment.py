"""Every augmentation runs eagerly and inside tf.data.map, with the same result per seed."""

import functools

import numpy as np
import pytest
import tensorflow as tf

import data
from data import augment

# ImageNet's published eigen-pairs of [0, 1]-scaled RGB (fb.resnet.torch), columns p_i.
EIGENVALUES = np.array([0.2175, 0.0188, 0.0045])
EIGENVECTORS = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140],
                         [-0.5836, -0.6948, 0.4203]])

OPS = {
    "random_crop": functools.partial(augment.random_crop, size=20),
    "random_flip": augment.random_flip,
    "pca_color": functools.partial(augment.pca_color, eigenvalues=EIGENVALUES,
                                   eigenvectors=EIGENVECTORS),
    "color_jitter": augment.color_jitter,
    "random_erasing": functools.partial(augment.random_erasing, probability=1.0),
    "compose": augment.compose(functools.partial(augment.random_crop, size=20),
                               augment.random_flip, augment.color_jitter),
}


def _images(n=4):
    return np.random.default_rng(1).uniform(0, 255, size=(n, 24, 24, 3)).astype("float32")


@pytest.mark.parametrize("name", list(OPS))
def test_eager_and_tf_data_agree_and_labels_are_untouched(name):
    op = OPS[name]
    images = _images()
    seeds = np.array([[i, 7] for i in range(4)], "int64")
    eager = [op(tf.constant(img), tf.constant(seed)).numpy() for img, seed in zip(images, seeds)]
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(4, dtype="int32"), seeds))
    mapped = list(ds.map(lambda x, y, s: (op(x, s), y)))
    for (graph_image, label), eager_image, i in zip(mapped, eager, range(4)):
        np.testing.assert_allclose(graph_image.numpy(), eager_image, rtol=1e-5, atol=1e-4)
        assert int(label) == i
    again = op(tf.constant(images[0]), tf.constant(seeds[0])).numpy()
    np.testing.assert_array_equal(again, eager[0])  # stateless: same seed, same result
    if name != "random_flip":  # a flip has two outcomes; the others vary with the seed
        other = op(tf.constant(images[0]), tf.constant([99, 99])).numpy()
        assert not np.array_equal(other, eager[0])


def test_random_crop_is_a_window_of_the_image():
    image = _images(1)[0]
    crop = augment.random_crop(tf.constant(image), tf.constant([3, 4]), size=20).numpy()
    windows = [image[y : y + 20, x : x + 20] for y in range(5) for x in range(5)]
    assert any(np.array_equal(crop, w) for w in windows)


def test_random_flip_flips_about_half_the_time():
    image = _images(1)[0]
    flipped = sum(
        np.array_equal(augment.random_flip(tf.constant(image), tf.constant([i, 0])).numpy(),
                       image[:, ::-1])
        for i in range(200)
    )
    assert 70 < flipped < 130


def fb_resnet_torch_lighting(image01, alpha, eigval, eigvec):
    """fb.resnet.torch's Lighting on a [0, 1] image: ``rgb = eigvec * (alpha * eigval)``
    summed over the eigen-pairs, added to every pixel."""
    rgb = (eigvec * (alpha * eigval)[None, :]).sum(axis=1)
    return image01 + rgb


def test_pca_color_is_fb_resnet_torch_lighting_at_the_255_scale():
    image = _images(1)[0]
    seed = tf.constant([5, 6])
    out = augment.pca_color(tf.constant(image), seed).numpy()  # ImageNet's pairs by default
    alpha = tf.random.stateless_normal([3], seed, stddev=0.1).numpy()
    reference = fb_resnet_torch_lighting(image / 255.0, alpha, EIGENVALUES, EIGENVECTORS)
    np.testing.assert_allclose(out / 255.0, reference, atol=1e-5)
    delta = (out - image).reshape(-1, 3)
    np.testing.assert_allclose(delta, np.broadcast_to(delta[0], delta.shape), atol=1e-3)


def _shift_std(eigenvalues, eigenvectors, draws=400):
    """The standard deviation, in grey levels, of the colour shift over many images."""
    shifts = [augment.pca_color(tf.zeros((1, 1, 3)), tf.constant([i, 1]), eigenvalues,
                                eigenvectors).numpy()[0, 0] for i in range(draws)]
    return np.std(shifts, axis=0)


def test_pca_color_moves_pixels_by_a_few_grey_levels():
    """With ImageNet's pairs the shift along p_1 has std 255 * 0.1 * 0.2175 = 5.5 grey
    levels, about 3 per channel; it once was ~200 times more."""
    std = _shift_std(EIGENVALUES, EIGENVECTORS)
    assert np.all((1.0 < std) & (std < 6.0)), std
    # Statistics computed from [0, 255] images give shifts of the same size.
    digits = data.load("digits", "train", batch_size=None, shuffle=False)
    stats = data.compute_statistics(digits)
    std = _shift_std(**stats.pca_eigenpairs())
    assert np.all(std < 10.0), std
    # The digits are grey: one direction (1, 1, 1)/sqrt(3) carries all their variance.
    values, vectors = stats.pca_eigenpairs().values()
    assert values[0] == pytest.approx(np.var(np.concatenate(
        [x.numpy().ravel() for x, _ in digits.take(300)])) / 255**2 * 3, rel=0.15)
    np.testing.assert_allclose(np.abs(vectors[:, 0]), 1 / np.sqrt(3), atol=1e-3)


def test_color_jitter_keeps_range_and_grey_stays_grey():
    grey = np.repeat(_images(1)[0][..., :1], 3, axis=-1)
    out = augment.color_jitter(tf.constant(grey), tf.constant([1, 2]), brightness=0.5).numpy()
    assert out.min() >= 0 and out.max() <= 255
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-3)
    assert not np.allclose(out, grey)


def test_random_erasing_fills_one_rectangle():
    image = _images(1)[0] + 1.0  # no zeros before erasing
    out = augment.random_erasing(tf.constant(image), tf.constant([8, 9]), probability=1.0,
                                 value=0.0).numpy()
    erased = np.all(out == 0, axis=-1)
    rows, cols = np.where(erased)
    assert erased.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert 0.02 * 576 * 0.5 <= erased.sum() <= 0.33 * 576 * 1.5
    np.testing.assert_array_equal(out[~erased], image[~erased])
    never = augment.random_erasing(tf.constant(image), tf.constant([8, 9]), probability=0.0)
    np.testing.assert_array_equal(never.numpy(), image)


def test_load_with_augmentation_changes_images_not_labels():
    plain = data.load("digits", "test", batch_size=None)
    aug = data.load("digits", "test", batch_size=None, augment=augment.compose(
        functools.partial(augment.random_erasing, probability=1.0, value=0.0)))
    pairs = list(zip(plain.take(20), aug.take(20)))
    assert all(int(a[1]) == int(b[1]) for a, b in pairs)
    assert sum(not np.array_equal(a[0].numpy(), b[0].numpy()) for a, b in pairs) >= 15


def test_alexnet_augment_pipeline():
    stats = data.compute_statistics(tf.data.Dataset.from_tensor_slices(_images(8)))
    aug = augment.alexnet_augment(stats, size=20)
    out = aug(tf.constant(_images(1)[0]), tf.constant([1, 1]))
    assert out.shape == (20, 20, 3)


def test_color_jitter_factors_never_go_below_zero():
    """As torchvision's ColorJitter draws them, in [max(0, 1 - x), 1 + x]: a brightness
    of 2 never turns the image black (a factor below 0 clipped it to 0 a quarter of the
    time)."""
    image = tf.fill((2, 2, 3), 100.0)
    outs = np.array([augment.color_jitter(image, tf.constant([i, 0]), brightness=2.0,
                                          contrast=0.0, saturation=0.0).numpy()[0, 0, 0]
                     for i in range(200)])
    assert outs.min() > 0 and outs.max() <= 255
    assert abs(np.mean(outs / 100.0 < 1.0) - 1 / 3) < 0.1  # factors uniform in [0, 3]


def test_integer_images_augment_as_their_float32_values():
    image = _images(1)[0].round().astype("uint8")
    seed = tf.constant([3, 4])
    stats = data.compute_statistics(tf.data.Dataset.from_tensor_slices(_images(8)))
    for op in (augment.pca_color, augment.color_jitter,
               functools.partial(augment.random_erasing, probability=1.0),
               augment.alexnet_augment(stats, size=20)):
        out = op(tf.constant(image), seed)
        assert out.dtype == tf.float32
        np.testing.assert_allclose(out.numpy(), op(tf.constant(image, tf.float32), seed).numpy())


@pytest.mark.parametrize("call, message", [
    (lambda x, s: augment.random_crop(x, s, size=0), r"`size` \(of the crop\) must be a positive"),
    (lambda x, s: augment.color_jitter(x, s, brightness=-0.1), r"`brightness` must be a finite "
                                                               r"number >= 0"),
    # (NaN and inf gave NaN images; a max_value of 0 black ones; "mean" TensorFlow's error)
    (lambda x, s: augment.color_jitter(x, s, contrast=float("inf")), r"received inf"),
    (lambda x, s: augment.color_jitter(x, s, max_value=0), r"`max_value` must be the largest "
                                                           r"pixel value, a finite number > 0"),
    (lambda x, s: augment.pca_color(x, s, std=float("nan")), r"`std` must be a finite number "
                                                             r">= 0 .*received nan"),
    (lambda x, s: augment.pca_color(x, s, max_value=-5), r"`max_value` .* received -5"),
    (lambda x, s: augment.random_erasing(x, s, value=float("nan")), r"random_erasing's "
                                                                    r"`value` must be a finite "
                                                                    r"number, or one per channel "
                                                                    r"\(3 here\); received nan"),
    (lambda x, s: augment.random_erasing(x, s, value="mean"), r"received 'mean'"),
    (lambda x, s: augment.random_erasing(x, s, value=[1, 2, 3, 4]), r"received \[1, 2, 3, 4\]"),
    (lambda x, s: augment.random_erasing(x, s, probability=2), r"`probability` must be a "
                                                               r"probability in \[0, 1\]; received 2"),
    (lambda x, s: augment.random_erasing(x, s, scale=(0.5, 0.1)), r"`scale` must be a pair .*"
                                                                  r"received \(0.5, 0.1\)"),
    (lambda x, s: augment.random_erasing(x, s, ratio=(0, 1)), r"`ratio` must be a pair"),
    (lambda x, s: augment.from_spec("crop", size=0), r"`size` \(of the crop\)"),
])
def test_augmentation_arguments_are_checked(call, message):
    with pytest.raises(ValueError, match=message):
        call(tf.zeros((8, 8, 3)), tf.constant([1, 2]))


def test_center_mean_takes_an_integer_size():
    stats = data.compute_statistics(tf.data.Dataset.from_tensor_slices(_images(4)))
    assert stats.center_mean(np.int64(20)).shape == (20, 20, 3)
    with pytest.raises(ValueError, match=r"center_mean\(4.0\): these statistics are of"):
        stats.center_mean(4.0)


def test_augment_specs_parse_presets_and_name_bad_tokens():
    assert augment.parse("none") == ()
    assert augment.parse("paper") == ("crop", "flip", "pca")
    assert augment.parse("crop+flip+erasing") == ("crop", "flip", "erasing")
    assert augment.parse("paper+flip") == ("crop", "flip", "pca")
    with pytest.raises(ValueError, match=r"Unknown augmentation 'flop' in 'crop\+flop'"):
        augment.parse("crop+flop")
    with pytest.raises(ValueError, match="needs the training set's statistics"):
        augment.from_spec("paper", 20)
    assert augment.from_spec("none", 20) is None
    out = augment.from_spec("crop+jitter", 20)(tf.constant(_images(1)[0]), tf.constant([1, 1]))
    assert out.shape == (20, 20, 3)


@pytest.mark.parametrize("normalize", ["standardize", "channel_mean", "mean_image", "none"])
def test_normalized_input_modes(normalize):
    import keras

    images = _images(6)
    stats = data.compute_statistics(tf.data.Dataset.from_tensor_slices(images))
    inputs = data.normalized_input(stats, (24, 24, 3), normalize=normalize)
    model = keras.Model(inputs._keras_history.operation.input if normalize != "none"
                        else inputs, inputs)
    out = np.asarray(model(images))
    expected = {"standardize": (images - images.mean((0, 1, 2))) / images.std((0, 1, 2)),
                "channel_mean": images - images.mean((0, 1, 2)),
                "mean_image": images - images.mean(0), "none": images}[normalize]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)


def test_normalize_errors():
    stats = data.compute_statistics(tf.data.Dataset.from_tensor_slices(_images(2)))
    with pytest.raises(ValueError, match=r"`normalize` must be one of.*'zscore'"):
        data.normalized_input(stats, (24, 24, 3), normalize="zscore")
    with pytest.raises(ValueError, match=r"needs statistics of \(20, 20, 3\) images"):
        data.normalized_input(stats, (20, 20, 3), normalize="mean_image")
    # A shape without channels, or of other channels than the statistics', was TensorFlow's
    # "Incompatible shapes: [1,1,3] vs. [1,1,16]" (standardize) or Keras' "Cannot convert".
    for shape in ((24, 24), (24, 24, 1), 24, (24, 24, 3, 1), (-1, 24, 3)):
        with pytest.raises(ValueError, match=r"normalized_input takes shape=\(height, width, "
                                             r"channels\) .*\(3 channels; .*received "):
            data.normalized_input(stats, shape)
    assert data.normalized_input(stats, [None, None, 3]).shape == (None, None, None, 3)
    for shape in (tf.TensorShape([24, 24, 3]), np.array([24, 24, 3])):  # (images.shape[1:])
        assert data.normalized_input(stats, shape).shape == (None, 24, 24, 3)


def test_color_jitter_clips_after_each_step_in_a_random_order_as_torchvision():
    """torchvision clamps after adjust_brightness, adjust_contrast and adjust_saturation
    and applies them in a random order: brightness 1.2 then contrast 0.8 on the grey
    pixels 250 and 10 gives 230.7 and 36.3 (255 clamped, then blended with the mean 133.5);
    clipping once at the end gave 255 and 40.8. float64 arrays (NumPy's default) are read
    as float32 (they failed on the float32 constants)."""
    pixels = tf.constant([[[250.0] * 3, [10.0] * 3]])
    out = augment._jitter(pixels, (1.2, 0.8, 1.0), (0, 1, 2)).numpy()[0, :, 0]
    np.testing.assert_allclose(out, [230.7, 36.3], atol=0.05)
    contrast_first = augment._jitter(pixels, (1.2, 0.8, 1.0), (1, 0, 2)).numpy()[0, :, 0]
    np.testing.assert_allclose(contrast_first, [255.0, 40.8], atol=0.05)
    orders = []
    jitter = augment._jitter
    try:
        augment._jitter = lambda image, factors, order, max_value: (
            orders.append(order) or jitter(image, factors, order, max_value))
        for i in range(60):
            augment.color_jitter(np.zeros((4, 4, 3)), tf.constant([i, 7]))
    finally:
        augment._jitter = jitter
    assert set(orders) == set(augment._JITTER_ORDERS)
    for op in (augment.color_jitter, augment.pca_color):
        assert op(np.zeros((4, 4, 3)), tf.constant([1, 2])).dtype == tf.float32


def test_a_crop_larger_than_the_images_is_one_line():
    with pytest.raises(ValueError, match=r"A random 10x10 crop needs images of at least that "
                                         r"size; received images of shape \(8, 12, 3\)"):
        augment.random_crop(tf.zeros((8, 12, 3)), tf.constant([1, 2]), 10)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
    def unknown_rank(image):  # (after a tf.py_function, say): the check leaves it to TF
        return augment.random_crop(image, tf.constant([1, 2]), 4)

    assert unknown_rank(tf.zeros((8, 12, 3))).shape == (4, 4, 3)


def test_numpy_images_and_sizes_are_taken_and_batches_or_other_channels_refused():
    """random_crop read a NumPy image's .shape.rank (an AttributeError), a NumPy int64 size
    failed inside TensorFlow; an op mapped after .batch() failed in TensorFlow's words or
    drew one change for the whole batch; pca_color turned a grey image into colour."""
    image = np.random.default_rng(0).uniform(0, 255, (37, 37, 3)).astype("float32")
    seed = tf.constant([1, 2])
    for op in (functools.partial(augment.random_crop, size=np.int64(32)),
               augment.from_spec("crop+flip", 32), augment.pca_color, augment.color_jitter,
               augment.random_erasing):
        np.testing.assert_array_equal(op(image, seed).numpy(), op(tf.constant(image), seed))
    for op in (functools.partial(augment.random_crop, size=4), augment.pca_color,
               augment.color_jitter, augment.random_erasing):
        with pytest.raises(ValueError, match=r"augments single images \(height, width, "
                                             r"channels\); received shape \(2, 8, 8, 3\): "
                                             "augment before batching"):
            op(tf.zeros((2, 8, 8, 3)), seed)
    with pytest.raises(ValueError, match=r"pca_color takes images of 3 channel\(s\); "
                                         r"received shape \(8, 8, 1\)"):
        augment.pca_color(tf.zeros((8, 8, 1)), seed)
    with pytest.raises(ValueError, match=r"color_jitter takes images of 1 or 3 channel\(s\)"):
        augment.color_jitter(tf.zeros((8, 8, 4)), seed)
    assert augment.color_jitter(tf.zeros((8, 8, 1)), seed).shape == (8, 8, 1)  # grey stays


def test_mean_subtraction_of_integer_images_and_under_mixed_precision():
    """The uint8 mean 120 minus 120 wrapped to 136 (the mean cast to uint8); under
    mixed_bfloat16 the normalisation layers subtracted in bfloat16 (a mean of 123.68 is
    123.5 there), where PixelNormalization already kept float32."""
    import keras

    from data.layers import MeanSubtraction

    out = MeanSubtraction([120.0, 115.0, 100.0])(np.zeros((1, 2, 2, 3), "uint8"))
    np.testing.assert_array_equal(np.asarray(out)[0, 0, 0], [-120.0, -115.0, -100.0])
    stats = data.compute_statistics(tf.data.Dataset.from_tensor_slices(
        np.full((2, 4, 4, 3), 123.68, "float32")))
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        for normalize in ("channel_mean", "mean_image", "standardize"):
            inputs = data.normalized_input(stats, (4, 4, 3), normalize=normalize)
            model = keras.Model(inputs._keras_history.operation.input, inputs)
            out = np.asarray(model(np.full((1, 4, 4, 3), 124.0, "float32")))
            assert out.dtype == np.float32, normalize
            if normalize != "standardize":  # (a std of 0 there)
                np.testing.assert_allclose(out, 0.32, atol=1e-4)
    finally:
        keras.config.set_dtype_policy("float32")


def test_pipeline_reads_its_augmentation_before_the_dataset(monkeypatch):
    """A mistake in the spec was found after the dataset was read (or downloaded)."""
    import sys

    monkeypatch.setattr(sys.modules["data.pipeline"], "dataset_info",
                        lambda *args, **kwargs: pytest.fail("data read"))
    with pytest.raises(ValueError, match=r"Unknown augmentation 'crop,flip' in 'crop,flip'"):
        data.pipeline("cifar100", 32, augment="crop,flip")


@pytest.mark.parametrize("seed", [3, (1.5, 2.0), "ab", (1, 2, 3), None])
@pytest.mark.parametrize("op", ["random_crop", "random_flip", "pca_color", "color_jitter",
                                "random_erasing", "compose"])
def test_a_seed_that_is_not_a_pair_of_integers_is_one_line(op, seed):
    """A scalar seed was TensorFlow's 'seed must have shape [2], not []' from inside the
    stateless op (a float pair, "must be int"); each op says what it takes now."""
    image = tf.zeros((8, 8, 3))
    calls = {"random_crop": lambda s: augment.random_crop(image, s, 4),
             "random_flip": lambda s: augment.random_flip(image, s),
             "pca_color": lambda s: augment.pca_color(image, s),
             "color_jitter": lambda s: augment.color_jitter(image, s),
             "random_erasing": lambda s: augment.random_erasing(image, s),
             "compose": lambda s: augment.compose(augment.random_flip)(image, s)}
    with pytest.raises(ValueError, match=rf"^{op}'s `seed` must be a pair of integers \(shape "
                                         r"\[2\], as tf.random.split gives\); received "):
        calls[op](seed)
    for pair in ((1, 2), np.array([1, 2], "int32"), tf.constant([1, 2], tf.int64)):
        assert calls[op](pair).shape == ((4, 4, 3) if op == "random_crop" else (8, 8, 3))


def test_augmentations_without_their_statistics_say_what_they_need():
    """normalized_input(None, ...) and alexnet_augment(None) were AttributeErrors of
    'NoneType'; eigen-pairs of two sizes TensorFlow's 'Matrix size-incompatible'; and
    augment=None 'Unknown augmentation 'None' in None' where data.load takes it for none."""
    for normalize in ("standardize", "channel_mean", "mean_image"):
        with pytest.raises(ValueError, match=rf"^normalize='{normalize}' needs the training "
                                             r"set's statistics .*received statistics=None"):
            data.normalized_input(None, (8, 8, 3), normalize=normalize)
    assert data.normalized_input(None, (8, 8, 3), normalize="none").shape == (None, 8, 8, 3)
    with pytest.raises(ValueError, match=r"^alexnet_augment needs the training set's "
                                         r"statistics .*received NoneType\.$"):
        augment.alexnet_augment(None, size=6)
    with pytest.raises(ValueError, match=r"^pca_color takes eigenvalues \(channels,\) and "
                                         r"eigenvectors \(channels, channels\) as columns; "
                                         r"received shapes \(3,\) and \(2, 2\)\.$"):
        augment.pca_color(tf.zeros((4, 4, 3)), tf.constant([1, 2]), eigenvalues=(1, 2, 3),
                          eigenvectors=np.eye(2))
    assert augment.parse(None) == () and augment.from_spec(None, 8) is None
