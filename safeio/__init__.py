"""Atomic file writes: a crash or a bad input never leaves a half-written file behind."""

import collections
import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import threading
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
    # (the split's odd parts are the numbers: a '²' is a digit to str.isdigit, not to int)
    return [int(part) if index % 2 else part
            for index, part in enumerate(re.split(r"(\d+)", text))]


def _token(pid, name, host=True):
    """The mark in the name of every temporary file this module writes for ``name`` from
    process ``pid`` on this host: a user's ``.tmp-123-notes.txt`` does not carry it, so it
    is never taken for ours and deleted; nor does another host's (on a shared file system
    its PID says nothing here, and its live write was taken for a dead one's). ``host``
    False: the mark written before the host was in it."""
    where = f"{socket.gethostname()}:" if host else ""
    # (os.fsencode: a name that is not UTF-8 holds surrogates, which .encode() refuses)
    return hashlib.sha256(
        os.fsencode(f"keras-zoo-ensembles:{where}{pid}:{name}")).hexdigest()[:10]


_NAME_MAX = 255  # bytes in one file name, on every file system this runs on


def _scratch(directory, kind, name, pid=None):
    """The path of this process's ``kind`` ("tmp" or "old") copy of ``name``."""
    pid = os.getpid() if pid is None else pid
    prefix = f".{kind}-{pid}-{_token(pid, name)}-"
    return os.path.join(directory, prefix + _tail(name, _NAME_MAX - len(prefix)))


def _tail(name, size):
    """The end of ``name`` that fits in ``size`` bytes: a scratch copy of a name near the
    limit keeps its suffix (``.weights.h5``), and the mark before it tells which file it
    copies."""
    while len(os.fsencode(name)) > size:
        name = name[1:]
    return name


def clean_stale(directory, name):
    """Remove the temporary files and directories (:func:`_scratch`) that our writes of
    ``name`` left behind in ``directory`` when their process was killed (PID no longer
    alive). Only names that carry this module's mark for that PID, ``name`` and this host
    (or the mark of before the host was in it) are touched, and a link is removed, never
    followed. A previous export that a killed replacement had moved aside, and not yet
    replaced, is put back instead, whichever host moved it (a container restarted under
    another host name; a SavedModel, then): it is the only copy, and putting it back
    deletes nothing."""
    pattern = re.compile(r"\.(tmp|old)-(\d+)-([0-9a-f]{10})-(.*)$", re.DOTALL)
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    target = os.path.join(directory, name)
    for entry in entries:
        match = pattern.match(entry)
        if match is None or match.group(4) != _tail(name, _NAME_MAX - match.start(4)):
            continue  # (the prefix is ASCII: its characters are its bytes)
        pid, stale = int(match.group(2)), os.path.join(directory, entry)
        ours = match.group(3) in (_token(pid, name), _token(pid, name, host=False))
        # (another's export: only under this very name, not a long name's cut tail)
        exported = ours or (match.group(4) == name
                            and os.path.isfile(os.path.join(stale, "saved_model.pb")))
        if (match.group(1) == "old" and os.path.isdir(stale) and not os.path.islink(stale)
                and not os.path.lexists(target) and exported and not (ours and _alive(pid))):
            # Killed between the two renames of _put_in_place: the previous export, the only
            # copy, goes back in its place.
            os.rename(stale, target)
            continue
        if ours and not _alive(pid):
            _remove(stale, ignore_errors=True)


def dead_writes(directory, name):
    """``{pid: path}``: the temporary files (:func:`atomic_path`'s) that writes of ``name``
    in ``directory`` left from processes of this host no longer alive (killed before their
    rename), as :func:`clean_stale` finds them; left in place."""
    found = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir(directory):
            match = re.match(r"\.tmp-(\d+)-([0-9a-f]{10})-", entry)
            pid = int(match.group(1)) if match else None
            if (match and entry == os.path.basename(_scratch(directory, "tmp", name, pid))
                    and not _alive(pid)):  # (this host's mark: another's PIDs say nothing)
                found[pid] = os.path.join(directory, entry)
    return found


