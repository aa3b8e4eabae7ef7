"""Atomic file writes: a crash or a bad input never leaves a half-written file behind."""

import contextlib
import json
import os
import shutil


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The temporary name keeps ``path``'s suffix (Keras checks ``.keras``/``.weights.h5``).
    Works for files and for directories (a SavedModel export).

    Example:

    >>> with atomic_path("model.keras") as tmp:   # doctest: +SKIP
    ...     model.save(tmp)
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{name}")
    try:
        yield tmp
        if os.path.isdir(tmp) and os.path.isdir(path):
            old = os.path.join(directory, f".old-{os.getpid()}-{name}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path, obj):
    """Write ``obj`` as indented JSON, atomically; values JSON cannot hold become strings."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)


def save_figure(fig, path):
    """Save a matplotlib figure as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
