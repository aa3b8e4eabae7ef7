"""Optimizers by name: the papers' SGD with weight decay through the gradient, and the
lecture notes' others, and ``compile_model`` (the recipe's compile, which ``zoo.train``
uses). Keras only, so ``import zoo`` registers them on every backend, and a machine
without TensorFlow (the GPU benchmark's) compiles as ``zoo.train`` does."""

import contextlib
import math
import re

import keras

from safeio.checks import UserError, check_bool, check_choice, is_number


@keras.saving.register_keras_serializable(package="zoo")
class PaperSGD(keras.optimizers.SGD):
    """SGD with the paper's weight decay: ``v <- 0.9 v - eps * wd * w - eps * grad``.

    The decay enters the gradient (so it goes through the momentum, as in the paper and
    Caffe), unlike Keras' decoupled ``weight_decay``. Only kernels (tensors of rank > 1) are
    decayed, not biases, BatchNorm parameters or PReLU's slopes (``alpha``, undecayed in He
    et al. 2015), nor what ``exclude_from_weight_decay`` names, as Keras' optimizers leave
    them.

    Example:

    >>> optimizer = PaperSGD(learning_rate=0.01, momentum=0.9, l2=5e-4)
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, l2=5e-4, **kwargs):
        if kwargs.get("weight_decay"):  # Keras' decoupled decay, on top of l2 and on biases
            raise UserError(f"PaperSGD decays the weights through `l2` (the paper's decay, "
                            f"{l2} by default); received weight_decay="
                            f"{kwargs['weight_decay']!r}, Keras' decoupled decay, which would "
                            "add a second one. Pass l2=... instead.")
        if l2 is not None and (not is_number(l2) or not math.isfinite(l2) or l2 < 0):
            raise UserError(f"PaperSGD's `l2` (the weight decay) must be a finite number >= 0 "
                            f"or None; received {l2!r}.")  # (NaN, or weights that grow)
        if "nesterov" in kwargs:  # ("no" switched it on)
            kwargs["nesterov"] = check_bool(kwargs["nesterov"], "nesterov")
        # (Keras said "`momentum` must be a float between [0, 1]", not what it received,
        # and took a learning rate of -1 as "should be float")
        check_hyperparameters(learning_rate, momentum, None)
        # (Keras' SGD takes a float alone: 0 or np.float32(0.9) failed as out of [0, 1].)
        momentum = float(momentum)
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self.l2 = float(l2 or 0.0)  # (None: no decay, as check_hyperparameters allows)

    def update_step(self, gradient, variable, learning_rate):
        # (TensorFlow's update passes its own variable, named "conv1_prelu/alpha:0", and a
        # mirrored run's second copy "conv1_prelu/alpha/replica_1:0")
        slope = SLOPE_NAME.search(variable.name) is not None
        if self.l2 and len(variable.shape) > 1 and not slope and self._use_weight_decay(
                variable):
            gradient = gradient + keras.ops.cast(self.l2, variable.dtype) * variable
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


# A PReLU's slopes, as Keras names them, TensorFlow's device copies and their ":0" too.
SLOPE_NAME = re.compile(r"(^|/)alpha(/replica_\d+)?(:\d+)?$")
OPTIMIZER_CHOICES = ("sgd", "nesterov", "adam", "rmsprop", "adagrad")


def build_optimizer(model, strategy=None):
    """Create ``model``'s optimizer's variables now (under ``strategy``'s scope), before
    ``fit`` traces its first training step; nothing if they exist.

    Keras 3 otherwise creates them inside that first trace, and TensorFlow then traces the
    step a second time without them (a ``tf.function`` that creates variables is traced
    twice): the first epoch of a small ResNet-18 took 9.0 s instead of 4.8 s on 2 CPU
    cores, 16 s instead of 8 with RMSprop's EMA.

    Example:

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(momentum=0.9), "mse")
    >>> build_optimizer(model).built
    True
    """
    optimizer = model.optimizer
    if optimizer is not None and not optimizer.built:
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            optimizer.build(model.trainable_variables)
    return optimizer


def check_hyperparameters(learning_rate, momentum, weight_decay):
    """One line for a learning rate that is not a finite number above 0 (a schedule passes),
    a momentum outside [0, 1), or a weight decay that is not a finite number >= 0 (None: no
    decay): Keras takes some of them and trains backwards, or not at all.

    Example:

    >>> check_hyperparameters(0.01, 0.9, 5e-4)
    """
    schedule = callable(learning_rate)  # a LearningRateSchedule, or a function of the step
    if not schedule and (not is_number(learning_rate) or not math.isfinite(learning_rate)
                         or learning_rate <= 0):
        raise UserError(f"The learning rate must be a finite number above 0 (or a "
                        f"LearningRateSchedule); received {learning_rate!r}.")
    for name, value, ok, allowed in (
            ("momentum", momentum, lambda v: 0 <= v < 1, "a number in [0, 1)"),
            ("weight decay", weight_decay, lambda v: math.isfinite(v) and v >= 0,
             "a finite number >= 0")):
        if value is None and name == "weight decay":
            continue
        if not is_number(value) or not ok(value):
            raise UserError(f"The {name} must be {allowed}; received {value!r}.")


def make_optimizer(name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=5e-4,
                   ema=False):
    """One of the lecture notes' optimizers by name.

    - ``"sgd"``: the paper's :class:`PaperSGD` (momentum, L2 decay through the gradient);
    - ``"nesterov"``: the same with Nesterov momentum;
    - ``"adam"``, ``"rmsprop"``, ``"adagrad"``: Keras' own, with ``weight_decay`` decoupled
      (AdamW's form; ``momentum`` is RMSprop's momentum and unused by the other two). They
      spare the variables named ``bias``, ``gamma``, ``beta`` (BatchNorm's, LayerNorm's)
      and ``alpha`` (PReLU's) by name, with Keras' ``exclude_from_weight_decay(var_names=
      ...)``, which a later call replaces and the optimizer's config does not keep (compiled
      from a loaded ``.keras`` file it decays them all again). PaperSGD spares them by rank
      (every variable of rank 1, and ``alpha``): the same variables in the zoo's models, not
      always in a user's layers. Keras decays every variable by default, as timm and AdamW's
      paper do not.

    ``learning_rate`` may be a number or a ``LearningRateSchedule``. ``ema=True`` keeps a
    Polyak (exponential moving) average of the weights (Keras' ``use_ema``, momentum
    0.99), which :func:`train` validates, checkpoints and returns.

    Example:

    >>> make_optimizer("adam", learning_rate=1e-3, ema=True).use_ema
    True
    """
    check_choice(name, OPTIMIZER_CHOICES, "optimizer")
    check_hyperparameters(learning_rate, momentum, weight_decay)
    common = dict(learning_rate=learning_rate, use_ema=check_bool(ema, "ema"))
    if name in ("sgd", "nesterov"):
        return PaperSGD(momentum=momentum, l2=weight_decay, nesterov=name == "nesterov",
                        **common)
    decay = dict(weight_decay=weight_decay or None)
    if name == "adam":
        optimizer = keras.optimizers.Adam(**common, **decay)
    elif name == "rmsprop":
        optimizer = keras.optimizers.RMSprop(momentum=momentum, **common, **decay)
    else:
        optimizer = keras.optimizers.Adagrad(**common, **decay)
    optimizer.exclude_from_weight_decay(var_names=[UNDECAYED_NAMES])
    return optimizer


# The variables the decoupled decay spares, by name: Keras' ("bias"), or TensorFlow's own
# variable's inside the update ("conv1/bn/gamma:0").
UNDECAYED_NAMES = r"(^|/)(bias|gamma|beta|alpha)(:\d+)?$"


def _check_loss_names(loss):
    """A loss name Keras does not know is one line with the closest of its names (Keras
    took it at compile and failed at the first step); in a list or dict too."""
    names = loss.values() if isinstance(loss, dict) else (
        loss if isinstance(loss, (list, tuple)) else [loss])
    for name in names:
        if not isinstance(name, str):
            continue
        try:
            keras.losses.get(name)
        except ValueError:
            import difflib

            known = sorted(n for n in dir(keras.losses) if n.islower() and callable(
                getattr(keras.losses, n)) and n not in ("get", "serialize", "deserialize"))
            close = difflib.get_close_matches(name.lower(), known, n=1)
            raise UserError(f"Unknown loss {name!r}" + (
                f" (did you mean {close[0]!r}?)" if close else "") + ": one of Keras' loss "
                "names (sparse_categorical_crossentropy, categorical_crossentropy, ...), a "
                "keras.losses.Loss, or a function of (y_true, y_pred).") from None


def _one_hot_loss(loss):
    """Whether ``loss`` (a name, a function or a loss object) takes one-hot labels."""
    names = ("categorical_crossentropy", "categorical_focal_crossentropy")
    return (loss in names or getattr(loss, "__name__", None) in names
            or isinstance(loss, (keras.losses.CategoricalCrossentropy,
                                 keras.losses.CategoricalFocalCrossentropy)))


def default_metrics(loss="sparse_categorical_crossentropy"):
    """Top-1 and top-5 accuracy, named ``top1_accuracy`` and ``top5_accuracy``: of class
    indices, or of one-hot labels where ``loss`` takes them (``categorical_crossentropy``,
    e.g. with label smoothing).

    Example:

    >>> [type(m).__name__ for m in default_metrics("categorical_crossentropy")]
    ['TopKCategoricalAccuracy', 'TopKCategoricalAccuracy']
    """
    kind = (keras.metrics.TopKCategoricalAccuracy if _one_hot_loss(loss)
            else keras.metrics.SparseTopKCategoricalAccuracy)
    return [kind(k=1, name="top1_accuracy"), kind(k=5, name="top5_accuracy")]


# The floor of a probability's logarithm in ProbabilityCrossEntropy: float32's smallest
# normal number (1.2e-38), where Keras' JAX and torch backends clip at 1e-7.
_TINY = 1.1754944e-38


@keras.saving.register_keras_serializable(package="zoo")
class ProbabilityCrossEntropy(keras.losses.Loss):
    """The cross-entropy of a softmax's probabilities from their logarithms, floored at
    float32's smallest normal number: Keras' TensorFlow backend's number (computed there
    from the logits behind the softmax) wherever the label's logit is within 87 of the
    largest. Keras' JAX and torch backends clip the probabilities at 1e-7 instead: no
    example costs more than 16.1, one the model is sure is of another class gives no
    gradient, and the recipe's blow-up warning (3 ln C) could not fire past 216 classes.
    :func:`compile_model` uses it off TensorFlow for the names
    ``"sparse_categorical_crossentropy"`` and, with ``one_hot``, ``"categorical_crossentropy"``.
    Past gaps of 87 the probabilities underflow: a head that saturates so needs its logits
    (``classifier_activation=None`` and a ``from_logits=True`` loss).

    Example:

    >>> import numpy as np
    >>> loss = ProbabilityCrossEntropy()
    >>> round(float(loss(np.array([1]), np.array([[1.0, 1e-12]], "float32"))), 2)
    27.63
    """

    def __init__(self, one_hot=False, name=None, **kwargs):
        self.one_hot = check_bool(one_hot, "one_hot")
        super().__init__(name=name or ("categorical_crossentropy" if one_hot
                                       else "sparse_categorical_crossentropy"), **kwargs)

    def call(self, y_true, y_pred):
        logits = keras.ops.log(keras.ops.maximum(keras.ops.cast(y_pred, "float32"), _TINY))
        if self.one_hot:
            return keras.ops.categorical_crossentropy(y_true, logits, from_logits=True)
        return keras.ops.sparse_categorical_crossentropy(y_true, logits, from_logits=True)

    def get_config(self):
        return {**super().get_config(), "one_hot": self.one_hot}


def backend_loss(loss):
    """``loss`` as ``compile_model`` gives it to Keras: off TensorFlow, the cross-entropy
    names as :class:`ProbabilityCrossEntropy` (TensorFlow's Keras computes them from the
    logits behind the softmax already).

    Example:

    >>> backend_loss("mse")
    'mse'
    """
    if keras.backend.backend() == "tensorflow" or not isinstance(loss, str):
        return loss
    if loss in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        return ProbabilityCrossEntropy(one_hot=loss == "categorical_crossentropy")
    return loss


HALF_PRECISION = ("float16", "bfloat16")


def precision_in(model, dtypes):
    """``(model name, dtype)``: the innermost model of ``model`` (itself, or one inside it)
    with a layer computing in one of ``dtypes``, or None. A model's own policy says
    nothing: it is the global one when it was built or loaded, as an InputLayer's.

    Example:

    >>> precision_in(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
    ...              ("float64",))
    """
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            inner = precision_in(layer, dtypes)
            if inner:
                return inner
            continue
        dtype = getattr(getattr(layer, "dtype_policy", None), "compute_dtype", None)
        if dtype in dtypes:
            return model.name, dtype
    return None


def half_precision_in(model):
    """``(model name, dtype)``: the innermost model of ``model`` (itself, or one inside it)
    with a layer computing in half precision (``"float16"``/``"bfloat16"``: built under a
    mixed-precision policy), or None (:func:`precision_in`).

    Example:

    >>> half_precision_in(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    """
    return precision_in(model, HALF_PRECISION)


def half_precision_of(model):
    """``"float16"`` or ``"bfloat16"`` where a layer of ``model`` (of a model inside it too)
    computes in it, else None (:func:`half_precision_in`'s dtype)."""
    found = half_precision_in(model)
    return found[1] if found else None


def compile_model(model, optimizer=None, *, learning_rate=0.01, momentum=0.9,
                  weight_decay=5e-4, loss="sparse_categorical_crossentropy", metrics=None,
                  jit_compile=None, weighted=False):
    """Compile ``model`` with the paper recipe, in place; returns it.

    ``optimizer``: None for :class:`PaperSGD` (``learning_rate``, ``momentum``,
    ``weight_decay``), a name of :data:`OPTIMIZER_CHOICES` in any case
    (:func:`make_optimizer` with them: "sgd" is the paper's, as everywhere here), a Keras
    optimizer or another name of Keras' (as Keras reads it), or a function returning one
    (called here, so that under a distribution strategy its variables are created in the
    strategy's scope).
    Metrics default to top-1 and top-5 accuracy (of one-hot labels with a categorical
    loss). (A GoogLeNet with auxiliary heads adds their 0.3-weighted losses itself.)
    Off TensorFlow, the cross-entropy names compile as :class:`ProbabilityCrossEntropy`
    (TensorFlow's numbers up to logit gaps of 87, where Keras' JAX backend clips the
    probabilities at 1e-7).
    ``weighted``: the metrics follow the batches' sample weights (Keras'
    ``weighted_metrics``), as the validation batches padded to split over several
    replicas need (``zoo.train``'s, under keras.distribution and tf.distribute).
    ``jit_compile``: None for the backend's usual way, which is no XLA on TensorFlow
    and Keras' ``"auto"`` elsewhere (on JAX, the jitted step: ``False`` there would run
    every step op by op).

    Example:

    >>> model = compile_model(zoo.alexnet(classes=10), learning_rate=0.01)  # doctest: +SKIP
    """
    if optimizer is None:
        check_hyperparameters(learning_rate, momentum, weight_decay)
        optimizer = PaperSGD(learning_rate, momentum=momentum, l2=weight_decay)
    elif isinstance(optimizer, str) and optimizer.lower() in OPTIMIZER_CHOICES:
        # Keras' "sgd" has no momentum and would drop the three numbers given here.
        optimizer = make_optimizer(optimizer.lower(), learning_rate, momentum, weight_decay)
    elif not isinstance(optimizer, keras.optimizers.Optimizer) and callable(optimizer):
        optimizer = optimizer()  # a factory: its variables are created under the strategy
    elif isinstance(optimizer, str):  # another of Keras' names: a typo is one line
        try:
            optimizer = keras.optimizers.get(optimizer)
        except ValueError:
            import difflib

            known = [*OPTIMIZER_CHOICES, "adamw", "nadam", "adamax", "adadelta", "ftrl",
                     "lion", "muon", "adafactor"]
            close = difflib.get_close_matches(optimizer.lower(), known, n=1)
            raise UserError(f"Unknown optimizer {optimizer!r}"
                            + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f": one of {', '.join(OPTIMIZER_CHOICES)} (the notes'), another "
                            "of Keras' names (adamw, nadam, ...), an optimizer, or a function "
                            "returning one.") from None
    _check_loss_names(loss)
    metrics = default_metrics(loss) if metrics is None else metrics
    if (half_precision_of(model) == "float16" and model.dtype_policy.name != "mixed_float16"
            and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)):
        # Keras scales the loss where the model's own policy is mixed_float16; a float16
        # model loaded (or given a new head by fine_tune) under another global policy has
        # that policy, and trained without loss scaling: small gradients underflow to 0.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    if jit_compile is None:
        jit_compile = False if keras.backend.backend() == "tensorflow" else "auto"
    model.compile(optimizer=optimizer, loss=backend_loss(loss),
                  metrics=None if weighted else metrics,
                  weighted_metrics=metrics if weighted else None, jit_compile=jit_compile)
    return model
