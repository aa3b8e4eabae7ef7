"""On real data (the embedded digits at their native 8x8, fixed seeds): variant ensembles
beat their mean member, and a cyclic snapshot ensemble from one run beats its mean snapshot
with a top-1 error no higher than its best snapshot's.

Small ResNet-18s (cifar stem, width 0.125 to 0.25) keep this to about two minutes on two cores.
"""

import os

import pytest

import data
import ensembles
import zoo

SIZE = 8


@pytest.fixture(scope="module")
def digits():
    stats = data.compute_statistics(data.load("digits", "train", image_size=SIZE,
                                              shuffle=False))
    return {
        "stats": stats,
        "train": data.load("digits", "train", image_size=SIZE, batch_size=64, seed=0),
        "validation": data.load("digits", "validation", image_size=SIZE, batch_size=128),
        "test": data.load("digits", "test", image_size=SIZE, batch_size=128),
    }


def _member(build, stats, size=SIZE):
    return lambda: build(input_tensor=data.normalized_input(stats, (size, size, 3)))


@pytest.mark.parametrize("kind, values", [("dropout", [0.1, 0.3, 0.5]),
                                          ("width", [0.125, 0.1875, 0.25])])
def test_variant_ensembles_beat_their_mean_member(kind, values, digits):
    fixed = {"width": 0.125} if kind == "dropout" else {}
    builders = ensembles.variants("resnet18", classes=10, stem="cifar", **{kind: values},
                                  **fixed)
    members = [zoo.train(_member(build, digits["stats"]), digits["train"],
                         digits["validation"], epochs=6, learning_rate=0.05, seed=seed,
                         verbose=0).model
               for seed, build in enumerate(builders.values())]
    table = ensembles.evaluate(ensembles.Ensemble(members), digits["test"])
    print(table.round(4).to_string())
    assert table.loc["ensemble", "top1_error"] < table.loc["mean member", "top1_error"]
    assert table.loc["ensemble", "nll"] < table.loc["mean member", "nll"]


def test_cyclic_snapshot_ensemble_from_one_run_beats_its_mean_snapshot(digits, tmp_path):
    """ONE run, eight cosine cycles of five epochs restarting at 0.3 (Huang et al.'s
    schedule), the last four snapshots: a lower test NLL and top-1 error than the mean
    snapshot's, and a top-1 error no higher than the best snapshot's.

    Restarting at 0.3 rather than 0.2 makes the snapshots more diverse. Weight decay 1e-4:
    with 5e-4 each snapshot keeps beating the last, so the last alone is often the best.
    Seed 0 is the convention, not a pick. Since each epoch's data order comes from (seed,
    epoch) (exact resume, 2026-11-27), seed 0 gives: ensemble 1.67 % / 0.0809, best snapshot
    (the last) 1.67 % / 0.0779, mean snapshot 2.22 % / 0.1081. Its NLL is NOT below the
    best snapshot's in this draw (nor on validation+test pooled: 0.0772 vs 0.0708), so
    that claim is no longer asserted here. Over seeds 0-7 (benchmarks/snapshot_seeds.py)
    it held on 7 of 8, top-1 no higher than the best on 6 of 8, below the mean on 8 of 8:
    on 360 test images one image decides a top-1 comparison. Training here is
    deterministic; on a machine with other float results this test is a fresh draw.
    """
    build = _member(lambda **kw: zoo.resnet18(classes=10, width=0.25, stem="cifar", **kw),
                    digits["stats"])
    # A fresh dataset: its order depends on its seed alone, not on the tests run before.
    train = data.load("digits", "train", image_size=SIZE, batch_size=32, seed=0)
    _, paths = ensembles.train_snapshots(build, train, digits["validation"],
                                         epochs=40, cycles=8, learning_rate=0.3,
                                         weight_decay=1e-4, seed=0, run_dir=str(tmp_path),
                                         verbose=0)
    assert [os.path.basename(p) for p in paths] == [
        f"snapshot-{k}.weights.h5" for k in range(1, 9)]
    table = ensembles.evaluate(ensembles.from_snapshots(build, paths, last=4), digits["test"])
    print(table.round(4).to_string())
    snapshots = table.loc[["snapshot_5", "snapshot_6", "snapshot_7", "snapshot_8"]]
    assert table.loc["ensemble", "nll"] < table.loc["mean member", "nll"]
    assert table.loc["ensemble", "top1_error"] < table.loc["mean member", "top1_error"]
    assert table.loc["ensemble", "top1_error"] <= snapshots["top1_error"].min()
    assert table.loc["ensemble", "disagreement"] > 0  # the snapshots are different models
