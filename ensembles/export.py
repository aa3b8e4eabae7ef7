"""Export a whole ensemble as ONE SavedModel that serves probabilities and uncertainty."""

import contextlib
import json
import os
import re
import warnings

import keras
import numpy as np

from ensembles.calibration import temperature
from ensembles.ensemble import (CombineMembers, as_ensemble, combine_layer, members_of,
                                with_member_outputs)
from ensembles.mc_dropout import draws_at_inference, leaf_layers
from safeio import (atomic_directory, atomic_path, check_free_space, check_not_a_link,
                    check_replaceable, check_writable_file, clean_stale, dead_writes,
                    streams, write_json, write_text)
from safeio.checks import (MissingPackage, UserError, check_bool, check_choice,
                           check_positive_int)
from zoo.optimizers import HALF_PRECISION, precision_in
from zoo.saving import bytes_to_save, check_class_names
from zoo.saving import class_names as get_class_names
from zoo.saving import check_square_images, check_takes_images, serving_resize


@keras.saving.register_keras_serializable(package="ensembles")
class EnsembleUncertainty(keras.layers.Layer):
    """The uncertainty of the distribution the ensemble serves, from ``[combined, stacked]``:
    ``combined`` its probabilities ``(batch, classes)`` (from its own combine rule and
    weights), ``stacked`` the member probabilities ``(batch, members, classes)``.

    - predictive entropy: ``H[combined]``, the entropy of the served probabilities;
    - mutual information: ``H[combined] - sum_i w_i H[p_i]`` with the ensemble's normalised
      member ``weights`` (equal when None). For ``mean`` this is the mutual information
      between the prediction and the member (never negative); for the other rules it is the
      same difference, which can fall below 0 when the rule is sharper than the members.
      Given a third input, the combination before a temperature (``ensembles.calibrate``),
      the mutual information is taken from it: the members' disagreement, which a
      temperature does not change, while the entropy is the served probabilities'.

    Example:

    >>> stacked = np.array([[[0.9, 0.1], [0.5, 0.5]]], "float32")  # 1 input, 2 members
    >>> combined = 0.75 * stacked[:, 0] + 0.25 * stacked[:, 1]    # their weighted mean
    >>> entropy, information = EnsembleUncertainty(weights=[0.75, 0.25])([combined, stacked])
    >>> round(float(entropy[0]), 4), round(float(information[0]), 4)
    (0.5004, 0.0833)
    """

    def __init__(self, weights=None, **kwargs):
        super().__init__(**kwargs)
        self.member_weights = None if weights is None else [float(w) for w in weights]

    def call(self, inputs):
        combined, stacked = inputs[:2]
        untempered = inputs[2] if len(inputs) > 2 else combined
        members = stacked.shape[1]
        w = (np.full(members, 1.0 / members) if self.member_weights is None else
             np.asarray(self.member_weights) / np.sum(self.member_weights))
        w = keras.ops.convert_to_tensor(w.reshape(1, members), dtype=stacked.dtype)
        predictive = _entropy(combined)
        expected = keras.ops.sum(w * _entropy(stacked), axis=1)
        return predictive, _entropy(untempered) - expected

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0],), (input_shape[0][0],)

    def get_config(self):
        return {**super().get_config(), "weights": self.member_weights}


def _entropy(p):
    p = keras.ops.clip(p, 1e-12, 1.0)
    return -keras.ops.sum(p * keras.ops.log(p), axis=-1)


def serving_model(ensemble):
    """The ensemble with outputs ``{"probabilities", "predictive_entropy",
    "mutual_information", "finite"}``, sharing its weights. The uncertainty describes the
    served probabilities: the same combine rule and member weights. ``finite`` is False for
    an input that holds a NaN or inf pixel (whose probabilities a network's ReLUs and
    poolings can turn into finite nonsense) or whose probabilities are not finite, so a
    client can tell, per input, which answers not to use. A single classifier is served as a
    one-member ensemble."""
    ensemble = as_ensemble(ensemble)
    members = with_member_outputs(ensemble)
    # Nested under a name of its own: the ensemble's (the demo's is "all") may be an op's.
    model = keras.Model(members.input, members.outputs, name="ensemble_and_members")
    # Called with training=False: without it, a Keras image preprocessing layer in a member
    # (Resizing, whose call defaults to training=True) puts the whole call in training
    # mode, and BatchNormalization then serves batch statistics, not its moving averages.
    images = keras.Input(model.input.shape[1:], dtype=model.input.dtype,
                         name=model.layers[0].name)  # the signature's input name, as before
    combined, stacked = model(images, training=False)
    layer = combine_layer(ensemble)
    weights = layer.member_weights
    parts = [combined, stacked]
    # float32 whatever the global policy, as the ensemble's own layers: under mixed_float16
    # the entropy's floor (1e-12) was 0 and a probability below 3e-8 served 0 log 0 = NaN.
    if layer.temperature != 1.0:  # the disagreement from the members' own combination
        parts.append(CombineMembers(layer.combine, weights, name="untempered",
                                    dtype="float32")(stacked))
    entropy, information = EnsembleUncertainty(weights, name="uncertainty",
                                               dtype="float32")(parts)
    pixel_axes = tuple(range(1, len(images.shape)))  # (any input size: None dimensions)
    finite = keras.ops.logical_and(keras.ops.all(keras.ops.isfinite(images), axis=pixel_axes),
                                   keras.ops.all(keras.ops.isfinite(combined), axis=-1))
    return keras.Model(images, {"probabilities": combined, "predictive_entropy": entropy,
                                "mutual_information": information, "finite": finite},
                       name=f"{ensemble.name}_serving")


