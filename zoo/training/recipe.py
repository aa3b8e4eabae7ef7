"""``zoo.train``: the papers' training recipe in one call, with a run directory that survives
crashes.

The recipe (Krizhevsky et al. 2012, sec. 5): SGD with momentum 0.9, weight decay 5e-4,
learning rate 0.01 divided by 10 when the validation error stops improving. Top-1 and
top-5 accuracy are tracked. With a ``run_dir`` the run writes ``config.json``,
``history.csv``, ``checkpoints/{best,last}.keras``, TensorBoard ``logs/``, and the plots
``learning_curves.png`` and ``learning_rate.png``; started again with the same arguments
after a crash it resumes from its last completed epoch.
"""

import collections.abc
import contextlib
import dataclasses
import json
import math
import os
import re
import time
import warnings

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from data.preprocess import check_resize
from safeio import directory_lock, outputs
from safeio.checks import UserError, check_choice, check_positive_int, is_int, is_number
from zoo import registry
# compile_model and default_metrics live with the optimizers (no TensorFlow there);
# zoo.train and the package export them from here as before.
from zoo.optimizers import (build_optimizer, compile_model, default_metrics,  # noqa: F401
                            half_precision_of)
from zoo.saving import class_names as get_class_names
from zoo.saving import resize_mode, set_class_names, set_resize_mode
from zoo.training import callbacks as zoo_callbacks
from zoo.training import distribute, keras_internals, run_config

PRECISION_CHOICES = (None, "float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: keras.Model
    history: pd.DataFrame  # one row per epoch, across resumes when there is a run_dir
    run_dir: str = None
    diverged: bool = False

    @property
    def best_path(self):
        return os.path.join(self.run_dir, "checkpoints", "best.keras") if self.run_dir else None

    @property
    def last_path(self):
        return os.path.join(self.run_dir, "checkpoints", "last.keras") if self.run_dir else None


def _uses_ema(optimizer):
    """Whether ``optimizer`` keeps Keras' moving average of the weights (``use_ema``); a
    mixed_float16 run's ``LossScaleOptimizer`` asks its inner one (it read False, and the
    run validated and checkpointed its raw weights while fit returned the averages)."""
    return bool(getattr(getattr(optimizer, "inner_optimizer", optimizer), "use_ema", False))


def _cpu_only():
    """Whether Keras' backend computes on CPUs alone (no GPU or TPU)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return not any(tf.config.list_logical_devices(kind) for kind in ("GPU", "TPU"))
    if backend == "jax":
        import jax

        return all(device.platform == "cpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return not torch.cuda.is_available()
    return True


def _build(model, model_kwargs, strategy, precision):
    """The model, built under the strategy's scope and the precision policy when we build it."""
    if isinstance(model, keras.Model):
        if precision not in (None, "float32"):
            raise UserError(
                f"precision={precision!r} must be set before the model is built: pass a "
                "registry name or a function that builds the model instead of a built model."
            )
        default = strategy is tf.distribute.get_strategy()
        if not default and not strategy.extended.variable_created_in_scope(model.weights[0].value):
            raise UserError(
                f"The model was built outside the {type(strategy).__name__}'s scope: pass a "
                "registry name or a function that builds the model, or build it inside "
                "`strategy.scope()`."
            )
        _check_float32_output(model, precision)
        return model
    spec, model = model, (lambda: registry.resolve(spec, **(model_kwargs or {})))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision or "float32")
    try:
        with strategy.scope():
            built = model()
    finally:
        keras.config.set_dtype_policy(previous)
    _check_float32_output(built, precision)
    return built


def _note_other_backend(run_dir, before):
    """A run resumed under another Keras backend than it trained under (``before``, as its
    config recorded it) continues from its backup, but not to the numbers it would have
    reached (the backends round differently: the losses of one checkpoint's steps parted
    by the fifth): say so."""
    now = keras.backend.backend()
    if isinstance(before, str) and before != now:
        warnings.warn(f"{run_dir} trained under {before} until now and resumes under {now}: "
                      f"from its backup, but not to the numbers it would have reached under "
                      f"{before} (exact resumes are within one backend).", stacklevel=3)


def _as_recorded(optimizer, model):
    """The optimizer as config.json records it: the one compile_model put under loss
    scaling for a model of float16 layers whose own policy is not mixed_float16 (Keras
    scales only for those) is recorded as runs recorded it before it did (``computes_in``
    says float16): such a run resumes."""
    if (isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            and model.dtype_policy.name != "mixed_float16"
            and half_precision_of(model) == "float16"):
        return optimizer.inner_optimizer
    return optimizer


def _check_float32_output(model, precision):
    """One line where the model outputs float16 or bfloat16 (built under a mixed policy, by
    precision= or the global one, without a float32 last layer): a built model's was
    TensorFlow's traceback from the first step ('InTopKV2 ... type bfloat16')."""
    dtypes = [keras.backend.standardize_dtype(o.dtype)
              for o in getattr(model, "outputs", None) or []]
    low = [dtype for dtype in dtypes if dtype in ("float16", "bfloat16")]
    if low:
        under = (f"Under precision={precision!r} the" if precision not in (None, "float32")
                 else "The")
        raise UserError(
            f"{under} model's output must be float32 under mixed precision, as Keras' "
            f"mixed-precision guide builds it (a softmax in {low[0]} loses the small "
            f"probabilities, and TensorFlow's top-k metrics refuse it); received "
            f"{getattr(model, 'name', 'the model')!r} with a {low[0]} output: build its last "
            "layer with dtype='float32' (e.g. keras.layers.Activation('softmax', "
            "dtype='float32')). The zoo's models do.")


def _check_built_for(model, replicas, asked):
    """A built ``model`` for keras.distribution's DataParallel over ``replicas`` devices
    (JAX; ``asked``: the strategy given): its variables must be on them, as under
    tf.distribute they must be the strategy's. One built before (on one device) failed in
    the jitted step with JAX's words ("incompatible devices")."""
    sharding = getattr(getattr(model.weights[0], "value", None), "sharding", None) \
        if model.weights else None
    devices = getattr(sharding, "device_set", None)
    if devices is not None and len(devices) < replicas:
        raise UserError(
            f"The model was built outside keras.distribution's DataParallel over {replicas} "
            f"devices, which strategy={asked!r} trains under here: pass a registry name or "
            "a function that builds the model, or strategy='one_device'.")


