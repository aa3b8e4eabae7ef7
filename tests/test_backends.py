"""What only separate processes can show: one weights file gives the same numbers under
TensorFlow, JAX and (where torch is installed) PyTorch, and JAX's data parallelism over two
virtual devices (set before JAX starts). The backend-agnostic tests themselves run under
JAX in `make test`'s second pass (marked all_backends): training and exact resume, export,
evaluation, crops, snapshots."""

import importlib.util
import json
import os
import textwrap

import numpy as np
import pytest

from tests.helpers import run_python

pytest.importorskip("jax")

BUILD_AND_PREDICT = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    import ensembles, zoo

    def members():
        return [zoo.alexnet(input_shape=(67, 67, 3), classes=5, width=16, towers=2),
                zoo.googlenet(input_shape=(67, 67, 3), classes=5, width=0.125),
                zoo.resnet18(input_shape=(67, 67, 3), classes=5, width=0.25)]

    model = ensembles.Ensemble(members(), combine="geometric", weights=[3, 2, 1])
    serving = ensembles.serving_model(model)
    weights, x = sys.argv[1], np.load(sys.argv[2])
    if sys.argv[3] == "save":
        model.save_weights(weights)
    else:
        model.load_weights(weights)
    outputs = {k: keras.ops.convert_to_numpy(v) for k, v in
               serving.predict(x, verbose=0).items() if k != "finite"}
    outputs["members"] = np.stack([keras.ops.convert_to_numpy(m.predict(x, verbose=0))
                                   for m in ensembles.members_of(model)])
    schedule = ensembles.CyclicCosine(0.3, total_steps=50, cycles=3)
    outputs["schedule"] = np.array([float(schedule(step)) for step in range(50)])
    np.savez(sys.argv[4], **outputs)
    print(json.dumps({"backend": keras.backend.backend()}))
""")


def _save_then_load(tmp_path, other, python=None):
    """The ensemble's outputs under TensorFlow (which saves the weights file) and under the
    ``other`` backend (which loads it), each in a fresh process."""
    x = np.random.default_rng(0).uniform(0, 255, (4, 67, 67, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    weights = str(tmp_path / "ensemble.weights.h5")
    results = {}
    for backend, mode in (("tensorflow", "save"), (other, "load")):
        out = str(tmp_path / f"{backend}.npz")
        stdout = run_python(BUILD_AND_PREDICT, env={"KERAS_BACKEND": backend},
                            python=python if backend == other else None,
                            args=[weights, str(tmp_path / "x.npy"), mode, out],
                            timeout=900).stdout  # a hang guard: JAX compiling a GoogLeNet
        # beside the slow tier's other workers took over 300 s on a slow day
        assert json.loads(stdout.strip().splitlines()[-1])["backend"] == backend
        results[backend] = np.load(out)
    return results


@pytest.mark.slow
def test_one_weights_file_gives_the_same_numbers_under_tensorflow_and_jax(tmp_path):
    results = _save_then_load(tmp_path, "jax")
    tf_out, jax_out = results["tensorflow"], results["jax"]
    assert set(tf_out.files) == {"probabilities", "predictive_entropy", "mutual_information",
                                 "members", "schedule"}
    for key in tf_out.files:
        np.testing.assert_allclose(jax_out[key], tf_out[key], atol=1e-4, err_msg=key)
    assert not np.allclose(tf_out["members"][0], tf_out["members"][1])  # real, different members


MIRRORED = textwrap.dedent("""
    import json
    import keras
    import tensorflow as tf
    import data, zoo

    def linear():
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Flatten()(inputs)
        return keras.Model(inputs, keras.layers.Dense(10, activation="softmax",
                                                      name="predictions")(x), name="linear")

    def digits(**kwargs):
        return data.load("digits", "train", batch_size=64, image_size=8,
                         preprocess=lambda image: image / 255.0, seed=1, **kwargs)

    class Batches(keras.utils.PyDataset):  # (a traceback from element_spec, once)
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return next(iter(digits(drop_remainder=True).take(1)))

    errors = []
    for strategy, dataset in (("mirrored", digits()), ("multi_worker", digits()),
                              ("auto", Batches())):
        try:
            zoo.train(linear, dataset, epochs=1, strategy=strategy, verbose=0)
        except ValueError as err:
            errors.append(str(err))
    try:  # built before zoo.train set up DataParallel: on one device (JAX failed in its step)
        zoo.train(linear(), digits(drop_remainder=True), epochs=1, verbose=0)
    except ValueError as err:
        errors.append(str(err))
    # 180 validation digits in batches of 35 and a last one of 5: none splits over 2 devices.
    val = data.load("digits", "validation", batch_size=35, image_size=8,
                    preprocess=lambda image: image / 255.0)
    import tempfile
    run_dir = tempfile.mkdtemp()
    result = zoo.train(linear, digits(drop_remainder=True), val, epochs=2, run_dir=run_dir,
                       strategy="mirrored", seed=0, learning_rate=0.1, verbose=0)
    import os
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    recorded = [config["strategy"], config["backend"]]
    kernel = result.model.get_layer("predictions").kernel
    import numpy as np
    images = np.concatenate([x for x, _ in val])
    labels = np.concatenate([y for _, y in val])
    weights = [np.asarray(w) for w in result.model.get_weights()]
    logits = images.reshape(len(images), -1) @ weights[0] + weights[1]
    # Validation batches with sample weights (Keras' third element) padded too (JAX's
    # IndivisibleError after the first epoch's training).
    weighted = val.map(lambda x, y: (x, y, tf.cast(y % 2, tf.float32) + 0.5))
    second = zoo.train(linear, digits(drop_remainder=True), weighted, epochs=1,
                       strategy="mirrored", seed=0, learning_rate=0.1, verbose=0)
    weights = [np.asarray(w) for w in second.model.get_weights()]
    correct = (images.reshape(len(images), -1) @ weights[0] + weights[1]).argmax(1) == labels
    print(json.dumps({"weighted_val_accuracy": [
                          float(second.history["val_top1_accuracy"].iloc[-1]),
                          float(np.average(correct, weights=labels % 2 + 0.5))],
                      "loss": result.history["loss"].tolist(), "errors": errors,
                      "devices": len(kernel.value.sharding.device_set),
                      "recorded": recorded,
                      "val_accuracy": float(result.history["val_top1_accuracy"].iloc[-1]),
                      "direct_accuracy": float(np.mean(logits.argmax(1) == labels))}))
