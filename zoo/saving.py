"""Load a ``.keras`` file that holds zoo layers, in any process, with one-line errors.

Keras deserialises only objects that are registered, and registration happens when the
module defining them is imported; for safety it never imports a package named in a file.
:func:`load_model` imports every module that registers an object of the models' floor
(LRN, PaperSGD, MeanSubtraction) first; ``ensembles.load`` adds the ensembles' objects.
"""

import os
import zipfile

import keras

from safeio.checks import UserError
import zoo.layers  # noqa: F401  (registers LocalResponseNormalization)
import zoo.optimizers  # noqa: F401  (registers PaperSGD)


def load_model(path, compile=True):
    """``keras.models.load_model`` for zoo models, in a fresh process too.

    A path that is missing, empty, truncated, not a zip archive, without ``config.json``,
    or whose weights cannot be read raises one ``ValueError`` naming the file and what is
    wrong (Keras says "File not found" for a file that exists but is not a zip archive).

    Example:

    >>> model = zoo.load_model("runs/alexnet/checkpoints/best.keras")   # doctest: +SKIP
    """
    import data.layers  # noqa: F401  (registers MeanSubtraction; data imports TensorFlow)

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"Cannot load {path}: " + ("it is a directory, not a .keras file."
                                                  if os.path.isdir(path) else "no such file."))
    if not zipfile.is_zipfile(path):
        size = os.path.getsize(path)
        raise UserError(f"Cannot load {path}: not a .keras file (" + (
            "empty" if size == 0 else f"{size:,} bytes that are not a zip archive: truncated "
            "or another format") + ").")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        broken = archive.testzip()
    if broken is not None:
        raise UserError(f"Cannot load {path}: {broken} inside it is corrupt.")
    if "config.json" not in names:
        raise UserError(f"Cannot load {path}: the archive has no config.json, so it is not "
                        f"a saved Keras model (it holds {sorted(names)}).")
    try:
        return keras.models.load_model(path, compile=compile)
    except (OSError, KeyError) as err:  # a damaged weights file inside a valid archive
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"Cannot load {path}: its weights cannot be read ({message}).") from None
    except (TypeError, ValueError) as err:  # Keras: a class it cannot find or rebuild
        if isinstance(err, ValueError) and "deserializ" not in str(err):
            raise
        if "ensembles" in str(err):  # e.g. "Could not locate class 'ensembles>CyclicCosine'"
            raise UserError(f"Cannot load {path} with zoo.load_model: it holds ensemble "
                            f"objects; use ensembles.load({path!r}).") from None
        if "deserializ" in str(err) or "Could not locate" in str(err):
            raise UserError(f"Cannot load {path}: it names a class this process does not "
                            f"know ({str(err).splitlines()[0][:200]}). Import the code that "
                            "registers it first.") from None
        raise
