"""AlexNet as Krizhevsky, Sutskever and Hinton built it (NeurIPS 2012).

Paper-faithful: local response normalization after the ReLUs of conv1 and conv2,
overlapping 3x3/2 max-pooling, dropout 0.5 in fc6 and fc7, weights drawn from N(0, 0.01)
and biases of 1 in conv2, conv4, conv5, fc6 and fc7. ``towers=2`` is the two-GPU layout:
each tower holds half of every convolution's filters, conv2, conv4 and conv5 see only their
own tower, conv3 and the fully connected layers see both. The towers are explicit layers
(``conv2_tower1``, ``conv2_tower2``, ...) rather than ``Conv2D(groups=2)``: the parameter
count is the same, and grouped convolutions are ~7x slower to train on CPU in Keras.
"""

import keras
from keras import layers

from safeio.checks import UserError, check_bool, check_choice, check_positive_int, is_int
from zoo import _builder
from zoo.layers import (LRN_PRESETS, ChannelSlice, DropConnectDense,
                        LocalResponseNormalization, max_pool)
from zoo.registry import register_model

NORM_CHOICES = ("lrn", "batch", None)
REGULARIZER_CHOICES = ("dropout", "dropconnect")
TOWER_CHOICES = (1, 2)


def _conv_out(size, kernel, stride):
    return (size - kernel) // stride + 1


def feature_map_size(side, ceil_mode=False):
    """Side of the final (pool5) feature map for a square input of side ``side`` (pools
    rounding up in ``ceil_mode``: one more row and column of -inf, ``zoo.layers.max_pool``)."""
    side = _conv_out(side, 11, 4)  # conv1, valid
    for _ in range(3):  # pool1, pool2, pool5; conv2-5 keep the size ("same")
        side = _conv_out(side + bool(ceil_mode), 3, 2)
    return side


MIN_INPUT_SIZE = _builder.smallest_input(feature_map_size)  # 67
# Pools rounding up (Caffe's, torchvision's ceil_mode=True) keep a 1x1 map from 39
MIN_INPUT_SIZE_CEIL = _builder.smallest_input(lambda side: feature_map_size(side, True))


def _conv(x, filters, kernel, name, style, strides=1, padding="same", bias=0.0):
    init, activation = style
    x = layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding=padding,
        activation=_builder.fused(activation),
        kernel_initializer=_builder.initializer(init),
        bias_initializer=keras.initializers.Constant(bias),
        name=name,
    )(x)
    return _builder.activate(x, activation, name)


def _norm(x, norm, name, lrn_params=None):
    # The normalisation sits where the paper put LRN: after the ReLU of conv1 and conv2.
    if norm == "lrn":
        return LocalResponseNormalization(**(lrn_params or LRN_PRESETS["paper"]), name=name)(x)
    if norm == "batch":
        return layers.BatchNormalization(name=name)(x)
    return x


def _pool(x, name, ceil_mode):
    return max_pool(x, 3, 2, name, ceil_mode=ceil_mode)  # overlapping: 3x3, stride 2


def _join(branches, name):
    return branches[0] if len(branches) == 1 else layers.Concatenate(name=name)(branches)


