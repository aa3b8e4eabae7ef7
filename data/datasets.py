"""``data.load`` and ``data.info``: the embedded digits, any TFDS dataset, image folders.

Every source becomes the same thing: a batched, prefetched ``tf.data.Dataset`` of
``(image, label)`` with float32 RGB images in [0, 255] and int32 labels.
"""

import contextlib
import dataclasses
import difflib
import inspect
import json
import os
import random
import re
import socket
import threading
import warnings

import numpy as np
import tensorflow as tf

from data import folder
from data.preprocess import alexnet_preprocess
from data.preprocess import center_crop as _center_crop
from data.preprocess import eval_view, resize_and_center_crop
from data.tta import crop_scale
from safeio.checks import (UserError, check_bool, check_non_negative_int, check_positive_int,
                           is_int)

DIGITS = "digits"
DIGITS_CLASSES = tuple(str(d) for d in range(10))
DIGITS_IMAGE_SIZE = 32


class DatasetNotPreparedError(RuntimeError):
    """A TFDS dataset is not on disk and cannot be downloaded or built here."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a dataset holds: its class names, examples per split and image shape."""

    name: str
    class_names: tuple
    splits: dict
    image_shape: tuple  # (height, width, 3); None where images differ in size, or where
    # they are not opened to tell (an image folder's: `image_size` or a resize then decides)

    @property
    def num_classes(self):
        return len(self.class_names)


# --- the embedded dataset --------------------------------------------------------------------


def _digits_split_index(split):
    """The fixed split of the 1,797 digits: test i % 5 == 0, validation i % 10 == 1.

    Splits slice and add as in TFDS (its own parser reads them): ``"train[:400]"``,
    ``"train[50%:]"`` (percentages round to the closest example), ``"train+validation"``.
    """
    index = np.arange(1797)
    masks = {
        "test": index % 5 == 0,  # 360 images
        "validation": index % 10 == 1,  # 180 images
        "train": (index % 5 != 0) & (index % 10 != 1),  # 1,257 images
    }
    sizes = {name: int(masks[name].sum()) for name in ("train", "validation", "test")}
    parts = _split_parts(split, sizes, DIGITS)
    return np.concatenate([index[masks[part.splitname]][part.from_:part.to]
                           for part in parts])


def _split_parts(split, sizes, name, others=()):
    """``split`` read by TFDS' own parser (``"train[:400]"``, ``"train[50%:]"``,
    ``"train+validation"``, ``"all"``) against the ``sizes`` of ``name``'s splits: its
    parts, or one line for an unknown split, a slice past the end or no examples (naming
    the splits there are: ``others`` too, the splits not counted)."""
    import tensorflow_datasets as tfds

    shown = ", ".join([f"{s!r} ({n:,} images)" for s, n in sizes.items()]
                      + [repr(s) for s in others if s not in sizes])
    available = (f"available: {shown}, sliced and added as in TFDS ('train[:400]', "
                 "'train[:50%]', 'train+validation')")
    try:
        parts = tfds.core.ReadInstruction.from_spec(str(split)).to_absolute(
            {s: _SplitSize(n) for s, n in sizes.items()})
    except (ValueError, AssertionError, NotImplementedError) as err:  # ("all[:10%]")
        reason = str(err).strip().splitlines()[-1]  # TFDS' first line is a link
        if "Unknown split" in reason or "Unrecognized split format" in reason:
            raise UserError(f"Unknown split {split!r} of {name!r}; {available}.") from None
        raise UserError(f"Split {split!r} of {name!r}: {reason} ({available}).") from None
    count = sum(len(range(sizes[p.splitname])[p.from_:p.to]) for p in parts)
    if count == 0:
        raise UserError(f"Split {split!r} of {name!r} holds no examples ({available}).")
    return parts


@dataclasses.dataclass(frozen=True)
class _SplitSize:
    """What TFDS' split parser reads of a split: its size (one shard)."""

    num_examples: int

    @property
    def shard_lengths(self):
        return [self.num_examples]


def digits_arrays(split="train", image_size=DIGITS_IMAGE_SIZE):
    """The embedded digits as NumPy arrays ``(images, labels)``.

    scikit-learn's 1,797 real 8x8 handwritten digits (16 grey levels, shipped inside the
    package, no download), scaled to [0, 255], resized bilinearly to ``image_size`` and
    repeated into three channels. The split is fixed: every 5th image (index % 5 == 0) is
    test (360), index % 10 == 1 is validation (180), the other 1,257 are train.

    Example:

    >>> images, labels = digits_arrays("test", image_size=32)
    >>> images.shape, labels.shape
    ((360, 32, 32, 3), (360,))
    """
    from sklearn.datasets import load_digits

    _check_image_size(image_size)
    raw = load_digits()
    index = _digits_split_index(split)
    grey = raw.images[index, :, :, None].astype("float32") * (255.0 / 16.0)
    images = tf.image.resize(grey, (image_size, image_size), method="bilinear",
                             antialias=True)  # (shrunk as PIL does; enlarged the same)
    images = tf.clip_by_value(tf.repeat(images, 3, axis=-1), 0.0, 255.0).numpy()
    return images, raw.target[index].astype("int32")


# --- TFDS ---------------------------------------------------------------------------------


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def _online(host="storage.googleapis.com", port=443, timeout=3.0):
    """Whether ``host`` answers within ``timeout`` seconds (DNS included, never hangs).
    Behind a proxy (``HTTPS_PROXY``, ``ALL_PROXY``) a direct connection proves nothing:
    the download is left to try, through the proxy."""
    if any(os.environ.get(variable) for variable in _PROXY_VARIABLES):
        return True
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(result)


