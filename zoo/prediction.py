"""``zoo.predict``: classify image files by class name, from a ``.keras`` model or ensemble,
an export folder or an ONNX export, as the model was trained to see them.

Each image is decoded as ``data.load`` decodes image folders, its shorter side resized to
``data.crop_scale(size)`` and its central ``size`` x ``size`` crop kept (or, for a model
trained on whole images, ``zoo.resize_mode(model) == "squash"`` or ``resize="squash"``,
the whole image resized to ``size`` x ``size``), which is also what
an export's ``serve_images`` and ``serve_bytes`` do in their graph: the same image gives
the same numbers from the ``.keras`` file and from its export.
"""

import json
import os
import warnings

import numpy as np
import pandas as pd

from safeio import natural_key
from safeio.checks import UserError, check_positive_int

def image_paths(sources):
    """The image files among ``sources`` (files, and folders searched recursively, each
    folder's files in natural order); a source that does not exist is a ``UserError``. A
    folder's images of formats this project does not read (TIFF, WebP, ...) are named in a
    warning, as ``data.load`` names them."""
    from data.folder import IMAGE_EXTENSIONS, OTHER_IMAGE_EXTENSIONS, _first

    paths, unread = [], []
    kind = getattr(getattr(sources, "dtype", None), "kind", "U")  # (paths: NumPy's str, object)
    if hasattr(sources, "element_spec") or hasattr(sources, "shape") and (
            kind not in "UO" or len(sources.shape) != 1):  # images: arrays, tensors, datasets
        raise UserError(f"zoo.predict classifies image files and folders (their paths); "
                        f"received {type(sources).__name__} of shape "
                        f"{tuple(getattr(sources, 'shape', ()))}: for images in memory, use "
                        "model.predict (of inputs as the model takes them).")
    if isinstance(sources, bytes):  # a path as bytes (os.fsencode's): not its characters
        sources = os.fsdecode(sources)
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    elif not hasattr(sources, "__iter__"):  # a PIL image, a number, None
        raise UserError(f"zoo.predict takes image file and folder paths (one, or a list of "
                        f"them); received {sources!r:.80} ({type(sources).__name__}): for "
                        "images in memory, use model.predict (of inputs as the model takes "
                        "them).")
    for source in sources:
        if not isinstance(source, (str, os.PathLike)):
            raise UserError(f"zoo.predict takes image file and folder paths; received "
                            f"{source!r:.80} ({type(source).__name__}).")
        source = os.fspath(source)
        if os.path.isdir(source):
            files, others = _files_below(source)
            found = [path for path in files if path.lower().endswith(IMAGE_EXTENSIONS)]
            missing = [path for path in others if path.lower().endswith(IMAGE_EXTENSIONS)]
            for path in missing:  # named, never opened (they were left out without a word)
                warnings.warn(f"Skipped {path}: {_not_a_file(path)}.", stacklevel=2)
            unread += [path for path in files if path.lower().endswith(OTHER_IMAGE_EXTENSIONS)]
            if not found:
                raise UserError(f"No images in {source} (looked for "
                                f"{', '.join(IMAGE_EXTENSIONS)} files, in sub-folders too)"
                                + (f"; {len(missing)} are no files: {missing[0]}: "
                                   f"{_not_a_file(missing[0])}" if missing else "") + ".")
            paths.extend(sorted(found, key=natural_key))
        elif os.path.isfile(source):
            paths.append(source)
        elif os.path.lexists(source):  # a broken link, a named pipe: named, never opened
            warnings.warn(f"Skipped {source}: {_not_a_file(source)}.", stacklevel=2)
        else:
            raise UserError(f"No such image or folder: {source}.")
    if unread:
        warnings.warn(f"Skipped {len(unread)} image file(s) of formats TensorFlow does not "
                      f"decode (only JPEG, PNG, GIF and BMP are read): {_first(unread)}",
                      stacklevel=2)
    return paths


def _files_below(folder):
    """``(files, others)``: the regular files below ``folder``, and the other entries that
    are no folders (broken links, named pipes: opening a pipe named x.png would wait
    forever), through links to folders as ``data.load`` follows them, each real folder
    once (a link to an ancestor is no loop); hidden folders (``.ipynb_checkpoints``) and
    files (macOS' ``._x.jpg``) left out, as ``data.load`` leaves them."""
    seen, files, others = set(), [], []
    for root, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            if name.startswith("."):  # (macOS' ._x.jpg, .DS_Store: data.load passes over)
                continue
            path = os.path.join(root, name)
            (files if os.path.isfile(path) else others).append(path)
    return files, others


