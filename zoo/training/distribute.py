"""Distribution helpers: data-parallel training over two (or more) devices on whatever
hardware is present. (The paper split its model across two GPUs; ``zoo.alexnet(towers=2)``
reproduces that connectivity, and mirroring is data parallelism, not that split.)"""

import contextlib
import json
import os
import shutil
import subprocess
import warnings

import keras
import tensorflow as tf
from tensorflow.python.data.ops import multi_device_iterator_ops

from safeio.checks import UserError, check_positive_int
from zoo.training import cluster


def _gpu_memory_mb(default=4096):
    """Total memory in MiB of the GPU TensorFlow calls GPU 0 (the first of
    ``CUDA_VISIBLE_DEVICES``, whose index or UUID nvidia-smi takes), from nvidia-smi; else
    ``default``, with a warning that names it (an AMD GPU, a container without nvidia-smi)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip() or "0"
    try:
        if shutil.which("nvidia-smi") is None:
            raise OSError("nvidia-smi is not on the PATH")
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits",
             "-i", visible], capture_output=True, text=True, timeout=10, check=True).stdout
        return int(out.strip().splitlines()[0])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError) as err:
        warnings.warn(f"Could not read the GPU's memory ({err}); splitting it as if it had "
                      f"{default} MiB: pass mirrored(gpu_memory_mb=...) for its real share.",
                      stacklevel=3)
        return default


def _split_device(physical, devices, memory_mb):
    """Split one physical device into ``devices`` logical ones (before TF initialises it)."""
    kind = physical.device_type
    current = tf.config.get_logical_device_configuration(physical)
    if current is not None and len(current) >= devices:
        return
    if kind == "GPU":
        configs = [tf.config.LogicalDeviceConfiguration(memory_limit=memory_mb)] * devices
    else:
        configs = [tf.config.LogicalDeviceConfiguration()] * devices
    try:
        tf.config.set_logical_device_configuration(physical, configs)
    except RuntimeError as err:
        raise RuntimeError(
            f"Cannot split {physical.name} into {devices} logical devices: TensorFlow has "
            "already initialised its devices. Call zoo.distribute.mirrored() (or "
            "get_strategy('mirrored')) first, before loading data, building a model or running "
            "any TensorFlow op in this process, and pass the strategy to zoo.train(strategy=...)."
        ) from err


def mirrored(devices=2, gpu_memory_mb=None):
    """A ``tf.distribute.MirroredStrategy`` over ``devices`` devices, on any machine.

    Data parallelism: every replica holds the whole model and takes a share of each batch.
    With at least ``devices`` GPUs it mirrors over the first ``devices`` of them. With
    fewer, it splits GPU 0 (or, without GPUs, the CPU) into ``devices``
    logical devices first, so the multi-device code path always runs. Splitting must
    happen before TensorFlow initialises its devices: call this first in a process.

    Args:
        devices: number of replicas, at least 1.
        gpu_memory_mb: memory of each logical GPU when one GPU is split; default: the GPU's
            memory divided by ``devices``, less 10 %.

    Example:

    >>> strategy = mirrored(2)   # first thing in a process    # doctest: +SKIP
    >>> strategy.num_replicas_in_sync                            # doctest: +SKIP
    2
    """
    check_positive_int(devices, "devices")
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) >= devices:
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(devices)])
    if gpus:
        if gpu_memory_mb is None:
            gpu_memory_mb = int(_gpu_memory_mb() * 0.9) // devices
        _split_device(gpus[0], devices, gpu_memory_mb)
        logical = tf.config.list_logical_devices("GPU")
    else:
        _split_device(tf.config.list_physical_devices("CPU")[0], devices, None)
        logical = tf.config.list_logical_devices("CPU")
    # NCCL cannot all-reduce between logical devices of one physical device.
    return tf.distribute.MirroredStrategy(
        [d.name for d in logical[:devices]],
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )


def splits_a_device(strategy):
    """Whether ``strategy`` mirrors over parts of one device (:func:`mirrored` on fewer
    GPUs than replicas, or on the CPU), between which XLA cannot reach the variables."""
    if strategy.num_replicas_in_sync < 2:
        return False
    kinds = {tf.DeviceSpec.from_string(d).device_type for d in strategy.extended.worker_devices}
    return any(len(tf.config.list_logical_devices(kind))
               > len(tf.config.list_physical_devices(kind)) for kind in kinds)


STRATEGY_CHOICES = ("auto", "one_device", "mirrored", "multi_worker")


def get_strategy(strategy="auto"):
    """Resolve a strategy name (or pass a ``tf.distribute.Strategy`` through).

    - ``"auto"``: all GPUs mirrored when there are several, else TensorFlow's default.
    - ``"one_device"``: the first GPU, or the CPU.
    - ``"mirrored"``: data parallelism over two devices, see :func:`mirrored`.
    - ``"multi_worker"``: ``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``.

    Example:

    >>> get_strategy("one_device").num_replicas_in_sync
    1
    """
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy not in STRATEGY_CHOICES:
        raise UserError(
            f"`strategy` must be one of {STRATEGY_CHOICES} or a tf.distribute.Strategy; "
            f"received {strategy!r}."
        )
    gpus = tf.config.list_physical_devices("GPU")
    if strategy == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if strategy == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if strategy == "mirrored":
        return mirrored(devices=2)
    tf_config_task()  # its mistakes: one line, before TensorFlow reads it
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as err:
        raise RuntimeError(
            "MultiWorkerMirroredStrategy must be created before TensorFlow runs any op: call "
            "zoo.distribute.get_strategy('multi_worker') first in the process (before loading "
            "data) and pass the strategy to zoo.train(strategy=...)."
        ) from err


_TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                      '"task": {"type": "worker", "index": 0}}')


def tf_config_task():
    """``(task_type, task_index, cluster)`` of this TensorFlow multi-worker process, read
    from ``TF_CONFIG``; its mistakes are one line (TensorFlow's ``ValueError`` read as a bug
    of ours, and a config without a cluster trained alone without a word).

    Example:

    >>> os.environ["TF_CONFIG"] = _TF_CONFIG_EXAMPLE                    # doctest: +SKIP
    >>> tf_config_task()[:2]                                            # doctest: +SKIP
    ('worker', 0)
    """
    text = os.environ.get("TF_CONFIG", "")
    where = (f"strategy='multi_worker' reads the cluster and this process's task from "
             f"TF_CONFIG, e.g. {_TF_CONFIG_EXAMPLE} (see the README's 'Several machines')")
    if not text.strip():
        raise UserError(f"{where}; it is not set.")
    try:
        config = json.loads(text)
    except ValueError as err:
        raise UserError(f"TF_CONFIG is not JSON ({err}); received {text!r}. {where}.") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not (isinstance(cluster, dict) and cluster and isinstance(task, dict)):
        raise UserError(f"TF_CONFIG needs a 'cluster' of tasks and this process's 'task'; "
                        f"received {text!r}. {where}.")
    kind, index = task.get("type"), task.get("index", 0)
    if isinstance(index, str) and index.strip().isdigit():  # ("1": TensorFlow's int() of it)
        index = int(index)
    allowed = [name for name in ("chief", "worker") if name in cluster]
    if kind not in allowed:
        raise UserError(f"TF_CONFIG's task type must be one of the cluster's {allowed} "
                        f"(MultiWorkerMirroredStrategy trains on chief and workers only); "
                        f"received {kind!r}.")
    hosts = cluster[kind]
    if not (isinstance(hosts, list) and hosts):
        raise UserError(f"TF_CONFIG's cluster must list the {kind} addresses ('host:port'); "
                        f"received {kind}: {hosts!r}.")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(hosts):
        raise UserError(f"TF_CONFIG's task index must be 0 to {len(hosts) - 1}, one of the "
                        f"cluster's {len(hosts)} {kind} address(es); received {index!r}.")
    return kind, index, cluster


def _task(strategy):
    """``(task_type, task_index, cluster)`` of a multi-worker ``strategy`` (TensorFlow's
    object, or ``"multi_worker"`` before it is made: from TF_CONFIG), None otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type:
        return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()
    if (isinstance(strategy, str) and strategy == "multi_worker"
            and keras.backend.backend() == "tensorflow"):
        return tf_config_task()
    return None