def _looks_like_a_folder(name):
    """A path (``/…``, ``./…``, ``~/…``, ``photos/``, or under a folder that exists here,
    unless that is TFDS' own folder of the dataset), not a TFDS name such as ``cifar10`` or
    ``imagenette/320px``."""
    name = str(name)
    head = name.split("/")[0]
    return (name.startswith(("/", ".", "~")) or name.endswith(("/", os.sep))
            or os.path.splitdrive(name)[0] != ""
            or os.sep in name and os.path.isdir(head) and _tfds_folder(head) is None)


def _tfds_builder(name, data_dir):
    import tensorflow_datasets as tfds

    if os.path.isfile(name):
        raise UserError(f"{name} is a file: a dataset is {DIGITS!r}, an image folder "
                        f"({os.path.join('ROOT', 'SPLIT', 'CLASS_NAME')}/*.jpg) or a TensorFlow "
                        "Datasets name.")
    if _looks_like_a_folder(name):
        raise _folder_not_found(name)
    if data_dir is not None:  # "~/tfds" is the user's home, as in a shell (TFDS: ./~/tfds)
        data_dir = os.path.expanduser(os.fspath(data_dir))
        if os.path.exists(data_dir) and not os.path.isdir(data_dir):
            raise UserError(f"data_dir {data_dir} is a file: give the folder TFDS prepares "
                            "its datasets in (zoo: --data-dir DIR).")
    try:
        # (TFDS warns through absl of a folder it finds without its dataset_info.json: a
        # second line beside ours, which says what is missing)
        with _absl_quiet():
            return tfds.builder(name, data_dir=data_dir)
    except AssertionError as err:  # TFDS asserts on a version it does not have
        raise UserError(f"TFDS dataset {name!r}: "
                        + " ".join(str(err).split('": ')[-1].split())) from None
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as err:
        why = "" if isinstance(err, tfds.core.registered.DatasetNotFoundError) else (
            f" ({str(err).splitlines()[0]})")  # TFDS could not parse it: "flowers.v2"
        # (Not the community datasets: listing them asks Google Cloud Storage, and logged a
        # failed credentials lookup above the line)
        close = difflib.get_close_matches(
            str(name), [DIGITS, *tfds.list_builders(with_community_datasets=False)], n=1)
        raise UserError(
            f"Unknown dataset {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            + f": it is not {DIGITS!r}, not an existing image folder, and not a TensorFlow "
            f"Datasets name{why} (see tfds.list_builders())."
        ) from None


def _tfds_features(builder, name):
    """The image and label features of ``builder`` that ``as_supervised`` reads (its
    supervised keys), or one line where they are not an image and its class."""
    import tensorflow_datasets as tfds

    features = builder.info.features
    keys = builder.info.supervised_keys
    has = "; features: " + ", ".join(f"{key} ({type(feature).__name__})"
                                     for key, feature in features.items())
    if not (isinstance(keys, tuple) and len(keys) == 2
            and all(isinstance(key, str) and key in features for key in keys)):
        raise UserError(f"TFDS dataset {name!r} has no (image, label) pair to read: its "
                        f"supervised keys are {keys!r}{has}. The zoo reads datasets of "
                        "images with class labels (tfds.features.Image, ClassLabel).")
    image, label = (features[key] for key in keys)
    if not (isinstance(image, tfds.features.Image)
            and isinstance(label, tfds.features.ClassLabel)):
        raise UserError(f"TFDS dataset {name!r} pairs {keys[0]!r} "
                        f"({type(image).__name__}) with {keys[1]!r} ({type(label).__name__}); "
                        "the zoo reads an image (tfds.features.Image) with a class label "
                        "(ClassLabel).")
    if image.shape[-1] not in (1, 3, None):
        raise UserError(f"TFDS dataset {name!r} has images of {image.shape[-1]} channels "
                        f"(shape {image.shape}); the zoo reads grey (1) or RGB (3) images.")
    return image, label


@contextlib.contextmanager
def _absl_quiet():
    """absl's (TFDS's) warnings held back while TFDS looks for a dataset."""
    import logging

    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)


def _prepared(name, data_dir, manual_dir):
    """``(builder, image, label)`` of TFDS dataset ``name``: its features checked first (a
    dataset that is no images with classes is one line before any download), then
    prepared, as :func:`load` and :func:`info` read it."""
    builder = _tfds_builder(name, data_dir)
    image, label = _tfds_features(builder, name)
    _prepare(builder, name, manual_dir, data_dir)
    return builder, image, label


def _prepare(builder, name, manual_dir, data_dir=None):
    import tensorflow_datasets as tfds

    with _absl_quiet():  # (its check warns of the same folder)
        if builder.is_prepared():
            return
    needs_manual = bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
    if not needs_manual and not _online():
        raise DatasetNotPreparedError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir} and this machine "
            "cannot reach the internet to download it. Prepare it on a machine with network "
            f"access (`tfds build {name} --data_dir DIR`), copy DIR here and pass "
            "data_dir=DIR (zoo: --data-dir DIR)."
            + ("" if data_dir is None or "://" in os.fspath(data_dir)  # (gs://: TFDS's)
               or os.path.isdir(os.path.expanduser(os.fspath(data_dir)))
               else f" (data_dir {data_dir} does not exist: a typo?)")
        )
    if manual_dir is not None:
        manual_dir = os.path.expanduser(os.fspath(manual_dir))
    if needs_manual:  # (TFDS said so after its "Downloading and preparing" line, and after
        # making its download folders in the user's data_dir)
        folder = manual_dir or os.path.join(os.fspath(builder.data_dir_root), "downloads",
                                            "manual")
        if "://" not in folder and not (os.path.isdir(folder) and os.listdir(folder)):
            raise DatasetNotPreparedError(
                f"TFDS dataset {name!r} needs files downloaded by hand: Manual directory "
                f"{folder} does not exist or is empty. Create it and download/extract dataset "
                "artifacts in there using instructions: "
                + " ".join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split()))
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    except AssertionError as err:  # TFDS asserts on a missing or empty manual_dir
        # TFDS's text names the folder it looked in (by default DATA_DIR/downloads/manual)
        # and what belongs there; one line, as the command line prints it.
        raise DatasetNotPreparedError(
            f"TFDS dataset {name!r} needs files downloaded by hand: "
            + " ".join(str(err).split())) from None


