"""The AlexNet preprocessing: shorter side to 256, centre crop, training-set statistics.

The statistics (mean image, per-channel mean and std, and the eigen-decomposition of the
3x3 RGB covariance used by PCA colour augmentation) come from one streaming pass over the
training set and are saved next to a run, atomically.
"""

import dataclasses
import zipfile

import numpy as np
import tensorflow as tf

from safeio import atomic_path
from safeio.checks import UserError, check_choice, check_positive_int, is_int


def resize_shorter_side(image, size=256):
    """Resize so the shorter side is ``size``, keeping the aspect ratio, as torchvision's
    ``Resize(size)`` does: the longer side becomes ``int(size * long / short)``, and the
    bilinear filter is antialiased when shrinking (PIL's, which torchvision uses for PIL
    images; without it, a photo shrunk to 256 aliases, and pretrained weights score below
    their published numbers).

    Example:

    >>> resize_shorter_side(tf.zeros((375, 499, 3)), 256).shape
    TensorShape([256, 340, 3])
    """
    size = int(check_positive_int(size, "size", what=" (the shorter side)"))
    image = _image_or_batch(image, "resize_shorter_side")
    new_shape = _shorter_side_shape(tf.shape(image)[-3:-1], size)
    return tf.image.resize(image, new_shape, method="bilinear", antialias=True)


def _image_or_batch(image, name):
    """``image`` as float32 of rank 3 (an image) or 4 (a batch of them). Traced without a
    known rank, it is one image, as ``data.load`` maps them (tf.image.resize refuses an
    unknown rank); another rank is one line (:func:`check_image_rank`)."""
    image = tf.cast(image, tf.float32)
    check_image_rank(image, name)
    return tf.ensure_shape(image, (None, None, None)) if image.shape.rank is None else image


def check_image_rank(image, name):
    """One line where the tensor ``image`` is neither an image (height, width, channels)
    nor a batch of them (TensorFlow's words did not say it); an unknown rank passes."""
    if image.shape.rank not in (None, 3, 4):
        raise UserError(f"{name} takes an image (height, width, channels) or a batch of them "
                        f"(n, height, width, channels); received shape {tuple(image.shape)}.")
    first, last = (image.shape[-3], image.shape[-1]) if image.shape.rank else (None, None)
    if first in (1, 3, 4) and last is not None and last not in (1, 2, 3, 4):  # (resized)
        raise UserError(f"{name} takes images channels-last, (height, width, channels); "
                        f"received shape {tuple(image.shape)}, channels-first: transpose it "
                        "(e.g. np.moveaxis(image, -3, -1)).")


