"""``zoo train``: a zoo model with the paper recipe, or one run as a snapshot ensemble
(``--snapshots M``), on one device, mirrored over several, or over a cluster."""

import functools
import os
import shlex
import sys

import zoo
from safeio.checks import UserError
from zoo.cli.common import OPTIMIZER_CHOICES, STRATEGY_CHOICES, model_and_data_flags, unlabelled
from zoo.cli.runs import (Setup, default_run_dir, drops_last_batch, fit_verbosity,
                          scored_weights, whole_images_hint)


def _strategy(args):
    """The strategy for ``zoo.train``, made first thing: splitting a device for TensorFlow's
    mirrored strategy must precede any TensorFlow op, and joining a JAX cluster any JAX
    computation. On other backends than TensorFlow, its name (keras.distribution), checked
    against the devices there before the statistics pass (one device cannot mirror)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        strategy = (_tensorflow_cluster(args) if args.strategy == "multi_worker" else
                    zoo.distribute.get_strategy(args.strategy))
        if args.jit_compile and zoo.distribute.splits_a_device(strategy):
            raise UserError(
                f"--jit-compile does not combine with --strategy {args.strategy} here: the "
                f"strategy's {strategy.num_replicas_in_sync} replicas are one device split "
                "in parts, between which XLA cannot reach the variables. Leave "
                "--jit-compile out, or train on one device (--strategy one_device).")
        replicas = strategy.num_replicas_in_sync
        if args.batch_size < replicas:  # (it was refused after the statistics pass, in the
            # library's words: data.load(..., drop_remainder=True))
            raise UserError(
                f"--batch-size {args.batch_size} is smaller than the {replicas} replicas of "
                f"--strategy {args.strategy}: one would get no example. Give --batch-size "
                f"{replicas} or more.")
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


# The deadline of TensorFlow's wait for the workers: a process of its own, as TensorFlow
# waits holding Python's lock (no thread of ours runs) and heeds neither Ctrl-C nor SIGTERM.
# Ctrl-C (to the terminal's process group, this one too) ends the wait at once; a parent
# gone another way is left alone (its process id may be another's by then).
_DEADLINE = """
import os, signal, sys, time
parent, seconds, message, interrupted = sys.argv[1:5]
parent, seconds = int(parent), float(seconds)

def end(line):
    try:
        os.write(2, (line + "\\n").encode())
    except OSError:
        pass  # (stderr closed or its reader gone: the wait ends all the same)
    if os.getppid() == parent:
        os.kill(parent, signal.SIGKILL)
    os._exit(0)

signal.signal(signal.SIGINT, lambda *_: end(interrupted))
os.write(1, b"ready\\n")  # (Ctrl-C is taken from here on: the wait may begin)
os.close(1)
until = time.monotonic() + seconds
while time.monotonic() < until:
    if os.getppid() != parent:
        os._exit(0)
    time.sleep(min(0.5, max(until - time.monotonic(), 0)))
