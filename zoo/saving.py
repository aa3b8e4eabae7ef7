"""Load a ``.keras`` file that holds zoo layers, in any process, with one-line errors.

Keras deserialises only objects that are registered, and registration happens when the
module defining them is imported; for safety it never imports a package named in a file.
:func:`load_model` imports every module that registers an object of the models' floor
(LRN, PaperSGD, MeanSubtraction) first; ``ensembles.load`` adds the ensembles' objects.

Class names travel with a model: :func:`set_class_names` attaches them, :func:`save_model`
(which ``zoo.train``'s checkpoints and ``zoo ensemble`` use) writes them into the
``.keras`` archive as one more entry, ``zoo.json``, and :func:`load_model` gives them back
(:func:`class_names`). So does the way images were made into the model's inputs when it was
trained (:func:`resize_mode`: ``"crop"`` or ``"squash"``), which ``zoo.predict`` and
``ensembles.export`` then follow. Keras ignores the entry: ``keras.saving.load_model``
still loads the file, without them.
"""

import json
import os
import shutil
import zipfile
import zlib

import keras

from safeio import atomic_path, check_free_space, check_writable_file
from safeio.checks import UserError, check_bool
import zoo.layers  # noqa: F401  (registers LocalResponseNormalization)
import zoo.optimizers  # noqa: F401  (registers PaperSGD)


_METADATA = "zoo.json"  # the archive entry that holds the class names and the resize mode
_WEIGHTS = "model.weights.h5"  # the entry of the weights (Keras' saving_lib._VARS_FNAME_H5)
_ATTRIBUTE = "_zoo_class_names"
_RESIZE_ATTRIBUTE = "_zoo_resize_mode"
_PIXELS_ATTRIBUTE = "_zoo_input_pixels"
_PIXEL_KEYS = ("resize", "warp", "crop", "scale", "channel_order", "mean", "std")


def class_names(model):
    """The class names of ``model``'s outputs, in label order, or None where unknown.

    ``zoo.train(..., class_names=...)`` (``zoo train`` passes the dataset's), an ensemble of
    members that have them, a converted ImageNet classifier and :func:`load_model` of a file
    that holds them give them.

    Example:

    >>> model = zoo.load_model("runs/resnet18_digits/checkpoints/best.keras")  # doctest: +SKIP
    >>> zoo.class_names(model)[:3]                                           # doctest: +SKIP
    ['0', '1', '2']
    """
    names = getattr(model, _ATTRIBUTE, None)
    return list(names) if names is not None else None


def check_class_names(names, model=None, one_line=False):
    """``names`` as a tuple of distinct non-empty strings, one per output of ``model``;
    with ``one_line``, of one line each (an export's ``class_names.txt`` holds one a
    line)."""
    if not isinstance(names, str):
        names = tuple(names)  # (a generator is read once)
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise UserError(f"Class names must be a list of non-empty strings; received "
                        f"{names!r:.200}.")
    broken = [n for n in names if one_line and n.splitlines() != [n]]
    if broken:  # an export's class_names.txt holds one name a line
        raise UserError(f"Class names must be one line each; received {broken[0]!r}.")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise UserError(f"Class names must be distinct; {duplicated[:5]} appear more than once.")
    outputs = None if model is None else model.output_shape
    classes = outputs[-1] if isinstance(outputs, tuple) and len(outputs) == 2 else None
    if classes is not None and classes != len(names):
        raise UserError(f"{model.name} has {classes} outputs, but {len(names)} class names "
                        f"were given ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}).")
    return names


def set_class_names(model, names):
    """Attach ``names`` (one per output, in label order; None removes them) to ``model``;
    returns the model.

    Example:

    >>> model = zoo.resnet18(input_shape=(32, 32, 3), classes=2)
    >>> zoo.class_names(zoo.set_class_names(model, ["cat", "dog"]))
    ['cat', 'dog']
    """
    # Not through Keras' attribute tracking: a tuple of strings is no state of the model.
    object.__setattr__(model, _ATTRIBUTE,
                       None if names is None else check_class_names(names, model))
    return model


