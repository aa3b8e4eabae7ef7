"""Many processes under JAX: ``keras.distribution.initialize`` (JAX's distributed runtime)
with a check that the cluster can meet, so that a wrong address is one line, not a hang.

Every process runs the same command with the coordinator's address (process 0's
``host:port``), the number of processes and its own id, given as arguments or in Keras'
environment variables (``KERAS_DISTRIBUTION_JOB_ADDRESSES``, ``..._NUM_PROCESSES``,
``..._PROCESS_ID``). Then ``keras.distribution.DataParallel`` spans the devices of every
process (``zoo.train(strategy="multi_worker")``).

JAX ends the process with a fatal log line, not an exception, when its coordinator cannot
be reached (after 300 s by default). So before it starts, the processes meet on the
coordinator's port: process 0 listens there, the others connect and say who they are, and
whoever does not meet the others within ``timeout`` seconds stops with a one-line
:class:`UserError` that says what to check. Then the port is handed to JAX.

Example:

>>> initialize("10.0.0.1:1234", num_processes=2, process_id=0)   # doctest: +SKIP
"""

import contextlib
import functools
import math
import os
import socket
import time

from safeio.checks import UserError, check_positive_number

ENVIRONMENT = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
               "KERAS_DISTRIBUTION_PROCESS_ID")
DEFAULT_TIMEOUT = 120  # seconds for every process to start and meet


def is_initialized():
    """Whether this process has joined a JAX cluster (``jax.distributed.initialize`` ran);
    asking does not start JAX's backends."""
    import jax

    asks = getattr(jax.distributed, "is_initialized", None)
    return bool(asks()) if asks is not None else False


def _jax_started():
    """Whether JAX has computed anything yet (then it can no longer join a cluster)."""
    try:
        from jax._src import xla_bridge

        return xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):  # a JAX that moved it: JAX's own error later
        return False


def settings(coordinator=None, num_processes=None, process_id=None):
    """``(host, port, num_processes, process_id)`` from the arguments, else from Keras'
    environment variables; a one-line :class:`UserError` for what is missing or wrong.

    Example:

    >>> settings("10.0.0.1:1234", 2, 1)
    ('10.0.0.1', 1234, 2, 1)
    """
    given = (coordinator, num_processes, process_id)
    coordinator, num_processes, process_id = (
        value if value is not None else os.environ.get(name)
        for value, name in zip(given, ENVIRONMENT))
    if coordinator is None or num_processes is None or process_id is None:
        raise UserError(
            "strategy='multi_worker' on JAX needs the coordinator's host:port (process 0's "
            "address), the number of processes and this process's id: pass --coordinator, "
            "--num-processes and --process-id to `zoo train`, or set "
            f"{', '.join(ENVIRONMENT)}; received coordinator={coordinator!r}, "
            f"num_processes={num_processes!r}, process_id={process_id!r}.")
    address = str(coordinator).split(",")[0].strip()  # Keras' job list: process 0 first
    host, _, port = address.rpartition(":")
    try:
        port, num_processes, process_id = int(port), int(num_processes), int(process_id)
    except ValueError:
        raise UserError(
            f"The coordinator must be host:port and the process count and id integers; "
            f"received coordinator={coordinator!r}, num_processes={num_processes!r}, "
            f"process_id={process_id!r}.") from None
    if not host or not 0 < port < 65536:
        raise UserError(f"The coordinator must be host:port (process 0's address and a free "
                        f"port); received {coordinator!r}.")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise UserError(f"The process id must be in [0, {num_processes}) and the process "
                        f"count at least 1; received process_id={process_id}, "
                        f"num_processes={num_processes}.")
    return host.strip("[]"), port, num_processes, process_id


def initialize(coordinator=None, num_processes=None, process_id=None,
               timeout=DEFAULT_TIMEOUT):
    """Join the cluster (once per process, before any JAX computation); see the module
    docstring. Does nothing when this process has joined already."""
    if is_initialized():
        return
    check_positive_number(timeout, "timeout", " (seconds to wait for the others)")
    host, port, count, index = settings(coordinator, num_processes, process_id)
    if _jax_started():  # before the meeting: the others must not be told to go
        raise UserError("strategy='multi_worker' must join the cluster before JAX computes "
                        "anything: call zoo.distribute.initialize_cluster(...) first in the "
                        "process (before building a model).")
    if count > 1:
        meet(host, port, count, index, timeout)
    else:  # no meeting, but JAX's coordinator listens there: a busy port is one line too
        _listen(host, port).close()
    import jax
    import keras

    original = jax.distributed.initialize
    jax.distributed.initialize = functools.partial(  # JAX wants whole seconds
        original, initialization_timeout=int(math.ceil(timeout)))
    try:  # Keras passes no timeout of its own; JAX's default is 300 s
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6
        keras.distribution.initialize(address, count, index)
    finally:
        jax.distributed.initialize = original


