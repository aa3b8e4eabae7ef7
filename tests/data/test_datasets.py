import functools
import math
import os
import pathlib
import re
import time
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import data
from data import datasets
from safeio.checks import UserError
from tests.helpers import bitfields_bmp, gif_bytes


# --- the embedded digits ---------------------------------------------------------------------


def test_digits_fixed_split_covers_every_image_once():
    sizes = {s: len(datasets._digits_split_index(s)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 1257, "validation": 180, "test": 360}
    all_index = np.concatenate([datasets._digits_split_index(s) for s in sizes])
    assert sorted(all_index.tolist()) == list(range(1797))
    assert data.info("digits").splits == sizes


def test_digits_are_the_real_scikit_learn_digits():
    from sklearn.datasets import load_digits

    images, labels = data.digits_arrays("test", image_size=8)
    raw = load_digits()
    np.testing.assert_array_equal(labels, raw.target[::5])
    # At 8x8 the resize is the identity: the pixels are the originals scaled to [0, 255].
    np.testing.assert_allclose(images[..., 0], raw.images[::5] * 255 / 16, rtol=1e-6)
    np.testing.assert_array_equal(images[..., 0], images[..., 2])
    assert set(np.unique(labels)) == set(range(10))


def test_load_digits_batched_prefetched_and_resized():
    ds = data.load("digits", "validation", batch_size=64, image_size=48)
    batches = list(ds)
    assert [len(b[1]) for b in batches] == [64, 64, 52]
    images, labels = batches[0]
    assert images.shape == (64, 48, 48, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0


def test_train_split_shuffles_reproducibly_and_test_split_does_not():
    first = np.concatenate([y for _, y in data.load("digits", "train", seed=3)])
    again = np.concatenate([y for _, y in data.load("digits", "train", seed=3)])
    np.testing.assert_array_equal(first, again)
    _, ordered = data.digits_arrays("train")
    assert not np.array_equal(first, ordered)
    assert sorted(first.tolist()) == sorted(ordered.tolist())
    test = np.concatenate([y for _, y in data.load("digits", "test")])
    np.testing.assert_array_equal(test, data.digits_arrays("test")[1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(split="valid"), r"Unknown split 'valid' of 'digits'; available: 'train'"),
        (dict(batch_size=0), r"`batch_size`.*received 0"),
        (dict(image_size=-3), r"`image_size`.*received -3"),
        (dict(name="cifar11"), r"Unknown dataset 'cifar11'"),
    ],
)
def test_bad_load_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load(**kwargs)


def test_from_arrays_checks_labels():
    images = np.zeros((3, 4, 4, 1), "float32")
    ds = data.from_arrays(images, [0, 1, 2], num_classes=3)
    image, label = next(iter(ds))
    assert image.shape == (4, 4, 3) and int(label) == 0  # grey becomes RGB
    with pytest.raises(ValueError, match=r"Labels must lie in \[0, 3\); received \[3, -1\]"):
        data.from_arrays(images, [0, 3, -1], num_classes=3)
    with pytest.raises(ValueError, match=r"`labels` must be 3 integers"):
        data.from_arrays(images, [0.5, 1, 2])
    with pytest.raises(ValueError, match=r"`images` must have shape"):
        data.from_arrays(np.zeros((3, 4, 4)), [0, 1, 2])


# --- TFDS -----------------------------------------------------------------------------------


class TinyShapes(tfds.core.GeneratorBasedBuilder):
    """A real TFDS builder the tests prepare on disk, offline."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(16, 16, 1)),
                "label": tfds.features.ClassLabel(names=["dark", "light"]),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(12, 0), "test": self._generate_examples(6, 1)}

    def _generate_examples(self, count, offset):
        for i in range(count):
            label = (i + offset) % 2
            image = np.full((16, 16, 1), 200 if label else 20, np.uint8)
            yield i, {"image": image, "label": label}


def test_tfds_dataset_from_data_dir(tmp_path):
    TinyShapes(data_dir=str(tmp_path)).download_and_prepare()
    ds = data.load("tiny_shapes", "train", batch_size=5, data_dir=str(tmp_path), shuffle=False)
    images, labels = next(iter(ds))
    assert images.shape == (5, 16, 16, 3)  # grey promoted to RGB
    np.testing.assert_array_equal(images[:, 0, 0, 0].numpy(),
                                  np.where(labels.numpy() == 1, 200.0, 20.0))
    assert sum(len(y) for _, y in ds) == 12
    sliced = data.load("tiny_shapes", "train[:50%]", batch_size=None, data_dir=str(tmp_path))
    assert sum(1 for _ in sliced) == 6
    info = data.info("tiny_shapes", data_dir=str(tmp_path))
    assert info.class_names == ("dark", "light") and info.splits == {"train": 12, "test": 6}
    assert info.image_shape == (16, 16, 3)
    with pytest.raises(ValueError, match=r"Unknown split 'validation' of 'tiny_shapes'"):
        data.load("tiny_shapes", "validation", data_dir=str(tmp_path))
    # class_names orders a folder's classes: given with a TFDS dataset it was ignored.
    for read in (data.load, data.info):
        with pytest.raises(UserError, match=r"`class_names` orders an image folder's "
                                            r"classes; 'tiny_shapes' is read from TensorFlow "
                                            r"Datasets.*received class_names=\['light', "):
            read("tiny_shapes", data_dir=str(tmp_path), class_names=["light", "dark"])
    # Split strings as TFDS reads them; its mistakes are one line (they reached TFDS, whose
    # ValueError showed as a bug in ours), and "all" is every split.
    assert sum(1 for _ in data.load("tiny_shapes", "all", batch_size=None,
                                    data_dir=str(tmp_path))) == 18
    for split, message in (("train+tset", r"Unknown split 'train\+tset' of 'tiny_shapes'; "
                                          r"available: 'train' \(12 images\), 'test' \(6"),
                           ("train[:500]", r"Split 'train\[:500\]' of 'tiny_shapes': Requested "
                                           r"slice \[:500\] incompatible with 12 examples"),
                           ("train[8:4]", r"Split 'train\[8:4\]' of 'tiny_shapes' holds no "
                                          "examples")):
        with pytest.raises(UserError, match=message):
            data.load("tiny_shapes", split, data_dir=str(tmp_path))


def test_unprepared_tfds_dataset_fails_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_online", lambda: False)  # as on a machine without network
    start = time.monotonic()
    with pytest.raises(data.DatasetNotPreparedError) as err:
        data.load("cifar10", "train", data_dir=str(tmp_path))
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "'cifar10'" in message and str(tmp_path) in message and "tfds build cifar10" in message


def test_online_probe_never_hangs(monkeypatch):
    for variable in datasets._PROXY_VARIABLES:  # (behind one, nothing is probed)
        monkeypatch.delenv(variable, raising=False)
    start = time.monotonic()
    datasets._online(host="10.255.255.1", port=9, timeout=0.5)  # unroutable: would block
    assert time.monotonic() - start < 2.5


def test_manual_dataset_names_the_manual_dir_in_one_line(tmp_path, monkeypatch, capfd):
    """Said before TFDS starts: it printed 'Downloading and preparing dataset' first, and
    left its empty download folders in the data_dir the user named."""
    capfd.readouterr()
    with pytest.raises(data.DatasetNotPreparedError) as err:
        data.load("imagenet2012", "train", data_dir=str(tmp_path / "tfds"),
                  manual_dir=str(tmp_path / "empty"))
    message = str(err.value)
    assert "imagenet2012" in message and str(tmp_path / "empty") in message
    assert "ILSVRC2012_img_train.tar" in message and "\n" not in message  # TFDS's text
    assert not os.path.exists(tmp_path / "tfds")
    assert capfd.readouterr() == ("", "")
    # Without manual_dir, TFDS's default under a data_dir given as "~/...": the home's.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(data.DatasetNotPreparedError,
                       match=re.escape(str(tmp_path / "home" / "tfds" / "downloads" / "manual"))):
        data.load("imagenet2012", "validation", data_dir="~/tfds")
    assert not os.path.exists(tmp_path / "~") and not os.path.exists(tmp_path / "home")


# --- image folders ----------------------------------------------------------------------------


def _write(path, image, fmt):
    encoded = tf.io.encode_png(image) if fmt == "png" else tf.io.encode_jpeg(image, quality=100)
    path.write_bytes(encoded.numpy())


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 1)):
        for cls, value in (("cat", 30), ("dog", 220)):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(count):
                rgb = np.full((20, 24, 3), value, np.uint8)
                _write(d / f"rgb{i}.png", rgb, "png")
                _write(d / f"grey{i}.jpg", np.full((24, 20, 1), value, np.uint8), "jpeg")
                rgba = np.concatenate([rgb, rng.integers(0, 255, (20, 24, 1), np.uint8)], -1)
                _write(d / f"rgba{i}.png", rgba, "png")
            (d / "notes.txt").write_text("not an image, ignored")
    return root


def test_hidden_files_are_passed_over_and_loose_images_named(image_folder):
    """macOS' ._x.png beside a copied image failed the load as a bad image; images
    directly in a split folder, in no class folder, were left out without a word."""
    cat = image_folder / "train" / "cat"
    count = len(data.folder.scan(str(image_folder), "train")[0])
    (cat / "._rgb0.png").write_bytes(b"\0\5\26\7 AppleDouble")
    (image_folder / "train" / "loose.png").write_bytes((cat / "rgb0.png").read_bytes())
    with pytest.warns(UserWarning, match=r"1 image file\(s\) in .*train are not read: .*"
                                         r"directly inside a class folder .*loose\.png"):
        assert len(data.folder.scan(str(image_folder), "train")[0]) == count


def test_a_digits_folder_here_is_named_when_the_embedded_digits_are_read(tmp_path,
                                                                        monkeypatch):
    """Any other name is an image folder first; "digits" is the embedded set, and a
    ./digits folder of the user's was passed over without a word."""
    for split in ("train", "test"):
        (tmp_path / "digits" / split / "a").mkdir(parents=True)
        _write(tmp_path / "digits" / split / "a" / "x.png", np.zeros((8, 8, 3), np.uint8), "png")
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match=r"'digits' is the embedded digits dataset: the image "
                                         r"folder .*digits here is not read. Name it "
                                         r"'./digits'"):
        assert data.info("digits").num_classes == 10
    assert data.info("./digits").class_names == ("a",)
    assert data.info(pathlib.Path("digits")).class_names == ("a",)  # (a path is a folder's)


