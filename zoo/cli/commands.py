"""The ``zoo`` command line: ``list``, ``info``, ``train``, ``evaluate``, ``ensemble``,
``distill``, ``export``, ``predict``, ``diagnose``, ``search`` and ``demo``; ``zoo COMMAND
--help`` for each.

User errors (:class:`safeio.checks.UserError`) and file-system faults (an ``OSError`` that
names its file) print one line and exit with code 2, never a traceback; anything else is a
bug, and shows its traceback (``ZOO_DEBUG=1`` shows it for everything). Nothing heavy is
imported before a command needs it: ``zoo --help`` and ``zoo list`` never start Keras or
TensorFlow, and TensorFlow's start-up lines are kept off the terminal (:mod:`zoo.cli.quiet`).
"""

import argparse
import contextlib
import difflib
import errno
import os
import shutil
import sys

import zoo
from safeio import size_text
from safeio.checks import UserError
from zoo.cli.common import (DATASET_HELP, MAX_IMAGE_SIZE, MAX_MC_DROPOUT, QUICK_TRAIN_SPLIT,
                            TRAINED_ON, check_momentum, load_models, model_args, some)
from zoo.cli.distill import add_distill
from zoo.cli.ensemble import add_ensemble
from zoo.cli.evaluate import add_evaluate
from zoo.cli.quiet import tensorflow_started_quietly
from zoo.cli.serve import add_export, add_predict
from zoo.cli.train import add_train
from zoo.cli.tuning import add_diagnose, add_search


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line (no usage block) and the closest flag for an
    unknown one."""

    def error(self, message):
        unknown = [w for w in message.split() if w.startswith("--")]
        if message.startswith("unrecognized arguments") and unknown:
            close = difflib.get_close_matches(unknown[0], self._all_flags(), n=1)
            if close:
                message += f" (did you mean {close[0]}?)"
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")

    def _all_flags(self):
        """Every flag of this parser and of its subcommands' parsers."""
        parsers = [self] + [p for a in self._actions
                            if isinstance(a, argparse._SubParsersAction)
                            for p in a.choices.values()]
        return sorted({o for p in parsers for a in p._actions for o in a.option_strings})


def _cmd_list(args):
    names = zoo.list_models(args.pattern)
    if not names:
        raise UserError(f"No model matches {args.pattern!r}; available: "
                        f"{', '.join(zoo.list_models())}.")
    print(f"{'name':<11} {'params':>12} {'GMACs':>6} {'input':>8}  paper")
    for name in names:
        info = zoo.model_info(name)
        size = f"{info['input_size']}x{info['input_size']}"
        print(f"{name:<11} {info['params']:>12,} {info['macs'] / 1e9:>6.2f} {size:>8}  "
              f"{info['paper']}")
    return 0


def _add_list(sub):
    listing = sub.add_parser("list", help="list the available models")
    listing.add_argument("pattern", nargs="?", default=None,
                         help="shell wildcards, e.g. 'resnet*' (default: all)")
    listing.set_defaults(run=_cmd_list)


def _cmd_info(args):
    if args.model.endswith(".keras"):
        return _describe_file(args.model)
    info = zoo.model_info(args.model)
    arguments = zoo.registry.arguments_of(args.model) or ("**kwargs",)
    print(f"{args.model}: {info['paper']}")
    print(f"  input size        {info['input_size']}x{info['input_size']}x3")
    print(f"  parameters        {info['params']:,} trainable, {info['total_params']:,} in all")
    print(f"  multiply-adds     {info['macs'] / 1e9:.2f} G per image")
    print(f"  builder           zoo.{args.model}({', '.join(arguments)})")
    _print_weights(args.model)
    return 0


