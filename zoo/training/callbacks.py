"""Callbacks of a run directory: history CSV and plots, atomic checkpoints, a NaN-safe backup."""

import csv
import json
import math
import os
import shutil
import tempfile
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from data.datasets import set_epoch
from safeio import (atomic_path, check_free_space, file_hash, new_axes, save_figure,
                    write_json)
from safeio.checks import UserError, check_choice
from zoo.optimizers import build_optimizer
from zoo.saving import bytes_to_save, copy_weights_out, save_model
from zoo.training import keras_internals


def _finite(logs):
    """Whether an epoch's training values (loss and metrics) are finite, so its weights are
    good to keep. A validation value (``val_*``) may be NaN with good weights (a NaN
    validation image, a metric of no example): that epoch is still checkpointed."""
    return all(not isinstance(v, float) or math.isfinite(v)
               for k, v in (logs or {}).items() if not k.startswith("val_"))


def read_history(path):
    """Rows of a history CSV as a list of dicts (numbers as floats, ``epoch`` as int).

    The epochs are consecutive: 1, 2, 3, ..., or k, k + 1, ... for a record restarted at
    epoch k (a run resumed from its backup after its history was moved aside)."""
    if not path or not os.path.exists(path):
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
        if "epoch" not in columns or any(None in row or None in row.values() for row in rows):
            raise UserError("rows do not match the header")
        rows = [{k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v != ""}
                for row in rows]
        epochs = [row["epoch"] for row in rows]
        if epochs and (epochs[0] < 1 or epochs != list(range(epochs[0], epochs[0] + len(rows)))):
            raise UserError("the epochs are not consecutive from 1 or from a restart")
    except (ValueError, KeyError, csv.Error, UnicodeDecodeError) as err:
        raise UserError(
            f"The run's history {path} is corrupt ({err}). Move it aside, and the resumed "
            "run starts a new record at the epoch it resumes from; or use another run "
            "directory.") from None
    return rows


NO_BATCH = "The training data gave no batch: check what was filtered, taken or split off."


class NoEmptyEpochs(keras.callbacks.Callback):
    """An epoch that trained no batch (data of unknown length that gave none: a filter that
    keeps nothing) is one line at its end, before the callbacks after it write anything of
    it: the run ended "done", its history without a loss and its checkpoints untrained, and
    the same call with the right data trained nothing. Put it first."""

    def on_epoch_end(self, epoch, logs=None):
        if "loss" not in (logs or {}):  # (Keras logs the loss of any step it ran)
            raise UserError(NO_BATCH)


def trained_statistics(model):
    """The BatchNorm variables training moves besides the trainable weights: every
    non-trainable variable (the moving statistics; with ``renorm``, its own) of each built
    BatchNorm layer of ``model`` that trains (a frozen one runs in inference mode).

    Example:

    >>> inputs = keras.Input((4,))
    >>> model = keras.Model(inputs, keras.layers.BatchNormalization()(inputs))
    >>> [v.name for v in trained_statistics(model)]
    ['moving_mean', 'moving_variance']
    """
    return [w for layer in model._flatten_layers()
            if isinstance(layer, keras.layers.BatchNormalization) and layer.built
            and layer.trainable for w in layer.non_trainable_weights]


