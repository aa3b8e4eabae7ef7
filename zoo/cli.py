"""The ``zoo`` command line: ``zoo list``, ``zoo info MODEL``, ``zoo train``, ``zoo demo``.

User errors print one line and exit with code 2, never a traceback.
"""

import argparse
import ast
import functools
import inspect
import os
import sys

import zoo


def _cmd_list(args):
    print(f"{'name':<11} {'params':>12} {'GMACs':>6} {'input':>8}  paper")
    for name in zoo.list_models():
        info = zoo.model_info(name)
        size = f"{info['input_size']}x{info['input_size']}"
        print(f"{name:<11} {info['params']:>12,} {info['macs'] / 1e9:>6.2f} {size:>8}  "
              f"{info['paper']}")
    return 0


def _cmd_info(args):
    info = zoo.model_info(args.model)
    builder = zoo.registry.get_entry(args.model).builder
    print(f"{args.model}: {info['paper']}")
    print(f"  input size        {info['input_size']}x{info['input_size']}x3")
    print(f"  parameters        {info['params']:,} trainable, {info['total_params']:,} in all")
    print(f"  multiply-adds     {info['macs'] / 1e9:.2f} G per image")
    print(f"  builder           zoo.{args.model}{inspect.signature(builder)}")
    return 0


def _cmd_demo(args):
    from zoo import demo

    quick = dict(epochs=1, snapshot_epochs=2, cycles=2) if args.quick else {}
    demo.run(output_dir=args.output_dir, seed=args.seed,
             **{"epochs": args.epochs, "snapshot_epochs": args.snapshot_epochs,
                "cycles": args.cycles, **quick})
    return 0


def _model_args(pairs):
    """``["towers=2", "kernel_initializer=he"]`` -> ``{"towers": 2, "kernel_initializer": "he"}``."""
    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--model-arg takes KEY=VALUE; received {pair!r}.")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value  # a plain string such as he or lrn
    return kwargs


def _cmd_train(args):
    import data

    # First: splitting a device for the mirrored strategy must precede any TensorFlow op.
    strategy = zoo.distribute.get_strategy(args.strategy)
    model_kwargs = _model_args(args.model_arg)
    info = data.info(args.dataset, data_dir=args.data_dir)
    entry = zoo.registry.get_entry(args.model)
    native = info.image_shape[0] if info.image_shape else entry.input_size
    size = args.image_size or max(native, entry.min_input_size)
    run_dir = args.run_dir or os.path.join(
        "runs", f"{args.model}_{os.path.basename(os.path.normpath(args.dataset))}")
    load = functools.partial(data.load, args.dataset, batch_size=args.batch_size,
                             image_size=size, seed=args.seed, data_dir=args.data_dir)
    print(f"Computing the training set's pixel statistics ({size}x{size}) ...", flush=True)
    stats = data.compute_statistics(load(split="train", shuffle=False))
    os.makedirs(run_dir, exist_ok=True)
    stats.save(os.path.join(run_dir, "statistics.npz"))
    val_split = next((s for s in ("validation", "test") if s in info.splits), None)

    def build():
        return zoo.get_model(args.model, classes=info.num_classes, **model_kwargs,
                             input_tensor=data.normalized_input(stats, (size, size, 3)))

    result = zoo.train(
        build, load(split="train"), load(split=val_split) if val_split else None,
        epochs=args.epochs, run_dir=run_dir, learning_rate=args.lr, seed=args.seed,
        strategy=strategy, precision=args.precision, jit_compile=args.jit_compile,
        model_kwargs=model_kwargs,
    )
    if "test" in info.splits:
        test = zoo.training.per_output_targets(result.model, load(split="test"))
        scores = result.model.evaluate(test,
                                       return_dict=True, verbose=0)
        top1 = next(v for k, v in scores.items() if k.endswith("top1_accuracy"))
        top5 = next(v for k, v in scores.items() if k.endswith("top5_accuracy"))
        print(f"test top-1 error {100 * (1 - top1):.2f} %, top-5 error {100 * (1 - top5):.2f} %")
    print(f"Run directory: {run_dir} (history.csv, checkpoints/, logs/, plots)")
    return 1 if result.diverged else 0


def _parser():
    parser = argparse.ArgumentParser(
        prog="zoo", description="Paper-faithful Keras models and their ensembles."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="list the available models").set_defaults(run=_cmd_list)
    info = sub.add_parser("info", help="facts about one model")
    info.add_argument("model", help="model name, see `zoo list`")
    info.set_defaults(run=_cmd_info)
    train = sub.add_parser("train", help="train a model with the paper recipe",
                           description="Train a zoo model with the paper recipe (SGD, momentum "
                           "0.9, weight decay 5e-4, learning rate divided by 10 on plateaus). "
                           "Run again with the same arguments to resume after a crash.")
    train.add_argument("--model", required=True, help="model name, see `zoo list`")
    train.add_argument("--dataset", default="digits",
                       help="'digits' (embedded), a TFDS name or an image folder")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=0.01, help="initial learning rate")
    train.add_argument("--image-size", type=int, default=None,
                       help="input size (default: the dataset's, at least the model's minimum)")
    train.add_argument("--strategy", choices=zoo.distribute.STRATEGY_CHOICES, default="auto")
    train.add_argument("--precision", choices=("mixed_float16", "mixed_bfloat16"), default=None)
    train.add_argument("--jit-compile", action="store_true", help="compile with XLA")
    train.add_argument("--run-dir", default=None, help="default: runs/MODEL_DATASET")
    train.add_argument("--data-dir", default=None, help="TFDS data_dir")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                       help="builder argument, repeatable (e.g. towers=2, kernel_initializer=he)")
    train.set_defaults(run=_cmd_train)
    demo = sub.add_parser("demo", help="the whole product on the embedded digits",
                          description="Train AlexNet dropout/width variants and a ResNet-18 "
                          "snapshot ensemble on the embedded digits under the two-device "
                          "mirrored strategy, evaluate every ensemble, export and serve.")
    demo.add_argument("--output-dir", default="runs/demo")
    demo.add_argument("--epochs", type=int, default=8, help="epochs per AlexNet member")
    demo.add_argument("--snapshot-epochs", type=int, default=24,
                      help="epochs of the ResNet-18 snapshot run")
    demo.add_argument("--cycles", type=int, default=6, help="snapshot cycles")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quick", action="store_true", help="one epoch each (a smoke run)")
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(argv=None):
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "model", None) is not None and args.model not in zoo.list_models():
        parser.error(f"unknown model {args.model!r}; available: {', '.join(zoo.list_models())}")
    for flag in ("batch_size", "epochs", "image_size", "snapshot_epochs", "cycles"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1; received {value}")
    try:
        return args.run(args)
    except (ValueError, RuntimeError) as err:  # user errors: one line, exit code 2
        if not _is_user_error(err):
            raise
        print(f"zoo {args.command}: error: {err}", file=sys.stderr)
        return 2


def _is_user_error(err):
    """Errors our checks raise for bad input (they name what was received)."""
    import data

    return isinstance(err, (ValueError, data.DatasetNotPreparedError))


if __name__ == "__main__":
    sys.exit(main())
