"""Babysitting training, as the lecture notes teach it, for every model in the zoo.

- :func:`initial_loss`: the untrained model's loss against ln(number of classes);
- :func:`overfit_tiny_subset`: without regularisation, ~20 examples must be learnt to ~100 %;
- :class:`UpdateRatioLogger`: per layer and epoch, ||update|| / ||weights|| (healthy near
  1e-3), with a warning when a layer is far off;
- :func:`activation_report`: per layer, the activations' mean and std and the fraction of
  dead ReLUs (units that output 0 for every example of a batch);
- :func:`diagnose`: all of them, as one short report (``zoo diagnose``).
"""

import dataclasses
import math
import warnings

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from safeio import atomic_path
from safeio.checks import UserError, check_positive_int, check_positive_number, is_number
from zoo.layers import DropConnectDense
from zoo.optimizers import build_optimizer, check_hyperparameters
from safeio.outputs import outputs_probabilities
from zoo.training import keras_internals
from zoo.training import recipe as training

HEALTHY_UPDATE_RATIO = 1e-3
_RELU_LAYERS = (keras.layers.ReLU,)


@dataclasses.dataclass
class Check:
    """One diagnostic's outcome: what was measured, what was expected, and a verdict."""

    name: str
    value: float
    expected: str
    ok: bool
    verdict: str

    def __str__(self):
        return f"[{'ok' if self.ok else 'FAIL'}] {self.name}: {self.verdict}"


def _outputs_logits(model):
    """Whether the (main) output is logits rather than probabilities (``safeio.outputs``)."""
    return not outputs_probabilities(model)


def _first_batches(dataset, batches=None, examples=None):
    """The first ``batches`` batches, or enough batches for ``examples`` examples, as
    ``(images, labels)``; an unbatched dataset's examples count one by one."""
    images, labels = [], []
    for element in dataset:
        if not isinstance(element, (tuple, list)) or len(element) != 2:
            raise UserError("The dataset must yield (images, labels) pairs; received "
                            f"{type(element).__name__} elements.")
        x, y = np.asarray(element[0]), np.asarray(element[1])
        if y.ndim == 0:  # unbatched: one example
            x, y = x[None], y[None]
        images.append(x)
        labels.append(_class_indices(y))
        if len(images) == batches or (examples and sum(map(len, labels)) >= examples):
            break
    if not images:
        raise UserError("The dataset is empty: received no batches.")
    return np.concatenate(images), np.concatenate(labels)


