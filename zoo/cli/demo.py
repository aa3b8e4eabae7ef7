"""``zoo demo``: the whole product on the embedded digits, in three minutes on a CPU.

Four steps, each a function: :func:`train_members` trains small two-tower AlexNets (LRN)
on random crops of the larger scale as dropout and width variants (the first under the
two-device mirrored strategy, data parallelism), and a small ResNet-18 (cifar stem) as a
cyclic snapshot ensemble; :func:`evaluate` scores every member, each group's ensemble and
the combination of the groups with ``ensembles.evaluate``; :func:`report` writes the
table, the plots and a Markdown report; :func:`serve` exports the combination as one
SavedModel, reloads it and classifies a few test images with their uncertainty.
:func:`run` does all four and says how long each took.
"""

import os
import time

import pandas as pd

from safeio import is_regular_file, make_directory, write_csv, write_text
from safeio.checks import UserError, check_positive_int
from zoo.cli.tables import for_people

ALEXNET_SIZE = 67  # AlexNet's smallest input; the ResNet members resize to RESNET_SIZE
RESNET_SIZE = 16  # the centre crop, resized (the digits themselves are 8x8)
MODEL_CHOICES = ("alexnet", "resnet18")
BATCH_SIZE = 32  # the AlexNets'
SNAPSHOT_BATCH_SIZE = 64  # the ResNet-18 snapshot run's
SNAPSHOTS_KEPT = 3  # the last 3 of the run's 5 snapshots (cycle 2's was 8 % off on seed 2)
ALEXNET_PEAK_LR = 1e-3
ALEXNET_WARMUP_EPOCHS = 1
SNAPSHOT_RUN = "resnet18_snapshots"  # the ResNet-18 run's folder; the AlexNets' are named
EXPORT = "ensemble_savedmodel"  # by ensembles.variants (alexnet_dropout0p3, ...)


def _say(message):
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_data(dataset="digits", seed=0, train_split="train", data_dir=None):
    """The paper's pipeline (``data.pipeline``) at the AlexNet input size: images at the
    larger scale (shorter side 256/224 of the input), random crops of the input size to
    train, the centre crop to evaluate. No flips: a mirrored digit is another shape.
    ``data_dir``: where a TFDS dataset is prepared (TFDS' default when None)."""
    import data

    info = data.info(dataset, data_dir=data_dir)
    held_out = [s for s in (*data.VALIDATION_SPLITS, "test") if s in info.splits]
    if "train" not in info.splits or not held_out:  # the first validates, the last tests
        raise UserError(f"The demo needs a train split and a validation (or val) or test "
                        f"split; {dataset!r} has {sorted(info.splits)}.")
    return data.pipeline(dataset, ALEXNET_SIZE, augment="crop", batch_size=BATCH_SIZE,
                         seed=seed, train_split=train_split, info=info, data_dir=data_dir)


def _warmup_cosine(peak, epochs, steps_per_epoch, warmup_epochs):
    """Adam whose rate rises linearly from 0 to ``peak`` over ``warmup_epochs`` (Goyal et
    al. 2017), then follows a cosine to 0 (Keras' CosineDecay). Six epochs are too few for
    ReduceLROnPlateau; with SGD, rates that learn in six epochs killed the ReLUs of some
    seeds' LRN AlexNets (``benchmarks/demo_seeds.py``)."""
    import keras

    import zoo

    warmup = min(warmup_epochs, epochs - 1) * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else peak, epochs * steps_per_epoch - warmup,
        warmup_target=peak if warmup else None, warmup_steps=warmup)
    return lambda: zoo.make_optimizer("adam", schedule, weight_decay=5e-4)


def alexnet_variants(dropouts=(0.3, 0.4), widths=(512, 384), **kwargs):
    """``{run name: builder}`` of the AlexNet members: the first dropout rate at the first
    width, the other rates at that width, the other widths at the first rate (``kwargs``
    go to every member)."""
    import ensembles

    variants = ensembles.variants("alexnet", dropout=list(dropouts), width=widths[0],
                                  **kwargs)
    if len(widths) > 1:
        variants.update(ensembles.variants("alexnet", width=list(widths[1:]),
                                           dropout=dropouts[0], **kwargs))
    return variants


def member_runs(models, dropouts=(0.3, 0.4), widths=(512, 384)):
    """The folders, in the demo's output folder, of the runs that train ``models``."""
    names = list(alexnet_variants(dropouts, widths)) if "alexnet" in models else []
    return names + ([SNAPSHOT_RUN] if "resnet18" in models else [])