def _check_epochs_to_go(run_dir, epochs, flag="epochs=", another="another run directory"):
    """Fewer epochs than the run has trained: one line, before anything is written (it
    trained none, and returned the longer run's model and history as if done). ``flag``
    and ``another`` name the epochs and the run directory (``zoo train``: its flags)."""
    done = run_config.epochs_done(run_dir)
    if done > epochs:
        raise UserError(f"The run in {run_dir} has trained {done} epochs; {flag}{epochs} "
                        f"would train none of them again: give {flag}{done} or more to go "
                        f"on, or {another}.")
    if done == epochs and done > 0:  # nothing to train: the run must be whole at its backup
        rows = zoo_callbacks.read_history(os.path.join(run_dir, "history.csv"))
        past = [row["epoch"] for row in rows if row["epoch"] > done]
        if past:  # (its history and last.keras would stay at that epoch, the model not)
            raise UserError(
                f"The run in {run_dir} stopped in epoch {past[0]} (killed before that "
                f"epoch's backup, or diverged): its backup holds {done} epochs, its "
                f"history.csv and checkpoints {past[0]}. {flag}{epochs} would train none "
                f"and leave them apart: give {flag}{done + 1} or more to train that epoch "
                f"again and go on, or {another}.")


def _check_ema(optimizer, model):
    """Keras' moving average (``use_ema``) averages the trainable weights alone: the
    moving statistics of a BatchNormalization layer that trains stay those of the raw
    weights, and the averaged network, validated, checkpointed and returned, ran with them
    (a ResNet-18 on the digits: validation at chance for six epochs, and 88 % where
    statistics recomputed for the averages gave 97 %; torchvision's EMA averages the
    statistics too). One line before training."""
    if _uses_ema(optimizer):
        check_ema_model(model)