def _class_indices(labels):
    """Integer class labels of shape (batch,) or (batch, 1) as int64 (batch,)."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(
            "The checks need integer class labels of shape (batch,); received shape "
            f"{labels.shape} of {labels.dtype} (one-hot labels: take their argmax).")
    return labels.astype("int64")


def _check_label_range(labels, classes):
    if labels.min() < 0 or labels.max() >= classes:
        raise UserError(f"Labels must lie in [0, {classes}) for a model of {classes} classes; "
                        f"received labels from {labels.min()} to {labels.max()}.")


def initial_loss(model, dataset, batches=1, tolerance=1.0):
    """Check the untrained model's cross-entropy against ln(number of classes).

    With small random weights every class is about equally likely, so the loss starts near
    ln(C) (2.303 for 10 classes). Much higher means the output layer is mis-scaled (too
    large initial logits); much lower, that the labels leak or the model is not fresh.
    ``tolerance`` is in nats: logits of standard deviation s add about s^2 / 2, and a
    Glorot-initialised head on the unit-scale features a BatchNormalization network gives
    it starts near s = 1, half a nat up (the default, 1, allows s up to about 1.4; a head
    100 times too large is tens of nats up). The loss is the one the first training step
    computes (:func:`as_first_step`).

    Example:

    >>> initial_loss(zoo.alexnet(input_shape=(67, 67, 3), classes=10),
    ...              data.load("digits", image_size=67))            # doctest: +SKIP
    """
    check_positive_int(batches, "batches")
    check_positive_number(tolerance, "tolerance", " (in nats)")
    images, labels = _first_batches(dataset, batches)
    network, in_training = as_first_step(model)
    outputs = network(images, training=in_training)
    if isinstance(outputs, (list, tuple)):  # (GoogLeNet's auxiliary heads, in training)
        outputs = outputs[0]
    classes = int(outputs.shape[-1])
    _check_label_range(labels, classes)
    loss = float(keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
        labels, outputs, from_logits=_outputs_logits(model))))
    expected = math.log(classes)
    ok = abs(loss - expected) <= tolerance
    if ok:
        verdict = f"loss {loss:.3f} is close to ln({classes}) = {expected:.3f}"
    elif loss > expected:
        verdict = (f"loss {loss:.3f} is far above ln({classes}) = {expected:.3f}: the "
                   "initial logits are too large (mis-scaled output layer or "
                   "initialisation; in a ResNet its residual sums grow them, and "
                   "zero_init_residual=True starts each block as the identity)")
    else:
        verdict = (f"loss {loss:.3f} is far below ln({classes}) = {expected:.3f}: the model "
                   "is not untrained, or the labels leak into the inputs")
    return Check("initial loss", loss, f"ln({classes}) = {expected:.3f} +- {tolerance}", ok,
                 verdict)


_DROPPING = (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout,
             DropConnectDense)  # (Keras' SpatialDropout layers are Dropout layers)


def _layers(model):
    """Every layer of ``model``, those of nested models included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def as_first_step(model):
    """``(network, training)``: ``model`` as its first training step computes, for the
    checks at initialisation. A network with BatchNormalization normalises by the batch's
    own statistics there: its moving ones are still 0 and 1, and in inference mode they
    scaled every layer wrongly (a fresh ResNet-20's loss read 13.5 for 3.8). So such a
    network is a copy with its weights and without dropout or noise (which would only add
    noise to the check), called in training mode; any other is ``model`` in inference
    mode."""
    if (not any(isinstance(layer, keras.layers.BatchNormalization) for layer in _layers(model))
            or not keras_internals.clonable(model)):  # (a subclassed model: as it is)
        return model, False
    copy = without_regularisation(model)
    copy.set_weights(model.get_weights())
    return copy, True


def without_regularisation(model):
    """A freshly initialised copy of ``model`` with every dropout rate set to 0 (Keras'
    dropout layers and ``zoo.layers.DropConnectDense``), no Gaussian noise and no
    kernel/bias/activity regularizers, nested models included (the weights are NOT
    copied)."""

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, _DROPPING):
            config["rate"] = 0.0
        if isinstance(layer, keras.layers.GaussianNoise):
            config["stddev"] = 0.0
        for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
            if key in config:
                config[key] = None
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone, recursive=True)


