"""Pretrained weights from the files users have: torchvision state dicts (safetensors, a
documented byte format this test writes itself) checked against a NumPy forward pass with
torchvision's semantics; the named-weights cache and its download; ImageNet names
and preprocessing."""

import contextlib
import functools
import hashlib
import json
import os
import re
import struct
import sys
import warnings

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import zoo
from tests.helpers import in_torch_process, run_python
from zoo import pretrained
from safeio.checks import UserError
from zoo.pretrained import torchvision as torchvision_layout

ALL = pytest.mark.all_backends  # backend-agnostic: `make test` runs these under JAX too

# --- a torchvision-layout state dict with random values, written as safetensors -----------

BLOCKS = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3))}


def torchvision_state_dict(depth, classes=1000, seed=0):
    """The keys and shapes of torchvision.models.resnet{depth}().state_dict(), random: a
    new dict of read-only arrays, made once per arguments (several tests use the same)."""
    return dict(_torchvision_state_dict(depth, classes, seed))


@functools.lru_cache(maxsize=None)
def _torchvision_state_dict(depth, classes, seed):
    rng = np.random.default_rng(seed)
    state = {}

    def conv(key, out, cin, k):
        state[f"{key}.weight"] = rng.normal(0, np.sqrt(2 / (cin * k * k)), (out, cin, k, k))

    def bn(key, c):
        state[f"{key}.weight"] = rng.uniform(0.5, 1.5, c)
        state[f"{key}.bias"] = rng.normal(0, 0.1, c)
        state[f"{key}.running_mean"] = rng.normal(0, 0.1, c)
        state[f"{key}.running_var"] = rng.uniform(0.5, 2.0, c)
        state[f"{key}.num_batches_tracked"] = np.array(7.0)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    kind, sizes = BLOCKS[depth]
    expansion = 1 if kind == "basic" else 4
    cin = 64
    for stage, blocks in enumerate(sizes):
        width = 64 * 2**stage
        for b in range(blocks):
            key = f"layer{stage + 1}.{b}"
            if kind == "basic":
                conv(f"{key}.conv1", width, cin, 3)
                bn(f"{key}.bn1", width)
                conv(f"{key}.conv2", width, width, 3)
                bn(f"{key}.bn2", width)
            else:
                conv(f"{key}.conv1", width, cin, 1)
                bn(f"{key}.bn1", width)
                conv(f"{key}.conv2", width, width, 3)
                bn(f"{key}.bn2", width)
                conv(f"{key}.conv3", width * 4, width, 1)
                bn(f"{key}.bn3", width * 4)
            stride = 2 if stage > 0 and b == 0 else 1
            if stride != 1 or cin != width * expansion:
                conv(f"{key}.downsample.0", width * expansion, cin, 1)
                bn(f"{key}.downsample.1", width * expansion)
            cin = width * expansion
    state["fc.weight"] = rng.normal(0, 0.05, (classes, cin))
    state["fc.bias"] = rng.normal(0, 0.05, classes)
    return read_only({k: v.astype("float32") for k, v in state.items()})


def read_only(state):
    for value in state.values():
        value.flags.writeable = False
    return state


def write_safetensors(path, tensors):
    """The safetensors format: an 8-byte little-endian header length, a JSON header of
    dtype, shape and byte offsets per tensor, then the raw little-endian data."""
    header, arrays, offset = {}, [], 0
    for key, value in tensors.items():
        data = np.ascontiguousarray(value, "<f4")
        header[key] = {"dtype": "F32", "shape": list(value.shape),
                       "data_offsets": [offset, offset + data.nbytes]}
        arrays.append(data)
        offset += data.nbytes
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded)
        for data in arrays:  # written as they are: no copy of a 100 MB state dict
            f.write(memoryview(data).cast("B"))


# --- torchvision's forward pass in NumPy, NCHW, from the state dict alone ------------------

def _conv(x, w, stride=1, pad=0):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[-1]
    windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", windows, w, optimize=True)


def _bn(x, s, key):
    scale = s[f"{key}.weight"] / np.sqrt(s[f"{key}.running_var"] + 1e-5)
    shift = s[f"{key}.bias"] - s[f"{key}.running_mean"] * scale
    return x * scale[:, None, None] + shift[:, None, None]


def _maxpool(x):  # nn.MaxPool2d(3, 2, padding=1): -inf padding
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    return sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-1, -2))


def torchvision_forward(s, x, depth):
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    x = _maxpool(relu(_bn(_conv(x, s["conv1.weight"], 2, 3), s, "bn1")))
    kind, sizes = BLOCKS[depth]
    for stage, blocks in enumerate(sizes):
        for b in range(blocks):
            key, stride = f"layer{stage + 1}.{b}", 2 if stage > 0 and b == 0 else 1
            identity = x
            if f"{key}.downsample.0.weight" in s:
                identity = _bn(_conv(x, s[f"{key}.downsample.0.weight"], stride), s,
                               f"{key}.downsample.1")
            if kind == "basic":
                y = relu(_bn(_conv(x, s[f"{key}.conv1.weight"], stride, 1), s, f"{key}.bn1"))
                y = _bn(_conv(y, s[f"{key}.conv2.weight"], 1, 1), s, f"{key}.bn2")
            else:
                y = relu(_bn(_conv(x, s[f"{key}.conv1.weight"]), s, f"{key}.bn1"))
                y = relu(_bn(_conv(y, s[f"{key}.conv2.weight"], stride, 1), s, f"{key}.bn2"))
                y = _bn(_conv(y, s[f"{key}.conv3.weight"]), s, f"{key}.bn3")
            x = relu(y + identity)
    features = x.mean(axis=(2, 3))
    return features @ s["fc.weight"].T + s["fc.bias"]


@pytest.mark.parametrize("depth", [pytest.param(18, marks=ALL), 50])
def test_torchvision_state_dict_gives_torchvisions_logits(tmp_path, depth):
    state = torchvision_state_dict(depth)
    path = str(tmp_path / f"resnet{depth}.safetensors")
    write_safetensors(path, state)
    x = np.random.default_rng(1).normal(size=(2, 3, 45, 38)).astype("float32")  # odd sizes
    expected = torchvision_forward({k: v.astype("float64") for k, v in state.items()},
                                   x.astype("float64"), depth)
    model = zoo.get_model(f"resnet{depth}", weights=path, input_shape=(45, 38, 3),
                          classifier_activation=None)
    logits = model.predict(x.transpose(0, 2, 3, 1), verbose=0)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * scale)
    assert np.abs(expected).std() > 0.1  # not a degenerate reference
    # Converted ImageNet weights name their classes, in torchvision's order.
    names = zoo.class_names(model)
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet tissue"
    # Its inputs are torchvision's normalised pixels, recorded (not images: no view).
    assert zoo.input_pixels(model) == {**pretrained.TORCHVISION, "mean": [0.485, 0.456, 0.406],
                                       "std": [0.229, 0.224, 0.225]}
    assert zoo.resize_mode(model) is None


def _photo(tmp_path, shape=(40, 52, 3)):
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return str(path)


