"""One-graph ensemble predict vs the members' predict one after another, images/s.

Run: ``.venv/bin/python benchmarks/ensemble_vs_sequential.py`` (or ``make bench``).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import ensembles  # noqa: E402
import zoo  # noqa: E402
from common import check_same_results, images_per_second, result_row  # noqa: E402


def run(members=5, batch_size=64, image_size=67, batches=4):
    """One result row: both throughputs and their ratio (one graph / sequential)."""
    models = [zoo.alexnet(input_shape=(image_size, image_size, 3), classes=10, width=512,
                          towers=2) for _ in range(members)]
    ensemble = ensembles.Ensemble(models)
    x = np.random.default_rng(0).uniform(0, 255, (batch_size * batches, image_size,
                                                  image_size, 3)).astype("float32")

    def one_graph():
        ensemble.predict(x, batch_size=batch_size, verbose=0)
        return len(x)

    def sequential():
        probs = [m.predict(x, batch_size=batch_size, verbose=0) for m in models]
        np.mean(probs, axis=0)
        return len(x)

    # Both sides compute the same probabilities, or their ratio measures nothing.
    check_same_results(ensemble.predict(x[:batch_size], verbose=0),
                       np.mean([m.predict(x[:batch_size], verbose=0) for m in models], axis=0),
                       "the one-graph ensemble against its members' mean")
    speeds = images_per_second({"one_graph": one_graph, "sequential": sequential})
    return result_row(
        f"{members}-member AlexNet ensemble predict ({image_size}x{image_size}, batch "
        f"{batch_size})", "ensembles.Ensemble (one graph)", speeds["one_graph"],
        "members' predict one after another", speeds["sequential"])


if __name__ == "__main__":
    row = run()
    print(f"{row['benchmark']}: one graph {row['ours_per_s']} img/s, sequential "
          f"{row['baseline_per_s']} img/s, ratio {row['ratio']}x (target >= 1.2x)")