def writes_run(strategy=None):
    """Whether this process writes the run directory: the chief of a TensorFlow
    multi-worker cluster (:func:`is_chief`), process 0 of a JAX cluster, and any process
    outside a cluster; the others write a folder of their own."""
    return process_index() == 0 and is_chief(strategy)


def is_chief(strategy):
    """Whether this process is the chief of a TensorFlow multi-worker cluster (worker 0
    where it names no chief): always true outside one."""
    task = _task(strategy)
    if task is None:
        return True
    kind, index, cluster = task
    return kind == "chief" if "chief" in cluster else (kind == "worker" and index == 0)


def own_run_dir(run_dir, strategy):
    """The folder this process writes for ``run_dir``: ``run_dir`` itself, but
    ``RUN_DIR/workerN`` for a TensorFlow multi-worker task other than the chief (its files
    would clobber the chief's)."""
    if run_dir is None or is_chief(strategy):
        return run_dir
    return os.path.join(run_dir, task_name(strategy))


def task_name(strategy):
    """``"worker1"`` and so on for a TensorFlow multi-worker task, None otherwise."""
    task = _task(strategy)
    return None if task is None else f"{task[0]}{task[1]}"


@contextlib.contextmanager
def steady_device_iterators():
    """Within it, the per-device input iterators that a ``tf.distribute`` strategy makes
    (one per replica, each holding a prefetch of one batch) run without tf.data's autotuning
    thread.

    Dropping such an iterator waits for that thread's next wake-up, which it schedules at
    doubling intervals (10 ms, 20 ms, ... up to a minute), so the wait grows with the
    iterator's age: measured on 2 CPU cores, 5, 10, 20 and 47 s at the end of epochs of
    the demo's AlexNet under the two-device ``MirroredStrategy``, whose training took 5 s.
    These datasets have nothing to tune (one fixed prefetch), so nothing is lost. The
    strategy builds them in a private TensorFlow function, wrapped here for the duration;
    ``tests/zoo/training/test_distribute.py`` fails loudly if TensorFlow moves it.

    Example:

    >>> with steady_device_iterators():
    ...     pass   # model.fit(...) under a MirroredStrategy
    """
    original = multi_device_iterator_ops._create_device_dataset

    def without_autotune(*args, **kwargs):
        options = tf.data.Options()
        options.autotune.enabled = False
        return original(*args, **kwargs).with_options(options)

    multi_device_iterator_ops._create_device_dataset = without_autotune
    try:
        yield
    finally:
        multi_device_iterator_ops._create_device_dataset = original


