"""The paper's training recipe, on top of the models: ``train`` (SGD with momentum, weight
decay, ``ReduceLROnPlateau``, crash-proof run directories), its callbacks, distribution over
devices and workers, the babysitting diagnostics, random search and fine-tuning.

Example:

>>> from zoo import training
>>> result = training.train("alexnet", train_ds, val_ds, epochs=2)   # doctest: +SKIP
"""

from zoo.training.finetune import fine_tune
from zoo.training.recipe import PRECISION_CHOICES, TrainResult, compile_model, train

__all__ = [
    "PRECISION_CHOICES", "TrainResult", "compile_model", "fine_tune", "train",
]
