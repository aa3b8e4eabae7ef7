"""What the ``zoo`` commands share: their flags and choices (copied here, so that no
``--help`` imports Keras or TensorFlow), the models they load and the checks that those fit
a dataset, and the tables they write."""

import ast
import os
import re
import zipfile

import zoo
from safeio import write_csv
from safeio.checks import UserError


QUICK_TRAIN_SPLIT = "train[:320]"  # `zoo demo --quick`: 10 batches of 32 per epoch
MAX_IMAGE_SIZE = 4096  # --image-size: 100,000 asked TensorFlow for 1,257 images of 10^10 px
# (data.datasets.MAX_IMAGE_SIZE, the same, read here without importing TensorFlow)
MAX_MC_DROPOUT = 1_000  # --mc-dropout: ensembles.mc_dropout.MAX_SAMPLES (one graph's calls)


# The choices of --optimizer, --strategy and --combine, copied here so that no --help has to
# import Keras or TensorFlow to show them (test_commands checks that they equal the
# modules': zoo.optimizers, zoo.training.distribute, ensembles.ensemble).
OPTIMIZER_CHOICES = ("sgd", "nesterov", "adam", "rmsprop", "adagrad")
STRATEGY_CHOICES = ("auto", "one_device", "mirrored", "multi_worker")
COMBINE_CHOICES = ("mean", "logit_mean", "geometric", "vote")
EXPORT_FORMAT_CHOICES = ("saved_model", "onnx", "litert")
FIT_METHOD_CHOICES = ("nll", "greedy")
RESIZE_CHOICES = ("crop", "squash")  # data.preprocess's
TRAINED_ON = {"crop": "crops", "squash": "whole images"}  # what a model of each view saw
RESIZED = {"crop": "centre-cropped", "squash": "resized whole"}  # what each does to images


def model_args(pairs):
    """``["towers=2", "kernel_initializer=he"]`` -> ``{"towers": 2, "kernel_initializer": "he"}``."""
    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UserError(f"--model-arg takes KEY=VALUE; received {pair!r}.")
        if key in _SET_BY_THE_COMMAND:  # (a second value for them was a TypeError)
            raise UserError(f"--model-arg {key} is set by the command: "
                            f"{_SET_BY_THE_COMMAND[key]}; received {pair!r}.")
        if key in kwargs:  # (the last one won without a word)
            raise UserError(f"--model-arg {key} is given twice; received "
                            f"{[p for p in pairs if p.partition('=')[0] == key]}.")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value  # a plain string such as he or lrn
        if key == "name" and not (isinstance(kwargs[key], str)
                                  and _MODEL_NAME.fullmatch(kwargs[key])):
            raise UserError(f"--model-arg name must start with a letter, digit or '.', then "
                            f"letters, digits and _ . - > (TensorFlow's name scopes, less "
                            f"the / Keras refuses in a name); "
                            f"received {pair!r}.")
    return kwargs


_SET_BY_THE_COMMAND = {
    "classes": "the dataset's class count", "input_shape": "give --image-size",
    "input_tensor": "the data pipeline's input", "include_top": "it trains a classifier",
    "classifier_activation": "it trains on the softmax's probabilities (logits or a relu "
                             "were scored as probabilities)"}
# A Keras model's name: what TensorFlow's name scopes take ("bad name" failed in training).
_MODEL_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.>-]*")


def bad_image_policy(args):
    """``--on-bad-image error|skip`` as ``data.load``'s ``on_bad_image``."""
    return {"error": "raise", "skip": "skip"}[args.on_bad_image]


def check_momentum(args):
    """``--momentum`` with an optimizer that has none is one line (it was dropped without a
    word); left out, it is 0.9 (the paper's, and RMSprop's here)."""
    if args.momentum is not None and args.optimizer in ("adam", "adagrad"):
        raise UserError(f"--momentum is SGD's, Nesterov's and RMSprop's; --optimizer "
                        f"{args.optimizer} has none: received --momentum {args.momentum:g}.")
    if args.momentum is None:
        args.momentum = 0.9


def load_models(paths):
    import ensembles

    models = []
    for path in paths:
        if not path.endswith(".keras"):
            raise UserError(f"Expected a saved .keras model file; received {path!r}.")
        # Without the optimizer: no command here trains the loaded model, and a mixed
        # precision run's (a LossScaleOptimizer) warned of skipped variables at every load.
        models.append(ensembles.load(path, compile=False))
    return models