# --- the glue zoo.train needs between Keras and the strategies -------------------------


def backend_distribution(strategy):
    """``(tf.distribute strategy, keras.distribution or None, replicas)`` for ``strategy``.

    With TensorFlow, the strategy is tf.distribute's. tf.distribute does not reach a JAX
    model, so with JAX ``"mirrored"`` (and ``"auto"`` with several devices) is
    ``keras.distribution.DataParallel`` over the local devices, ``"multi_worker"`` is
    ``DataParallel`` over the devices of every process of the cluster (joined first, see
    :func:`initialize_cluster`), and the TensorFlow side keeps its default strategy for the
    bookkeeping. tf.distribute strategy objects stay TensorFlow's.
    """
    backend = keras.backend.backend()
    if isinstance(strategy, (keras.distribution.DataParallel, keras.distribution.ModelParallel)):
        raise UserError(
            f"strategy takes a name ({', '.join(map(repr, STRATEGY_CHOICES))}) or a "
            f"tf.distribute.Strategy; received a keras.distribution."
            f"{type(strategy).__name__}: on JAX, 'mirrored' is DataParallel over this "
            "process's devices, and 'multi_worker' over every process's.")
    if backend == "tensorflow":
        strategy = get_strategy(strategy)
        return strategy, None, strategy.num_replicas_in_sync
    if isinstance(strategy, tf.distribute.Strategy) or (
            strategy == "multi_worker" and backend != "jax"):
        raise UserError(
            f"strategy={strategy!r} is TensorFlow's tf.distribute, which does not reach a "
            f"{backend} model: run with KERAS_BACKEND=tensorflow, or use 'auto', "
            f"'one_device', 'mirrored' or (on JAX) 'multi_worker', which are "
            f"keras.distribution.DataParallel there.")
    if strategy not in STRATEGY_CHOICES:
        get_strategy(strategy)  # the one-line error for an unknown name
    if strategy == "multi_worker":
        initialize_cluster()  # from Keras' environment variables, unless joined already
    devices = keras.distribution.list_devices() if backend == "jax" else []
    if strategy in ("mirrored", "multi_worker") or (strategy == "auto" and len(devices) > 1):
        if len(devices) < 2:
            raise UserError(
                f"strategy={strategy!r} needs at least 2 devices on the {backend} backend; it "
                f"sees {devices or 'no keras.distribution support'}. On a CPU, start Python "
                f"with XLA_FLAGS=--xla_force_host_platform_device_count=2 (JAX).")
        parallel = keras.distribution.DataParallel(devices=devices)
        return tf.distribute.get_strategy(), parallel, len(devices)
    return tf.distribute.get_strategy(), None, 1


