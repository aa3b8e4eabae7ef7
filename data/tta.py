"""Test-time augmentation: the paper's ten crops and their averaged predictions."""

import numpy as np
import tensorflow as tf

from data.preprocess import check_image_rank
from safeio import outputs as outputs_lib
from safeio.checks import UserError, check_choice, check_positive_int

TTA_CHOICES = (None, "flip", "5crop", "10crop")


def crop_scale(size):
    """The shorter side to load test images at for crops of ``size``: the paper's 256 for
    its 224/227 inputs, ``round(size * 256 / 224)`` otherwise.

    Example:

    >>> crop_scale(227), crop_scale(32)
    (256, 37)
    """
    check_positive_int(size, "size", what=" (of the crops)")
    return 256 if size in (224, 227) else round(size * 256 / 224)


def _corner_and_centre_crops(images, size, name):
    check_positive_int(size, "size", what=f" (of {name}'s crops)")
    images = tf.convert_to_tensor(images)
    check_image_rank(images, name)
    height, width = images.shape[-3], images.shape[-2]
    if height is None or width is None:  # traced over images of any size (tf.data.map)
        return _traced_crops(images, size, name)
    if height < size or width < size:
        raise UserError(f"{name} needs images of at least {size}x{size}; received "
                        f"{height}x{width}.")
    if height == size and width == size:
        raise UserError(
            f"{name} needs images larger than the {size}x{size} crops, or every crop is the "
            f"same image; received {height}x{width}. Load the images at the paper's larger "
            f"scale: shorter side {crop_scale(size)} (data.crop_scale({size})), e.g. "
            f"data.load(..., preprocess=functools.partial(data.alexnet_preprocess, "
            f"size={crop_scale(size)})).")
    # torchvision's CenterCrop: int(round((height - size) / 2)), Python's round (half to even).
    top, left = int(round((height - size) / 2)), int(round((width - size) / 2))
    return _windows(images, size, height, width, top, left)


def _windows(images, size, height, width, top, left):
    corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size),
               (top, left)]
    return [images[..., y : y + size, x : x + size, :] for y, x in corners]


def _traced_crops(images, size, name):
    """The five windows of images whose sides are known only when run (the checks too, as
    TensorFlow's asserts); their static shape is the crops'."""
    shape = tf.shape(images)
    height, width = shape[-3], shape[-2]
    checks = [
        tf.debugging.assert_greater_equal(tf.minimum(height, width), size, message=(
            f"{name} needs images of at least {size}x{size}")),
        tf.debugging.assert_greater(tf.maximum(height, width), size, message=(
            f"{name} needs images larger than the {size}x{size} crops"))]
    with tf.control_dependencies(checks):  # (before any window is taken)
        images = tf.identity(images)
    # tf.round rounds half to even, as Python's round in CenterCrop's offsets
    top, left = (tf.cast(tf.round(tf.cast(side - size, tf.float32) / 2), tf.int32)
                 for side in (height, width))
    static = images.shape[:-3].concatenate([size, size, images.shape[-1]])
    return [tf.ensure_shape(crop, static)
            for crop in _windows(images, size, height, width, top, left)]


def five_crop(images, size):
    """The 4 corner and the centre ``size`` x ``size`` crops (torchvision's ``FiveCrop``).

    ``images`` is one image (height, width, channels) -> (5, size, size, channels), or a
    batch -> (n, 5, size, size, channels). Crop order: top-left, top-right, bottom-left,
    bottom-right, centre. Images must be larger than ``size``.

    Example:

    >>> five_crop(tf.zeros((256, 256, 3)), 224).shape
    TensorShape([5, 224, 224, 3])
    """
    return tf.stack(_corner_and_centre_crops(images, size, "five_crop"), axis=-4)


def ten_crop(images, size):
    """The 4 corner and the centre ``size`` x ``size`` crops, then the same mirrored (the
    paper's test-time crops; the patches of torchvision's ``TenCrop``, not its order).

    ``images`` is one image (height, width, channels) -> (10, size, size, channels), or a
    batch (n, height, width, channels) -> (n, 10, size, size, channels). Crop order: top-left,
    top-right, bottom-left, bottom-right, centre, then the five mirrored. Images must be
    larger than ``size``. The centre crop sits where torchvision's ``CenterCrop`` puts it
    (offsets rounded, half to even). The mirrored crops are the reflections of the five
    patches, as the paper words it; torchvision's ``TenCrop`` crops the mirrored image
    instead, which gives the same corner patches in another order and, where ``width -
    size`` is odd, a centre one pixel to the side.

    Example:

    >>> ten_crop(tf.zeros((256, 256, 3)), 224).shape
    TensorShape([10, 224, 224, 3])
    """
    crops = _corner_and_centre_crops(images, size, "ten_crop")
    crops += [tf.reverse(crop, axis=[-2]) for crop in crops]
    return tf.stack(crops, axis=-4)


def flip_crops(images):
    """The image and its mirror: (h, w, c) -> (2, h, w, c), batches -> (n, 2, h, w, c)."""
    images = tf.convert_to_tensor(images)
    return tf.stack([images, tf.reverse(images, axis=[-2])], axis=-4)