def overfit_tiny_subset(model, dataset, examples=20, steps=100, learning_rate=0.01,
                        momentum=0.9, target=0.99, seed=0):
    """Train on ``examples`` examples with no regularisation; training accuracy should
    reach ~100 % (``target``). Failing means the model or its optimisation is broken.

    ``model`` is a built model (a fresh, regularisation-free copy is trained; the model
    itself is untouched). Full-batch SGD with momentum and no weight decay for ``steps``
    steps. ``Check.value`` is the final training accuracy.

    Example:

    >>> overfit_tiny_subset(model, data.load("digits", image_size=67)).ok   # doctest: +SKIP
    True
    """
    check_positive_int(examples, "examples")
    check_positive_int(steps, "steps")
    check_hyperparameters(learning_rate, momentum, None)  # (NaN, 0 and -1 trained)
    if not is_number(target) or not 0 < target <= 1:
        raise UserError(f"`target` must be an accuracy in (0, 1]; received {target!r}.")
    images, labels = _first_batches(dataset, examples=examples)
    if len(labels) < examples:
        raise UserError(f"The dataset has {len(labels)} examples; the check needs "
                        f"{examples}.")
    images, labels = images[:examples], labels[:examples]
    _check_label_range(labels, int(model(images[:1], training=False).shape[-1]))
    keras.utils.set_random_seed(seed)
    fresh = without_regularisation(model)
    fresh.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=_outputs_logits(fresh)),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    build_optimizer(fresh)  # else TensorFlow traces fit's first step twice
    tiny = tf.data.Dataset.from_tensors((images, labels))
    fresh.fit(tiny.repeat(steps), epochs=1, verbose=0, shuffle=False)
    # After the last step, in training mode (batch normalisation on the batch's statistics,
    # whose moving averages lag: at momentum 0.99, 100 steps move them 63 % of the way).
    outputs = fresh(images, training=True)
    accuracy = float(np.mean(np.argmax(keras.ops.convert_to_numpy(outputs), -1) == labels))
    loss = float(keras.ops.convert_to_numpy(fresh.loss(labels, outputs)))
    ok = accuracy >= target
    verdict = (f"training accuracy {100 * accuracy:.1f} % (loss {loss:.4f}) on {examples} "
               f"examples after {steps} steps at lr {learning_rate}")
    if not ok:
        verdict += (": the model cannot even memorise a tiny subset; check the "
                    "initialisation, the learning rate and the data")
    return Check("overfit a tiny subset", accuracy, f">= {100 * target:.0f} % accuracy", ok,
                 verdict)


def _kernels(model, prefix=""):
    """``{layer name: kernel}`` for every layer with a trainable kernel (rank > 1), those
    of nested models named ``model/layer`` (a wrapped network was one row, its first
    kernel's)."""
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(_kernels(layer, f"{prefix}{layer.name}/"))
            continue
        for weight in layer.trainable_weights:
            if len(weight.shape) > 1 and prefix + layer.name not in found:
                found[prefix + layer.name] = weight
    return found


class UpdateRatioLogger(keras.callbacks.Callback):
    """Log, per layer and epoch, the ratio of the update's norm to the weights' norm.

    Every ``every``-th training step of an epoch, each kernel is read before and after the
    step; the epoch's value per layer is the mean ratio over those steps. The lecture's
    rule of thumb: around 1e-3 is healthy; much lower and the learning rate is too small,
    much higher and it is too large. Layers outside ``[low, high]`` give one warning per
    epoch. The values are in :attr:`history` (a DataFrame: epoch, layer, ratio) and, with
    ``path``, written there as CSV after every epoch.

    Example:

    >>> logger = UpdateRatioLogger()
    >>> model.fit(train, epochs=2, callbacks=[logger])     # doctest: +SKIP
    >>> logger.history.pivot(index="layer", columns="epoch", values="ratio")  # doctest: +SKIP
    """

    keeps_weights = True  # (zoo.train's backup may copy the checkpoint's weights)

    def __init__(self, every=10, low=1e-4, high=1e-2, path=None):
        super().__init__()
        if not isinstance(every, int) or every < 1:
            raise UserError(f"`every` must be a positive integer; received {every!r}.")
        if not (is_number(low) and is_number(high) and 0 < low < high):  # ("a": TypeError)
            raise UserError(f"Need 0 < low < high; received low={low!r}, high={high!r}.")
        self.every, self.low, self.high, self.path = every, low, high, path
        self.rows = []
        self._before = None
        self._ratios = {}

    @property
    def history(self):
        return pd.DataFrame(self.rows, columns=["epoch", "layer", "ratio"])

    def on_epoch_begin(self, epoch, logs=None):
        self._ratios = {}

    def on_train_batch_begin(self, batch, logs=None):
        if batch % self.every == 0:
            self._before = {name: np.array(w) for name, w in _kernels(self.model).items()}

    def on_train_batch_end(self, batch, logs=None):
        if self._before is None:
            return
        for name, weight in _kernels(self.model).items():
            before = self._before[name]
            norm = np.linalg.norm(before)
            if norm > 0:
                ratio = np.linalg.norm(np.array(weight) - before) / norm
                self._ratios.setdefault(name, []).append(float(ratio))
        self._before = None

    def on_epoch_end(self, epoch, logs=None):
        new = [{"epoch": epoch + 1, "layer": name, "ratio": float(np.mean(values))}
               for name, values in self._ratios.items()]
        self.rows += new
        if self.path:
            with atomic_path(self.path) as tmp:
                self.history.to_csv(tmp, index=False)
        off = [f"{r['layer']} ({r['ratio']:.1e})" for r in new
               if not self.low <= r["ratio"] <= self.high]
        if off:
            warnings.warn(
                f"Epoch {epoch + 1}: update/weight ratio outside [{self.low:g}, "
                f"{self.high:g}] (healthy near {HEALTHY_UPDATE_RATIO:g}) in {len(off)} of "
                f"{len(new)} layers: {', '.join(off[:6])}{' ...' if len(off) > 6 else ''}",
                stacklevel=1)  # (Keras calls it: 2 named Keras' line, in Python's two lines)