def test_tfds_folders_given_with_the_digits_or_an_image_folder_are_said_unread(
        image_folder, recwarn):
    """data_dir and manual_dir are TFDS' folders: load("photos", data_dir="/datasets")
    reads ./photos, and the folder given was passed over without a word."""
    with pytest.warns(UserWarning, match=r"data_dir='/datasets': a TensorFlow Datasets "
                                         r"folder, not read for the embedded digits"):
        assert data.info("digits", data_dir="/datasets").num_classes == 10
    with pytest.warns(UserWarning, match=r"data_dir='d' and manual_dir='m': TensorFlow "
                                         rf"Datasets folders, not read for the image folder "
                                         rf"{re.escape(str(image_folder))}"):
        data.load(str(image_folder), "test", image_size=8, data_dir="d", manual_dir="m")
    recwarn.clear()
    data.load("digits", "test")  # (none given: no word)
    data.info(str(image_folder))
    assert not [w for w in recwarn if "TensorFlow Datasets folder" in str(w.message)]


def test_the_folders_options_are_checked_for_every_source(image_folder):
    """on_bad_image='ignore', verify='full' and max_pixels=-1 passed with the digits (and a
    folder with max_pixels=-1 reported every file as too large); class names given for the
    digits were ignored, where a TFDS dataset refuses them."""
    for kwargs, message in (
            (dict(on_bad_image="ignore"), r"`on_bad_image` must be one of .*'raise'.*'skip'.*"
                                          r"received 'ignore'"),
            (dict(verify="full"), r"`verify` must be one of .*received 'full'"),
            (dict(max_pixels=-1), r"`max_pixels` \(None: no limit\) must be None or a "
                                  r"positive integer; received -1"),
            (dict(class_names=["a", "b"]), r"the embedded digits are numbered '0' to '9'")):
        with pytest.raises(UserError, match=message):
            data.load("digits", **kwargs)
    with pytest.raises(UserError, match=r"received -1"):
        data.load(str(image_folder), max_pixels=-1)
    with pytest.raises(UserError, match=r"the embedded digits are numbered"):
        data.info("digits", class_names=["x"])
    assert len(list(data.load(str(image_folder), "test", image_size=8, max_pixels=None))) == 1


def test_dataset_arguments_of_the_wrong_kind_are_one_line():
    """data.load(None), data.info(5): Python's TypeError; image_size=10**6: TensorFlow out
    of memory (12 TB an image); seed=2**70: TensorFlow's overflow; from_arrays with
    num_classes="3": NumPy's UFuncTypeError, 2.5 and True taken."""
    from zoo.cli.common import MAX_IMAGE_SIZE

    assert data.datasets.MAX_IMAGE_SIZE == MAX_IMAGE_SIZE  # (the CLI's, without TensorFlow)
    assert data.datasets.MAX_SCALE == data.crop_scale(MAX_IMAGE_SIZE)  # (--augment crop's)
    for call, message in (
            (lambda: data.load(None), r"A dataset is 'digits', an image folder's path or a "
                                      r"TensorFlow Datasets name; received None \(NoneType\)"),
            (lambda: data.info(5), r"received 5 \(int\)"),
            (lambda: data.load("digits", image_size=10**6), r"`image_size` must be at most "
                                                            r"4096; received 1,000,000"),
            (lambda: data.load("digits", scale=10**6), r"`scale` must be at most 4681"),
            (lambda: data.load(pathlib.Path("no_such_photos")), r"Dataset folder not found: "
                                                                r"'\./no_such_photos'"),
            (lambda: data.load("digits", seed=2**70), r"`seed` must be an integer in "
                                                      r"\[0, 2\*\*63\)"),
            (lambda: data.from_arrays(np.zeros((2, 4, 4, 3)), [0, 1], num_classes="3"),
             r"`num_classes` must be None or a positive integer; received '3'"),
            (lambda: data.from_arrays(np.zeros((2, 4, 4, 3)), [0, 1], num_classes=True),
             r"received True"),
            # (autograph's error from inside tf.data's tracing)
            (lambda: data.load("digits", augment=lambda image: image),
             r"`augment` is called as augment\(image, seed\); received a function of "
             r"\(image\)"),
            (lambda: data.load("digits", preprocess=lambda image, size: image),
             r"`preprocess` is called as preprocess\(image\); received a function of "
             r"\(image, size\)")):
        with pytest.raises(UserError, match=message):
            call()


def test_jfif_and_jpe_files_are_read_as_the_jpegs_they_are(image_folder):
    """A browser's download.jfif was passed over by the scan and by zoo predict, unnamed."""
    cat = image_folder / "train" / "cat"
    jpeg = next(p for p in sorted(cat.iterdir()) if p.suffix == ".jpg")
    count = len(data.folder.scan(str(image_folder), "train")[0])
    (cat / "saved.jfif").write_bytes(jpeg.read_bytes())
    (cat / "saved.JPE").write_bytes(jpeg.read_bytes())
    paths, _, _ = data.folder.scan(str(image_folder), "train")
    assert len(paths) == count + 2 and str(cat / "saved.jfif") in paths
    from zoo.prediction import image_paths

    assert str(cat / "saved.JPE") in image_paths([str(cat)])


def test_jpegs_decode_to_the_pixels_pil_decodes(tmp_path):
    """TensorFlow's default DCT, the fast one, put a JPEG's pixels up to 8 grey levels from
    PIL's, with which torchvision reads images (and published weights were scored): a
    folder's images and zoo predict's decode as PIL does (an export's serve_bytes:
    tests/test_deploy.py), in colour and in grey."""
    import PIL.Image

    from zoo.prediction import _decode

    rng = np.random.default_rng(0)
    paths = []
    for cls, mode in (("colour", "RGB"), ("grey", "L")):
        (tmp_path / "photos" / "train" / cls).mkdir(parents=True)
        paths.append(tmp_path / "photos" / "train" / cls / "noise.jpg")
        shape = (24, 32, 3) if mode == "RGB" else (24, 32)
        PIL.Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
            paths[-1], quality=95)
    expected = [np.asarray(PIL.Image.open(path).convert("RGB")) for path in paths]
    loaded = [x.numpy() for x, _ in data.load(str(tmp_path / "photos"), "train",
                                               batch_size=None, shuffle=False)]
    for path, image, pil in zip(paths, loaded, expected):
        np.testing.assert_array_equal(image, pil, err_msg=str(path))
        np.testing.assert_array_equal(_decode(path.read_bytes()).numpy(), pil)


def test_image_folder_reads_rgb_grey_and_rgba(image_folder):
    ds = data.load(str(image_folder), "train", batch_size=None, image_size=16, shuffle=False)
    examples = [(x.numpy(), int(y)) for x, y in ds]
    assert len(examples) == 18
    for image, label in examples:
        assert image.shape == (16, 16, 3)
        np.testing.assert_allclose(image, 220.0 if label == 1 else 30.0, atol=1.0)
    assert [y for _, y in examples].count(0) == 9
    info = data.info(str(image_folder))
    assert info.class_names == ("cat", "dog") and info.splits == {"test": 6, "train": 18}