def test_converted_weights_are_refused_images_until_their_preprocessing_is_in_the_model(
        tmp_path, capsys):
    """A ResNet with torchvision weights takes (x / 255 - mean) / std, not images: zoo.predict,
    exports, ensembles and zoo evaluate gave it pixels 0-255 (confident nonsense, with
    ImageNet's class names). They refuse it in one line, through a .keras file too, until
    zoo.pretrained.with_preprocessing puts the transform into it, which then gives the
    model's outputs on keras.applications' own "torch" preprocessing of the same images."""
    import keras

    import data
    import ensembles
    from zoo import cli

    path = str(tmp_path / "resnet18.safetensors")
    write_safetensors(path, torchvision_state_dict(18))
    model = zoo.resnet18(weights=path, input_shape=(32, 32, 3))
    photo = _photo(tmp_path)
    refused = ("{} takes its converted weights' inputs (shorter side to 256, centre crop "
               "224, RGB / 255, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)), not the "
               "images 0-255 {} gives it: put that preprocessing into it first, model = "
               "zoo.pretrained.with_preprocessing(model)")
    with pytest.raises(ValueError, match=re.escape(refused.format("resnet18", "zoo.predict"))):
        zoo.predict(model, [photo])
    served = tmp_path / "served"
    twin = zoo.resnet18(weights=path, input_shape=(32, 32, 3))
    for member in (model, ensembles.Ensemble([model, twin])):
        with pytest.raises(ValueError, match=re.escape(refused.format(member.name, "an export"))):
            ensembles.export(member, str(served))
    assert not served.exists()
    saved = zoo.save_model(model, str(tmp_path / "m.keras"))
    assert zoo.input_pixels(zoo.load_model(saved)) == zoo.input_pixels(model)
    for argv, doing in ((["predict", saved, photo], "zoo.predict"),
                        (["evaluate", saved], "digits's pipeline"),
                        (["export", saved, str(served)], "an export")):  # (named: not "ensemble")
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and refused.format("resnet18", doing) in err[0], err
    # Members needing different inputs cannot share the ensemble's one.
    caffe_like = zoo.saving.set_input_pixels(zoo.resnet18(input_shape=(32, 32, 3)),
                                             pretrained.CAFFE_VGG)
    with pytest.raises(ValueError, match="an ensemble's one input cannot be both"):
        ensembles.Ensemble([model, caffe_like])
    # MC dropout's samplers and a snapshot ensemble's members keep the record: refused too.
    with_dropout = zoo.resnet18(weights=path, input_shape=(32, 32, 3), dropout=0.2)
    snapshot = str(tmp_path / "snapshot-1.weights.h5")
    model.save_weights(snapshot)
    for derived in (ensembles.mc_dropout(with_dropout, samples=2),
                    ensembles.from_snapshots(model, [snapshot])):
        with pytest.raises(ValueError, match=re.escape(refused.format(derived.name,
                                                                      "an export"))):
            ensembles.export(derived, str(served))

    wrapped = pretrained.with_preprocessing(model)
    assert zoo.input_pixels(wrapped) is None and zoo.resize_mode(wrapped) == "crop"
    with pytest.raises(ValueError, match=r"Member 1 \('resnet18_2'\) takes inputs "
                                         r"preprocessed as shorter side to 256, .*, member 0 "
                                         r"\('resnet18_1'\) images: an ensemble's one input "
                                         r"cannot be both"):
        ensembles.Ensemble([wrapped, twin])  # (not `model`: wrapped holds it)
    assert zoo.class_names(wrapped) == zoo.class_names(model)
    images = np.random.default_rng(4).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    expected = model.predict(keras.applications.imagenet_utils.preprocess_input(
        images.copy(), mode="torch"), verbose=0)
    np.testing.assert_allclose(wrapped.predict(images, verbose=0), expected, rtol=1e-4,
                               atol=1e-5)
    reloaded = zoo.load_model(zoo.save_model(wrapped, str(tmp_path / "w.keras")))
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, rtol=1e-4,
                               atol=1e-5)
    table = zoo.predict(reloaded, [photo], top=1)
    view = data.eval_view(np.asarray(__import__("PIL.Image").Image.open(photo)), 32, "crop")
    best = reloaded.predict(view[None], verbose=0)[0]
    assert table["probability_1"][0] == pytest.approx(float(best.max()), rel=1e-4)
    assert table["class_1"][0] == zoo.class_names(model)[int(np.argmax(best))]
    with pytest.raises(ValueError, match="records no converted weights' preprocessing"):
        pretrained.with_preprocessing(wrapped)

    # Fine-tuned on images: the wrapper's new head reads the converted body's features of
    # the normalised pixels, and only it trains; fine-tuned bare, it still takes theirs.
    tuned = zoo.fine_tune(wrapped, classes=3, freeze="all")
    assert zoo.input_pixels(tuned) is None and len(tuned.trainable_weights) == 2
    features = keras.Model(tuned.inputs, tuned.get_layer("predictions").input)
    body = keras.Model(model.inputs, model.get_layer("predictions").input)
    np.testing.assert_allclose(
        features.predict(images, verbose=0),
        body.predict(keras.applications.imagenet_utils.preprocess_input(images.copy(),
                                                                        mode="torch"),
                     verbose=0), rtol=1e-4, atol=1e-3)  # features up to about 20
    assert zoo.input_pixels(zoo.fine_tune(model, classes=3)) == zoo.input_pixels(model)