def _one_device(strategy):
    """The strategy of the members that train on one device. TensorFlow's ``"auto"`` is its
    default strategy (one GPU, or the CPU) but mirrors over every GPU of a machine with
    several; under JAX ``"auto"`` is data parallel over two devices too."""
    if isinstance(strategy, str):
        return "one_device"
    import tensorflow as tf

    return "auto" if len(tf.config.list_physical_devices("GPU")) < 2 else "one_device"


def train_members(demo, output_dir, models=MODEL_CHOICES, epochs=6, snapshot_epochs=15,
                  cycles=5, seed=0, dropouts=(0.3, 0.4), widths=(512, 384), strategy=None):
    """Train the AlexNet dropout and width variants (the first under ``strategy``, the
    others on one device) and the ResNet-18 snapshot run (on one device); returns
    ``{group name: [member models]}``."""
    import ensembles
    import zoo

    validation = demo.load(demo.held_out[0], batch_size=128)
    train = demo.train()

    def member(build):  # built by zoo.train, under the strategy: the input layers too
        return lambda: build(input_tensor=demo.input())

    groups = {}
    single_device = _one_device(strategy)
    if "alexnet" in models:
        # Dropout and width variants of the two-tower LRN AlexNet.
        variants = alexnet_variants(dropouts, widths, classes=demo.info.num_classes,
                                    towers=2, kernel_initializer="he")
        optimizer = _warmup_cosine(ALEXNET_PEAK_LR, epochs, int(train.cardinality()),
                                   ALEXNET_WARMUP_EPOCHS)
        groups["alexnet variants"] = []
        for index, (name, build) in enumerate(variants.items()):
            # The first member under the strategy, the others on one device: on a CPU the
            # two-device strategy costs time, not speed (README, "Several devices").
            chosen = strategy if index == 0 else single_device
            where = f"{replicas(strategy)[0]} replicas" if index == 0 else "one device"
            # keras.distribution (JAX) splits every batch evenly: no smaller last batch.
            data_parallel = index == 0 and isinstance(strategy, str)
            _say(f"training {name} for {epochs} epoch{'s' * (epochs != 1)} on {where}"
                 + _resumed(os.path.join(output_dir, name), epochs))
            start = time.time()
            result = zoo.train(
                member(build), demo.train(drop_remainder=True) if data_parallel else train,
                validation, epochs=epochs, optimizer=optimizer,
                reduce_lr=False, seed=seed + index, strategy=chosen,
                run_dir=os.path.join(output_dir, name), verbose=0,
                class_names=demo.info.class_names, resize=demo.resize)
            error = 1 - result.history["val_top1_accuracy"].iloc[-1]
            _say(f"  val top-1 error {100 * error:.2f} % ({time.time() - start:.0f} s)")
            groups["alexnet variants"].append(result.model)

    def resnet():
        return resnet_member(demo)

    if "resnet18" in models:
        _say(f"training resnet18 (cifar stem) as a {cycles}-cycle snapshot ensemble, "
             f"{snapshot_epochs} epochs, on one device"
             + _resumed(os.path.join(output_dir, SNAPSHOT_RUN), snapshot_epochs))
        start = time.time()
        # Centre crops, no random crops: the tiny ResNet sees the digits at 8x8.
        _, paths = ensembles.train_snapshots(
            resnet, demo.load(demo.train_split, batch_size=SNAPSHOT_BATCH_SIZE), validation,
            epochs=snapshot_epochs, cycles=cycles, learning_rate=0.3, weight_decay=1e-4,
            seed=seed, strategy=single_device, class_names=demo.info.class_names,
            resize=demo.resize, run_dir=os.path.join(output_dir, SNAPSHOT_RUN),
            verbose=0)
        _say(f"  {len(paths)} snapshots ({time.time() - start:.0f} s)")
        groups["resnet18 snapshots"] = ensembles.members_of(
            ensembles.from_snapshots(resnet, paths, last=min(SNAPSHOTS_KEPT, len(paths)),
                                     class_names=demo.info.class_names, resize=demo.resize))
    return groups


def _resumed(run_dir, epochs):
    """What the "training" line adds for a member an earlier demo trained there: a second
    run said nothing, and its lines and times read as a new training."""
    from zoo.training.run_config import epochs_done

    done = epochs_done(run_dir)
    if done >= epochs:
        return f" (trained by an earlier demo in {run_dir}: loaded, nothing to train)"
    return f" (resuming {run_dir} after epoch {done})" if done else ""


