"""The same model code and weight file on every Keras backend: the models, LRN, the
ensemble layer, the export's uncertainty layer and the snapshot schedule give the same
numbers under TensorFlow and JAX (the torch backend is checked on a GPU machine)."""

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
                            args=[weights, str(tmp_path / "x.npy"), mode, out]).stdout
        assert json.loads(stdout.strip().splitlines()[-1])["backend"] == backend
        results[backend] = np.load(out)
    return results


def test_one_weights_file_gives_the_same_numbers_under_tensorflow_and_jax(tmp_path):
    results = _save_then_load(tmp_path, "jax")
    tf_out, jax_out = results["tensorflow"], results["jax"]
    assert set(tf_out.files) == {"probabilities", "predictive_entropy", "mutual_information",
                                 "members", "schedule"}
    for key in tf_out.files:
        np.testing.assert_allclose(jax_out[key], tf_out[key], atol=1e-4, err_msg=key)
    assert not np.allclose(tf_out["members"][0], tf_out["members"][1])  # real, different members


TRAIN = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    import data, zoo

    def linear():  # softmax regression: learns the digits in a few epochs
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Flatten()(inputs)
        return keras.Model(inputs, keras.layers.Dense(10, activation="softmax",
                                                      name="predictions")(x), name="linear")

    scaled = lambda image: image / 255.0
    train = data.load("digits", "train", batch_size=64, image_size=8, preprocess=scaled,
                      augment=data.augment.random_flip, seed=1)
    val = data.load("digits", "validation", batch_size=128, image_size=8, preprocess=scaled)
    result = zoo.train(linear, train, val,
                       epochs=int(sys.argv[2]), run_dir=sys.argv[1], seed=0,
                       learning_rate=0.1, lr_patience=1, verbose=0)
    weights = np.concatenate([np.ravel(w) for w in result.model.get_weights()])
    print(json.dumps({"backend": keras.backend.backend(), "weights": weights.tolist(),
                      "history": result.history.to_dict(orient="list")}))
""")


def test_zoo_train_runs_and_resumes_exactly_under_jax(tmp_path):
    """The recipe on the JAX backend: the run directory, backups, learning-rate drops and
    the (seed, epoch) data order; a run stopped after 2 epochs and resumed to 4 ends as the
    uninterrupted 4-epoch run (rtol 1e-5)."""

    def train(run_dir, epochs):
        out = run_python(TRAIN, env={"KERAS_BACKEND": "jax"},
                         args=[str(tmp_path / run_dir), str(epochs)]).stdout
        return json.loads(out.strip().splitlines()[-1])

    whole = train("whole", 4)
    assert whole["backend"] == "jax"
    train("resumed", 2)
    resumed = train("resumed", 4)
    assert resumed["history"]["epoch"] == [1, 2, 3, 4]
    for key, values in whole["history"].items():
        np.testing.assert_allclose(resumed["history"][key], values, rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(resumed["weights"], whole["weights"], rtol=1e-5, atol=1e-7)
    assert whole["history"]["val_loss"][-1] < whole["history"]["val_loss"][0]  # it learns


MIRRORED = textwrap.dedent("""
    import json
    import keras
    import data, zoo

    def linear():
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Flatten()(inputs)
        return keras.Model(inputs, keras.layers.Dense(10, activation="softmax",
                                                      name="predictions")(x), name="linear")

    def digits(**kwargs):
        return data.load("digits", "train", batch_size=64, image_size=8,
                         preprocess=lambda image: image / 255.0, seed=1, **kwargs)

    errors = []
    for strategy, dataset in (("mirrored", digits()), ("multi_worker", digits())):
        try:
            zoo.train(linear, dataset, epochs=1, strategy=strategy, verbose=0)
        except ValueError as err:
            errors.append(str(err))
    result = zoo.train(linear, digits(drop_remainder=True), epochs=2, strategy="mirrored",
                       seed=0, learning_rate=0.1, verbose=0)
    kernel = result.model.get_layer("predictions").kernel
    print(json.dumps({"loss": result.history["loss"].tolist(), "errors": errors,
                      "devices": len(kernel.value.sharding.device_set)}))
""")


def test_mirrored_on_jax_is_data_parallel_over_the_local_devices():
    """strategy="mirrored" under JAX: keras.distribution.DataParallel over two virtual CPU
    devices (the variables live on both); batches that cannot split evenly and
    "multi_worker" (tf.distribute) are one-line errors."""
    out = run_python(MIRRORED, env={"KERAS_BACKEND": "jax",
                                    "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    assert report["loss"][1] < report["loss"][0]
    uneven, multi_worker = report["errors"]
    assert uneven.startswith("`train_data` must come in batches that split evenly over the 2 "
                             "devices; its batch size is not fixed")
    assert "drop_remainder=True" in uneven
    assert multi_worker.startswith("strategy='multi_worker' is TensorFlow's tf.distribute, "
                                   "which does not reach a jax model")


EXPORT = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf
    import ensembles, zoo

    model = ensembles.Ensemble([zoo.alexnet(input_shape=(67, 67, 3), classes=5, width=16)
                                for _ in range(2)], weights=[3, 1])
    x = np.load(sys.argv[1])
    labels = np.arange(len(x)) % 5
    ensembles.export(model, sys.argv[2])  # Keras exports a JAX model through jax2tf
    table = ensembles.evaluate(model, tf.data.Dataset.from_tensor_slices((x, labels)).batch(3))
    print(json.dumps({"predictions": model.predict(x, verbose=0).tolist(),
                      "nll": float(table.loc["ensemble", "nll"])}))
""")


def test_a_jax_model_exports_one_saved_model_and_evaluates(tmp_path):
    """Export and evaluation under JAX: the SavedModel, served by plain TensorFlow here,
    gives the JAX model's probabilities, and the evaluation's NLL is scikit-learn's."""
    import tensorflow as tf
    from sklearn.metrics import log_loss

    x = np.random.default_rng(0).uniform(0, 255, (7, 67, 67, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    served_dir = str(tmp_path / "served")
    out = run_python(EXPORT, env={"KERAS_BACKEND": "jax"},
                     args=[str(tmp_path / "x.npy"), served_dir]).stdout
    report = json.loads(out.strip().splitlines()[-1])
    served = tf.saved_model.load(served_dir)
    probabilities = served.serve(tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, report["predictions"], atol=1e-5)
    assert report["nll"] == pytest.approx(
        log_loss(np.arange(7) % 5, probabilities, labels=range(5)), rel=1e-4)


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
