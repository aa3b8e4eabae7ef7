"""Transfer learning: a new head for new classes, and freezing all, none or the first N layers."""

import keras

from safeio.checks import UserError, check_bool, is_int
from zoo._builder import check_classes, classifier_dtype
from zoo.models.googlenet import without_aux


def fine_tune(model, classes, freeze="all", classifier_activation="softmax", name=None,
              train_batch_norm=False):
    """Replace ``model``'s classifier with a new one for ``classes`` and freeze layers.

    ``model`` is a classifier (its last layer named ``predictions``, as every zoo model
    built with the top) or a feature extractor that ends in a global pooling
    (``include_top=False, pooling="avg"`` or ``"max"``), on which the new classifier goes:
    the way to converted weights whose classifier fits only their own input size (VGG's
    fc1 flattens a 7x7 map at 224x224).

    The four quadrants of the notes: little data and a similar task, freeze everything but
    the head (``freeze="all"``); much data, train everything (``"none"``); in between,
    freeze the first ``N`` layers (an int; layers are counted in ``model.layers`` order,
    input layers left out; of a ``zoo.pretrained.with_preprocessing`` model, its
    normalisation layer first, then the converted model's). The new model shares the
    trained layers (and so their ``trainable`` flags) with ``model``; auxiliary heads are
    dropped. BatchNorm layers stay frozen, in inference mode, whatever ``freeze`` unfreezes,
    as Keras' transfer-learning guide keeps them (their statistics, learnt on the large
    dataset, would follow the small batches of the new one); ``train_batch_norm=True``
    trains the unfrozen ones too.

    Example:

    >>> base = zoo.alexnet(input_shape=(67, 67, 3), width=64)   # doctest: +SKIP
    >>> tuned = fine_tune(base, classes=5, freeze=8)           # doctest: +SKIP
    """
    classes = check_classes(classes, classifier_activation)
    if not isinstance(model, keras.Model):  # (a name: AttributeError)
        raise UserError(f"fine_tune takes a built keras.Model (zoo.resnet20(weights=...), "
                        f"zoo.load_model(path)); received {model!r:.80} "
                        f"({type(model).__name__}).")
    base = without_aux(model)
    features, body = _classifier_input(base)
    if features is None:
        features, body = _pooled_features(base)
    if features is None:
        raise UserError(
            f"fine_tune needs a model with a classifier layer named 'predictions' (any zoo "
            f"model built with include_top=True) or pooled features (include_top=False, "
            f"pooling='avg' or 'max'); {base.name!r} has neither"
            + (f" (its output: shape {base.output_shape})."
               if getattr(base, "outputs", None) else ".")
        ) from None
    if freeze == "all":
        frozen = len(body)
    elif freeze == "none":
        frozen = 0
    elif is_int(freeze) and 0 <= freeze <= len(body):  # (a NumPy integer too)
        frozen = int(freeze)
    else:
        raise UserError(
            f"`freeze` must be 'all', 'none' or a number of layers in [0, {len(body)}]; "
            f"received {freeze!r}."
        )
    check_bool(train_batch_norm, "train_batch_norm")
    for i, layer in enumerate(body):
        normalises = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i >= frozen and (train_batch_norm or not normalises)
        if isinstance(layer, keras.Model):  # a nested network's layers, its BatchNorm too
            for inner in layer._flatten_layers(include_self=False):
                inner.trainable = layer.trainable and (train_batch_norm or not isinstance(
                    inner, keras.layers.BatchNormalization))
    outputs = keras.layers.Dense(classes, activation=classifier_activation,
                                 name="predictions", dtype=classifier_dtype())(features)
    tuned = keras.Model(base.inputs, outputs, name=name or f"{base.name}_finetuned")
    from zoo.saving import input_pixels, resize_mode, set_input_pixels, set_resize_mode

    # It takes what the base takes: converted weights' preprocessed pixels stay recorded
    # (zoo.pretrained.with_preprocessing first, to train it on images), and so does a view.
    set_resize_mode(tuned, resize_mode(base))
    return set_input_pixels(tuned, input_pixels(base))


def _layers(model):
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


POOLINGS = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)


def _pooled_features(model):
    """``(model's output, the layers before it)`` where that output is a global pooling's
    (a feature extractor: ``include_top=False, pooling="avg"`` or ``"max"``), of ``model``
    or of the model it wraps last (a ``zoo.pretrained.with_preprocessing`` model: its
    normalisation, then the converted network's layers); ``(None, None)`` otherwise."""
    if len(getattr(model, "outputs", None) or []) != 1 or len(model.outputs[0].shape) != 2:
        return None, None  # (a pooling with keepdims=True: a map, not a vector)
    operation = model.outputs[0]._keras_history[0]
    if isinstance(operation, keras.Model) and len(getattr(operation, "outputs", None)
                                                  or []) == 1:  # (not a subclassed one)
        if not isinstance(operation.outputs[0]._keras_history[0], POOLINGS):
            return None, None
        return model.outputs[0], ([layer for layer in _layers(model) if layer is not operation]
                                  + _layers(operation))
    if isinstance(operation, POOLINGS):
        return model.outputs[0], _layers(model)
    return None, None


def _classifier_input(model):
    """``(the tensor the classifier 'predictions' reads, in ``model``'s graph, the layers
    before it)``: of ``model``, or of the model it wraps last (a
    ``zoo.pretrained.with_preprocessing`` model: its normalisation, then the converted
    network); ``(None, None)`` where there is none."""
    if "predictions" in [layer.name for layer in model.layers]:
        return model.get_layer("predictions").input, [
            layer for layer in _layers(model) if layer.name != "predictions"]
    if not getattr(model, "outputs", None):  # (a subclassed model: no graph to read)
        return None, None
    operation, node_index, _ = model.outputs[0]._keras_history
    if not (isinstance(operation, keras.Model) and len(getattr(operation, "inputs", None)
                                                        or []) == 1 and
            "predictions" in [layer.name for layer in operation.layers]):
        return None, None
    head = operation.get_layer("predictions")
    (called_on,) = operation._inbound_nodes[node_index].input_tensors  # in model's graph
    body = keras.Model(operation.inputs, head.input, name=f"{operation.name}_features")
    return body(called_on), (
        [layer for layer in _layers(model) if layer is not operation]
        + [layer for layer in _layers(operation) if layer is not head])
