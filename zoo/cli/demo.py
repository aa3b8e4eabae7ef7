"""``zoo demo``: the whole product on the embedded digits, in a few minutes on a CPU.

Trains, under the two-device mirrored strategy (data parallelism), small two-tower AlexNets
(LRN) on random crops of the larger scale as dropout and width variants, and a small
ResNet-18 (cifar stem) as a cyclic snapshot ensemble;
evaluates every member and ensemble and their combination; writes plots and a Markdown
report; exports the combined ensemble as one SavedModel, reloads it and classifies a few
test images with their uncertainty.
"""

import os
import time

import pandas as pd

ALEXNET_SIZE = 67  # AlexNet's smallest input; the ResNet members resize to RESNET_SIZE
RESNET_SIZE = 8  # the digits' own resolution


def _say(message):
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _markdown(table):
    columns = ["group"] + [c for c in table.columns if c != "group"]
    lines = ["| model | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name, row in table.iterrows():
        cells = [str(row["group"])] + [f"{row[c]:.4f}" for c in columns[1:]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


MODEL_CHOICES = ("alexnet", "resnet18")


def run(output_dir="runs/demo", epochs=6, snapshot_epochs=24, cycles=8, seed=0,
        dropouts=(0.3, 0.5), widths=(512, 256), dataset="digits", models=MODEL_CHOICES,
        strategy=None):
    """Run the demo; returns the results table (a pandas DataFrame).

    ``dataset``: the embedded digits, a TFDS name or an image folder (with a train split and
    a validation and/or test split); ``models``: which of the AlexNet variants and the
    ResNet-18 snapshot ensemble to train.
    """
    import keras
    import tensorflow as tf

    import data
    import ensembles
    import zoo
    from ensembles.evaluation import SCORE_COLUMNS, combine
    from safeio import atomic_path

    start = time.time()
    models = list(models)
    if not models or any(m not in MODEL_CHOICES for m in models):
        raise ValueError(f"`models` must be a non-empty subset of {MODEL_CHOICES}; received "
                         f"{models!r}.")
    strategy = strategy or zoo.distribute.mirrored(devices=2)
    _say(f"{strategy.num_replicas_in_sync} replicas: {', '.join(strategy.extended.worker_devices)}")
    os.makedirs(output_dir, exist_ok=True)
    info = data.info(dataset)
    held_out = [s for s in ("validation", "test") if s in info.splits]
    if "train" not in info.splits or not held_out:
        raise ValueError(f"The demo needs a train split and a validation or test split; "
                         f"{dataset!r} has {sorted(info.splits)}.")
    # The paper's pipeline: images at the larger scale (shorter side 256/224 of the input),
    # random crops of the input size to train the AlexNets, the centre crop to evaluate.
    # No flips: a mirrored digit is another shape.
    scale = data.crop_scale(ALEXNET_SIZE)
    load = lambda split, **kw: data.load(dataset, split, scale=scale,  # noqa: E731
                                         center_crop=ALEXNET_SIZE, **kw)
    crops = data.augment.from_spec("crop", ALEXNET_SIZE)
    train = data.load(dataset, "train", scale=scale, augment=crops, batch_size=32, seed=seed)
    val, test = load(held_out[0], batch_size=128), load(held_out[-1], batch_size=128)
    classes = info.num_classes
    stats = data.compute_statistics(load("train", shuffle=False))
    stats.save(os.path.join(output_dir, "statistics.npz"))
    shape = (ALEXNET_SIZE, ALEXNET_SIZE, 3)

    def alexnet_member(build):
        return lambda: build(input_tensor=data.normalized_input(stats, shape))

    groups, results = {}, {}
    variants = {} if "alexnet" not in models else {
        "alexnet dropout variants": ensembles.variants(
            "alexnet", dropout=list(dropouts), width=widths[0], classes=classes, towers=2,
            kernel_initializer="he"),
        "alexnet width variants": ensembles.variants(
            "alexnet", width=list(widths), dropout=dropouts[0], classes=classes, towers=2,
            kernel_initializer="he"),
    }
    for group, builders in variants.items():
        groups[group] = []
        for name, build in builders.items():
            # A member both groups share (dropout 0.5, width 512) is trained once.
            config = tuple(sorted((k, v) for k, v in build.keywords.items() if k != "name"))
            if config not in results:
                _say(f"training {name} ({group}) for {epochs} epochs")
                results[config] = zoo.train(
                    alexnet_member(build), train, val, epochs=epochs, learning_rate=0.003,
                    seed=seed + len(results), strategy=strategy,
                    run_dir=os.path.join(output_dir, name), verbose=0)
                error = 1 - results[config].history["val_top1_accuracy"].iloc[-1]
                _say(f"  val top-1 error {100 * error:.2f} %")
            groups[group].append(results[config].model)

    def resnet():
        x = data.normalized_input(stats, shape)
        x = keras.layers.Resizing(RESNET_SIZE, RESNET_SIZE, interpolation="area",
                                  name="resize")(x)
        return zoo.resnet18(input_tensor=x, classes=classes, width=0.25, stem="cifar")

    if "resnet18" in models:
        _say(f"training resnet18 (cifar stem) as a {cycles}-cycle snapshot ensemble, "
             f"{snapshot_epochs} epochs")
        # Its own dataset: a dataset's order depends on how often it was iterated, so
        # reusing `train` would make this run depend on whether the AlexNets trained first.
        _, paths = ensembles.train_snapshots(
            resnet, load("train", batch_size=32, seed=seed), val, epochs=snapshot_epochs,
            cycles=cycles, learning_rate=0.3, weight_decay=1e-4, seed=seed, strategy=strategy,
            run_dir=os.path.join(output_dir, "resnet18_snapshots"), verbose=0)
        groups["resnet18 snapshots"] = ensembles.members_of(
            ensembles.from_snapshots(resnet, paths, last=min(4, len(paths))))

    _say(f"evaluating members and ensembles on the {held_out[-1]} split")
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
    with atomic_path(os.path.join(output_dir, "results.csv")) as tmp:
        table.to_csv(tmp)
    with pd.option_context("display.width", 140, "display.max_columns", 10):
        print(table.drop(columns="group").round(4).to_string())

    curve = ensembles.size_curve(combined, None, predictions=(names, probs, labels))
    ensembles.plot_size_curve(curve, os.path.join(output_dir, "size_curve.png"),
                              title="All members, in training order")
    ensembles.plot_reliability(combine(combined, probs), labels,
                               os.path.join(output_dir, "reliability.png"),
                               title="Combined ensemble")

    export_dir = os.path.join(output_dir, "ensemble_savedmodel")
    _say(f"exporting the combined ensemble ({len(everything)} members) to {export_dir}")
    ensembles.export(combined, export_dir, overwrite=True)  # the demo's own, on a rerun
    served = tf.saved_model.load(export_dir)
    images, truth = next(iter(test))
    outputs = served.serve(tf.constant(images[:5]))
    probs = outputs["probabilities"].numpy()
    lines = []
    for i in range(5):
        lines.append(f"image {i}: label {int(truth[i])}, predicted {probs[i].argmax()} "
                     f"(p={probs[i].max():.3f}), entropy "
                     f"{float(outputs['predictive_entropy'][i]):.3f}, mutual information "
                     f"{float(outputs['mutual_information'][i]):.4f}")
    _say("the reloaded SavedModel classifies five test images:")
    for line in lines:
        print("  " + line)

    report = os.path.join(output_dir, "report.md")
    with atomic_path(report) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("# zoo demo on the embedded digits\n\n"
                f"{strategy.num_replicas_in_sync} replicas (data parallel); AlexNet members "
                f"at {ALEXNET_SIZE}x{ALEXNET_SIZE} (two towers, LRN), trained on random "
                f"crops of images at {scale}x{scale}, ResNet-18 snapshots at "
                f"{RESNET_SIZE}x{RESNET_SIZE}; every model tested on the centre crop. "
                f"Test split: {len(labels)} images.\n\n"
                + _markdown(table.round(4)) + "\n\n![size curve](size_curve.png)\n"
                "![reliability](reliability.png)\n\n## Served predictions\n\n"
                + "\n".join(f"- {line}" for line in lines) + "\n")
    _say(f"done in {time.time() - start:.0f} s")
    print(f"Results table: {os.path.join(output_dir, 'results.csv')}")
    print(f"Report:        {report}")
    print(f"Plots:         {output_dir}/size_curve.png, reliability.png, "
          "<member>/learning_curves.png")
    print(f"SavedModel:    {export_dir}")
    return table