def test_a_folder_of_pictures_beside_the_splits_is_named_as_classes_train_lacks(
        image_folder, recwarn):
    """A docs/assets/ of screenshots in the dataset's folder added a class "assets" (an
    output never trained) without a word; so did a test/ class that train/ lacks. A split
    missing a class train/ has says nothing: that is common and harmless."""
    info = data.info(str(image_folder))
    assert not [w for w in recwarn if "train/ has none of" in str(w.message)]
    (image_folder / "test" / "dog").rename(image_folder / "test" / "fox")  # test lacks dog
    (image_folder / "docs" / "assets").mkdir(parents=True)
    _write(image_folder / "docs" / "assets" / "shot.png", np.zeros((4, 4, 3), np.uint8), "png")
    with pytest.warns(UserWarning) as caught:
        info = data.info(str(image_folder))
    assert info.class_names == ("assets", "cat", "dog", "fox")
    said = [str(w.message) for w in caught if "train/ has none of" in str(w.message)]
    assert said == [
        f"docs/ of the image folder {image_folder} holds images of 1 class(es) that train/ "
        "has none of (assets): the model has an output for each, never trained. If docs/ "
        "is no split of the dataset, move it out of the folder.",
        f"test/ of the image folder {image_folder} holds images of 1 class(es) that train/ "
        "has none of (fox): the model has an output for each, never trained. If test/ is "
        "no split of the dataset, move it out of the folder."]


