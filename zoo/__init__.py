"""Paper-faithful classic ImageNet networks for Keras 3.

Example:

>>> import zoo
>>> model = zoo.alexnet()
>>> model.count_params()
62378344
"""

from zoo import diagnostics, distribute, layers
from zoo.finetune import fine_tune
from zoo.models.alexnet import alexnet
from zoo.models.googlenet import compile_with_aux, googlenet, without_aux
from zoo.models.resnet import resnet, resnet18, resnet34, resnet50, resnet101, resnet152
from zoo.registry import count_macs, get_model, list_models, model_info, register_model
from zoo.training import OPTIMIZER_CHOICES, PaperSGD, TrainResult, make_optimizer, train
from zoo.tuning import SearchResult, plot_search, search

__version__ = "0.1.0"

__all__ = [
    "OPTIMIZER_CHOICES", "PaperSGD", "SearchResult", "TrainResult", "alexnet",
    "compile_with_aux", "count_macs",
    "diagnostics", "distribute", "fine_tune", "get_model", "make_optimizer", "googlenet", "layers",
    "list_models", "model_info", "plot_search", "register_model", "resnet", "resnet18",
    "resnet34", "resnet50", "resnet101", "resnet152", "search", "train", "without_aux",
]
