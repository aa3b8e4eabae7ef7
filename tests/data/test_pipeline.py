"""data.pipeline: the one data pipeline of `zoo train` and `zoo demo`."""

import os
import re
import shutil

import numpy as np
import pytest

import data

pytestmark = pytest.mark.all_backends


@pytest.fixture(scope="module")
def cropping():
    return data.pipeline("digits", 16, augment="crop", batch_size=8, seed=3)


def test_with_random_crops_images_load_larger_and_evaluate_on_the_centre_crop(cropping):
    assert (cropping.size, cropping.scale) == (16, data.crop_scale(16))
    assert cropping.held_out == ["validation", "test"]
    # Evaluation: the same images as data.load's centre crop of the larger scale.
    ours = next(iter(cropping.load("test")))[0].numpy()
    theirs = next(iter(data.load("digits", "test", batch_size=8, scale=cropping.scale,
                                 center_crop=16)))[0].numpy()
    np.testing.assert_array_equal(ours, theirs)
    # Training: random 16x16 windows of the training images at the larger scale, not all
    # of them the centre one.
    images, _ = next(iter(cropping.train()))
    assert tuple(images.shape) == (8, 16, 16, 3)
    larger = np.stack([x for x, _ in data.load("digits", "train", scale=cropping.scale,
                                                batch_size=None)])
    side = cropping.scale - 16 + 1
    offsets = []
    for crop in images.numpy():
        found = [(top, left) for top in range(side) for left in range(side)
                 if (np.abs(larger[:, top:top + 16, left:left + 16] - crop).max(axis=(1, 2, 3))
                     < 1e-3).any()]
        assert found, "a training crop that is no window of a training image"
        offsets += found
    centre = ((cropping.scale - 16) // 2,) * 2
    assert any(offset != centre for offset in offsets)


def test_statistics_are_the_training_splits_evaluation_view(cropping):
    """The statistics of the centre crops of the training split, held against NumPy's
    mean and standard deviation of their pixels."""
    pixels = np.concatenate([x.numpy() for x, _ in cropping.load("train", shuffle=False)]
                            ).astype("float64")
    np.testing.assert_allclose(cropping.statistics.channel_mean,
                               pixels.reshape(-1, 3).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(cropping.statistics.channel_std,
                               pixels.reshape(-1, 3).std(axis=0), rtol=1e-4)
    np.testing.assert_allclose(cropping.statistics.mean_image, pixels.mean(axis=0), rtol=1e-5,
                               atol=1e-4)


def test_without_crops_every_split_loads_at_the_input_size():
    plain = data.pipeline("digits", 12, augment="flip", batch_size=4,
                          train_split="train[:8]")
    assert plain.scale is None
    assert tuple(next(iter(plain.load("validation")))[0].shape) == (4, 12, 12, 3)
    train = plain.train()
    assert int(train.cardinality()) == 2  # the slice: 8 images in batches of 4
    assert hasattr(train, "_zoo_epoch")  # epochs follow (seed, epoch), see data.set_epoch


def test_the_training_split_is_shuffled_whatever_its_name(tmp_path):
    """load shuffles by default only splits named "train...": a train_split "all", or an
    image folder's "Train", trained on the files in order, one class a batch."""
    import tensorflow as tf

    for split in ("Train", "val"):
        for label in ("a", "b", "c", "d"):
            os.makedirs(tmp_path / split / label)
            for i in range(4):
                png = tf.io.encode_png(np.full((8, 8, 3), 60 * i, np.uint8)).numpy()
                (tmp_path / split / label / f"{i}.png").write_bytes(png)
    folder = data.pipeline(str(tmp_path), 8, batch_size=4, train_split="Train")
    batches = [labels.numpy().tolist() for _, labels in folder.train()]
    assert any(len(set(batch)) > 1 for batch in batches), batches
    everything = data.pipeline("digits", 8, batch_size=1797, train_split="all")
    in_order = next(iter(everything.load("all", shuffle=False)))[1].numpy()
    first = next(iter(everything.train()))[1].numpy()
    assert sorted(first) == sorted(in_order) and not np.array_equal(first, in_order)


def test_load_refuses_a_spec_where_a_function_goes_and_switches_that_are_not_bools():
    """augment="flip" failed inside tf.data ("'str' object is not callable"); shuffle="no"
    shuffled (a non-empty string is true)."""
    cases = [(dict(augment="flip"), r"`augment` must be a function \(data.augment.from_spec"
                                    r"\(spec, size, statistics\) makes one from a spec such as "
                                    r"'crop\+flip'\) or None; received 'flip'"),
             (dict(preprocess="alexnet"), r"`preprocess` must be a function .*'alexnet'"),
             (dict(shuffle="no"), r"`shuffle` \(None: the train splits only\) must be None, "
                                  r"True or False; received 'no'"),
             (dict(drop_remainder="no"), r"`drop_remainder` must be True or False")]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            data.load("digits", "train", **kwargs)


def test_the_input_standardises_raw_pixels_with_the_training_statistics(cropping):
    import keras

    normalized = cropping.input()
    model = keras.Model(keras.utils.get_source_inputs(normalized)[0], normalized)
    train = cropping.load("train", shuffle=False)
    images = np.concatenate([x for x, _ in train.as_numpy_iterator()])
    out = keras.ops.convert_to_numpy(model.predict(images, verbose=0))
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-3)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1.0, atol=1e-3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(size=0), "`size` must be a positive integer; received 0."),
    (dict(size=8, augment="crop+spin"), "Unknown augmentation 'spin'"),
    (dict(size=8, batch_size=0), "`batch_size` must be a positive integer; received 0."),
])
def test_bad_arguments_name_what_was_received(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        data.pipeline("digits", **kwargs)


def test_statistics_at_hand_are_used_as_they_are_and_must_fit_the_size(cropping):
    """A resumed run's statistics (as it trained with) replace the computed ones, which
    would differ if the training images had changed; statistics of another size are
    refused in one line."""
    import dataclasses

    mine = dataclasses.replace(cropping.statistics,
                               channel_mean=cropping.statistics.channel_mean + 1.0)
    given = data.pipeline("digits", 16, augment="crop", batch_size=8, seed=3, statistics=mine)
    assert given.statistics is mine
    with pytest.raises(ValueError, match=re.escape(
            "The statistics given are of 16x16 images; this pipeline's are of 12x12.")):
        data.pipeline("digits", 12, statistics=cropping.statistics)


@pytest.mark.parametrize("splits, held_out", [
    (("train", "val"), ["val"]), (("train", "valid", "test"), ["valid", "test"]),
    (("train", "validation", "val"), ["validation"]), (("train", "dev"), [])])
def test_a_folders_val_split_is_held_out(tmp_path, splits, held_out):
    """ImageNet's and Kaggle's folders hold train/ and val/: val/ was not held out, and
    zoo train chose best.keras by the training loss without a word."""
    import tensorflow as tf

    for split in splits:
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            (tmp_path / split / name / "a.png").write_bytes(
                tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy())
    assert data.pipeline(str(tmp_path), 4, batch_size=2).held_out == held_out


def test_zoo_train_says_when_nothing_is_held_out(tmp_path, capsys):
    import tensorflow as tf

    from zoo import cli

    for split in ("train", "dev", "Test"):
        for value, name in enumerate(("cat", "dog")):
            (tmp_path / "pets" / split / name).mkdir(parents=True)
            (tmp_path / "pets" / split / name / "a.png").write_bytes(
                tf.io.encode_png(np.full((4, 4, 3), 200 * value, np.uint8)).numpy())
    assert cli.main(["train", "--model", "alexnet", "--model-arg", "width=8", "--dataset",
                     str(tmp_path / "pets"), "--epochs", "1", "--batch-size", "2",
                     "--run-dir", str(tmp_path / "run")]) == 0
    assert (f"No validation or test split in {tmp_path / 'pets'} (it has Test, dev, train): "
            "the learning rate and best.keras follow the training loss. An image folder's "
            "validation/ (or val/, valid/) and test/ are held out (names are case-sensitive: "
            "rename Test/ to test/)." in capsys.readouterr().out)
    # With train/ and test/ only, the test split stands in for validation: said.
    shutil.rmtree(tmp_path / "pets" / "Test")
    os.rename(tmp_path / "pets" / "dev", tmp_path / "pets" / "test")
    assert cli.main(["train", "--model", "alexnet", "--model-arg", "width=8", "--dataset",
                     str(tmp_path / "pets"), "--epochs", "1", "--batch-size", "2",
                     "--run-dir", str(tmp_path / "run2")]) == 0
    assert (f"Note: {tmp_path / 'pets'} has no validation split: the test split picks "
            "best.keras and the learning-rate drops, so its score is not a held-out one."
            in capsys.readouterr().out)