def test_image_folder_bad_files_are_all_named_or_skipped(image_folder):
    """Every bad file is found by one scan and named in one line (the first five, then a
    count), with the flag that skips them; TensorFlow's op text is left out."""
    for i in range(7):
        (image_folder / "train" / "dog" / f"broken{i}.jpg").write_bytes(b"not a jpeg")
    good = (image_folder / "train" / "cat" / "grey0.jpg").read_bytes()
    (image_folder / "train" / "cat" / "cut.jpg").write_bytes(good[:len(good) // 2])
    with pytest.raises(ValueError) as error:
        data.load(str(image_folder), "train")
    message = str(error.value)
    assert "\n" not in message and message.startswith("8 bad image file(s) in ")
    assert "cut.jpg: truncated: no end-of-image marker, and it cannot be decoded" in message
    assert "broken0.jpg: not a JPEG, PNG, GIF or BMP image" in message
    assert message.count("broken") == 4 and "and 3 more" in message  # 5 shown: cut first
    assert "{{" not in message and "function_node" not in message
    assert message.endswith("on_bad_image='skip' (--on-bad-image skip).")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = data.load(str(image_folder), "train", batch_size=None, on_bad_image="skip")
    assert any("Skipped 8 bad image file(s)" in str(w.message) for w in caught)
    assert sum(1 for _ in ds) == 18


def test_a_broken_link_is_a_bad_image_named_not_left_out_silently(image_folder, tmp_path):
    """A git-annex or DVC checkout whose content was not fetched: links to nothing, which
    the scan passed over as not files, and the dataset shrank without a word."""
    lost = image_folder / "train" / "dog" / "lost.png"
    os.symlink(tmp_path / "nowhere.png", lost)
    with pytest.raises(ValueError, match=rf"1 bad image file\(s\) in .*{re.escape(str(lost))}: "
                                         r"a broken link \(to .*nowhere\.png"):
        data.load(str(image_folder), "train")


def test_an_unchanged_folder_is_scanned_once_and_a_changed_one_again(image_folder,
                                                                     monkeypatch):
    """zoo train loads a split up to three times, and each load read every file's header
    again (ImageNet: a minute a scan). Unchanged folders are read once per process; an
    image added, or removed, is seen; the scan's warnings are given every time."""
    from data import folder

    read = []
    real_problem = folder._problem
    monkeypatch.setattr(folder, "_problem", lambda path, *a: read.append(path) or
                        real_problem(path, *a))
    (image_folder / "train" / "cat" / "scan.tif").write_bytes(b"II*\0")

    past = time.time() - 60

    def settle():  # changed a minute ago (a change this recent is scanned again)
        for path in [image_folder, *image_folder.glob("*"), *image_folder.glob("*/*"),
                     *image_folder.glob("*/*/*")]:
            os.utime(path, (past, past))

    settle()
    for _ in range(2):
        with pytest.warns(UserWarning, match=r"1 image file\(s\) in .* are not read"):
            paths, labels, names = folder.scan(str(image_folder), "train")
        assert len(paths) == 18
    assert len(read) == 18  # once
    paths.clear()  # the caller's lists are its own
    extra = image_folder / "train" / "dog" / "new.png"
    extra.write_bytes((image_folder / "train" / "dog" / "rgb0.png").read_bytes())
    for _ in range(2):  # just changed: scanned each time, the new image seen
        with pytest.warns(UserWarning):
            assert len(folder.scan(str(image_folder), "train")[0]) == 19
    assert len(read) == 18 + 2 * 19
    extra.unlink()
    with pytest.warns(UserWarning):
        assert len(folder.scan(str(image_folder), "train")[0]) == 18
    settle()  # and kept once settled: one record for these arguments, not one per change
    for _ in range(2):
        with pytest.warns(UserWarning):
            folder.scan(str(image_folder), "train")
    assert len(read) == 18 + 2 * 19 + 18 + 18
    assert sum(key[0] == str(image_folder) for key in folder._SCANS) == 1
    # A file rewritten in place changes no folder's time: a bad image mended kept its
    # verdict, and a good one damaged passed (to fail mid-epoch, naming no file).
    good = image_folder / "train" / "dog" / "rgb0.png"
    saved = good.read_bytes()
    good.write_bytes(saved[:40])
    settle()
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"rgb0\.png: truncated"):
        folder.scan(str(image_folder), "train")
    good.write_bytes(saved)
    settle()
    with pytest.warns(UserWarning):
        assert len(folder.scan(str(image_folder), "train")[0]) == 18
    with pytest.raises(ValueError, match=r"`verify` must be one of .*received \['header'\]"):
        folder.scan(str(image_folder), "train", verify=["header"])
    assert len(folder.scan(str(image_folder), "train", class_names=iter(["cat", "dog"]))[0]) == 18


def test_images_the_scan_does_not_read_are_named(image_folder):
    """A TIFF, and images in a folder below the class folder, are not read: a warning names
    them instead of leaving them out silently."""
    (image_folder / "train" / "cat" / "scan.tif").write_bytes(b"II*\0")
    deep = image_folder / "train" / "dog" / "2019" / "summer"
    deep.mkdir(parents=True)
    (deep / "x.png").write_bytes((image_folder / "train" / "dog" / "rgb0.png").read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = data.load(str(image_folder), "train", batch_size=None)
    (message,) = [str(w.message) for w in caught if "not read" in str(w.message)]
    assert message.startswith("2 image file(s) in ") and "scan.tif" in message
    assert os.path.join("2019", "summer", "x.png") in message
    assert sum(1 for _ in ds) == 18


@pytest.mark.parametrize("verify", ["header", "decode"])  # header: the default
def test_image_folder_truncated_file_is_named(image_folder, verify, capfd):
    good = (image_folder / "train" / "cat" / "grey0.jpg").read_bytes()
    truncated = image_folder / "train" / "cat" / "truncated.jpg"
    truncated.write_bytes(good[:len(good) // 2])  # a valid header, half the data
    capfd.readouterr()
    with pytest.raises(ValueError, match=r"truncated\.jpg: .*cannot be decoded \(jpeg::Uncompress "
                                         r"failed\. Invalid JPEG data or crop window\.\)\."):
        data.load(str(image_folder), "train", verify=verify)
    # What libjpeg and the failed op print below Python ("Improper call to JPEG library",
    # "Local rendezvous is aborting") stays off stderr: the error names the file instead.
    assert capfd.readouterr().err == ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = data.load(str(image_folder), "train", batch_size=None, on_bad_image="skip")
    assert any("truncated.jpg" in str(w.message) for w in caught)
    assert sum(1 for _ in ds) == 18  # and the epoch runs to its end


def test_image_folder_png_truncated_and_jpeg_with_trailing_bytes(image_folder):
    png = (image_folder / "train" / "dog" / "rgb0.png").read_bytes()
    (image_folder / "train" / "dog" / "cut.png").write_bytes(png[:-20])
    with pytest.raises(ValueError, match=r"cut\.png: truncated"):
        data.load(str(image_folder), "train")
    (image_folder / "train" / "dog" / "cut.png").unlink()
    jpeg = (image_folder / "train" / "dog" / "grey0.jpg").read_bytes()
    (image_folder / "train" / "dog" / "trailer.jpg").write_bytes(jpeg + b"camera notes")
    assert sum(1 for _ in data.load(str(image_folder), "train", batch_size=None)) == 19


def test_image_folder_classes_are_numbered_across_splits_as_tfds_does(tmp_path):
    """validation/ lacks class b: c must keep label 2, as in train/ and in TFDS."""
    import tensorflow_datasets as tfds

    root = tmp_path / "letters"
    layout = {"train": ("a", "b", "c"), "validation": ("a", "c")}
    for split, classes in layout.items():
        for value, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True)
            _write(root / split / cls / "x.png",
                   np.full((4, 4, 3), 50 * (ord(cls) - ord("a") + 1), np.uint8), "png")
    builder = tfds.folder_dataset.ImageFolder(str(root))
    assert builder.info.features["label"].names == ["a", "b", "c"]
    for split in layout:
        reference = sorted((int(y), int(x.numpy()[0, 0, 0])) for x, y in builder.as_dataset(
            split=split, as_supervised=True))
        ours = sorted((int(y), int(x.numpy()[0, 0, 0])) for x, y in data.load(
            str(root), split, batch_size=None))
        assert ours == reference, split
    assert data.info(str(root)).class_names == ("a", "b", "c")
    # class_names= chooses the order, as keras.utils.image_dataset_from_directory does.
    order = ["c", "b", "a"]
    labels = {int(x.numpy()[0, 0, 0]): int(y) for x, y in data.load(
        str(root), "validation", batch_size=None, class_names=order)}
    assert labels == {50: 2, 150: 0}
    assert data.info(str(root), class_names=order).class_names == ("c", "b", "a")
    with pytest.raises(ValueError, match=r"Class folder\(s\) \['b'\] .* not in `class_names`"):
        data.load(str(root), "train", class_names=["a", "c"])


def test_a_bad_seed_and_damaged_statistics_are_one_line(tmp_path):
    for seed in (None, 1.5, True):
        with pytest.raises(ValueError, match=rf"`seed` must be an integer in \[0, 2\*\*63\); "
                                             rf"received {seed}"):
            data.load("digits", "train", seed=seed)
    stats = data.compute_statistics(data.load("digits", "train", batch_size=256))
    path = tmp_path / "stats.npz"
    stats.save(str(path))
    np.testing.assert_array_equal(data.ImageStatistics.load(str(path)).mean_image,
                                  stats.mean_image)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"{path} is not readable image statistics "
                                         r"\(BadZipFile"):
        data.ImageStatistics.load(str(path))


def test_hidden_folders_are_never_splits_or_classes(tmp_path):
    """Jupyter's .ipynb_checkpoints beside the class folders is no class (it would be class
    0 and shift every label), as keras.utils.image_dataset_from_directory skips it."""
    root = tmp_path / "letters"
    for split, cls in [("train", "a"), ("train", "b"), ("train", ".ipynb_checkpoints"),
                       (".cache", "a")]:
        (root / split / cls).mkdir(parents=True)
        _write(root / split / cls / "x.png", np.full((4, 4, 3), 50, np.uint8), "png")
    keras_names = keras.utils.image_dataset_from_directory(
        str(root / "train"), image_size=(4, 4), verbose=False).class_names
    assert data.info(str(root)).class_names == tuple(keras_names) == ("a", "b")
    assert data.folder.splits(str(root)) == ["train"]
    # Nor are the sub-folders of a folder of no images: docs/assets became class 0 and
    # shifted every label; a Mac zip's __MACOSX/train, __MACOSX/val two more classes.
    (root / "docs" / "assets").mkdir(parents=True)
    (root / "docs" / "assets" / "style.css").write_text("body {}")
    (root / "__MACOSX" / "train" / "a").mkdir(parents=True)
    (root / "__MACOSX" / "train" / "a" / "._x.png").write_bytes(b"\x00\x05\x16\x07")
    assert data.info(str(root)).class_names == ("a", "b")
    assert sorted(int(y) for _, y in data.load(str(root), "train", batch_size=None)) == [0, 1]
    # Images below the class folders (Tiny ImageNet's train/n01443537/images/*.JPEG) still
    # make their classes, and the scan's warning names the files it does not read.
    tiny = tmp_path / "tiny"
    (tiny / "train" / "n01443537" / "images").mkdir(parents=True)
    _write(tiny / "train" / "n01443537" / "images" / "x.png", np.zeros((4, 4, 3), np.uint8),
           "png")
    assert data.folder.class_folders(str(tiny)) == ["n01443537"]
    with pytest.warns(UserWarning, match=r"1 image file\(s\) in .* are not read"), \
            pytest.raises(UserError, match="No images in"):
        data.folder.scan(str(tiny), "train")


def test_image_folder_errors(image_folder, tmp_path):
    with pytest.raises(ValueError, match=r"Unknown split 'val'.*'test', 'train'"):
        data.load(str(image_folder), "val")
    empty = tmp_path / "empty"
    (empty / "train" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"No images in .*train"):
        data.load(str(empty), "train")
    with pytest.raises(ValueError, match=r"`on_bad_image` must be one of"):
        data.load(str(image_folder), "train", on_bad_image="ignore")


def test_digits_splits_slice_as_in_tfds():
    images, labels = data.digits_arrays("train", image_size=8)
    head, head_labels = data.digits_arrays("train[:400]", image_size=8)
    np.testing.assert_array_equal(head, images[:400])
    np.testing.assert_array_equal(head_labels, labels[:400])
    tail, _ = data.digits_arrays("train[50%:]", image_size=8)
    np.testing.assert_array_equal(tail, images[1257 * 50 // 100:])
    assert sum(len(b[1]) for b in data.load("digits", "test[:-60]", batch_size=100)) == 300
    with pytest.raises(ValueError, match=r"Unknown split 'train\[a:b\]'.*'train\[:400\]'"):
        data.digits_arrays("train[a:b]")


def test_seed_alone_decides_the_shuffle_order_and_the_augmentation():
    import keras

    from data import augment

    def first_epoch(global_seed, seed):
        if global_seed is not None:
            keras.utils.set_random_seed(global_seed)
        ds = data.load("digits", "train", batch_size=None, image_size=8, seed=seed,
                       augment=augment.random_erasing)
        images, labels = zip(*[(x.numpy(), int(y)) for x, y in ds.take(40)])
        return np.stack(images), labels

    reference = first_epoch(1, seed=3)
    for global_seed in (2, 1234):
        images, labels = first_epoch(global_seed, seed=3)
        assert labels == reference[1]
        np.testing.assert_array_equal(images, reference[0])
    other = first_epoch(1, seed=4)
    assert other[1] != reference[1]
    # Unseeded ops after data.load draw the same seeds as they would have without it.
    keras.utils.set_random_seed(5)
    expected = tf.random.uniform([3]).numpy()
    keras.utils.set_random_seed(5)
    data.load("digits", "train", seed=0, augment=augment.random_flip)
    np.testing.assert_array_equal(tf.random.uniform([3]).numpy(), expected)


def test_each_pass_is_an_epoch_decided_by_seed_and_epoch_alone():
    """Pass e of a shuffled, augmented dataset takes its order and augmentation from
    (seed, e): a fresh dataset pointed at epoch 2 replays the third pass of another, and
    the passes after it; the cardinality survives."""
    from data import augment

    def make():
        return data.load("digits", "train", batch_size=50, image_size=8, seed=3,
                         augment=augment.random_erasing)

    def one_pass(ds):
        images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
        return np.concatenate(images), np.concatenate(labels)

    ds = make()
    assert int(ds.cardinality()) == math.ceil(len(data.digits_arrays("train")[1]) / 50)
    passes = [one_pass(ds) for _ in range(4)]
    assert not np.array_equal(passes[0][1], passes[1][1])  # reshuffled every pass
    fresh = make()
    data.set_epoch(fresh, 2)
    for expected in passes[2:]:
        images, labels = one_pass(fresh)
        np.testing.assert_array_equal(labels, expected[1])
        np.testing.assert_array_equal(images, expected[0])
    data.set_epoch(ds, 0)
    np.testing.assert_array_equal(one_pass(ds)[0], passes[0][0])
    data.set_epoch(data.load("digits", "test"), 5)  # nothing random: nothing to do
    with pytest.raises(ValueError, match=r"the dataset `data.load` returned.*received "
                                         r"_MapDataset"):
        data.set_epoch(ds.map(lambda x, y: (x, y)), 1)
    with pytest.raises(ValueError, match=r"`epoch` must be a non-negative integer; "
                                         r"received -1"):
        data.set_epoch(ds, -1)


def test_load_at_the_papers_scale_then_the_centre_crop(image_folder):
    """Shorter side to `scale`, the central square, then the central crop: an image folder
    of 20x24 and 24x20 images and the digits (square) give the same shapes."""
    ds = data.load(str(image_folder), "train", batch_size=None, scale=12, center_crop=10,
                   shuffle=False)
    assert {tuple(x.shape) for x, _ in ds} == {(10, 10, 3)}
    digits = data.load("digits", "test", batch_size=None, scale=9, center_crop=8)
    big = data.load("digits", "test", batch_size=None, image_size=9)
    for (a, _), (b, _) in zip(digits.take(3), big.take(3)):
        np.testing.assert_array_equal(a.numpy(), b.numpy()[0:8, 0:8])
    with pytest.raises(ValueError, match=r"not both; received 8 and 9"):
        data.load("digits", "test", image_size=8, scale=9)
    with pytest.raises(ValueError, match=r"`center_crop` must be None or a positive integer"):
        data.load("digits", "test", center_crop=0)


def test_image_folder_sizes_from_headers_and_a_pixel_limit(image_folder, tmp_path):
    """The header sizes agree with what TensorFlow decodes, for every format; an image
    above `max_pixels` is named before anything decodes it."""
    from data import folder

    samples = {"a.png": tf.io.encode_png(np.zeros((7, 9, 3), np.uint8)).numpy(),
               "b.jpg": tf.io.encode_jpeg(np.zeros((11, 5, 3), np.uint8)).numpy(),
               "c.jpg": tf.io.encode_jpeg(np.zeros((13, 8, 3), np.uint8), progressive=True,
                                          xmp_metadata="<x/>").numpy()}
    # GIFs: TensorFlow decodes every frame on a canvas of the widest and highest, whatever
    # the "logical screen" says (Pillow's GIF writer makes every frame the first one's size).
    # giflib reads one more chain of sub-blocks after an extension whose first is the
    # terminator: read by the spec, these 4 bytes hid a 30x20 frame behind an 8x8 screen.
    hidden = b"\x21\xfe\x00;" + b"z" * 59 + b"\x00"
    for frames, screen, before in (([(9, 7)], None, b""), ([(30, 20)], (8, 8), b""),
                                   ([(5, 5)], (40, 40), b""), ([(30, 20)], (8, 8), hidden),
                                   ([(3, 2), (12, 1), (1, 9)], (4, 4), b"")):
        samples[f"{len(samples)}.gif"] = gif_bytes(frames, screen, before)
    for name, content in samples.items():
        (tmp_path / name).write_bytes(content)
        decoded = tf.io.decode_image(content, expand_animations=False).shape
        assert folder.header_size(str(tmp_path / name)) == (decoded[1], decoded[0]), name
    big = image_folder / "train" / "cat" / "big.png"
    _write(big, np.zeros((300, 400, 3), np.uint8), "png")
    with pytest.raises(ValueError, match=r"big\.png: too large: 400x300 = 120,000 pixels, "
                                         r"above max_pixels=100,000"):
        data.load(str(image_folder), "train", max_pixels=100_000)
    big.unlink()
    # A GIF whose frames together hold more pixels: TensorFlow decodes them all.
    (image_folder / "train" / "cat" / "moving.gif").write_bytes(gif_bytes([(300, 100)] * 4))
    with pytest.raises(ValueError, match=r"moving\.gif: too large: 300x100, 120,000 pixels in "
                                         r"its frames together, above max_pixels=100,000"):
        data.load(str(image_folder), "train", max_pixels=100_000)
    assert sum(1 for _ in data.load(str(image_folder), "train", batch_size=None)) == 19


def test_images_of_different_sizes_are_named_before_batching(image_folder):
    """The fixture's grey JPEGs are 20 wide and 24 high, its PNGs 24x20: batching them as
    they are is refused at load, naming two files, instead of failing mid-epoch in tf.data."""
    with pytest.raises(ValueError) as error:
        data.load(str(image_folder), "train", batch_size=4)
    message = str(error.value)
    assert "\n" not in message and "Pass image_size" in message
    assert re.search(r"grey0\.jpg is 20x24 and .*rgb0\.png is 24x20", message), message
    assert next(iter(data.load(str(image_folder), "train", batch_size=4, image_size=8)))[0].shape == (4, 8, 8, 3)
    assert next(iter(data.load(str(image_folder), "train", batch_size=4, center_crop=8)))[0].shape == (4, 8, 8, 3)
    assert sum(1 for _ in data.load(str(image_folder), "train", batch_size=None)) == 18
    # An augmentation keeping each image's size (a flip, the PCA lighting) was taken to
    # resize them: refused at load too, where the first batch failed in tf.data.
    for keeps_size in (data.augment.random_flip, data.augment.pca_color):
        with pytest.raises(ValueError, match="Images of different sizes cannot be batched"):
            data.load(str(image_folder), "train", batch_size=4, augment=keeps_size)
    crop = functools.partial(data.augment.random_crop, size=8)
    assert next(iter(data.load(str(image_folder), "train", batch_size=4, augment=crop)))[
        0].shape == (4, 8, 8, 3)

    def numpy_crop(image, seed):  # its size unknown when traced: taken as a resize
        return tf.numpy_function(lambda x: x[:8, :8], [image], tf.float32)

    assert next(iter(data.load(str(image_folder), "train", batch_size=4,
                               augment=numpy_crop)))[0].shape == (4, 8, 8, 3)


def test_digit_splits_add_and_round_as_tfds_reads_them():
    """TFDS' own parser reads the split: percentages round to the closest example (33 % of
    1,257 is 414.8 -> 415), "+" adds splits, and a slice past the end or an empty one is
    refused in one line."""
    train, train_labels = data.digits_arrays("train", image_size=8)
    test, _ = data.digits_arrays("test", image_size=8)
    assert len(data.digits_arrays("train[:33%]", image_size=8)[1]) == 415
    both, both_labels = data.digits_arrays("train+test", image_size=8)
    np.testing.assert_array_equal(both, np.concatenate([train, test]))
    assert len(data.digits_arrays("train[:400]+validation[:10%]", image_size=8)[1]) == 418
    for split, reason in (("train[:5000]", "incompatible with 1257 examples"),
                          ("train[:200%]", "should be in \\[-100, 100\\]"),
                          ("train[:0]", "holds no examples"),
                          # (named the splits there are as the other two lines do: README)
                          ("train[10:5]", r"holds no examples \(available: 'train' \(1,257 "
                                          r"images\), 'validation' \(180 images\)"),
                          ("val", "Unknown split .val. of .digits.; available: .train. \\(1,257 images\\)")):
        with pytest.raises(ValueError, match=reason) as error:
            data.digits_arrays(split, image_size=8)
        assert "\n" not in str(error.value)


def test_center_crop_larger_than_the_image_is_refused_up_front(image_folder):
    """Also of a folder's images at their own size: one failed mid-epoch, naming no file."""
    with pytest.raises(ValueError, match=r"center_crop=21 is larger than .*grey0.jpg \(20x24\)"):
        data.load(str(image_folder), "train", center_crop=21)
    assert {tuple(x.shape) for x, _ in data.load(str(image_folder), "train", center_crop=20,
                                                 batch_size=None)} == {(20, 20, 3)}
    with pytest.raises(ValueError, match=r"`center_crop` must be at most the image size, 16; "
                                         r"received 20"):
        data.load("digits", "train", image_size=16, center_crop=20)
    with pytest.raises(ValueError, match=r"at most the image size, 32; received 40"):
        data.load("digits", "train", center_crop=40)
    with pytest.raises(ValueError, match=r"at most the image size, 12; received 13"):
        data.load("digits", "train", scale=12, center_crop=13)


def test_from_arrays_refuses_labels_an_int32_cannot_hold():
    with pytest.raises(ValueError, match=r"Labels must lie in \[0, 2147483647\); received \[4294967297\]"):
        data.from_arrays(np.zeros((1, 4, 4, 3)), [2**32 + 1])
    with pytest.raises(ValueError, match=r"received \[-1\]"):
        data.from_arrays(np.zeros((2, 4, 4, 3)), [0, -1])


def test_a_folder_is_shuffled_as_files_whatever_the_buffer_of_decoded_images(tmp_path,
                                                                             monkeypatch):
    """The scan lists files class by class. They were shuffled after decoding, in a buffer
    of 10,000 images (8 GB at scale 256): past 10,000 files a batch held a few classes, the
    first tenth of an ImageNet epoch 18 of its 100. Now the paths are shuffled, all of them
    in the buffer: with the images' buffer set to 2, every class still comes early."""
    root = tmp_path / "sorted"
    for label, name in enumerate(("a", "b", "c")):
        (root / "train" / name).mkdir(parents=True)
        for i in range(8):
            _write(root / "train" / name / f"{i}.png", np.full((2, 2, 3), label, np.uint8), "png")
    monkeypatch.setattr(datasets, "SHUFFLE_BUFFER", 2)
    for seed in range(3):
        labels = [int(y) for _, y in data.load(str(root), "train", batch_size=None, seed=seed)]
        assert sorted(labels) == [0] * 8 + [1] * 8 + [2] * 8  # each file once
        assert set(labels[:8]) == {0, 1, 2}, (seed, labels)


def test_a_file_name_that_is_not_utf8_is_read(tmp_path):
    """os.listdir escapes such a name's bytes ('caf\\udce9.png'), which tf.data could not
    encode: a UnicodeEncodeError traceback."""
    folder = tmp_path / "names" / "test" / "cat"
    folder.mkdir(parents=True)
    raw = os.path.join(os.fsencode(folder), b"caf\xe9.png")
    with open(raw, "wb") as f:
        f.write(tf.io.encode_png(np.full((3, 3, 3), 77, np.uint8)).numpy())
    (image, label), = data.load(str(tmp_path / "names"), "test", batch_size=None)
    assert int(label) == 0 and np.all(image.numpy() == 77)
    # Decoded by the scan too (verify="decode", or a file that looks truncated): the name
    # went to TensorFlow as text, a ValueError naming no file.
    (image, label), = data.load(str(tmp_path / "names"), "test", batch_size=None,
                                verify="decode")
    assert np.all(image.numpy() == 77)


def test_bmp_files_pass_the_scan_exactly_when_tensorflow_decodes_them_as_pil_does(tmp_path):
    """TensorFlow's BMP decoder refuses 1-bit files (mid-epoch, naming no file), reads an
    8-bit colour palette as grey indices and ignores a 32-bit file's colour masks (red and
    blue swapped where they are in another order), silently: the scan refuses them from
    the header, and passes the BMPs TensorFlow decodes to PIL's pixels. The export's graph
    (folder.bmp_misread) decides as the scan does."""
    import PIL.Image

    from data import folder

    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), np.uint8)
    images = {"1": PIL.Image.new("1", (5, 3)), "L": PIL.Image.fromarray(rgb[..., 0]),
              "P": PIL.Image.fromarray(rgb).convert("P", palette=PIL.Image.ADAPTIVE, colors=16),
              "RGB": PIL.Image.fromarray(rgb),
              "RGBA": PIL.Image.fromarray(np.dstack([rgb, rgb[..., :1]]))}
    for mode, image in images.items():
        image.save(tmp_path / f"{mode}.bmp")
    for name, masks in (("BGR-masks", (0xFF0000, 0xFF00, 0xFF)),
                        ("RGB-masks", (0xFF, 0xFF00, 0xFF0000))):
        (tmp_path / f"{name}.bmp").write_bytes(bitfields_bmp(rgb, masks))
        images[name] = PIL.Image.fromarray(rgb)
    for mode, image in images.items():
        path = tmp_path / f"{mode}.bmp"
        assert np.array_equal(np.asarray(PIL.Image.open(path).convert("RGB")),
                              np.asarray(image.convert("RGB"))), mode
        try:
            decoded = tf.io.decode_image(path.read_bytes(), channels=3).numpy()
            as_pil = np.array_equal(decoded, np.asarray(image.convert("RGB")))
            decodes = True
        except tf.errors.OpError:
            as_pil = decodes = False
        assert (folder.image_problem(str(path)) is None) == as_pil, mode
        if decodes:  # (the others fail in the graph's decoder itself)
            assert bool(folder.bmp_misread(tf.constant(path.read_bytes()))) == (not as_pil)
    assert folder.image_problem(str(tmp_path / "RGB-masks.bmp")) == (
        "a BMP whose colour masks are not in blue, green, red order, which TensorFlow "
        "decodes with its colours swapped: convert it to PNG")
    assert folder.image_problem(str(tmp_path / "P.bmp")) == (
        "a BMP with a colour palette, which TensorFlow decodes as grey palette indices: "
        "convert it to PNG")
    assert folder.image_problem(str(tmp_path / "1.bmp")) == (
        "a BMP (1-bit) that TensorFlow does not decode: convert it to PNG")


def test_an_empty_split_folder_is_no_split_and_no_batch_is_one_line(image_folder):
    """An empty test/ folder (or any folder of no images beside the splits) made data.info,
    and so every command, fail; a batch larger than the split with drop_remainder gave an
    epoch of no step without a word."""
    (image_folder / "test" / "cat").rename(image_folder / "cat_moved")
    (image_folder / "test" / "dog").rename(image_folder / "dog_moved")
    (image_folder / "test" / "cat").mkdir()  # a class folder, empty
    assert data.info(str(image_folder)).splits == {"train": 18}
    with pytest.raises(UserError, match="No images in"):
        data.load(str(image_folder), "test")
    with pytest.raises(UserError, match=r"batch_size=32 with drop_remainder leaves no batch of "
                                        r"the 18 examples of .* 'train': give a batch size of "
                                        r"at most 18"):
        data.load(str(image_folder), "train", image_size=8, batch_size=32, drop_remainder=True)
    assert len(list(data.load(str(image_folder), "train", image_size=8, batch_size=18,
                              drop_remainder=True))) == 1


def test_a_folder_splits_slice_and_add_in_tfds_image_folders_order(tmp_path):
    """`zoo demo --quick --dataset FOLDER` asks for "train[:320]", which image folders did
    not take. A folder's splits now slice and add as TFDS' do, over the examples in the
    order of TFDS' ImageFolder (sorted, then shuffled by the split's name): the first ones
    are not all the first class's files."""
    root = tmp_path / "shapes"
    for split, count in (("train", 6), ("test", 2)):
        for value, name in enumerate(("cat", "dog", "fox")):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                image = np.full((4, 4, 3), 40 * value + i, np.uint8)
                _write(root / split / name / f"{i}.png", image, "png")
    builder = tfds.folder_dataset.ImageFolder(str(root))
    reference = [(int(x.numpy()[0, 0, 0]), int(y)) for x, y in builder.as_dataset(
        split="train", shuffle_files=False, as_supervised=True)]

    def ours(split):
        return [(int(x.numpy()[0, 0, 0]), int(y)) for x, y in data.load(
            str(root), split, batch_size=None, shuffle=False)]

    assert ours("train[:5]") == reference[:5] and len({y for _, y in reference[:5]}) > 1
    assert ours("train[50%:]") == reference[9:]
    assert sorted(ours("train+test")) == sorted(ours("train") + ours("test"))
    assert len(ours("all")) == 24
    with pytest.raises(UserError, match=r"Unknown split 'valid' in image folder"):
        ours("valid[:2]")
    # A Train/ folder (as many downloads name it): the names are case-sensitive, as the
    # commands' own train/validation/test are (a rename, not a flag, is the answer).
    (root / "train").rename(root / "Train")
    with pytest.raises(UserError, match=r"^Unknown split 'train' in image folder .*: it has "
                                        r"'Train', 'test' \(split names are case-sensitive: "
                                        r"rename Train/ to train/, the name zoo's commands "
                                        r"look for, or load split='Train'\)\.$"):
        ours("train")
    assert len(ours("Train")) == 18
    (root / "Train").rename(root / "train")
    with pytest.raises(UserError, match=r"it has 'test', 'train' \(split names are "
                                        r"case-sensitive: load split='train'\)\.$"):
        ours("Train")  # (no rename to Train/: the commands would no longer find it)
    with pytest.raises(UserError, match=r"Split 'train\[:99\]' of .*incompatible with 18"):
        ours("train[:99]")
    with pytest.raises(UserError, match=r"Split 'all\[:10%\]' of .*"):  # TFDS: not supported
        ours("all[:10%]")
    (root / "validation" / "cat").mkdir(parents=True)  # a split folder of no images
    assert len(ours("all")) == 24


def test_tfds_own_folder_in_the_working_directory_is_not_an_image_folder(tmp_path,
                                                                        monkeypatch):
    """`--dataset tiny_shapes --data-dir .` prepares ./tiny_shapes/1.0.0, which the next
    command read as an image folder ("No images in tiny_shapes/1.0.0")."""
    TinyShapes(data_dir=str(tmp_path)).download_and_prepare()
    monkeypatch.chdir(tmp_path)
    assert data.info("tiny_shapes", data_dir=".").splits == {"train": 12, "test": 6}
    assert len(list(data.load("tiny_shapes", "test", batch_size=None, data_dir="."))) == 6
    with pytest.raises(UserError, match=r"tiny_shapes is TFDS' folder of the prepared dataset "
                                        r"'tiny_shapes', not an image folder .*: to read it "
                                        r"with TFDS, give --dataset tiny_shapes --data-dir "
                                        rf"{re.escape(str(tmp_path))} "):
        data.load("tiny_shapes", "test")
    # A path to it (even in TFDS' default folder), from any depth, is told the TFDS name
    # and the data_dir (it was "Dataset folder not found", or a data_dir that failed too).
    for path in (str(tmp_path / "tiny_shapes"), "./tiny_shapes"):
        for data_dir in (None, str(tmp_path)):
            with pytest.raises(UserError, match=r"give --dataset tiny_shapes --data-dir "
                                                rf"{re.escape(str(tmp_path))} "):
                data.info(path, data_dir=data_dir)
    nested = tmp_path / "data"
    TinyShapes(data_dir=str(nested)).download_and_prepare()
    with pytest.raises(UserError, match=r"give --dataset tiny_shapes --data-dir "
                                        rf"{re.escape(str(nested))} "):
        data.info("data/tiny_shapes")
    # An image folder beside which a TFDS dataset was prepared is still an image folder.
    for split in ("train", "test"):
        (tmp_path / "pets" / split / "cat").mkdir(parents=True)
        _write(tmp_path / "pets" / split / "cat" / "a.png", np.zeros((4, 4, 3), np.uint8),
               "png")
    TinyShapes(data_dir=str(tmp_path / "pets")).download_and_prepare()
    assert data.info("pets").splits == {"test": 1, "train": 1}


class TinySizes(tfds.core.GeneratorBasedBuilder):
    """A TFDS builder of images of two sizes (as most photo datasets are)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.ClassLabel(names=["a", "b"]),
            }),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(4):
            yield i, {"image": np.full((10 + 2 * i, 12, 3), 9 * i, np.uint8), "label": i % 2}


class TinyPhotos(tfds.core.GeneratorBasedBuilder):
    """A TFDS builder of JPEG-encoded noise, in colour."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(24, 32, 3), encoding_format="jpeg"),
                "label": tfds.features.ClassLabel(names=["a", "b"]),
            }),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        rng = np.random.default_rng(0)
        for i in range(2):
            yield i, {"image": rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), "label": i}


