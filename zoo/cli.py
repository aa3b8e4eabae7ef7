"""The ``zoo`` command line: ``zoo list``, ``zoo info MODEL``, ``zoo demo``.

User errors print one line and exit with code 2, never a traceback.
"""

import argparse
import inspect
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
    import numpy as np
    import keras

    keras.utils.set_random_seed(args.seed)
    model = zoo.get_model(args.model, towers=args.towers) if args.model == "alexnet" else (
        zoo.get_model(args.model)
    )
    model.summary()
    print(f"\n{model.name}: {model.count_params():,} parameters")
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
    )
    shape = (args.batch_size,) + tuple(model.input_shape[1:])
    images = np.random.default_rng(args.seed).normal(size=shape).astype("float32")
    labels = np.arange(args.batch_size) % model.output_shape[-1]
    loss = model.train_on_batch(images, labels)
    print(f"one SGD step on a random batch of {args.batch_size}: loss {float(loss):.4f}")
    return 0


def _parser():
    parser = argparse.ArgumentParser(
        prog="zoo", description="Paper-faithful Keras models and their ensembles."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="list the available models").set_defaults(run=_cmd_list)
    info = sub.add_parser("info", help="facts about one model")
    info.add_argument("model", help="model name, see `zoo list`")
    info.set_defaults(run=_cmd_info)
    demo = sub.add_parser("demo", help="build a model and run one training step")
    demo.add_argument("--model", default="alexnet", help="model name (default: alexnet)")
    demo.add_argument("--towers", type=int, choices=(1, 2), default=2,
                      help="AlexNet towers (default: 2, the two-GPU layout)")
    demo.add_argument("--batch-size", type=int, default=8, help="batch size (default: 8)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(argv=None):
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "model", None) is not None and args.model not in zoo.list_models():
        parser.error(f"unknown model {args.model!r}; available: {', '.join(zoo.list_models())}")
    if getattr(args, "batch_size", 1) < 1:
        parser.error(f"--batch-size must be at least 1; received {args.batch_size}")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
