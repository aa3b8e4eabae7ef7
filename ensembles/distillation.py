"""Distil an ensemble into one network (Hinton, Vinyals and Dean 2015, "Distilling the
knowledge in a neural network").

The student learns from the teacher's probabilities softened at a temperature T, and from
the labels:

    loss = alpha * T^2 * KL(softmax(log p_teacher / T) || softmax(z_student / T))
           + (1 - alpha) * CE(label, softmax(z_student))

The T^2 is Hinton et al.'s (sec. 2): "Since the magnitudes of the gradients produced by the
soft targets scale as 1/T^2 it is important to multiply them by T^2 when using both hard
and soft targets", so that the two terms keep their relative weight whatever T is.

:func:`distill` trains through ``zoo.train``: the student gets a run directory whose
checkpoints are the student alone, exact resume after a crash, and ReduceLROnPlateau.
"""

import dataclasses
import hashlib

import keras
import numpy as np

from ensembles.calibration import EPS, check_temperature
from ensembles.metrics import check_probabilities
from safeio.checks import UserError


def _tempered_log_probabilities(probabilities, temperature):
    """``log softmax(log p / T)``, as Keras ops."""
    logs = keras.ops.log(keras.ops.maximum(probabilities, EPS))
    return keras.ops.log_softmax(logs / temperature, axis=-1)


def soft_target_loss(teacher_probabilities, student_logits, temperature,
                     teacher_logits=False):
    """Per example, ``T^2 * KL(softmax(log p_teacher / T) || softmax(z / T))``; with
    ``teacher_logits``, the teacher's logits ``v`` are given, ``softmax(v / T)`` as Hinton
    et al. write it (its probabilities' logs floored at 1e-30 flattened gaps above 69)."""
    teacher = keras.ops.cast(teacher_probabilities, "float32")
    teacher = (keras.ops.log_softmax(teacher / temperature, axis=-1) if teacher_logits
               else _tempered_log_probabilities(teacher, temperature))
    student = keras.ops.log_softmax(keras.ops.cast(student_logits, "float32") / temperature,
                                    axis=-1)
    kl = keras.ops.sum(keras.ops.exp(teacher) * (teacher - student), axis=-1)
    return temperature ** 2 * kl


# Hinton et al. softened by 1 to 20. In float32 the soft loss loses precision as T grows
# (its KL shrinks as 1/T^2 while T^2 scales it back): 4e-5 relative at T=100, 3e-3 at
# 1,000, half the value at 10,000.
MAX_TEMPERATURE = 100


def _check_softening(temperature):
    """A distillation temperature: finite, above 0 and at most :data:`MAX_TEMPERATURE`."""
    value = check_temperature(temperature)
    if value > MAX_TEMPERATURE:
        raise UserError(f"A distillation temperature must be at most {MAX_TEMPERATURE:g} "
                        f"(Hinton et al. used 1 to 20; its square scales the soft loss); "
                        f"received {temperature!r}.")
    return value


def distillation_loss(labels, student_logits, teacher_probabilities, temperature=4.0,
                      alpha=0.9):
    """The batch's mean distillation loss (the module docstring's formula): what
    :func:`distill` minimises, the soft term through ``add_loss`` and the hard one through
    the compiled loss.

    Example:

    >>> import numpy as np
    >>> logits = np.array([[2.0, 0.5, -1.0]], "float32")
    >>> teacher = np.array([[0.7, 0.2, 0.1]], "float32")
    >>> round(float(distillation_loss(np.array([0]), logits, teacher, 4.0, 0.9)), 4)
    0.1048
    """
    alpha = check_alpha(alpha)
    temperature = _check_softening(temperature)
    teacher, student, found = (_values_now(v) for v in (teacher_probabilities,
                                                        student_logits, labels))
    if teacher is not None:  # (a user's arrays, or a model's eager output: teacher(x))
        check_probabilities(teacher, what="teacher probabilities")  # no logits
    if teacher is not None and student is not None:
        teacher_shape, student_shape = teacher.shape, student.shape
        if teacher_shape != student_shape:  # (TensorFlow's "Incompatible shapes")
            raise UserError(f"The teacher's probabilities are shaped {teacher_shape} and the "
                            f"student's logits {student_shape}: one row of the same classes "
                            "each.")
    if found is not None and student is not None:
        if found.ndim == 2 and found.shape == student.shape and found.shape[-1] > 1:
            raise UserError(f"The labels are one-hot (shape {found.shape}); "
                            "distillation_loss takes class indices: give each row's argmax.")
        found, student_shape = found.reshape(-1), student.shape
        if found.size and not ((found >= 0) & (found < student_shape[-1])).all():
            raise UserError(f"The labels must be class indices in [0, {student_shape[-1]}); "
                            f"received labels from {found.min()} to {found.max()}.")
    hard = keras.ops.sparse_categorical_crossentropy(
        labels, keras.ops.cast(student_logits, "float32"), from_logits=True)
    soft = soft_target_loss(teacher_probabilities, student_logits, temperature)
    return keras.ops.mean(alpha * soft + (1 - alpha) * hard)