@contextlib.contextmanager
def _user_errors_untraced():
    """A :class:`UserError` raised while tf.data traces a function (``augment``'s check
    of its crop size) as itself: AutoGraph wraps it in a ``StagingError``, which
    ``except UserError`` (and the ``zoo`` command's one line) did not catch."""
    try:
        yield
    except Exception as err:
        if not type(err).__module__.startswith("tensorflow.python.autograph"):
            raise
        cause = err.__cause__ or err.__context__  # through AutoGraph's wrappings alone (a
        while type(cause).__module__.startswith("tensorflow.python.autograph"):  # user's
            cause = cause.__cause__ or cause.__context__  # tf.function wraps it twice), not
        if not isinstance(cause, UserError):  # into an error a user's function handled
            raise
        raise cause from None


@contextlib.contextmanager
def _seed_alone():
    """Random tf.data ops made inside take their randomness from their own ``seed`` alone.

    TensorFlow pairs an op's seed with the global seed (``tf.random.set_seed``,
    ``keras.utils.set_random_seed``), so the same ``data.load(seed=...)`` would shuffle
    differently after a different global seed. Inside, the global seed reads as unset,
    and the op's seed is paired with TensorFlow's fixed default instead. Nothing else
    changes: the sequence of seeds given to unseeded ops is left as it was.
    """
    from tensorflow.python.eager import context

    ctx = context.context()
    saved = ctx._seed
    ctx._seed = None
    try:
        yield
    finally:
        ctx._seed = saved


SHUFFLE_BUFFER = 10_000  # examples of TFDS sources (encoded images), at least for others


def _by_epoch(source, seed, shuffle, augment, transform=lambda ds: ds, buffer=SHUFFLE_BUFFER):
    """``transform(source)`` shuffled and augmented anew on each pass, with the randomness
    of pass ``e`` derived from ``(seed, e)`` alone (no global or iterator state), so that a
    resumed run replays the epochs of an uninterrupted one. The shuffle (a ``buffer`` of
    examples) is of ``source``, before ``transform`` decodes and resizes; the augmentation
    after it. Returns the dataset and its pass counter, a variable read and advanced as
    each pass starts (see :func:`set_epoch`)."""
    counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")
    seed = tf.constant(seed, tf.int64)

    def one_pass(_):
        epoch = counter.assign_add(1) - 1
        keys = tf.random.stateless_uniform([2], seed=tf.stack([seed, epoch]), minval=None,
                                           maxval=None, dtype=tf.int64)
        examples = source
        if shuffle:
            examples = examples.shuffle(buffer, seed=keys[0] % (2**31 - 1),
                                        reshuffle_each_iteration=False)
        examples = transform(examples)
        if augment is not None:  # example i of pass e gets the stateless seed (key_e, i)
            examples = tf.data.Dataset.zip((examples, tf.data.Dataset.counter())).map(
                lambda example, i: (augment(example[0], tf.stack([keys[1], i])), example[1]),
                num_parallel_calls=tf.data.AUTOTUNE)
        return examples

    with _seed_alone(), _user_errors_untraced():
        passes = tf.data.Dataset.range(1).flat_map(one_pass)
    cardinality = int(source.cardinality())
    if cardinality >= 0:  # flat_map hides it; Keras needs it for the progress bar
        passes = passes.apply(tf.data.experimental.assert_cardinality(cardinality))
    return passes, counter


def set_epoch(dataset, epoch):
    """Make the next pass over ``dataset`` (from :func:`load`) shuffle and augment as epoch
    ``epoch`` (0-based) does; later passes follow as ``epoch + 1``, ``epoch + 2`` ...

    Each pass over a shuffled or augmented ``load`` dataset takes its randomness from
    ``(seed, epoch)`` and nothing else, where the epoch counts the passes made so far.
    ``zoo.train`` calls this at the start of fit with the epoch it resumes at, so that an
    interrupted run replays exactly what the uninterrupted one saw (as PyTorch's
    ``DistributedSampler.set_epoch``). A dataset without randomness ignores it.

    Example:

    >>> ds = load("digits", "train", batch_size=64)
    >>> set_epoch(ds, 3)     # the next pass is epoch 3's order and augmentation
    """
    check_non_negative_int(epoch, "epoch")
    if not hasattr(dataset, "_zoo_epoch"):
        raise UserError(
            f"set_epoch needs the dataset `data.load` returned, not one made from it or "
            f"elsewhere; received {type(dataset).__name__}. Transform the images with "
            f"load's `preprocess`/`augment` arguments to keep its epochs.")
    if dataset._zoo_epoch is not None:
        dataset._zoo_epoch.assign(int(epoch))


