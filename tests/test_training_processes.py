"""Training in real processes: kill -9 and resume, two workers on loopback, two devices."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from tests.helpers import REPO, free_ports, last_json_line, run_python

TRAIN = textwrap.dedent(
    """
    import json, os, sys, time
    import keras, numpy as np
    import zoo
    from tests.helpers import tiny_data, tiny_model

    class SlowEpochs(keras.callbacks.Callback):  # leaves time to kill the process
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(float(os.environ.get("EPOCH_SLEEP", "0")))

    result = zoo.train(tiny_model, tiny_data(n=128), tiny_data(seed=1), epochs=8,
                       run_dir=sys.argv[1], seed=0, learning_rate=0.05, lr_patience=1,
                       callbacks=[SlowEpochs()], verbose=0)
    weights = np.concatenate([w.ravel() for w in result.model.get_weights()])
    print(json.dumps({"val_loss": float(result.history["val_loss"].iloc[-1]),
                      "weights": weights.tolist()}))
    """
)


def _history(run_dir):
    path = os.path.join(run_dir, "history.csv")
    return pd.read_csv(path) if os.path.exists(path) else pd.DataFrame({"epoch": []})


def test_killed_run_resumes_and_matches_an_uninterrupted_run(tmp_path):
    reference_dir, crashed_dir = str(tmp_path / "reference"), str(tmp_path / "crashed")
    reference = last_json_line(run_python(TRAIN.replace("sys.argv[1]", repr(reference_dir))).stdout)

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "EPOCH_SLEEP": "0.7"}
    process = subprocess.Popen([sys.executable, "-c", TRAIN, crashed_dir], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(_history(crashed_dir)) < 3 and process.poll() is None:
        assert time.monotonic() < deadline, "the run never reached epoch 3"
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)  # kill -9, mid-run
    process.wait()
    epochs_before = len(_history(crashed_dir))
    assert 3 <= epochs_before < 8

    # The same command again: it continues from the last completed epoch.
    resumed = run_python(TRAIN.replace("sys.argv[1]", repr(crashed_dir)))
    resumed = last_json_line(resumed.stdout)
    history = _history(crashed_dir)
    assert history["epoch"].tolist() == list(range(1, 9))  # complete, no duplicates
    reference_history = _history(reference_dir)
    np.testing.assert_allclose(history["learning_rate"], reference_history["learning_rate"])
    np.testing.assert_allclose(history["val_loss"], reference_history["val_loss"], rtol=1e-3)
    assert resumed["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-3)
    np.testing.assert_allclose(resumed["weights"], reference["weights"], rtol=1e-3, atol=1e-5)
    # Running the finished command once more trains nothing and changes nothing.
    again = last_json_line(run_python(TRAIN.replace("sys.argv[1]", repr(crashed_dir))).stdout)
    np.testing.assert_array_equal(again["weights"], resumed["weights"])
    assert len(_history(crashed_dir)) == 8


KILL_AT = TRAIN.replace(
    "callbacks=[SlowEpochs()]", "callbacks=[SlowEpochs(), KillAt()]").replace(
    "\nresult = zoo.train(", textwrap.dedent("""
    class KillAt(keras.callbacks.Callback):  # kill -9 at a named point: an epoch's start
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == int(os.environ.get("KILL_AT_EPOCH", "-1")):
                os.kill(os.getpid(), 9)

    """) + "result = zoo.train(", 1)


def test_a_kill_in_the_epoch_after_a_learning_rate_drop_resumes_at_the_lowered_rate(tmp_path):
    """The backup is an epoch's last act, after ReduceLROnPlateau's decision: a run killed
    at the start of the epoch after a drop resumes at the lowered rate, and ends with the
    uninterrupted run's rates, history and weights."""
    reference_dir, crashed_dir = str(tmp_path / "reference"), str(tmp_path / "crashed")
    reference = last_json_line(run_python(KILL_AT.replace("sys.argv[1]",
                                                          repr(reference_dir))).stdout)
    rates = _history(reference_dir)["learning_rate"].to_numpy()
    drop = int(np.flatnonzero(rates[1:] < rates[:-1])[0]) + 1  # 0-based epoch after a drop
    killed = run_python(KILL_AT.replace("sys.argv[1]", repr(crashed_dir)), check=False,
                        env={"KILL_AT_EPOCH": str(drop)})
    assert killed.returncode == -signal.SIGKILL
    assert len(_history(crashed_dir)) == drop
    resumed = last_json_line(run_python(KILL_AT.replace("sys.argv[1]",
                                                        repr(crashed_dir))).stdout)
    history = _history(crashed_dir)
    assert history["epoch"].tolist() == list(range(1, 9))
    np.testing.assert_allclose(history["learning_rate"], rates, rtol=1e-6)
    np.testing.assert_allclose(resumed["weights"], reference["weights"], rtol=1e-4, atol=1e-6)


WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import zoo
    from tests.helpers import tiny_data, tiny_model

    strategy = zoo.distribute.get_strategy("multi_worker")  # before any TensorFlow op
    result = zoo.train(tiny_model, tiny_data(n=64, batch=16), tiny_data(seed=1), epochs=2,
                       seed=0, learning_rate=0.1, lr_patience=1, strategy=strategy,
                       run_dir=sys.argv[1], verbose=0)
    weights = np.concatenate([w.ravel() for w in result.model.get_weights()])
    print(json.dumps({"replicas": result.model.distribute_strategy.num_replicas_in_sync,
                      "loss": float(result.history["loss"].iloc[-1]),
                      "val_loss": result.history["val_loss"].tolist(),
                      "weights": weights.tolist()}))
    """
)


def test_two_workers_on_loopback_finish_with_identical_weights(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run_dir = str(tmp_path / "run")
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": tf_config}
        processes.append(subprocess.Popen([sys.executable, "-c", WORKER, run_dir], cwd=REPO,
                                          env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    try:
        results = [process.communicate(timeout=300) for process in processes]
    finally:
        for process in processes:  # never leave a worker behind, whatever happened
            if process.poll() is None:
                process.kill()
    outputs = []
    for process, (out, err) in zip(processes, results):
        assert process.returncode == 0, err[-4000:]
        outputs.append(last_json_line(out))
    assert [o["replicas"] for o in outputs] == [2, 2]
    np.testing.assert_array_equal(outputs[0]["weights"], outputs[1]["weights"])
    assert outputs[0]["val_loss"] == outputs[1]["val_loss"]  # the same learning-rate decisions
    assert np.isfinite(outputs[0]["loss"])
    # The chief writes the run directory; the other worker writes beside it.
    assert os.path.exists(os.path.join(run_dir, "history.csv"))
    assert os.path.exists(os.path.join(run_dir, "worker1", "history.csv"))


def test_train_under_the_mirrored_two_device_strategy():
    code = textwrap.dedent(
        """
        import json
        import zoo
        from tests.helpers import tiny_data, tiny_model
        strategy = zoo.distribute.get_strategy("mirrored")  # before any TensorFlow op
        result = zoo.train(tiny_model, tiny_data(), epochs=1, strategy=strategy, verbose=0)
        print(json.dumps({"replicas": result.model.distribute_strategy.num_replicas_in_sync,
                          "loss": float(result.history["loss"].iloc[0])}))
        """
    )
    report = last_json_line(run_python(code).stdout)
    assert report["replicas"] == 2 and np.isfinite(report["loss"])
