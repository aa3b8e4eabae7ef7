"""VGG: the layout of keras.applications' VGG16, and torchvision's state dicts converted
exactly (a NumPy forward pass with torchvision's semantics, from the state dict alone;
torchvision itself where it is installed)."""

import functools

import numpy as np
import pytest

import zoo
from tests.helpers import in_torch_process
from tests.zoo.test_pretrained import _bn, _conv, read_only, write_safetensors
from zoo.models.vgg import CONVS, FILTERS


def vgg_state_dict(depth, batch_norm, flat_features, seed=0):
    """torchvision.models.vgg{depth}[_bn]().state_dict()'s keys, random values; fc1 takes
    ``flat_features`` inputs (25088 at 224x224; fewer for the small inputs of a test). A new
    dict of read-only float32 arrays, made once per arguments."""
    return dict(_vgg_state_dict(depth, batch_norm, flat_features, seed))


@functools.lru_cache(maxsize=None)
def _vgg_state_dict(depth, batch_norm, flat_features, seed):
    rng = np.random.default_rng(seed)

    def scaled_uniform(std, shape):  # that deviation in a third of a normal draw's time
        return (rng.random(shape, dtype=np.float32) - np.float32(0.5)) * np.float32(
            std * np.sqrt(12))

    state, index, cin = {}, 0, 3
    for convs, filters in zip(CONVS[depth], FILTERS):
        for _ in range(convs):
            state[f"features.{index}.weight"] = scaled_uniform(
                np.sqrt(2 / (9 * cin)), (filters, cin, 3, 3))
            state[f"features.{index}.bias"] = rng.normal(0, 0.1, filters)
            index += 1
            if batch_norm:
                state[f"features.{index}.weight"] = rng.uniform(0.5, 1.5, filters)
                state[f"features.{index}.bias"] = rng.normal(0, 0.1, filters)
                state[f"features.{index}.running_mean"] = rng.normal(0, 0.1, filters)
                state[f"features.{index}.running_var"] = rng.uniform(0.5, 2.0, filters)
                state[f"features.{index}.num_batches_tracked"] = np.array(3.0)
                index += 1
            index += 1  # ReLU
            cin = filters
        index += 1  # MaxPool2d
    for key, (out, inputs) in {"classifier.0": (4096, flat_features),
                               "classifier.3": (4096, 4096),
                               "classifier.6": (1000, 4096)}.items():
        state[f"{key}.weight"] = scaled_uniform(np.sqrt(2 / inputs), (out, inputs))
        state[f"{key}.bias"] = rng.normal(0, 0.1, out)
    return read_only({k: np.asarray(v, "float32") for k, v in state.items()})


def torchvision_vgg_forward(state, x, depth, batch_norm):
    """torchvision's VGG.forward in NumPy (NCHW): conv (padding 1), [BatchNorm], ReLU,
    2x2/2 max-pool; flatten in (C, H, W) order; Linear, ReLU (dropout off), Linear, ReLU,
    Linear. The adaptive average pool is the identity where the map is already the size
    the classifier takes, as here."""
    index = 0
    for convs in CONVS[depth]:
        for _ in range(convs):
            x = _conv(x, state[f"features.{index}.weight"], pad=1) + state[
                f"features.{index}.bias"][:, None, None]
            index += 1
            if batch_norm:
                x = _bn(x, state, f"features.{index}")
                index += 1
            x = np.maximum(x, 0)
            index += 1
        n, c, h, w = x.shape
        x = x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max((3, 5))
        index += 1
    x = x.reshape(len(x), -1)
    for key in ("classifier.0", "classifier.3", "classifier.6"):
        x = x @ state[f"{key}.weight"].T + state[f"{key}.bias"]
        if key != "classifier.6":
            x = np.maximum(x, 0)
    return x


