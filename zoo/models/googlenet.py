"""GoogLeNet / Inception v1 as Szegedy et al. built it ("Going deeper with convolutions", 2014).

Paper-faithful, not torchvision's variant: no BatchNorm, conv biases, LRN after the stem
convolutions, true 5x5 convolutions in the inception modules (torchvision uses 3x3 there),
and the two auxiliary classifiers on 4a and 4d. The LRN settings are those of the reference
Caffe model (n=5, k=1, alpha=1e-4 divided by n as Caffe does, beta=0.75); the paper gives none.
Its padding is Caffe's too (conv1 pads 3 on every side; the 3x3/2 max-pools are Caffe's
ceil mode, torchvision's ``ceil_mode=True``: 57 -> 28, where Keras' "same" gives 29), so
bvlc_googlenet's weights give Caffe's numbers at any input size.
"""

import keras
import numpy as np
from keras import layers

from safeio.checks import UserError, check_bool
from zoo import _builder
from zoo.layers import LRN_PRESETS, LocalResponseNormalization, average_pool, max_pool
from zoo.registry import register_model

# name: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), the paper's table 1.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
AUX_ON = {"4a": "aux1", "4d": "aux2"}
AUX_LOSS_WEIGHT = 0.3
MIN_INPUT_SIZE = 31  # every map stays >= 1x1 (from 21 to 30 one ceil-mode pool empties)
MIN_INPUT_SIZE_AUX = 79  # the aux heads' 5x5 average pool needs a 5x5 map at 4a


DEFAULT_STYLE = ("xavier", "relu")  # (kernel_initializer, activation): bvlc_googlenet's


def _bias(init):
    """bvlc_googlenet starts every convolution and the aux heads' hidden layers at a bias
    of 0.2 (its classifiers at 0); with other initialisers biases start at 0."""
    return keras.initializers.Constant(0.2) if init == "xavier" else "zeros"


def _classifier_kernel(init):
    return _builder.initializer(init) if init == "xavier" else "glorot_uniform"


def _conv(x, filters, kernel, name, style, strides=1):
    init, activation = style
    padding = "same"
    if strides > 1:  # Caffe's symmetric padding (conv1: pad 3), where "same" pads 2 and 3
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                      activation=_builder.fused(activation),
                      kernel_initializer=_builder.initializer(init),
                      bias_initializer=_bias(init), name=name)(x)
    return _builder.activate(x, activation, name)


def _lrn(x, name):
    return LocalResponseNormalization(**LRN_PRESETS["caffe"], name=name)(x)


def _maxpool(x, name):
    """The 3x3/2 max-pool in Caffe's ceil mode (no padding; the last window may be cut by
    the edge): 57 -> 28 and 56 -> 28, at sizes known or not when built."""
    return max_pool(x, 3, 2, name, ceil_mode=True)


def _scaled(filters, width):
    return max(1, int(round(filters * width)))


def inception_module(x, filters, name, style=DEFAULT_STYLE):
    """One inception module: 1x1 | 1x1->3x3 | 1x1->5x5 | 3x3 max-pool->1x1, concatenated.

    ``style`` is ``(kernel_initializer, activation)`` as :func:`googlenet` takes them.
    """
    f1, f3r, f3, f5r, f5, fp = filters
    b1 = _conv(x, f1, 1, f"{name}_1x1", style)
    b3 = _conv(_conv(x, f3r, 1, f"{name}_3x3_reduce", style), f3, 3, f"{name}_3x3", style)
    b5 = _conv(_conv(x, f5r, 1, f"{name}_5x5_reduce", style), f5, 5, f"{name}_5x5", style)
    bp = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    bp = _conv(bp, fp, 1, f"{name}_pool_proj", style)
    return layers.Concatenate(name=f"{name}_output")([b1, b3, b5, bp])


