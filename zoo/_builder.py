"""Pieces every builder shares: the keras.applications arguments, checked the same way."""

import os

import keras

from safeio.checks import (UserError, check_bool, check_choice, check_positive_int,
                           check_positive_number, check_rate, is_int)

POOLING_CHOICES = (None, "avg", "max")
ACTIVATION_CHOICES = ("relu", "leaky_relu", "prelu", "elu")
LEAKY_SLOPE = 0.01  # the lecture notes' leaky ReLU: max(0.01 x, x)
PRELU_INIT = 0.25  # He et al. 2015's initial slope for PReLU


def check_activation(activation, name):
    """``activation``: None, a function, or a name Keras knows (a typo was Keras' "Could not
    interpret activation function identifier", naming no choice)."""
    if activation is None or callable(activation):
        return
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError):
        import difflib

        known = [n for n in dir(keras.activations) if not n.startswith("_")
                 and n not in ("get", "serialize", "deserialize")]
        close = difflib.get_close_matches(str(activation), known, n=1)
        raise UserError(f"`{name}` must be None (logits), 'softmax', another of Keras' "
                        f"activation names or a function; received {activation!r}"
                        + (f" (did you mean {close[0]!r}?)." if close else ".")) from None


def check_classes(classes, classifier_activation, include_top=True):
    """``classes`` as a Python int (Keras' layers refuse NumPy integers, such as
    ``labels.max() + 1``), checked with the activation of the classifier it sizes (where
    ``include_top``): a softmax over one class is refused.

    Example:

    >>> import numpy as np
    >>> check_classes(np.int64(3), "softmax")
    3
    """
    classes = int(check_positive_int(classes, "classes"))
    check_activation(classifier_activation, "classifier_activation")
    softmax = classifier_activation in ("softmax", keras.activations.softmax)
    if include_top and classes == 1 and softmax:
        raise UserError(
            "classes=1 with classifier_activation='softmax' predicts 1.0 for every input (a "
            "softmax over one class); for two classes give classes=2, or "
            "classifier_activation='sigmoid' (or None, logits) for one probability.")
    return classes


def check_common_args(weights, pooling, classes, include_top=True, family=None, model=None,
                      classifier_activation=None):
    """Validate the keras.applications arguments that do not depend on the model.

    ``weights`` may be None, a local ``.weights.h5`` file, or (for ``family`` "resnet",
    "alexnet" or "googlenet", registered as ``model``) a file in the family's published
    format or a named entry of :mod:`zoo.pretrained`, found in the local cache. Returns
    ``(the local path to load or None, classes)``, ``classes`` a Python int (Keras' layers
    refuse NumPy integers, such as ``labels.max() + 1``).
    """
    if keras.config.image_data_format() != "channels_last":
        raise UserError(
            "zoo models are channels-last, and keras.config.image_data_format() is "
            f"{keras.config.image_data_format()!r}: the model would be built wrong. Call "
            "keras.config.set_image_data_format('channels_last') first (it is Keras' default).")
    check_choice(pooling, POOLING_CHOICES, "pooling")
    check_bool(include_top, "include_top")
    classes = check_classes(classes, classifier_activation, include_top)
    if weights is None:
        return None, classes
    from zoo import pretrained

    accepted = (".weights.h5",) + pretrained.suffixes(family)
    allowed = ", ".join(accepted)
    if family is not None and pretrained.is_named(weights):
        entry = pretrained.get_weights(model, weights)
        if include_top and classes != 1000:
            raise UserError(
                f"weights={weights!r} ({entry.name}) hold a 1000-class ImageNet classifier; "
                f"received classes={classes}. Use classes=1000, or include_top=False for "
                "the features (then add your own head, or zoo.fine_tune the whole model).")
        return pretrained.weights_file(entry), classes
    if isinstance(weights, (str, os.PathLike)) and os.path.lexists(weights) and not (
            os.path.isfile(weights)):
        what = ("a directory" if os.path.isdir(weights) else "a link to nothing"
                if os.path.islink(weights) else "not a regular file")
        raise UserError(f"`weights` {os.fspath(weights)!r} is {what}: give the weights file "
                        f"({allowed}).")
    if not isinstance(weights, (str, os.PathLike)) or not os.path.isfile(weights):
        named = (", a named entry ('imagenet', see zoo.pretrained.list_weights())"
                 if family is not None else "")
        raise UserError(
            f"`weights` must be None (random initialisation){named} or the path to an "
            f"existing local weights file ({allowed}); received {weights!r}."
        )
    converted = pretrained.suffixes(family)
    if not (str(weights).endswith(".weights.h5") or str(weights).lower().endswith(converted)):
        other = ("" if family not in ("alexnet", "googlenet") or not str(weights).lower(
        ).endswith(pretrained.FORMATS["torchvision"]) else
            f" (torchvision's {model} is another network: its AlexNet the one-tower variant "
            "of Krizhevsky 2014, its GoogLeNet with BatchNorm; this one loads the Caffe "
            f"reference bvlc_{model}.caffemodel, weights='imagenet')")
        raise UserError(
            f"`weights` file must end in {allowed}; received {str(weights)!r}{other}."
        )
    return os.fspath(weights), classes