""")


@pytest.mark.slow  # a cross-process backend check: a JAX process started from this pass
def test_mirrored_on_jax_is_data_parallel_over_the_local_devices():
    """strategy="mirrored" under JAX: keras.distribution.DataParallel over two virtual CPU
    devices (the variables live on both); training batches that cannot split evenly,
    "multi_worker" without a cluster to join and a PyDataset are one-line errors; a validation split whose last batch
    does not split is padded with zero-weight examples, and its accuracy is exact (NumPy's,
    from the trained weights)."""
    out = run_python(MIRRORED, env={"KERAS_BACKEND": "jax",
                                    "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    # (it recorded TensorFlow's default strategy, and not the backend)
    assert report["recorded"] == ["DataParallel", "jax"]
    assert report["loss"][1] < report["loss"][0]
    assert report["val_accuracy"] == pytest.approx(report["direct_accuracy"], abs=1e-6)
    logged, expected = report["weighted_val_accuracy"]
    assert logged == pytest.approx(expected, abs=1e-6)
    uneven, multi_worker, not_tf_data, built = report["errors"]
    assert built.startswith("The model was built outside keras.distribution's DataParallel "
                            "over 2 devices, which strategy='auto' trains under here")
    assert uneven.startswith("`train_data` must come in batches that split evenly over the 2 "
                             "devices; its batch size is not fixed")
    assert "drop_remainder=True" in uneven
    assert multi_worker.startswith("strategy='multi_worker' on JAX needs the coordinator's "
                                   "host:port (process 0's address)")
    assert not_tf_data.startswith("Over 2 devices (keras.distribution, JAX) `train_data` must "
                                  "be a tf.data.Dataset of batches (data.load gives one)")
    assert not_tf_data.endswith("received Batches. Or train on one device: "
                                "strategy='one_device'.")


def test_the_same_weights_file_under_the_torch_backend(tmp_path):
    """The PyTorch backend needs a CUDA-sized wheel, so CI skips this. It runs where torch
    imports, or with ZOO_TORCH_PYTHON naming a Python that has torch and Keras (it need not
    have TensorFlow): ``ZOO_TORCH_PYTHON=/path/python pytest tests/test_backends.py``."""
    python = os.environ.get("ZOO_TORCH_PYTHON")
    if python is None and importlib.util.find_spec("torch") is None:
        pytest.skip("no PyTorch here; set ZOO_TORCH_PYTHON to a Python that has it")
    results = _save_then_load(tmp_path, "torch", python=python)
    for key in results["tensorflow"].files:
        np.testing.assert_allclose(results["torch"][key], results["tensorflow"][key], atol=1e-4,
                                   err_msg=key)
