"""Training in real processes: kill -9 and resume, two workers on loopback, two devices."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from tests.helpers import REPO, free_ports, last_json_line, run_python

TRAIN = textwrap.dedent(
    """
    import functools, json, os, sys
    import keras, numpy as np
    import data, zoo
    from zoo.training import callbacks as zoo_callbacks
    from tests.helpers import tiny_model

    # KILL="point:epoch" kills this process (kill -9) at a named point of that 0-based epoch.
    point, _, at = os.environ.get("KILL", ":-1").partition(":")

    def kill_at(name, epoch):
        if name == point and epoch == int(at):
            os.kill(os.getpid(), 9)

    def wrap(cls, method, name, before=True):
        original = getattr(cls, method)
        def wrapped(self, epoch_or_batch, logs=None):
            epoch = getattr(self.model, "_zoo_epoch_now", -1)
            if before:
                kill_at(name, epoch)
            original(self, epoch_or_batch, logs)
            if not before:
                kill_at(name, epoch)
        setattr(cls, method, wrapped)

    class Epoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.model._zoo_epoch_now = epoch
            kill_at("epoch_begin", epoch)
        def on_train_batch_end(self, batch, logs=None):
            if batch == 5:
                kill_at("mid_epoch", self.model._zoo_epoch_now)

    # After the history row, before the checkpoints; and after the backup's weights, before
    # the backup's metadata names them.
    wrap(zoo_callbacks.AtomicCheckpoint, "on_epoch_end", "before_checkpoint")
    wrap(zoo_callbacks.SafeBackupAndRestore, "on_epoch_end", "after_backup", before=False)

    scaled = lambda image: image / 255.0
    augment = data.augment.compose(functools.partial(data.augment.random_crop, size=8),
                                   data.augment.random_flip)
    train = data.load("digits", "train", batch_size=64, image_size=10, preprocess=scaled,
                      augment=augment, seed=3)  # shuffled, augmented
    val = data.load("digits", "validation", batch_size=256, image_size=10, preprocess=scaled,
                    center_crop=8)
    flat = lambda model: np.concatenate([w.ravel() for w in model.get_weights()]).tolist()

    def run(run_dir, callbacks=()):
        result = zoo.train(functools.partial(tiny_model, classes=10), train, val,
                           epochs=int(os.environ["EPOCHS"]),
                           run_dir=run_dir, seed=0, learning_rate=0.2, lr_patience=1,
                           lr_factor=0.5, callbacks=list(callbacks), verbose=0)
        best = keras.saving.load_model(os.path.join(run_dir, "checkpoints", "best.keras"))
        return {"weights": flat(result.model), "best": flat(best)}

    out = run(sys.argv[1], [Epoch()])
    if os.environ.get("AGAIN"):  # the same command once more, in this process
        out["again"] = run(sys.argv[1])["weights"]
    print(json.dumps(out))
    """
)


def _history(run_dir):
    path = os.path.join(run_dir, "history.csv")
    return pd.read_csv(path) if os.path.exists(path) else pd.DataFrame({"epoch": []})


def _train(run_dir, epochs, kill=None, again=False):
    env = {"KILL": kill} if kill else {"AGAIN": "1"} if again else {}
    env["EPOCHS"] = str(epochs)
    result = run_python(TRAIN, check=kill is None, env=env, args=[str(run_dir)])
    if kill:
        assert result.returncode == -signal.SIGKILL, result.stderr[-4000:]
        return None
    return last_json_line(result.stdout)


@pytest.mark.slow  # six TensorFlow processes (100 s here). The fast tier resumes in
# one process: test_recipe.py's test_a_stopped_run_resumes_to_the_uninterrupted_run.
def test_a_run_killed_at_any_named_point_resumes_to_the_uninterrupted_run_exactly(tmp_path):
    """Shuffled, augmented data and a falling learning rate; kill -9 at named points of
    eight epochs (one of them just after a learning-rate drop), each time resuming with the
    same command: the history, learning rates, weights and best checkpoint end equal to an
    uninterrupted run's (rtol 1e-5)."""
    epochs = 8  # the reference first: it tells the epoch after a learning-rate drop
    reference = _train(tmp_path / "reference", epochs)
    rates = _history(tmp_path / "reference")["learning_rate"].to_numpy()
    drop = int(np.flatnonzero(rates[1:] < rates[:-1])[0]) + 1  # 0-based
    kills = sorted({1: "before_checkpoint", 2: "mid_epoch", drop: "epoch_begin",
                    6: "after_backup"}.items())
    run_dir = tmp_path / "crashed"
    for epoch, point in kills:
        _train(run_dir, epochs, kill=f"{point}:{epoch}")
        done = _history(run_dir)["epoch"].tolist()
        assert done[-1] >= epoch, (point, epoch, done)  # nothing before the kill was lost
    # The resuming process runs the finished command once more: it trains nothing and
    # changes nothing (one process for both saves a TensorFlow start-up).
    resumed = _train(run_dir, epochs, again=True)
    expected = _history(tmp_path / "reference")
    history = _history(run_dir)
    assert history["epoch"].tolist() == list(range(1, epochs + 1))  # complete, no duplicates
    pd.testing.assert_frame_equal(history, expected, check_exact=False, rtol=1e-5)
    np.testing.assert_allclose(resumed["weights"], reference["weights"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(resumed["best"], reference["best"], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(resumed["again"], resumed["weights"])


WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import zoo
    from tests.helpers import tiny_data, tiny_model

    strategy = zoo.distribute.get_strategy("multi_worker")  # before any TensorFlow op
    result = zoo.train(tiny_model, tiny_data(n=64, batch=16),
                       tiny_data(n=50, seed=1, batch=12), epochs=int(sys.argv[2]), seed=0,
                       learning_rate=0.1, lr_patience=1,
                       strategy=strategy, run_dir=sys.argv[1], verbose=0)
    weights = np.concatenate([w.ravel() for w in result.model.get_weights()])
    print(json.dumps({"replicas": result.model.distribute_strategy.num_replicas_in_sync,
                      "loss": float(result.history["loss"].iloc[-1]),
                      "val_loss": result.history["val_loss"].tolist(),
                      "weights": weights.tolist()}))
    """
)


def _two_workers(run_dir, epochs, timeout=300, count=2):
    """``[(returncode, stdout, stderr)]`` of WORKER as the two (``count``) workers of a
    cluster on loopback, each killed if it outlives ``timeout``."""
    ports = free_ports(count)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = []
    for index in range(count):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": tf_config}
        processes.append(subprocess.Popen([sys.executable, "-c", WORKER, run_dir, str(epochs)],
                                          cwd=REPO, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    try:
        results = [process.communicate(timeout=timeout) for process in processes]
    finally:
        for process in processes:  # never leave a worker behind, whatever happened
            if process.poll() is None:
                process.kill()
    return [(process.returncode, out, err) for process, (out, err) in zip(processes, results)]


@pytest.mark.slow  # a TensorFlow process (10 s)
def test_a_cluster_of_one_worker_trains_and_writes_its_run(tmp_path):
    """A TF_CONFIG of one worker (one replica in all): Keras passes its step logs through
    unreduced, and the length-1 axis given them for several workers reached TensorBoard's
    summary ("Expected scalar shape, saw shape: (1,)") as the run was written."""
    run_dir = str(tmp_path / "run")
    ((returncode, out, err),) = _two_workers(run_dir, 1, count=1)
    assert returncode == 0, err[-4000:]
    output = last_json_line(out)
    assert output["replicas"] == 1 and np.isfinite(output["loss"])
    assert len(pd.read_csv(os.path.join(run_dir, "history.csv"))) == 1


@pytest.mark.slow  # two TensorFlow processes at once (20 s of CPU); see test_cluster.py for JAX
def test_two_workers_on_loopback_finish_with_identical_weights(tmp_path):
    """Two TensorFlow workers end with one set of weights; resumed from backups of different
    epochs (a worker stopped between its backup and the chief's), both stop with one line,
    where the chief trained on from its epoch and the other from its own, until one waited
    on the other forever."""
    run_dir = str(tmp_path / "run")
    outputs = []
    for returncode, out, err in _two_workers(run_dir, 2):
        assert returncode == 0, err[-4000:]
        outputs.append(last_json_line(out))
    assert [o["replicas"] for o in outputs] == [2, 2]
    np.testing.assert_array_equal(outputs[0]["weights"], outputs[1]["weights"])
    assert outputs[0]["val_loss"] == outputs[1]["val_loss"]  # the same learning-rate decisions
    # ... on the whole validation set: scikit-learn's NLL of the final weights (each worker
    # read the first half of it: 1.3937 for 1.4003).
    from sklearn.metrics import log_loss

    from tests.helpers import tiny_data, tiny_model

    model = tiny_model()
    shapes = [w.shape for w in model.get_weights()]
    flat = np.asarray(outputs[0]["weights"], np.float32)
    ends = np.cumsum([int(np.prod(s)) for s in shapes])
    model.set_weights([part.reshape(s) for part, s in zip(np.split(flat, ends[:-1]), shapes)])
    images, labels = map(np.concatenate, zip(*tiny_data(n=50, seed=1, batch=12)
                                             .as_numpy_iterator()))
    assert outputs[0]["val_loss"][-1] == pytest.approx(
        log_loss(labels, model.predict(images, verbose=0), labels=range(4)), rel=1e-5)
    assert np.isfinite(outputs[0]["loss"])
    # The chief writes the run directory; the other worker writes beside it.
    assert os.path.exists(os.path.join(run_dir, "history.csv"))
    assert os.path.exists(os.path.join(run_dir, "worker1", "history.csv"))
    backup = os.path.join(run_dir, "worker1", "backup")  # as if it never backed up: its
    shutil.rmtree(backup)  # folder empty, as training starts it (one removed is a run's
    os.mkdir(backup)  # loss, refused before the workers compare their epochs)
    for returncode, _, err in _two_workers(run_dir, 3, timeout=150):
        assert returncode != 0
        assert "The workers' backups are of different epochs ([2, 0], a worker each" in err, \
            err[-4000:]


@pytest.mark.slow  # a TensorFlow process waiting 5 s
def test_a_worker_that_never_starts_ends_the_wait_with_one_line(tmp_path):
    """TensorFlow waited for a worker of TF_CONFIG that never started without a word and
    without end, heeding neither Ctrl-C nor SIGTERM; zoo train says that it waits, and
    --cluster-timeout later one line ends it (the process is killed: nothing else ends
    TensorFlow's wait). Ctrl-C (to the process group, as a terminal sends it) ends the wait
    at once with one line: it killed the deadline's process alone, and the wait went on."""
    ports = free_ports(2)
    addresses = [f"127.0.0.1:{port}" for port in ports]
    tf_config = json.dumps({"cluster": {"worker": addresses},
                            "task": {"type": "worker", "index": 0}})
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "zoo", "train", "--model", "resnet20", "--image-size", "8",
               "--epochs", "1", "--strategy", "multi_worker", "--cluster-timeout", "5",
               "--run-dir", str(run_dir)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": tf_config}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        "Waiting up to 5 s (--cluster-timeout) for the 2 workers of TF_CONFIG to start ..."]
    assert result.stderr.splitlines()[-1] == (
        f"zoo train: error: the 2 workers of TF_CONFIG did not all start within 5 s: start "
        f"the same command on every machine it names, each with its own task index, and "
        f"check that {addresses[0]}, {addresses[1]} are reachable from every machine (or "
        "give a longer --cluster-timeout).")
    assert not run_dir.exists()
    command[command.index("--cluster-timeout") + 1] = "100"
    waiting = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert waiting.stdout.readline().startswith("Waiting up to 100 s")
        os.killpg(waiting.pid, signal.SIGINT)
        _, err = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            os.killpg(waiting.pid, signal.SIGKILL)
    # (caught in TensorFlow's wait: the deadline's line; before it, zoo's own Ctrl-C line)
    assert waiting.returncode in (-signal.SIGKILL, 130), err[-2000:]
    assert err.splitlines()[-1].startswith("zoo train: interrupted"), err[-2000:]
    assert not run_dir.exists()


@pytest.mark.xdist_group("fresh_process")
def test_train_under_the_mirrored_two_device_strategy_matches_one_device(fresh_process):
    """zoo.train under the two-device MirroredStrategy (each replica half of every batch)
    ends with the weights of the same run on one device (rtol 1e-5): the gradients are
    averaged over the global batch either way. ensembles.evaluate scores both models as
    scikit-learn scores their predictions. It runs in the worker's fresh process
    (tests/fresh_process.py), whose CPU is split into two devices before TensorFlow starts."""
    runs = fresh_process["mirrored"]
    assert runs["mirrored"]["replicas"] == 2 and runs["one_device"]["replicas"] == 1
    np.testing.assert_allclose(runs["mirrored"]["loss"], runs["one_device"]["loss"], rtol=1e-5)
    np.testing.assert_allclose(runs["mirrored"]["weights"], runs["one_device"]["weights"],
                               rtol=1e-5, atol=1e-7)
    assert runs["mirrored"]["loss"][1] < runs["mirrored"]["loss"][0]  # it learns
    # ensembles.evaluate scores a model trained under the strategy as scikit-learn scores
    # its predictions (Keras' predict_on_batch would hand each replica the whole batch).
    for run in runs.values():
        assert run["evaluate_nll"] == pytest.approx(run["sklearn_nll"], rel=1e-4)
        # Validation batches of 13 over two replicas: TensorFlow splits them 7 and 6, and
        # the validation loss is the set's (each was padded to 14: 4 % low).
        assert run["val_loss"] == pytest.approx(run["sklearn_val_nll"], rel=1e-5)
    # On data of unknown length, 2 epochs of 4 batches are 8 steps (Keras counted 10).
    assert fresh_process["mirrored_unknown_length_steps"] == 8
    assert np.isfinite(fresh_process["mirrored_arrays_val_loss"])  # arrays, a PyDataset
    assert fresh_process["mirrored_small_batch"].startswith(
        "`train_data` has a batch of 1 example, fewer than the 2 replicas it is split over")
    # From the shell: before the statistics pass, in the flags' words, nothing written (it
    # came after the pass, advising data.load(..., drop_remainder=True)).
    assert fresh_process["cli_small_batch"] == [
        2, "zoo train: error: --batch-size 1 is smaller than the 2 replicas of --strategy "
           "mirrored: one would get no example. Give --batch-size 2 or more.\n", False]
    slopes = fresh_process["mirrored_prelu_slopes"]
    assert slopes["count"] > 0 and slopes["copies"] == 2
    assert slopes["largest_difference"] == 0.0  # the copies agree
    assert slopes["largest_change"] == 0.0  # spared from the decay (their gradient is 0)
    # BatchNorm's moving statistics: the replicas' copies agree, their mean is one device's
    # (a moving average is linear in the batches' means), and the validation loss logged is
    # what the checkpointed weights give on one device (the first replica's copy gave
    # another).
    statistics = fresh_process["mirrored_batch_norm"]
    mirrored, one = statistics["mirrored"], statistics["one_device"]
    assert len(mirrored["copies"]) == 2 and mirrored["copies"][0] == mirrored["copies"][1]
    np.testing.assert_allclose(mirrored["copies"][0], one["copies"][0], rtol=1e-5, atol=1e-7)
    for run in (mirrored, one):
        assert run["val_loss"] == pytest.approx(run["copy_val_nll"], rel=1e-5)
    assert fresh_process["mirrored_jit_compile"].startswith(
        "jit_compile=True does not combine with this MirroredStrategy: its 2 replicas are one "
        "device split in parts")
    assert fresh_process["mirrored_jit_compile_auto"] is False  # "auto": Keras chose none
    diverged, messages = fresh_process["mirrored_empty_replica"]
    assert diverged, messages
    assert any(m.startswith("The training loss of epoch 1 is finite, but ") and
               "a batch smaller than the replicas leaves one with none" in m
               for m in messages), messages
