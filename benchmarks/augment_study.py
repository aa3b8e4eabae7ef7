"""What training augmentation does on the digits: test top-1 error and NLL per ``--augment``.

Each run is `zoo train`'s pipeline (the same ``runs.Setup`` the command line uses): ResNet-18
(width 0.25, cifar stem) on the digits at 16x16; with ``crop`` the images load at 18x18
(``data.crop_scale(16)``) and train on random 16x16 crops, and validation and test take the
centre crop. The paper's recipe (SGD, momentum 0.9, weight decay 5e-4, learning rate divided
by 10 on plateaus), 15 epochs from lr 0.05, seeds 0, 1 and 2, the test split's 360 images.
Too slow for CI (about 15 minutes on two cores).

Run: ``.venv/bin/python benchmarks/augment_study.py [--epochs 15] [--seeds 0 1 2]``.
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pandas as pd  # noqa: E402

import ensembles  # noqa: E402
import zoo  # noqa: E402
from zoo.cli import commands, runs  # noqa: E402

SPECS = ("none", "flip", "crop", "crop+flip", "paper", "crop+jitter", "crop+erasing")


def run_one(spec, seed, epochs, workdir):
    args = commands._parser().parse_args([
        "train", "--model", "resnet18", "--image-size", "16", "--augment", spec,
        "--model-arg", "width=0.25", "--model-arg", "stem=cifar", "--seed", str(seed)])
    setup = runs.Setup(args, workdir)
    result = zoo.train(setup.build, setup.load_train(), setup.load(setup.val_split),
                       epochs=epochs, learning_rate=0.05, seed=seed, verbose=0)
    table = ensembles.evaluate(result.model, setup.load("test"))
    return table.iloc[0][["top1_error", "nll"]].to_dict()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--specs", nargs="+", default=list(SPECS))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for spec in args.specs:
            for seed in args.seeds:
                scores = run_one(spec, seed, args.epochs, workdir)
                print(f"{spec:<13} seed {seed}: top-1 error {100 * scores['top1_error']:.2f} %, "
                      f"NLL {scores['nll']:.4f}", flush=True)
                rows.append({"augment": spec, "seed": seed, **scores})
    table = pd.DataFrame(rows).groupby("augment", sort=False)[["top1_error", "nll"]].mean()
    table["top1_error"] *= 100
    print(f"\nmean over seeds {args.seeds}, {args.epochs} epochs:\n")
    print(table.rename(columns={"top1_error": "top-1 error (%)", "nll": "NLL"})
          .round(4).to_string())
    return table


if __name__ == "__main__":
    main()
