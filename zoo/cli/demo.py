"""``zoo demo``: the whole product on the embedded digits, in a few minutes on a CPU.

Four steps, each a function: :func:`train_members` trains, under the two-device mirrored
strategy (data parallelism), small two-tower AlexNets (LRN) on random crops of the larger
scale as dropout and width variants, and a small ResNet-18 (cifar stem) as a cyclic
snapshot ensemble; :func:`evaluate` scores every member and ensemble and their
combination with ``ensembles.evaluate``; :func:`report` writes the table, the plots and a
Markdown report; :func:`serve` exports the combined ensemble as one SavedModel, reloads it
and classifies a few test images with their uncertainty. :func:`run` does all four.
"""

import dataclasses
import os
import time

import pandas as pd

from safeio import write_csv, write_text
from safeio.checks import check_positive_int

ALEXNET_SIZE = 67  # AlexNet's smallest input; the ResNet members resize to RESNET_SIZE
RESNET_SIZE = 8  # the digits' own resolution
MODEL_CHOICES = ("alexnet", "resnet18")


def _say(message):
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclasses.dataclass
class DemoData:
    """The demo's datasets: the paper's pipeline at the AlexNet input size."""

    name: str
    classes: int
    scale: int  # images load with this shorter side, then are cropped to ALEXNET_SIZE
    stats: object  # the training set's data.ImageStatistics
    train: object  # random crops
    validation: object  # centre crops, from here on
    test: object
    test_split: str

    def load(self, split, **kwargs):
        return _centre_crops(self.name, split, self.scale, **kwargs)


def _centre_crops(dataset, split, scale, **kwargs):
    """``split`` at the larger scale, then its central ALEXNET_SIZE crop."""
    import data

    return data.load(dataset, split, scale=scale, center_crop=ALEXNET_SIZE, **kwargs)


def load_data(dataset="digits", seed=0):
    """The paper's pipeline: images at the larger scale (shorter side 256/224 of the input),
    random crops of the input size to train, the centre crop to evaluate. No flips: a
    mirrored digit is another shape."""
    import data

    info = data.info(dataset)
    held_out = [s for s in ("validation", "test") if s in info.splits]
    if "train" not in info.splits or not held_out:
        raise ValueError(f"The demo needs a train split and a validation or test split; "
                         f"{dataset!r} has {sorted(info.splits)}.")
    scale = data.crop_scale(ALEXNET_SIZE)
    crops = data.augment.from_spec("crop", ALEXNET_SIZE)
    return DemoData(
        dataset, info.num_classes, scale,
        stats=data.compute_statistics(_centre_crops(dataset, "train", scale, shuffle=False)),
        train=data.load(dataset, "train", scale=scale, augment=crops, batch_size=32,
                        seed=seed),
        validation=_centre_crops(dataset, held_out[0], scale, batch_size=128),
        test=_centre_crops(dataset, held_out[-1], scale, batch_size=128),
        test_split=held_out[-1])