class FiniteWeights(keras.callbacks.Callback):
    """An epoch whose training values are finite but whose weights are not (a last step's
    update of NaN; a replica given no example of a batch smaller than the replicas, its
    BatchNorm statistics NaN) is stopped as a NaN loss stops it: its loss logged as NaN,
    so that the checkpoints skip it and ``zoo.train`` reports a divergence, with the
    weights named. Its model's weights were checkpointed and returned as trained, the
    loss finite. The weights training changes are read: the trainable ones and the
    statistics of BatchNorm layers that train (not a distillation's frozen teacher), on
    the host (an op per weight compiled a program per shape under JAX). Put it before the
    callbacks that write the epoch."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not _finite(logs):
            return  # (a NaN loss: TerminateOnNaN stopped the run)
        bad = [v.path for v in self.model.trainable_weights + trained_statistics(self.model)
               if "float" in str(v.dtype)
               and not np.isfinite(keras.ops.convert_to_numpy(v)).all()]
        if not bad:
            return
        warnings.warn(f"The training loss of epoch {epoch + 1} is finite, but {len(bad)} "
                      f"weight(s) are not ({', '.join(bad[:3])}{', ...' * (len(bad) > 3)}): "
                      "the epoch is not kept. Under a strategy of several replicas, a batch "
                      "smaller than the replicas leaves one with none (load the data with "
                      "drop_remainder=True); otherwise lower the learning rate.", stacklevel=1)
        logs["loss"] = float("nan")
        self.model.stop_training = True


class HistoryWriter(keras.callbacks.Callback):
    """Write ``history.csv`` (one row per epoch, learning rate included) and the PNG plots.

    The whole file is rewritten atomically at each epoch end, keeping only rows of earlier
    epochs: after a crash and resume, the epochs that are run again replace their rows.
    The plots are redrawn at the end of an epoch once ``plot_every`` seconds have passed
    since training began or since the last drawing, and always when training ends: drawing
    them costs about 0.5 s here, more than a whole epoch of a small model, so a run shorter
    than ``plot_every`` draws them once. Put it after ``ReduceLROnPlateau``, which adds
    ``learning_rate`` to the logs.
    """

    def __init__(self, run_dir, plot_every=30.0):
        super().__init__()
        self.path = os.path.join(run_dir, "history.csv")
        self.run_dir = run_dir
        self.plot_every = plot_every
        self._plotted_at = time.monotonic()
        self._plotted_epoch = None

    def on_train_begin(self, logs=None):
        self._plotted_at = time.monotonic()
        read_history(self.path)  # a corrupt one is one line now, not after an epoch

    def on_epoch_end(self, epoch, logs=None):
        rows = [r for r in read_history(self.path) if r["epoch"] < epoch + 1]
        rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        columns = list(dict.fromkeys(k for row in rows for k in row))
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        if time.monotonic() - self._plotted_at >= self.plot_every:
            self._plot(rows)

    def on_train_end(self, logs=None):
        rows = read_history(self.path)
        if rows and rows[-1]["epoch"] != self._plotted_epoch:
            self._plot(rows)

    def _plot(self, rows):
        plot_history(rows, self.run_dir)
        self._plotted_at = time.monotonic()
        self._plotted_epoch = rows[-1]["epoch"]


def plot_history(rows, run_dir):
    """``learning_curves.png`` (loss, top-1 error) and ``learning_rate.png`` from the rows."""
    epochs = [r["epoch"] for r in rows]
    fig, (loss_ax, err_ax) = new_axes(figsize=(10, 4), ncols=2)
    for key in sorted({k for r in rows for k in r}):
        values = [r.get(key, math.nan) for r in rows]
        if key.endswith("loss"):
            loss_ax.plot(epochs, values, marker=".", label=key)
        elif key.endswith("top1_accuracy"):
            err_ax.plot(epochs, [100 * (1 - v) for v in values], marker=".",
                        label=key.replace("accuracy", "error"))
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    err_ax.set(xlabel="epoch", ylabel="top-1 error (%)", title="Top-1 error")
    for ax in (loss_ax, err_ax):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    save_figure(fig, os.path.join(run_dir, "learning_curves.png"))
    if any("learning_rate" in r for r in rows):
        fig, ax = new_axes(figsize=(5, 4))
        ax.semilogy(epochs, [r.get("learning_rate", math.nan) for r in rows], marker=".")
        ax.set(xlabel="epoch", ylabel="learning rate", title="Learning rate")
        ax.grid(alpha=0.3)
        save_figure(fig, os.path.join(run_dir, "learning_rate.png"))


MONITOR_MODES = ("auto", "min", "max")


def monitor_mode(model, monitor, mode="auto", required=True):
    """``"min"`` or ``"max"`` for ``monitor``: ``mode`` itself, or for ``"auto"`` the way
    Keras' callbacks take it (losses fall; a metric goes its own direction: accuracy, AUC,
    precision rise), where they used to guess from the letters "acc". A name Keras cannot
    tell about is a one-line error naming the metrics. Before the model's metrics are
    built (TensorFlow builds them in the first step), None unless ``required``."""
    check_choice(mode, MONITOR_MODES, "monitor_mode")
    if mode != "auto":
        return mode
    found = keras_internals.monitor_direction(model, monitor)
    if found is None and not required and not keras_internals.metrics_built(model):
        return None
    if found is None:
        names = [inner.name for metric in model.metrics
                 for inner in getattr(metric, "metrics", [metric])]
        raise UserError(
            f"Cannot tell whether monitor={monitor!r} should rise or fall: the model's metrics "
            f"are {', '.join(names)} (val_ before each for the validation data), and Keras "
            "knows no direction for it. Monitor one of them, or give monitor_mode='max' or "
            "'min'.")
    return found


class _ResumesFromHistory:
    """What the checkpoint and the plateau callbacks share: once Keras knows the model's
    metrics (from ``on_train_begin`` on JAX or under a strategy; else at the first epoch's
    end), the monitor's direction (:func:`monitor_mode`), then their state as the restored
    backup recorded it (``backup``: the run's :class:`SafeBackupAndRestore`, which keeps
    ``state()`` under ``state_key``), or, from a backup of before it did,
    ``_resume(rows)`` with the ``history.csv`` rows of the epochs the backup completed that
    hold the monitor (a history moved aside, as a corrupt one's message advises, held none:
    best.keras was replaced by the next epoch's, whatever its score). Needs ``monitor``,
    ``mode`` and ``history_path``."""

    backup = None
    state_key = None

    def _start(self):  # from on_train_begin
        self.prepared = False
        self._prepare(required=False)

    def _prepare(self, required):  # also from on_epoch_end, before the epoch is judged
        if self.prepared:
            return
        mode = monitor_mode(self.model, self.monitor, self.mode, required)
        if mode is None:
            return
        self.mode, self.prepared = mode, True
        saved = self.backup.restored_states.get(self.state_key) if self.backup else None
        if saved is not None:
            self._set_state(saved)
            return
        done = keras_internals.initial_epoch(self.model)  # set by the backup's restore
        self._resume([row for row in read_history(self.history_path)
                      if row["epoch"] <= done and self.monitor in row])


class AtomicCheckpoint(_ResumesFromHistory, keras.callbacks.Callback):
    """Save ``last.keras`` every epoch and ``best.keras`` when ``monitor`` improves.

    Each file is written beside its target and renamed over it, so a crash mid-write leaves
    the previous checkpoint intact. An epoch whose training logs hold NaN or inf saves
    nothing, so a diverged run keeps its last good checkpoint (a NaN validation value alone
    is said, and saved: the weights are good).
    """

    def __init__(self, directory, monitor="val_loss", mode="auto", history_path=None,
                 saved_model=None):
        super().__init__()
        self.directory = directory
        self.saved_model = saved_model  # what the files hold, when not the model trained
        self.history_path = history_path
        self.monitor = monitor
        self.mode = mode  # "auto" is resolved when training begins (monitor_mode)
        self.best = None
        self.saved_epoch = None  # the epoch whose end saved the trained model to last.keras
        self.last_path = os.path.join(directory, "last.keras")
        self.best_path = os.path.join(directory, "best.keras")

    def on_train_begin(self, logs=None):
        self._start()

    def _resume(self, rows):
        # A resumed run continues from the best value of the epochs its backup completed
        # (a row of an epoch killed before its backup is run again, checkpoint included).
        values = [r[self.monitor] for r in rows if math.isfinite(r[self.monitor])]
        if values and os.path.exists(self.best_path):
            self.best = max(values) if self.mode == "max" else min(values)

    def state(self):
        return {"best": self.best}

    def _set_state(self, state):
        self.best = state["best"] if os.path.exists(self.best_path) else None

    def _improved(self, value):
        if not math.isfinite(value):  # (best = NaN would never be bettered)
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        self._prepare(required=True)
        if not _finite(logs):
            return
        save_model(self.saved_model or self.model, self.last_path)  # atomically, named
        self.saved_epoch = epoch if self.saved_model is None else None
        value = (logs or {}).get(self.monitor)
        if value is None:  # a typo: best.keras and the plateau's drops would never happen
            raise UserError(f"monitor={self.monitor!r} is none of the values this run logs "
                            f"({', '.join(sorted(logs or {}))}): best.keras and the learning-"
                            "rate drops follow it.")
        bad = [k for k, v in (logs or {}).items() if isinstance(v, float) and not math.isfinite(v)]
        if bad and not getattr(self, "_said_not_finite", False):
            self._said_not_finite = True  # (once a run)
            warnings.warn(f"{', '.join(bad)} not finite in epoch {epoch + 1}, the training "
                          f"loss finite: checkpoints are kept, and best.keras is an epoch of "
                          f"a finite {self.monitor}. Check the validation data (a NaN image? "
                          "labels out of range?).", stacklevel=1)
        if value is not None and self._improved(value):
            self.best = value
            with atomic_path(self.best_path) as tmp:  # the same model: copy, don't save again
                shutil.copyfile(self.last_path, tmp)


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore``, made crash-proof.

    - An epoch with NaN or inf training logs is never backed up (a NaN validation value
      alone is: the weights are good).
    - Every file is written atomically (temporary name, then rename), the previous pair is
      kept as ``.bkp``, and the metadata names the SHA-256 of the weights it belongs to:
      a kill at any point leaves a readable pair.
    - An unreadable, truncated or mismatched backup falls back to the previous pair with a
      one-line warning. With no readable pair, restoring is a one-line error naming the
      backup, never a silent fresh start that would replace the run's history and
      checkpoints.
    - Its restore is run by :class:`RestoreBackup`, placed first, so that the backup itself
      can be placed last: it then holds every decision of the epoch.
    """

    def on_train_begin(self, logs=None):
        pass  # RestoreBackup calls restore()

    def restore(self, logs=None):
        if not self.model.built:
            return super().on_train_begin(logs)  # Keras' own error
        # The run has started: killed before its first backup (a snapshot taken inside the
        # first epoch, say), it is a stopped run that the same command resumes.
        os.makedirs(self.backup_dir, exist_ok=True)
        problems = []
        current, previous = keras_internals.backup_pairs(self)
        pairs = [pair for pair in (current, previous)
                 if any(os.path.exists(path) for path in pair)]
        if pairs == [current] and not os.path.exists(current[1]):
            # Killed during its first backup (no previous copy yet), after the weights and
            # before their metadata: no epoch was backed up, and the run starts from its
            # first, as a run killed before any backup does. (From the second backup on,
            # the previous copy is there, and missing metadata is damage: refused below.)
            warnings.warn(f"The first backup in {self.backup_dir} was cut short (no "
                          "metadata); the run starts from its first epoch.", stacklevel=2)
            pairs = []
        if self.agree_on_epoch is None:  # each pair checked as it is reached
            checked = ((pair, None) for pair in pairs)
        else:  # in a cluster, before any load: loading is a collective
            checked = [(pair, self._check_pair(*pair)) for pair in pairs]
            # -1: a damaged backup, which stops this process below; the others (with a
            # readable one, or none, where the run directory is not shared) must stop too.
            self.agree_on_epoch(next((epoch for _, epoch in checked if isinstance(epoch, int)),
                                     -1 if checked else 0))
        for (weights, metadata), epoch in checked:
            if epoch is None:
                epoch = self._check_pair(weights, metadata)
            problem = epoch if isinstance(epoch, str) else self._load_weights(weights, epoch)
            if problem is None:
                _restore_seed_states(self.model, metadata)
                self.restored_states = _recorded(metadata, "callbacks") or {}
                self._current_readable = (weights, metadata) == current
                if problems:
                    warnings.warn(f"Backup {problems[0]}; resumed from the previous backup "
                                  f"({os.path.basename(weights)}).", stacklevel=2)
                return
            problems.append(problem)
        if problems:  # no kill leaves this (see _save_model): damaged from outside
            raise UserError(
                f"The run's backup {problems[0]}, and no earlier backup is readable; the "
                f"run's history and checkpoints are left as they were. To train this run "
                f"again from its first epoch, move {os.path.dirname(self.backup_dir)} aside "
                f"(its history and checkpoints with it); or use another run directory.")

    # Set by zoo.train in a JAX cluster: called with the epoch this process is about to
    # restore (0 for none), it stops every process when they differ.
    agree_on_epoch = None
    # Whether the current pair is readable: known from the restore and from each backup
    # written; None where neither has happened (checked then).
    _current_readable = None
    # The callbacks whose state() each backup records under its state_key (set by
    # zoo.train), and the states the restored backup recorded.
    tracked = ()
    restored_states = {}
    # Set by zoo.train (share_checkpoint_weights): the AtomicCheckpoint whose last.keras,
    # saved at this epoch's end, holds the very state this backup saves; None: save it.
    checkpoint = None
    _epoch_now = None  # the epoch whose end is being backed up

    def _check_pair(self, weights, metadata):
        """The epoch a (weights, metadata) pair restores, or what is wrong with it."""
        try:
            with open(metadata, encoding="utf-8") as f:
                meta = json.load(f)
            epoch = int(meta["epoch"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            return f"{metadata} is unreadable ({type(err).__name__})"
        try:
            if meta.get("sha256") not in (None, file_hash(weights)):
                return f"{weights} does not match {os.path.basename(metadata)}"
        except OSError as err:
            return f"{weights} is unreadable ({str(err).splitlines()[0][:120]})"
        return epoch

    def _load_weights(self, weights, epoch):
        """Load ``weights`` and start from ``epoch``; None, or what is wrong with the file."""
        try:
            build_optimizer(self.model)
            if weights.endswith(".weights.h5"):
                self.model.load_weights(weights)
            else:  # Keras loads only files named *.weights.h5
                with tempfile.TemporaryDirectory() as scratch:
                    copy = os.path.join(scratch, "previous.weights.h5")
                    shutil.copyfile(weights, copy)
                    self.model.load_weights(copy)
        except (OSError, ValueError) as err:
            return f"{weights} is unreadable ({str(err).splitlines()[0][:120]})"
        keras_internals.set_initial_epoch(self.model, epoch)
        return None

    def _save_model(self):  # Keras' hook (keras_internals.USED), called at each backup
        os.makedirs(self.backup_dir, exist_ok=True)
        (weights, metadata), (prev_weights, prev_metadata) = keras_internals.backup_pairs(self)
        # Each step below needs at most this much room (h5py crashes on a full disk).
        check_free_space(weights, bytes_to_save(self.model))
        if self._current_readable is None:
            self._current_readable = isinstance(self._check_pair(weights, metadata), int)
        # The current pair becomes the previous one only where it is readable: one a kill
        # left mismatched (the run then resumed from the previous pair) would replace the
        # only readable pair, and a second kill, while this backup is written, leave none.
        if self._current_readable:
            for current, previous in ((weights, prev_weights), (metadata, prev_metadata)):
                if os.path.exists(current):
                    with atomic_path(previous) as tmp:
                        shutil.copyfile(current, tmp)
        self._current_readable = False  # until its metadata names the new weights
        epoch, batch = keras_internals.backup_position(self)
        with atomic_path(weights) as tmp:
            self._write_weights(tmp)
        write_json(metadata, {"epoch": epoch, "batch": batch, "sha256": file_hash(weights),
                              "seed_states": _seed_states(self.model),
                              "callbacks": {c.state_key: c.state() for c in self.tracked
                                            if getattr(c, "prepared", False)}})
        self._current_readable = True

    def _write_weights(self, path):
        """The model's weights to ``path``: a copy of the checkpoint's, where it saved them
        at this epoch's end with nothing changing them since (``share_checkpoint_weights``);
        else saved."""
        checkpoint = self.checkpoint
        if not (checkpoint is not None and self._epoch_now is not None
                and checkpoint.saved_epoch == self._epoch_now
                and copy_weights_out(checkpoint.last_path, path)):
            self.model.save_weights(path)

    def on_epoch_end(self, epoch, logs=None):
        if _finite(logs):
            self._epoch_now = epoch
            try:
                super().on_epoch_end(epoch, logs)
            finally:
                self._epoch_now = None


def share_checkpoint_weights(callbacks, backup):
    """Let ``backup`` (the run's :class:`SafeBackupAndRestore`) copy the weights that the
    run's :class:`AtomicCheckpoint` saved at the same epoch's end, instead of saving them
    a second time, where ``callbacks`` (fit's, in order) run nothing between the two that
    might change the weights: every callback between them has ``keeps_weights = True``.
    A user's callback might (``EarlyStopping`` restores its best weights), and so does
    the EMA swap's :class:`RawWeightsBack`: the backup then saves its own. A checkpoint of
    another model than the one trained (``checkpoint_model``) is never copied."""
    checkpoint = next((c for c in backup.tracked if isinstance(c, AtomicCheckpoint)), None)
    if checkpoint is None or checkpoint not in callbacks or backup not in callbacks:
        return
    start, end = callbacks.index(checkpoint), callbacks.index(backup)
    if start < end and all(getattr(c, "keeps_weights", False)
                           for c in callbacks[start + 1:end]):
        backup.checkpoint = checkpoint


def _seed_variables(model):
    """The state of every random-number generator in ``model`` (its ``Dropout`` layers'
    masks, stochastic depth), in the model's order: Keras' ``save_weights`` leaves them
    out, so a resumed run drew the first epoch's masks again."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _seed_states(model):
    return [keras.ops.convert_to_numpy(v).tolist() for v in _seed_variables(model)]


def _recorded(metadata, key):
    """What a backup's ``metadata`` file records under ``key`` (None where it does not)."""
    with open(metadata, encoding="utf-8") as f:
        return json.load(f).get(key)


def _restore_seed_states(model, metadata):
    """Put back the generators' states a backup's ``metadata`` records (a backup written
    before they were recorded has none: the masks then start again, as they did)."""
    states = _recorded(metadata, "seed_states")
    variables = _seed_variables(model)
    if states is None or len(states) != len(variables):
        return
    for variable, state in zip(variables, states):
        variable.assign(np.asarray(state, dtype=variable.dtype))


class RestoreBackup(keras.callbacks.Callback):
    """First in the list: restore ``backup`` before the other callbacks start (they read the
    epoch it restored), although ``backup`` itself saves last."""

    def __init__(self, backup):
        super().__init__()
        self.backup = backup

    def set_model(self, model):
        super().set_model(model)
        self.backup.set_model(model)

    def on_train_begin(self, logs=None):
        self.backup.restore(logs)


class ExactStepCount(keras.callbacks.Callback):
    """``optimizer.iterations`` as the batches trained, on data of unknown length under
    TensorFlow. There Keras' trainer adds one at each epoch's end: the call that finds the
    data exhausted still runs the optimizer's counter, which does not wait for the data
    (two epochs of 4 batches counted 10; JAX counts 8), so a step-based learning-rate
    schedule would drift by a step an epoch. The count is set back at each epoch's end,
    before the checkpoints and the backup save it (it comes before them in the list).

    Not for an optimizer whose count is not one per batch: a loss-scale optimizer (mixed
    float16) skips the steps that overflow, and gradient accumulation counts applied
    updates (its count is no variable); Keras' count stays there."""

    @staticmethod
    def applies(optimizer):
        """Whether ``optimizer``'s count is one variable, one per batch, under TensorFlow."""
        return (keras.backend.backend() == "tensorflow"
                and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
                and not getattr(optimizer, "gradient_accumulation_steps", None)
                and isinstance(optimizer.iterations, keras.Variable))

    def _count(self):  # (int() refuses a tf.distribute variable)
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.batches = self._count(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        if self._count() != self.start + self.batches:
            self.model.optimizer.iterations.assign(self.start + self.batches)


class DataEpochs(keras.callbacks.Callback):
    """At the start of fit, point a ``data.load`` dataset at the epoch fit starts from (0,
    or the epoch a resumed run restored), so each epoch shuffles and augments as it did in
    an uninterrupted run (``data.set_epoch``). Other datasets are left alone."""

    def __init__(self, dataset, steps_per_epoch=None):
        super().__init__()
        self.dataset, self.steps_per_epoch = dataset, steps_per_epoch

    def on_train_begin(self, logs=None):
        start = keras_internals.initial_epoch(self.model)
        if hasattr(self.dataset, "_zoo_epoch"):  # made by data.load
            set_epoch(self.dataset, start)
        elif start and isinstance(self.dataset, tf.data.Dataset) and _counted_in_steps(
                self.dataset, self.steps_per_epoch):
            warnings.warn(
                f"Resuming at epoch {start + 1} with a tf.data dataset whose epochs are "
                f"counted in steps of an endless stream (steps_per_epoch="
                f"{self.steps_per_epoch}, .repeat()): it starts again from its first batch, "
                f"not where epoch {start}'s batches ended, so the run will differ from an "
                "uninterrupted one. Data of known length (data.load's, or without "
                ".repeat()) resumes exactly.", stacklevel=1)
        elif start and isinstance(self.dataset, tf.data.Dataset) and _random(self.dataset):
            warnings.warn(
                f"Resuming at epoch {start + 1} with a tf.data dataset that shuffles or draws "
                "random numbers, and that data.load did not return as it is (a .map() or "
                ".take() of one keeps no epochs): it starts again from the first epoch's "
                "order and augmentation, so the run will differ from an uninterrupted one. "
                "Pass data.load's dataset (its preprocess= and augment= arguments transform "
                "the images).", stacklevel=1)


def _counted_in_steps(dataset, steps_per_epoch):
    """Whether an epoch of ``dataset`` is ``steps_per_epoch`` batches of an endless stream
    (``.repeat()``), not one pass over it. (Data of unknown length, repeated by zoo.train,
    resumes where its pass ends: exactly where the steps are its length.)"""
    return steps_per_epoch is not None and (
        int(dataset.cardinality()) == tf.data.INFINITE_CARDINALITY)


def _random(dataset):
    """Whether ``dataset`` shuffles or draws random numbers: a shuffle among the datasets
    it is made from, or a random op in their functions (a map's, a flat_map's; datasets
    made inside those show as ops). Read from the Python objects, not a serialized graph,
    which would copy every array of a ``from_tensor_slices``; True where they cannot be
    read."""
    try:
        pending, seen = [dataset], set()
        while pending:
            current = pending.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            if "Shuffle" in type(current).__name__:
                return True
            for name in ("_map_func", "_predicate", "_func"):
                graph = getattr(getattr(getattr(current, name, None), "function", None),
                                "graph", None)
                if graph is not None and any("Random" in op.type or "Shuffle" in op.type
                                             for op in graph.get_operations()):
                    return True
            pending.extend(current._inputs())
    except (AttributeError, TypeError):
        return True
    return False


class EpochEndEMASwap(keras.callbacks.SwapEMAWeights):
    """Keras' ``SwapEMAWeights(swap_on_epoch=True)``, which swaps the averaged weights in at
    each epoch's end for the checkpoints, without its last-epoch step: that one copies the
    averages over the raw weights it swapped out (so that ``fit``'s final
    ``finalize_variable_values`` leaves the averages in the model), and the raw training
    state is then lost to the backup. With :class:`RawWeightsBack` after the checkpoints,
    every epoch ends with the raw weights in the model and the averages in the optimizer,
    and ``fit`` ends, however it stops, by putting the averages in."""

    def __init__(self):
        super().__init__(swap_on_epoch=True)

    def on_epoch_end(self, epoch, logs=None):
        keras_internals.swap_averaged_weights_in(self)


class RawWeightsBack(keras.callbacks.Callback):
    """After the checkpoints saved the EMA weights that :class:`EpochEndEMASwap` swapped in
    at the epoch's end, swap the raw training weights back, so the backup after it holds
    the state that training continues from (an extended run too)."""

    def __init__(self, swap):
        super().__init__()
        self.swap = swap

    def on_epoch_end(self, epoch, logs=None):
        keras_internals.swap_raw_weights_back(self.swap)


class ResumableReduceLROnPlateau(_ResumesFromHistory, keras.callbacks.ReduceLROnPlateau):
    """Keras' ``ReduceLROnPlateau`` that picks up where a crashed run left off.

    ``BackupAndRestore`` restores the weights, the optimizer and its learning rate, but not
    this callback's patience counter and best value. On a resumed run they are rebuilt by
    replaying the monitored values of the epochs already done, from ``history.csv``.
    """

    def __init__(self, history_path, **kwargs):
        super().__init__(**kwargs)
        self.history_path = history_path

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._start()

    def _resume(self, rows):
        if self.monitor_op is None:
            keras_internals.prepare_monitor(self)
        for row in rows:
            self._replay(row[self.monitor], row.get("learning_rate", math.inf))

    def on_epoch_end(self, epoch, logs=None):
        self._prepare(required=True)
        if logs is not None and not math.isfinite(float(logs.get(self.monitor, 0.0))):
            # A NaN is no value to compare with: Keras' callback took the first one for its
            # best, which nothing improves on, and divided the rate every `patience`
            # epochs after it (best.keras skips it too).
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))
            return
        super().on_epoch_end(epoch, logs)

    def state(self):
        # (best stays None while every epoch's monitor was NaN: no value to keep)
        return {"best": None if self.best is None else float(self.best), "wait": int(self.wait),
                "cooldown_counter": int(self.cooldown_counter)}

    def _set_state(self, state):
        if self.monitor_op is None:
            keras_internals.prepare_monitor(self)
        self.best, self.wait = state["best"], state["wait"]
        self.cooldown_counter = state["cooldown_counter"]

    def _replay(self, current, learning_rate):
        """The bookkeeping of ``on_epoch_end``, without touching the optimizer."""
        if not math.isfinite(float(current)):
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if keras_internals.is_improvement(self, current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and learning_rate > self.min_lr:
                self.cooldown_counter = self.cooldown
                self.wait = 0


class LearningRateLogger(keras.callbacks.Callback):
    """Add the learning rate of the epoch's last update to the logs when nothing else did
    (``ReduceLROnPlateau`` does; a schedule alone does not)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or "learning_rate" in logs:
            return
        rate = keras_internals.last_update_rate(self.model.optimizer)
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
