"""VGG-11/13/16/19, with and without BatchNorm (Simonyan and Zisserman, "Very deep
convolutional networks for large-scale image recognition", 2014; configurations A, B, D
and E of their table 1).

Stacks of 3x3 convolutions (stride 1, padding 1, ReLU), a 2x2/2 max-pool after each of the
five blocks, then two fully connected layers of 4096 units with dropout 0.5 and the
classifier. The ``_bn`` variants put a BatchNorm between every convolution and its ReLU,
as torchvision's do. Layer names are keras.applications' VGG16's (``block1_conv1``, ...,
``block5_pool``, ``flatten``, ``fc1``, ``fc2``, ``predictions``); BatchNorm layers are
``block1_conv1_bn``, ..., dropout ``fc1_drop`` and ``fc2_drop``. At 224x224 and 1,000
classes the trainable parameters equal torchvision's, so torchvision's state dicts load
exactly (:mod:`zoo.pretrained`).
"""

import inspect

from keras import layers

from safeio.checks import UserError, check_bool, check_choice
from zoo import _builder
from zoo.layers import max_pool
from zoo.registry import register_model

PAPER = "Simonyan, Zisserman 2014"
# Convolutions per block, for the depths of table 1 (A, B, D, E); 64, 128, 256, 512, 512
# filters in blocks 1 to 5.
CONVS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
FILTERS = (64, 128, 256, 512, 512)
MIN_INPUT_SIZE = 32  # five 2x2/2 pools: 32x32 ends at 1x1


def _conv(x, filters, name, batch_norm, style):
    init, activation = style
    x = layers.Conv2D(filters, 3, padding="same",
                      activation=None if batch_norm else _builder.fused(activation),
                      kernel_initializer=_builder.initializer(init, he_mode="fan_out"),
                      name=name)(x)
    if batch_norm:  # torchvision's BatchNorm2d: eps 1e-5, momentum 0.1
        x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_bn")(x)
        return _builder.activate(x, activation, name, fused_relu=False)
    return _builder.activate(x, activation, name)


def _fc(x, units, name, dropout, style):
    x = layers.Dense(units, activation=_builder.fused(style[1]),
                     kernel_initializer=_builder.initializer("paper"), name=name)(x)
    x = _builder.activate(x, style[1], name)
    return layers.Dropout(dropout, name=f"{name}_drop")(x)


def vgg(
    depth,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    dropout=0.5,
    width=1.0,
    kernel_initializer="he",
    activation="relu",
    ceil_mode=None,
    batch_norm=False,
):
    """Build VGG of ``depth`` 11, 13, 16 or 19, with BatchNorm if ``batch_norm``.

    Args:
        depth: 11, 13, 16 or 19 weighted layers (configurations A, B, D, E).
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation: as in ``keras.applications``; default input
            ``(224, 224, 3)``, any size without the top; with the top, height and width are
            fixed (fc1 flattens the block-5 map: 7x7x512 at 224). ``weights``: None, a local
            ``.weights.h5``, a torchvision state dict (``.safetensors``, or ``.pth`` with
            PyTorch), the authors' Caffe file (``VGG_ILSVRC_16_layers.caffemodel``), or
            ``"imagenet"`` (torchvision's file, from the local cache; see
            :mod:`zoo.pretrained`).
        name: model name, default ``f"vgg{depth}"`` (``f"vgg{depth}_bn"``).
        dropout: dropout after fc1 and fc2 (0.5 in the paper).
        width: multiplier of every layer's width (64 ... 512 filters, 4096 units at 1.0).
        kernel_initializer: ``"he"`` (default: He et al.'s normal, fan-out, as torchvision
            initialises VGG), ``"glorot"``, ``"xavier"`` (Caffe's filler) or ``"paper"``
            (N(0, 0.01)) for the convolutions; fc layers draw from N(0, 0.01), as torchvision's.
        activation: ``"relu"`` (paper), ``"leaky_relu"``, ``"prelu"`` or ``"elu"``.
        ceil_mode: whether the max-pools round their output size up, as Caffe's do (the
            authors' files; torchvision's ``ceil_mode=True``), or down (torchvision's
            VGGs). None: up for Caffe weights, else down. The two agree where every
            block's map has an even side (224x224); at 100x100, block 5 pools to 4x4 up
            and 3x3 down.
        batch_norm: a BatchNorm after every convolution (torchvision's ``vgg16_bn``).

    Example:

    >>> model = vgg(16, input_shape=(32, 32, 3), classes=10, width=0.125)
    >>> model.get_layer("block5_pool").output.shape
    (None, 1, 1, 64)
    """
    check_choice(depth, sorted(CONVS), "depth", what=" of a VGG")
    check_bool(batch_norm, "batch_norm")  # (before it names the weights' model)
    registered = f"vgg{depth}{'_bn' if batch_norm else ''}"  # its weights' model, whatever `name`
    model_name = name or registered
    weights, classes = _builder.check_common_args(weights, pooling, classes, include_top,
                                                  family="vgg", model=registered,
                                                  classifier_activation=classifier_activation)
    _builder.check_style(kernel_initializer, activation, weights)
    _builder.check_dropout(dropout)
    ceil_mode = _builder.caffe_default(ceil_mode, weights, "ceil_mode")
    _builder.check_multiplier(width)
    style = (kernel_initializer, activation)
    image, inputs = _builder.resolve_input(
        input_tensor, input_shape, default_shape=(224, 224, 3), min_size=MIN_INPUT_SIZE,
        model_name=f"VGG-{depth}", include_top=include_top, fixed_size=include_top)
    w = lambda units: max(1, int(round(units * width)))  # noqa: E731
    x = image
    for block, (convs, filters) in enumerate(zip(CONVS[depth], FILTERS), start=1):
        for i in range(1, convs + 1):
            x = _conv(x, w(filters), f"block{block}_conv{i}", batch_norm, style)
        x = max_pool(x, 2, 2, f"block{block}_pool", ceil_mode=ceil_mode)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = _fc(x, w(4096), "fc1", dropout, style)
        x = _fc(x, w(4096), "fc2", dropout, style)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions",
                         kernel_initializer=_builder.initializer("paper"),
                         dtype=_builder.classifier_dtype())(x)
    else:
        x = _builder.global_pool(x, pooling)
    return _builder.finish(inputs, x, model_name, weights, family="vgg")


