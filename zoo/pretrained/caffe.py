"""The Caffe reference models (``bvlc_alexnet``, ``bvlc_googlenet``) and the VGG authors'
Caffe files (``VGG_ILSVRC_16_layers``, ``VGG_ILSVRC_19_layers``) into the zoo's builders,
read without Caffe.

A ``.caffemodel`` is a serialized ``caffe.NetParameter`` protocol buffer. Only the layer
names and their blobs are needed, so this module declares that subset of ``caffe.proto``
(the field numbers are Caffe's) and parses it with the protobuf package. Both layer formats
are read: the current ``layer`` (field 100) and the V1 ``layers`` (field 2) that older files
such as bvlc_alexnet use.

Caffe kernels are (out, in, height, width) and go to Keras' (height, width, in, out); a
fully connected layer after a flatten also has its inputs reordered, from Caffe's
(channels, height, width) flattening to Keras' (height, width, channels). Caffe's grouped
convolutions (conv2, conv4 and conv5 of AlexNet, ``group: 2``) fill the zoo's towers.
"""

import collections
import functools

import numpy as np

from safeio.checks import UserError
from zoo.pretrained._fit import chw_to_hwc, is_a, set_if_it_fits

_FIELD = {"string": 9, "message": 11, "float": 2, "double": 1, "int32": 5, "int64": 3}


@functools.lru_cache(maxsize=1)
def _net_parameter():
    """The ``NetParameter`` message class of the caffe.proto subset (names and blobs)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="zoo_caffe_subset.proto",
                                               package="zoo_caffe", syntax="proto2")

    def message(name, *fields):
        m = proto.message_type.add(name=name)
        for field_name, number, kind, repeated, type_name in fields:
            f = m.field.add(name=field_name, number=number, type=_FIELD[kind],
                            label=3 if repeated else 1)
            if type_name:
                f.type_name = f".zoo_caffe.{type_name}"
            if repeated and kind != "message" and kind != "string":
                f.options.packed = True
        return m

    # caffe.proto: BlobShape, BlobProto, LayerParameter, V1LayerParameter, NetParameter.
    message("BlobShape", ("dim", 1, "int64", True, None))
    message("BlobProto", ("num", 1, "int32", False, None), ("channels", 2, "int32", False, None),
            ("height", 3, "int32", False, None), ("width", 4, "int32", False, None),
            ("data", 5, "float", True, None), ("shape", 7, "message", False, "BlobShape"),
            ("double_data", 8, "double", True, None))
    message("LayerParameter", ("name", 1, "string", False, None),
            ("type", 2, "string", False, None), ("blobs", 7, "message", True, "BlobProto"))
    message("V1LayerParameter", ("name", 4, "string", False, None),
            ("type", 5, "int32", False, None), ("blobs", 6, "message", True, "BlobProto"))
    message("NetParameter", ("name", 1, "string", False, None),
            ("layers", 2, "message", True, "V1LayerParameter"),
            ("layer", 100, "message", True, "LayerParameter"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("zoo_caffe.NetParameter"))


def _blob(blob):
    values = np.asarray(blob.double_data if len(blob.double_data) else blob.data, "float32")
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:  # the 4-D shape of older files
        shape = (blob.num, blob.channels, blob.height, blob.width)
    if int(np.prod(shape)) != values.size:
        raise UserError(f"a blob of shape {shape} holds {values.size} values")
    return values.reshape(shape)


def _parse(path):
    """The file's ``NetParameter`` (the subset: layer names, types and blobs)."""
    from google.protobuf.message import DecodeError

    net = _net_parameter()()
    try:
        with open(path, "rb") as f:
            net.ParseFromString(f.read())
    except (DecodeError, ValueError) as error:
        raise UserError(f"{path} is not a readable .caffemodel ({error}); it may be "
                        "truncated or another format.") from None
    return net


def _name(layer):
    """A layer's name as text: protobuf gives a name that is not UTF-8 (a damaged file) as
    bytes, which matched nothing and failed beside the others' strings."""
    name = layer.name
    return name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else name


def _blobs(net, path):
    try:
        layers = collections.OrderedDict()
        for layer in (*net.layers, *net.layer):
            if len(layer.blobs):
                name = _name(layer)
                try:
                    layers[name] = [_blob(b) for b in layer.blobs]
                except UserError as error:
                    raise UserError(f"layer {name!r}: {error}") from None
    except ValueError as error:
        raise UserError(f"{path} is not a readable .caffemodel ({error}); it may be "
                        "truncated or another format.") from None
    if not layers:
        raise UserError(f"{path} holds no layer with weights: not a trained .caffemodel.")
    return layers


