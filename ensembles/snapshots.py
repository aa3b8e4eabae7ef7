"""Snapshot ensembles from ONE training run, both ways the sources describe.

- Cyclic (Huang et al. 2017): per-iteration cosine annealing with warm restarts over M
  cycles, a snapshot at the end of each cycle: :func:`train_snapshots`.
- Checkpoints of an ordinary run with ``ReduceLROnPlateau``, every k epochs and/or at each
  learning-rate drop: :class:`CheckpointSnapshots`, passed to ``zoo.train(callbacks=...)``.

The cyclic schedule and ``ReduceLROnPlateau`` do not compose: Keras cannot change a
``LearningRateSchedule``'s rate, so ``zoo.train`` refuses the pair with a clear error, and
:func:`train_snapshots` always trains with ``reduce_lr=False``. Snapshot files are written
atomically.
"""

import glob
import math
import os
import re
import warnings

import keras

from ensembles.ensemble import Ensemble, is_ensemble, member_graph, members_of
from ensembles.schedules import CyclicCosine
from safeio import atomic_path, check_free_space, natural_key
from safeio.checks import UserError, check_bool, check_positive_int
from zoo.optimizers import make_optimizer
from zoo.saving import class_names as get_class_names
from zoo.saving import bytes_to_save, load_weights
from zoo.saving import (input_pixels, resize_mode, set_class_names, set_input_pixels,
                        set_resize_mode)
from zoo.training import distribute, keras_internals, run_config
from zoo.training import recipe as training


def _save_weights(model, path):
    # (first: h5py crashed the process with a segmentation fault on a full disk)
    check_free_space(path, bytes_to_save(model))
    with atomic_path(path) as tmp:
        model.save_weights(tmp)