def _describe_file(path):
    """What a saved model or ensemble needs to be used: its members, input, classes and
    resize mode (zoo info MODEL.keras)."""
    import ensembles
    from ensembles.ensemble import member_models

    (model,) = load_models([path])
    members = member_models(model)
    if ensembles.is_ensemble(model) and not members:  # a hand-made graph around the layer
        print(f"{path}: {model.name}, combining probabilities by "
              f"{ensembles.combine_layer(model).combine} (no member models)")
    if members:
        weights = ensembles.member_weights(model)
        weighted = ("" if len(set(weights.round(6))) == 1 else
                    ", weights " + ", ".join(f"{w:.3g}" for w in weights))
        print(f"{path}: an ensemble of {len(members)} member{'s' * (len(members) > 1)} "
              f"({', '.join(m.name for m in members)}), combined by "
              f"{ensembles.combine_layer(model).combine}{weighted}")
        if any(ensembles.temperature(m) != 1.0 for m in members):
            print("  member temperatures " + ", ".join(
                f"{t:.4g}" for t in ensembles.temperature(model, per_member=True)))
    elif not ensembles.is_ensemble(model):
        print(f"{path}: {model.name}")
    temperature = ensembles.temperature(model)
    if temperature != 1.0:
        print(f"  temperature       {temperature:.4g} (calibrated)")
    shape = model.input_shape  # (several inputs: a list of shapes)
    print("  input             " + ("x".join(map(str, shape[1:])) if isinstance(shape, tuple)
                                    else str(shape)))
    names, classes = zoo.class_names(model), model.outputs[0].shape[-1]
    print(f"  classes           {classes}" + (f": {some(names, 8)}" if names else
                                              " (no names recorded)"))
    resize, converted = zoo.resize_mode(model), zoo.input_pixels(model) is not None
    print("  resize mode       " + (
        f"{resize}: trained on {TRAINED_ON[resize]}; zoo evaluate, predict and export "
        "resize images so" if resize else "none recorded" + (
            "" if converted else " (zoo predict and export centre-crop, zoo evaluate "
            "resizes whole; --resize chooses)")))
    if converted:
        from zoo.pretrained import describe_preprocessing

        print("  preprocessing     " + describe_preprocessing(zoo.input_pixels(model)) +
              " (its converted weights'; zoo.pretrained.with_preprocessing puts it into the "
              "model, which evaluate, predict and export need)")
    print(f"  parameters        {model.count_params():,}")
    return 0


def _add_info(sub):
    info = sub.add_parser("info", help="facts about one model, or what a saved model or "
                          "ensemble holds")
    info.add_argument("model", help="model name (see `zoo list`), or a MODEL.keras file: its "
                      "members, input, classes and resize mode")
    info.set_defaults(run=_cmd_info)


def _print_weights(model):
    """The published weights a model can load, with their preprocessing (no Keras)."""
    import zoo.pretrained as pretrained

    names = pretrained.list_weights(model)
    default = pretrained.get_weights(model, "imagenet").name if names else None
    for i, name in enumerate(names):
        entry = pretrained.get_weights(model, name)
        label = entry.tag + (" (= imagenet)" if name == default else "")
        accuracy = (f"; top-1 {entry.accuracy[0]}%, top-5 {entry.accuracy[1]}% as published"
                    if entry.accuracy else "")
        print(f"  {'weights' if i == 0 else '':<17} {label}: {entry.file_name} "
              f"({entry.source}){accuracy}")
        preprocessing = pretrained.describe_preprocessing(entry.preprocessing)
        print(f"  {'':<17}   preprocessing: {preprocessing}")
    if names:
        print(f"  {'':<17} files are looked up in {pretrained.cache_dir()}")


def _cmd_demo(args):
    from zoo.cli import demo

    demo.two_host_devices_for_jax()
    quick = dict(epochs=1, snapshot_epochs=2, cycles=2, train_split=QUICK_TRAIN_SPLIT) \
        if args.quick else {}
    given = {k: getattr(args, k) for k in ("epochs", "snapshot_epochs", "cycles")
             if getattr(args, k) is not None}  # else demo.run's defaults
    # A quick run has its own folder: its members' settings differ from the full demo's,
    # whose run in runs/demo would refuse to resume them ("a run with other settings").
    output_dir = args.output_dir or ("runs/demo_quick" if args.quick else "runs/demo")
    demo.run(output_dir=output_dir, seed=args.seed, dataset=args.dataset,
             data_dir=args.data_dir, models=args.models,
             **{**quick, **given})  # what the user names wins
    return 0


