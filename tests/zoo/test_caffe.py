"""The Caffe reference models: small synthetic .caffemodel files, written here in protobuf's
documented wire format with caffe.proto's field numbers, loaded into zoo.alexnet and
zoo.googlenet, and checked against a NumPy forward pass with Caffe's semantics (grouped
convolutions, LRN with alpha/n, ceil-mode pooling, (C, H, W) flattening)."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import zoo

ALL = pytest.mark.all_backends  # backend-agnostic: `make test` runs these under JAX too

# --- protobuf wire format (developers.google.com/protocol-buffers/docs/encoding) ----------


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, payload):  # wire type 2: length-delimited
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _blob(array, legacy):
    array = np.asarray(array, "float32")
    data = _field(5, array.astype("<f4").tobytes())  # repeated float data = 5 [packed]
    if legacy:  # num = 1, channels = 2, height = 3, width = 4 (varints), 4-D
        dims = (1,) * (4 - array.ndim) + array.shape
        return b"".join(_varint(i << 3) + _varint(d) for i, d in enumerate(dims, 1)) + data
    shape = _field(1, b"".join(_varint(d) for d in array.shape))  # BlobShape.dim = 1 [packed]
    return _field(7, shape) + data  # BlobProto.shape = 7


def write_caffemodel(path, layers, legacy=False):
    """NetParameter: V1 ``layers = 2`` (name = 4, blobs = 6) when legacy, as bvlc_alexnet,
    else ``layer = 100`` (name = 1, type = 2, blobs = 7), as bvlc_googlenet. Layers without
    blobs (ReLU, pooling) are written too, as Caffe does."""
    out = _field(1, b"synthetic")
    for name, blobs in layers.items():
        if legacy:
            body = _field(4, name.encode()) + _varint(5 << 3) + _varint(4 if blobs else 18)
            body += b"".join(_field(6, _blob(b, legacy)) for b in blobs)
            out += _field(2, body)
        else:
            body = _field(1, name.encode()) + _field(2, b"Convolution" if blobs else b"ReLU")
            body += b"".join(_field(7, _blob(b, legacy)) for b in blobs)
            out += _field(100, body)
    with open(path, "wb") as f:
        f.write(out)


# --- Caffe's layers in NumPy, NCHW ----------------------------------------------------------


def conv(x, w, b, stride=1, pad=0, group=1):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k, cin, cout = w.shape[-1], x.shape[1] // group, w.shape[0] // group
    outs = []
    for g in range(group):
        windows = sliding_window_view(x[:, g * cin:(g + 1) * cin], (k, k), axis=(2, 3))
        windows = windows[:, :, ::stride, ::stride]
        outs.append(np.einsum("nchwij,ocij->nohw", windows, w[g * cout:(g + 1) * cout],
                              optimize=True))
    return np.concatenate(outs, 1) + b[:, None, None]


def relu(x):
    return np.maximum(x, 0)


def lrn(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe's LRN ACROSS_CHANNELS: scale = k + alpha / size * (sum of squares over the
    window of ``size`` channels centred on c, zero-padded at the edges)."""
    half = (size - 1) // 2
    sq = np.pad(x**2, ((0, 0), (half, half), (0, 0), (0, 0)))
    window = sum(sq[:, i:i + x.shape[1]] for i in range(size))
    return x / (k + alpha / size * window) ** beta


