"""Input pipeline (with augmentation) vs the training step of a small AlexNet, images/s.

The pipeline must not be the bottleneck: its throughput should be >= 3x the training step's.
Run: ``.venv/bin/python benchmarks/pipeline_vs_training.py`` (or ``make bench``).
"""

import functools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402

import data  # noqa: E402
import zoo  # noqa: E402
from common import images_per_second, result_row  # noqa: E402
from data import augment  # noqa: E402


def run(batch_size=64, crop=67, load_size=76):
    """One result row: pipeline and training-step throughputs and their ratio."""
    stats = data.compute_statistics(data.load("digits", "train", image_size=load_size))
    aug = augment.compose(
        functools.partial(augment.random_crop, size=crop),
        augment.random_flip,
        functools.partial(augment.pca_color, **stats.pca_eigenpairs()),
        augment.color_jitter,
    )
    pipeline = iter(
        data.load("digits", "train", batch_size=batch_size, image_size=load_size, augment=aug,
                  drop_remainder=True).repeat()
    )
    model = zoo.alexnet(input_shape=(crop, crop, 3), classes=10, width=512, towers=2)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    images, labels = next(pipeline)

    def pipeline_steps(steps=100):
        # Long enough that the prefetch buffer filled during training steps is negligible.
        for _ in range(steps):
            next(pipeline)
        return steps * batch_size

    def train_steps(steps=5):
        for _ in range(steps):
            model.train_on_batch(images, labels)
        return steps * batch_size

    speeds = images_per_second({"pipeline": pipeline_steps, "train": train_steps})
    return result_row(
        f"digits pipeline (crop, flip, PCA colour, jitter) vs AlexNet {crop}x{crop} train "
        f"step, batch {batch_size}", "data.load(augment=...)", speeds["pipeline"],
        "zoo.alexnet train step", speeds["train"])


if __name__ == "__main__":
    row = run()
    print(f"{row['benchmark']}: pipeline {row['ours_per_s']} img/s, training "
          f"{row['baseline_per_s']} img/s, ratio {row['ratio']}x (target >= 3x)")