class CycleSnapshots(keras.callbacks.Callback):
    """Save ``snapshot-K.weights.h5`` when the K-th cycle ends: when the optimizer's update
    count, the schedule's clock, reaches ``boundaries[K - 1]``
    (:attr:`CyclicCosine.boundaries`).

    Under mixed_float16, Keras' ``LossScaleOptimizer`` skips the update of a step whose
    gradients overflow and does not count it: the schedule then runs behind the batches,
    and a snapshot taken by the batch count came before its cycle had annealed. Such a run
    ends before its last boundary; its last snapshot is then its final weights, taken at
    the last epoch's end. The update count is read only from a
    boundary's batch on (under JAX, reading it syncs the model's state), or at every batch
    of a ``fit`` without ``steps_per_epoch``."""

    keeps_weights = True  # (zoo.train's backup may copy the checkpoint's: see there)

    def __init__(self, directory, boundaries):
        super().__init__()
        self.directory = directory
        self.boundaries = [int(step) for step in boundaries]
        self.epoch = 0
        self._next = None  # the index of the next boundary to snapshot at
        self._last_batch = -1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def _updates(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _save(self, index):
        _save_weights(self.model, os.path.join(self.directory,
                                               f"snapshot-{index + 1}.weights.h5"))

    def on_train_batch_end(self, batch, logs=None):
        steps = self.params.get("steps")
        self._last_batch = batch
        if self._next is None:  # the first batch (of a resumed run too): where it stands
            updates = self._updates()
            self._next = next((i for i, b in enumerate(self.boundaries) if b >= updates),
                              len(self.boundaries))
        elif self._next >= len(self.boundaries) or (
                steps and self.epoch * steps + batch + 1 < self.boundaries[self._next]):
            return  # (no update count reaches a boundary before its batch)
        else:
            updates = self._updates()
        if self._next < len(self.boundaries) and updates >= self.boundaries[self._next]:
            self._save(self._next)
            self._next += 1

    def on_epoch_end(self, epoch, logs=None):
        # The last epoch's end, before its backup (zoo.train runs the user's callbacks
        # first): a kill after it resumes a run with nothing left to train. Not where the
        # epoch stopped early (TerminateOnNaN in mid-epoch) or its loss is not finite.
        steps = self.params.get("steps")
        whole = not steps or self._last_batch + 1 >= steps
        loss = (logs or {}).get("loss")
        if (self._next is not None and self._next < len(self.boundaries) and whole
                and (loss is None or math.isfinite(loss))
                and epoch + 1 == self.params.get("epochs")):
            for index in range(self._next, len(self.boundaries)):  # (skipped updates)
                self._save(index)
            self._next = len(self.boundaries)


class CheckpointSnapshots(keras.callbacks.Callback):
    """Snapshots of an ordinary run: every ``every`` epochs and/or when the learning rate drops.

    Put it after ``ReduceLROnPlateau`` (``zoo.train`` puts its own callbacks first, and the
    user's before its backup, so a resumed run never loses a snapshot): a drop is seen as
    an optimizer rate below the one the epoch was trained with, and the snapshot holds the
    weights reached at the end of the higher-rate phase. Under a learning-rate schedule,
    which lowers the rate at every step, only ``every`` takes snapshots.

    Example:

    >>> zoo.train(build, train, val, run_dir="runs/a",
    ...           callbacks=[CheckpointSnapshots("runs/a/snapshots", every=5)])  # doctest: +SKIP
    """

    keeps_weights = True  # (zoo.train's backup may copy the checkpoint's: see there)

    def __init__(self, directory, every=None, at_lr_drop=True):
        super().__init__()
        if not isinstance(directory, (str, os.PathLike)):
            raise UserError(f"CheckpointSnapshots' `directory` must be a folder name; "
                            f"received {directory!r}.")
        check_positive_int(every, "every", allow_none=True)  # (True was 1; NumPy's refused)
        at_lr_drop = check_bool(at_lr_drop, "at_lr_drop")
        if every is None and not at_lr_drop:
            raise UserError("CheckpointSnapshots with every=None and at_lr_drop=False would "
                            "take no snapshot: give every=N (epochs) or at_lr_drop=True.")
        self.directory = os.fspath(directory)
        self.every = None if every is None else int(every)
        self.at_lr_drop = at_lr_drop
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = None  # the first epoch this run trains, seen at its beginning

    def on_epoch_begin(self, epoch, logs=None):
        # (here, not in on_train_begin: a BackupAndRestore of the user's, which zoo.train
        # puts after this callback, has restored the run by the first epoch's beginning)
        if self._start is None:
            self._start = epoch
            self._check_folder(epoch)

    def _check_folder(self, start):
        """Refuse, before this run trains, a folder that is not one, and snapshots it did
        not take: a cycle's (train_snapshots'), those of epochs after the one it starts
        from, and one of that epoch where this run takes none then. (A kill after an
        epoch's snapshot and before its backup leaves that one, which the resumed run,
        exact, takes again; where only a drop of the learning rate would take it,
        :meth:`on_epoch_end` checks that it was.)"""
        if os.path.lexists(self.directory) and not os.path.isdir(self.directory):
            raise UserError(f"{self.directory} is a file (or a link to nothing), not a folder: "
                            "CheckpointSnapshots saves its snapshots into a folder. Give "
                            "another directory.")
        drops = self.at_lr_drop and keras_internals.learning_rate_schedule(
            self.model.optimizer) is None  # (under a schedule, none is taken at a drop)
        foreign = [p for p in snapshot_paths(self.directory)
                   if _epoch_of(p) is None or _epoch_of(p) > start + 1
                   or (_epoch_of(p) == start + 1 and not self._periodic(start)
                       and not drops)]
        if foreign:
            names = ", ".join(os.path.basename(p) for p in foreign[:3])
            raise UserError(f"{self.directory} holds {len(foreign)} snapshot(s) this run did "
                            f"not take ({names}{', ...' if len(foreign) > 3 else ''}; it "
                            f"starts at epoch {start + 1}): an earlier run's. Move them "
                            "aside, or give another folder.")

    def _periodic(self, epoch):
        return self.every is not None and (epoch + 1) % self.every == 0

    def on_epoch_end(self, epoch, logs=None):
        used = (logs or {}).get("learning_rate")
        optimizer = self.model.optimizer
        scheduled = keras_internals.learning_rate_schedule(optimizer) is not None
        now = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        dropped = (self.at_lr_drop and not scheduled and used is not None
                   and now < used * (1 - 1e-6))
        path = os.path.join(self.directory, f"snapshot-epoch{epoch + 1:03d}.weights.h5")
        if dropped or self._periodic(epoch):
            _save_weights(self.model, path)
        elif epoch == self._start and os.path.lexists(path):
            warnings.warn(  # (an earlier run's, or this run's before a kill whose drop a
                f"{path} was not taken by this run, whose learning rate did not drop at "  # GPU
                f"epoch {epoch + 1}: it is an earlier run's (or one a killed attempt took "
                "before a drop that did not repeat), and from_snapshots will take it. Move "
                "it aside if it is not this run's.", stacklevel=2)  # run's noise changed)


def _epoch_of(path):
    """The epoch of a ``snapshot-epochNNN.weights.h5``, or None for a cycle's snapshot."""
    match = re.fullmatch(r"snapshot-epoch(\d+)\.weights\.h5", os.path.basename(path))
    return int(match.group(1)) if match else None


def check_no_earlier_snapshots(run_dir):
    """Refuse, in one line, a ``run_dir`` whose ``snapshots/`` holds snapshots while it
    holds no stopped run to resume: a new run would leave them beside its own, as if they
    were its last cycles."""
    directory = os.path.join(run_dir, "snapshots")
    earlier = [] if run_config.holds_stopped_run(run_dir) else snapshot_paths(directory)
    if earlier:
        names = ", ".join(os.path.basename(p) for p in earlier[:3])
        raise UserError(f"{directory} holds {len(earlier)} snapshot(s) of an earlier run "
                        f"({names}{', ...' if len(earlier) > 3 else ''}) and {run_dir} no "
                        "run to resume: move them aside, or give another run_dir.")


def train_snapshots(model, train_data, val_data=None, *, epochs, cycles, run_dir,
                    learning_rate=0.1, momentum=0.9, weight_decay=5e-4, steps_per_epoch=None,
                    optimizer="sgd", **train_kwargs):
    """Train ONE run with the cyclic cosine schedule, saving a snapshot per cycle.

    ``model``, ``train_data``, ``val_data`` and ``train_kwargs`` go to ``zoo.train`` (so the
    run directory, resume and strategies work as there). ``optimizer`` is a name of
    ``zoo.make_optimizer`` (the paper's SGD by default) driven by the cyclic schedule.
    Snapshots land in ``run_dir/snapshots/snapshot-K.weights.h5``, one per cycle whatever
    the number of steps. Returns ``(TrainResult, snapshot paths)``.

    Example:

    >>> result, paths = train_snapshots(build, train, val, epochs=20, cycles=5,
    ...                                 run_dir="runs/snap")              # doctest: +SKIP
    >>> ensemble = from_snapshots(build, paths, last=4)                    # doctest: +SKIP
    """
    if train_kwargs.pop("reduce_lr", False):
        raise UserError(
            "The cyclic snapshot schedule and ReduceLROnPlateau do not compose (Keras cannot "
            "change a LearningRateSchedule's rate); use CheckpointSnapshots in an ordinary "
            "zoo.train run for snapshots under ReduceLROnPlateau.")
    check_positive_int(epochs, "epochs")  # (before the schedule's total_steps names it)
    check_positive_int(cycles, "cycles")
    training.check_data(train_data, val_data)  # (arrays were "length unknown")
    steps = training.epoch_length(train_data, steps_per_epoch)
    if steps is None:
        raise UserError("The training data's length is unknown: pass steps_per_epoch (the "
                        "cycles are counted in batches).")
    if cycles > epochs * steps:
        raise UserError(f"`cycles` must be at most the run's updates, epochs x steps per "
                        f"epoch = {epochs} x {steps} = {epochs * steps}; received {cycles}.")
    schedule = CyclicCosine(learning_rate, epochs * steps, cycles)
    if not isinstance(run_dir, (str, os.PathLike)):
        raise UserError(f"`run_dir` must be a folder for the snapshots (and the run's "
                        f"backup); received {run_dir!r}.")
    # A TensorFlow multi-worker task other than the chief writes RUN_DIR/workerN, as
    # zoo.train writes its files there.
    strategy = train_kwargs.get("strategy")
    own = distribute.own_run_dir(run_dir, strategy)
    directory = os.path.join(own, "snapshots")
    check_no_earlier_snapshots(own)
    # In a JAX cluster process 0 alone writes run_dir: the others save the same snapshots
    # (saving is a collective) into a scratch directory, as zoo.train does its files.
    if strategy == "multi_worker" and keras.backend.backend() == "jax":
        distribute.initialize_cluster()  # (zoo.train would join later: the id is needed now)
    with run_config.process_run_dir(directory, distribute.process_index()) as written:
        callbacks = [CycleSnapshots(written, schedule.boundaries)]
        callbacks += list(train_kwargs.pop("callbacks", ()))
        result = training.train(
            model, train_data, val_data, epochs=epochs, run_dir=run_dir,
            optimizer=lambda: make_optimizer(optimizer, schedule, momentum, weight_decay),
            reduce_lr=False, callbacks=callbacks, steps_per_epoch=steps_per_epoch,
            **train_kwargs)
    return result, snapshot_paths(directory)


def snapshot_paths(directory):
    """The snapshot files in ``directory``, in the order they were taken (by the cycle or
    epoch number in their names, not by modification time, which a copy changes)."""
    # (escaped: a folder named runs/exp[1] is no pattern)
    paths = glob.glob(os.path.join(glob.escape(os.fspath(directory)), "snapshot-*.weights.h5"))
    return sorted(paths, key=lambda path: natural_key(os.path.basename(path)))


def _member_name(path):
    stem = os.path.basename(path).replace(".weights.h5", "")
    return stem.replace("-", "_")


def _run_input_shape(directory):
    """The input shape the run whose ``snapshots/`` folder ``directory`` is trained on, as
    its config.json records it, or None."""
    run_dir, name = os.path.split(os.path.abspath(os.fspath(directory)))
    config = run_config.read_config(run_dir) if name == "snapshots" else None
    shape = config.get("input_shape") if config is not None else None
    return tuple(shape) if isinstance(shape, list) else None


def _check_input_shape(member, run_shape, directory):
    """Snapshots load into an architecture of any input size where the weights' shapes
    allow (a global pooling head): refuse, in one line, one that is not the run's."""
    shape = getattr(member, "input_shape", None)
    if run_shape is None or not isinstance(shape, tuple):
        return
    if any(a is not None and b is not None and a != b for a, b in zip(shape[1:], run_shape)):
        raise UserError(f"{directory} holds snapshots of a run on inputs of shape "
                        f"{tuple(run_shape)} (its config.json); the architecture given takes "
                        f"{tuple(shape[1:])}. Give the run's architecture (its "
                        "checkpoints/last.keras, or the same builder and image size).")


def from_snapshots(model, paths, last=None, combine="mean", weights=None,
                   name="snapshot_ensemble", class_names=None, resize=None):
    """Load snapshot weights into members and return the :func:`Ensemble`.

    ``model`` is a function building the architecture (a builder or registry-name lambda)
    or a model to clone; ``paths`` a list of ``.weights.h5`` files (taken in the order
    given: ``sorted(glob(...))`` puts snapshot-10 before snapshot-2, so pass the folder,
    or :func:`snapshot_paths`' list) or their directory (in the order they were taken);
    ``last=m`` keeps the last ``m`` (the paper predicts with the last snapshots).
    ``class_names``: the classes in label order; by default those of ``model`` when it is
    a model that has them (``zoo.class_names``). ``resize``: how the run made images into
    inputs, ``"crop"`` or ``"squash"`` (``zoo.resize_mode``); by default ``model``'s.

    Example:

    >>> ensemble = from_snapshots(build, "runs/snap/snapshots", last=4)  # doctest: +SKIP
    """
    if not (isinstance(model, keras.Model) or callable(model)):
        raise UserError(
            f"from_snapshots needs the run's architecture: a function that builds it (lambda: "
            f"zoo.resnet18(classes=10, ...)) or a model; received {type(model).__name__} "
            f"{model!r:.60}" + (" (a name alone would build the 1000-class default, "
                                "which a run's snapshots rarely fit)"
                                if isinstance(model, str) else "") + ".")
    if is_ensemble(model):
        raise UserError(f"from_snapshots needs the run's architecture, one network; received "
                        f"an ensemble ({model.name!r}, of {len(members_of(model))} members). "
                        "Give the run's own model (RUN_DIR/checkpoints/last.keras).")
    if resize is not None:  # (before any snapshot is read)
        from data.preprocess import check_resize

        check_resize(resize)
    where, run_shape = "", None
    if isinstance(paths, (str, os.PathLike)):
        where = f" in {os.fspath(paths)}"
        run_shape = _run_input_shape(paths)
        if not os.path.isdir(paths):
            raise UserError(f"{os.fspath(paths)} is "
                            f"{'a file' if os.path.exists(paths) else 'not there'}: snapshots "
                            "are read from the run's snapshots/ directory (RUN_DIR/snapshots), "
                            "or from a list of .weights.h5 files.")
        paths = snapshot_paths(paths)
    paths = list(paths)
    if not paths:
        raise UserError(f"No snapshot files to load{where}: received an empty list, or a "
                        "directory without snapshot-*.weights.h5 files.")
    if last is not None:
        last = int(check_positive_int(last, "last"))  # (NumPy integers too, not True)
        if last > len(paths):
            raise UserError(f"`last={last}` asks for more snapshots than there are{where}: "
                            f"{len(paths)} ({', '.join(os.path.basename(p) for p in paths)}).")
        paths = paths[-last:]
    members = []
    for path in paths:
        if not os.path.isfile(path):
            what = ("is a directory" if os.path.isdir(path) else "is a link to nothing"
                    if os.path.islink(path) else "is not there" if not os.path.lexists(path)
                    else "is not a regular file")
            raise UserError(f"Snapshot file {path} {what}: snapshots are .weights.h5 files.")
        member = keras.models.clone_model(model) if isinstance(model, keras.Model) else model()
        if not members:
            _check_input_shape(member, run_shape, os.path.dirname(path))
        load_weights(member, path)  # (a foreign or damaged file: one line naming it)
        member = member_graph(member, _member_name(path))
        # A snapshot holds weights only: its classes and resize mode are the architecture's.
        like = model if isinstance(model, keras.Model) else member
        set_resize_mode(member, resize or resize_mode(like))
        set_input_pixels(member, input_pixels(like))
        members.append(set_class_names(member, class_names or get_class_names(like)))
    return Ensemble(members, combine=combine, weights=weights, name=name)
