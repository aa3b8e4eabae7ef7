"""Training-time augmentation as pure functions ``op(image, seed, ...) -> image``.

Every op is stateless: the same image and seed (a shape-[2] integer tensor) give the same
result, eagerly or inside ``tf.data.Dataset.map``. ``data.load(augment=...)`` hands each
example a fresh seed per epoch; :func:`compose` splits it among several ops. Images are
single images (height, width, channels) in [0, 255], float32 (the ops that change pixel
values take integer images too, and return float32); labels are never seen.

Example:

>>> import functools
>>> aug = compose(functools.partial(random_crop, size=28), random_flip)
>>> aug(tf.zeros((32, 32, 3)), tf.constant([1, 2])).shape
TensorShape([28, 28, 3])
"""

import functools
import math

import numpy as np
import tensorflow as tf

from data.preprocess import check_crop_fits
from safeio.checks import UserError, check_positive_int, is_number


def _seed(seed, op):
    """``seed`` as the stateless ops take it: a shape-[2] integer tensor (a scalar was
    TensorFlow's "seed must have shape [2], not []")."""
    try:
        tensor = tf.convert_to_tensor(seed)
    except (TypeError, ValueError):
        tensor = None
    if tensor is None or not tensor.dtype.is_integer or not tensor.shape.is_compatible_with(
            [2]):
        raise UserError(f"{op}'s `seed` must be a pair of integers (shape [2], as "
                        f"tf.random.split gives); received {seed!r:.80}.")
    return tensor


def _seeds(seed, count, op="compose"):
    seed = _seed(seed, op)
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), count))


def _float(image):
    """``image`` as float32: integer images (uint8 from a decoder), and float64 (NumPy's
    default) or float16 ones, which the float32 constants here would not combine with."""
    return tf.cast(tf.convert_to_tensor(image), tf.float32)


def _single(image, op, channels=None):
    """``image`` as a tensor, checked to be one image (height, width, channels) where its
    rank is known, with ``channels`` channels where given (a tuple of those allowed): a
    batch mapped after ``.batch()`` failed in TensorFlow's words, or ran with one draw for
    every image; a grey image came out in colour from the RGB eigenvectors."""
    image = tf.convert_to_tensor(image)
    if image.shape.rank is not None and image.shape.rank != 3:
        raise UserError(f"{op} augments single images (height, width, channels); received "
                        f"shape {tuple(image.shape)}: augment before batching.")
    if (channels is not None and image.shape.rank == 3 and image.shape[-1] is not None
            and image.shape[-1] not in channels):
        raise UserError(f"{op} takes images of {' or '.join(map(str, channels))} channel(s); "
                        f"received shape {tuple(image.shape)}.")
    return image


def _check_range(value, name, low, high, what):
    """``value``: a finite number in [low, high] (NaN and inf gave NaN images)."""
    if not is_number(value) or not math.isfinite(value) or not low <= value <= high:
        raise UserError(f"`{name}` must be {what}; received {value!r}.")


def _check_max_value(max_value):
    _check_range(max_value, "max_value", 1e-12, float("inf"),
                 "the largest pixel value, a finite number > 0 (255 for [0, 255] pixels)")


def _check_interval(pair, name, low, high, what):
    """``pair`` = (a, b) with low <= a <= b <= high (``high`` None: no upper bound)."""
    try:
        a, b = pair
        ok = is_number(a) and is_number(b)
        ok = ok and low <= a <= b and (high is None or b <= high)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UserError(f"`{name}` must be a pair (min, max) with {what}; received {pair!r}.")


