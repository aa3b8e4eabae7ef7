import inspect
import json
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

import zoo

# Runs in a fresh process: splitting a device must happen before TensorFlow initialises it.
TRAIN_UNDER_MIRRORED = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np, keras, tensorflow as tf
    import zoo

    strategy = zoo.distribute.mirrored(devices=2)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = zoo.alexnet(input_shape=(67, 67, 3), classes=4, width=32, towers=2,
                            dropout=0.5)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss="sparse_categorical_crossentropy")
    # Kernels only: with the paper's N(0, 0.01) init the gradients of the biases that start
    # at 1 are below float32 resolution at 1.0 after a few steps, so those may not move.
    kernels = [w for w in model.trainable_weights if w.name == "kernel"]
    before = [w.numpy().copy() for w in kernels]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 67, 67, 3)).astype("float32")
    y = rng.integers(0, 4, size=32)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    fc6 = model.get_layer("fc6").kernel
    replicas = [v.numpy() for v in fc6.values] if hasattr(fc6, "values") else []
    if not replicas:
        replicas = [t.numpy() for t in strategy.experimental_local_results(fc6.value)]
    json.dump({
        "replicas": strategy.num_replicas_in_sync,
        "devices": list(strategy.extended.worker_devices),
        "losses": history.history["loss"],
        "changed": [bool(np.abs(w.numpy() - b).max() > 0)
                    for w, b in zip(kernels, before)],
        "replicas_equal": all(np.array_equal(replicas[0], r) for r in replicas[1:]),
        "n_replica_values": len(replicas),
    }, sys.stdout)
    """
)


@pytest.mark.slow  # the fast tier's mirrored test: test_processes.py (one device's weights)
def test_mirrored_two_device_training_of_alexnet():
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_UNDER_MIRRORED],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert len(set(report["devices"])) == 2
    assert len(report["losses"]) == 1 and all(
        loss == loss and abs(loss) < 1e6 for loss in report["losses"]
    )
    assert len(report["changed"]) == 13  # 5 convolutions x 2 towers, fc6, fc7, predictions
    assert all(report["changed"]), "every kernel should move after 4 SGD steps"
    assert report["n_replica_values"] == 2 and report["replicas_equal"]


def test_mirrored_rejects_bad_device_count():
    with pytest.raises(ValueError, match=r"`devices` must be a positive integer; received 0"):
        zoo.distribute.mirrored(devices=0)


def test_mirrored_after_initialisation_explains_itself():
    """In this process TensorFlow has initialised its devices (the op below makes sure), so
    splitting the CPU into three is too late: a RuntimeError that says what to do."""
    tf.constant(1.0) + 1.0
    with pytest.raises(RuntimeError, match=r"first, before loading data"):
        zoo.distribute.mirrored(devices=3)


def test_per_device_iterators_run_without_autotuning_inside_steady_device_iterators(
        monkeypatch):
    """The private TensorFlow function the strategy builds its per-device datasets with is
    where zoo.training.distribute expects it (this fails loudly if TensorFlow moves it),
    and inside the context what it returns has tf.data's autotuning off, restored after."""
    from tensorflow.python.data.ops import multi_device_iterator_ops as mdi

    assert list(inspect.signature(mdi._create_device_dataset).parameters) == [
        "prototype_ds", "incarnation_id", "prefetch_buffer_size", "experimental_slack"]
    made = lambda *args, **kwargs: tf.data.Dataset.range(3)  # noqa: E731
    monkeypatch.setattr(mdi, "_create_device_dataset", made)
    with zoo.distribute.steady_device_iterators():
        inside = mdi._create_device_dataset(None, None, 1, False)
        assert inside.options().autotune.enabled is False
        assert list(inside.as_numpy_iterator()) == [0, 1, 2]
    assert mdi._create_device_dataset is made
    assert mdi._create_device_dataset().options().autotune.enabled is not False


def test_the_split_gpus_memory_is_the_visible_gpus_or_a_warning(monkeypatch):
    """nvidia-smi -i 0 measured the machine's first GPU, not CUDA_VISIBLE_DEVICES' first
    (TensorFlow's GPU 0); without nvidia-smi (an AMD GPU, a slim container) each of two
    logical GPUs got 1,843 MiB of an 80 GB card without a word."""
    from zoo.training import distribute

    asked = []

    def nvidia_smi(argv, **kwargs):
        asked.append(argv[argv.index("-i") + 1])
        return subprocess.CompletedProcess(argv, 0, stdout="81559\n")

    monkeypatch.setattr(distribute.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(distribute.subprocess, "run", nvidia_smi)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert distribute._gpu_memory_mb() == 81559 and asked == ["3"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert distribute._gpu_memory_mb() == 81559 and asked == ["3", "0"]
    monkeypatch.setattr(distribute.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match=r"Could not read the GPU's memory \(nvidia-smi is not "
                                         r"on the PATH\); splitting it as if it had 4096 MiB: "
                                         r"pass mirrored\(gpu_memory_mb=...\)"):
        assert distribute._gpu_memory_mb() == 4096


def test_the_smallest_batch_is_read_from_the_batching_as_tf_data_makes_it():
    """Held against the batches tf.data makes: a last batch of 1 of 33 examples in 16s (it
    left one of two replicas empty, and Keras' step failed mid-epoch with TensorFlow's
    traceback), none where the batching drops it, and None where a step after the batching
    changes the batches (a filter, a repeat)."""
    import data
    from zoo.training import distribute

    datasets = [tf.data.Dataset.range(33).batch(16).map(lambda x: x * 2).prefetch(1),
                tf.data.Dataset.range(33).batch(16, drop_remainder=True),
                tf.data.Dataset.range(32).batch(16).shuffle(4, seed=0),
                tf.data.Dataset.range(5).batch(2, num_parallel_calls=2),
                data.load("digits", "train", image_size=8, batch_size=8)]  # 1,257 images
    for dataset in datasets:
        sizes = [len(batch[0] if isinstance(batch, tuple) else batch)
                 for batch in dataset.as_numpy_iterator()]
        assert distribute.smallest_batch(dataset) == min(sizes)
    for dataset in (tf.data.Dataset.range(33).batch(16).filter(lambda x: True),
                    tf.data.Dataset.range(33).batch(16).repeat(2),
                    tf.data.Dataset.range(33).filter(lambda x: x > 0).batch(16)):
        assert distribute.smallest_batch(dataset) is None
    with pytest.raises(ValueError, match=r"^`train_data` has a batch of 1 example, fewer than "
                                         r"the 2 replicas it is split over: one would get none"):
        distribute.check_no_empty_replica(2, datasets[0])
    distribute.check_no_empty_replica(2, datasets[1])