def caffe_default(flag, weights_path, name):
    """A builder's ``flag`` for Caffe's way (``ceil_mode``): as given (True or False), or
    for None, whether ``weights_path`` (from :func:`check_common_args`) is a Caffe file."""
    check_bool(flag, name, allow_none=True, what=" (None: the weights' way)")
    if flag is not None or weights_path is None:
        return bool(flag)
    from zoo import pretrained

    return pretrained.file_format(weights_path) == "caffe"


def _shape_tuple(input_shape, model_name):
    """``input_shape`` as a tuple of positive integers or None, or a one-line error."""
    try:
        shape = tuple(input_shape) if not isinstance(input_shape, (str, bytes)) else None
    except TypeError:
        shape = None
    if shape is None or not all(size is None or (is_int(size) and size > 0)
                                for size in shape):
        raise UserError(f"{model_name}'s `input_shape` must be a tuple (height, width, "
                        f"channels) of positive integers or None; received {input_shape!r}.")
    return tuple(None if size is None else int(size) for size in shape)


def resolve_input(input_tensor, input_shape, default_shape, min_size, model_name,
                  include_top, fixed_size=False,
                  min_size_why="so that every feature map stays at least 1x1"):
    """Return ``(image_input, model_inputs)`` for a builder.

    ``input_tensor`` wins over ``input_shape``; when neither is given, ``default_shape``
    fills in for a classifier (``include_top``) or a fixed-size head, and any height and
    width (``(None, None, channels)``) for a feature extractor, as keras.applications'
    ``obtain_input_shape``. Spatial sizes below ``min_size`` raise a ``ValueError`` naming
    both sizes.
    With ``fixed_size`` (a Flatten head: True for the top, or the words saying which
    argument made one, e.g. ``"with aux_logits=True"``), height and width may not be None.
    ``min_size_why``: the words saying why ``min_size`` is the smallest.
    """
    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            raise UserError(
                "`input_tensor` must be a Keras tensor such as `keras.Input((227, 227, 3))` "
                f"or a layer's output; received {type(input_tensor).__name__}."
            )
        image_input = input_tensor
        shape = tuple(image_input.shape[1:])
    else:
        if input_shape is not None:
            shape = _shape_tuple(input_shape, model_name)
        elif include_top or fixed_size:
            shape = tuple(default_shape)
        else:
            shape = (None, None, default_shape[-1])
        image_input = None
    if len(shape) != 3:
        raise UserError(
            f"{model_name} takes channels-last images (height, width, channels); received "
            f"input shape {shape}."
        )
    height, width, channels = shape
    # (3, 224, 224), which no model takes; (4, 32, 16) is a CIFAR ResNet's map, not a guess
    if (height in (1, 3, 4) and height < min_size and channels not in (1, 3, 4, None)
            and min(width or 0, channels) >= 8):
        raise UserError(
            f"{model_name} is channels-last, as every zoo model: (height, width, channels); "
            f"received input shape {shape}, which looks channels-first. Use "
            f"{(shape[1], shape[2], shape[0])}.")
    if channels is None or channels < 1:
        raise UserError(f"{model_name} needs a known channel count; received {shape}.")
    if fixed_size and (height is None or width is None):
        why = fixed_size if isinstance(fixed_size, str) else "with include_top=True"
        raise UserError(
            f"{model_name} {why} needs a fixed height and width (a classifier flattens "
            f"the feature map); received input shape {shape}."
        )
    for size in (height, width):
        if size is not None and size < min_size:
            raise UserError(
                f"{model_name} needs inputs of at least {min_size}x{min_size} {min_size_why}; "
                f"received input shape {shape}."
            )
    if image_input is None:
        image_input = keras.Input(shape=shape, name="input")
    model_inputs = (
        keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else image_input
    )
    return image_input, model_inputs