TOP_K = 5  # top_classes and top_scores hold min(TOP_K, classes) classes per image
CLASS_NAMES_FILE = "class_names.txt"  # in the export's assets/, one name per line
DESCRIPTION_FILE = "zoo_model.json"  # in assets/: the members, input size, scale, resize


FORMAT_CHOICES = ("saved_model", "onnx", "litert")
FILE_SUFFIXES = {"onnx": ".onnx", "litert": ".tflite"}
FILE_KINDS = {"onnx": "an ONNX", "litert": "a LiteRT"}  # (for people: "a onnx file" read ill)
# The packages of the deploy extra (setup.py) each task needs: Keras' ONNX export converts
# with tf2onnx on TensorFlow (torch.onnx on PyTorch; jax2onnx on JAX, left out of the extra:
# it brings flax, orbax and tensorstore) and writes with onnx.
DEPLOY_PACKAGES = {"onnx export": ("onnx", "tf2onnx"), "onnx runtime": ("onnxruntime", "onnx")}
TOLERANCE = 1e-5  # largest difference allowed between a runtime's probabilities and Keras'


def check_export_options(format, resize=None):
    """Refuse, before any work, a ``format`` or ``resize`` that :func:`export` cannot
    honour, in one line."""
    from data.preprocess import check_resize

    check_choice(format, FORMAT_CHOICES, "format")
    if resize is not None:
        check_resize(resize)
    if format == "litert" and keras.backend.backend() == "jax":
        raise UserError("A LiteRT file is written by Keras' export under TensorFlow (or "
                        "PyTorch), not JAX: export under KERAS_BACKEND=tensorflow (the .keras "
                        "file reads the same there).")
    if resize is not None and format == "litert":
        raise UserError(f"resize={resize!r} does nothing for a LiteRT file, which takes "
                        "images already at the input size and records no resize mode (make "
                        f"them as data.eval_view(image, size, {resize!r}) does): leave it "
                        "out, or export a SavedModel or an ONNX file.")


def check_export_target(path, format, overwrite=False):
    """Refuse, before any work, a ``path`` the export must not replace or cannot be written
    to: a SavedModel's folder (:func:`safeio.check_replaceable`), or the ``.onnx`` /
    ``.tflite`` file and its class names file beside it (:func:`classes_path`), each named."""
    if not isinstance(path, (str, os.PathLike)):
        raise UserError(f"The export's `path` must be a folder or file name; received {path!r}.")
    path = os.fspath(path)
    overwrite = check_bool(overwrite, "overwrite")
    if format == "saved_model":
        for other, suffix in FILE_SUFFIXES.items():
            if path.endswith(suffix):  # (a SavedModel folder named model.onnx, silently)
                raise UserError(f"{path} names a {suffix} file, and the format is a "
                                f"SavedModel folder: give format={other!r} (--format "
                                f"{other}), or a folder name.")
        # (a previous export a killed replacement left aside is put back first, so that
        # it is what overwrite= is asked about)
        clean_stale(*os.path.split(os.path.abspath(path)))
        check_replaceable(os.path.abspath(path), overwrite)
        return
    suffix = FILE_SUFFIXES[format]
    if not path.endswith(suffix):
        raise UserError(f"An export of format={format!r} is {FILE_KINDS[format]} file, "
                        f"named *{suffix}; received {path!r}.")
    _finish_killed_export(path)
    previous = None  # whether path holds a previous export of this project, once asked
    for target in (path, classes_path(path)):
        check_not_a_link(target, "file")
        if os.path.isdir(target):
            raise UserError(f"Cannot export to {target}: a directory is there.")
        if os.path.exists(target) and not overwrite:
            raise UserError(f"{target} already exists; pass overwrite=True (--overwrite) to "
                            "replace it.")
        if os.path.exists(target):  # overwrite=True replaces a previous export, nothing else
            previous = _previous_file_export(path, format) if previous is None else previous
            if not previous:
                what = (f"it is not a previous {format} export of this project" if target
                        == path else f"it is not beside a previous {format} export of this "
                        f"project ({path} is "
                        + ("not one" if os.path.exists(path) else "absent") + ")")
                raise UserError(f"Refusing to replace {target}: {what}, and nothing else is "
                                "replaced. Move it, or export elsewhere.")
        check_writable_file(target)