def train_members(demo, output_dir, models=MODEL_CHOICES, epochs=6, snapshot_epochs=24,
                  cycles=8, seed=0, dropouts=(0.3, 0.5), widths=(512, 256), strategy=None,
                  alexnet_batches=None):
    """Train the AlexNet variants and the ResNet-18 snapshot run; returns ``{group name:
    [member models]}`` (a member two groups share is trained once). ``alexnet_batches``: an
    AlexNet epoch is the first that many batches (a smoke run), or all of them (None)."""
    import keras

    import data
    import ensembles
    import zoo

    shape = (ALEXNET_SIZE, ALEXNET_SIZE, 3)

    def member(build):  # built by zoo.train, under the strategy: the input layers too
        return lambda: build(input_tensor=data.normalized_input(demo.stats, shape))

    groups, results = {}, {}
    variants = {} if "alexnet" not in models else {
        "alexnet dropout variants": ensembles.variants(
            "alexnet", dropout=list(dropouts), width=widths[0], classes=demo.classes,
            towers=2, kernel_initializer="he"),
        "alexnet width variants": ensembles.variants(
            "alexnet", width=list(widths), dropout=dropouts[0], classes=demo.classes,
            towers=2, kernel_initializer="he"),
    }
    alexnet_train = demo.train if alexnet_batches is None else demo.train.take(alexnet_batches)
    for group, builders in variants.items():
        groups[group] = []
        for name, build in builders.items():
            config = tuple(sorted((k, v) for k, v in build.keywords.items() if k != "name"))
            if config not in results:
                _say(f"training {name} ({group}) for {epochs} epochs")
                results[config] = zoo.train(
                    member(build), alexnet_train, demo.validation, epochs=epochs,
                    learning_rate=0.003, seed=seed + len(results), strategy=strategy,
                    run_dir=os.path.join(output_dir, name), verbose=0)
                error = 1 - results[config].history["val_top1_accuracy"].iloc[-1]
                _say(f"  val top-1 error {100 * error:.2f} %")
            groups[group].append(results[config].model)

    def resnet():
        x = data.normalized_input(demo.stats, shape)
        x = keras.layers.Resizing(RESNET_SIZE, RESNET_SIZE, interpolation="area",
                                  name="resize")(x)
        return zoo.resnet18(input_tensor=x, classes=demo.classes, width=0.25, stem="cifar")

    if "resnet18" in models:
        _say(f"training resnet18 (cifar stem) as a {cycles}-cycle snapshot ensemble, "
             f"{snapshot_epochs} epochs")
        # Centre crops, no random crops: the tiny ResNet sees the digits at 8x8.
        _, paths = ensembles.train_snapshots(
            resnet, demo.load("train", batch_size=32, seed=seed), demo.validation,
            epochs=snapshot_epochs, cycles=cycles, learning_rate=0.3, weight_decay=1e-4,
            seed=seed, strategy=strategy,
            run_dir=os.path.join(output_dir, "resnet18_snapshots"), verbose=0)
        groups["resnet18 snapshots"] = ensembles.members_of(
            ensembles.from_snapshots(resnet, paths, last=min(4, len(paths))))
    return groups


def evaluate(groups, test):
    """One table over every group and the combination of all members: each member's row,
    and each group's mean member and ensemble, from ``ensembles.evaluate`` on predictions
    made once. Returns ``(table, combined ensemble, (names, probs, labels))``."""
    import ensembles
    from ensembles.evaluation import SCORE_COLUMNS

    everything = []
    for members in groups.values():
        everything += [m for m in members if m not in everything]
    combined = ensembles.Ensemble(everything, name="all")
    names, probs, labels = ensembles.predict_members(combined, test)  # once, for every table
    rows = []
    for group, members in list(groups.items()) + [("all", everything)]:
        chosen = [everything.index(m) for m in members]
        table = ensembles.evaluate(members, None, predictions=(
            [names[i] for i in chosen], probs[chosen], labels))
        for name, row in table.drop(index="best member").iterrows():
            if group == "all" and name not in ("mean member", "ensemble"):
                continue
            label = f"{group}: {name}" if name in ("mean member", "ensemble") else name
            rows.append({"model": label, "group": group, **row[SCORE_COLUMNS].to_dict()})
    table = pd.DataFrame(rows).drop_duplicates("model").set_index("model")
    return table, combined, (names, probs, labels)


