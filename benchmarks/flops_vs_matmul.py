"""Achieved GFLOP/s of zoo.resnet50 inference vs the machine's float32 matmul GFLOP/s.

Both run interleaved in one process; the model's FLOPs are 2 x its multiply-adds
(``zoo.count_macs``), the matmul's 2 n^3. The ratio says how much of what this machine's
dense linear algebra reaches the convolutions reach.

Run: ``.venv/bin/python benchmarks/flops_vs_matmul.py`` (or ``make bench``).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from common import images_per_second, result_row  # noqa: E402


def run(batch_size=32, image_size=224, n=2048):
    """Return one result row: model GFLOP/s, matmul GFLOP/s and their ratio."""
    model = zoo.resnet50(input_shape=(image_size, image_size, 3))
    flops_per_image = 2 * zoo.count_macs(model)
    batch = np.random.default_rng(0).uniform(
        0, 255, size=(batch_size, image_size, image_size, 3)).astype("float32")
    a = tf.random.normal((n, n), seed=0)
    b = tf.random.normal((n, n), seed=1)
    matmul = tf.function(lambda: tf.linalg.matmul(a, b))

    def model_flops(steps=3):
        for _ in range(steps):
            model.predict_on_batch(batch)
        return steps * batch_size * flops_per_image

    def matmul_flops(steps=10):
        for _ in range(steps):
            matmul().numpy()
        return steps * 2 * n**3

    speeds = images_per_second({"model": model_flops, "matmul": matmul_flops})
    return result_row(
        f"resnet50 inference GFLOP/s (batch {batch_size}, {image_size}x{image_size}) vs "
        f"{n}x{n} float32 matmul", "zoo.resnet50", speeds["model"] / 1e9, "tf.linalg.matmul",
        speeds["matmul"] / 1e9, unit="GFLOP/s")


if __name__ == "__main__":
    row = run()
    print(f"{row['benchmark']}: model {row['ours_per_s']} GFLOP/s, matmul "
          f"{row['baseline_per_s']} GFLOP/s, ratio {row['ratio']}")
