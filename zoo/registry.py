"""The model registry: builders register themselves under their own function name.

It imports no Keras: the built-in models' facts are static (:data:`CATALOG`, checked
against the built models by the tests), so listing them is instant, and a model family's
module is imported the first time one of its models is asked for.
"""

import dataclasses
import difflib
import fnmatch
import functools
import importlib
import inspect
import math

from safeio import natural_key
from safeio.checks import UserError

_MODELS = {}

# The built-in models at their default input size and classes (1000; the CIFAR ResNets: 32x32
# and 10): the module that registers each, and what `zoo list` / `model_info` report without
# building anything.
# Their builders' keyword arguments are listed too, so that `zoo info` and the commands'
# typo checks need no Keras (test_registry checks them against the builders).
_COMMON = ("include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
           "classifier_activation", "name")
_ALEXNET = dict(module="zoo.models.alexnet", paper="Krizhevsky, Sutskever, Hinton 2012",
                input_size=227, arguments=_COMMON + (
                    "towers", "norm", "dropout", "width", "kernel_initializer", "activation",
                    "lrn_params", "lrn_across_towers", "regularizer", "ceil_mode"))
_GOOGLENET = dict(module="zoo.models.googlenet", paper="Szegedy et al. 2014", input_size=224,
                  arguments=_COMMON + ("aux_logits", "dropout", "width", "kernel_initializer",
                                       "activation"))
_RESNET = dict(module="zoo.models.resnet", paper="He, Zhang, Ren, Sun 2015", input_size=224,
               arguments=_COMMON + ("dropout", "width", "zero_init_residual", "drop_path_rate",
                                    "stem", "kernel_initializer", "activation"))
_RESNET_CIFAR = dict(module="zoo.models.resnet_cifar",
                     paper="He, Zhang, Ren, Sun 2015 (CIFAR-10, sec. 4.2)", input_size=32,
                     arguments=_COMMON + ("dropout", "width", "shortcut", "zero_init_residual",
                                          "drop_path_rate", "kernel_initializer",
                                          "activation"))
_VGG = dict(module="zoo.models.vgg", paper="Simonyan, Zisserman 2014", input_size=224,
            arguments=_COMMON + ("dropout", "width", "kernel_initializer", "activation",
                                 "ceil_mode"))