def _is_relu(layer):
    if isinstance(layer, _RELU_LAYERS):
        return layer.negative_slope == 0 and layer.threshold == 0
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "relu"


def _activation_layers(model):
    """Layers whose output is an activation: ReLU inside a conv/dense layer or any
    activation layer (ReLU, LeakyReLU, PReLU, ELU, Activation); nested models apart."""
    kinds = (keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.PReLU, keras.layers.ELU,
             keras.layers.Activation)
    chosen = []
    for layer in model.layers:
        activation = getattr(layer, "activation", None)
        name = getattr(activation, "__name__", "linear")
        if not isinstance(layer, keras.Model) and (
                isinstance(layer, kinds) or name not in ("linear", "softmax")):
            chosen.append(layer)
    return chosen


def _nested_calls(model):
    """``(nested model, the tensor it is called on in model's graph)`` for each nested
    functional model (``with_preprocessing``'s and ``fine_tune``'s wrappers hold one)."""
    graph = getattr(model, "_functional", model)  # (a Sequential's graph, once built)
    operations = {id(op) for op in getattr(graph, "operations", model.layers)}
    calls = []
    for layer in model.layers:
        if not isinstance(layer, keras.Model) or not getattr(layer, "inputs", None):
            continue
        for node in layer._inbound_nodes:  # (the call in this graph, of its calls)
            tensors = node.input_tensors
            if len(tensors) == 1 and id(tensors[0]._keras_history.operation) in operations:
                calls.append((layer, tensors[0]))
                break
    return calls


def _activations(model, images, training, prefix=""):
    """``[(name, layer, value)]`` for every activation layer of ``model`` on ``images``,
    those of nested models named ``model/layer`` (they were left out)."""
    layers, nested = _activation_layers(model), _nested_calls(model)
    if not layers and not nested:
        return []
    graph = getattr(model, "_functional", model)  # (a Sequential's graph, once built)
    # One input as a tensor, not a list of one: called with a tensor, a list-input model
    # warned twice that "the structure of inputs doesn't match the expected structure".
    inputs = graph.inputs[0] if len(graph.inputs) == 1 else graph.inputs
    probe = keras.Model(inputs, [layer.output for layer in layers]
                        + [tensor for _, tensor in nested])
    outputs = probe(images, training=training)
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    found = [(prefix + layer.name, layer, value) for layer, value in zip(layers, outputs)]
    for (inner, _), inner_images in zip(nested, outputs[len(layers):]):
        found += _activations(inner, inner_images, training, f"{prefix}{inner.name}/")
    return found