def global_pool(x, pooling):
    """Apply the keras.applications ``pooling`` option to a feature map."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def finish(model_inputs, outputs, name, weights, model_class=keras.Model, family=None):
    """Wrap the graph in a functional model (of ``model_class``, a ``keras.Model``
    subclass) and load the weights file :func:`check_common_args` returned, if any: a
    Keras weights file, or a torchvision/Caffe file converted by :mod:`zoo.pretrained`."""
    if isinstance(model_inputs, (list, tuple)) and len(model_inputs) == 1:
        model_inputs = model_inputs[0]  # called with a plain tensor, as users do: no warning
    model = model_class(model_inputs, outputs, name=name)
    if weights is not None:
        from zoo import pretrained

        if pretrained.file_format(weights) == "keras":
            from zoo.saving import load_weights

            load_weights(model, weights)
        else:
            pretrained.load_converted(model, weights, family)
            from zoo.saving import set_class_names, set_input_pixels

            # Its inputs are the file's (zoo.preprocess_input's), not images 0-255: recorded,
            # so that zoo.predict and exports refuse it until with_preprocessing wraps it.
            set_input_pixels(model, pretrained.preprocessing_for(weights, family))
            if model.output_shape == (None, 1000):  # torchvision's, timm's, Caffe's ImageNet
                set_class_names(model, [name for _, name in pretrained.imagenet_classes()])
    return model


def smallest_input(out_size, limit=4096):
    """Smallest square input side for which ``out_size(side) >= 1``."""
    for side in range(1, limit):
        if out_size(side) >= 1:
            return side
    raise AssertionError("no input size up to the limit gives a 1x1 feature map")


def check_dropout(dropout):
    """Dropout rates are numbers in [0, 1)."""
    check_rate(dropout, "dropout")


def check_multiplier(width):
    """``width`` of GoogLeNet and ResNet multiplies every layer's channel count."""
    check_positive_number(width, "width", what=" (a channel multiplier)")


def classifier_dtype():
    """Under mixed precision the classifier runs in float32 (a numerically safe softmax)."""
    return "float32" if keras.config.dtype_policy().name.startswith("mixed") else None


_INITIALIZERS = {
    "paper": lambda he_mode: keras.initializers.RandomNormal(0.0, 0.01),
    "he": lambda he_mode: keras.initializers.VarianceScaling(
        2.0, he_mode, "truncated_normal" if he_mode == "fan_in" else "untruncated_normal"),
    "glorot": lambda he_mode: keras.initializers.GlorotUniform(),
    # Caffe's "xavier" filler (its default variance_norm FAN_IN): U(-a, a), a = sqrt(3 / fan_in),
    # so variance 1 / fan_in; the reference bvlc_googlenet model's.
    "xavier": lambda he_mode: keras.initializers.VarianceScaling(1.0, "fan_in", "uniform"),
}
INITIALIZER_CHOICES = tuple(_INITIALIZERS)


def initializer(name, he_mode="fan_in"):
    """A fresh kernel initializer for ``kernel_initializer=name``.

    ``"paper"``: N(0, 0.01) (AlexNet's); ``"he"``: He et al.'s normal with variance
    2 / fan (``he_mode`` "fan_in" as ``keras.initializers.HeNormal``, or "fan_out" as ResNet
    and torchvision use); ``"glorot"``: Glorot uniform (Keras' default); ``"xavier"``:
    Caffe's xavier filler, uniform with variance 1 / fan_in (bvlc_googlenet's).
    """
    check_style(name, "relu")
    return _INITIALIZERS[name](he_mode)


def check_style(kernel_initializer, activation, weights=None):
    """Validate the ``kernel_initializer`` and ``activation`` options every builder has;
    ``weights`` (from :func:`check_common_args`) converted from torchvision or Caffe were
    trained with ReLU, the only activation they fit."""
    check_choice(kernel_initializer, INITIALIZER_CHOICES, "kernel_initializer")
    check_choice(activation, ACTIVATION_CHOICES, "activation")
    if weights is not None and activation != "relu":
        from zoo import pretrained

        if pretrained.file_format(weights) != "keras":
            raise UserError(f"{os.path.basename(weights)} holds weights trained with ReLU; "
                            f"received activation={activation!r}, which they do not fit. "
                            "Leave `activation` out (or 'relu').")


def fused(activation):
    """What to pass as a Conv2D/Dense ``activation``: plain ReLU stays inside the layer (the
    papers' layer names), every other activation is a layer of its own (:func:`activate`)."""
    return "relu" if activation == "relu" else None


def activate(x, activation, name, fused_relu=True):
    """Apply ``activation`` as a layer named ``f"{name}_{activation}"``.

    With ``fused_relu`` (after a layer built with ``activation=fused(activation)``), ReLU
    was already applied and ``x`` is returned as it is. PReLU learns one slope per channel
    (shared over height and width), starting at 0.25 as in He et al. 2015.
    """
    if activation == "relu":
        return x if fused_relu else keras.layers.Activation("relu", name=f"{name}_relu")(x)
    if activation == "leaky_relu":
        layer = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_leaky_relu")
    elif activation == "prelu":
        layer = keras.layers.PReLU(
            alpha_initializer=keras.initializers.Constant(PRELU_INIT),
            shared_axes=list(range(1, len(x.shape) - 1)) or None, name=f"{name}_prelu")
    else:
        layer = keras.layers.ELU(name=f"{name}_elu")
    return layer(x)
