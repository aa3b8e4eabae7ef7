"""``zoo evaluate``: saved models or an ensemble scored on a dataset split; and how
images are made into the models' inputs (their view), which ``zoo ensemble`` shares."""

import zoo
from safeio import check_writable_file
from safeio.checks import UserError
from zoo.cli.common import (DATASET_HELP, RESIZED, bad_image_flag, bad_image_policy,
                            check_distinct_models, check_models_fit, check_table_output,
                            load_models, resize_flag, unlabelled, wide_pandas, write_table)
from zoo.cli.tables import for_people


def load_split(args, split, models, multi_crop=False):
    """``args.dataset``'s ``split`` as ``zoo evaluate`` reads it for ``models`` (checked to
    fit it): resized to their input size, or at the larger scale for the centre crop
    (:func:`evaluation_view`) and the multi-crop TTA."""
    import data

    check_models_fit(models, data.info(args.dataset, data_dir=args.data_dir), args.dataset)
    size = models[0].input_shape[1]
    crop = not multi_crop and evaluation_view(args, models) == "crop"
    sizing = (dict(scale=data.crop_scale(size)) if multi_crop or crop else
              dict(image_size=size))
    if crop:  # as `zoo train --augment crop` evaluates
        sizing["center_crop"] = size
    return data.load(args.dataset, split, batch_size=args.batch_size, data_dir=args.data_dir,
                     on_bad_image=bad_image_policy(args), **sizing)


def _split_names(spec):
    """The split names a TFDS-style ``spec`` reads (``"validation+test[:50%]"``:
    validation and test; ``"all"`` stands for every split)."""
    return {part.split("[")[0].strip() for part in str(spec).split("+")}


def _shared_splits(one, other):
    """The splits both specs read (every one of the other's where one reads ``all``)."""
    one, other = _split_names(one), _split_names(other)
    return other if "all" in one else one if "all" in other else one & other


def note_training_split(flag, split):
    """A note where ``split`` reads the training split, which the models have learnt: its
    temperatures and weights are fitted to predictions over-confident there, not to new
    images; and where it reads the test split, on which a score of the fitted model is then
    optimistic."""
    if _shared_splits(split, "train"):
        print(f"Note: {flag} {split} fits to the training split, on which the models are "
              "more confident than on new images; a held-out split (validation) fits them "
              "for those.", flush=True)
    if _shared_splits(split, "test"):
        print(f"Note: {flag} {split} fits to the test split: a score of the saved model on "
              "test is then optimistic (fitted there); a held-out split (validation) leaves "
              "test for the score.", flush=True)


def _check_calibration_flags(args):
    """``zoo evaluate --calibrate-on`` with flags it cannot go with: one line, before any
    work (an image folder is scanned to load a split)."""
    if args.calibrate_on is not None and args.tta != "none":
        raise UserError(f"--calibrate-on does not combine with --tta; received --tta "
                        f"{args.tta}: a calibrated model applies T to each view before the "
                        "views are averaged.")


def check_view_flags(args):
    """The flags of the evaluation view that contradict each other: one line, before any
    work."""
    if args.center_crop and args.resize == "squash":
        raise UserError("--center-crop is --resize crop; received --resize squash with it: "
                        "give one of them.")
    if getattr(args, "tta", "none") in ("5crop", "10crop") and args.resize == "squash":
        raise UserError(f"--tta {args.tta} takes crops of images loaded at the larger scale; "
                        "received --resize squash with it: give one of them.")


def evaluation_view(args, models, together="models scored together see the same images"):
    """How ``zoo evaluate`` (and ``zoo ensemble``'s held-out splits) make images into
    ``models``' inputs: ``--resize`` (``--center-crop`` is ``--resize crop``), else as the
    models were trained (``zoo.resize_mode``), else whole (``squash``). Models trained on
    different views, seen together on one, are one line (``together`` says why)."""
    if args.center_crop or args.resize:
        return "crop" if args.center_crop else args.resize
    recorded = [(m.name, zoo.resize_mode(m)) for m in models if zoo.resize_mode(m)]
    if len({mode for _, mode in recorded}) > 1:
        shown = ", ".join(f"{name} resize {mode}" for name, mode in recorded)
        raise UserError(f"The models were trained on different views ({shown}), and "
                        f"{together}: give --resize crop or --resize squash.")
    return recorded[0][1] if recorded else "squash"