def test_a_tfds_datasets_jpegs_decode_to_the_pixels_pil_decodes(tmp_path):
    """TFDS' own decoder takes TensorFlow's fast DCT, grey levels from the pixels PIL (and
    torchvision) read: a TFDS dataset's 8-bit JPEGs decode as an image folder's."""
    import io

    import PIL.Image

    TinyPhotos(data_dir=str(tmp_path)).download_and_prepare()
    builder = tfds.builder("tiny_photos", data_dir=str(tmp_path))
    stored = builder.as_dataset(split="train", shuffle_files=False, as_supervised=True,
                                decoders={"image": tfds.decode.SkipDecoding()})
    expected = [np.asarray(PIL.Image.open(io.BytesIO(encoded.numpy())).convert("RGB"))
                for encoded, _ in stored]
    loaded = [x.numpy() for x, _ in data.load("tiny_photos", "train", data_dir=str(tmp_path),
                                               batch_size=None, shuffle=False)]
    assert len(loaded) == len(expected) == 2
    for image, pil in zip(loaded, expected):
        np.testing.assert_array_equal(image, pil)


class TinyConfigs(TinyShapes):
    """TinyShapes with configs: TFDS keeps it in tiny_configs/CONFIG/1.0.0."""

    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="small"),
                       tfds.core.BuilderConfig(name="large")]


