"""The top floor: the ``zoo`` command line (:mod:`zoo.cli.commands`) and the demo
(:mod:`zoo.cli.demo`), built on the models, the training recipe, the data and the ensembles.
"""

from zoo.cli.commands import main

__all__ = ["main"]