def _header_pixels(encoded):
    """Width x height that the header of an encoded PNG, GIF, BMP or JPEG gives, in the
    graph and without decoding (``data.folder.header_size``'s reading); for any other
    bytes 2**62, above every cap: TensorFlow's decoder reads WebP too, whose size no header
    read here gives (and which ``data.load`` and ``zoo.predict`` do not read either)."""
    import tensorflow as tf

    head = tf.strings.substr(tf.strings.join([tf.strings.substr(encoded, 0, 26),
                                              tf.constant(b"\0" * 26)]), 0, 26)
    raw = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)

    def number(start, length, little_endian):
        digits = raw[start:start + length]
        digits = tf.reverse(digits, [0]) if little_endian else digits
        return tf.reduce_sum(digits * 256 ** tf.range(length - 1, -1, -1, dtype=tf.int64))

    def signed(value):  # a BMP's height is negative for rows stored top-down
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    magic = tf.strings.substr(encoded, 0, 4)
    png = number(16, 4, False) * number(20, 4, False)
    bmp = signed(number(18, 4, True)) * signed(number(22, 4, True))
    other = tf.where(magic == b"\x89PNG", png, tf.where(
        tf.strings.substr(magic, 0, 2) == b"BM", bmp, tf.constant(2**62, tf.int64)))
    return tf.case([(tf.strings.substr(magic, 0, 3) == b"\xff\xd8\xff",
                     lambda: tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(encoded)[:2],
                                                    tf.int64))),
                    (tf.strings.substr(magic, 0, 3) == b"GIF", lambda: _gif_pixels(encoded))],
                   default=lambda: other, exclusive=True)


# The loop turns (blocks and data sub-blocks) the graph spends on a GIF's header: 17 us
# each, so a file of 1-byte sub-blocks held a server for seconds; past them, the GIF is
# refused as too large (an encoder's 255-byte sub-blocks: 16 MB of image data).
_GIF_TURNS = 2**16


def _gif_pixels(encoded):
    """The pixels decoding a GIF holds, as ``data.folder.decoded_pixels`` counts them, in
    the graph: its frames' own sizes, found by walking its blocks as giflib does (a loop
    turn per block and data sub-block, at most ``_GIF_TURNS``), since its "logical screen"
    may say 10x10 of a 9500x9500 frame, and TensorFlow decodes every frame."""
    import tensorflow as tf

    raw = tf.concat([tf.io.decode_raw(encoded, tf.uint8), tf.zeros([1], tf.uint8)], axis=0)
    end = tf.size(raw, out_type=tf.int64) - 1

    def at(i):  # a byte; past the end, the 0 appended
        return tf.cast(tf.gather(raw, tf.minimum(tf.cast(i, tf.int64), end)), tf.int64)

    def word(i):
        return at(i) + 256 * at(i + 1)

    def colour_table(flags):
        return tf.where(flags >= 128, 3 * 2 ** (flags % 8 + 1), tf.constant(0, tf.int64))

    def past_sub_blocks(i, turns):  # each a length byte and that many bytes; 0 ends them
        i, turns = tf.while_loop(lambda i, turns: (at(i) > 0) & (turns < _GIF_TURNS),
                                 lambda i, turns: (i + at(i) + 1, turns + 1), (i, turns))
        return i + 1, turns

    def extension(i, turns, frames, widest, highest, total):  # its label, its sub-blocks
        after, turns = past_sub_blocks(i + 2, turns)
        after, turns = tf.cond(at(i + 2) == 0,  # (giflib then reads another chain)
                               lambda: past_sub_blocks(after, turns), lambda: (after, turns))
        return after, turns, frames, widest, highest, total

    def image(i, turns, frames, widest, highest, total):  # left, top, width, height, flags
        width, height = word(i + 5), word(i + 7)
        after, turns = past_sub_blocks(i + 10 + colour_table(at(i + 9)) + 1, turns)
        return (after, turns, frames + 1, tf.maximum(widest, width),
                tf.maximum(highest, height), total + width * height)

    zero = tf.constant(0, tf.int64)
    _, turns, frames, widest, highest, total = tf.while_loop(
        lambda i, turns, *_: ((i < end) & (turns < _GIF_TURNS)
                              & ((at(i) == 0x21) | (at(i) == 0x2C))),
        lambda i, turns, *state: tf.cond(at(i) == 0x21,
                                         lambda: extension(i, turns + 1, *state),
                                         lambda: image(i, turns + 1, *state)),
        (13 + colour_table(at(10)), zero, zero, zero, zero, zero))
    screen = word(6) * word(8)  # (cut short before its first frame: what its screen says)
    pixels = tf.where(frames > 0, tf.maximum(widest * highest, total), screen)
    return tf.where(turns >= _GIF_TURNS, tf.constant(2**62, tf.int64), pixels)


