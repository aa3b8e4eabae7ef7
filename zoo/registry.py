"""The model registry: builders register themselves under their own function name."""

import dataclasses
import functools
import math
import re

_MODELS = {}


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What the zoo knows about a registered builder."""

    name: str
    builder: object
    paper: str
    input_size: int
    min_input_size: int


def register_model(paper, input_size, min_input_size=32):
    """Register a builder under its own ``__name__`` (timm's rule: name and key never drift).

    Example:

    >>> @register_model(paper="Me et al. 2026", input_size=32)
    ... def tiny(**kwargs): ...
    """

    def wrap(builder):
        _MODELS[builder.__name__] = ModelEntry(builder.__name__, builder, paper, input_size,
                                               min_input_size)
        return builder

    return wrap


def list_models():
    """Names of every registered model, sorted.

    Example:

    >>> "alexnet" in list_models()
    True
    """
    return sorted(_MODELS, key=_natural_key)


def _natural_key(name):
    """Sort resnet18 before resnet101."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def get_entry(name):
    """The :class:`ModelEntry` for ``name``; unknown names raise ``ValueError``."""
    if name not in _MODELS:
        raise ValueError(
            f"Unknown model {name!r}. Available: {', '.join(list_models())}."
        )
    return _MODELS[name]


def get_model(name, /, **kwargs):
    """Build the registered model ``name`` with builder keyword arguments.

    Example:

    >>> model = get_model("alexnet", input_shape=(67, 67, 3), classes=10, width=64)
    >>> model.output_shape
    (None, 10)
    """
    return get_entry(name).builder(**kwargs)


def count_macs(model):
    """Multiply-accumulates of one forward pass, from the convolutions and dense layers.

    The usual convention of the papers: other layers (pooling, normalization, activations)
    are left out. Needs a model whose spatial sizes are known.

    Example:

    >>> from zoo import alexnet
    >>> round(count_macs(alexnet()) / 1e9, 2)
    1.14
    """
    import keras

    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out_h, out_w, out_c = layer.output.shape[1:]
            kh, kw, in_c, _ = layer.kernel.shape
            macs += out_h * out_w * out_c * kh * kw * in_c
        elif isinstance(layer, keras.layers.Dense):
            macs += int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    return int(macs)


@functools.lru_cache(maxsize=None)
def model_info(name):
    """Facts about a registered model at its default input size and 1000 classes.

    Returns a dict: ``name``, ``paper``, ``input_size``, ``params`` (trainable, the count
    papers and torchvision report), ``total_params`` (with BatchNorm statistics) and
    ``macs`` (multiply-accumulates of one forward pass).

    Example:

    >>> model_info("alexnet")["params"]
    62378344
    """
    entry = get_entry(name)
    model = entry.builder()
    info = {
        "name": name,
        "paper": entry.paper,
        "input_size": entry.input_size,
        "params": sum(math.prod(w.shape) for w in model.trainable_weights),
        "total_params": model.count_params(),
        "macs": count_macs(model),
    }
    return info
