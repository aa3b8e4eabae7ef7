"""What the weight converters share: naming every misfit at once, then setting everything,
and the order of a flattened feature map (Caffe and torchvision flatten channels first)."""

import os

from safeio.checks import UserError


def names(keys, limit=8):
    """``"a, b, c and 4 more"``: the first ``limit`` of ``keys``, sorted."""
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def set_if_it_fits(model, path, plan, missing, unexpected, wrong_shape, contents, advice):
    """Set ``plan`` (``(layer, values)`` pairs) on ``model``, or, if any tensor is missing,
    unexpected or misshapen, raise one ``ValueError`` naming them all and set nothing."""
    problems = []
    if missing:
        problems.append(f"missing from the file: {names(missing)}")
    if unexpected:
        problems.append(f"in the file but not in the model: {names(unexpected)}")
    if wrong_shape:
        problems.append(f"shapes differ: {'; '.join(wrong_shape[:4])}"
                        + (f" and {len(wrong_shape) - 4} more" if len(wrong_shape) > 4 else ""))
    if problems:
        raise UserError(f"{os.fspath(path)} does not fit {model.name} ({contents}): "
                        + "; ".join(problems) + f". {advice}")
    for layer, values in plan:
        layer.set_weights([value.astype("float32") for value in values])
    return model


def chw_to_hwc(weight, grid):
    """``weight`` shaped ``(units, C*H*W)``, as a channels-first flatten (Caffe's,
    torchvision's) feeds a dense layer, with its inputs reordered for Keras' channels-last
    flatten: ``(units, H*W*C)``. ``grid`` is ``(H, W, C)``."""
    height, width, channels = grid
    weight = weight.reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
    return weight.reshape(len(weight), -1)


def hwc_to_chw(weight, grid):
    """The inverse of :func:`chw_to_hwc`: ``(units, H*W*C)`` -> ``(units, C*H*W)``."""
    height, width, channels = grid
    weight = weight.reshape(-1, height, width, channels).transpose(0, 3, 1, 2)
    return weight.reshape(len(weight), -1)


def is_a(layer, class_name):
    """Whether ``layer`` is a Keras ``class_name`` (``"Dense"``, ``"Conv2D"``) or a subclass
    of one (``DropConnectDense``), read from its classes' names: NumPy only here."""
    return any(cls.__name__ == class_name for cls in type(layer).__mro__)
