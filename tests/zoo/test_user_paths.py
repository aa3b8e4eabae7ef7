"""What users hit in the zoo's Python API beyond the happy path: names that look like
paths, arguments that cannot apply, damaged or foreign weight files, other label forms."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import save_file

import zoo
from zoo import pretrained
from zoo.pretrained import torchvision as tv
from tests.helpers import tiny_data, tiny_model

SMALL = dict(input_shape=(32, 32, 3), width=0.125, classes=4)


def test_named_weights_stay_names_whatever_the_working_directory_holds(tmp_path, monkeypatch):
    """An `imagenet/` data folder beside a notebook does not turn "imagenet" into a path;
    a model's `name` does not change which weights it looks up."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imagenet").mkdir()
    monkeypatch.setenv("ZOO_WEIGHTS", str(tmp_path / "cache"))
    assert pretrained.is_named("imagenet")
    with pytest.raises(FileNotFoundError, match=r"'resnet18.tv_in1k' need the file"):
        zoo.resnet18(weights="imagenet")
    with pytest.raises(FileNotFoundError, match=r"'vgg11.tv_in1k' need the file"):
        zoo.vgg11(weights="imagenet", name="backbone")


def test_arguments_that_cannot_apply_are_one_line():
    with pytest.raises(ValueError, match=r"GoogLeNet with aux_logits=True needs a fixed "
                                         r"height and width.*\(None, None, 3\)"):
        zoo.googlenet(aux_logits=True, input_shape=(None, None, 3), width=0.125)
    with pytest.raises(ValueError, match=r"Model arguments \['classes'\] cannot change the "
                                         r"built model 'tiny'"):
        zoo.train(tiny_model(), tiny_data(), epochs=1, model_kwargs={"classes": 3}, verbose=0)
    model = tiny_model()
    zoo.set_class_names(model, (f"c{i}" for i in range(4)))  # a generator, read once
    assert zoo.class_names(model) == ["c0", "c1", "c2", "c3"]


def test_numpy_integer_counts_build_as_python_ones():
    """classes=labels.max() + 1 is a NumPy integer, which Keras' Dense refuses."""
    labels = np.array([0, 2, 1])
    for model in (zoo.resnet20(classes=labels.max() + 1, input_shape=(8, 8, 3)),
                  zoo.alexnet(classes=np.int64(3), width=np.int64(16),
                              input_shape=(67, 67, 3))):
        assert model.output_shape == (None, 3)


def test_a_damaged_or_foreign_keras_weights_file_is_one_line_naming_it(tmp_path):
    good = tmp_path / "good.weights.h5"
    zoo.resnet18(**SMALL).save_weights(good)
    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match=rf"{truncated} is not a readable \.weights\.h5 file"):
        zoo.resnet18(weights=str(truncated), **SMALL)
    with pytest.raises(ValueError, match=rf"{good} does not hold the weights of this resnet34"):
        zoo.resnet34(weights=str(good), **SMALL)
    # Another class count: the cause is said (the message stopped at Keras' colon), its
    # values are not, and Keras' warnings of the failed load stay out.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError) as error:
            zoo.resnet18(weights=str(good), **{**SMALL, "classes": SMALL["classes"] + 1})
    message = str(error.value)
    assert "\n" not in message and "Target variable" not in message
    assert (f"variable.shape=(64, {SMALL['classes'] + 1}), Received: value.shape=(64, "
            f"{SMALL['classes']})") in message


def test_torchvision_errors_name_only_the_keys_at_fault(tmp_path):
    """A missing key is named, and its layer's other keys are not called foreign."""
    state = tv.state_dict(zoo.resnet18(**SMALL))
    del state["layer2.0.downsample.1.running_var"]
    path = str(tmp_path / "missing.safetensors")
    save_file(state, path)
    with pytest.raises(ValueError, match="layer2.0.downsample.1.running_var") as error:
        zoo.resnet18(weights=path, **SMALL)
    assert "not in the model" not in str(error.value)


def test_state_dict_refuses_models_without_a_torchvision_layout():
    with pytest.raises(ValueError, match=r"alexnet has layers with weights but no "
                                         r"torchvision counterpart \(conv1, "):
        tv.state_dict(zoo.alexnet(input_shape=(67, 67, 3), width=16, classes=4))
    with pytest.raises(ValueError, match=r"no torchvision counterpart \(conv1_prelu"):
        tv.state_dict(zoo.resnet18(activation="prelu", **SMALL))


def test_a_categorical_loss_gets_top_k_of_one_hot_labels():
    """With one-hot labels and categorical cross-entropy, the default top-1/top-5 are
    Keras' categorical ones (the sparse ones fail inside the graph), and score as the
    sparse ones do on the same labels."""
    images, labels = next(iter(tiny_data(n=32, batch=32)))
    one_hot = tf.data.Dataset.from_tensor_slices(
        (images, tf.one_hot(labels, 4))).batch(8)
    model = zoo.compile_model(tiny_model(), loss="categorical_crossentropy")
    model.fit(one_hot, epochs=1, verbose=0)
    ours = model.evaluate(one_hot, return_dict=True, verbose=0)
    sparse = zoo.compile_model(model).evaluate(tiny_data(n=32, batch=8), return_dict=True,
                                               verbose=0)
    assert ours["top1_accuracy"] == pytest.approx(sparse["top1_accuracy"])


def test_a_logits_model_with_a_probability_loss_is_said_before_training():
    def logits():
        return zoo.resnet20(width=0.25, classes=4, input_shape=(8, 8, 3),
                            classifier_activation=None)

    with pytest.warns(UserWarning, match=r"outputs logits .*from_logits=True"):
        zoo.train(logits, tiny_data(), epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*outputs logits")
        zoo.train(logits, tiny_data(), epochs=1, verbose=0, loss=(
            keras.losses.SparseCategoricalCrossentropy(from_logits=True)))


def test_state_dict_round_trip_is_unchanged(tmp_path):
    """(The refusals above leave the ResNets and VGGs converting as before.)"""
    model = zoo.resnet18(**SMALL)
    path = str(tmp_path / "r18.safetensors")
    save_file(tv.state_dict(model), path)
    loaded = zoo.resnet18(weights=path, **SMALL)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_a_snapshot_runs_checkpoint_says_what_zoo_load_model_lacks(tmp_path, monkeypatch):
    """A `zoo train --snapshots` checkpoint holds the CyclicCosine schedule in its optimizer:
    where ensembles is not imported, zoo.load_model said "ensemble objects" of one ResNet.
    (Keras' error there is simulated: this process has registered ensembles' objects.)"""
    from zoo import saving

    path = tmp_path / "last.keras"
    zoo.resnet20(classes=3, input_shape=(16, 16, 3)).save(path)

    def unknown(*args, **kwargs):
        raise TypeError("Could not locate class 'CyclicCosine'. Make sure custom classes are "
                        "decorated ... {'module': None, 'class_name': 'CyclicCosine', "
                        "'registered_name': 'ensembles>CyclicCosine'}")

    monkeypatch.setattr(saving.keras.models, "load_model", unknown)
    with pytest.raises(ValueError, match=r"it holds ensemble objects \(the snapshot schedule "
                                         r"CyclicCosine, in its optimizer\); use "
                                         r"ensembles.load\(.*\), or zoo.load_model\(\.\.\., "
                                         r"compile=False\)\."):
        zoo.load_model(path)