def _values_now(x):
    """``x`` as a NumPy array where its values are known now (an array, a list, a model's
    eager output); None for a symbolic or traced tensor (within a compiled train step)."""
    if isinstance(x, (np.ndarray, np.generic, list, tuple, int, float)):
        return np.asarray(x)
    if isinstance(x, keras.KerasTensor):
        return None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly() or not hasattr(x, "numpy"):
            return None
    elif backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
    return keras.ops.convert_to_numpy(x)


def check_alpha(alpha):
    try:  # a number, a NumPy scalar or a 0-d array; never a string or a bool
        value = float("nan") if isinstance(alpha, (str, bytes, bool)) else float(alpha)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 <= value <= 1:
        raise UserError(f"`alpha`, the soft targets' weight, must lie in [0, 1]; received "
                        f"{alpha!r}.")
    return value


@keras.saving.register_keras_serializable(package="ensembles")
class HardTargetLoss(keras.losses.Loss):
    """``(1 - alpha) *`` Keras' sparse cross-entropy of the labels and the student's logits:
    the hard term of the distillation loss, as the compiled loss."""

    takes_class_indices = True  # (zoo.train checks the labels against the classes)

    def __init__(self, alpha=0.9, name="hard_targets", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha = check_alpha(alpha)

    def call(self, y_true, y_pred):
        return (1 - self.alpha) * keras.losses.sparse_categorical_crossentropy(
            y_true, y_pred, from_logits=True)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class _DenseLogits(keras.layers.Layer):
    """A softmax ``Dense`` layer's logits: its kernel and bias (shared, trained through
    this layer) without its activation."""

    def __init__(self, dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, features):
        kernel = self.dense.kernel
        logits = keras.ops.matmul(keras.ops.cast(features, kernel.dtype), kernel)
        return logits + self.dense.bias if self.dense.use_bias else logits

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.dense.units,)

    def get_config(self):  # for TensorBoard's graph; the training model is never saved
        return {**super().get_config(), "dense": self.dense.name}


class _SoftTargets(keras.layers.Layer):
    """Runs the frozen teacher (always in inference mode) on the images, adds
    ``alpha`` times the soft-target loss to the model's losses, and passes the student's
    logits through."""

    def __init__(self, teacher, temperature, alpha, teacher_logits=False, **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher
        self.temperature, self.alpha = temperature, alpha
        self.teacher_logits = teacher_logits

    def call(self, inputs):  # no `training`: the model's never reaches the teacher
        logits, images = inputs
        teacher = self.teacher(images, training=False)
        self.add_loss(self.alpha * keras.ops.mean(
            soft_target_loss(teacher, logits, self.temperature, self.teacher_logits)))
        return logits

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):  # for TensorBoard's graph; the training model is never saved
        return {**super().get_config(), "teacher": self.teacher.name,
                "temperature": self.temperature, "alpha": self.alpha}