def activation_report(model, images, training=False):
    """Per activation layer on ``images`` (one batch): mean, std, and for ReLU layers the
    fraction of dead units (units, i.e. channels, that output 0 for every example and
    position) and of zero outputs.

    Example:

    >>> report = activation_report(model, next(iter(train))[0])     # doctest: +SKIP
    >>> report.loc[report["dead_fraction"] > 0.5]                    # doctest: +SKIP
    """
    found = _activations(model, np.asarray(images), training)
    if not found:
        raise UserError(f"{model.name} has no activation layers to report on.")
    rows = []
    for name, layer, value in found:
        value = np.asarray(value, dtype="float64")
        units = value.reshape(-1, value.shape[-1])
        relu = _is_relu(layer)
        rows.append({
            "layer": name, "relu": relu, "units": units.shape[-1],
            "mean": value.mean(), "std": value.std(),
            "zero_fraction": float((units <= 0).mean()) if relu else np.nan,
            "dead_fraction": float((units.max(axis=0) <= 0).mean()) if relu else np.nan,
        })
    return pd.DataFrame(rows).set_index("layer")


def dead_relu_check(report, threshold=0.5, name="dead ReLUs", trained=True):
    """A :class:`Check` (called ``name``) on an :func:`activation_report`: flags ReLU layers
    with more than ``threshold`` (a fraction in [0, 1)) of their units dead. ``trained``:
    whether the report is of a trained model (the learning rate may have killed them) or
    of one at its initialisation (the learning rate has not acted yet)."""
    if not is_number(threshold) or not 0 <= threshold < 1:  # (2.0 or NaN: always "ok")
        raise UserError(f"`threshold` must be a fraction of the units in [0, 1); received "
                        f"{threshold!r}.")
    relus = report[report["relu"]]
    if relus.empty:
        return Check(name, 0.0, "no ReLU layers", True, "no ReLU layers to check")
    broken = relus.index[~np.isfinite(relus["mean"].to_numpy(dtype="float64"))]
    if len(broken):  # (NaN is never <= 0: every unit counted alive, and "ok")
        return Check(name, math.nan, f"no layer above {100 * threshold:.0f} % dead", False,
                     f"the activations are not finite (NaN or inf) in {len(broken)} of "
                     f"{len(relus)} ReLU layers ({', '.join(broken[:5])}"
                     f"{' ...' if len(broken) > 5 else ''}): the weights are ("
                     + ("a diverged run: lower the learning rate" if trained else
                        "the initialisation") + "), or the inputs")
    dead = relus["dead_fraction"]
    overall = float((dead * relus["units"]).sum() / relus["units"].sum())
    bad = dead[dead > threshold]
    ok = bad.empty
    verdict = f"{100 * overall:.1f} % of ReLU units dead on the batch"
    if not ok:
        verdict += (f"; more than {100 * threshold:.0f} % dead in {len(bad)} of {len(relus)} "
                    f"layers ({', '.join(bad.index[:5])}{' ...' if len(bad) > 5 else ''}): "
                    + ("lower the learning rate or change the initialisation/biases"
                       if trained else "change the initialisation/biases (the learning "
                       "rate has not acted yet)"))
    return Check(name, overall, f"no layer above {100 * threshold:.0f} % dead", ok, verdict)


