"""Many processes under JAX: the meeting before JAX's runtime starts (in this process, with
threads and sockets), and two real processes on loopback that train, are killed and resume
(slow tier)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from safeio.checks import UserError
from tests.helpers import REPO, free_ports, last_json_line, run_python
from zoo.training import cluster


def test_a_process_outside_a_cluster_knows_it_without_starting_jax():
    from jax._src import xla_bridge  # (JAX can join a cluster only before it starts)

    started = xla_bridge.backends_are_initialized()
    assert cluster.is_initialized() is False
    assert xla_bridge.backends_are_initialized() == started  # asking started nothing


def test_settings_come_from_arguments_or_keras_variables(monkeypatch):
    for name in cluster.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    assert cluster.settings("10.0.0.1:1234", 2, 1) == ("10.0.0.1", 1234, 2, 1)
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "10.0.0.1:1234,10.0.0.2:2345")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "1")
    assert cluster.settings() == ("10.0.0.1", 1234, 2, 1)  # Keras' list: process 0 first
    assert cluster.settings(process_id=0) == ("10.0.0.1", 1234, 2, 0)


@pytest.mark.parametrize("given, message", [
    ((None, 2, 0), "needs the coordinator's host:port"),
    (("10.0.0.1", 2, 0), "must be host:port"),
    (("10.0.0.1:99999", 2, 0), "must be host:port"),
    (("10.0.0.1:1234", 2, 2), "process id must be in [0, 2)"),
    (("10.0.0.1:1234", "two", 0), "num_processes='two'"),
])
def test_bad_settings_are_one_line(monkeypatch, given, message):
    for name in cluster.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UserError) as raised:
        cluster.settings(*given)
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("timeout", [float("inf"), float("nan"), 0, -5, "60"])
def test_a_timeout_that_is_no_wait_is_one_line(timeout, monkeypatch):
    """socket.settimeout raised OverflowError for inf and ValueError for nan (internal
    errors), and 0 or -5 stopped process 0 at once ("waited -5 s")."""
    monkeypatch.setattr(cluster, "meet", lambda *args: pytest.fail("no meeting is held"))
    with pytest.raises(UserError, match=r"`timeout` \(seconds to wait for the others\) must "
                                        r"be a finite positive number; received "):
        cluster.initialize("127.0.0.1:1234", 2, 0, timeout=timeout)


def _meet_all(port, who, timeout=10):
    """Run ``cluster.meet`` for each ``(count, index)`` in ``who`` in its own thread;
    the exception (or None) of each."""
    errors = [None] * len(who)

    def run(i, count, index):
        try:
            cluster.meet("127.0.0.1", port, count, index, timeout)
        except Exception as err:  # noqa: BLE001 (reported to the test)
            errors[i] = err

    threads = [threading.Thread(target=run, args=(i, *w)) for i, w in enumerate(who)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    assert not any(thread.is_alive() for thread in threads), "a process was left waiting"
    return errors


def test_three_processes_meet_and_free_the_port():
    (port,) = free_ports(1)
    assert _meet_all(port, [(3, 2), (3, 0), (3, 1)]) == [None, None, None]
    import socket

    with socket.socket() as again:  # JAX's coordinator can listen there next
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_a_wrong_address_or_a_missing_process_is_one_line_in_time(monkeypatch):
    (port,) = free_ports(1)
    (alone,) = _meet_all(port, [(2, 1)], timeout=1)  # nobody listens there
    assert isinstance(alone, UserError)
    assert str(alone).startswith(f"Process 1 could not reach the coordinator 127.0.0.1:{port} "
                                 "in 1 s")
    assert "--process-id 0" in str(alone)
    waiting, arrived = _meet_all(port, [(3, 0), (3, 1)], timeout=1)
    assert str(waiting).startswith(f"Process 0 waited 1 s on 127.0.0.1:{port} for the other "
                                   "processes, and process(es) [2] of 3 never came")
    assert str(arrived) == (f"The coordinator 127.0.0.1:{port} stopped process 1: "
                            "process(es) [2] never reached process 0 within 1 s.")
    import socket

    with socket.create_server(("127.0.0.1", port)):  # the port is taken
        with pytest.raises(UserError, match=rf"Process 0 cannot listen on port {port} of the "
                           rf"coordinator 127.0.0.1:{port} \(Address already in use\)"):
            cluster.meet("127.0.0.1", port, 2, 0, timeout=1)
        # A cluster of one process holds no meeting; JAX's own bind error was a traceback.
        monkeypatch.setattr(cluster, "_jax_started", lambda: False)
        monkeypatch.setattr(cluster, "is_initialized", lambda: False)
        with pytest.raises(UserError, match=rf"Process 0 cannot listen on port {port} of the "
                           rf"coordinator 127.0.0.1:{port} \(Address already in use\)"):
            cluster.initialize(f"127.0.0.1:{port}", 1, 0, timeout=1)


def test_processes_that_disagree_are_refused_on_both_sides():
    (port,) = free_ports(1)
    host, joiner = _meet_all(port, [(2, 0), (3, 1)])
    assert "process 1 was started with --num-processes 3, process 0 with 2" in str(host)
    assert str(joiner).startswith(f"The coordinator 127.0.0.1:{port} stopped process 1: "
                                  "process 1 was started with --num-processes 3")
    (port,) = free_ports(1)
    errors = _meet_all(port, [(3, 0), (3, 1), (3, 1)])
    assert "two processes were started with --process-id 1" in str(errors[0])
    # Both processes 1 hear why, the one that arrived first too (not a timeout).
    assert all("stopped process 1: two processes were started with --process-id 1"
               in str(error) for error in errors[1:]), errors


# One process of a JAX cluster of two, each with 2 virtual CPU devices: trains the tiny
# model with zoo.train(strategy="multi_worker") and prints its weights and history.
# KILL="process:epoch" kills that process (kill -9) as that 0-based epoch begins.
PROCESS = textwrap.dedent("""
    import json, os, sys
    import keras, numpy as np
    import zoo
    from tests.helpers import tiny_data, tiny_model

    port, index, run_dir, epochs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if index >= 0:
        zoo.distribute.initialize_cluster(f"127.0.0.1:{port}", 2, index, timeout=60)

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if os.environ.get("KILL") == f"{index}:{epoch}":
                os.kill(os.getpid(), 9)

    train = tiny_data(n=64, batch=16).unbatch().batch(16, drop_remainder=True)
    val = tiny_data(n=40, seed=1)  # batches of 16, 16 and 8
    result = zoo.train(tiny_model, train, val, epochs=epochs, seed=0, learning_rate=0.1,
                       lr_patience=1, run_dir=run_dir if run_dir != "-" else None,
                       strategy="multi_worker" if index >= 0 else "mirrored",
                       callbacks=[Kill()], verbose=0)
    weights = np.concatenate([w.ravel() for w in result.model.get_weights()])
    scores = result.model.evaluate(zoo.distribute.cluster_share(val), return_dict=True,
                                   verbose=0)
    print(json.dumps({"weights": weights.tolist(), "history": result.history.to_dict("list"),
                      "val_accuracy": scores["top1_accuracy"],
                      "replicas": len(keras.distribution.list_devices())}))
