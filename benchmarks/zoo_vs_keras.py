"""zoo.resnet50 vs keras.applications.ResNet50: inference images/s, side by side.

Run: ``.venv/bin/python benchmarks/zoo_vs_keras.py`` (or ``make bench``).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import zoo  # noqa: E402
from common import images_per_second, result_row  # noqa: E402


def run(batch_size=32, image_size=224):
    """Return one result row: both throughputs and their ratio (zoo / keras.applications)."""
    batch = np.random.default_rng(0).uniform(
        0, 255, size=(batch_size, image_size, image_size, 3)
    ).astype("float32")
    ours = zoo.resnet50(input_shape=(image_size, image_size, 3))
    theirs = keras.applications.ResNet50(weights=None, input_shape=(image_size, image_size, 3))
    def predict(model, steps=3):
        for _ in range(steps):
            model.predict_on_batch(batch)
        return steps * batch_size

    speeds = images_per_second({
        "zoo.resnet50": lambda: predict(ours),
        "keras.applications.ResNet50": lambda: predict(theirs),
    })
    return result_row(
        f"resnet50 inference, batch {batch_size}, {image_size}x{image_size}", "zoo.resnet50",
        speeds["zoo.resnet50"], "keras.applications.ResNet50",
        speeds["keras.applications.ResNet50"])


if __name__ == "__main__":
    row = run()
    print(f"{row['benchmark']}: zoo {row['ours_per_s']} img/s, keras.applications "
          f"{row['baseline_per_s']} img/s, ratio {row['ratio']}x")