def _remove(path, ignore_errors=False):
    """Remove the file, link or folder ``path`` of ours, never following a link."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=ignore_errors)
    elif os.path.lexists(path):
        with contextlib.suppress(OSError) if ignore_errors else contextlib.nullcontext():
            os.unlink(path)


def _flush(path, recursive=False, done=False):
    """``os.fsync`` the file or folder ``path`` (with ``recursive``, every file and folder in
    it): a rename survives a power cut only with what it renames on the disk, and itself
    only once its folder is (XFS and btrfs may otherwise show an empty file). ``done``: the
    write has happened (a folder flushed after its rename), so a folder that cannot be
    opened or flushed (no read permission; a network file system's EINVAL) does not fail
    it, as SQLite does."""
    if recursive and os.path.isdir(path) and not os.path.islink(path):
        for root, _, names in os.walk(path):
            for file_name in names:
                _flush(os.path.join(root, file_name))
            _flush(root)
        return
    if not os.path.exists(path) or os.path.islink(path):
        return
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path) else 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        # A folder a file system cannot fsync has nothing to flush, as SQLite has it.
        tolerated = (errno.EINVAL, errno.ENOTSUP) if os.path.isdir(path) else ()
        if done:
            tolerated += (errno.EACCES, errno.EPERM, errno.EINVAL, errno.ENOTSUP, errno.EROFS)
        if err.errno not in tolerated:
            raise


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
    # One writer of a path at a time in this process: two threads shared its temporary
    # name, and one published the other's half-written file as its own.
    with _WRITING[os.path.join(directory, name)]:
        yield from _atomic_path(path, directory, name)


_WRITING = collections.defaultdict(threading.RLock)  # a path -> its lock in this process


def _atomic_path(path, directory, name):
    make_directory(directory)
    clean_stale(directory, name)
    tmp = _scratch(directory, "tmp", name)
    _remove(tmp)  # a dead process of this PID and host left it (a container restarted)
    try:
        yield tmp
        _flush(tmp, recursive=True)
        _keep_mode(path, tmp)
        os.replace(tmp, path)
        _flush(directory, done=True)  # the rename itself
    except Exception as err:
        fault = _fault_at_target(err, tmp, path)
        if fault is None:
            raise
        raise fault from err
    finally:
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):  # (a link left there too, never followed)
            os.unlink(tmp)


def _keep_mode(path, tmp):
    """Give the new file ``tmp`` the permissions of the file ``path`` it replaces (a private
    file, 600, stays private), as an editor's save does."""
    if (os.path.isfile(path) and not os.path.islink(path) and os.path.isfile(tmp)
            and not os.path.islink(tmp)):
        with contextlib.suppress(OSError):  # (another user's file: its own mode stays)
            shutil.copymode(path, tmp)


def _within(filename, scratch):
    """Whether the file an ``OSError`` names is ``scratch`` or lies inside it."""
    if not isinstance(filename, (str, bytes, os.PathLike)):
        return False  # a file descriptor
    filename = os.path.abspath(os.fsdecode(filename))
    return filename == scratch or filename.startswith(scratch + os.sep)


# Python's own reasons ("Read-only file system"), which TensorFlow's file system repeats.
_REASONS = {os.strerror(code): code for code in errno.errorcode}
# The errno of a TensorFlow error of these kinds that names no reason of the OS's.
_TF_ERRNO = {"PermissionDeniedError": errno.EACCES, "NotFoundError": errno.ENOENT,
             "AlreadyExistsError": errno.EEXIST, "ResourceExhaustedError": errno.ENOSPC}


def _tensorflow_fault(err, scratch, path):
    """``(errno, reason)`` where ``err`` is a TensorFlow error (``tf.errors.OpError``, not
    an ``OSError``) about writing ``scratch`` or a file inside it: its message names the
    path, then (from the local file system) the OS's reason: ``/x/.tmp-1-ab-served;
    Read-only file system``. Without one, the reason is TensorFlow's first line, naming
    ``path``. None for any other error. TensorFlow is never imported here: where it is not,
    no error is its."""
    errors = sys.modules.get("tensorflow.python.framework.errors_impl")
    if errors is None or not isinstance(err, errors.OpError):
        return None
    message = str(getattr(err, "message", err))
    if scratch not in message:
        return None
    named = [reason for reason in _REASONS if f"; {reason}" in message]
    if named:
        reason = max(named, key=len)
        return _REASONS[reason], reason
    reason = (message.strip().splitlines() or [""])[0].replace(scratch, path)
    return _TF_ERRNO.get(type(err).__name__, errno.EIO), reason


def _fault_at_target(err, scratch, path):
    """The ``OSError`` to raise for ``err``, a fault while ``path`` was written through its
    scratch copy ``scratch``: it names ``path``, the user's file, not the scratch name (a
    read-only file system refused ``.tmp-9995-70e3b39b34-t.csv``), and says the previous
    file is left as it was. Also for a write into an open file (a full disk, say), which
    names no file, and for TensorFlow's file-system errors, which are not an ``OSError``
    (they become the one Python's own ``open`` raises: ``PermissionError`` for EACCES,
    ``OSError`` for EROFS). None where ``err`` is about something else: raised as it is."""
    if isinstance(err, OSError):
        named = [f for f in (err.filename, err.filename2) if f is not None]
        if named and not any(_within(f, scratch) for f in named):
            return None
        # Unnamed: a write into an open file (a full disk), or h5py's PermissionError,
        # whose text names the scratch file.
        if not named and (err.errno is None or (type(err) is not OSError
                                                and scratch not in str(err))):
            return None
        code = err.errno
        reason = (getattr(err, "_zoo_reason", None) or err.strerror or str(err)).replace(
            scratch, path)
    else:
        fault = _tensorflow_fault(err, scratch, path)
        if fault is None:
            return None
        code, reason = fault
    name = os.path.basename(path)
    fault = OSError(code, f"{reason} (the previous {name}, if any, is left as it was)", path)
    fault._zoo_reason = reason  # without the sentence: an enclosing write names its own file
    return fault


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
    if os.path.lexists(path) and not (os.path.islink(path) or os.path.isfile(path)):
        # (a device or a named pipe: the rename replaced /dev/null itself, run as root)
        raise UserError(f"Cannot write the file {path}: it is {_kind(path)}, which a file "
                        "written here would replace; nothing was changed.")
    blocking = _file_in_the_way(os.path.dirname(os.path.abspath(path)))
    if blocking is not None:
        raise NotADirectoryError(errno.ENOTDIR, _in_the_way(blocking), blocking)


def check_writable_file(path):
    """For a file the user names: refuse a symbolic link there (a :class:`UserError`), then
    :func:`check_file_target`, and raise ``PermissionError`` naming ``path`` where this
    process cannot create files in its nearest existing folder (no write permission, or a
    read-only file system), or where ``path`` is another user's file in a sticky folder
    (``/tmp``: the kernel refuses the rename over it): checked before the work whose result
    it will hold, so that an evaluation's table is not lost at the end.

    Example:

    >>> import tempfile
    >>> check_writable_file(os.path.join(tempfile.mkdtemp(), "new", "table.csv"))
    """
    path = os.fspath(path)
    if path.endswith(os.sep):
        raise UserError(f"Cannot write the file {path}: the name ends in {os.sep}, as a "
                        "directory's does. Name a file.")
    if os.path.islink(path):
        raise UserError(
            f"Refusing to write {path}: it is a symbolic link (to {os.readlink(path)}), which "
            "this command neither replaces nor writes through; nothing was changed. Name "
            "the file it links to, or another file.")
    check_file_target(path)
    name = os.path.basename(os.path.abspath(path))
    if len(os.fsencode(name)) > _NAME_MAX:  # (the rename at the end failed, the work done)
        raise UserError(f"Cannot write the file {path}: its name is "
                        f"{len(os.fsencode(name))} bytes long, and file systems take at "
                        f"most {_NAME_MAX}.")
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):  # made when the file is written: its parent must allow it
        folder = os.path.dirname(folder)
    if not os.access(folder, os.W_OK | os.X_OK, effective_ids=True):
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        code, why = ((errno.EROFS, "Read-only file system") if read_only
                     else (errno.EACCES, "Permission denied"))
        raise PermissionError(code, f"{why} (cannot create files in {folder})", path)
    if os.geteuid() == 0:  # root passes every access check: a file made there tells
        _check_creatable(folder, path)
    # In a sticky folder (/tmp), the rename that replaces a file needs the file or the
    # folder to be this user's: another user's file there is refused by the kernel.
    if os.path.lexists(path):
        owner, folder_stat = os.lstat(path).st_uid, os.stat(folder)
        if folder_stat.st_mode & stat.S_ISVTX and os.geteuid() not in (
                0, owner, folder_stat.st_uid):
            raise PermissionError(errno.EPERM, f"Operation not permitted ({folder} is sticky, "
                                  "and the file there belongs to another user)", path)


