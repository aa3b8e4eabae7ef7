"""The CIFAR ResNets (He et al., "Deep residual learning for image recognition", 2015,
section 4.2): ResNet-20, -32, -44, -56 and -110, and any depth 6n + 2.

The paper's CIFAR-10 network: a 3x3 convolution with 16 filters, then three stages of n
basic blocks each (two 3x3 convolutions) on 32x32, 16x16 and 8x8 maps with 16, 32 and 64
filters, global average pooling and the classifier: 6n + 2 weighted layers. Its shortcuts
are identities everywhere (option A): where a stage halves the map and doubles the
channels, the shortcut takes every second pixel and pads the new channels with zeros, so it
adds no parameter. ``shortcut="B"`` uses projections (1x1 convolution + BatchNorm) there
instead. These are the networks the Snapshot Ensembles paper (Huang et al. 2017) reports
its CIFAR results on.

Layer names follow :mod:`zoo.models.resnet` (``conv1``, ``conv2_block1_1_conv``, ...,
``predictions``), and so does the padding: a strided convolution pads one pixel on every
side, as the PyTorch implementations of the paper's networks do.
"""

from keras import layers

from safeio.checks import UserError, check_bool, check_choice, check_rate, is_int
from zoo import _builder
from zoo.layers import ZeroPadChannels
from zoo.models.resnet import STAGES as IMAGENET_STAGES
from zoo.models.resnet import _conv_bn, _merge
from zoo.registry import register_model

PAPER = "He, Zhang, Ren, Sun 2015 (CIFAR-10, sec. 4.2)"
SHORTCUT_CHOICES = ("A", "B")
STAGE_FILTERS = (16, 32, 64)
MIN_INPUT_SIZE = 4  # the total stride of the two stride-2 stages


def _shortcut(x, filters, strides, name, shortcut, style):
    """Identity where the shape is kept; otherwise option A (subsample, zero channels) or
    option B (a projection)."""
    if strides == 1 and x.shape[-1] == filters:
        return x
    if shortcut == "B":
        return _conv_bn(x, filters, 1, strides, f"{name}_0", style, relu=False)
    if strides > 1:  # every second pixel, from the first: x[:, ::2, ::2]
        x = layers.MaxPooling2D(1, strides=strides, name=f"{name}_0_subsample")(x)
    extra = filters - x.shape[-1]
    return ZeroPadChannels(extra // 2, extra - extra // 2, name=f"{name}_0_pad")(x)


def _block(x, filters, strides, name, shortcut, zero_init_residual, drop_rate, style):
    """The basic block: two 3x3 convolutions, the first carrying the stride."""
    skip = _shortcut(x, filters, strides, name, shortcut, style)
    y = _conv_bn(x, filters, 3, strides, f"{name}_1", style)
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", style, relu=False,
                 zero_gamma=zero_init_residual)
    return _merge(skip, y, name, drop_rate, style[1])


def check_depth(depth):
    """The CIFAR ResNets have 6n + 2 layers, n >= 1."""
    if not is_int(depth) or depth < 8 or (depth - 2) % 6:
        raise UserError(f"`depth` of a CIFAR ResNet must be 6n + 2 for an integer n >= 1 "
                        f"(8, 14, 20, 32, 44, 56, 110, ...); received {depth!r}.")
    return (depth - 2) // 6


