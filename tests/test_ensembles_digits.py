"""On real data (the embedded digits, fixed seeds): variant ensembles beat their members.

Small ResNet-18s (cifar stem, 16x16 digits) keep this to about a minute and a half on two
cores.
"""

import pytest

import data
import ensembles
import zoo

SIZE = 16


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
                                          ("width", [0.25, 0.375, 0.5])])
def test_variant_ensembles_beat_their_mean_member(kind, values, digits):
    fixed = {"width": 0.25} if kind == "dropout" else {}
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