def _aux_head(x, classes, classifier_activation, name, width, style):
    x = average_pool(x, 5, 3, f"{name}_pool")  # Caffe's: 14x14 and 13x13 -> 4x4
    x = _conv(x, _scaled(128, width), 1, f"{name}_conv", style)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    init, activation = style
    x = layers.Dense(_scaled(1024, width), activation=_builder.fused(activation),
                     kernel_initializer=_builder.initializer(init),
                     bias_initializer=_bias(init), name=f"{name}_fc")(x)
    x = _builder.activate(x, activation, f"{name}_fc")
    x = layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return layers.Dense(classes, activation=classifier_activation,
                        kernel_initializer=_classifier_kernel(init),
                        name=f"{name}_predictions",
                        dtype=_builder.classifier_dtype())(x)


def _check_knobs(aux_logits, include_top, dropout, width, kernel_initializer, activation,
                 weights):
    _builder.check_style(kernel_initializer, activation, weights)
    check_bool(aux_logits, "aux_logits")
    if aux_logits and not include_top:
        raise UserError("`aux_logits=True` needs `include_top=True`: the auxiliary heads "
                        "are classifiers; received include_top=False.")
    _builder.check_dropout(dropout)
    _builder.check_multiplier(width)


@register_model(paper="Szegedy et al. 2014", input_size=224, min_input_size=MIN_INPUT_SIZE)
def googlenet(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="googlenet",
    aux_logits=False,
    dropout=0.4,
    width=1.0,
    kernel_initializer="xavier",
    activation="relu",
):
    """Build GoogLeNet (Inception v1, Szegedy et al. 2014) as a functional Keras model.

    Args:
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name: as in ``keras.applications``; default input
            ``(224, 224, 3)``, any size without the top. ``weights``: None, a local
            ``.weights.h5`` file, the Caffe reference model's ``bvlc_googlenet.caffemodel``
            (its aux heads load with ``aux_logits=True``), or ``"imagenet"``/``"bvlc"``
            (that file, from the local cache; see :mod:`zoo.pretrained`).
        aux_logits: add the two auxiliary classifiers (on 4a and 4d), for training: a
            :class:`GoogLeNetWithAuxHeads`, still one output to the outside, whose loss
            adds 0.3 times each head's (:func:`without_aux` drops the heads).
        dropout: dropout rate before the main classifier (paper: 0.4).
        width: channel multiplier applied to every convolution and the aux heads.
        kernel_initializer: ``"xavier"`` (default: the reference bvlc_googlenet model's
            Caffe xavier filler, uniform with variance 1 / fan_in, every convolution and
            aux hidden layer starting at a bias of 0.2, the classifiers at 0),
            ``"glorot"`` (Keras' Glorot uniform), ``"he"`` or ``"paper"`` (N(0, 0.01)),
            for every layer but the classifiers (Glorot uniform unless ``"xavier"``).
        activation: ``"relu"`` (paper), ``"leaky_relu"``, ``"prelu"`` or ``"elu"``.

    Example:

    >>> googlenet().count_params()
    6998552
    """
    weights, classes = _builder.check_common_args(weights, pooling, classes, include_top,
                                                  family="googlenet", model="googlenet",
                                                  classifier_activation=classifier_activation)
    _check_knobs(aux_logits, include_top, dropout, width, kernel_initializer, activation,
                 weights)
    style = (kernel_initializer, activation)
    image, inputs = _builder.resolve_input(
        input_tensor, input_shape, default_shape=(224, 224, 3),
        min_size=MIN_INPUT_SIZE_AUX if aux_logits else MIN_INPUT_SIZE,
        model_name="GoogLeNet",
        include_top=include_top,
        fixed_size="with aux_logits=True" if aux_logits else False,  # the aux heads flatten
        **({"min_size_why": "with aux_logits=True (the auxiliary heads' 5x5 average pool "
                            "needs a 5x5 map at inception 4a)"} if aux_logits else {}),
    )
    w = lambda filters: _scaled(filters, width)  # noqa: E731
    x = _conv(image, w(64), 7, "conv1_7x7_s2", style, strides=2)  # 112x112x64
    x = _lrn(_maxpool(x, "pool1_3x3_s2"), "pool1_norm1")  # 56x56x64
    x = _conv(x, w(64), 1, "conv2_3x3_reduce", style)
    x = _conv(x, w(192), 3, "conv2_3x3", style)
    x = _maxpool(_lrn(x, "conv2_norm2"), "pool2_3x3_s2")  # 28x28x192
    aux_outputs = []
    for stage in INCEPTION:
        if stage in ("4a", "5a"):
            x = _maxpool(x, f"pool{int(stage[0]) - 1}_3x3_s2")  # 14x14, then 7x7
        x = inception_module(x, [w(f) for f in INCEPTION[stage]], f"inception_{stage}", style)
        if aux_logits and stage in AUX_ON:
            aux_outputs.append(_aux_head(x, classes, classifier_activation, AUX_ON[stage], width,
                                         style))
    # 7x7x1024
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions",
                         kernel_initializer=_classifier_kernel(style[0]),
                         dtype=_builder.classifier_dtype())(x)
    else:
        x = _builder.global_pool(x, pooling)
    if aux_outputs:  # one output to the outside; the heads add their losses in training
        return _builder.finish(inputs, [x] + aux_outputs, name or "googlenet", weights,
                               model_class=GoogLeNetWithAuxHeads, family="googlenet")
    return _builder.finish(inputs, x, name or "googlenet", weights, family="googlenet")