def _say_evaluation_view(args, models, view, split):
    """Say the view when it comes from the models' records."""
    recorded = [m.name for m in models if zoo.resize_mode(m)]
    if args.center_crop or args.resize:
        return
    if not recorded:  # zoo predict and export would centre-crop them: say it once
        print(f"Images of the {split} split {RESIZED[view]} (--resize {view}): "
              f"{_none_recorded(models)}; zoo predict and export centre-crop such a model "
              "unless told --resize.", flush=True)
        return
    whose = ((f"as the model{'s were' if len(models) > 1 else ' was'} trained")
             if len(recorded) == len(models) else
             f"as {', '.join(recorded)} record{'s' * (len(recorded) == 1)} (the others none)")
    print(f"Images of the {split} split {RESIZED[view]}, {whose} (--resize {view})",
          flush=True)


def _none_recorded(models):
    """``"m records no view"`` (or ``"m and n record no view"``)."""
    names = [m.name for m in models]
    return (f"{names[0]} records" if len(names) == 1 else
            f"{', '.join(names[:-1])} and {names[-1]} record") + " no view"


def _say_crops_of_whole_images(models, tta):
    """A note where ``--tta`` crops images for models trained on whole ones: the user asked
    for crops, but such a model has never seen a part of an image."""
    whole = [m.name for m in models if zoo.resize_mode(m) == "squash"]
    if whole:
        were = "was" if len(whole) == 1 else "were"
        print(f"Note: {', '.join(whole)} {were} trained on whole images (resize squash); "
              f"--tta {tta} scores crops of them.", flush=True)