def _check_creatable(folder, path):
    """Raise the ``OSError`` of creating a file in ``folder``, naming ``path`` (the
    user's): for root, ``os.access`` says yes to folders where no file can be made
    (``/proc``), and the work was done before the write failed. The probe, an empty file of
    ours, is removed at once."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".zoo-write-check-", dir=folder)
    except OSError as err:
        raise type(err)(err.errno, f"{err.strerror} (cannot create files in {folder})",
                        path) from None
    os.close(handle)
    os.unlink(probe)


def check_free_space(path, needed):
    """Raise ``OSError(ENOSPC)`` naming ``path`` when its file system has fewer than
    ``needed`` bytes free: checked before a large write that a full disk would break
    midway (h5py, writing Keras weights, crashed the process with a segmentation fault
    after its own "No space left on device"). The previous file is left as it was.

    Example:

    >>> check_free_space(__file__, 10**30)
    Traceback (most recent call last):
    ...
    OSError: [Errno 28] No space left on device: about ... GB are needed to write it, and the previous ... is left as it was: '...'
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)  # (it is made just before the write)
    if shutil.disk_usage(folder).free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device: about {size_text(needed)} "
                      f"are needed to write it, and the previous {os.path.basename(path)}, "
                      "if any, is left as it was", path)


def size_text(count):
    """A byte count for people: ``1.2 GB``, ``3.4 MB`` (``{:.3g}`` wrote 1.23e+03 MB); a
    count that rounds up to the next unit is written in it.

    Example:

    >>> size_text(999_950_000), size_text(1536), size_text(999)
    ('1.0 GB', '1.5 kB', '999 bytes')
    """
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= 0.99995 * scale:  # (999.95 MB was written 1,000.0 MB)
            return f"{count / scale:,.1f} {unit}"
    return f"{int(count)} bytes"


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
    """Save a matplotlib figure atomically, in the format its file name's extension names
    (``.png``, ``.pdf``, ``.svg``, ...; PNG without one: it wrote PNG bytes into a
    ``.pdf``), or one line for an extension matplotlib does not write."""
    extension = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    supported = fig.canvas.get_supported_filetypes()
    if not extension.isalpha():  # ("runs/v1.2": no format named)
        extension = ""
    if extension and extension not in supported:
        raise UserError(f"Cannot save a figure as {os.fspath(path)}: matplotlib writes "
                        f"{', '.join(sorted(supported))}; received .{extension}.")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=extension or "png")