def _not_a_file(path):
    """What ``path``, which exists as an entry but is no file, is, in words."""
    if os.path.islink(path) and not os.path.exists(path):
        return (f"a broken link (to {os.readlink(path)}, which is not there: a git-annex or "
                "DVC file not fetched?)")
    return "not a regular file (a named pipe or a device: never opened)"


class _KerasSource:
    """A Keras classifier or ensemble, served through ``ensembles.serving_model``."""

    def __init__(self, model, resize):
        self.resize = resize
        import ensembles
        from zoo.saving import class_names

        given = ensembles.is_ensemble(model)
        self.is_ensemble = given and len(ensembles.members_of(model)) > 1
        ensemble = ensembles.as_ensemble(model)
        self.serving = ensembles.serving_model(ensemble)
        self.size = self.serving.input.shape[1]  # (square: checked by _source)
        classes = self.serving.output["probabilities"].shape[-1]
        self.names = class_names(model) or [str(i) for i in range(classes)]

    def __call__(self, encoded):
        out = self.serving.predict(np.stack([_view(e, self.size, self.resize)
                                             for e in encoded]), verbose=0)
        return {"probabilities": out["probabilities"], "entropy": out["predictive_entropy"],
                "mutual_information": out["mutual_information"], "finite": out["finite"]}


def _read_description(path):
    """An export's ``assets/zoo_model.json`` (an OSError names it)."""
    with open(path, encoding="utf-8") as f:
        try:
            described = json.load(f)
        except ValueError as err:  # not JSON, or not UTF-8
            raise UserError(f"{path} is damaged ({type(err).__name__}: {err}); export the "
                            "model again.") from None
    if not isinstance(described, dict):
        raise UserError(f"{path} is damaged (a JSON {type(described).__name__}, where the "
                        "export writes an object); export the model again.")
    return described


class _ExportSource:
    """An export folder of this project, through its ``serve_bytes`` signature."""

    def __init__(self, path, resize):
        import tensorflow as tf

        description = os.path.join(path, "assets", "zoo_model.json")
        # (exports made before it was written: crop, and members unknown)
        described = _read_description(description) if os.path.isfile(description) else {}
        self._check_resize(path, described, resize)  # the view asked for, before the load
        try:
            self.served = tf.saved_model.load(path)
        except (ValueError, IndexError, tf.errors.OpError, OSError) as err:
            if isinstance(err, OSError) and err.filename is not None:
                raise  # an OS fault, which names its file
            # (TensorFlow's "Cannot parse file b'.../saved_model.pb'" and a missing
            # variables/ folder are OSErrors that name no file.)
            reason = " ".join(str(err).split())[:160]
            raise UserError(f"Cannot load the export {path}: it is damaged or incomplete "
                            f"({type(err).__name__}: {reason}). Export the model again.") from None
        if not hasattr(self.served, "serve_bytes"):
            from safeio import MARKER

            made_here = os.path.isfile(os.path.join(path, MARKER))
            raise UserError(
                f"{path} has no serve_bytes signature: " + (
                    "it was exported before zoo export served raw images. Export the model "
                    "again." if made_here else
                    f"it is a SavedModel that zoo export did not write (no {MARKER}), which "
                    "takes no image files. Export the .keras model with zoo export (or "
                    "ensembles.export), or predict with the .keras file."))
        names_file = os.path.join(path, "assets", "class_names.txt")
        with open(names_file, encoding="utf-8") as f:
            self.names = f.read().splitlines()
        self.classes = described.get("classes")
        self.names_file = names_file
        self._check_names(self.classes)
        self.is_ensemble = len(described.get("members", ())) > 1

    @staticmethod
    def _check_resize(path, description, resize):
        own = description.get("resize", "crop")  # (exports before it: all crop)
        if resize not in (None, own):
            raise UserError(f"The export {path} resizes images in its graph by {own!r}; "
                            f"received resize={resize!r}. Export the model again with "
                            f"resize={resize!r} (zoo export --resize {resize}).")

    def _check_names(self, classes):
        """Refuse a class_names.txt of another length than the model's classes: the table
        named some classes wrong, or none (an IndexError)."""
        if classes is not None and classes != len(self.names):
            raise UserError(f"{self.names_file} is damaged: {len(self.names)} class names for "
                            f"a model of {classes} classes. Export the model again.")

    def __call__(self, encoded):
        import tensorflow as tf

        out = self.served.serve_bytes(tf.constant(encoded))
        self._check_names(out["probabilities"].shape[-1])
        return {k: out[k].numpy() for k in ("probabilities", "entropy", "mutual_information",
                                             "finite")}


