"""The run directory of the commands that train (``zoo train``, ``distill``, ``diagnose``
and ``search``): its data pipeline and pixel statistics (:class:`Setup`), its default path,
what a command may write there, and which weights a command scores at the end."""

import contextlib
import os
import sys
import zipfile

import zoo
from safeio import directory_lock, make_directory
from safeio.checks import UserError
from zoo.cli.common import bad_image_policy, model_args, some


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


class Setup:
    """What the model-and-dataset commands share: the input size, the paper's data pipeline
    (``data.pipeline``: training through ``--augment``, evaluation on the centre crop when
    it crops), the training set's pixel statistics (saved in the run directory) and a
    builder that puts the normalisation inside the model."""

    def __init__(self, args, run_dir, strategy=None, check=None, variants=None):
        """``check(setup)``: the command's own refusals that need the dataset's counts or
        the model's arguments, made before the statistics pass (a full pass over the
        training set) and before anything is written. ``variants``: ``{flag: builder
        arguments}`` the command will also build with (``zoo search``'s ``--width 0.5``),
        each built then too."""
        import data

        self.strategy = strategy
        # The user's mistakes first, and nothing written for them: the dataset, the
        # augmentation, the model's arguments (a model built and dropped: 0.2 to 1.8 s
        # here from resnet18 to resnet152 under TensorFlow; under JAX the first build's
        # random-number kernels, which the real build then reuses).
        data.augment.parse(args.augment)  # (before data.info, which may download)
        self.model_kwargs = model_args(args.model_arg)
        info = data.info(args.dataset, data_dir=args.data_dir)
        if info.num_classes < 2:  # (else the builder's "classes=1 with softmax", not typed)
            raise UserError(f"--dataset {args.dataset} has {info.num_classes} class "
                            f"({some(info.class_names)}): a classifier learns two or more. "
                            "An image folder has one sub-folder per class in each split.")
        entry = zoo.registry.get_entry(args.model)
        native = info.image_shape[0] if info.image_shape else entry.input_size
        size = args.image_size or max(native, entry.min_input_size)
        self.model = args.model
        self.info = info
        self._check_model(size, ema=getattr(args, "ema", False), variants=variants)
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
        if writes:
            _check_statistics_kept(run_dir)
        # Another run there is one line now, before any work; and none can write its
        # statistics over these, nor its own run in the command's later steps: the lock is
        # held to the command's end (zoo.train's own lock, in this thread, passes through).
        lock = directory_lock(run_dir, share=True) if writes else contextlib.nullcontext()
        held = getattr(args, "_held", None)  # (none where a test makes a Setup itself)
        if held is not None:
            held.enter_context(lock)
            lock = contextlib.nullcontext()
        with lock:
            self._statistics(args, run_dir, size, info, writes)
        self.size = size
        self.normalize = args.normalize
        self.val_split = next(iter(self.data.held_out), None)
        if self.val_split is None:  # the plateaus and best.keras follow the training loss
            cased = [s for s in sorted(info.splits)
                     if s.lower() in (*data.VALIDATION_SPLITS, "test")]  # (a Test/)
            print(f"No validation or test split in {args.dataset} (it has "
                  f"{', '.join(sorted(info.splits)) or 'none known'}): the learning rate and "
                  "best.keras follow the training loss. An image folder's validation/ (or "
                  "val/, valid/) and test/ are held out" + (
                      f" (names are case-sensitive: rename {cased[0]}/ to "
                      f"{cased[0].lower()}/)" if cased else "") + ".", flush=True)
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
                                  on_bad_image=bad_image_policy(args), statistics=saved)
        if writes and saved is None:
            make_directory(run_dir)
            self.data.statistics.save(os.path.join(run_dir, "statistics.npz"))

    def _check_model(self, size, ema=False, variants=None):
        """Build the model once on a plain input of ``size``, as :meth:`build` will on the
        pipeline's: a bad ``--model-arg`` value is one line before the data is read; and
        once with each of ``variants``' arguments (a ``--width`` the builder refuses)."""
        import gc

        import keras

        image = keras.Input((size, size, 3))
        try:
            probe = zoo.get_model(self.model, classes=self.info.num_classes,
                                  **self.model_kwargs, input_tensor=image)
        except UserError:
            self._check_classifier_of_the_weights(image)
            raise
        if ema:  # (zoo.train refused it after the statistics pass)
            from zoo.training.recipe import check_ema_model

            check_ema_model(probe)
        del probe
        gc.collect()  # its weights (a VGG-16's 553 MB), before the real model's are made
        for flag, overrides in (variants or {}).items():
            try:  # (an input each: one Input keeps every model built on it alive)
                zoo.get_model(self.model, classes=self.info.num_classes,
                              **{**self.model_kwargs, **overrides},
                              input_tensor=keras.Input((size, size, 3)))
            except UserError as err:
                raise UserError(f"{flag}: {err}") from None
            gc.collect()

    def _check_classifier_of_the_weights(self, image):
        """Weights that fit the network without its classifier but not with the dataset's
        classes (ImageNet's 1000): the command trains the model's own classifier, and
        setting classes or include_top is refused, so the builder's advice looped. One
        line that says where to fine-tune instead."""
        weights = self.model_kwargs.get("weights")
        if weights is None or self.model_kwargs.get("include_top") is False:
            return
        try:  # the body fits, and the classifier does with ImageNet's classes: those differ
            zoo.get_model(self.model, **{**self.model_kwargs, "include_top": False},
                          input_tensor=image)
            zoo.get_model(self.model, **{**self.model_kwargs, "classes": 1000},
                          input_tensor=image)
        except (UserError, ValueError):
            return  # another mismatch (the input size of a VGG's fc1): the builder's line
        classes = self.info.num_classes
        raise UserError(
            f"--model-arg weights={weights} holds ImageNet's 1000-class classifier, not one "
            f"of the dataset's {classes} classes. zoo train trains the whole network, "
            f"classifier and all: fine-tune the weights in Python instead, "
            f"zoo.fine_tune(zoo.get_model({self.model!r}, weights=...), classes={classes}) "
            "(the README's Fine-tuning).") from None

    def load(self, split, shuffle=None):
        return self.data.load(split, shuffle=shuffle)

    def load_train(self, strategy="auto"):
        """The training split, without each epoch's last, smaller batch where it would not
        split over ``strategy``'s devices (:func:`drops_last_batch`)."""
        return self.data.train(drop_remainder=drops_last_batch(
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
    for name in names:  # (as zoo.train refuses its own files that are links)
        run_config.refuse_linked(os.path.join(run_dir, name), f"zoo {command}")
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


def _check_statistics_kept(run_dir):
    """A run to resume that has no ``statistics.npz`` (one ``zoo.train`` started from Python,
    or the file removed) is one line: the command would normalise with new statistics, and
    wrote them into that run after a pass over the training set, before its other settings
    were refused."""
    from zoo.training import run_config

    if (run_config.holds_stopped_run(run_dir) and run_config.read_config(run_dir) is not None
            and not os.path.lexists(os.path.join(run_dir, "statistics.npz"))):
        raise UserError(
            f"{run_dir} holds a run without the pixel statistics a zoo command trains with "
            "(no statistics.npz: a run zoo.train started from Python, or the file was "
            "removed): this command would normalise its images otherwise. Give another "
            "--run-dir, or resume it from Python.")


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


def default_run_dir(args, kind=None):
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


def whole_images_hint(setup):
    """A model trained on whole images is predicted and served so: say it."""
    if setup.data.resize == "squash":  # no random crops: not evaluated on the centre crop
        print("Trained on whole images resized to the input size (no crop augmentation): "
              "the checkpoints record it, and zoo predict and zoo export resize images "
              "whole for them (--resize squash).")


def fit_verbosity():
    """Keras' progress bar on a terminal; one line per epoch into a file or a pipe (a log),
    as Keras' own ``verbose="auto"`` advice has it, not thousands of bar updates."""
    return 1 if sys.stdout.isatty() else 2


def drops_last_batch(examples, batch_size, strategy):
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


def scored_weights(model, run_dir, strategy):
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