def read_caffemodel(path):
    """``{layer name: [blob arrays]}`` for the layers of a ``.caffemodel`` that hold blobs,
    in file order.

    Example: ``read_caffemodel("bvlc_alexnet.caffemodel")["conv1"][0].shape`` is
    ``(96, 3, 11, 11)``.
    """
    return _blobs(_parse(path), path)


def _check_not_caffenet(net, path):
    """bvlc_reference_caffenet has bvlc_alexnet's layer names and shapes, but pools conv1
    and conv2 before normalising them: its weights in zoo.alexnet run in another order."""
    names = [_name(layer) for layer in (*net.layers, *net.layer)]
    if {"pool1", "norm1"} <= set(names) and names.index("pool1") < names.index("norm1"):
        raise UserError(
            f"{path} pools before it normalises (pool1, then norm1): it is CaffeNet "
            "(bvlc_reference_caffenet), not bvlc_alexnet, whose order (norm1, then pool1) "
            "zoo.alexnet builds. Its weights would run in another network.")


# The zoo's GoogLeNet names are Caffe's with "/" as "_", but for the classifiers.
_GOOGLENET_HEADS = {"predictions": "loss3/classifier", "aux1_conv": "loss1/conv",
                    "aux1_fc": "loss1/fc", "aux1_predictions": "loss1/classifier",
                    "aux2_conv": "loss2/conv", "aux2_fc": "loss2/fc",
                    "aux2_predictions": "loss2/classifier"}


def caffe_name(layer_name, family):
    """The Caffe layer behind a zoo layer: ``(name, tower, towers)``; tower is the slice of
    the Caffe layer's outputs this zoo layer holds.

    >>> caffe_name("inception_4d_5x5_reduce", "googlenet")
    ('inception_4d/5x5_reduce', 0, 1)
    >>> caffe_name("conv4_tower2", "alexnet")
    ('conv4', 1, 2)
    >>> caffe_name("block3_conv2", "vgg"), caffe_name("fc1", "vgg")
    (('conv3_2', 0, 1), ('fc6', 0, 1))
    """
    if family == "vgg":  # the authors' VGG_ILSVRC_16_layers: conv1_1 ... conv5_3, fc6-fc8
        heads = {"fc1": "fc6", "fc2": "fc7", "predictions": "fc8"}
        if layer_name in heads:
            return heads[layer_name], 0, 1
        block, _, conv = layer_name.partition("_conv")
        return f"conv{block[len('block'):]}_{conv}", 0, 1
    if family == "alexnet":
        base, _, tower = layer_name.partition("_tower")
        base = {"predictions": "fc8"}.get(base, base)
        return base, (int(tower) - 1 if tower else 0), (2 if tower else 1)
    if layer_name in _GOOGLENET_HEADS:
        return _GOOGLENET_HEADS[layer_name], 0, 1
    if layer_name.startswith("inception_"):  # inception_3a_3x3_reduce
        return f"{layer_name[:12]}/{layer_name[13:]}", 0, 1
    first, _, rest = layer_name.partition("_")  # conv2_3x3_reduce
    return (f"{first}/{rest}" if rest else layer_name), 0, 1


# Dense layers that read a feature map through a Flatten: (dense, flatten) layer names.
_AFTER_FLATTEN = {"fc6": "flatten", "fc1": "flatten", "aux1_fc": "aux1_flatten",
                  "aux2_fc": "aux2_flatten"}
# Caffe layers a model without a part may leave over: {the part's layer: name prefixes}.
# Without the top, fc6-fc8 (and a fine-tuned file's renamed fc8_flickr, say); without the
# aux heads, loss1/ and loss2/. A model that has the part uses those layers or names them.
_OPTIONAL = {"alexnet": {"predictions": ("fc6", "fc7", "fc8")},
             "vgg": {"predictions": ("fc6", "fc7", "fc8")},
             "googlenet": {"predictions": ("loss3/",), "aux1_fc": ("loss1/", "loss2/")}}


def _may_be_left_over(model, family):
    """The name prefixes of the file's layers that ``model`` may leave over."""
    names = {layer.name for layer in model.layers}
    return tuple(prefix for part, prefixes in _OPTIONAL[family].items()
                 if part not in names for prefix in prefixes)