MARKER = "zoo_export.json"  # written into every directory this project exports
# What this project's exports held before their marker listed their files (directories end
# in "/"): an export of an earlier version holding only these may be replaced.
_EARLIER_EXPORT = re.compile(
    r"saved_model\.pb|fingerprint\.pb|variables/|variables/variables\.index"
    r"|variables/variables\.data-\d+-of-\d+|assets/|assets/class_names\.txt"
    r"|assets/zoo_model\.json")
_SHOWN = 3  # the files of a user's that a refusal names


def is_regular_file(path):
    """Whether ``path`` is a regular file itself: not a link to one, a folder, a named pipe
    (which ``open`` would wait on) or a device."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _ours(path, required):
    return all(is_regular_file(os.path.join(path, name)) for name in (MARKER,) + required)


def _contents(directory, prefix=""):
    """Everything below ``directory``, relative to it, in sorted order, links never
    followed: a directory as ``"name/"`` (then its contents), a regular file as ``"name"``,
    anything else as ``"name (a link)"`` or ``"name (not a regular file)"``.

    Example:

    >>> import tempfile
    >>> base = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(base, "variables"))
    >>> open(os.path.join(base, "variables", "variables.index"), "w").close()
    >>> os.symlink(base, os.path.join(base, "current"))
    >>> _contents(base)
    ['current (a link)', 'variables/', 'variables/variables.index']
    """
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    found = []
    for entry in entries:
        name = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            found += [name + "/"] + _contents(entry.path, name + "/")
        elif entry.is_file(follow_symlinks=False):
            found.append(name)
        else:
            kind = "a link" if entry.is_symlink() else "not a regular file"
            found.append(f"{name} ({kind})")
    return found


def _written(path):
    """The files an export of ours at ``path`` wrote, as its marker lists them; None for an
    export of an earlier version (or an unreadable marker): see :data:`_EARLIER_EXPORT`."""
    try:
        with open(os.path.join(path, MARKER), encoding="utf-8") as f:
            files = json.load(f).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(files, list):
        return None
    return {name for name in files if isinstance(name, str)}


def _foreign(path):
    """What the export of ours at ``path`` holds that it did not write, in sorted order (a
    directory of the user's is named, not its contents)."""
    written = _written(path)
    foreign = []
    for name in _contents(path):
        if name == MARKER or any(name.startswith(f) for f in foreign if f.endswith("/")):
            continue
        ours = name in written if written is not None else _EARLIER_EXPORT.fullmatch(name)
        if not ours:
            foreign.append(name)
    return foreign


def check_not_a_link(path, kind="directory"):
    """Refuse, in one line, an export to ``path`` that is a symbolic link (``current ->
    v3``, a common deployment layout): replacing the link would break the layout, and
    writing through it would change ``v3`` in place, so neither is done. ``kind`` (a
    "directory", a "file") is what the message advises to export to instead."""
    if os.path.islink(path):
        raise UserError(
            f"Refusing to export to {path}: it is a symbolic link (to {os.readlink(path)}), "
            "which an export neither replaces nor writes through; nothing was changed. "
            f"Export to a new {kind} and point the link at it (ln -sfn), or name the {kind} "
            "it links to.")


def check_replaceable(path, overwrite=False, required=("saved_model.pb",)):
    """Refuse, with one line naming ``path``, anything :func:`atomic_directory` may not
    replace:

    - a symbolic link (``current -> v3``), to an export or not: replacing it would break
      the user's layout, and writing through it would change ``v3`` in place;
    - a file, or a non-empty directory this project did not write (no marker file and
      ``required`` files);
    - an export of ours that holds files it did not write (a user's ``NOTES.md``, TensorFlow
      Serving's ``assets.extra/``): replacing it would delete them;
    - a previous export of ours without ``overwrite``.

    Example:

    >>> import tempfile
    >>> base = tempfile.mkdtemp()
    >>> os.symlink("v3", os.path.join(base, "current"))
    >>> check_replaceable(os.path.join(base, "current"), overwrite=True)
    Traceback (most recent call last):
    ...
    safeio.checks.UserError: Refusing to export to .../current: it is a symbolic link (to v3), ...
    """
    check_not_a_link(path, "directory")
    if not os.path.exists(path):
        return
    if not os.path.isdir(path):
        raise UserError(f"Cannot export to {path}: a file is there.")
    if os.path.ismount(path):  # (its rmdir: "Device or resource busy", after all the work)
        raise UserError(f"Cannot export to {path}: it is a mount point, which the finished "
                        f"export cannot be moved onto. Export into a folder inside it "
                        f"({os.path.join(path, 'served')}).")
    holds = _holds_working_directory(path)  # (replaced: the shell left in a deleted folder)
    if holds is not None:
        raise UserError(f"Cannot export to {path}: it {holds} the working directory, which "
                        "the export would replace. Give a folder inside it, or another.")
    if not os.listdir(path):
        return
    if not _ours(path, required):
        missing = [name for name in (MARKER, *required)
                   if not is_regular_file(os.path.join(path, name))]
        raise UserError(
            f"Refusing to export to {path}: the directory holds files that are not an export "
            f"of this project ({' and '.join(missing)} missing). Nothing was changed; give a "
            "new or empty directory.")
    foreign = _foreign(path)
    if foreign:
        more = f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else ""
        raise UserError(
            f"Refusing to replace the export in {path}: it holds files the export did not "
            f"write ({', '.join(foreign[:_SHOWN])}{more}), which replacing it would delete. "
            "Nothing was changed; move them out, or export to a new directory.")
    if not overwrite:
        raise UserError(f"{path} already holds an export; pass overwrite=True "
                        "(--overwrite) to replace it.")


def _holds_working_directory(path):
    """``"is"`` where ``path`` is the working directory, ``"holds"`` where it is one of its
    parents, else None: by ``samefile`` up the working directory's parents (a case-blind
    file system's ``Served`` is ``served``; a bind mount its source)."""
    try:
        here = node = os.getcwd()
        while True:
            if os.path.samefile(node, path):
                return "is" if node == here else "holds"
            parent = os.path.dirname(node)
            if parent == node:
                return None
            node = parent
    except OSError:  # (a working directory removed under the process)
        return None


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


def _put_in_place(tmp, path):
    """Make the finished directory ``tmp`` ``path``: renamed where nothing (or an empty
    directory) is there, else exchanged with the previous export in one step (``tmp`` then
    holds the previous export). Where the system cannot exchange, two renames; the previous
    export is put back if the second fails."""
    if os.path.isdir(path) and not os.listdir(path):
        os.rmdir(path)
    if not os.path.exists(path):
        os.rename(tmp, path)
    elif not _exchange(tmp, path):
        directory, name = os.path.split(path)
        old = _scratch(directory, "old", name)
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except OSError:
            os.rename(old, path)
            raise
        shutil.rmtree(old)


@contextlib.contextmanager
def atomic_directory(path, overwrite=False, required=("saved_model.pb",)):
    """Yield a temporary path beside ``path`` for the writer to create a directory at (as
    ``model.export`` does); on success it becomes ``path``, with a marker file that says
    this project wrote it and lists what it wrote.

    ``path`` must be absent, an empty directory, or (with ``overwrite``) a previous export
    of this project that holds only what that export wrote (:func:`check_replaceable`,
    checked before and after the work); never a symbolic link. Nothing else is ever
    deleted. A previous export is replaced in one atomic exchange, so ``path`` is never
    absent, even if the process is killed half-way; where the system cannot exchange two
    paths, two renames are used.

    A fault of the OS while writing (a read-only file system, a full disk), an ``OSError``
    or TensorFlow's error for it, is raised as an ``OSError`` naming ``path``, not the
    temporary directory (:func:`_fault_at_target`).

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
    directory, name = os.path.split(path)
    clean_stale(directory, name)  # (a previous export a kill left aside is back first)
    check_replaceable(path, overwrite, required)
    make_directory(directory)
    tmp = _scratch(directory, "tmp", name)
    _remove(tmp)  # a dead process of this PID and host left it: never part of this export
    try:
        yield tmp
        missing = [f for f in required if not os.path.isfile(os.path.join(tmp, f))]
        if missing:  # (it would replace a good export, which then refused itself)
            raise RuntimeError(f"The export to {path} wrote no {', '.join(missing)}; the "
                               "previous one, if any, is left as it was.")
        write_json(os.path.join(tmp, MARKER), {
            "written_by": "keras-zoo-ensembles", "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "files": _contents(tmp)})
        check_replaceable(path, overwrite, required)
        _flush(tmp, recursive=True)
        _put_in_place(tmp, path)
        _flush(directory, done=True)
    except Exception as err:
        fault = _fault_at_target(err, tmp, path)
        if fault is None:
            raise
        raise fault from err
    finally:
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):  # a writer that failed half-way may leave a file
            os.unlink(tmp)


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
    info = os.fstat(fd)
    # A lock holds nothing, or "PID on host" (_LOCK_TEXT): another file (a user's .lock,
    # or a hard link to one, which O_NOFOLLOW does not see) was emptied.
    text = os.pread(fd, 1024, 0) if info.st_size <= 1024 else b"?"
    if info.st_nlink > 1 or not _LOCK_TEXT.fullmatch(text):
        os.close(fd)
        what = (f"a hard link to a file of {info.st_nlink} names" if info.st_nlink > 1
                else f"a file of {info.st_size:,} bytes")
        raise UserError(f"The run directory's lock {path} is {what}, not a lock this project "
                        "wrote; nothing was changed. Remove it, or give another run_dir.")
    return os.fdopen(fd, "r+", encoding="utf-8")


# What directory_lock writes in its lock: "PID on host" (a PID alone, in earlier versions).
_LOCK_TEXT = re.compile(rb"(\d+( on [^\n]*)?)?")


_SHARED = {}  # a locked directory's real path -> the thread that shares its lock


@contextlib.contextmanager
def directory_lock(directory, share=False):
    """Hold an exclusive lock on ``directory`` (``fcntl.flock`` on its ``.lock`` file) for
    the block; a second holder gets a ``ValueError`` naming the directory and the PID that
    holds it. The kernel drops the lock when its process dies, so a killed run never
    leaves a stale lock behind. With ``share``, a lock taken again on the directory by
    this thread within the block is this one (a command holds its run directory from its
    first write to its last, across the library calls that lock it themselves).

    Example:

    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> with directory_lock(run):
    ...     with directory_lock(run):   # a second run in the same directory
    ...         pass
    Traceback (most recent call last):
    ...
    safeio.checks.UserError: The run directory ... is in use by another run (process ...); wait for it, or give another run directory.
    """
    make_directory(directory)
    key = os.path.realpath(directory)
    if _SHARED.get(key) == threading.get_ident():
        yield
        return
    path = os.path.join(directory, ".lock")
    with _open_lock(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise UserError(f"The run directory {directory} is in use by another run "
                            f"(process {holder}); wait for it, or give another run directory.")
        except OSError as err:  # ENOLCK: a file system without locks (NFSv3, no lockd)
            raise OSError(err.errno, f"Cannot lock the run directory: {err.strerror}",
                          path) from err
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()} on {socket.gethostname()}")  # (a shared file system)
            f.flush()
        except OSError as err:  # (a full disk: errno 28 named no file)
            raise OSError(err.errno, f"Cannot mark the run directory's lock: {err.strerror}",
                          path) from err
        if share:
            _SHARED[key] = threading.get_ident()
        try:
            yield
        finally:
            if share:
                _SHARED.pop(key, None)
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