@ALL
def test_pixel_normalization_is_keras_applications_caffe_and_torch_modes():
    """The layer with_preprocessing puts in front, held against keras.applications'
    preprocess_input: "torch" (torchvision's / 255, mean, std) and "caffe" (BGR minus the
    VGG authors' means), on every backend."""
    import keras

    from data.layers import PixelNormalization

    images = np.random.default_rng(5).uniform(0, 255, (2, 5, 4, 3)).astype("float32")
    for preprocessing, mode in ((pretrained.TORCHVISION, "torch"),
                                (pretrained.CAFFE_VGG, "caffe")):
        layer = PixelNormalization(preprocessing["mean"], preprocessing.get("std"),
                                   preprocessing.get("scale", 1.0),
                                   preprocessing["channel_order"])
        expected = keras.applications.imagenet_utils.preprocess_input(images.copy(), mode=mode)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(images)), expected,
                                   rtol=1e-5, atol=1e-4)
        again = PixelNormalization.from_config(layer.get_config())
        np.testing.assert_allclose(keras.ops.convert_to_numpy(again(images)), expected,
                                   rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="channel_order 'RGB' or 'BGR'; received .*'RGBA'"):
        PixelNormalization([1, 2, 3], channel_order="RGBA")
    with pytest.raises(ValueError, match="takes 3 finite means.*received mean=5"):
        PixelNormalization(5)
    # A std of 0 or NaN divided every pixel into inf or NaN; an infinite mean, into -inf.
    for mean, std in (([0, 0, 0], [0, 1, 1]), ([0, 0, 0], [1, float("nan"), 1]),
                      ([float("inf"), 0, 0], None), ([0, 0, 0], [-1, 1, 1])):
        with pytest.raises(ValueError, match=r"3 finite stds > 0 .*received mean="):
            PixelNormalization(mean, std)
    # uint8 images are cast (1 / 255 as an integer was 0), and under mixed precision the
    # layer stays float32 (bfloat16 rounded 0-255 pixels minus a mean by half a level).
    layer = PixelNormalization(pretrained.TORCHVISION["mean"], pretrained.TORCHVISION["std"],
                               1 / 255)
    pixels = np.random.default_rng(6).integers(0, 256, (1, 3, 3, 3), dtype=np.uint8)
    expected = keras.applications.imagenet_utils.preprocess_input(
        pixels.astype("float32"), mode="torch")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(pixels)), expected, rtol=1e-5,
                               atol=1e-5)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = PixelNormalization(pretrained.CAFFE_VGG["mean"], channel_order="BGR")
        assert mixed.compute_dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path):
    state = torchvision_state_dict(18)
    del state["layer2.0.downsample.1.running_var"]
    state["layer5.0.conv1.weight"] = np.zeros((1, 1, 1, 1), "float32")
    path = str(tmp_path / "bad.safetensors")
    write_safetensors(path, state)
    with pytest.raises(ValueError) as error:
        zoo.resnet18(weights=path, input_shape=(32, 32, 3))
    message = str(error.value)
    assert "layer2.0.downsample.1.running_var" in message and "missing" in message
    assert "layer5.0.conv1.weight" in message and "not in the model" in message
    # A state dict of another class count: shapes named, nothing set.
    write_safetensors(path, torchvision_state_dict(18, classes=10))
    with pytest.raises(ValueError, match=r"fc.weight: file \(10, 512\)"):
        zoo.resnet18(weights=path, input_shape=(32, 32, 3), include_top=True, classes=1000)
    # Of another depth: a ResNet-50's bottlenecks are named, and nothing is set.
    model = zoo.resnet18(input_shape=(32, 32, 3))
    before = [w.copy() for w in model.get_weights()]
    write_safetensors(path, torchvision_state_dict(50))
    with pytest.raises(ValueError) as error:
        torchvision_layout.load_resnet(model, path)
    assert "layer1.0.conv3.weight" in str(error.value) and "not in the model" in str(error.value)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


class _FakeTorch:
    """The two things read_state_dict uses of PyTorch (where torch is not installed, as
    here: the real-library tests skip): ``torch.load`` returning ``loaded`` (or raising
    it), and ``torch.Tensor``."""

    class Tensor:
        def __init__(self, array):
            self.array = np.asarray(array)

        def detach(self):
            return self

        def float(self):
            return _FakeTorch.Tensor(self.array.astype("float32"))

        def numpy(self):
            return self.array

    def __init__(self, loaded):
        self.loaded, self.calls, self.allowed = loaded, [], []
        torch = self

        class Serialization:  # PyTorch 2.5's context of the classes weights_only rebuilds
            @staticmethod
            @contextlib.contextmanager
            def safe_globals(classes):
                torch.allowed.append(classes)
                yield
                torch.allowed.pop()

        self.serialization = Serialization

    def load(self, path, **kwargs):
        self.calls.append({**kwargs, "safe_globals": list(self.allowed)})
        if isinstance(self.loaded, Exception):
            raise self.loaded
        return self.loaded


def test_a_pth_file_is_read_safely_and_its_wrappers_undone(tmp_path, monkeypatch):
    """The .pth path: torch.load with weights_only=True (never the file's code) and the
    argparse.Namespace that training scripts save their arguments in (timm's loader allows
    it; those checkpoints were refused as truncated); training checkpoints' wrappers undone
    (timm's, torchvision's references', PyTorch's tutorial's model_state_dict, which was
    refused), with a warning where an averaged copy is left; DataParallel's and
    torch.compile's prefixes, nested; float64 tensors as float32; and a file torch cannot
    read, a whole model or a non-tensor value each one line naming it. A file this user may
    not read is the OS's error naming it (it was called truncated)."""
    import argparse

    from zoo.pretrained.torchvision import read_state_dict

    path = str(tmp_path / "r.pth")
    (tmp_path / "r.pth").write_bytes(b"read by the fake torch.load")
    weight = np.arange(6, dtype="float64").reshape(2, 3)
    tensor = _FakeTorch.Tensor(weight)
    cases = [({"fc.weight": tensor}, None),
             ({"epoch": 3, "state_dict": {"fc.weight": tensor}}, None),
             ({"model": {"fc.weight": tensor}}, None),
             ({"model_state_dict": {"fc.weight": tensor}, "epoch": 5}, None),
             ({"module._orig_mod.fc.weight": tensor}, None),
             ({"_orig_mod.module.fc.weight": tensor}, None),
             (RuntimeError("PytorchStreamReader failed reading zip archive: failed finding "
                           "central directory. Use weights_only=False"),
              f"{path} is not a readable PyTorch state dict (RuntimeError): it is truncated, "
              "another format, or holds objects other than tensors (a whole model, pickled: "
              "save torch.save(model.state_dict(), path) instead). Nothing was loaded."),
             (["not", "a", "dict"], f"{path} holds a list, not a state dict."),
             ({"fc.weight": _FakeTorch.Tensor(weight), "note": "hello"},
              f"{path} is not a state dict of tensors: key 'note' holds a str.")]
    for loaded, message in cases:
        torch = _FakeTorch(loaded)
        monkeypatch.setitem(sys.modules, "torch", torch)
        if message is None:
            state = read_state_dict(path)
            assert list(state) == ["fc.weight"] and state["fc.weight"].dtype == np.float32
            np.testing.assert_array_equal(state["fc.weight"], weight)
        else:
            with pytest.raises(UserError) as error:
                read_state_dict(path)
            assert str(error.value) == message
            assert "weights_only=False" not in str(error.value)  # never that advice
        assert torch.calls == [{"map_location": "cpu", "weights_only": True,
                                "safe_globals": [[argparse.Namespace]]}]
    # timm's checkpoint keeps the moving average beside the weights: which one is read is
    # said (the raw ones, as timm's validate.py reads them).
    monkeypatch.setitem(sys.modules, "torch", _FakeTorch(
        {"state_dict": {"fc.weight": tensor}, "state_dict_ema": {"fc.weight": tensor}}))
    with pytest.warns(UserWarning, match=re.escape(
            f"{path} holds the raw weights ('state_dict'), read here, and their moving "
            "average ('state_dict_ema'). To read the average instead, save it alone: "
            "torch.save(checkpoint['state_dict_ema'], 'ema.pth').")):
        assert list(read_state_dict(path)) == ["fc.weight"]

    def unreadable(name, mode="r"):
        raise PermissionError(13, "Permission denied", name)

    monkeypatch.setattr(torchvision_layout, "open", unreadable, raising=False)
    for name in ("r.pth", "r.safetensors"):
        with pytest.raises(PermissionError, match=re.escape(
                f"Permission denied: '{tmp_path / name}'")):
            read_state_dict(str(tmp_path / name))


