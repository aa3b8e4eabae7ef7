"""Paper-faithful classic ImageNet networks for Keras 3.

``import zoo`` is instant: it imports neither Keras nor TensorFlow. The models' floor
(layers, builders, PaperSGD; it registers every zoo object with Keras) loads on the first
use of one of its names, and the training recipe (:mod:`zoo.training`) on the first use
of ``zoo.train``, ``zoo.search``, ``zoo.distribute`` or ``zoo.diagnostics``. The registry
answers ``zoo.list_models()`` and ``zoo.model_info(name)`` without either.

Example:

>>> import zoo
>>> model = zoo.alexnet()
>>> model.count_params()
62378344
"""

import importlib

from safeio.checks import UserError  # every check of input raises it (a ValueError)
from zoo.registry import (check_arguments, count_macs, get_model, list_models, model_info,
                          register_model, resolve)

__version__ = "0.1.0"

# The models' floor: any of these names loads all of its modules at once, so that every
# zoo layer and optimizer is registered with Keras from then on.
_CORE_MODULES = ("zoo.layers", "zoo.optimizers", "zoo.models.alexnet", "zoo.models.googlenet",
                 "zoo.models.resnet", "zoo.models.resnet_cifar", "zoo.models.vgg", "zoo.saving")
_LAZY = {
    "layers": ("zoo.layers", None),
    "alexnet": ("zoo.models.alexnet", "alexnet"),
    **{name: ("zoo.models.googlenet", name) for name in (
        "GoogLeNetWithAuxHeads", "googlenet", "without_aux")},
    **{name: ("zoo.models.resnet", name) for name in (
        "resnet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")},
    **{name: ("zoo.models.resnet_cifar", name) for name in (
        "resnet_cifar", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110")},
    **{name: ("zoo.models.vgg", name) for name in (
        "vgg", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn",
        "vgg19_bn")},
    **{name: ("zoo.optimizers", name) for name in (
        "OPTIMIZER_CHOICES", "PaperSGD", "ProbabilityCrossEntropy", "make_optimizer")},
    **{name: ("zoo.saving", name) for name in (
        "class_names", "input_pixels", "load_model", "resize_mode", "save_model",
        "set_class_names", "set_resize_mode")},
    "pretrained": ("zoo.pretrained", None),
    "predict": ("zoo.prediction", "predict"),
    "prediction": ("zoo.prediction", None),  # (zoo.prediction.NoViewWarning, as the README)
    **{name: ("zoo.pretrained", name) for name in ("decode_predictions", "preprocess_input")},
    # The floor above: the training recipe (tf.data, tf.distribute, keras-tuner).
    "training": ("zoo.training", None),
    "diagnostics": ("zoo.training.diagnostics", None),
    "distribute": ("zoo.training.distribute", None),
    **{name: ("zoo.training", name) for name in (
        "TrainResult", "compile_model", "fine_tune", "train")},
    **{name: ("zoo.training.search", name) for name in (
        "SearchResult", "plot_search", "search")},
}


def load_core():
    """Import the models' floor (:data:`_CORE_MODULES`), which registers every zoo layer,
    model and optimizer with Keras; nothing the second time."""
    for module_name in _CORE_MODULES:
        importlib.import_module(module_name)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    load_core()
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(["UserError", "check_arguments", "count_macs", "get_model", "list_models",
                  "model_info", "register_model", "resolve", *_LAZY])
