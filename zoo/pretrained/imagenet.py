"""The ImageNet (ILSVRC-2012) conventions that come with pretrained weights: the 1,000
class names in the training index order, ``decode_predictions``, and each weights file's
own preprocessing.

The class order is the sorted WordNet ids, the order every ILSVRC-2012 model (Caffe's,
torchvision's, keras.applications') was trained with; the readable names are
torchvision's (unique, unlike WordNet's first lemmas: there are two "crane"s).
"""

import functools
import os
import warnings

import numpy as np

from safeio.checks import UserError, widened_ml_floats

CLASSES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_classes.txt")


@functools.lru_cache(maxsize=1)
def imagenet_classes():
    """The 1,000 ``(wordnet_id, name)`` pairs, in the models' output order.

    Example:

    >>> imagenet_classes()[0]
    ('n01440764', 'tench')
    >>> len(imagenet_classes())
    1000
    """
    with open(CLASSES_FILE, encoding="utf-8") as f:
        pairs = tuple(tuple(line.rstrip("\n").split("\t")) for line in f if line.strip())
    if len(pairs) != 1000:
        raise RuntimeError(f"{CLASSES_FILE} holds {len(pairs)} classes instead of 1000; the "
                           "installation is damaged.")
    return pairs


def decode_predictions(preds, top=5):
    """The ``top`` classes of each row of ImageNet predictions, as keras.applications gives
    them: a list (one per row) of ``(wordnet_id, name, score)`` tuples, best first.

    Args:
        preds: probabilities or logits of shape ``(batch, 1000)``.
        top: how many classes per row (1 to 1000).

    Example:

    >>> probs = np.zeros((1, 1000)); probs[0, 1] = 0.9; probs[0, 0] = 0.1
    >>> decode_predictions(probs, top=2)
    [[('n01443537', 'goldfish', 0.9), ('n01440764', 'tench', 0.1)]]
    """
    preds = _numbers(preds, "decode_predictions", "ImageNet predictions", dtype=None)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise UserError("decode_predictions expects ImageNet predictions of shape "
                        f"(batch, 1000); received shape {preds.shape}.")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= 1000:
        raise UserError(f"`top` must be an integer from 1 to 1000; received {top!r}.")
    classes = imagenet_classes()
    results = []
    for row in preds:
        best = np.argsort(-row, kind="stable")[:top]
        results.append([(*classes[i], float(row[i])) for i in best])
    return results


def _to_numpy(x):
    import keras

    return keras.ops.convert_to_numpy(x)


def _numbers(x, function, what, dtype="float32"):
    """``x`` as an array of numbers (of ``dtype``, None: its own); a ragged list or one of
    strings (file names, say) is one line, not NumPy's "inhomogeneous shape" or "could not
    convert string to float"."""
    try:
        array = widened_ml_floats(np.asarray(_to_numpy(x) if not isinstance(x, np.ndarray)
                                             else x))
        array = np.asarray(array, dtype)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"an array of {array.dtype}")
    except (TypeError, ValueError) as error:
        raise UserError(f"{function} expects {what}: an array of numbers of one shape; "
                        f"received {type(x).__name__} ({error}).") from None
    return array


def _as_batch(images):
    x = _numbers(images, "preprocess_input", "RGB images with values 0-255")
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise UserError("preprocess_input expects RGB images, channels-last: (height, width, "
                        f"3) or (batch, height, width, 3); received shape {x.shape}.")
    return (x[None] if x.ndim == 3 else x), x.ndim == 3


def resized_size(height, width, resize):
    """torchvision's ``Resize(resize)`` output size: the shorter side becomes ``resize``
    and the longer ``int(resize * long / short)``, truncated (not rounded).

    Example:

    >>> resized_size(300, 451, 256)
    (256, 384)
    """
    if height <= width:
        return resize, int(resize * width / height)
    return int(resize * height / width), resize


def crop_offsets(height, width, crop, caffe=False):
    """The top-left corner of the central ``crop`` x ``crop`` window: torchvision's
    ``CenterCrop`` rounds ``(side - crop) / 2`` (Python's round, half to even); Caffe's
    data layer floors it.

    Example:

    >>> crop_offsets(9, 11, 6), crop_offsets(9, 11, 6, caffe=True)
    ((2, 2), (1, 2))
    """
    if caffe:
        return (height - crop) // 2, (width - crop) // 2
    return int(round((height - crop) / 2)), int(round((width - crop) / 2))


def _resize_and_crop(x, resize, crop, warp=False):
    """torchvision's ``ImageClassification`` geometry: the shorter side to ``resize``
    (bilinear, antialiased as PIL shrinks; :func:`resized_size`), then the central ``crop``
    x ``crop`` square (:func:`crop_offsets`); with ``warp``, Caffe's: the whole image to
    ``resize`` x ``resize`` as ``convert_imageset`` warped it (OpenCV's ``cv::resize``,
    bilinear without antialiasing), then the crop, its offsets floored."""
    height, width = x.shape[1:3]
    if (height, width) == (crop, crop):
        return x
    if resize is not None:
        size = (resize, resize) if warp else resized_size(height, width, resize)
        if size != (height, width):
            import keras

            x = keras.ops.convert_to_numpy(keras.ops.image.resize(
                x, size, interpolation="bilinear", antialias=not warp))
        height, width = size
    if min(height, width) < crop:
        raise UserError(f"These weights take {crop}x{crop} crops; the images are "
                        f"{height}x{width}.")
    top, left = crop_offsets(height, width, crop, caffe=warp)
    return x[:, top:top + crop, left:left + crop, :]


def apply_preprocessing(images, preprocessing):
    """Apply one weights entry's ``preprocessing`` dict to RGB images in [0, 255]; see
    :func:`zoo.pretrained.preprocess_input`."""
    x, single = _as_batch(images)
    if x.size and 0 < x.max() <= 1 and x.min() >= 0:  # (a black image: all zeros, not warned)
        warnings.warn(f"preprocess_input takes images with values 0-255; these are all in "
                      f"[0, 1] (largest {x.max():.3g}): if they were divided by 255, pass "
                      "them as they were decoded.", stacklevel=3)
    x = _resize_and_crop(x, preprocessing.get("resize"), preprocessing["crop"],
                         preprocessing.get("warp", False))
    x = x * preprocessing.get("scale", 1.0)
    if preprocessing.get("channel_order", "RGB") == "BGR":
        x = x[..., ::-1]
    x = x - np.asarray(preprocessing["mean"], "float32")
    if "std" in preprocessing:
        x = x / np.asarray(preprocessing["std"], "float32")
    x = np.ascontiguousarray(x, dtype="float32")
    return x[0] if single else x