def _check_same_flags(output_dir, runs, flags):
    """Members an earlier demo trained in ``output_dir`` (``runs``: run name -> index,
    None for the snapshot run) with other ``flags`` (``{"epochs": 6, ...}``, the flags'
    values): one line in the flags' words. The resume refused them later, in the names of
    the schedule's settings (warmup_steps 0 -> 10), and told of a run directory the demo
    has no flag for."""
    from zoo.training.run_config import read_config

    for name, index in runs.items():
        config = read_config(os.path.join(output_dir, name))
        if not config:
            continue
        schedule = ((config.get("optimizer") or {}).get("config") or {}).get(
            "learning_rate") or {}
        recorded = {"seed": config.get("seed"), "cycles": None}
        if index is None:  # the snapshot run: its epochs and cycles
            recorded.update(snapshot_epochs=config.get("epochs"),
                            cycles=(schedule.get("config") or {}).get("cycles"))
        else:  # an AlexNet variant, seeded seed + its index
            recorded.update(epochs=config.get("epochs"),
                            seed=None if config.get("seed") is None
                            else config["seed"] - index)
        for flag, value in flags.items():
            if recorded.get(flag) is not None and recorded[flag] != value:
                shown = f"--{flag.replace('_', '-')}"
                raise UserError(
                    f"{output_dir} holds a zoo demo of {shown} {recorded[flag]} ({name}); "
                    f"received {shown} {value}. Give another --output-dir, or {shown} "
                    f"{recorded[flag]} to resume it.")


def resnet_member(demo):
    """The snapshot run's ResNet-18 (cifar stem, width 0.25) on the AlexNets' inputs,
    resized inside the model to ``RESNET_SIZE`` bilinearly with antialiasing, which every
    backend has (TensorFlow's area averaging is not in JAX's: a file saved with it could
    not run there)."""
    import keras

    import zoo

    x = keras.layers.Resizing(RESNET_SIZE, RESNET_SIZE, interpolation="bilinear",
                              antialias=True, name="resize")(demo.input())
    return zoo.resnet18(input_tensor=x, classes=demo.info.num_classes, width=0.25,
                        stem="cifar")


def two_host_devices_for_jax():
    """Under the JAX backend (``KERAS_BACKEND`` or keras.json), before JAX starts (importing
    Keras does not start it): on a CPU, two devices for the data-parallel AlexNet (as
    TensorFlow's mirrored strategy splits the CPU in two); GPUs are not affected. Without
    multi-threaded Eigen: with it, the two devices' all-reduce deadlocked on two cores (XLA
    aborted after its 40 s rendezvous timeout, JAX 0.10.2)."""
    import keras

    if keras.backend.backend() == "jax" and (
            "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", "")):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_force_host_platform_device_count=2"
                                   " --xla_cpu_multi_thread_eigen=false").strip()


def default_strategy():
    """The AlexNets' two-device data parallelism: TensorFlow's ``MirroredStrategy`` (over
    two logical devices of a lone CPU or GPU), or under JAX ``"mirrored"``, which
    ``zoo.train`` makes ``keras.distribution.DataParallel`` over the local devices (on a
    CPU, start JAX with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``; ``zoo
    demo`` does)."""
    import keras

    import zoo

    if keras.backend.backend() == "tensorflow":
        return zoo.distribute.mirrored(devices=2)
    return "mirrored"


def replicas(strategy):
    """``(count, device names)`` of a ``tf.distribute`` strategy, or of the
    keras.distribution devices that ``"mirrored"`` spreads over."""
    if hasattr(strategy, "num_replicas_in_sync"):
        return strategy.num_replicas_in_sync, list(strategy.extended.worker_devices)
    import keras

    devices = keras.distribution.list_devices()
    return len(devices), devices


FITTED = "all, weights fitted on validation"  # the served combination's group
FITTED_NAME = "all_fitted"  # (its model's name)


def combine_groups(groups):
    """``(ensemble, positions)``: every group's members in one ensemble named ``all``, whose
    weights average the groups' ensembles with equal weight (a member's weight is 1 /
    (groups x its group's size)), so that a group of many members does not outvote a group
    of few; ``positions[group]`` (and ``positions["all"]``) the indices of its members."""
    import ensembles

    everything, weights, positions = [], [], {}
    for group, members in groups.items():
        positions[group] = list(range(len(everything), len(everything) + len(members)))
        everything += members
        weights += [1.0 / (len(groups) * len(members))] * len(members)
    positions["all"] = list(range(len(everything)))
    return ensembles.Ensemble(everything, weights=weights, name="all"), positions