def _shorter_side_shape(shape, size):
    """torchvision's ``Resize(size)`` output (height, width) for an image of ``shape``."""
    shape = tf.cast(shape, tf.int64)  # (size x a side past 2**31 / size wrapped in int32)
    short = tf.reduce_min(shape)
    return tf.cast(tf.where(shape == short, tf.constant(size, tf.int64), size * shape // short),
                   tf.int32)


def check_crop_fits(sides, size, shape, kind="central", hint=""):
    """One line where the known ``sides`` of an image (of ``shape``) are smaller than a
    ``kind`` ``size`` x ``size`` crop (TensorFlow's own error names no size)."""
    known = [side for side in sides if side is not None]
    if known and min(known) < size:
        raise UserError(f"A {kind} {size}x{size} crop needs images of at least that size; "
                        f"received images of shape {shape}{hint}.")


def center_crop(image, size):
    """The central ``size`` x ``size`` window of an image (or a batch of images), where
    torchvision's ``CenterCrop`` takes it: offsets ``round((side - size) / 2)``, half to
    even (``tf.round`` rounds as Python's ``round`` does).

    Example:

    >>> center_crop(tf.zeros((256, 300, 3)), 224).shape
    TensorShape([224, 224, 3])
    """
    size = int(check_positive_int(size, "size", what=" (of the crop)"))  # (np.int64 too)
    image = tf.convert_to_tensor(image)
    check_crop_fits(image.shape[-3:-1] if image.shape.rank else (), size,
                    tuple(image.shape) if image.shape.rank else None)
    height, width = tf.shape(image)[-3], tf.shape(image)[-2]
    tf.debugging.assert_greater_equal(  # (sides not known when traced)
        tf.minimum(height, width), size, message=f"center_crop: image smaller than {size}"
    )

    def offset(side):
        return tf.cast(tf.round(tf.cast(side - size, tf.float32) / 2), tf.int32)

    top, left = offset(height), offset(width)
    return image[..., top : top + size, left : left + size, :]


def resize_and_center_crop(image, scale, size):
    """torchvision's ``Resize(scale)`` then ``CenterCrop(size)``: float32 pixels, the
    shorter side to ``scale``, then the central ``size`` x ``size`` window in one crop (two
    centre crops, to ``scale`` and then ``size``, can sit a pixel off: 227 from a 256x341
    image starts at column 56 that way, at torchvision's 57 in one).

    Example:

    >>> resize_and_center_crop(tf.zeros((375, 500, 3), tf.uint8), 256, 227).shape
    TensorShape([227, 227, 3])
    """
    scale = int(check_positive_int(scale, "scale", what=" (the shorter side)"))
    size = int(check_positive_int(size, "size", what=" (of the crop)"))
    if scale < size:  # (TensorFlow's assert said "image smaller than", of any image)
        raise UserError(f"The central {size}x{size} crop is taken from the image resized to "
                        f"a shorter side of `scale`, which must be at least {size}; received "
                        f"scale={scale}.")
    image = _image_or_batch(image, "resize_and_center_crop")
    rank = image.shape.rank
    shape = tf.shape(image)[-3:-1]
    resized = _shorter_side_shape(shape, scale)
    tf.debugging.assert_greater_equal(
        tf.reduce_min(resized), size, message=f"center_crop: image smaller than {size}")
    # Only the crop is computed, by the op tf.image.resize runs (ScaleAndTranslate, its
    # scale the resize's and its translation the crop's offset): a 2x4000 GIF once became
    # a 256x512000 float image (0.5 GB) before its 224x224 crop was taken.
    offsets = tf.round(tf.cast(resized - size, tf.float32) / 2)
    crops = tf.raw_ops.ScaleAndTranslate(
        images=image if rank == 4 else image[None], size=tf.constant([size, size]),
        scale=tf.cast(resized, tf.float32) / tf.cast(shape, tf.float32),
        translation=-offsets, kernel_type="triangle", antialias=True)
    return crops if rank == 4 else crops[0]


RESIZE_CHOICES = ("crop", "squash")


def check_resize(resize):
    """``resize`` if it is one of :data:`RESIZE_CHOICES`; else a one-line ``UserError``."""
    return check_choice(resize, RESIZE_CHOICES, "resize")


def eval_view(image, size, resize="crop", scale=None):
    """An image as a model trained on ``size`` x ``size`` inputs is tested on it, float32:

    - ``"crop"`` (models trained with random crops, ``--augment crop``):
      :func:`resize_and_center_crop` at ``scale`` (default ``data.crop_scale(size)``);
    - ``"squash"`` (models trained on whole images, ``data.load(image_size=size)``): the
      whole image resized to the square, as ``data.load`` resizes it.

    Example:

    >>> eval_view(tf.zeros((300, 451, 3), tf.uint8), 32, "squash").shape
    TensorShape([32, 32, 3])
    """
    from data.tta import crop_scale

    check_resize(resize)
    image = _image_or_batch(image, "eval_view")
    if resize == "squash":  # (0, -1 or 16.5 were TensorFlow's errors)
        size = int(check_positive_int(size, "size", what=" (of the view)"))
        if scale is not None:  # (ignored without a word; ensembles.export refuses it too)
            raise UserError(f"scale={scale!r} is the shorter side the centre crop is taken "
                            "from; the squash view resizes the whole image and takes no "
                            "crop: leave it out.")
        return tf.image.resize(image, (size, size), antialias=True)
    return resize_and_center_crop(image, crop_scale(size) if scale is None else scale, size)


def alexnet_preprocess(image, size=256):
    """The paper's input: shorter side to ``size``, then the central square (from which
    training takes random crops and the ten-crop test its corner and centre crops).

    Example:

    >>> alexnet_preprocess(tf.zeros((375, 500, 3))).shape
    TensorShape([256, 256, 3])
    """
    return resize_and_center_crop(image, size, size)


@dataclasses.dataclass
class ImageStatistics:
    """Training-set pixel statistics.

    ``eigenvalues`` are sorted in decreasing order; ``eigenvectors[:, i]`` belongs to
    ``eigenvalues[i]`` (the columns p_i of the paper's PCA colour augmentation).
    """

    mean_image: np.ndarray  # (height, width, channels)
    channel_mean: np.ndarray  # (channels,)
    channel_std: np.ndarray  # (channels,)
    covariance: np.ndarray  # (channels, channels)
    eigenvalues: np.ndarray  # (channels,)
    eigenvectors: np.ndarray  # (channels, channels)
    num_images: int

    def save(self, path):
        """Write an ``.npz`` file atomically (a crash never leaves a half-written file)."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **dataclasses.asdict(self))

    @classmethod
    def load(cls, path):
        """Read statistics written by :meth:`save`; a truncated or foreign file is one line
        naming it."""
        try:
            with np.load(path) as f:
                fields = {k: f[k] for k in f.files}
            fields["num_images"] = int(fields["num_images"])
            return cls(**fields)
        except (ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
            raise UserError(f"{path} is not readable image statistics ({type(err).__name__}: "
                            f"{str(err)[:80]}): truncated, or not written by "
                            "ImageStatistics.save.") from None

    def pca_eigenpairs(self):
        """``{"eigenvalues", "eigenvectors"}`` of the RGB covariance of pixels scaled to
        [0, 1], the units :func:`data.augment.pca_color` takes (the statistics are computed
        on [0, 255] pixels, so the eigenvalues are divided by 255 squared).

        Example:

        >>> import data
        >>> stats = compute_statistics(data.load("digits", "train", batch_size=256))
        >>> pairs = stats.pca_eigenpairs()
        >>> pairs["eigenvectors"].shape, bool(pairs["eigenvalues"][0] < 1)   # [0, 1] units
        ((3, 3), True)
        """
        return {"eigenvalues": self.eigenvalues / 255.0**2, "eigenvectors": self.eigenvectors}

    def center_mean(self, size):
        """The mean image's central ``size`` x ``size`` crop, for crops of that size."""
        height, width = self.mean_image.shape[:2]
        if not is_int(size) or not 1 <= size <= min(height, width):
            raise UserError(f"center_mean({size!r}): these statistics are of {height}x{width} "
                            f"images; a crop of them is 1 to {min(height, width)} pixels.")
        return center_crop(self.mean_image, int(size)).numpy()


def _statistics_batch(element):
    """The images of one element of ``compute_statistics``' dataset, as a float64 batch
    (n, height, width, channels); grey images without a channel axis, channels-first
    images and TFDS' dicts are one line (each was taken for other images: a batch of grey
    28x28 digits for one image of 28 channels). Channels last are fewer than 5, or fewer
    than the pixels of a side (a multispectral image's 6 bands of 64x64)."""
    images = element[0] if isinstance(element, (tuple, list)) else element
    if isinstance(images, dict):
        raise UserError(f"compute_statistics takes images, or (images, labels) pairs; "
                        f"received a dict of {sorted(images)} (tfds.load(..., "
                        "as_supervised=True) gives pairs).")
    images = np.asarray(images, dtype=np.float64)
    shape = images.shape
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or (images.shape[-1] > 4
                            and images.shape[-1] >= min(images.shape[1:3])):
        hint = (" (grey images without a channel axis? add one: images[..., None])"
                if len(shape) in (2, 3) else
                " (channels first? np.moveaxis(images, 1, -1))"
                if len(shape) == 4 and shape[1] in (1, 2, 3, 4) else "")
        raise UserError(f"compute_statistics takes images (height, width, channels) or "
                        f"batches of them (n, height, width, channels), channels last (1 to "
                        f"4, or fewer than a side's pixels); received shape {shape}{hint}.")
    return images


def compute_statistics(dataset):
    """One streaming pass over ``dataset`` (images, or (image, label), batched or not).

    Accumulates in float64: the sum of images, of pixels and of pixel outer products, so
    memory stays constant whatever the dataset's size. All images must share one size.

    Example:

    >>> import data
    >>> stats = compute_statistics(data.load("digits", "train"))
    >>> stats.eigenvectors.shape
    (3, 3)
    """
    image_sum = pixel_sum = outer_sum = None
    num_images = num_pixels = 0
    for element in dataset:
        images = _statistics_batch(element)
        finite = np.isfinite(images).reshape(len(images), -1).all(axis=1)
        if not finite.all():
            bad = num_images + int(np.argmin(finite))
            raise UserError(
                f"Image {bad} of the dataset (counting from 0) has "
                f"{int((~np.isfinite(images[bad - num_images])).sum())} NaN or infinite pixel "
                "values; statistics need finite pixels: fix or drop that image.")
        pixels = images.reshape(-1, images.shape[-1])
        if image_sum is None:
            image_sum = np.zeros(images.shape[1:])
            pixel_sum = np.zeros(images.shape[-1])
            outer_sum = np.zeros((images.shape[-1],) * 2)
        elif images.shape[1:] != image_sum.shape:
            raise UserError(
                f"All images must share one size to compute a mean image; received "
                f"{images.shape[1:]} after {image_sum.shape}. Resize or crop them first."
            )
        image_sum += images.sum(axis=0)
        pixel_sum += pixels.sum(axis=0)
        outer_sum += pixels.T @ pixels
        num_images += len(images)
        num_pixels += len(pixels)
    if num_images == 0:
        raise UserError("compute_statistics received an empty dataset.")
    channel_mean = pixel_sum / num_pixels
    covariance = outer_sum / num_pixels - np.outer(channel_mean, channel_mean)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    return ImageStatistics(
        mean_image=(image_sum / num_images).astype(np.float32),
        channel_mean=channel_mean.astype(np.float32),
        channel_std=np.sqrt(np.maximum(np.diag(covariance), 0.0)).astype(np.float32),
        covariance=covariance,
        eigenvalues=np.maximum(eigenvalues[order], 0.0),
        eigenvectors=eigenvectors[:, order],
        num_images=num_images,
    )


NORMALIZE_CHOICES = ("standardize", "channel_mean", "mean_image", "none")


def _check_input_shape(shape, channels):
    """A 2-D or 4-D ``shape``, or one of other channels than the statistics', was Keras'
    "Cannot convert to a shape" or TensorFlow's broadcasting error once built."""
    sides_ok = isinstance(shape, tuple) and len(shape) == 3 and all(
        side is None or is_int(side) and side > 0 for side in shape[:2])
    if not sides_ok or not is_int(shape[2]) or channels not in (None, shape[2]):
        raise UserError(f"normalized_input takes shape=(height, width, channels) of the "
                        f"images the statistics were computed on ({channels} channels; "
                        f"height and width positive, or None for any); received {shape!r}.")


def normalized_input(statistics, shape, name="input", normalize="standardize"):
    """A Keras input that normalises pixels with ``statistics`` inside the model.

    Pass it as a builder's ``input_tensor``: the model then takes raw [0, 255] pixels, also
    once exported. ``normalize``:

    - ``"standardize"`` (default): per-channel mean and standard deviation (zero mean,
      unit variance);
    - ``"channel_mean"``: subtract the per-channel mean only (most reimplementations of
      the paper);
    - ``"mean_image"``: subtract the mean image, as the paper did (``statistics`` computed
      on images of ``shape``). With random crops, each crop has the central crop of the
      training images' mean subtracted, as Krizhevsky's cuda-convnet does (its data
      providers' ``data_mean``, cropped to the centre once); Caffe subtracts the mean at
      each crop's own place, which the model, taking any crop, cannot know;
    - ``"none"``: raw pixels.

    Example:

    >>> model = zoo.alexnet(input_tensor=normalized_input(stats, (67, 67, 3)))  # doctest: +SKIP
    """
    import keras

    from data.layers import MeanSubtraction

    check_choice(normalize, NORMALIZE_CHOICES, "normalize")
    if hasattr(shape, "__len__") and not isinstance(shape, (str, bytes)):
        shape = tuple(shape)  # (a TensorShape, an array: images.shape[1:])
    _check_input_shape(shape, None if statistics is None else len(statistics.channel_mean))
    if statistics is None and normalize != "none":
        raise UserError(f"normalize={normalize!r} needs the training set's statistics "
                        "(data.compute_statistics); received statistics=None. Without them, "
                        "normalize='none'.")
    inputs = keras.Input(shape, name=name)
    if normalize == "standardize":
        # In float32 under mixed precision too, as MeanSubtraction.
        return keras.layers.Normalization(mean=statistics.channel_mean,
                                          variance=np.square(statistics.channel_std),
                                          name="normalize", dtype="float32")(inputs)
    if normalize == "channel_mean":
        return MeanSubtraction(statistics.channel_mean, name="normalize")(inputs)
    if normalize == "mean_image":
        if tuple(statistics.mean_image.shape) != tuple(shape):
            raise UserError(
                f"normalize='mean_image' needs statistics of {tuple(shape)} images; these "
                f"have a mean image of {tuple(statistics.mean_image.shape)}.")
        return MeanSubtraction(statistics.mean_image, name="normalize")(inputs)
    return inputs