def initialize_cluster(coordinator=None, num_processes=None, process_id=None,
                       timeout=cluster.DEFAULT_TIMEOUT):
    """Join a cluster of JAX processes (``keras.distribution.initialize``), first thing in
    the process: ``coordinator`` is process 0's ``host:port``; each argument left out is
    read from Keras' environment variables (``KERAS_DISTRIBUTION_JOB_ADDRESSES``,
    ``..._NUM_PROCESSES``, ``..._PROCESS_ID``). A process that does not meet the others
    within ``timeout`` seconds stops with a one-line error saying what to check. Then
    ``zoo.train(..., strategy="multi_worker")`` trains over every process's devices.

    Example:

    >>> zoo.distribute.initialize_cluster("10.0.0.1:1234", 2, 0)   # doctest: +SKIP
    """
    cluster.initialize(coordinator, num_processes, process_id, timeout)


def process_index():
    """This process's id in a JAX cluster (0 outside one): process 0 writes the run."""
    if keras.backend.backend() != "jax" or not cluster.is_initialized():
        return 0
    import jax

    return jax.process_index()


def process_count():
    """The number of processes of a JAX cluster (1 outside one)."""
    if keras.backend.backend() != "jax" or not cluster.is_initialized():
        return 1
    import jax

    return jax.process_count()


