"""Small shared pieces for tests that run training in subprocesses."""

import json
import os
import select
import socket
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Deep ResNets take 1.5-4 s to build even at tiny widths (Keras makes their hundreds of layers
# one by one). Their code is a shallower sibling's, and each one's docstring example builds it
# in the fast tier: the model tables check them in the slow tier.
DEEP_RESNETS = ("resnet44", "resnet56", "resnet101", "resnet110", "resnet152")

# `zoo` flags for a model the command-line tests train when they check wiring, not learning:
# a VGG-11 at 1/16 width trains an epoch of the digits in a third to a half of the small
# ResNet-18's time here, but does not learn them (92 % test error after two epochs), so the
# tests that need learning keep the ResNet.
SMALL_VGG = ["--model", "vgg11", "--image-size", "32", "--model-arg", "width=0.0625"]


def in_torch_process(function, *args, libraries=("torch", "torchvision")):
    """Run ``function(*args)`` (a test module's function; ``args`` written as Python
    literals) in a fresh process that imports ``libraries`` before anything else; skipped
    where one is not installed. Imported after TensorFlow, torchvision 0.29's import crashed
    the process (a segmentation fault, TensorFlow 2.21 on this CPU): the whole test run."""
    import importlib.util

    import pytest

    for name in libraries:
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"could not import {name!r}: No module named {name!r}")
    code = (f"import {', '.join(libraries)}; import {function.__module__} as tests; "
            f"tests.{function.__name__}(*{args!r}); print('done')")
    assert run_python(code, timeout=600).stdout.strip().endswith("done")


def run_python(code, env=None, timeout=300, check=True, args=(), cwd=REPO, python=None):
    """Run ``code`` in a fresh Python (``sys.argv[1:]`` = ``args``; ``python``, default this
    one); returns the CompletedProcess."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    result = subprocess.run([python or sys.executable, "-c", code, *args], capture_output=True,
                            text=True,
                            timeout=timeout, env=full_env, cwd=cwd)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


# The cold process's loop: each request is one JSON line {"code": ...}, run in a namespace of
# its own; the reply is one JSON line on the original stdout. What the code prints goes to
# stderr (a file), so it cannot break the protocol.
_COLD_LOOP = """
import json, os, sys, traceback
replies = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr
for line in sys.stdin:
    try:
        exec(compile(json.loads(line)["code"], "<cold-python>", "exec"), {"__name__": "__main__"})
        reply = {"ok": True}
    except BaseException:
        reply = {"ok": False, "error": traceback.format_exc()}
    replies.write(json.dumps(reply) + "\\n")
    replies.flush()