def evaluate(groups, test, validation=None):
    """One table over every group and the combination of all groups: each member's row,
    and each group's mean member and ensemble, from ``ensembles.evaluate`` on predictions
    made once. The combination ("all") is :func:`combine_groups`'. With ``validation``, one
    more row: every member with weights fitted on it (``ensembles.fit_weights``, NLL), the
    combination returned. Returns ``(table, combined ensemble, (names, probs, labels))``."""
    import ensembles
    from ensembles.evaluation import SCORE_COLUMNS

    combined, positions = combine_groups(groups)
    everything = [member for members in groups.values() for member in members]
    names, probs, labels = ensembles.predict_members(combined, test)  # once, for every table
    rows = []
    for group, source in list(groups.items()) + [("all", combined)]:
        chosen = positions[group]
        table = ensembles.evaluate(source, None, predictions=(
            [names[i] for i in chosen], probs[chosen], labels))
        for name, row in table.drop(index="best member").iterrows():
            if group == "all" and name not in ("mean member", "ensemble"):
                continue
            label = f"{group}: {name}" if name in ("mean member", "ensemble") else name
            rows.append({"model": label, "group": group, **row[SCORE_COLUMNS].to_dict()})
    if validation is not None:
        weights = ensembles.fit_weights(everything, validation)
        fitted = ensembles.Ensemble(everything, weights=[float(w) for w in weights],
                                    name=FITTED_NAME)
        scored = ensembles.evaluate(fitted, None, predictions=(names, probs, labels))
        rows.append({"model": f"{FITTED}: ensemble", "group": FITTED,
                     **scored.loc["ensemble", SCORE_COLUMNS].to_dict()})
        combined = fitted
    table = pd.DataFrame(rows).set_index("model")
    return table, combined, (names, probs, labels)