def _features(x, towers, norm, style, lrn_params=None, lrn_across_towers=False,
              ceil_mode=False):
    suffixes = [""] if towers == 1 else [f"_tower{t + 1}" for t in range(towers)]
    if towers > 1 and lrn_across_towers and norm is not None:
        both = _joint_stem(x, suffixes, norm, style, lrn_params, ceil_mode)
    else:
        branches = []
        for s in suffixes:
            y = _conv(x, 96 // towers, 11, f"conv1{s}", style, strides=4, padding="valid")
            y = _norm(y, norm, f"norm1{s}", lrn_params)
            y = _pool(y, f"pool1{s}", ceil_mode)  # 27x27 (55 before)
            y = _conv(y, 256 // towers, 5, f"conv2{s}", style, bias=1.0)
            y = _pool(_norm(y, norm, f"norm2{s}", lrn_params), f"pool2{s}", ceil_mode)  # 13x13
            branches.append(y)
        both = _join(branches, "concat2")  # conv3 talks across towers
    branches = []
    for s in suffixes:
        y = _conv(both, 384 // towers, 3, f"conv3{s}", style)
        y = _conv(y, 384 // towers, 3, f"conv4{s}", style, bias=1.0)
        y = _conv(y, 256 // towers, 3, f"conv5{s}", style, bias=1.0)
        branches.append(_pool(y, f"pool5{s}", ceil_mode))  # 6x6
    return _join(branches, "concat5")


def _joint_stem(x, suffixes, norm, style, lrn_params, ceil_mode):
    """conv1 and conv2 in towers, each normalised across both towers' channels, as the
    reference bvlc_alexnet model ran them (one 96-channel conv1 output, a grouped conv2)."""
    towers = len(suffixes)
    y = _join([_conv(x, 96 // towers, 11, f"conv1{s}", style, strides=4, padding="valid")
               for s in suffixes], "concat1")
    y = _pool(_norm(y, norm, "norm1", lrn_params), "pool1", ceil_mode)
    half = 96 // towers
    y = _join([_conv(ChannelSlice(t * half, (t + 1) * half, name=f"split1{s}")(y), 256 // towers,
                     5, f"conv2{s}", style, bias=1.0) for t, s in enumerate(suffixes)], "concat2")
    return _pool(_norm(y, norm, "norm2", lrn_params), "pool2", ceil_mode)


def _dense(x, units, name, style, bias, dropconnect=None):
    """fc6/fc7 (with ``dropconnect``, a DropConnectDense of that rate)."""
    init, activation = style
    kwargs = dict(activation=_builder.fused(activation),
                  kernel_initializer=_builder.initializer(init),
                  bias_initializer=keras.initializers.Constant(bias), name=name)
    if dropconnect is None:
        x = layers.Dense(units, **kwargs)(x)
    else:
        x = DropConnectDense(units, rate=dropconnect, **kwargs)(x)
    return _builder.activate(x, activation, name)


def _fully_connected(x, width, dropout, regularizer, style):
    """fc6 and fc7: dropout after each (the paper), or DropConnect inside them."""
    for name in ("fc6", "fc7"):
        if regularizer == "dropconnect":
            x = _dense(x, width, name, style, bias=1.0, dropconnect=dropout)
        else:
            x = layers.Dropout(dropout, name=f"drop{name[2:]}")(
                _dense(x, width, name, style, bias=1.0))
    return x


def _check_knobs(towers, norm, dropout, width, kernel_initializer, activation, regularizer,
                 weights):
    _builder.check_style(kernel_initializer, activation, weights)
    check_choice(regularizer, REGULARIZER_CHOICES, "regularizer")
    if not is_int(towers) or towers not in TOWER_CHOICES:  # (2.0 built, then failed)
        raise UserError(
            f"`towers` must be 1 (one tower) or 2 (the paper's two-GPU layout); "
            f"received {towers!r}."
        )
    check_choice(norm, NORM_CHOICES, "norm")
    _builder.check_dropout(dropout)
    check_positive_int(width, "width", what=" (units of fc6 and fc7)")


def _check_lrn_knobs(norm, towers, lrn_params, lrn_across_towers):
    """Refuse the LRN settings the user gave for a network they do not shape (they were
    ignored): ``lrn_params`` without LRN layers, ``lrn_across_towers`` without two towers
    normalised by LRN. (``towers``: the network's; the others as given.)"""
    if norm != "lrn" and lrn_params is not None:
        raise UserError(f"`lrn_params` sets the LRN layers, and norm={norm!r} builds none; "
                        f"received lrn_params={lrn_params!r}. Leave it out, or use "
                        "norm='lrn'.")
    if lrn_across_towers and (towers != 2 or norm != "lrn"):
        raise UserError("`lrn_across_towers=True` normalises conv1 and conv2 across both "
                        "towers' channels: it needs towers=2 and norm='lrn'; received "
                        f"towers={towers!r}, norm={norm!r}.")


def _lrn_params(lrn_params):
    if lrn_params is None or isinstance(lrn_params, str):
        name = lrn_params or "paper"
        if name not in LRN_PRESETS:
            raise UserError(f"`lrn_params` must be one of {sorted(LRN_PRESETS)} or a dict of "
                            f"LocalResponseNormalization arguments; received {lrn_params!r}.")
        return dict(LRN_PRESETS[name])
    if not isinstance(lrn_params, dict) or not set(lrn_params) <= set(LRN_PRESETS["paper"]):
        raise UserError(f"`lrn_params` dict keys must be among {sorted(LRN_PRESETS['paper'])}; "
                        f"received {lrn_params!r}.")
    return {**LRN_PRESETS["paper"], **lrn_params}


def _architecture(weights_path, towers, lrn_params, lrn_across_towers, ceil_mode, norm):
    """The paper's defaults, or what a Caffe weights file was trained with: two towers and
    LRN (required: Caffe's grouped convolutions, and its normalisation), Caffe's LRN across
    both towers and its pooling (the defaults then, which explicit arguments override)."""
    from zoo import pretrained

    _builder.caffe_default(ceil_mode, None, "ceil_mode")  # (checked; chosen below)
    check_bool(lrn_across_towers, "lrn_across_towers", allow_none=True,
               what=" (None: the weights' way)")
    chosen = {"towers": 1, "lrn_params": "paper", "lrn_across_towers": False,
              "ceil_mode": False}
    if weights_path is not None and pretrained.file_format(weights_path) == "caffe":
        chosen = dict(pretrained.CAFFE_ALEXNET_ARCHITECTURE)
        if towers not in (None, chosen["towers"]):
            raise UserError(
                "The Caffe reference AlexNet (bvlc_alexnet) is the two-tower network: its "
                "conv2, conv4 and conv5 are grouped convolutions; received "
                f"{{'towers': {towers!r}}}. Leave `towers` out (or 2).")
        if norm != "lrn":
            raise UserError(
                "The Caffe reference AlexNet (bvlc_alexnet) was trained with LRN after conv1 "
                f"and conv2; received norm={norm!r}. Leave `norm` out (or 'lrn').")
    given = {"towers": towers, "lrn_params": lrn_params, "lrn_across_towers": lrn_across_towers,
             "ceil_mode": ceil_mode}
    chosen.update({k: v for k, v in given.items() if v is not None})
    return (chosen["towers"], _lrn_params(chosen["lrn_params"]),
            bool(chosen["lrn_across_towers"]), bool(chosen["ceil_mode"]))


@register_model(paper="Krizhevsky, Sutskever, Hinton 2012", input_size=227,
                min_input_size=MIN_INPUT_SIZE)
def alexnet(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="alexnet",
    towers=None,
    norm="lrn",
    dropout=0.5,
    width=4096,
    kernel_initializer="paper",
    activation="relu",
    lrn_params=None,
    lrn_across_towers=None,
    regularizer="dropout",
    ceil_mode=None,
):
    """Build AlexNet (Krizhevsky et al. 2012) as a functional Keras model.

    Args:
        include_top: whether to include fc6, fc7 and the classifier.
        weights: None (paper initialisation), a local ``.weights.h5`` file, the Caffe
            reference model's ``bvlc_alexnet.caffemodel``, or ``"imagenet"``/``"bvlc"``
            (that file, from the local cache; see :mod:`zoo.pretrained`). Caffe weights
            build the network they were trained in: two towers and, unless given otherwise,
            Caffe's LRN across both towers.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: channels-last shape, default ``(227, 227, 3)`` with the top and any
            size without it (as keras.applications); height and width of at least 67 (the
            smallest size whose pool5 map is 1x1).
        pooling: with ``include_top=False``: None (the 6x6x256 pool5 map at 227),
            ``"avg"`` or ``"max"`` (a 256-vector).
        classes: number of classes of the classifier.
        classifier_activation: activation of the classifier, None for logits.
        name: model name.
        towers: 1 (default), or 2 for the paper's two-GPU layout (60,965,224 parameters
            instead of 62,378,344 at 227x227 and 1000 classes).
        norm: ``"lrn"`` (paper), ``"batch"`` (BatchNormalization in LRN's place) or None.
        dropout: dropout rate after fc6 and fc7.
        width: units of fc6 and fc7.
        kernel_initializer: ``"paper"`` (N(0, 0.01), the paper's), ``"he"`` (He normal,
            which trains small AlexNets from scratch much faster), ``"glorot"`` or
            ``"xavier"`` (Caffe's filler) for the hidden layers. The classifier keeps
            N(0, 0.01), so the untrained model's loss is about ln(classes); biases follow
            the paper in every case.
        activation: ``"relu"`` (paper), ``"leaky_relu"`` (slope 0.01), ``"prelu"`` (a
            learned slope per channel, from 0.25) or ``"elu"``; ReLU stays inside the conv
            and fc layers, the others are layers named ``conv1_elu``, ``fc6_prelu``, ...
        lrn_params: ``"paper"`` (default: n=5, k=2, alpha=1e-4, beta=0.75), ``"caffe"``
            (k=1, alpha=1e-4/5, as Caffe's LRN divides alpha by n) or a dict of
            :class:`zoo.layers.LocalResponseNormalization` arguments.
        lrn_across_towers: with two towers, normalise conv1 and conv2 across both towers'
            channels, as bvlc_alexnet does (one 96-channel conv1, a grouped conv2), instead
            of within each tower (default, the paper's layout).
        regularizer: how fc6 and fc7 are regularised at rate ``dropout``: ``"dropout"``
            (the paper: a Dropout layer after each) or ``"dropconnect"`` (Wan et al. 2013:
            fc6 and fc7 are :class:`zoo.layers.DropConnectDense`, dropping weights, with
            the same names and weights).
        ceil_mode: whether the max-pools round their output size up, as Caffe's do
            (torchvision's ``ceil_mode=True``: the windows the bottom and right edges cut
            count too), or down. None: up for Caffe weights, else down (the paper's
            arithmetic). The two agree at 227x227; at 224x224 pool5 is 6x6 rounding up,
            5x5 down.

    Example:

    >>> model = alexnet()
    >>> model.count_params()
    62378344
    """
    weights, classes = _builder.check_common_args(weights, pooling, classes, include_top,
                                                  family="alexnet", model="alexnet",
                                                  classifier_activation=classifier_activation)
    given_lrn = (lrn_params, lrn_across_towers)
    towers, lrn_params, lrn_across_towers, ceil_mode = _architecture(
        weights, towers, lrn_params, lrn_across_towers, ceil_mode, norm)
    _check_knobs(towers, norm, dropout, width, kernel_initializer, activation, regularizer,
                 weights)
    _check_lrn_knobs(norm, towers, *given_lrn)
    width = int(width)  # (a NumPy integer too: Keras' Dense takes Python ints)
    style = (kernel_initializer, activation)
    image, inputs = _builder.resolve_input(
        input_tensor,
        input_shape,
        default_shape=(227, 227, 3),
        min_size=MIN_INPUT_SIZE_CEIL if ceil_mode else MIN_INPUT_SIZE,
        model_name="AlexNet",
        include_top=include_top,
        fixed_size=include_top,
    )
    x = _features(image, towers, norm, style, lrn_params, lrn_across_towers, ceil_mode)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = _fully_connected(x, width, dropout, regularizer, style)
        x = layers.Dense(
            classes,
            activation=classifier_activation,
            # Small logits: the initial loss is ln(classes).
            kernel_initializer=_builder.initializer("paper"),
            name="predictions",
            dtype=_builder.classifier_dtype(),
        )(x)
    else:
        x = _builder.global_pool(x, pooling)
    return _builder.finish(inputs, x, name or "alexnet", weights, family="alexnet")
