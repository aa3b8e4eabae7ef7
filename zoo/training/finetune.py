"""Transfer learning: a new head for new classes, and freezing all, none or the first N layers."""

import keras

from safeio.checks import UserError, check_positive_int
from zoo.models.googlenet import without_aux


def fine_tune(model, classes, freeze="all", classifier_activation="softmax", name=None):
    """Replace ``model``'s classifier with a new one for ``classes`` and freeze layers.

    The four quadrants of the notes: little data and a similar task, freeze everything but
    the head (``freeze="all"``); much data, train everything (``"none"``); in between,
    freeze the first ``N`` layers (an int; layers are counted in ``model.layers`` order,
    input layers left out). The new model shares the trained layers (and so their
    ``trainable`` flags) with ``model``; auxiliary heads are dropped. Frozen BatchNorm layers
    run in inference mode, as Keras does.

    Example:

    >>> base = zoo.alexnet(input_shape=(67, 67, 3), width=64)   # doctest: +SKIP
    >>> tuned = fine_tune(base, classes=5, freeze=8)           # doctest: +SKIP
    """
    check_positive_int(classes, "classes")
    base = without_aux(model)
    try:
        features = base.get_layer("predictions").input
    except ValueError:
        raise UserError(
            f"fine_tune needs a model with a classifier layer named 'predictions' (any zoo "
            f"model built with include_top=True); {base.name!r} has none."
        ) from None
    body = [layer for layer in base.layers
            if not isinstance(layer, keras.layers.InputLayer) and layer.name != "predictions"]
    if freeze == "all":
        frozen = len(body)
    elif freeze == "none":
        frozen = 0
    elif isinstance(freeze, int) and not isinstance(freeze, bool) and 0 <= freeze <= len(body):
        frozen = freeze
    else:
        raise UserError(
            f"`freeze` must be 'all', 'none' or a number of layers in [0, {len(body)}]; "
            f"received {freeze!r}."
        )
    for i, layer in enumerate(body):
        layer.trainable = i >= frozen
    outputs = keras.layers.Dense(classes, activation=classifier_activation,
                                 name="predictions")(features)
    return keras.Model(base.inputs, outputs, name=name or f"{base.name}_finetuned")