# The paper's configurations under torchvision's names; every argument of `vgg` but `depth`
# and `batch_norm` passes through.
_variant = register_model(paper=PAPER, input_size=224, min_input_size=MIN_INPUT_SIZE,
                          arguments_of=vgg, fixed=("batch_norm",))


def _batch_norm(name, batch_norm, args, kwargs):
    """``kwargs`` with the ``batch_norm`` that the variant ``name`` sets, or one line where
    they set it too (``vgg16(batch_norm=True)`` quietly built a ``vgg16_bn``; a 14th
    positional argument, past its signature's, reached ``vgg``'s ``batch_norm``)."""
    most = len(inspect.signature(vgg).parameters) - 2  # less depth and batch_norm
    if len(args) > most:
        raise UserError(f"{name} takes at most {most} positional arguments (its signature's: "
                        f"include_top, ..., ceil_mode); received {len(args)}.")
    if "batch_norm" in kwargs:
        raise UserError(f"{name} sets batch_norm={batch_norm} itself (its signature has no "
                        f"`batch_norm`); received batch_norm={kwargs['batch_norm']!r}. Use "
                        f"{name.removesuffix('_bn')}{'' if batch_norm else '_bn'}, or "
                        "zoo.vgg(depth, batch_norm=...).")
    return {**kwargs, "batch_norm": batch_norm}


@_variant
def vgg11(*args, **kwargs):
    """VGG-11 (configuration A): ``vgg(11)``.

    >>> vgg11(input_shape=(32, 32, 3), classes=10, width=0.125).output_shape
    (None, 10)
    """
    return vgg(11, *args, **_batch_norm("vgg11", False, args, kwargs))


@_variant
def vgg13(*args, **kwargs):
    """VGG-13 (configuration B): ``vgg(13)``.

    >>> vgg13(input_shape=(32, 32, 3), classes=10, width=0.125).output_shape
    (None, 10)
    """
    return vgg(13, *args, **_batch_norm("vgg13", False, args, kwargs))


@_variant
def vgg16(*args, **kwargs):
    """VGG-16 (configuration D), keras.applications' VGG16 with dropout: ``vgg(16)``.

    >>> vgg16(input_shape=(32, 32, 3), classes=10, width=0.125).output_shape
    (None, 10)
    """
    return vgg(16, *args, **_batch_norm("vgg16", False, args, kwargs))


@_variant
def vgg19(*args, **kwargs):
    """VGG-19 (configuration E): ``vgg(19)``.

    >>> vgg19(input_shape=(32, 32, 3), classes=10, width=0.125).output_shape
    (None, 10)
    """
    return vgg(19, *args, **_batch_norm("vgg19", False, args, kwargs))


@_variant
def vgg11_bn(*args, **kwargs):
    """VGG-11 with BatchNorm: ``vgg(11, batch_norm=True)``.

    >>> vgg11_bn(input_shape=(32, 32, 3), classes=10, width=0.125).output_shape
    (None, 10)
    """
    return vgg(11, *args, **_batch_norm("vgg11_bn", True, args, kwargs))


@_variant
def vgg13_bn(*args, **kwargs):
    """VGG-13 with BatchNorm: ``vgg(13, batch_norm=True)``.

    >>> vgg13_bn(input_shape=(32, 32, 3), classes=10, width=0.125).output_shape
    (None, 10)
    """
    return vgg(13, *args, **_batch_norm("vgg13_bn", True, args, kwargs))


@_variant
def vgg16_bn(*args, **kwargs):
    """VGG-16 with BatchNorm: ``vgg(16, batch_norm=True)``.

    >>> vgg16_bn(input_shape=(32, 32, 3), classes=10, width=0.125).output_shape
    (None, 10)
    """
    return vgg(16, *args, **_batch_norm("vgg16_bn", True, args, kwargs))


@_variant
def vgg19_bn(*args, **kwargs):
    """VGG-19 with BatchNorm: ``vgg(19, batch_norm=True)``.

    >>> vgg19_bn(input_shape=(32, 32, 3), classes=10, width=0.125).output_shape
    (None, 10)
    """
    return vgg(19, *args, **_batch_norm("vgg19_bn", True, args, kwargs))
