"""A run directory's ``config.json``: the settings of the run, written when it starts, and
compared with the settings of a resume (a resumed run trains with its backup's state,
whatever it is given, so different settings are refused in one line)."""

import contextlib
import csv
import json
import math
import os
import re
import shutil
import tempfile

from safeio import _alive, _token, write_json
from safeio.checks import UserError

# What a resumed run may change: the epochs to reach (more, or the same), the facts of the
# machine and the moment, and how the step is compiled.
MAY_CHANGE = ("epochs", "started", "keras", "tensorflow", "backend", "strategy",
              "replicas", "jit_compile")
# May be named where it was left to Keras ("auto", recorded as None), and left to Keras
# where it was named (a run made before it was a setting, whose metric Keras knows no
# direction for, resumes by naming it); never turned from "min" to "max" or back, which
# would flip best.keras and the plateaus in mid-run.
NAMED_ONCE = ("monitor_mode",)


# Entries recorded since some runs were made: such a run resumes without comparing them.
LATER_ENTRIES = ("data", "teacher_weights", "resize", "teacher_serving", "input_shape",
                 "student", "teacher_logits", "computes_in")


def flat_config(config, prefix=""):
    """``{"optimizer": {"config": {"learning_rate": 0.1}}}`` -> ``{"optimizer.learning_rate":
    0.1}`` (Keras' ``config`` levels left out of the names)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_config(value, prefix if key == "config" else f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _float32(value):
    """A float as the number the user gave (Keras keeps 0.01 as 0.009999999776482582)."""
    return float(f"{value:.7g}") if isinstance(value, float) else value


def _change(before, now):
    """``"0.01 -> 0.1"``: floats at float32's precision (Keras stores the learning rate as
    float32: 0.009999999776482582 is the 0.01 the user gave), unless that hides the change."""
    if all(isinstance(v, float) for v in (before, now)):
        shown = [_float32(value) for value in (before, now)]
        if shown[0] != shown[1]:
            before, now = shown
    return f"{before!r} -> {now!r}"


_RATE = "optimizer.learning_rate"
# What a schedule's settings are to a user (train_snapshots', zoo train --snapshots').
_SCHEDULE_HINTS = {
    f"{_RATE}.total_steps": "the schedule's updates, epochs x steps per epoch: a scheduled "
                            "run's length is fixed when it starts",
    f"{_RATE}.cycles": "the snapshot cycles, --snapshots",
}


def _described(keys, before, now):
    """``"key before -> now"`` for each changed key; a learning rate that became a schedule,
    or stopped being one, is one entry (not each of the schedule's settings), and a
    schedule's length and cycles say what they are."""
    rate = [key for key in keys if key == _RATE or key.startswith(_RATE + ".")]
    kinds = [flat.get(f"{_RATE}.class_name") for flat in (before, now)]
    if rate and kinds[0] != kinds[1] and any(kinds):  # (settings without the optimizer's:
        shown = [f"a {kind} schedule" if kind else repr(_float32(flat.get(_RATE)))  # none)
                 for kind, flat in zip(kinds, (before, now))]
        rest = [key for key in keys if key not in rate]
        started = ("" if all(kinds) else " (the run was started with a schedule: zoo train "
                   "--snapshots, or train_snapshots)" if kinds[0] else
                   " (the run was started without a schedule: no --snapshots)")
        return ([f"learning rate {shown[0]} -> {shown[1]}{started}"]
                + [f"{key} {_change(before.get(key), now.get(key))}" for key in rest])
    return [f"{key} {_change(before.get(key), now.get(key))}"
            + (f" ({_SCHEDULE_HINTS[key]})" if key in _SCHEDULE_HINTS else "")
            for key in keys]


# What a run's backup folder holds (Keras' BackupAndRestore's files, their previous copies,
# and the scratch copies of our atomic writes, which end in the same names).
BACKUP_FILES = ("latest.weights.h5", "training_metadata.json", "latest.weights.h5.bkp",
                "training_metadata.json.bkp")


def holds_stopped_run(run_dir):
    """Whether ``run_dir`` holds the backup of a run that has not ended (a resume starts
    from it): a ``backup`` folder that is empty (a run stopped before its first backup) or
    holds a backup's files, not a folder of the user's that is named so."""
    backup = os.path.join(run_dir, "backup")
    if not os.path.isdir(backup):
        return False
    try:
        names = os.listdir(backup)
    except OSError:  # (unreadable: the run's own reading names it)
        return True
    if not names:  # a run stopped before its first backup wrote its config.json first
        return os.path.isfile(os.path.join(run_dir, "config.json"))
    return any(name.endswith(BACKUP_FILES) for name in names)


# What a run writes in its directory (zoo.train, and the commands around it).
RUN_ENTRIES = ("config.json", "history.csv", "checkpoints", "backup", "logs",
               "learning_curves.png", "learning_rate.png", "snapshots")
_OUR_KEYS = {"model", "optimizer", "keras", "started"}  # in every run's config.json


def _our_config(path):
    """The run's config ``path`` holds, or None (none there, unreadable, or not a run's)."""
    if not os.path.isfile(path):  # (a folder, or a named pipe that open would wait on)
        return None
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and _OUR_KEYS <= set(config) else None


def _is_our_config(path):
    return _our_config(path) is not None


def read_config(run_dir):
    """The ``config.json`` a run of this project wrote in ``run_dir``, or None (none there,
    unreadable, or not a run's)."""
    return _our_config(os.path.join(run_dir, "config.json"))


def check_not_foreign(run_dir):
    """Refuse, in one line, a ``run_dir`` holding entries a run writes (``config.json``,
    ``checkpoints/``, ...) that no run of this project wrote: its config.json is missing
    or not a run's. The run would replace them (the user's files, never ours to delete)."""
    _check_backup_reachable(run_dir)
    _check_no_linked_files(run_dir)
    if not os.path.isdir(run_dir) or holds_stopped_run(run_dir):
        return  # a new directory; or a run's, whose config write_config compares
    present = [name for name in RUN_ENTRIES if os.path.lexists(os.path.join(run_dir, name))]
    if present and not _is_our_config(os.path.join(run_dir, "config.json")):
        raise UserError(
            f"{run_dir} holds {', '.join(present)}, which no run of this project wrote (its "
            "config.json is missing or not a run's): a run there would replace them. Give a "
            "new or empty run directory, or move them aside.")
    trained = _what_a_run_trained(run_dir)
    if trained:
        raise UserError(
            f"{run_dir} holds a run that trained ({trained}) and no backup/ to resume it "
            "from: a new run there would replace its checkpoints, history and config.json, "
            "whatever its settings. Give another run directory, or move the run aside.")


# The files a run writes, by folder: its own, the checkpoints, every backup file, the
# snapshots (a link of the user's elsewhere, checkpoints/deployed.keras say, is no concern).
RUN_FILES = {"": ("config.json", "history.csv", "statistics.npz", "learning_curves.png",
                  "learning_rate.png"),
             "checkpoints": ("best.keras", "last.keras"), "backup": None, "snapshots": None}


def _check_no_linked_files(run_dir):
    """A file a run writes that is a symbolic link is one line, before any work: a run
    replaces its files in place, so config.json and history.csv became files (the user's
    links gone) and the checkpoints were refused after an epoch's training, at every
    rerun. (A linked folder, a backup/ on a larger disk say, is the user's choice: its
    files are written.)"""
    for folder, names in RUN_FILES.items():
        folder = os.path.join(run_dir, folder) if folder else run_dir
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)) if names is None else names:
            refuse_linked(os.path.join(folder, name), "a run")