def _finish_killed_export(path):
    """An ONNX or LiteRT export killed between its two renames (the model in place, its
    class names file not yet) is finished: the names file, written whole before the model
    landed, takes its place. The model alone was refused as not this project's (a LiteRT
    file records no names), and beside a previous export's names file it served them."""
    directory, name = os.path.split(os.path.abspath(path))
    models = dead_writes(directory, name)  # (a model still there did not land: left alone)
    for pid, names in dead_writes(directory, os.path.basename(classes_path(path))).items():
        if pid not in models and os.path.isfile(path) and os.path.getsize(names):
            os.replace(names, classes_path(path))


def _previous_file_export(path, format):
    """Whether the file ``path`` is an export :func:`export` wrote: an ONNX model with the
    class names in its metadata, or a LiteRT flatbuffer (``TFL3``, which records none) with
    the class names file the export writes beside it (another tool's ``.tflite`` has
    none)."""
    if not os.path.isfile(path):
        return False
    if format == "litert":
        with open(path, "rb") as f:
            return f.read(8)[4:8] == b"TFL3" and os.path.isfile(classes_path(path))
    try:
        import onnx

        model = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 (not ONNX, damaged, or no onnx to read it: not ours)
        return False
    return {"class_names", "members"} <= {entry.key for entry in model.metadata_props}


