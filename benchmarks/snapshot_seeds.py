"""The snapshot test's seed study: its recipe (the cyclic part) over several seeds.

tests/ensembles/test_digits.py (``test_cyclic_snapshots_beat_their_best_snapshot_pooled_
over_seeds``) trains ONE ResNet-18 (width 0.25, CIFAR stem, the digits at 8x8) for 40
epochs under eight cosine cycles restarting at 0.3, without validation data, and averages
its last four snapshots. Pooled over seeds 0-2 on the validation and test splits (540
digits a seed), it asserts that the ensemble's NLL is at least 5 % below the best
snapshot's (the best position in the run) and its top-1 error no higher.

This reruns that recipe for each seed given, prints each seed's numbers and whether both
claims hold on that seed alone, then the pooled verdict over all of them, so the test's
docstring quotes measured numbers. About a minute a seed on two cores (twice that with
``--nocycle``); too slow for CI.

``--nocycle`` adds Huang et al.'s NoCycle control, which the test printed beside its
claim until 2026-12-07 (it doubled the test's time and asserted nothing): the same 40
epochs under ONE cosine cycle, a checkpoint every 5 epochs; pooled over the seeds, its
last four checkpoints averaged and its final model (the README's NoCycle rows).

Run: ``.venv/bin/python benchmarks/snapshot_seeds.py [--seeds 0 1 2 ...] [--nocycle]``.
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import data  # noqa: E402
import ensembles  # noqa: E402
import zoo  # noqa: E402
from ensembles import metrics  # noqa: E402

SIZE = 8
MARGIN = 0.95  # the test's: the ensemble's NLL below 95 % of the best snapshot's


def snapshot_probabilities(seed, stats, held_out, nocycle=False):
    """``(4, digits, 10)``: the last four snapshots' probabilities on ``held_out``; with
    ``nocycle``, the same of the NoCycle run's checkpoints at epochs 25, 30, 35 and 40."""
    def build():
        return zoo.resnet18(classes=10, width=0.25, stem="cifar",
                            input_tensor=data.normalized_input(stats, (SIZE, SIZE, 3)))

    def predict(paths):
        members = ensembles.members_of(ensembles.from_snapshots(build, paths))
        return np.stack([np.concatenate([m.predict(ds, verbose=0) for ds in held_out])
                         for m in members])

    common = dict(epochs=40, learning_rate=0.3, weight_decay=1e-4, seed=seed, verbose=0)
    # A fresh dataset per run: its order depends on its seed alone, not on earlier runs.
    train = data.load("digits", "train", image_size=SIZE, batch_size=32, seed=seed)
    with tempfile.TemporaryDirectory() as run_dir:
        if not nocycle:
            _, paths = ensembles.train_snapshots(build, train, cycles=8, run_dir=run_dir,
                                                 **common)
            return predict(paths[-4:])
        every = os.path.join(run_dir, "every_5")
        ensembles.train_snapshots(build, train, cycles=1, run_dir=run_dir, callbacks=[
            ensembles.CheckpointSnapshots(every, every=5, at_lr_drop=False)], **common)
        paths = ensembles.snapshot_paths(every)[-4:]
        assert [os.path.basename(p) for p in paths] == [
            f"snapshot-epoch{e:03d}.weights.h5" for e in (25, 30, 35, 40)], paths
        return predict(paths)


def verdict(probabilities, labels):
    """The test's two claims on ``(4, digits, 10)`` snapshot probabilities."""
    each = [metrics.scores(p, labels) for p in probabilities]
    ensemble = metrics.scores(probabilities.mean(axis=0), labels)
    best_nll = min(s["nll"] for s in each)
    best_top1 = min(s["top1_error"] for s in each)
    return {"ensemble_top1": ensemble["top1_error"], "ensemble_nll": ensemble["nll"],
            "best_top1": best_top1, "best_nll": best_nll,
            "nll_margin_held": ensemble["nll"] < MARGIN * best_nll,
            "top1_held": ensemble["top1_error"] <= best_top1}


def _line(name, row):
    return (f"{name}: ensemble {100 * row['ensemble_top1']:.2f} % / {row['ensemble_nll']:.4f}"
            f", best snapshot {100 * row['best_top1']:.2f} % / {row['best_nll']:.4f}; NLL "
            f"{MARGIN:.0%} margin {'held' if row['nll_margin_held'] else 'NOT held'}, top-1 "
            f"{'held' if row['top1_held'] else 'NOT held'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--nocycle", action="store_true",
                        help="also train Huang et al.'s NoCycle control for every seed")
    args = parser.parse_args(argv)
    stats = data.compute_statistics(data.load("digits", "train", image_size=SIZE,
                                              shuffle=False))
    held_out = [data.load("digits", split, image_size=SIZE, batch_size=128)
                for split in ("validation", "test")]
    labels = np.concatenate([y for ds in held_out for _, y in ds.as_numpy_iterator()])
    rows, pooled, nocycle = [], [], []
    for seed in args.seeds:
        pooled.append(snapshot_probabilities(seed, stats, held_out))
        rows.append({"seed": seed, **verdict(pooled[-1], labels)})
        print(_line(f"seed {seed}", rows[-1]), flush=True)
        if args.nocycle:
            nocycle.append(snapshot_probabilities(seed, stats, held_out, nocycle=True))
    all_labels = np.concatenate([labels] * len(pooled))
    together = verdict(np.concatenate(pooled, axis=1), all_labels)
    print(_line(f"\npooled over seeds {args.seeds} (the test's claim)", together))
    if nocycle:
        nocycle = np.concatenate(nocycle, axis=1)
        for name, probabilities in (("checkpoints at epochs 25-40 averaged",
                                     nocycle.mean(axis=0)), ("its final model", nocycle[-1])):
            s = metrics.scores(probabilities, all_labels)
            print(f"NoCycle, {name}: {100 * s['top1_error']:.2f} % / {s['nll']:.4f}")
    table = pd.DataFrame(rows)
    n = len(table)
    print(f"seeds alone: NLL margin held on {table['nll_margin_held'].sum()}/{n}, top-1 on "
          f"{table['top1_held'].sum()}/{n}")
    return table, together


if __name__ == "__main__":
    main()