def refuse_linked(path, writer):
    """One line where ``path``, a file ``writer`` (``"a run"``, ``"zoo diagnose"``)
    replaces, is a symbolic link to a file: replacing it in place would drop the user's
    link.

    Example:

    >>> refuse_linked("runs/r1/history.csv", "a run")   # not a link: nothing to say
    """
    if os.path.islink(path) and not os.path.isdir(path):
        raise UserError(f"{path} is a symbolic link (to {os.readlink(path)}): {writer} "
                        "replaces its files, and would replace the link. Put the file "
                        "itself there, or give another run directory.")


def _check_backup_reachable(run_dir):
    """A run's ``backup`` that is a link to nothing (a disk not mounted) is one line: taken
    for no backup, a run with other settings rewrote the config.json, then failed."""
    backup = os.path.join(run_dir, "backup")
    if os.path.islink(backup) and not os.path.exists(backup):
        raise UserError(f"{backup} is a link to {os.readlink(backup)}, which is not there (a "
                        "disk not mounted?): the run's backup, which a resume reads. Make it "
                        "reachable, or give another run directory.")


def _what_a_run_trained(run_dir):
    """What shows that the run in ``run_dir`` trained an epoch (its checkpoints/best.keras,
    or a finite loss in its history.csv), or None: a run that ended before any epoch was
    backed up (diverged in its first, or failed at its end: :func:`forget_empty_backup`)
    left nothing to resume, and may be run again."""
    if (read_config(run_dir) or {}).get(ENDED_UNBACKED):
        return None
    best = os.path.join(run_dir, "checkpoints", "best.keras")
    if os.path.lexists(best):
        return best
    path = os.path.join(run_dir, "history.csv")
    with contextlib.suppress(OSError, ValueError, csv.Error):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                with contextlib.suppress(TypeError, ValueError):
                    if math.isfinite(float(row.get("loss"))):
                        return f"{path}, epoch {row.get('epoch')}"
    return None


