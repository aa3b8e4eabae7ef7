"""MC dropout on the digits, beside the deterministic model and the dropout-variant
ensemble (issue 29, part 3).

The demo's members (``zoo.cli.demo.train_members``: two-tower LRN AlexNets at 67x67, six
epochs, dropout 0.3 and 0.4 at width 512, and width 384 at dropout 0.3), on the test split:

- ``deterministic``: the first member (dropout 0.3), dropout off, as Keras predicts;
- ``mc dropout (N)``: the same weights, N samples with dropout on (``ensembles.mc_dropout``);
- ``dropout variants``: the ensemble of the three members (``ensembles.Ensemble``).

Columns: top-1 error, NLL and ECE of the combined prediction, and the mean mutual
information (the samples' or members' disagreement) on the correct and on the misclassified
test images. The deterministic model has no mutual information.

Run: ``.venv/bin/python benchmarks/mc_dropout_digits.py [--seed 0] [--samples 20]``
(about 3 minutes on two cores). Prints the table and writes
``runs/mc_dropout_digits/seedN/results.csv`` (each seed trains in a folder of its own).
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pandas as pd  # noqa: E402

from safeio import write_csv  # noqa: E402


def row(name, model, test):
    import ensembles

    table = ensembles.evaluate(model, test)
    scores = table.loc["ensemble" if "ensemble" in table.index else table.index[0]]
    out = {"model": name, "top1_error": scores["top1_error"], "nll": scores["nll"],
           "ece": scores["ece"]}
    if ensembles.is_ensemble(model):
        signals = ensembles.uncertainty(model, test)
        out["mi_correct"] = signals.loc[signals["correct"], "mutual_information"].mean()
        out["mi_misclassified"] = signals.loc[~signals["correct"], "mutual_information"].mean()
        out["misclassified"] = int((~signals["correct"]).sum())
    return out


def main(argv=None):
    from benchmarks.common import run_seed_study

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=6)
    run_seed_study(parser, argv, "mc_dropout_digits", run)


def run(args):
    import ensembles
    import zoo
    from zoo.cli import demo

    start = time.time()
    setup = demo.load_data("digits", args.seed)
    test = setup.load(setup.held_out[-1], batch_size=128)
    groups = demo.train_members(setup, args.output_dir, models=("alexnet",),
                                epochs=args.epochs, seed=args.seed,
                                strategy=zoo.distribute.get_strategy("one_device"))
    members = groups["alexnet variants"]
    rows = [row("deterministic (dropout 0.3, off)", members[0], test),
            row(f"mc dropout ({args.samples} samples)",
                ensembles.mc_dropout(members[0], samples=args.samples), test),
            row("dropout variants (3 members)", ensembles.Ensemble(members), test)]
    table = pd.DataFrame(rows).set_index("model")
    os.makedirs(args.output_dir, exist_ok=True)
    write_csv(table, os.path.join(args.output_dir, "results.csv"))
    print(table.round(4).to_string())
    print(f"seed {args.seed}, {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
