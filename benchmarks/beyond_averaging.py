"""Temperature scaling and distillation of the demo's ensembles on the digits (issue 30).

The demo's members (``zoo.cli.demo.train_members``: three two-tower LRN AlexNets and a
5-cycle ResNet-18 snapshot run, of which the last 3 snapshots are kept), then:

1. **Calibration**, for every group and the group-balanced combination of all (``all``):
   the ensemble as it is, the ensemble then one temperature fitted on the validation split
   (``ensembles.calibrate``), and each member calibrated on validation, then combined
   (``per_member=True``). Test split; Rahaman and Thiery (2021) found the order matters.
2. **Distillation** of the snapshot ensemble (the teacher) into one ResNet-18 of the same
   architecture (Hinton et al. 2015; T=4, alpha=0.9), beside the same student trained on
   the labels alone with the same schedule, seed and epochs: test NLL, top-1, ECE, and
   images/s served (``predict_on_batch`` on batches of 128 test images, median of
   repeats).

Run: ``.venv/bin/python benchmarks/beyond_averaging.py [--seed 0]`` (about 3 minutes a
seed on two cores, 2026-12-05); ``--smoke`` trains tiny versions (the slow tier runs it).
Prints both tables and writes ``calibration.csv`` and ``distillation.csv`` to
``--output-dir``.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

COLUMNS = ["top1_error", "nll", "ece"]


def calibration_table(groups, validation, test):
    """Rows: each group's (and ``all``'s) ensemble, calibrated after combining, and combined
    after calibrating its members; the temperatures fitted on ``validation``."""
    import ensembles
    from zoo.cli import demo

    combined, positions = demo.combine_groups(groups)
    names, test_probs, test_labels = ensembles.predict_members(combined, test)
    _, val_probs, val_labels = ensembles.predict_members(combined, validation)
    rows = []
    sources = [(g, ensembles.Ensemble(m)) for g, m in groups.items()] + [("all", combined)]
    for group, source in sources:
        chosen = positions[group]
        table = ensembles.evaluate(
            source, None, predictions=([names[i] for i in chosen], test_probs[chosen],
                                       test_labels),
            calibrate_on=([names[i] for i in chosen], val_probs[chosen], val_labels))
        plain = table.loc["ensemble"]
        rows.append({"group": group, "order": "ensemble (not calibrated)",
                     **plain[COLUMNS].to_dict(), "temperature": 1.0})
        rows.append({"group": group, "order": "ensemble, then calibrate",
                     "top1_error": plain["top1_error"], "nll": plain["nll_calibrated"],
                     "ece": plain["ece_calibrated"], "temperature": plain["temperature"]})
        each = table.loc["ensemble of calibrated members"]
        member_ts = table.iloc[:len(chosen)]["temperature"]
        rows.append({"group": group, "order": "calibrate members, then ensemble",
                     **each[COLUMNS].to_dict(),
                     "temperature": f"{member_ts.min():.2f}-{member_ts.max():.2f}"})
    return pd.DataFrame(rows).set_index(["group", "order"])


def images_per_second(models, images, repeats):
    """Each model's images/s on one batch, median over ``repeats`` calls taken in turn
    (model A, B, C, A, B, C, ...), so that a slower moment of the machine costs each
    model alike."""
    for model in models:
        model.predict_on_batch(images)  # traced once
    times = [[] for _ in models]
    for _ in range(repeats):
        for model, kept in zip(models, times):
            start = time.perf_counter()
            model.predict_on_batch(images)
            kept.append(time.perf_counter() - start)
    return [len(images) / float(np.median(kept)) for kept in times]


def distillation_table(setup, teacher, output_dir, epochs, seed, temperature, alpha,
                       repeats):
    """Teacher, label-only student and distilled student on the test split."""
    import keras

    import ensembles
    import zoo
    from zoo.cli import demo

    train = setup.load(setup.train_split, batch_size=demo.SNAPSHOT_BATCH_SIZE)
    validation = setup.load(setup.held_out[0], batch_size=128)
    test = setup.load(setup.held_out[-1], batch_size=128)
    steps = epochs * int(train.cardinality())

    def resnet():  # the snapshot members' architecture
        return demo.resnet_member(setup)

    def optimizer():  # one cosine cycle from 0.1, the same for both students
        return zoo.make_optimizer("sgd", keras.optimizers.schedules.CosineDecay(0.1, steps),
                                  momentum=0.9, weight_decay=1e-4)

    common = dict(epochs=epochs, optimizer=optimizer, reduce_lr=False, seed=seed, verbose=0)
    start = time.time()
    labels_only = zoo.train(resnet, train, validation,
                            run_dir=os.path.join(output_dir, "student_labels"), **common).model
    print(f"  student on the labels: {time.time() - start:.0f} s", flush=True)
    start = time.time()
    keras.utils.set_random_seed(seed)  # the same initial weights as zoo.train's
    distilled = ensembles.distill(teacher, resnet(), train, validation,
                                  temperature=temperature, alpha=alpha,
                                  run_dir=os.path.join(output_dir, "student_distilled"),
                                  **common).model
    print(f"  distilled student: {time.time() - start:.0f} s", flush=True)
    models = {"teacher: snapshot ensemble": teacher, "student, labels only": labels_only,
              f"student, distilled (T={temperature:g}, alpha={alpha:g})": distilled}
    speeds = images_per_second(list(models.values()), next(iter(test))[0], repeats)
    rows = []
    for (name, model), speed in zip(models.items(), speeds):
        table = ensembles.evaluate(model, test)
        scores = table.loc["ensemble" if ensembles.is_ensemble(model) else table.index[0]]
        rows.append({"model": name, **scores[COLUMNS].to_dict(),
                     "parameters": model.count_params(), "images_per_s": speed})
    return pd.DataFrame(rows).set_index("model")


def main(argv=None):
    from benchmarks.common import run_seed_study

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--student-epochs", type=int, default=15)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes: checks every path, measures nothing")
    run_seed_study(parser, argv, "beyond_averaging", run)


def run(args):
    import ensembles
    import zoo
    from zoo.cli import demo

    start = time.time()
    sizes = (dict(epochs=1, snapshot_epochs=2, cycles=2, train_split="train[:320]")
             if args.smoke else dict(epochs=6, snapshot_epochs=15, cycles=5,
                                     train_split="train"))
    setup = demo.load_data("digits", args.seed, sizes.pop("train_split"))
    validation = setup.load(setup.held_out[0], batch_size=128)
    test = setup.load(setup.held_out[-1], batch_size=128)
    groups = demo.train_members(setup, args.output_dir, seed=args.seed,
                                strategy=zoo.distribute.get_strategy("one_device"), **sizes)
    calibration = calibration_table(groups, validation, test)
    teacher = ensembles.Ensemble(groups["resnet18 snapshots"], name="snapshot_ensemble")
    distillation = distillation_table(
        setup, teacher, args.output_dir, 1 if args.smoke else args.student_epochs, args.seed,
        args.temperature, args.alpha, 2 if args.smoke else 30)
    os.makedirs(args.output_dir, exist_ok=True)
    calibration.to_csv(os.path.join(args.output_dir, "calibration.csv"))
    distillation.to_csv(os.path.join(args.output_dir, "distillation.csv"))
    with pd.option_context("display.width", 160, "display.max_columns", 10):
        print(calibration.round(4).to_string())
        print(distillation.round(4).to_string())
    print(f"seed {args.seed}, {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