def check_distinct_models(paths, role, hint=""):
    """No file among ``paths`` (the command's models) is given twice: its copies would be
    one model counted twice (``role``: what they are to the command; ``hint``, what to do
    instead)."""
    for later, path in enumerate(paths):
        for earlier in paths[:later]:
            if (os.path.isfile(path) and os.path.isfile(earlier)
                    and os.path.samefile(path, earlier)):
                same = "" if path == earlier else f" ({earlier} is the same file)"
                raise UserError(f"{path} is given twice{same}: the {role} are different "
                                f"models, each given once.{hint}")


def unlabelled(dataset, split, data_dir):
    """Whether a TFDS dataset's ``split`` holds no labels: TFDS writes -1 for examples
    without one (imagenet2012's test split, from its manual tar). Read from its first
    example; an image folder's and the digits' examples always have one."""
    import data

    if dataset == "digits" or data.is_image_folder(dataset, data_dir):
        return False
    _, label = next(iter(data.load(dataset, split, batch_size=None, shuffle=False,
                                   data_dir=data_dir)))
    return int(label) < 0


TABLE_SUFFIXES = (".csv", ".tsv", ".txt")  # the existing files a table may replace


def write_table(table, output, **kwargs):
    """``table`` at ``output``: tab-separated for a ``.tsv`` name (it held commas),
    comma-separated otherwise."""
    write_csv(table, output, sep="\t" if output.lower().endswith(".tsv") else ",", **kwargs)


def check_not_a_run_or_export_file(output, flag="--output"):
    """``output`` is no file of a run (an entry a run writes in its directory, or anything
    in its checkpoints/, backup/, logs/ or snapshots/) nor of an export (inside a folder of
    ``saved_model.pb``, or the class names beside an ONNX or LiteRT file). A slip of the
    keyboard or of tab completion left an export that no longer loaded, a run whose
    best.keras was an ensemble, or one whose history.csv was a table."""
    from zoo.training import run_config
    from ensembles.export import classes_path

    path = os.path.realpath(output)  # (through links: ck -> run/checkpoints, ck/..)
    parent = os.path.dirname(path)
    export = (parent if os.path.basename(parent) not in ("assets", "variables")
              or not os.path.isfile(os.path.join(os.path.dirname(parent), "saved_model.pb"))
              else os.path.dirname(parent))
    if os.path.isfile(os.path.join(export, "saved_model.pb")):
        raise UserError(f"{flag} {output} is inside {export}, an export (it holds "
                        "saved_model.pb): it would replace or join its files. Name a file "
                        "outside it.")
    model = path[:-len(classes_path(""))]  # (model.onnx.classes.txt -> model.onnx)
    if classes_path(model) == path and model.lower().endswith((".onnx", ".tflite")):
        if os.path.isfile(model):
            raise UserError(f"{flag} {output} is the class names of the export {model}: "
                            "it would no longer load. Name another file.")
    inside = path  # the output, then each folder holding it: one a run wrote, in a run?
    while os.path.dirname(inside) != inside:
        run_dir, entry = os.path.dirname(inside), os.path.basename(inside)
        if entry in run_config.RUN_ENTRIES and run_config.read_config(run_dir) is not None:
            raise UserError(f"{flag} {output} is one of the files of the run in {run_dir} "
                            f"({entry}): it would replace what the run wrote. Name another "
                            "file (beside them is fine).")
        inside = run_dir


def check_table_output(output, inputs):
    """``--output`` names the table to write: never one of the command's inputs, nor an
    existing file that is no table (a model, its weights, an image), which a slip of the
    keyboard or of tab completion would replace at the end of the work; nor a file of a run
    or an export (:func:`check_not_a_run_or_export_file`)."""
    check_not_a_run_or_export_file(output)
    if not os.path.isfile(output):
        return
    check_not_an_input(output, inputs, "inputs", "table")
    if not output.lower().endswith(TABLE_SUFFIXES) or zipfile.is_zipfile(output):
        raise UserError(f"--output {output} exists and is not a table ({', '.join(TABLE_SUFFIXES)}"
                        "): it would be replaced. Name another file, or move it aside.")


