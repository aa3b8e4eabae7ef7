"""Paper-faithful classic ImageNet networks for Keras 3.

Example:

>>> import zoo
>>> model = zoo.alexnet()
>>> model.count_params()
62378344
"""

from zoo import distribute, layers
from zoo.alexnet import alexnet
from zoo.registry import get_model, list_models, register_model

__version__ = "0.1.0"

__all__ = ["alexnet", "distribute", "get_model", "layers", "list_models", "register_model"]
