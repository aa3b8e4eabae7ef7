"""ResNet-18/34/50/101/152 (He et al., "Deep residual learning for image recognition", 2015).

The torchvision layout ("v1.5"): no convolution biases, BatchNorm after every convolution,
projection shortcuts (1x1 convolution + BatchNorm) only where the shape changes, and the
stride of a downsampling bottleneck on its 3x3 convolution rather than its first 1x1.
Trainable parameter counts equal torchvision's exactly, and so does the padding: a strided
convolution and the stem's max-pool pad every side (explicit ``ZeroPadding2D`` layers,
then "valid", as keras.applications does; the max-pool's -inf, ``MaxPadding2D``, after an
activation other than ReLU), where Keras' "same" would pad the bottom and right only. So
torchvision's weights give torchvision's numbers (``weights="imagenet"`` or a
state dict file, :mod:`zoo.pretrained`). In narrow models, a strided projection on fewer
than 16 channels subsamples, then convolves (``MIN_STRIDED_POINTWISE_CHANNELS``).
"""


from keras import layers

from safeio.checks import check_bool, check_choice, check_rate
from zoo import _builder
from zoo.layers import MaxPadding2D
from zoo.registry import register_model

PAPER = "He, Zhang, Ren, Sun 2015"
# depth: (block, blocks per stage); the depth variants are data.
STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STEM_CHOICES = ("imagenet", "cifar")
MIN_INPUT_SIZE = {"imagenet": 32, "cifar": 8}  # the total stride of each stem + stages
# (Its padded strides round up, so smaller inputs still end at 1x1; keras.applications'
# ResNets refuse below 32 too.)
TOTAL_STRIDE_WHY = "(its total stride, the smallest input keras.applications' ResNets take)"
DEFAULT_STYLE = ("he", "relu")  # (kernel_initializer, activation)


# A strided 1x1 convolution with fewer input channels than this subsamples first (a layer
# ``{name}_subsample``), then convolves with stride 1: the same function. TensorFlow's
# oneDNN CPU kernel for a strided 1x1 convolution's weight gradient (float32, channels
# last, fewer input channels than its block of 16) writes past its buffer (oneDNN issue
# 6035): narrow ResNets crashed in training, at batch sizes such as 3 or 105. Full-width
# models never have so few channels there and keep the strided convolution.
MIN_STRIDED_POINTWISE_CHANNELS = 16


def _conv_bn(x, filters, kernel, strides, name, style, relu=True, zero_gamma=False):
    init, activation = style
    padding = "same"
    if kernel == 1 and strides > 1 and x.shape[-1] < MIN_STRIDED_POINTWISE_CHANNELS:
        x = layers.MaxPooling2D(1, strides=strides, name=f"{name}_subsample")(x)
        strides = 1
    if strides > 1 and kernel > 1:  # torchvision's symmetric padding (kernel // 2 a side)
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                      kernel_initializer=_builder.initializer(init, he_mode="fan_out"),
                      name=f"{name}_conv")(x)
    # torchvision's BatchNorm: eps 1e-5, running averages with momentum 0.1 (Keras: 0.9).
    x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9,
                                  gamma_initializer="zeros" if zero_gamma else "ones",
                                  name=f"{name}_bn")(x)
    return _builder.activate(x, activation, name, fused_relu=False) if relu else x


def _shortcut(x, filters, strides, name, style):
    if strides == 1 and x.shape[-1] == filters:
        return x
    return _conv_bn(x, filters, 1, strides, f"{name}_0", style, relu=False)


def _merge(shortcut, residual, name, drop_rate, activation):
    if drop_rate > 0:
        # Stochastic depth: drop the whole residual branch per example.
        residual = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1),
                                  name=f"{name}_drop_path")(residual)
    x = layers.Add(name=f"{name}_add")([shortcut, residual])
    if activation == "relu":  # the historical name of the block's output ReLU
        return layers.Activation("relu", name=f"{name}_out")(x)
    return _builder.activate(x, activation, f"{name}_out")