def resize_mode(model):
    """How images were made into ``model``'s inputs when it was trained, or None where
    unknown: ``"crop"`` (random crops, tested on the centre crop of the image resized to
    ``data.crop_scale(size)``) or ``"squash"`` (whole images resized to the input size).

    ``zoo.train(..., resize=...)`` (``zoo train`` passes its ``--augment``'s), an ensemble
    of members that have it, ``zoo.pretrained.with_preprocessing`` (``"crop"``) and
    :func:`load_model` of a file that holds it give it; ``zoo.predict`` and
    ``ensembles.export`` resize as it says (``data.eval_view``), and ``"crop"`` where it is
    None.

    Example:

    >>> model = zoo.load_model("runs/alexnet_digits/checkpoints/best.keras")  # doctest: +SKIP
    >>> zoo.resize_mode(model)                                               # doctest: +SKIP
    'squash'
    """
    return getattr(model, _RESIZE_ATTRIBUTE, None)


def set_resize_mode(model, resize):
    """Record how images were made into ``model``'s inputs in training (``"crop"`` or
    ``"squash"``; None removes it); returns the model.

    Example:

    >>> model = zoo.resnet18(input_shape=(32, 32, 3), classes=2)
    >>> zoo.resize_mode(zoo.set_resize_mode(model, "squash"))
    'squash'
    """
    if resize is not None:
        from data.preprocess import check_resize  # (data imports TensorFlow: only then)

        check_resize(resize)
    object.__setattr__(model, _RESIZE_ATTRIBUTE, resize)
    return model


def serving_resize(model, resize=None):
    """How images become ``model``'s inputs when it predicts or is exported: ``resize``
    (checked) where given, else as it was trained (:func:`resize_mode`), else ``"crop"``
    (the paper's centre crop)."""
    if resize is not None:
        from data.preprocess import check_resize

        return check_resize(resize)
    return resize_mode(model) or "crop"


def input_pixels(model):
    """The preprocessing ``model``'s converted weights take their inputs in (a weights
    entry's ``preprocessing`` dict: ``zoo.preprocess_input``'s), where the model does not do
    it itself; None for a model of images, pixels 0-255 (every model ``zoo train`` makes).

    ``zoo.predict``, ``ensembles.export`` and ``zoo evaluate`` give models images, so they
    refuse such a model in one line (:func:`check_takes_images`);
    ``zoo.pretrained.with_preprocessing`` puts the preprocessing into the model.

    Example:

    >>> model = zoo.resnet50(weights="imagenet")                         # doctest: +SKIP
    >>> zoo.input_pixels(model)["std"]                                     # doctest: +SKIP
    [0.229, 0.224, 0.225]
    """
    return getattr(model, _PIXELS_ATTRIBUTE, None)


def set_input_pixels(model, preprocessing):
    """Record the preprocessing ``model``'s inputs need (a weights entry's dict; None: it
    takes images as they are); returns the model."""
    if preprocessing is not None:
        preprocessing = _checked_pixels(preprocessing)
    object.__setattr__(model, _PIXELS_ATTRIBUTE, preprocessing)
    return model


def _checked_pixels(preprocessing):
    """A JSON-ready copy of a weights entry's preprocessing dict (ValueError otherwise)."""
    expected = (f"input preprocessing must be a weights entry's dict ({', '.join(_PIXEL_KEYS)}"
                f"; mean and std of 3 numbers each); received {preprocessing!r:.120}")
    if not isinstance(preprocessing, dict) or "mean" not in preprocessing \
            or not set(preprocessing) <= set(_PIXEL_KEYS):
        raise UserError(expected)
    try:
        out = {key: (list(map(float, value)) if key in ("mean", "std") else value)
               for key, value in preprocessing.items()}
    except (TypeError, ValueError):
        raise UserError(expected) from None
    if len(out["mean"]) != 3 or len(out.get("std", [1, 1, 1])) != 3 \
            or out.get("channel_order", "RGB") not in ("RGB", "BGR"):
        raise UserError(expected)
    return out


def check_takes_images(model, doing):
    """One line where ``model`` takes preprocessed pixels (:func:`input_pixels`), not the
    images 0-255 that ``doing`` gives it."""
    preprocessing = input_pixels(model)
    if preprocessing is not None:
        from zoo.pretrained import describe_preprocessing

        raise UserError(
            f"{model.name} takes its converted weights' inputs ("
            f"{describe_preprocessing(preprocessing)}), not the images 0-255 {doing} gives "
            "it: put that preprocessing into it first, model = "
            "zoo.pretrained.with_preprocessing(model) (an ensemble's into each member, then "
            "ensemble them), or give it zoo.preprocess_input's arrays yourself.")