def export(ensemble, path, overwrite=False, class_names=None, scale=None,
           format="saved_model", resize=None):
    """Write ONE SavedModel (or an ONNX or LiteRT file) for ``ensemble`` (or any
    classifier) at ``path``, atomically.

    With ``format="onnx"`` or ``"litert"``, ``path`` is a ``.onnx`` or ``.tflite`` file
    written by Keras' own ``model.export(format=...)``: one signature, ``serve``'s (float32
    images at the input size in; ``probabilities``, ``predictive_entropy``,
    ``mutual_information`` and ``finite`` out), and the class names beside it in
    ``PATH.classes.txt`` (and, for ONNX, in the model's metadata: ``class_names`` and
    ``members``, JSON lists). Before the file takes its place, the runtime that deploys it
    (ONNX Runtime; the LiteRT interpreter, or TensorFlow's) runs it on a test batch: a file
    whose probabilities differ from Keras' by more than 1e-5 is never written (a
    ``UserError``); where the runtime is not installed the file is written with a warning.

    ``path`` must be new, an empty directory, or (with ``overwrite=True``) a previous
    export of this project holding only what that export wrote, which is replaced in one
    atomic step; nothing else is ever deleted. A file, a directory of other files, an
    export holding files it did not write (``NOTES.md``, ``assets.extra/``: named in the
    message), and a symbolic link (``current -> v3``: never replaced, never written
    through) at ``path`` are a ``ValueError``, and nothing is changed. A fault of the OS
    while writing (a read-only file system, a full disk), TensorFlow's included, is an
    ``OSError`` naming ``path``.

    Three signatures, for plain TensorFlow (no project code) and TensorFlow Serving:

    - ``serve`` (also ``serving_default``): float32 images at the model's input size;
      returns ``probabilities`` (the combined prediction), ``predictive_entropy`` and
      ``mutual_information`` per image, and ``finite``: False where an input holds a NaN
      or inf pixel or gets NaN or inf probabilities.
    - ``serve_images``: uint8 images ``[N, H, W, 3]`` of any size (one size per batch),
      resized in the graph as the model was trained (``resize``; by default the model's
      ``zoo.resize_mode``, else ``"crop"``, and ``data.eval_view`` does the same):
      ``"crop"`` as ``zoo evaluate --center-crop`` loads them (shorter side to
      ``scale``, default ``data.crop_scale(size)``, then the central ``size`` x ``size``
      crop), ``"squash"`` (a model trained on whole images, ``--augment`` without crop)
      as ``zoo evaluate`` loads them: the whole image to ``size`` x ``size``. (An ONNX
      file records the mode in its metadata, for ``zoo.predict``; a LiteRT file takes
      images at the input size and records none, and a ``resize`` for it is refused.)
      Returns ``probabilities``,
      ``top_classes`` (class names, ``[N, k]`` with ``k = min(5, classes)``),
      ``top_scores``, ``entropy``, ``mutual_information`` and ``finite``.
    - ``serve_bytes``: encoded JPEG/PNG/BMP/GIF strings ``[N]`` (of any sizes), decoded as
      ``data.load`` decodes image folders; then as ``serve_images``, and ``decoded``: a
      file that cannot be decoded or resized, or whose header gives more pixels than
      ``data.folder.MAX_PIXELS`` (not decoded), is False there, its numbers NaN, its class
      names empty and ``finite`` False, and the rest of the batch is served.

    ``class_names`` (default ``zoo.class_names(ensemble)``, else ``"0"``, ``"1"``, ...) are
    in the graph and in ``assets/class_names.txt``; ``assets/zoo_model.json`` names the
    members, the input size, the scale, the ``resize`` view and the temperatures
    (``ensembles.calibrate``'s: the served probabilities and their entropy are the calibrated
    ones; the mutual information is the members' disagreement, taken before the ensemble's
    temperature).

    Example:

    >>> served = tf.saved_model.load(path)                      # doctest: +SKIP
    >>> served.serve_bytes(tf.constant([jpeg_bytes]))["top_classes"]   # doctest: +SKIP
    """
    import tensorflow as tf

    from data.preprocess import eval_view
    from data.tta import crop_scale

    explicit = resize is not None

    check_export_options(format, resize)
    if scale is not None and format != "saved_model":
        raise UserError(f"scale={scale} is the shorter side a SavedModel's graph resizes "
                        f"images to before its centre crop; {FILE_KINDS[format]} file takes images "
                        "already at the input size (zoo.predict makes them at "
                        "data.crop_scale(size)): leave it out, or export a SavedModel.")
    check_export_target(path, format, overwrite)  # before any work
    ensemble = as_ensemble(ensemble)
    check_takes_images(ensemble, "an export")
    resize = serving_resize(ensemble, resize)
    if resize == "squash" and scale is not None:
        raise UserError(f"scale={scale} is the shorter side the centre crop is taken from; "
                        f"{ensemble.name} is exported with resize='squash' (the whole image"
                        f"{'' if explicit else ', as it was trained'}), which takes no crop.")
    check_square_images(ensemble, "Exporting")
    serving = serving_model(ensemble)
    height = width = serving.input.shape[1]  # (square)
    classes = serving.output["probabilities"].shape[-1]
    names = class_names if class_names is not None else (  # ([] is refused, an array read)
        get_class_names(ensemble) or [str(i) for i in range(classes)])
    names = list(check_class_names(names, one_line=True))  # (class_names.txt: one a line)
    if len(names) != classes:
        raise UserError(f"{ensemble.name} predicts {classes} classes, but {len(names)} class "
                        f"names were given.")
    if resize == "crop":
        scale = crop_scale(height) if scale is None else check_positive_int(scale, "scale")
        if scale < height:
            raise UserError(f"`scale` must be at least the input size {height}; received "
                            f"{scale}.")
    if format != "saved_model":
        found = precision_in(ensemble, HALF_PRECISION + ("float64",))
        if found:
            model, dtype = found
            where = model if model == ensemble.name else f"{ensemble.name}'s {model}"
            why = ("(ONNX Runtime has no float64 Conv; LiteRT's interpreter lacks the ops)"
                   if dtype == "float64" else "faithfully (ONNX Runtime's float16 differed "
                   "from Keras' by 7e-4; LiteRT's interpreter lacks the ops)")
            raise UserError(
                f"{where} computes in {dtype}"
                + (" (trained with mixed precision)" if dtype in HALF_PRECISION else "")
                + f", which {FILE_KINDS[format]} file does not serve {why}: export it as a "
                "SavedModel (format='saved_model'; from the shell, zoo export without "
                "--format), or rebuild it in float32 and load its weights.")
        if draws_at_inference(ensemble):
            raise UserError(
                f"{ensemble.name} draws random dropout masks at inference (MC dropout), so "
                f"its {format} file could not be checked against Keras' numbers, and "
                f"{format} runtimes do not promise the random ops: export it as a "
                "SavedModel (format='saved_model'; from the shell, zoo export without "
                "--format).")
        members = members_of(ensemble)
        return _export_file(serving, os.fspath(path), format, names, overwrite,
                            {"class_names": names, "members": [m.name for m in members],
                             "resize": resize})  # (a LiteRT file records none)

    archive = keras.export.ExportArchive()
    # Under JAX, jax2tf's default gradient registration is of no use once the export is
    # reloaded ("Will likely fail if a gradient is requested", TensorFlow warns at every
    # load of it): a server needs none.
    gradients = ({"jax2tf_kwargs": {"with_gradient": False}}
                 if keras.backend.backend() == "jax" else {})
    if keras.backend.backend() == "tensorflow":
        serve = _size_checked_endpoint(archive, serving, height, width)
    else:  # (JAX's compiled module refuses another size: "dimension sizes must match")
        serve = archive.track_and_add_endpoint(
            "serve", serving, input_signature=[keras.InputSpec(
                shape=(None, height, width, 3), dtype=serving.input.dtype,
                name=serving.input.name)], **gradients)
    lookup = tf.constant(names)
    k = min(TOP_K, classes)

    def described(images):  # float32 [N, height, width, 3] -> the named outputs
        # Never an empty batch for the model (TensorFlow's oneDNN BatchNorm and a JAX
        # export refuse one): one blank image stands in, and its row is dropped.
        count = tf.shape(images)[0]
        out = serve(tf.cond(count > 0, lambda: images,
                            lambda: tf.zeros((1, height, width, 3), images.dtype)))
        out = {key: value[:count] for key, value in out.items()}
        top = tf.math.top_k(out["probabilities"], k=k)
        return {"probabilities": out["probabilities"],
                "top_classes": tf.gather(lookup, top.indices), "top_scores": top.values,
                "entropy": out["predictive_entropy"],
                "mutual_information": out["mutual_information"], "finite": out["finite"]}

    def resized(images):  # float32 [N, H, W, 3] -> [N, height, width, 3], as evaluated
        crops = eval_view(images, height, resize, scale)
        return tf.ensure_shape(crops, (None, height, width, 3))

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8,
                                                name="images")])
    def serve_images(images):
        return described(resized(tf.cast(images, tf.float32)))

    from data import folder  # (here: importing ensembles imports no data code)

    max_pixels = folder.MAX_PIXELS

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name="images")])
    def serve_bytes(images):
        # A file that does not decode (truncated, not an image) is flagged in its row
        # (decoded False, NaN numbers, no class names), and the others are served: tf.data's
        # ignore_errors drops it, where a failed decode would fail the whole batch.
        count = tf.shape(images)[0]

        def one(index, encoded):
            # A small file of huge dimensions (a 120 KB PNG of 10000x10000) is refused
            # before it is decoded, as data.load and zoo.predict refuse it.
            fits = tf.debugging.assert_less_equal(
                _header_pixels(encoded), tf.constant(max_pixels, tf.int64),
                message="image too large to decode")
            # A BMP that TensorFlow decodes wrongly without a word (a colour palette, read
            # as grey indices; colour masks in another order, red and blue swapped), as
            # data.load and zoo.predict refuse it.
            right = tf.debugging.Assert(tf.logical_not(folder.bmp_misread(encoded)),
                                        ["a BMP that TensorFlow decodes wrongly"])
            with tf.control_dependencies([fits, right]):
                image = folder.decode_image(encoded)  # (a JPEG as PIL decodes it)
            return index, resized(tf.cast(image, tf.float32)[tf.newaxis])[0]

        decoded = tf.data.Dataset.from_tensor_slices((tf.range(count), images)).map(
            one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)  # rows travel
        decoded = decoded.ignore_errors().batch(tf.cast(tf.maximum(count, 1), tf.int64))
        nothing = tf.data.Dataset.from_tensors((tf.zeros((0,), tf.int32),
                                                tf.zeros((0, height, width, 3))))
        indices, batch = decoded.concatenate(nothing).take(1).get_single_element()
        rows = indices[:, tf.newaxis]

        def scattered(values, fill):  # [decoded, ...] -> [count, ...], ``fill`` elsewhere
            shape = tf.concat([[count], tf.shape(values)[1:]], axis=0)
            fill = tf.constant(fill, values.dtype)  # float16/bfloat16 under mixed precision
            return tf.tensor_scatter_nd_update(tf.fill(shape, fill), rows, values)

        served = described(batch)  # (of no image where none decoded)
        fills = {"top_classes": "", "finite": False}
        out = {key: scattered(value[:tf.size(indices)], fills.get(key, float("nan")))
               for key, value in served.items()}
        out["decoded"] = scattered(tf.ones_like(indices, tf.bool), False)
        return out

    for endpoint in (serve_images, serve_bytes):
        endpoint.get_concrete_function()  # traced: ExportArchive takes it as it is
        archive.add_endpoint(endpoint.__name__, endpoint)
    check_free_space(path, bytes_to_save(ensemble))  # the weights, and the graph's slack
    with atomic_directory(path, overwrite=overwrite) as tmp:
        archive.write_out(tmp, verbose=False)
        os.makedirs(os.path.join(tmp, "assets"), exist_ok=True)
        write_text(os.path.join(tmp, "assets", CLASS_NAMES_FILE), "\n".join(names) + "\n")
        members = members_of(ensemble)
        write_json(os.path.join(tmp, "assets", DESCRIPTION_FILE), {
            "members": [m.name for m in members], "classes": classes, "input_size": height,
            "scale": scale, "resize": resize, "top_k": k,
            "signatures": ["serve", "serve_images", "serve_bytes"],
            "temperature": temperature(ensemble),
            "member_temperatures": [temperature(m) for m in members]})
    return path