def check_ema_model(model):
    """:func:`_check_ema`'s refusal of ``model`` for an optimizer that averages (``zoo
    train --ema`` makes it before the statistics pass)."""
    training = [layer.name for layer in model._flatten_layers()
                if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    if training:
        raise UserError(
            f"ema=True (--ema) averages the trainable weights only (Keras' use_ema), and "
            f"{model.name!r} has BatchNormalization layers that train ({training[0]!r}"
            + (f" and {len(training) - 1} more" if len(training) > 1 else "")
            + "): their moving statistics would stay the raw "
            "weights', and the averaged network would run with them. Train it without ema, "
            "or use a network without BatchNorm (alexnet, googlenet, vgg11 ... vgg19).")


def _check_schedule(optimizer, reduce_lr, callbacks=()):
    """A learning-rate schedule with ReduceLROnPlateau (ours, or one of ``callbacks``) or
    Keras' LearningRateScheduler, which set the rate: one line before training. So is a
    LearningRateScheduler beside the recipe's ReduceLROnPlateau (``reduce_lr``): it sets
    the rate every epoch, undoing each drop (a warm-up took the paper's drops away, while
    the plateau said it reduced)."""
    schedulers = [c for c in callbacks if isinstance(c, keras.callbacks.LearningRateScheduler)]
    plateaus = [c for c in callbacks if isinstance(c, keras.callbacks.ReduceLROnPlateau)]
    if keras_internals.learning_rate_schedule(optimizer) is None:
        if (reduce_lr or plateaus) and schedulers:
            whose = "reduce_lr=True" if reduce_lr else "yours, in callbacks"
            undo = ("pass reduce_lr=False to follow your scheduler" if reduce_lr else
                    "keep one of the two")
            raise UserError(
                "callbacks hold a LearningRateScheduler, which sets the learning rate every "
                f"epoch and so undoes ReduceLROnPlateau's drops ({whose}): {undo}, or leave "
                "the scheduler out for the plateau's drops.")
        return
    setters = (keras.callbacks.ReduceLROnPlateau, keras.callbacks.LearningRateScheduler)
    theirs = [type(c).__name__ for c in callbacks if isinstance(c, setters)]
    if reduce_lr or theirs:
        given = (f"received callbacks with {', '.join(theirs)}. Leave it out"
                 if theirs else "pass reduce_lr=False")
        raise UserError(
            "The optimizer's learning rate is a LearningRateSchedule (or a function), which "
            f"{theirs[0] if theirs else 'ReduceLROnPlateau'} cannot change (Keras raises "
            f"only when it first sets the rate, mid-training); {given} to follow the "
            "schedule, or use a constant learning rate."
        )


def _check_plateau(lr_factor, lr_patience, min_lr):
    """The ReduceLROnPlateau settings, before anything is written (Keras refused a factor
    of 10 only once training ran): a factor in (0, 1) (the paper divides by 10: 0.1), a
    whole patience >= 1 and a floor >= 0; else one line naming the value."""
    if not is_number(lr_factor) or not 0 < lr_factor < 1:
        raise UserError(f"`lr_factor` multiplies the learning rate at a plateau: a number in "
                        f"(0, 1), the paper's 0.1 (divide by 10); received {lr_factor!r}.")
    check_positive_int(lr_patience, "lr_patience")
    if not is_number(min_lr) or not 0 <= min_lr < math.inf:
        raise UserError(f"`min_lr` must be a finite number >= 0; received {min_lr!r}.")


def _run_callbacks(run_dir, monitor, reduce_lr, lr_factor, lr_patience, min_lr, verbose,
                   ema=False, checkpoint_model=None, mode="auto"):
    """The run's callbacks, in the order their epoch ends must happen.

    Every decision of an epoch comes before its backup: the learning-rate drop, the history
    row and the checkpoints; the backup is the epoch's last act. A kill anywhere before it
    resumes by running that epoch again, which rewrites its row and checkpoints; a kill
    after it resumes with everything the epoch decided. (The backup's restore, though, must
    come first: the other callbacks read what it restored.)
    """
    history_path = os.path.join(run_dir, "history.csv") if run_dir else None
    # With EMA: validate on the averaged weights, and hold them while the checkpoints and
    # the user's callbacks see the epoch's end; the backup keeps the raw training state.
    # (fit ends with the averages.)
    swap = zoo_callbacks.EpochEndEMASwap() if ema else None
    cbs = [keras.callbacks.TerminateOnNaN()]
    plateau = None
    if reduce_lr:
        plateau = zoo_callbacks.ResumableReduceLROnPlateau(
            history_path, monitor=monitor, mode=mode, factor=lr_factor, patience=lr_patience,
            min_lr=min_lr, verbose=1 if verbose else 0)
        cbs.append(plateau)
    cbs.append(zoo_callbacks.LearningRateLogger())
    if run_dir is None:
        return cbs + ([swap, zoo_callbacks.RawWeightsBack(swap)] if swap else [])
    backup = zoo_callbacks.SafeBackupAndRestore(os.path.join(run_dir, "backup"),
                                                double_checkpoint=True, delete_checkpoint=False)
    checkpoint = zoo_callbacks.AtomicCheckpoint(
        os.path.join(run_dir, "checkpoints"), monitor=monitor, mode=mode,
        history_path=history_path, saved_model=checkpoint_model)
    # Their state goes into each backup: a resume then needs no history.csv to rebuild it.
    backup.tracked = [c for c in (checkpoint, plateau) if c is not None]
    for callback, key in ((checkpoint, "checkpoint"), (plateau, "plateau")):
        if callback is not None:
            callback.backup, callback.state_key = backup, key
    return ([zoo_callbacks.RestoreBackup(backup)] + cbs + [zoo_callbacks.HistoryWriter(run_dir)]
            + ([swap] if swap else []) + [checkpoint]
            + ([zoo_callbacks.RawWeightsBack(swap)] if swap else [])
            + [backup, keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"))])


def _input_shape(model):
    """The shape of one input (height, width, channels), None for a subclassed model's."""
    shape = getattr(model, "input_shape", None) if getattr(model, "inputs", None) else None
    return list(shape[1:]) if isinstance(shape, tuple) else None


def _with_user_callbacks(run_callbacks, callbacks):
    """The user's ``callbacks`` placed before the run's backup (where there is one): what
    they do at an epoch's end (a snapshot, a log) is then part of the epoch a resume
    starts after; placed after it, a kill between the two lost it for good. With EMA,
    before the raw weights come back: they see the averaged weights that were validated
    (a snapshot, ``EarlyStopping``'s best weights), as the checkpoints do."""
    place = next((i for i, c in enumerate(run_callbacks)
                  if isinstance(c, (zoo_callbacks.RawWeightsBack,
                                    zoo_callbacks.SafeBackupAndRestore))), len(run_callbacks))
    # A backup of the user's own saves the training state: the raw weights, after them.
    backups = [c for c in callbacks if isinstance(c, keras.callbacks.BackupAndRestore)]
    rest = [c for c in callbacks if c not in backups]
    back = next((i + 1 for i, c in enumerate(run_callbacks)
                 if isinstance(c, zoo_callbacks.RawWeightsBack)), place)
    return (run_callbacks[:place] + rest + run_callbacks[place:back] + backups
            + run_callbacks[back:])


def _check_one_output(model, metrics):
    """Refuse a model of several outputs with the default metrics (a GoogLeNet's auxiliary
    heads show as one): Keras gave top-1 accuracy to the first output and top-5 to the
    second, and the run stopped after its first epoch, its monitor never logged."""
    shapes = getattr(model, "output_shape", None)  # (a subclassed model has none)
    if metrics is None and isinstance(shapes, list) and len(shapes) > 1:
        names = ", ".join(getattr(model, "output_names", None) or ["?"] * len(shapes))
        raise UserError(
            f"{model.name} has {len(shapes)} outputs ({names}); zoo.train's default metrics "
            "and monitor are one classifier's. Train a one-output model, or pass metrics "
            "(a dict by output name) and a monitor naming one of its values.")


def _takes_class_indices(loss):
    """Whether ``loss`` takes class indices: the sparse cross-entropy, or a loss marked
    ``takes_class_indices`` (distillation's)."""
    return loss == "sparse_categorical_crossentropy" or getattr(
        loss, "takes_class_indices", isinstance(loss, keras.losses.SparseCategoricalCrossentropy))


def _check_labels_fit_the_loss(train_data, model, loss):
    """One-hot labels with the default sparse loss, or another that takes class indices:
    one line, before training (Keras said "Argument 'output' must have rank (ndim)
    'target.ndim - 1'")."""
    spec = getattr(train_data, "element_spec", None)
    if not _takes_class_indices(loss) or not isinstance(spec, tuple) or len(spec) < 2:
        return
    shapes = getattr(model, "output_shape", None)  # (a subclassed model has none)
    if not isinstance(shapes, tuple):
        return
    labels, classes = getattr(spec[1], "shape", None), shapes[-1]
    if labels is None or labels.rank != 2 or labels[-1] in (None, 1) or labels[-1] != classes:
        return
    if loss == "sparse_categorical_crossentropy":
        raise UserError(
            f"The labels are one-hot (shape {tuple(labels)} per batch), and "
            "loss='sparse_categorical_crossentropy' takes class indices: pass "
            "loss='categorical_crossentropy' (zoo train's metrics follow it), or give the "
            "labels as indices.")
    raise UserError(f"The labels are one-hot (shape {tuple(labels)} per batch), and the loss "
                    f"({getattr(loss, 'name', type(loss).__name__)}) takes class indices: give "
                    "the labels as indices (each row's argmax).")


# config.json's entries written by the recipe itself, which `settings` may not replace.
RECIPE_ENTRIES = (
    "model", "model_kwargs", "epochs", "optimizer", "reduce_lr", "lr_factor", "lr_patience",
    "min_lr", "monitor", "seed", "steps_per_epoch", "monitor_mode", "loss", "strategy",
    "replicas", "precision", "computes_in", "jit_compile", "params", "input_shape",
    "class_names", "resize", "keras", "tensorflow", "backend", "started")


def _check_train_arguments(train_data, val_data, callbacks, run_dir, seed, model_kwargs):
    """zoo.train's arguments of the wrong kind, in one line each (they were Keras',
    Python's or NumPy's errors, some after the model was built or the lock taken)."""
    check_data(train_data, val_data)
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.Callback):
            raise UserError(f"`callbacks` must be keras.callbacks.Callback objects; received "
                            f"{callback!r:.80} ({type(callback).__name__}).")
    if run_dir is not None and not isinstance(run_dir, (str, os.PathLike)):
        raise UserError(f"`run_dir` must be a folder name or None; received {run_dir!r}.")
    if seed is not None and not (is_int(seed) and 0 <= seed < 2**32):  # (NumPy's seeds)
        raise UserError(f"`seed` must be None or an integer in [0, 2**32 - 1]; received "
                        f"{seed!r}.")
    if model_kwargs is not None and not isinstance(model_kwargs, collections.abc.Mapping):
        raise UserError(f"`model_kwargs` must be a dict of the builder's arguments; received "
                        f"{model_kwargs!r:.80}.")


def check_data(train_data, val_data=None):
    """Training data that is no stream of batches (arrays given as ``(x, y)``, as to Keras'
    ``fit``; a number) and validation data that is one array: one line each (Keras' "expects
    1 named input(s) ... received 2", "None values not supported")."""
    how = ("batches of (images, labels): a tf.data.Dataset (data.load, or "
           "tf.data.Dataset.from_tensor_slices((x, y)).batch(32)), a keras.utils.PyDataset "
           "or a generator")
    def array(value):  # (NumPy's, TensorFlow's, JAX's, torch's)
        return hasattr(value, "shape") and hasattr(value, "dtype")

    def no_batches(value):  # (a name, a dict, a table: not a stream of batches)
        return (isinstance(value, (str, bytes, collections.abc.Mapping))
                or not hasattr(value, "__iter__"))

    if isinstance(train_data, (tuple, list)) or array(train_data) or no_batches(train_data):
        given = isinstance(train_data, (tuple, list)) or array(train_data)
        raise UserError(f"`train_data` must be {how}; received {type(train_data).__name__}"
                        + (" (arrays: batch them as above)" if given else "") + ".")
    if val_data is not None and (array(val_data) or no_batches(val_data) or isinstance(
            val_data, (tuple, list)) and len(val_data) not in (2, 3)):
        raise UserError(f"`val_data` must be {how}, or (x, y); received "
                        f"{type(val_data).__name__}.")


def _check_batched(train_data, model):
    """Unbatched images ((h, w, c) elements for a model of (batch, h, w, c) inputs): one
    line (Keras' shape error named the model's first layer)."""
    spec = getattr(train_data, "element_spec", None)
    inputs = getattr(model, "input_shape", None)
    if not (isinstance(spec, tuple) and spec and isinstance(spec[0], tf.TensorSpec)
            and isinstance(inputs, tuple) and inputs and not isinstance(inputs[0], tuple)):
        return
    shape = spec[0].shape
    expanded = inputs[-1] == 1 and shape.rank and shape[1:].is_compatible_with(inputs[1:-1])
    if shape.rank == len(inputs) - 1 and not expanded:
        # ((n, 28, 28) batches for (28, 28, 1) inputs: Keras adds the channel axis)
        raise UserError(f"The training data is not batched: its images are shaped "
                        f"{tuple(spec[0].shape)}, and {model.name} takes batches "
                        f"{tuple(inputs)}. Batch it (dataset.batch(32)), or give data.load a "
                        "batch_size.")


def _warn_if_compiled_otherwise(model, optimizer):
    """A model the user compiled with another optimizer than the recipe's, given with no
    ``optimizer``: zoo.train compiles it with the recipe's, and says so (it trained with
    PaperSGD at 0.01 without a word, the user's Adam dropped)."""
    given = getattr(model, "optimizer", None) if getattr(model, "compiled", False) else None
    # (the recipe's own under loss scaling, a float16 model's: a second zoo.train warned)
    given = getattr(given, "inner_optimizer", given)
    if optimizer is None and given is not None and type(given).__name__ != "PaperSGD":
        warnings.warn(f"{model.name} was compiled with {type(given).__name__}; zoo.train "
                      "compiles it with the recipe's PaperSGD, loss and metrics: pass "
                      "optimizer= (and loss=) to zoo.train to train with yours.",
                      stacklevel=3)


def _check_image_size(data, model, which):
    """Batches of images of another size than the model's input: one line. A Sequential
    model trained on them without a word (its convolutions and pooling take any size), and
    its files then recorded the size it was built for, which predict and export feed it."""
    spec = getattr(data, "element_spec", None)
    inputs = getattr(model, "input_shape", None)
    if not (isinstance(spec, tuple) and spec and isinstance(spec[0], tf.TensorSpec)
            and isinstance(inputs, tuple) and len(inputs) == 4
            and not isinstance(inputs[0], tuple) and spec[0].shape.rank == 4):
        return
    given, taken = tuple(spec[0].shape[1:3]), tuple(inputs[1:3])
    if None not in given + taken and given != taken:
        raise UserError(f"The {which} images are {given[0]}x{given[1]}; {model.name} takes "
                        f"{taken[0]}x{taken[1]} (its input shape {tuple(inputs[1:])}): load "
                        f"them at its size (data.load's image_size={taken[0]}), or build it "
                        "for theirs.")


def _check_settings(settings):
    """``settings``: named JSON values for config.json, none of the recipe's own (they
    replaced them: 50 epochs of "vgg" recorded for a 2-epoch AlexNet) and nothing JSON
    cannot hold (a function was written as its repr, whose address differs in the next
    process, and the resume was refused as another run). Returns them as JSON reads them
    back (NumPy's numbers as Python's)."""
    if settings is None:
        return None
    if not isinstance(settings, dict) or not all(isinstance(key, str) for key in settings):
        raise UserError(f"`settings` must be a dict of named JSON values for config.json; "
                        f"received {settings!r:.80}.")
    taken = sorted(set(settings) & set(RECIPE_ENTRIES))
    if taken:
        raise UserError(f"`settings` may not replace the recipe's own entries in config.json "
                        f"({', '.join(taken)}): name yours otherwise.")

    def plain(value):  # NumPy's numbers are numbers
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(type(value).__name__)

    for key, value in settings.items():
        try:
            json.dumps(value, default=plain)
        except (TypeError, ValueError):
            raise UserError(f"`settings[{key!r}]` must be a JSON value (numbers, strings, "
                            f"lists, dicts) that a resume can compare; received "
                            f"{value!r:.80}.") from None
    return json.loads(json.dumps(settings, default=plain))


_LABELS_MARK = "zoo: labels outside the classes"


def _labels_checked(dataset, model, loss):
    """``dataset`` whose every batch's class indices (for a ``loss`` that takes them: the
    sparse cross-entropy, or one marked ``takes_class_indices``) are checked against
    ``model``'s classes as they are read (in tf.data, under every backend): a label outside
    ``[0, classes)`` or not a whole number stops training (:func:`_labels_error` says it in
    one line). JAX's gather read them as 0-probability classes without a word (a loss of
    0.0), float labels were cut to whole ones, and TensorFlow's error named a graph node."""
    spec = getattr(dataset, "element_spec", None)
    shapes = getattr(model, "output_shape", None)  # (a subclassed model has none)
    indices = _takes_class_indices(loss)
    if indices and isinstance(shapes, tuple) and isinstance(dataset, (tuple, list)):
        _check_label_array(dataset, model, loss)  # validation (x, y) arrays: checked now
        return dataset
    if (not indices or not isinstance(dataset, tf.data.Dataset)
            or not isinstance(spec, tuple) or len(spec) < 2 or not isinstance(shapes, tuple)
            or not isinstance(spec[1], tf.TensorSpec)
            or not (spec[1].dtype.is_integer or spec[1].dtype.is_floating)):
        return dataset
    classes = shapes[-1]
    ignored = getattr(loss, "ignore_class", None)  # (Keras' label of no class: -1, 255)

    def check(*element):
        labels = tf.cast(element[1], tf.float64)
        fits = (labels >= 0) & (labels < classes) & tf.equal(labels, tf.round(labels))
        if ignored is not None:
            fits |= tf.equal(labels, float(ignored))
        whole = tf.reduce_all(fits)
        fits = tf.debugging.Assert(whole, [_LABELS_MARK, tf.reduce_min(labels),
                                           tf.reduce_max(labels)])
        with tf.control_dependencies([fits]):  # (inputs may be a dict of several)
            return (tf.nest.map_structure(tf.identity, element[0]), *element[1:])

    return dataset.map(check)


def _check_label_array(data, model, loss):
    """Validation data given as ``(x, y)`` arrays: its labels checked as a dataset's are
    (they passed unchecked: float labels were cut to whole ones, and JAX scored labels past
    the classes as 0-probability ones, a validation loss below the right labels')."""
    if len(data) < 2:
        return
    labels = np.asarray(data[1])
    if labels.dtype.kind not in "iuf" or not labels.size:
        return
    classes, ignored = model.output_shape[-1], getattr(loss, "ignore_class", None)
    if labels.ndim == 2 and labels.shape[1] == classes > 1:  # (Keras' rank error)
        raise UserError(f"The validation labels are one-hot (shape {labels.shape}), and the "
                        "loss takes class indices: give them as indices "
                        "(labels.argmax(-1)), or a categorical loss.")
    fits = (labels >= 0) & (labels < classes) & (labels == np.round(labels))
    if ignored is not None:
        fits |= labels == ignored
    if not fits.all():
        raise _labels_message(model, loss, float(labels.min()), float(labels.max()),
                              "the validation labels")


def _labels_error(err, model, loss):
    """The one line for :func:`_labels_checked`'s failed check, or None for other errors."""
    text = str(getattr(err, "message", err))
    if not isinstance(err, tf.errors.InvalidArgumentError) or _LABELS_MARK not in text:
        return None
    found = re.search(re.escape(_LABELS_MARK) + r"\]\s*\[([^\]]*)\]\s*\[([^\]]*)\]", text)
    if not found:
        return _labels_message(model, loss)
    return _labels_message(model, loss, float(found[1]), float(found[2]), "a batch")


def _labels_message(model, loss, low=None, high=None, held_by=None):
    """The one line of labels that are no class indices of ``model``: ``held_by`` held
    labels from ``low`` to ``high``."""
    classes = model.output_shape[-1]
    seen = ""
    if low is not None:
        seen = (f"; {held_by} held labels from {low:g} to {high:g}"
                + (", not all whole" if 0 <= low and high < classes else ""))
    ignored = getattr(loss, "ignore_class", None)
    also = "" if ignored is None else f" (or {ignored:g}, which the loss ignores)"
    return UserError(f"The labels must be class indices, whole numbers in [0, {classes}) for "
                     f"{model.name}'s {classes} classes{also}{seen}. Number the classes from 0 "
                     "(data.load does), or build the model with more classes.")


# What TensorFlow's image decoders say of a file they fail on inside tf.data.
_DECODE_FAILURES = ("jpeg::Uncompress failed", "Unknown image file format",
                    "Invalid PNG data", "Invalid GIF data", "Invalid BMP data")


def _decode_error(err):
    """The one line for an image that failed to decode in the middle of an epoch (damage
    after intact markers, which an image folder's quick check passes), or None."""
    text = str(getattr(err, "message", err))
    found = [line for line in text.splitlines()
             if any(failure in line for failure in _DECODE_FAILURES)]
    if not isinstance(err, tf.errors.InvalidArgumentError) or not found:
        return None
    said = re.sub(r"^.*?\}\}\s*", "", found[0]).strip()  # ({{function_node ...}} off)
    return UserError(f"An image of the training data could not be decoded mid-epoch "
                     f"({said}); TensorFlow does not name the file. For an image "
                     "folder, data.load(..., verify='decode') names it before training "
                     "(the quick check reads each file's markers, not its data); "
                     "on_bad_image='skip' then leaves it out.")


def _warn_on_logits_with_a_probability_loss(model, loss):
    """The default loss takes probabilities; a model ending in logits (a builder's
    ``classifier_activation=None``) would train on a loss that means nothing, and later
    look like a divergence. Said before training; whether it was."""
    mismatched = (loss == "sparse_categorical_crossentropy"
                  and getattr(model, "outputs", None) is not None  # (a graph to read)
                  and not outputs.outputs_probabilities(model))
    if mismatched:
        warnings.warn(
            f"{model.name} outputs logits (no softmax at its end), but "
            "loss='sparse_categorical_crossentropy' takes probabilities: pass "
            "loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True).",
            stacklevel=3)
    return mismatched


def _warn_on_exploding_loss(rows, model, factor=3.0):
    """A finite training loss far above chance's ln(classes) is a divergence that has not
    turned into NaN (yet): say so, with the epoch."""
    classes = model.output_shape[-1] if len(model.outputs) == 1 else None
    losses = [(row["epoch"], row["loss"]) for row in rows if isinstance(row.get("loss"), float)]
    if not classes or classes < 2 or not losses:
        return
    chance = math.log(classes)
    epoch, worst = max(losses, key=lambda pair: pair[1])
    if worst > factor * chance:
        warnings.warn(
            f"The training loss reached {worst:,.4g} in epoch {epoch}, more than {factor:g} "
            f"times chance's ln({classes}) = {chance:.2f}: the run is diverging (the "
            "learning rate is probably too high).", stacklevel=3)


def _length(train_data):
    """The batches in one pass over ``train_data``: a count, ``tf.data``'s
    ``INFINITE_CARDINALITY`` or ``UNKNOWN_CARDINALITY``, or None for data of no such kind
    (arrays, a generator). A ``tf.data.Dataset``'s cardinality; a ``keras.utils.PyDataset``'s
    ``num_batches`` (None: infinite)."""
    if isinstance(train_data, tf.data.Dataset):
        return int(train_data.cardinality())
    if isinstance(train_data, keras.utils.PyDataset):
        try:
            batches = train_data.num_batches
        except NotImplementedError:  # (neither num_batches nor __len__)
            return tf.data.UNKNOWN_CARDINALITY
        return tf.data.INFINITE_CARDINALITY if batches is None else int(batches)
    return None


def _known_length(train_data):
    """The number of batches of a dataset of known, finite length; else None."""
    length = _length(train_data)
    return length if length is not None and length > 0 else None


def epoch_length(train_data, steps_per_epoch):
    """The batches of an epoch: the training dataset's length (a ``tf.data.Dataset``'s or a
    ``keras.utils.PyDataset``'s), or ``steps_per_epoch`` for data of unknown or infinite
    length (None: data of unknown length is passed over whole each epoch). Refused: a
    ``steps_per_epoch`` other than a known length, and infinite data without it, whose
    first epoch would never end."""
    if steps_per_epoch is not None:
        check_positive_int(steps_per_epoch, "steps_per_epoch")
    length = _length(train_data)
    if length is None:
        return steps_per_epoch
    if length > 0 and steps_per_epoch not in (None, length):
        raise UserError(
            f"steps_per_epoch={steps_per_epoch} differs from the training data's length, "
            f"{length} batches: an epoch is one pass over data of known length (a resumed run "
            "replays the passes). Leave steps_per_epoch out, or train on part of the data "
            "(a split sliced as TFDS slices it, data.load(name, 'train[:10%]'), which keeps "
            "its epochs on resume, where dataset.take() does not).")
    if length == 0:  # (it trained nothing, and the run looked done: it never trained again)
        raise UserError("The training data holds no batch (its length is 0): check what "
                        "was filtered, taken or split off.")
    if length == tf.data.INFINITE_CARDINALITY and steps_per_epoch is None:
        raise UserError("The training data repeats forever (dataset.repeat(), or a "
                        "PyDataset whose num_batches is None), so its first epoch would "
                        "never end: pass steps_per_epoch, or leave the repeat out (zoo.train "
                        "repeats data of known length itself).")
    return length if length > 0 else steps_per_epoch


def _one_stream(train_data, steps_per_epoch=None):
    """``(dataset, steps_per_epoch)`` for ``fit``: a dataset of known length is repeated and
    read through ONE iterator for the whole run, each epoch one pass over it.

    Without ``steps_per_epoch`` Keras makes a new iterator every epoch and drops the old
    one, which under a ``tf.distribute`` strategy stalled for 5 s at a time (measured on
    2 CPU cores: 5-15 s per epoch of the demo's AlexNet, whose training takes 5 s); one
    iterator has no such stall. A ``data.load`` dataset still takes each epoch's order from
    ``(seed, epoch)``: every repetition is a new pass, and passes count epochs. Datasets of
    unknown length are repeated too when ``steps_per_epoch`` (:func:`epoch_length`) says
    how many batches an epoch takes, else each epoch is one whole pass; infinite ones go to
    ``fit`` as they are.
    """
    if not isinstance(train_data, tf.data.Dataset):
        return train_data, steps_per_epoch
    length = int(train_data.cardinality())
    if length > 0:
        return train_data.repeat(), length
    if length == tf.data.UNKNOWN_CARDINALITY and steps_per_epoch is not None:
        return train_data.repeat(), steps_per_epoch
    return train_data, steps_per_epoch  # unknown (whole passes), infinite or empty


def _whole_passes_of_unknown_length(stream, steps):
    """Whether ``fit`` takes ``stream`` as data of unknown length, each epoch a whole pass."""
    return (steps is None and isinstance(stream, tf.data.Dataset)
            and int(stream.cardinality()) == tf.data.UNKNOWN_CARDINALITY)


@contextlib.contextmanager
def _whole_passes_expected(stream, steps):
    """Data of unknown length, each epoch one whole pass: Keras learns the length when the
    first pass runs out, and warns then "Your input ran out of data; interrupting
    training", though nothing is interrupted. That warning only, for that data only."""
    with warnings.catch_warnings():
        if _whole_passes_of_unknown_length(stream, steps):
            warnings.filterwarnings("ignore", message="Your input ran out of data",
                                    category=UserWarning)
        yield


def train(
    model,
    train_data,
    val_data=None,
    *,
    epochs=90,
    steps_per_epoch=None,
    run_dir=None,
    model_kwargs=None,
    optimizer=None,
    learning_rate=0.01,
    momentum=0.9,
    weight_decay=5e-4,
    reduce_lr=True,
    lr_factor=0.1,
    lr_patience=5,
    min_lr=1e-6,
    monitor=None,
    monitor_mode="auto",
    loss="sparse_categorical_crossentropy",
    metrics=None,
    seed=None,
    strategy="auto",
    precision=None,
    jit_compile=None,
    callbacks=(),
    class_names=None,
    resize=None,
    checkpoint_model=None,
    settings=None,
    verbose=1,
):
    """Train a model with the paper recipe; returns a :class:`TrainResult`.

    Args:
        model: a ``keras.Model``, a registry name (with ``model_kwargs``) or a function
            returning a model. Pass a name or a function to use a distribution ``strategy``
            or a mixed ``precision``: the model is then built under them (and after
            seeding, so ``seed`` fixes the initial weights too).
        train_data, val_data: datasets of ``(image, label)`` batches (``data.load``).
        epochs: epochs in all; a resumed run trains only the epochs still missing.
        steps_per_epoch: batches per epoch, for training data of unknown or infinite
            length (required for ``dataset.repeat()``); data of known length sets it itself
            (an epoch is one pass), and another value is refused.
        run_dir: where the run's files go (see the module docstring); None writes nothing
            and cannot resume.
        optimizer: replaces the recipe's :class:`PaperSGD`: a name of
            ``zoo.OPTIMIZER_CHOICES`` (``make_optimizer`` with ``learning_rate``,
            ``momentum`` and ``weight_decay``; any case), or (those three then unused) an
            optimizer, another Keras name, or a function returning one (needed with a
            distribution strategy, so that the optimizer's variables are created under
            it), e.g. ``lambda: make_optimizer("adam")``. An
            optimizer with ``use_ema=True`` is validated and checkpointed on its averaged
            weights, ``callbacks`` see them at each epoch's end, and the returned model
            holds them.
        reduce_lr, lr_factor, lr_patience, min_lr, monitor: ``ReduceLROnPlateau`` on
            ``monitor``, which ``checkpoints/best.keras`` follows too (default: validation
            top-1 accuracy; with your own ``metrics``, validation loss; without
            ``val_data``, training loss).
        monitor_mode: ``"auto"`` (Keras' rule: losses fall, a metric goes its own way, so
            ``val_auc`` rises; a name Keras cannot tell about is one line, before the first
            epoch where Keras has built the metrics, else at its end), ``"min"`` or
            ``"max"``.
        loss, metrics: default sparse cross-entropy, top-1 and top-5 accuracy.
        seed: seeds Python, NumPy and TensorFlow (``keras.utils.set_random_seed``).
        strategy: ``"auto"``, ``"one_device"``, ``"mirrored"``, ``"multi_worker"`` or a
            ``tf.distribute.Strategy``. On JAX, ``"mirrored"`` is
            ``keras.distribution.DataParallel`` over the local devices and
            ``"multi_worker"`` over every process's (``zoo.distribute.initialize_cluster``):
            process 0 writes ``run_dir``, which every process reads to resume.
        precision: None, ``"mixed_float16"`` or ``"mixed_bfloat16"``; None builds under
            the global policy where it is a mixed one (``keras.config.set_dtype_policy``, as
            Keras' guide sets it), else in float32. A built model trains as it was built
            (its float16 layers with loss scaling, whatever its own policy says).
        jit_compile: compile the training step with XLA; None: not on TensorFlow, and
            on JAX always (Keras' ``"auto"``; without it JAX runs each step op by op).
        callbacks: more Keras callbacks.
        class_names: the names of the classes in label order (``data.info(name)
            .class_names``): the checkpoints and the returned model carry them
            (``zoo.class_names(model)``), and so do ensembles and exports made from them.
        resize: how ``train_data``'s images were made into inputs: ``"crop"`` (random
            crops, ``data.load(scale=...)`` with crop augmentation) or ``"squash"`` (whole
            images resized to the input, ``data.load(image_size=...)``). Recorded like the
            class names (``zoo.resize_mode(model)``): ``zoo.predict`` and
            ``ensembles.export`` then resize images as the model was trained.
        checkpoint_model: what ``checkpoints/{best,last}.keras`` hold, when not the model
            trained: a model sharing its weights (``ensembles.distill`` trains a model
            holding the student and the teacher, and checkpoints the student alone).
        settings: more entries for ``config.json`` (JSON values): a resumed run with
            other values is refused, as for the recipe's own settings.

    Example:

    >>> import data, zoo
    >>> result = zoo.train("alexnet", data.load("digits", image_size=67),
    ...                    data.load("digits", "validation", image_size=67), epochs=2,
    ...                    model_kwargs=dict(input_shape=(67, 67, 3), classes=10, width=512),
    ...                    run_dir="runs/alexnet_python")   # doctest: +SKIP
    """
    check_choice(precision, PRECISION_CHOICES, "precision")
    if precision is None and not isinstance(model, keras.Model):  # as Keras' guide sets it
        global_policy = keras.config.dtype_policy().name
        precision = global_policy if global_policy in PRECISION_CHOICES[2:] else None
    settings = _check_settings(settings)
    if isinstance(callbacks, keras.callbacks.Callback):  # (Python's "not iterable")
        raise UserError(f"`callbacks` must be a list of keras.callbacks.Callback objects; "
                        f"received one, {type(callbacks).__name__}: put it in a list.")
    callbacks = list(callbacks or ())  # (a generator: read by the checks, then by fit)
    _check_train_arguments(train_data, val_data, callbacks, run_dir, seed, model_kwargs)
    seed = None if seed is None else int(seed)  # (Keras refuses NumPy's)
    if resize is not None:  # (before the model is built, or a cluster joined)
        check_resize(resize)
    check_positive_int(epochs, "epochs")
    epoch_steps = epoch_length(train_data, steps_per_epoch)
    if isinstance(model, keras.Model) and model_kwargs:
        registry.resolve(model, **model_kwargs)  # refused: they cannot change a built model
    check_choice(monitor_mode, zoo_callbacks.MONITOR_MODES, "monitor_mode")
    if reduce_lr:
        _check_plateau(lr_factor, lr_patience, min_lr)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    asked = strategy
    strategy, parallel, replicas = distribute.backend_distribution(strategy)
    if parallel is not None and isinstance(model, keras.Model):
        _check_built_for(model, replicas, asked)
    # After the distribution is set up: asking for devices starts the backend's runtime,
    # which must follow TensorFlow's device split and joining a JAX cluster.
    if precision == "mixed_float16" and _cpu_only():
        warnings.warn("precision='mixed_float16' on a CPU: its float16 kernels are far "
                      "slower than float32's (a small ResNet-18: 145 s against 4.5 s on a "
                      "2-core Xeon, 2026-12-04). Mixed precision pays on a GPU; on a CPU with "
                      "bfloat16 instructions, use mixed_bfloat16 (3.9 s there).", stacklevel=2)
    processes = distribute.process_count() if parallel is not None else 1
    if parallel is not None:
        distribute.check_distributable(replicas, train_data=train_data, val_data=val_data)
        distribute.check_even_batches(replicas, train_data=train_data)
        val_data = distribute.process_share(distribute.even_validation(replicas, val_data))
        parallel.auto_shard_dataset = False  # each process takes its share itself
    elif replicas > 1:  # tf.distribute: a batch smaller than the replicas left one empty,
        val_data = distribute.even_validation(replicas, val_data, uneven=False)  # (failed)
        distribute.check_no_empty_replica(replicas, train_data)
        if jit_compile is True and distribute.splits_a_device(strategy):  # ("auto": none)
            raise UserError(
                f"jit_compile=True does not combine with this {type(strategy).__name__}: its "
                f"{replicas} replicas are one device split in parts, between which XLA "
                "cannot reach the variables (TensorFlow's error, mid-fit). Leave jit_compile "
                "out, or train on one device (strategy='one_device').")
    shared_run_dir = run_dir  # what process 0 writes; the others write a scratch copy
    # On JAX, data parallelism is keras.distribution's: the model's variables are made and
    # its batches split under it.
    with (parallel.scope() if parallel is not None else contextlib.nullcontext(),
          run_config.process_run_dir(run_dir, distribute.process_index()) as run_dir):
        model = _build(model, model_kwargs, strategy, precision)
        if class_names is not None:
            set_class_names(model, class_names)
        if resize is not None:
            set_resize_mode(model, resize)
            if checkpoint_model is not None:
                set_resize_mode(checkpoint_model, resize)
        _warn_if_compiled_otherwise(model, optimizer)
        with strategy.scope():
            optimizer = compile_model(model, optimizer, learning_rate=learning_rate,
                                      momentum=momentum, weight_decay=weight_decay, loss=loss,
                                      metrics=metrics, jit_compile=jit_compile,
                                      weighted=replicas > 1).optimizer
        _check_schedule(optimizer, reduce_lr, callbacks)
        _check_ema(optimizer, model)
        _check_one_output(model, metrics)
        _check_batched(train_data, model)
        _check_image_size(train_data, model, "training")
        _check_image_size(val_data, model, "validation")
        _check_labels_fit_the_loss(train_data, model, loss)
        mismatched_loss = _warn_on_logits_with_a_probability_loss(model, loss)
        # (the default metrics name top-1 accuracy; other metrics may not have it)
        monitor = monitor or ("loss" if val_data is None else
                              "val_top1_accuracy" if metrics is None else "val_loss")
        if val_data is None and str(monitor).startswith("val_"):  # (never logged)
            raise UserError(f"monitor={monitor!r} is a validation value, and no val_data was "
                            "given: give val_data, or monitor a training value ('loss').")
        run_dir = distribute.own_run_dir(run_dir, strategy)  # no clobbering
        if run_dir is not None:  # nothing written, not even the lock, in someone's folder
            run_config.check_not_foreign(run_dir)
            _check_epochs_to_go(run_dir, epochs)
            # A corrupt history: one line before config.json and the logs are written.
            zoo_callbacks.read_history(os.path.join(run_dir, "history.csv"))
            if monitor_mode == "auto":  # a direction the run named stays (none: Keras')
                monitor_mode = run_config.recorded(run_dir, "monitor_mode") or "auto"
            trained_under = run_config.recorded(run_dir, "backend")  # (before it is rewritten)
        # One run per directory: a second run (any command) gets a one-line error at once.
        with directory_lock(run_dir) if run_dir is not None else contextlib.nullcontext():
            if run_dir is not None:
                run_config.write_config(run_dir, {
                    "model": model.name, "model_kwargs": model_kwargs, "epochs": epochs,
                    "optimizer": keras.optimizers.serialize(_as_recorded(optimizer, model)),
                    "reduce_lr": reduce_lr,
                    "lr_factor": lr_factor, "lr_patience": lr_patience, "min_lr": min_lr,
                    "monitor": monitor, "seed": seed,
                    # (None where they change nothing: so do configs written before them)
                    "steps_per_epoch": steps_per_epoch if epoch_steps != _known_length(
                        train_data) else None,
                    "monitor_mode": None if monitor_mode == "auto" else monitor_mode,
                    "loss": loss if isinstance(loss, str) else keras.losses.serialize(loss),
                    "strategy": type(parallel if parallel is not None  # (JAX: Keras')
                                     else strategy).__name__,
                    "replicas": replicas, "precision": precision,
                    # (a built model's precision= is None: what its layers compute in)
                    "computes_in": half_precision_of(model) or "float32",
                    "jit_compile": model.jit_compile, "params": model.count_params(),
                    "input_shape": _input_shape(model),
                    "class_names": get_class_names(checkpoint_model or model),
                    "resize": resize_mode(checkpoint_model or model),
                    "keras": keras.__version__, "tensorflow": tf.__version__,
                    "backend": keras.backend.backend(),  # (a resume may use another)
                    "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    **(settings or {}),
                })
                _note_other_backend(run_dir, trained_under)  # (a resume accepted)
            epochs_of = zoo_callbacks.DataEpochs(train_data, epoch_steps)
            if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
                if reduce_lr and val_data is None:
                    raise UserError(
                        "With strategy='multi_worker', ReduceLROnPlateau must watch validation "
                        "metrics (every worker computes the same ones): pass val_data or "
                        "reduce_lr=False."
                    )
                val_data = distribute.sharded(val_data) if val_data is not None else None
            distribute.work_around_keras_20585(model, strategy, train_data)
            build_optimizer(model, strategy)  # one trace of the first step, not two
            if verbose:
                where = (f"process {distribute.process_index()} of {processes}, "
                         if processes > 1 else "")
                # (as Keras' summary counts them: a distillation's frozen teacher is not)
                trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
                print(f"Training {model.name} ({model.count_params():,} parameters, "
                      f"{trainable:,} trainable) for {epochs} "
                      f"epoch{'s' * (epochs != 1)} on {where}{replicas} replica(s)"
                      + (f"; run directory: {shared_run_dir}" if shared_run_dir else "")
                      + (" (written by process 0)" if run_dir != shared_run_dir else ""),
                      flush=True)
            stream, steps = _one_stream(_labels_checked(train_data, model, loss), epoch_steps)
            val_data = _labels_checked(val_data, model, loss)
            stream = distribute.process_share(stream, processes)
            run_callbacks = _run_callbacks(
                run_dir, monitor, reduce_lr, lr_factor, lr_patience, min_lr, verbose,
                ema=_uses_ema(optimizer), checkpoint_model=checkpoint_model,
                mode=monitor_mode)
            if processes > 1 and run_dir is not None:  # (RestoreBackup comes first)
                run_callbacks[0].backup.agree_on_epoch = distribute.same_epoch_everywhere(
                    shared_run_dir)
            elif run_dir is not None and isinstance(
                    strategy, tf.distribute.MultiWorkerMirroredStrategy):
                run_callbacks[0].backup.agree_on_epoch = distribute.same_epoch_everywhere(
                    shared_run_dir, strategy)
            if _whole_passes_of_unknown_length(stream, steps) and \
                    zoo_callbacks.ExactStepCount.applies(model.optimizer):  # (after the restore)
                run_callbacks.insert(int(run_dir is not None), zoo_callbacks.ExactStepCount())
            replica_statistics = ([distribute.AverageReplicaStatistics(strategy)]
                                  if parallel is None and replicas > 1 else [])
            # Keras keeps a restored start epoch on the model for every later fit: a model
            # resumed once then trained again (no backup) started there, training nothing.
            keras_internals.set_initial_epoch(model, None)
            fit_callbacks = _with_user_callbacks(
                [zoo_callbacks.NoEmptyEpochs()] + replica_statistics
                + [zoo_callbacks.FiniteWeights()] + run_callbacks + [epochs_of], callbacks)
            if run_dir is not None:  # (the backup copies the checkpoint's weights)
                zoo_callbacks.share_checkpoint_weights(fit_callbacks, run_callbacks[0].backup)
            try:
                with distribute.steady_device_iterators(), \
                        _whole_passes_expected(stream, steps):
                    history = model.fit(
                        stream, steps_per_epoch=steps, validation_data=val_data,
                        epochs=epochs, verbose=verbose,
                        shuffle=False,  # datasets come shuffled (data.load); Keras can't
                        callbacks=fit_callbacks)
            except Exception as err:  # an error (not Ctrl-C, which stops a run to resume)
                if run_dir is not None:  # before any backup: no run to resume either
                    run_config.forget_empty_backup(run_dir)
                if isinstance(err, StopIteration):  # (JAX: Keras' first build reads a
                    raise UserError(zoo_callbacks.NO_BATCH) from None  # batch, of none)
                mistake = _labels_error(err, model, loss) or _decode_error(err)
                if mistake is not None:
                    raise mistake from None
                raise
            finally:
                keras_internals.set_initial_epoch(model, None)
            if run_dir is not None:  # ended with no epoch backed up (diverged in the first):
                run_config.forget_empty_backup(run_dir)  # not a run to resume: run anew
            rows = (zoo_callbacks.read_history(os.path.join(run_dir, "history.csv")) if run_dir
                    else [{"epoch": e + 1, **{k: v[i] for k, v in history.history.items()}}
                          for i, e in enumerate(history.epoch)])
            last = rows[-1] if rows else {}  # TerminateOnNaN stops on a NaN or inf loss
            diverged = bool(rows) and not zoo_callbacks._finite(last)  # (its training values)
            if diverged:
                warnings.warn(f"Training diverged (NaN or infinite loss) in epoch "
                              f"{rows[-1]['epoch']} and was stopped; "
                              f"{run_config.what_was_kept(run_dir)}", stacklevel=2)
            elif loss == "sparse_categorical_crossentropy" and not mismatched_loss:
                _warn_on_exploding_loss(rows, model)
    if processes > 1:
        # The model's variables span every process: later evaluate and predict calls in
        # this process run over the cluster too (on zoo.distribute.cluster_share(data)).
        keras.distribution.set_distribution(parallel)
    return TrainResult(model, pd.DataFrame(rows), shared_run_dir, diverged)
