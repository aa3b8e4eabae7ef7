"""Atomic file writes: a crash or a bad input never leaves a half-written file behind."""

import contextlib
import ctypes
import fcntl
import json
import os
import re
import shutil
import time


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(directory, name):
    """Remove the ``.tmp-PID-name`` and ``.old-PID-name`` files and directories that our
    writes of ``name`` left behind in ``directory`` when their process was killed (PID no
    longer alive). Only names this module makes are touched."""
    pattern = re.compile(r"\.(tmp|old)-(\d+)-" + re.escape(name) + "$")
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry)
        if match is None or _alive(int(match.group(2))):
            continue
        stale = os.path.join(directory, entry)
        if os.path.isdir(stale) and not os.path.islink(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(stale)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The temporary name keeps ``path``'s suffix (Keras checks ``.keras``/``.weights.h5``).
    Works for files and for directories (a SavedModel export).

    Example:

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> with atomic_path(path) as tmp:
    ...     with open(tmp, "w") as f:
    ...         _ = f.write("written whole or not at all")
    >>> open(path).read()
    'written whole or not at all'
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"Cannot write the file {path}: a directory is there.")
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    clean_stale(directory, name)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{name}")
    try:
        yield tmp
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


def write_csv(table, path, **kwargs):
    """Write a pandas table as CSV, atomically (``kwargs`` go to ``DataFrame.to_csv``)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, **kwargs)


def write_text(path, text):
    """Write ``text`` (UTF-8), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def new_axes(ax=None, figsize=(5.5, 4), **subplots):
    """``(figure, axes)``: a new ``matplotlib.figure.Figure`` (outside pyplot, so no backend
    is chosen or switched, and a notebook's inline plots keep working), or ``ax`` and its
    figure when given."""
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(**subplots)


def save_figure(fig, path):
    """Save a matplotlib figure as PNG, atomically."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


MARKER = "zoo_export.json"  # written into every directory this project exports


def _ours(path, required):
    return all(os.path.isfile(os.path.join(path, name)) for name in (MARKER,) + required)


def check_replaceable(path, overwrite=False, required=("saved_model.pb",)):
    """Refuse, with one line naming ``path``, anything :func:`atomic_directory` may not
    replace: a file, a non-empty directory this project did not write (no marker file and
    ``required`` files), or a previous export of ours without ``overwrite``."""
    if not os.path.exists(path):
        return
    if not os.path.isdir(path):
        raise ValueError(f"Cannot export to {path}: a file is there.")
    if not os.listdir(path):
        return
    if not _ours(path, required):
        raise ValueError(
            f"Refusing to export to {path}: the directory holds files that are not an export "
            f"of this project ({MARKER} and {', '.join(required)} missing). Nothing was "
            "changed; give a new or empty directory.")
    if not overwrite:
        raise ValueError(f"{path} already holds an export; pass overwrite=True "
                         "(--overwrite) to replace it.")


def _exchange(a, b):
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where
    the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextlib.contextmanager
def atomic_directory(path, overwrite=False, required=("saved_model.pb",)):
    """Yield a temporary path beside ``path`` for the writer to create a directory at (as
    ``model.export`` does); on success it becomes ``path``, with a marker file that says
    this project wrote it.

    ``path`` must be absent, an empty directory, or (with ``overwrite``) a previous export
    of this project (:func:`check_replaceable`, checked before and after the work). Nothing
    else is ever deleted. A previous export is replaced in one atomic exchange, so ``path``
    is never absent, even if the process is killed half-way; where the system cannot
    exchange two paths, two renames are used.

    Example:

    >>> import tempfile
    >>> served = os.path.join(tempfile.mkdtemp(), "served")
    >>> with atomic_directory(served, required=()) as tmp:   # model.export(tmp) here
    ...     os.makedirs(tmp)
    ...     with open(os.path.join(tmp, "saved_model.pb"), "wb") as f:
    ...         _ = f.write(b"")
    >>> sorted(os.listdir(served))
    ['saved_model.pb', 'zoo_export.json']
    """
    path = os.path.abspath(os.fspath(path))
    check_replaceable(path, overwrite, required)
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    clean_stale(directory, name)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{name}")
    try:
        yield tmp
        write_json(os.path.join(tmp, MARKER), {
            "written_by": "keras-zoo-ensembles", "time": time.strftime("%Y-%m-%d %H:%M:%S")})
        check_replaceable(path, overwrite, required)
        if os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
        if not os.path.exists(path):
            os.rename(tmp, path)
        elif not _exchange(tmp, path):  # tmp now holds the previous export, ours
            old = os.path.join(directory, f".old-{os.getpid()}-{name}")
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def directory_lock(directory):
    """Hold an exclusive lock on ``directory`` (``fcntl.flock`` on its ``.lock`` file) for
    the block; a second holder gets a ``ValueError`` naming the directory and the PID that
    holds it. The kernel drops the lock when its process dies, so a killed run never
    leaves a stale lock behind.

    Example:

    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> with directory_lock(run):
    ...     with directory_lock(run):   # a second run in the same directory
    ...         pass
    Traceback (most recent call last):
    ...
    ValueError: The run directory ... is in use by another run (process ...); wait for it, or give another run_dir.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, ".lock")
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise ValueError(f"The run directory {directory} is in use by another run "
                             f"(process {holder}); wait for it, or give another run_dir.")
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