def _size_checked_endpoint(archive, serving, height, width):
    """The ``serve`` endpoint under TensorFlow: the serving model, after a check of the
    images' size. A signature called through the SavedModel loader
    (``signatures["serve"]``, TF Serving's ``serving_default``) does not hold its input to
    its own shape: a global-pooling network served images of another size confident
    probabilities, an AlexNet failed with 'Graph execution error'."""
    import tensorflow as tf

    archive.track(serving)

    @tf.function(input_signature=[tf.TensorSpec((None, height, width, 3), serving.input.dtype,
                                                name=serving.input.name)], autograph=False)
    def serve(images):
        size = tf.debugging.Assert(
            tf.reduce_all(tf.equal(tf.shape(images)[1:], [height, width, 3])),
            [f"serve takes images of {height}x{width}x3 (serve_images and serve_bytes take "
             "any size, resized as evaluated); received images of shape", tf.shape(images)],
            summarize=4)
        with tf.control_dependencies([size]):
            return serving(tf.identity(images))

    serve.get_concrete_function()  # (traced: ExportArchive takes it as it is)
    archive.add_endpoint("serve", serve)
    return serve


# What the LiteRT converter and interpreter print to stderr at every export: two options it
# ignores, the CPU delegate it made. Nothing a user could act on; other lines still show.
_LITERT_NOISE = re.compile(
    r"^[IWE]\d{4} [\d:.]+\s+\d+ tf_tfl_flatbuffer_helpers\.cc:\d+\] Ignored "
    r"(output_format|drop_control_dependency)\.$"
    r"|^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$")


