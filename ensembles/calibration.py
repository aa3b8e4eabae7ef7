"""Temperature scaling (Guo et al. 2017, "On calibration of modern neural networks").

One number T > 0, fitted on held-out data by minimising the NLL, turns a model's
probabilities ``p`` into ``softmax(log p / T)``: T > 1 softens over-confident predictions,
T < 1 sharpens under-confident ones (an average of members is often one), and the top
class never changes. :func:`calibrate` fits T for a model or a whole ensemble (or, with
``per_member=True``, one per member before they are combined: Rahaman and Thiery 2021 found
the order matters; there the ensemble's top class can change, as each member's
probabilities weigh differently in the average), and returns a model that serves the
calibrated probabilities, so that ``ensembles.evaluate``, ``ensembles.uncertainty``,
``.keras`` files and ``ensembles.export`` all follow them.
"""

import warnings

import keras
import numpy as np

from ensembles.metrics import check_probabilities, class_labels
from safeio.checks import UserError, check_bool, is_number

EPS = 1e-30  # zeros (float32 underflow) are taken as EPS before the log, in Keras and NumPy
T_RANGE = (0.01, 100.0)  # the temperatures :func:`fit_temperature` searches


def scaled(probabilities, temperature):
    """``softmax(log p / T)`` of ``probabilities`` (the last axis), as Keras ops.

    Example:

    >>> p = np.array([[0.7, 0.2, 0.1]], "float32")
    >>> np.round(keras.ops.convert_to_numpy(scaled(p, 2.0)), 4)
    array([[0.5229, 0.2795, 0.1976]], dtype=float32)
    """
    if temperature == 1.0:
        return probabilities
    logs = keras.ops.log(keras.ops.maximum(probabilities, EPS))
    return keras.ops.softmax(logs / temperature, axis=-1)


@keras.saving.register_keras_serializable(package="ensembles")
class TemperatureScaling(keras.layers.Layer):
    """Probabilities in, ``softmax(log p / temperature)`` out: what :func:`calibrate` puts
    after a model's output. The temperature is a constant of the layer (its config), so it
    is saved with the model and is never trained.

    Example:

    >>> scaled = TemperatureScaling(0.5)(np.array([[0.6, 0.4]], "float32"))
    >>> keras.ops.convert_to_numpy(scaled).round(4)
    array([[0.6923, 0.3077]], dtype=float32)
    """

    serves_probabilities = True  # ensembles.Ensemble takes its output as probabilities

    def __init__(self, temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = check_temperature(temperature)

    def call(self, probabilities):
        return scaled(probabilities, self.temperature)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def check_temperature(temperature):
    """``temperature`` as a float, or a one-line error unless it is finite and above 0."""
    try:  # a number, a NumPy scalar or a 0-d array; never a string or a bool
        value = float("nan") if isinstance(temperature, (str, bytes, bool)) else float(
            temperature)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise UserError(f"A temperature must be a finite number above 0; received "
                        f"{temperature!r}.")
    if value < MIN_TEMPERATURE:  # (1e-40: logits / T overflowed float32, NaN served)
        raise UserError(f"A temperature must be at least {MIN_TEMPERATURE:g}: below, the "
                        f"tempered logits overflow; received {temperature!r}.")
    return value


MIN_TEMPERATURE = 1e-6


def _log_probabilities(probs, labels):
    probs = np.asarray(probs, "float64")
    labels = class_labels(labels, probs.shape[-1])
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise UserError(f"Expected probabilities shaped ({len(labels)}, classes) for "
                        f"{len(labels)} labels; received {probs.shape}.")
    probs = check_probabilities(probs)
    return np.log(np.maximum(probs, EPS)), labels


def temperature_nll(probs, labels, temperature):
    """The mean NLL of ``softmax(log p / T)`` on ``labels`` (NumPy, float64)."""
    temperature = check_temperature(temperature)
    z, labels = _log_probabilities(probs, labels)
    scaled_z = z / temperature
    top = scaled_z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(scaled_z - top).sum(axis=1))
    return float(np.mean(log_norm - scaled_z[np.arange(len(labels)), labels]))