def random_crop(image, seed, size):
    """A random ``size`` x ``size`` window (the paper's 224/227 crops of 256x256 images)."""
    size = int(check_positive_int(size, "size", what=" (of the crop)"))  # (np.int64 too)
    image = _single(image, "random_crop")  # (a NumPy image: it read .shape.rank of a tuple)
    # (an image of unknown rank: TensorFlow's own check)
    check_crop_fits(image.shape[:2] if image.shape.rank == 3 else (), size,
                    tuple(image.shape) if image.shape.rank is not None else None, "random",
                    ": resize them first (data.load's scale or image_size)")
    channels = image.shape[-1] if image.shape[-1] is not None else tf.shape(image)[-1]
    return tf.image.stateless_random_crop(image, [size, size, channels],
                                          _seed(seed, "random_crop"))


def random_flip(image, seed):
    """Mirror left-right with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, _seed(seed, "random_flip"))


# The eigen-pairs of ImageNet's RGB covariance with pixels scaled to [0, 1], as published
# with fb.resnet.torch (and used by most reimplementations of the paper's recipe). Columns
# of the matrix are the eigenvectors.
IMAGENET_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGENVECTORS = ((-0.5675, 0.7192, 0.4009),
                         (-0.5808, -0.0045, -0.8140),
                         (-0.5836, -0.6948, 0.4203))


def pca_color(image, seed, eigenvalues=IMAGENET_EIGENVALUES,
              eigenvectors=IMAGENET_EIGENVECTORS, std=0.1, max_value=255.0):
    """The paper's PCA colour augmentation (Krizhevsky et al. 2012, sec. 4.1).

    Adds ``max_value * sum_i alpha_i * lambda_i * p_i`` to every pixel, with
    ``alpha_i ~ N(0, std)`` drawn once per image and ``lambda_i``, ``p_i`` (columns of
    ``eigenvectors``) the eigen-pairs of the RGB covariance of pixels scaled to [0, 1], as
    the paper's recipe is implemented (fb.resnet.torch). The defaults are ImageNet's
    published pairs; :meth:`ImageStatistics.pca_eigenpairs` gives a training set's own.
    With ImageNet's pairs a pixel moves by about 3 grey levels (standard deviation).

    Example:

    >>> pca_color(tf.zeros((2, 2, 3)), tf.constant([1, 2])).shape
    TensorShape([2, 2, 3])
    """
    _check_range(std, "std", 0, float("inf"), "a finite number >= 0 (of alpha's normal)")
    _check_max_value(max_value)
    image = _float(_single(image, "pca_color", channels=(len(eigenvalues),)))
    eigenvalues = tf.constant(eigenvalues, tf.float32)
    eigenvectors = tf.constant(eigenvectors, tf.float32)
    channels = eigenvalues.shape[0]
    if eigenvalues.shape.rank != 1 or eigenvectors.shape != (channels, channels):
        raise UserError(f"pca_color takes eigenvalues (channels,) and eigenvectors (channels, "
                        f"channels) as columns; received shapes {tuple(eigenvalues.shape)} and "
                        f"{tuple(eigenvectors.shape)}.")
    alpha = tf.random.stateless_normal([eigenvalues.shape[0]], _seed(seed, "pca_color"),
                                       stddev=std)
    return image + max_value * tf.linalg.matvec(eigenvectors, alpha * eigenvalues)


def _grey(image):
    """torchvision's ``rgb_to_grayscale`` weights (ITU-R 601-2, as its tensor ops)."""
    return tf.reduce_sum(image * tf.constant([0.2989, 0.587, 0.114]), axis=-1, keepdims=True)


_JITTER_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def _jitter(image, factors, order, max_value=255.0):
    """``image`` with brightness, contrast and saturation ``factors`` applied in ``order``
    (indices into them), clipped to [0, ``max_value``] after each, as torchvision's
    ``adjust_brightness``, ``adjust_contrast`` and ``adjust_saturation`` clamp."""
    def brightness(x):
        return x * factors[0]

    def contrast(x):
        mean = tf.reduce_mean(_grey(x))
        return mean + (x - mean) * factors[1]

    def saturation(x):
        grey = _grey(x)
        return grey + (x - grey) * factors[2]

    steps = (brightness, contrast, saturation)
    for index in order:
        image = tf.clip_by_value(steps[index](image), 0.0, max_value)
    return image