def check_square_images(model, doing):
    """One line where ``model`` does not take one input of square RGB images of a fixed
    size, ``(size, size, 3)``, which ``doing`` (an export, a dataset's pipeline) makes."""
    shape = model.input_shape
    if isinstance(shape, list):
        raise UserError(f"{doing} needs a model of one input; {model.name} takes "
                        f"{len(shape)}: {[tuple(s[1:]) for s in shape]}.")
    shape = tuple(shape[1:])
    if len(shape) != 3 or shape[-1] != 3 or shape[0] is None or shape[0] != shape[1]:
        fix = ("" if not (len(shape) == 3 and shape[-1] == 3 and None in shape[:2]) else
               ": give it a size, building it with input_shape=(size, size, 3) (a zoo "
               "builder's weights load at any size: model.save_weights, then the new "
               "model's load_weights)")
        raise UserError(f"{doing} needs a model of square RGB inputs of a fixed size (size, "
                        f"size, 3); {model.name} takes {shape}{fix}.")


def copy_metadata(source, model):
    """``model`` with ``source``'s class names, resize mode and input preprocessing (a
    model rebuilt from another: reweighted, calibrated, given more outputs); returns
    ``model``."""
    set_class_names(model, class_names(source))
    set_input_pixels(model, input_pixels(source))
    return set_resize_mode(model, resize_mode(source))


_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "int32": 4, "float64": 8,
             "int64": 8, "uint8": 1, "bool": 1}


def bytes_to_save(model, slack=1.1, overhead=2**20):
    """About how many bytes a file of ``model``'s weights (and its optimizer's) takes:
    their sizes with 10 % and 1 MiB to spare, for :func:`safeio.check_free_space`."""
    import numpy as np

    variables = list(model.variables)
    if getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    size = sum(int(np.prod(v.shape)) * _ITEMSIZE.get(str(v.dtype), 8) for v in variables)
    return int(size * slack) + overhead


def save_model(model, path):
    """``model.save(path)``, atomically, with the model's class names and resize mode
    inside the file.

    Example:

    >>> zoo.save_model(model, "model.keras")                             # doctest: +SKIP
    """
    if not isinstance(model, keras.Model):
        raise UserError(f"save_model saves a keras.Model; received {model!r:.80} "
                        f"({type(model).__name__}).")
    if not isinstance(path, (str, os.PathLike)):
        raise UserError(f"save_model takes the path of a .keras file; received {path!r}.")
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise UserError(f"A model file must end in .keras; received {path!r}.")
    check_writable_file(path)  # a link there is refused: neither replaced nor written through
    check_free_space(path, bytes_to_save(model))
    with atomic_path(path) as tmp:
        model.save(tmp)
        metadata = {key: value for key, value in (
            ("class_names", class_names(model)), ("resize", resize_mode(model)),
            ("input_pixels", input_pixels(model))) if value is not None}
        if metadata:
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(_METADATA, json.dumps(metadata))
    return path


def copy_weights_out(path, weights_path):
    """Write the weights of the ``.keras`` file ``path`` (the optimizer's state with them)
    to ``weights_path``, the file ``model.save_weights(weights_path)`` would have written
    for the model saved there: the archive holds them as that file. Returns False, writing
    nothing, where the archive holds no such entry (a ``.keras`` file of another writer).

    A copy instead of a second save: Keras' save walks every layer and optimizer variable
    (0.6 s for a quarter-width ResNet-18 here, the copy a few milliseconds).

    Example:

    >>> copy_weights_out("runs/r18/checkpoints/last.keras", "last.weights.h5")  # doctest: +SKIP
    True
    """
    with zipfile.ZipFile(path) as archive:
        if _WEIGHTS not in archive.namelist():
            return False
        with archive.open(_WEIGHTS) as source, open(weights_path, "wb") as target:
            shutil.copyfileobj(source, target, 2**20)
    return True