CATALOG = {
    "alexnet": dict(_ALEXNET, params=62_378_344, total_params=62_378_344, macs=1_135_256_096),
    "googlenet": dict(_GOOGLENET, params=6_998_552, total_params=6_998_552, macs=1_582_671_872),
    "resnet18": dict(_RESNET, params=11_689_512, total_params=11_699_112, macs=1_814_073_344),
    "resnet34": dict(_RESNET, params=21_797_672, total_params=21_814_696, macs=3_663_761_408),
    "resnet50": dict(_RESNET, params=25_557_032, total_params=25_610_152, macs=4_089_184_256),
    "resnet101": dict(_RESNET, params=44_549_160, total_params=44_654_504,
                      macs=7_801_405_440),
    "resnet152": dict(_RESNET, params=60_192_808, total_params=60_344_232,
                      macs=11_513_626_624),
    # The CIFAR ResNets at 32x32 and 10 classes.
    "resnet20": dict(_RESNET_CIFAR, params=269_722, total_params=271_098, macs=40_551_040),
    "resnet32": dict(_RESNET_CIFAR, params=464_154, total_params=466_426, macs=68_862_592),
    "resnet44": dict(_RESNET_CIFAR, params=658_586, total_params=661_754, macs=97_174_144),
    "resnet56": dict(_RESNET_CIFAR, params=853_018, total_params=857_082, macs=125_485_696),
    "resnet110": dict(_RESNET_CIFAR, params=1_727_962, total_params=1_736_058,
                      macs=252_887_680),
    "vgg11": dict(_VGG, params=132_863_336, total_params=132_863_336, macs=7_609_090_048),
    "vgg13": dict(_VGG, params=133_047_848, total_params=133_047_848, macs=11_308_466_176),
    "vgg16": dict(_VGG, params=138_357_544, total_params=138_357_544, macs=15_470_264_320),
    "vgg19": dict(_VGG, params=143_667_240, total_params=143_667_240, macs=19_632_062_464),
    "vgg11_bn": dict(_VGG, params=132_868_840, total_params=132_874_344,
                     macs=7_609_090_048),
    "vgg13_bn": dict(_VGG, params=133_053_736, total_params=133_059_624,
                     macs=11_308_466_176),
    "vgg16_bn": dict(_VGG, params=138_365_992, total_params=138_374_440,
                     macs=15_470_264_320),
    "vgg19_bn": dict(_VGG, params=143_678_248, total_params=143_689_256,
                     macs=19_632_062_464),
}


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What the zoo knows about a registered builder."""

    name: str
    builder: object
    paper: str
    input_size: int
    min_input_size: int
    arguments_of: object = None  # the builder a ``**kwargs`` builder passes them on to
    fixed: tuple = ()  # arguments of ``arguments_of`` that the variant sets itself

    @property
    def arguments(self):
        """The keyword arguments the builder takes (those of ``arguments_of`` for a
        ``def resnet18(**kwargs)`` that passes them on)."""
        source = self.arguments_of or self.builder
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names = [p.name for p in inspect.signature(source).parameters.values()
                 if p.kind in kinds]
        if self.arguments_of is None:
            return names
        return [n for n in names[1:] if n not in self.fixed]  # less e.g. ``depth``


def register_model(paper, input_size, min_input_size=32, arguments_of=None, fixed=()):
    """Register a builder under its own ``__name__`` (timm's rule: name and key never drift).

    A second, different builder under a name already taken raises ``ValueError``
    (re-running the same definition, as a notebook or ``importlib.reload`` does, replaces
    it). ``arguments_of``: for a ``def name(**kwargs)`` that passes its arguments on to
    another builder's, that builder (less its first argument and the ``fixed`` ones the
    variant sets itself, as ``vgg16_bn`` sets ``batch_norm``), so typos are caught.

    Example:

    >>> @register_model(paper="Me et al. 2026", input_size=32)
    ... def tiny(**kwargs): ...
    """

    def wrap(builder):
        name = getattr(builder, "__name__", None)
        if not callable(builder) or not isinstance(name, str):
            raise UserError(f"register_model decorates a builder function, whose __name__ is "
                            f"the model's name; received {type(builder).__name__} "
                            f"{builder!r:.80} (a functools.partial has no name: wrap it in "
                            "a def).")
        if name in CATALOG and builder.__module__ != CATALOG[name]["module"]:
            raise UserError(f"The name {name!r} belongs to the built-in model of "
                            f"{CATALOG[name]['module']}; give yours another name.")
        old = _MODELS.get(name)
        if old is not None and (old.builder.__module__, old.builder.__qualname__) != (
                builder.__module__, builder.__qualname__):
            raise UserError(
                f"A model named {name!r} is already registered (by "
                f"{old.builder.__module__}.{old.builder.__qualname__}); received another "
                f"builder from {builder.__module__}. Give it another name.")
        _MODELS[name] = ModelEntry(name, builder, paper, input_size, min_input_size,
                                   arguments_of, tuple(fixed))
        _model_info.cache_clear()  # (a builder replaced in a notebook: its facts anew)
        if arguments_of is not None:  # help() and a notebook's `?` list the real arguments
            passed_on = list(inspect.signature(arguments_of).parameters.values())[1:]
            builder.__signature__ = inspect.Signature(
                [p for p in passed_on if p.name not in fixed])
        return builder

    return wrap


def list_models(pattern=None):
    """Names of every registered model, sorted naturally; ``pattern`` filters them with
    shell wildcards (``"resnet*"``; case aside, as ``"ResNet*"``).

    Example:

    >>> list_models("resnet1*")
    ['resnet18', 'resnet101', 'resnet110', 'resnet152']
    """
    if pattern is not None and not isinstance(pattern, str):
        raise UserError(f"list_models' `pattern` must be a string of shell wildcards such as "
                        f"'resnet*', or None; received {pattern!r}.")
    names = sorted(set(_MODELS) | set(CATALOG), key=natural_key)
    return names if pattern is None else [  # ("ResNet*" found none: names are lower case)
        n for n in names if fnmatch.fnmatchcase(n.lower(), pattern.lower())]


def _plain(word):
    """``word`` as names compare when suggesting one: lower case, without - and _ (the
    keras.applications spellings ``VGG16_BN``, ``ResNet50``, and ``resnet-50``)."""
    return word.lower().replace("-", "").replace("_", "")


def _did_you_mean(word, options):
    """The option ``word`` spells another way (``VGG16``), else the closest one, as typed
    or as :func:`_plain` reads both."""
    plain = {_plain(option): option for option in options}
    if _plain(word) in plain:
        return f" Did you mean {plain[_plain(word)]!r}?"
    close = (difflib.get_close_matches(word, options, n=1, cutoff=0.6)
             or [plain[match] for match in difflib.get_close_matches(
                 _plain(word), list(plain), n=1, cutoff=0.6)])
    return f" Did you mean {close[0]!r}?" if close else ""


def get_entry(name):
    """The :class:`ModelEntry` for ``name`` (importing its module on first use); unknown
    names raise ``ValueError`` with the closest name and the list."""
    if not isinstance(name, str):
        raise UserError(f"A model name must be a string; received {type(name).__name__}.")
    if name not in _MODELS and name in CATALOG:
        importlib.import_module(CATALOG[name]["module"])  # registers it
    if name not in _MODELS:
        raise UserError(f"Unknown model {name!r}.{_did_you_mean(name, list_models())} "
                        f"Available: {', '.join(list_models())}.")
    return _MODELS[name]


def check_arguments(name, kwargs):
    """Raise one ``ValueError`` line for a keyword argument ``name``'s builder does not
    take, with the closest one (``tower`` -> ``towers``), before anything is built or read.

    Example:

    >>> check_arguments("alexnet", {"tower": 2})
    Traceback (most recent call last):
    ...
    safeio.checks.UserError: alexnet has no argument 'tower'. Did you mean 'towers'? ...
    """
    allowed = arguments_of(name)
    if allowed is None:  # a def f(**kwargs) that says not where they go: nothing to check
        return
    for key in kwargs:
        if key not in allowed:
            raise UserError(f"{name} has no argument {key!r}.{_did_you_mean(key, allowed)} "
                            f"Its arguments: {', '.join(allowed)}.")


def arguments_of(name):
    """The keyword arguments of model ``name``'s builder (for a built-in model from
    :data:`CATALOG`, without importing Keras); None for a ``def f(**kwargs)`` that does not
    say where they go.

    Example:

    >>> arguments_of("resnet18")[-3:]
    ('stem', 'kernel_initializer', 'activation')
    """
    if isinstance(name, str) and name not in _MODELS and name in CATALOG:
        return CATALOG[name]["arguments"]
    entry = get_entry(name)  # (a name that is no string: one line there)
    open_ended = entry.arguments_of is None and any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        for p in inspect.signature(entry.builder).parameters.values())
    return None if open_ended else tuple(entry.arguments)


def get_model(name, /, **kwargs):
    """Build the registered model ``name`` with builder keyword arguments.

    Example:

    >>> model = get_model("alexnet", input_shape=(67, 67, 3), classes=10, width=64)
    >>> model.output_shape
    (None, 10)
    """
    check_arguments(name, kwargs)
    return get_entry(name).builder(**kwargs)


def resolve(spec, /, **kwargs):
    """A model from a registry name, a builder (a function returning a model) or a model.

    The one place that turns "what the user gave as a model" into a ``keras.Model``:
    a name is built with ``kwargs`` (checked first), a function is called with them, a
    model is returned as it is (then ``kwargs`` must be empty).

    Example:

    >>> resolve("resnet18", input_shape=(32, 32, 3), classes=10).name
    'resnet18'
    """
    import keras

    if isinstance(spec, keras.Model):
        if kwargs:
            raise UserError(f"Model arguments {sorted(kwargs)} cannot change the built model "
                            f"{spec.name!r}: pass its name or its builder instead.")
        return spec
    if isinstance(spec, str):
        return get_model(spec, **kwargs)
    if callable(spec):
        model = spec(**kwargs)
        if not isinstance(model, keras.Model):
            raise UserError(f"The model builder {getattr(spec, '__name__', spec)!r} returned "
                            f"{type(model).__name__}, not a keras.Model.")
        return model
    raise UserError("A model must be a registry name, a function returning a keras.Model, "
                    f"or a keras.Model; received {type(spec).__name__}.")


def count_macs(model):
    """Multiply-accumulates of one forward pass, from the convolutions and dense layers.

    The usual convention of the papers: other layers (pooling, normalization, activations)
    are left out. Models inside the model (an ensemble's members) are counted once each,
    also one the graph calls several times (``ensembles.mc_dropout``'s samples).
    Needs a model whose spatial sizes are known.

    Example:

    >>> from zoo import alexnet
    >>> round(count_macs(alexnet()) / 1e9, 2)
    1.14
    """
    import keras

    if not isinstance(model, keras.Model):
        hint = (f" (zoo.model_info({model!r})['macs'] gives a registered model's)"
                if isinstance(model, str) else "")
        raise UserError(f"count_macs takes a built keras.Model; received {model!r:.80} "
                        f"({type(model).__name__}){hint}.")
    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # (an ensemble's members: they were 0)
            macs += count_macs(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            out_h, out_w, out_c = layer.output.shape[1:]
            if out_h is None or out_w is None:
                raise UserError(f"count_macs needs the spatial sizes: {layer.name!r} of "
                                f"{model.name!r} outputs {tuple(layer.output.shape)}. Build "
                                "the model with a fixed input_shape to count its MACs.")
            kh, kw, in_c, _ = layer.kernel.shape
            macs += out_h * out_w * out_c * kh * kw * in_c
        elif isinstance(layer, keras.layers.Dense):
            macs += int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    return int(macs)


def measured_info(name):
    """:func:`model_info`'s facts measured on the built model (slow for the big ones)."""
    entry = get_entry(name)
    model = entry.builder()
    return {
        "name": name,
        "paper": entry.paper,
        "input_size": entry.input_size,
        "params": sum(math.prod(w.shape) for w in model.trainable_weights),
        "total_params": model.count_params(),
        "macs": count_macs(model),
    }


def model_info(name):
    """Facts about a registered model at its default input size and classes (1000 for the
    ImageNet networks; 32x32 and 10 for the CIFAR ResNets).

    Returns a dict: ``name``, ``paper``, ``input_size``, ``params`` (trainable, the count
    papers and torchvision report), ``total_params`` (with BatchNorm statistics) and
    ``macs`` (multiply-accumulates of one forward pass). Built-in models answer from
    :data:`CATALOG` without building; others are built once.

    Example:

    >>> model_info("alexnet")["params"]
    62378344
    """
    if not isinstance(name, str):  # (the cache below raised "unhashable type: 'list'")
        get_entry(name)  # its one line
    return dict(_model_info(name))  # a copy: a caller's edit changed every later answer


@functools.lru_cache(maxsize=None)
def _model_info(name):
    if name in CATALOG:
        facts = CATALOG[name]
        return {"name": name, **{k: facts[k] for k in (
            "paper", "input_size", "params", "total_params", "macs")}}
    return measured_info(name)