def same_epoch_everywhere(run_dir, strategy=None):
    """For a cluster (JAX's; TensorFlow's multi-worker ``strategy``, whose workers each
    restore their own backup): a check, given the epoch this process is about to restore
    from ``run_dir``'s backup, that every process is about to restore the same one.
    Otherwise they would load different weights and train different numbers of steps (a
    deadlock: each step is a collective), so every process stops with one line."""

    def gather(epoch):
        import numpy as np

        if strategy is None:
            from jax.experimental import multihost_utils

            return np.ravel(multihost_utils.process_allgather(np.int32(epoch)))
        values = strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant([epoch], tf.int32))  # one per replica
        per_worker = len(strategy.extended.worker_devices)
        return strategy.gather(values, axis=0).numpy()[::per_worker]  # one per worker

    def check(epoch):
        epochs = [int(e) for e in gather(epoch)]
        if len(set(epochs)) > 1 and strategy is not None:
            raise UserError(
                f"The workers' backups are of different epochs ({epochs}, a worker each in "
                f"the cluster's order; -1: damaged; 0: none): the chief's in {run_dir}, the "
                "others' in its workerN/ folders, as when a worker was stopped between its "
                "backup and another's. They cannot resume together: move the run directory "
                "aside to train again from the first epoch, or start with a new run "
                "directory.")
        if len(set(epochs)) > 1 and -1 in epochs:
            damaged = [i for i, epoch in enumerate(epochs) if epoch == -1]
            raise UserError(
                f"Process{'es' * (len(damaged) > 1)} {', '.join(map(str, damaged))} found "
                f"a damaged backup in {run_dir} (its copy and the previous one unreadable), "
                f"and the others none or a readable one (epochs by process id: {epochs}). "
                "To train again from the first epoch, move the run directory aside; if the "
                "processes do not see the same run directory, put it on a file system that "
                "every machine mounts at the same path.")
        if len(set(epochs)) > 1:
            raise UserError(
                f"The processes resumed from different epochs ({epochs}, by process id): "
                f"process 0 resumed from {run_dir}, and every other process must read the "
                "same directory. Put the run directory on a file system that every machine "
                "mounts at the same path, or start again with a new run directory.")

    return check


def even_validation(replicas, dataset, uneven=True):
    """``dataset`` (batches of ``(images, labels)`` or ``(images, labels, sample_weight)``)
    with every batch that does not split evenly over ``replicas`` devices padded to the
    next multiple of ``replicas`` with examples of sample weight 0: keras.distribution
    (JAX) refuses an uneven batch, and the validation split must not lose its last
    examples. The accuracies are exact (Keras weights its metrics); the loss counts each
    padded example as 0 in a batch of the padded size, so ``val_loss`` is low by a
    fraction of at most ``(replicas - 1) / examples`` of itself where only the last batch
    is padded (batches of a size ``replicas`` divides), and by up to ``(replicas - 1) /
    batch size`` where every batch is. With ``uneven=False`` (for
    tf.distribute, which splits an uneven batch itself, as 17 and 16, and weighs each
    replica's metrics by its examples), only a batch smaller than ``replicas``, which
    left a replica empty, is padded (to ``replicas``). Batches of another structure are
    left as they are."""
    if not isinstance(dataset, tf.data.Dataset) or not (
            isinstance(dataset.element_spec, tuple) and len(dataset.element_spec) in (2, 3)):
        return dataset  # (None, arrays, a PyDataset: as they are)

    def pad(images, labels, weights=None):
        count = tf.shape(images)[0]
        missing = (replicas - count % replicas) % replicas
        if not uneven:
            missing = tf.maximum(replicas - count, 0)

        def padded(tensor):
            return tf.pad(tensor, [[0, missing]] + [[0, 0]] * (len(tensor.shape) - 1))

        weights = tf.ones([count], tf.float32) if weights is None else tf.cast(weights,
                                                                                tf.float32)
        return padded(images), padded(labels), padded(weights)

    return dataset.map(pad)


def process_share(dataset, processes=None, index=None):
    """This process's share of every batch of ``dataset`` in a JAX cluster: of ``processes``
    equal slices, slice ``index`` (default: this cluster's). Every process reads the same
    global batches and keeps its own slice, as Keras' own sharding does (``rebatch``, then
    ``shard``), but a last batch that is smaller (padded only to split over the devices,
    :func:`even_validation`) is shared too. ``zoo.train`` does this for its datasets; do it
    for ``evaluate`` and ``predict`` in the cluster after training. Outside a cluster,
    ``dataset`` as it is.

    Example:

    >>> import tensorflow as tf
    >>> batches = tf.data.Dataset.range(8).batch(4)
    >>> [b.numpy().tolist() for b in process_share(batches, processes=2, index=1)]
    [[2, 3], [6, 7]]
    """
    processes = process_count() if processes is None else processes
    index = process_index() if index is None else index
    if dataset is None or processes == 1:
        return dataset

    def share(*batch):
        size = tf.shape(tf.nest.flatten(batch)[0])[0] // processes
        part = tf.nest.map_structure(lambda t: t[index * size:(index + 1) * size], batch)
        return part if len(part) > 1 else part[0]

    return dataset.map(share)