def pool(x, kernel, stride, pad=0, mode="max"):
    """Caffe's pooling: output size ceil((H + 2 pad - k) / s) + 1, windows clipped to the
    (padded) image; max ignores what lies outside, average divides by the clipped window."""
    n, c, h, w = x.shape
    oh = -(-(h + 2 * pad - kernel) // stride) + 1
    ow = -(-(w + 2 * pad - kernel) // stride) + 1
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * stride - pad, j * stride - pad
            h1, w1 = min(h0 + kernel, h + pad), min(w0 + kernel, w + pad)
            area = (h1 - h0) * (w1 - w0)
            patch = x[:, :, max(h0, 0):min(h1, h), max(w0, 0):min(w1, w)]
            out[:, :, i, j] = patch.max((2, 3)) if mode == "max" else patch.sum((2, 3)) / area
    return out


def fc(x, w, b):
    return x.reshape(len(x), -1) @ w.T + b  # Caffe flattens (C, H, W)


# --- AlexNet: bvlc_alexnet's graph --------------------------------------------------------


def caffe_alexnet(p, x):
    x = pool(lrn(relu(conv(x, *p["conv1"], stride=4))), 3, 2)
    x = pool(lrn(relu(conv(x, *p["conv2"], pad=2, group=2))), 3, 2)
    x = relu(conv(x, *p["conv3"], pad=1))
    x = relu(conv(x, *p["conv4"], pad=1, group=2))
    x = pool(relu(conv(x, *p["conv5"], pad=1, group=2)), 3, 2)
    x = relu(fc(x, *p["fc6"]))
    x = relu(fc(x, *p["fc7"]))
    return fc(x, *p["fc8"])


def alexnet_params(grid, width, classes, rng):
    def layer(shape):
        fan_in = np.prod(shape[1:])
        return [rng.normal(0, np.sqrt(2 / fan_in), shape), rng.normal(0, 0.1, shape[0])]
    return {"conv1": layer((96, 3, 11, 11)), "conv2": layer((256, 48, 5, 5)),
            "conv3": layer((384, 256, 3, 3)), "conv4": layer((384, 192, 3, 3)),
            "conv5": layer((256, 192, 3, 3)), "fc6": layer((width, 256 * grid[0] * grid[1])),
            "fc7": layer((width, width)), "fc8": layer((classes, width))}


@ALL
@pytest.mark.parametrize("legacy", [True, False])
def test_bvlc_alexnet_gives_caffes_logits(tmp_path, legacy):
    rng = np.random.default_rng(0)
    # 99x131 inputs: a 2x3 pool5 map, so fc6's (C, H, W) order is tested in both directions.
    params = alexnet_params((2, 3), width=32, classes=10, rng=rng)
    path = str(tmp_path / "bvlc_alexnet.caffemodel")
    write_caffemodel(path, {"data": [], **params, "prob": []}, legacy=legacy)
    x = rng.uniform(-60, 60, (2, 3, 99, 131))
    expected = caffe_alexnet(params, x)

    model = zoo.alexnet(weights=path, input_shape=(99, 131, 3), width=32, classes=10,
                        classifier_activation=None)
    assert model.get_layer("norm1").get_config()["bias"] == 1.0  # Caffe's LRN, built for it
    assert model.count_params() == sum(a.size for pair in params.values() for a in pair)
    logits = model.predict(x.transpose(0, 2, 3, 1).astype("float32"), verbose=0)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert expected.std() > 0.1
    # DropConnect's fc6 and fc7 are Dense layers too (they were "no Caffe counterpart"):
    # the same weights, and in inference the same logits.
    connect = zoo.alexnet(weights=path, input_shape=(99, 131, 3), width=32, classes=10,
                          classifier_activation=None, regularizer="dropconnect")
    np.testing.assert_allclose(connect.predict(x.transpose(0, 2, 3, 1).astype("float32"),
                                               verbose=0), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())

    # The paper's per-tower LRN, asked for, normalises conv1 within each tower: it differs
    # from Caffe's only near the towers' edge channels.
    per_tower = zoo.alexnet(weights=path, input_shape=(99, 131, 3), width=32, classes=10,
                            classifier_activation=None, lrn_across_towers=False)
    assert "norm1_tower1" in [layer.name for layer in per_tower.layers]
    other = per_tower.predict(x.transpose(0, 2, 3, 1).astype("float32"), verbose=0)
    assert 0 < np.abs(other - expected).max() < 0.1 * np.abs(expected).max()
    with pytest.raises(ValueError, match="two-tower network.*received {'towers': 1}"):
        zoo.alexnet(weights=path, towers=1)
    # Without LRN it is not the network the weights were trained in (it loaded silently).
    with pytest.raises(ValueError, match=r"trained with LRN after conv1 and conv2; received "
                                         r"norm=None"):
        zoo.alexnet(weights=path, input_shape=(99, 131, 3), width=32, classes=10, norm=None)


@ALL
def test_caffemodel_problems_are_named(tmp_path):
    rng = np.random.default_rng(0)
    params = alexnet_params((1, 1), width=16, classes=10, rng=rng)
    params["conv6"] = params.pop("conv5")
    path = str(tmp_path / "renamed.caffemodel")
    write_caffemodel(path, params)
    with pytest.raises(ValueError) as error:
        zoo.alexnet(weights=path, input_shape=(67, 67, 3), width=16, classes=10)
    assert "missing from the file: conv5;" in str(error.value)  # once, not once per tower
    assert "in the file but not in the model: conv6" in str(error.value)
    # An fc6 whose inputs do not fill pool5's (C, H, W) grid: named, not numpy's reshape
    # error ("cannot reshape array of size 1600 into shape (256,1,1)"); nor, for a file of
    # another input size (a 2x2 pool5), a made-up shape: "file (16, 1024) -> (64, 256)".
    params["conv5"] = params.pop("conv6")
    fc6_bias = params["fc6"][1]
    for inputs in (100, 4 * 256):
        params["fc6"] = (rng.normal(size=(16, inputs)).astype("float32"), fc6_bias)
        write_caffemodel(path, params)
        with pytest.raises(ValueError, match=rf"fc6 weights: file \(16, {inputs}\) takes "
                                             rf"{inputs} inputs, model fc6 1x1x256 = 256 \(the "
                                             rf"map its Flatten gives at this input size\)"):
            zoo.alexnet(weights=path, input_shape=(67, 67, 3), width=16, classes=10)
    params["fc6"] = (rng.normal(size=(16, 256)).astype("float32"), fc6_bias)
    # A layer named as a classifier begins (Caffe's fine-tuning example renames fc8 to
    # fc8_flickr) was taken for a classifier the model may leave over, though it had its
    # top: a file with both loaded, and one with fc8_flickr alone named only fc8 missing.
    write_caffemodel(path, {**params, "fc8_flickr": params["fc8"]})
    with pytest.raises(ValueError, match=r"in the file but not in the model: fc8_flickr\."):
        zoo.alexnet(weights=path, input_shape=(67, 67, 3), width=16, classes=10)
    flickr = {**params, "fc8_flickr": params["fc8"]}
    del flickr["fc8"]
    write_caffemodel(path, flickr)
    with pytest.raises(ValueError, match=r"missing from the file: fc8; in the file but not "
                                         r"in the model: fc8_flickr\."):
        zoo.alexnet(weights=path, input_shape=(67, 67, 3), width=16, classes=10)
    zoo.alexnet(weights=path, input_shape=(67, 67, 3), include_top=False)  # the body alone
    with open(path, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ValueError, match="not a readable .caffemodel"):
        zoo.alexnet(weights=path, input_shape=(67, 67, 3), width=16, classes=10)
    # CaffeNet: bvlc_alexnet's names and shapes, pooling before normalising. It loaded, and
    # ran in bvlc_alexnet's order.
    params = alexnet_params((1, 1), width=16, classes=10, rng=rng)
    caffenet = {"data": [], "conv1": params["conv1"], "relu1": [], "pool1": [], "norm1": [],
                **{k: v for k, v in params.items() if k != "conv1"}}
    write_caffemodel(path, caffenet)
    with pytest.raises(ValueError, match=r"pools before it normalises \(pool1, then norm1\): "
                                         r"it is CaffeNet"):
        zoo.alexnet(weights=path, input_shape=(67, 67, 3), width=16, classes=10)
    del caffenet["pool1"]
    caffenet["pool1"] = []  # now after norm1, as in bvlc_alexnet: it loads
    write_caffemodel(path, caffenet)
    zoo.alexnet(weights=path, input_shape=(67, 67, 3), width=16, classes=10)
    # A damaged byte in a layer name (not UTF-8): protobuf gave bytes, and a TypeError
    # followed (bytes beside str); now a name that matches nothing, shown escaped.
    raw = open(path, "rb").read()
    at = raw.index(b"conv3")
    with open(path, "wb") as f:
        f.write(raw[:at] + b"conv\xb3" + raw[at + 5:])
    with pytest.raises(ValueError, match=r"missing from the file: conv3; in the file but not "
                                         r"in the model: conv\\xb3"):
        zoo.alexnet(weights=path, input_shape=(67, 67, 3), width=16, classes=10)
    # A convolution without its bias (bias_term: false): it was "missing from the file:
    # conv3; in the file but not in the model: conv3".
    params["conv3"] = params["conv3"][:1]
    write_caffemodel(path, params)
    with pytest.raises(ValueError) as error:
        zoo.alexnet(weights=path, input_shape=(67, 67, 3), width=16, classes=10)
    assert "conv3: 1 blob(s) in the file, 2 (weights, bias) expected" in str(error.value)
    assert "missing" not in str(error.value) and "not in the model" not in str(error.value)


# --- GoogLeNet: bvlc_googlenet's graph ------------------------------------------------------

INCEPTION = {"3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
             "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
             "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
             "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128),
             "5b": (384, 192, 384, 48, 128, 128)}  # the paper's table 1


def googlenet_params(scale, classes, rng):
    s = lambda f: max(1, int(round(f * scale)))  # noqa: E731
    p = {}

    def layer(name, out, cin, k=None):
        shape = (out, cin, k, k) if k else (out, cin)
        p[name] = [rng.normal(0, np.sqrt(2 / np.prod(shape[1:])), shape),
                   rng.normal(0, 0.1, out)]

    layer("conv1/7x7_s2", s(64), 3, 7)
    layer("conv2/3x3_reduce", s(64), s(64), 1)
    layer("conv2/3x3", s(192), s(64), 3)
    cin = s(192)
    for stage, (f1, f3r, f3, f5r, f5, fp) in INCEPTION.items():
        m = f"inception_{stage}"
        layer(f"{m}/1x1", s(f1), cin, 1)
        layer(f"{m}/3x3_reduce", s(f3r), cin, 1)
        layer(f"{m}/3x3", s(f3), s(f3r), 3)
        layer(f"{m}/5x5_reduce", s(f5r), cin, 1)
        layer(f"{m}/5x5", s(f5), s(f5r), 5)
        layer(f"{m}/pool_proj", s(fp), cin, 1)
        if stage in ("4a", "4d"):
            head = "loss1" if stage == "4a" else "loss2"
            layer(f"{head}/conv", s(128), s(f1) + s(f3) + s(f5) + s(fp), 1)
            layer(f"{head}/fc", s(1024), s(128) * 4)  # a 2x2 map at 128x128 inputs
            layer(f"{head}/classifier", classes, s(1024))
        cin = s(f1) + s(f3) + s(f5) + s(fp)
    layer("loss3/classifier", classes, cin)
    return p


def caffe_googlenet(p, x):
    c = lambda name, v, pad=0, stride=1: relu(conv(v, *p[name], stride, pad))  # noqa: E731
    x = lrn(pool(c("conv1/7x7_s2", x, 3, 2), 3, 2))
    x = pool(lrn(c("conv2/3x3", c("conv2/3x3_reduce", x), 1)), 3, 2)
    aux = []
    for stage in INCEPTION:
        if stage in ("4a", "5a"):
            x = pool(x, 3, 2)
        m = f"inception_{stage}"
        x = np.concatenate([c(f"{m}/1x1", x),
                            c(f"{m}/3x3", c(f"{m}/3x3_reduce", x), 1),
                            c(f"{m}/5x5", c(f"{m}/5x5_reduce", x), 2),
                            c(f"{m}/pool_proj", pool(x, 3, 1, pad=1))], 1)
        if stage in ("4a", "4d"):
            head = "loss1" if stage == "4a" else "loss2"
            y = c(f"{head}/conv", pool(x, 5, 3, mode="ave"))
            aux.append(fc(relu(fc(y, *p[f"{head}/fc"])), *p[f"{head}/classifier"]))
    main = fc(x.mean((2, 3)), *p["loss3/classifier"])  # pool5/7x7_s1 on the 7x7 map at 224
    return main, aux


# TensorFlow only in make test: JAX takes a minute to compile GoogLeNet on a CPU.
def test_bvlc_googlenet_gives_caffes_logits_aux_heads_included(tmp_path):
    rng = np.random.default_rng(0)
    params = googlenet_params(0.25, classes=10, rng=rng)
    path = str(tmp_path / "bvlc_googlenet.caffemodel")
    write_caffemodel(path, params)
    x = rng.uniform(-60, 60, (2, 3, 128, 128))
    main, aux = caffe_googlenet(params, x)
    images = x.transpose(0, 2, 3, 1).astype("float32")

    kwargs = dict(input_shape=(128, 128, 3), width=0.25, classes=10, classifier_activation=None)
    model = zoo.googlenet(weights=path, **kwargs)  # the aux heads' layers are left over
    logits = model.predict(images, verbose=0)
    np.testing.assert_allclose(logits, main, rtol=1e-4, atol=1e-4 * np.abs(main).max())
    assert main.std() > 0.1

    # With the aux heads: the main head is the same, and the heads are Caffe's loss1/loss2.
    import keras

    with_aux = zoo.googlenet(weights=path, aux_logits=True, **kwargs)
    np.testing.assert_allclose(with_aux.predict(images, verbose=0), main, rtol=1e-4,
                               atol=1e-4 * np.abs(main).max())
    heads = keras.Model(with_aux.inputs, with_aux.outputs)(images, training=False)
    for ours, theirs in zip(heads[1:], aux):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(ours), theirs, rtol=1e-4,
                                   atol=1e-4 * np.abs(theirs).max())


# --- OpenCV's Caffe importer: a Caffe implementation this project did not write ------------


def _layer(name, kind, bottom, top, params=""):
    return (f'layer {{ name: "{name}" type: "{kind}" bottom: "{bottom}" top: "{top}" '
            f"{params} }}\n")


def _conv(name, bottom, out, kernel, stride=1, pad=0, group=1):
    text = _layer(name, "Convolution", bottom, name,
                  f"convolution_param {{ num_output: {out} kernel_size: {kernel} "
                  f"stride: {stride} pad: {pad} group: {group} }}")
    return text + _layer(f"{name}/relu", "ReLU", name, name)


def _pool(name, bottom, kernel, stride, pad=0, mode="MAX", global_pooling=False):
    size = "global_pooling: true" if global_pooling else \
        f"kernel_size: {kernel} stride: {stride} pad: {pad}"
    return _layer(name, "Pooling", bottom, name, f"pooling_param {{ pool: {mode} {size} }}")


def _lrn(name, bottom):
    return _layer(name, "LRN", bottom, name,
                  "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }")


def _fc(name, bottom, out, relu=True):
    text = _layer(name, "InnerProduct", bottom, name,
                  f"inner_product_param {{ num_output: {out} }}")
    return text + (_layer(f"{name}/relu", "ReLU", name, name) if relu else "")


def _net(shape, body):
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'name: "net"\ninput: "data"\ninput_shape {{ {dims} }}\n' + body


def alexnet_prototxt(shape, width, classes):
    """bvlc_alexnet's deploy.prototxt, with fc6/fc7 of ``width`` units."""
    return _net(shape, "".join([
        _conv("conv1", "data", 96, 11, stride=4), _lrn("norm1", "conv1"),
        _pool("pool1", "norm1", 3, 2),
        _conv("conv2", "pool1", 256, 5, pad=2, group=2), _lrn("norm2", "conv2"),
        _pool("pool2", "norm2", 3, 2),
        _conv("conv3", "pool2", 384, 3, pad=1), _conv("conv4", "conv3", 384, 3, pad=1, group=2),
        _conv("conv5", "conv4", 256, 3, pad=1, group=2), _pool("pool5", "conv5", 3, 2),
        _fc("fc6", "pool5", width), _fc("fc7", "fc6", width), _fc("fc8", "fc7", classes, False)]))


def googlenet_prototxt(shape, scale, classes, aux=True):
    """bvlc_googlenet's deploy.prototxt with every width scaled, its final 7x7 average
    pool global (the same at 224x224), and the aux heads (train_val's, without dropout)."""
    s = lambda f: max(1, int(round(f * scale)))  # noqa: E731
    parts = [_conv("conv1/7x7_s2", "data", s(64), 7, stride=2, pad=3),
             _pool("pool1/3x3_s2", "conv1/7x7_s2", 3, 2), _lrn("pool1/norm1", "pool1/3x3_s2"),
             _conv("conv2/3x3_reduce", "pool1/norm1", s(64), 1),
             _conv("conv2/3x3", "conv2/3x3_reduce", s(192), 3, pad=1),
             _lrn("conv2/norm2", "conv2/3x3"), _pool("pool2/3x3_s2", "conv2/norm2", 3, 2)]
    x = "pool2/3x3_s2"
    for stage, (f1, f3r, f3, f5r, f5, fp) in INCEPTION.items():
        if stage in ("4a", "5a"):
            pool = f"pool{int(stage[0]) - 1}/3x3_s2"
            parts.append(_pool(pool, x, 3, 2))
            x = pool
        m = f"inception_{stage}"
        parts += [_conv(f"{m}/1x1", x, s(f1), 1), _conv(f"{m}/3x3_reduce", x, s(f3r), 1),
                  _conv(f"{m}/3x3", f"{m}/3x3_reduce", s(f3), 3, pad=1),
                  _conv(f"{m}/5x5_reduce", x, s(f5r), 1),
                  _conv(f"{m}/5x5", f"{m}/5x5_reduce", s(f5), 5, pad=2),
                  _pool(f"{m}/pool", x, 3, 1, pad=1), _conv(f"{m}/pool_proj", f"{m}/pool", s(fp), 1),
                  f'layer {{ name: "{m}/output" type: "Concat" bottom: "{m}/1x1" '
                  f'bottom: "{m}/3x3" bottom: "{m}/5x5" bottom: "{m}/pool_proj" '
                  f'top: "{m}/output" }}\n']
        x = f"{m}/output"
        if aux and stage in ("4a", "4d"):
            head = "loss1" if stage == "4a" else "loss2"
            parts += [_pool(f"{head}/ave_pool", x, 5, 3, mode="AVE"),
                      _conv(f"{head}/conv", f"{head}/ave_pool", s(128), 1),
                      _fc(f"{head}/fc", f"{head}/conv", s(1024)),
                      _fc(f"{head}/classifier", f"{head}/fc", classes, False)]
    parts += [_pool("pool5/7x7_s1", x, 0, 0, mode="AVE", global_pooling=True),
              _fc("loss3/classifier", "pool5/7x7_s1", classes, False)]
    return _net(shape, "".join(parts))


def opencv_forward(prototxt, caffemodel, x, outputs):
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip("this OpenCV has no Caffe importer (OpenCV 5 dropped it)")
    net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
    net.setInput(np.ascontiguousarray(x, "float32"))
    return [np.asarray(o, "float64").reshape(len(x), -1) for o in net.forward(outputs)]


@ALL
@pytest.mark.parametrize("size, grid", [((99, 131), (2, 3)), ((103, 224), (3, 6))])
def test_opencv_runs_the_caffemodel_alexnet_reads_the_same(tmp_path, size, grid):
    """At 103x224 Caffe's max-pools round up where the paper's arithmetic rounds down
    (conv1's 24x54 pools to 12x27, not 11x26; pool5 is 3x6, not 2x5): Caffe weights build
    them so, and at 224x224 the top fits (pool5 6x6)."""
    rng = np.random.default_rng(5)
    params = alexnet_params(grid, width=32, classes=10, rng=rng)
    path, prototxt = str(tmp_path / "alexnet.caffemodel"), str(tmp_path / "deploy.prototxt")
    write_caffemodel(path, params, legacy=True)
    with open(prototxt, "w") as f:
        f.write(alexnet_prototxt((2, 3, *size), width=32, classes=10))
    x = rng.uniform(-60, 60, (2, 3, *size))
    (expected,) = opencv_forward(prototxt, path, x, ["fc8"])
    model = zoo.alexnet(weights=path, input_shape=(*size, 3), width=32, classes=10,
                        classifier_activation=None)
    assert model.get_layer("pool5_tower1").output.shape[1:3] == grid
    logits = model.predict(x.transpose(0, 2, 3, 1).astype("float32"), verbose=0)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_allclose(caffe_alexnet(params, x), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())  # and the NumPy reference


def test_opencv_runs_the_caffemodel_googlenet_reads_the_same(tmp_path):
    rng = np.random.default_rng(6)
    params = googlenet_params(0.25, classes=10, rng=rng)
    path, prototxt = str(tmp_path / "googlenet.caffemodel"), str(tmp_path / "deploy.prototxt")
    write_caffemodel(path, params)
    with open(prototxt, "w") as f:
        f.write(googlenet_prototxt((2, 3, 128, 128), 0.25, classes=10))
    x = rng.uniform(-60, 60, (2, 3, 128, 128))
    main, aux1, aux2 = opencv_forward(prototxt, path, x, ["loss3/classifier",
                                                          "loss1/classifier", "loss2/classifier"])
    import keras

    model = zoo.googlenet(weights=path, aux_logits=True, input_shape=(128, 128, 3), width=0.25,
                          classes=10, classifier_activation=None)
    ours = keras.Model(model.inputs, model.outputs)(x.transpose(0, 2, 3, 1).astype("float32"),
                                                    training=False)
    for got, want in zip(ours, (main, aux1, aux2)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-4,
                                   atol=1e-4 * np.abs(want).max())


def test_opencv_runs_googlenet_at_odd_sizes_pooling_in_caffes_ceil_mode(tmp_path):
    """Caffe's max-pools round up without padding: 25 -> 12 where Keras' "same" gave 13,
    and the features and logits then differ. At 99x115 the 3x3/2 pools see 50x58,
    25x29 (odd: no window past the edge), 12x14 and 6x7 (a side of each kind). The aux
    heads' 5x5/3 average pools round up too (6x7 -> 2x2, where "valid" gave 1x1 and the
    file's loss1/fc did not fit), their last windows averaging what lies inside the map."""
    rng = np.random.default_rng(7)
    params = googlenet_params(0.25, classes=10, rng=rng)
    path, prototxt = str(tmp_path / "googlenet.caffemodel"), str(tmp_path / "deploy.prototxt")
    write_caffemodel(path, params)
    with open(prototxt, "w") as f:
        f.write(googlenet_prototxt((2, 3, 99, 115), 0.25, classes=10))
    x = rng.uniform(-60, 60, (2, 3, 99, 115))
    expected, aux1, aux2 = opencv_forward(prototxt, path, x, [
        "loss3/classifier", "loss1/classifier", "loss2/classifier"])
    for got, want in zip(caffe_googlenet(params, x)[1], (aux1, aux2)):  # NumPy's Caffe
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    import keras

    with_aux = zoo.googlenet(weights=path, aux_logits=True, input_shape=(99, 115, 3),
                             width=0.25, classes=10, classifier_activation=None)
    assert with_aux.get_layer("aux1_pool").output.shape[1:3] == (2, 2)
    heads = keras.Model(with_aux.inputs, with_aux.outputs)(
        x.transpose(0, 2, 3, 1).astype("float32"), training=False)
    for got, want in zip(heads, (expected, aux1, aux2)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-4,
                                   atol=1e-4 * np.abs(want).max())
    model = zoo.googlenet(weights=path, input_shape=(99, 115, 3), width=0.25, classes=10,
                          classifier_activation=None)
    assert model.get_layer("pool4_3x3_s2").output.shape[1:3] == (3, 3)  # Caffe's, not (3, 4)
    logits = model.predict(x.transpose(0, 2, 3, 1).astype("float32"), verbose=0)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert expected.std() > 0.1
    # Built for any size, the same pools: "same" for sizes unknown shifted the windows of
    # odd sides (logits off by 15 of 208).
    anysize = zoo.googlenet(weights=path, input_shape=(None, None, 3), width=0.25, classes=10,
                            classifier_activation=None)
    logits = anysize.predict(x.transpose(0, 2, 3, 1).astype("float32"), verbose=0)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