def _slope(z, labels, beta):
    """d NLL / d beta at beta = 1 / T: the mean over examples of E_q[z] - z_label, with q
    the tempered distribution. It increases with beta (the NLL is convex in beta: a
    log-sum-exp of functions linear in beta), so its one zero is the optimum."""
    scaled_z = beta * z
    q = np.exp(scaled_z - scaled_z.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    return float(np.mean((q * z).sum(axis=1) - z[np.arange(len(labels)), labels]))


def fit_temperature(probs, labels, tolerance=1e-10):
    """The temperature T minimising the NLL of ``softmax(log p / T)`` on ``(probs, labels)``.

    The NLL is convex in beta = 1 / T, so the zero of its derivative is found by bisection
    on beta over ``T_RANGE`` (to ``tolerance``, relative). Where the NLL keeps falling to
    an end of that range (every prediction right, for example), that end is returned with
    a warning.

    Example:

    >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    >>> round(fit_temperature(probs, [0, 0, 1, 1]), 3)  # under-confident: sharpened
    0.535
    """
    if not is_number(tolerance) or not 0 < tolerance < 1:  # (0 bisected for ever)
        raise UserError(f"`tolerance` is the fit's relative precision: a number in (0, 1); "
                        f"received {tolerance!r}.")
    z, labels = _log_probabilities(probs, labels)
    low, high = 1.0 / T_RANGE[1], 1.0 / T_RANGE[0]
    slope_low, slope_high = _slope(z, labels, low), _slope(z, labels, high)
    if abs(slope_low) < 1e-12 and abs(slope_high) < 1e-12:  # (0, but for rounding)
        return 1.0  # every example's probabilities equal: any temperature is as good
    if slope_high <= 0 or slope_low >= 0:
        end = T_RANGE[0] if slope_high <= 0 else T_RANGE[1]
        why = ("(almost) every prediction is right: the held-out data is too easy, or too "
               "small, to calibrate on" if slope_high <= 0 else "the predictions tell "
               "nothing about the labels of the held-out data (an untrained model, or the "
               "wrong data)")
        warnings.warn(f"The NLL keeps falling up to temperature {end:g}, the end of the "
                      f"range searched {T_RANGE}: {why}.", stacklevel=2)
        return end
    while high - low > tolerance * low:
        middle = 0.5 * (low + high)
        if _slope(z, labels, middle) < 0:
            low = middle
        else:
            high = middle
    return 1.0 / (0.5 * (low + high))


def temperature(model, per_member=False):
    """The temperature a model serves its probabilities at (1.0 when it was never
    calibrated); with ``per_member=True``, the list of an ensemble's members' temperatures.

    Example:

    >>> import zoo
    >>> model = zoo.resnet18(input_shape=(32, 32, 3), classes=10, width=0.125)
    >>> temperature(with_temperature(model, 1.5))
    1.5
    """
    from ensembles.ensemble import combine_layer, members_of

    if check_bool(per_member, "per_member"):
        if combine_layer(model) is None:
            raise UserError(f"per_member=True reads an ensemble's members; {model.name!r} "
                            "is not an ensemble.")
        return [temperature(member) for member in members_of(model)]
    own, below = _own_temperature(model)
    if isinstance(below, keras.Model) and getattr(below, "outputs", None):
        return own * temperature(below)  # a calibrated model inside a wrapper multiplies
    return own


def _own_temperature(model):
    """``(T, below)``: the temperature :func:`with_temperature` replaces, the model's own
    top-level one (an ensemble's combination, or its last TemperatureScaling layer), and
    the operation whose probabilities it scales (None for an ensemble). A wrapped model's
    temperature stays, below it, and multiplies."""
    from ensembles.ensemble import combine_layer

    layer = combine_layer(model)
    if layer is not None:
        return layer.temperature, None
    operation = model.outputs[0]._keras_history.operation  # as with_temperature reads it
    if isinstance(operation, TemperatureScaling):
        return operation.temperature, operation.input._keras_history.operation
    return 1.0, operation


def with_temperature(model, temperature):
    """``model`` (sharing its layers and weights) serving ``softmax(log p / temperature)``
    in place of its probabilities p: for an ensemble, its combination; for another model, a
    :class:`TemperatureScaling` layer after its output (replacing the one a calibrated model
    has). Class names and the model's name are kept."""
    from ensembles.ensemble import CombineMembers, _softmax_output, combine_layer
    from zoo.saving import copy_metadata

    temperature = check_temperature(temperature)
    layer = combine_layer(model)
    if layer is not None:
        config = {**layer.get_config(), "temperature": temperature}
        combined = CombineMembers.from_config(config)(layer.input)
        outputs = [combined, layer.input] if len(model.outputs) == 2 else combined
    else:
        if len(model.outputs) != 1:
            raise UserError(f"{model.name!r} has {len(model.outputs)} outputs; temperature "
                            "scaling takes one-output classifiers.")
        operation = model.outputs[0]._keras_history.operation
        if isinstance(operation, TemperatureScaling):
            probabilities = operation.input  # replaced, not stacked
        elif _softmax_output(model):
            probabilities = model.outputs[0]
        else:  # logits
            probabilities = keras.layers.Softmax(name="probabilities",
                                                 dtype="float32")(model.outputs[0])
        # float32 whatever the global policy (mixed_float16 served, and saved, float16:
        # no probability below 6e-8), as an ensemble's combination is
        outputs = TemperatureScaling(temperature, name="temperature",
                                     dtype="float32")(probabilities)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return copy_metadata(model, keras.Model(inputs, outputs, name=model.name))


def _served_probabilities(model, member_probs):
    from ensembles.evaluation import combine
    from ensembles.ensemble import is_ensemble

    return combine(model, member_probs) if is_ensemble(model) else member_probs[0]


def _fitted(probs, labels, name):
    """:func:`fit_temperature`'s T, refused in one line where it is the end of the range
    searched: a model served at T = 0.01 (learnt from data it made no mistake on) would
    cost ~28 nats for every later mistake. ``evaluate(calibrate_on=)`` only warns."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        fitted = fit_temperature(probs, labels)
    ended = [w for w in caught if "the end of the range searched" in str(w.message)]
    if ended:
        reason = str(ended[0].message)
        advice = ("calibrate on held-out data with its mistakes (a larger validation split)"
                  if fitted == T_RANGE[0] else "check that the model is trained and the "
                  "data is the one it was trained for")
        raise UserError(f"Not calibrated: for {name}, t{reason[1:-1]}; it would be served at "
                        f"T = {fitted:g}: {advice}, or serve it as it is.")
    for w in caught:  # (any other warning, as it came)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return fitted


def calibrate(model, data, per_member=False, tta=None):
    """Fit a temperature on held-out ``data`` by minimising the NLL (Guo et al. 2017) and
    return ``model`` serving ``softmax(log p / T)`` (sharing its layers and weights).

    Args:
        model: a classifier, or an :func:`ensembles.Ensemble` (then its combined
            probabilities are calibrated: ensemble, then calibrate). A model calibrated
            before is calibrated further (its temperatures multiply).
        data: held-out batches of ``(images, labels)``, e.g. the validation split; fit on one
            split and report on another.
        per_member: for an ensemble: one temperature per member, fitted on that member's
            probabilities, before the members are combined (calibrate, then ensemble). The
            ensemble's own temperature is kept.
        tta: test-time augmentation for the predictions, as ``ensembles.evaluate``'s.

    :func:`temperature` reads the temperatures back.

    Example:

    >>> calibrated = calibrate(ensemble, data.load("digits", "validation"))  # doctest: +SKIP
    >>> ensembles.temperature(calibrated)                                     # doctest: +SKIP
    0.83
    """
    from ensembles.ensemble import Ensemble, combine_layer, members_of
    from ensembles.evaluation import check_held_out_classes, predict_members
    from zoo.saving import copy_metadata

    if tta is not None:
        raise UserError(f"Temperature scaling with tta={tta!r} is refused: the model applies "
                        "T to each view before the views are averaged, so a T fitted on the "
                        "averaged views would not be the one it serves. Calibrate without "
                        "test-time augmentation.")
    if not isinstance(model, keras.Model):  # (a list: AttributeError after predicting all)
        raise UserError(f"calibrate takes one model or ensemble (ensembles.Ensemble(models) "
                        f"for several); received {type(model).__name__}.")
    layer = combine_layer(model)
    per_member = check_bool(per_member, "per_member")
    if per_member and layer is None:
        raise UserError(f"per_member=True calibrates an ensemble's members; {model.name!r} "
                        "is not an ensemble (calibrate it with per_member=False).")
    _, member_probs, labels = predict_members(model, data, tta)
    check_held_out_classes(labels, member_probs.shape[-1], "A temperature")
    if not per_member:
        fitted = _fitted(_served_probabilities(model, member_probs), labels, model.name)
        return with_temperature(model, _own_temperature(model)[0] * fitted)
    members = members_of(model)
    if len({id(m) for m in members}) < len(members):
        raise UserError(
            f"{model.name!r} calls one model several times (MC dropout samples), which one "
            "temperature per member cannot tell apart: calibrate the model before "
            "ensembles.mc_dropout, or the whole ensemble with per_member=False.")
    calibrated = [with_temperature(m, _own_temperature(m)[0] * _fitted(p, labels, m.name))
                  for m, p in zip(members, member_probs)]
    ensemble = Ensemble(calibrated, combine=layer.combine, weights=layer.member_weights,
                        return_members=len(model.outputs) == 2, name=model.name)
    if layer.temperature != 1.0:
        ensemble = with_temperature(ensemble, layer.temperature)
    return copy_metadata(model, ensemble)