def check_models_fit(models, info, dataset):
    """One line where a model cannot be scored on ``dataset``: inputs that are not RGB
    images, or other classes than the dataset's (by their names where the model records
    them, else by their count); and where models scored together differ in input size."""
    from zoo.saving import check_square_images, check_takes_images

    for model in models:
        check_takes_images(model, f"{dataset}'s pipeline")
        check_square_images(model, f"{dataset}'s pipeline")
        shape = model.input_shape
        if tuple(shape[1:]) != tuple(models[0].input_shape[1:]):
            raise UserError(f"{model.name} takes inputs of shape {shape[1:]}, but "
                            f"{models[0].name} takes {models[0].input_shape[1:]}: models scored "
                            "together see the same images.")
        names, classes = zoo.class_names(model), model.output_shape[-1]
        if classes != info.num_classes or (names is not None
                                           and list(names) != list(info.class_names)):
            raise UserError(
                f"{model.name} predicts {classes} classes ({some(names or range(classes))}); "
                f"{dataset} has {info.num_classes} ({some(info.class_names)}): score a model "
                "on data of its own classes, in its order.")


def some(names, count=5):
    names = [str(n) for n in names]
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")


def check_not_an_input(output, inputs, inputs_are, written):
    """``--output`` (an existing file) is none of the command's ``inputs``, which the
    ``written`` result would replace."""
    for path in inputs:
        if os.path.exists(path) and os.path.samefile(path, output):
            raise UserError(f"--output {output} is one of the {inputs_are}: the {written} "
                            "would replace it. Name another file.")


def resize_flag(parser, default_help, default=None):
    parser.add_argument("--resize", choices=RESIZE_CHOICES, default=default,
                        help="crop: the shorter side to 256/224 of the input size (256 for 224 "
                        "and 227), then the "
                        "centre crop (models trained with --augment crop); squash: the whole "
                        f"image to the input size (models trained without crop) ({default_help})")


def set_seed(seed):
    import keras

    keras.utils.set_random_seed(seed)


def wide_pandas():
    import pandas as pd

    return pd.option_context("display.width", 160, "display.max_columns", 20)


def bad_image_flag(parser, default="error"):
    parser.add_argument("--on-bad-image", choices=("error", "skip"), default=default,
                        help="image folders: stop, naming the bad files (the first five, and "
                        "how many) (default), or skip them with a warning that names them so")


DATASET_HELP = "'digits' (embedded), a TFDS name or an image folder (default: %(default)s)"


def model_and_data_flags(parser, epochs, run_dir, augment="none", augment_help="none",
                          image_size_help="the dataset's, at least the model's minimum",
                          augment_options=None):
    parser.add_argument("--model", required=True, help="model name, see `zoo list`")
    parser.add_argument("--dataset", default="digits",
                        help=DATASET_HELP)
    parser.add_argument("--epochs", type=int, default=epochs, help=f"(default: {epochs})")
    parser.add_argument("--batch-size", type=int, default=64, help="(default: 64)")
    parser.add_argument("--image-size", type=int, default=None,
                        help=f"input size (default: {image_size_help})")
    parser.add_argument("--run-dir", default=None, help=f"default: {run_dir}")
    parser.add_argument("--data-dir", default=None, help="TFDS data_dir")
    parser.add_argument("--seed", type=int, default=0,
                        help="of the shuffling, the augmentation and the weights (default: 0)")
    parser.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                        help="builder argument, repeatable (e.g. towers=2, kernel_initializer=he)")
    parser.add_argument("--augment", default=augment,
                        help=f"{augment_options} (default: {augment_help})" if augment_options
                        else "training augmentation: '+'-joined crop, flip, pca, jitter, "
                        "erasing, or the presets none and paper (crop+flip+pca). With crop, "
                        "images load at 256/224 of the input size (256 for 224 and 227) and "
                        "are evaluated on their "
                        f"centre crop (default: {augment_help})")
    parser.add_argument("--normalize", default="standardize",
                        choices=("standardize", "channel_mean", "mean_image", "none"),
                        help="inside the model: per-channel mean and std (default), the "
                        "per-channel mean or the mean image (the paper's), or none")
    bad_image_flag(parser)