def _add_demo(sub):
    demo = sub.add_parser("demo", help="the whole product on the embedded digits",
                          description="Train AlexNet dropout/width variants and a ResNet-18 "
                          "snapshot ensemble on the embedded digits (the first AlexNet under "
                          "the two-device mirrored strategy, the others on one device), "
                          "evaluate every ensemble, export and serve.")
    demo.add_argument("--output-dir", default=None,
                      help="default runs/demo (runs/demo_quick with --quick)")
    demo.add_argument("--dataset", default="digits",
                      help=DATASET_HELP)
    demo.add_argument("--data-dir", default=None, help="TFDS data_dir")
    demo.add_argument("--models", nargs="+", choices=("alexnet", "resnet18"),
                      default=["alexnet", "resnet18"],
                      help="AlexNet dropout/width variants, ResNet-18 snapshots, or both "
                      "(default: both)")
    demo.add_argument("--epochs", type=int, default=None,
                      help="epochs per AlexNet member (default 6)")
    demo.add_argument("--snapshot-epochs", type=int, default=None,
                      help="epochs of the ResNet-18 snapshot run (default 15)")
    demo.add_argument("--cycles", type=int, default=None, help="snapshot cycles (default 5)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quick", action="store_true",
                      help=f"a smoke run on {QUICK_TRAIN_SPLIT!r}: one epoch per AlexNet, "
                           "two snapshot cycles of one epoch (--epochs, --snapshot-epochs "
                           "and --cycles, where given, win)")
    demo.set_defaults(run=_cmd_demo)


def _parser():
    parser = _Parser(
        prog="zoo", description="Paper-faithful Keras models and their ensembles."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each subcommand's flags sit next to its handler (_add_X beside _cmd_X), in help order:
    for add in (_add_list, _add_info, add_train, add_evaluate, add_ensemble, add_distill,
                add_export, add_predict, add_diagnose, add_search, _add_demo):
        add(sub)
    return parser


def _interrupts_kept(hook):
    """``sys.unraisablehook`` that passes a Ctrl-C raised where Python can only report it
    (a garbage-collection callback: JAX's, imported by TensorFlow where installed) on to the
    main thread; it was dropped, and the run trained to its end. It is raised there from a
    thread of its own once the hook has returned: on the main thread ``interrupt_main``
    raises at once, inside the hook, where Python drops it again."""
    def unraisable(args):
        if isinstance(args.exc_value, KeyboardInterrupt):
            import _thread
            import threading

            later = threading.Timer(0.05, _thread.interrupt_main)
            later.daemon = True
            later.start()
            return
        hook(args)

    unraisable.keeps_interrupts = True
    return unraisable


# The project's packages: their warnings are the command's own.
_OURS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(zoo.__file__))),
                           package, "") for package in ("zoo", "ensembles", "data", "safeio"))


@contextlib.contextmanager
def _one_line_warnings(command):
    """The project's warnings shown as ``zoo train: warning: ...``, one line as the errors
    are, not Python's two (the category, then the source line that warned: ``result =
    zoo.train(``). Others' (NumPy's, Keras') keep Python's form, which says whose they are."""
    import warnings

    shown = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):
        if os.path.abspath(filename).startswith(_OURS):
            return f"zoo {command}: warning: {message}\n"
        return shown(message, category, filename, lineno, line)

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = shown


def _refuse_empty_values(args, command_parser):
    """A flag given '' (an unset shell variable: ``--run-dir "$RUN"``) is one line. Read as
    "not given", it trained on into the default run directory, made an ensemble of one
    member for ``--snapshots ''`` and fitted nothing for ``--fit-weights ''``."""
    for action in command_parser._actions:
        value = getattr(args, action.dest, None)
        if value == "" or (isinstance(value, list) and "" in value):
            shown = (action.option_strings[-1] if action.option_strings
                     else action.metavar or action.dest.upper())  # (a positional)
            what = ("names no file" if action.dest == "output" else
                    "is empty (an unset shell variable?): give a value"
                    + (", or leave the flag out" if action.option_strings else ""))
            command_parser.error(f"{shown} {what}; received ''")


