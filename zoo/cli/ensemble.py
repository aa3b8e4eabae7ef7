"""``zoo ensemble``: saved models, snapshots of one run or MC-dropout samples combined
into one .keras model, with weights and temperatures fitted on a held-out split."""

import os
import zipfile

import zoo
from safeio import check_writable_file
from safeio.checks import UserError
from zoo.cli.common import (COMBINE_CHOICES, FIT_METHOD_CHOICES, TRAINED_ON, bad_image_flag,
                            check_distinct_models, check_not_a_run_or_export_file,
                            check_not_an_input, load_models, resize_flag)
from zoo.cli.evaluate import check_view_flags, evaluation_view, load_split, note_training_split


def _cmd_ensemble(args):
    import ensembles

    if not args.output.endswith(".keras"):
        raise UserError(f"--output must end in .keras; received {args.output!r}.")
    check_writable_file(args.output)
    _check_ensemble_output(args.output, args.members)
    if args.last is not None and not args.snapshots:
        raise UserError(f"--last {args.last} picks the last snapshots: give --snapshots DIR "
                        "with it.")
    _check_held_out_flags(args)
    if args.fit_weights and args.combine != "mean":
        raise UserError(f"--fit-weights fits the weights of the mean rule; received --combine "
                        f"{args.combine}.")
    if args.per_member and not args.calibrate_on:
        raise UserError("--per-member fits one temperature per member: give --calibrate-on "
                        "SPLIT with it.")
    if args.fit_weights and (args.weights or args.mc_dropout is not None):
        raise UserError("--fit-weights fits the weights: give neither --weights nor "
                        "--mc-dropout with it.")
    if args.mc_dropout is not None:
        if len(args.members) != 1 or args.snapshots or args.weights:
            raise UserError("--mc-dropout N samples one model: give exactly one .keras model "
                            f"and neither --snapshots nor --weights; received "
                            f"{len(args.members)} model(s).")
        (model,) = _ensemble_view(args, load_models(args.members))
        ensemble = ensembles.mc_dropout(model, samples=args.mc_dropout, combine=args.combine)
    elif args.snapshots:
        if len(args.members) != 1:
            raise UserError("With --snapshots give exactly one .keras model as the "
                            f"architecture; received {len(args.members)}.")
        paths = ensembles.snapshot_paths(args.snapshots)
        found = len(paths)
        if found and args.last is not None and args.last > found:  # (none: from_snapshots')
            raise UserError(f"--last {args.last} asks for more snapshots than "
                            f"{args.snapshots} holds: {found} ("
                            f"{', '.join(os.path.basename(p) for p in paths)}).")
        if found:
            _check_weight_count(args, min(found, args.last or found),
                                f"the snapshots{' kept by --last' if args.last else ''}")
        (architecture,) = _ensemble_view(args, load_models(args.members))
        ensemble = ensembles.from_snapshots(architecture, args.snapshots, last=args.last,
                                            combine=args.combine, weights=args.weights)
    else:
        check_distinct_models(args.members, "members of an ensemble", " To count one more, "
                              "give it a larger --weights value.")
        _check_weight_count(args, len(args.members), "the models given")
        ensemble = ensembles.Ensemble(_ensemble_view(args, load_models(args.members)),
                                      combine=args.combine, weights=args.weights)
    if args.calibrate_on and args.per_member:  # the weights then fit calibrated members
        ensemble = _calibrated(args, ensemble)
    if args.fit_weights:
        ensemble = _with_fitted_weights(args, ensemble)
    if args.calibrate_on and not args.per_member:  # the combination, weights and all
        ensemble = _calibrated(args, ensemble)
    zoo.save_model(ensemble, args.output)  # atomically, with the members' class names
    names = [m.name for m in ensembles.members_of(ensemble)]
    if args.mc_dropout is not None:
        print(f"Saved MC dropout over {names[0].removesuffix('_sample')}: {len(names)} "
              f"samples with dropout on, combined by {args.combine}: {args.output}")
    else:
        weights = ensembles.member_weights(ensemble)
        shown = "" if len(set(weights)) == 1 else (
            ", weights " + ", ".join(f"{w:.3g}" for w in weights))
        print(f"Saved an ensemble of {len(names)} member{'s' * (len(names) > 1)} "
              f"({', '.join(names)}), combined by {args.combine}{shown}: {args.output}")
    return 0