def logits_of(model):
    """The tensor of ``model``'s logits in its graph (where its probabilities come from a
    softmax ``Dense`` layer, a ``Softmax`` layer or a nested model ending in one; where it
    outputs logits, its output)."""
    from ensembles.ensemble import _producer, _softmax_output
    from safeio.outputs import is_softmax

    if len(model.outputs) != 1:
        raise UserError(f"{model.name!r} has {len(model.outputs)} outputs; distillation "
                        "trains one-output classifiers (build GoogLeNet with "
                        "aux_logits=False).")
    output = model.outputs[0]
    operation, node = _producer(output)
    if isinstance(operation, keras.Model):
        inner = keras.Model(operation.inputs, logits_of(operation))
        return inner(node.input_tensors[0])
    if is_softmax(getattr(operation, "activation", None)):  # (tf.nn.softmax too)
        if isinstance(operation, keras.layers.Dense):
            # (float32 under a global mixed policy too: the logits the losses read)
            return _DenseLogits(operation, name="logits", dtype="float32")(
                node.input_tensors[0])
        if isinstance(operation, keras.layers.Activation):  # its input is the logits
            return node.input_tensors[0]
        raise UserError(f"{model.name!r} ends in a {type(operation).__name__} with a "
                        "softmax, whose logits distillation cannot read: end it in a Dense "
                        "layer, or build it with classifier_activation=None.")
    if type(operation).__name__ == "Softmax":  # the layer, and keras.ops.softmax's operation
        return node.input_tensors[0]
    if _softmax_output(model):
        raise UserError(f"{model.name!r} outputs probabilities that distillation cannot turn "
                        "back into logits: build it with classifier_activation=None.")
    return output


