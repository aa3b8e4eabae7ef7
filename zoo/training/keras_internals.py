"""The private Keras names the training callbacks rely on, in one place.

Keras' ``BackupAndRestore``, ``SwapEMAWeights`` and ``ReduceLROnPlateau`` keep the state our
crash-safe versions need (the backup's file names, the epoch and batch it is at, whether the
EMA weights are swapped in, the monitor's comparison) in private attributes. Every use goes
through this module, and :func:`missing` lists those the installed Keras lacks:
``tests/zoo/training/test_recipe.py`` fails on it, naming them, when an upgrade moves one.
Tested with Keras 3.15.

Example:

>>> missing()
[]
"""

import keras

# (class, attribute): what each function below reads or calls.
USED = [
    (keras.Model, "_initial_epoch"),  # fit starts there; BackupAndRestore's restore sets it
    (keras.Model, "_compile_metrics"),  # built (named) in the first traced step
    (keras.callbacks.BackupAndRestore, "_save_model"),  # the hook our backup overrides
    (keras.callbacks.BackupAndRestore, "_weights_path"),
    (keras.callbacks.BackupAndRestore, "_training_metadata_path"),
    (keras.callbacks.BackupAndRestore, "_prev_weights_path"),
    (keras.callbacks.BackupAndRestore, "_prev_training_metadata_path"),
    (keras.callbacks.BackupAndRestore, "_current_epoch"),
    (keras.callbacks.BackupAndRestore, "_last_batch_seen"),
    (keras.callbacks.SwapEMAWeights, "_ema_weights_in_model"),
    (keras.callbacks.SwapEMAWeights, "_swap_variables"),
    (keras.callbacks.ReduceLROnPlateau, "_set_monitor_op"),
    (keras.callbacks.ReduceLROnPlateau, "_is_improvement"),
    (keras.optimizers.Optimizer, "_learning_rate"),  # a rate's variable, or its schedule
    (keras.optimizers.Optimizer, "_iterations"),  # every batch (iterations: every update)
]


def clonable(model):
    """Whether ``keras.models.clone_model`` takes a ``clone_function`` for ``model``: a
    Functional or Sequential model (a subclassed one, not)."""
    from keras.src.models.functional import Functional

    return isinstance(model, (Functional, keras.Sequential))


def missing():
    """``["Class._name", ...]`` for every name in :data:`USED` that the installed Keras
    lacks (attributes set in ``__init__`` are looked for on a fresh instance)."""
    instances = {
        keras.Model: keras.Sequential(),
        keras.callbacks.BackupAndRestore: keras.callbacks.BackupAndRestore("unused_backup"),
        keras.callbacks.SwapEMAWeights: keras.callbacks.SwapEMAWeights(),
        keras.callbacks.ReduceLROnPlateau: keras.callbacks.ReduceLROnPlateau(),
        keras.optimizers.Optimizer: keras.optimizers.SGD(),
    }
    return [f"{cls.__name__}.{name}" for cls, name in USED
            if not hasattr(instances[cls], name)]


def initial_epoch(model):
    """The epoch ``fit`` starts from: 0, or the epoch a restored backup completed."""
    return getattr(model, "_initial_epoch", 0) or 0


def learning_rate_schedule(optimizer):
    """The schedule (a ``LearningRateSchedule``, or any function) ``optimizer``'s learning
    rate follows, or None for a rate held in a variable, which ``ReduceLROnPlateau`` can
    set (under mixed_float16, the LossScaleOptimizer's inner optimizer holds it)."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    rate = getattr(optimizer, "_learning_rate", None)
    return rate if callable(rate) else None


def last_update_rate(optimizer):
    """The learning rate of ``optimizer``'s last update: a schedule is read at the batch
    count before the current one (``_iterations``: with gradient accumulation,
    ``iterations`` counts the updates, and Keras reads the schedule at the batches)."""
    schedule = learning_rate_schedule(optimizer)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return optimizer.learning_rate  # (a variable, or a function Keras calls bare)
    return schedule(getattr(optimizer, "_iterations", optimizer.iterations) - 1)


def set_initial_epoch(model, epoch):
    """Make ``fit`` start from ``epoch`` (what Keras' ``BackupAndRestore`` does on restore)."""
    model._initial_epoch = epoch


def backup_pairs(backup):
    """``[(weights, metadata), (previous weights, previous metadata)]`` of a
    ``BackupAndRestore``: the paths it writes."""
    return [(backup._weights_path, backup._training_metadata_path),
            (backup._prev_weights_path, backup._prev_training_metadata_path)]


def backup_position(backup):
    """``(epoch, batch)`` the backup is at when it saves."""
    return backup._current_epoch, backup._last_batch_seen


def swap_averaged_weights_in(swap):
    """Put the averaged weights of ``swap`` (a ``SwapEMAWeights``) in the model, keeping the
    raw ones in their place, unless they are in already."""
    if not swap._ema_weights_in_model:
        swap._swap_variables()
        swap._ema_weights_in_model = True


def swap_raw_weights_back(swap):
    """If ``swap`` (a ``SwapEMAWeights``) has the averaged weights in the model, put the raw
    training weights back; whether it did."""
    if not swap._ema_weights_in_model:
        return False
    swap._swap_variables()
    swap._ema_weights_in_model = False
    return True


def monitor_direction(model, monitor):
    """``"max"`` or ``"min"``: which way ``monitor`` improves by Keras' own rule for its
    callbacks' ``mode="auto"`` (losses fall; a metric goes its ``_direction``), or None
    where Keras cannot tell (an unknown name, a metric without a direction). Needs the
    model's metrics built, as they are from ``on_train_begin`` on."""
    probe = keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="auto")
    probe.set_model(model)
    try:
        probe._set_monitor_op()
    except ValueError:
        return None
    return "max" if probe.monitor_op is keras.ops.greater else "min"


def metrics_built(model):
    """Whether ``model``'s compiled metrics know their names yet: Keras builds them on the
    first traced step (before ``on_train_begin`` on JAX and under a strategy; on
    TensorFlow without one, only in the first step)."""
    compiled = getattr(model, "_compile_metrics", None)
    return compiled is None or compiled.built


def prepare_monitor(reduce_lr):
    """Set a ``ReduceLROnPlateau``'s comparison (Keras does it on the first epoch's end)."""
    reduce_lr._set_monitor_op()


def is_improvement(reduce_lr, current, best):
    """Whether ``current`` improves on ``best`` by the callback's own rule."""
    return reduce_lr._is_improvement(current, best)