def _expand_home(args, command_parser):
    """``~/`` at the start of a value, as a shell expands it (``--output=~/e.keras``, or a
    quoted ``"~/runs"``: the shell leaves those alone). Taken as typed, they wrote into a
    folder named ``~`` in the working directory, which a later ``rm -rf ~`` would mistake
    for the home. Only ``~`` and ``~/``: ``~user`` is a name a file may have. In
    ``--model-arg KEY=VALUE``, the value's (``weights=~/r18.pth``)."""
    home = (lambda v: os.path.expanduser(v)
            if isinstance(v, str) and (v == "~" or v.startswith("~/")) else v)
    for action in command_parser._actions:
        value = getattr(args, action.dest, None)
        if action.dest == "model_arg" and value:  # the value of KEY=VALUE (weights=~/r.pth)
            setattr(args, action.dest, [
                "=".join((key, home(v))) if sep else pair
                for pair in value for key, sep, v in [pair.partition("=")]])
        elif isinstance(value, list):
            setattr(args, action.dest, [home(v) for v in value])
        elif isinstance(value, str):
            setattr(args, action.dest, home(value))


def main(argv=None):
    """Run the command line; returns the exit code."""
    if not getattr(sys.unraisablehook, "keeps_interrupts", False):
        sys.unraisablehook = _interrupts_kept(sys.unraisablehook)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # The subcommand's parser reports what is wrong with its flags (its name, its --help).
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command_parser = commands.choices[args.command]
    if extra:
        command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    for flag in ("batch_size", "epochs", "image_size", "snapshot_epochs", "cycles", "trials",
                 "top", "examples", "overfit_steps", "last", "snapshots", "lr_patience",
                 "mc_dropout", "fine_trials"):
        value, least = getattr(args, flag, None), int(flag != "fine_trials")
        most = {"image_size": MAX_IMAGE_SIZE, "mc_dropout": MAX_MC_DROPOUT}.get(
            flag, 2**31 - 1)  # (TensorFlow's int32)
        if isinstance(value, int) and not least <= value <= most:
            bound = f"at least {least}" if value < least else f"at most {most}"
            command_parser.error(f"--{flag.replace('_', '-')} must be {bound}; received "
                                 f"{value}")
    _refuse_empty_values(args, command_parser)
    _expand_home(args, command_parser)
    seed = getattr(args, "seed", None)
    if isinstance(seed, int) and not 0 <= seed < 2**32:  # Keras' and NumPy's seeds
        command_parser.error(f"--seed must be in [0, 2**32 - 1]; received {seed}")
    try:
        a_file = args.command == "info" and args.model.endswith(".keras")  # read by Keras
        if (args.command == "info" and not a_file and os.path.exists(args.model)
                and args.model not in zoo.list_models()):  # (a folder named alexnet: the model)
            kind = "folder" if os.path.isdir(args.model) else "file"  # (an export, say)
            raise UserError(f"zoo info describes a model name (zoo list) or a .keras file; "
                            f"received {args.model!r}, a {kind} (zoo predict serves an "
                            "export folder or a .onnx file).")
        if getattr(args, "model", None) is not None and not a_file:  # typos: in 0.1 s,
            zoo.check_arguments(args.model, model_args(getattr(args, "model_arg", None)))
        if args.command not in ("list", "info") or a_file:  # (their facts are static)
            tensorflow_started_quietly()
        _check_data_dir(args)
        if isinstance(getattr(args, "lr", None), float):  # (search's are ranges, checked)
            from zoo.optimizers import check_hyperparameters

            if hasattr(args, "momentum"):
                check_momentum(args)
            check_hyperparameters(args.lr, getattr(args, "momentum", 0.0),
                                  getattr(args, "weight_decay", 0.0))
        with contextlib.ExitStack() as held:  # what the command holds to its end (a lock)
            args._held = held
            held.enter_context(_one_line_warnings(args.command))
            code = args.run(args)
            # The output a file or pipe buffers is written here, where a full disk or a
            # reader gone is handled, not as Python exits (status 120 and its traceback).
            sys.stdout.flush()
            return code
    except KeyboardInterrupt:  # Ctrl-C: what to do next, not TensorFlow's 50-line traceback
        if os.environ.get("ZOO_DEBUG"):
            raise
        resumes = {"train": "the last completed epoch", "distill": "the last completed epoch",
                   "demo": "the last completed epoch", "search": "the trials finished"}
        print(f"zoo {args.command}: interrupted"
              + (f"; run the same command to resume from {resumes[args.command]}"
                 if args.command in resumes else ""), file=sys.stderr)
        return 130  # as a shell reports a process stopped by SIGINT
    except BrokenPipeError:  # `zoo info resnet50 | head`: the reader left; as Python's docs do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as err:  # noqa: BLE001 (re-raised unless it is the user's or the OS's)
        line = _one_line(err)
        if line is None:  # a bug: the traceback, and where to report it
            print(f"zoo {args.command}: an internal error, not a mistake of yours; please "
                  "report it with the traceback below (ZOO_DEBUG=1 shows every traceback)",
                  file=sys.stderr)
            raise
        print(f"zoo {args.command}: error: {line}", file=sys.stderr)
        if os.environ.get("ZOO_DEBUG"):  # (the user's mistake, said as such, then where)
            raise
        if line.endswith(": standard output"):  # (and no second error as Python exits)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 2