@pytest.mark.parametrize("batch_norm", [False, True], ids=["vgg11", "vgg11_bn"])
def test_a_torchvision_vgg_state_dict_gives_torchvisions_logits(tmp_path, batch_norm):
    """At 64x96 the block-5 map is 2x3x512: fc1's 3072 inputs come in torchvision's
    (C, H, W) order and must be permuted to Keras' (H, W, C); a map that is not square
    catches height and width swapped too."""
    state = vgg_state_dict(11, batch_norm, flat_features=512 * 2 * 3)
    path = str(tmp_path / "vgg.safetensors")
    write_safetensors(path, state)
    x = np.random.default_rng(1).normal(size=(2, 3, 64, 96)).astype("float32")
    expected = torchvision_vgg_forward(state, x.astype("float64"), 11, batch_norm)
    name = "vgg11_bn" if batch_norm else "vgg11"
    model = zoo.get_model(name, weights=path, input_shape=(64, 96, 3),
                          classifier_activation=None)
    logits = np.asarray(model(x.transpose(0, 2, 3, 1), training=False))
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert np.abs(expected).max() > 1  # not vanishing: every layer contributes


def test_a_state_dict_that_does_not_fit_names_every_misfit(tmp_path):
    state = vgg_state_dict(11, False, flat_features=512)
    del state["features.0.bias"]
    state["features.3.weight"] = state["features.3.weight"][:, :32]  # 64 -> 32 inputs
    path = str(tmp_path / "bad.safetensors")
    write_safetensors(path, state)
    with pytest.raises(ValueError, match=r"bad.safetensors does not fit vgg11 .* missing from "
                                         r"the file: features.0.bias; .*shapes differ: "
                                         r"features.3.weight"):
        zoo.vgg11(weights=path, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"in the file but not in the model: features.1.bias"):
        write_safetensors(path, {**vgg_state_dict(11, False, 512), "features.1.bias": np.ones(3)})
        zoo.vgg11(weights=path, input_shape=(32, 32, 3))


