"""One fresh Python for the facts that need a process of their own (a TensorFlow start-up
costs 6-8 s of CPU here, so the tests share it through the session fixture ``fresh_process``
in tests/conftest.py; both tests are marked ``xdist_group("fresh_process")`` so that one
worker starts it once):

- tests/test_packaging.py: ``import zoo, ensembles`` alone, a ``data/`` folder beside the
  user's notebook, and files loaded with nothing set up by the caller;
- tests/zoo/training/test_processes.py: zoo.train under the two-device MirroredStrategy
  against one device, which needs the CPU split before TensorFlow initialises it.

The process splits the CPU first, with TensorFlow's own call (what
``zoo.distribute.mirrored()`` does): importing ``zoo.training`` there would spoil the
imports check. The packaging checks run in the folder with the user's files; the mirrored
run after them.
"""

import os
import textwrap

import keras
import numpy as np

from tests.helpers import REPO, last_json_line, run_python

CODE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    out = {}

    # --- packaging: what `import zoo, ensembles` brings, and loading beside a data/ folder
    import zoo, ensembles
    import keras
    out["registered_on_import"] = [  # (before any first use of a zoo name)
        keras.saving.get_registered_object(name) is not None
        for name in ("zoo>GoogLeNetWithAuxHeads", "zoo>ZeroPadChannels", "ensembles>CombineMembers")]
    zoo.alexnet(input_shape=(67, 67, 3), classes=3, width=8, towers=2)
    ensembles.Ensemble([zoo.googlenet(input_shape=(32, 32, 3), classes=3, width=0.125),
                        zoo.resnet18(input_shape=(32, 32, 3), classes=3, width=0.25)])
    import keras
    out["registered"] = {name: keras.saving.get_registered_object(name) is not None for name in (
        "zoo>PaperSGD", "ensembles>CyclicCosine", "ensembles>CombineMembers",
        "zoo>LocalResponseNormalization")}
    out["heavy"] = [m for m in ("zoo.training", "zoo.training.search", "ensembles.snapshots",
                                "ensembles.evaluation", "data", "keras_tuner",
                                "tensorflow_datasets") if m in sys.modules]
    # the converters by the README's dotted names, with nothing imported by hand
    out["converters"] = [callable(zoo.pretrained.torchvision.state_dict),
                         callable(zoo.pretrained.caffe.read_caffemodel),
                         issubclass(zoo.prediction.NoViewWarning, Warning)]
    import data
    out["data_load"] = callable(getattr(data, "load", None))
    model = zoo.load_model("model.keras")
    ensemble = ensembles.load("ensemble.keras")
    x = np.load("x.npy")
    out["model"] = model.predict(x, verbose=0).tolist()
    out["ensemble"] = ensemble.predict(x, verbose=0).tolist()
    out["optimizer"] = type(model.optimizer).__name__

    # --- the two-device MirroredStrategy against one device, on the same global batches
    sys.path.append(sys.argv[1])  # the repository, for tests.helpers
    from sklearn.metrics import log_loss
    from tests.helpers import tiny_data, tiny_model
    runs = {}
    val = tiny_data(n=50, seed=1, batch=13)  # (batches of 13: split 7 and 6, none padded)
    val_labels = np.concatenate([y for _, y in val.as_numpy_iterator()])
    for name, chosen in (("mirrored", zoo.distribute.get_strategy("mirrored")),
                         ("one_device", "auto")):
        result = zoo.train(tiny_model, tiny_data(n=64, batch=16), val, epochs=2, seed=0,
                           learning_rate=0.1, strategy=chosen, verbose=0)
        test = tiny_data(n=48, seed=5, batch=16)
        labels = np.concatenate([y for _, y in test.as_numpy_iterator()])
        runs[name] = {
            "replicas": result.model.distribute_strategy.num_replicas_in_sync,
            "loss": result.history["loss"].tolist(),
            "val_loss": float(result.history["val_loss"].iloc[-1]),
            "sklearn_val_nll": log_loss(val_labels, result.model.predict(val, verbose=0),
                                        labels=range(4)),
            "weights": np.concatenate([w.ravel() for w in result.model.get_weights()]).tolist(),
            "evaluate_nll": float(ensembles.evaluate(result.model, test).loc["tiny", "nll"]),
            "sklearn_nll": log_loss(labels, result.model.predict(test, verbose=0),
                                    labels=range(4))}
    out["mirrored"] = runs
    # Data of unknown length under the strategy: the optimizer counts one step a batch
    # (zoo.training.callbacks.ExactStepCount sets the mirrored count back at epoch ends).
    result = zoo.train(tiny_model, tiny_data(n=64, batch=16).filter(lambda x, y: True),
                       epochs=2, seed=0, strategy=zoo.distribute.get_strategy("mirrored"),
                       reduce_lr=False, verbose=0)
    out["mirrored_unknown_length_steps"] = int(keras.ops.convert_to_numpy(
        result.model.optimizer.iterations))
    # PReLU slopes spared from PaperSGD's decay on both copies (the second, named
    # ".../alpha/replica_1:0", was decayed: the mirrored copies drifted apart). The zoo's
    # PReLU (slopes from 0.25, as zoo.resnet20(activation="prelu") builds it) in a model
    # small enough to trace quickly: the ResNet-20 took 18 s of this process's 56 (alone).
    # After a ReLU its slopes see no negative input: their gradient is 0, and only a decay
    # would move them from 0.25.
    from zoo._builder import PRELU_INIT, activate

    def with_prelu():
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.ReLU()(keras.layers.Conv2D(4, 3, name="conv1")(inputs))
        x = activate(x, "prelu", "conv1")
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))

    strategy = zoo.distribute.get_strategy("mirrored")
    result = zoo.train(with_prelu, tiny_data(n=64, batch=16), epochs=1, seed=0,
                       weight_decay=0.05, strategy=strategy, reduce_lr=False, verbose=0)
    slopes = [w for w in result.model.weights if w.path.endswith("alpha")]
    copies = [[t.numpy() for t in strategy.experimental_local_results(w.value)] for w in slopes]
    # Validation arrays and a PyDataset to train on pass through as Keras takes them (the
    # element-spec build and the padding of uneven batches are tf.data's).
    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.batches = list(tiny_data(n=64, batch=16).as_numpy_iterator())

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, index):
            return self.batches[index]

    images, labels = next(tiny_data(n=20, seed=3, batch=20).as_numpy_iterator())
    result = zoo.train(tiny_model, Batches(), (images, labels), epochs=1, seed=0,
                       strategy=strategy, reduce_lr=False, verbose=0)
    out["mirrored_arrays_val_loss"] = float(result.history["val_loss"].iloc[-1])
    # A last training batch of 1 example over 2 replicas: one line before training (it was
    # TensorFlow's traceback mid-epoch).
    try:
        zoo.train(tiny_model, tiny_data(n=33, batch=16), epochs=1, strategy=strategy,
                  verbose=0)
    except ValueError as err:
        out["mirrored_small_batch"] = str(err)
    # BatchNorm on the images: each replica's moving statistics followed its half of the
    # batches (the checkpoints held the first's). Averaged, the means are one device's.
    def on_images():
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.BatchNormalization(name="bn")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
        return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))

    statistics = {}
    for name, chosen in (("mirrored", strategy), ("one_device", "auto")):
        result = zoo.train(on_images, tiny_data(n=64, batch=16), val, epochs=2, seed=0,
                           strategy=chosen, reduce_lr=False, verbose=0)
        bn = result.model.get_layer("bn")
        local = getattr(bn.moving_mean.value, "values", None) or [bn.moving_mean.value]
        copy = on_images()  # one device's, with the weights a checkpoint holds
        copy.set_weights(result.model.get_weights())
        statistics[name] = {
            "copies": [np.asarray(c).tolist() for c in local],
            "val_loss": float(result.history["val_loss"].iloc[-1]),
            "copy_val_nll": log_loss(val_labels, copy.predict(val, verbose=0),
                                     labels=range(4))}
    out["mirrored_batch_norm"] = statistics
    # XLA under a strategy on one device split in parts: one line (TensorFlow's error mid-fit)
    try:
        zoo.train(tiny_model, tiny_data(n=64, batch=16), epochs=1, strategy=strategy,
                  jit_compile=True, verbose=0)
    except ValueError as err:
        out["mirrored_jit_compile"] = str(err)
    result = zoo.train(tiny_model, tiny_data(n=32, batch=16), epochs=1, strategy=strategy,
                       jit_compile="auto", reduce_lr=False, verbose=0)  # (Keras: no XLA here)
    out["mirrored_jit_compile_auto"] = result.model.jit_compile
    # A last batch of 1 no check can see (after a filter): the empty replica's BatchNorm
    # made every weight after it NaN, with a finite loss and no word.
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = zoo.train(on_images, tiny_data(n=33, batch=16).filter(lambda x, y: True),
                           epochs=1, strategy=strategy, reduce_lr=False, verbose=0)
    out["mirrored_empty_replica"] = [result.diverged, [str(w.message) for w in caught]]
    # zoo train's --batch-size below the replicas: one line before the statistics pass.
    import contextlib, io, os
    from zoo import cli
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["train", "--model", "resnet20", "--image-size", "8", "--batch-size",
                         "1", "--strategy", "mirrored", "--run-dir", "small_batch_run"])
    out["cli_small_batch"] = [code, err.getvalue(), os.path.exists("small_batch_run")]
    out["mirrored_prelu_slopes"] = {
        "count": len(slopes), "copies": min(len(c) for c in copies),
        "largest_difference": max(float(np.abs(c[0] - c[-1]).max()) for c in copies),
        "largest_change": max(float(np.abs(np.asarray(c) - PRELU_INIT).max()) for c in copies)}
    print(json.dumps(out))
    """
)


def run(directory):
    """Lays out a user's folder in ``directory`` (a ``data/raw`` folder of their own, a
    model with LRN, MeanSubtraction and PaperSGD, a geometric ensemble, an input batch),
    runs :data:`CODE` there and returns its answers, with ``"expected"``: this process's
    predictions of the same model and ensemble."""
    import data
    import ensembles
    import zoo

    os.makedirs(os.path.join(directory, "data", "raw"))
    with open(os.path.join(directory, "data", "raw", "notes.txt"), "w") as f:
        f.write("the user's files")
    inputs = data.MeanSubtraction([120.0, 115.0, 100.0])(keras.Input((67, 67, 3)))
    model = zoo.alexnet(input_tensor=inputs, classes=3, width=8)
    model.compile(zoo.PaperSGD(0.01), "sparse_categorical_crossentropy")
    model.save(os.path.join(directory, "model.keras"))
    ensemble = ensembles.Ensemble([zoo.alexnet(input_shape=(67, 67, 3), classes=3, width=8)
                                   for _ in range(2)], combine="geometric")
    ensemble.save(os.path.join(directory, "ensemble.keras"))
    x = np.random.default_rng(0).uniform(0, 255, (2, 67, 67, 3)).astype("float32")
    np.save(os.path.join(directory, "x.npy"), x)
    out = last_json_line(run_python(CODE, cwd=str(directory), args=[REPO]).stdout)
    out["directory"] = str(directory)
    out["expected"] = {"model": model.predict(x, verbose=0).tolist(),
                       "ensemble": ensemble.predict(x, verbose=0).tolist()}
    return out