def _tfds_dataset(name, split, data_dir, manual_dir, shuffle_files, seed=0):
    """``(examples, decode, shape)``: the split's ``(encoded image, label)`` examples, the
    step that decodes them into float32 RGB images, and the images' declared shape. As an
    image folder's files, they are shuffled before decoding: a buffer of 10,000 encoded
    ImageNet photos is about 1.1 GB, where decoded and resized to 256x256 it was 7.9 GB."""
    import tensorflow_datasets as tfds

    builder, image, _ = _prepared(name, data_dir, manual_dir)
    _split_parts(split, {s: builder.info.splits[s].num_examples  # known once prepared
                         for s in builder.info.splits}, name)
    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=shuffle_files,
                            decoders={builder.info.supervised_keys[0]:
                                      tfds.decode.SkipDecoding()},
                            read_config=tfds.ReadConfig(
                                shuffle_seed=seed, shuffle_reshuffle_each_iteration=False))
    ds = ds.map(lambda encoded, label: (encoded, tf.cast(label, tf.int32)))

    # 8-bit JPEGs and PNGs as an image folder's (a JPEG as PIL, and so torchvision, decodes
    # it: TFDS' own decoder takes TensorFlow's fast DCT); other encodings by TFDS.
    plain = image.dtype == tf.uint8 and getattr(image, "encoding_format", None) in (
        None, "jpeg", "png")
    channels = image.shape[-1] or 0

    def decode(examples):
        return examples.map(
            lambda encoded, label: (_to_rgb(folder.decode_image(encoded, channels) if plain
                                            else image.decode_example(encoded)), label),
            num_parallel_calls=tf.data.AUTOTUNE)

    return ds, decode, tuple(image.shape)


def _to_rgb(image):
    image = tf.cast(image, tf.float32)
    if image.shape[-1] == 1:
        image = tf.repeat(image, 3, axis=-1)
    return image


# --- one entry point ---------------------------------------------------------------------


MAX_IMAGE_SIZE = 4096  # (10**6 asked TensorFlow for 12 TB an image: out of memory)
MAX_SCALE = crop_scale(MAX_IMAGE_SIZE)  # (4681) what crops of the largest size load at


def _check_image_size(image_size):
    check_positive_int(image_size, "image_size", allow_none=True)
    if image_size is not None and image_size > MAX_IMAGE_SIZE:
        raise UserError(f"`image_size` must be at most {MAX_IMAGE_SIZE}; received "
                        f"{image_size:,}.")


def _check_name(name):
    """A dataset name or folder path (None and numbers were Python's TypeError). A path
    object is a folder's, never the digits' or a TFDS name: ``Path("digits")`` is
    ``"./digits"``, and one that is no folder is one line (TFDS' TypeError)."""
    if not isinstance(name, (str, os.PathLike)):
        raise UserError(f"A dataset is {DIGITS!r}, an image folder's path or a TensorFlow "
                        f"Datasets name; received {name!r:.80} ({type(name).__name__}).")
    if isinstance(name, str):
        return name
    path = os.fspath(name)
    if not os.path.isabs(path) and not path.startswith((".", "~")):
        path = os.path.join(os.curdir, path)
    if not os.path.isdir(os.path.expanduser(path)):
        raise _folder_not_found(path)
    return path


def _folder_not_found(name):
    return UserError(f"Dataset folder not found: {name!r} (expected "
                     f"{os.path.join(str(name), 'SPLIT', 'CLASS_NAME')}/*.jpg).")


def from_arrays(images, labels, num_classes=None):
    """An unbatched ``(image, label)`` dataset from arrays, checking the labels.

    Example:

    >>> ds = from_arrays(np.zeros((4, 8, 8, 3)), [0, 1, 2, 1], num_classes=3)
    """
    images = np.asarray(images, dtype="float32")
    labels = np.asarray(labels)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise UserError(
            f"`images` must have shape (N, height, width, 1 or 3); received {images.shape}."
        )
    if num_classes is not None:  # ("3" was NumPy's UFuncTypeError, 2.5 and True taken)
        check_positive_int(num_classes, "num_classes", allow_none=True)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(
            f"`labels` must be {len(images)} integers, one per image; received shape "
            f"{labels.shape} of {labels.dtype}."
        )
    limit = np.iinfo(np.int32).max if num_classes is None else num_classes
    if len(labels) and (labels.min() < 0 or labels.max() >= limit):
        bad = labels[(labels < 0) | (labels >= limit)]
        raise UserError(
            f"Labels must lie in [0, {limit}); received {bad[:5].tolist()} "
            f"({len(bad)} out of range)."
        )
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return tf.data.Dataset.from_tensor_slices((images, labels.astype("int32")))


def _folder_files(root, split, on_bad_image, verify, class_names, max_pixels, same_size,
                  crop=None):
    """The split's ``(path, label)`` pairs, as tf.data strings: the files are listed class
    by class, so they are shuffled as paths (every file in the buffer) before decoding.
    Paths are passed as bytes: a name that is not UTF-8 (``os.listdir`` escapes its bytes)
    reads as the file it names. A split sliced or added as in TFDS (:func:`_folder_slices`)
    reads the examples it names."""
    def scan(part, allow_empty=False):
        return folder.scan(root, part, on_bad_image, verify, class_names, max_pixels,
                           allow_empty)[:2]

    paths, labels = (scan(split) if split in folder.splits(root) else
                     _folder_slices(root, str(split), scan))
    if same_size:
        _check_same_size(paths)
    if crop is not None:
        _check_crop_fits(paths, crop)
    return tf.data.Dataset.from_tensor_slices(
        (np.array([os.fsencode(p) for p in paths], dtype=object),
         np.asarray(labels, "int32")))


def _folder_slices(root, split, scan):
    """``(paths, labels)`` of a folder's ``split`` sliced and added as TFDS reads them
    (``"train[:320]"``, ``"train[:10%]+validation"``, ``"all"``), each split's files in the
    order of TFDS' ``ImageFolder`` (sorted, then shuffled by ``random.Random(split)``), so
    that a slice is not the first class's files alone."""
    if split.split("[")[0].strip() == "all":  # (a split folder of no images is none)
        found = {s: scan(s, allow_empty=True) for s in folder.splits(root)}
        found = {s: files for s, files in found.items() if files[0]}
    else:  # (an unknown split: one line naming those there are)
        found = {name: scan(name) for name in dict.fromkeys(
            part.split("[")[0].strip() for part in split.split("+"))}
    examples = {}
    for name, (paths, labels) in found.items():
        pairs = sorted(zip(paths, labels),  # TFDS: class folders by name, then their files
                       key=lambda pair: (os.path.basename(os.path.dirname(pair[0])), pair[0]))
        random.Random(name).shuffle(pairs)
        examples[name] = pairs
    parts = _split_parts(split, {name: len(pairs) for name, pairs in examples.items()}, root,
                         others=folder.splits(root))
    chosen = [pair for part in parts for pair in examples[part.splitname][part.from_:part.to]]
    return [path for path, _ in chosen], [label for _, label in chosen]