end(message)
"""


def _tensorflow_cluster(args):
    """TensorFlow's MultiWorkerMirroredStrategy, made once every worker of TF_CONFIG has
    started. TensorFlow waits for them without a word and without end, heeding neither
    Ctrl-C nor SIGTERM: a worker that never started (a wrong host or port) hung the others.
    The wait is said, and after --cluster-timeout seconds (120), or at Ctrl-C, one line
    ends it (the process is killed: TensorFlow's wait can be left no other way)."""
    import subprocess

    _, _, cluster = zoo.distribute.tf_config_task()  # (its mistakes: one line first)
    addresses = [address for kind in ("chief", "worker") for address in cluster.get(kind, [])]
    timeout = 120 if args.cluster_timeout is None else args.cluster_timeout
    message = (f"zoo train: error: the {len(addresses)} workers of TF_CONFIG did not all "
               f"start within {timeout:g} s: start the same command on every machine it "
               f"names, each with its own task index, and check that {', '.join(addresses)} "
               "are reachable from every machine (or give a longer --cluster-timeout).")
    interrupted = ("zoo train: interrupted while waiting for the workers of TF_CONFIG; "
                   "nothing was written.")
    deadline = subprocess.Popen([sys.executable, "-c", _DEADLINE, str(os.getpid()),
                                 str(timeout), message, interrupted],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        deadline.stdout.readline()  # (once it takes Ctrl-C; '' if it could not start)
        deadline.stdout.close()
        print(f"Waiting up to {timeout:g} s (--cluster-timeout) for the {len(addresses)} "
              "workers of TF_CONFIG to start ...", flush=True)
        return zoo.distribute.get_strategy("multi_worker")
    finally:
        deadline.kill()
        deadline.wait()


def _check_cluster_flags(args):
    """The flags of a JAX cluster, given where nothing would read them: one line."""
    import keras

    cluster = [flag for flag, value in (
        ("--coordinator", args.coordinator), ("--num-processes", args.num_processes),
        ("--process-id", args.process_id),
        ("--cluster-timeout", args.cluster_timeout))
        if value is not None]
    if cluster and args.strategy != "multi_worker":  # each machine would train alone
        what = ("is how long --strategy multi_worker waits for the other processes"
                if cluster == ["--cluster-timeout"] else "join a JAX cluster")
        raise UserError(f"{', '.join(cluster)} {what}: give --strategy multi_worker with "
                        f"them; received --strategy {args.strategy}.")
    if args.cluster_timeout is not None and not 0 < args.cluster_timeout < float("inf"):
        raise UserError(f"--cluster-timeout is the seconds to wait for the other processes: "
                        f"a finite number > 0; received {args.cluster_timeout:g}.")
    cluster = [flag for flag in cluster if flag != "--cluster-timeout"]  # (both backends')
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
    run_dir = default_run_dir(args)
    from zoo.training.recipe import _check_epochs_to_go

    # (zoo.train's, after the statistics pass, said epochs=)
    _check_epochs_to_go(run_dir, args.epochs, "--epochs ", "another --run-dir")
    setup = Setup(args, run_dir, strategy,
                   check=functools.partial(_check_cycles, args) if args.snapshots else None)
    val = setup.load(split=setup.val_split) if setup.val_split else None
    common = dict(epochs=args.epochs, run_dir=run_dir, seed=args.seed, strategy=strategy,
                  verbose=fit_verbosity(),
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
    if "test" in setup.info.splits and unlabelled(args.dataset, "test", args.data_dir):
        print(f"No test score: the test split of {args.dataset} has no labels (-1, as TFDS "
              "marks them).")
    elif "test" in setup.info.splits:
        test = setup.load(split="test")
        # (padded to split over the replicas, as zoo.train pads validation: a last batch
        # smaller than them left one empty, after the whole run had trained)
        _, parallel, replicas = zoo.distribute.backend_distribution(strategy)
        test = zoo.distribute.cluster_share(test) if zoo.distribute.process_count() > 1 \
            else zoo.distribute.even_validation(replicas, test, uneven=parallel is not None)
        for which in scored_weights(result.model, run_dir, args.strategy):
            if not _finite(result.model):  # (scored, NaNs gave "100.00 %" errors)
                print(f"No test score for {which}: they are not finite (the run diverged).")
                continue
            scores = result.model.evaluate(test, return_dict=True, verbose=0)
            top1 = next(v for k, v in scores.items() if k.endswith("top1_accuracy"))
            top5 = next(v for k, v in scores.items() if k.endswith("top5_accuracy"))
            top5 = (f", top-5 error {100 * (1 - top5):.2f} %" if setup.info.num_classes > 5
                    else "")  # (always 0 of five classes or fewer, as zoo evaluate drops it)
            print(f"test top-1 error {100 * (1 - top1):.2f} %{top5} ({which})")
    written = [shown for entry, shown in (("history.csv", "history.csv"),
                                          ("checkpoints", "checkpoints/"), ("logs", "logs/"),
                                          ("learning_curves.png", "plots"))
               if os.path.exists(os.path.join(run_dir, entry))]
    print(f"Run directory: {run_dir} ({', '.join(written) or 'nothing written'})")
    if "checkpoints/" in written:  # (it says what they record)
        whole_images_hint(setup)
    if args.snapshots:
        snapshots = os.path.dirname(paths[0]) if paths else os.path.join(run_dir, "snapshots")
        quoted = shlex.quote  # (a folder named "my runs" was two arguments, pasted)
        print(f"Snapshots: {snapshots} ({len(paths)} files). Combine them with:\n"
              f"  zoo ensemble {quoted(os.path.join(run_dir, 'checkpoints', 'last.keras'))} "
              f"--snapshots {quoted(snapshots)} --last {min(4, len(paths))} "
              f"--output {quoted(os.path.join(run_dir, 'snapshot_ensemble.keras'))}")
    return 1 if result.diverged else 0


def _finite(model):
    import numpy as np

    return all(np.isfinite(weight).all() for weight in model.get_weights())


def _check_cycles(args, setup):
    """``--snapshots M`` against the most updates the run can make (``ensembles.
    train_snapshots`` checks the exact count, once the pipeline is built)."""
    examples = setup.info.splits.get("train")
    if examples is None:  # (a dataset without one is the pipeline's one line)
        return
    steps = (examples // args.batch_size if drops_last_batch(
        examples, args.batch_size, setup.strategy) else -(-examples // args.batch_size))
    if args.snapshots > args.epochs * steps:
        raise UserError(
            f"--snapshots must be at most the run's updates, --epochs x batches per epoch "
            f"= {args.epochs} x {steps} ({examples} training examples in batches of "
            f"{args.batch_size}) = {args.epochs * steps}; received {args.snapshots}.")


def add_train(sub):
    train = sub.add_parser("train", help="train a model with the paper recipe",
                           description="Train a zoo model with the paper recipe (SGD, momentum "
                           "0.9, weight decay 5e-4, learning rate divided by 10 on plateaus), "
                           "or, with --snapshots M, as a cyclic snapshot ensemble. Run again "
                           "with the same arguments to resume after a crash.")
    model_and_data_flags(train, epochs=20, run_dir="runs/MODEL_DATASET")
    train.add_argument("--lr", type=float, default=0.01,
                       help="initial learning rate (with --snapshots: at each restart) "
                       "(default: %(default)s)")
    train.add_argument("--optimizer", default="sgd", metavar="OPTIMIZER",
                       choices=OPTIMIZER_CHOICES,
                       help="sgd: the paper's (momentum, L2 decay through the gradient); "
                       "nesterov; adam, rmsprop, adagrad with decoupled weight decay "
                       "(default: %(default)s)")
    train.add_argument("--momentum", type=float, default=None,
                       help="SGD/Nesterov momentum (RMSprop's momentum with rmsprop; adam "
                       "and adagrad have none) (default: 0.9)")
    train.add_argument("--weight-decay", type=float, default=5e-4,
                       help="weight decay (default: the paper's 5e-4)")
    train.add_argument("--lr-patience", type=int, default=None,
                       help="epochs without improvement before the learning rate is "
                       "divided by 10 (default 5; not with --snapshots, whose cycles set "
                       "the learning rate)")
    train.add_argument("--ema", action="store_true",
                       help="Polyak averaging: keep an exponential moving average of the "
                       "weights (momentum 0.99), validate, checkpoint and test with it "
                       "(not for networks with BatchNorm, whose statistics it leaves raw)")
    train.add_argument("--snapshots", type=int, default=None, metavar="M",
                       help="train ONE run as a snapshot ensemble: M cosine cycles with warm "
                       "restarts (Huang et al. 2017), a snapshot at the end of each, written "
                       "to RUN_DIR/snapshots (no ReduceLROnPlateau)")
    train.add_argument("--strategy", default="auto", metavar="STRATEGY",
                       choices=STRATEGY_CHOICES,
                       help="auto, one_device, mirrored or multi_worker (TensorFlow: by "
                       "TF_CONFIG; JAX: by the three flags below) (default: %(default)s)")
    cluster = train.add_argument_group(
        "a JAX cluster (--strategy multi_worker under KERAS_BACKEND=jax)",
        "Start the same command on every machine; each flag falls back on Keras' variable "
        "KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES or _PROCESS_ID.")
    cluster.add_argument("--coordinator", metavar="HOST:PORT",
                         help="process 0's address and a free port, the same on every process")
    cluster.add_argument("--num-processes", type=int, metavar="N")
    cluster.add_argument("--process-id", type=int, metavar="I", help="0 on the coordinator")
    cluster.add_argument("--cluster-timeout", type=float, default=None, metavar="SECONDS",
                         help="how long each process waits for the others to start "
                         "(120; under TensorFlow too, for the workers of TF_CONFIG)")
    train.add_argument("--precision", choices=("mixed_float16", "mixed_bfloat16"), default=None)
    train.add_argument("--jit-compile", action="store_true", default=None,
                       help="compile with XLA (always on JAX)")
    train.set_defaults(run=_cmd_train)