def _markdown(table):
    columns = ["group"] + [c for c in table.columns if c != "group"]
    lines = ["| model | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name, row in for_people(table).iterrows():
        cells = [str(row["group"])] + [
            row[c] if isinstance(row[c], str) else f"{row[c]:.4f}" for c in columns[1:]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(table, combined, predictions, output_dir, header, served_lines=()):
    """The size curve and the reliability diagram, and ``report.md`` (``header`` first, then
    the table, the plots and the served predictions). (``results.csv``: :func:`run` writes
    it as soon as the table is made.)"""
    import ensembles
    from ensembles.evaluation import combine

    names, probs, labels = predictions
    curve = ensembles.size_curve(combined, None, predictions=predictions)
    weighted = _weighted(combined)
    ensembles.plot_size_curve(curve, os.path.join(output_dir, "size_curve.png"),
                              title=f"All members, in training order ({weighted})")
    ensembles.plot_reliability(combine(combined, probs), labels,
                               os.path.join(output_dir, "reliability.png"),
                               title=f"The exported ensemble ({weighted})")
    path = os.path.join(output_dir, "report.md")
    write_text(path, f"{header}\n\n" + _markdown(table)
               + "\n\n![size curve](size_curve.png)\n![reliability](reliability.png)\n\n"
               "## Served predictions\n\n" + "\n".join(f"- {line}" for line in served_lines)
               + "\n")
    return path


def _weighted(combined):
    """How the combination the demo exports (and plots) weighs its members: the table's
    fitted row, where a validation split fitted them, else its "all" row."""
    return ("weights fitted on validation" if combined.name == FITTED_NAME
            else "each group weighted equally")


def serve(combined, test, export_dir, count=5):
    """Export ``combined`` as one SavedModel, reload it with plain TensorFlow and classify
    ``count`` test images; returns one line per image."""
    import tensorflow as tf

    import ensembles

    _say(f"exporting the ensemble of every member ({_weighted(combined)}) to {export_dir}")
    start = time.time()
    ensembles.export(combined, export_dir, overwrite=True)  # the demo's own, on a rerun
    _say(f"  exported in {time.time() - start:.0f} s; reloading it with TensorFlow alone")
    served = tf.saved_model.load(export_dir)
    images, truth = next(iter(test))
    count = min(count, len(images))  # (a test split of fewer images)
    outputs = served.serve(tf.constant(images[:count]))
    probs = outputs["probabilities"].numpy()
    return [f"image {i}: label {int(truth[i])}, predicted {probs[i].argmax()} "
            f"(p={probs[i].max():.3f}), entropy {float(outputs['predictive_entropy'][i]):.3f}"
            f", mutual information {float(outputs['mutual_information'][i]):.4f}"
            for i in range(count)]


MARK = ".zoo-demo"  # in a folder the demo writes: its files there are the demo's to replace
OUTPUTS = ("report.md", "results.csv", "statistics.npz", "size_curve.png", "reliability.png")


def _written_by_a_demo(output_dir, runs, present):
    """Whether the demo's files ``present`` in ``output_dir`` are a demo's: its mark, or
    (older demos wrote no mark) a demo's report, or a demo that stopped before its report
    and table, whose members' ``runs`` are beside them."""
    if is_regular_file(os.path.join(output_dir, MARK)):
        return True
    report = os.path.join(output_dir, "report.md")
    if is_regular_file(report):
        try:
            with open(report, encoding="utf-8") as f:
                if f.read(len("# zoo demo on ")) == "# zoo demo on ":
                    return True
        except (OSError, UnicodeDecodeError):
            pass
    if "report.md" in present or "results.csv" in present:
        return False
    from zoo.training.run_config import _is_our_config

    return any(_is_our_config(os.path.join(output_dir, name, "config.json")) for name in runs)


def _check_output_dir(output_dir, runs):
    """Refuse, before any work, what the demo would replace in ``output_dir`` and is not
    its own: files it writes (``report.md``, ...) that no demo wrote; in the members'
    ``runs`` folders, files no run wrote, or snapshots of an earlier run; an
    ``ensemble_savedmodel`` that is not an export of ours (or is a link). Each refusal is
    one line, and nothing is written."""
    from ensembles.snapshots import check_no_earlier_snapshots
    from safeio import check_replaceable
    from zoo.training.run_config import check_not_foreign

    present = [name for name in OUTPUTS if os.path.lexists(os.path.join(output_dir, name))]
    if present and not _written_by_a_demo(output_dir, runs, present):
        raise UserError(f"{output_dir} holds {', '.join(present)}, which no zoo demo wrote: "
                        "the demo would replace them. Give a new or empty --output-dir, or "
                        "move them aside.")
    for name in runs:
        check_not_foreign(os.path.join(output_dir, name))
    if SNAPSHOT_RUN in runs:
        check_no_earlier_snapshots(os.path.join(output_dir, SNAPSHOT_RUN))
    check_replaceable(os.path.join(output_dir, EXPORT), overwrite=True)


def report_header(dataset, models, scale, replica_count, test_images, test_split="test",
                  validated=False):
    """The report's title and first paragraph: what was trained, of ``models``, and how;
    which split scored them, of ``test_images`` images, and whether it was the training's
    validation split too (``validated``: a dataset with one held-out split).

    Example:

    >>> print(report_header("digits", ["resnet18"], 77, 2, 360))
    # zoo demo on digits
    <BLANKLINE>
    ResNet-18 snapshots (which resize to 16x16 inside the model), trained on the 67x67 centre crops of images at 77x77; every model tested on the centre crop. Test split: 360 images.
    """
    trained = []
    crop = f"{ALEXNET_SIZE}x{ALEXNET_SIZE}"
    if "alexnet" in models:
        replicas = f"{replica_count} replica{'s' * (replica_count != 1)}"
        trained.append(f"AlexNet members (two towers, LRN; the first on {replicas}, data "
                       f"parallel), trained on random {crop} crops")
    if "resnet18" in models:  # (no random crops: the digits are 8x8)
        trained.append(f"ResNet-18 snapshots (which resize to {RESNET_SIZE}x{RESNET_SIZE} "
                       f"inside the model), trained on the {crop} centre crops")
    scored = (f"Test split: {test_images} images." if test_split == "test" and not validated
              else f"Scored on the {test_split} split ({test_images} images)"
              + (", which was the training's validation split too (the dataset has no "
                 "other held-out split)." if validated else "."))
    return (f"# zoo demo on {dataset}\n\n{', and '.join(trained)} of images at "
            f"{scale}x{scale}; every model tested on the centre crop. {scored}")


def run(output_dir="runs/demo", epochs=6, snapshot_epochs=15, cycles=5, seed=0,
        dropouts=(0.3, 0.4), widths=(512, 384), dataset="digits", models=MODEL_CHOICES,
        strategy=None, train_split="train", data_dir=None):
    """Run the demo's four steps; returns the results table (a pandas DataFrame).

    ``dataset``: the embedded digits, a TFDS name or an image folder (with a train split and
    a validation and/or test split); ``models``: which of the AlexNet variants and the
    ResNet-18 snapshot ensemble to train; ``strategy``: the AlexNets' (default: the
    two-device ``MirroredStrategy``); ``train_split``: the training split, which may be
    sliced as TFDS slices (``zoo demo --quick`` trains on ``"train[:320]"``); ``data_dir``:
    where a TFDS dataset is prepared.

    Example:

    >>> table = run("runs/demo", epochs=1, snapshot_epochs=2, cycles=2,
    ...             train_split="train[:320]")   # doctest: +SKIP
    """
    start = time.time()
    models = [models] if isinstance(models, str) else list(models)
    if not models or any(m not in MODEL_CHOICES for m in models):
        raise UserError(f"`models` must be a non-empty subset of {MODEL_CHOICES}; received "
                        f"{models!r}.")
    for name, value in (("epochs", epochs), ("snapshot_epochs", snapshot_epochs),
                        ("cycles", cycles)):
        check_positive_int(value, name)
    runs = member_runs(models, dropouts, widths)
    _check_output_dir(output_dir, runs)
    _check_same_flags(output_dir, {name: (None if name == SNAPSHOT_RUN else runs.index(name))
                                   for name in runs},
                      {"epochs": epochs, "snapshot_epochs": snapshot_epochs, "cycles": cycles,
                       "seed": seed})
    strategy = strategy or default_strategy()
    count, devices = replicas(strategy)
    _say(f"{count} replicas: {', '.join(map(str, devices))}")
    steps = {}
    clock = time.time()
    demo = load_data(dataset, seed, train_split, data_dir)  # (its mistakes: nothing written)
    if "resnet18" in models:  # (the snapshot run refused them after the AlexNets trained)
        batches = demo.load(demo.train_split, batch_size=SNAPSHOT_BATCH_SIZE).cardinality()
        updates = snapshot_epochs * int(batches)
        if cycles > updates:
            raise UserError(f"`cycles` must be at most the snapshot run's updates, "
                            f"{snapshot_epochs} epochs of {updates // snapshot_epochs} batches "
                            f"= {updates}; received {cycles}.")
    make_directory(output_dir)
    write_text(os.path.join(output_dir, MARK), "zoo demo's output folder: its report.md, "
               "results.csv, statistics.npz and plots are replaced by the next zoo demo here.\n")
    test_split = demo.held_out[-1]
    validated = demo.held_out[0] == test_split  # (the dataset's one held-out split)
    test = demo.load(test_split, batch_size=128)
    steps["data"], clock = time.time() - clock, time.time()
    groups = train_members(demo, output_dir, models, epochs, snapshot_epochs, cycles, seed,
                           dropouts, widths, strategy)
    # After the members: a rerun whose settings they refused leaves the earlier statistics.
    demo.statistics.save(os.path.join(output_dir, "statistics.npz"))
    steps["training"], clock = time.time() - clock, time.time()
    _say(f"evaluating members and ensembles on the {test_split} split")
    table, combined, predictions = evaluate(
        groups, test, None if validated else demo.load(demo.held_out[0], batch_size=128))
    write_csv(table, os.path.join(output_dir, "results.csv"))  # (before the export's work)
    with pd.option_context("display.width", 140, "display.max_columns", 10):
        print(for_people(table.drop(columns="group")).to_string())
    steps["evaluation"], clock = time.time() - clock, time.time()
    export_dir = os.path.join(output_dir, EXPORT)
    lines = serve(combined, test, export_dir)
    _say(f"the reloaded SavedModel classifies {len(lines)} test "
         f"image{'s' * (len(lines) != 1)}:")
    for line in lines:
        print("  " + line)
    steps["export and serving"], clock = time.time() - clock, time.time()
    header = report_header(demo.dataset, models, demo.scale, count, len(predictions[2]),
                           test_split, validated)
    path = report(table, combined, predictions, output_dir, header, lines)
    steps["report"] = time.time() - clock
    _say(f"done in {time.time() - start:.0f} s ("
         + ", ".join(f"{k} {v:.0f} s" for k, v in steps.items()) + ")")
    print(f"Results table: {os.path.join(output_dir, 'results.csv')}")
    print(f"Report:        {path}")
    print(f"Plots:         {output_dir}/size_curve.png, reliability.png, "
          "<member>/learning_curves.png")
    print(f"SavedModel:    {export_dir}")
    return table