def crops(images, tta, size=None):
    """``(n, k, ...)`` views of a batch for ``tta`` in ``(None, "flip", "5crop", "10crop")``."""
    check_choice(tta, TTA_CHOICES, "tta")
    if tta in ("5crop", "10crop"):
        if size is None:
            raise UserError(f"tta={tta!r} needs the crop `size` (the model's input size).")
        return (ten_crop if tta == "10crop" else five_crop)(images, size)
    if tta == "flip":
        return flip_crops(images)
    return tf.convert_to_tensor(images)[:, None]


def misfit(model, shape):
    """The input shape ``model`` takes (without the batch) where views of ``shape`` do not
    fit it, else None: the one rule of ``predict_crops`` and ``ensembles.evaluate``."""
    takes = tuple(model.input_shape[1:])
    if len(takes) != len(shape) or any(t not in (None, s) for t, s in zip(takes, shape)):
        return takes
    return None


def _check_view_size(model, views, tta):
    """One line where the views are not of the shape the model takes: images loaded larger
    for crops, given with ``tta="flip"`` or None (whole images), or of another channel
    count (grey images for an RGB model), were Keras' shape error."""
    seen = tuple(views.shape[2:])
    takes = misfit(model, seen)
    if takes is not None and (len(takes) != 3 or takes[2] not in (None, seen[2])):
        raise UserError(f"predict_crops gives {model.name} images shaped {seen} (height, "
                        f"width, channels); it takes {takes}: load them with its channels "
                        "(data.load gives RGB images).")
    if takes is not None:
        whole = tta in (None, "flip")
        raise UserError(
            f"predict_crops with tta={tta!r} gives {model.name} "
            f"{'the whole images' if whole else 'crops'}, shaped {seen[0]}x{seen[1]}; it "
            f"takes {takes[0]}x{takes[1]}: "
            + (f"load them at its size (data.load(..., image_size={takes[0]})), or take "
               "crops of images loaded larger (tta='5crop' or '10crop')." if whole else
               f"give size={takes[0]}, or leave it out (the model's input size)."))


def predict_crops(model, images, tta="10crop", size=None, batch_size=32):
    """Per image: the mean predicted probabilities over its crops, and their variance.

    A model whose graph ends in a softmax (as ``safeio.outputs`` reads it, like the
    ensembles, evaluation and export) has its outputs averaged as they are; one that
    outputs logits (``classifier_activation=None``) has their softmax averaged; a
    sigmoid's (several labels' probabilities) or a tanh's outputs, which are neither, are
    averaged as they are.

    The variance across crops is the paper notes' per-image uncertainty estimate.
    ``images`` is an array of shape (n, h, w, c) or a dataset of images or (image, label)
    batches. ``size`` defaults to the model's input size.

    Example:

    >>> mean, var = predict_crops(model, images, tta="10crop")  # doctest: +SKIP
    >>> mean.shape, var.shape                                    # doctest: +SKIP
    ((n, classes), (n, classes))
    """
    size = size or model.input_shape[1]
    check_positive_int(batch_size, "batch_size")
    if isinstance(images, tuple) and len(images) == 2 and np.ndim(images[0]) == 4:
        images = images[0]  # Keras' (images, labels)
    if isinstance(images, (list, tuple)):  # (each slice of a list was taken for a pair)
        shapes = {np.shape(image) for image in images}
        if len(shapes) > 1:
            raise UserError(f"predict_crops takes images of one size as an array (n, height, "
                            f"width, channels); received a list of {len(images)} images of "
                            f"shapes {sorted(shapes)[:3]}: resize them first.")
        images = np.stack(images) if images else np.zeros((0, size, size, 3), "float32")
    # An array is cropped ``batch_size`` images at a time, as a dataset's batches are: its
    # ten crops at once would be ten times the array (5,000 images of 256x256: 31 GB).
    batches = images if isinstance(images, tf.data.Dataset) else (
        images[start:start + batch_size] for start in range(0, len(images), batch_size))
    logits = outputs_lib.output_kind(model) == "logits"
    warned = not logits
    means, variances = [], []
    for batch in batches:
        batch = batch[0] if isinstance(batch, (tuple, list)) else batch
        if np.ndim(batch) != 4:  # (one image was taken for a batch of its rows)
            raise UserError(f"predict_crops takes batches of images (n, height, width, "
                            f"channels); received a batch of shape {tuple(np.shape(batch))}: "
                            "batch the dataset (dataset.batch(32)), or give an array of "
                            "images.")
        views = crops(batch, tta, size)
        _check_view_size(model, views, tta)
        n, k = views.shape[0], views.shape[1]
        flat = tf.reshape(views, (-1,) + tuple(views.shape[2:]))
        probs = np.asarray(model.predict(flat, batch_size=batch_size, verbose=0))
        warned = warned or outputs_lib.warn_if_hidden_softmax(
            probs, f"{model.name}'s", "their softmax is averaged")
        probs = (outputs_lib.softmax(probs) if logits else probs).reshape(n, k, -1)
        means.append(probs.mean(axis=1))
        variances.append(probs.var(axis=1))
    if not means:
        raise UserError("predict_crops received no images (an empty array or dataset).")
    return np.concatenate(means), np.concatenate(variances)
