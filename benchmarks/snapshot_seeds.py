"""The snapshot test's seed study: its exact recipe over several seeds, on the fixed split.

tests/ensembles/test_digits.py asserts, at seed 0, that the cyclic snapshot ensemble (the
last 4 of 8 snapshots of ONE ResNet-18 run) has a lower test NLL than its best snapshot and
no higher top-1 error. This reruns that recipe for each seed and counts how often each
claim holds, so the test's docstring and the README quote measured numbers. About a
minute a seed on two cores; too slow for CI.

Run: ``.venv/bin/python benchmarks/snapshot_seeds.py [--seeds 0 1 2 ...]``.
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pandas as pd  # noqa: E402

import data  # noqa: E402
import ensembles  # noqa: E402
import zoo  # noqa: E402

SIZE = 8


def run_seed(seed, stats, val, test):
    def build():
        return zoo.resnet18(classes=10, width=0.25, stem="cifar",
                            input_tensor=data.normalized_input(stats, (SIZE, SIZE, 3)))

    train = data.load("digits", "train", image_size=SIZE, batch_size=32, seed=seed)
    with tempfile.TemporaryDirectory() as run_dir:
        _, paths = ensembles.train_snapshots(build, train, val, epochs=40, cycles=8,
                                             learning_rate=0.3, weight_decay=1e-4, seed=seed,
                                             run_dir=run_dir, verbose=0)
        table = ensembles.evaluate(ensembles.from_snapshots(build, paths, last=4), test)
    snapshots = table.iloc[:4]
    return {
        "seed": seed,
        "ensemble_top1": table.loc["ensemble", "top1_error"],
        "ensemble_nll": table.loc["ensemble", "nll"],
        "best_top1": snapshots["top1_error"].min(), "best_nll": snapshots["nll"].min(),
        "mean_top1": snapshots["top1_error"].mean(), "mean_nll": snapshots["nll"].mean(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(12)))
    args = parser.parse_args(argv)
    stats = data.compute_statistics(data.load("digits", "train", image_size=SIZE,
                                              shuffle=False))
    val = data.load("digits", "validation", image_size=SIZE, batch_size=128)
    test = data.load("digits", "test", image_size=SIZE, batch_size=128)
    rows = []
    for seed in args.seeds:
        row = run_seed(seed, stats, val, test)
        rows.append(row)
        print(f"seed {seed}: ensemble {100 * row['ensemble_top1']:.2f} % / "
              f"{row['ensemble_nll']:.4f}, best snapshot {100 * row['best_top1']:.2f} % / "
              f"{row['best_nll']:.4f}, mean snapshot {100 * row['mean_top1']:.2f} % / "
              f"{row['mean_nll']:.4f}", flush=True)
    table = pd.DataFrame(rows)
    top1 = table["ensemble_top1"] <= table["best_top1"]
    nll = table["ensemble_nll"] < table["best_nll"]
    n = len(table)
    print(f"\ntop-1 no higher than the best snapshot's: {top1.sum()}/{n}; NLL lower: "
          f"{nll.sum()}/{n}; both: {(top1 & nll).sum()}/{n}; top-1 below the mean "
          f"snapshot's: {(table['ensemble_top1'] < table['mean_top1']).sum()}/{n}")
    return table


if __name__ == "__main__":
    main()