def update_ratio_check(history, low=1e-4, high=1e-2):
    """A :class:`Check` on :attr:`UpdateRatioLogger.history`: the last epoch's median ratio."""
    if not (is_number(low) and is_number(high) and 0 <= low <= high < math.inf):
        raise UserError(f"`low` and `high` must be finite numbers with 0 <= low <= high; "
                        f"received low={low!r}, high={high!r}.")
    last = history[history["epoch"] == history["epoch"].max()]
    if last.empty:  # (a NaN median of no layer, which read as a diverged run)
        return Check("update/weight ratio", math.nan, f"{low:g} .. {high:g} (healthy near "
                     "1e-3)", False, "no ratio could be measured: no layer had a kernel "
                     "(a weight of rank 2 or more) other than zero at the steps measured. "
                     "Kernels that start at zero (kernel_initializer='zeros') learn nothing "
                     "where no gradient reaches them: initialise them randomly")
    finite = np.isfinite(last["ratio"].to_numpy(dtype="float64")).all()
    median = float(last["ratio"].median()) if finite else math.nan  # (pandas skips NaN)
    ok = low <= median <= high
    verdict = (f"median update/weight ratio {median:.1e} over {len(last)} layers "
               f"(range {last['ratio'].min():.1e} .. {last['ratio'].max():.1e})")
    if not math.isfinite(median):
        verdict += ": the weights or their updates are not finite (the run diverged); lower "
        verdict += "the learning rate"
    elif median < low:
        verdict += ": updates are tiny; raise the learning rate"
    elif median > high:
        verdict += ": updates are large; lower the learning rate"
    return Check("update/weight ratio", median, f"{low:g} .. {high:g} (healthy near 1e-3)",
                 ok, verdict)


@dataclasses.dataclass
class Diagnosis:
    """What :func:`diagnose` returns: the checks, and the tables behind them."""

    model_name: str
    checks: list
    activations_at_init: pd.DataFrame
    activations_after: pd.DataFrame
    update_ratios: pd.DataFrame

    @property
    def ok(self):
        return all(check.ok for check in self.checks)

    def __str__(self):
        lines = [f"Diagnostics for {self.model_name}"]
        lines += [f"  {check}" for check in self.checks]
        ratios = self.update_ratios
        if not ratios.empty:
            last = ratios[ratios["epoch"] == ratios["epoch"].max()].set_index("layer")["ratio"]
            lines.append("  update/weight ratio per layer (last epoch): " + ", ".join(
                f"{name} {value:.1e}" for name, value in last.items()))
        return "\n".join(lines)


def diagnose(model, train_data, *, learning_rate=0.01, momentum=0.9, weight_decay=5e-4,
             epochs=1, examples=20, overfit_steps=100, seed=0, verbose=0):
    """Run every check on a built, untrained ``model``; returns a :class:`Diagnosis`.

    1. initial loss vs ln(classes) and activations/dead ReLUs of the untrained model;
    2. overfit ``examples`` training examples without regularisation;
    3. train a fresh copy for ``epochs`` with the paper recipe (``zoo.PaperSGD``) while
       logging update/weight ratios, then the activations/dead ReLUs again.
    ``model`` itself is never trained.

    Example:

    >>> print(diagnose(zoo.alexnet(input_shape=(67, 67, 3), classes=10, width=256),
    ...                data.load("digits", image_size=67)))       # doctest: +SKIP
    """
    check_hyperparameters(learning_rate, momentum, weight_decay)  # (before three checks ran)
    images, _ = _first_batches(train_data, 1)
    network, in_training = as_first_step(model)  # (with BatchNormalization: a copy)
    at_init = activation_report(network, images, training=in_training)
    checks = [initial_loss(model, train_data),
              dead_relu_check(at_init, name="dead ReLUs at initialisation", trained=False)]
    checks.append(overfit_tiny_subset(model, train_data, examples=examples,
                                      steps=overfit_steps, learning_rate=learning_rate,
                                      momentum=momentum, seed=seed))
    keras.utils.set_random_seed(seed)
    copy = keras.models.clone_model(model)
    steps = training.epoch_length(train_data, None)  # (None: a generator, say)
    logger = UpdateRatioLogger(every=max(1, (steps or 100) // 10))
    training.train(copy, train_data, epochs=epochs, learning_rate=learning_rate,
                   momentum=momentum, weight_decay=weight_decay, reduce_lr=False,
                   callbacks=[logger], verbose=verbose)
    checks.append(update_ratio_check(logger.history))
    after = activation_report(copy, images)
    checks.append(dead_relu_check(after, name=f"dead ReLUs after {epochs} epoch(s)"))
    return Diagnosis(model.name, checks, at_init, after, logger.history)
