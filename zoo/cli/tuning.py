"""``zoo diagnose`` (the lecture notes' training checks for a model) and ``zoo search``
(a random search of the learning rate and the weight decay, coarse then fine)."""

import argparse
import contextlib
import os

import zoo
from safeio import write_csv
from safeio.checks import UserError
from zoo.cli.common import (OPTIMIZER_CHOICES, model_and_data_flags, model_args, set_seed,
                            wide_pandas)
from zoo.cli.runs import Setup, default_run_dir
from zoo.cli.tables import ERROR_COLUMNS, for_people


def _cmd_diagnose(args):
    import data

    ignored = [op for op in data.augment.parse(args.augment) if op != "crop"]
    if ignored:  # (accepted, then changed nothing: two reports equal to every digit)
        raise UserError(f"zoo diagnose checks the model on the training images as evaluated "
                        f"(the same examples at every step, so that a tiny subset can be "
                        f"overfitted): --augment {args.augment} would change nothing but the "
                        f"view; leave out {'+'.join(ignored)} (crop: its centre crops).")
    run_dir = default_run_dir(args, "diagnose")

    def check(setup):  # more examples than the training split holds: before its statistics
        examples = setup.info.splits.get("train")
        if examples is not None and args.examples > examples:
            raise UserError(f"--examples {args.examples} is more than the training split of "
                            f"{args.dataset} holds ({examples}); give at most {examples}.")

    setup = Setup(args, run_dir, check=check)
    set_seed(args.seed)
    model = setup.build()
    print(f"Running the checks on {model.name} ({model.count_params():,} parameters) ...",
          flush=True)
    diagnosis = zoo.diagnostics.diagnose(
        model, setup.load(split="train"), learning_rate=args.lr, epochs=args.epochs,
        examples=args.examples, overfit_steps=args.overfit_steps, seed=args.seed)
    print(diagnosis)
    write_csv(diagnosis.update_ratios, os.path.join(run_dir, "update_ratios.csv"), index=False)
    write_csv(diagnosis.activations_at_init, os.path.join(run_dir, "activations_at_init.csv"))
    print(f"Tables: {run_dir} (update_ratios.csv, activations_at_init.csv)")
    return 0 if diagnosis.ok else 1


def add_diagnose(sub):
    diagnose = sub.add_parser(
        "diagnose", help="the lecture notes' training checks for a model",
        description="Initial loss vs ln(classes), overfitting a tiny subset, update/weight "
        "ratios per layer, activations and dead ReLUs at initialisation and after training.")
    model_and_data_flags(diagnose, epochs=1, run_dir="runs/MODEL_DATASET_diagnose",
                         augment_options="none, or crop (the centre crops of the images "
                         "loaded at 256/224 of the input size: the checks see the same "
                         "examples at every step)")
    diagnose.add_argument("--lr", type=float, default=0.01,
                          help="learning rate (default: %(default)s)")
    diagnose.add_argument("--examples", type=int, default=20,
                          help="size of the subset to overfit (default: %(default)s)")
    diagnose.add_argument("--overfit-steps", type=int, default=100,
                          help="steps on that subset (default: %(default)s)")
    diagnose.set_defaults(run=_cmd_diagnose)