def cluster_share(dataset):
    """A held-out ``dataset`` ready for ``evaluate`` or ``predict`` in a JAX cluster after
    ``zoo.train``: batches padded to split over every device (:func:`even_validation`, so
    compile with ``weighted_metrics``, as ``zoo.train`` does), and this process's share of
    each (:func:`process_share`). Outside a cluster, ``dataset`` as it is."""
    if process_count() == 1:
        return dataset
    return process_share(even_validation(len(keras.distribution.list_devices()), dataset))


def check_distributable(replicas, **datasets):
    """Under keras.distribution the datasets are ``tf.data`` ones: their batches are padded
    to split over the devices (:func:`even_validation`) and shared between processes
    (:func:`process_share`). Anything else (a ``keras.utils.PyDataset``, arrays) is one
    line, which says what does take it."""
    for name, dataset in datasets.items():
        if dataset is not None and not isinstance(dataset, tf.data.Dataset):
            raise UserError(
                f"Over {replicas} devices (keras.distribution, JAX) `{name}` must be a "
                f"tf.data.Dataset of batches (data.load gives one), which is split over "
                f"them; received {type(dataset).__name__}. Or train on one device: "
                "strategy='one_device'.")


def check_even_batches(replicas, **datasets):
    """keras.distribution splits every batch over the devices, and JAX refuses a batch that
    does not split evenly (TensorFlow's MirroredStrategy pads one). For training batches
    this is an error (see :func:`even_validation` for validation)."""
    for name, dataset in datasets.items():
        if dataset is None:
            continue
        spec = dataset.element_spec[0] if isinstance(dataset.element_spec, tuple) else None
        size = None if spec is None else spec.shape[0]
        if size is None or size % replicas:
            raise UserError(
                f"`{name}` must come in batches that split evenly over the {replicas} "
                f"devices; its batch size is {size or 'not fixed (a smaller last batch)'}. "
                f"Load it with data.load(..., drop_remainder=True) and a batch size that "
                f"{replicas} divides.")


# tf.data steps that keep every batch as it is (read back through to the batching)
_SAME_BATCHES = ("_PrefetchDataset", "_MapDataset", "_ParallelMapDataset", "_OptionsDataset",
                 "_ShuffleDataset", "_CacheDataset", "CacheDataset")


def smallest_batch(dataset):
    """The smallest batch of a ``tf.data`` dataset of batches, read from its batching step
    and the count of examples before it (``batch(16)`` of 33 examples: 1), or None where
    they do not tell (a filter or a repeat after the batching, a length unknown).

    Example:

    >>> smallest_batch(tf.data.Dataset.range(33).batch(16).prefetch(1))
    1
    """
    while type(dataset).__name__ in _SAME_BATCHES:
        dataset = dataset._input_dataset
    if type(dataset).__name__ not in ("_BatchDataset", "_ParallelBatchDataset"):
        return None
    try:
        size, drop = int(dataset._batch_size), bool(dataset._drop_remainder)
        examples = int(dataset._input_dataset.cardinality())
    except (AttributeError, TypeError, ValueError):  # (another TensorFlow's internals)
        return None
    if examples <= 0 or size <= 0:  # (unknown, infinite, or empty)
        return None
    last = examples % size
    return size if drop or not last else min(size, last)