class _OnnxSource:
    """An ONNX export of this project, through ONNX Runtime: images are decoded, resized and
    cropped here, as for a Keras model."""

    def __init__(self, path, resize):
        from ensembles.export import check_deploy_packages, runtime

        self.resize = resize
        check_deploy_packages("onnx runtime")
        import onnxruntime
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        try:
            meta = onnxruntime.InferenceSession(
                path, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
        except (ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.Fail,
                ort_errors.InvalidArgument) as err:  # (an empty file: "No graph was found")
            raise UserError(f"{path} is not an ONNX model ONNX Runtime can load "
                            f"({type(err).__name__}); export it again with zoo export "
                            "--format onnx.") from None
        if "class_names" not in meta:
            raise UserError(f"{path} was not exported by zoo export (its metadata has no "
                            "class names).")
        try:
            self.names = json.loads(meta["class_names"])
            self.is_ensemble = len(json.loads(meta.get("members", "[]"))) > 1
            own = json.loads(meta.get("resize", '"crop"'))  # (before it was recorded: crop)
        except ValueError as err:
            raise UserError(f"{path}'s metadata is damaged ({err}); export it again with zoo "
                            "export --format onnx.") from None
        if resize not in (None, own):  # (as a SavedModel's: an export keeps its view)
            raise UserError(f"The export {path} was exported for the view resize={own!r}; "
                            f"received resize={resize!r}. Export the model again with "
                            f"resize={resize!r} (zoo export --format onnx --resize {resize}).")
        self.resize = own
        self.run = runtime(path)
        self.size = _onnx_input_size(path)

    def __call__(self, encoded):
        out = self.run(np.stack([_view(e, self.size, self.resize) for e in encoded]))
        return {"probabilities": out["probabilities"], "entropy": out["predictive_entropy"],
                "mutual_information": out["mutual_information"], "finite": out["finite"]}


def _onnx_input_size(path):
    import onnx

    (value,) = onnx.load(path, load_external_data=False).graph.input
    return value.type.tensor_type.shape.dim[1].dim_value


def _view(encoded, size, resize="crop"):
    """One encoded image as ``zoo evaluate --center-crop`` sees it (``resize="crop"``) or
    ``zoo evaluate`` (``"squash"``): float32, size x size."""
    from data.preprocess import eval_view

    return np.asarray(eval_view(_decode(encoded), size, resize))


def _decode(encoded):
    import tensorflow as tf

    from data.folder import decode_image

    return tf.cast(decode_image(encoded), tf.float32)


def _readable(path):
    """The file's bytes if it is an image TensorFlow decodes, else None and a one-line
    warning naming it and what is wrong (the checks ``data.load`` makes of image folders)."""
    from data.folder import decode_problem, image_problem

    problem = image_problem(path)
    if problem is None:
        try:
            with open(path, "rb") as f:
                encoded = f.read()
        except OSError as err:
            problem = f"unreadable ({err.strerror or err})"
        else:
            problem = decode_problem(encoded)
            if problem is None:
                return encoded
    warnings.warn(f"Skipped {path}: {problem}.", stacklevel=3)
    return None


def _source(model, resize):
    """What to predict with; ``resize`` None: the view an export (a folder or a .onnx file)
    was made for, or a model trained for (``zoo.resize_mode``), else ``"crop"``."""
    from data.preprocess import check_resize
    from zoo.saving import check_square_images, check_takes_images, serving_resize

    if resize is not None:
        check_resize(resize)
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if os.path.isdir(path):
            if not os.path.isfile(os.path.join(path, "saved_model.pb")):
                raise UserError(f"{path} is a folder but not an export (no saved_model.pb).")
            return _ExportSource(path, resize)
        if os.path.lexists(path) and not os.path.isfile(path):
            raise UserError(f"{path} is no model file or export folder: {_not_a_file(path)}.")
        if not os.path.isfile(path):
            raise UserError(f"No such model file or export folder: {path}.")
        if path.endswith(".onnx"):
            return _OnnxSource(path, resize)
        if not path.endswith(".keras"):
            raise UserError(f"A model to predict with must be a .keras file, an export folder "
                            f"or a .onnx file; received {path!r}.")
        import ensembles

        model, name = ensembles.load(path, compile=False), path  # (inference: no optimizer)
    else:
        name = model.name
    check_takes_images(model, "zoo.predict")
    check_square_images(model, "zoo.predict")  # (decoded as RGB: one channel was Keras')
    _warn_no_view(model, resize, name)
    return _KerasSource(model, serving_resize(model, resize))


class NoViewWarning(UserWarning):
    """A model that records no view was centre-cropped by default."""


def _warn_no_view(model, resize, name):
    """A warning where ``model`` records no view and none is given: it is centre-cropped,
    where ``zoo evaluate`` would have scored it on whole images."""
    from zoo.saving import resize_mode

    if resize is None and resize_mode(model) is None:
        warnings.warn(f"{name} records no view (zoo.set_resize_mode); its images are "
                      "centre-cropped (resize='crop'), where zoo evaluate scores such a model "
                      "on whole images: give resize='squash' for a model trained on them.",
                      NoViewWarning, stacklevel=4)


def predict(model, images, top=5, batch_size=32, verbose=0, resize=None):
    """Classify ``images`` with ``model``; returns one row per image, a DataFrame.

    Args:
        model: a Keras classifier or ensemble, a ``.keras`` file, an export folder (its
            ``serve_bytes``), or a ``.onnx`` export (through ONNX Runtime).
        images: image files and folders (searched recursively).
        top: how many classes per image (at most the number of classes).
        batch_size: images per forward pass.
        verbose: 1 shows a progress bar.
        resize: how each image becomes the input: ``"crop"`` (as ``zoo evaluate
            --center-crop``, for models trained with random crops) or ``"squash"`` (the
            whole image to the input size, as ``zoo evaluate`` and
            ``data.load(image_size=)``, for models trained on whole images). None: as the
            model was trained (``zoo.resize_mode``, which ``zoo train`` records), else
            ``"crop"``; an export resizes in its graph as it was exported.

    Columns: ``image``, then ``class_1``, ``probability_1``, ... ``class_k``,
    ``probability_k`` (best first), ``entropy`` (of the served probabilities), and for an
    ensemble ``mutual_information`` (the members' disagreement); ``finite`` is False where
    the probabilities are not finite. An image that cannot be read or decoded is skipped
    with a one-line warning naming it.

    Example:

    >>> table = zoo.predict("runs/ensemble.keras", ["photos/"])          # doctest: +SKIP
    >>> table[["image", "class_1", "probability_1"]]                     # doctest: +SKIP
    """
    import keras

    check_positive_int(top, "top")
    check_positive_int(batch_size, "batch_size")
    source = _source(model, resize)
    top = min(top, len(source.names))
    paths = image_paths(images)
    progress = keras.utils.Progbar(len(paths), unit_name="image") if verbose else None
    rows = []
    for start in range(0, len(paths), batch_size):
        chunk = [(p, _readable(p)) for p in paths[start:start + batch_size]]
        chunk = [(p, e) for p, e in chunk if e is not None]
        if chunk:
            out = source([e for _, e in chunk])
            for i, (path, _) in enumerate(chunk):
                rows.append(_row(path, out, i, source, top))
        if progress is not None:
            progress.add(min(batch_size, len(paths) - start))
    columns = ["image"] + [c for k in range(1, top + 1) for c in (f"class_{k}",
                                                                    f"probability_{k}")]
    columns += ["entropy"] + (["mutual_information"] if source.is_ensemble else []) + ["finite"]
    return pd.DataFrame(rows, columns=columns)


def _row(path, out, i, source, top):
    probabilities = np.asarray(out["probabilities"][i], dtype="float64")
    order = np.argsort(-probabilities, kind="stable")[:top]
    # A name that is not UTF-8 (b"caf\xe9.png" from a Latin-1 disk) is shown escaped: its
    # lone surrogates failed the table (pandas 3) or its printing and CSV (pandas 2).
    row = {"image": os.fsencode(path).decode("utf-8", "backslashreplace")}
    for k, index in enumerate(order, start=1):
        row[f"class_{k}"] = source.names[index]
        row[f"probability_{k}"] = float(probabilities[index])
    row["entropy"] = float(out["entropy"][i])
    row["mutual_information"] = float(out["mutual_information"][i])
    row["finite"] = bool(out["finite"][i])
    return row