def test_tfds_info_reads_what_load_reads_and_prepares_first(tmp_path, monkeypatch):
    """data.info of a TFDS dataset not prepared yet prepares it (TFDS knows no splits before:
    zoo train went on without validation, zoo demo said it had no train split); offline it
    is the one line load gives."""
    monkeypatch.setattr(datasets, "_online", lambda: True)
    assert data.info("tiny_shapes", data_dir=str(tmp_path)).splits == {"train": 12, "test": 6}
    monkeypatch.setattr(datasets, "_online", lambda: False)
    with pytest.raises(data.DatasetNotPreparedError, match=r"'cifar10' is not prepared in "):
        data.info("cifar10", data_dir=str(tmp_path))
    # A data_dir mistyped is said (it read as "download it"), without TFDS' absl line about
    # the folder beside ours; a file is one line.
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("absl").addHandler(handler)
    try:
        with pytest.raises(data.DatasetNotPreparedError, match=re.escape(
                f"data_dir=DIR (zoo: --data-dir DIR). (data_dir {tmp_path / 'typo'} does not "
                "exist: a typo?)")):
            data.info("cifar10", data_dir=str(tmp_path / "typo"))
    finally:
        logging.getLogger("absl").removeHandler(handler)
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match=re.escape(
            f"data_dir {tmp_path / 'a_file'} is a file: give the folder TFDS prepares its "
            "datasets in (zoo: --data-dir DIR).")):
        data.info("cifar10", data_dir=str(tmp_path / "a_file"))


