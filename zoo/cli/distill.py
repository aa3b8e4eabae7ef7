"""``zoo distill``: a teacher's (a saved ensemble's) softened probabilities and the
labels, taught to one network (Hinton et al. 2015)."""

import os

import zoo
from safeio.checks import UserError
from zoo.cli.common import (OPTIMIZER_CHOICES, TRAINED_ON, check_models_fit, load_models,
                            model_and_data_flags, set_seed, unlabelled)
from zoo.cli.runs import (Setup, default_run_dir, fit_verbosity, scored_weights,
                          whole_images_hint)


def _cmd_distill(args):
    import data
    import ensembles
    from ensembles.distillation import (_check_softening, _reads_teacher_logits, check_alpha,
                                        distillation_settings)

    alpha = check_alpha(args.alpha)  # before any work
    temperature = _check_softening(args.temperature)  # (at most MAX_TEMPERATURE)
    (teacher,) = load_models([args.teacher])
    view = zoo.resize_mode(teacher)
    if args.augment is None:  # the student learns on the teacher's view of the images
        args.augment = "crop" if view == "crop" else "none"
        if view == "crop":
            print("Augmentation: crop, as the teacher was trained on crops (--augment "
                  "chooses)", flush=True)
    elif view is not None and view != data.augment.resize_mode(args.augment):
        print(f"Note: the teacher was trained on {TRAINED_ON[view]} (resize {view}); with "
              f"--augment {args.augment} the student learns from it on "
              f"{TRAINED_ON[data.augment.resize_mode(args.augment)]}.", flush=True)
    if args.image_size is None:  # the student sees the teacher's images
        args.image_size = teacher.input_shape[1]
    elif args.image_size != teacher.input_shape[1]:
        raise UserError(f"--image-size {args.image_size}: the teacher takes "
                        f"{teacher.input_shape[1]}x{teacher.input_shape[2]} images, and the "
                        "student must see the same ones (leave --image-size out).")
    run_dir = default_run_dir(args, "distilled")
    _check_teacher(teacher)
    info = data.info(args.dataset, data_dir=args.data_dir)
    check_models_fit([teacher], info, args.dataset)  # the student learns its classes here
    # The student's builder arguments, recorded in config.json: a resume with others
    # (another activation, dropout) trained on a changed network without a word (the
    # student is built here, so zoo.train recorded none). Before the statistics pass, as
    # the teacher, T and alpha the run records.
    from zoo.cli.common import model_args
    from zoo.training import run_config

    student_settings = {"student": {"model": args.model,
                                    "model_kwargs": model_args(args.model_arg)}}
    run_config.check_resume(run_dir, {**student_settings, **(distillation_settings(
        teacher, temperature, alpha, _reads_teacher_logits(run_dir))
        if run_config.holds_stopped_run(run_dir) else {})})  # (a new run: no hash to compare)
    setup = Setup(args, run_dir)
    val = setup.load(split=setup.val_split) if setup.val_split else None
    set_seed(args.seed)
    student = setup.build()
    if zoo.class_names(teacher) is None:  # (the student was saved with no names)
        zoo.set_class_names(student, info.class_names)
    print(f"Distilling {teacher.name} ({teacher.count_params():,} parameters) into "
          f"{student.name} ({student.count_params():,}) at temperature {args.temperature:g}, "
          f"soft-target weight {args.alpha:g}", flush=True)
    result = ensembles.distill(
        teacher, student, setup.load_train(), val, temperature=args.temperature,
        alpha=args.alpha, epochs=args.epochs, run_dir=run_dir, seed=args.seed,
        lr_patience=args.lr_patience, settings={**setup.settings, **student_settings},
        verbose=fit_verbosity(),
        resize=setup.data.resize, strategy=_where_built(),
        optimizer=lambda: zoo.make_optimizer(args.optimizer, args.lr, args.momentum,
                                             args.weight_decay))
    held_out = "test" if "test" in setup.info.splits else setup.val_split
    if held_out == "test" and unlabelled(args.dataset, "test", args.data_dir):
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

        for which in scored_weights(student, run_dir, getattr(args, "strategy", None)):
            scored("student", student, which)
        scored("teacher", teacher)
    print(f"Run directory: {run_dir}; the student: "
          f"{os.path.join(run_dir, 'checkpoints', 'best.keras')}")
    whole_images_hint(setup)
    return 1 if result.diverged else 0


def _check_teacher(teacher):
    """What distillation refuses of the teacher alone, before the statistics pass (it came
    after a pass over the training set): several outputs, or one score per example."""
    from ensembles.distillation import check_teacher

    check_teacher(teacher)
    if teacher.output_shape[-1] == 1:
        raise UserError(f"The teacher {teacher.name!r} outputs one score per example (a "
                        "sigmoid's): distillation teaches a classifier's probabilities over "
                        "two or more classes.")


def _where_built():
    """``zoo.train``'s strategy for the student and the teacher, built before it: the one
    device they were built on (TensorFlow's default strategy; no distribution on JAX).
    "auto" with several GPUs, or several JAX devices, refused them (built outside)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return "one_device"
    import tensorflow as tf

    return tf.distribute.get_strategy()


def add_distill(sub):
    distill = sub.add_parser(
        "distill", help="distil a saved ensemble (or any model) into one network",
        description="Train a zoo model on a teacher's probabilities softened at a "
        "temperature and on the labels (Hinton et al. 2015): loss = alpha T^2 KL(teacher_T || "
        "student_T) + (1 - alpha) CE(labels, student). The run directory's checkpoints hold "
        "the student alone; it trains on one device. Run again with the same arguments to "
        "resume after a crash.")
    distill.add_argument("teacher", metavar="TEACHER.keras",
                         help="the teacher, e.g. a saved ensemble (zoo ensemble)")
    model_and_data_flags(distill, epochs=20, run_dir="runs/MODEL_DATASET_distilled",
                          image_size_help="the teacher's, the only one it takes",
                          augment=None, augment_help="crop for a teacher that records "
                          "resize crop, else none: the student learns on the teacher's view")
    distill.add_argument("--temperature", type=float, default=4.0,
                         help="T, the softening of both distributions (default 4)")
    distill.add_argument("--alpha", type=float, default=0.9,
                         help="the soft targets' weight; the labels' is 1 - alpha (default "
                         "0.9)")
    distill.add_argument("--lr", type=float, default=0.01,
                         help="initial learning rate (default: %(default)s)")
    distill.add_argument("--optimizer", default="sgd", metavar="OPTIMIZER",
                         choices=OPTIMIZER_CHOICES, help="as zoo train's (default: %(default)s)")
    distill.add_argument("--momentum", type=float, default=None,
                         help="as zoo train's (default: 0.9)")
    distill.add_argument("--weight-decay", type=float, default=5e-4,
                         help="(default: %(default)s)")
    distill.add_argument("--lr-patience", type=int, default=5,
                         help="epochs without improvement before the learning rate is "
                         "divided by 10 (default: %(default)s)")
    distill.set_defaults(run=_cmd_distill)