def _decoded(files):
    return files.map(lambda path, label: (folder.decode(path), label),
                     num_parallel_calls=tf.data.AUTOTUNE)


def is_image_folder(name, data_dir=None):
    """Whether ``name`` is read as an image folder: a directory, unless it is TFDS' own
    folder of a prepared dataset (``cifar10/3.0.2/dataset_info.json``, or
    ``imagenette/320px/1.0.0/...`` for a dataset with configs), which ``--dataset cifar10
    --data-dir .`` leaves in the working directory. Named by its TFDS name, in ``data_dir``
    (or TFDS' default folder without one), TFDS reads it; otherwise it is one line giving
    the name and the data_dir to use (it was scanned as a folder of no images)."""
    name = _expand_home(name)
    if not os.path.isdir(name):
        return False
    found = _tfds_folder(name)
    if found is None:
        return True
    tfds_name, root = found
    if data_dir is None:
        from tensorflow_datasets.core.constants import DATA_DIR as data_dir
    data_dir = os.path.expanduser(os.fspath(data_dir))
    given = os.fspath(name).rstrip("/")  # ("./cifar10" is a path: told the TFDS name)
    if given in (tfds_name, tfds_name.split("/")[0]) and os.path.isdir(data_dir) and (
            os.path.samefile(data_dir, root)):
        return False
    raise UserError(f"{name} is TFDS' folder of the prepared dataset {tfds_name!r}, not an "
                    "image folder (root/split/class_name/image.jpg): to read it with TFDS, "
                    f"give --dataset {tfds_name} --data-dir {root} (data.load({tfds_name!r}, "
                    f"data_dir={root!r})).")


_VERSION = re.compile(r"\d+\.\d+\.\d+")  # TFDS' version folders: 3.0.2


def _subfolders(path):
    try:
        return sorted(entry.name for entry in os.scandir(path) if entry.is_dir())
    except OSError:  # (unreadable: the folder's own reading names it)
        return []


def _dataset_info(folder):
    """``(name, config)`` that TFDS' ``dataset_info.json`` in ``folder`` records, or None."""
    try:
        with open(os.path.join(folder, "dataset_info.json"), encoding="utf-8") as f:
            info = json.load(f)
        return info.get("name"), info.get("configName") or None
    except (OSError, ValueError, AttributeError):
        return None


def _tfds_folder(path):
    """``(TFDS name, data_dir)`` where ``path`` is TFDS' folder of a prepared dataset, as
    its ``dataset_info.json`` says: ``DATA_DIR/cifar10`` (holding ``3.0.2/``),
    ``DATA_DIR/imagenette/320px`` (a config's, holding ``1.0.0/``) or ``DATA_DIR/imagenette``
    (holding ``320px/1.0.0/``); None for any other folder, an image folder beside which such
    a dataset was prepared included."""
    path = os.path.abspath(path)
    base, parent = os.path.basename(path), os.path.dirname(path)
    for entry in _subfolders(path):
        if _VERSION.fullmatch(entry):
            info = _dataset_info(os.path.join(path, entry))
            if info == (base, None):
                return base, parent
            if info == (os.path.basename(parent), base):
                return f"{info[0]}/{base}", os.path.dirname(parent)
            continue
        for version in filter(_VERSION.fullmatch, _subfolders(os.path.join(path, entry))):
            if _dataset_info(os.path.join(path, entry, version)) == (base, entry):
                return f"{base}/{entry}", parent
    return None


def _check_no_class_names(name, class_names, data_dir=None):
    """``class_names`` orders an image folder's class folders; a TFDS dataset numbers its
    own classes, and ignoring the names would leave the user believing them applied. (A
    name that is neither, a mistyped folder, is that line first.)"""
    if class_names is not None:
        _tfds_builder(name, data_dir)
        raise UserError(f"`class_names` orders an image folder's classes; {name!r} is read "
                        "from TensorFlow Datasets, which numbers its own (data.info(name)"
                        f".class_names lists them); received class_names={class_names!r}.")


def _check_no_digits_class_names(class_names):
    """The digits number their classes '0' to '9': names given for them would be ignored."""
    if class_names is not None:
        raise UserError(f"`class_names` orders an image folder's classes; the embedded digits "
                        f"are numbered '0' to '9' (data.info('digits').class_names); received "
                        f"class_names={class_names!r:.80}.")


def _expand_home(name):
    """A dataset path starting ``~`` in the user's home, as a shell reads it."""
    return os.path.expanduser(name) if str(name).startswith("~") else name


def _on_images(function):
    """A step of :func:`load`: ``function`` mapped over the images of a dataset."""
    return lambda ds: ds.map(lambda image, label: (function(image), label),
                             num_parallel_calls=tf.data.AUTOTUNE)


def _check_crop_fits(paths, crop):
    """``center_crop`` of images at their own size: the first image smaller than the crop
    is named before tf.data fails on it mid-epoch (its header gives its size)."""
    for path in paths:
        size = folder.header_size(path)
        if size is not None and min(size) < crop:
            raise UserError(f"center_crop={crop} is larger than {path} ({size[0]}x{size[1]}): "
                            "give image_size or scale to resize the images first, or a "
                            "smaller crop.")