@pytest.mark.parametrize("name, message", [
    ("lfw", r"TFDS dataset 'lfw' pairs 'label' \(Text\) with 'image' \(Image\); the zoo reads "
            r"an image \(tfds.features.Image\) with a class label"),
    ("celeb_a", r"TFDS dataset 'celeb_a' has no \(image, label\) pair to read: its supervised "
                r"keys are None; features: image \(Image\), landmarks \(FeaturesDict\)"),
    ("imdb_reviews", r"pairs 'text' \(Text\) with 'label' \(ClassLabel\)"),
    ("eurosat/all", r"pairs 'sentinel2' \(Tensor\) with 'label' \(ClassLabel\)"),
    ("cifar10:9.9.9", r"TFDS dataset 'cifar10:9.9.9': Dataset cifar10 cannot be loaded at "
                      r"version 9.9.9, only: 3.0.2"),
])
def test_tfds_datasets_that_are_not_images_and_classes_are_one_line(name, message, tmp_path,
                                                                    monkeypatch):
    """TFDS' own definitions (read offline, nothing downloaded): info read features named
    'image' and 'label' where load reads the supervised keys, and the others failed in
    tf.data or as a traceback."""
    monkeypatch.setattr(datasets, "_online", lambda: pytest.fail("nothing is downloaded"))
    for read in (data.info, data.load):
        with pytest.raises(UserError, match=message):
            read(name, data_dir=str(tmp_path))


def test_tfds_images_of_different_sizes_or_too_small_are_one_line(tmp_path):
    TinySizes(data_dir=str(tmp_path)).download_and_prepare()
    assert data.info("tiny_sizes", data_dir=str(tmp_path)).image_shape is None
    with pytest.raises(UserError, match=r"The images of TFDS dataset 'tiny_sizes' differ in "
                                        r"size \(shape \(None, None, 3\)\).*pass image_size"):
        data.load("tiny_sizes", data_dir=str(tmp_path), batch_size=2)
    images, _ = next(iter(data.load("tiny_sizes", data_dir=str(tmp_path), batch_size=4,
                                    image_size=8)))
    assert images.shape == (4, 8, 8, 3)
    # An augmentation keeping each image's size (a flip) was taken to resize them, and the
    # first batch failed in tf.data; one that crops makes them one size.
    with pytest.raises(UserError, match=r"differ in size .*pass image_size"):
        data.load("tiny_sizes", data_dir=str(tmp_path), batch_size=2,
                  augment=data.augment.random_flip)
    crop = functools.partial(data.augment.random_crop, size=8)
    assert next(iter(data.load("tiny_sizes", data_dir=str(tmp_path), batch_size=4,
                               augment=crop)))[0].shape == (4, 8, 8, 3)
    assert sorted(x.shape[0] for x, _ in data.load("tiny_sizes", data_dir=str(tmp_path),
                                                   batch_size=None)) == [10, 12, 14, 16]
    TinyShapes(data_dir=str(tmp_path)).download_and_prepare()
    with pytest.raises(UserError, match=r"center_crop=20 is larger than the 16x16 images of "
                                        r"TFDS dataset 'tiny_shapes'"):
        data.load("tiny_shapes", data_dir=str(tmp_path), center_crop=20)
    assert next(iter(data.load("tiny_shapes", data_dir=str(tmp_path), center_crop=10)))[
        0].shape == (12, 10, 10, 3)


def test_tfds_folder_of_a_dataset_with_configs_in_the_working_directory(tmp_path,
                                                                       monkeypatch):
    """`--dataset tiny_configs/small --data-dir .` keeps tiny_configs/small/1.0.0: it was
    refused as TFDS' folder with the wrong data_dir to give, the dataset's default config
    was read as an image folder, and another config was a "Dataset folder not found"."""
    monkeypatch.setattr(datasets, "_online", lambda: True)
    TinyConfigs(data_dir=str(tmp_path), config="small").download_and_prepare()
    monkeypatch.chdir(tmp_path)
    for name in ("tiny_configs/small", "tiny_configs", "tiny_configs/large"):
        assert data.info(name, data_dir=".").splits == {"train": 12, "test": 6}, name
    assert os.path.isdir(tmp_path / "tiny_configs" / "large" / "1.0.0")  # TFDS prepared it
    for name in ("tiny_configs/small", "tiny_configs"):
        with pytest.raises(UserError, match=r"is TFDS' folder of the prepared dataset "
                                            r"'tiny_configs/(small|large)'.* give --dataset "
                                            rf"tiny_configs/(small|large) --data-dir "
                                            rf"{re.escape(str(tmp_path))} "):
            data.info(name)
    with pytest.raises(UserError, match=r"give --dataset tiny_configs/small --data-dir "
                                        rf"{re.escape(str(tmp_path))} "):
        data.info(str(tmp_path / "tiny_configs" / "small"), data_dir=str(tmp_path))


def test_dataset_paths_from_the_home_folder_and_digits_resized_by_preprocess(
        image_folder, monkeypatch):
    """"~/shapes" is the home's folder, as a shell reads it (it was "Dataset folder not
    found"); digits resized by `preprocess` take a crop larger than their 32 pixels."""
    monkeypatch.setenv("HOME", str(image_folder.parent))
    assert data.info("~/shapes").splits == {"test": 6, "train": 18}
    assert len(list(data.load("~/shapes", "test", batch_size=None, image_size=8))) == 6
    images, _ = next(iter(data.load("digits", "test", batch_size=2, center_crop=227,
                                    preprocess=data.alexnet_preprocess)))
    assert images.shape == (2, 227, 227, 3)
    with pytest.raises(UserError, match=r"`center_crop` must be at most the image size, 32 "
                                        r"after `preprocess`; received 40"):
        data.load("digits", center_crop=40, preprocess=lambda image: image / 255.0)
    # class_names with a mistyped folder: that it is not found, not that TFDS reads it.
    with pytest.raises(UserError, match=r"Dataset folder not found: './shapez'"):
        data.load("./shapez", class_names=["cat", "dog"])


