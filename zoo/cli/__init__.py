"""The top floor: the ``zoo`` command line and the demo (:mod:`zoo.cli.demo`), built on
the models, the training recipe, the data and the ensembles. :mod:`zoo.cli.commands` parses
and runs a command, whose handler and flags are in its own module (:mod:`~zoo.cli.train`,
:mod:`~zoo.cli.distill`, :mod:`~zoo.cli.tuning`, :mod:`~zoo.cli.evaluate`,
:mod:`~zoo.cli.ensemble`, :mod:`~zoo.cli.serve`) on what they share (:mod:`~zoo.cli.common`,
:mod:`~zoo.cli.runs`).
"""

from zoo.cli.commands import main

__all__ = ["main"]