def weights_fingerprint(model):
    """A SHA-256 of ``model``'s weights (values, shapes and order), in hex: another teacher
    of the same architecture (a re-trained member, other ensemble weights) differs.

    Example:

    >>> weights_fingerprint(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))[:8]
    '...'
    """
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(str((value.shape, value.dtype.str)).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def serving_settings(model):
    """What ``model``'s probabilities depend on beside its weights, which
    :func:`weights_fingerprint` does not see: its temperature, and for an ensemble its
    combination rule, member weights and member temperatures (a teacher re-saved by
    ``zoo ensemble --fit-weights`` or ``--calibrate-on`` is another teacher).

    Example:

    >>> serving_settings(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    {'temperature': 1.0}
    """
    from ensembles.calibration import temperature
    from ensembles.ensemble import combine_layer, is_ensemble

    settings = {"temperature": float(temperature(model))}
    if is_ensemble(model):
        layer = combine_layer(model)
        weights = layer.member_weights
        settings.update(
            combine=layer.combine,
            member_weights=None if weights is None else [float(w) for w in weights],
            member_temperatures=[float(t) for t in temperature(model, per_member=True)])
    return settings


def _check_model(model, role):
    if not isinstance(model, keras.Model) or not getattr(model, "outputs", None):
        raise UserError(
            f"The {role} must be a built functional keras.Model (zoo.load_model(path) "
            f"loads a saved one, zoo.get_model(name, ...) builds one); received "
            f"{model!r} ({type(model).__name__}).")


def check_teacher(teacher):
    """A teacher :func:`distillation_model` takes: a functional model of one output (a
    one-line ``UserError`` otherwise; ``zoo distill`` asks before its statistics pass)."""
    _check_model(teacher, "teacher")
    if len(teacher.outputs) != 1:
        raise UserError(f"The teacher {teacher.name!r} has {len(teacher.outputs)} outputs; "
                        "distillation takes one-output classifiers (build an ensemble without "
                        "return_members, GoogLeNet with aux_logits=False).")


def distillation_model(teacher, student, temperature=4.0, alpha=0.9, read_logits=True):
    """The model :func:`distill` trains: the student's logits out, the soft-target loss
    added, the teacher frozen inside (``trainable=False``, which reaches its layers: see
    :func:`distill` for putting them back). Its compiled loss must be
    :class:`HardTargetLoss`. ``read_logits=False`` gives a softmax teacher's probabilities
    to the soft loss as their logs, as runs begun before its logits were read did (their
    backups hold the teacher's layers where that model had them)."""
    from ensembles.ensemble import _softmax_output

    temperature, alpha = _check_softening(temperature), check_alpha(alpha)
    check_teacher(teacher)
    _check_model(student, "student")
    if tuple(teacher.input_shape[1:]) != tuple(student.input_shape[1:]):
        raise UserError(f"The teacher takes inputs shaped {teacher.input_shape[1:]} and the "
                        f"student {student.input_shape[1:]}: they must see the same images.")
    if teacher.output_shape[-1] != student.output_shape[-1]:
        raise UserError(f"The teacher predicts {teacher.output_shape[-1]} classes and the "
                        f"student {student.output_shape[-1]}.")
    shared = {id(w) for w in teacher.weights} & {id(w) for w in student.weights}
    if shared:
        raise UserError(f"The student {student.name!r} shares {len(shared)} weights with the "
                        "teacher: freezing the teacher would freeze them. Build a new "
                        "student.")
    scores = teacher.outputs[0]
    # Logits go to the soft loss as they are (softmax(v / T)); probabilities as their logs.
    # A softmax head's logits are read behind it, as the student's are: the logs of its
    # float32 probabilities, floored at 1e-30, flattened gaps above 69 (every zoo model and
    # zoo train checkpoint ends in one). An ensemble's or a calibrated model's combined
    # probabilities have no logits to read: their logs.
    teacher_logits = not _softmax_output(teacher)
    if not teacher_logits and read_logits:
        try:
            scores, teacher_logits = logits_of(teacher), True
        except UserError:
            pass
    # A new model on the teacher's layers, never compiled: a compiled teacher's own loss and
    # metrics would join the distillation model's, and overwrite its logs (or, not built
    # yet, fail its first epoch).
    teacher = keras.Model(teacher.inputs, scores, name=teacher.name)
    student_inputs = student.inputs[0]
    logits = keras.Model(student_inputs, logits_of(student), name=f"{student.name}_logits")
    teacher.trainable = False  # no gradient, no optimizer slots, no weight decay
    images = keras.Input(student.input_shape[1:], dtype=student_inputs.dtype, name="images")
    # In float32 whatever the global policy (under a mixed one, the student's logits and the
    # teacher's images were rounded to half precision, and TensorFlow's top-k refused them).
    outputs = _SoftTargets(teacher, temperature, alpha, teacher_logits, name="soft_targets",
                           dtype="float32")([logits(images), images])
    return keras.Model(images, outputs, name=f"{student.name}_distillation")


def distill(teacher, student, train_data, val_data=None, *, temperature=4.0, alpha=0.9,
            epochs=10, run_dir=None, **train_kwargs):
    """Train ``student`` on ``teacher``'s softened probabilities and the labels (Hinton et
    al. 2015), through ``zoo.train``; returns its ``TrainResult`` with the student as
    ``model``: trained, not compiled (the distillation model was), so score it with
    ``ensembles.evaluate``, or ``zoo.compile_model(result.model)`` before Keras' own
    ``evaluate``.

    Args:
        teacher: any one-output classifier giving probabilities or logits, typically an
            ``ensembles.Ensemble``; it is frozen while the student trains (its layers'
            ``trainable`` flags are put back afterwards) and always runs in inference
            mode, on the same (augmented) images as the student.
        student: a built ``keras.Model`` (one device) whose logits can be read: a zoo
            model, or any model ending in a softmax ``Dense`` or ``Softmax`` layer, or
            outputting logits.
        train_data, val_data: batches of ``(images, labels)``, as for ``zoo.train``.
        temperature: T, the softening of both distributions in the soft term (Hinton et
            al. used 1 to 20; 4 is a common choice).
        alpha: the soft term's weight; ``1 - alpha`` is the labels'.
        epochs, run_dir, **train_kwargs: as for ``zoo.train`` (optimizer, learning_rate,
            seed, ...; ``resize``: how ``train_data`` makes images into inputs, which
            the student records, as ``zoo.train``'s). The run directory's checkpoints hold
            the student alone (with the teacher's class names); its backup, the whole
            training state. Its config.json
            records the teacher (name, parameters and a fingerprint of its weights), T and
            alpha, and ``settings`` beside them: a resume with others is refused.

    Example:

    >>> student = zoo.resnet18(input_shape=(16, 16, 3), classes=10, width=0.25,
    ...                        stem="cifar")                          # doctest: +SKIP
    >>> result = distill(ensemble, student, train, validation, epochs=15,
    ...                  run_dir="runs/distilled")                     # doctest: +SKIP
    >>> result.model                 # the student, trained           # doctest: +SKIP
    """
    import zoo
    from zoo.saving import class_names, set_class_names

    for forbidden in ("loss", "model_kwargs", "precision", "class_names",
                      "checkpoint_model"):
        if forbidden in train_kwargs:
            raise UserError(f"distill sets `{forbidden}` itself; received {forbidden}="
                            f"{train_kwargs[forbidden]!r}.")
    temperature, alpha = _check_softening(temperature), check_alpha(alpha)
    from zoo.training.recipe import _check_settings, check_data

    check_data(train_data, val_data)  # (before the teacher's weights are read and hashed)
    _check_settings(train_kwargs.get("settings"))
    if train_kwargs.get("resize") is not None:  # (before the teacher is read)
        from data.preprocess import check_resize

        check_resize(train_kwargs["resize"])
    _check_model(teacher, "teacher")
    _check_model(student, "student")
    names = class_names(teacher)
    if names is not None and class_names(student) is None:
        set_class_names(student, names)
    elif names is not None and list(class_names(student)) != list(names):
        raise UserError(f"The student {student.name!r} names its classes differently from the "
                        f"teacher {teacher.name!r} ({list(class_names(student))[:4]}... "
                        f"against {list(names)[:4]}...): the teacher's class k would teach "
                        "the student's class k. Build the student with the teacher's "
                        "class order (zoo.set_class_names), or none.")
    _warn_if_hidden_softmax(teacher, train_data)
    trainable = [(layer, layer.trainable) for layer in _all_layers(teacher)]
    try:
        read_logits = _reads_teacher_logits(run_dir)
        model = distillation_model(teacher, student, temperature, alpha, read_logits)
        settings = {**(train_kwargs.pop("settings", None) or {}),
                    **distillation_settings(teacher, temperature, alpha, read_logits)}
        result = zoo.train(model, train_data, val_data, epochs=epochs, run_dir=run_dir,
                           loss=HardTargetLoss(alpha), checkpoint_model=student,
                           settings=settings, **train_kwargs)
    finally:
        for layer, flag in trainable:  # the caller's teacher as it was
            layer.trainable = flag
    return dataclasses.replace(result, model=student)


def distillation_settings(teacher, temperature, alpha, read_logits):
    """What config.json records of the distillation, so that a resumed run with another
    teacher, T or alpha is refused (a program may check them before its own work:
    ``zoo distill`` before the statistics pass). It hashes the teacher's weights.

    Example:

    >>> distillation_settings(teacher, 4.0, 0.9, True)["distillation"]  # doctest: +SKIP
    {'teacher': 'ensemble', 'teacher_params': 1234, 'temperature': 4.0, 'alpha': 0.9}
    """
    return {"distillation": {"teacher": teacher.name, "teacher_params": teacher.count_params(),
                             "temperature": temperature, "alpha": alpha},
            "teacher_weights": weights_fingerprint(teacher),
            "teacher_serving": serving_settings(teacher), "teacher_logits": read_logits}


def _reads_teacher_logits(run_dir):
    """Whether the run in ``run_dir`` reads a softmax teacher's logits (see
    :func:`distillation_model`): a new run does; a stopped one as its config.json records,
    one begun before it was recorded not (its backup restores into that model alone)."""
    from zoo.training import run_config

    if run_dir is None or not run_config.holds_stopped_run(run_dir):
        return True
    return bool((run_config.read_config(run_dir) or {}).get("teacher_logits", False))


def _warn_if_hidden_softmax(teacher, train_data):
    """A warning where the teacher's graph shows no softmax but its outputs on the first
    batch are probabilities (a TFSMLayer of an export, a Lambda): read as logits, they are
    softmaxed again, and the soft targets flattened. Read from ``data.load``'s datasets
    alone, whose epochs zoo.train sets (a batch taken from another would shift its shuffle
    or its augmentation by one pass)."""
    from ensembles.ensemble import _softmax_output
    from safeio.outputs import warn_if_hidden_softmax

    if _softmax_output(teacher) or getattr(train_data, "_zoo_epoch", None) is None:
        return
    for batch in train_data.take(1):
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        warn_if_hidden_softmax(
            keras.ops.convert_to_numpy(teacher(images, training=False)),
            f"The teacher {teacher.name!r}'s", "their softmax is taken again: the soft "
            "targets are flattened", "End it with keras.layers.Softmax (or distill from the "
            ".keras model an export was made of).", stacklevel=3)


def _all_layers(model):
    """``model`` and every layer in it, nested models' included."""
    yield model
    for layer in getattr(model, "layers", []):
        yield from _all_layers(layer)
