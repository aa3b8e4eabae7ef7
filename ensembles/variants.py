"""Members that differ in dropout or width: the study notes' variant ensembles."""

import functools
import itertools

import keras
import numpy as np

from safeio.checks import UserError, check_positive_number, check_rate, is_number
from zoo import registry


def _label(value):
    return f"{value:g}".replace(".", "p")  # 0.5 -> 0p5: safe in layer and file names


def _values(value, name):
    """``[0.5, 0.6]`` (a list, tuple or 1-D array) varies; a single number is fixed for
    every member; None is unset. Values that are not numbers are one line."""
    if value is None:
        return [None], False
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, (list, tuple)) and not values:
        raise UserError(f"`{name}` variant values must not be an empty list.")
    if not all(is_number(v) for v in values):
        raise UserError(f"`{name}` must be a number or a list of numbers to vary; received "
                        f"{value!r:.80}.")
    return values, isinstance(value, (list, tuple))


def variants(builder, dropout=None, width=None, **kwargs):
    """Named builders, one per dropout rate and/or width (the product when both vary).

    ``dropout`` and ``width`` are lists of values to vary, or a single value every member
    shares. ``builder`` is a registry name or a builder function; ``kwargs`` go to every
    member. Each value of the returned dict builds one member, so it trains through
    ``zoo.train``.

    Example:

    >>> members = variants("alexnet", dropout=[0.5, 0.6, 0.7], input_shape=(67, 67, 3),
    ...                    classes=10)
    >>> sorted(members)
    ['alexnet_dropout0p5', 'alexnet_dropout0p6', 'alexnet_dropout0p7']
    """
    dropouts, vary_dropout = _values(dropout, "dropout")
    widths, vary_width = _values(width, "width")
    if not (vary_dropout or vary_width):
        raise UserError("variants needs a list of `dropout` and/or `width` values to vary; "
                        f"received dropout={dropout!r}, width={width!r}.")
    if not (isinstance(builder, str) or callable(builder)) or isinstance(builder, keras.Model):
        raise UserError(f"variants needs a model name or a builder function (each variant "
                        f"is built anew); received {type(builder).__name__} "
                        f"{str(builder):.80}.")
    for d in dropouts:  # (each was refused only when its member was built: after the
        if d is not None:  # members before it had trained)
            check_rate(d, "dropout")
    for w in widths:
        if w is not None:
            check_positive_number(w, "width")
    base = builder if isinstance(builder, str) else getattr(
        builder, "__name__", getattr(getattr(builder, "func", None), "__name__", "model"))
    build = functools.partial(registry.resolve, builder)
    out = {}
    for d, w in itertools.product(dropouts, widths):
        parts = [base] + ([f"dropout{_label(d)}"] if vary_dropout else []) + (
            [f"width{_label(w)}"] if vary_width else [])
        name = "_".join(parts)
        if name in out:  # (values that print alike, or given twice: one member lost)
            raise UserError(f"variants would build two members named {name!r}: give "
                            f"distinct values; received dropout={dropout!r}, "
                            f"width={width!r}.")
        member_kwargs = {**kwargs, "name": name}
        if d is not None:
            member_kwargs["dropout"] = d
        if w is not None:
            member_kwargs["width"] = w
        if isinstance(builder, str):  # a mistyped name or argument: one line now
            registry.check_arguments(builder, member_kwargs)
        out[name] = functools.partial(build, **member_kwargs)
    return out
