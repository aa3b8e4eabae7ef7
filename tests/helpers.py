"""Small shared pieces for tests that run training in subprocesses."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, env=None, timeout=300, check=True, args=(), cwd=REPO):
    """Run ``code`` in a fresh Python (``sys.argv[1:]`` = ``args``); returns the
    CompletedProcess."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                            timeout=timeout, env=full_env, cwd=cwd)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def last_json_line(text):
    return json.loads(text.strip().splitlines()[-1])


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tiny_data(n=64, classes=4, size=8, seed=0, batch=16):
    """Learnable: the label is which quarter of the image is bright."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype("int32")
    images = rng.normal(size=(n, size, size, 3)).astype("float32") * 0.1
    half = size // 2
    for i, y in enumerate(labels):
        r, c = divmod(int(y), 2)
        images[i, r * half:(r + 1) * half, c * half:(c + 1) * half] += 1.0
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch)


def tiny_model(size=8, classes=4):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny")
