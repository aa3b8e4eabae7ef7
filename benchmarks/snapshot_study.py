"""Snapshot ensembles on all 1,797 digits: k-fold cross-validation, pooled test predictions.

The snapshot test (tests/ensembles/test_digits.py) judges its claim on 360 test digits,
where one image decides top-1. This study runs the same recipe in k folds, so that every
digit is a test image once, and pools the k test sets' predictions. It compares:

- the snapshot ensemble (Huang et al. 2017): ONE run of 8 cosine cycles restarting at
  lr 0.3, its last 4 snapshots averaged;
- each of those 4 snapshots alone: the best and last of them, and their mean;
- "NoCycle" (Huang et al.'s control): the same epochs under ONE cosine cycle, its
  checkpoints at the same 4 epochs averaged;
- an independent ensemble of the same size: 4 single-cycle runs from different seeds
  (the NoCycle run is the first), each run trained as long as the whole snapshot run.

The recipe is the test's: ResNet-18, width 0.25, cifar stem, 8x8 digits, batch 32, 40
epochs, weight decay 1e-4, per-channel normalisation from the fold's training images.
Too slow for CI (5 runs of 40 epochs per fold: about 25 minutes on two cores for 5 folds).

Run: ``.venv/bin/python benchmarks/snapshot_study.py [--folds 5] [--quick]``. Writes
``runs/snapshot_study/results.csv`` and prints a Markdown table.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import data  # noqa: E402
import ensembles  # noqa: E402
import zoo  # noqa: E402
from ensembles import metrics  # noqa: E402

SIZE, BATCH, LR, WEIGHT_DECAY, KEEP = 8, 32, 0.3, 1e-4, 4


def digits():
    """All 1,797 digits as ``data.digits_arrays`` makes them (8x8, [0, 255], RGB)."""
    raw = load_digits()
    grey = raw.images[..., None].astype("float32") * (255.0 / 16.0)
    return np.repeat(grey, 3, axis=-1), raw.target.astype("int32")


def batches(images, labels, seed=None):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if seed is not None:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(BATCH)


def predict(build, paths, images):
    """Probabilities ``(len(paths), n, 10)`` of the weights in ``paths``."""
    model, out = build(), []
    for path in paths:
        model.load_weights(path)
        out.append(model.predict(images, batch_size=256, verbose=0))
    return np.stack(out)


def run_fold(fold, train, test, epochs, cycles, seeds, workdir):
    stats = data.compute_statistics(batches(*train))
    build = lambda: zoo.resnet18(  # noqa: E731
        classes=10, width=0.25, stem="cifar",
        input_tensor=data.normalized_input(stats, (SIZE, SIZE, 3)))
    every = epochs // cycles  # the cyclic run's snapshot epochs, for the NoCycle checkpoints

    def train_run(seed, cycles, name, extra=()):
        keras.utils.set_random_seed(seed)
        run_dir = os.path.join(workdir, f"fold{fold}_{name}")
        _, paths = ensembles.train_snapshots(
            build, batches(*train, seed=seed), epochs=epochs, cycles=cycles,
            learning_rate=LR, weight_decay=WEIGHT_DECAY, seed=seed, run_dir=run_dir,
            callbacks=list(extra), verbose=0)
        return run_dir, paths

    start = time.time()
    _, cyclic = train_run(seeds[0], cycles, "cyclic")
    out = {"snapshots": predict(build, cyclic[-KEEP:], test[0])}
    nocycle_dir = os.path.join(workdir, f"fold{fold}_nocycle_0", "checkpoints_every")
    _, final = train_run(seeds[0], 1, "nocycle_0", [ensembles.CheckpointSnapshots(
        nocycle_dir, every=every, at_lr_drop=False)])
    out["nocycle"] = predict(build, ensembles.snapshot_paths(nocycle_dir)[-KEEP:], test[0])
    independent = [final[-1]]
    for i, seed in enumerate(seeds[1:KEEP], start=1):
        independent.append(train_run(seed, 1, f"nocycle_{i}")[1][-1])
    out["independent"] = predict(build, independent, test[0])
    print(f"fold {fold}: {len(test[1])} test digits, {time.time() - start:.0f} s", flush=True)
    return out


def table(pooled, labels):
    """One row per contender: top-1 error (%) and NLL on the pooled test predictions."""
    snapshots = pooled["snapshots"]
    per_snapshot = [metrics.scores(p, labels) for p in snapshots]
    best = min(range(KEEP), key=lambda i: (per_snapshot[i]["top1_error"],
                                           per_snapshot[i]["nll"]))
    rows = {
        f"snapshot ensemble (last {KEEP} of one cyclic run)": metrics.scores(
            snapshots.mean(axis=0), labels),
        f"best snapshot (no. {best + 1} of the last {KEEP})": per_snapshot[best],
        "last snapshot": per_snapshot[-1],
        "mean snapshot": pd.DataFrame(per_snapshot).mean().to_dict(),
        f"NoCycle: last {KEEP} checkpoints of one cosine cycle": metrics.scores(
            pooled["nocycle"].mean(axis=0), labels),
        "NoCycle: final model": metrics.scores(pooled["nocycle"][-1], labels),
        f"independent ensemble ({KEEP} runs)": metrics.scores(
            pooled["independent"].mean(axis=0), labels),
        "mean independent member": pd.DataFrame(
            [metrics.scores(p, labels) for p in pooled["independent"]]).mean().to_dict(),
    }
    out = pd.DataFrame.from_dict(rows, orient="index")[["top1_error", "nll", "ece"]]
    out["top1_error"] *= 100
    return out.rename(columns={"top1_error": "top-1 error (%)", "nll": "NLL", "ece": "ECE"})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 folds of 8 epochs (a smoke run)")
    parser.add_argument("--output", default="runs/snapshot_study/results.csv")
    args = parser.parse_args(argv)
    if args.quick:
        args.folds, args.epochs = 2, 8
    images, labels = digits()
    fold_of = np.random.default_rng(args.seed).permutation(len(labels)) % args.folds
    pooled, pooled_labels = {}, []
    with tempfile.TemporaryDirectory() as workdir:
        for fold in range(args.folds):
            train, test = fold_of != fold, fold_of == fold
            seeds = [args.seed + 1000 * fold + i for i in range(KEEP)]
            out = run_fold(fold, (images[train], labels[train]), (images[test], labels[test]),
                           args.epochs, args.cycles, seeds, workdir)
            for key, probs in out.items():
                pooled[key] = np.concatenate([pooled[key], probs], axis=1) if key in pooled \
                    else probs
            pooled_labels.append(labels[test])
    result = table(pooled, np.concatenate(pooled_labels))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp = args.output + ".tmp"
    result.to_csv(tmp)
    os.replace(tmp, args.output)
    print(f"\n{args.folds}-fold cross-validation over {len(labels)} digits, {args.epochs} "
          f"epochs, {args.cycles} cycles, {time.strftime('%Y-%m-%d')}:\n")
    print(result.round(4).to_markdown() if _has_tabulate() else result.round(4).to_string())
    print(f"\nwrote {args.output}")
    return result


def _has_tabulate():
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