""")


def _cluster(tmp_path, run_dirs, epochs, kill=None):
    """Start both processes; ``[(returncode, stdout, stderr)]`` by process id. With
    ``kill``, the one killed process's end is awaited, then the other is killed too (as a
    job scheduler would; JAX would end it after its 100 s heartbeat timeout)."""
    (port,) = free_ports(1)
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2",
           "TMPDIR": str(tmp_path / "tmp"), "KILL": kill or "",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
                        "--xla_cpu_multi_thread_eigen=false"}
    os.makedirs(env["TMPDIR"], exist_ok=True)
    processes = [subprocess.Popen([sys.executable, "-c", PROCESS, str(port), str(i),
                                   str(run_dirs[i]), str(epochs)], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
    try:
        if kill:
            victim = int(kill.split(":")[0])
            processes[victim].wait(timeout=300)
            processes[1 - victim].send_signal(signal.SIGKILL)
        outputs = [p.communicate(timeout=300) for p in processes]
        return [(p.returncode, *output) for p, output in zip(processes, outputs)]
    finally:
        for process in processes:  # never leave a process behind, whatever happened
            if process.poll() is None:
                process.kill()


@pytest.mark.slow
def test_two_jax_processes_train_as_one_and_resume_after_a_kill(tmp_path):
    """Two processes with 2 CPU devices each (keras.distribution over 4 devices): killed on
    process 0 as the third epoch begins (the other is then killed, as a scheduler would),
    then started again, they finish with identical weights, equal to those of one process
    over 4 devices (the same global batches), and only process 0 wrote the run directory.
    Processes that resume from different epochs (no shared run directory), or where one
    finds a damaged backup, stop with one line."""
    run_dir = tmp_path / "run"
    # Process 0 kills itself as its third epoch begins: its backup of the second is whole.
    killed = _cluster(tmp_path, [run_dir, run_dir], epochs=3, kill="0:2")
    assert killed[0][0] == -signal.SIGKILL, killed[0][2][-3000:]
    def scratch():
        return sorted(n for n in os.listdir(tmp_path / "tmp") if n.startswith("zoo-process"))

    left_by_the_kill = scratch()
    assert len(left_by_the_kill) == 1 and left_by_the_kill[0].startswith("zoo-process1-")
    meta = json.load(open(run_dir / "backup" / "training_metadata.json"))
    assert meta["epoch"] == 2  # two epochs were backed up before the kill

    resumed = _cluster(tmp_path, [run_dir, run_dir], epochs=3)
    outputs = []
    for code, out, err in resumed:
        assert code == 0, err[-4000:]
        outputs.append(last_json_line(out))
    first, second = outputs
    assert first["replicas"] == 4
    np.testing.assert_array_equal(first["weights"], second["weights"])
    assert first["history"] == second["history"]
    assert first["history"]["epoch"] == [1, 2, 3]
    losses = first["history"]["loss"]
    assert losses[2] < losses[0]

    # The same run in one process over 4 devices: the same numbers.
    single = last_json_line(run_python(PROCESS, args=("0", "-1", "-", "3"), env={
        "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=4 "
        "--xla_cpu_multi_thread_eigen=false"}).stdout)
    assert single["replicas"] == 4
    np.testing.assert_allclose(first["weights"], single["weights"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(first["history"]["val_loss"], single["history"]["val_loss"],
                               rtol=1e-5)
    # The held-out accuracy after training, over the cluster, is NumPy's count.
    assert first["val_accuracy"] == pytest.approx(single["val_accuracy"], abs=1e-6)

    # Process 0 alone wrote the run directory; the others' scratch copies are gone.
    assert sorted(os.listdir(run_dir)) == [".lock", "backup", "checkpoints", "config.json",
                                           "history.csv", "learning_curves.png",
                                           "learning_rate.png", "logs"]
    # The killed process could not clean up; the restarted process 1 removed its copy.
    assert scratch() == []

    # Process 1 cannot see process 0's run directory (another machine, no shared disk).
    elsewhere = tmp_path / "elsewhere"
    stopped = _cluster(tmp_path, [run_dir, elsewhere], epochs=4)
    for code, _, err in stopped:
        assert code != 0
        assert ("UserError: The processes resumed from different epochs ([3, 0], by process "
                "id)") in err, err[-3000:]

    # Process 0's backup damaged (both copies), process 1 sees none: both stop in one line,
    # where process 0 alone stopped and process 1 waited in its first step's collective.
    for name in os.listdir(run_dir / "backup"):
        if "training_metadata" in name:
            (run_dir / "backup" / name).write_text("{\"epo")
    stopped = _cluster(tmp_path, [run_dir, elsewhere], epochs=4)
    for code, _, err in stopped:
        assert code != 0
        assert "UserError: Process 0 found a damaged backup in " in err, err[-3000:]
        assert ("(its copy and the previous one unreadable), and the others none or a "
                "readable one (epochs by process id: [-1, 0]). To train again from the first "
                "epoch, move the run directory aside") in err, err[-3000:]


@pytest.mark.slow
def test_zoo_train_with_a_wrong_coordinator_says_so_in_one_line(tmp_path):
    """`zoo train --strategy multi_worker` under JAX, as process 1 of a cluster whose
    coordinator does not answer: exit 2 and one line within the timeout, not a hang."""
    (port,) = free_ports(1)
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "zoo", "train", "--model", "alexnet", "--strategy",
         "multi_worker", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
         "--process-id", "1", "--cluster-timeout", "2", "--run-dir", str(tmp_path / "run")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("zoo")]
    assert lines == [f"zoo train: error: Process 1 could not reach the coordinator "
                     f"127.0.0.1:{port} in 2 s (Connection refused): check that process 0 "
                     "runs the same command with --process-id 0, that 127.0.0.1 is its "
                     "address as this machine sees it, and that the port is open between "
                     "them."], done.stderr[-3000:]
    assert not os.path.exists(tmp_path / "run")  # nothing written


def test_a_killed_processs_scratch_copy_is_removed_by_the_next_and_nothing_else(
        tmp_path, monkeypatch):
    """JAX's heartbeat ends the processes of a cluster one of which died, without their
    finally: each restart left a copy of the backup and checkpoints in /tmp. The next
    process removes those of dead processes (named with safeio's mark), never a user's
    look-alike, a live process's or a link's target."""
    import tempfile

    from zoo.training import run_config

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    run_dir = tmp_path / "run"
    (run_dir / "backup").mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    with run_config.process_run_dir(str(run_dir), 1) as first:
        assert sorted(os.listdir(first)) == ["backup", "config.json"]
    assert not os.path.exists(first)  # removed at the end, as before
    mark = run_config._token(dead, run_config._SCRATCH)
    stale = tmp_path / f"zoo-process1-{dead}-{mark}-k3j2h1"  # as mkdtemp names it
    (stale / "backup").mkdir(parents=True)
    lookalike = tmp_path / f"zoo-process1-{dead}-0123456789-mine"
    lookalike.mkdir()
    target = tmp_path / "elsewhere"
    target.mkdir()
    linked = tmp_path / f"zoo-process2-{dead}-{mark}-x"
    linked.symlink_to(target)
    with run_config.process_run_dir(str(run_dir), 1) as again:
        assert os.path.isdir(again)
    assert not stale.exists() and lookalike.is_dir() and target.is_dir()
    # A backup/ linked to another disk is copied through its link (it was left out: the
    # other processes started afresh while process 0 resumed); its target is untouched.
    disk = tmp_path / "disk"
    (run_dir / "backup").rename(disk)
    (disk / "latest.weights.h5").write_bytes(b"weights")
    (run_dir / "backup").symlink_to(disk)
    with run_config.process_run_dir(str(run_dir), 1) as linked_copy:
        copied = os.path.join(linked_copy, "backup")
        assert not os.path.islink(copied) and os.listdir(copied) == ["latest.weights.h5"]
    assert (disk / "latest.weights.h5").read_bytes() == b"weights"
