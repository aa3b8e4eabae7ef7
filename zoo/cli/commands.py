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
import ast
import contextlib
import difflib
import errno
import functools
import os
import re
import shutil
import sys
import zipfile

import zoo
from safeio import check_writable_file, directory_lock, make_directory, write_csv
from safeio.checks import UserError
from zoo.cli.quiet import tensorflow_started_quietly
from zoo.cli.tables import ERROR_COLUMNS, for_people

QUICK_TRAIN_SPLIT = "train[:320]"  # `zoo demo --quick`: 10 batches of 32 per epoch
MAX_IMAGE_SIZE = 4096  # --image-size: 100,000 asked TensorFlow for 1,257 images of 10^10 px
# (data.datasets.MAX_IMAGE_SIZE, the same, read here without importing TensorFlow)


# The choices of --optimizer, --strategy and --combine, copied here so that no --help has to
# import Keras or TensorFlow to show them (test_commands checks that they equal the
# modules': zoo.optimizers, zoo.training.distribute, ensembles.ensemble).
OPTIMIZER_CHOICES = ("sgd", "nesterov", "adam", "rmsprop", "adagrad")
STRATEGY_CHOICES = ("auto", "one_device", "mirrored", "multi_worker")
COMBINE_CHOICES = ("mean", "logit_mean", "geometric", "vote")
EXPORT_FORMAT_CHOICES = ("saved_model", "onnx", "litert")
FIT_METHOD_CHOICES = ("nll", "greedy")
RESIZE_CHOICES = ("crop", "squash")  # data.preprocess's
_TRAINED_ON = {"crop": "crops", "squash": "whole images"}  # what a model of each view saw
_RESIZED = {"crop": "centre-cropped", "squash": "resized whole"}  # what each does to images


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

    (model,) = _load_models([path])
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
    print(f"  classes           {classes}" + (f": {_some(names, 8)}" if names else
                                              " (no names recorded)"))
    resize, converted = zoo.resize_mode(model), zoo.input_pixels(model) is not None
    print("  resize mode       " + (
        f"{resize}: trained on {_TRAINED_ON[resize]}; zoo evaluate, predict and export "
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
                      help="'digits' (embedded), a TFDS name or an image folder")
    demo.add_argument("--data-dir", default=None, help="TFDS data_dir")
    demo.add_argument("--models", nargs="+", choices=("alexnet", "resnet18"),
                      default=["alexnet", "resnet18"],
                      help="AlexNet dropout/width variants, ResNet-18 snapshots, or both")
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


def _model_args(pairs):
    """``["towers=2", "kernel_initializer=he"]`` -> ``{"towers": 2, "kernel_initializer": "he"}``."""
    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UserError(f"--model-arg takes KEY=VALUE; received {pair!r}.")
        if key in _SET_BY_THE_COMMAND:  # (a second value for them was a TypeError)
            raise UserError(f"--model-arg {key} is set by the command: "
                            f"{_SET_BY_THE_COMMAND[key]}; received {pair!r}.")
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


def _folder_as_recorded(recorded_data, folder):
    """An image folder as config.json records it: its absolute path (a resume from another
    working directory compares folders, not what was typed), or the stopped run's own
    string where that names the same folder (``photos``, ``./photos/`` and ``~/photos``
    are one folder; runs recorded it as typed)."""
    folder = os.path.expanduser(folder)
    before = recorded_data.get("dataset") if isinstance(recorded_data, dict) else None
    if isinstance(before, str) and os.path.isdir(os.path.expanduser(before)):
        with contextlib.suppress(OSError):
            if os.path.samefile(os.path.expanduser(before), folder):
                return before
    return os.path.abspath(folder)


class _Setup:
    """What the model-and-dataset commands share: the input size, the paper's data pipeline
    (``data.pipeline``: training through ``--augment``, evaluation on the centre crop when
    it crops), the training set's pixel statistics (saved in the run directory) and a
    builder that puts the normalisation inside the model."""

    def __init__(self, args, run_dir, strategy=None, check=None):
        """``check(setup)``: the command's own refusals that need the dataset's counts or
        the model's arguments, made before the statistics pass (a full pass over the
        training set) and before anything is written."""
        import data

        self.strategy = strategy
        # The user's mistakes first, and nothing written for them: the dataset, the
        # augmentation, the model's arguments (a model built and dropped: 0.2 to 1.8 s
        # here from resnet18 to resnet152 under TensorFlow; under JAX the first build's
        # random-number kernels, which the real build then reuses).
        data.augment.parse(args.augment)  # (before data.info, which may download)
        self.model_kwargs = _model_args(args.model_arg)
        info = data.info(args.dataset, data_dir=args.data_dir)
        entry = zoo.registry.get_entry(args.model)
        native = info.image_shape[0] if info.image_shape else entry.input_size
        size = args.image_size or max(native, entry.min_input_size)
        self.model = args.model
        self.info = info
        self._check_model(size)
        # What config.json records of the data (zoo.train's settings): a resume with others
        # is refused here, before the statistics pass, as the recipe's own are.
        from zoo.training import run_config

        dataset = args.dataset
        if data.is_image_folder(dataset, args.data_dir):
            dataset = _folder_as_recorded(run_config.recorded(run_dir, "data"), dataset)
        self.settings = {"data": {"dataset": dataset, "image_size": size,
                                  "augment": args.augment, "normalize": args.normalize,
                                  "batch_size": args.batch_size}}

        run_config.check_not_foreign(run_dir)  # never a folder of someone else's files
        _check_outputs_ours(run_dir, args.command)
        run_config.check_resume(run_dir, self.settings)
        if check is not None:
            check(self)
        writes = zoo.distribute.writes_run(strategy)  # in a cluster, its chief alone
        # Another run there is one line now, before any work; and none can write its
        # statistics over these, nor its own run in the command's later steps: the lock is
        # held to the command's end (zoo.train's own lock, in this thread, passes through).
        lock = directory_lock(run_dir, share=True) if writes else contextlib.nullcontext()
        held = getattr(args, "_held", None)  # (none where a test makes a _Setup itself)
        if held is not None:
            held.enter_context(lock)
            lock = contextlib.nullcontext()
        with lock:
            self._statistics(args, run_dir, size, info, writes)
        self.size = size
        self.normalize = args.normalize
        self.val_split = next(iter(self.data.held_out), None)
        if self.val_split is None:  # the plateaus and best.keras follow the training loss
            print(f"No validation or test split in {args.dataset} (it has "
                  f"{', '.join(sorted(info.splits)) or 'none known'}): the learning rate and "
                  "best.keras follow the training loss. An image folder's validation/ (or "
                  "val/, valid/) and test/ are held out.", flush=True)
        elif self.val_split == "test":  # its score then is no held-out one: say so
            print(f"Note: {args.dataset} has no validation split: the test split picks "
                  "best.keras and the learning-rate drops, so its score is not a held-out "
                  "one.", flush=True)

    def _statistics(self, args, run_dir, size, info, writes):
        """The data pipeline, with the pixel statistics the run trained with (its
        ``statistics.npz``) or computed in a pass over the training set, and saved."""
        import data

        saved = _resumed_statistics(run_dir)
        if saved is None:
            print(f"Computing the training set's pixel statistics ({size}x{size}) ...",
                  flush=True)
        else:
            print(f"Resuming: the pixel statistics the run trained with "
                  f"({os.path.join(run_dir, 'statistics.npz')})", flush=True)
        self.data = data.pipeline(args.dataset, size, augment=args.augment,
                                  batch_size=args.batch_size, seed=args.seed,
                                  data_dir=args.data_dir, info=info,
                                  on_bad_image=_bad_image_policy(args), statistics=saved)
        if writes and saved is None:
            make_directory(run_dir)
            self.data.statistics.save(os.path.join(run_dir, "statistics.npz"))

    def _check_model(self, size):
        """Build the model once on a plain input of ``size``, as :meth:`build` will on the
        pipeline's: a bad ``--model-arg`` value is one line before the data is read."""
        import gc

        import keras

        image = keras.Input((size, size, 3))
        probe = zoo.get_model(self.model, classes=self.info.num_classes, **self.model_kwargs,
                              input_tensor=image)
        del probe
        gc.collect()  # its weights (a VGG-16's 553 MB), before the real model's are made

    def load(self, split, shuffle=None):
        return self.data.load(split, shuffle=shuffle)

    def load_train(self, strategy="auto"):
        """The training split, without each epoch's last, smaller batch where it would not
        split over ``strategy``'s devices (:func:`_drops_last_batch`)."""
        return self.data.train(drop_remainder=_drops_last_batch(
            self.info.splits.get(self.data.train_split), self.data.batch_size, strategy))

    def build(self, **overrides):
        return zoo.get_model(self.model, classes=self.info.num_classes,
                             **{**self.model_kwargs, **overrides},
                             input_tensor=self.data.input(normalize=self.normalize))


# What a command writes in its run directory besides a run's own entries (RUN_ENTRIES).
_COMMAND_OUTPUTS = {"diagnose": ("update_ratios.csv", "activations_at_init.csv"),
                    "search": ("search.csv", "search.png")}


def _check_outputs_ours(run_dir, command):
    """Refuse, before any work, the files the command would write in ``run_dir``
    (``statistics.npz``, ``search.csv``, ...) where no run of this project wrote them:
    no config.json of a run, nor pixel statistics of ours beside them. A user's own
    statistics.npz, or their search.csv, was replaced without a word."""
    from zoo.training import run_config

    names = ("statistics.npz", *_COMMAND_OUTPUTS.get(command, ()))
    present = [n for n in names if os.path.lexists(os.path.join(run_dir, n))]
    if not present or run_config.holds_stopped_run(run_dir) or run_config._is_our_config(
            os.path.join(run_dir, "config.json")):  # (a stopped run's: read when resumed)
        return
    path = os.path.join(run_dir, "statistics.npz")
    if os.path.isfile(path) and not os.path.islink(path):
        import data

        try:
            data.ImageStatistics.load(path)
            return  # ours: the command's first write (a run stopped before its config)
        except (UserError, OSError):
            pass
    raise UserError(f"{run_dir} holds {', '.join(present)}, which no run of this project "
                    "wrote: the command would replace them. Give a new or empty --run-dir, "
                    "or move them aside.")


def _resumed_statistics(run_dir):
    """The pixel statistics a stopped run in ``run_dir`` trained with (its backup is there),
    or None for a new run: a resume normalises as the run did, and refuses other settings
    without first reading the whole training set."""
    path = os.path.join(run_dir, "statistics.npz")
    from zoo.training import run_config

    if not (run_config.holds_stopped_run(run_dir) and os.path.exists(path)):
        return None
    import data

    try:
        return data.ImageStatistics.load(path)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        raise UserError(
            f"{path} is unreadable ({type(err).__name__}: {str(err)[:80]}), but {run_dir} "
            "holds a backup of a run that trained with it. Restore it, or give another "
            "--run-dir.") from None


def _bad_image_policy(args):
    """``--on-bad-image error|skip`` as ``data.load``'s ``on_bad_image``."""
    return {"error": "raise", "skip": "skip"}[args.on_bad_image]


def _default_run_dir(args, kind=None):
    """``--run-dir``, else ``runs/MODEL_DATASET[_KIND]``; never inside an image folder, whose
    sub-folders are its splits and classes (``--dataset .`` made ``./runs`` a split)."""
    folder = os.path.expanduser(args.dataset)  # ("~/shapes": the home's, as in a shell)
    dataset = os.path.basename(os.path.abspath(folder))
    run_dir = args.run_dir or os.path.join(
        "runs", f"{args.model}_{dataset}" + (f"_{kind}" if kind else ""))
    import data

    if data.is_image_folder(folder, args.data_dir):
        root, inside = os.path.realpath(folder), os.path.realpath(run_dir)
        if os.path.commonpath([root, inside]) == root:
            raise UserError(f"The run directory {run_dir} is inside the image folder "
                            f"{args.dataset}, whose sub-folders are its splits and classes: "
                            "give --run-dir outside it, or run from another folder.")
    return run_dir


def _strategy(args):
    """The strategy for ``zoo.train``, made first thing: splitting a device for TensorFlow's
    mirrored strategy must precede any TensorFlow op, and joining a JAX cluster any JAX
    computation. On other backends than TensorFlow, its name (keras.distribution), checked
    against the devices there before the statistics pass (one device cannot mirror)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        strategy = zoo.distribute.get_strategy(args.strategy)
        if args.jit_compile and zoo.distribute.splits_a_device(strategy):
            raise UserError(
                f"--jit-compile does not combine with --strategy {args.strategy} here: the "
                f"strategy's {strategy.num_replicas_in_sync} replicas are one device split "
                "in parts, between which XLA cannot reach the variables. Leave "
                "--jit-compile out, or train on one device (--strategy one_device).")
        return strategy
    if args.strategy == "multi_worker":
        zoo.distribute.initialize_cluster(args.coordinator, args.num_processes,
                                          args.process_id,
                                          timeout=120 if args.cluster_timeout is None
                                          else args.cluster_timeout)
    replicas = zoo.distribute.backend_distribution(args.strategy)[2]  # zoo.train's ask
    if args.batch_size % replicas:  # (not after the statistics pass)
        raise UserError(
            f"--batch-size {args.batch_size} does not split over the {replicas} devices of "
            f"--strategy {args.strategy} (keras.distribution splits every batch evenly): "
            f"give a multiple of {replicas}.")
    return args.strategy


def _whole_images_hint(setup):
    """A model trained on whole images is predicted and served so: say it."""
    if setup.data.resize == "squash":  # no random crops: not evaluated on the centre crop
        print("Trained on whole images resized to the input size (no crop augmentation): "
              "the checkpoints record it, and zoo predict and zoo export resize images "
              "whole for them (--resize squash).")


def _fit_verbosity():
    """Keras' progress bar on a terminal; one line per epoch into a file or a pipe (a log),
    as Keras' own ``verbose="auto"`` advice has it, not thousands of bar updates."""
    return 1 if sys.stdout.isatty() else 2


def _check_cluster_flags(args):
    """The flags of a JAX cluster, given where nothing would read them: one line."""
    import keras

    cluster = [flag for flag, value in (
        ("--coordinator", args.coordinator), ("--num-processes", args.num_processes),
        ("--process-id", args.process_id),
        ("--cluster-timeout", args.cluster_timeout))
        if value is not None]
    if cluster and args.strategy != "multi_worker":  # each machine would train alone
        raise UserError(f"{', '.join(cluster)} join a JAX cluster: give --strategy "
                        f"multi_worker with them; received --strategy {args.strategy}.")
    if args.cluster_timeout is not None and not 0 < args.cluster_timeout < float("inf"):
        raise UserError(f"--cluster-timeout is the seconds to wait for the other processes: "
                        f"a finite number > 0; received {args.cluster_timeout:g}.")
    if cluster and keras.backend.backend() == "tensorflow":  # TF_CONFIG decides there
        raise UserError(f"{', '.join(cluster)} join a JAX cluster (KERAS_BACKEND=jax); under "
                        "TensorFlow, --strategy multi_worker reads the cluster from the "
                        "TF_CONFIG variable instead.")


def _cmd_train(args):
    if args.snapshots and args.lr_patience is not None:
        raise UserError(f"--lr-patience {args.lr_patience} does not combine with --snapshots: "
                        "the snapshot cycles' cosine schedule sets the learning rate, and "
                        "no plateau divides it.")
    if args.snapshots and args.ema:
        raise UserError("--ema and --snapshots do not combine: a snapshot ensemble "
                        "averages predictions of snapshots, not weights.")
    _check_cluster_flags(args)
    strategy = _strategy(args)
    run_dir = _default_run_dir(args)
    setup = _Setup(args, run_dir, strategy,
                   check=functools.partial(_check_cycles, args) if args.snapshots else None)
    val = setup.load(split=setup.val_split) if setup.val_split else None
    common = dict(epochs=args.epochs, run_dir=run_dir, seed=args.seed, strategy=strategy,
                  verbose=_fit_verbosity(),
                  precision=args.precision, jit_compile=args.jit_compile,
                  model_kwargs=setup.model_kwargs, class_names=setup.info.class_names,
                  resize=setup.data.resize, settings=setup.settings)
    if args.snapshots:
        import ensembles

        result, paths = ensembles.train_snapshots(
            setup.build, setup.load_train(strategy), val, cycles=args.snapshots,
            learning_rate=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
            optimizer=args.optimizer, **common)
    else:
        result = zoo.train(
            setup.build, setup.load_train(strategy), val,
            **({} if args.lr_patience is None else {"lr_patience": args.lr_patience}),
            optimizer=lambda: zoo.make_optimizer(args.optimizer, args.lr, args.momentum,
                                                 args.weight_decay, ema=args.ema),
            **common)
    if "test" in setup.info.splits and _unlabelled(args.dataset, "test", args.data_dir):
        print(f"No test score: the test split of {args.dataset} has no labels (-1, as TFDS "
              "marks them).")
    elif "test" in setup.info.splits:
        test = setup.load(split="test")
        # (padded to split over the replicas, as zoo.train pads validation: a last batch
        # smaller than them left one empty, after the whole run had trained)
        replicas = zoo.distribute.backend_distribution(strategy)[2]
        test = zoo.distribute.cluster_share(test) if zoo.distribute.process_count() > 1 \
            else zoo.distribute.even_validation(replicas, test)
        for which in _scored_weights(result.model, run_dir, args.strategy):
            scores = result.model.evaluate(test, return_dict=True, verbose=0)
            top1 = next(v for k, v in scores.items() if k.endswith("top1_accuracy"))
            top5 = next(v for k, v in scores.items() if k.endswith("top5_accuracy"))
            print(f"test top-1 error {100 * (1 - top1):.2f} %, top-5 error "
                  f"{100 * (1 - top5):.2f} % ({which})")
    print(f"Run directory: {run_dir} (history.csv, checkpoints/, logs/, plots)")
    _whole_images_hint(setup)
    if args.snapshots:
        snapshots = os.path.dirname(paths[0]) if paths else os.path.join(run_dir, "snapshots")
        print(f"Snapshots: {snapshots} ({len(paths)} files). Combine them with:\n"
              f"  zoo ensemble {os.path.join(run_dir, 'checkpoints', 'last.keras')} "
              f"--snapshots {snapshots} --last {min(4, len(paths))} "
              f"--output {os.path.join(run_dir, 'snapshot_ensemble.keras')}")
    return 1 if result.diverged else 0


def _drops_last_batch(examples, batch_size, strategy):
    """Whether ``zoo train`` leaves out each epoch's last, smaller batch of ``examples`` (a
    count, or None where not known) for ``strategy`` (``zoo.train``'s; under TensorFlow a
    tf.distribute strategy, which passes through): keras.distribution (JAX, several
    devices) refuses any batch that does not split evenly over them, and under
    tf.distribute a batch smaller than the replicas left one empty, which Keras' step
    failed on (a batch size of 8 on the digits' 1,257 images). A smaller last batch that
    splits is kept."""
    import keras

    replicas = zoo.distribute.backend_distribution(strategy or "auto")[2]
    if replicas == 1:
        return False
    if keras.backend.backend() != "tensorflow" or examples is None:
        return True
    return 0 < examples % batch_size < replicas


def _check_cycles(args, setup):
    """``--snapshots M`` against the most updates the run can make (``ensembles.
    train_snapshots`` checks the exact count, once the pipeline is built)."""
    examples = setup.info.splits.get("train")
    if examples is None:  # (a dataset without one is the pipeline's one line)
        return
    steps = (examples // args.batch_size if _drops_last_batch(
        examples, args.batch_size, setup.strategy) else -(-examples // args.batch_size))
    if args.snapshots > args.epochs * steps:
        raise UserError(
            f"--snapshots must be at most the run's updates, --epochs x batches per epoch "
            f"= {args.epochs} x {steps} ({examples} training examples in batches of "
            f"{args.batch_size}) = {args.epochs * steps}; received {args.snapshots}.")


def _scored_weights(model, run_dir, strategy):
    """Put in ``model`` each of the weights a command scores, saying which: the last
    epoch's, then checkpoints/best.keras's where validation chose another epoch (the run
    named best.keras and printed the last epoch's score). One process only: in a cluster,
    scoring is every process's collective work, and the last epoch's alone is scored."""
    yield "the last epoch's weights"
    best = os.path.join(run_dir, "checkpoints", "best.keras")
    if strategy == "multi_worker" or not os.path.isfile(best):
        return
    weights, last = zoo.load_model(best, compile=False).get_weights(), model.get_weights()
    import numpy as np

    # (not bit for bit: with EMA, Keras' swaps round the same epoch's weights by an ulp)
    if not all(np.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(weights, last)):
        model.set_weights(weights)
        try:
            yield f"{best}, the epoch validation chose"
        finally:
            model.set_weights(last)


def _add_train(sub):
    train = sub.add_parser("train", help="train a model with the paper recipe",
                           description="Train a zoo model with the paper recipe (SGD, momentum "
                           "0.9, weight decay 5e-4, learning rate divided by 10 on plateaus), "
                           "or, with --snapshots M, as a cyclic snapshot ensemble. Run again "
                           "with the same arguments to resume after a crash.")
    _model_and_data_flags(train, epochs=20, run_dir="runs/MODEL_DATASET")
    train.add_argument("--lr", type=float, default=0.01,
                       help="initial learning rate (with --snapshots: at each restart)")
    train.add_argument("--optimizer", default="sgd", metavar="OPTIMIZER",
                       choices=OPTIMIZER_CHOICES,
                       help="sgd: the paper's (momentum, L2 decay through the gradient); "
                       "nesterov; adam, rmsprop, adagrad with decoupled weight decay")
    train.add_argument("--momentum", type=float, default=None,
                       help="SGD/Nesterov momentum (RMSprop's momentum with rmsprop; adam "
                       "and adagrad have none) (default: 0.9)")
    train.add_argument("--weight-decay", type=float, default=5e-4,
                       help="weight decay (the paper's 5e-4)")
    train.add_argument("--lr-patience", type=int, default=None,
                       help="epochs without improvement before the learning rate is "
                       "divided by 10 (default 5; not with --snapshots, whose cycles set "
                       "the learning rate)")
    train.add_argument("--ema", action="store_true",
                       help="Polyak averaging: keep an exponential moving average of the "
                       "weights (momentum 0.99), validate, checkpoint and test with it")
    train.add_argument("--snapshots", type=int, default=None, metavar="M",
                       help="train ONE run as a snapshot ensemble: M cosine cycles with warm "
                       "restarts (Huang et al. 2017), a snapshot at the end of each, written "
                       "to RUN_DIR/snapshots (no ReduceLROnPlateau)")
    train.add_argument("--strategy", default="auto", metavar="STRATEGY",
                       choices=STRATEGY_CHOICES,
                       help="auto, one_device, mirrored or multi_worker (TensorFlow: by "
                       "TF_CONFIG; JAX: by the three flags below)")
    cluster = train.add_argument_group(
        "a JAX cluster (--strategy multi_worker under KERAS_BACKEND=jax)",
        "Start the same command on every machine; each flag falls back on Keras' variable "
        "KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES or _PROCESS_ID.")
    cluster.add_argument("--coordinator", metavar="HOST:PORT",
                         help="process 0's address and a free port, the same on every process")
    cluster.add_argument("--num-processes", type=int, metavar="N")
    cluster.add_argument("--process-id", type=int, metavar="I", help="0 on the coordinator")
    cluster.add_argument("--cluster-timeout", type=float, default=None, metavar="SECONDS",
                         help="how long each process waits for the others to start (120)")
    train.add_argument("--precision", choices=("mixed_float16", "mixed_bfloat16"), default=None)
    train.add_argument("--jit-compile", action="store_true", default=None,
                       help="compile with XLA (always on JAX)")
    train.set_defaults(run=_cmd_train)


def _check_momentum(args):
    """``--momentum`` with an optimizer that has none is one line (it was dropped without a
    word); left out, it is 0.9 (the paper's, and RMSprop's here)."""
    if args.momentum is not None and args.optimizer in ("adam", "adagrad"):
        raise UserError(f"--momentum is SGD's, Nesterov's and RMSprop's; --optimizer "
                        f"{args.optimizer} has none: received --momentum {args.momentum:g}.")
    if args.momentum is None:
        args.momentum = 0.9


def _cmd_distill(args):
    import data
    import ensembles
    from ensembles.distillation import _check_softening, check_alpha

    check_alpha(args.alpha)  # before any work
    _check_softening(args.temperature)  # (at most MAX_TEMPERATURE: before any work)
    (teacher,) = _load_models([args.teacher])
    view = zoo.resize_mode(teacher)
    if args.augment is None:  # the student learns on the teacher's view of the images
        args.augment = "crop" if view == "crop" else "none"
        if view == "crop":
            print("Augmentation: crop, as the teacher was trained on crops (--augment "
                  "chooses)", flush=True)
    elif view is not None and view != data.augment.resize_mode(args.augment):
        print(f"Note: the teacher was trained on {_TRAINED_ON[view]} (resize {view}); with "
              f"--augment {args.augment} the student learns from it on "
              f"{_TRAINED_ON[data.augment.resize_mode(args.augment)]}.", flush=True)
    if args.image_size is None:  # the student sees the teacher's images
        args.image_size = teacher.input_shape[1]
    elif args.image_size != teacher.input_shape[1]:
        raise UserError(f"--image-size {args.image_size}: the teacher takes "
                        f"{teacher.input_shape[1]}x{teacher.input_shape[2]} images, and the "
                        "student must see the same ones (leave --image-size out).")
    run_dir = _default_run_dir(args, "distilled")
    _check_models_fit([teacher], data.info(args.dataset, data_dir=args.data_dir),
                      args.dataset)  # the student learns the teacher's classes on this data
    setup = _Setup(args, run_dir)
    val = setup.load(split=setup.val_split) if setup.val_split else None
    _seed(args.seed)
    student = setup.build()
    print(f"Distilling {teacher.name} ({teacher.count_params():,} parameters) into "
          f"{student.name} ({student.count_params():,}) at temperature {args.temperature:g}, "
          f"soft-target weight {args.alpha:g}", flush=True)
    result = ensembles.distill(
        teacher, student, setup.load_train(), val, temperature=args.temperature,
        alpha=args.alpha, epochs=args.epochs, run_dir=run_dir, seed=args.seed,
        lr_patience=args.lr_patience, settings=setup.settings, verbose=_fit_verbosity(),
        resize=setup.data.resize,
        optimizer=lambda: zoo.make_optimizer(args.optimizer, args.lr, args.momentum,
                                             args.weight_decay))
    held_out = "test" if "test" in setup.info.splits else setup.val_split
    if held_out == "test" and _unlabelled(args.dataset, "test", args.data_dir):
        held_out = setup.val_split if setup.val_split != "test" else None
        print(f"The test split of {args.dataset} has no labels (-1, as TFDS marks them): "
              f"scoring the {held_out} split instead" if held_out else
              f"No score: the test split of {args.dataset} has no labels.")
    if held_out:
        data_split = setup.load(split=held_out)

        def scored(name, model, which=None):
            row = ensembles.evaluate(model, data_split).loc["ensemble"]  # the whole
            print(f"{held_out} {name}: top-1 error {100 * row['top1_error']:.2f} %, NLL "
                  f"{row['nll']:.4f}, ECE {row['ece']:.4f}" + (f" ({which})" if which else ""))

        for which in _scored_weights(student, run_dir, getattr(args, "strategy", None)):
            scored("student", student, which)
        scored("teacher", teacher)
    print(f"Run directory: {run_dir}; the student: "
          f"{os.path.join(run_dir, 'checkpoints', 'best.keras')}")
    _whole_images_hint(setup)
    return 1 if result.diverged else 0


def _add_distill(sub):
    distill = sub.add_parser(
        "distill", help="distil a saved ensemble (or any model) into one network",
        description="Train a zoo model on a teacher's probabilities softened at a "
        "temperature and on the labels (Hinton et al. 2015): loss = alpha T^2 KL(teacher_T || "
        "student_T) + (1 - alpha) CE(labels, student). The run directory's checkpoints hold "
        "the student alone; run again with the same arguments to resume after a crash.")
    distill.add_argument("teacher", metavar="TEACHER.keras",
                         help="the teacher, e.g. a saved ensemble (zoo ensemble)")
    _model_and_data_flags(distill, epochs=20, run_dir="runs/MODEL_DATASET_distilled",
                          image_size_help="the teacher's, the only one it takes",
                          augment=None, augment_help="crop for a teacher that records "
                          "resize crop, else none: the student learns on the teacher's view")
    distill.add_argument("--temperature", type=float, default=4.0,
                         help="T, the softening of both distributions (default 4)")
    distill.add_argument("--alpha", type=float, default=0.9,
                         help="the soft targets' weight; the labels' is 1 - alpha (default "
                         "0.9)")
    distill.add_argument("--lr", type=float, default=0.01, help="initial learning rate")
    distill.add_argument("--optimizer", default="sgd", metavar="OPTIMIZER",
                         choices=OPTIMIZER_CHOICES, help="as zoo train's")
    distill.add_argument("--momentum", type=float, default=None,
                         help="as zoo train's (default: 0.9)")
    distill.add_argument("--weight-decay", type=float, default=5e-4)
    distill.add_argument("--lr-patience", type=int, default=5,
                         help="epochs without improvement before the learning rate is "
                         "divided by 10")
    distill.set_defaults(run=_cmd_distill)


def _cmd_diagnose(args):
    import data

    ignored = [op for op in data.augment.parse(args.augment) if op != "crop"]
    if ignored:  # (accepted, then changed nothing: two reports equal to every digit)
        raise UserError(f"zoo diagnose checks the model on the training images as evaluated "
                        f"(the same examples at every step, so that a tiny subset can be "
                        f"overfitted): --augment {args.augment} would change nothing but the "
                        f"view; leave out {'+'.join(ignored)} (crop: its centre crops).")
    run_dir = _default_run_dir(args, "diagnose")

    def check(setup):  # more examples than the training split holds: before its statistics
        examples = setup.info.splits.get("train")
        if examples is not None and args.examples > examples:
            raise UserError(f"--examples {args.examples} is more than the training split of "
                            f"{args.dataset} holds ({examples}); give at most {examples}.")

    setup = _Setup(args, run_dir, check=check)
    _seed(args.seed)
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


def _add_diagnose(sub):
    diagnose = sub.add_parser(
        "diagnose", help="the lecture notes' training checks for a model",
        description="Initial loss vs ln(classes), overfitting a tiny subset, update/weight "
        "ratios per layer, activations and dead ReLUs at initialisation and after training.")
    _model_and_data_flags(diagnose, epochs=1, run_dir="runs/MODEL_DATASET_diagnose")
    diagnose.add_argument("--lr", type=float, default=0.01, help="learning rate")
    diagnose.add_argument("--examples", type=int, default=20,
                          help="size of the subset to overfit")
    diagnose.add_argument("--overfit-steps", type=int, default=100)
    diagnose.set_defaults(run=_cmd_diagnose)


def _cmd_search(args):
    from zoo.training.search import check_rerun, search_space, searched_and_fixed

    space = dict(learning_rate=tuple(args.lr), weight_decay=tuple(args.weight_decay),
                 dropout=tuple(args.dropout) if args.dropout else None, width=args.width,
                 optimizer=args.optimizer)
    fixed = _model_args(args.model_arg)
    try:  # (its ranges, before any work; named as the flags the user typed)
        both = searched_and_fixed(search_space(**space), fixed)
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
    run_dir = _default_run_dir(args, "search")

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

    setup = _Setup(args, run_dir, check=check)
    result = zoo.search(setup.build, setup.load_train(), setup.load(split=setup.val_split),
                        run_dir=os.path.join(run_dir, "tuner"), verbose=2,  # a line an epoch
                        **arguments(setup))
    table = result.table
    with _wide_pandas():
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


def _add_search(sub):
    search = sub.add_parser(
        "search", help="random search of learning rate and weight decay, coarse then fine",
        description="keras-tuner random search on a log scale of the learning rate and the "
        "weight decay (dropout and width optional), a coarse stage then a fine one around "
        "the best trials; writes search.csv and search.png.")
    _model_and_data_flags(search, epochs=2, run_dir="runs/MODEL_DATASET_search")
    search.add_argument("--trials", type=int, default=8, help="coarse trials")
    search.add_argument("--fine-trials", type=int, default=None,
                        help="fine trials (default: as many as --trials; 0: none)")
    search.add_argument("--top", type=int, default=3, help="best coarse trials to refine")
    search.add_argument("--lr", type=float, nargs=2, default=(1e-4, 1e-1),
                        metavar=("LOW", "HIGH"))
    search.add_argument("--weight-decay", type=float, nargs=2, default=(1e-6, 1e-2),
                        metavar=("LOW", "HIGH"))
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


def _load_models(paths):
    import ensembles

    models = []
    for path in paths:
        if not path.endswith(".keras"):
            raise UserError(f"Expected a saved .keras model file; received {path!r}.")
        # Without the optimizer: no command here trains the loaded model, and a mixed
        # precision run's (a LossScaleOptimizer) warned of skipped variables at every load.
        models.append(ensembles.load(path, compile=False))
    return models


def _unlabelled(dataset, split, data_dir):
    """Whether a TFDS dataset's ``split`` holds no labels: TFDS writes -1 for examples
    without one (imagenet2012's test split, from its manual tar). Read from its first
    example; an image folder's and the digits' examples always have one."""
    import data

    if dataset == "digits" or data.is_image_folder(dataset, data_dir):
        return False
    _, label = next(iter(data.load(dataset, split, batch_size=None, shuffle=False,
                                   data_dir=data_dir)))
    return int(label) < 0


def _load_split(args, split, models, multi_crop=False):
    """``args.dataset``'s ``split`` as ``zoo evaluate`` reads it for ``models`` (checked to
    fit it): resized to their input size, or at the larger scale for the centre crop
    (:func:`_evaluation_view`) and the multi-crop TTA."""
    import data

    _check_models_fit(models, data.info(args.dataset, data_dir=args.data_dir), args.dataset)
    size = models[0].input_shape[1]
    crop = not multi_crop and _evaluation_view(args, models) == "crop"
    sizing = (dict(scale=data.crop_scale(size)) if multi_crop or crop else
              dict(image_size=size))
    if crop:  # as `zoo train --augment crop` evaluates
        sizing["center_crop"] = size
    return data.load(args.dataset, split, batch_size=args.batch_size, data_dir=args.data_dir,
                     on_bad_image=_bad_image_policy(args), **sizing)


def _split_names(spec):
    """The split names a TFDS-style ``spec`` reads (``"validation+test[:50%]"``:
    validation and test; ``"all"`` stands for every split)."""
    return {part.split("[")[0].strip() for part in str(spec).split("+")}


def _shared_splits(one, other):
    """The splits both specs read (every one of the other's where one reads ``all``)."""
    one, other = _split_names(one), _split_names(other)
    return other if "all" in one else one if "all" in other else one & other


def _note_training_split(flag, split):
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


TABLE_SUFFIXES = (".csv", ".tsv", ".txt")  # the existing files a table may replace


def _write_table(table, output, **kwargs):
    """``table`` at ``output``: tab-separated for a ``.tsv`` name (it held commas),
    comma-separated otherwise."""
    write_csv(table, output, sep="\t" if output.lower().endswith(".tsv") else ",", **kwargs)


def _check_table_output(output, inputs):
    """``--output`` names the table to write: never one of the command's inputs, nor an
    existing file that is no table (a model, its weights, an image), which a slip of the
    keyboard or of tab completion would replace at the end of the work."""
    if not os.path.isfile(output):
        return
    _check_not_an_input(output, inputs, "inputs", "table")
    if not output.lower().endswith(TABLE_SUFFIXES) or zipfile.is_zipfile(output):
        raise UserError(f"--output {output} exists and is not a table ({', '.join(TABLE_SUFFIXES)}"
                        "): it would be replaced. Name another file, or move it aside.")


def _check_view_flags(args):
    """The flags of the evaluation view that contradict each other: one line, before any
    work."""
    if args.center_crop and args.resize == "squash":
        raise UserError("--center-crop is --resize crop; received --resize squash with it: "
                        "give one of them.")
    if getattr(args, "tta", "none") in ("5crop", "10crop") and args.resize == "squash":
        raise UserError(f"--tta {args.tta} takes crops of images loaded at the larger scale; "
                        "received --resize squash with it: give one of them.")


def _evaluation_view(args, models, together="models scored together see the same images"):
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


def _say_evaluation_view(args, models, view):
    """Say the view when it comes from the models' records."""
    recorded = [m.name for m in models if zoo.resize_mode(m)]
    if args.center_crop or args.resize:
        return
    if not recorded:  # zoo predict and export would centre-crop them: say it once
        print(f"Test images {_RESIZED[view]} (--resize {view}): "
              f"{_none_recorded(models)}; zoo predict and export centre-crop such a model "
              "unless told --resize.", flush=True)
        return
    whose = ((f"as the model{'s were' if len(models) > 1 else ' was'} trained")
             if len(recorded) == len(models) else
             f"as {', '.join(recorded)} record{'s' * (len(recorded) == 1)} (the others none)")
    print(f"Test images {_RESIZED[view]}, {whose} (--resize {view})", flush=True)


def _none_recorded(models):
    """``"m records no view"`` (or ``"m and n record no view"``)."""
    names = [m.name for m in models]
    return (f"{names[0]} records" if len(names) == 1 else
            f"{', '.join(names[:-1])} and {names[-1]} record") + " no view"


def _no_view_note(source, crops):
    """The note of zoo predict and export for a model that records no view, which ``crops``
    (what is done to its images) says they centre-crop."""
    return (f"Note: {source} records no view; {crops} (--resize crop), where zoo evaluate "
            "scores such a model on whole images: give --resize squash for a model trained "
            "on them.")


def _say_crops_of_whole_images(models, tta):
    """A note where ``--tta`` crops images for models trained on whole ones: the user asked
    for crops, but such a model has never seen a part of an image."""
    whole = [m.name for m in models if zoo.resize_mode(m) == "squash"]
    if whole:
        were = "was" if len(whole) == 1 else "were"
        print(f"Note: {', '.join(whole)} {were} trained on whole images (resize squash); "
              f"--tta {tta} scores crops of them.", flush=True)


def _check_models_fit(models, info, dataset):
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
                f"{model.name} predicts {classes} classes ({_some(names or range(classes))}); "
                f"{dataset} has {info.num_classes} ({_some(info.class_names)}): score a model "
                "on data of its own classes, in its order.")


def _some(names, count=5):
    names = [str(n) for n in names]
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")


def _cmd_evaluate(args):
    import data
    import ensembles

    if args.output:  # before any work
        check_writable_file(args.output)
        _check_table_output(args.output, args.models)
    _check_view_flags(args)
    _check_calibration_flags(args)
    from data.datasets import _split_parts
    from zoo.saving import check_model_file, check_square_images, check_takes_images

    for path in args.models:  # (a missing file before any data is read)
        check_model_file(path)
    info = data.info(args.dataset, data_dir=args.data_dir)
    for given in (args.split, args.calibrate_on):  # a typo: before the models are read
        if given is not None:
            _split_parts(given, info.splits, info.name)
    split = args.split
    if split is None:  # the held-out split the dataset has
        splits = info.splits
        labelled = [s for s in ("test", *data.VALIDATION_SPLITS) if s in splits]
        if labelled[:1] == ["test"] and _unlabelled(args.dataset, "test", args.data_dir):
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
    models = _load_models(args.models)
    for model in models:  # (the crops below are squares of its size)
        check_takes_images(model, f"{args.dataset}'s pipeline")
        check_square_images(model, "zoo evaluate")
    size = models[0].input_shape[1]
    tta = None if args.tta == "none" else args.tta
    multi_crop = tta in ("5crop", "10crop")
    if multi_crop:  # the paper's crops of images loaded at a larger scale
        print(f"Test images: shorter side {data.crop_scale(size)}, centre square, {tta} of "
              f"{size}x{size}")
        _say_crops_of_whole_images(models, tta)
    if not multi_crop:  # (models trained on other views: one line, here)
        _say_evaluation_view(args, models, _evaluation_view(args, models))
    test = _load_split(args, split, models, multi_crop)
    held_out = None
    if args.calibrate_on is not None:
        print(f"Temperatures fitted on the {args.calibrate_on} split", flush=True)
        _note_training_split("--calibrate-on", args.calibrate_on)
        held_out = _load_split(args, args.calibrate_on, models, multi_crop)
    source = models[0] if len(models) == 1 else models
    table = ensembles.evaluate(source, test, tta=tta, calibrate_on=held_out)
    shown = table
    if len(models) == 1 and not ensembles.is_ensemble(source):  # one model: its row
        shown = table.iloc[:1][[c for c in table.columns if c not in (
            "disagreement", "kl", "weight")]]
    if models[0].output_shape[-1] <= 5:  # top-5 of five classes or fewer is always right
        shown = shown.drop(columns="top5_error")
    with _wide_pandas():
        print(for_people(shown).to_string())
    if args.output:  # the whole table, errors as fractions
        _write_table(table, args.output)
        print(f"Table: {args.output}")
    return 0


def _add_evaluate(sub):
    evaluate = sub.add_parser(
        "evaluate", help="evaluate saved models or an ensemble on a dataset split",
        description="Evaluate one .keras model, a saved ensemble, or several models (then "
        "averaged as an ensemble): top-1/top-5 error, NLL, Brier score, ECE, and the "
        "members' disagreement and KL.")
    evaluate.add_argument("models", nargs="+", metavar="MODEL.keras")
    evaluate.add_argument("--dataset", default="digits")
    evaluate.add_argument("--split", default=None,
                          help="default: test, or validation where there is no test split")
    evaluate.add_argument("--tta", choices=("none", "flip", "5crop", "10crop"), default="none",
                          help="test-time augmentation; 5crop/10crop load the images with "
                          "the shorter side at 256/224 of the input size (256 for 224 and 227) "
                          "and take the corner and centre crops (10crop: and their mirrors)")
    evaluate.add_argument("--center-crop", action="store_true",
                          help="load the images at 256/224 of the input size (256 for 224 "
                          "and 227) and take the centre crop (for models trained with "
                          "--augment crop); the same as --resize crop")
    _resize_flag(evaluate, "default: as the models were trained (recorded by zoo train), "
                 "else squash")
    evaluate.add_argument("--batch-size", type=int, default=128, help="(default: 128)")
    evaluate.add_argument("--data-dir", default=None, help="TFDS data_dir")
    evaluate.add_argument("--output", default=None, help="write the table as CSV here")
    evaluate.add_argument("--calibrate-on", default=None, metavar="SPLIT",
                          help="fit temperatures on this held-out split (e.g. validation) and "
                          "add each row's temperature and its NLL and ECE after temperature "
                          "scaling, and a row for the ensemble of calibrated members")
    _bad_image_flag(evaluate)
    evaluate.set_defaults(run=_cmd_evaluate)


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
        (model,) = _ensemble_view(args, _load_models(args.members))
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
        (architecture,) = _ensemble_view(args, _load_models(args.members))
        ensemble = ensembles.from_snapshots(architecture, args.snapshots, last=args.last,
                                            combine=args.combine, weights=args.weights)
    else:
        _check_weight_count(args, len(args.members), "the models given")
        ensemble = ensembles.Ensemble(_ensemble_view(args, _load_models(args.members)),
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
        _evaluation_view(args, models, together="the models of one ensemble share its one input")
        return models
    for model in models:
        trained = zoo.resize_mode(model)
        if trained not in (None, view):
            print(f"Note: {model.name} was trained on {_TRAINED_ON[trained]} (resize "
                  f"{trained}); in this ensemble it is given {_TRAINED_ON[view]} (--resize "
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
    _check_view_flags(args)
    if given and not (args.fit_weights or args.calibrate_on):
        raise UserError(f"{', '.join(given)} describe{'s' * (len(given) == 1)} the held-out "
                        "data of --fit-weights and --calibrate-on, and neither was given: "
                        "give one of them, or leave out " + ("it." if len(given) == 1
                                                             else "those flags."))
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


def _check_not_an_input(output, inputs, inputs_are, written):
    """``--output`` (an existing file) is none of the command's ``inputs``, which the
    ``written`` result would replace."""
    for path in inputs:
        if os.path.exists(path) and os.path.samefile(path, output):
            raise UserError(f"--output {output} is one of the {inputs_are}: the {written} "
                            "would replace it. Name another file.")


def _check_ensemble_output(output, members):
    """The ensemble's file may replace an earlier .keras file, never one of its members (a
    run's own checkpoint) nor a file that is not a Keras file (the user's)."""
    if not os.path.exists(output):
        return
    _check_not_an_input(output, members, "members", "ensemble")
    if not zipfile.is_zipfile(output):
        raise UserError(f"--output {output} exists and is not a .keras file; it would be "
                        "replaced. Name another file, or move it aside.")


def _with_fitted_weights(args, ensemble):
    """The same members, weighted as ``ensembles.fit_weights`` fits them on
    ``args.fit_weights`` (a held-out split)."""
    import ensembles
    from zoo.saving import copy_metadata

    _note_training_split("--fit-weights", args.fit_weights)
    held_out = _load_split(args, args.fit_weights, [ensemble])
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

    _note_training_split("--calibrate-on", args.calibrate_on)
    held_out = _load_split(args, args.calibrate_on, [ensemble])
    calibrated = ensembles.calibrate(ensemble, held_out, per_member=args.per_member)
    if args.per_member:
        shown = ", ".join(f"{m.name} {t:.3g}" for m, t in zip(
            ensembles.members_of(calibrated), ensembles.temperature(calibrated, True)))
        print(f"Member temperatures fitted on the {args.calibrate_on} split: {shown}")
    else:
        print(f"Temperature fitted on the {args.calibrate_on} split: "
              f"{ensembles.temperature(calibrated):.3g}")
    return calibrated


def _add_ensemble(sub):
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
    _resize_flag(ensemble, "the view the ensemble is for: recorded in its file, so that zoo "
                 "evaluate, predict and export follow it, and how --fit-weights and "
                 "--calibrate-on load their splits; default: as the members were trained "
                 "(members trained on different views need it), else squash for the splits")
    ensemble.add_argument("--batch-size", type=int, default=None,
                          help="with --fit-weights and --calibrate-on (default: 128)")
    ensemble.add_argument("--data-dir", default=None,
                          help="TFDS data_dir, with --fit-weights and --calibrate-on")
    _bad_image_flag(ensemble, default=None)
    ensemble.set_defaults(run=_cmd_ensemble)


def _cmd_predict(args):
    import warnings

    from zoo.prediction import NoViewWarning

    if args.output:  # before any work
        check_writable_file(args.output)
        _check_table_output(args.output, [args.source, *args.images])
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
        _write_table(table, args.output, index=False)
        print(f"Table: {args.output}")
    return 1 if skipped else 0


def _add_predict(sub):
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
    _resize_flag(predict, "default: as the model was trained (recorded by zoo train), else "
                 "crop; an export resizes as it was exported")
    predict.set_defaults(run=_cmd_predict)


def _resize_flag(parser, default_help, default=None):
    parser.add_argument("--resize", choices=RESIZE_CHOICES, default=default,
                        help="crop: the shorter side to 256/224 of the input size (256 for 224 "
                        "and 227), then the "
                        "centre crop (models trained with --augment crop); squash: the whole "
                        f"image to the input size (models trained without crop) ({default_help})")


def _cmd_export(args):
    import ensembles
    from ensembles.export import check_export_options, check_export_target
    from zoo.saving import serving_resize

    check_export_options(args.format, args.resize)  # before any work
    check_export_target(args.output, args.format, args.overwrite)
    (model,) = _load_models([args.model_file])
    ensembles.export(model, args.output, overwrite=args.overwrite, format=args.format,
                     resize=args.resize)  # (a single model: its one-member ensemble, named so)
    resize = serving_resize(model, args.resize)
    how = _RESIZED[resize] + (
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


def _add_export(sub):
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
    _resize_flag(export, "how serve_images and serve_bytes resize; default: as the model "
                 "was trained (recorded by zoo train), else crop")
    export.set_defaults(run=_cmd_export)


def _seed(seed):
    import keras

    keras.utils.set_random_seed(seed)


def _wide_pandas():
    import pandas as pd

    return pd.option_context("display.width", 160, "display.max_columns", 20)


def _bad_image_flag(parser, default="error"):
    parser.add_argument("--on-bad-image", choices=("error", "skip"), default=default,
                        help="image folders: stop, naming the bad files (the first five, and "
                        "how many) (default), or skip them with a warning that names them so")


def _model_and_data_flags(parser, epochs, run_dir, augment="none", augment_help="none",
                          image_size_help="the dataset's, at least the model's minimum"):
    parser.add_argument("--model", required=True, help="model name, see `zoo list`")
    parser.add_argument("--dataset", default="digits",
                        help="'digits' (embedded), a TFDS name or an image folder")
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
                        help="training augmentation: '+'-joined crop, flip, pca, jitter, "
                        "erasing, or the presets none and paper (crop+flip+pca). With crop, "
                        "images load at 256/224 of the input size (256 for 224 and 227) and "
                        "are evaluated on their "
                        f"centre crop (default: {augment_help})")
    parser.add_argument("--normalize", default="standardize",
                        choices=("standardize", "channel_mean", "mean_image", "none"),
                        help="inside the model: per-channel mean and std (default), the "
                        "per-channel mean or the mean image (the paper's), or none")
    _bad_image_flag(parser)


def _parser():
    parser = _Parser(
        prog="zoo", description="Paper-faithful Keras models and their ensembles."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each subcommand's flags sit next to its handler (_add_X beside _cmd_X), in help order:
    for add in (_add_list, _add_info, _add_train, _add_evaluate, _add_ensemble, _add_distill,
                _add_export, _add_predict, _add_diagnose, _add_search, _add_demo):
        add(sub)
    return parser


def _interrupts_kept(hook):
    """``sys.unraisablehook`` that passes a Ctrl-C raised where Python can only report it
    (a garbage-collection callback: JAX's, imported by TensorFlow where installed) on to the
    main thread; it was dropped, and the run trained to its end."""
    def unraisable(args):
        if isinstance(args.exc_value, KeyboardInterrupt):
            import _thread

            _thread.interrupt_main()
            return
        hook(args)

    unraisable.keeps_interrupts = True
    return unraisable


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
        most = MAX_IMAGE_SIZE if flag == "image_size" else 2**31 - 1  # (TensorFlow's int32)
        if isinstance(value, int) and not least <= value <= most:
            bound = f"at least {least}" if value < least else f"at most {most}"
            command_parser.error(f"--{flag.replace('_', '-')} must be {bound}; received "
                                 f"{value}")
    for flag in ("output",):  # (an unset "$OUT": no table, and no word)
        if getattr(args, flag, None) == "":
            shown = "OUT" if args.command == "export" else f"--{flag}"  # (a positional there)
            command_parser.error(f"{shown} names no file; received ''")
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
            zoo.check_arguments(args.model, _model_args(getattr(args, "model_arg", None)))
        if args.command not in ("list", "info") or a_file:  # (their facts are static)
            tensorflow_started_quietly()
        _check_data_dir(args)
        if isinstance(getattr(args, "lr", None), float):  # (search's are ranges, checked)
            from zoo.optimizers import check_hyperparameters

            if hasattr(args, "momentum"):
                _check_momentum(args)
            check_hyperparameters(args.lr, getattr(args, "momentum", 0.0),
                                  getattr(args, "weight_decay", 0.0))
        with contextlib.ExitStack() as held:  # what the command holds to its end (a lock)
            args._held = held
            return args.run(args)
    except KeyboardInterrupt:  # Ctrl-C: what to do next, not TensorFlow's 50-line traceback
        if os.environ.get("ZOO_DEBUG"):
            raise
        resumes = args.command in ("train", "distill", "demo")
        print(f"zoo {args.command}: interrupted"
              + ("; run the same command to resume from the last completed epoch"
                 if resumes else ""), file=sys.stderr)
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
    return None


def _os_fault(err):
    """``[Errno 28] No space left on device: 'path' (12.3 MB free there)``: what failed,
    on which file, and for a full disk how much room is left."""
    text = f"{err.strerror or err}: {err.filename}"
    if err.filename2 is not None:
        text += f" -> {err.filename2}"
    if err.errno == errno.ENOSPC:
        folder = os.path.dirname(os.path.abspath(str(err.filename)))
        with contextlib.suppress(OSError):
            text += f" ({shutil.disk_usage(folder).free / 1e6:,.1f} MB free there)"
    return text


if __name__ == "__main__":
    sys.exit(main())
