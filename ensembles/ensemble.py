"""One Keras model that runs every member on a shared input and combines their predictions."""

import os

import keras
import numpy as np

from ensembles.calibration import EPS, check_temperature, scaled
from safeio.checks import UserError, check_bool, check_choice
from safeio.outputs import outputs_probabilities as _softmax_output  # noqa: F401 (used by others)
from zoo.saving import (class_names, copy_metadata, input_pixels, resize_mode, set_class_names,
                        set_input_pixels, set_resize_mode)

COMBINE_CHOICES = ("mean", "logit_mean", "geometric", "vote")


@keras.saving.register_keras_serializable(package="ensembles")
class CombineMembers(keras.layers.Layer):
    """Combine the members' class probabilities, stacked as ``(batch, members, classes)``.

    - ``mean``: the weighted mean of the probabilities (the AlexNet paper's "average the
      predictions of five CNNs");
    - ``logit_mean``: softmax of the weighted mean of the logits, recovered as ``log p``
      (from float32 probabilities, floored at 1e-30: exact while every member's logit gaps
      are under 69, as a float32 softmax member's own are, which underflow beyond 87);
    - ``geometric``: the normalised weighted geometric mean of the probabilities (for softmax
      members it equals ``logit_mean``: the per-member log-normaliser cancels);
    - ``vote``: the weighted fraction of members whose top class each class is (a member
      whose top classes tie shares its vote between them).

    A member with a NaN among an example's probabilities (a diverged one) makes that
    example's combination NaN under every rule.

    With a ``temperature`` other than 1 (what :func:`ensembles.calibrate` fits), the
    combination p is then served as ``softmax(log p / temperature)``.

    Example:

    >>> combined = CombineMembers("mean")(np.array([[[0.2, 0.8], [0.6, 0.4]]], "float32"))
    >>> keras.ops.convert_to_numpy(combined)
    array([[0.4, 0.6]], dtype=float32)
    """

    serves_probabilities = True  # an ensemble made of ensembles takes its output as they are

    def __init__(self, combine="mean", weights=None, temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        check_choice(combine, COMBINE_CHOICES, "combine")
        self.combine = combine
        self.member_weights = None if weights is None else check_member_weights(weights)
        self.temperature = check_temperature(temperature)

    def _weights(self, members, dtype):
        if self.member_weights is not None and len(self.member_weights) != members:
            raise UserError(f"{self.name} has {len(self.member_weights)} member weights "
                            f"({self.member_weights}) for {members} members.")
        w = np.full(members, 1.0 / members) if self.member_weights is None else (
            np.asarray(self.member_weights) / np.sum(self.member_weights))
        return keras.ops.convert_to_tensor(w.reshape(1, members, 1), dtype=dtype)

    def call(self, stacked):
        return scaled(self._combined(stacked), self.temperature)

    def _combined(self, stacked):
        if len(stacked.shape) != 3:  # ((n, classes) read its examples as members)
            raise UserError(f"{self.name} combines the members' probabilities stacked as "
                            f"(batch, members, classes); received shape "
                            f"{tuple(stacked.shape)}.")
        w = self._weights(stacked.shape[1], stacked.dtype)
        # A member with a NaN (a diverged one) makes its examples' combination NaN under
        # every rule and backend: argmax gave it a vote for class 0, and the softmax of a
        # row holding a NaN is NaN there on JAX, elsewhere too on TensorFlow. A member of
        # weight 0 (fit_weights drops some) counts for nothing, its NaNs neither.
        counted = keras.ops.greater(w, 0)
        broken = keras.ops.any(keras.ops.logical_and(keras.ops.isnan(stacked), counted),
                               axis=(1, 2))[:, None]
        stacked = keras.ops.where(counted, stacked, keras.ops.zeros_like(stacked))
        if self.combine == "mean":
            return keras.ops.where(broken, np.nan, keras.ops.sum(w * stacked, axis=1))
        if self.combine == "vote":
            # Tied top classes share the member's vote (argmax gave a member without a
            # preference, all classes equal, a whole vote for class 0).
            top = keras.ops.cast(keras.ops.equal(
                stacked, keras.ops.max(stacked, axis=-1, keepdims=True)), stacked.dtype)
            top = top / keras.ops.maximum(keras.ops.sum(top, axis=-1, keepdims=True), 1)
            return keras.ops.where(broken, np.nan, keras.ops.sum(w * top, axis=1))
        # In float32, zeros (underflow) as EPS, 1e-30: a floor of 1e-7 cut every logit gap
        # above 16 to 16 (two confident members who disagree: 0.032 for 2.3e-5).
        probabilities = keras.ops.cast(stacked, "float32")
        logits = keras.ops.log(keras.ops.maximum(probabilities, EPS))
        combined = keras.ops.softmax(keras.ops.sum(keras.ops.cast(w, "float32") * logits,
                                                   axis=1), axis=-1)
        return keras.ops.cast(keras.ops.where(broken, np.nan, combined), stacked.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return {**super().get_config(), "combine": self.combine, "weights": self.member_weights,
                "temperature": self.temperature}


def member_graph(member, name):
    """``member`` as a functional model named ``name`` from its input to its one output
    (for a GoogLeNet with auxiliary heads, the main head), sharing its layers and weights,
    with its class names and resize mode."""
    return copy_metadata(member, keras.Model(member.inputs, member.outputs[0], name=name))


def _check_members(members):
    if len(members) < 1:
        raise UserError("An ensemble needs at least one member; received none.")
    reference = members[0]
    for i, member in enumerate(members):
        if not isinstance(member, keras.Model):
            raise UserError(f"Member {i} must be a keras.Model; received "
                            f"{type(member).__name__}.")
        if not getattr(member, "inputs", None) or not getattr(member, "outputs", None):
            raise UserError(
                f"Member {i} ({member.name!r}) has no graph from an input to an output: "
                "members are functional or Sequential models with a known input shape "
                "(start a Sequential with keras.Input, or build a subclassed model into "
                "keras.Model(inputs, model(inputs))).")
        if len(member.inputs) != 1:
            raise UserError(
                f"Member {i} ({member.name!r}) has {len(member.inputs)} inputs; ensembles "
                "take classifiers of one input, which every member sees.")
        if isinstance(member.output_shape, list):  # (GoogLeNet's aux heads show as one)
            raise UserError(
                f"Member {i} ({member.name!r}) has {len(member.output_shape)} outputs; "
                "ensembles take one-output classifiers.")
        if len(member.output_shape) != 2:
            raise UserError(
                f"Member {i} ({member.name!r}) outputs shape {member.output_shape[1:]} per "
                "example; ensembles take classifiers with one vector of class scores per "
                "example (not a feature map: include_top=False?).")
        if member.output_shape[-1] is not None and member.output_shape[-1] < 2:
            raise UserError(
                f"Member {i} ({member.name!r}) outputs one score per example (a sigmoid's "
                "probability?); ensembles take class scores of two classes or more, as "
                "a softmax gives them (a softmax over one unit is always 1): build a "
                "binary classifier with classes=2.")
        if tuple(member.input_shape[1:]) != tuple(reference.input_shape[1:]):
            raise UserError(
                f"Member {i} ({member.name!r}) takes input shape {member.input_shape[1:]}, but "
                f"member 0 ({reference.name!r}) takes {reference.input_shape[1:]}.")
        if member.output_shape[-1] != reference.output_shape[-1]:
            raise UserError(
                f"Member {i} ({member.name!r}) predicts {member.output_shape[-1]} classes, but "
                f"member 0 ({reference.name!r}) predicts {reference.output_shape[-1]}.")
    return _common_class_names(members)


def _refuse_shared_weights(members):
    """Members that are one model, or share a layer's weights, are refused: they vote alike,
    and Keras writes the shared weights once, so the saved ensemble could not be loaded
    ("Layer 'conv' expected 2 variables, but received 0")."""
    owners = {}
    for i, member in enumerate(members):
        for variable in member.weights:
            first = owners.setdefault(id(variable), i)
            if first == i:
                continue
            if members[first] is member:
                raise UserError(
                    f"Members {first} and {i} are the same model ({member.name!r}): an "
                    "ensemble of one model twice votes as the model does, and its file could "
                    "not be loaded. Give each member once; snapshots kept by appending "
                    "`model` to a list are one model at its last weights: save each (or "
                    "keep keras.models.clone_model(model) with model's weights set).")
            raise UserError(
                f"Members {first} and {i} ({members[first].name!r}, {member.name!r}) share "
                f"the weights {variable.path!r}: an ensemble's members must own their "
                "weights (the saved ensemble could not be loaded). Give one of them its own "
                "copy: keras.models.clone_model, then set_weights.")


def _common_class_names(members):
    """The members' class names (those that have names must agree), or None."""
    named = [(i, m) for i, m in enumerate(members) if class_names(m) is not None]
    for i, member in named[1:]:
        first, ours = class_names(named[0][1]), class_names(member)
        if ours != first:
            where = next(k for k, (a, b) in enumerate(zip(first, ours)) if a != b)
            raise UserError(
                f"Member {i} ({member.name!r}) names its classes differently from member "
                f"{named[0][0]} ({named[0][1].name!r}): class {where} is {ours[where]!r}, not "
                f"{first[where]!r}. Members must be trained on the same classes, in the same "
                "order.")
    return class_names(named[0][1]) if named else None


def check_member_weights(weights, count=None):
    """``weights`` as a list of floats: ``count`` (where given) finite non-negative
    numbers, not all zero; else a one-line ``UserError`` naming what was received."""
    allowed = f"{count or 'one per member:'} finite non-negative numbers, not all zero"
    try:
        if isinstance(weights, (str, bytes, dict, set, frozenset)):  # (a dict's keys were
            raise TypeError                                   # read as its weights)
        values = [float(w) for w in weights]
    except (TypeError, ValueError):
        raise UserError(f"`weights` must be {allowed}; received {weights!r:.80}.") from None
    if ((count is not None and len(values) != count) or not np.isfinite(values).all()
            or min(values, default=-1) < 0 or not 0 < sum(values)):
        raise UserError(f"`weights` must be {allowed}; received {values}.")
    if not sum(values) < np.inf:  # (1e308 twice)
        raise UserError(f"`weights` sum to more than a float holds; received {values}. Only "
                        "their ratios count: scale them down.")
    return values


def common_resize_mode(members):
    """The members' resize mode (``zoo.resize_mode``; those that record one must agree:
    one input serves them all), or None."""
    known = [(i, m) for i, m in enumerate(members) if resize_mode(m) is not None]
    for i, member in known[1:]:
        if resize_mode(member) != resize_mode(known[0][1]):
            first = known[0]
            raise UserError(
                f"Member {i} ({member.name!r}) was trained on inputs made by "
                f"resize={resize_mode(member)!r}, member {first[0]} ({first[1].name!r}) by "
                f"resize={resize_mode(first[1])!r}: an ensemble's one input cannot be both. "
                "If one view suits both, record it on each (in Python: "
                "zoo.set_resize_mode(member, resize)).")
    return resize_mode(known[0][1]) if known else None


def unique_names(names, reserved=()):
    """Number the names that occur more than once, or that are ``reserved``:
    ``[a, a, b] -> [a_1, a_2, b]``, skipping the numbers already taken
    (``[a_1, a, a] -> [a_1, a_2, a_3]``), so that every name comes out once."""
    names = list(names)
    repeated = {n for n in names if names.count(n) > 1} | set(reserved)
    taken = set(reserved) | {n for n in names if n not in repeated}
    counts, out = {}, []
    for n in names:
        if n not in repeated:
            out.append(n)
            continue
        counts[n] = counts.get(n, 0) + 1
        while f"{n}_{counts[n]}" in taken:
            counts[n] += 1
        taken.add(f"{n}_{counts[n]}")
        out.append(f"{n}_{counts[n]}")
    return out


# The ensemble graph's own layers, and those it names after each member (combined_model).
_GRAPH_LAYERS = ("input", "member_probabilities", "combine")
_PER_MEMBER = ("softmax", "stack")


def _names_in_graph(names):
    """The members' names made unique, and none the ensemble's own layers take: a member
    named "input" or "combine", or "a_softmax" beside a logits member "a" (Keras' "The
    name is used 2 times in the model")."""
    reserved = set(_GRAPH_LAYERS)
    while True:
        out = unique_names(names, reserved)
        derived = {f"{n}_{suffix}" for n in out for suffix in _PER_MEMBER}
        if not derived & set(out) - reserved:
            return out
        reserved |= derived & set(out)


def Ensemble(members, combine="mean", weights=None, return_members=False, name="ensemble"):
    """Build ONE functional Keras model averaging ``members`` on a shared input.

    Members built by the same builder are renamed (``alexnet_1``, ``alexnet_2``, ...), as
    is a member named as one of the ensemble's own layers (``input``, ``combine``), so
    names never clash; the members themselves are not modified (the ensemble shares their
    layers and weights). Members that output logits are turned into probabilities first.
    The ensemble takes the members' class names and resize mode (``zoo.class_names``,
    ``zoo.resize_mode``): members that record different ones are refused in one line.

    Args:
        members: classifiers with the same input shape and number of classes.
        combine: ``"mean"``, ``"logit_mean"``, ``"geometric"`` or ``"vote"``
            (see :class:`CombineMembers`).
        weights: optional non-negative weight per member (normalised to sum to 1).
        return_members: also output the stacked member probabilities, shaped
            ``(batch, members, classes)`` (Keras keeps the batch first;
            :func:`ensembles.member_probabilities` gives ``(members, batch, classes)``).
        name: the ensemble model's name.

    Example:

    >>> import zoo
    >>> members = [zoo.alexnet(input_shape=(67, 67, 3), classes=10, width=64) for _ in range(3)]
    >>> model = Ensemble(members)
    >>> model.output_shape
    (None, 10)
    """
    if isinstance(members, (keras.Model, str, bytes)) or not hasattr(members, "__iter__"):
        raise UserError(f"Ensemble takes a list of member models; received "
                        f"{type(members).__name__}" + (
                            " (one model: Ensemble([model]), or ensembles.as_ensemble(model))"
                            if isinstance(members, keras.Model) else "") + ".")
    members = list(members)
    names = _check_members(members)
    _refuse_shared_weights(members)
    return_members = check_bool(return_members, "return_members")
    resize = common_resize_mode(members)
    if weights is not None:
        weights = check_member_weights(weights, len(members))
    names_in_graph = _names_in_graph([m.name for m in members])
    calls = [(member_graph(member, member_name), member_name)
             for member, member_name in zip(members, names_in_graph)]
    return combined_model(calls, combine, weights, return_members, name, names, resize)


def combined_model(calls, combine="mean", weights=None, return_members=False,
                   name="ensemble", class_names=None, resize=None):
    """The graph every ensemble shares: each ``(model, key)`` of ``calls`` is called on one
    input (a model may come more than once: :func:`ensembles.mc_dropout` calls one model N
    times), its probabilities stacked as ``(batch, members, classes)`` under layers named
    after ``key``, and :class:`CombineMembers` combines them; with the members'
    ``class_names`` and ``resize`` mode (``zoo.resize_mode``)."""
    first = calls[0][0]
    inputs = keras.Input(first.input_shape[1:], name="input")
    probabilities = []
    # In float32 under mixed precision too: float16 holds no probability below 6e-8 (the
    # logit rules' logs of them were -69).
    exact = dict(dtype="float32")
    for member, key in calls:
        out = member(inputs)
        if not _softmax_output(member):
            out = keras.layers.Softmax(name=f"{key}_softmax", **exact)(out)
        probabilities.append(keras.layers.Reshape((1, -1), name=f"{key}_stack", **exact)(out))
    stacked = (probabilities[0] if len(probabilities) == 1 else
               keras.layers.Concatenate(axis=1, name="member_probabilities",
                                        **exact)(probabilities))
    combined = CombineMembers(combine, weights, name="combine", **exact)(stacked)
    model = keras.Model(inputs, [combined, stacked] if return_members else combined, name=name)
    set_input_pixels(model, common_input_pixels([member for member, _ in calls]))
    return set_resize_mode(set_class_names(model, class_names), resize)


def common_input_pixels(members):
    """The preprocessing the members' converted weights take their inputs in
    (``zoo.input_pixels``), which the ensemble's input then needs: members that need
    different ones are refused in one line (one input serves them all)."""
    first = members[0]
    for i, member in enumerate(members[1:], start=1):
        if input_pixels(member) != input_pixels(first):
            from zoo.pretrained import describe_preprocessing

            def takes(m):
                pixels = input_pixels(m)
                return "images" if pixels is None else (
                    f"inputs preprocessed as {describe_preprocessing(pixels)}")

            raise UserError(
                f"Member {i} ({member.name!r}) takes {takes(member)}, member 0 "
                f"({first.name!r}) {takes(first)}: an ensemble's one input cannot be both. "
                "Put each converted member's preprocessing into it first: "
                "zoo.pretrained.with_preprocessing(member).")
    return input_pixels(first)


def combine_layer(model):
    """The :class:`CombineMembers` layer of an :func:`Ensemble`, or None for other models.

    An ensemble is recognised by this layer's class, never by a layer name: any model may
    have a layer called ``combine``.
    """
    if not isinstance(model, keras.Model):
        return None
    found = [layer for layer in model.layers if isinstance(layer, CombineMembers)]
    return found[0] if len(found) == 1 else None


def is_ensemble(model):
    """Whether ``model`` is an :func:`Ensemble` (it has one :class:`CombineMembers` layer)."""
    return combine_layer(model) is not None


def as_ensemble(model):
    """``model`` if it is an :func:`Ensemble`, else a one-member ensemble of it (same
    weights, same name), which serves and exports like any other.

    Example:

    >>> import zoo
    >>> model = zoo.alexnet(input_shape=(67, 67, 3), classes=10, width=16)
    >>> [m.name for m in members_of(as_ensemble(model))]
    ['alexnet']
    """
    if not isinstance(model, keras.Model):
        hint = (" (a path? load it first: ensembles.load(path))"
                if isinstance(model, (str, os.PathLike)) else "")
        shown = repr(os.fspath(model)) if hint else f"{model!r:.80}"  # (a path: whole)
        raise UserError(f"Expected a Keras model or ensemble; received "
                        f"{type(model).__name__} {shown}{hint}.")
    return model if is_ensemble(model) else Ensemble([model], name=model.name)


def _ensemble_combine_layer(ensemble):
    layer = combine_layer(ensemble)
    if layer is None:
        raise UserError(
            f"Expected an ensemble (a model with one CombineMembers layer, as "
            f"ensembles.Ensemble builds); received {getattr(ensemble, 'name', ensemble)!r}.")
    return layer


def _producer(tensor):
    """The operation that made a symbolic ``tensor``, and the node of that call."""
    operation, node_index, _ = tensor._keras_history
    return operation, operation._inbound_nodes[node_index]


def members_of(ensemble):
    """The member models inside an :func:`Ensemble`, in the order of its stacked outputs
    (the order of its weights), found by following the graph back from the combination.

    Example:

    >>> import zoo
    >>> a = zoo.alexnet(input_shape=(67, 67, 3), classes=10, width=16)
    >>> b = zoo.resnet18(input_shape=(67, 67, 3), classes=10, width=0.125)
    >>> [m.name for m in members_of(Ensemble([b, a]))]
    ['resnet18', 'alexnet']
    """
    stacked = _ensemble_combine_layer(ensemble).input
    operation, node = _producer(stacked)
    stacks = (node.input_tensors if isinstance(operation, keras.layers.Concatenate)
              else [stacked])
    members = []
    for tensor in stacks:
        operation, node = _producer(tensor)
        while not isinstance(operation, keras.Model):  # up through the Reshape and Softmax
            (tensor,) = node.input_tensors
            operation, node = _producer(tensor)
        members.append(operation)
    return members


def member_models(model):
    """:func:`members_of` ``model`` where it has member models; ``[]`` for a model that is
    no ensemble, or a hand-made graph around :class:`CombineMembers` whose probabilities
    no member model made."""
    if not is_ensemble(model):
        return []
    try:
        return members_of(model)
    except ValueError:  # (the walk back reached the input without meeting a model)
        return []


def member_weights(source):
    """The normalised weight of each member, in the order of :func:`members_of`: an
    :func:`Ensemble`'s own weights (equal when it has none), equal weights for a list of
    models.

    Example:

    >>> import zoo
    >>> a = zoo.alexnet(input_shape=(67, 67, 3), classes=10, width=16)
    >>> b = zoo.resnet18(input_shape=(67, 67, 3), classes=10, width=0.125)
    >>> member_weights(Ensemble([a, b], weights=[3, 1])).tolist()
    [0.75, 0.25]
    """
    if is_ensemble(source):
        count = len(members_of(source))
        weights = combine_layer(source).member_weights
    elif isinstance(source, keras.Model):
        count, weights = 1, None
    else:
        models = list(source) if hasattr(source, "__iter__") and not isinstance(
            source, (str, bytes)) else []
        if not models or not all(isinstance(m, keras.Model) for m in models):
            raise UserError(f"member_weights reads a model, an ensemble or a non-empty list "
                            f"of models; received {source!r:.80}.")  # (5, or [] over 0)
        count, weights = len(models), None
    weights = np.ones(count) if weights is None else np.asarray(weights, dtype="float64")
    return weights / weights.sum()


def with_member_outputs(ensemble):
    """The same ensemble (same weights) with outputs ``[combined, (batch, members, classes)]``."""
    if not is_ensemble(ensemble):
        raise UserError(f"with_member_outputs takes an ensemble (ensembles.Ensemble, or one "
                        f"loaded with zoo.load_model); received {ensemble!r:.80} "
                        f"({type(ensemble).__name__}).")
    if len(ensemble.outputs) == 2:
        return ensemble
    stacked = _ensemble_combine_layer(ensemble).input
    model = keras.Model(ensemble.input, [ensemble.outputs[0], stacked], name=ensemble.name)
    return copy_metadata(ensemble, model)