def _resizes(augment):
    """Whether ``augment`` (None, or ``load``'s ``(image, seed) -> image``) may make images
    of every size one size, as a random crop does: False only where, traced on images of
    two sizes, it gives each its own (a flip, the PCA lighting or a colour jitter: images
    of several sizes then failed mid-epoch, in tf.data's batching). A size it does not
    show when traced (a NumPy function's), or a trace that fails, may be a resize."""
    if augment is None:
        return False
    shapes = ((1009, 1013, 3), (1019, 1021, 3))
    try:
        kept = [tuple(tf.function(augment).get_concrete_function(
            tf.TensorSpec(shape, tf.float32), tf.TensorSpec((2,), tf.int64)
        ).structured_outputs.shape) == shape for shape in shapes]
    except Exception:  # noqa: BLE001 (a probe: the pipeline's own run says what is wrong)
        return True
    return not all(kept)


def _check_tfds_sizes(shape, name, batch_size, center_crop, augment):
    """What :func:`_check_same_size` and :func:`_check_crop_fits` say of image folders,
    for a TFDS dataset whose images are not resized: from the ``shape`` its features
    declare, before tf.data fails mid-epoch."""
    height, width = shape[:2]
    if None in (height, width):
        if batch_size is not None and center_crop is None and not _resizes(augment):
            raise UserError(f"The images of TFDS dataset {name!r} differ in size (shape "
                            f"{shape}) and cannot be batched as they are: pass image_size "
                            "(or scale, or center_crop), or batch_size=None.")
    elif center_crop is not None and center_crop > min(height, width):
        raise UserError(f"center_crop={center_crop} is larger than the {height}x{width} "
                        f"images of TFDS dataset {name!r}: give image_size or scale to "
                        "resize them first, or a smaller crop.")


def _check_same_size(paths):
    """Images of different sizes cannot be batched as they are: say so before tf.data does,
    naming two files (their headers give the sizes; none is decoded)."""
    first = folder.header_size(paths[0])
    for path in paths[1:]:
        size = folder.header_size(path)
        if first is not None and size is not None and size != first:
            raise UserError(
                f"Images of different sizes cannot be batched: {paths[0]} is "
                f"{first[0]}x{first[1]} and {path} is {size[0]}x{size[1]}. Pass image_size "
                "(or scale, or center_crop), or batch_size=None.")


def _check_functions(preprocess, augment):
    """Refuse a ``preprocess`` or ``augment`` that is no function (a spec such as "crop"
    failed inside tf.data: "'str' object is not callable")."""
    for arg, value, made in (
            ("preprocess", preprocess, "data.alexnet_preprocess, say"),
            ("augment", augment, "data.augment.from_spec(spec, size, statistics) makes one "
                                 "from a spec such as 'crop+flip'")):
        if value is not None and not callable(value):
            raise UserError(f"`{arg}` must be a function ({made}) or None; received "
                            f"{value!r:.80}.")
    # augment(image, seed), preprocess(image): a function of other arguments failed inside
    # tf.data's tracing (augment=lambda image: image: autograph's error)
    for arg, value, takes in (("preprocess", preprocess, "(image)"),
                              ("augment", augment, "(image, seed)")):
        if value is None:
            continue
        try:
            signature = inspect.signature(value)
        except (TypeError, ValueError):  # (a builtin, or another framework's: not readable)
            continue
        try:
            signature.bind(*[None] * (takes.count(",") + 1))
        except TypeError:
            raise UserError(f"`{arg}` is called as {arg}{takes}; received a function of "
                            f"{signature}.") from None


