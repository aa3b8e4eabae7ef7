"""Members that differ in dropout or width: the study notes' variant ensembles."""

import functools
import inspect
import itertools

import keras
import numpy as np

from safeio.checks import UserError, check_positive_number, check_rate, is_int, is_number
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


def _default(builder, argument):
    """The default of ``builder``'s (a registry name's or a function's) ``argument``, or
    None (none, or no signature to read)."""
    try:
        entry = registry.get_entry(builder) if isinstance(builder, str) else None
        source = builder if entry is None else entry.arguments_of or entry.builder
        parameter = inspect.signature(source).parameters.get(argument)
    except (TypeError, ValueError):  # (a builtin or a class without one)
        return None
    return None if parameter is None else parameter.default


def _registered(builder):
    """Whether ``builder`` is a registry name or a registered builder function."""
    name = builder if isinstance(builder, str) else getattr(builder, "__name__", None)
    try:
        return isinstance(builder, str) or registry.get_entry(name).builder is builder
    except (TypeError, ValueError):  # (not registered)
        return False


def _builder_name(builder):
    """A registry name, or a builder function's name (a partial's function's)."""
    return builder if isinstance(builder, str) else getattr(
        builder, "__name__", getattr(getattr(builder, "func", None), "__name__", "model"))


def _check_function_arguments(builder, kwargs):
    """``kwargs`` that a builder function does not take (and has no ``**kwargs`` for):
    one line naming them and what it takes."""
    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        raise UserError(f"{_builder_name(builder)} takes no "
                        f"{', '.join(map(repr, unknown))}; it takes {list(parameters)}.")


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
    # (a user's function may mean an integer width as a multiplier; the zoo's mean units)
    whole_width = _default(builder, "width") if _registered(builder) else None
    for w in widths:
        if w is not None:
            check_positive_number(w, "width")
            if isinstance(whole_width, int) and not is_int(w):  # AlexNet's: fc units
                raise UserError(f"{_builder_name(builder)}'s `width` counts units (default "
                                f"{whole_width}): each value must be a positive integer; "
                                f"received {w!r} in width={width!r}.")
    if "name" in kwargs:  # (each member is named after its values)
        raise UserError("variants names each member after its values "
                        f"('alexnet_dropout0p5', ...); received name={kwargs['name']!r}. "
                        "Leave `name` out.")
    if not isinstance(builder, str):  # a mistyped argument: one line now, not after the
        _check_function_arguments(builder, kwargs)  # members before it trained
    base = _builder_name(builder)
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