def _without_litert_noise():
    return streams.descriptor_filtered(lambda line: bool(_LITERT_NOISE.match(line)))


def _export_file(serving, path, format, names, overwrite, metadata):
    """``serving.export(path, format=format)``, checked in the runtime before it lands."""
    check_export_target(path, format, overwrite)  # (again: the work took a while)
    if format == "onnx":
        check_deploy_packages("onnx export")
    batch = np.random.default_rng(0).uniform(0, 255, (3,) + tuple(serving.input.shape[1:]))
    batch = batch.astype(serving.input.dtype)
    expected = serving.predict(batch, verbose=0)
    serving(batch[:1])  # Keras' ONNX export needs a called model (JAX's predict does not call)
    with atomic_path(classes_path(path)) as names_tmp:
        with atomic_path(path) as tmp:
            with _without_litert_noise(), _normalization_as_constants(serving), \
                    warnings.catch_warnings():
                # Keras' tf2onnx module asks NumPy for np.object, which warns on import: a
                # line about Keras' code in every export, nothing the user could act on.
                warnings.filterwarnings("ignore", r"In the future `np\.object`", FutureWarning)
                serving.export(tmp, format=format, verbose=False)
            if format == "onnx":
                _finish_onnx(tmp, {k: json.dumps(v) for k, v in metadata.items()},
                             serving.name)
            try:
                with _without_litert_noise():
                    served = runtime(tmp)(batch)
            except ImportError as err:
                warnings.warn(f"{path} was written but not checked: {err}.", stacklevel=3)
            else:
                worst = float(np.max(np.abs(served["probabilities"]
                                            - expected["probabilities"])))
                if not worst <= TOLERANCE:
                    raise UserError(
                        f"Not written: {serving.name} in {format} serves probabilities that "
                        f"differ from Keras' by up to {worst:.2g} (allowed: {TOLERANCE:g}); a "
                        "layer of it does not convert faithfully. Export it as a SavedModel "
                        "instead.")
            # Written before the model lands, renamed into place right after it: a names
            # file that cannot be written leaves the previous export whole, and no long
            # write (the model's flush) lies between the two renames.
            with open(names_tmp, "w", encoding="utf-8") as f:
                f.write("\n".join(names) + "\n")
    return path


