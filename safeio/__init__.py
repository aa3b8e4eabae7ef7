"""Atomic file writes: a crash or a bad input never leaves a half-written file behind."""

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import time

from safeio.checks import UserError


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def file_hash(path, algorithm="sha256"):
    """The hex digest of a file, read in 1 MiB chunks.

    Example:

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "empty")
    >>> open(path, "wb").close()
    >>> file_hash(path)[:16]
    'e3b0c44298fc1c14'
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def natural_key(text):
    """Sort key comparing the numbers in ``text`` as numbers: ``resnet18`` before
    ``resnet101``, ``snapshot-9`` before ``snapshot-10``.

    Example:

    >>> sorted(["snapshot-10", "snapshot-9"], key=natural_key)
    ['snapshot-9', 'snapshot-10']
    """
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _token(pid, name):
    """The mark in the name of every temporary file this module writes for ``name`` from
    process ``pid``: a user's ``.tmp-123-notes.txt`` does not carry it, so it is never
    taken for ours and deleted."""
    return hashlib.sha256(f"keras-zoo-ensembles:{pid}:{name}".encode()).hexdigest()[:10]


def _scratch(directory, kind, name, pid=None):
    """The path of this process's ``kind`` ("tmp" or "old") copy of ``name``."""
    pid = os.getpid() if pid is None else pid
    return os.path.join(directory, f".{kind}-{pid}-{_token(pid, name)}-{name}")


def clean_stale(directory, name):
    """Remove the temporary files and directories (:func:`_scratch`) that our writes of
    ``name`` left behind in ``directory`` when their process was killed (PID no longer
    alive). Only names that carry this module's mark for that PID and ``name`` are touched,
    and a link is removed, never followed."""
    pattern = re.compile(r"\.(tmp|old)-(\d+)-([0-9a-f]{10})-" + re.escape(name) + "$")
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry)
        if match is None or match.group(3) != _token(int(match.group(2)), name):
            continue
        if _alive(int(match.group(2))):
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
    check_file_target(path)
    directory, name = os.path.split(os.path.abspath(path))
    make_directory(directory)
    clean_stale(directory, name)
    tmp = _scratch(directory, "tmp", name)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is not None or err.errno is None or type(err) is not OSError:
            raise
        # A write into the open file (a full disk, say) names no file: name the target.
        raise OSError(err.errno, f"{err.strerror or err} (the previous {name}, if any, is "
                      "left as it was)", path) from err
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)


def _file_in_the_way(directory):
    """The first existing component of ``directory`` (absolute) that is not a directory,
    or None."""
    head = os.path.abspath(directory)
    parts = []
    while True:
        parts.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    for part in reversed(parts):  # from the root down
        if not os.path.isdir(part):
            return part if os.path.lexists(part) else None
    return None


def _in_the_way(path):
    what = "a link to nothing" if not os.path.exists(path) else "a file"
    return f"Not a directory ({what} is in the way)"


def make_directory(directory):
    """``os.makedirs(directory, exist_ok=True)``, where a file in the way is named as what it
    is (``makedirs`` says "File exists" of it).

    Example:

    >>> import tempfile
    >>> base = tempfile.mkdtemp()
    >>> open(os.path.join(base, "notes.txt"), "w").close()
    >>> make_directory(os.path.join(base, "notes.txt", "run"))
    Traceback (most recent call last):
    ...
    NotADirectoryError: [Errno 20] Not a directory (a file is in the way): '.../notes.txt'
    """
    try:
        os.makedirs(directory, exist_ok=True)
    except (FileExistsError, FileNotFoundError, NotADirectoryError):  # the last two: links
        blocking = _file_in_the_way(directory)
        if blocking is None:
            raise
        raise NotADirectoryError(errno.ENOTDIR, _in_the_way(blocking), blocking) from None


def check_file_target(path):
    """Raise before any work where ``path`` cannot become a file: a directory is there (a
    :class:`UserError`), or a file where one of its folders should be (``NotADirectoryError``
    naming that file).

    Example:

    >>> check_file_target(os.path.join(os.getcwd(), "new", "table.csv"))  # can be made
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UserError(f"Cannot write the file {path}: a directory is there.")
    blocking = _file_in_the_way(os.path.dirname(os.path.abspath(path)))
    if blocking is not None:
        raise NotADirectoryError(errno.ENOTDIR, _in_the_way(blocking), blocking)


def check_free_space(path, needed):
    """Raise ``OSError(ENOSPC)`` naming ``path`` when its file system has fewer than
    ``needed`` bytes free: checked before a large write that a full disk would break
    midway (h5py, writing Keras weights, crashed the process with a segmentation fault
    after its own "No space left on device"). The previous file is left as it was.

    Example:

    >>> check_free_space(__file__, 10**30)
    Traceback (most recent call last):
    ...
    OSError: [Errno 28] No space left on device: about 1e+24 MB are needed to write it, and the previous ... is left as it was: '...'
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)  # (it is made just before the write)
    if shutil.disk_usage(folder).free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device: about {needed / 1e6:,.3g} MB "
                      f"are needed to write it, and the previous {os.path.basename(path)}, "
                      "if any, is left as it was", path)


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
        raise UserError(f"Cannot export to {path}: a file is there.")
    if not os.listdir(path):
        return
    if not _ours(path, required):
        raise UserError(
            f"Refusing to export to {path}: the directory holds files that are not an export "
            f"of this project ({MARKER} and {', '.join(required)} missing). Nothing was "
            "changed; give a new or empty directory.")
    if not overwrite:
        raise UserError(f"{path} already holds an export; pass overwrite=True "
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
    make_directory(directory)
    clean_stale(directory, name)
    tmp = _scratch(directory, "tmp", name)
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
            old = _scratch(directory, "old", name)
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _kind(path):
    mode = os.lstat(path).st_mode
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode)
            else "a named pipe" if stat.S_ISFIFO(mode) else "not a regular file")


def _open_lock(path):
    """Open (or create) the lock file ``path`` for reading and writing, never through a
    symbolic link and never anything but a regular file: a ``.lock`` that links to a
    user's file would otherwise be emptied."""
    flags = (os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
             | getattr(os, "O_CLOEXEC", 0))
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as err:
        if err.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise
        fd = None
    if fd is not None and not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        fd = None
    if fd is None:
        raise UserError(f"The run directory's lock {path} is {_kind(path)}, not a file this "
                        "project wrote; nothing was changed. Remove it, or give another "
                        "run_dir.")
    return os.fdopen(fd, "r+", encoding="utf-8")


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
    safeio.checks.UserError: The run directory ... is in use by another run (process ...); wait for it, or give another run_dir.
    """
    make_directory(directory)
    path = os.path.join(directory, ".lock")
    with _open_lock(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise UserError(f"The run directory {directory} is in use by another run "
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