def _check_data_dir(args):
    """``--data-dir`` is where TFDS keeps its prepared datasets: given with the embedded
    digits or an image folder, which are read from where they are, it would be ignored
    (``--dataset photos --data-dir /datasets`` does not read /datasets/photos)."""
    if getattr(args, "data_dir", None) is None or args.command == "ensemble" and not (
            args.fit_weights or args.calibrate_on):  # (then nothing reads it: that line)
        return
    import data

    dataset = args.dataset or "digits"
    if dataset == "digits" or data.is_image_folder(dataset, args.data_dir):
        what = ("the embedded digits" if dataset == "digits"
                else "an image folder, read from where it is")
        raise UserError(f"--data-dir is where TensorFlow Datasets keeps its prepared "
                        f"datasets; --dataset {dataset} is {what}: leave out --data-dir "
                        f"(received --data-dir {args.data_dir}).")


def _one_line(err):
    """The one-line message for a user's mistake (:class:`UserError`, a dataset that is not
    prepared) or a file-system fault that names its file; None for anything else (a bug)."""
    data = sys.modules.get("data.datasets")
    if isinstance(err, UserError) or (
            data is not None and isinstance(err, data.DatasetNotPreparedError)):
        return str(err)
    if isinstance(err, OSError) and err.filename is not None:
        return _os_fault(err)
    if isinstance(err, OSError) and err.errno in _NO_ROOM and _writing_stdout(err):
        # (`zoo list > /dev/full`: the system names no file; it was "an internal error")
        return f"{err.strerror}: standard output"
    return None


# What a write that the system could not complete says, whoever wrote (no bug of ours).
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


def _writing_stdout(err):
    """Whether ``err`` came from writing the command's output: the innermost frame of its
    traceback prints, or writes to ``sys.stdout``."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    line = frames[-1].line if frames else ""
    return bool(line) and ("print(" in line or "stdout" in line)


def _os_fault(err):
    """``[Errno 28] No space left on device: 'path' (12.3 MB free there)``: what failed,
    on which file, and for a full disk how much room is left."""
    text = f"{err.strerror or err}: {err.filename}"
    if err.filename2 is not None:
        text += f" -> {err.filename2}"
    if err.errno == errno.ENOSPC:
        folder = os.path.dirname(os.path.abspath(str(err.filename)))
        with contextlib.suppress(OSError):
            text += f" ({size_text(shutil.disk_usage(folder).free)} free there)"
    return text


if __name__ == "__main__":
    sys.exit(main())