def test_without_the_top_the_classifier_is_left_over_quietly(tmp_path):
    state = torchvision_state_dict(18)
    path = str(tmp_path / "r18.safetensors")
    write_safetensors(path, state)
    features = zoo.resnet18(weights=path, include_top=False, pooling="avg",
                            input_shape=(32, 32, 3))
    x = np.random.default_rng(2).normal(size=(1, 32, 32, 3)).astype("float32")
    full = zoo.resnet18(weights=path, input_shape=(32, 32, 3), classifier_activation=None)
    logits = features.predict(x, verbose=0) @ state["fc.weight"].T + state["fc.bias"]
    np.testing.assert_allclose(logits, full.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


@ALL
def test_a_tensor_of_the_wrong_rank_is_named_with_its_key(tmp_path):
    """A 2-D conv1.weight once escaped as numpy's "axes don't match array"."""
    state = torchvision_state_dict(18)
    state["conv1.weight"] = state["conv1.weight"].reshape(64, -1)
    path = str(tmp_path / "r18.safetensors")
    write_safetensors(path, state)
    with pytest.raises(ValueError, match=r"conv1\.weight: file \(64, 147\), a 4-D tensor "
                                         r"expected for conv1_conv") as error:
        zoo.resnet18(weights=path)
    assert path in str(error.value)


def test_truncated_safetensors_and_pth_without_torch_are_one_clear_error(tmp_path):
    path = str(tmp_path / "r18.safetensors")
    write_safetensors(path, torchvision_state_dict(18))
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        zoo.resnet18(weights=path)
    try:
        import torch  # noqa: F401
    except ImportError:
        pth = tmp_path / "resnet18-f37072fd.pth"
        pth.write_bytes(b"not read")
        with pytest.raises(ImportError, match=r"needs PyTorch.*weights_only=True.*safetensors"):
            zoo.resnet18(weights=str(pth))
    with pytest.raises(ValueError, match="must end in .weights.h5, .caffemodel"):
        zoo.alexnet(weights=path)


def test_bfloat16_safetensors_read_in_a_fresh_process_and_float8_is_one_line(tmp_path):
    """safetensors hands bfloat16 and float8 to NumPy by name: bfloat16 failed before Keras
    (whose ml_dtypes registers it) was imported ("data type 'bfloat16' not understood"), a
    float8 file was an AttributeError naming no file."""
    def write(name, dtype, nbytes):  # the format: a little-endian header length, JSON, data
        header = json.dumps({"w": {"dtype": dtype, "shape": [2],
                                   "data_offsets": [0, nbytes]}}).encode()
        path = tmp_path / name
        path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x80\x3f" * (nbytes // 2))
        return str(path)

    bf16, f8 = write("b.safetensors", "BF16", 4), write("f.safetensors", "F8_E4M3", 2)
    out = run_python(f"from zoo.pretrained.torchvision import read_state_dict\n"
                     f"print(read_state_dict({bf16!r})['w'].tolist())")
    assert out.stdout.strip().splitlines()[-1] == "[1.0, 1.0]"  # 0x3f80: bfloat16's 1.0
    from zoo.pretrained.torchvision import read_state_dict

    with pytest.raises(ValueError, match=rf"{re.escape(f8)} holds tensors of a type NumPy "
                                         r"cannot read"):
        read_state_dict(f8)


# --- named weights: the cache, the published hash, the download ------------------

def test_a_named_pth_file_is_read_through_its_converted_safetensors_without_torch(
        tmp_path, monkeypatch):
    """weights="imagenet" names torchvision's .pth file; without PyTorch the error said to
    convert it, but the named lookup never found the converted file. It reads the
    .safetensors beside the (hash-checked) .pth, with the entry's own preprocessing."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    monkeypatch.setenv("ZOO_WEIGHTS", str(tmp_path))
    payload = b"torchvision's published pickle"
    (tmp_path / "r18-abc.pth").write_bytes(payload)
    entry = pretrained.register_weights(pretrained.WeightsEntry(
        **{**_entry("resnet18.pthtest", "r18-abc.pth", payload).__dict__,
           "preprocessing": {**pretrained.TORCHVISION, "resize": 232}}))
    try:
        with pytest.raises(ImportError, match=r"weights 'resnet18.pthtest': .*r18-abc\.pth is a "
                                              r"PyTorch file.*save_file.*then "
                                              r"weights='pthtest' reads r18-abc\.safetensors"):
            zoo.resnet18(weights="pthtest", input_shape=(32, 32, 3))
        write_safetensors(str(tmp_path / "r18-abc.safetensors"), torchvision_state_dict(18))
        model = zoo.resnet18(weights="pthtest", input_shape=(32, 32, 3))
        np.testing.assert_array_equal(model.get_layer("conv1_conv").kernel.numpy(),
                                      torchvision_state_dict(18)["conv1.weight"]
                                      .transpose(2, 3, 1, 0))
        assert zoo.input_pixels(model)["resize"] == 232  # the entry's, by the file's stem
    finally:
        pretrained._ENTRIES.pop(entry.name)


def _entry(name, file_name, payload, algorithm="sha256", prefix=None):
    digest = hashlib.new(algorithm, payload).hexdigest()
    return pretrained.WeightsEntry(
        name=name, model="resnet18", file_name=file_name, url="https://example.invalid/x",
        file_hash=digest[:prefix] if prefix else digest, hash_algorithm=algorithm,
        format="torchvision", preprocessing=pretrained.TORCHVISION, source="a test")


@ALL
def test_named_weights_come_from_the_cache_checked_by_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_WEIGHTS", str(tmp_path / "cache"))
    # A missing file: which file, where, and where it is published.
    with pytest.raises(FileNotFoundError) as error:
        zoo.resnet50(weights="imagenet")
    message = str(error.value)
    assert "resnet50-0676ba61.pth" in message
    assert os.path.join(str(tmp_path / "cache"), "resnet50-0676ba61.pth") in message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message
    # A directory where the file should be: named as such, not "not found".
    (tmp_path / "cache" / "resnet50-0676ba61.pth").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"resnet50-0676ba61\.pth, but a directory is there"):
        zoo.resnet50(weights="imagenet")
    (tmp_path / "cache" / "resnet50-0676ba61.pth").rmdir()
    with pytest.raises(ValueError, match="no weights named 'tv3_in1k'.*tv2_in1k"):
        zoo.resnet50(weights="tv3_in1k")
    with pytest.raises(ValueError, match="classes=10"):
        zoo.resnet50(weights="imagenet", classes=10)

    # Downloaded from a file:// origin, then loaded by name.
    source = tmp_path / "published" / "r18-test.safetensors"
    source.parent.mkdir()
    state = torchvision_state_dict(18)
    write_safetensors(str(source), state)
    entry = pretrained.register_weights(_entry("resnet18.test", "r18-test.safetensors",
                                               source.read_bytes(), prefix=8))
    try:
        path = pretrained.download(entry.name, origin=source.as_uri())
        assert path == str(tmp_path / "cache" / "r18-test.safetensors")
        assert os.listdir(tmp_path / "cache") == ["r18-test.safetensors"]
        model = zoo.resnet18(weights="test", input_shape=(32, 32, 3))
        np.testing.assert_array_equal(model.get_layer("conv1_conv").get_weights()[0],
                                      state["conv1.weight"].transpose(2, 3, 1, 0))
        # The same name with a wrong hash: refused, and the cache keeps nothing of it.
        pretrained.register_weights(_entry("resnet18.test", "r18-bad.safetensors",
                                           b"another file"))
        with pytest.raises(ValueError, match="did not give resnet18.test's published file"):
            pretrained.download("resnet18.test", origin=source.as_uri())
        assert os.listdir(tmp_path / "cache") == ["r18-test.safetensors"]
        # A hash prefix (as torchvision publishes) is checked after the download.
        pretrained.register_weights(_entry("resnet18.test", "r18-bad.safetensors",
                                           b"another file", prefix=8))
        with pytest.raises(ValueError, match="its sha256 is [0-9a-f]{64}, expected"):
            pretrained.download("resnet18.test", origin=source.as_uri())
        assert os.listdir(tmp_path / "cache") == ["r18-test.safetensors"]
        # A full SHA-256 is checked whole.
        pretrained.register_weights(_entry("resnet18.test", "r18-full.safetensors",
                                           source.read_bytes()))
        pretrained.download("resnet18.test", origin=source.as_uri())
        # An address that cannot be fetched: one line.
        with pytest.raises(ValueError, match=r"Could not fetch resnet18.test from "
                                             r"file:///nonexistent/x \(.*No such file.*\); "
                                             rf"nothing was added to {re.escape(str(tmp_path))}"):
            pretrained.download("resnet18.test", origin="file:///nonexistent/x")
        assert sorted(os.listdir(tmp_path / "cache")) == ["r18-full.safetensors",
                                                          "r18-test.safetensors"]
        # A damaged cache file is named with both hashes, never loaded.
        with open(tmp_path / "cache" / "r18-full.safetensors", "r+b") as f:
            f.seek(100)
            f.write(b"\0\1\2\3")
        with pytest.raises(ValueError, match="damaged or another file"):
            zoo.resnet18(weights="test", input_shape=(32, 32, 3))
    finally:
        pretrained._ENTRIES.pop("resnet18.test")


def test_download_fails_fast_on_a_silent_server_and_names_a_bad_origin(tmp_path, monkeypatch):
    """A server that accepts the connection and never answers held download() for ever
    (Keras' urlretrieve has no timeout); an origin that is no address was reported as the
    wrong file ('unknown url type'), and a hash mismatch named the deleted staging file."""
    import socket

    monkeypatch.setenv("ZOO_WEIGHTS", str(tmp_path / "cache"))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # connections queue, and nothing ever answers them
    port = server.getsockname()[1]
    pretrained.register_weights(_entry("resnet18.test", "r18-test.safetensors", b"x",
                                       prefix=8))
    try:
        with pytest.raises(ValueError, match=r"^Could not fetch resnet18.test from "
                                             r"http://127.0.0.1:\d+/r.safetensors \(no answer "
                                             r"within 0.5 s\); nothing was added to "):
            pretrained.download("resnet18.test", origin=f"http://127.0.0.1:{port}/r.safetensors",
                                timeout=0.5)
        assert os.listdir(tmp_path / "cache") == []  # the staging folder is gone too
        assert socket.getdefaulttimeout() is None  # the process' default never changed
        for origin in ("/tmp/x.safetensors", "ftp//typo", 5):
            with pytest.raises(ValueError, match=r"^`origin` must be an http\(s\)://, ftp:// "
                                                 r"or file:// address \(file:// for a local "
                                                 r"copy: file:///path/to/r18-test.safetensors\)"
                                                 rf"; received {re.escape(repr(origin))}\.$"):
                pretrained.download("resnet18.test", origin=origin)
        cut = socket.socket()  # a server whose connection ends before its Content-Length
        cut.bind(("127.0.0.1", 0))
        cut.listen(1)

        def answer():
            connection, _ = cut.accept()
            connection.recv(4096)
            connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
            connection.close()

        import threading

        threading.Thread(target=answer, daemon=True).start()
        with pytest.raises(ValueError, match=r"\(the connection ended after 10 of 100 bytes\); "
                                             r"nothing was added"):
            pretrained.download("resnet18.test",
                                origin=f"http://127.0.0.1:{cut.getsockname()[1]}/r")
        cut.close()
        pretrained.register_weights(_entry("resnet18.test", "r18-test.safetensors", b"x",
                                           prefix=8).__class__(**{**_entry(
            "resnet18.test", "r18-test.safetensors", b"x", prefix=8).__dict__,
            "url": "s3://bucket/r18-test.safetensors"}))  # (its file put in the cache by hand)
        with pytest.raises(ValueError, match=r"resnet18.test's url is no http\(s\)://, ftp:// "
                                             r"or file:// address \('s3://bucket/"):
            pretrained.download("resnet18.test")
        source = tmp_path / "other.safetensors"
        source.write_bytes(b"another file")
        with pytest.raises(ValueError, match=rf"^{re.escape(source.as_uri())} did not give "
                                             r"resnet18.test's published file: its sha256 is "
                                             r"[0-9a-f]{64}, expected [0-9a-f]{8}\.\.\.; "
                                             r"nothing was added to "):
            pretrained.download("resnet18.test", origin=source.as_uri())
        assert os.listdir(tmp_path / "cache") == []
    finally:
        server.close()
        pretrained._ENTRIES.pop("resnet18.test")


def test_register_weights_refuses_entries_that_could_never_be_used():
    """An entry named without its model's prefix was listed and then 'unknown' (known: an
    empty tag); an unknown model, a hash of no hex digits, and a file name that leaves the
    cache folder were all taken."""
    def entry(**changes):
        return _entry("resnet18.mine", "mine.safetensors", b"x").__class__(**{
            **_entry("resnet18.mine", "mine.safetensors", b"x").__dict__, **changes})

    for changes, message in (
            (dict(name="my_resnet18"), r"`name` must be 'MODEL.TAG' with MODEL its `model` "
                                       r"\(as 'resnet50.tv_in1k'\): resnet18.TAG; received "
                                       r"'my_resnet18'"),
            (dict(name="resnet34.mine"), r"received 'resnet34.mine'"),
            (dict(model="resnet18x", name="resnet18x.mine"), r"resnet18x"),
            (dict(file_hash="zz"), r"`file_hash` must be hex digits, the published sha256 "
                                   r"whole or its first 6 or more; received 'zz'"),
            (dict(file_name="../../etc/x.safetensors"), r"`file_name` must be a file name \(no "
                                                        r"folder\) ending in .safetensors, "),
            (dict(file_name="mine.caffemodel"), r"for format 'torchvision'; received "
                                                r"'mine.caffemodel'")):
        with pytest.raises(ValueError, match=message):
            pretrained.register_weights(entry(**changes))
        assert "resnet18.mine" not in pretrained.list_weights()
    assert "resnet18x.mine" not in pretrained.list_weights()


def test_weights_files_as_users_have_them(tmp_path, monkeypatch):
    """Refused by their suffix: Hugging Face's pytorch_model.bin, timm's .pth.tar, a
    Lightning .ckpt, R18.SAFETENSORS; a DataParallel state dict's 'module.' keys were 94
    missing and 94 unexpected; a folder given as the file was 'must be ... an existing
    local weights file'; torchvision's AlexNet had no word on why it cannot load; and
    state_dict of with_preprocessing's model said it had no torchvision counterpart."""
    state = torchvision_state_dict(18)
    plain = str(tmp_path / "r18.safetensors")
    write_safetensors(plain, state)
    reference = zoo.resnet18(weights=plain, input_shape=(32, 32, 3))
    wrapped = str(tmp_path / "R18.SAFETENSORS")
    write_safetensors(wrapped, {f"module.{k}": v for k, v in state.items()})
    model = zoo.resnet18(weights=wrapped, input_shape=(32, 32, 3))
    for ours, theirs in zip(model.weights, reference.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert pretrained.file_format(wrapped) == "torchvision"
    read = []

    def reader(path):  # the state-dict reader: where each file goes past the suffix check
        read.append(os.path.basename(path))
        raise KeyboardInterrupt

    monkeypatch.setattr(torchvision_layout, "read_state_dict", reader)
    for name in ("pytorch_model.bin", "model_best.pth.tar", "epoch=3.ckpt"):
        (tmp_path / name).write_bytes(b"not read here")
        with pytest.raises(KeyboardInterrupt):
            zoo.resnet18(weights=str(tmp_path / name), input_shape=(32, 32, 3))
    assert read == ["pytorch_model.bin", "model_best.pth.tar", "epoch=3.ckpt"]
    monkeypatch.undo()
    assert torchvision_layout.converted_name("/w/model_best.pth.tar") == \
        "/w/model_best.safetensors"
    assert ('d = next((d[k] for k in ["state_dict", "model", "model_state_dict"] if '
            'isinstance(d.get(k), dict)), d)') in torchvision_layout.conversion_command(
        "epoch=3.ckpt")
    (tmp_path / "folder.safetensors").mkdir()
    with pytest.raises(ValueError, match=r"^`weights` '.*folder.safetensors' is a directory: "
                                         r"give the weights file \(.weights.h5, "):
        zoo.resnet18(weights=str(tmp_path / "folder.safetensors"))
    os.symlink(tmp_path / "gone.safetensors", tmp_path / "link.safetensors")
    with pytest.raises(ValueError, match=r"link.safetensors' is a link to nothing"):
        zoo.resnet18(weights=str(tmp_path / "link.safetensors"))
    (tmp_path / "alexnet-owt-7be5be79.pth").write_bytes(b"torchvision's")
    with pytest.raises(ValueError, match=r"must end in .weights.h5, .caffemodel; received "
                                         r"'.*alexnet-owt-7be5be79.pth' \(torchvision's alexnet "
                                         r"is another network: .* bvlc_alexnet.caffemodel"):
        zoo.alexnet(weights=str(tmp_path / "alexnet-owt-7be5be79.pth"))
    served = pretrained.with_preprocessing(reference)
    assert torchvision_layout.state_dict(served).keys() == torchvision_layout.state_dict(
        reference).keys()
    np.testing.assert_array_equal(torchvision_layout.state_dict(served)["fc.weight"],
                                  state["fc.weight"].astype("float32"))


# --- ImageNet names and preprocessing ------------------------------------------------------

def _tfds_imagenet_ids():
    """The 1,000 ILSVRC-2012 WordNet ids in label order, as TensorFlow Datasets ships them
    (its imagenet2012 builder's labels.txt): a reference this project did not write."""
    import tensorflow_datasets as tfds

    path = os.path.join(os.path.dirname(tfds.__file__), "datasets", "imagenet2012",
                        "labels.txt")
    with open(path, encoding="utf-8") as f:
        return f.read().split()


@ALL
def test_decode_predictions_follows_keras_applications(monkeypatch):
    """Against Keras' own decode_predictions, offline: its class index (which Keras would
    download) is given TFDS's ImageNet ids in label order; the ids, their order and the
    scores must agree (the readable names are torchvision's, Keras' differ in spelling)."""
    keras = pytest.importorskip("keras")
    from keras.src.applications import imagenet_utils

    ids = _tfds_imagenet_ids()
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX",
                        {str(i): [wnid, wnid] for i, wnid in enumerate(ids)})
    probs = np.random.default_rng(0).dirichlet(np.ones(1000), size=3).astype("float32")
    ours = zoo.decode_predictions(probs, top=5)
    theirs = keras.applications.imagenet_utils.decode_predictions(probs, top=5)
    assert [[(c[0], c[2]) for c in row] for row in ours] == \
        [[(c[0], c[2]) for c in row] for row in theirs]
    for row, p in zip(ours, probs):
        assert [score for *_, score in row] == sorted(p, reverse=True)[:5]
    classes = zoo.pretrained.imagenet_classes()
    assert [wnid for wnid, _ in classes] == ids  # the ILSVRC-2012 index order
    assert classes[0] == ("n01440764", "tench") and classes[999][0] == "n15075141"
    with pytest.raises(ValueError, match=r"\(batch, 1000\); received shape \(2, 10\)"):
        zoo.decode_predictions(np.zeros((2, 10)))
    # Ragged rows and strings were NumPy's "inhomogeneous shape" and a ufunc's TypeError.
    with pytest.raises(ValueError, match=r"decode_predictions expects ImageNet predictions: "
                                         r"an array of numbers of one shape; received list"):
        zoo.decode_predictions([[0.1] * 1000, [0.2] * 999])
    with pytest.raises(ValueError, match=r"received ndarray \(an array of <U1\)"):
        zoo.decode_predictions(np.array([["a"] * 1000]))
    # (its own dtype: float64 scores are not rounded to float32, as keras.applications')
    assert zoo.decode_predictions(np.full((1, 1000), 0.1), top=1)[0][0][2] == 0.1
    # A mixed_bfloat16 model's predict (ml_dtypes' bfloat16) was "an array of bfloat16".
    import ml_dtypes

    half = np.zeros((1, 1000), ml_dtypes.bfloat16)
    half[0, 3] = 1
    assert zoo.decode_predictions(half, top=1)[0][0] == (*classes[3], 1.0)
    for images in ([np.zeros((4, 4, 3)), np.zeros((5, 5, 3))], ["photo.png"]):
        with pytest.raises(ValueError, match=r"preprocess_input expects RGB images with "
                                             r"values 0-255: an array of numbers of one shape"):
            zoo.preprocess_input(images, "resnet50.tv_in1k")
    # Images already divided by 255 gave near-constant inputs without a word; a black image
    # (all zeros) and one of 0-255 are not warned of.
    with pytest.warns(UserWarning, match=r"preprocess_input takes images with values 0-255; "
                                         r"these are all in \[0, 1\] \(largest 0\.5\)"):
        zoo.preprocess_input(np.full((224, 224, 3), 0.5), "resnet50.tv_in1k")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for image in (np.zeros((224, 224, 3)), np.full((224, 224, 3), 1.5),
                      np.linspace(-1, 1, 224 * 224 * 3).reshape(224, 224, 3)):  # ([-1, 1])
            zoo.preprocess_input(image, "resnet50.tv_in1k")


@ALL
def test_preprocess_input_is_each_publishers_transform():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    # torchvision: ToTensor then Normalize.
    expected = (images / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(zoo.preprocess_input(images, "resnet50.tv_in1k"), expected,
                               rtol=1e-5, atol=1e-5)
    # Caffe: BGR minus the mean, as keras.applications' "caffe" mode (another mean).
    caffe = zoo.preprocess_input(images, "googlenet.bvlc")
    keras_caffe = keras.applications.imagenet_utils.preprocess_input(images.copy(), mode="caffe")
    np.testing.assert_allclose(caffe - keras_caffe,
                               np.broadcast_to(np.array([103.939, 116.779, 123.68])
                                               - np.array([104.0, 117.0, 123.0]), caffe.shape),
                               atol=1e-3)
    # Geometry: shorter side to 256 (232 for tv2), then the centre crop.
    assert zoo.preprocess_input(images[0, :200], "alexnet.bvlc").shape == (227, 227, 3)
    flat = np.full((1, 300, 500, 3), 128.0, "float32")
    out = zoo.preprocess_input(flat, "resnet50.tv2_in1k")
    assert out.shape == (1, 224, 224, 3)
    np.testing.assert_allclose(out[0, 0, 0], (128 / 255 - np.array([0.485, 0.456, 0.406]))
                               / np.array([0.229, 0.224, 0.225]), rtol=1e-4)
    with pytest.raises(ValueError, match="weights entry name"):
        zoo.preprocess_input(images, "imagenet")


@ALL
@pytest.mark.parametrize("height, width, resized, offsets", [
    # torchvision's Resize(256): long side int(256 * 451 / 300) = int(384.85) = 384 (rounding
    # gave 385); CenterCrop(224): int(round((384 - 224) / 2)) = 80.
    (300, 451, (256, 384), (16, 80)),
    # int(256 * 640 / 427) = int(383.70) = 383 (rounding gave 384), and round(79.5) = 80
    # (Python rounds half to even; the floor gave 79).
    (427, 640, (256, 383), (16, 80)),
    (640, 427, (383, 256), (80, 16)),
])
def test_preprocess_input_resizes_and_crops_where_torchvision_does(height, width, resized,
                                                                   offsets):
    """The sizes and offsets of torchvision's Resize and CenterCrop (their code: truncate
    the long side, round the crop offset), on photo sizes where the other rules differ by
    a pixel (up to 87 grey levels on real photos)."""
    keras = pytest.importorskip("keras")
    from zoo.pretrained import imagenet

    image = np.random.default_rng(1).uniform(0, 255, (height, width, 3)).astype("float32")
    assert imagenet.resized_size(height, width, 256) == resized
    assert imagenet.crop_offsets(*resized, 224) == offsets
    scaled = keras.ops.convert_to_numpy(keras.ops.image.resize(
        image[None], resized, interpolation="bilinear", antialias=True))[0]
    top, left = offsets
    expected = ((scaled[top:top + 224, left:left + 224] / 255 - np.array([0.485, 0.456, 0.406]))
                / np.array([0.229, 0.224, 0.225]))
    np.testing.assert_allclose(zoo.preprocess_input(image, "resnet50.tv_in1k"), expected,
                               rtol=1e-5, atol=1e-5)
    # Caffe's data layer floors its offsets: a 256x256 warp, then (14, 14) for 227.
    assert imagenet.crop_offsets(256, 256, 227, caffe=True) == (14, 14)


@ALL
def test_the_caffe_warp_is_opencvs_resize_as_convert_imageset_made_the_databases():
    """Caffe's ImageNet databases hold each photo warped to 256x256 by OpenCV's
    ``cv::resize`` (``convert_imageset``: bilinear, no antialiasing), then the data layer
    crops its centre; the warp was antialiased as torchvision's resize is (up to 77 grey
    levels from OpenCV's on sklearn's sample photos). Within OpenCV's rounding to uint8."""
    cv2 = pytest.importorskip("cv2")
    from sklearn.datasets import load_sample_images

    mean = np.array(zoo.pretrained.CAFFE_ALEXNET["mean"])  # (BGR; held in the test above)
    for photo in load_sample_images().images:  # 427x640, RGB
        warped = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_LINEAR)
        caffe = warped[14:241, 14:241, ::-1] - mean
        ours = zoo.preprocess_input(photo.astype("float32"), "alexnet.bvlc")
        np.testing.assert_allclose(ours, caffe, atol=0.76)
        assert np.abs(ours - caffe).mean() < 0.25


# --- fine-tuning from converted weights ----------------------------------------------------

@pytest.mark.slow  # a science test on the digits (9 s); fine_tune's mechanics: test_recipe.py
def test_fine_tuning_converted_weights_on_the_digits(tmp_path):
    """Convert, then zoo.fine_tune(model, classes=10, freeze="all") and train: the
    converted body (BatchNorm statistics included) stays exactly as loaded, the new head
    learns the digits."""
    import data
    import keras

    state = torchvision_state_dict(18, seed=3)
    path = str(tmp_path / "resnet18.safetensors")
    write_safetensors(path, state)
    base = zoo.resnet18(weights=path, input_shape=(32, 32, 3))
    # Logits and a from_logits loss train on every backend. (A softmax head also trains here
    # under TensorFlow, whose cross-entropy reads the logits behind the softmax; JAX and
    # torch clip the probabilities, and on these large random features the head saturates:
    # 0.23 validation accuracy under JAX against 0.82 with logits.)
    tuned = zoo.fine_tune(base, classes=10, freeze="all", classifier_activation=None)
    assert [w.name for w in tuned.trainable_weights] == ["kernel", "bias"]  # the new head
    (x, y), (vx, vy) = data.digits_arrays("train", 32), data.digits_arrays("validation", 32)
    # The weights' own normalisation (torchvision's mean and std), at the digits' 32x32.
    mean, std = np.array(pretrained.TORCHVISION["mean"]), np.array(pretrained.TORCHVISION["std"])
    x, vx = ((a / 255.0 - mean) / std for a in (x, vx))
    tuned.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    before = tuned.evaluate(vx, vy, verbose=0)[1]
    tuned.fit(x, y, epochs=4, batch_size=64, verbose=0)
    after = tuned.evaluate(vx, vy, verbose=0)[1]
    assert after > max(0.5, before + 0.3), (before, after)
    bn = tuned.get_layer("conv3_block1_2_bn").get_weights()
    np.testing.assert_array_equal(bn[2], state["layer2.0.bn2.running_mean"])
    np.testing.assert_array_equal(tuned.get_layer("conv1_conv").get_weights()[0],
                                  state["conv1.weight"].transpose(2, 3, 1, 0))


def test_a_zoo_resnet_written_in_torchvisions_layout_loads_back_the_same(tmp_path):
    model = zoo.resnet50(input_shape=(64, 64, 3), classes=1000, drop_path_rate=0.0)
    for layer in model.layers:  # non-trivial BatchNorm statistics
        if layer.name.endswith("_bn"):
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, np.full_like(gamma, 0.1), np.full_like(gamma, 2.0)])
    state = torchvision_layout.state_dict(model)
    assert len(state) == 267  # torchvision's 320 keys less the 53 num_batches_tracked
    assert state["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    path = str(tmp_path / "r50.safetensors")
    write_safetensors(path, state)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(zoo.resnet50(weights=path, input_shape=(64, 64, 3)).predict(
        x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-7)


# --- where PyTorch and torchvision are installed (the GPU machines): the real thing ----------

@pytest.mark.parametrize("library", ["torchvision", "timm"])
@pytest.mark.parametrize("depth", [18, 50])
def test_real_torchvision_resnets_convert_to_the_same_logits(tmp_path, depth, library):
    """torchvision.models.resnetN (or timm's resnetN.tv_in1k) with random weights and
    BatchNorm statistics, saved as .safetensors and .pth, gives the library's own logits
    through weights=. Skipped where the library is not installed (CI); run it where PyTorch
    is, on any Keras backend (in a process that imports it first: tests.helpers)."""
    in_torch_process(_real_resnet_logits, str(tmp_path), depth, library,
                     libraries=("torch", library))


def _real_resnet_logits(tmp_path, depth, library):
    """The body of test_real_torchvision_resnets_convert_to_the_same_logits, in its own
    process (``library`` imported before TensorFlow)."""
    import importlib
    import pathlib

    import torch
    from safetensors.torch import save_file

    source, tmp_path = importlib.import_module(library), pathlib.Path(tmp_path)
    torch.manual_seed(depth)
    if library == "timm":
        net = source.create_model(f"resnet{depth}.tv_in1k", pretrained=False).eval()
    else:
        net = getattr(source.models, f"resnet{depth}")(weights=None).eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    x = np.random.default_rng(0).normal(size=(2, 3, 61, 75)).astype("float32")
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    save_file(net.state_dict(), str(tmp_path / "net.safetensors"))
    torch.save(net.state_dict(), str(tmp_path / "net.pth"))
    for name in ("net.safetensors", "net.pth"):
        model = zoo.get_model(f"resnet{depth}", weights=str(tmp_path / name),
                              input_shape=(61, 75, 3), classifier_activation=None)
        logits = model.predict(x.transpose(0, 2, 3, 1), verbose=0)
        np.testing.assert_allclose(logits, expected, rtol=1e-4,
                                   atol=1e-4 * np.abs(expected).max(), err_msg=name)


def test_real_training_checkpoints_and_the_conversion_command(tmp_path):
    """The checkpoints users have, as the libraries' training scripts save them: the
    argparse.Namespace of their arguments (torchvision's references, timm's train.py: both
    were refused as truncated), the averaged copy beside the weights, PyTorch's tutorial's
    model_state_dict and torch.compile's prefix; and the printed conversion command, run in
    a shell, on a file name with a space, a quote (it was a SyntaxError) and a character
    outside Unicode's first plane (JSON's two halves of it were no file name). Skipped where
    PyTorch is not installed (CI)."""
    in_torch_process(_real_training_checkpoints, str(tmp_path))


def _real_training_checkpoints(tmp_path):
    import argparse
    import pathlib
    import shlex
    import subprocess

    import torch
    import torchvision

    tmp_path = pathlib.Path(tmp_path)
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype("float32")
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    state, args = net.state_dict(), argparse.Namespace(model="resnet18", lr=0.5)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9).state_dict()
    checkpoints = {
        "references.pth": {"model": state, "optimizer": optimizer, "epoch": 3, "args": args},
        "model_best.pth.tar": {"epoch": 3, "arch": "resnet18", "state_dict": state,
                               "optimizer": optimizer, "args": args,
                               "state_dict_ema": state, "metric": 0.5},
        "bob's r18 \U0001f600.pth": {
            "model_state_dict": {f"_orig_mod.{k}": v for k, v in state.items()}, "epoch": 5}}
    for name, checkpoint in checkpoints.items():
        torch.save(checkpoint, str(tmp_path / name))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = zoo.resnet18(weights=str(tmp_path / name), classes=10,
                                 input_shape=(32, 32, 3), classifier_activation=None)
        said = [str(w.message) for w in caught if "moving average" in str(w.message)]
        assert len(said) == ("state_dict_ema" in checkpoint), (name, said)
        np.testing.assert_allclose(model.predict(x.transpose(0, 2, 3, 1), verbose=0),
                                   expected, rtol=1e-4, atol=1e-4, err_msg=name)
    command = torchvision_layout.conversion_command("bob's r18 \U0001f600.pth")
    assert command.startswith("python -c ")
    subprocess.run(shlex.quote(sys.executable) + command[len("python"):], shell=True,
                   check=True, cwd=tmp_path)
    model = zoo.resnet18(weights=str(tmp_path / "bob's r18 \U0001f600.safetensors"),
                         classes=10, input_shape=(32, 32, 3), classifier_activation=None)
    np.testing.assert_allclose(model.predict(x.transpose(0, 2, 3, 1), verbose=0), expected,
                               rtol=1e-4, atol=1e-4)


def test_zoo_train_from_weights_of_another_classifier_says_where_to_fine_tune(
        tmp_path, capsys, monkeypatch):
    """`zoo train --model-arg weights=FILE` with ImageNet's 1000-class classifier, on the
    digits' 10 classes: the builder's advice (classes=1000, or include_top=False) looped, as
    the command sets both; the line says where fine-tuning is. Weights that do not fit the
    network either keep the builder's line. `~/` in the value is the home's, as in the
    command's other paths (it was taken as a folder named ~)."""
    from zoo import cli

    monkeypatch.setenv("HOME", str(tmp_path))
    write_safetensors(str(tmp_path / "r18.safetensors"), torchvision_state_dict(18))
    run_dir = tmp_path / "run"
    common = ["train", "--model", "resnet18", "--image-size", "32", "--epochs", "1",
              "--run-dir", str(run_dir)]
    assert cli.main([*common, "--model-arg", "weights=~/r18.safetensors"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["zoo train: error: --model-arg weights=" + str(tmp_path / "r18.safetensors")
                   + " holds ImageNet's 1000-class classifier, not one of the dataset's 10 "
                   "classes. zoo train trains the whole network, classifier and all: fine-tune "
                   "the weights in Python instead, zoo.fine_tune(zoo.get_model('resnet18', "
                   "weights=...), classes=10) (the README's Fine-tuning)."], err
    write_safetensors(str(tmp_path / "r50.safetensors"), torchvision_state_dict(50))
    assert cli.main([*common, "--model-arg", "weights=~/r50.safetensors"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'r50.safetensors'} does not fit resnet18" in err[0]
    assert not run_dir.exists()


def test_zoo_train_from_weights_of_another_input_size_keeps_the_builders_line(
        tmp_path, capsys):
    """A VGG's fc1 flattens a map whose size is the input's: weights of 10 classes made at
    64x64 do not fit at 32x32, and their classes are the digits'. The line said to
    fine-tune for another class count; the builder's line (fc1's shapes) says why."""
    from zoo import cli

    vgg = zoo.vgg11(input_shape=(64, 64, 3), classes=10, width=0.0625)
    path = str(tmp_path / "vgg.safetensors")
    write_safetensors(path, torchvision_layout.state_dict(vgg))
    assert cli.main(["train", "--model", "vgg11", "--image-size", "32", "--model-arg",
                     "width=0.0625", "--model-arg", f"weights={path}", "--run-dir",
                     str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path} does not fit vgg11" in err[0], err
    assert "classifier.0.weight" in err[0] and "fine-tune" not in err[0]  # (fc1's key)