def _markdown(table):
    columns = ["group"] + [c for c in table.columns if c != "group"]
    lines = ["| model | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name, row in table.iterrows():
        cells = [str(row["group"])] + [f"{row[c]:.4f}" for c in columns[1:]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(table, combined, predictions, output_dir, header, served_lines=()):
    """``results.csv``, the size curve and the reliability diagram, and ``report.md``
    (``header`` first, then the table, the plots and the served predictions)."""
    import ensembles
    from ensembles.evaluation import combine

    names, probs, labels = predictions
    write_csv(table, os.path.join(output_dir, "results.csv"))
    curve = ensembles.size_curve(combined, None, predictions=predictions)
    ensembles.plot_size_curve(curve, os.path.join(output_dir, "size_curve.png"),
                              title="All members, in training order")
    ensembles.plot_reliability(combine(combined, probs), labels,
                               os.path.join(output_dir, "reliability.png"),
                               title="Combined ensemble")
    path = os.path.join(output_dir, "report.md")
    write_text(path, f"{header}\n\n" + _markdown(table.round(4))
               + "\n\n![size curve](size_curve.png)\n![reliability](reliability.png)\n\n"
               "## Served predictions\n\n" + "\n".join(f"- {line}" for line in served_lines)
               + "\n")
    return path


def serve(combined, test, export_dir, count=5):
    """Export ``combined`` as one SavedModel, reload it with plain TensorFlow and classify
    ``count`` test images; returns one line per image."""
    import tensorflow as tf

    import ensembles

    _say(f"exporting the combined ensemble to {export_dir}")
    ensembles.export(combined, export_dir, overwrite=True)  # the demo's own, on a rerun
    served = tf.saved_model.load(export_dir)
    images, truth = next(iter(test))
    outputs = served.serve(tf.constant(images[:count]))
    probs = outputs["probabilities"].numpy()
    return [f"image {i}: label {int(truth[i])}, predicted {probs[i].argmax()} "
            f"(p={probs[i].max():.3f}), entropy {float(outputs['predictive_entropy'][i]):.3f}"
            f", mutual information {float(outputs['mutual_information'][i]):.4f}"
            for i in range(count)]


def run(output_dir="runs/demo", epochs=6, snapshot_epochs=24, cycles=8, seed=0,
        dropouts=(0.3, 0.5), widths=(512, 256), dataset="digits", models=MODEL_CHOICES,
        strategy=None, alexnet_batches=None):
    """Run the demo's four steps; returns the results table (a pandas DataFrame).

    ``dataset``: the embedded digits, a TFDS name or an image folder (with a train split and
    a validation and/or test split); ``models``: which of the AlexNet variants and the
    ResNet-18 snapshot ensemble to train; ``alexnet_batches``: AlexNet epochs of that many
    batches (``zoo demo --quick`` trains on 10 per epoch), or of the whole training split
    (None).

    Example:

    >>> table = run("runs/demo", epochs=1, snapshot_epochs=2, cycles=2,
    ...             alexnet_batches=10)   # doctest: +SKIP
    """
    import zoo

    start = time.time()
    models = list(models)
    if not models or any(m not in MODEL_CHOICES for m in models):
        raise ValueError(f"`models` must be a non-empty subset of {MODEL_CHOICES}; received "
                         f"{models!r}.")
    check_positive_int(alexnet_batches, "alexnet_batches", allow_none=True)
    strategy = strategy or zoo.distribute.mirrored(devices=2)
    _say(f"{strategy.num_replicas_in_sync} replicas: "
         f"{', '.join(strategy.extended.worker_devices)}")
    os.makedirs(output_dir, exist_ok=True)
    demo = load_data(dataset, seed)
    demo.stats.save(os.path.join(output_dir, "statistics.npz"))
    groups = train_members(demo, output_dir, models, epochs, snapshot_epochs, cycles, seed,
                           dropouts, widths, strategy, alexnet_batches)
    _say(f"evaluating members and ensembles on the {demo.test_split} split")
    table, combined, predictions = evaluate(groups, demo.test)
    with pd.option_context("display.width", 140, "display.max_columns", 10):
        print(table.drop(columns="group").round(4).to_string())
    export_dir = os.path.join(output_dir, "ensemble_savedmodel")
    lines = serve(combined, demo.test, export_dir)
    _say("the reloaded SavedModel classifies five test images:")
    for line in lines:
        print("  " + line)
    header = (f"# zoo demo on {demo.name}\n\n{strategy.num_replicas_in_sync} replicas (data "
              f"parallel); AlexNet members at {ALEXNET_SIZE}x{ALEXNET_SIZE} (two towers, LRN), "
              f"trained on random crops of images at {demo.scale}x{demo.scale}, ResNet-18 "
              f"snapshots at {RESNET_SIZE}x{RESNET_SIZE}; every model tested on the centre "
              f"crop. Test split: {len(predictions[2])} images.")
    path = report(table, combined, predictions, output_dir, header, lines)
    _say(f"done in {time.time() - start:.0f} s")
    print(f"Results table: {os.path.join(output_dir, 'results.csv')}")
    print(f"Report:        {path}")
    print(f"Plots:         {output_dir}/size_curve.png, reliability.png, "
          "<member>/learning_curves.png")
    print(f"SavedModel:    {export_dir}")
    return table