def resnet_cifar(
    depth,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
    dropout=0.0,
    width=1.0,
    shortcut="A",
    zero_init_residual=False,
    drop_path_rate=0.0,
    kernel_initializer="he",
    activation="relu",
):
    """Build the CIFAR ResNet with ``depth`` = 6n + 2 layers (20, 32, 44, 56, 110, ...).

    Args:
        depth: 6n + 2 for n >= 1: n basic blocks in each of the three stages.
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation: as in ``keras.applications``; default input ``(32, 32, 3)``
            (any size without the top) and 10 classes (CIFAR-10). ``weights``: None or a
            local ``.weights.h5`` file.
        name: model name, default ``f"resnet{depth}"`` (``"resnet50_cifar"`` and
            ``"resnet152_cifar"`` for the depths of ImageNet ResNets).
        dropout: dropout rate before the classifier (0: none, as in the paper).
        width: channel multiplier (16, 32 and 64 filters at 1.0).
        shortcut: ``"A"`` (the paper's CIFAR networks: identity shortcuts, zero-padded
            channels, no parameters) or ``"B"`` (projections where the shape changes).
        zero_init_residual: start the last BatchNorm of every residual branch at zero.
        drop_path_rate: stochastic depth, as in :func:`zoo.resnet` (Huang et al. 2016 used
            it on ResNet-110).
        kernel_initializer: ``"he"`` (the paper's, He et al. 2015), ``"glorot"``,
            ``"xavier"`` (Caffe's filler) or ``"paper"`` (N(0, 0.01)).
        activation: ``"relu"`` (paper), ``"leaky_relu"``, ``"prelu"`` or ``"elu"``.

    Example:

    >>> import math
    >>> model = resnet_cifar(20)
    >>> sum(math.prod(w.shape) for w in model.trainable_weights)  # the paper's 0.27M
    269722
    """
    weights, classes = _builder.check_common_args(
        weights, pooling, classes, include_top, classifier_activation=classifier_activation)
    blocks = check_depth(depth)
    check_choice(shortcut, SHORTCUT_CHOICES, "shortcut")
    check_bool(zero_init_residual, "zero_init_residual")
    _builder.check_style(kernel_initializer, activation)
    check_rate(drop_path_rate, "drop_path_rate")
    _builder.check_dropout(dropout)
    _builder.check_multiplier(width)
    style = (kernel_initializer, activation)
    image, inputs = _builder.resolve_input(
        input_tensor, input_shape, default_shape=(32, 32, 3), min_size=MIN_INPUT_SIZE,
        model_name=f"ResNet-{depth} (CIFAR)", include_top=include_top,
        min_size_why="(its total stride)")
    w = lambda filters: max(1, int(round(filters * width)))  # noqa: E731
    x = _conv_bn(image, w(16), 3, 1, "conv1", style)
    total = 3 * blocks
    for stage, filters in enumerate(STAGE_FILTERS):  # 32x32, 16x16, 8x8 on CIFAR
        for b in range(blocks):
            index = stage * blocks + b
            x = _block(x, w(filters), 2 if stage > 0 and b == 0 else 1,
                       f"conv{stage + 2}_block{b + 1}", shortcut, zero_init_residual,
                       drop_path_rate * (index + 1) / total, style)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions",
                         dtype=_builder.classifier_dtype())(x)
    else:
        x = _builder.global_pool(x, pooling)
    # (resnet_cifar(50) is no ImageNet ResNet-50: a file or an ensemble would mix them up)
    default_name = f"resnet{depth}" + ("_cifar" if depth in IMAGENET_STAGES else "")
    return _builder.finish(inputs, x, name or default_name, weights)


# The depths of the paper's CIFAR table (table 6), under their own names; every argument of
# `resnet_cifar` but `depth` passes through.
_variant = register_model(paper=PAPER, input_size=32, min_input_size=MIN_INPUT_SIZE,
                          arguments_of=resnet_cifar)


@_variant
def resnet20(*args, **kwargs):
    """ResNet-20 for CIFAR (3 blocks a stage, 0.27M parameters): ``resnet_cifar(20)``.

    >>> resnet20().output_shape
    (None, 10)
    """
    return resnet_cifar(20, *args, **kwargs)


@_variant
def resnet32(*args, **kwargs):
    """ResNet-32 for CIFAR (5 blocks a stage, 0.46M parameters): ``resnet_cifar(32)``.

    >>> resnet32(classes=100).output_shape
    (None, 100)
    """
    return resnet_cifar(32, *args, **kwargs)


@_variant
def resnet44(*args, **kwargs):
    """ResNet-44 for CIFAR (7 blocks a stage, 0.66M parameters): ``resnet_cifar(44)``.

    >>> resnet44().output_shape
    (None, 10)
    """
    return resnet_cifar(44, *args, **kwargs)


@_variant
def resnet56(*args, **kwargs):
    """ResNet-56 for CIFAR (9 blocks a stage, 0.85M parameters): ``resnet_cifar(56)``.

    >>> resnet56().output_shape
    (None, 10)
    """
    return resnet_cifar(56, *args, **kwargs)


@_variant
def resnet110(*args, **kwargs):
    """ResNet-110 for CIFAR (18 blocks a stage, 1.7M parameters): ``resnet_cifar(110)``.

    >>> resnet110().output_shape
    (None, 10)
    """
    return resnet_cifar(110, *args, **kwargs)
