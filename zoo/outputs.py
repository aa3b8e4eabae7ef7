"""What a classifier's output is: probabilities, or logits to take the softmax of."""

import keras


def outputs_probabilities(model):
    """Whether ``model`` outputs probabilities (else its outputs are taken as logits).

    Its output is probabilities when made by a softmax: a ``keras.layers.Softmax``,
    ``keras.ops.softmax`` in a functional graph, a layer whose activation is a softmax
    (Keras', ``tf.nn.softmax``, ``jax.nn.softmax``), or a layer that says it serves
    probabilities (``serves_probabilities``: an ensemble's combination, temperature
    scaling). The output is followed back into nested models: a model wrapping a softmax
    classifier (``Model(x, classifier(Rescaling(1 / 255)(x)))``) outputs probabilities too.

    Example:

    >>> inputs = keras.Input((4,))
    >>> outputs_probabilities(keras.Model(inputs, keras.layers.Dense(3)(inputs)))
    False
    >>> outputs_probabilities(keras.Model(inputs, keras.ops.softmax(inputs)))
    True
    """
    return _made_by_softmax(model)


def _made_by_softmax(operation):
    while True:
        while isinstance(operation, keras.Model):  # into nested models, subclassed ones too
            if getattr(operation, "outputs", None):
                operation = operation.outputs[0]._keras_history.operation
            elif operation.layers:  # a subclassed model (no graph): its last layer
                operation = operation.layers[-1]
            else:
                break
        before = _passed_through(operation)
        if before is None:
            break
        operation = before
    return (type(operation).__name__ == "Softmax"  # the layer, and keras.ops.softmax's op
            or getattr(operation, "serves_probabilities", False)
            or is_softmax(getattr(operation, "activation", None)))


# Layers that pass their input's values on (mixed precision's float32 cast,
# ``Activation("linear", dtype="float32")``, after a softmax): what made them is what counts.
_PASSING = ("Identity", "Dropout", "Flatten", "Reshape")


def _passed_through(operation):
    """The operation whose output ``operation`` passes on unchanged in value, or None."""
    kind = type(operation).__name__
    linear = kind == "Activation" and getattr(operation, "activation", None) in (
        keras.activations.linear, None)
    nodes = getattr(operation, "_inbound_nodes", None)
    if not (linear or kind in _PASSING) or not nodes or len(nodes[0].input_tensors) != 1:
        return None
    return nodes[0].input_tensors[0]._keras_history.operation


def is_softmax(function):
    """Keras' softmax, or another framework's given as a layer's activation
    (``tf.nn.softmax`` is named ``softmax_v2``; ``keras.ops.softmax``, ``jax.nn.softmax``)."""
    return (function is keras.activations.softmax
            or getattr(function, "__name__", None) in ("softmax", "softmax_v2"))