def color_jitter(image, seed, brightness=0.2, contrast=0.2, saturation=0.2, max_value=255.0):
    """Random brightness, contrast and saturation factors in [max(0, 1 - x), 1 + x], applied
    in a random order and clipped after each, as torchvision's ``ColorJitter`` does.

    Brightness scales the pixels, contrast blends with the mean grey level, saturation
    with the pixel's own grey level, so the op works at any pixel scale (``max_value``:
    255 for [0, 255] pixels).
    """
    for name, value in (("brightness", brightness), ("contrast", contrast),
                        ("saturation", saturation)):
        _check_range(value, name, 0, float("inf"), "a finite number >= 0 (factors in "
                     "[max(0, 1 - x), 1 + x])")
    _check_max_value(max_value)
    image = _float(_single(image, "color_jitter", channels=(1, 3)))
    b_seed, c_seed, s_seed, order_seed = _seeds(seed, 4, "color_jitter")

    def factor(s, x):
        return tf.random.stateless_uniform([], s, max(0.0, 1.0 - x), 1.0 + x)

    factors = (factor(b_seed, brightness), factor(c_seed, contrast),
               factor(s_seed, saturation))
    which = tf.random.stateless_uniform([], order_seed, 0, len(_JITTER_ORDERS), tf.int32)
    return tf.switch_case(which, [lambda order=order: _jitter(image, factors, order, max_value)
                                  for order in _JITTER_ORDERS])


def random_erasing(image, seed, probability=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3),
                   value=0.0):
    """Random erasing (Zhong et al. 2017): with ``probability``, fill a random rectangle.

    The rectangle covers ``scale`` of the area with aspect ratio in ``ratio`` (log-uniform),
    filled with ``value`` in the images' own pixels: raw 0-255 here (the model normalises
    them), so the default 0 is black, not the mean colour torchvision's
    ``RandomErasing(value=0)`` gives after ``Normalize``; pass the training mean for that
    (``statistics.channel_mean``, one value a channel).
    """
    _check_range(probability, "probability", 0, 1, "a probability in [0, 1]")
    _check_interval(scale, "scale", 0, 1, "0 <= min <= max <= 1 (fractions of the area)")
    _check_interval(ratio, "ratio", 1e-12, None, "0 < min <= max (aspect ratios)")
    image = _float(_single(image, "random_erasing"))
    value = _fill(value, image.shape[-1])
    apply_seed, area_seed, ratio_seed, top_seed, left_seed = _seeds(seed, 5, "random_erasing")
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    h_f, w_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    area = tf.random.stateless_uniform([], area_seed, scale[0], scale[1]) * h_f * w_f
    log_ratio = tf.random.stateless_uniform(
        [], ratio_seed, tf.math.log(float(ratio[0])), tf.math.log(float(ratio[1]))
    )
    aspect = tf.exp(log_ratio)
    eh = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32), 1, height)
    ew = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32), 1, width)
    top = tf.random.stateless_uniform([], top_seed, 0, height - eh + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], left_seed, 0, width - ew + 1, dtype=tf.int32)
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    inside = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
    apply = tf.random.stateless_uniform([], apply_seed) < probability
    mask = tf.cast(inside & apply, image.dtype)[:, :, None]
    return image * (1.0 - mask) + value * mask