def basic_block(x, filters, strides, name, zero_init_residual=False, drop_rate=0.0,
                style=DEFAULT_STYLE):
    """Two 3x3 convolutions plus the shortcut (ResNet-18, -34).

    ``style`` is ``(kernel_initializer, activation)`` as :func:`resnet` takes them.
    """
    shortcut = _shortcut(x, filters, strides, name, style)
    y = _conv_bn(x, filters, 3, strides, f"{name}_1", style)
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", style, relu=False,
                 zero_gamma=zero_init_residual)
    return _merge(shortcut, y, name, drop_rate, style[1])


def bottleneck_block(x, filters, strides, name, zero_init_residual=False, drop_rate=0.0,
                     style=DEFAULT_STYLE):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, plus the shortcut."""
    shortcut = _shortcut(x, 4 * filters, strides, name, style)
    y = _conv_bn(x, filters, 1, 1, f"{name}_1", style)
    y = _conv_bn(y, filters, 3, strides, f"{name}_2", style)
    y = _conv_bn(y, 4 * filters, 1, 1, f"{name}_3", style, relu=False,
                 zero_gamma=zero_init_residual)
    return _merge(shortcut, y, name, drop_rate, style[1])


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


def _check_knobs(depth, stem, drop_path_rate, dropout, width, kernel_initializer, activation,
                 weights):
    _builder.check_style(kernel_initializer, activation, weights)
    check_choice(stem, STEM_CHOICES, "stem")
    check_rate(drop_path_rate, "drop_path_rate")
    _builder.check_dropout(dropout)
    _builder.check_multiplier(width)


def resnet(
    depth,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    dropout=0.0,
    width=1.0,
    zero_init_residual=False,
    drop_path_rate=0.0,
    stem="imagenet",
    kernel_initializer="he",
    activation="relu",
):
    """Build a ResNet of the given depth (18, 34, 50, 101 or 152).

    Args:
        depth: 18 or 34 (basic blocks), 50, 101 or 152 (bottleneck blocks).
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation: as in ``keras.applications``; default input ``(224, 224, 3)``
            (any size without the top).
            ``weights``: None, a local ``.weights.h5`` file, a torchvision-layout state
            dict (``.safetensors``, or ``.pth`` with PyTorch installed; timm's ``tv_in1k``
            files too), or ``"imagenet"``/``"tv_in1k"`` (torchvision's IMAGENET1K_V1 file;
            ResNet-50 also ``"tv2_in1k"``) from the local cache, see :mod:`zoo.pretrained`.
        name: model name, default ``f"resnet{depth}"``.
        dropout: dropout rate before the classifier (0: none, as in the paper).
        width: channel multiplier for every convolution.
        zero_init_residual: start the last BatchNorm of every residual branch at zero, so
            each block begins as the identity (Goyal et al. 2017).
        drop_path_rate: stochastic depth (Huang et al. 2016); the rate of dropping block
            l's residual branch (of L blocks) is ``l / L * drop_path_rate``, linear from
            ``drop_path_rate / L`` for the first block to ``drop_path_rate`` for the last.
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool) or ``"cifar"`` (one 3x3 conv,
            no max-pool) for small images such as 32x32.
        kernel_initializer: ``"he"`` (default: He et al.'s normal in torchvision's
            fan-out mode), ``"glorot"``, ``"xavier"`` (Caffe's filler) or ``"paper"``
            (N(0, 0.01)), for the convolutions.
        activation: ``"relu"`` (paper), ``"leaky_relu"``, ``"prelu"`` or ``"elu"``.

    Example:

    >>> model = resnet(50, input_shape=(64, 64, 3), classes=10)
    >>> model.output_shape
    (None, 10)
    """
    check_choice(depth, sorted(STAGES), "depth")  # (before its weights, named by it)
    weights, classes = _builder.check_common_args(weights, pooling, classes, include_top,
                                                  family="resnet", model=f"resnet{depth}",
                                                  classifier_activation=classifier_activation)
    _check_knobs(depth, stem, drop_path_rate, dropout, width, kernel_initializer, activation,
                 weights)
    check_bool(zero_init_residual, "zero_init_residual")
    style = (kernel_initializer, activation)
    image, inputs = _builder.resolve_input(
        input_tensor, input_shape, default_shape=(224, 224, 3),
        min_size=MIN_INPUT_SIZE[stem], model_name=f"ResNet-{depth}", include_top=include_top,
        min_size_why=TOTAL_STRIDE_WHY if stem == "imagenet" else "(its total stride)",
    )
    w = lambda filters: max(1, int(round(filters * width)))  # noqa: E731
    if stem == "imagenet":
        x = _conv_bn(image, w(64), 7, 2, "conv1", style)  # 112x112
        # torchvision pads the max-pool with -inf on every side. After a ReLU zeros are the
        # same, and Keras' own layer keeps the file plain Keras; after the others, -inf.
        pad = layers.ZeroPadding2D if activation == "relu" else MaxPadding2D
        x = pad(1, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)  # 56x56
    else:
        x = _conv_bn(image, w(64), 3, 1, "conv1", style)
    block, sizes = STAGES[depth]
    total, index = sum(sizes), 0
    for stage, blocks in enumerate(sizes):  # 56, 28, 14, 7 at 224
        for b in range(blocks):
            x = BLOCKS[block](
                x, w(64 * 2**stage), 2 if stage > 0 and b == 0 else 1,
                f"conv{stage + 2}_block{b + 1}", zero_init_residual,
                drop_path_rate * (index + 1) / total, style,  # Huang et al.: p_l = l / L * p_L
            )
            index += 1
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions",
                         dtype=_builder.classifier_dtype())(x)
    else:
        x = _builder.global_pool(x, pooling)
    return _builder.finish(inputs, x, name or f"resnet{depth}", weights, family="resnet")


# The depths of the paper's table 1, registered under their own names; every argument of
# `resnet` but `depth` passes through.
_variant = register_model(paper=PAPER, input_size=224, arguments_of=resnet)


@_variant
def resnet18(*args, **kwargs):
    """ResNet-18 (basic blocks, 2-2-2-2): :func:`resnet` with ``depth=18``.

    >>> resnet18(input_shape=(64, 64, 3), classes=10).output_shape
    (None, 10)
    """
    return resnet(18, *args, **kwargs)


@_variant
def resnet34(*args, **kwargs):
    """ResNet-34 (basic blocks, 3-4-6-3): :func:`resnet` with ``depth=34``.

    >>> resnet34(input_shape=(64, 64, 3), classes=10).output_shape
    (None, 10)
    """
    return resnet(34, *args, **kwargs)


@_variant
def resnet50(*args, **kwargs):
    """ResNet-50 (bottleneck blocks, 3-4-6-3): :func:`resnet` with ``depth=50``.

    >>> resnet50(input_shape=(64, 64, 3), classes=10).output_shape
    (None, 10)
    """
    return resnet(50, *args, **kwargs)


@_variant
def resnet101(*args, **kwargs):
    """ResNet-101 (bottleneck blocks, 3-4-23-3): :func:`resnet` with ``depth=101``.

    >>> resnet101(input_shape=(64, 64, 3), classes=10).output_shape
    (None, 10)
    """
    return resnet(101, *args, **kwargs)


@_variant
def resnet152(*args, **kwargs):
    """ResNet-152 (bottleneck blocks, 3-8-36-3): :func:`resnet` with ``depth=152``.

    >>> resnet152(input_shape=(64, 64, 3), classes=10).output_shape
    (None, 10)
    """
    return resnet(152, *args, **kwargs)