def load_weights(model, path):
    """``model.load_weights(path)``, with a truncated file or another model's weights said
    in one line naming the file (h5py's message names none; Keras' dumps the values).

    Example:

    >>> load_weights(zoo.resnet18(), "runs/r18/snapshots/snapshot-4.weights.h5")  # doctest: +SKIP
    """
    import warnings

    try:
        with warnings.catch_warnings(record=True) as said:  # ("Skipping variable loading
            warnings.simplefilter("always")                 # for optimizer": the mismatch's)
            model.load_weights(path)
    except OSError as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0][:160]
        raise UserError(f"{path} is not a readable .weights.h5 file ({reason}): truncated, "
                        "or not one Keras wrote.") from None
    except ValueError as err:
        # Keras' cause ("variable.shape=(64, 3), Received: value.shape=(64, 10)") follows
        # its first line, which ends in a colon; the values after it are left out.
        cause = " ".join(str(err).split(" Target variable:")[0].split()) or type(err).__name__
        raise UserError(f"{path} does not hold the weights of this {model.name} (built with "
                        f"other arguments?): {cause[:400]}") from None
    stored = _stored_weights(path)
    if stored is not None and stored != len(model.weights):
        # (Keras matches layers by kind and order and passes over the file's others: a
        # deeper network's snapshot loaded into a shallower one without a word)
        raise UserError(f"{path} does not hold the weights of this {model.name} (built with "
                        f"other arguments?): it holds {stored} weight arrays, and the model "
                        f"has {len(model.weights)}.")
    for warning in said:  # a load that worked: Keras' own words (once, as before)
        warnings.warn(warning.message, warning.category, stacklevel=2)


def _stored_weights(path):
    """The number of a model's weight arrays in the ``.weights.h5`` file ``path`` (its
    optimizer's left out), or None for another kind of file."""
    if not os.fspath(path).endswith(".weights.h5"):
        return None
    import h5py

    found = []
    with h5py.File(path, "r") as f:
        for key in f:
            if key != "optimizer" and isinstance(f[key], h5py.Group):
                f[key].visititems(lambda name, item: found.append(1)
                                  if isinstance(item, h5py.Dataset) else None)
    return len(found)


def _read_metadata(path, raw):
    """The class names, the resize mode and the input preprocessing of ``raw``, the
    ``zoo.json`` entry of ``path`` (each None where it holds none; all where it is None)."""
    from data.preprocess import RESIZE_CHOICES

    if raw is None:
        return None, None, None
    try:
        metadata = json.loads(raw)
        names, resize = metadata.get("class_names"), metadata.get("resize")
        pixels = metadata.get("input_pixels")
        if resize not in (None, *RESIZE_CHOICES):
            raise ValueError(f"resize {resize!r:.40}")
        return ((None if names is None else check_class_names(names)), resize,
                None if pixels is None else _checked_pixels(pixels))
    except (ValueError, AttributeError, TypeError) as err:
        raise UserError(f"Cannot load {path}: its {_METADATA} is not this project's "
                        "class names, resize mode and input preprocessing "
                        f"({str(err)[:160] or type(err).__name__}).") from None


# What Keras' loading says of an archive's content: no weights file in it, another
# model's config, or another model's weights (a layer given other variables; Keras wraps
# other errors of a layer's loading, a bug of ours say, in the same "could not be loaded").
_KERAS_FILE_ERRORS = ("Expected a model.weights", "Expected object to be an instance of",
                      "variables, but received", "must match. variable.shape=")


def check_model_file(path):
    """A ``.keras`` file is at ``path``; else one line: no such file, a directory, or an
    entry that is no file (a named pipe given as a model was "no such file")."""
    if not os.path.isfile(path):
        raise UserError(f"Cannot load {path}: " + (
            "it is a directory, not a .keras file." if os.path.isdir(path) else
            "it is not a regular file (a named pipe, a device, or a link to nothing)."
            if os.path.lexists(path) else "no such file."))