def test_the_offline_probe_leaves_a_proxied_download_to_try(monkeypatch):
    """Behind HTTPS_PROXY a direct connection to Google fails though the download would
    not: the probe answers True at once (it refused every download there)."""
    for variable in datasets._PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    probed = []

    def no_direct_route(address, timeout):
        probed.append(address)
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets.socket, "create_connection", no_direct_route)
    assert not datasets._online(timeout=0.5) and probed
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    probed.clear()
    assert datasets._online(timeout=0.5) and not probed


def test_tfds_examples_are_shuffled_encoded_then_decoded(tmp_path, monkeypatch):
    """As an image folder's files: the shuffle buffer holds TFDS' encoded images, not the
    decoded, resized float32 ones (10,000 ImageNet photos at 256x256: 7.9 GB), and every
    example still comes out once, decoded, in an order the seed decides."""
    TinySizes(data_dir=str(tmp_path)).download_and_prepare()
    sources = []
    by_epoch = datasets._by_epoch
    monkeypatch.setattr(datasets, "_by_epoch", lambda source, *args: (
        sources.append(source) or by_epoch(source, *args)))

    def pixels(**kwargs):
        ds = data.load("tiny_sizes", batch_size=None, image_size=6, data_dir=str(tmp_path),
                       **kwargs)
        return [round(float(x[0, 0, 0]), 3) for x, _ in ds]

    shuffled = pixels(shuffle=True, seed=1)
    assert sources[0].element_spec[0].dtype == tf.string
    assert sorted(shuffled) == sorted(pixels(shuffle=False)) == [0.0, 9.0, 18.0, 27.0]
    assert pixels(shuffle=True, seed=1) == shuffled


# --- the folder cases users hit (an audit's findings) -----------------------------------------


def test_digits_follow_a_folders_order_of_preprocess_then_resize():
    """load("digits", image_size=67, preprocess=alexnet_preprocess) gave 256x256 images: the
    digits were resized first and preprocess resized them again, where a folder's images
    are preprocessed, then resized. Shrunk below 8x8 the digits are antialiased, as PIL."""
    from PIL import Image

    images, _ = next(iter(data.load("digits", "test", batch_size=2, shuffle=False,
                                    image_size=20, preprocess=data.alexnet_preprocess)))
    raw, _ = datasets.digits_arrays("test", datasets.DIGITS_IMAGE_SIZE)
    expected = data.preprocess.eval_view(data.alexnet_preprocess(tf.constant(raw[0])), 20,
                                         "squash")
    assert images.shape == (2, 20, 20, 3)
    np.testing.assert_allclose(images[0], expected, rtol=1e-5, atol=1e-3)
    from sklearn.datasets import load_digits

    grey = load_digits().images[datasets._digits_split_index("test")[0]].astype("float32")
    pil = np.asarray(Image.fromarray(grey * (255 / 16), mode="F").resize((4, 4),
                                                                         Image.BILINEAR))
    np.testing.assert_allclose(datasets.digits_arrays("test", 4)[0][0, :, :, 0], pil,
                               atol=1e-3)


def test_class_names_empty_classes_and_split_names_as_users_meet_them(image_folder):
    """An empty class folder was a class without a word; a 'Train/' folder was not
    shuffled; an unknown slice listed only the splits it named."""
    root = str(image_folder)
    (image_folder / "train" / "empty").mkdir()
    with pytest.warns(UserWarning, match=r"has 1 class folder\(s\) holding no image in any "
                                         r"split \(empty\): each is a class of no example"):
        assert data.info(root).class_names == ("cat", "dog", "empty")
    (image_folder / "train" / "empty").rmdir()
    with pytest.raises(UserError, match=r"\(available: 'train' \(18 images\), 'test', sliced"):
        data.load(root, "train[:500]")
    os.rename(image_folder / "train", image_folder / "Train")
    orders = [[int(y) for _, y in data.load(root, "Train", batch_size=None, image_size=8,
                                            seed=seed)] for seed in (0, 1)]
    assert orders[0] != sorted(orders[0]) and orders[0] != orders[1]


def test_a_check_inside_augment_is_the_users_error_not_autographs(image_folder):
    """random_crop's size check inside data.load's augment came out as AutoGraph's
    StagingError, which `except UserError` and the zoo command's one line missed."""
    import functools

    with pytest.raises(UserError, match=r"^A random 40x40 crop needs images of at least that "
                                        r"size; received images of shape \(32, 32, 3\)"):
        data.load("digits", augment=functools.partial(data.augment.random_crop, size=40))
    for split in ("train", "test"):  # (preprocess: in a pass by epoch, and in none)
        with pytest.raises(UserError, match=r"^A central 40x40 crop needs images of at least"):
            data.load("digits", split, preprocess=lambda image: data.preprocess.center_crop(
                image, 40))
    with pytest.raises(UserError, match=r"^A central 40x40 crop"):  # (wrapped twice)
        data.load("digits", "test", preprocess=tf.function(
            lambda image: data.preprocess.center_crop(image, 40)))


def test_an_image_that_fails_to_decode_mid_epoch_is_one_line(tmp_path, capfd):
    """A JPEG whose data is damaged between intact markers passes the quick check and
    failed mid-epoch with TensorFlow's 'jpeg::Uncompress failed' and no advice; zoo.train
    says what happened and how to name the file. libjpeg's words for a file the full check
    fails on stay off stderr."""
    import zoo
    from tests.helpers import tiny_model

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        folder = tmp_path / "photos" / "train" / label
        folder.mkdir(parents=True)
        for i in range(2):
            _write(folder / f"{i}.jpg", rng.integers(0, 255, (64, 64, 3), np.uint8), "jpeg")
    bad = tmp_path / "photos" / "train" / "b" / "1.jpg"
    encoded = bytearray(bad.read_bytes())
    encoded[300:-2] = bytes(len(encoded) - 302)  # the markers kept, the data gone
    bad.write_bytes(bytes(encoded))
    train = data.load(str(tmp_path / "photos"), "train", image_size=8, batch_size=2)
    with pytest.raises(UserError, match=r"^An image of the training data could not be decoded "
                                        r"mid-epoch \(.*\); TensorFlow does not name the file\. "
                                        r"For an image folder, data.load\(\.\.\., "
                                        r"verify='decode'\) names it"):
        zoo.train(tiny_model, train, epochs=1, verbose=0)
    capfd.readouterr()
    skipped = (tmp_path / "photos" / "train" / "a" / "0.jpg").read_bytes()
    sos = skipped.index(b"\xff\xda")
    (tmp_path / "photos" / "train" / "a" / "2.jpg").write_bytes(skipped[:sos] + b"\xff\xd9")
    with pytest.warns(UserWarning, match=r"Skipped 2 bad image file"):
        data.load(str(tmp_path / "photos"), "train", image_size=8, verify="decode",
                  on_bad_image="skip")
    assert "JPEG" not in capfd.readouterr().err


def test_jpegs_cut_short_at_any_point_are_named_without_tensorflows_lines(tmp_path, capfd):
    """TensorFlow's decoder logs 'E0000 ... jpeg_mem.cc:331] Premature end of JPEG data.
    Stopped at line 0/40' of a JPEG cut just after its scan header, or before its end
    marker: those lines (with absl's first-log line before them) reached zoo predict's
    stderr above its one line naming the file."""
    path = tmp_path / "photo.jpg"
    _write(path, np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8), "jpeg")
    whole = path.read_bytes()
    scan = whole.index(b"\xff\xda")
    capfd.readouterr()
    for cut in (scan + 20, len(whole) // 2, len(whole) - 2):
        path.write_bytes(whole[:cut])
        assert data.folder.image_problem(str(path)).startswith(
            "truncated: no end-of-image marker, and it cannot be decoded")
    assert capfd.readouterr().err == ""


def test_the_closest_dataset_name_is_found_without_asking_a_server(monkeypatch):
    """An unknown name's suggestion listed TFDS' community datasets too, which asks Google
    Cloud Storage: zoo train --dataset flowers.v2 printed TensorFlow's failed credentials
    lookup ('google_auth_provider.cc ... All attempts to get a Google authentication bearer
    token failed') above its one line."""
    from tensorflow_datasets.core import community

    def asked(*args, **kwargs):
        raise AssertionError("the community datasets were listed (a server asked)")

    monkeypatch.setattr(community, "community_register", asked)
    with pytest.raises(UserError, match=r"^Unknown dataset 'flowers\.v2' \(did you mean "
                                        r"'tf_flowers'\?\)"):
        data.load("flowers.v2", "train")