def _cmd_search(args):
    from zoo.training.search import check_rerun, search_space, searched_and_fixed

    space = dict(learning_rate=tuple(args.lr), weight_decay=tuple(args.weight_decay),
                 dropout=tuple(args.dropout) if args.dropout else None, width=args.width,
                 optimizer=args.optimizer)
    fixed = model_args(args.model_arg)
    try:  # (its ranges, before any work; named as the flags the user typed)
        checked = search_space(**space)
        both = searched_and_fixed(checked, fixed)
    except UserError as err:
        message = str(err)
        for name, flag in (("learning_rate", "--lr"), ("weight_decay", "--weight-decay"),
                           ("dropout", "--dropout"), ("width", "--width"),
                           ("optimizer", "--optimizer")):
            message = message.replace(f"`{name}`", flag)
        raise UserError(message) from None
    if both:  # (the searched values silently replaced the fixed one)
        raise UserError("; ".join(f"--{name} with --model-arg {name}={fixed[name]!r}"
                                  for name in both)
                        + ": a value is searched or fixed, not both; give one of them.")
    run_dir = default_run_dir(args, "search")

    def arguments(setup):  # (the builder is a method of the command's: what it builds,
        return dict(       # and on what data)
            trials=args.trials, fine_trials=args.fine_trials, epochs=args.epochs, **space,
            top=args.top, seed=args.seed,
            settings={"command": {"model": args.model, "model_kwargs": setup.model_kwargs,
                                  **setup.settings}})

    def check(setup):  # a rerun with other settings, before the statistics pass
        from data.pipeline import held_out_splits

        if not held_out_splits(setup.info.splits):
            raise UserError(f"The search needs a validation or test split; {args.dataset} "
                            f"has {sorted(setup.info.splits)}.")
        check_rerun(os.path.join(run_dir, "tuner"), setup.build, **arguments(setup))

    # The values given, then as the trials build them where that differs (keras-tuner's
    # choices are of one type: 8 beside 0.5 is searched as 8.0)
    given = list(args.width or ())
    widths = {f"--width {w}": {"width": w} for w in given}
    widths.update({f"--width {w} (searched as {v!r} beside the others)": {"width": v}
                   for w, v in zip(given, checked.get("width", ())) if repr(v) != repr(w)})
    setup = Setup(args, run_dir, check=check, variants=widths)
    result = zoo.search(setup.build, setup.load_train(), setup.load(split=setup.val_split),
                        run_dir=os.path.join(run_dir, "tuner"), verbose=2,  # a line an epoch
                        **arguments(setup))
    table = result.table
    with wide_pandas():
        print(for_people(table, digits=6).to_string(index=False))
    write_csv(table, os.path.join(run_dir, "search.csv"), index=False)
    zoo.plot_search(table, os.path.join(run_dir, "search.png"),
                    title=f"{args.model} on {args.dataset}")
    best = {k: v for k, v in result.best.items() if k not in ("stage", "trial")}
    print("best: " + ", ".join(f"{k} {100 * v:.2f} %" if k in ERROR_COLUMNS else
                               f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in best.items()))
    print(f"Results: {run_dir}/search.csv, {run_dir}/search.png")
    return 0


def add_search(sub):
    search = sub.add_parser(
        "search", help="random search of learning rate and weight decay, coarse then fine",
        description="keras-tuner random search on a log scale of the learning rate and the "
        "weight decay (dropout and width optional), a coarse stage then a fine one around "
        "the best trials; writes search.csv and search.png.")
    model_and_data_flags(search, epochs=2, run_dir="runs/MODEL_DATASET_search")
    search.add_argument("--trials", type=int, default=8, help="coarse trials (default: %(default)s)")
    search.add_argument("--fine-trials", type=int, default=None,
                        help="fine trials (default: as many as --trials; 0: none)")
    search.add_argument("--top", type=int, default=3,
                        help="best coarse trials to refine (default: %(default)s)")
    search.add_argument("--lr", type=float, nargs=2, default=(1e-4, 1e-1),
                        metavar=("LOW", "HIGH"), help="learning-rate range, searched on a "
                        "log scale (default: 1e-4 0.1)")
    search.add_argument("--weight-decay", type=float, nargs=2, default=(1e-6, 1e-2),
                        metavar=("LOW", "HIGH"), help="weight-decay range, searched on a log "
                        "scale (default: 1e-6 0.01)")
    search.add_argument("--dropout", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"))
    search.add_argument("--optimizer", nargs="+", default=None, metavar="OPTIMIZER",
                        choices=OPTIMIZER_CHOICES,
                        help="optimizers to choose among (default: the paper's sgd)")
    search.add_argument("--width", type=_width_choice, nargs="+", default=None,
                        help="width choices (fc units for AlexNet, a multiplier otherwise)")
    search.set_defaults(run=_cmd_search)


def _width_choice(text):
    """A ``--width`` choice: an integer (AlexNet's fc units) or a number (a multiplier)."""
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    raise argparse.ArgumentTypeError(f"a width is a number (fc units for AlexNet, a channel "
                                     f"multiplier otherwise); received {text!r}")