def _cmd_evaluate(args):
    import data
    import ensembles

    if args.output:  # before any work
        check_writable_file(args.output)
        check_table_output(args.output, args.models)
    check_view_flags(args)
    _check_calibration_flags(args)
    from data.datasets import _split_parts
    from zoo.saving import check_model_file, check_square_images, check_takes_images

    for path in args.models:  # (a missing file before any data is read)
        check_model_file(path)
    check_distinct_models(args.models, "models compared (and combined)")
    info = data.info(args.dataset, data_dir=args.data_dir)
    for given in (args.split, args.calibrate_on):  # a typo: before the models are read
        if given is not None:
            _split_parts(given, info.splits, info.name)
    split = args.split
    if split is None:  # the held-out split the dataset has
        splits = info.splits
        labelled = [s for s in ("test", *data.VALIDATION_SPLITS) if s in splits]
        if labelled[:1] == ["test"] and unlabelled(args.dataset, "test", args.data_dir):
            print(f"The test split of {args.dataset} has no labels (-1, as TFDS marks "
                  "them): evaluating the validation split instead", flush=True)
            labelled = labelled[1:]
        split = next(iter(labelled), None if splits else "test")
        if split is None:
            raise UserError(f"{args.dataset} has no labelled test or validation split (it "
                            f"has {', '.join(sorted(splits))}); name one with --split.")
        if split in splits:
            print(f"Evaluating on the {split} split ({splits[split]:,} examples)", flush=True)
    shared = _shared_splits(args.calibrate_on, split) if args.calibrate_on else set()
    if shared:  # (test[:50%] and validation+test hold test's images too)
        raise UserError(f"--calibrate-on {args.calibrate_on} reads the split evaluated "
                        f"({', '.join(sorted(shared))} of --split {split}): fit the "
                        "temperatures on another (e.g. validation) or name one with --split.")
    models = load_models(args.models)
    for model in models:  # (the crops below are squares of its size)
        check_takes_images(model, f"{args.dataset}'s pipeline")
        check_square_images(model, "zoo evaluate")
    size = models[0].input_shape[1]
    tta = None if args.tta == "none" else args.tta
    if tta is not None:  # (before the split is read; it came after, in the library's words)
        from ensembles.evaluation import _check_uncalibrated

        try:
            _check_uncalibrated(models, tta)
        except UserError as err:
            raise UserError(str(err).replace(f"tta={tta!r}", f"--tta {tta}")) from None
    multi_crop = tta in ("5crop", "10crop")
    if multi_crop:  # the paper's crops of images loaded at a larger scale
        print(f"Images of the {split} split: shorter side {data.crop_scale(size)}, centre "
              f"square, {tta} of {size}x{size}")
        _say_crops_of_whole_images(models, tta)
    if not multi_crop:  # (models trained on other views: one line, here)
        _say_evaluation_view(args, models, evaluation_view(args, models), split)
    test = load_split(args, split, models, multi_crop)
    held_out = None
    if args.calibrate_on is not None:
        print(f"Temperatures fitted on the {args.calibrate_on} split", flush=True)
        note_training_split("--calibrate-on", args.calibrate_on)
        held_out = load_split(args, args.calibrate_on, models, multi_crop)
    source = models[0] if len(models) == 1 else models
    table = ensembles.evaluate(source, test, tta=tta, calibrate_on=held_out)
    shown = table
    if len(models) == 1 and not ensembles.is_ensemble(source):  # one model: its row
        shown = table.iloc[:1][[c for c in table.columns if c not in (
            "disagreement", "kl", "weight")]]
    if models[0].output_shape[-1] <= 5:  # top-5 of five classes or fewer is always right
        shown = shown.drop(columns="top5_error")
    with wide_pandas():
        print(for_people(shown).to_string())
    if args.output:  # the whole table, errors as fractions
        write_table(table, args.output)
        print(f"Table: {args.output}")
    return 0


def add_evaluate(sub):
    evaluate = sub.add_parser(
        "evaluate", help="evaluate saved models or an ensemble on a dataset split",
        description="Evaluate one .keras model, a saved ensemble, or several models (then "
        "averaged as an ensemble): top-1/top-5 error, NLL, Brier score, ECE, and the "
        "members' disagreement and KL.")
    evaluate.add_argument("models", nargs="+", metavar="MODEL.keras")
    evaluate.add_argument("--dataset", default="digits",
                          help=DATASET_HELP)
    evaluate.add_argument("--split", default=None,
                          help="default: test, or validation where there is no test split")
    evaluate.add_argument("--tta", choices=("none", "flip", "5crop", "10crop"), default="none",
                          help="test-time augmentation; 5crop/10crop load the images with "
                          "the shorter side at 256/224 of the input size (256 for 224 and 227) "
                          "and take the corner and centre crops (10crop: and their mirrors)"
                          " (default: %(default)s)")
    evaluate.add_argument("--center-crop", action="store_true",
                          help="load the images at 256/224 of the input size (256 for 224 "
                          "and 227) and take the centre crop (for models trained with "
                          "--augment crop); the same as --resize crop")
    resize_flag(evaluate, "default: as the models were trained (recorded by zoo train), "
                 "else squash")
    evaluate.add_argument("--batch-size", type=int, default=128, help="(default: 128)")
    evaluate.add_argument("--data-dir", default=None, help="TFDS data_dir")
    evaluate.add_argument("--output", default=None, help="write the table as CSV here")
    evaluate.add_argument("--calibrate-on", default=None, metavar="SPLIT",
                          help="fit temperatures on this held-out split (e.g. validation) and "
                          "add each row's temperature and its NLL and ECE after temperature "
                          "scaling, and a row for the ensemble of calibrated members")
    bad_image_flag(evaluate)
    evaluate.set_defaults(run=_cmd_evaluate)
