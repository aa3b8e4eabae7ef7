"""The Snapshot Ensembles paper's ResNet-110 CIFAR-10 row (Huang et al. 2017, table 2):
single model 5.52 %, NoCycle 5.49 %, snapshot ensemble 5.32 % test error
(``../shared/reference.md``).

Three results from two runs of ``zoo.resnet110()`` (option A shortcuts, 1.7M parameters) on
CIFAR-10 with the standard augmentation (4-pixel zero padding, random 32x32 crops,
horizontal flips) and per-channel normalisation, SGD with momentum 0.9, weight decay 1e-4,
batch 64, B = 200 epochs, as the authors' code runs it (github.com/gaohuang/SnapshotEnsemble:
``-nEpochs 200 -nCycles 5 -LR 0.2 -batchSize 64``):

- ``single model``: the standard schedule, lr 0.1 divided by 10 at 50 % and 75 % of B;
- ``NoCycle``: that run's checkpoints at the end of each B/M epochs, averaged (the paper's
  control: snapshots without restarts);
- ``snapshot ensemble``: ONE run of M = 5 cosine cycles from lr 0.2, its M snapshots
  averaged (``ensembles.train_snapshots``).

Needs CIFAR-10 from TensorFlow Datasets (``tfds.load("cifar10")``, downloaded once) and a
GPU: 2 runs x 200 epochs x 50,000 images = 20 million training images. The H200 run of
the README's GPU table trained ResNet-50 at 6,477 img/s, 4.09 GMACs an image (26.5 TMAC/s);
at that rate ResNet-110's 0.25 GMACs would take 106,000 img/s, 3 minutes in all: an
optimistic floor, as 32x32 maps at batch 64 keep a GPU far less busy; expect an hour or
more. On this 2-core CPU, far longer than anyone would wait.
``--smoke`` runs every step of it on a synthetic stand-in of CIFAR's shapes (64 random
32x32 images, ResNet-8, 2 epochs, 2 cycles) in 15 s: what CI checks.

Run: ``.venv/bin/python benchmarks/snapshot_cifar.py [--smoke] [--out results.csv]``.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PAPER = {"single model": 5.52, "NoCycle": 5.49, "snapshot ensemble": 5.32}


def cifar10(smoke):
    """``(train images, train labels), (test images, test labels)`` as uint8/int32 arrays."""
    if smoke:
        rng = np.random.default_rng(0)
        return ((rng.integers(0, 256, (64, 32, 32, 3), dtype="uint8"),
                 rng.integers(0, 10, 64).astype("int32")),
                (rng.integers(0, 256, (32, 32, 32, 3), dtype="uint8"),
                 rng.integers(0, 10, 32).astype("int32")))
    import tensorflow_datasets as tfds

    splits = tfds.load("cifar10", split=["train", "test"], as_supervised=True, batch_size=-1)
    return tuple((tfds.as_numpy(x), tfds.as_numpy(y).astype("int32")) for x, y in splits)


def batches(images, labels, batch_size, seed=None):
    """Batches of float images; with ``seed``, shuffled and augmented as He et al. did."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if seed is not None:
        def augment(image, label):
            padded = tf.pad(tf.cast(image, "float32"), [[4, 4], [4, 4], [0, 0]])
            image = tf.image.random_flip_left_right(tf.image.random_crop(padded, [32, 32, 3]))
            return image, label

        ds = ds.shuffle(len(labels), seed=seed).map(augment, num_parallel_calls=4)
    else:
        ds = ds.map(lambda image, label: (tf.cast(image, "float32"), label))
    return ds.batch(batch_size).prefetch(2)


def step_schedule(learning_rate, epochs, steps_per_epoch):
    """lr divided by 10 at 50 % and 75 % of the run, per step (Keras' own schedule)."""
    import keras

    total = epochs * steps_per_epoch
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [total // 2, total * 3 // 4], [learning_rate, learning_rate / 10, learning_rate / 100])


def run(args):
    import data
    import ensembles
    import zoo

    (train_x, train_y), (test_x, test_y) = cifar10(args.smoke)
    stats = data.compute_statistics(batches(train_x, train_y, 256))
    build = lambda: zoo.resnet_cifar(  # noqa: E731
        args.depth, classes=10, input_tensor=data.normalized_input(stats, (32, 32, 3)))
    train = batches(train_x, train_y, args.batch_size, seed=0)
    test = batches(test_x, test_y, 256)
    steps = int(train.cardinality())
    every = args.epochs // args.cycles
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        start = time.time()
        optimizer = lambda: zoo.make_optimizer(  # noqa: E731
            "sgd", step_schedule(0.1, args.epochs, steps), weight_decay=1e-4)
        checkpoints = os.path.join(work, "single", "every")
        result = zoo.train(build, train, epochs=args.epochs, optimizer=optimizer,
                           reduce_lr=False, seed=0, run_dir=os.path.join(work, "single"),
                           callbacks=[ensembles.CheckpointSnapshots(checkpoints, every=every,
                                                                    at_lr_drop=False)],
                           verbose=2 if not args.smoke else 0)
        rows["single model"] = ensembles.evaluate(result.model, test).iloc[0]
        nocycle = ensembles.from_snapshots(build, ensembles.snapshot_paths(checkpoints))
        rows["NoCycle"] = ensembles.evaluate(nocycle, test).loc["ensemble"]
        _, paths = ensembles.train_snapshots(
            build, train, epochs=args.epochs, cycles=args.cycles, learning_rate=args.lr,
            weight_decay=1e-4, seed=0, run_dir=os.path.join(work, "snapshots"),
            verbose=2 if not args.smoke else 0)
        snapshot = ensembles.from_snapshots(build, paths)
        rows["snapshot ensemble"] = ensembles.evaluate(snapshot, test).loc["ensemble"]
        seconds = time.time() - start
    table = pd.DataFrame({
        "top1_error_%": {k: 100 * v["top1_error"] for k, v in rows.items()},
        "nll": {k: v["nll"] for k, v in rows.items()},
        "paper_error_%": PAPER if args.depth == 110 and not args.smoke else {},
    })
    table.attrs["seconds"] = seconds
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="a synthetic stand-in, ResNet-8, 2 epochs, 2 cycles (CI)")
    parser.add_argument("--depth", type=int, default=110)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.2, help="the cycles' initial rate")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=None, help="also write the table as CSV")
    args = parser.parse_args(argv)
    if args.smoke:
        args.depth, args.epochs, args.cycles, args.batch_size = 8, 2, 2, 16
    table = run(args)
    print(table.round(4).to_string())
    print(f"{table.attrs['seconds']:.0f} s")
    if args.out:
        tmp = args.out + ".tmp"
        table.to_csv(tmp)
        os.replace(tmp, args.out)
    return table


if __name__ == "__main__":
    main()