def write_config(run_dir, config):
    """Write ``config.json``; for a run directory that holds a run already, refuse
    settings that differ from its own (the resumed run would train with the backup's
    state, not with them), in one line listing what differs. (Before it, and before the
    directory's lock, :func:`check_not_foreign`.)"""
    check_resume(run_dir, config, whole=True)
    write_json(os.path.join(run_dir, "config.json"), config)


def check_resume(run_dir, settings, whole=False):
    """Where ``run_dir`` holds a stopped run, refuse ``settings`` (some entries of a
    config, each compared whole: a key it recorded and lacks now differs too; or with
    ``whole`` all of it) that differ from the run's config.json, in one line listing what
    differs; before any work, where a command knows them early (the
    data's settings, before the statistics pass). The :data:`LATER_ENTRIES` a run's
    config lacks (written before they were recorded) are not compared."""
    _check_backup_reachable(run_dir)
    if not holds_stopped_run(run_dir):
        return
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            before = json.load(f)
        if not isinstance(before, dict):
            raise UserError("not a JSON object")
    except (OSError, ValueError) as err:
        problem = "is missing" if not os.path.exists(path) else (
            f"is unreadable ({type(err).__name__}: {str(err)[:80]})")
        raise UserError(
            f"{path} {problem}, but {run_dir} holds a backup of a run: resumed, it would "
            "train with the backup's weights, optimizer and learning rate whatever the "
            "settings given now. Restore config.json, or give another run directory.") from None
    now = flat_config(json.loads(json.dumps(settings, default=str)))
    unrecorded = {key for key in LATER_ENTRIES if key not in before}
    before = flat_config(before)
    keys = set(now) | {key for key in before if whole or key.split(".")[0] in settings}
    changed = [key for key in sorted(keys)
               if key.split(".")[0] not in MAY_CHANGE + tuple(unrecorded)
               and before.get(key) != now.get(key)
               and not (key in NAMED_ONCE and None in (before.get(key), now.get(key)))
               and not key.endswith(".name")]  # Keras numbers optimizer names
    changed = _described(changed, before, now)
    if changed:
        raise UserError(
            f"{run_dir} holds a run with other settings ({'; '.join(changed)}); "
            "resume it with its own settings, or give another run directory.")


def recorded(run_dir, key):
    """``key``'s value in the ``config.json`` of the stopped run in ``run_dir``, or None
    (no stopped run, no such entry, or a config that cannot be read: the resume's own
    checks say so)."""
    if run_dir is None or not holds_stopped_run(run_dir):
        return None
    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config.get(key) if isinstance(config, dict) else None