def _flatten_input(model, dense):
    """The (height, width, channels) map a Dense layer reads through a Flatten, or None."""
    if dense.name not in _AFTER_FLATTEN:
        return None
    return tuple(model.get_layer(_AFTER_FLATTEN[dense.name]).input.shape[1:])


def _keras_values(layer, blobs, tower, towers, grid):
    """The layer's Keras values from its Caffe blobs (its tower's rows); ``grid``: the
    (height, width, channels) map it reads through a Flatten, or None."""
    weight, bias = blobs[0], blobs[1].reshape(-1)
    if is_a(layer, "Dense") and weight.ndim == 4:  # older files: (1, 1, out, in)
        weight = weight.reshape(weight.shape[-2:])
    rows = weight.shape[0]
    out = slice(tower * rows // towers, (tower + 1) * rows // towers)
    weight, bias = weight[out], bias[out]
    if is_a(layer, "Conv2D"):
        return [weight.transpose(2, 3, 1, 0), bias]
    if grid is not None:  # Caffe flattens (C, H, W); Keras (H, W, C)
        weight = chw_to_hwc(weight, grid)
    return [weight.reshape(weight.shape[0], -1).T, bias]


def _check_alexnet(model):
    if "conv1_tower1" not in {layer.name for layer in model.layers}:
        raise UserError(
            "bvlc_alexnet is the two-tower AlexNet (grouped conv2, conv4, conv5): build it with "
            "zoo.alexnet(weights=...) and leave `towers` out, or towers=2.")


def load(model, path, family):
    """Set a zoo AlexNet (two towers), GoogLeNet or VGG's weights from a ``.caffemodel``.

    Every weight of the model must come from the file and every layer of the file must
    have a place (the classifiers may be left over: the top, or the aux heads, when the
    model has none). Missing, unexpected and misshapen layers are named; nothing is set
    until all fit.
    """
    if family == "alexnet":
        _check_alexnet(model)
    net = _parse(path)
    if family == "alexnet":
        _check_not_caffenet(net, path)
    blobs = _blobs(net, path)
    plan, missing, wrong_shape, used = [], [], [], set()
    for layer in model.layers:
        if not layer.weights:
            continue
        name, tower, towers = caffe_name(layer.name, family)
        if not (is_a(layer, "Conv2D") or is_a(layer, "Dense")):
            missing.append(f"{layer.name} (no Caffe counterpart)")
            continue
        if name not in blobs:
            if name not in missing:  # one entry for a layer split over two towers
                missing.append(name)
            continue
        used.add(name)
        if len(blobs[name]) != 2:  # (a convolution without bias_term, say)
            problem = (f"{name}: {len(blobs[name])} blob(s) in the file, 2 (weights, bias) "
                       "expected")
            if problem not in wrong_shape:
                wrong_shape.append(problem)
            continue
        grid = _flatten_input(model, layer)
        if grid is not None and blobs[name][0].shape[-1] != int(np.prod(grid)):
            height, width, channels = grid
            wrong_shape.append(
                f"{name} weights: file {blobs[name][0].shape} takes "
                f"{blobs[name][0].shape[-1]} inputs, model {layer.name} {height}x{width}x"
                f"{channels} = {height * width * channels} (the map its Flatten gives at "
                "this input size)")
            continue
        try:
            values = _keras_values(layer, blobs[name], tower, towers, grid)
        except ValueError:  # numpy's reshape: the blob cannot take the layer's layout
            wrong_shape.append(f"{name} weights: file {blobs[name][0].shape}, which does not "
                               f"reshape to {layer.name}'s {layer.get_weights()[0].shape}")
            continue
        for weight, value, raw, kind in zip(layer.get_weights(), values, blobs[name],
                                            ("weights", "bias")):
            if weight.shape != value.shape:
                wrong_shape.append(f"{name} {kind}: file {raw.shape} -> {value.shape}, "
                                   f"model {layer.name} {weight.shape}")
        plan.append((layer, values))
    left_over = _may_be_left_over(model, family)
    unexpected = [n for n in blobs if n not in used and not n.startswith(left_over)]
    return set_if_it_fits(
        model, path, plan, missing, unexpected, wrong_shape,
        f"{len(blobs)} layers with weights in the file",
        f"The reference model fits zoo.{family}() at full width with relu (and classes=1000 "
        "with the top).")