def load(
    name=DIGITS,
    split="train",
    batch_size=32,
    image_size=None,
    preprocess=None,
    augment=None,
    shuffle=None,
    seed=0,
    data_dir=None,
    manual_dir=None,
    on_bad_image="raise",
    verify="header",
    drop_remainder=False,
    class_names=None,
    scale=None,
    center_crop=None,
    max_pixels=folder.MAX_PIXELS,
):
    """A batched, prefetched ``tf.data.Dataset`` of ``(image, label)``.

    Args:
        name: ``"digits"`` (embedded, offline), the path of an image folder laid out as
            ``root/split/class_name/*.jpg``, or any TensorFlow Datasets name.
        split: ``"train"``, ``"validation"``, ``"test"`` or whatever the source has; TFDS
            slicing such as ``"train[:10%]"`` works.
        batch_size: examples per batch; None for an unbatched dataset.
        image_size: resize every image to ``image_size`` x ``image_size`` (needed to batch
            images of different sizes; bilinear, antialiased when shrinking, as
            torchvision's ``Resize((size, size))``). The digits are 32x32 unless asked
            otherwise.
        preprocess: a function ``image -> image`` applied first, e.g.
            ``data.alexnet_preprocess``; ``image_size``, ``scale`` and ``center_crop``
            apply after it, for the digits too (which it receives at 32x32, resized from
            their 8x8 originals: before 2026-12-06 it received them at ``image_size``).
        augment: a function ``(image, seed) -> image`` from ``data.augment`` (e.g.
            ``data.augment.compose(...)``), given a fresh stateless seed per example and
            epoch. Labels are never touched.
        shuffle: shuffle the examples (default: only for splits starting with "train",
            case aside: a folder's ``Train/`` too).
        seed: seed of the shuffling and of the augmentation seeds; it alone decides them
            (the global seed of ``keras.utils.set_random_seed`` does not). Each pass over
            the dataset (each epoch) shuffles and augments anew, from ``(seed, epoch)``
            alone (see :func:`set_epoch`). TFDS sources read their files in one order,
            shuffled once by ``seed``, then shuffle examples per epoch.
        data_dir, manual_dir: passed to TFDS (``manual_dir`` for datasets such as
            imagenet2012 that are downloaded by hand).
        on_bad_image: image folders: ``"raise"`` on a bad file (naming it) or ``"skip"`` it
            with a warning.
        verify: image folders: ``"header"``, ``"decode"`` or None (see ``data.folder.scan``).
        drop_remainder: drop the last, smaller batch.
        class_names: image folders: the classes in label order (default: the union of the
            class folders of every split, sorted, as TFDS' ``ImageFolder`` numbers them).
        scale: the paper's test and training scale instead of ``image_size``: the shorter
            side resized to ``scale``, then the central ``scale`` x ``scale`` square
            (``data.crop_scale(size)`` for crops of ``size``; the digits are square).
        center_crop: then keep the central ``center_crop`` x ``center_crop`` window (the
            paper's single-crop evaluation), before shuffling and augmentation; with
            ``scale``, one crop of the resized image, as torchvision's ``Resize`` then
            ``CenterCrop`` (``data.resize_and_center_crop``), not of its central square.
        max_pixels: image folders: a file whose header gives more pixels is a bad image
            (PIL's limit, 89,478,485, by default; None: no limit; a GIF's frames count
            together, as TensorFlow decodes them all).

    Example:

    >>> ds = load("digits", "train", batch_size=64)
    >>> images, labels = next(iter(ds))
    >>> images.shape
    TensorShape([64, 32, 32, 3])
    """
    _check_image_size(image_size)
    _check_functions(preprocess, augment)
    # (the folders' options, checked whatever the source: the digits took any)
    folder.check_options(on_bad_image, verify, max_pixels)
    check_bool(shuffle, "shuffle", allow_none=True, what=" (None: the train splits only)")
    check_bool(drop_remainder, "drop_remainder")
    for arg, value, most in (("scale", scale, MAX_SCALE), ("center_crop", center_crop,
                                                           MAX_IMAGE_SIZE)):
        check_positive_int(value, arg, allow_none=True)
        if value is not None and value > most:
            raise UserError(f"`{arg}` must be at most {most}; received {value:,}.")
    if scale is not None and image_size is not None:
        raise UserError(f"Give `image_size` (resize) or `scale` (shorter side, then the "
                        f"central square), not both; received {image_size} and {scale}.")
    check_positive_int(batch_size, "batch_size", allow_none=True)
    if not is_int(seed) or not 0 <= seed < 2**63:  # (2**70: TensorFlow's int64 overflow)
        raise UserError(f"`seed` must be an integer in [0, 2**63); received {seed!r}.")
    name = _expand_home(_check_name(name))
    final_size = scale or image_size or (DIGITS_IMAGE_SIZE if name == DIGITS and preprocess
                                         is None else None)  # (preprocess may resize)
    if center_crop is not None and final_size is not None and center_crop > final_size:
        raise UserError(f"`center_crop` must be at most the image size, {final_size}; "
                        f"received {center_crop}.")
    if shuffle is None:
        shuffle = str(split).strip().lower().startswith("train")
    steps, buffer = [], SHUFFLE_BUFFER  # what each pass does to the source, after shuffling
    encoded = False  # files' paths or encoded images (folders, TFDS): shuffled, then decoded
    if name == DIGITS:
        _warn_if_a_digits_folder(data_dir)
        _warn_tfds_dirs_unused(name, data_dir, manual_dir)
        _check_no_digits_class_names(class_names)
        if preprocess is None:  # resized from the 8x8 originals (square: scale is a resize)
            images, labels = digits_arrays(split, scale or image_size or DIGITS_IMAGE_SIZE)
            scale = image_size = None
        else:  # preprocess, then the sizes, as for a folder's images
            images, labels = digits_arrays(split, DIGITS_IMAGE_SIZE)
        if preprocess is not None and center_crop is not None and final_size is None:
            side = min(tuple(preprocess(tf.constant(images[0])).shape)[:2])  # (one image's)
            if center_crop > side:
                raise UserError(f"`center_crop` must be at most the image size, {side} after "
                                f"`preprocess`; received {center_crop}.")
        ds = from_arrays(images, labels, num_classes=10)
    elif is_image_folder(name, data_dir):
        _warn_tfds_dirs_unused(name, data_dir, manual_dir)
        same_size = batch_size is not None and not (
            final_size or center_crop or preprocess or _resizes(augment))  # none resizes
        ds = _folder_files(name, split, on_bad_image, verify, class_names, max_pixels,
                           same_size, crop=None if final_size or preprocess else center_crop)
        steps.append(_decoded)
        buffer = max(buffer, int(ds.cardinality()))  # paths: cheap to hold every one
        encoded = True
    else:
        _check_no_class_names(name, class_names, data_dir)
        ds, decode, shape = _tfds_dataset(name, split, data_dir, manual_dir,
                                          shuffle_files=shuffle, seed=seed)
        if not (final_size or preprocess):
            _check_tfds_sizes(shape, name, batch_size, center_crop, augment)
        steps.append(decode)
        encoded = True
    if preprocess is not None:
        steps.append(_on_images(preprocess))
    if image_size is not None:  # antialiased: as PIL shrinks
        steps.append(_on_images(lambda image: eval_view(image, image_size, "squash")))
    if scale is not None and center_crop is not None:  # one crop, where torchvision's is
        steps.append(_on_images(lambda image: resize_and_center_crop(image, scale,
                                                                     center_crop)))
    elif scale is not None:
        steps.append(_on_images(lambda image: alexnet_preprocess(image, scale)))
    elif center_crop is not None:
        steps.append(_on_images(lambda image: _center_crop(image, center_crop)))

    def transform(examples):
        with _user_errors_untraced():  # (preprocess, where no pass by epoch wraps it)
            for step in steps:
                examples = step(examples)
        return examples

    if not encoded:  # the digits: images already, resized from their 8x8 originals
        ds, steps = transform(ds), []
    counter = None
    if shuffle or augment is not None:
        ds, counter = _by_epoch(ds, seed, shuffle, augment, transform, buffer)
    else:
        ds = transform(ds)
    if batch_size is not None:
        examples = int(ds.cardinality())
        if drop_remainder and 0 <= examples < batch_size:  # an epoch of no step at all
            raise UserError(f"batch_size={batch_size} with drop_remainder leaves no batch of "
                            f"the {examples} examples of {name!r} {split!r}: give a batch "
                            f"size of at most {examples}.")
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds._zoo_epoch = counter  # read by set_epoch
    return ds