def forget_empty_backup(run_dir):
    """Remove ``run_dir/backup`` where it is empty (made when training started, and no
    epoch was backed up): a run that ended so (diverged in its first epoch, or failed at
    its end) is no run to resume, and may be run again with other settings; its
    config.json says so (:data:`ENDED_UNBACKED`), whatever its first epoch left behind (a
    history row, a checkpoint). Nothing else is touched."""
    try:
        os.rmdir(os.path.join(run_dir, "backup"))
    except OSError:  # (not empty, or not there: left as it is)
        return
    config = read_config(run_dir)
    if config is not None:
        with contextlib.suppress(OSError):
            write_json(os.path.join(run_dir, "config.json"), {**config, ENDED_UNBACKED: True})


# In a config.json, where the run ended before any epoch was backed up: nothing to resume.
ENDED_UNBACKED = "ended_before_a_backup"


def epochs_done(run_dir):
    """The epochs the backup in ``run_dir`` holds (0 where there is none, or where its
    metadata cannot be read: the restore says so)."""
    path = os.path.join(run_dir, "backup", "training_metadata.json")
    try:
        with open(path, encoding="utf-8") as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def what_was_kept(run_dir):
    """Where the last good weights are, or that there are none: said after a divergence."""
    if run_dir is None:
        return "nothing was saved (no run_dir)."
    last = os.path.join(run_dir, "checkpoints", "last.keras")
    if not os.path.exists(last):
        return ("no checkpoint was written: it diverged before its first epoch ended. "
                "Lower the learning rate.")
    return (f"the last good checkpoint is {last} (and best.keras beside it). A resume "
            "would restore the same rate and diverge again (and refuses another): lower the "
            "learning rate in a new run directory, starting from it "
            "(zoo.load_model) or from scratch.")


_SCRATCH = "process-run-dir"  # what the mark in a scratch copy's name is of
_SCRATCH_NAME = re.compile(r"zoo-process\d+-(\d+)-([0-9a-f]{10})-")


def _remove_dead_scratch():
    """Remove the scratch copies (:func:`process_run_dir`) that processes killed before
    their end left in the temporary folder: those whose name carries safeio's mark for a
    PID no longer alive on this host (a JAX process ended by the heartbeat of a dead one,
    at every restart of a cluster). Nothing else is touched, and no link is followed."""
    folder = tempfile.gettempdir()
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        match = _SCRATCH_NAME.match(entry)
        if match is None or match.group(2) != _token(int(match.group(1)), _SCRATCH):
            continue
        path = os.path.join(folder, entry)
        if not _alive(int(match.group(1))) and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def process_run_dir(run_dir, process):
    """The directory process ``process`` of a JAX cluster writes: ``run_dir`` for process 0
    (and outside a cluster), else a new private copy of what ``run_dir`` holds for a
    resume (``config.json``, ``history.csv``, ``backup/``), removed at the end. Saving is
    a collective in JAX, so every process saves what process 0 saves, and only process 0
    writes ``run_dir``. Taken before the model is built, the copy cannot race process 0's
    first backup, which needs every process's training steps."""
    if run_dir is None or process == 0:
        yield run_dir
        return
    _remove_dead_scratch()  # (JAX's heartbeat ends a process without its finally)
    pid = os.getpid()
    scratch = tempfile.mkdtemp(prefix=f"zoo-process{process}-{pid}-{_token(pid, _SCRATCH)}-")
    try:
        for name in ("config.json", "history.csv", "backup"):
            source = os.path.join(run_dir, name)
            # (a backup/ linked to a larger disk is read through its link, as process 0
            # reads it: skipped, the other processes started afresh beside its resume)
            if os.path.isdir(source) and (name == "backup" or not os.path.islink(source)):
                shutil.copytree(source, os.path.join(scratch, name), symlinks=True)
            elif os.path.isfile(source) and not os.path.islink(source):
                shutil.copyfile(source, os.path.join(scratch, name))
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