@keras.saving.register_keras_serializable(package="zoo")
class GoogLeNetWithAuxHeads(keras.Model):
    """GoogLeNet with its two auxiliary classifiers, which exist for training only.

    To everything outside, it is a one-output classifier, the main head. ``predict``,
    ``evaluate``, export, ensembles and symbolic calls see only that head. Its loss adds
    0.3 times each auxiliary head's loss on the same label (the paper's sec. 5). The
    compiled loss is used for all three heads, and the metrics are the main head's. So it
    compiles and fits like any classifier: ``model.compile(opt, loss, metrics)`` and
    ``model.fit(ds)`` with the labels once. Fit it itself: nested in another model
    (``keras.Sequential([RandomFlip(), model])``), Keras keeps its first output and the aux
    heads do not train (put the augmentation in the data pipeline instead).

    Example:

    >>> model = googlenet(aux_logits=True, input_shape=(96, 96, 3), classes=10)
    >>> model.compile("sgd", "sparse_categorical_crossentropy")
    >>> model.predict(np.zeros((1, 96, 96, 3)), verbose=0).shape
    (1, 10)
    """

    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training=training, mask=mask)
        return outputs if training else outputs[0]

    @property
    def output(self):
        """The main head's output, as ``output_shape`` and ``predict`` are: model surgery
        (``keras.Model(model.input, model.output)``) keeps the classifier alone.
        ``outputs`` still holds the three heads."""
        return self.outputs[0]

    @property
    def output_shape(self):
        return super().output_shape[0]

    def compute_output_spec(self, inputs, training=None, mask=None):
        spec = super().compute_output_spec(inputs, training=training, mask=mask)
        return spec if training else spec[0]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, (list, tuple)):  # evaluation: the main head alone
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        main, *auxiliary = y_pred
        loss = super().compute_loss(x, y, main, sample_weight, training)
        for head in auxiliary:  # the compiled loss, on the same label
            loss = loss + AUX_LOSS_WEIGHT * self._compile_loss(y, head, sample_weight)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        main = y_pred[0] if isinstance(y_pred, (list, tuple)) else y_pred
        return super().compute_metrics(x, y, main, sample_weight)


def without_aux(model):
    """The plain one-output GoogLeNet inside a model trained with auxiliary heads.

    It shares the trained model's layers and weights. The auxiliary heads are dropped, as
    the paper does at inference; it is what :class:`GoogLeNetWithAuxHeads` computes
    outside training, without the heads' extra work.

    Example:

    >>> trained = googlenet(aux_logits=True)
    >>> without_aux(trained).count_params()
    6998552
    """
    if not isinstance(model, GoogLeNetWithAuxHeads):
        return model
    from zoo.saving import copy_metadata  # (its class names and resize mode too)

    return copy_metadata(model, keras.Model(model.inputs, model.outputs[0], name=model.name))