@contextlib.contextmanager
def _normalization_as_constants(model):
    """Keras' ``Normalization`` given its mean and variance (``data.normalized_input``'s
    default) holds them as eager tensors, which the traced function captures: tf2onnx then
    makes each an input of the ONNX graph, which the runtime cannot be run without. As
    NumPy arrays they are written into the graph as constants instead (the same numbers)."""
    fixed = [layer for layer in leaf_layers(model)  # (given its statistics, or adapted)
             if isinstance(layer, keras.layers.Normalization)
             and getattr(layer, "mean", None) is not None]
    held = [(layer.mean, layer.variance) for layer in fixed]
    for layer in fixed:
        layer.mean = keras.ops.convert_to_numpy(layer.mean)
        layer.variance = keras.ops.convert_to_numpy(layer.variance)
    try:
        yield
    finally:
        for layer, (mean, variance) in zip(fixed, held):
            layer.mean, layer.variance = mean, variance


def check_deploy_packages(task):
    """A one-line :class:`UserError` naming the missing package and the extra that installs
    it, where a package ``task`` (a key of :data:`DEPLOY_PACKAGES`) needs is not installed.

    Example:

    >>> check_deploy_packages("onnx runtime")  # with the deploy extra installed: nothing
    """
    import importlib.util

    packages = DEPLOY_PACKAGES[task]
    if task == "onnx export" and keras.backend.backend() == "torch":  # torch.onnx converts
        packages = ("onnx",)
    if task == "onnx export" and keras.backend.backend() == "jax":
        packages = ("onnx", "jax2onnx")
        if importlib.util.find_spec("jax2onnx") is None:
            raise UserError(
                "The onnx export under KERAS_BACKEND=jax needs jax2onnx (Keras converts JAX "
                "models with it), not installed here: pip install jax2onnx, or export under "
                "KERAS_BACKEND=tensorflow with the deploy extra.")
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise UserError(
            f"The {task} needs {', '.join(missing)}, not installed here: install the deploy "
            "extra (pip install 'keras-zoo-ensembles[deploy]', or from a clone pip install "
            "-e '.[deploy]').")


def classes_path(path):
    """Where the class names of an ONNX or LiteRT export lie: ``model.onnx`` ->
    ``model.onnx.classes.txt``."""
    return os.fspath(path) + ".classes.txt"


def _finish_onnx(path, metadata, name):
    """Add ``metadata`` to the ONNX file at ``path`` (read once), once its graph is checked
    to take the images alone: a tensor the model's graph captured from outside it (an
    array made a tensor in a functional model) became an input of its own, which no runtime
    fills (ONNX Runtime's traceback, at the check)."""
    import onnx

    model = onnx.load(path)
    constants = {tensor.name for tensor in model.graph.initializer}
    extra = [value.name for value in model.graph.input if value.name not in constants][1:]
    if extra:
        raise UserError(
            f"Not written: {name} in onnx takes {len(extra)} more input(s) than its images "
            f"({', '.join(extra)}): tensors its graph holds from outside any layer (an array "
            "made a tensor in a functional model) become inputs of an ONNX graph, which a "
            "runtime cannot fill. Hold them in a layer's weights (keras.layers.Normalization"
            "(mean=..., variance=...) for a normalisation), or export it as a SavedModel.")
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)


def runtime(path):
    """A function ``images -> {output name: array}`` that runs an ONNX (``.onnx``, with ONNX
    Runtime) or LiteRT (``.tflite``, with ``ai-edge-litert``'s interpreter, else
    TensorFlow's) export, as a deployment runs it; ``ImportError`` where the runtime is
    not installed.

    Example:

    >>> run = runtime("served.onnx")                                    # doctest: +SKIP
    >>> run(images)["probabilities"].shape                              # doctest: +SKIP
    (8, 10)
    """
    path = os.fspath(path)
    if path.endswith(".onnx"):
        try:
            import onnxruntime
        except ImportError:
            raise MissingPackage("ONNX Runtime is not installed (pip install "
                                 "onnxruntime)") from None
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        (name,) = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        return lambda images: dict(zip(outputs, session.run(None, {name: images})))
    if path.endswith(".tflite"):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        # All cores, as ONNX Runtime and TensorFlow use (LiteRT's default is one thread).
        runner = Interpreter(model_path=path, num_threads=os.cpu_count()).get_signature_runner()
        (name,) = runner.get_input_details()
        return lambda images: runner(**{name: images})
    raise UserError(f"A runtime export is a .onnx or .tflite file; received {path!r}.")