def _check_weight_count(args, count, members):
    """--weights of another count than the members: one line in the flag's words (it was
    the library's "`weights` must be 3 non-negative numbers"), before any model loads."""
    if args.weights is not None and len(args.weights) != count:
        given = " ".join(f"{w:g}" for w in args.weights)
        raise UserError(f"--weights takes one number per member, {count} for {members}; "
                        f"received {len(args.weights)}: {given}.")


def _ensemble_view(args, models):
    """``models``, recording the view the ensemble is for: ``--resize`` (``--center-crop`` is
    ``--resize crop``), with a note for each model trained on the other one. Without it the
    models keep their own, and models that record different views are one line."""
    view = "crop" if args.center_crop else args.resize
    if view is None:
        evaluation_view(args, models, together="the models of one ensemble share its one input")
        return models
    for model in models:
        trained = zoo.resize_mode(model)
        if trained not in (None, view):
            print(f"Note: {model.name} was trained on {TRAINED_ON[trained]} (resize "
                  f"{trained}); in this ensemble it is given {TRAINED_ON[view]} (--resize "
                  f"{view}).", flush=True)
        zoo.set_resize_mode(model, view)
    return models


def _check_held_out_flags(args):
    """The flags that describe the held-out data are refused without --fit-weights or
    --calibrate-on (nothing would read them), then given their defaults."""
    given = [flag for flag, value in (
        ("--dataset", args.dataset), ("--batch-size", args.batch_size),
        ("--data-dir", args.data_dir), ("--on-bad-image", args.on_bad_image))
        if value is not None]
    check_view_flags(args)
    if given and not (args.fit_weights or args.calibrate_on):
        raise UserError(f"{', '.join(given)} describe{'s' * (len(given) == 1)} the held-out "
                        "data of --fit-weights and --calibrate-on, and neither was given: "
                        "give one of them, or leave " + ("it out." if len(given) == 1
                                                         else "those flags out."))
    if args.fit_method is not None and not args.fit_weights:
        raise UserError(f"--fit-method {args.fit_method} is how --fit-weights fits the "
                        "weights: give --fit-weights SPLIT with it.")
    defaults = dict(dataset="digits", batch_size=128, on_bad_image="error", fit_method="nll")
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    splits = [split for split in (args.fit_weights, getattr(args, "calibrate_on", None))
              if split]
    if splits:  # a typo is one line before the models are read and the weights fitted
        import data
        from data.datasets import _split_parts

        info = data.info(args.dataset, data_dir=args.data_dir)
        for split in splits:
            _split_parts(split, info.splits, info.name)


def _check_ensemble_output(output, members):
    """The ensemble's file may replace an earlier .keras file, never one of its members (a
    run's own checkpoint) nor a file that is not a Keras file (the user's), nor another
    run's checkpoint (:func:`check_not_a_run_or_export_file`)."""
    check_not_a_run_or_export_file(output)
    if not os.path.exists(output):
        return
    check_not_an_input(output, members, "members", "ensemble")
    if not zipfile.is_zipfile(output):
        raise UserError(f"--output {output} exists and is not a .keras file; it would be "
                        "replaced. Name another file, or move it aside.")


def _with_fitted_weights(args, ensemble):
    """The same members, weighted as ``ensembles.fit_weights`` fits them on
    ``args.fit_weights`` (a held-out split)."""
    import ensembles
    from zoo.saving import copy_metadata

    note_training_split("--fit-weights", args.fit_weights)
    held_out = load_split(args, args.fit_weights, [ensemble])
    weights = ensembles.fit_weights(ensemble, held_out, method=args.fit_method)
    members = ensembles.members_of(ensemble)
    shown = ", ".join(f"{m.name} {w:.3g}" for m, w in zip(members, weights))
    print(f"Weights fitted on the {args.fit_weights} split ({args.fit_method}): {shown}")
    return copy_metadata(ensemble, ensembles.Ensemble(
        members, combine=args.combine, weights=[float(w) for w in weights], name=ensemble.name))