def _warn_untrained_classes(root, scans):
    """Warnings naming the class folders that hold no image in any split, and the classes
    that hold images in a split but none in ``train/``: each is an output the model never
    learns (a ``docs/assets/`` of pictures, beside the splits, added a class "assets" and
    shifted nothing else, silently)."""
    names = next(iter(scans.values()))[2]
    held = {label for _, labels, _ in scans.values() for label in labels}
    empty = [name for label, name in enumerate(names) if label not in held and any(
        os.path.isdir(os.path.join(root, split, name)) for split in scans)]  # (folders:
    # class_names may name classes no folder holds, a model's for a test folder of some)
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5
                                        else "")
        warnings.warn(
            f"The image folder {root} has {len(empty)} class folder(s) holding no image in "
            f"any split ({shown}): each is a class of no example (a model trained here has "
            "an output for each, never trained). Remove the empty folders.", stacklevel=3)
    if "train" not in scans:
        return
    seen = {label for label in scans["train"][1]}
    for split, (_, labels, names) in sorted(scans.items()):
        missing = sorted({names[label] for label in labels if label not in seen})
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more"
                                              if len(missing) > 5 else "")
            warnings.warn(
                f"{split}/ of the image folder {root} holds images of {len(missing)} "
                f"class(es) that train/ has none of ({shown}): the model has an output for "
                f"each, never trained. If {split}/ is no split of the dataset, move it out "
                "of the folder.", stacklevel=3)


def _warn_if_a_digits_folder(data_dir):
    """The name "digits" is the embedded dataset, where any other name is first an image
    folder: say so when an image folder called digits is in the working folder."""
    if is_image_folder(DIGITS, data_dir):
        warnings.warn(f"{DIGITS!r} is the embedded digits dataset: the image folder "
                      f"{os.path.abspath(DIGITS)} here is not read. Name it "
                      f"'./{DIGITS}' to load it.", stacklevel=3)


def _warn_tfds_dirs_unused(name, data_dir, manual_dir):
    """``data_dir`` and ``manual_dir`` are TFDS' folders: say that they are not read for
    the digits or an image folder (``load("photos", data_dir="/datasets")`` reads ./photos,
    not /datasets/photos)."""
    given = [f"{arg}={value!r}" for arg, value in (("data_dir", data_dir),
                                                   ("manual_dir", manual_dir))
             if value is not None]
    if given:
        what = "the embedded digits" if name == DIGITS else f"the image folder {name}"
        folders = "a TensorFlow Datasets folder" if len(given) == 1 else (
            "TensorFlow Datasets folders")
        warnings.warn(f"{' and '.join(given)}: {folders}, not read for {what}.", stacklevel=3)


def info(name=DIGITS, data_dir=None, class_names=None, manual_dir=None):
    """A :class:`DatasetInfo` for ``name``, as :func:`load` reads it.

    For an image folder the class names are the union of every split's class folders,
    sorted (or ``class_names``, as :func:`load` takes them), and the counts leave out the
    files that are not images (which :func:`load` names). A TFDS dataset is read from its
    supervised ``(image, label)`` features; one not prepared yet is prepared first, as
    :func:`load` does (downloaded, or :class:`DatasetNotPreparedError` within seconds
    offline), since TFDS knows its splits only then.

    Example:

    >>> info("digits").splits
    {'train': 1257, 'validation': 180, 'test': 360}
    """
    if name == DIGITS:
        _warn_if_a_digits_folder(data_dir)
        _warn_tfds_dirs_unused(name, data_dir, manual_dir)
        _check_no_digits_class_names(class_names)
        return DatasetInfo(
            DIGITS, DIGITS_CLASSES,
            {s: len(_digits_split_index(s)) for s in ("train", "validation", "test")},
            (DIGITS_IMAGE_SIZE, DIGITS_IMAGE_SIZE, 3),
        )
    name = _expand_home(_check_name(name))
    if is_image_folder(name, data_dir):
        _warn_tfds_dirs_unused(name, data_dir, manual_dir)
        with warnings.catch_warnings():  # bad files are data.load's to report (or raise)
            warnings.simplefilter("ignore")
            scans = {s: folder.scan(name, s, "skip", verify=None, class_names=class_names,
                                    allow_empty=True)
                     for s in folder.splits(name)}
        if not any(paths for paths, _, _ in scans.values()):
            raise UserError(f"Image folder {name} has no split sub-folders holding images "
                            "(expected layout: root/split/class_name/image.jpg).")
        classes = tuple(next(iter(scans.values()))[2])
        _warn_untrained_classes(name, scans)
        # A split folder of no images (an empty test/, a docs/ folder) is not a split: every
        # command failed on it, even one that never reads it.
        return DatasetInfo(os.path.basename(os.path.abspath(name)), classes,
                           {s: len(paths) for s, (paths, _, _) in scans.items() if paths},
                           None)
    _check_no_class_names(name, class_names, data_dir)
    builder, image, label = _prepared(name, data_dir, manual_dir)
    height, width = image.shape[:2]
    return DatasetInfo(
        name,
        tuple(label.names),
        {s: builder.info.splits[s].num_examples for s in builder.info.splits},
        None if None in (height, width) else (height, width, 3),
    )