def load_model(path, compile=True):
    """``keras.models.load_model`` for zoo models, in a fresh process too.

    A path that is missing, empty, truncated, not a zip archive, without ``config.json``,
    or whose weights cannot be read raises one ``ValueError`` naming the file and what is
    wrong (Keras says "File not found" for a file that exists but is not a zip archive).

    Example:

    >>> model = zoo.load_model("runs/alexnet/checkpoints/best.keras")   # doctest: +SKIP
    """
    import data.layers  # noqa: F401  (registers MeanSubtraction; data imports TensorFlow)
    import zoo

    zoo.load_core()  # (GoogLeNetWithAuxHeads: a trained googlenet's class)

    if not isinstance(path, (str, os.PathLike)):
        raise UserError(f"load_model takes the path of a .keras file; received {path!r}.")
    compile = check_bool(compile, "compile")
    path = os.fspath(path)
    check_model_file(path)
    with open(path, "rb"):  # (zipfile.is_zipfile reads "Permission denied" as "no zip")
        pass
    if not zipfile.is_zipfile(path):
        size = os.path.getsize(path)
        raise UserError(f"Cannot load {path}: not a .keras file (" + (
            "empty" if size == 0 else f"{size:,} bytes that are not a zip archive: truncated "
            "or another format") + ").")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = set(archive.namelist())
            broken = archive.testzip()
            config, metadata = (archive.read(name) if name in entries else None
                                for name in ("config.json", _METADATA))
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:  # its directory, not its end
        raise UserError(f"Cannot load {path}: a damaged zip archive ({err}).") from None
    if broken is not None:
        raise UserError(f"Cannot load {path}: {broken} inside it is corrupt.")
    if config is None:
        raise UserError(f"Cannot load {path}: the archive has no config.json, so it is not "
                        f"a saved Keras model (it holds {sorted(entries)}).")
    try:
        json.loads(config)
    except ValueError as err:  # (Keras' own message names no file)
        raise UserError(f"Cannot load {path}: its config.json is not JSON ({err}).") from None
    names, resize, pixels = _read_metadata(path, metadata)
    try:
        model = keras.models.load_model(path, compile=compile)
    except (OSError, KeyError) as err:  # a damaged weights file inside a valid archive
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"Cannot load {path}: its weights cannot be read ({message}).") from None
    except (TypeError, ValueError) as err:  # Keras: a class it cannot find or rebuild
        if isinstance(err, ValueError) and "deserializ" not in str(err):
            if not any(said in str(err) for said in _KERAS_FILE_ERRORS):
                raise  # (a bug of ours, say: with its traceback)
            said = str(err).split(" Target variable:")[0].split("List of objects")[0]
            raise UserError(f"Cannot load {path}: {' '.join(said.split())[:400]}") from None
        if "ensembles" in str(err):  # e.g. "Could not locate class 'ensembles>CyclicCosine'"
            schedule = "CyclicCosine" in str(err)  # (a snapshot run's, in its optimizer)
            raise UserError(
                f"Cannot load {path} with zoo.load_model: it holds ensemble objects"
                + (" (the snapshot schedule CyclicCosine, in its optimizer)" if schedule
                   else "") + f"; use ensembles.load({path!r})"
                + (", or zoo.load_model(..., compile=False)" if schedule else "")
                + ".") from None
        unknown = [line for line in str(err).splitlines() if "Could not locate" in line
                   or "is not a KerasSaveable subclass" in line]  # (Keras' two wordings)
        if unknown:
            raise UserError(f"Cannot load {path}: it names a class this process does not "
                            f"know ({unknown[-1].strip()[:200]}). Import the code that "
                            "registers it first.") from None
        if "deserializ" in str(err):  # a known class that its config does not rebuild
            said = str(err).split("Exception encountered:")[-1]
            raise UserError(f"Cannot load {path}: Keras could not rebuild a layer from its "
                            f"config ({' '.join(said.split())[:300]}): written by another "
                            "version of the code that defines it?") from err  # (ZOO_DEBUG)
        raise
    if names is not None:
        set_class_names(model, names)
    set_resize_mode(model, resize)
    set_input_pixels(model, pixels)
    if compile and keras.backend.backend() == "jax" and getattr(model, "compiled", False):
        _compiled_as_under_jax(model)
    return model


def _compiled_as_under_jax(model):
    """A model compiled under TensorFlow, as its file records it, compiled as
    ``compile_model`` compiles under JAX: jitted (zoo.train compiles without XLA on
    TensorFlow, and the file says so: under JAX every step ran op by op), and its
    cross-entropy named by string as :class:`zoo.ProbabilityCrossEntropy` (Keras' own, under
    JAX, clips the probabilities at 1e-7: a loss 0.02 lower on the digits, and no gradient
    from the examples below it). The optimizer, and its loaded state, are kept."""
    from zoo.optimizers import backend_loss

    loss = backend_loss(model.loss)
    recorded = model.get_compile_config()  # ({} where a subclass compiled it its own way)
    if loss is model.loss or not recorded:
        if model.jit_compile is False:
            model.jit_compile = True
        return
    # What Keras' compile_from_config does, with the loaded optimizer (a new one would
    # drop its slots) and the loss compile_model gives.
    config = keras.saving.deserialize_keras_object(recorded)
    config.update(optimizer=model.optimizer, loss=loss, jit_compile=True)
    model.compile(**config)