def _calibrated(args, ensemble):
    """The ensemble with temperatures fitted on ``args.calibrate_on`` (a held-out split):
    one for the combination, or one per member with ``args.per_member``."""
    import ensembles

    note_training_split("--calibrate-on", args.calibrate_on)
    held_out = load_split(args, args.calibrate_on, [ensemble])
    calibrated = ensembles.calibrate(ensemble, held_out, per_member=args.per_member)
    if args.per_member:
        shown = ", ".join(f"{m.name} {t:.3g}" for m, t in zip(
            ensembles.members_of(calibrated), ensembles.temperature(calibrated, True)))
        print(f"Member temperatures fitted on the {args.calibrate_on} split: {shown}")
    else:
        print(f"Temperature fitted on the {args.calibrate_on} split: "
              f"{ensembles.temperature(calibrated):.3g}")
    return calibrated


def add_ensemble(sub):
    ensemble = sub.add_parser(
        "ensemble", help="combine saved models or snapshots into one ensemble model",
        description="Build ONE Keras model averaging the members (or snapshot weights "
        "loaded into a saved architecture) and save it as .keras.")
    ensemble.add_argument("members", nargs="+", metavar="MODEL.keras",
                          help="member models; with --snapshots, the one architecture")
    ensemble.add_argument("--output", required=True, help="the ensemble's .keras file")
    ensemble.add_argument("--snapshots", default=None,
                          help="a directory of snapshot .weights.h5 files, as "
                        "`zoo train --snapshots M` writes to RUN_DIR/snapshots")
    ensemble.add_argument("--last", type=int, default=None,
                          help="keep the last N snapshots (with --snapshots)")
    ensemble.add_argument("--combine", default="mean", metavar="RULE",
                          choices=COMBINE_CHOICES,
                          help="how members combine: mean (default), "
                          "logit_mean, geometric or vote")
    ensemble.add_argument("--weights", type=float, nargs="+", default=None,
                          help="one weight per member")
    ensemble.add_argument("--mc-dropout", type=int, default=None, metavar="N",
                          help="MC dropout: one model run N times with its dropout on, "
                          "combined as an ensemble of N samples")
    ensemble.add_argument("--fit-weights", default=None, metavar="SPLIT",
                          help="fit the member weights on this held-out split of --dataset "
                          "(e.g. validation), for the mean rule")
    ensemble.add_argument("--fit-method", choices=FIT_METHOD_CHOICES, default=None,
                          help="nll: weights on the simplex minimising the NLL (default); "
                          "greedy: Caruana et al.'s selection with replacement")
    ensemble.add_argument("--calibrate-on", default=None, metavar="SPLIT",
                          help="temperature scaling: fit the ensemble's temperature on this "
                          "held-out split of --dataset (after --fit-weights; with "
                          "--per-member, the members' before it)")
    ensemble.add_argument("--per-member", action="store_true",
                          help="with --calibrate-on: one temperature per member, before they "
                          "are combined")
    ensemble.add_argument("--dataset", default=None,
                          help="with --fit-weights and --calibrate-on (default: digits)")
    ensemble.add_argument("--center-crop", action="store_true",
                          help="the same as --resize crop")
    resize_flag(ensemble, "the view the ensemble is for: recorded in its file, so that zoo "
                 "evaluate, predict and export follow it, and how --fit-weights and "
                 "--calibrate-on load their splits; default: as the members were trained "
                 "(members trained on different views need it), else squash for the splits")
    ensemble.add_argument("--batch-size", type=int, default=None,
                          help="with --fit-weights and --calibrate-on (default: 128)")
    ensemble.add_argument("--data-dir", default=None,
                          help="TFDS data_dir, with --fit-weights and --calibrate-on")
    bad_image_flag(ensemble, default=None)
    ensemble.set_defaults(run=_cmd_ensemble)
