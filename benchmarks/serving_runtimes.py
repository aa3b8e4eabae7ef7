"""Serving one 3-member ensemble on this CPU: Keras ``predict``, the SavedModel loaded with
``tf.saved_model.load``, ONNX Runtime and LiteRT, side by side in one process.

Batch 1: latency (median and 95th percentile of single-image requests). Batch 64:
images/s. Every runtime gets the same images, and its probabilities are checked against
Keras' first. Run: ``.venv/bin/python benchmarks/serving_runtimes.py`` (or ``make bench``);
needs ``pip install ".[deploy]"`` for ONNX and LiteRT (a runtime that is missing is left out).
"""

import argparse
import importlib.util
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import ensembles  # noqa: E402
import zoo  # noqa: E402
from common import result_row  # noqa: E402
from safeio.checks import UserError  # noqa: E402

SIZE = 67


def ensemble():
    """The demo's kinds of member at the demo's input size: a two-tower LRN AlexNet, a
    GoogLeNet and a ResNet-18."""
    shape = (SIZE, SIZE, 3)
    return ensembles.Ensemble([
        zoo.alexnet(input_shape=shape, classes=10, width=512, towers=2),
        zoo.googlenet(input_shape=shape, classes=10, width=0.25),
        zoo.resnet18(input_shape=shape, classes=10, width=0.25)])


def servers(model, folder):
    """``name -> fn(images) -> probabilities`` for every runtime installed here."""
    import tensorflow as tf

    from ensembles.export import runtime

    serving = ensembles.serving_model(model)
    # (one call per batch, as the runtimes get: predict's default batch is 32)
    found = {"keras predict": lambda x: serving.predict(x, batch_size=len(x),
                                                        verbose=0)["probabilities"]}
    ensembles.export(model, os.path.join(folder, "served"))
    saved = tf.saved_model.load(os.path.join(folder, "served"))
    found["SavedModel (tf.saved_model.load)"] = (
        lambda x: saved.serve(tf.constant(x))["probabilities"].numpy())
    litert = ("LiteRT" if importlib.util.find_spec("ai_edge_litert") else
              "LiteRT (TensorFlow's tf.lite interpreter)")  # runtime()'s fallback
    for format, name, label in (("onnx", "model.onnx", "ONNX Runtime"),
                                ("litert", "model.tflite", litert)):
        path = os.path.join(folder, name)
        try:
            ensembles.export(model, path, format=format)
            runners = {1: runtime(path), 64: runtime(path)}  # one per shape: no re-allocation
        except (ImportError, UserError) as err:  # (export: a converter not installed)
            print(f"  {label} left out: {err}")
            continue
        found[label] = lambda x, runners=runners: runners[len(x)](x)["probabilities"]
    return found


def latencies(fn, images, calls):
    """Seconds per single-image call, ``calls`` of them, after two untimed calls."""
    for image in images[:2]:
        fn(image[np.newaxis])
    times = []
    for i in range(calls):
        start = time.perf_counter()
        fn(images[i % len(images)][np.newaxis])
        times.append(time.perf_counter() - start)
    return np.array(times)


def throughput(fn, batches):
    """Median images/s over the batches, after one untimed batch."""
    fn(batches[0])
    speeds = []
    for batch in batches:
        start = time.perf_counter()
        fn(batch)
        speeds.append(len(batch) / (time.perf_counter() - start))
    return float(np.median(speeds))


def measure(calls=100, rounds=5):
    """``{runtime: (median ms, p95 ms, images/s at batch 64)}``, measured interleaved."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (64 * rounds, SIZE, SIZE, 3)).astype("float32")
    model = ensemble()
    with tempfile.TemporaryDirectory() as folder:
        found = servers(model, folder)
        reference = found["keras predict"](images[:64])
        for name, fn in found.items():  # the same answers first
            worst = float(np.abs(fn(images[:64]) - reference).max())
            assert worst < 1e-5, (name, worst)
        batches = [images[i * 64:(i + 1) * 64] for i in range(rounds)]
        times = {name: [] for name in found}
        speeds = {name: [] for name in found}
        for _ in range(3):  # interleaved rounds: each runtime sees the same conditions
            for name, fn in found.items():
                times[name].append(latencies(fn, images, calls // 3))
                speeds[name].append(throughput(fn, batches))
    return {name: (1e3 * np.median(np.concatenate(times[name])),
                   1e3 * np.percentile(np.concatenate(times[name]), 95),
                   float(np.median(speeds[name]))) for name in found}


def run():
    """``make bench``'s rows: each runtime against Keras ``predict``, at batch 64 (images/s)
    and at batch 1 (requests/s, the inverse of the median latency)."""
    results = measure()
    print(table(results))
    keras_ms, _, keras_speed = results["keras predict"]
    rows = []
    for name, (ms, _, speed) in results.items():
        if name == "keras predict":
            continue
        rows.append(result_row("serving a 3-member ensemble, batch 64", name, speed,
                               "keras predict", keras_speed))
        rows.append(result_row("serving a 3-member ensemble, batch 1", name, 1e3 / ms,
                               "keras predict", 1e3 / keras_ms, unit="requests/s"))
    return rows


def table(results):
    lines = [f"{'runtime':36s} {'batch 1 median ms':>18s} {'p95 ms':>8s} "
             f"{'batch 64 img/s':>15s}"]
    for name, (ms, p95, speed) in results.items():
        lines.append(f"{name:36s} {ms:18.2f} {p95:8.2f} {speed:15.1f}")
    return "\n".join(lines)


if __name__ == "__main__":  # (--help: the docstring, instead of a whole run)
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    run()
