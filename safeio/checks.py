"""Argument checks shared by every floor: one line naming what was received and what is
allowed. ``True`` is not a count and ``0.5`` is not an epoch, so bools and floats are
refused where an integer is meant (``isinstance(True, int)`` is True in Python).

Example:

>>> check_positive_int(3, "epochs")
3
>>> check_rate(1.0, "dropout")
Traceback (most recent call last):
...
safeio.checks.UserError: `dropout` must be a rate in [0, 1); received 1.0.
"""

import math
import numbers


class UserError(ValueError):
    """Bad input: the message names what was received and what is allowed.

    Raised wherever this project checks what a user gave it. The ``zoo`` command prints it
    as one line with exit code 2; any other exception is a bug and shows its traceback.
    A ``ValueError``, so ``except ValueError`` (keras.applications' convention) catches it.
    """


class MissingPackage(UserError, ImportError):
    """A package that this use needs is not installed (PyTorch to read a ``.pth`` file): an
    ``ImportError`` for ``except ImportError``, and the ``zoo`` command's one line."""


class MissingFile(UserError, FileNotFoundError):
    """A file the user is to put in place is not there (its message says where): a
    ``FileNotFoundError``, and the ``zoo`` command's one line."""


def is_int(value):
    """Whether ``value`` is an integer (a Python or NumPy one; never a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value):
    """Whether ``value`` is a real number (a Python or NumPy one; never a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def widened_ml_floats(array):
    """A NumPy ``array`` of ml_dtypes' floats (bfloat16, float8_*: what a mixed_bfloat16
    model predicts; NumPy's kind 'V', which no check of kinds "biuf" takes) as float32;
    any other array as it is."""
    dtype = array.dtype
    return array.astype("float32") if dtype.kind == "V" and "float" in dtype.name else array


def check_choice(value, choices, name, what=""):
    """``value`` if it is one of ``choices`` (a tuple or list, shown as given); else a
    one-line ``UserError``, for values that cannot be compared (a list, an array) too.
    ``what`` describes the argument in the message: "`depth` of a VGG must be ...".

    >>> check_choice("squash", ("crop", "squash"), "resize")
    'squash'
    """
    try:
        hash(value)  # (an array, even of one element, is no choice: it is unhashable)
        found = value in choices
    except (TypeError, ValueError):
        found = False
    if isinstance(value, (bool, float)) and not any(type(c) is type(value) for c in choices):
        found = False  # 2.0 and True equal 2 and 1, but are not the integer choices
    if not found:
        raise UserError(f"`{name}`{what} must be one of {choices}; received {value!r}.")
    return value


def check_bool(value, name, allow_none=False, what=""):
    """``value`` if it is True or False (or None with ``allow_none``); else a one-line
    ``UserError``: a string such as ``"no"`` is true, and would switch the option on.

    >>> check_bool("no", "batch_norm")
    Traceback (most recent call last):
    ...
    safeio.checks.UserError: `batch_norm` must be True or False; received 'no'.
    """
    numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool")
    if isinstance(value, bool) or numpy_bool or (
            value is None and allow_none):  # (NumPy's bool_ too: (n % k == 0) of NumPy ints)
        return bool(value) if value is not None else None
    allowed = "None, True or False" if allow_none else "True or False"
    raise UserError(f"`{name}`{what} must be {allowed}; received {value!r}.")


def check_positive_int(value, name, allow_none=False, what=""):
    """``value`` if it is an integer >= 1 (or None with ``allow_none``); else ValueError.
    ``what`` describes the argument in the message: "`width` (units of fc6) must ..."."""
    if value is None and allow_none:
        return value
    if not is_int(value) or value < 1:
        allowed = "None or a positive integer" if allow_none else "a positive integer"
        raise UserError(f"`{name}`{what} must be {allowed}; received {value!r}.")
    return value


def check_non_negative_int(value, name):
    """``value`` if it is an integer >= 0; else ValueError."""
    if not is_int(value) or value < 0:
        raise UserError(f"`{name}` must be a non-negative integer; received {value!r}.")
    return value


def check_rate(value, name):
    """``value`` if it is a number in [0, 1) (a dropout or drop-path rate); else ValueError."""
    if not is_number(value) or not 0 <= value < 1:
        raise UserError(f"`{name}` must be a rate in [0, 1); received {value!r}.")
    return value


def check_positive_number(value, name, what=""):
    """``value`` if it is a finite number > 0; else ValueError."""
    if not is_number(value) or not value > 0 or not math.isfinite(value):
        raise UserError(f"`{name}`{what} must be a finite positive number; received "
                        f"{value!r}.")
    return value