def test_without_the_top_the_classifier_is_left_over_and_any_size_loads(tmp_path):
    state = vgg_state_dict(11, True, flat_features=512)  # left over, whatever its size
    path = str(tmp_path / "vgg11_bn.safetensors")
    write_safetensors(path, state)
    x = np.random.default_rng(2).normal(size=(1, 3, 40, 56)).astype("float32")
    model = zoo.vgg11_bn(weights=path, include_top=False, input_shape=(40, 56, 3))
    features = np.asarray(model(x.transpose(0, 2, 3, 1), training=False))
    index, y = 0, x.astype("float64")
    for convs in CONVS[11]:  # the same forward pass, without the classifier
        for _ in range(convs):
            y = _conv(y, state[f"features.{index}.weight"], pad=1) + state[
                f"features.{index}.bias"][:, None, None]
            y = np.maximum(_bn(y, state, f"features.{index + 1}"), 0)
            index += 3
        n, c, h, w = y.shape
        y = y[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max((3, 5))
        index += 1
    np.testing.assert_allclose(features, y.transpose(0, 2, 3, 1), rtol=1e-4,
                               atol=1e-4 * np.abs(y).max())


def test_features_converted_at_another_size_take_fine_tunes_new_head(tmp_path):
    """A torchvision VGG's classifier fits only its own input size (fc1 flattens the block-5
    map): at 32x32, a file made at 64x64 loads without the top, pooled, and fine_tune puts
    the new classifier on the pooled features (it refused a model without 'predictions',
    so converted VGG weights could not be fine-tuned at another size)."""
    import keras
    from scipy.special import softmax

    path = str(tmp_path / "vgg11_bn.safetensors")
    write_safetensors(path, vgg_state_dict(11, True, flat_features=512 * 2 * 2))
    with pytest.raises(ValueError, match=r"shapes differ: classifier\.0\.weight.*at another "
                                         r"size, build it with include_top=False, "
                                         r"pooling='avg' and give it zoo\.fine_tune"):
        zoo.vgg11_bn(weights=path, input_shape=(32, 32, 3))
    base = zoo.vgg11_bn(weights=path, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    tuned = zoo.fine_tune(zoo.pretrained.with_preprocessing(base), classes=3, freeze="all")
    assert tuned.output_shape == (None, 3) and len(tuned.trainable_weights) == 2
    images = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    features = base.predict(keras.applications.imagenet_utils.preprocess_input(
        images.copy(), mode="torch"), verbose=0)  # (torchvision's /255, mean, std)
    kernel, bias = tuned.get_layer("predictions").get_weights()
    np.testing.assert_allclose(tuned.predict(images, verbose=0),
                               softmax(features.astype("float64") @ kernel + bias, axis=1),
                               rtol=1e-4, atol=1e-6)
    # freeze=N counts the normalisation first, then the converted network's layers.
    tuned = zoo.fine_tune(zoo.pretrained.with_preprocessing(base), classes=3, freeze=1)
    assert not tuned.get_layer("pixel_normalization").trainable
    assert base.get_layer("block1_conv1").trainable


def test_layer_names_are_keras_applications_vgg16s():
    model = zoo.vgg16(input_shape=(32, 32, 3), width=0.0625)
    convs = [layer.name for layer in model.layers if "conv" in layer.name]
    assert convs[:3] == ["block1_conv1", "block1_conv2", "block2_conv1"]
    assert convs[-1] == "block5_conv3" and len(convs) == 13
    assert [layer.name for layer in model.layers[-6:]] == [
        "flatten", "fc1", "fc1_drop", "fc2", "fc2_drop", "predictions"]
    assert model.get_layer("fc1_drop").rate == 0.5
    bn = zoo.vgg16_bn(input_shape=(32, 32, 3), width=0.0625)
    assert bn.get_layer("block1_conv1_bn").epsilon == 1e-5
    for depth in (12, [16]):  # (a list raised TypeError: unhashable, from the table)
        with pytest.raises(ValueError, match=r"`depth` of a VGG must be one of \[11, 13, 16, "
                                             r"19\]; received"):
            zoo.vgg(depth)
    with pytest.raises(ValueError, match=r"VGG-16 with include_top=True needs a fixed height"):
        zoo.vgg16(input_shape=(None, None, 3))


# --- where PyTorch and torchvision are installed (the GPU machines): the real thing ----------

@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_real_torchvision_vggs_convert_to_the_same_logits(tmp_path, name):
    """torchvision.models.vgg11[_bn] with random weights and BatchNorm statistics, saved as
    .safetensors, gives torchvision's own logits at 224x224 through weights=. Skipped where
    torchvision is not installed (CI); in a process that imports it first (tests.helpers)."""
    in_torch_process(_real_vgg_logits, str(tmp_path), name)


def _real_vgg_logits(tmp_path, name):
    import pathlib

    import torch
    import torchvision
    from safetensors.torch import save_file

    tmp_path = pathlib.Path(tmp_path)
    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    x = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype("float32")
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    save_file(net.state_dict(), str(tmp_path / "net.safetensors"))
    model = zoo.get_model(name, weights=str(tmp_path / "net.safetensors"),
                          classifier_activation=None)
    logits = model.predict(x.transpose(0, 2, 3, 1), verbose=0)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


# --- the authors' Caffe files (VGG_ILSVRC_16_layers.caffemodel), read by OpenCV too ----------


def vgg_prototxt(shape, depth, width, fc, classes):
    """The authors' deploy.prototxt for configuration ``depth``, every width scaled."""
    from tests.zoo.test_caffe import _conv as caffe_conv, _fc, _net, _pool

    parts, bottom = [], "data"
    for block, (convs, filters) in enumerate(zip(CONVS[depth], FILTERS), start=1):
        for i in range(1, convs + 1):
            parts.append(caffe_conv(f"conv{block}_{i}", bottom, int(filters * width), 3, pad=1))
            bottom = f"conv{block}_{i}"
        parts.append(_pool(f"pool{block}", bottom, 2, 2))
        bottom = f"pool{block}"
    parts += [_fc("fc6", bottom, fc), _fc("fc7", "fc6", fc), _fc("fc8", "fc7", classes, False)]
    return _net(shape, "".join(parts))


@pytest.mark.parametrize("size, grid", [((64, 64), (2, 2)), ((80, 100), (3, 4))])
def test_the_authors_caffe_vgg_gives_opencvs_logits(tmp_path, size, grid):
    """A VGG-11 caffemodel (random blobs, Caffe's layer names, 1/16 of the widths):
    OpenCV's Caffe importer runs the file; the zoo's VGG built from it gives the same logits
    (fc6 reads the block-5 map, flattened (C, H, W) by Caffe). At 80x100 the pools meet
    odd sides (5x25 -> 3x13): Caffe rounds up (a 3x4 block-5 map), torchvision down (2x3)."""
    from tests.zoo.test_caffe import opencv_forward, write_caffemodel

    width, fc, classes = 0.0625, 256, 10
    rng = np.random.default_rng(3)
    layers = {}
    for block, (convs, filters) in enumerate(zip(CONVS[11], FILTERS), start=1):
        cin = 3 if block == 1 else int(FILTERS[block - 2] * width)
        for i in range(1, convs + 1):
            out = int(filters * width)
            layers[f"conv{block}_{i}"] = [rng.normal(0, np.sqrt(2 / (9 * cin)), (out, cin, 3, 3)),
                                          rng.normal(0, 0.1, out)]
            cin = out
    for name, (out, inputs) in {"fc6": (fc, 32 * grid[0] * grid[1]), "fc7": (fc, fc),
                                "fc8": (classes, fc)}.items():
        layers[name] = [rng.normal(0, np.sqrt(2 / inputs), (out, inputs)), rng.normal(0, 0.1, out)]
    path, prototxt = str(tmp_path / "vgg11.caffemodel"), str(tmp_path / "deploy.prototxt")
    write_caffemodel(path, {k: [v.astype("float32") for v in blobs]
                            for k, blobs in layers.items()})
    with open(prototxt, "w") as f:
        f.write(vgg_prototxt((2, 3, *size), 11, width, fc, classes))
    x = rng.uniform(-60, 60, (2, 3, *size))
    (expected,) = opencv_forward(prototxt, path, x, ["fc8"])
    model = zoo.vgg11(weights=path, input_shape=(*size, 3), width=width, classes=classes,
                      classifier_activation=None)
    assert model.get_layer("block5_pool").output.shape[1:3] == grid
    assert model.get_layer("fc1").units == fc
    logits = np.asarray(model(x.transpose(0, 2, 3, 1).astype("float32"), training=False))
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert np.abs(expected).max() > 1


def test_a_zoo_vgg_written_in_torchvisions_layout_loads_back_the_same(tmp_path):
    """state_dict is load_vgg's inverse: the keys torchvision's vgg11_bn has (the test's own
    list), fc1 back in (C, H, W) order, and the same logits after a round trip."""
    model = zoo.vgg11_bn(input_shape=(64, 64, 3), width=1.0, classes=7)
    state = zoo.pretrained.torchvision.state_dict(model)
    reference = vgg_state_dict(11, True, flat_features=512 * 2 * 2)
    assert {k for k in reference if not k.endswith("num_batches_tracked")} - {
        "classifier.6.weight", "classifier.6.bias"} <= set(state)
    assert state["classifier.0.weight"].shape == (4096, 2048)
    path = str(tmp_path / "written.safetensors")
    write_safetensors(path, state)
    loaded = zoo.vgg11_bn(weights=path, input_shape=(64, 64, 3), classes=7)
    x = np.random.default_rng(4).normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)),
                               np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-6)