def check_no_empty_replica(replicas, train_data):
    """Under a tf.distribute strategy of ``replicas``, a training batch smaller than them
    leaves a replica with none, and Keras' step failed on it mid-epoch with TensorFlow's
    traceback ("Matrix size-incompatible: In[0]: [0,3]"): one line before training."""
    smallest = smallest_batch(train_data) if isinstance(train_data, tf.data.Dataset) else None
    if smallest is not None and smallest < replicas:
        raise UserError(
            f"`train_data` has a batch of {smallest} example{'s' * (smallest != 1)}, fewer "
            f"than the {replicas} replicas it is split over: one would get none, which "
            "Keras' step fails on. Load it with drop_remainder=True (data.load(..., "
            "drop_remainder=True)), or a batch size that leaves no such last batch.")


def work_around_keras_20585(model, strategy, train_data):
    """Let ``fit`` run under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), and
    under any strategy of several replicas on batches that split unevenly over them.

    Keras 3 (a) builds the model's metrics and optimizer from a first batch that it averages
    across replicas with ``strategy.reduce``, which fails for a nested batch and for one
    split unevenly (a batch of 33 as 17 and 16), and (b) under ``MultiWorkerMirroredStrategy``
    averages each step's scalar logs with ``reduce(..., axis=0)``, which fails for scalars.
    We build from a ``tf.data`` dataset's element spec, and give the step logs a length-1
    axis to average over.
    """
    if strategy.num_replicas_in_sync > 1 and isinstance(train_data, tf.data.Dataset):
        # (a) under any strategy of several replicas: a batch that splits unevenly failed
        with strategy.scope():
            model._symbolic_build(data_batch=train_data.element_spec)
        model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    # Keras reduces the logs across workers only in multi-worker mode (more than one
    # worker): one worker's (of one replica or several) are averaged as one machine's.
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or not (
            strategy.extended._in_multi_worker_mode()):
        return
    for step in ("train_step", "test_step"):
        original = getattr(model, step)
        setattr(model, step, lambda data, original=original: {
            name: tf.reshape(value, [1]) for name, value in original(data).items()})


class AverageReplicaStatistics(keras.callbacks.Callback):
    """Under a ``tf.distribute`` strategy of several replicas, Keras 3 keeps a copy of each
    BatchNorm's moving statistics per replica (their aggregation is "none"), each updated
    from its replica's part of the batches: the copies drifted apart, validation used each
    on its share and the checkpoints held the first replica's (a validation loss of 3.634
    against 3.589 from last.keras). Before each validation, at each epoch's end and at the
    end of training, every copy is set to their mean, as tf.keras 2's statistics read
    (synchronised on read, by their mean). The moving averages are linear in the batches'
    statistics: where the replicas get equal shares, the means' mean is one device's on
    the whole batches. Every non-trainable variable of a built BatchNorm that trains is
    averaged (the moving statistics; with ``renorm``, its own; a frozen one's copies stay
    equal, and stay as they are). Put it before the callbacks that write the epoch."""

    def __init__(self, strategy):
        super().__init__()
        self.strategy = strategy
        self._average = None

    def _sync(self):
        if self._average is None:
            from zoo.training.callbacks import trained_statistics

            variables = [v.value for v in trained_statistics(self.model)]

            def average():
                context = tf.distribute.get_replica_context()
                means = context.all_reduce(tf.distribute.ReduceOp.MEAN, variables)
                for variable, mean in zip(variables, means):
                    variable.assign(mean)

            self._average = tf.function(lambda: self.strategy.run(average)) if variables \
                else (lambda: None)
        self._average()

    def on_test_begin(self, logs=None):
        self._sync()

    def on_epoch_end(self, epoch, logs=None):
        self._sync()

    def on_train_end(self, logs=None):
        self._sync()


def sharded(dataset):
    """The validation set shared by the workers, a part of every batch each (sharded by
    its examples, ``AutoShardPolicy.DATA``): the metrics, summed over the workers, are the
    whole set's, and every worker sees them (and so takes the same learning-rate
    decisions). Unsharded, each worker read the first 1/workers of the set: TensorFlow
    split every batch over the replicas, and Keras ran one step per batch."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
