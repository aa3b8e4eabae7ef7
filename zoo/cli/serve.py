"""``zoo predict`` (images classified by name) and ``zoo export`` (a SavedModel, ONNX or
LiteRT file that a server uses as it is)."""

import os
import sys

import zoo
from safeio import check_writable_file
from safeio.checks import UserError
from zoo.cli.common import (EXPORT_FORMAT_CHOICES, RESIZED, check_table_output, load_models,
                            resize_flag, write_table)


def _no_view_note(source, crops):
    """The note of zoo predict and export for a model that records no view, which ``crops``
    (what is done to its images) says they centre-crop."""
    return (f"Note: {source} records no view; {crops} (--resize crop), where zoo evaluate "
            "scores such a model on whole images: give --resize squash for a model trained "
            "on them.")


def _check_not_in_export(output, source):
    """``--output`` is not written into the export read: its folder, or the class names
    beside an ONNX or LiteRT file. A table written as its
    assets/class_names.txt left an export that no longer loaded ("damaged")."""
    from ensembles.export import classes_path

    names = classes_path(source)
    folder = os.path.realpath(source)
    inside = os.path.isdir(source) and os.path.commonpath(
        [folder, os.path.realpath(output)]) == folder
    if inside or os.path.realpath(output) == os.path.realpath(names):
        raise UserError(f"--output {output} is {'inside' if inside else 'the class names of'} "
                        f"{source}, the export read: the table would replace or join its "
                        "files. Name a file outside it.")


def _cmd_predict(args):
    import warnings

    from zoo.prediction import NoViewWarning

    if args.output:  # before any work
        check_writable_file(args.output)
        _check_not_in_export(args.output, args.source)  # (the more precise message first)
        check_table_output(args.output, [args.source, *args.images])
    folder = any(os.path.isdir(source) for source in args.images)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = zoo.predict(args.source, args.images, top=args.top,
                            batch_size=args.batch_size, resize=args.resize,
                            verbose=int(folder and sys.stdout.isatty()))  # not in a file
    skipped = [str(w.message) for w in caught if str(w.message).startswith("Skipped ")]
    for message in skipped:
        print(f"zoo predict: {message}", file=sys.stderr)
    if any(issubclass(w.category, NoViewWarning) for w in caught):
        print(_no_view_note(args.source, "its images are centre-cropped"), file=sys.stderr)
    for w in caught:  # the others as they would have been shown (the filters decide)
        if not (str(w.message).startswith("Skipped ") or
                issubclass(w.category, NoViewWarning)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    top = sum(1 for column in table.columns if column.startswith("class_"))
    for _, row in table.iterrows():
        classes = ", ".join(f"{row[f'class_{k}']} {100 * row[f'probability_{k}']:.1f} %"
                            for k in range(1, top + 1))
        extra = f"entropy {row['entropy']:.3f}"
        if "mutual_information" in table.columns:
            extra += f", mutual information {row['mutual_information']:.3f}"
        if not row["finite"]:
            extra += ", NOT FINITE: do not use"
        print(f"{row['image']}: {classes} ({extra})")
    if args.output:
        write_table(table, args.output, index=False)
        print(f"Table: {args.output}")
    return 1 if skipped else 0


def add_predict(sub):
    predict = sub.add_parser(
        "predict", help="classify image files by class name",
        description="Print the top classes of each image (files, or folders searched "
        "recursively) by name with their probabilities, and for an ensemble its entropy and "
        "mutual information. Images are made into inputs as the model was trained (zoo "
        "train records it): centre-cropped as `zoo evaluate --center-crop` does, or resized "
        "whole; --resize chooses, and a model that records nothing is centre-cropped; an "
        "export resizes as it was exported. An unreadable image is named on stderr and "
        "skipped (exit 1).")
    predict.add_argument("source", metavar="SOURCE",
                         help="a .keras model or ensemble, a `zoo export` folder, or a .onnx "
                         "file from `zoo export --format onnx`")
    predict.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER")
    predict.add_argument("--top", type=int, default=5, help="classes per image (default 5)")
    predict.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    predict.add_argument("--output", default=None, metavar="PREDS.csv",
                         help="also write the table as CSV")
    resize_flag(predict, "default: as the model was trained (recorded by zoo train), else "
                 "crop; an export resizes as it was exported")
    predict.set_defaults(run=_cmd_predict)


def _cmd_export(args):
    import ensembles
    from ensembles.export import check_export_options, check_export_target
    from zoo.saving import serving_resize

    check_export_options(args.format, args.resize)  # before any work
    check_export_target(args.output, args.format, args.overwrite)
    (model,) = load_models([args.model_file])
    ensembles.export(model, args.output, overwrite=args.overwrite, format=args.format,
                     resize=args.resize)  # (a single model: its one-member ensemble, named so)
    resize = serving_resize(model, args.resize)
    how = RESIZED[resize] + (
        "" if args.resize else " as the model was trained" if zoo.resize_mode(model) else "")
    if args.format == "saved_model":
        print(f"SavedModel: {args.output} (serve: float32 images -> probabilities, "
              "predictive_entropy, mutual_information, finite; serve_images: uint8 images of any "
              f"size and serve_bytes: encoded images, {how} (--resize {resize}) "
              "-> probabilities, top_classes, top_scores, "
              "entropy, mutual_information, finite, and for serve_bytes decoded; class names in "
              "assets/class_names.txt)")
    else:
        from ensembles.export import TOLERANCE, classes_path

        made = ("; zoo predict resizes images for it by its metadata's resize "
                f"{resize}" if args.format == "onnx" else
                f"; make them as data.eval_view(image, {model.input_shape[1]}, {resize!r}) "
                "does")
        print(f"{args.format}: {args.output} (float32 images of {model.input_shape[1]}x"
              f"{model.input_shape[2]} -> probabilities, predictive_entropy, "
              f"mutual_information, finite; checked in its runtime to {TOLERANCE:g}{made}); "
              f"class names: {classes_path(args.output)}")
    if args.resize is None and zoo.resize_mode(model) is None and args.format != "litert":
        print(_no_view_note(args.model_file, "the export centre-crops images"))
    return 0


def add_export(sub):
    export = sub.add_parser(
        "export", help="export a saved model or ensemble as one SavedModel (or an ONNX or "
        "LiteRT file: --format)",
        description="Write ONE SavedModel that a server uses as it is: serve (float32 images "
        "at the input size -> probabilities, predictive entropy, mutual information, finite), "
        "serve_images (uint8 images of any size, resized in the graph as the model was "
        "trained: centre-cropped or resized whole; --resize chooses) "
        "and serve_bytes (encoded JPEG/PNG/GIF/BMP), both with the top classes by name.")
    export.add_argument("model_file", metavar="MODEL.keras")
    export.add_argument("output", metavar="OUT",
                        help="saved_model: a new or empty directory, or a previous export "
                        "with --overwrite (nothing else is ever replaced); onnx: a .onnx "
                        "file; litert: a .tflite file")
    export.add_argument("--format", default="saved_model", choices=EXPORT_FORMAT_CHOICES,
                        help="saved_model (default; TensorFlow Serving, raw images and bytes "
                        "in), onnx (ONNX Runtime) or litert (LiteRT, formerly TF Lite)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace a previous export, in one atomic step")
    resize_flag(export, "how serve_images and serve_bytes resize; default: as the model "
                 "was trained (recorded by zoo train), else crop")
    export.set_defaults(run=_cmd_export)
