"""What a classifier's output is: probabilities, or logits to take the softmax of.

Read from the model's graph, one reading everywhere: ensembles, evaluation, export, the
training recipe, ``zoo.predict`` and ``data.predict_crops`` (which is why it sits on the
shared floor, below the data code).
"""

import keras
import numpy as np

from safeio.checks import UserError


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
    kind = output_kind(model)
    if kind not in ("probabilities", "logits"):
        operation = _last_operation(model)
        raise UserError(
            f"{getattr(model, 'name', model)!r} ends in a {kind} "
            f"({getattr(operation, 'name', type(operation).__name__)!r}): a classifier here "
            "outputs a softmax's probabilities, or logits whose softmax is taken, and a "
            f"{kind}'s outputs are neither (they were read as logits). Build it with "
            "classifier_activation='softmax' (or None, for logits).")
    return kind == "probabilities"


def output_kind(model):
    """``"probabilities"`` (made by a softmax, as :func:`outputs_probabilities` tells),
    ``"logits"``, or the name of the activation that squashes each output on its own
    (``"sigmoid"``: several labels' probabilities, or a mistake).

    Example:

    >>> inputs = keras.Input((4,))
    >>> output_kind(keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(inputs)))
    'sigmoid'
    """
    operation = _last_operation(model)
    return other_activation(operation) or (
        "probabilities" if _is_softmax(operation) else "logits")


def _last_operation(operation):
    """What makes ``operation``'s output: followed into nested models and back through the
    layers that pass values on."""
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
            return operation
        operation = before


def _is_softmax(operation):
    return (type(operation).__name__ == "Softmax"  # the layer, and keras.ops.softmax's op
            or getattr(operation, "serves_probabilities", False)
            or is_softmax(getattr(operation, "activation", None)))


# Activations that squash each output on its own into a bounded range: neither
# probabilities over the classes nor logits (whose softmax would be all but uniform). A
# layer's activation (Keras' names; tf.nn's and jax.nn's are the same), or the operation
# of keras.ops.sigmoid/tanh in a functional graph. (An unbounded one, a ReLU's, still
# gives logits: its softmax is a distribution.)
_OTHER_ACTIVATIONS = {"sigmoid", "hard_sigmoid", "sparse_sigmoid", "tanh", "hard_tanh",
                      "softsign"}
_OTHER_LAYERS = {"Sigmoid": "sigmoid", "Tanh": "tanh"}


def other_activation(operation):
    """The name of the squashing activation (a sigmoid's) that makes ``operation``'s
    output, else None."""
    kind = type(operation).__name__
    if kind == "Activation" or kind not in _OTHER_LAYERS:
        name = getattr(getattr(operation, "activation", None), "__name__", None)
        return name if name in _OTHER_ACTIVATIONS else None
    return _OTHER_LAYERS[kind]


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


def look_like_probabilities(outputs):
    """Rows in [0, 1] that sum to 1: no model's logits do, but for a coincidence. The
    check behind the warning for a model whose softmax the graph does not show (a
    subclassed model's ``call``, a ``Lambda``).

    Example:

    >>> look_like_probabilities([[0.25, 0.75]]), look_like_probabilities([[2.0, -1.0]])
    (True, False)
    """
    outputs = np.asarray(outputs, "float64")
    return bool(outputs.size and (outputs >= 0).all() and (outputs <= 1).all()
                and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3))


def warn_if_hidden_softmax(outputs, subject, consequence, advice="End the model with "
                           "keras.layers.Softmax or activation='softmax'.", stacklevel=2):
    """Warn, and return True, where ``outputs`` of a model whose graph shows no softmax
    :func:`look_like_probabilities`: read as logits, their softmax is taken again.
    ``subject`` names the model (``"m's"``), ``consequence`` what follows for the caller."""
    if not look_like_probabilities(outputs):
        return False
    import warnings

    warnings.warn(f"{subject} outputs look like probabilities (rows in [0, 1] summing to 1), "
                  "but its graph ends in no softmax that can be seen, so they are read as "
                  f"logits and {consequence}. {advice}", stacklevel=stacklevel + 1)
    return True


def softmax(logits):
    """The softmax of ``logits`` as a NumPy array, in float32 at least (float16 logits'
    softmax had no probability below 6e-8)."""
    logits = np.asarray(logits)
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.softmax(
        logits.astype(np.promote_types(logits.dtype, "float32")))))
