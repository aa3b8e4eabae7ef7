"""Paper-faithful classic ImageNet networks for Keras 3.

Example:

>>> import zoo
>>> model = zoo.alexnet()
>>> model.count_params()
62378344
"""

import importlib

from zoo import layers
from zoo.finetune import fine_tune
from zoo.models.alexnet import alexnet
from zoo.models.googlenet import compile_with_aux, googlenet, without_aux
from zoo.models.resnet import resnet, resnet18, resnet34, resnet50, resnet101, resnet152
from zoo.optimizers import OPTIMIZER_CHOICES, PaperSGD, make_optimizer
from zoo.registry import count_macs, get_model, list_models, model_info, register_model

__version__ = "0.1.0"

# The training stack (TensorFlow's tf.data and tf.distribute, keras-tuner) is imported on
# first use, so `import zoo` builds models on any Keras backend without it.
_LAZY = {
    "diagnostics": ("zoo.diagnostics", None), "distribute": ("zoo.distribute", None),
    "training": ("zoo.training", None), "tuning": ("zoo.tuning", None),
    "TrainResult": ("zoo.training", "TrainResult"), "train": ("zoo.training", "train"),
    "SearchResult": ("zoo.tuning", "SearchResult"), "plot_search": ("zoo.tuning", "plot_search"),
    "search": ("zoo.tuning", "search"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "OPTIMIZER_CHOICES", "PaperSGD", "SearchResult", "TrainResult", "alexnet",
    "compile_with_aux", "count_macs", "diagnostics", "distribute", "fine_tune", "get_model",
    "googlenet", "layers", "list_models", "make_optimizer", "model_info", "plot_search",
    "register_model", "resnet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "search", "train", "without_aux",
]