def meet(host, port, count, index, timeout=DEFAULT_TIMEOUT):
    """Process 0 listens on ``host:port`` until the other ``count - 1`` processes have said
    hello; each of them connects and waits for the word to go. A one-line
    :class:`UserError` on every process that does not meet the others in ``timeout`` s."""
    deadline = time.monotonic() + timeout
    if index == 0:
        _host_the_meeting(host, port, count, deadline, timeout)
    else:
        _join_the_meeting(host, port, count, index, deadline, timeout)


def _listen(host, port):
    """Listen on ``port`` of every interface, as JAX's coordinator does (``[::]:port``): the
    name the others use may resolve to another of this machine's addresses."""
    try:
        if socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6,
                                        dualstack_ipv6=True, backlog=64)
        return socket.create_server(("", port), backlog=64)
    except OSError as err:
        raise UserError(
            f"Process 0 cannot listen on port {port} of the coordinator {host}:{port} "
            f"({os.strerror(err.errno) if err.errno else err}): give a free port, the same "
            "to every process.") from None


def _host_the_meeting(host, port, count, deadline, timeout):
    arrived = {}
    with contextlib.closing(_listen(host, port)) as listener:
        try:
            while len(arrived) < count - 1:
                listener.settimeout(max(deadline - time.monotonic(), 0.01))
                try:
                    connection, _ = listener.accept()
                except socket.timeout:
                    missing = sorted(set(range(1, count)) - set(arrived))
                    for connection in arrived.values():  # they stop too, saying why
                        _say(connection, f"error process(es) {missing} never reached "
                                         f"process 0 within {timeout:g} s")
                    raise UserError(
                        f"Process 0 waited {timeout:g} s on {host}:{port} for the other "
                        f"processes, and process(es) {missing} of {count} never came: start "
                        f"the same command on each machine with --process-id 1..{count - 1}, "
                        f"--num-processes {count} and --coordinator {host}:{port} (an "
                        "address the other machines reach), and check that the port is "
                        "open.") from None
                problem, index = _hello(connection, count, arrived)
                if problem:
                    _say(connection, f"error {problem}")
                    connection.close()
                    if index is None:
                        continue  # not one of ours: keep waiting
                    for waiting in arrived.values():  # they stop too, saying why
                        _say(waiting, f"error {problem}")
                    raise UserError(f"Process 0 on {host}:{port}: {problem}.")
                arrived[index] = connection
            for connection in arrived.values():
                _say(connection, "go")
            for connection in arrived.values():  # they close first: the port stays free
                connection.settimeout(max(deadline - time.monotonic(), 1.0))
                with contextlib.suppress(OSError):
                    connection.recv(1)
        finally:
            for connection in arrived.values():
                connection.close()


def _hello(connection, count, arrived):
    """``(problem or None, process id)`` from a joining process's first line."""
    connection.settimeout(10)
    try:
        words = connection.makefile().readline().split()
        other_count, index = int(words[2]), int(words[1])
        assert words[0] == "zoo"
    except (OSError, ValueError, IndexError, AssertionError):
        return "a stranger connected, not a zoo process", None
    if other_count != count:
        return (f"process {index} was started with --num-processes {other_count}, process 0 "
                f"with {count}: give every process the same count", index)
    if index in arrived:
        return f"two processes were started with --process-id {index}", index
    return None, index


def _say(connection, line):
    with contextlib.suppress(OSError):
        connection.sendall(f"{line}\n".encode())


def _join_the_meeting(host, port, count, index, deadline, timeout):
    while True:
        try:
            connection = socket.create_connection((host, port), timeout=2)
            break
        except OSError as err:
            if time.monotonic() >= deadline:
                raise UserError(
                    f"Process {index} could not reach the coordinator {host}:{port} in "
                    f"{timeout:g} s ({err.strerror or err}): check that process 0 runs the "
                    f"same command with --process-id 0, that {host} is its address as this "
                    "machine sees it, and that the port is open between them.") from None
            time.sleep(0.5)
    with connection:
        _say(connection, f"zoo {index} {count}")
        # Process 0 decides within its own timeout, which started no later than now.
        connection.settimeout(timeout + 5)
        try:
            reply = connection.makefile().readline().strip()
        except OSError:
            reply = ""
    if reply.startswith("error "):
        raise UserError(f"The coordinator {host}:{port} stopped process {index}: "
                        f"{reply[len('error '):]}.")
    if reply != "go":
        raise UserError(f"Process {index} reached {host}:{port}, but not every process "
                        f"did within {timeout:g} s: start the same command on every machine, "
                        f"with --process-id 0..{count - 1}.")
