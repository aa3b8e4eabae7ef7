"""The model registry: builders register themselves under their own function name."""

import dataclasses

_MODELS = {}


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What the zoo knows about a registered builder."""

    name: str
    builder: object
    paper: str
    input_size: int


def register_model(paper, input_size):
    """Register a builder under its own ``__name__`` (timm's rule: name and key never drift).

    Example:

    >>> @register_model(paper="Me et al. 2026", input_size=32)
    ... def tiny(**kwargs): ...
    """

    def wrap(builder):
        _MODELS[builder.__name__] = ModelEntry(builder.__name__, builder, paper, input_size)
        return builder

    return wrap


def list_models():
    """Names of every registered model, sorted.

    Example:

    >>> "alexnet" in list_models()
    True
    """
    return sorted(_MODELS)


def get_entry(name):
    """The :class:`ModelEntry` for ``name``; unknown names raise ``ValueError``."""
    if name not in _MODELS:
        raise ValueError(
            f"Unknown model {name!r}. Available: {', '.join(list_models())}."
        )
    return _MODELS[name]


def get_model(name, **kwargs):
    """Build the registered model ``name`` with builder keyword arguments.

    Example:

    >>> model = get_model("alexnet", input_shape=(67, 67, 3), classes=10, width=64)
    >>> model.output_shape
    (None, 10)
    """
    return get_entry(name).builder(**kwargs)