"""


class ColdPython:
    """One Python process that never imports this project, shared by the tests that check
    what a deployment sees (``tf.saved_model.load`` without the project): a TensorFlow
    start-up costs 6 s here, so it is paid once per test worker, not once per test.

    ``run(code)`` runs ``code`` in a fresh namespace there and fails the test with the
    traceback if it raises. The process runs with ``PYTHONPATH=""``; each snippet can assert
    that no module of the project is in ``sys.modules``, which holds for every snippet the
    process has run.
    """

    def __init__(self):
        self.process = None
        self.log = None

    def _start(self):
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _COLD_LOOP], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, text=True, cwd=REPO,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""})

    def _log_tail(self):
        self.log.seek(0)
        return self.log.read()[-4000:].decode(errors="replace")

    def run(self, code, timeout=300):
        if self.process is None or self.process.poll() is not None:
            self._start()
        self.process.stdin.write(json.dumps({"code": code}) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise AssertionError(f"the cold process took over {timeout} s")
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the cold process died ({self.process.wait()}):\n"
                                 f"{self._log_tail()}")
        reply = json.loads(line)
        assert reply["ok"], self._log_tail() + reply["error"]

    def close(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.log.close()
            self.process = None


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


def gif_bytes(frames, screen=None, before=b""):
    """A GIF of frames of the given ``(width, height)`` sizes, each one colour, whose
    "logical screen" says ``screen`` (default: the first frame's size), with the bytes
    ``before`` (extension blocks) ahead of the frames. Pillow writes each frame; they are
    put together here, as Pillow makes every frame the first one's size."""
    import io

    from PIL import Image

    def parts(width, height, colour):  # (the frame's blocks, the screen's flags and table)
        buffer = io.BytesIO()
        Image.new("P", (width, height), colour).save(buffer, "GIF")
        data = buffer.getvalue()
        flags = data[10]
        start = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
        position = start
        while data[position] == 0x21:  # extensions Pillow writes: skipped
            position += 2
            while data[position]:
                position += data[position] + 1
            position += 1
        return data[position:-1], flags, data[13:start]  # (up to the trailer)

    written = [parts(width, height, i) for i, (width, height) in enumerate(frames)]
    width, height = screen or frames[0]
    return (b"GIF89a" + width.to_bytes(2, "little") + height.to_bytes(2, "little")
            + bytes([written[0][1], 0, 0]) + written[0][2] + before
            + b"".join(blocks for blocks, _, _ in written) + b";")


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


def _call(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def run_model_test(builder, kwargs, tmp_path, batch=4):
    """What every model must do, as keras-hub's ``run_backbone_test`` checks for backbones:
    config round trip, eager call, ``predict`` on a ``tf.data`` pipeline, a training step,
    a ``.keras`` round trip through ``zoo.load_model``, and mixed precision.

    ``builder(**kwargs)`` must build a classifier with a fixed ``input_shape`` in kwargs.

    ``predict`` runs once, on a ``tf.data`` pipeline as ``zoo`` feeds it (arrays go through
    Keras' own adapter, which Keras tests); the other checks call the model eagerly and,
    under TensorFlow, train one eager step. Tracing a graph costs TensorFlow 1 s per predict
    and 20 s per training step of a ResNet-50 here, and re-checks TensorFlow's tracing, not
    the model: ``zoo.train`` trains in graph mode in the training and command tests. Under
    JAX the mixed-precision model runs through ``predict``: one jitted program compiles in
    0.5 s, where a first eager call compiles every float16 operation on its own (3 s).
    """
    import zoo

    model = builder(**kwargs)
    shape = tuple(model.input_shape[1:])
    x = np.random.default_rng(0).normal(size=(batch,) + shape).astype("float32")
    y = np.arange(batch) % model.output_shape[-1]
    initial = model.get_weights()
    pipeline = tf.data.Dataset.from_tensor_slices(x).batch(batch // 2)
    expected = model.predict(pipeline, verbose=0)
    assert expected.shape == (batch,) + tuple(model.output_shape[1:])

    # The config rebuilds the same architecture: the same names and, with the same weights,
    # the same outputs.
    rebuilt = type(model).from_config(model.get_config())
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in model.layers]
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_allclose(_call(rebuilt, x), expected, rtol=1e-5, atol=1e-6)

    # An eager call agrees with predict.
    np.testing.assert_allclose(_call(model, x), expected, rtol=1e-5, atol=1e-6)

    # A training step moves the weights and keeps the loss finite (eagerly under TensorFlow;
    # JAX compiles the step faster than it runs it op by op: 16 s against 30 s for AlexNet).
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy",
                  run_eagerly=keras.backend.backend() == "tensorflow")
    kernel = next(w for w in model.trainable_weights if w.name == "kernel")
    before = keras.ops.convert_to_numpy(kernel).copy()
    assert np.isfinite(model.train_on_batch(x, y))
    assert np.abs(keras.ops.convert_to_numpy(kernel) - before).max() > 0

    # A .keras file round trip, loaded as users load it.
    path = os.path.join(str(tmp_path), f"{model.name}.keras")
    model.save(path)
    loaded = zoo.load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(_call(loaded, x), _call(model, x), rtol=1e-6, atol=1e-7)

    # Mixed precision: float16 compute, a float32 classifier, the same answers (from the
    # initial weights), compared as logits (log-probabilities less their mean) to 5 % of
    # their spread: measured at most 0.12 % (VGG-11-BN), where an output near uniform is
    # off by half the spread. (Compared as probabilities to 2e-2, AlexNet's and VGG's, all
    # within 0.015 of uniform at their initial weights, matched any output near uniform.)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = builder(**kwargs)
    finally:
        keras.config.set_dtype_policy(previous)
    mixed.set_weights(initial)
    assert mixed.layers[-1].compute_dtype == "float32"  # softmax in float32
    assert any(layer.compute_dtype == "float16" for layer in mixed.layers)
    if keras.backend.backend() == "jax":
        answers = mixed.predict(pipeline, verbose=0)
    else:
        answers = _call(mixed, x)
    want, got = _centred_logits(expected), _centred_logits(answers)
    np.testing.assert_allclose(got, want, atol=0.05 * np.ptp(want))
    return model


def _centred_logits(probabilities):
    """The logits (up to a constant) of softmax ``probabilities``, less their mean."""
    logits = np.log(np.maximum(np.asarray(probabilities, "float64"), 1e-300))
    return logits - logits.mean(-1, keepdims=True)


def bitfields_bmp(rgb, masks):
    """A 32-bit BMP of ``rgb`` (a V4 header, compression 3) whose colour masks are
    ``masks`` (red, green, blue), its pixels stored as the masks say."""
    import struct

    height, width, _ = rgb.shape
    shifts = [m.bit_length() - 8 for m in masks]
    words = sum(rgb[..., c].astype(np.uint32) << s for c, s in enumerate(shifts))
    pixels = (words | np.uint32(0xFF000000))[::-1].astype("<u4").tobytes()
    info = struct.pack("<IiiHHIIiiII", 108, width, height, 1, 32, 3, len(pixels), 2835, 2835,
                       0, 0) + struct.pack("<IIII", *masks, 0xFF000000) + b"BGRs" + bytes(48)
    return b"BM" + struct.pack("<IHHI", 14 + 108 + len(pixels), 0, 0, 122) + info + pixels