def _fill(value, channels):
    """random_erasing's ``value``: a finite number, or one per channel (NaN wrote NaN
    pixels; "mean" and a value per channel of another image were TensorFlow's errors)."""
    values = np.ravel(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    fits = len(values) == 1 or channels is None or len(values) == channels
    if not (len(values) and fits and all(is_number(v) and math.isfinite(v) for v in values)):
        raise UserError(f"random_erasing's `value` must be a finite number, or one per "
                        f"channel ({channels} here); received {value!r:.80}.")
    return tf.constant(values if len(values) > 1 else values[0], tf.float32)


def compose(*ops):
    """Chain ops; each gets its own seed split from the one given.

    Example:

    >>> aug = compose(random_flip, functools.partial(random_erasing, probability=1.0))
    """

    def augment(image, seed):
        for op, op_seed in zip(ops, _seeds(seed, len(ops))):
            image = op(image, op_seed)
        return image

    return augment


def alexnet_augment(statistics, size=227):
    """The paper's training augmentation: random crop, flip, PCA colour (with the eigen-pairs
    of ``statistics``, computed from [0, 255] images).

    Example:

    >>> aug = alexnet_augment(stats, size=227)  # doctest: +SKIP
    >>> data.load("my_folder", augment=aug, preprocess=data.alexnet_preprocess)  # doctest: +SKIP
    """
    check_positive_int(size, "size", what=" (of the crop)")
    if not hasattr(statistics, "pca_eigenpairs"):
        raise UserError(f"alexnet_augment needs the training set's statistics "
                        f"(data.compute_statistics) for its PCA colour; received "
                        f"{type(statistics).__name__}.")
    return compose(
        functools.partial(random_crop, size=size),
        random_flip,
        functools.partial(pca_color, **statistics.pca_eigenpairs()),
    )


AUGMENT_OPS = ("crop", "flip", "pca", "jitter", "erasing")
AUGMENT_PRESETS = {"none": (), "paper": ("crop", "flip", "pca")}


def resize_mode(spec):
    """How a model trained with augmentation ``spec`` sees images, as ``zoo.train(resize=)``
    records it: ``"crop"`` (random crops; tested on the centre crop) where ``spec`` crops,
    else ``"squash"`` (whole images resized to the input).

    Example:

    >>> resize_mode("paper"), resize_mode("flip")
    ('crop', 'squash')
    """
    return "crop" if "crop" in parse(spec) else "squash"


def parse(spec):
    """The ops of an augmentation spec such as ``"crop+flip"``, ``"paper+erasing"`` or
    ``"none"``: ``+``-joined names of :data:`AUGMENT_OPS` or presets (``paper`` is crop,
    flip and PCA colour, the paper's; ``none``, or None, is nothing).

    Example:

    >>> parse("paper+jitter")
    ('crop', 'flip', 'pca', 'jitter')
    """
    ops = []
    for token in str("none" if spec is None else spec).split("+"):  # (None: no augmentation)
        token = token.strip()
        if token in AUGMENT_PRESETS:
            ops += AUGMENT_PRESETS[token]
        elif token in AUGMENT_OPS:
            ops.append(token)
        else:
            raise UserError(
                f"Unknown augmentation {token!r} in {spec!r}: use '+'-joined names of "
                f"{AUGMENT_OPS} or the presets {tuple(AUGMENT_PRESETS)} (e.g. 'crop+flip').")
    return tuple(dict.fromkeys(ops))  # in order, once each


def from_spec(spec, size, statistics=None):
    """The augmentation function of ``spec`` (:func:`parse`) for crops of ``size``, or None
    for ``"none"``. ``crop`` takes random ``size`` crops of images loaded larger (at
    ``data.crop_scale(size)``); ``pca`` needs the training set's ``statistics``.

    Example:

    >>> aug = from_spec("crop+flip", size=32)
    >>> aug(tf.zeros((37, 37, 3)), tf.constant([1, 2])).shape
    TensorShape([32, 32, 3])
    """
    ops = parse(spec)
    check_positive_int(size, "size", what=" (of the crop)")
    if "pca" in ops and statistics is None:
        raise UserError("PCA colour augmentation needs the training set's statistics.")
    make = {
        "crop": lambda: functools.partial(random_crop, size=size),
        "flip": lambda: random_flip,
        "pca": lambda: functools.partial(pca_color, **statistics.pca_eigenpairs()),
        "jitter": lambda: color_jitter,
        "erasing": lambda: random_erasing,
    }
    return compose(*[make[op]() for op in ops]) if ops else None
